//! Reading files a manifest names (keys, passwords, migrations): only a
//! regular file is read, and never more than a bound. A FIFO, a device, a
//! socket or a directory is refused before anything is read from it (it is
//! opened without blocking, then looked at), so a path pointing at
//! `/dev/zero` or a pipe nobody writes cannot eat the machine or hang a run.
//! Files nixmox writes itself are written whole or not at all.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` without blocking and makes sure it is a regular file of at
/// most `limit` bytes; `what` names it in errors (`verify.user.password_file`).
pub fn open_regular(path: &Path, limit: u64, what: &str) -> Result<std::fs::File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{what} {}: cannot open it: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{what} {}: cannot read it: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{what} {}: not a regular file (a {}); point it at a file",
            path.display(),
            kind(&meta)
        ));
    }
    if meta.len() > limit {
        return Err(format!(
            "{what} {}: {} bytes, more than the {limit} such a file may hold",
            path.display(),
            meta.len()
        ));
    }
    Ok(file)
}

/// Refuses what [`read_regular`] refuses, without reading (a file another
/// tool reads: a `.nix` manifest for Nix).
pub fn check_regular(path: &Path, limit: u64, what: &str) -> Result<(), String> {
    open_regular(path, limit, what).map(|_| ())
}

/// The file's bytes; `what` names it in errors (`verify.user.password_file`).
pub fn read_regular(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let file = open_regular(path, limit, what)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{what} {}: cannot read it: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{what} {}: grew past the {limit} bytes such a file may hold while it was read",
            path.display()
        ));
    }
    Ok(bytes)
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Writes a file atomically (a temporary file in the same directory, then a rename).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set permissions: {e}"))?;
    tmp.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_within_the_bound_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("secret");
        std::fs::write(&f, b"hunter2\n").expect("write");
        assert_eq!(read_regular(&f, 64, "x").expect("read"), b"hunter2\n");
        let e = read_regular(&f, 4, "verify.user.password_file").expect_err("too big");
        assert!(e.starts_with("verify.user.password_file "), "{e}");
        let e = read_regular(dir.path(), 64, "x").expect_err("dir");
        assert!(e.contains("not a regular file (a directory)"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), 64, "x").expect_err("device");
        assert!(e.contains("character device"), "{e}");
        let e = read_regular(&dir.path().join("nope"), 64, "x").expect_err("missing");
        assert!(e.contains("cannot open it"), "{e}");
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let e = read_regular(&fifo, 64, "x").expect_err("fifo");
        assert!(e.contains("FIFO"), "{e}");
    }
}
