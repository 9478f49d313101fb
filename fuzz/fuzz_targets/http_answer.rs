//! What an HTTP server answers through curl -i (health probes, verify),
//! as untrusted bytes: read or refused, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = nixmox::verify::http::parse(&text);
});
