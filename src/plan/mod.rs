//! The deployment plan: pure data, built from the manifest and the graph
//! without running any tool. The engine executes it; `plan --offline` prints it.

pub mod render;

use crate::graph::{self, Order, SelectError};
use crate::manifest::Manifest;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;

/// The phases of the contract, in their canonical order. `Health` marks the
/// gates between sub-phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    TfInfra,
    NixCore,
    TfAuthCore,
    TfServiceInfra,
    NixServiceConfig,
    Health,
    TfServiceConfig,
    Verify,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::TfInfra,
        Phase::NixCore,
        Phase::TfAuthCore,
        Phase::TfServiceInfra,
        Phase::NixServiceConfig,
        Phase::Health,
        Phase::TfServiceConfig,
        Phase::Verify,
    ];

    /// An application's own steps, in the order they run.
    pub const APPLICATION: [Phase; 5] = [
        Phase::TfServiceInfra,
        Phase::NixServiceConfig,
        Phase::Health,
        Phase::TfServiceConfig,
        Phase::Verify,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Phase::TfInfra => "tf:infra",
            Phase::NixCore => "nix:core",
            Phase::TfAuthCore => "tf:auth-core",
            Phase::TfServiceInfra => "tf:service-infra",
            Phase::NixServiceConfig => "nix:service-config",
            Phase::Health => "health",
            Phase::TfServiceConfig => "tf:service-config",
            Phase::Verify => "verify",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.id() == text)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// One unit of work. `after` names the steps that must have succeeded first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub id: String,
    pub phase: Phase,
    pub service: Option<String>,
    pub workspace: Option<String>,
    /// The host's FQDN for steps that act on a host.
    pub host: Option<String>,
    pub after: Vec<String>,
    /// What the step does, for people.
    pub summary: String,
}

/// A core host's deploy step and the health gate after it, each given as
/// (id, summary), the deploy after `previous`.
fn deploy_and_gate(
    name: &str,
    host: Option<String>,
    deploy: (&str, &str),
    gate: (&str, &str),
    previous: &str,
) -> [Step; 2] {
    let on_host = |id: &str, phase: Phase, after: &str, summary: &str| Step {
        id: id.to_string(),
        phase,
        service: Some(name.to_string()),
        workspace: None,
        host: host.clone(),
        after: vec![after.to_string()],
        summary: summary.to_string(),
    };
    [
        on_host(deploy.0, Phase::NixCore, previous, deploy.1),
        on_host(gate.0, Phase::Health, deploy.0, gate.1),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub core: Vec<String>,
    /// Application services grouped into waves that may run side by side.
    pub waves: Vec<Vec<String>>,
    /// Services in the manifest that are disabled and so not deployed.
    pub disabled: Vec<String>,
    /// Services `--skip` left out of this run, with everything that needs them.
    pub skipped: Vec<String>,
    /// Services whose hosts are activated even when their system is current (`--force`).
    pub forced: Vec<String>,
    /// How applications roll out (`--batch`, `--canary`, `--max-failures`), when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolling: Option<Rolling>,
    /// What `--on`/`--only` asked for, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<Chosen>,
}

/// A rolling deploy of the applications.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rolling {
    /// At most this many hosts switching (deploy and health gate) at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Waves one after another, the first application of each alone; the
    /// rest of its wave only once it passed its gate and verify.
    pub canary: bool,
    /// After this many failures no further host is started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<usize>,
    /// The canary of each wave (with `canary`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<String>,
}

impl Rolling {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.batch {
            parts.push(format!(
                "at most {b} host{} switching at once",
                if b == 1 { "" } else { "s" }
            ));
        }
        if self.canary {
            parts.push(format!(
                "wave by wave, each wave's first application alone first ({})",
                self.canaries.join(", ")
            ));
        }
        if let Some(k) = self.max_failures {
            parts.push(format!(
                "no host started after {k} failure{}",
                if k == 1 { "" } else { "s" }
            ));
        }
        parts.join("; ")
    }
}

/// The services `--on` named (tags and globs resolved), and those the run
/// takes too because they need them.
#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    pub selectors: Vec<String>,
    pub chosen: Vec<String>,
    pub pulled_in: Vec<String>,
}

/// Which services a run takes: `--only` (and what they need), less
/// `--skip` (and what needs them); `--force` re-activates hosts; how the
/// applications roll out.
#[derive(Debug, Clone, Default)]
pub struct Selection<'a> {
    pub only: &'a [String],
    pub skip: &'a [String],
    pub force: &'a [String],
    pub rolling: Rolling,
}

/// Builds the plan for the services selected by `only` (all enabled ones when empty).
pub fn build(m: &Manifest, only: &[String]) -> Result<Plan, SelectError> {
    build_selected(
        m,
        &Selection {
            only,
            ..Selection::default()
        },
    )
}

/// Builds the plan for a [`Selection`].
pub fn build_selected(m: &Manifest, sel: &Selection) -> Result<Plan, SelectError> {
    let mut selected = graph::select(m, sel.only)?;
    let skipped = graph::skip(m, &mut selected, sel.skip)?;
    graph::check_force(m, &selected, &skipped, sel.force)?;
    let mut plan = build_for(m, &selected);
    plan.skipped = skipped;
    let mut forced: Vec<String> = sel.force.to_vec();
    forced.sort();
    forced.dedup();
    for step in &mut plan.steps {
        let is_host = matches!(step.phase, Phase::NixCore | Phase::NixServiceConfig);
        if is_host && step.service.as_ref().is_some_and(|n| forced.contains(n)) {
            step.summary
                .push_str(" (--force: activated even when current)");
        }
    }
    plan.forced = forced;
    if sel.rolling != Rolling::default() {
        plan.rolling = Some(Rolling {
            canaries: if sel.rolling.canary {
                plan.waves
                    .iter()
                    .filter_map(|w| w.first().cloned())
                    .collect()
            } else {
                Vec::new()
            },
            ..sel.rolling.clone()
        });
    }
    if !sel.only.is_empty() {
        let chosen = graph::resolve(m, "--on", sel.only)?;
        let pulled_in = selected
            .iter()
            .filter(|n| !chosen.contains(n))
            .cloned()
            .collect();
        plan.selection = Some(Chosen {
            selectors: sel.only.to_vec(),
            chosen: chosen
                .into_iter()
                .filter(|n| selected.contains(n))
                .collect(),
            pulled_in,
        });
    }
    Ok(plan)
}

pub fn build_for(m: &Manifest, selected: &BTreeSet<String>) -> Plan {
    let Order { core, apps, waves } = graph::order(m, selected);
    let mut steps: Vec<Step> = Vec::with_capacity(2 + core.len() * 2 + apps.len() * 5);
    let host_of = |name: &str| m.service(name).and_then(|s| s.host.hostname.clone());

    // tf:infra provisions every enabled host whatever the selection: its
    // variables always describe the whole stack, so a host left out of a
    // run is never destroyed.
    let n_hosts = m.enabled().count();
    steps.push(Step {
        id: "tf:infra".into(),
        phase: Phase::TfInfra,
        service: None,
        workspace: Some("infra".into()),
        host: None,
        after: vec![],
        summary: format!(
            "provision {n_hosts} host{}",
            if n_hosts == 1 { "" } else { "s" }
        ),
    });

    // The core deploys one service at a time: any failure halts the run. A
    // core service's own Terraform runs around its deploy the way an
    // application's does: its infra phase before (workspace <name>-infra),
    // its config phase after its health gate (<name>-config), both before
    // tf:auth-core. Steps appear only where the service has modules.
    let mut previous = "tf:infra".to_string();
    for name in &core {
        let deploy = format!("nix:core:{name}");
        let gate = format!("health:{name}");
        let own = m.service(name).map(|s| &s.terraform);
        if let Some(t) = own.filter(|t| !t.infra.modules.is_empty()) {
            let id = format!("{}:{name}", Phase::TfServiceInfra.id());
            steps.push(Step {
                id: id.clone(),
                phase: Phase::TfServiceInfra,
                service: Some(name.clone()),
                workspace: Some(format!("{name}-infra")),
                host: None,
                after: vec![previous.clone()],
                summary: format!("plan and apply {}", t.infra.modules.join(", ")),
            });
            previous = id;
        }
        steps.extend(deploy_and_gate(
            name,
            host_of(name),
            (&deploy, "build, push and activate the NixOS system"),
            (&gate, "core health gate (startup, then readiness)"),
            &previous,
        ));
        previous = gate;
        if let Some(t) = own.filter(|t| !t.config.modules.is_empty()) {
            let id = format!("{}:{name}", Phase::TfServiceConfig.id());
            steps.push(Step {
                id: id.clone(),
                phase: Phase::TfServiceConfig,
                service: Some(name.clone()),
                workspace: Some(format!("{name}-config")),
                host: None,
                after: vec![previous.clone()],
                summary: format!("plan and apply {}", t.config.modules.join(", ")),
            });
            previous = id;
        }
    }

    let auth_core = core.iter().any(|c| c == "authentik");
    if auth_core {
        let clients: usize = m
            .enabled()
            .filter(|s| selected.contains(&s.name))
            .map(|s| s.oidc_clients().len())
            .sum();
        steps.push(Step {
            id: "tf:auth-core".into(),
            phase: Phase::TfAuthCore,
            service: None,
            workspace: Some("auth-core".into()),
            host: None,
            after: vec![previous.clone()],
            summary: format!(
                "identity resources in Authentik ({clients} OIDC client{})",
                if clients == 1 { "" } else { "s" }
            ),
        });
        previous = "tf:auth-core".into();
        // What tf:auth-core makes (client secrets, outpost tokens) can be a
        // core service's input too: its env file carries auth-core's
        // outputs, and its system may read the SOPS file they are written
        // to. So the core comes round once more, in order: a host whose
        // inputs changed is deployed again behind its health gate.
        for name in &core {
            let gate = format!("health:{name}:again");
            steps.extend(deploy_and_gate(
                name,
                host_of(name),
                (
                    &format!("nix:core:{name}:again"),
                    "deployed again if tf:auth-core changed its env file or system",
                ),
                (&gate, "core health gate, when deployed again"),
                &previous,
            ));
            previous = gate;
        }
    }
    // Every core service is verified end to end like an application (its
    // routes, OIDC clients, databases); a failure is a core failure.
    for name in &core {
        let id = format!("{}:{name}", Phase::Verify.id());
        steps.push(Step {
            id: id.clone(),
            phase: Phase::Verify,
            service: Some(name.clone()),
            workspace: None,
            host: host_of(name),
            after: vec![previous.clone()],
            summary: "end-to-end checks of a core service".into(),
        });
        previous = id;
    }

    let app_set: std::collections::HashSet<&str> = apps.iter().map(String::as_str).collect();
    for name in &apps {
        let Some(s) = m.service(name) else { continue };
        let id = |phase: Phase| format!("{}:{name}", phase.id());
        let mut first_after = vec![previous.clone()];
        let mut app_deps: Vec<&String> = s
            .depends_on
            .iter()
            .filter(|d| app_set.contains(d.as_str()))
            .collect();
        app_deps.sort();
        app_deps.dedup();
        first_after.extend(app_deps.into_iter().map(|d| format!("verify:{d}")));
        let tf_summary = |modules: &[String]| {
            if modules.is_empty() {
                "no Terraform modules: nothing to apply".to_string()
            } else {
                format!("plan and apply {}", modules.join(", "))
            }
        };
        steps.push(Step {
            id: id(Phase::TfServiceInfra),
            phase: Phase::TfServiceInfra,
            service: Some(name.clone()),
            workspace: Some(format!("{name}-infra")),
            host: None,
            after: first_after,
            summary: tf_summary(&s.terraform.infra.modules),
        });
        steps.push(Step {
            id: id(Phase::NixServiceConfig),
            phase: Phase::NixServiceConfig,
            service: Some(name.clone()),
            workspace: None,
            host: s.host.hostname.clone(),
            after: vec![id(Phase::TfServiceInfra)],
            summary: "build, push and activate with Terraform outputs injected".into(),
        });
        steps.push(Step {
            id: id(Phase::Health),
            phase: Phase::Health,
            service: Some(name.clone()),
            workspace: None,
            host: s.host.hostname.clone(),
            after: vec![id(Phase::NixServiceConfig)],
            summary: "health gate (startup, then readiness)".into(),
        });
        steps.push(Step {
            id: id(Phase::TfServiceConfig),
            phase: Phase::TfServiceConfig,
            service: Some(name.clone()),
            workspace: Some(format!("{name}-config")),
            host: None,
            after: vec![id(Phase::Health)],
            summary: tf_summary(&s.terraform.config.modules),
        });
        steps.push(Step {
            id: id(Phase::Verify),
            phase: Phase::Verify,
            service: Some(name.clone()),
            workspace: None,
            host: s.host.hostname.clone(),
            after: vec![id(Phase::TfServiceConfig)],
            summary: "health plus end-to-end checks".into(),
        });
    }

    let disabled = m
        .services
        .iter()
        .filter(|s| !s.enabled)
        .map(|s| s.name.clone())
        .collect();
    Plan {
        steps,
        core,
        waves,
        disabled,
        skipped: Vec::new(),
        forced: Vec::new(),
        rolling: None,
        selection: None,
    }
}
