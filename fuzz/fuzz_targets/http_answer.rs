//! What an HTTP server answers to verify's in-process client, as untrusted
//! bytes from a server on loopback, and the login or consent page read for
//! its form: read or refused, never a panic nor a hang past the bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The answer the loopback server sends next, and its port.
struct Server {
    answer: Mutex<Vec<u8>>,
    port: u16,
}

fn server() -> &'static Server {
    static S: OnceLock<&'static Server> = OnceLock::new();
    S.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let s: &'static Server = Box::leak(Box::new(Server {
            answer: Mutex::new(Vec::new()),
            port,
        }));
        std::thread::spawn(move || {
            for mut c in listener.incoming().flatten() {
                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                let mut head = [0u8; 4096];
                let _ = c.read(&mut head);
                let answer = s.answer.lock().map(|a| a.clone()).unwrap_or_default();
                let _ = c.write_all(&answer);
                // Closed after each answer: every request reads exactly it.
            }
        });
        s
    })
}

fuzz_target!(|data: &[u8]| {
    let s = server();
    if let Ok(mut a) = s.answer.lock() {
        *a = data.to_vec();
    }
    let url = format!("http://fuzz.nixmox.test:{}/", s.port);
    let _ = nixmox::verify::http::get(&nixmox::verify::http::Request {
        url: &url,
        pin: Some("127.0.0.1".parse().expect("ip")),
        ca_file: None,
        timeout: Duration::from_secs(2),
    });
    let _ = nixmox::verify::oidc_flow::parse_form(&String::from_utf8_lossy(data));
});
