//! The `-json` message stream of terraform plan and apply, as untrusted
//! bytes: diagnostics are read, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = nixmox::terraform::report::diagnostics(&text);
});
