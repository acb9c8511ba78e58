//! TLS for the stream sinks (`fluent`, `syslog`): a CA and a server
//! certificate for localhost / 127.0.0.1 are generated with rcgen, and a
//! rustls server in the test speaks the sink's protocol, so whatever it
//! decodes arrived over an authenticated TLS session.
//!
//! - With `tls = true` and `ca_file` = the test CA, `sink-test` delivers
//!   every event (ids checked) and the sink acks them all. The fluent sink
//!   connects by name (`localhost`, sent as SNI), the syslog sink by IP
//!   (certificate checked against the IP SAN, no SNI).
//! - Without `ca_file` (system roots only) the client refuses the server's
//!   certificate: the server sees only failed handshakes, nothing is
//!   delivered, the sink retries and `sink-test` exits 2 with the events
//!   still spooled. Adding the CA then drains that spool (`--count 0`).

mod fwd;
mod gen;
mod support;

use fwd::{last_value, sink_test, tally, write_config};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rmpv::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    ServerConfig, ServerConnection, StreamOwned,
};

const COUNT: u64 = 200;
const TAG: &str = "apisensor.tls";

/// A test CA (PEM written to `dir/ca.pem`) and a rustls server config whose
/// certificate it signed, for DNS `localhost` and IP 127.0.0.1.
fn pki(dir: &Path) -> (PathBuf, Arc<ServerConfig>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "apisensor forward_tls test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();

    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), CertificateDer::from(ca.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca_path, Arc::new(config))
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    /// RFC 5424 messages, octet-counted (`<len> <msg>`).
    Syslog,
    /// Fluent Forward PackedForward, `{"ack": chunk}` answered.
    Fluent,
}

/// The sink counter that counts delivered events: plain TCP syslog has no
/// acknowledgement, so its writes are `unconfirmed`, never `acked`.
fn delivered_key(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Syslog => "unconfirmed=",
        Protocol::Fluent => "acked=",
    }
}

/// What the TLS server saw.
#[derive(Default, Debug)]
struct Seen {
    /// Completed handshakes: (SNI, protocol version).
    handshakes: Vec<(Option<String>, String)>,
    /// Handshakes that failed, with the server-side error.
    handshake_errors: Vec<String>,
    /// Event ids decoded from the TLS plaintext.
    ids: Vec<String>,
    /// Fluent chunks acknowledged.
    acks: u64,
    /// Anything the decoder rejected.
    protocol_errors: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

/// A TLS server on a loopback port, one thread per connection.
fn tls_server(config: Arc<ServerConfig>, protocol: Protocol) -> (u16, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Shared::default();
    let shared = Arc::clone(&seen);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, seen) = (Arc::clone(&config), Arc::clone(&shared));
            std::thread::spawn(move || serve(tcp, config, protocol, &seen));
        }
    });
    (port, seen)
}

fn serve(mut tcp: TcpStream, config: Arc<ServerConfig>, protocol: Protocol, seen: &Shared) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let mut conn = ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            seen.lock().unwrap().handshake_errors.push(e.to_string());
            return;
        }
    }
    let version = format!("{:?}", conn.protocol_version());
    let sni = conn.server_name().map(str::to_owned);
    seen.lock().unwrap().handshakes.push((sni, version));
    let stream = StreamOwned::new(conn, tcp);
    match protocol {
        Protocol::Syslog => read_syslog(stream, seen),
        Protocol::Fluent => read_fluent(stream, seen),
    }
}

/// Octet-counted frames until the client goes away.
fn read_syslog(stream: StreamOwned<ServerConnection, TcpStream>, seen: &Shared) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut len = Vec::new();
        match reader.read_until(b' ', &mut len) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(n) = std::str::from_utf8(&len[..len.len() - 1])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            seen.lock()
                .unwrap()
                .protocol_errors
                .push(format!("bad frame length {len:?}"));
            return;
        };
        let mut msg = vec![0; n];
        if reader.read_exact(&mut msg).is_err() {
            seen.lock()
                .unwrap()
                .protocol_errors
                .push(format!("frame of {n} bytes cut short"));
            return;
        }
        let msg = String::from_utf8_lossy(&msg);
        match syslog_id(&msg) {
            Ok(id) => seen.lock().unwrap().ids.push(id),
            Err(e) => seen.lock().unwrap().protocol_errors.push(e),
        }
    }
}

/// The event id of one RFC 5424 + CEF message: the `id` SD param, which
/// must equal the CEF `externalId`.
fn syslog_id(msg: &str) -> Result<String, String> {
    if !msg.starts_with('<') || !msg.contains(">1 ") {
        return Err(format!("not RFC 5424: {msg}"));
    }
    let sd = msg
        .split_once("[apisensor@32473 id=\"")
        .and_then(|(_, r)| r.split_once('"'))
        .map(|(id, _)| id)
        .ok_or_else(|| format!("no id SD param: {msg}"))?;
    let cef = msg
        .split_once(" CEF:0|apisensor|")
        .and_then(|(_, r)| r.split_once(" externalId="))
        .and_then(|(_, r)| r.split(' ').next())
        .ok_or_else(|| format!("no CEF externalId: {msg}"))?;
    if sd != cef {
        return Err(format!("SD id {sd} != externalId {cef}"));
    }
    Ok(sd.to_owned())
}

fn map_get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// PackedForward messages until the client goes away; each `chunk` acked.
fn read_fluent(mut stream: StreamOwned<ServerConnection, TcpStream>, seen: &Shared) {
    loop {
        // EOF (or the client dropping the connection) ends the session.
        let Ok(msg) = rmpv::decode::read_value(&mut stream) else {
            return;
        };
        let (ids, chunk) = match packed_forward(&msg) {
            Ok(decoded) => decoded,
            Err(e) => {
                seen.lock().unwrap().protocol_errors.push(e);
                return;
            }
        };
        seen.lock().unwrap().ids.extend(ids);
        let Some(chunk) = chunk else { continue };
        let ack = Value::Map(vec![(Value::from("ack"), Value::from(chunk))]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &ack).unwrap();
        if stream.write_all(&out).and_then(|_| stream.flush()).is_err() {
            return;
        }
        seen.lock().unwrap().acks += 1;
    }
}

/// `[tag, <bin: [EventTime, record]...>, {"size": n, "chunk": id}]`:
/// the records' ids and the chunk id.
fn packed_forward(msg: &Value) -> Result<(Vec<String>, Option<String>), String> {
    let items = msg.as_array().ok_or("message is not an array")?;
    let [tag, entries, option] = items.as_slice() else {
        return Err(format!("message has {} items, not 3", items.len()));
    };
    if tag.as_str() != Some(TAG) {
        return Err(format!("tag {tag}"));
    }
    let entries = entries.as_slice().ok_or("entries are not bin")?;
    let mut cursor = std::io::Cursor::new(entries);
    let mut ids = Vec::new();
    while (cursor.position() as usize) < entries.len() {
        let entry = rmpv::decode::read_value(&mut cursor).map_err(|e| e.to_string())?;
        let Some([time, record]) = entry.as_array().map(Vec::as_slice) else {
            return Err(format!("entry is not [time, record]: {entry}"));
        };
        match time.as_ext() {
            Some((0, data)) if data.len() == 8 => {}
            _ => return Err(format!("time is not EventTime: {time}")),
        }
        let id = map_get(record, "id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("record without id: {record}"))?;
        ids.push(id.to_owned());
    }
    let size = map_get(option, "size").and_then(Value::as_u64);
    if size != Some(ids.len() as u64) {
        return Err(format!("size {size:?} but {} entries", ids.len()));
    }
    let chunk = map_get(option, "chunk")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((ids, chunk))
}

/// The sink table: TLS on, the CA file if given, quick retries.
fn sink_toml(protocol: Protocol, address: &str, ca_file: Option<&Path>) -> String {
    let mut toml = match protocol {
        Protocol::Syslog => {
            format!("[[events.sinks]]\ntype = \"syslog\"\naddress = \"{address}\"\n")
        }
        Protocol::Fluent => {
            format!(
                "[[events.sinks]]\ntype = \"fluent\"\naddress = \"{address}\"\ntag = \"{TAG}\"\n"
            )
        }
    };
    toml.push_str("tls = true\nretry_initial_ms = 100\nretry_max_ms = 500\ntimeout_ms = 5000\n");
    if let Some(ca) = ca_file {
        toml.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    toml
}

/// `apisensor sink-test --count <count> --rate 0`; (exit code, stderr path, stderr text).
fn run(config: &Path, dir: &Path, name: &str, count: u64) -> (Option<i32>, PathBuf, String) {
    let count = count.to_string();
    let (mut child, stderr) = sink_test(config, dir, name, &["--count", &count, "--rate", "0"]);
    let code = child.wait(Duration::from_secs(90));
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    (code, stderr, log)
}

/// Waits until the server has decoded `n` ids (delivery is written, then read).
fn wait_for_ids(seen: &Shared, n: usize) {
    let start = Instant::now();
    while seen.lock().unwrap().ids.len() < n && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every one of the COUNT events decoded exactly once, nothing rejected.
fn assert_all_delivered(seen: &Shared, what: &str) {
    wait_for_ids(seen, COUNT as usize);
    let seen = seen.lock().unwrap();
    assert!(seen.protocol_errors.is_empty(), "{what}: {seen:?}");
    let (missing, duplicates) = tally(&seen.ids, "sink-test", COUNT);
    assert!(
        missing.is_empty(),
        "{what}: {} of {COUNT} events missing: {missing:?}",
        missing.len()
    );
    assert_eq!(duplicates, 0, "{what}: duplicates");
    assert_eq!(seen.ids.len() as u64, COUNT, "{what}");
}

fn delivers_over_tls(protocol: Protocol, name: &str, host: &str) -> Seen {
    let dir = support::scratch_dir(name);
    let (ca, server) = pki(&dir);
    let (port, seen) = tls_server(server, protocol);
    let sinks = sink_toml(protocol, &format!("{host}:{port}"), Some(&ca));
    let config = write_config(&dir, "", &sinks);
    let (code, stderr, log) = run(&config, &dir, "sink-test", COUNT);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        last_value(&stderr, delivered_key(protocol)),
        Some(COUNT),
        "{log}"
    );
    assert_eq!(last_value(&stderr, "lag="), Some(0), "{log}");
    assert_all_delivered(&seen, name);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(!seen.handshakes.is_empty(), "{seen:?}");
    assert!(seen.handshake_errors.is_empty(), "{seen:?}\n{log}");
    for (_, version) in &seen.handshakes {
        assert_eq!(version, "Some(TLSv1_3)", "{seen:?}");
    }
    eprintln!(
        "{name}: {} events over {} TLS session(s) {:?}, retried={:?}",
        seen.ids.len(),
        seen.handshakes.len(),
        seen.handshakes[0],
        last_value(&stderr, "retried=")
    );
    seen
}

#[test]
fn syslog_over_tls_with_the_ca_file_delivers_every_event() {
    // By IP: the certificate must carry 127.0.0.1 as an IP SAN; no SNI.
    let seen = delivers_over_tls(Protocol::Syslog, "forward_tls_syslog", "127.0.0.1");
    assert!(seen.handshakes.iter().all(|(sni, _)| sni.is_none()));
}

#[test]
fn fluent_over_tls_with_the_ca_file_delivers_and_acks_every_event() {
    // By name: SNI "localhost", checked against the DNS SAN.
    let seen = delivers_over_tls(Protocol::Fluent, "forward_tls_fluent", "localhost");
    assert!(
        seen.handshakes
            .iter()
            .all(|(sni, _)| sni.as_deref() == Some("localhost")),
        "{seen:?}"
    );
    // 200 events in batches of 100 (the default): every chunk was answered.
    assert!(seen.acks >= 2, "{seen:?}");
}

/// Without the CA the handshake fails and nothing is delivered; events
/// stay spooled and go out once the CA is configured.
fn refuses_unknown_ca(protocol: Protocol, name: &str) {
    let dir = support::scratch_dir(name);
    let (ca, server) = pki(&dir);
    let (port, seen) = tls_server(server, protocol);
    let address = format!("127.0.0.1:{port}");
    let config = write_config(
        &dir,
        "drain_timeout_secs = 2",
        &sink_toml(protocol, &address, None),
    );
    let (code, stderr, log) = run(&config, &dir, "no-ca", COUNT);
    // sink-test's verdict on undelivered events: exit 2 and a message.
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("some events are still spooled"), "{log}");
    assert_eq!(
        last_value(&stderr, delivered_key(protocol)),
        Some(0),
        "{log}"
    );
    assert_eq!(last_value(&stderr, "lag="), Some(COUNT), "{log}");
    let retried = last_value(&stderr, "retried=").unwrap_or(0);
    assert!(retried > 0, "no retries counted: {log}");
    // The client logs why (tracing at warn).
    assert!(log.contains("UnknownIssuer"), "{log}");
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.ids.is_empty(),
            "delivered without trusting the CA: {seen:?}"
        );
        assert!(seen.handshakes.is_empty(), "{seen:?}");
        assert!(!seen.handshake_errors.is_empty(), "{seen:?}");
        // The client refused the certificate with the TLS alert for it; the
        // attempt in flight at the drain deadline may just be cut off.
        let refused = seen
            .handshake_errors
            .iter()
            .filter(|e| e.contains("UnknownCA"))
            .count();
        assert!(refused > 0, "{seen:?}");
        assert!(
            seen.handshake_errors
                .iter()
                .all(|e| e.contains("UnknownCA") || e.contains("end of file")),
            "{seen:?}"
        );
        eprintln!(
            "{name}: {refused} handshakes refused ({}), retried={retried}, lag={COUNT}",
            seen.handshake_errors[0]
        );
    }
    // Same spool, CA added: the spooled events are delivered, nothing new emitted.
    write_config(
        &dir,
        "drain_timeout_secs = 2",
        &sink_toml(protocol, &address, Some(&ca)),
    );
    let (code, stderr, log) = run(&config, &dir, "drain", 0);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        last_value(&stderr, delivered_key(protocol)),
        Some(COUNT),
        "{log}"
    );
    assert_eq!(last_value(&stderr, "lag="), Some(0), "{log}");
    assert_all_delivered(&seen, name);
}

#[test]
fn syslog_without_the_ca_fails_the_handshake_and_keeps_events_spooled() {
    refuses_unknown_ca(Protocol::Syslog, "forward_tls_syslog_no_ca");
}

#[test]
fn fluent_without_the_ca_fails_the_handshake_and_keeps_events_spooled() {
    refuses_unknown_ca(Protocol::Fluent, "forward_tls_fluent_no_ca");
}

#[test]
fn syslog_id_parser_in_this_test_checks_both_copies() {
    let msg = "<86>1 2024-01-01T00:00:00.000Z s apisensor 1 r [apisensor@32473 id=\"ab\" kind=\"health\"] CEF:0|apisensor|apisensor|0.1.0|r|t|1|rt=1 externalId=ab dvchost=s";
    assert_eq!(syslog_id(msg), Ok("ab".to_owned()));
    assert!(syslog_id(&msg.replace("externalId=ab", "externalId=cd")).is_err());
}
