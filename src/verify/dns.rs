//! A minimal DNS client: one A query over UDP, bounded in time. Enough to
//! check that a name resolves to the address the manifest expects, through
//! the manifest's own DNS server, without depending on the machine's resolver.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// The query message for `name`'s A records, with transaction id `id`.
pub fn query(name: &str, id: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend(id.to_be_bytes());
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // recursion desired, one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name} is not a valid domain name"));
        }
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]); // root, type A, class IN
    Ok(q)
}

/// The A records of a response to query `id`, or why there are none.
pub fn answers(msg: &[u8], id: u16) -> Result<Vec<Ipv4Addr>, String> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Err("a malformed or foreign answer".into());
    }
    let rcode = msg[3] & 0x0f;
    match rcode {
        0 => {}
        3 => return Err("no such name (NXDOMAIN)".into()),
        5 => return Err("the server refused the query".into()),
        n => return Err(format!("the server answered with error code {n}")),
    }
    let questions = u16::from_be_bytes([msg[4], msg[5]]) as usize;
    let count = u16::from_be_bytes([msg[6], msg[7]]) as usize;
    let mut pos = 12;
    let skip_name = |mut pos: usize| -> Option<usize> {
        loop {
            let len = *msg.get(pos)? as usize;
            if len & 0xc0 == 0xc0 {
                return Some(pos + 2);
            }
            if len == 0 {
                return Some(pos + 1);
            }
            pos += len + 1;
        }
    };
    for _ in 0..questions {
        pos = skip_name(pos).ok_or("a truncated answer")? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..count {
        pos = skip_name(pos).ok_or("a truncated answer")?;
        let head = msg.get(pos..pos + 10).ok_or("a truncated answer")?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[8], head[9]]) as usize;
        pos += 10;
        let data = msg.get(pos..pos + len).ok_or("a truncated answer")?;
        if kind == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        pos += len;
    }
    Ok(out)
}

/// Resolves `name` at `server`, three tries of `timeout` each.
pub fn resolve(server: IpAddr, name: &str, timeout: Duration) -> Result<Vec<Ipv4Addr>, String> {
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(7);
    let q = query(name, id)?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()
    } else {
        "[::]:0".parse()
    }
    .map_err(|e| format!("{e}"))?;
    let sock = UdpSocket::bind(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _ in 0..3 {
        if let Err(e) = sock.send_to(&q, (server, 53)) {
            last = format!("cannot reach {server}:53: {e}");
            continue;
        }
        let mut buf = [0u8; 1500];
        match sock.recv(&mut buf) {
            Ok(n) => return answers(&buf[..n], id),
            Err(e) => last = format!("no answer from {server}:53 ({e})"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_queries_and_reads_answers() {
        let q = query("wiki.lab.test", 0x1234).expect("query");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..17], &[4, b'w', b'i', b'k', b'i']);
        // The query echoed back with one answer (a pointer to the question's name).
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 1;
        a.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 213, 0, 10]);
        assert_eq!(answers(&a, 0x1234), Ok(vec![Ipv4Addr::new(10, 213, 0, 10)]));
        a[3] = 0x83;
        assert!(answers(&a, 0x1234).is_err_and(|e| e.contains("NXDOMAIN")));
        assert!(answers(&a, 0x9999).is_err());
        assert!(answers(&a[..5], 0x1234).is_err());
        assert!(query("a..b", 1).is_err());
    }
}
