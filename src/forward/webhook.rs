//! The `webhook` sink: HTTP/1.1 POST of JSON over TCP or TLS, one request
//! per batch (`generic`, `slack`) or per event (`ticket`). 2xx is success;
//! 5xx, 408, 429, connection errors and timeouts are retried; any other
//! status drops the batch (counted), since sending it again cannot help.
//! HTTP is hand-rolled (one request per connection, `Connection: close`):
//! the sink needs nothing more, and it keeps an HTTP client stack out of
//! the dependency tree.

use super::net::{self, Tls};
use super::SinkError;
use crate::config::{SinkSettings, WebhookTemplate};
use crate::event::Event;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct WebhookSink {
    address: String,
    host_header: String,
    path: String,
    tls: Option<Tls>,
    template: WebhookTemplate,
    project: String,
    timeout: Duration,
}

/// (tls, host, port, path) of an http:// or https:// URL.
pub fn parse_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.to_owned(),
            p.parse::<u16>()
                .map_err(|e| format!("port in {url:?}: {e}"))?,
        ),
        _ => (authority.to_owned(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    Ok((tls, host, port, path.to_owned()))
}

/// Request bodies for a batch under `template`.
pub fn bodies(template: WebhookTemplate, project: &str, batch: &[Event]) -> Vec<Value> {
    match template {
        WebhookTemplate::Generic => vec![json!({ "events": batch })],
        WebhookTemplate::Slack => {
            let lines: Vec<String> = batch
                .iter()
                .map(|e| {
                    let owasp = e.owasp.map(|o| format!(" ({})", o.id())).unwrap_or_default();
                    format!("*[{}]* {}{} — `{}`", e.severity.as_str(), e.title, owasp, e.id)
                })
                .collect();
            let blocks: Vec<Value> = batch
                .iter()
                .take(40)
                .map(|e| {
                    json!({
                        "type": "section",
                        "text": {"type": "mrkdwn", "text": format!(
                            "*[{}] {}*\n{}\n_What to do:_ {}",
                            e.severity.as_str(), e.title, e.text.what_happened, e.text.what_to_do
                        )}
                    })
                })
                .collect();
            vec![json!({ "text": lines.join("\n"), "blocks": blocks })]
        }
        WebhookTemplate::Ticket => batch
            .iter()
            .map(|e| {
                let priority = match e.severity {
                    crate::event::Severity::Critical => "Highest",
                    crate::event::Severity::High => "High",
                    crate::event::Severity::Medium => "Medium",
                    crate::event::Severity::Low => "Low",
                    crate::event::Severity::Info => "Lowest",
                };
                let mut labels = vec![format!("apisensor-{}", e.id), e.rule.clone()];
                if let Some(o) = e.owasp {
                    labels.push(o.id().to_owned());
                }
                json!({
                    "fields": {
                        "project": {"key": project},
                        "issuetype": {"name": "Bug"},
                        "summary": e.title,
                        "priority": {"name": priority},
                        "labels": labels,
                        "description": format!(
                            "What happened: {}\n\nWhy it matters: {}\n\nWhat to do: {}\n\nEvent id: {} (sensor {})",
                            e.text.what_happened, e.text.why_it_matters, e.text.what_to_do, e.id, e.sensor
                        ),
                    }
                })
            })
            .collect(),
    }
}

impl WebhookSink {
    pub fn new(settings: &SinkSettings) -> Result<WebhookSink, String> {
        let url = settings.url.clone().unwrap_or_default();
        let (tls, host, port, path) = parse_url(&url)?;
        let tls = if tls {
            Some(Tls::new(
                settings.ca_file.as_deref(),
                Some(settings.server_name.as_deref().unwrap_or(&host)),
            )?)
        } else {
            None
        };
        let default_port = if tls.is_some() { 443 } else { 80 };
        let host_header = if port == default_port {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        Ok(WebhookSink {
            address: format!("{host}:{port}"),
            host_header,
            path,
            tls,
            template: settings.template.unwrap_or(WebhookTemplate::Generic),
            project: settings.project.clone().unwrap_or_else(|| "SEC".into()),
            timeout: Duration::from_millis(settings.timeout_ms),
        })
    }

    async fn post(&self, body: &[u8]) -> Result<(), SinkError> {
        let mut conn = net::connect(&self.address, self.tls.as_ref(), self.timeout).await?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: apisensor/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host_header,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(body).await?;
        conn.flush().await?;
        let mut response = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        // The status line is all that is needed.
        while !response.windows(2).any(|w| w == b"\r\n") && response.len() < 8192 {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&response);
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| SinkError::Transient("no HTTP status line in the response".into()))?;
        match status {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(SinkError::Transient(format!("HTTP {status}"))),
            _ => Err(SinkError::Permanent(format!("HTTP {status}"))),
        }
    }

    pub async fn send(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        for body in bodies(self.template, &self.project, batch) {
            let bytes =
                serde_json::to_vec(&body).map_err(|e| SinkError::Permanent(e.to_string()))?;
            self.post(&bytes).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/hook").unwrap(),
            (false, "127.0.0.1".into(), 8080, "/hook".into())
        );
        assert_eq!(
            parse_url("https://hooks.slack.com").unwrap(),
            (true, "hooks.slack.com".into(), 443, "/".into())
        );
        assert!(parse_url("ftp://x").is_err());
    }
}
