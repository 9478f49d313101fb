//! A DNS server's answer to an A query (verify's dns check), as untrusted
//! bytes: addresses are read or the answer refused, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let id = u16::from_be_bytes([data[0], data[1]]);
    let _ = nixmox::verify::dns::answers(data, id);
});
