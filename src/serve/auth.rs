//! Who is asking. Reading is open when serve listens on loopback (or
//! `serve.public_read`); every action needs a login: a session from the
//! OIDC login (an HttpOnly, SameSite=Strict cookie **and** the session's
//! CSRF token in `X-CSRF-Token`, which another site can neither read nor
//! send), or the token file's content as `Authorization: Bearer`.

use super::app::App;
use super::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "nixmox_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

pub struct Session {
    pub user: String,
    pub csrf: String,
    pub expires: Instant,
    /// Unix time of expiry, for the page.
    pub expires_unix: f64,
}

#[derive(Default)]
pub struct Sessions(HashMap<String, Session>);

impl Sessions {
    /// A new session for `user`; returns its id (the cookie's value).
    pub fn open(&mut self, user: &str, lifetime: Duration) -> Result<String, String> {
        let now = Instant::now();
        self.0.retain(|_, s| s.expires > now);
        if self.0.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                self.0.remove(&oldest);
            }
        }
        let id = random_token()?;
        self.0.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                csrf: random_token()?,
                expires: now + lifetime,
                expires_unix: crate::state::now() + lifetime.as_secs_f64(),
            },
        );
        Ok(id)
    }

    pub fn get(&self, id: &str) -> Option<&Session> {
        self.0.get(id).filter(|s| s.expires > Instant::now())
    }

    pub fn close(&mut self, id: &str) {
        self.0.remove(id);
    }
}

/// 32 random bytes, base64url.
pub fn random_token() -> Result<String, String> {
    use crate::verify::oidc_flow::{b64url, random};
    Ok(b64url(&random(32)?))
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Anonymous,
    /// A browser session; `csrf_ok` when the request carried its token.
    Session {
        user: String,
        csrf_ok: bool,
    },
    Token,
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    let (da, db) = (
        crate::verify::oidc_flow::sha256(a.as_bytes()),
        crate::verify::oidc_flow::sha256(b.as_bytes()),
    );
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub fn caller(app: &App, headers: &HeaderMap) -> ApiResult<Caller> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let given = auth
            .to_str()
            .ok()
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        return match &app.token {
            Some(t) if !given.is_empty() && same(given, &t.text()) => Ok(Caller::Token),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the bearer token is not serve's token (the content of its --token-file / serve.token_file)",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a bearer token was sent, but serve has no token file: start it with --token-file or set serve.token_file",
            )),
        };
    }
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(Caller::Anonymous);
    };
    let sessions = app
        .sessions
        .lock()
        .map_err(|_| ApiError::internal("the sessions are unusable (a thread panicked)"))?;
    Ok(match sessions.get(&id) {
        Some(s) => Caller::Session {
            user: s.user.clone(),
            csrf_ok: headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| same(v, &s.csrf)),
        },
        // An expired or unknown session is no session: reading may still be open.
        None => Caller::Anonymous,
    })
}

/// Reading: open, or any login.
pub fn may_read(app: &App, headers: &HeaderMap) -> ApiResult<Caller> {
    let c = caller(app, headers)?;
    if app.read_open || c != Caller::Anonymous {
        Ok(c)
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "log in to read this stack: serve listens on {}, not loopback, and serve.public_read is off",
                app.listen
            ),
        ))
    }
}

/// Acting: a session with its CSRF token, or the token. Returns who acts.
pub fn may_act(app: &App, headers: &HeaderMap, what: &str) -> ApiResult<String> {
    match caller(app, headers)? {
        Caller::Token => Ok("token".into()),
        Caller::Session {
            user,
            csrf_ok: true,
        } => Ok(user),
        Caller::Session { csrf_ok: false, .. } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what}: the request lacks this session's X-CSRF-Token (from GET /api/session); reload the page"),
        )),
        Caller::Anonymous => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "{what} needs a login: {}",
                match (&app.manifest.serve.oidc, &app.token) {
                    (Some(_), _) => "log in at /auth/login (the stack's identity provider), or send the token file's content as Authorization: Bearer",
                    (None, Some(_)) => "send the token file's content as Authorization: Bearer",
                    (None, None) => "none is configured: set serve.oidc in the manifest or start serve with --token-file",
                }
            ),
        )),
    }
}

pub async fn session(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let c = caller(&app, &headers)?;
    let (user, via, csrf, expires) = match &c {
        Caller::Session { user, .. } => {
            let id = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
            let sessions = app
                .sessions
                .lock()
                .map_err(|_| ApiError::internal("the sessions are unusable (a thread panicked)"))?;
            let s = sessions.get(&id);
            (
                Some(user.clone()),
                Some("oidc"),
                s.map(|s| s.csrf.clone()),
                s.map(|s| s.expires_unix),
            )
        }
        Caller::Token => (Some("token".to_string()), Some("token"), None, None),
        Caller::Anonymous => (None, None, None, None),
    };
    Ok(axum::Json(json!({
        "user": user,
        "via": via,
        "csrf": csrf,
        "expires": expires,
        "read_open": app.read_open,
        "oidc": app.manifest.serve.oidc.is_some(),
        "login_url": "/auth/login",
    }))
    .into_response())
}

pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    may_act(&app, &headers, "logging out")?;
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(mut s) = app.sessions.lock() {
            s.close(&id);
        }
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie(&app, SESSION_COOKIE))],
    )
        .into_response())
}

/// `Secure` when browsers reach serve over https.
pub fn secure(app: &App) -> &'static str {
    if app.manifest.serve.url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

pub fn clear_cookie(app: &App, name: &str) -> String {
    format!(
        "{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        secure(app)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_random() {
        let mut s = Sessions::default();
        let a = s.open("alice", Duration::from_secs(60)).expect("open");
        let b = s.open("alice", Duration::from_millis(0)).expect("open");
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(s.get(&a).map(|x| x.user.as_str()), Some("alice"));
        assert!(s.get(&b).is_none(), "an expired session is no session");
        s.close(&a);
        assert!(s.get(&a).is_none());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; nixmox_session=xyz".parse().expect("header"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        assert!(same("abc", "abc") && !same("abc", "abd"));
    }
}
