//! Ending multiplexed SSH connections: a run's own when the run ends, kept
//! ones when their hosts go away (see `ssh_control`). A master
//! started with `ControlPersist` outlives the ssh command that started it
//! (that is what lets one run's commands share it), and removing its socket
//! does not stop it: without this, every run would leave one ssh process
//! per host behind for the persist time. Each master is asked to exit over
//! its own socket, in OpenSSH's multiplexing protocol (PROTOCOL.mux: a
//! hello, then a terminate request), so closing costs no process per host.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const MUX_MSG_HELLO: u32 = 0x0000_0001;
const MUX_C_TERMINATE: u32 = 0x1000_0005;
const MUX_S_OK: u32 = 0x8000_0001;
const MUX_VERSION: u32 = 4;

/// Asks every master with a socket in `dir` to exit, then removes `dir`.
/// Best effort: a master already gone, or one that does not answer within
/// a second, is left to its persist time.
pub fn close_all(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        let sockets: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        terminate_all(&sockets);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Asks the master on each of `sockets` to exit, 16 at a time; best
/// effort, as [`close_all`].
pub fn terminate_all(sockets: &[std::path::PathBuf]) {
    crate::bounded::map(sockets, 16, |socket| {
        let _ = terminate(socket);
    });
}

/// Asks the master listening on `socket` to exit: hello, terminate, and
/// its answer (`Ok(true)` when it agreed).
pub fn terminate(socket: &Path) -> std::io::Result<bool> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(&packet(&[MUX_MSG_HELLO, MUX_VERSION]))?;
    let hello = read_packet(&mut s)?;
    if word(&hello, 0) != Some(MUX_MSG_HELLO) {
        return Ok(false);
    }
    s.write_all(&packet(&[MUX_C_TERMINATE, 1]))?;
    let answer = read_packet(&mut s)?;
    Ok(word(&answer, 0) == Some(MUX_S_OK))
}

/// A message: its length, then its words, all big-endian.
fn packet(words: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let mut p = (body.len() as u32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

/// A message from the master, at most 64 KiB (a hello with extensions is
/// a few bytes; anything larger is not a master talking).
fn read_packet(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 64 * 1024 {
        return Err(std::io::Error::other("an oversized mux message"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(body)
}

fn word(body: &[u8], i: usize) -> Option<u32> {
    body.get(i * 4..i * 4 + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_as_openssh_reads_them() {
        assert_eq!(
            packet(&[MUX_MSG_HELLO, MUX_VERSION]),
            [0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 4]
        );
        assert_eq!(
            packet(&[MUX_C_TERMINATE, 1]),
            [0, 0, 0, 8, 0x10, 0, 0, 5, 0, 0, 0, 1]
        );
        let mut answer: &[u8] = &[0, 0, 0, 8, 0x80, 0, 0, 1, 0, 0, 0, 1];
        let body = read_packet(&mut answer).expect("read");
        assert_eq!(word(&body, 0), Some(MUX_S_OK));
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_packet(&mut huge).is_err());
        let mut short: &[u8] = &[0, 0, 0, 8, 0x80];
        assert!(read_packet(&mut short).is_err());
    }
}
