//! Arbitrary bytes through the manifest pipeline, all in memory: the first
//! byte picks the format (mod 3: 0 JSON, 1 TOML, 2 YAML; the seeds use the
//! ASCII digits '0', '1' and '2'), the rest is the file's text. Text that
//! parses is validated; a manifest that validates is planned and rendered.
//! Nothing here spawns Nix or touches the filesystem. Any outcome but a panic
//! is fine, as long as it keeps the promises tests/no_panic.rs checks: a
//! rejection names at least one error with a message, and a valid manifest
//! always has a plan.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nixmox::manifest::source::{parse_text, Format};
use nixmox::manifest::{validate_value, LoadError};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (format, name) = match selector % 3 {
        0 => (Format::Json, "fuzz.json"),
        1 => (Format::Toml, "fuzz.toml"),
        _ => (Format::Yaml, "fuzz.yaml"),
    };
    // The file loader refuses text that is not UTF-8 before any parser sees it.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(value) = parse_text(text, format) else {
        return;
    };
    let validated = match validate_value(Path::new(name), &value) {
        Ok(validated) => validated,
        Err(LoadError::Invalid { errors, .. }) => {
            assert!(!errors.is_empty(), "rejected without an error");
            assert!(errors.iter().all(|e| !e.message.is_empty()));
            return;
        }
        Err(other) => panic!("unexpected error kind: {other}"),
    };
    let m = &validated.manifest;
    let plan = nixmox::plan::build(m, &[]).expect("a valid manifest has a plan");
    assert!(!plan.steps.is_empty());
    let _ = nixmox::plan::render::human(m, &plan);
    let _ = serde_json::to_string(&nixmox::plan::render::json(m, &plan));

    let all = nixmox::graph::select(m, &[]).expect("selecting everything cannot fail");
    let _ = nixmox::graph::render::dot(m, &all, true);
    let _ = nixmox::graph::render::mermaid(m, &all, false);
    let _ = serde_json::to_string(&nixmox::graph::render::json(m, &all, true));

    // One service by name: pulls in its dependencies, or is refused as disabled.
    if let Some(first) = m.services.first() {
        let _ = nixmox::plan::build(m, std::slice::from_ref(&first.name));
    }
});
