//! A corpus of malformed manifests. Each case is the known-good
//! `examples/small/manifest.json` with one small mutation, and asserts that
//! validation fails with an error naming the offending path and the problem.
//! Below the corpus: failures of the file itself (syntax, encoding, size,
//! depth) through the real binary, the `--json` error shape, and proof that
//! the RADIUS shared secret never reaches any output.

use nixmox::manifest::{validate_value, Diagnostic, LoadError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// ---------------------------------------------------------------- helpers

fn small() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json");
    let text = std::fs::read_to_string(&path).expect("read examples/small/manifest.json");
    serde_json::from_str(&text).expect("examples/small/manifest.json is valid JSON")
}

/// The small example with one change applied.
fn mutate(change: impl FnOnce(&mut Value)) -> Value {
    let mut v = small();
    change(&mut v);
    v
}

/// Removes `key` from the attribute set at `v`.
fn remove(v: &mut Value, key: &str) -> Value {
    v.as_object_mut()
        .expect("remove() needs an attribute set")
        .remove(key)
        .unwrap_or_else(|| panic!("no key {key} to remove"))
}

/// Moves the entry `from` of the attribute set `v` to the key `to`.
fn rename(v: &mut Value, from: &str, to: &str) {
    let body = remove(v, from);
    v[to] = body;
}

/// A message as the user reads it: the message, then the hint in brackets.
fn text(d: &Diagnostic) -> String {
    match &d.hint {
        Some(h) => format!("{} ({h})", d.message),
        None => d.message.clone(),
    }
}

fn listing(errors: &[Diagnostic]) -> String {
    errors.iter().map(|d| format!("  {d}\n")).collect()
}

/// Validates `manifest`, which must be rejected, and returns its errors.
fn errors(manifest: &Value) -> Vec<Diagnostic> {
    match validate_value(Path::new("malformed.json"), manifest) {
        Ok(v) => panic!(
            "the manifest was accepted (warnings: {:?}):\n{manifest:#}",
            v.warnings
        ),
        Err(LoadError::Invalid { errors, .. }) => {
            assert!(!errors.is_empty(), "rejected without a single error");
            for e in &errors {
                assert!(
                    !e.message.trim().is_empty(),
                    "an error without a message: {e:?}"
                );
            }
            errors
        }
        Err(other) => panic!("expected validation errors, got: {other}"),
    }
}

/// Asserts that validation fails with an error at exactly `path` whose
/// message (with its hint) contains every one of `needles`.
#[track_caller]
fn rejects(manifest: &Value, path: &str, needles: &[&str]) {
    let errors = errors(manifest);
    let hit = errors
        .iter()
        .any(|d| d.path.as_str() == path && needles.iter().all(|n| text(d).contains(n)));
    assert!(
        hit,
        "no error at `{path}` mentioning {needles:?}; the errors were:\n{}",
        listing(&errors)
    );
}

/// Asserts that `manifest` is accepted with a warning at exactly `path`
/// mentioning every one of `needles` (for findings that deliberately do not block).
#[track_caller]
fn warns(manifest: &Value, path: &str, needles: &[&str]) {
    let warnings = match validate_value(Path::new("warned.json"), manifest) {
        Ok(v) => v.warnings,
        Err(e) => panic!("expected a warning only, got: {e:?}"),
    };
    let hit = warnings
        .iter()
        .any(|d| d.path.as_str() == path && needles.iter().all(|n| text(d).contains(n)));
    assert!(
        hit,
        "no warning at `{path}` mentioning {needles:?}; the warnings were:\n{}",
        listing(&warnings)
    );
}

#[test]
fn the_unmutated_example_is_valid() {
    let result = validate_value(Path::new("small.json"), &small());
    assert!(result.is_ok(), "{result:?}");
}

// ---------------------------------------------------------------- dependencies

#[test]
fn cycle_of_two() {
    let m = mutate(|v| v["services"]["wiki"]["depends_on"] = json!(["search"]));
    rejects(
        &m,
        "services.search.depends_on",
        &["dependency cycle", "search -> wiki -> search"],
    );
}

#[test]
fn cycle_of_three() {
    let m = mutate(|v| {
        v["services"]["wiki"]["depends_on"] = json!(["postgresql", "status"]);
        v["services"]["status"]["depends_on"] = json!(["search"]);
    });
    rejects(
        &m,
        "services.search.depends_on",
        &["dependency cycle", "search -> wiki -> status -> search"],
    );
}

#[test]
fn self_dependency() {
    let m = mutate(|v| v["services"]["wiki"]["depends_on"][1] = json!("wiki"));
    rejects(
        &m,
        "services.wiki.depends_on[1]",
        &["'wiki' depends on itself"],
    );
}

#[test]
fn unknown_dependency_suggests_the_name() {
    let m = mutate(|v| v["services"]["wiki"]["depends_on"][1] = json!("postgress"));
    rejects(
        &m,
        "services.wiki.depends_on[1]",
        &[
            "unknown service",
            "\"postgress\"",
            "did you mean 'postgresql'?",
        ],
    );
}

#[test]
fn dependency_on_a_disabled_service() {
    let m = mutate(|v| v["services"]["wiki"]["enable"] = json!(false));
    rejects(
        &m,
        "services.search.depends_on[0]",
        &["depends on 'wiki', which is disabled"],
    );
}

#[test]
fn core_service_depending_on_an_application() {
    let m = mutate(|v| v["core_services"]["caddy"]["depends_on"] = json!(["status"]));
    rejects(
        &m,
        "core_services.caddy.depends_on[0]",
        &["core service 'caddy' depends on application 'status'"],
    );
}

// ---------------------------------------------------------------- core services

#[test]
fn each_missing_core_service() {
    for name in ["dns", "postgresql", "caddy", "authentik"] {
        let m = mutate(|v| {
            remove(&mut v["core_services"], name);
        });
        rejects(
            &m,
            &format!("core_services.{name}"),
            &[&format!("missing core service '{name}'")],
        );
    }
}

#[test]
fn missing_core_services_block() {
    let m = mutate(|v| {
        remove(v, "core_services");
    });
    rejects(&m, "core_services", &["missing core_services block"]);
}

#[test]
fn disabled_core_service() {
    let m = mutate(|v| v["core_services"]["dns"]["enable"] = json!(false));
    rejects(
        &m,
        "core_services.dns.enable",
        &["core service 'dns' is disabled"],
    );
}

#[test]
fn core_service_declared_under_services() {
    let m = mutate(|v| {
        let caddy = remove(&mut v["core_services"], "caddy");
        v["services"]["caddy"] = caddy;
    });
    rejects(
        &m,
        "services.caddy",
        &["'caddy' is a core service: declare it under core_services"],
    );
}

#[test]
fn service_declared_in_both_groups() {
    let m = mutate(|v| v["services"]["dns"] = v["core_services"]["dns"].clone());
    rejects(
        &m,
        "services.dns",
        &["declared both in core_services and in services"],
    );
}

// ---------------------------------------------------------------- uniqueness

#[test]
fn duplicate_ip() {
    let m = mutate(|v| v["services"]["status"]["ip"] = json!("10.77.0.11"));
    rejects(
        &m,
        "services.status.ip",
        &["ip 10.77.0.11 is already used by service 'search'"],
    );
}

#[test]
fn duplicate_vmid() {
    let m = mutate(|v| v["services"]["status"]["vmid"] = json!(211));
    rejects(
        &m,
        "services.status.vmid",
        &["vmid 211 is already used by service 'search'"],
    );
}

#[test]
fn duplicate_hostname_ignoring_case() {
    let m = mutate(|v| v["services"]["status"]["hostname"] = json!("Search.Stack.Example"));
    rejects(
        &m,
        "services.status.hostname",
        &["Search.Stack.Example is already used by service 'search'"],
    );
}

#[test]
fn duplicate_hostname_with_the_root_dot() {
    let m = mutate(|v| v["services"]["status"]["hostname"] = json!("search.stack.example."));
    rejects(
        &m,
        "services.status.hostname",
        &["search.stack.example. is already used by service 'search'"],
    );
}

#[test]
fn duplicate_proxy_domain_and_path() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["domain"] = json!("uptime.stack.example")
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.domain",
        &[
            "uptime.stack.example/",
            "already routed by service 'status'",
        ],
    );
}

#[test]
fn duplicate_proxy_route_with_a_trailing_slash() {
    let m = mutate(|v| {
        v["services"]["status"]["interface"]["proxy"]["path"] = json!("/app");
        v["services"]["wiki"]["interface"]["proxy"]["domain"] = json!("uptime.stack.example");
        v["services"]["wiki"]["interface"]["proxy"]["path"] = json!("/app/");
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.domain",
        &[
            "uptime.stack.example/app/",
            "already routed by service 'status'",
        ],
    );
}

#[test]
fn duplicate_proxy_route_with_the_root_dot() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["domain"] = json!("Uptime.Stack.Example.")
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.domain",
        &[
            "Uptime.Stack.Example./",
            "already routed by service 'status'",
        ],
    );
}

#[test]
fn duplicate_oidc_client_id() {
    let m = mutate(|v| {
        v["services"]["status"]["interface"]["auth"] =
            json!({"type": "oidc", "oidc": {"client_id": "wiki-oidc"}});
    });
    rejects(
        &m,
        "services.wiki.interface.auth.oidc.client_id",
        &["OIDC client id 'wiki-oidc' is already used by service 'status'"],
    );
}

#[test]
fn duplicate_oidc_client_id_on_a_single_proxy() {
    let m = mutate(|v| {
        v["services"]["search"]["interface"]["proxy"]["auth"] =
            json!({"type": "oidc", "oidc": {"client_id": "wiki-oidc"}});
    });
    rejects(
        &m,
        "services.wiki.interface.auth.oidc.client_id",
        &["OIDC client id 'wiki-oidc' is already used by service 'search'"],
    );
}

#[test]
fn duplicate_database_name() {
    let m = mutate(|v| v["services"]["search"]["interface"]["db"] = json!({"name": "authentik"}));
    rejects(
        &m,
        "services.search.interface.db",
        &["database 'authentik' is already declared by service 'authentik'"],
    );
}

#[test]
fn database_declared_twice_in_one_service() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["dbs"] = json!({"extra": {"name": "wiki"}});
    });
    rejects(
        &m,
        "services.wiki.interface.dbs.extra",
        &["database 'wiki' is declared twice in this service"],
    );
}

// ---------------------------------------------------------------- addressing

#[test]
fn ip_outside_network_cidr() {
    let m = mutate(|v| v["services"]["wiki"]["ip"] = json!("10.78.0.10"));
    rejects(
        &m,
        "services.wiki.ip",
        &["ip 10.78.0.10 is outside network_cidr 10.77.0.0/24"],
    );
}

#[test]
fn ip_is_the_network_address() {
    let m = mutate(|v| v["services"]["wiki"]["ip"] = json!("10.77.0.0"));
    rejects(
        &m,
        "services.wiki.ip",
        &["ip 10.77.0.0 is the network's network address"],
    );
}

#[test]
fn ip_is_the_broadcast_address() {
    let m = mutate(|v| v["services"]["wiki"]["ip"] = json!("10.77.0.255"));
    rejects(
        &m,
        "services.wiki.ip",
        &["ip 10.77.0.255 is the network's broadcast address"],
    );
}

#[test]
fn ip_is_the_gateway() {
    let m = mutate(|v| v["services"]["wiki"]["ip"] = json!("10.77.0.1"));
    rejects(
        &m,
        "services.wiki.ip",
        &["ip 10.77.0.1 is the gateway's address"],
    );
}

#[test]
fn malformed_ip() {
    let m = mutate(|v| v["services"]["wiki"]["ip"] = json!("10.77.0.300"));
    rejects(
        &m,
        "services.wiki.ip",
        &["\"10.77.0.300\" is not a valid IP address"],
    );
}

#[test]
fn malformed_cidr() {
    let m = mutate(|v| v["network"]["network_cidr"] = json!("10.77.0.0/33"));
    rejects(
        &m,
        "network.network_cidr",
        &["\"10.77.0.0/33\" is not a network in CIDR notation"],
    );
}

#[test]
fn cidr_with_host_bits() {
    let m = mutate(|v| v["network"]["network_cidr"] = json!("10.77.0.5/24"));
    rejects(
        &m,
        "network.network_cidr",
        &["\"10.77.0.5/24\" has host bits set", "10.77.0.0/24"],
    );
}

#[test]
fn gateway_outside_network_cidr() {
    let m = mutate(|v| v["network"]["gateway"] = json!("192.168.1.1"));
    rejects(
        &m,
        "network.gateway",
        &["gateway 192.168.1.1 is outside network_cidr 10.77.0.0/24"],
    );
}

#[test]
fn malformed_network_domain() {
    let m = mutate(|v| v["network"]["domain"] = json!("stack..example"));
    rejects(
        &m,
        "network.domain",
        &[
            "\"stack..example\" is not a valid domain name",
            "empty label",
        ],
    );
}

#[test]
fn vlan_tag_out_of_range() {
    let m = mutate(|v| v["network"]["vlan_tag"] = json!(5000));
    rejects(
        &m,
        "network.vlan_tag",
        &["VLAN tag 5000 is out of range", "1 to 4094"],
    );
}

// A malformed SSH key is a warning, not an error: placeholder keys are common
// in shared manifests, and the hosts reject what OpenSSH cannot read.
#[test]
fn bad_ssh_key() {
    let m = mutate(|v| v["network"]["ssh_keys"]["root"][0] = json!("hello world"));
    warns(
        &m,
        "network.ssh_keys.root[0]",
        &["not an SSH public key", "\"hello\""],
    );
}

#[test]
fn ssh_key_without_a_body() {
    let m = mutate(|v| v["network"]["ssh_keys"]["root"][0] = json!("ssh-ed25519"));
    warns(
        &m,
        "network.ssh_keys.root[0]",
        &["not an SSH public key", "base64 key body"],
    );
}

#[test]
fn bad_ssh_login_name() {
    let m = mutate(|v| rename(&mut v["network"]["ssh_keys"], "root", "root user"));
    rejects(
        &m,
        "network.ssh_keys.\"root user\"",
        &["\"root user\" is not a valid login name"],
    );
}

#[test]
fn malformed_ldap_base_dn() {
    let m = mutate(|v| v["network"]["outposts"] = json!({"ldap": {"base_dn": "example.lan"}}));
    rejects(
        &m,
        "network.outposts.ldap.base_dn",
        &["\"example.lan\" is not an LDAP DN"],
    );
}

#[test]
fn malformed_radius_client_network() {
    let m = mutate(|v| {
        v["network"]["outposts"] = json!({"radius": {"client_networks": ["10.0.0.0/8", "lan"]}});
    });
    rejects(
        &m,
        "network.outposts.radius.client_networks[1]",
        &["\"lan\" is not a network in CIDR notation"],
    );
}

#[test]
fn empty_radius_shared_secret() {
    let m = mutate(|v| v["network"]["outposts"] = json!({"radius": {"shared_secret": ""}}));
    rejects(
        &m,
        "network.outposts.radius.shared_secret",
        &["the RADIUS shared secret is empty"],
    );
}

// ---------------------------------------------------------------- names and domains

#[test]
fn malformed_hostname() {
    let m = mutate(|v| v["services"]["wiki"]["hostname"] = json!("wiki_01.stack.example"));
    rejects(
        &m,
        "services.wiki.hostname",
        &[
            "\"wiki_01.stack.example\" is not a valid domain name",
            "only letters, digits",
        ],
    );
}

#[test]
fn hostname_that_is_not_fully_qualified() {
    let m = mutate(|v| v["services"]["wiki"]["hostname"] = json!("wiki"));
    rejects(
        &m,
        "services.wiki.hostname",
        &["\"wiki\" is not a valid domain name", "fully qualified"],
    );
}

#[test]
fn malformed_proxy_domain() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["domain"] = json!("-docs.stack.example")
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.domain",
        &["\"-docs.stack.example\" is not a valid domain name", "'-'"],
    );
}

#[test]
fn unsafe_service_name_with_a_space_and_capitals() {
    let m = mutate(|v| rename(&mut v["services"], "status", "My App"));
    rejects(
        &m,
        "services.\"My App\"",
        &["service name \"My App\" is not a safe identifier"],
    );
}

#[test]
fn unsafe_service_name_with_a_path() {
    let m = mutate(|v| rename(&mut v["services"], "status", "../x"));
    rejects(
        &m,
        "services.\"../x\"",
        &["service name \"../x\" is not a safe identifier"],
    );
}

#[test]
fn service_name_too_long() {
    let long = "s".repeat(49);
    let m = mutate(|v| rename(&mut v["services"], "status", &long));
    rejects(
        &m,
        &format!("services.{long}"),
        &["49 characters long; at most 48"],
    );
}

#[test]
fn empty_service_name() {
    let m = mutate(|v| rename(&mut v["services"], "status", ""));
    rejects(&m, "services.\"\"", &["service name is empty"]);
}

// ---------------------------------------------------------------- proxies

#[test]
fn upstream_without_a_port() {
    let m =
        mutate(|v| v["services"]["wiki"]["interface"]["proxy"]["upstream"] = json!("10.77.0.10"));
    rejects(
        &m,
        "services.wiki.interface.proxy.upstream",
        &[
            "\"10.77.0.10\" is not a valid host:port",
            "the port is missing",
        ],
    );
}

#[test]
fn upstream_with_port_zero() {
    let m =
        mutate(|v| v["services"]["wiki"]["interface"]["proxy"]["upstream"] = json!("10.77.0.10:0"));
    rejects(
        &m,
        "services.wiki.interface.proxy.upstream",
        &["\"10.77.0.10:0\"", "from 1 to 65535"],
    );
}

#[test]
fn upstream_with_port_70000() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["upstream"] = json!("10.77.0.10:70000")
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.upstream",
        &["\"10.77.0.10:70000\"", "from 1 to 65535"],
    );
}

#[test]
fn proxy_without_an_upstream() {
    let m = mutate(|v| {
        remove(&mut v["services"]["wiki"]["interface"]["proxy"], "upstream");
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.upstream",
        &["missing required upstream"],
    );
}

#[test]
fn proxy_path_without_a_leading_slash() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["proxy"]["path"] = json!("docs"));
    rejects(
        &m,
        "services.wiki.interface.proxy.path",
        &["\"docs\" is not a URL path"],
    );
}

#[test]
fn empty_proxy() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["proxy"] = json!({}));
    rejects(&m, "services.wiki.interface.proxy", &["empty proxy"]);
}

#[test]
fn named_route_given_as_a_string() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"] = json!({
            "docs": {"domain": "docs.stack.example", "upstream": "10.77.0.10:3000"},
            "main": "10.77.0.10:3000"
        })
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.main",
        &["expected an attribute set, found a string"],
    );
}

#[test]
fn bad_header_name() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["headers"] = json!({"X Frame": "DENY"})
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.headers.\"X Frame\"",
        &["\"X Frame\" is not a valid HTTP header name"],
    );
}

#[test]
fn unsafe_sub_proxy_name() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"] = json!({
            "Main Site": {"domain": "docs.stack.example", "upstream": "10.77.0.10:3000"}
        });
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.\"Main Site\"",
        &["sub-proxy name \"Main Site\" is not a safe identifier"],
    );
}

#[test]
fn tls_of_the_wrong_type() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["proxy"]["tls"] = json!(443));
    rejects(
        &m,
        "services.wiki.interface.proxy.tls",
        &["expected a boolean, a string or an attribute set, found an integer"],
    );
}

// ---------------------------------------------------------------- auth

#[test]
fn malformed_redirect_uri() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["auth"]["oidc"]["redirect_uris"][0] = json!("not a url")
    });
    rejects(
        &m,
        "services.wiki.interface.auth.oidc.redirect_uris[0]",
        &["\"not a url\" is not a valid URL"],
    );
}

#[test]
fn redirect_uri_with_a_non_http_scheme() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["auth"]["oidc"]["redirect_uris"][0] =
            json!("ftp://docs.stack.example/cb")
    });
    rejects(
        &m,
        "services.wiki.interface.auth.oidc.redirect_uris[0]",
        &["\"ftp://docs.stack.example/cb\" is not an http:// or https:// URL"],
    );
}

#[test]
fn unknown_auth_type_suggests_oidc() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["auth"]["type"] = json!("oicd"));
    rejects(
        &m,
        "services.wiki.interface.auth.type",
        &["unknown auth type \"oicd\"", "did you mean 'oidc'?"],
    );
}

#[test]
fn auth_without_a_type() {
    let m = mutate(|v| {
        remove(&mut v["services"]["wiki"]["interface"]["auth"], "type");
    });
    rejects(
        &m,
        "services.wiki.interface.auth.type",
        &["missing required auth type"],
    );
}

#[test]
fn unknown_auth_provider() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["auth"]["provider"] = json!("keycloak"));
    rejects(
        &m,
        "services.wiki.interface.auth.provider",
        &["unknown auth provider \"keycloak\""],
    );
}

#[test]
fn unknown_client_type() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["auth"]["oidc"]["client_type"] = json!("secret")
    });
    rejects(
        &m,
        "services.wiki.interface.auth.oidc.client_type",
        &["unknown client_type \"secret\""],
    );
}

#[test]
fn invalid_client_id() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["auth"]["oidc"]["client_id"] = json!("wiki client")
    });
    rejects(
        &m,
        "services.wiki.interface.auth.oidc.client_id",
        &["\"wiki client\" is not a valid client id"],
    );
}

#[test]
fn invalid_scope() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["auth"]["oidc"]["scopes"] = json!(["openid", "e mail"])
    });
    rejects(
        &m,
        "services.wiki.interface.auth.oidc.scopes[1]",
        &["\"e mail\" is not a valid OAuth scope"],
    );
}

#[test]
fn forward_auth_with_an_oidc_block() {
    let m = mutate(|v| {
        v["services"]["search"]["interface"]["proxy"]["auth"]["oidc"] = json!({"client_id": "x"})
    });
    rejects(
        &m,
        "services.search.interface.proxy.auth.oidc",
        &["oidc settings belong to type \"oidc\", not \"forward_auth\""],
    );
}

#[test]
fn oidc_with_a_forward_auth_upstream() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["auth"]["forward_auth_upstream"] =
            json!("10.77.0.5:9000")
    });
    rejects(
        &m,
        "services.wiki.interface.auth.forward_auth_upstream",
        &["belongs to type \"forward_auth\", not \"oidc\""],
    );
}

#[test]
fn malformed_forward_auth_upstream() {
    let m = mutate(|v| {
        v["services"]["search"]["interface"]["proxy"]["auth"]["forward_auth_upstream"] =
            json!("authentik")
    });
    rejects(
        &m,
        "services.search.interface.proxy.auth.forward_auth_upstream",
        &["\"authentik\" is not a valid host:port"],
    );
}

// ---------------------------------------------------------------- databases

#[test]
fn unknown_database_mode_suggests_the_spelling() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["db"]["mode"] = json!("terraforn"));
    rejects(
        &m,
        "services.wiki.interface.db.mode",
        &[
            "unknown database mode \"terraforn\"",
            "did you mean 'terraform'?",
        ],
    );
}

#[test]
fn database_name_and_database_disagree() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["db"]["database"] = json!("wiki2"));
    rejects(
        &m,
        "services.wiki.interface.db.database",
        &[
            "two spellings of one field and disagree",
            "\"wiki\" vs \"wiki2\"",
        ],
    );
}

#[test]
fn database_without_a_name() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["db"] = json!({"owner": "wiki"}));
    rejects(
        &m,
        "services.wiki.interface.db.name",
        &["missing required name (or its spelling database)"],
    );
}

#[test]
fn bad_sql_database_name() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["db"]["name"] = json!("wiki;drop"));
    rejects(
        &m,
        "services.wiki.interface.db.name",
        &["\"wiki;drop\" is not a valid PostgreSQL name"],
    );
}

#[test]
fn bad_sql_role_name() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["db"] = json!({"database": "wiki", "role": "1wiki"})
    });
    rejects(
        &m,
        "services.wiki.interface.db.role",
        &["\"1wiki\" is not a valid PostgreSQL name"],
    );
}

#[test]
fn bad_sql_additional_database_name() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["db"]["additionaldbs"] = json!(["wiki-log", "wiki log"])
    });
    rejects(
        &m,
        "services.wiki.interface.db.additionaldbs[1]",
        &["\"wiki log\" is not a valid PostgreSQL name"],
    );
}

#[test]
fn database_port_zero() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["db"]["port"] = json!(0));
    rejects(
        &m,
        "services.wiki.interface.db.port",
        &["port 0 is not a usable port"],
    );
}

#[test]
fn malformed_database_host() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["db"]["host"] = json!("db host"));
    rejects(
        &m,
        "services.wiki.interface.db.host",
        &["\"db host\" is neither an IP address nor a host name"],
    );
}

#[test]
fn dbs_that_is_not_an_attribute_set() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["dbs"] = json!(["wiki"]));
    rejects(
        &m,
        "services.wiki.interface.dbs",
        &["expected an attribute set of databases, found a list"],
    );
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_top_level_key() {
    let m = mutate(|v| rename(v, "retry_attempts", "retry_attemps"));
    rejects(
        &m,
        "retry_attemps",
        &["unknown key", "did you mean 'retry_attempts'?"],
    );
}

#[test]
fn unknown_service_key_in_camel_case() {
    let m = mutate(|v| rename(&mut v["services"]["wiki"], "depends_on", "dependsOn"));
    rejects(
        &m,
        "services.wiki.dependsOn",
        &["unknown key", "did you mean 'depends_on'?"],
    );
}

#[test]
fn unknown_service_key_misspelt() {
    let m = mutate(|v| v["core_services"]["dns"]["hostnme"] = json!("ns.stack.example"));
    rejects(
        &m,
        "core_services.dns.hostnme",
        &["unknown key", "did you mean 'hostname'?"],
    );
}

#[test]
fn unknown_interface_key() {
    let m = mutate(|v| rename(&mut v["services"]["wiki"]["interface"], "health", "heath"));
    rejects(
        &m,
        "services.wiki.interface.heath",
        &["unknown key", "did you mean 'health'?"],
    );
}

#[test]
fn unknown_proxy_key() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["header"] = json!({"X-Frame-Options": "DENY"})
    });
    rejects(
        &m,
        "services.wiki.interface.proxy.header",
        &["unknown key", "did you mean 'headers'?"],
    );
}

#[test]
fn unknown_health_key() {
    let m = mutate(|v| {
        rename(
            &mut v["services"]["wiki"]["interface"]["health"],
            "readiness",
            "readyness",
        )
    });
    rejects(
        &m,
        "services.wiki.interface.health.readyness",
        &["unknown key", "did you mean 'readiness'?"],
    );
}

#[test]
fn unknown_network_key() {
    let m = mutate(|v| v["network"]["dns_servers"] = json!(["10.77.0.2"]));
    rejects(
        &m,
        "network.dns_servers",
        &["unknown key", "did you mean 'dns_server'?"],
    );
}

#[test]
fn unknown_key_without_a_close_match_lists_the_allowed_ones() {
    let m = mutate(|v| v["services"]["wiki"]["resources"] = json!({"ram": 2048}));
    rejects(
        &m,
        "services.wiki.resources.ram",
        &["unknown key", "allowed keys: cores, memory, disk_gb"],
    );
}

// ---------------------------------------------------------------- value types

#[test]
fn string_where_an_integer_belongs() {
    let m = mutate(|v| v["services"]["wiki"]["vmid"] = json!("210"));
    rejects(
        &m,
        "services.wiki.vmid",
        &["expected an integer, found a string"],
    );
}

#[test]
fn integer_where_a_string_belongs() {
    let m = mutate(|v| v["services"]["wiki"]["hostname"] = json!(42));
    rejects(
        &m,
        "services.wiki.hostname",
        &["expected a string, found an integer"],
    );
}

#[test]
fn list_where_an_attribute_set_belongs() {
    let m = mutate(|v| v["services"]["wiki"]["interface"] = json!([]));
    rejects(
        &m,
        "services.wiki.interface",
        &["expected an attribute set, found a list"],
    );
}

#[test]
fn fraction_where_an_integer_belongs() {
    let m = mutate(|v| v["services"]["wiki"]["ports"][0] = json!(3000.5));
    rejects(
        &m,
        "services.wiki.ports[0]",
        &["expected an integer, found a fractional number"],
    );
}

#[test]
fn negative_integer() {
    let m = mutate(|v| v["services"]["wiki"]["vmid"] = json!(-210));
    rejects(&m, "services.wiki.vmid", &["-210 is out of range"]);
}

#[test]
fn string_where_a_boolean_belongs() {
    let m = mutate(|v| v["services"]["wiki"]["enable"] = json!("yes"));
    rejects(
        &m,
        "services.wiki.enable",
        &["expected a boolean (true or false), found a string"],
    );
}

#[test]
fn string_where_a_list_belongs() {
    let m = mutate(|v| v["services"]["search"]["depends_on"] = json!("wiki"));
    rejects(
        &m,
        "services.search.depends_on",
        &["expected a list, found a string"],
    );
}

#[test]
fn services_that_is_a_list() {
    let m = mutate(|v| v["services"] = json!([]));
    rejects(
        &m,
        "services",
        &["expected an attribute set of services, found a list"],
    );
}

// ---------------------------------------------------------------- service values

#[test]
fn vmid_below_the_proxmox_range() {
    let m = mutate(|v| v["services"]["wiki"]["vmid"] = json!(5));
    rejects(
        &m,
        "services.wiki.vmid",
        &["vmid 5 is out of range", "100 to 999999999"],
    );
}

#[test]
fn port_zero() {
    let m = mutate(|v| v["services"]["wiki"]["ports"] = json!([3000, 0]));
    rejects(
        &m,
        "services.wiki.ports[1]",
        &["port 0 is not a usable port"],
    );
}

#[test]
fn port_listed_twice() {
    let m = mutate(|v| v["services"]["wiki"]["ports"] = json!([3000, 3000]));
    rejects(&m, "services.wiki.ports[1]", &["port 3000 is listed twice"]);
}

#[test]
fn port_above_65535() {
    let m = mutate(|v| v["services"]["wiki"]["ports"] = json!([70000]));
    rejects(
        &m,
        "services.wiki.ports[0]",
        &["70000 is out of range", "0 to 65535"],
    );
}

#[test]
fn resources_out_of_range() {
    let m = mutate(|v| v["services"]["wiki"]["resources"] = json!({"cores": 0, "memory": 2048}));
    rejects(
        &m,
        "services.wiki.resources.cores",
        &["0 cores is out of range"],
    );
}

#[test]
fn missing_ip_on_an_enabled_service() {
    let m = mutate(|v| {
        remove(&mut v["services"]["wiki"], "ip");
    });
    rejects(&m, "services.wiki.ip", &["missing required ip"]);
}

#[test]
fn null_ip_counts_as_missing() {
    let m = mutate(|v| v["services"]["wiki"]["ip"] = Value::Null);
    rejects(&m, "services.wiki.ip", &["missing required ip"]);
}

#[test]
fn missing_hostname_on_an_enabled_service() {
    let m = mutate(|v| {
        remove(&mut v["services"]["wiki"], "hostname");
    });
    rejects(
        &m,
        "services.wiki.hostname",
        &["missing required hostname", "wiki.example.lan"],
    );
}

// ---------------------------------------------------------------- health and timing

#[test]
fn health_timeout_zero() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["health"]["timeout"] = json!(0));
    rejects(
        &m,
        "services.wiki.interface.health.timeout",
        &["a timeout of 0 seconds"],
    );
}

#[test]
fn health_interval_longer_than_a_day() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["health"]["interval"] = json!(100_000));
    rejects(
        &m,
        "services.wiki.interface.health.interval",
        &["100000 seconds is more than a day"],
    );
}

#[test]
fn empty_health_probe() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["health"]["startup"] = json!("  "));
    rejects(
        &m,
        "services.wiki.interface.health.startup",
        &["empty health probe"],
    );
}

#[test]
fn malformed_health_url() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["health"]["readiness"] = json!("http://:3000/healthz")
    });
    rejects(
        &m,
        "services.wiki.interface.health.readiness",
        &["\"http://:3000/healthz\" is not a valid URL"],
    );
}

#[test]
fn too_many_health_retries() {
    let m = mutate(|v| v["services"]["wiki"]["interface"]["health"]["retries"] = json!(5000));
    rejects(
        &m,
        "services.wiki.interface.health.retries",
        &["at most 1000 retries"],
    );
}

#[test]
fn ssh_persist_beyond_an_hour() {
    let m = mutate(|v| v["nixos"] = json!({ "ssh": { "persist": 3601 } }));
    rejects(&m, "nixos.ssh.persist", &["3601 s", "3600 s", "0 ends"]);
    let m = mutate(|v| v["nixos"] = json!({ "ssh": { "persist": "60s" } }));
    rejects(&m, "nixos.ssh.persist", &[]);
    let m = mutate(|v| v["nixos"] = json!({ "ssh": { "persist": -1 } }));
    rejects(&m, "nixos.ssh.persist", &[]);
    for fine in [0, 60, 3600] {
        let m = mutate(|v| v["nixos"] = json!({ "ssh": { "persist": fine } }));
        let v = validate_value(Path::new("persist.json"), &m)
            .unwrap_or_else(|e| panic!("persist = {fine} refused: {e}"));
        assert_eq!(v.manifest.nixos.ssh.persist, fine);
    }
}

#[test]
fn top_level_health_check_timeout_zero() {
    let m = mutate(|v| v["health_check_timeout"] = json!(0));
    rejects(&m, "health_check_timeout", &["a timeout of 0 seconds"]);
}

#[test]
fn too_many_retry_attempts() {
    let m = mutate(|v| v["retry_attempts"] = json!(5000));
    rejects(&m, "retry_attempts", &["at most 1000 retry attempts"]);
}

// ---------------------------------------------------------------- terraform

#[test]
fn empty_terraform_binary() {
    let m = mutate(|v| v["terraform"] = json!({"binary": " "}));
    rejects(
        &m,
        "terraform.binary",
        &["the Terraform binary name is empty"],
    );
}

#[test]
fn bad_terraform_variable_name() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["terraform"] =
            json!({"modules": ["./tf/wiki"], "variables": {"wiki url": "x"}})
    });
    rejects(
        &m,
        "services.wiki.interface.terraform.variables.\"wiki url\"",
        &["\"wiki url\" is not a valid Terraform variable name"],
    );
}

#[test]
fn bad_terraform_target() {
    let m = mutate(|v| {
        v["services"]["wiki"]["interface"]["terraform"] =
            json!({"modules": ["./tf/wiki"], "targets": ["module.wiki db"]})
    });
    rejects(
        &m,
        "services.wiki.interface.terraform.targets[0]",
        &["\"module.wiki db\" is not a Terraform resource address"],
    );
}

// ---------------------------------------------------------------- deployment_phases

#[test]
fn deployment_phases_disagree_with_dependencies() {
    let m = mutate(|v| v["deployment_phases"] = json!({"services": ["search", "wiki", "status"]}));
    rejects(
        &m,
        "deployment_phases.services[0]",
        &["'search' is listed before 'wiki', which it depends on"],
    );
}

#[test]
fn unknown_name_in_deployment_phases() {
    let m = mutate(|v| v["deployment_phases"] = json!({"services": ["wiki", "search", "statuss"]}));
    rejects(
        &m,
        "deployment_phases.services[2]",
        &["unknown service \"statuss\"", "did you mean 'status'?"],
    );
}

#[test]
fn application_listed_in_nix_core() {
    let m = mutate(|v| {
        v["deployment_phases"] =
            json!({"nix_core": ["dns", "postgresql", "caddy", "authentik", "wiki"]})
    });
    rejects(
        &m,
        "deployment_phases.nix_core[4]",
        &["'wiki' is an application: it belongs in deployment_phases.services"],
    );
}

#[test]
fn core_service_listed_under_services_phase() {
    let m = mutate(|v| v["deployment_phases"] = json!({"services": ["caddy", "wiki"]}));
    rejects(
        &m,
        "deployment_phases.services[0]",
        &["'caddy' is a core service: it belongs in deployment_phases.nix_core"],
    );
}

#[test]
fn name_listed_twice_in_deployment_phases() {
    let m = mutate(|v| v["deployment_phases"] = json!({"tf_infra": ["dns", "wiki", "dns"]}));
    rejects(
        &m,
        "deployment_phases.tf_infra[2]",
        &["'dns' is listed twice"],
    );
}

// ---------------------------------------------------------------- overall shape

#[test]
fn missing_network_block() {
    let m = mutate(|v| {
        remove(v, "network");
    });
    rejects(&m, "network", &["missing required network block"]);
}

#[test]
fn missing_network_domain() {
    let m = mutate(|v| {
        remove(&mut v["network"], "domain");
    });
    rejects(&m, "network.domain", &["missing required domain"]);
}

#[test]
fn top_level_list() {
    rejects(
        &json!([small()]),
        "",
        &["expected an attribute set, found a list"],
    );
}

#[test]
fn top_level_scalars() {
    rejects(&Value::Null, "", &["expected an attribute set, found null"]);
    rejects(&json!("manifest"), "", &["found a string"]);
    rejects(&json!(7), "", &["found an integer"]);
}

#[test]
fn empty_object() {
    let empty = json!({});
    rejects(&empty, "network", &["missing required network block"]);
    rejects(&empty, "core_services", &["missing core_services block"]);
}

/// Every node below `v`: its path as diagnostics write it, and its JSON
/// pointer. (The example's keys are all plain, so neither needs quoting.)
fn nodes(v: &Value, path: &str, pointer: &str, out: &mut Vec<(String, String)>) {
    let children: Vec<(String, String, &Value)> = match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, child)| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                (p, format!("{pointer}/{k}"), child)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, child)| (format!("{path}[{i}]"), format!("{pointer}/{i}"), child))
            .collect(),
        _ => Vec::new(),
    };
    for (p, ptr, child) in children {
        nodes(child, &p, &ptr, out);
        out.push((p, ptr));
    }
}

#[test]
fn every_value_of_the_wrong_type_is_named_at_its_path() {
    let mut all = Vec::new();
    nodes(&small(), "", "", &mut all);
    assert!(all.len() > 80, "only {} nodes", all.len());
    for (path, pointer) in all {
        let m = mutate(|v| {
            let node = v.pointer_mut(&pointer).expect("the node exists");
            *node = match node {
                Value::String(_) => json!(7),
                Value::Number(_) | Value::Bool(_) => json!("7"),
                Value::Array(_) => json!({"x": 1}),
                Value::Object(_) | Value::Null => json!([1]),
            };
        });
        rejects(&m, &path, &["expected"]);
    }
}

#[test]
fn three_independent_mistakes_are_reported_together() {
    let m = mutate(|v| {
        v["services"]["wiki"]["depends_on"][1] = json!("authentk");
        v["services"]["status"]["vmid"] = json!(5);
        v["network"]["vlan_tag"] = json!(5000);
    });
    let errors = errors(&m);
    assert!(
        errors.len() >= 3,
        "only {} error(s):\n{}",
        errors.len(),
        listing(&errors)
    );
    for (path, needle) in [
        (
            "services.wiki.depends_on[1]",
            "unknown service \"authentk\"",
        ),
        ("services.status.vmid", "vmid 5 is out of range"),
        ("network.vlan_tag", "VLAN tag 5000"),
    ] {
        assert!(
            errors
                .iter()
                .any(|d| d.path.as_str() == path && d.message.contains(needle)),
            "missing {path}: {needle}; errors:\n{}",
            listing(&errors)
        );
    }
}

// ---------------------------------------------------------------- the file, through the binary

/// Runs the binary with `args`, then `-m manifest`.
fn nixmox(args: &[&str], manifest: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nixmox"))
        .args(args)
        .arg("-m")
        .arg(manifest)
        .env_remove("NIXMOX_MANIFEST")
        .env("NO_COLOR", "1")
        .output()
        .expect("run the nixmox binary")
}

/// Writes `contents` to `name` in a fresh temporary directory.
fn write_temp(name: &str, contents: impl AsRef<[u8]>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write the temporary manifest");
    (dir, path)
}

/// Runs `validate -m file`: it must exit 1 without a panic; returns stderr.
#[track_caller]
fn validate_fails(file: &Path) -> String {
    let out = nixmox(&["validate"], file);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "validate -m {} should exit 1; stderr:\n{stderr}",
        file.display()
    );
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
    stderr
}

#[track_caller]
fn assert_mentions(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
}

fn small_json_text() -> String {
    serde_json::to_string_pretty(&small()).expect("encode the small example")
}

#[test]
fn invalid_json_file() {
    let (_dir, path) = write_temp("manifest.json", "{\"network\": {\"domain\": \"x.lan\",}");
    let stderr = validate_fails(&path);
    assert_mentions(&stderr, &["is not valid JSON", "line 1"]);
}

#[test]
fn json_with_a_repeated_key() {
    let text = small_json_text().replacen(
        "\"services\": {",
        "\"services\": {\"wiki\": {\"enable\": false},",
        1,
    );
    let (_dir, path) = write_temp("manifest.json", text);
    let stderr = validate_fails(&path);
    assert_mentions(
        &stderr,
        &["is not valid JSON", "duplicate key \"wiki\" at line"],
    );
}

#[test]
fn invalid_yaml_file() {
    let (_dir, path) = write_temp("manifest.yaml", "network:\n  domain: [x.lan\n");
    let stderr = validate_fails(&path);
    assert_mentions(&stderr, &["is not valid YAML", "line"]);
}

#[test]
fn invalid_toml_file() {
    let (_dir, path) = write_temp("manifest.toml", "[network]\ndomain = \n");
    let stderr = validate_fails(&path);
    assert_mentions(&stderr, &["is not valid TOML", "line 2"]);
}

#[test]
fn empty_files_of_each_format() {
    for (name, needle) in [
        ("manifest.json", "is not valid JSON"),
        ("manifest.yaml", "expected an attribute set, found null"),
        ("manifest.toml", "missing required network block"),
    ] {
        let (_dir, path) = write_temp(name, "");
        let stderr = validate_fails(&path);
        assert_mentions(&stderr, &[needle]);
    }
}

#[test]
fn non_utf8_bytes() {
    let (_dir, path) = write_temp("manifest.json", b"{\"network\": \"\xff\xfe\"}");
    let stderr = validate_fails(&path);
    assert_mentions(&stderr, &["is not valid UTF-8 text", "offset 13"]);
}

#[test]
fn unknown_extension() {
    let (_dir, path) = write_temp("manifest.txt", small_json_text());
    let stderr = validate_fails(&path);
    assert_mentions(
        &stderr,
        &["unknown format \"txt\"", ".nix, .json, .toml, .yaml"],
    );
}

#[test]
fn a_directory() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("manifest.json");
    std::fs::create_dir(&path).expect("create a directory named manifest.json");
    let stderr = validate_fails(&path);
    assert_mentions(
        &stderr,
        &["manifest.json: not a regular file (a directory)"],
    );
}

#[test]
fn a_nonexistent_path() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("nowhere.json");
    let stderr = validate_fails(&path);
    assert_mentions(&stderr, &["nowhere.json: cannot open it"]);
}

#[test]
fn deeply_nested_json_yaml_and_toml() {
    let depth = 10_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for (name, text, needle) in [
        ("manifest.json", nested.clone(), "is not valid JSON"),
        (
            "manifest.yaml",
            format!("network: {nested}\n"),
            "is not valid YAML",
        ),
        (
            "manifest.toml",
            format!("network = {nested}\n"),
            "is not valid TOML",
        ),
    ] {
        let (_dir, path) = write_temp(name, text);
        let stderr = validate_fails(&path);
        assert_mentions(&stderr, &[needle]);
    }
}

#[test]
fn deeply_nested_value_inside_a_valid_tree() {
    // Within the parser's limit, but deep where the schema expects a string.
    let mut deep = json!("x");
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let m = mutate(|v| v["services"]["wiki"]["hostname"] = deep);
    rejects(
        &m,
        "services.wiki.hostname",
        &["expected a string, found a list"],
    );
}

#[test]
fn huge_string_value() {
    let huge = format!("{}.stack.example", "a".repeat(5 * 1024 * 1024));
    let m = mutate(|v| v["services"]["wiki"]["hostname"] = json!(huge));
    let (_dir, path) = write_temp(
        "manifest.json",
        serde_json::to_vec(&m).expect("encode the manifest"),
    );
    let stderr = validate_fails(&path);
    assert_mentions(
        &stderr,
        &["services.wiki.hostname", "longer than 253 characters"],
    );
    assert!(
        stderr.len() < 16 * 1024,
        "the huge value was echoed back: {} bytes of stderr",
        stderr.len()
    );
}

#[test]
fn huge_unknown_names_are_rejected_promptly() {
    // Suggestions compare strings in quadratic time: megabyte names must not.
    let huge = "k".repeat(5 * 1024 * 1024);
    let m = mutate(|v| {
        v[huge.as_str()] = json!(1);
        rename(&mut v["services"], "status", &huge);
        v["services"]["wiki"]["depends_on"][1] = json!(format!("{huge}x"));
    });
    // The path shows the key cut to 80 characters, so it cannot flood the terminal.
    let shown = format!("{}…", "k".repeat(80));
    rejects(&m, &shown, &["unknown key", "allowed keys: network"]);
    rejects(
        &m,
        "services.wiki.depends_on[1]",
        &["unknown service \"kkkk"],
    );
}

#[test]
fn file_over_the_size_limit() {
    let padding = " ".repeat(17 * 1024 * 1024);
    let (_dir, path) = write_temp("manifest.json", format!("{{}}{padding}"));
    let stderr = validate_fails(&path);
    assert_mentions(&stderr, &["bytes; at most", "are accepted"]);
}

fn have_nix() -> bool {
    Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn nix_syntax_error_carries_nix_own_message() {
    if !have_nix() {
        eprintln!("skipped: nix-instantiate is not on PATH");
        return;
    }
    let (_dir, path) = write_temp(
        "manifest.nix",
        "{\n  network = {\n    domain = \"x.lan\"\n  };\n}\n",
    );
    let stderr = validate_fails(&path);
    assert_mentions(
        &stderr,
        &[
            "cannot evaluate",
            "Nix evaluation failed",
            "syntax error, unexpected",
        ],
    );
}

#[test]
fn validation_errors_through_the_binary() {
    let m = mutate(|v| v["services"]["wiki"]["depends_on"][1] = json!("postgress"));
    let (_dir, path) = write_temp("manifest.json", serde_json::to_vec(&m).expect("encode"));
    let stderr = validate_fails(&path);
    assert_mentions(
        &stderr,
        &[
            "services.wiki.depends_on[1]",
            "unknown service \"postgress\"",
            "did you mean 'postgresql'?",
            "nothing was run",
        ],
    );
}

#[test]
fn validate_json_reports_errors_with_path_and_message() {
    let m = mutate(|v| {
        v["services"]["wiki"]["depends_on"][1] = json!("postgress");
        v["network"]["vlan_tag"] = json!(5000);
    });
    let (_dir, path) = write_temp("manifest.json", serde_json::to_vec(&m).expect("encode"));
    let out = nixmox(&["validate", "--json"], &path);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("validate --json prints JSON");
    assert_eq!(report["valid"], json!(false));
    let errors = report["errors"].as_array().expect("an errors array");
    assert!(errors.len() >= 2, "{report:#}");
    for e in errors {
        assert!(e["path"].is_string() && e["message"].is_string(), "{e}");
    }
    assert!(
        errors
            .iter()
            .any(|e| e["path"] == "services.wiki.depends_on[1]"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("postgress"))),
        "{report:#}"
    );
}

#[test]
fn validate_json_reports_a_source_failure_in_the_same_shape() {
    let (_dir, path) = write_temp("manifest.json", "{");
    let out = nixmox(&["validate", "--json"], &path);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("validate --json prints JSON");
    assert_eq!(report["valid"], json!(false));
    let first = &report["errors"][0];
    assert_eq!(first["path"], json!(""));
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.contains("is not valid JSON")),
        "{report:#}"
    );
}

// ---------------------------------------------------------------- the RADIUS secret

const SECRET: &str = "rad-Qx7v-secret-9d41";

/// Every command that reads a manifest and reports on it.
const REPORTING: &[&[&str]] = &[
    &["validate"],
    &["validate", "--json"],
    &["plan", "--offline"],
    &["plan", "--offline", "--json"],
    &["graph", "--format", "json"],
    &["graph", "--format", "dot"],
    &["graph", "--format", "mermaid"],
];

/// Runs every reporting command on `file`; asserts `secret` is in no output
/// and every command exits with `code`.
#[track_caller]
fn secret_stays_hidden(file: &Path, secret: &str, code: i32) {
    for args in REPORTING {
        let out = nixmox(args, file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = format!("nixmox {} -m {}", args.join(" "), file.display());
        assert!(!stderr.contains("panicked"), "{shown} panicked:\n{stderr}");
        assert_eq!(
            out.status.code(),
            Some(code),
            "{shown}:\n{stdout}\n{stderr}"
        );
        assert!(
            !stdout.contains(secret),
            "{shown} printed the secret on stdout:\n{stdout}"
        );
        assert!(
            !stderr.contains(secret),
            "{shown} printed the secret on stderr:\n{stderr}"
        );
    }
}

fn with_radius(radius: Value, change: impl FnOnce(&mut Value)) -> Value {
    mutate(|v| {
        v["network"]["outposts"] = json!({"radius": radius});
        change(v);
    })
}

fn json_file(m: &Value) -> (tempfile::TempDir, PathBuf) {
    write_temp(
        "manifest.json",
        serde_json::to_vec_pretty(m).expect("encode"),
    )
}

#[test]
fn secret_is_hidden_for_a_valid_manifest() {
    let m = with_radius(
        json!({"shared_secret": SECRET, "client_networks": ["10.77.0.0/24"]}),
        |_| {},
    );
    let (_dir, path) = json_file(&m);
    secret_stays_hidden(&path, SECRET, 0);
}

#[test]
fn secret_is_hidden_when_its_neighbours_are_wrong() {
    let m = with_radius(
        json!({"shared_secret": SECRET, "client_networks": ["10.77.0.0/33"], "shared_secrte": SECRET}),
        |v| v["network"]["vlan_tag"] = json!(5000),
    );
    assert!(errors(&m).len() >= 3);
    let (_dir, path) = json_file(&m);
    secret_stays_hidden(&path, SECRET, 1);
}

#[test]
fn secret_is_hidden_when_it_has_the_wrong_type() {
    let number = 918_273_645_u64;
    let m = with_radius(json!({"shared_secret": number}), |_| {});
    rejects(
        &m,
        "network.outposts.radius.shared_secret",
        &["expected a string, found an integer"],
    );
    let (_dir, path) = json_file(&m);
    secret_stays_hidden(&path, &number.to_string(), 1);

    let m = with_radius(json!({"shared_secret": [SECRET]}), |_| {});
    rejects(
        &m,
        "network.outposts.radius.shared_secret",
        &["expected a string, found a list"],
    );
    let (_dir, path) = json_file(&m);
    secret_stays_hidden(&path, SECRET, 1);
}

#[test]
fn secret_is_hidden_from_toml_syntax_errors() {
    let (_dir, path) = write_temp(
        "manifest.toml",
        format!("[network.outposts.radius]\nshared_secret = \"{SECRET}\" 1\n"),
    );
    let stderr = validate_fails(&path);
    assert_mentions(&stderr, &["is not valid TOML", "line 2"]);
    secret_stays_hidden(&path, SECRET, 1);
}

#[test]
fn secret_is_hidden_from_nix_errors() {
    if !have_nix() {
        eprintln!("skipped: nix-instantiate is not on PATH");
        return;
    }
    let (_dir, path) = write_temp(
        "manifest.nix",
        format!(
            "{{\n  network = {{\n    domain = \"x.lan\";\n    outposts.radius.shared_secret = \"{SECRET}\"\n  }};\n}}\n"
        ),
    );
    let stderr = validate_fails(&path);
    assert_mentions(&stderr, &["syntax error, unexpected"]);
    secret_stays_hidden(&path, SECRET, 1);
}
