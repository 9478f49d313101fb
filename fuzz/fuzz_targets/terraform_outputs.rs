//! `terraform output -json` and a local state file, as untrusted bytes:
//! outputs are read or refused, never a panic; redaction works on whatever
//! was read.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(o) = nixmox::terraform::Outputs::parse(&text) {
        let _ = o.redacted();
    }
    if let Some(o) = nixmox::terraform::Outputs::from_state(&text) {
        let _ = o.redacted();
    }
});
