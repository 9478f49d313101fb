//! The `serve` section: where `nixmox serve` listens, the URL browsers use,
//! who may read without a login, and the login itself (the stack's own
//! identity provider, or a token file for scripts).

use crate::manifest::decode::Obj;
use crate::manifest::diag::{Diagnostics, Path};
use crate::manifest::model::{ServeOidc, ServeSettings, SERVE_SERVICE};
use serde_json::Value;

/// Sessions last at most a month.
const MAX_SESSION_HOURS: u64 = 720;

pub fn serve(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<ServeSettings> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &[
            "url",
            "listen",
            "public_read",
            "session_hours",
            "token_file",
            "oidc",
        ],
    )?;
    let mut s = ServeSettings::default();
    if let Some(listen) = obj.opt::<String>(diags, "listen") {
        match listen.parse::<std::net::SocketAddr>() {
            Ok(a) => s.listen = a,
            Err(_) => diags.error(
                &obj.at("listen"),
                format!("{listen:?} is not an address and port such as 127.0.0.1:8470"),
            ),
        }
    }
    s.url = match obj.opt::<String>(diags, "url") {
        Some(url) => match check_url(&url) {
            Ok(u) => u,
            Err(e) => {
                diags.error(&obj.at("url"), e);
                s.url
            }
        },
        None => format!("http://{}", s.listen),
    };
    s.public_read = obj.or(diags, "public_read", false);
    s.session_hours = obj.or(diags, "session_hours", 8u64);
    if !(1..=MAX_SESSION_HOURS).contains(&s.session_hours) {
        diags.error(
            &obj.at("session_hours"),
            format!("expected 1 to {MAX_SESSION_HOURS} hours"),
        );
    }
    s.token_file = obj.opt::<String>(diags, "token_file");
    if s.token_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
        diags.error(&obj.at("token_file"), "empty file name");
    }
    if let Some(v) = obj.raw("oidc") {
        s.oidc = oidc(diags, obj.at("oidc"), v);
    }
    Some(s)
}

fn oidc(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<ServeOidc> {
    // `oidc = true;` takes every default.
    if value == &Value::Bool(true) {
        return Some(ServeOidc {
            client_id: SERVE_SERVICE.into(),
            provider: "authentik".into(),
            groups: Vec::new(),
        });
    }
    if value == &Value::Bool(false) {
        return None;
    }
    let obj = Obj::open(diags, path, value, &["client_id", "provider", "groups"])?;
    let client_id = obj.or(diags, "client_id", SERVE_SERVICE.to_string());
    super::interface::check_client_id(diags, &obj.at("client_id"), &client_id);
    let provider = obj.or(diags, "provider", "authentik".to_string());
    if provider != "authentik" {
        diags.error(
            &obj.at("provider"),
            format!("unknown identity provider {provider:?}: only \"authentik\" is supported"),
        );
    }
    let groups: Vec<String> = obj.or(diags, "groups", Vec::new());
    for (i, g) in groups.iter().enumerate() {
        if g.trim().is_empty() {
            diags.error(&obj.at("groups").index(i), "empty group name");
        }
    }
    Some(ServeOidc {
        client_id,
        provider,
        groups,
    })
}

/// An http(s) URL with a host and no query or fragment, without its trailing slash.
fn check_url(url: &str) -> Result<String, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!(
            "{url:?}: expected an http:// or https:// URL with a host"
        ));
    }
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(format!(
            "{url:?}: the URL serve is reached at takes no query, fragment or user"
        ));
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> (Option<ServeSettings>, Vec<String>) {
        let mut d = Diagnostics::default();
        let s = serve(&mut d, Path::root().key("serve"), &v);
        let (errors, _) = d.into_sorted();
        (s, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_follow_listen() {
        let (s, e) = parse(json!({"listen": "127.0.0.1:9000", "oidc": true}));
        assert!(e.is_empty(), "{e:?}");
        let s = s.expect("settings");
        assert_eq!(s.url, "http://127.0.0.1:9000");
        assert_eq!(s.oidc.expect("oidc").client_id, "nixmox");
        assert_eq!(s.session_hours, 8);
    }

    #[test]
    fn bad_values_name_their_path() {
        let (_, e) = parse(json!({
            "url": "ftp://x/?a=1", "listen": "nowhere", "session_hours": 0,
            "oidc": {"client_id": "a b", "provider": "keycloak"}, "tls": true
        }));
        let text = e.join("\n");
        for path in [
            "serve.url",
            "serve.listen",
            "serve.session_hours",
            "serve.oidc.client_id",
            "serve.oidc.provider",
            "serve.tls",
        ] {
            assert!(text.contains(path), "{path} not named in:\n{text}");
        }
    }
}
