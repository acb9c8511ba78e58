//! The `file` sink: JSON lines or MessagePack appended to a file, rotated
//! by size (`path` → `path.1` → … `path.<rotate_keep>`). Acknowledged once
//! flushed (and fsynced with `events.fsync = "always"`). Files are created
//! 0640 and handed to the service user (`service.user`).

use super::SinkError;
use crate::config::{EventSettings, FsyncPolicy, SinkFormat, SinkSettings};
use crate::event::Event;
use crate::files::{self, FileOwner, GROUP_READABLE_MODE};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

pub struct FileSink {
    path: PathBuf,
    format: SinkFormat,
    rotate_bytes: u64,
    rotate_keep: usize,
    fsync: bool,
    owner: Option<FileOwner>,
    out: Option<(BufWriter<File>, u64)>,
}

impl FileSink {
    pub fn new(
        settings: &SinkSettings,
        events: &EventSettings,
        owner: Option<FileOwner>,
    ) -> FileSink {
        FileSink {
            path: PathBuf::from(settings.path.clone().unwrap_or_default()),
            format: settings.format.unwrap_or(SinkFormat::Json),
            rotate_bytes: settings.rotate_bytes.unwrap_or(100 << 20).max(1),
            rotate_keep: settings.rotate_keep.unwrap_or(5),
            fsync: events.fsync == FsyncPolicy::Always,
            owner,
            out: None,
        }
    }

    pub fn reset(&mut self) {
        self.out = None;
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out = None;
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.rotate_keep == 0 {
            return fs::remove_file(&self.path);
        }
        let _ = fs::remove_file(numbered(self.rotate_keep));
        for n in (1..self.rotate_keep).rev() {
            let _ = fs::rename(numbered(n), numbered(n + 1));
        }
        fs::rename(&self.path, numbered(1))
    }

    pub fn send(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        for event in batch {
            let mut bytes = match self.format {
                SinkFormat::Json => serde_json::to_vec(event),
                SinkFormat::Msgpack => rmp_serde::to_vec_named(event)
                    .map_err(|e| serde_json::Error::io(std::io::Error::other(e.to_string()))),
            }
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
            if self.format == SinkFormat::Json {
                bytes.push(b'\n');
            }
            if self
                .out
                .as_ref()
                .is_some_and(|(_, size)| *size > 0 && size + bytes.len() as u64 > self.rotate_bytes)
            {
                if let Some((mut w, _)) = self.out.take() {
                    w.flush()?;
                }
                self.rotate()?;
            }
            if self.out.is_none() {
                if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir)?;
                }
                let file = files::open(
                    &self.path,
                    OpenOptions::new().create(true).append(true),
                    GROUP_READABLE_MODE,
                    self.owner,
                )?;
                let size = file.metadata()?.len();
                self.out = Some((BufWriter::with_capacity(256 * 1024, file), size));
            }
            if let Some((w, size)) = self.out.as_mut() {
                w.write_all(&bytes)?;
                *size += bytes.len() as u64;
            }
        }
        if let Some((w, _)) = self.out.as_mut() {
            w.flush()?;
            if self.fsync {
                w.get_ref().sync_data()?;
            }
        }
        Ok(())
    }
}
