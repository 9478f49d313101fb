//! The warnings a reviewer of a real manifest would give: each one found,
//! at the right path, and none on the clean example.

use nixmox::manifest::{validate_value, Diagnostic};
use serde_json::{json, Value};
use std::path::Path;

fn small() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json");
    let text = std::fs::read_to_string(&path).expect("read examples/small/manifest.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// The warnings of the small example with one change, the flake's aside.
fn warnings(change: impl FnOnce(&mut Value)) -> Vec<Diagnostic> {
    let mut v = small();
    change(&mut v);
    match validate_value(Path::new("review.json"), &v) {
        Ok(valid) => valid
            .warnings
            .into_iter()
            .filter(|w| w.path.to_string() != "nixos.flake")
            .collect(),
        Err(e) => panic!("refused: {e:?}"),
    }
}

fn has(warnings: &[Diagnostic], path: &str, words: &str) -> bool {
    warnings
        .iter()
        .any(|w| w.path.to_string() == path && w.message.contains(words))
}

#[test]
fn the_clean_example_has_nothing_to_say() {
    assert_eq!(warnings(|_| {}), []);
}

#[test]
fn a_loopback_upstream_away_from_caddy() {
    let w = warnings(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["upstream"] = json!("127.0.0.1:3000")
    });
    assert!(
        has(
            &w,
            "services.wiki.interface.proxy.upstream",
            "reaches Caddy's own host, not wiki's; use 10.77.0.10:3000"
        ),
        "{w:?}"
    );
    let w = warnings(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["upstream"] = json!("localhost:3000")
    });
    assert!(w.iter().any(|d| d.message.contains("loopback")), "{w:?}");
    // On the caddy host itself a loopback upstream is what it says.
    let w = warnings(|v| {
        v["core_services"]["caddy"]["ports"] = json!([2019]);
        v["core_services"]["caddy"]["interface"] =
            json!({"proxy": {"domain": "admin.stack.example", "upstream": "127.0.0.1:2019"}});
    });
    assert!(!w.iter().any(|d| d.message.contains("loopback")), "{w:?}");
}

#[test]
fn a_wildcard_redirect_uri() {
    let w = warnings(|v| {
        v["services"]["wiki"]["interface"]["auth"]["oidc"]["redirect_uris"] =
            json!(["https://docs.stack.example/*"])
    });
    assert!(
        has(
            &w,
            "services.wiki.interface.auth.oidc.redirect_uris[0]",
            "compares redirect URIs strictly"
        ),
        "{w:?}"
    );
}

#[test]
fn a_plaintext_radius_secret_and_an_open_client_network() {
    let secret = "changeme-radius-0000";
    let w = warnings(|v| {
        v["network"]["outposts"] = json!({"radius": {
            "shared_secret": secret,
            "client_networks": ["0.0.0.0/0", "10.77.0.0/24"]
        }});
    });
    assert!(
        has(
            &w,
            "network.outposts.radius.shared_secret",
            "looks like a placeholder"
        ),
        "{w:?}"
    );
    assert!(
        has(
            &w,
            "network.outposts.radius.client_networks[0]",
            "any address"
        ),
        "{w:?}"
    );
    assert!(
        !format!("{w:?}").contains(secret),
        "a warning shows the secret"
    );
    // A generated secret is still plaintext in reviewed code.
    let w = warnings(|v| {
        v["network"]["outposts"] = json!({"radius": {
            "shared_secret": "q8Zt3vK0pWm2Lr7Xc9Bn4Hs6Dy1Fa5Ge",
            "client_networks": ["10.77.0.0/24"]
        }});
    });
    assert!(
        has(&w, "network.outposts.radius.shared_secret", "plaintext"),
        "{w:?}"
    );
    assert!(
        !w.iter().any(|d| d.message.contains("placeholder")),
        "{w:?}"
    );
}

#[test]
fn an_upstream_port_on_a_service_without_ports() {
    let w = warnings(|v| {
        v["services"]["wiki"]
            .as_object_mut()
            .expect("wiki")
            .remove("ports");
    });
    assert!(
        has(
            &w,
            "services.wiki.interface.proxy.upstream",
            "declares no ports"
        ),
        "{w:?}"
    );
}
