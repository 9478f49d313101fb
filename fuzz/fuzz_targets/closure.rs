//! A closure as nix-store reports it (requisites, a mark, NAR sizes), from
//! a host or this machine: read or refused with a message naming who said
//! it, never a panic; what is read is diffed and rendered.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match nixmox::nixos::closure::parse(&text, "host fuzz") {
        Ok(members) => {
            let d = nixmox::nixos::closure::diff(&members, &members[members.len() / 2..]);
            let _ = d.lines();
        }
        Err(e) => assert!(e.starts_with("host fuzz: ")),
    }
});
