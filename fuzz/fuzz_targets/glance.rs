//! What a host answers to the look nixmox takes at it (its running system,
//! the secrets hash, a verdict per probe), as untrusted bytes: read or
//! refused, never a panic; a system read back is always a store path.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for commands in 0..4 {
        if let Some((current, _, _)) = nixmox::nixos::glance::parse(&text, commands) {
            assert!(current.is_empty() || nixmox::nixos::build::store_path(&current).is_ok());
        }
    }
});
