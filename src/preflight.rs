//! What the settings mean on this host, checked before anything starts:
//! files that must be files (or directories), CA bundles that must hold a
//! certificate, the service user, the capture interfaces and their BPF
//! filters; and the warnings for settings that work but expose something
//! (a listener on every interface, events in cleartext). `check-config` and
//! `run` call the same functions, so whatever `run` would refuse at start
//! is refused by `check-config` first, naming the key and the fix.
//! Opens nothing it keeps and needs no privileges.

use crate::config::{ConfigError, ConfigWarning, Settings, SinkType};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

fn invalid(key: &'static str, problem: String, fix: &'static str) -> ConfigError {
    ConfigError::Invalid { key, problem, fix }
}

/// Paths every command that reads the settings relies on: a file setting
/// must not name a directory (and its directory must exist, for files
/// created at start), a CA bundle must hold a PEM certificate, the spool
/// directory must not be a file. Called by [`Settings::validate`].
pub fn check_files(settings: &Settings) -> Result<(), ConfigError> {
    let exchanges = &settings.service.exchanges_path;
    if !exchanges.is_empty() {
        file_path(
            "service.exchanges_path",
            exchanges,
            Parent::MustExist,
            "name a file, e.g. \"/var/log/apisensor/exchanges.jsonl\", or \"\" for standard output",
        )?;
    }
    let spool = Path::new(&settings.events.spool_dir);
    if spool.exists() && !spool.is_dir() {
        return Err(invalid(
            "events.spool_dir",
            format!("{:?} is a file, not a directory", settings.events.spool_dir),
            "name a directory the sensor can write, e.g. \"/var/lib/apisensor/spool\"",
        ));
    }
    for (index, sink) in settings.events.sinks.iter().enumerate() {
        if let (SinkType::File, Some(path)) = (sink.kind, &sink.path) {
            file_path(
                "events.sinks.path",
                path,
                Parent::Created,
                "name a file, e.g. \"/var/log/apisensor/events.jsonl\"",
            )
            .map_err(|e| in_sink(e, index))?;
        }
        if let Some(ca_file) = &sink.ca_file {
            check_ca_file(ca_file).map_err(|problem| {
                in_sink(
                    invalid(
                        "events.sinks.ca_file",
                        problem,
                        "point it at the collector's CA certificate in PEM (-----BEGIN CERTIFICATE-----), e.g. converted with `openssl x509 -inform der -in ca.der -out ca.pem`",
                    ),
                    index,
                )
            })?;
        }
    }
    let baseline = &settings.detect.baseline_path;
    if !baseline.is_empty() {
        file_path(
            "detect.baseline_path",
            baseline,
            Parent::MustExist,
            "name a file, e.g. \"/var/lib/apisensor/baseline.msgpack\", or \"\" for none",
        )?;
    }
    Ok(())
}

/// Names the sink a problem belongs to, as the other sink checks do.
fn in_sink(error: ConfigError, index: usize) -> ConfigError {
    match error {
        ConfigError::Invalid { key, problem, fix } => ConfigError::Invalid {
            key,
            problem: format!("(sink {index}) {problem}"),
            fix,
        },
        other => other,
    }
}

/// Whether the sensor creates a file's directory itself.
#[derive(PartialEq)]
enum Parent {
    /// The file sink does (`create_dir_all`).
    Created,
    /// The exchanges file and the baseline snapshot do not.
    MustExist,
}

/// A file the sensor creates or appends to: not a directory, and in a
/// directory that exists unless the sensor makes it.
fn file_path(
    key: &'static str,
    path: &str,
    parent: Parent,
    fix: &'static str,
) -> Result<(), ConfigError> {
    let p = Path::new(path);
    if p.is_dir() {
        return Err(invalid(key, format!("{path:?} is a directory"), fix));
    }
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|d| parent == Parent::MustExist && !d.is_dir()) {
        return Err(invalid(
            key,
            format!("{path:?}: its directory {} does not exist", dir.display()),
            fix,
        ));
    }
    Ok(())
}

/// What the TLS client does with `ca_file` at start: read it and add every
/// PEM certificate in it; none at all is an error too (a DER file or a key
/// would otherwise leave only the system roots, and every handshake fail).
fn check_ca_file(path: &str) -> Result<(), String> {
    if Path::new(path).is_dir() {
        return Err(format!("{path:?} is a directory"));
    }
    let pem = std::fs::read(path).map_err(|e| format!("{path:?} cannot be read: {e}"))?;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let mut added = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{path:?} is not valid PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{path:?} holds a certificate that does not parse: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!(
            "{path:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(())
}

/// What `run` needs of this host besides files: the interfaces exist and
/// their BPF filters compile, the service user exists and is not root, the
/// API spec parses. `check-config` and `run` call it; replay does not.
pub fn check_host(settings: &Settings) -> Result<(), ConfigError> {
    if !settings.capture.interfaces.is_empty() {
        let known = crate::capture::live::interface_states().map_err(|e| {
            invalid(
                "capture.interfaces.name",
                format!("cannot list this host's interfaces: {e}"),
                "run `apisensor interfaces` to see what libpcap can capture on",
            )
        })?;
        for iface in &settings.capture.interfaces {
            if !known.iter().any(|(name, _)| *name == iface.name) {
                let names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
                return Err(invalid(
                    "capture.interfaces.name",
                    format!(
                        "{:?} does not exist on this host (it has: {})",
                        iface.name,
                        names.join(", ")
                    ),
                    "use a name `apisensor interfaces` lists",
                ));
            }
            if !iface.bpf_filter.is_empty() {
                crate::capture::live::check_filter(&iface.name, &iface.bpf_filter).map_err(
                    |e| {
                        invalid(
                            "capture.interfaces.bpf_filter",
                            format!(
                                "{:?} (interface {}) does not compile: {e}",
                                iface.bpf_filter, iface.name
                            ),
                            "write it in tcpdump syntax and try it with `tcpdump -d -i IFACE 'FILTER'`, or set \"\" to capture everything",
                        )
                    },
                )?;
            }
        }
    }
    let user = &settings.service.user;
    if !user.is_empty() {
        match nix::unistd::User::from_name(user) {
            Ok(Some(entry)) if entry.uid.is_root() => {
                return Err(invalid(
                    "service.user",
                    format!("{user:?} is root (uid 0), so nothing would be dropped"),
                    "name an unprivileged user such as \"apisensor\" (see systemd/apisensor.sysusers.conf), or set \"\"",
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(invalid(
                    "service.user",
                    format!("user {user:?} does not exist"),
                    "create it (see systemd/apisensor.sysusers.conf) or set service.user = \"\"",
                ));
            }
            Err(e) => {
                return Err(invalid(
                    "service.user",
                    format!("cannot look up user {user:?}: {e}"),
                    "check the user database (getent passwd), or set service.user = \"\"",
                ));
            }
        }
    }
    let spec = &settings.inventory.spec_path;
    if !spec.is_empty() {
        crate::inventory::drift::Spec::load(Path::new(spec)).map_err(|e| {
            invalid(
                "inventory.spec_path",
                e.to_string(),
                "point it at the API's OpenAPI 3.x document (JSON or YAML), or set \"\"",
            )
        })?;
    }
    Ok(())
}

/// Settings that work but expose the sensor or its data.
pub fn warnings(settings: &Settings) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    let c = &settings.capture;
    if c.interfaces.is_empty() && c.udp.is_empty() {
        out.push(ConfigWarning {
            key: "capture",
            problem: "has no source, so `apisensor run` would refuse to start (replay is fine)"
                .into(),
            fix: "add a [[capture.interfaces]] table with `name = \"eth1\"` or a [[capture.udp]] table with `listen` and `encapsulation`",
        });
    }
    let known = (!c.interfaces.is_empty())
        .then(crate::capture::live::interface_states)
        .and_then(Result::ok);
    if let Some(known) = known {
        for iface in &c.interfaces {
            if known.iter().any(|(name, up)| *name == iface.name && !up) {
                out.push(ConfigWarning {
                    key: "capture.interfaces.name",
                    problem: format!("{:?} is down: its capture sees nothing until it is up", iface.name),
                    fix: "bring it up (`ip link set IFACE up`), e.g. in the unit that sets up the mirror port",
                });
            }
        }
    }
    if let Some(listen) = settings.service.metrics_listen.filter(every_interface) {
        out.push(ConfigWarning {
            key: "service.metrics_listen",
            problem: format!(
                "{listen} listens on every interface: anyone who reaches port {} reads the sensor's counters",
                listen.port()
            ),
            fix: "bind it to 127.0.0.1 or a management address, e.g. \"127.0.0.1:9464\"",
        });
    }
    for udp in c.udp.iter().filter(|u| every_interface(&u.listen)) {
        out.push(ConfigWarning {
            key: "capture.udp.listen",
            problem: format!(
                "{} listens on every interface: any host that reaches port {} can feed the sensor traffic of its choosing",
                udp.listen,
                udp.listen.port()
            ),
            fix: "bind it to the address the mirror session sends to, or allow only the mirror sources in the host firewall",
        });
    }
    for (index, sink) in settings.events.sinks.iter().enumerate() {
        if let Some(destination) = cleartext_destination(sink) {
            out.push(ConfigWarning {
                key: "events.sinks",
                problem: format!(
                    "(sink {index}, type {}) sends events in cleartext to {destination}; events carry client addresses, principals and (redacted) evidence of credentials",
                    sink.kind.as_str()
                ),
                fix: "use TLS: tls = true (fluent, syslog), an https:// url (webhook), a tls:// address (nats); or send to a collector on this host",
            });
        }
    }
    out
}

fn every_interface(addr: &SocketAddr) -> bool {
    addr.ip().is_unspecified()
}

/// The remote host a sink sends to without TLS, if any (a collector on
/// this host is not on the wire).
fn cleartext_destination(sink: &crate::config::SinkSettings) -> Option<String> {
    let host = match sink.kind {
        SinkType::Fluent | SinkType::Syslog if sink.tls != Some(true) => {
            crate::forward::net::host_of(sink.address.as_deref()?).to_owned()
        }
        SinkType::Webhook => {
            let url = sink.url.as_deref()?;
            let (tls, host, _, _) = crate::forward::webhook::parse_url(url).ok()?;
            if tls {
                return None;
            }
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        }
        SinkType::Nats => {
            let address = sink.address.as_deref()?;
            // async-nats speaks TLS for tls:// and for servers that demand it;
            // nats:// and a bare host:port start in cleartext.
            if address.starts_with("tls://") {
                return None;
            }
            let rest = address.split_once("://").map_or(address, |(_, r)| r);
            let authority = rest.split('/').next().unwrap_or(rest);
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            crate::forward::net::host_of(authority).to_owned()
        }
        _ => return None,
    };
    (!is_loopback(&host)).then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(toml: &str) -> Vec<ConfigWarning> {
        warnings(&Settings::from_toml(toml, "t").unwrap())
    }

    #[test]
    fn cleartext_sinks_to_other_hosts_are_warned_about() {
        let w = warned(
            "[[events.sinks]]\ntype = \"syslog\"\naddress = \"siem.example.com:514\"\n\
             [[events.sinks]]\ntype = \"syslog\"\naddress = \"127.0.0.1:514\"\n\
             [[events.sinks]]\ntype = \"webhook\"\nurl = \"http://hooks.example.com/x\"\n\
             [[events.sinks]]\ntype = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n\
             [[events.sinks]]\ntype = \"nats\"\naddress = \"nats://bus.example.com:4222\"\n\
             [[events.sinks]]\ntype = \"nats\"\naddress = \"tls://bus.example.com:4222\"\n\
             [[events.sinks]]\ntype = \"fluent\"\naddress = \"[::1]:24224\"\n\
             [[events.sinks]]\ntype = \"fluent\"\naddress = \"logs.example.com:24224\"\ntls = true\n",
        );
        let sinks: Vec<&str> = w
            .iter()
            .filter(|w| w.key == "events.sinks")
            .map(|w| w.problem.as_str())
            .collect();
        assert_eq!(sinks.len(), 3, "{sinks:?}");
        assert!(sinks[0].starts_with("(sink 0,") && sinks[0].contains("siem.example.com"));
        assert!(sinks[1].starts_with("(sink 2,") && sinks[1].contains("hooks.example.com"));
        assert!(sinks[2].starts_with("(sink 4,") && sinks[2].contains("bus.example.com"));
    }

    #[test]
    fn listeners_on_every_interface_are_warned_about() {
        let w = warned(
            "[service]\nmetrics_listen = \"0.0.0.0:9464\"\n\
             [[capture.udp]]\nlisten = \"[::]:4789\"\nencapsulation = \"vxlan\"\n\
             [[capture.udp]]\nlisten = \"10.0.0.5:6081\"\nencapsulation = \"geneve\"\n",
        );
        let keys: Vec<&str> = w.iter().map(|w| w.key).collect();
        assert_eq!(
            keys,
            ["service.metrics_listen", "capture.udp.listen"],
            "{w:?}"
        );
        assert!(w[1].problem.contains("[::]:4789"), "{w:?}");
        let quiet = warned("[service]\nmetrics_listen = \"127.0.0.1:9464\"\n");
        assert!(
            quiet.iter().all(|w| w.key == "capture"),
            "only the missing source: {quiet:?}"
        );
    }

    #[test]
    fn ca_file_must_hold_a_pem_certificate() {
        let dir = std::env::temp_dir().join(format!("apisensor-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_only = dir.join("key.pem");
        std::fs::write(
            &key_only,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let der = dir.join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01, 0x0a]).unwrap();
        for (path, says) in [
            (dir.join("missing.pem"), "cannot be read"),
            (key_only, "no PEM certificate"),
            (der, "no PEM certificate"),
            (dir.clone(), "is a directory"),
        ] {
            let problem = check_ca_file(path.to_str().unwrap()).unwrap_err();
            assert!(problem.contains(says), "{path:?}: {problem}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
