//! The plan for people (a compact table grouped by phase) and for programs
//! (the stable JSON shape documented in docs/plan-json.md).

use super::{Phase, Plan};
use crate::manifest::{Auth, AuthFrom, Manifest};
use serde::Serialize;
use std::fmt::Write;

/// Version of the JSON shape; bumped only on incompatible changes.
pub const PLAN_JSON_VERSION: u32 = 1;

#[derive(Serialize)]
pub struct PlanJson<'p> {
    pub version: u32,
    pub manifest: String,
    pub steps: &'p [super::Step],
    pub core: &'p [String],
    pub waves: &'p [Vec<String>],
    pub disabled: &'p [String],
    pub skipped: &'p [String],
    pub forced: &'p [String],
    /// What `--on` selected and what it pulled in (absent without `--on`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<&'p super::Chosen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolling: Option<&'p super::Rolling>,
    /// Every proxy route of the plan's services, with the auth it gets.
    pub routes: Vec<Route>,
}

/// One proxy route as the plan shows it.
#[derive(Serialize)]
pub struct Route {
    pub service: String,
    /// The route's name in the multi-route form.
    pub route: Option<String>,
    pub domain: String,
    pub path: String,
    pub upstream: String,
    /// `oidc`, `forward_auth`, or `null` for an open route.
    pub auth: Option<&'static str>,
    /// The OIDC client, for `oidc`.
    pub client_id: Option<String>,
    /// `route`, `service` (inherited), `open` (declared `"none"`) or `unset`.
    pub auth_from: AuthFrom,
}

/// The routes of the services in the plan, in plan order.
pub fn routes(m: &Manifest, plan: &Plan) -> Vec<Route> {
    plan.core
        .iter()
        .chain(plan.waves.iter().flatten())
        .filter_map(|n| m.service(n))
        .flat_map(|s| {
            s.proxies.iter().map(|p| {
                let (auth, client_id) = match &p.auth {
                    Some(Auth::Oidc(o)) => (Some("oidc"), Some(o.client_id.clone())),
                    Some(Auth::ForwardAuth { .. }) => (Some("forward_auth"), None),
                    None => (None, None),
                };
                Route {
                    service: s.name.clone(),
                    route: p.name.clone(),
                    domain: p.domain.clone(),
                    path: p.path.clone(),
                    upstream: p.upstream.clone(),
                    auth,
                    client_id,
                    auth_from: p.auth_from,
                }
            })
        })
        .collect()
}

pub fn json<'p>(m: &Manifest, plan: &'p Plan) -> PlanJson<'p> {
    PlanJson {
        version: PLAN_JSON_VERSION,
        manifest: m.source.display().to_string(),
        steps: &plan.steps,
        core: &plan.core,
        waves: &plan.waves,
        disabled: &plan.disabled,
        skipped: &plan.skipped,
        forced: &plan.forced,
        selection: plan.selection.as_ref(),
        rolling: plan.rolling.as_ref(),
        routes: routes(m, plan),
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

pub fn human(m: &Manifest, plan: &Plan) -> String {
    let apps: usize = plan.waves.iter().map(Vec::len).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan for {}: {} ({} core, {}), {}",
        m.source.display(),
        plural(plan.core.len() + apps, "service"),
        plan.core.len(),
        plural(apps, "application"),
        plural(plan.steps.len(), "step"),
    );
    if !plan.disabled.is_empty() {
        let _ = writeln!(out, "Disabled, not deployed: {}", plan.disabled.join(", "));
    }
    if let Some(c) = &plan.selection {
        let _ = writeln!(
            out,
            "Selected (--on {}): {}{}",
            c.selectors.join(","),
            c.chosen.join(", "),
            if c.pulled_in.is_empty() {
                String::new()
            } else {
                format!("; with what they need: {}", c.pulled_in.join(", "))
            }
        );
    }
    if let Some(r) = &plan.rolling {
        let _ = writeln!(out, "Rolling: {}", r.describe());
    }
    if !plan.skipped.is_empty() {
        let _ = writeln!(
            out,
            "Skipped in this run (--skip, and what needs it): {}",
            plan.skipped.join(", ")
        );
    }
    if !plan.forced.is_empty() {
        let _ = writeln!(
            out,
            "Activated even when current (--force): {}",
            plan.forced.join(", ")
        );
    }
    let width = plan
        .steps
        .iter()
        .filter_map(|s| s.service.as_ref().map(String::len))
        .max()
        .unwrap_or(0)
        .max(10);
    let host_width = plan
        .steps
        .iter()
        .filter_map(|s| s.host.as_ref().map(String::len))
        .max()
        .unwrap_or(0)
        .max(4);

    let step = |phase: Phase, service: Option<&str>| {
        plan.steps
            .iter()
            .find(|s| s.phase == phase && s.service.as_deref() == service)
    };

    if let Some(s) = step(Phase::TfInfra, None) {
        let _ = writeln!(out, "\n1. tf:infra      workspace infra: {}", s.summary);
    }
    if !plan.core.is_empty() {
        let _ = writeln!(
            out,
            "\n2. nix:core      one host at a time, each behind its health gate; any failure halts"
        );
        for name in &plan.core {
            let host = step(Phase::NixCore, Some(name))
                .and_then(|s| s.host.clone())
                .unwrap_or_default();
            // A core service's own Terraform runs around its deploy.
            let infra = step(Phase::TfServiceInfra, Some(name))
                .map(|_| format!("tf {name}-infra -> "))
                .unwrap_or_default();
            let config = step(Phase::TfServiceConfig, Some(name))
                .map(|_| format!(" -> tf {name}-config"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "   {name:<width$}  {host:<host_width$}  {infra}nix:core -> health{config}"
            );
        }
    }
    if let Some(s) = step(Phase::TfAuthCore, None) {
        let _ = writeln!(out, "\n3. tf:auth-core  workspace auth-core: {}", s.summary);
        let _ = writeln!(
            out,
            "   then the core again, in order: a host whose env file or system tf:auth-core changed is deployed again behind its health gate"
        );
    }
    if !plan.core.is_empty() {
        let _ = writeln!(
            out,
            "   verify: {} end to end; any failure halts",
            plan.core.join(", ")
        );
    }
    if !plan.waves.is_empty() {
        let _ = writeln!(
            out,
            "\n4. services      per service: tf:service-infra -> nix:service-config -> health -> tf:service-config -> verify"
        );
        for (i, wave) in plan.waves.iter().enumerate() {
            let together = if wave.len() > 1 {
                " (side by side)"
            } else {
                ""
            };
            let _ = writeln!(out, "   wave {}{together}: {}", i + 1, wave.join(", "));
            for name in wave {
                let host = step(Phase::NixServiceConfig, Some(name))
                    .and_then(|s| s.host.clone())
                    .unwrap_or_default();
                let tf = |phase: Phase| {
                    step(phase, Some(name))
                        .map(|s| {
                            let ws = s.workspace.clone().unwrap_or_default();
                            if s.summary.starts_with("no Terraform") {
                                format!("{ws} (no modules)")
                            } else {
                                ws
                            }
                        })
                        .unwrap_or_default()
                };
                let after: Vec<String> = step(Phase::TfServiceInfra, Some(name))
                    .map(|s| {
                        s.after
                            .iter()
                            .filter_map(|a| a.strip_prefix("verify:").map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let after = if after.is_empty() {
                    String::new()
                } else {
                    format!("  after {}", after.join(", "))
                };
                let _ = writeln!(
                    out,
                    "     {name:<width$}  {host:<host_width$}  tf {} | tf {}{after}",
                    tf(Phase::TfServiceInfra),
                    tf(Phase::TfServiceConfig),
                );
            }
        }
    }
    let routes = routes(m, plan);
    if !routes.is_empty() {
        let _ = writeln!(out, "\nProxy routes (Caddy) and the auth each gets:");
        let label = |r: &Route| match &r.route {
            Some(n) => format!("{}/{n}", r.service),
            None => r.service.clone(),
        };
        let at = |r: &Route| format!("{}{}", r.domain, r.path);
        let lw = routes.iter().map(|r| label(r).len()).max().unwrap_or(0);
        let aw = routes.iter().map(|r| at(r).len()).max().unwrap_or(0);
        for r in &routes {
            let what = match (r.auth, &r.client_id) {
                (Some(kind), Some(client)) => format!("{kind} {client}"),
                (Some(kind), None) => kind.to_string(),
                (None, _) => "open".to_string(),
            };
            let from = match r.auth_from {
                AuthFrom::Route => "its own",
                AuthFrom::Service => "the service's",
                AuthFrom::Open => "auth = \"none\"",
                AuthFrom::Unset => "no auth declared",
            };
            let _ = writeln!(out, "   {:<lw$}  {:<aw$}  {what} ({from})", label(r), at(r));
        }
    }
    out
}
