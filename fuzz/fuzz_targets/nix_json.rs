//! What `nix build --json` and `nix eval --json` print, as untrusted bytes:
//! an output path or a map of them is read or refused, and whatever is read
//! is a store path, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = nixmox::nixos::build::parse_build(&text, "fuzz") {
        assert!(p.starts_with("/nix/store/"));
    }
    if let Ok(map) = nixmox::nixos::build::parse_eval(&text) {
        assert!(map.values().all(|p| p.starts_with("/nix/store/")));
    }
});
