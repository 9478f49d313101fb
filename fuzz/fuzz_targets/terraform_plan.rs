//! `terraform show -json` of a saved plan, as untrusted bytes: the changes
//! are read or refused with a message, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = nixmox::terraform::report::changes(&text) {
        let _ = c.short();
        let _ = c.any();
    }
});
