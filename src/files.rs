//! Files the sensor creates: none is world-readable, and every file a
//! service that drops root (`service.user`) must write later is owned by
//! that user from the start. Owns the creation modes and the hand-over of
//! ownership; knows nothing about what the files hold.
//!
//! The modes are applied when a file is created (the process umask can only
//! narrow them); a file that already existed keeps its mode, since someone
//! chose it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// State only the sensor reads back: spool segments and cursors, the
/// baseline snapshot.
pub const PRIVATE_MODE: u32 = 0o600;

/// Outputs an operator's tools read through the group: exchanges, event
/// files, `--stats-json`, inventory and OpenAPI reports.
pub const GROUP_READABLE_MODE: u32 = 0o640;

/// The user (and its primary group) that created files are handed to,
/// because the process switches to it after they are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOwner {
    pub uid: u32,
    pub gid: u32,
}

/// Opens `path` with `options`; a file created by this call gets `mode`.
/// With an `owner`, the file is handed to it while this process can still
/// do so (root); once privileges are dropped, files are created as that
/// user anyway.
pub fn open(
    path: &Path,
    options: &mut OpenOptions,
    mode: u32,
    owner: Option<FileOwner>,
) -> io::Result<File> {
    let file = options.mode(mode).open(path)?;
    give_to(&file, owner)?;
    Ok(file)
}

/// Hands an open file to `owner` when this process is root.
pub fn give_to(file: &File, owner: Option<FileOwner>) -> io::Result<()> {
    if let Some(owner) = owner {
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::fchown(file, Some(owner.uid), Some(owner.gid))?;
        }
    }
    Ok(())
}

/// Hands a path (a directory the sensor created or keeps its state in) to
/// `owner` when this process is root.
pub fn give_path_to(path: &Path, owner: Option<FileOwner>) -> io::Result<()> {
    if let Some(owner) = owner {
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))?;
        }
    }
    Ok(())
}

/// Writes `bytes` as the whole content of `path` (created with `mode`, or
/// truncated).
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
        mode,
        None,
    )?;
    file.write_all(bytes)?;
    file.flush()
}

/// Creates (or truncates) `path` for writing with `mode`.
pub fn create(path: &Path, mode: u32) -> io::Result<File> {
    open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
        mode,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_files_get_the_mode_and_existing_ones_keep_theirs() {
        let dir = std::env::temp_dir().join(format!("apisensor-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("new");
        write(&path, b"x", PRIVATE_MODE).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, PRIVATE_MODE);
        let kept = dir.join("kept");
        std::fs::write(&kept, b"").unwrap();
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&kept, b"y", PRIVATE_MODE).unwrap();
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
