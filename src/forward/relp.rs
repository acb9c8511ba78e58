//! The `syslog` sink with `protocol = "relp"`: the same RFC 5424 + CEF
//! messages as [`super::syslog`], carried by RELP (the Reliable Event
//! Logging Protocol of rsyslog's librelp, received by `imrelp`), where the
//! receiver answers every message. Plain TCP syslog cannot tell a message
//! the receiver took from one the kernel buffered for a peer that just
//! died; RELP can, so a batch counts as delivered only once every message
//! in it was answered `200`.
//!
//! Protocol (librelp `doc/relp.md`): frames are
//! `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. A session opens with command
//! `open` and offers `relp_version=0`, `relp_software=…`,
//! `commands=syslog`; the server's `rsp` (`200 OK` and its offers) must
//! include the `syslog` command. Each `syslog` command carries one message
//! with the next transaction number (1, 2, … per session); the server
//! answers with `rsp` and the same number, in order. `close` ends the
//! session; the server may send the hint `0 serverclose 0` before it goes
//! away. At most [`WINDOW`] messages are unanswered at a time; when a
//! session breaks, the messages already answered are reported as confirmed
//! and only the rest is sent again (at least once).

use super::syslog::rfc5424;
use super::SinkError;
use crate::config::SinkSettings;
use crate::event::Event;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Messages sent before waiting for their answers (librelp's default window).
pub const WINDOW: usize = 128;

/// Longest message sent: rsyslog's default `maxMessageSize` (8 KiB), which
/// `imrelp` also takes as its largest frame; a longer frame makes it drop
/// the session, and the message would be re-sent forever. Longer messages
/// are cut at a character boundary (the CEF `msg` is already capped, so
/// this only bites on unusually long titles or paths).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 - 64;

/// Largest frame accepted from the server (an `open` answer is ~100 bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// One frame received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: String,
    pub data: Vec<u8>,
}

/// Encodes one frame.
pub fn frame(txnr: u32, command: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    out.extend_from_slice(format!("{txnr} {command} {}", data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
    out
}

/// Parses one frame at the start of `buf`: Ok(Some((frame, consumed))),
/// Ok(None) when more bytes are needed, Err on a framing error.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    fn field(buf: &[u8], from: usize, max: usize) -> Result<Option<(&[u8], usize)>, String> {
        let rest = buf.get(from..).unwrap_or_default();
        match rest.iter().position(|&b| b == b' ' || b == b'\n') {
            Some(i) if i == 0 || i > max => Err("bad RELP header field".into()),
            Some(i) => Ok(Some((rest.get(..i).unwrap_or_default(), from + i))),
            None if rest.len() > max => Err("RELP header field too long".into()),
            None => Ok(None),
        }
    }
    let number = |digits: &[u8]| -> Result<u32, String> {
        if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "bad RELP number {:?}",
                String::from_utf8_lossy(digits)
            ));
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "bad RELP number".to_string())
    };
    let Some((txnr, at)) = field(buf, 0, 9)? else {
        return Ok(None);
    };
    let txnr = number(txnr)?;
    if buf.get(at) != Some(&b' ') {
        return Err("RELP frame without command".into());
    }
    let Some((command, at)) = field(buf, at + 1, 32)? else {
        return Ok(None);
    };
    if !command.iter().all(u8::is_ascii_alphabetic) {
        return Err("bad RELP command".into());
    }
    let command = String::from_utf8_lossy(command).into_owned();
    if buf.get(at) != Some(&b' ') {
        return Err("RELP frame without data length".into());
    }
    let Some((datalen, at)) = field(buf, at + 1, 9)? else {
        return Ok(None);
    };
    let datalen = number(datalen)? as usize;
    if datalen > MAX_RESPONSE_BYTES {
        return Err(format!("RELP frame of {datalen} bytes"));
    }
    let (data_start, trailer) = if datalen == 0 {
        (at, at)
    } else {
        if buf.get(at) != Some(&b' ') {
            return Err("RELP data not separated by a space".into());
        }
        (at + 1, at + 1 + datalen)
    };
    match buf.get(trailer) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            Frame {
                txnr,
                command,
                data: buf.get(data_start..trailer).unwrap_or_default().to_vec(),
            },
            trailer + 1,
        ))),
        Some(_) => Err("RELP frame without its LF trailer".into()),
    }
}

/// The status code of an `rsp` frame's data (`200 OK`, `500 …`).
fn status(data: &[u8]) -> Option<u16> {
    std::str::from_utf8(data.get(..3)?).ok()?.parse().ok()
}

/// `msg` cut to at most `max` bytes at a character boundary.
fn capped(msg: String, max: usize) -> String {
    if msg.len() <= max {
        return msg;
    }
    let mut end = max;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    msg.get(..end).unwrap_or_default().to_owned()
}

struct Session {
    conn: TcpStream,
    next_txnr: u32,
    buf: Vec<u8>,
}

impl Session {
    fn take_txnr(&mut self) -> u32 {
        let txnr = self.next_txnr;
        // Latched at 999,999,999, then 1 again (0 is for hints).
        self.next_txnr = if txnr >= 999_999_999 { 1 } else { txnr + 1 };
        txnr
    }

    /// The next frame from the server; a `serverclose` hint is an error.
    async fn read_frame(&mut self) -> Result<Frame, String> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf)? {
                self.buf.drain(..used);
                if frame.txnr == 0 && frame.command == "serverclose" {
                    return Err("the receiver closed the RELP session (serverclose)".into());
                }
                return Ok(frame);
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .conn
                .read(&mut chunk)
                .await
                .map_err(|e| format!("RELP read: {e}"))?;
            // librelp answers each message with its own small write, so
            // Nagle on its side holds the rest of a window's answers until
            // this side acknowledges the first: acknowledge at once instead
            // of after the 40 ms delayed-ACK timer (the kernel resets the
            // flag, hence after every read).
            let _ = self.conn.set_quickack(true);
            if n == 0 {
                return Err("the receiver closed the connection".into());
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    /// The answer to command `txnr`: Ok if `200`, else the error.
    async fn answer(&mut self, txnr: u32) -> Result<Frame, String> {
        let frame = self.read_frame().await?;
        if frame.command != "rsp" || frame.txnr != txnr {
            return Err(format!(
                "expected rsp {txnr} from the RELP receiver, got {} {}",
                frame.txnr, frame.command
            ));
        }
        match status(&frame.data) {
            Some(200) => Ok(frame),
            _ => Err(format!(
                "RELP receiver refused: {}",
                String::from_utf8_lossy(&frame.data)
            )),
        }
    }
}

pub struct RelpSink {
    address: String,
    facility: u8,
    timeout: Duration,
    session: Option<Session>,
}

impl RelpSink {
    pub fn new(settings: &SinkSettings) -> Result<RelpSink, String> {
        Ok(RelpSink {
            address: settings.address.clone().unwrap_or_default(),
            facility: settings.facility.unwrap_or(10),
            timeout: Duration::from_millis(settings.timeout_ms),
            session: None,
        })
    }

    pub fn reset(&mut self) {
        self.session = None;
    }

    async fn open(&mut self) -> Result<Session, String> {
        let conn = tokio::time::timeout(self.timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| format!("connect to {} timed out", self.address))?
            .map_err(|e| format!("connect to {}: {e}", self.address))?;
        let _ = conn.set_nodelay(true);
        let _ = conn.set_quickack(true);
        let mut session = Session {
            conn,
            next_txnr: 1,
            buf: Vec::new(),
        };
        let offers = format!(
            "relp_version=0\nrelp_software=apisensor,{}\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        let txnr = session.take_txnr();
        session
            .conn
            .write_all(&frame(txnr, "open", offers.as_bytes()))
            .await
            .map_err(|e| format!("RELP open: {e}"))?;
        session
            .conn
            .flush()
            .await
            .map_err(|e| format!("RELP open: {e}"))?;
        let answer = session.answer(txnr).await?;
        let offers = String::from_utf8_lossy(&answer.data);
        let syslog_offered = offers.lines().any(|line| {
            line.strip_prefix("commands=")
                .is_some_and(|cmds| cmds.split(',').any(|c| c.trim() == "syslog"))
        });
        if !syslog_offered {
            return Err(format!(
                "the RELP receiver does not offer the syslog command: {offers:?}"
            ));
        }
        Ok(session)
    }

    /// Sends the batch, at most [`WINDOW`] messages unanswered at a time.
    pub async fn send(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        let messages: Vec<String> = batch
            .iter()
            .map(|e| capped(rfc5424(e, self.facility), MAX_MESSAGE_BYTES))
            .collect();
        let mut confirmed = 0usize;
        let result = self.send_messages(&messages, &mut confirmed).await;
        match result {
            Ok(()) => Ok(()),
            Err(error) => {
                self.session = None;
                if confirmed == 0 {
                    Err(SinkError::Transient(error))
                } else {
                    Err(SinkError::Partial { confirmed, error })
                }
            }
        }
    }

    async fn send_messages(
        &mut self,
        messages: &[String],
        confirmed: &mut usize,
    ) -> Result<(), String> {
        if self.session.is_none() {
            self.session = Some(self.open().await?);
        }
        let Some(session) = self.session.as_mut() else {
            return Err("no RELP session".into());
        };
        for window in messages.chunks(WINDOW) {
            let mut out = Vec::with_capacity(window.iter().map(|m| m.len() + 24).sum());
            let mut txnrs = Vec::with_capacity(window.len());
            for msg in window {
                let txnr = session.take_txnr();
                txnrs.push(txnr);
                out.extend_from_slice(&frame(txnr, "syslog", msg.as_bytes()));
            }
            session
                .conn
                .write_all(&out)
                .await
                .map_err(|e| format!("RELP write: {e}"))?;
            session
                .conn
                .flush()
                .await
                .map_err(|e| format!("RELP write: {e}"))?;
            for txnr in txnrs {
                session.answer(txnr).await?;
                *confirmed += 1;
            }
        }
        Ok(())
    }

    /// Sends `close` and waits for its answer (the caller bounds the wait).
    pub async fn close(&mut self) {
        let Some(mut session) = self.session.take() else {
            return;
        };
        let txnr = session.take_txnr();
        if session
            .conn
            .write_all(&frame(txnr, "close", b""))
            .await
            .is_ok()
            && session.conn.flush().await.is_ok()
        {
            let _ = session.answer(txnr).await;
        }
        let _ = session.conn.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_and_parse() {
        assert_eq!(frame(1, "close", b""), b"1 close 0\n");
        assert_eq!(frame(7, "syslog", b"<1>x"), b"7 syslog 4 <1>x\n");
        let (f, used) = parse_frame(b"3 rsp 6 200 OK\n4 rsp").unwrap().unwrap();
        assert_eq!(
            f,
            Frame {
                txnr: 3,
                command: "rsp".into(),
                data: b"200 OK".to_vec()
            }
        );
        assert_eq!(used, 15);
        assert_eq!(status(&f.data), Some(200));
        let (hint, _) = parse_frame(b"0 serverclose 0\n").unwrap().unwrap();
        assert_eq!((hint.txnr, hint.command.as_str()), (0, "serverclose"));
        // Incomplete frames wait for more bytes.
        for partial in [
            &b"3"[..],
            b"3 rsp",
            b"3 rsp 6",
            b"3 rsp 6 200 O",
            b"3 rsp 6 200 OK",
        ] {
            assert_eq!(parse_frame(partial), Ok(None), "{partial:?}");
        }
        // Framing errors end the session.
        for bad in [
            &b"x rsp 0\n"[..],
            b"3 r5p 0\n",
            b"3 rsp 2 okX",
            b"1234567890 rsp 0\n",
        ] {
            assert!(parse_frame(bad).is_err(), "{bad:?}");
        }
        let open = frame(
            1,
            "rsp",
            b"200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n",
        );
        let (f, used) = parse_frame(&open).unwrap().unwrap();
        assert_eq!(used, open.len());
        assert!(String::from_utf8_lossy(&f.data).contains("commands=syslog"));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(5000);
        let cut = capped(long, MAX_MESSAGE_BYTES);
        assert!(cut.len() <= MAX_MESSAGE_BYTES && cut.len() >= MAX_MESSAGE_BYTES - 1);
        assert_eq!(capped("short".into(), 10), "short");
    }
}
