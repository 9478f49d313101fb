//! What a host answers to the look nixmox takes at it (its running system,
//! the secrets hash, its guards' state, a verdict per probe), as untrusted
//! bytes: read or refused, never a panic; a system read back is always a
//! store path.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for commands in 0..4 {
        if let Some(g) = nixmox::nixos::glance::parse(&text, commands) {
            assert!(g.current.is_empty() || nixmox::nixos::build::store_path(&g.current).is_ok());
            for r in &g.records {
                let _ = r.describe();
            }
        }
    }
});
