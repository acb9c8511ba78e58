//! The `syslog` sink: RFC 5424 messages with a CEF payload over TCP or TLS,
//! octet-counted framing (RFC 6587 §3.4.1 / RFC 5425), for QRadar, Splunk,
//! ArcSight and any rsyslog/syslog-ng relay. TCP has no application ack:
//! a write that returned means only that the kernel took the bytes, so the
//! forwarder counts these events as `unconfirmed`, never as acknowledged
//! (`protocol = "relp"`, in [`super::relp`], is the acknowledged transport).
//! Before each batch the connection is checked for a peer that already
//! closed it, which narrows (but cannot close) the window in which a
//! receiver's death loses events.

use super::net::{self, Conn, Tls};
use super::{rfc3339_ms, SinkError};
use crate::config::SinkSettings;
use crate::event::{Event, Severity};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest CEF `msg` value; receivers often cap a message at 8 KiB.
const MAX_MSG_CHARS: usize = 1024;

pub struct SyslogSink {
    address: String,
    tls: Option<Tls>,
    facility: u8,
    timeout: Duration,
    conn: Option<Box<dyn Conn>>,
}

/// CEF header field: `\` and `|` escaped, line breaks replaced by spaces.
pub fn cef_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// CEF extension value: `\`, `=` escaped, line breaks as `\n` / `\r`.
pub fn cef_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The CEF line of an event.
pub fn cef(event: &Event) -> String {
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", event.time.to_string()),
        ("externalId", event.id.clone()),
        ("dvchost", event.sensor.clone()),
        ("cat", event.kind.as_str().to_owned()),
        ("cnt", event.count.to_string()),
    ];
    if let Some(owasp) = event.owasp {
        ext.push(("cs1Label", "owasp".into()));
        ext.push(("cs1", format!("{} {}", owasp.id(), owasp.name())));
    }
    if let Some(actor) = &event.actor {
        if let Some(ip) = actor.ip {
            ext.push(("src", ip.to_string()));
        }
        if let Some(p) = &actor.principal {
            ext.push(("suser", p.clone()));
        }
    }
    if let Some(src) = &event.src_endpoint {
        ext.push(("spt", src.port.to_string()));
    }
    if let Some(dst) = &event.dst_endpoint {
        ext.push(("dst", dst.ip.to_string()));
        ext.push(("dpt", dst.port.to_string()));
    }
    if let Some(ep) = &event.endpoint {
        ext.push(("requestMethod", ep.method.clone()));
        ext.push(("request", format!("{}{}", ep.host, ep.path)));
    }
    ext.push(("cs2Label", "confidence".into()));
    ext.push(("cs2", event.confidence.to_string()));
    let text = if event.text.what_happened.is_empty() {
        &event.title
    } else {
        &event.text.what_happened
    };
    ext.push(("msg", text.chars().take(MAX_MSG_CHARS).collect()));
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_value(&v)))
        .collect();
    format!(
        "CEF:0|apisensor|apisensor|{}|{}|{}|{}|{}",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(&event.rule),
        cef_header(&event.title),
        event.severity.cef(),
        ext.join(" ")
    )
}

/// printable US-ASCII without spaces, at most `max` characters, "-" if empty.
fn header_token(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

/// One RFC 5424 message (without framing).
pub fn rfc5424(event: &Event, facility: u8) -> String {
    let severity = match event.severity {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    };
    format!(
        "<{}>1 {} {} apisensor {} {} [apisensor@32473 id=\"{}\" kind=\"{}\"] {}",
        u32::from(facility) * 8 + severity,
        rfc3339_ms(event.time),
        header_token(&event.sensor, 255),
        std::process::id(),
        header_token(&event.rule, 32),
        header_token(&event.id, 64),
        event.kind.as_str(),
        cef(event)
    )
}

impl SyslogSink {
    pub fn new(settings: &SinkSettings) -> Result<SyslogSink, String> {
        let tls = Tls::for_sink(settings)?;
        Ok(SyslogSink {
            address: settings.address.clone().unwrap_or_default(),
            tls,
            facility: settings.facility.unwrap_or(10),
            timeout: Duration::from_millis(settings.timeout_ms),
            conn: None,
        })
    }

    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub async fn send(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        let mut frames = Vec::with_capacity(batch.len() * 600);
        for event in batch {
            let msg = rfc5424(event, self.facility);
            frames.extend_from_slice(format!("{} ", msg.len()).as_bytes());
            frames.extend_from_slice(msg.as_bytes());
        }
        if let Some(conn) = self.conn.as_mut() {
            if peer_closed(conn).await {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            self.conn = Some(net::connect(&self.address, self.tls.as_ref(), self.timeout).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SinkError::Transient("not connected".into()));
        };
        conn.write_all(&frames).await?;
        conn.flush().await?;
        Ok(())
    }
}

/// True when the receiver has closed the connection (or reset it): a
/// syslog receiver never sends, so anything readable now is an EOF or an
/// error. Checked without waiting.
async fn peer_closed(conn: &mut Box<dyn Conn>) -> bool {
    let mut probe = [0u8; 64];
    match tokio::time::timeout(Duration::ZERO, conn.read(&mut probe)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Owasp};

    #[test]
    fn cef_escapes_header_and_extension() {
        assert_eq!(cef_header("a|b\\c\nd"), "a\\|b\\\\c d");
        assert_eq!(cef_value("x=1\\2\n|"), "x\\=1\\\\2\\n|");
        let mut e = Event::new(
            EventKind::Detection,
            "protocol.te_cl",
            "s 1",
            &["k"],
            1_700_000_000_123,
            Severity::High,
            "Both | headers".into(),
        );
        e.owasp = Some(Owasp::SecurityMisconfiguration);
        e.text.what_happened = "a=b".into();
        let line = rfc5424(&e, 10);
        assert!(
            line.starts_with("<83>1 2023-11-14T22:13:20.123Z s1 apisensor "),
            "{line}"
        );
        assert!(
            line.contains("|protocol.te_cl|Both \\| headers|8|rt=1700000000123 "),
            "{line}"
        );
        assert!(line.contains("msg=a\\=b"), "{line}");
        assert!(
            line.contains("cs1=API8:2023 Security Misconfiguration"),
            "{line}"
        );
    }
}
