//! The login through the stack's own identity provider: nixmox is a
//! confidential client of the issuer `/application/o/nixmox/` (registered
//! by tf:auth-core from `serve.oidc`, like any application). The
//! authorization-code flow with PKCE, state and nonce; the code is redeemed
//! and the ID token checked (issuer, audience, nonce, expiry, signature) by
//! the same code `verify` uses; the client secret comes from auth-core's
//! `client_secrets` output and stays in memory.

use super::app::App;
use super::auth::{self, clear_cookie, cookie, secure};
use super::error::{ApiError, ApiResult};
use crate::verify::oidc_flow::{b64url, random, redeem, sha256, Endpoints, Redemption};
use crate::verify::{auth_domain, caddy, http};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOGIN_COOKIE: &str = "nixmox_login";
/// A login must come back within this.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Logins under way at most (each holds a few random strings).
const MAX_PENDING: usize = 1000;

struct Pending {
    nonce: String,
    verifier: String,
    started: Instant,
}

/// What the issuer said about itself, and the client's secret: fetched at
/// the first login, kept.
#[derive(Clone)]
struct Issuer {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: Option<String>,
    secret: crate::secrets::Secret,
}

#[derive(Default)]
pub struct Logins {
    pending: HashMap<String, Pending>,
    issuer: Option<Issuer>,
}

fn ca_file(app: &App) -> Option<String> {
    std::env::var("NIXMOX_CA_FILE")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| app.manifest.verify.ca_file.clone())
}

/// Discovery through the stack's proxy, and the secret from auth-core's outputs.
fn discover(app: &App) -> Result<Issuer, String> {
    let m = &app.manifest;
    let o = m.serve.oidc.as_ref().ok_or(
        "serve.oidc is not set in the manifest: there is no login through the identity provider",
    )?;
    let (Some(domain), Some(pin)) = (auth_domain(m), caddy(m)) else {
        return Err("no proxy domain in front of authentik to reach the issuer".into());
    };
    let issuer = format!(
        "https://{domain}/application/o/{}/",
        crate::manifest::SERVE_SERVICE
    );
    let url = format!("{issuer}.well-known/openid-configuration");
    let ca = ca_file(app);
    let r = http::get(&http::Request {
        url: &url,
        pin: Some(pin),
        ca_file: ca.as_deref(),
        timeout: Duration::from_secs(10),
    })?;
    if r.status != 200 {
        return Err(format!(
            "{url} answered {}: is nixmox's client registered? Run `nixmox apply` once after adding serve.oidc",
            r.status
        ));
    }
    let doc: Value =
        serde_json::from_str(&r.body).map_err(|e| format!("{url} is not JSON: {e}"))?;
    if doc["issuer"] != issuer.as_str() {
        return Err(format!(
            "{url} names issuer {}, expected {issuer}",
            doc["issuer"]
        ));
    }
    let field = |k: &str| {
        doc[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{url} has no {k}"))
    };
    let p = crate::plan::build(m, &[]).map_err(|e| e.to_string())?;
    let tf = crate::terraform::stack::terraform_for(m)?;
    // Only tf:auth-core's outputs: one read of its state, not every workspace's.
    let mut outputs = Vec::new();
    for step in crate::terraform::phases::steps(m, &p) {
        if step.phase == crate::plan::Phase::TfAuthCore && tf.has_state(&step.workspace) {
            outputs.push(
                tf.held_outputs(step.phase, &step.workspace)
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    let secret = outputs
        .iter()
        .find_map(|out| {
            out.0
                .get("client_secrets")
                .and_then(|x| x.value.get(&o.client_id))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| crate::secrets::Secret::new(Value::String(s.to_string())))
        })
        .ok_or_else(|| {
            format!(
                "no client_secrets output names the client {}: run `nixmox apply` once after adding serve.oidc, so tf:auth-core registers it",
                o.client_id
            )
        })?;
    Ok(Issuer {
        issuer,
        authorization_endpoint: field("authorization_endpoint")?,
        token_endpoint: field("token_endpoint")?,
        jwks_uri: doc["jwks_uri"].as_str().map(str::to_string),
        secret,
    })
}

async fn issuer(app: &Arc<App>) -> ApiResult<Issuer> {
    if let Some(i) = app.logins.lock().ok().and_then(|l| l.issuer.clone()) {
        return Ok(i);
    }
    let a = Arc::clone(app);
    let found = tokio::task::spawn_blocking(move || discover(&a))
        .await
        .map_err(|e| ApiError::internal(format!("login: {e}")))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("login: the identity provider: {e}"),
            )
        })?;
    if let Ok(mut l) = app.logins.lock() {
        l.issuer = Some(found.clone());
    }
    Ok(found)
}

fn redirect_uri(app: &App) -> String {
    format!("{}/auth/callback", app.manifest.serve.url)
}

/// `GET /auth/login`: off to the identity provider.
pub async fn login(State(app): State<Arc<App>>) -> ApiResult<Response> {
    let Some(o) = app.manifest.serve.oidc.clone() else {
        return Err(ApiError::not_found(
            "there is no login through the identity provider: serve.oidc is not set in the manifest",
        ));
    };
    let iss = issuer(&app).await?;
    let rnd = |n| random(n).map(|b| b64url(&b)).map_err(ApiError::internal);
    let (state, nonce, verifier) = (rnd(16)?, rnd(16)?, rnd(32)?);
    let challenge = b64url(&sha256(verifier.as_bytes()));
    let mut u = url::Url::parse(&iss.authorization_endpoint).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("login: the issuer's authorization_endpoint: {e}"),
        )
    })?;
    u.query_pairs_mut()
        .append_pair("client_id", &o.client_id)
        .append_pair("redirect_uri", &redirect_uri(&app))
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    {
        let mut l = app
            .logins
            .lock()
            .map_err(|_| ApiError::internal("the logins are unusable (a thread panicked)"))?;
        l.pending.retain(|_, p| p.started.elapsed() < LOGIN_TTL);
        if l.pending.len() >= MAX_PENDING {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many logins under way: try again in a few minutes",
            ));
        }
        l.pending.insert(
            state.clone(),
            Pending {
                nonce,
                verifier,
                started: Instant::now(),
            },
        );
    }
    // Lax: the identity provider's redirect back is a cross-site navigation.
    let cookie = format!(
        "{LOGIN_COOKIE}={state}; Path=/auth; HttpOnly; SameSite=Lax; Max-Age={}{}",
        LOGIN_TTL.as_secs(),
        secure(&app)
    );
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, u.to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

/// `GET /auth/callback`: the code redeemed, the ID token checked, a session opened.
pub async fn callback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    let refused = |m: String| ApiError::new(StatusCode::FORBIDDEN, format!("login refused: {m}"));
    let Some(o) = app.manifest.serve.oidc.clone() else {
        return Err(ApiError::not_found("serve.oidc is not set in the manifest"));
    };
    if let Some(e) = q.get("error") {
        return Err(refused(format!(
            "the identity provider answered {}{}",
            e.chars().take(100).collect::<String>(),
            q.get("error_description")
                .map(|d| format!(" ({})", d.chars().take(200).collect::<String>()))
                .unwrap_or_default()
        )));
    }
    let state = q.get("state").cloned().unwrap_or_default();
    if state.is_empty() || cookie(&headers, LOGIN_COOKIE).as_deref() != Some(state.as_str()) {
        return Err(refused(
            "the answer does not belong to a login this browser started here: start again at /auth/login".into(),
        ));
    }
    let pending = app
        .logins
        .lock()
        .map_err(|_| ApiError::internal("the logins are unusable (a thread panicked)"))?
        .pending
        .remove(&state)
        .filter(|p| p.started.elapsed() < LOGIN_TTL)
        .ok_or_else(|| {
            refused("the login expired or was used already: start again at /auth/login".into())
        })?;
    let code = q
        .get("code")
        .filter(|c| !c.is_empty())
        .cloned()
        .ok_or_else(|| refused("the identity provider sent no code".into()))?;
    let iss = issuer(&app).await?;
    if let Some(named) = q.get("iss") {
        if *named != iss.issuer {
            return Err(refused(format!(
                "the answer names another issuer than {}",
                iss.issuer
            )));
        }
    }
    let (a, client_id) = (Arc::clone(&app), o.client_id.clone());
    let claims = tokio::task::spawn_blocking(move || {
        let pin = caddy(&a.manifest).ok_or("no caddy host to reach the issuer through")?;
        let ca = ca_file(&a);
        redeem(
            &Endpoints {
                issuer: &iss.issuer,
                token_endpoint: &iss.token_endpoint,
                jwks_uri: iss.jwks_uri.as_deref(),
                pin,
                ca_file: ca.as_deref(),
                timeout: Duration::from_secs(10),
            },
            &client_id,
            Some(&iss.secret.text()),
            &Redemption {
                code: &code,
                redirect: &redirect_uri(&a),
                verifier: &pending.verifier,
                nonce: &pending.nonce,
            },
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("login: {e}")))?
    .map_err(refused)?;
    let user = claims["preferred_username"]
        .as_str()
        .or_else(|| claims["sub"].as_str())
        .filter(|u| !u.is_empty() && u.len() <= 200 && !u.chars().any(char::is_control))
        .ok_or_else(|| {
            refused("the ID token names no usable user (preferred_username or sub)".into())
        })?
        .to_string();
    if !o.groups.is_empty() {
        let groups: Vec<&str> = match &claims["groups"] {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => vec![s.as_str()],
            _ => Vec::new(),
        };
        if !o.groups.iter().any(|g| groups.contains(&g.as_str())) {
            return Err(refused(format!(
                "{user} is in none of serve.oidc.groups ({})",
                o.groups.join(", ")
            )));
        }
    }
    let lifetime = Duration::from_secs(app.manifest.serve.session_hours * 3600);
    let id = app
        .sessions
        .lock()
        .map_err(|_| ApiError::internal("the sessions are unusable (a thread panicked)"))?
        .open(&user, lifetime)
        .map_err(ApiError::internal)?;
    eprintln!("nixmox serve: {user} logged in");
    let session = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        auth::SESSION_COOKIE,
        lifetime.as_secs(),
        secure(&app)
    );
    let mut res = (StatusCode::FOUND, [(header::LOCATION, "/".to_string())]).into_response();
    let h = res.headers_mut();
    for c in [
        session,
        clear_cookie(&app, LOGIN_COOKIE).replace("Path=/", "Path=/auth"),
    ] {
        if let Ok(v) = c.parse() {
            h.append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}
