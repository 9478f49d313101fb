//! The admin API of the lab's identity provider (the Authentik stand-in on
//! the `authentik` host): JSON over HTTP on the lab network, a bearer token
//! read from a file. Paths follow Authentik's own API
//! (`/api/v3/providers/oauth2/`, `/api/v3/core/applications/`).

use crate::Settings;
use serde_json::Value;
use std::time::Duration;
use tf_provider::Diagnostics;

pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// What a call found: the object, or nothing there (404).
pub enum Found {
    Object(Value),
    Gone,
}

impl Api {
    pub fn new(diags: &mut Diagnostics, s: &Settings) -> Option<Api> {
        let Some(base) = s.url.clone() else {
            diags.root_error(
                "nixmoxlab: no url",
                "set url in the provider block to the lab identity provider's address, e.g. http://10.213.0.5:9000",
            );
            return None;
        };
        let read = match &s.token {
            Some(t) => Ok(t.clone()),
            None => std::fs::read_to_string(&s.token_file),
        };
        let token = match read {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            Ok(_) => {
                diags.root_error(
                    "nixmoxlab: empty API token",
                    format!("{} is empty", s.token_file.display()),
                );
                return None;
            }
            Err(e) => {
                diags.root_error(
                    "nixmoxlab: no API token",
                    format!(
                        "cannot read {}: {e}; the lab's identity provider writes it when it first starts (or set token_file)",
                        s.token_file.display()
                    ),
                );
                return None;
            }
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .http_status_as_error(false)
            .build()
            .into();
        Some(Api { base, token, agent })
    }

    fn fail(diags: &mut Diagnostics, what: &str, why: String) {
        diags.root_error(format!("nixmoxlab: {what} failed"), why);
    }

    /// One call; `body` for POST/PATCH. Never puts the token in a message.
    pub fn call(
        &self,
        diags: &mut Diagnostics,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Option<Found> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {url}");
        let auth = format!("Bearer {}", self.token);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("authorization", &auth)
                .call(),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .send_json(b),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("authorization", &auth)
                .send_json(b),
            _ => {
                Self::fail(diags, &what, "unsupported call".into());
                return None;
            }
        };
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                Self::fail(diags, &what, e.to_string());
                return None;
            }
        };
        let status = response.status().as_u16();
        if status == 404 {
            return Some(Found::Gone);
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        if !(200..300).contains(&status) {
            Self::fail(diags, &what, format!("answered {status}: {}", text.trim()));
            return None;
        }
        if status == 204 || text.trim().is_empty() {
            return Some(Found::Object(Value::Null));
        }
        match serde_json::from_str(&text) {
            Ok(v) => Some(Found::Object(v)),
            Err(e) => {
                Self::fail(diags, &what, format!("an answer that is not JSON: {e}"));
                None
            }
        }
    }
}
