//! What `nix build --json` and `nix eval --json` print, as untrusted bytes:
//! an output path or a map of them (each with its derivation) is read or
//! refused, and whatever is read is a store path, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = nixmox::nixos::build::parse_build(&text, "fuzz") {
        assert!(p.starts_with("/nix/store/"));
    }
    if let Ok(map) = nixmox::nixos::build::parse_eval(&text) {
        assert!(map.values().all(|e| e.out.starts_with("/nix/store/")
            && e.drv.as_ref().is_none_or(|d| d.starts_with("/nix/store/") && d.ends_with(".drv"))));
    }
});
