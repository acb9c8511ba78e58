//! TCP and TLS connections for the stream sinks (fluent, syslog, webhook):
//! connect with a timeout, optionally wrap in rustls with the system roots
//! plus a configured CA file. No protocol framing here.

use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};
use tokio_rustls::TlsConnector;

/// A byte stream to a collector, plain or TLS.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// TLS parameters of one sink.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    server_name: Option<String>,
}

impl Tls {
    /// The TLS client of a sink whose settings ask for one (`tls = true`).
    pub fn for_sink(settings: &crate::config::SinkSettings) -> Result<Option<Tls>, String> {
        if !settings.tls.unwrap_or(false) {
            return Ok(None);
        }
        Tls::new(settings.ca_file.as_deref(), settings.server_name.as_deref()).map(Some)
    }

    /// Trusts the system roots and, if given, the certificates in `ca_file` (PEM).
    pub fn new(ca_file: Option<&str>, server_name: Option<&str>) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        if let Ok(certs) = rustls_native_certs::load_native_certs() {
            for cert in certs {
                let _ = roots.add(cert);
            }
        }
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("ca_file {path}: {e}"))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("ca_file {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {path}: {e}"))?;
                added += 1;
            }
            // A DER file, a key or an empty file would otherwise leave only
            // the system roots, and every handshake fail with UnknownIssuer.
            if added == 0 {
                return Err(format!(
                    "ca_file {path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: server_name.map(str::to_owned),
        })
    }
}

/// The host part of "host:port" (brackets of an IPv6 literal removed).
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Connects to `address` ("host:port"), with TLS when `tls` is given.
pub async fn connect(
    address: &str,
    tls: Option<&Tls>,
    timeout: Duration,
) -> io::Result<Box<dyn Conn>> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {address} timed out"),
            )
        })??;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(address).to_owned());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: {e}")))?;
    let stream = tokio::time::timeout(timeout, tls.connector.connect(server_name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(Box::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_file(name: &str, contents: &[u8]) -> String {
        let dir = std::env::temp_dir().join(format!("apisensor-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    #[test]
    fn ca_file_without_a_certificate_is_an_error() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = ca_file("ca.pem", cert.pem().as_bytes());
        assert!(Tls::new(Some(&pem), None).is_ok());
        for (name, contents) in [
            ("ca.der", cert.der().to_vec()),
            ("key.pem", key.serialize_pem().into_bytes()),
            ("empty.pem", Vec::new()),
        ] {
            let path = ca_file(name, &contents);
            let err = Tls::new(Some(&path), None).err();
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("no PEM certificate")),
                "{name}: {err:?}"
            );
        }
    }
}
