//! Executing the plan.

use super::event::{Event, StepStatus};
use super::lookahead::{self, Lookahead};
use crate::manifest::{Manifest, Service};
use crate::nixos::build::{self, NixSettings};
use crate::nixos::deploy::{self, DeployRequest, Goal, Outcome};
use crate::nixos::{glance, health, targets};
use crate::plan::{Phase, Plan, Step};
use crate::terraform::phases::{self, TfStep};
use crate::terraform::runner::Status;
use crate::terraform::{stack, Outputs, Terraform};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

pub struct ApplyOptions {
    /// Applications deployed side by side at most.
    pub parallel: usize,
    pub goal: Goal,
    /// Only steps of these phases run (`--phase`); empty: all.
    pub phases: Vec<Phase>,
    /// Steps of these phases are skipped (`--skip-phase`).
    pub skip: Vec<Phase>,
    /// The last configuration of each Terraform workspace that was part of a
    /// verified service (see [`TfSnapshot`]), for rolling back.
    pub last_good_tf: BTreeMap<String, String>,
}

/// A secret-free record of a workspace's configuration: its module files and
/// the manifest's variables. Upstream outputs are not in it: a rollback uses
/// the current ones.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TfSnapshot {
    /// The tree (or the single files) Terraform ran with, relative path → text.
    pub files: BTreeMap<String, String>,
    /// The tree's links to the user's other files, relative path → target.
    #[serde(default)]
    pub links: BTreeMap<String, String>,
    /// Where in `files` it ran: the root module's directory ("" for single files).
    #[serde(default)]
    pub run: String,
    pub variables: BTreeMap<String, serde_json::Value>,
}

impl ApplyOptions {
    pub fn new(parallel: usize, goal: Goal) -> Self {
        ApplyOptions {
            parallel,
            goal,
            phases: Vec::new(),
            skip: Vec::new(),
            last_good_tf: BTreeMap::new(),
        }
    }

    /// Whether steps of `phase` run.
    pub fn runs(&self, phase: Phase) -> bool {
        selected(&self.phases, &self.skip, phase)
    }
}

fn selected(phases: &[Phase], skip: &[Phase], phase: Phase) -> bool {
    (phases.is_empty() || phases.contains(&phase)) && !skip.contains(&phase)
}

/// What happened to each service, and whether the run succeeded.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub ok: bool,
    pub services: BTreeMap<String, String>,
    pub failures: Vec<String>,
    /// The system each healthy host runs now, by service.
    #[serde(skip)]
    pub systems: BTreeMap<String, String>,
    /// The outputs of every Terraform workspace that ran (sensitive values inside: never shown).
    #[serde(skip)]
    pub outputs: BTreeMap<String, Outputs>,
    /// Workspace → [`TfSnapshot`] JSON, for every workspace of a service verified in this run.
    #[serde(skip)]
    pub tf_good: BTreeMap<String, String>,
}

pub(super) struct Ctx<'a> {
    pub(super) m: &'a Manifest,
    pub(super) plan: &'a Plan,
    pub(super) tf: Terraform,
    pub(super) nix: NixSettings,
    pub(super) tf_steps: HashMap<String, TfStep<'a>>,
    /// The plan's steps by id: looked up for every event.
    steps: HashMap<&'a str, &'a Step>,
    known: Mutex<BTreeMap<String, Outputs>>,
    systems: Mutex<BTreeMap<String, String>>,
    /// Workspaces a Terraform step changed in this run.
    tf_changed: Mutex<BTreeSet<String>>,
    last_good_tf: BTreeMap<String, String>,
    /// Snapshots of the workspaces of services verified in this run.
    tf_good: Mutex<BTreeMap<String, String>>,
    /// Every question of the run, asked at its start (see [`super::lookahead`]).
    pub(super) look: Lookahead,
    /// Set when a Terraform phase changed something: systems built before
    /// that may have read older outputs and are built again.
    outputs_changed: std::sync::atomic::AtomicBool,
    pub(super) control_dir: PathBuf,
    /// `nixos.age_key_file`, read once: installed on every host.
    age_key: Option<deploy::AgeKey>,
    goal: Goal,
    phases: Vec<Phase>,
    skip: Vec<Phase>,
    emit: &'a (dyn Fn(Event) + Sync),
}

impl<'a> Ctx<'a> {
    pub(super) fn runs(&self, phase: Phase) -> bool {
        selected(&self.phases, &self.skip, phase)
    }

    /// Reports a step not run because of --phase/--skip-phase.
    fn not_selected(&self, step: &Step) {
        self.event(
            step,
            StepStatus::Skipped,
            "not selected (--phase/--skip-phase)".into(),
            Instant::now(),
        );
    }

    fn event(&self, step: &Step, status: StepStatus, detail: String, started: Instant) {
        if matches!(status, StepStatus::Changed | StepStatus::Failed) {
            self.look.stale();
        }
        (self.emit)(Event {
            event: "step",
            step: step.id.clone(),
            phase: step.phase.id().to_string(),
            service: step.service.clone(),
            status,
            // What tools and hosts said: escape sequences in it are shown, not obeyed.
            detail: crate::manifest::syntax::sanitize(&detail),
            seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        });
    }

    /// The plan's core services, in order.
    pub(super) fn core_services(&self) -> Vec<&'a Service> {
        let m = self.m;
        self.plan.core.iter().filter_map(|n| m.service(n)).collect()
    }

    /// The plan's applications, wave after wave.
    pub(super) fn apps(&self) -> Vec<&'a Service> {
        let m = self.m;
        self.plan
            .waves
            .iter()
            .flatten()
            .filter_map(|n| m.service(n))
            .collect()
    }

    pub(super) fn step(&self, id: &str) -> Option<&Step> {
        self.steps.get(id).copied()
    }

    /// Runs one Terraform step; `Ok(changed)`.
    fn terraform(&self, step: &Step) -> Result<bool, String> {
        let Some(tf_step) = self.tf_steps.get(&step.id) else {
            return Ok(false);
        };
        let base = self.m.dir();
        let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        let spec = tf_step.spec(self.m, &base, &known);
        if let Some(outputs) = self.look.terraform(&step.id, &spec) {
            if let Ok(mut k) = self.known.lock() {
                k.insert(tf_step.workspace.clone(), outputs);
            }
            return Ok(false);
        }
        let result = self.tf.apply_phase(&spec).map_err(|e| e.to_string())?;
        let changed = matches!(result.status, Status::Applied { .. });
        if changed {
            self.outputs_changed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if changed {
            if let Ok(mut c) = self.tf_changed.lock() {
                c.insert(tf_step.workspace.clone());
            }
        }
        if result.status != Status::NoModules {
            if let Ok(mut k) = self.known.lock() {
                k.insert(tf_step.workspace.clone(), result.outputs);
            }
        }
        Ok(changed)
    }

    /// The env file a service's host receives, from the outputs known now.
    fn env_for(&self, s: &Service) -> Option<String> {
        let known = self.known.lock().ok()?;
        super::env::file(&self.tf_steps, s, &known)
    }

    /// Builds, deploys and gates one host; `Ok(changed)`.
    /// `looked`: the caller already took the one look of [`Self::current_and_healthy`] and it said no.
    fn deploy(&self, s: &Service, system: &str, looked: bool) -> Result<bool, String> {
        // The common case of a re-run: one look, nothing to do.
        if !looked && self.current_and_healthy(s, system) {
            if let Ok(mut systems) = self.systems.lock() {
                systems.insert(s.name.clone(), system.to_string());
            }
            return Ok(false);
        }
        let target = targets::target(self.m, s, self.control_dir.clone())?;
        let env = self.env_for(s);
        let req = DeployRequest {
            target: &target,
            nix: &self.nix,
            system,
            goal: self.goal,
            env: env.as_deref(),
            age_key: self.age_key.as_ref(),
            health: &s.health,
            ports: &s.ports,
            activation_timeout: Duration::from_secs(self.m.nixos.activation_timeout),
            rollback: self.m.options.enable_rollback,
        };
        let result = deploy::deploy(&req);
        if result.is_ok() {
            if let Ok(mut systems) = self.systems.lock() {
                systems.insert(s.name.clone(), system.to_string());
            }
        }
        match result {
            Ok(Outcome::Unchanged) => {
                // Unchanged still must be healthy before anything builds on it. A
                // current but unhealthy host (a daemon that died) is activated
                // again, as switch-to-configuration restarts what is down.
                // One quick look first: a healthy host answers at once.
                let quick = crate::manifest::Health {
                    retries: 1,
                    timeout: s.health.timeout.min(10),
                    ..s.health.clone()
                };
                if let Err(first) = health::gate(&quick, &s.ports, &target) {
                    deploy::activate(
                        &target,
                        system,
                        self.goal,
                        Duration::from_secs(self.m.nixos.activation_timeout),
                    )
                    .map_err(|e| format!("{first}; activating it again failed: {e}"))?;
                    health::gate(&s.health, &s.ports, &target)
                        .map_err(|e| format!("{e} (also after activating it again)"))?;
                    return Ok(true);
                }
                Ok(false)
            }
            Ok(Outcome::Activated { .. }) => Ok(true),
            Err(e) => Err(e.to_string()),
        }
    }

    /// True when the host runs `system` with the environment it would get now,
    /// and is healthy at a glance: the run's first look when it still holds,
    /// else one look now.
    fn current_and_healthy(&self, s: &Service, system: &str) -> bool {
        let seen = match self.look.host(&s.name) {
            Some(g) => g,
            None => {
                let Ok(target) = targets::target(self.m, s, self.control_dir.clone()) else {
                    return false;
                };
                match glance::glance(&target, &s.health, &s.ports) {
                    Ok(g) => g,
                    Err(_) => return false,
                }
            }
        };
        let wanted = deploy::secrets_hash(self.env_for(s).as_deref(), self.age_key.as_ref());
        seen.current == system && seen.env_hash == wanted && seen.healthy
    }

    fn build_one(&self, s: &Service) -> Result<String, String> {
        if !self
            .outputs_changed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            if let Some(Ok(path)) = self.look.built(&s.name) {
                return Ok(path);
            }
        }
        let inst = build::installable(&self.nix.flake, &targets::attribute(s));
        build::build(&self.nix, &[inst])
            .map_err(|e| format!("building the system of {}: {e}", s.name))?
            .pop()
            .ok_or_else(|| "no output".into())
    }

    /// Phase 4 for one application: infra, deploy + gate, config, verify.
    /// `Ok(true)` when any of its steps changed something.
    fn service(&self, s: &Service) -> Result<bool, String> {
        let mut any = false;
        let mut activated = false;
        for phase in [
            Phase::TfServiceInfra,
            Phase::NixServiceConfig,
            Phase::Health,
            Phase::TfServiceConfig,
            Phase::Verify,
        ] {
            let Some(step) = self.step(&format!("{}:{}", phase.id(), s.name)) else {
                continue;
            };
            // Health goes with the deploy it guards.
            let selected = if phase == Phase::Health {
                self.runs(Phase::NixServiceConfig)
            } else {
                self.runs(phase)
            };
            if !selected {
                self.not_selected(step);
                continue;
            }
            let started = Instant::now();
            self.event(step, StepStatus::Started, String::new(), started);
            let result = match phase {
                Phase::TfServiceInfra => self
                    .databases(s)
                    .and_then(|(n, detail)| self.terraform(step).map(|c| (c || n > 0, detail))),
                Phase::TfServiceConfig => self.terraform(step).map(|c| (c, String::new())),
                Phase::NixServiceConfig => self
                    .build_one(s)
                    .and_then(|system| self.deploy(s, &system, false).map(|c| (c, system))),
                Phase::Health => Ok((false, "passed with the deploy".into())),
                Phase::Verify => self.verify(s).map(|detail| (false, detail)),
                _ => Ok((false, String::new())),
            };
            match result {
                Ok((changed, detail)) => {
                    any |= changed;
                    activated |= changed && phase == Phase::NixServiceConfig;
                    let status = StepStatus::done(changed);
                    self.event(step, status, detail, started)
                }
                Err(e) => {
                    // A failure after the host was switched rolls the host back too.
                    let mut e = if activated
                        && phase != Phase::NixServiceConfig
                        && self.m.options.enable_rollback
                    {
                        format!("{e}\n{}", self.roll_back(s))
                    } else {
                        e
                    };
                    if self.m.options.enable_rollback {
                        for line in self.roll_back_terraform(s) {
                            e.push('\n');
                            e.push_str(&line);
                        }
                    }
                    self.event(step, StepStatus::Failed, e.clone(), started);
                    return Err(format!("{}: {e}", step.id));
                }
            }
        }
        self.remember_terraform(s);
        Ok(any)
    }

    /// The Terraform steps of one service that have modules, in plan order.
    fn service_tf_steps(&self, s: &Service) -> Vec<&TfStep<'_>> {
        let mut steps: Vec<&TfStep> = self
            .tf_steps
            .values()
            .filter(|t| t.service.as_deref() == Some(s.name.as_str()) && !t.config.is_empty())
            .collect();
        steps.sort_by_key(|t| t.phase);
        steps
    }

    /// After a service verified: its workspaces' configuration is its last good one.
    fn remember_terraform(&self, s: &Service) {
        for step in self.service_tf_steps(s) {
            let Some((files, links, run)) =
                crate::terraform::workdir::snapshot(&self.tf.workdir(&step.workspace))
            else {
                continue;
            };
            let snap = TfSnapshot {
                files,
                links,
                run,
                variables: step.config.variables.clone(),
            };
            if let (Ok(json), Ok(mut good)) = (serde_json::to_string(&snap), self.tf_good.lock()) {
                good.insert(step.workspace.clone(), json);
            }
        }
    }

    /// A failed service's workspaces that changed in this run go back to their
    /// last good configuration, unless that would delete or replace anything.
    fn roll_back_terraform(&self, s: &Service) -> Vec<String> {
        let changed = self
            .tf_changed
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for step in self.service_tf_steps(s).into_iter().rev() {
            let ws = &step.workspace;
            if !changed.contains(ws) {
                continue;
            }
            let Some(snap) = self
                .last_good_tf
                .get(ws)
                .and_then(|j| serde_json::from_str::<TfSnapshot>(j).ok())
            else {
                out.push(format!(
                    "terraform {ws}: no last good configuration to roll back to (first deploy)"
                ));
                continue;
            };
            let result = (|| -> Result<String, String> {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                crate::terraform::workdir::restore(dir.path(), &snap.files, &snap.links)?;
                // The root module in its tree, or the single files as they were.
                let modules = if snap.run.is_empty() {
                    snap.files
                        .keys()
                        .map(|f| dir.path().join(f).display().to_string())
                        .collect()
                } else {
                    vec![dir.path().join(&snap.run).display().to_string()]
                };
                let cfg = crate::manifest::TerraformPhase {
                    modules,
                    variables: snap.variables.clone(),
                    targets: vec![],
                    apply_order: vec![],
                };
                let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
                let base = self.m.dir();
                let mut spec = step.spec(self.m, &base, &known);
                spec.config = &cfg;
                spec.tree_root = dir.path().to_path_buf();
                let preview = self
                    .tf
                    .plan_phase(&spec, crate::terraform::command::PlanMode::Normal)
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                if preview.destroy + preview.replace > 0 {
                    return Ok(format!(
                        "terraform {ws}: not rolled back: going back would delete or replace {} resource(s), and a rollback never destroys without being asked",
                        preview.destroy + preview.replace
                    ));
                }
                self.tf.apply_phase(&spec).map_err(|e| e.to_string())?;
                Ok(format!(
                    "terraform {ws}: rolled back to its last good configuration ({})",
                    preview.short()
                ))
            })();
            out.push(result.unwrap_or_else(|e| format!("terraform {ws}: rollback failed: {e}")));
        }
        out
    }

    /// The native-migration databases of a service: role, databases, migrations.
    fn databases(&self, s: &Service) -> Result<(usize, String), String> {
        let native: Vec<_> = s
            .databases
            .iter()
            .filter(|d| d.mode == Some(crate::manifest::DbMode::NativeMigration))
            .collect();
        if native.is_empty() {
            return Ok((0, String::new()));
        }
        if self.look.databases_in_place(&s.name) {
            return Ok((0, "databases in place, 0 migration(s) applied".into()));
        }
        let pg = self
            .m
            .service("postgresql")
            .ok_or("no postgresql service")?;
        let target = targets::target(self.m, pg, self.control_dir.clone())?;
        let base = self.m.dir();
        let mut applied = 0;
        for db in native {
            applied += crate::nixos::database::ensure(&target, &self.m.nixos.psql, &base, db)?;
        }
        Ok((
            applied,
            format!("databases ensured, {applied} migration(s) applied"),
        ))
    }

    fn roll_back(&self, s: &Service) -> String {
        let result = targets::target(self.m, s, self.control_dir.clone()).and_then(|t| {
            deploy::roll_back_by_hand(
                &t,
                &s.health,
                &s.ports,
                Duration::from_secs(self.m.nixos.activation_timeout),
            )
            .map_err(|e| e.to_string())
        });
        match result {
            Ok(path) => {
                if let Ok(mut systems) = self.systems.lock() {
                    systems.insert(s.name.clone(), path.clone());
                }
                format!(
                    "rolled back: host {} is on the previous generation {path} again, and healthy",
                    s.name
                )
            }
            Err(e) => format!("rollback failed too: {e}"),
        }
    }

    /// Phase 4d: health (liveness, readiness) and the end-to-end checks.
    fn verify(&self, s: &Service) -> Result<String, String> {
        // The run's first look covered the probes and the checks while nothing changed.
        if self.look.host(&s.name).is_some_and(|g| g.healthy) {
            if let Some(detail) = self.look.verified(&s.name) {
                return Ok(detail);
            }
        }
        let target = targets::target(self.m, s, self.control_dir.clone())?;
        for probe in [&s.health.readiness, &s.health.liveness]
            .into_iter()
            .flatten()
        {
            health::wait("verify", probe, &s.health, &target).map_err(|e| e.to_string())?;
        }
        let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        let ctx = crate::verify::Context::new(self.m, &known);
        let checks = crate::verify::service(self.m, s, &ctx);
        crate::verify::verdict(&checks)
    }
}

/// Runs the plan. Events go to `emit` as they happen.
pub fn apply(
    m: &Manifest,
    plan: &Plan,
    opts: &ApplyOptions,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<Summary, String> {
    let tf = stack::terraform_for(m)?;
    let tf_steps: HashMap<String, TfStep> = phases::steps(m, plan)
        .into_iter()
        .map(|s| (s.step_id.clone(), s))
        .collect();
    let control_dir = crate::nixos::ssh::control_dir();
    let mut ctx = Ctx {
        m,
        plan,
        tf,
        nix: targets::nix_settings(m),
        tf_steps,
        steps: plan.steps.iter().map(|s| (s.id.as_str(), s)).collect(),
        known: Mutex::new(BTreeMap::new()),
        systems: Mutex::new(BTreeMap::new()),
        look: Lookahead::empty(),
        tf_changed: Mutex::new(BTreeSet::new()),
        last_good_tf: opts.last_good_tf.clone(),
        tf_good: Mutex::new(BTreeMap::new()),
        outputs_changed: std::sync::atomic::AtomicBool::new(false),
        control_dir: control_dir.clone(),
        age_key: match &m.nixos.age_key_file {
            Some(file) => Some(deploy::AgeKey::read(
                file,
                &m.dir(),
                &m.nixos.age_key_target,
            )?),
            None => None,
        },
        goal: opts.goal,
        phases: opts.phases.clone(),
        skip: opts.skip.clone(),
        emit,
    };
    let mut summary = Summary {
        ok: true,
        services: BTreeMap::new(),
        failures: Vec::new(),
        systems: BTreeMap::new(),
        outputs: BTreeMap::new(),
        tf_good: BTreeMap::new(),
    };
    ctx.look = Lookahead::new(&ctx);
    let result = run_all(&ctx, opts, &mut summary);
    // Close the multiplexed connections.
    let _ = std::fs::remove_dir_all(&control_dir);
    result?;
    let known = ctx.known.lock().map(|k| k.clone()).unwrap_or_default();
    if !known.is_empty() {
        stack::write_sinks(m, &known).map_err(|e| e.to_string())?;
    }
    summary.outputs = known;
    summary.tf_good = ctx.tf_good.lock().map(|g| g.clone()).unwrap_or_default();
    summary.systems = ctx.systems.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(summary)
}

/// One Terraform step outside an application's own sequence (`tf:infra`,
/// `tf:auth-core`, a core service's own phases); `Ok(changed)`.
fn stack_step(ctx: &Ctx, id: &str, phase: Phase) -> Result<bool, String> {
    let Some(step) = ctx.step(id) else {
        return Ok(false);
    };
    if !ctx.runs(phase) {
        ctx.not_selected(step);
        return Ok(false);
    }
    let started = Instant::now();
    ctx.event(step, StepStatus::Started, String::new(), started);
    match ctx.terraform(step) {
        Ok(c) => {
            ctx.event(step, StepStatus::done(c), String::new(), started);
            Ok(c)
        }
        Err(e) => {
            ctx.event(step, StepStatus::Failed, e.clone(), started);
            Err(e)
        }
    }
}

/// One core host: nothing to do when it is `current` (its system, its
/// environment and healthy), else deployed behind its gate. `looked`: the
/// caller's look said it is not current (else `deploy` looks itself).
/// `Err` halts the run.
fn core_deploy(
    ctx: &Ctx,
    summary: &mut Summary,
    s: &Service,
    system: &str,
    current: bool,
    looked: bool,
) -> Result<(), String> {
    if current {
        let now = Instant::now();
        for id in [format!("nix:core:{}", s.name), format!("health:{}", s.name)] {
            if let Some(step) = ctx.step(&id) {
                ctx.event(step, StepStatus::Started, String::new(), now);
                ctx.event(
                    step,
                    StepStatus::Unchanged,
                    if id.starts_with("nix") {
                        system.to_string()
                    } else {
                        "passed".into()
                    },
                    now,
                );
            }
        }
        if let Ok(mut sys) = ctx.systems.lock() {
            sys.insert(s.name.clone(), system.to_string());
        }
        summary.services.insert(s.name.clone(), "unchanged".into());
        return Ok(());
    }
    let Some(step) = ctx.step(&format!("nix:core:{}", s.name)) else {
        return Ok(());
    };
    let started = Instant::now();
    ctx.event(step, StepStatus::Started, String::new(), started);
    match ctx.deploy(s, system, looked) {
        Ok(c) => {
            ctx.event(step, StepStatus::done(c), system.to_string(), started);
            if let Some(gate) = ctx.step(&format!("health:{}", s.name)) {
                ctx.event(gate, StepStatus::Unchanged, "passed".into(), started);
            }
            summary.services.insert(
                s.name.clone(),
                if c { "deployed" } else { "unchanged" }.into(),
            );
            Ok(())
        }
        Err(e) => {
            ctx.event(step, StepStatus::Failed, e.clone(), started);
            summary
                .services
                .insert(s.name.clone(), format!("failed: {e}"));
            Err(format!("nix:core:{}: {e}", s.name))
        }
    }
}

/// The run: every look started at once, then the phases walked in order.
fn run_all(ctx: &Ctx, opts: &ApplyOptions, summary: &mut Summary) -> Result<(), String> {
    std::thread::scope(|scope| {
        lookahead::start(ctx, scope);
        walk(ctx, opts, summary)
    })
}

fn walk(ctx: &Ctx, opts: &ApplyOptions, summary: &mut Summary) -> Result<(), String> {
    let halt = |summary: &mut Summary, what: String| {
        summary.ok = false;
        summary.failures.push(what);
        for name in ctx.plan.core.iter().chain(ctx.plan.waves.iter().flatten()) {
            summary
                .services
                .entry(name.clone())
                .or_insert_with(|| "skipped: the run halted".into());
        }
    };
    // 1. tf:infra
    if let Err(e) = stack_step(ctx, "tf:infra", Phase::TfInfra) {
        halt(summary, format!("tf:infra: {e}"));
        return Ok(());
    }
    // 2. nix:core, one host at a time; the core's systems are built first.
    let core_selected = ctx.runs(Phase::NixCore);
    if !core_selected {
        for name in &ctx.plan.core {
            for id in [format!("nix:core:{name}"), format!("health:{name}")] {
                if let Some(step) = ctx.step(&id) {
                    ctx.not_selected(step);
                }
            }
        }
    }
    let core_all = ctx.core_services();
    let core: Vec<&Service> = if core_selected {
        core_all.clone()
    } else {
        Vec::new()
    };
    let mut systems = Vec::new();
    for s in &core {
        match ctx.build_one(s) {
            Ok(p) => systems.push(p),
            Err(e) => {
                if let Some(step) = ctx.step(&format!("nix:core:{}", s.name)) {
                    ctx.event(step, StepStatus::Failed, e.clone(), Instant::now());
                }
                halt(summary, format!("nix:core:{}: {e}", s.name));
                return Ok(());
            }
        }
    }
    // A host already on its system, with its environment current and healthy,
    // needs nothing: look at all of them at once, then deploy the rest in order.
    let current: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = core
            .iter()
            .zip(&systems)
            .map(|(s, system)| scope.spawn(move || ctx.current_and_healthy(s, system)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .collect()
    });
    let mut looked: HashMap<&str, (String, bool)> = core
        .iter()
        .zip(systems)
        .zip(current)
        .map(|((s, system), current)| (s.name.as_str(), (system, current)))
        .collect();
    for s in &core_all {
        // Its own infra phase first: what it changes may reach the system and its env.
        let own_infra = format!("{}:{}", Phase::TfServiceInfra.id(), s.name);
        let changed = match stack_step(ctx, &own_infra, Phase::TfServiceInfra) {
            Ok(c) => c,
            Err(e) => {
                halt(summary, format!("{own_infra}: {e}"));
                return Ok(());
            }
        };
        if let Some((system, current)) = looked.remove(s.name.as_str()) {
            let (system, current, took_look) = if changed {
                match ctx.build_one(s) {
                    Ok(p) => (p, false, false),
                    Err(e) => {
                        halt(summary, format!("nix:core:{}: {e}", s.name));
                        return Ok(());
                    }
                }
            } else {
                (system, current, true)
            };
            if let Err(e) = core_deploy(ctx, summary, s, &system, current, took_look) {
                halt(summary, e);
                return Ok(());
            }
        }
        let own_config = format!("{}:{}", Phase::TfServiceConfig.id(), s.name);
        if let Err(e) = stack_step(ctx, &own_config, Phase::TfServiceConfig) {
            halt(summary, format!("{own_config}: {e}"));
            return Ok(());
        }
    }
    // 3. tf:auth-core
    if let Err(e) = stack_step(ctx, "tf:auth-core", Phase::TfAuthCore) {
        halt(summary, format!("tf:auth-core: {e}"));
        return Ok(());
    }
    // 4. Applications: a small scheduler over the dependency graph.
    let apps = ctx.apps();
    let deps: HashMap<&str, Vec<&str>> = apps
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.depends_on
                    .iter()
                    .map(String::as_str)
                    .filter(|d| apps.iter().any(|a| a.name == *d))
                    .collect(),
            )
        })
        .collect();
    let mut state: HashMap<&str, Option<bool>> =
        apps.iter().map(|s| (s.name.as_str(), None)).collect();
    let mut started: BTreeSet<&str> = BTreeSet::new();
    let parallel = opts.parallel.max(1);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(&str, Result<bool, String>)>();
        let mut running = 0;
        loop {
            // Skip whatever depends on a failure.
            let mut changed = true;
            while changed {
                changed = false;
                for s in &apps {
                    let name = s.name.as_str();
                    if started.contains(name) {
                        continue;
                    }
                    if let Some(bad) = deps[name].iter().find(|d| state[*d] == Some(false)) {
                        started.insert(name);
                        state.insert(name, Some(false));
                        summary.services.insert(
                            name.into(),
                            format!("skipped: depends on {bad}, which failed"),
                        );
                        for phase in [
                            Phase::TfServiceInfra,
                            Phase::NixServiceConfig,
                            Phase::Health,
                            Phase::TfServiceConfig,
                            Phase::Verify,
                        ] {
                            if let Some(step) = ctx.step(&format!("{}:{name}", phase.id())) {
                                ctx.event(
                                    step,
                                    StepStatus::Skipped,
                                    format!("depends on {bad}, which failed"),
                                    Instant::now(),
                                );
                            }
                        }
                        changed = true;
                    }
                }
            }
            for s in &apps {
                let name = s.name.as_str();
                if running >= parallel {
                    break;
                }
                if started.contains(name) || !deps[name].iter().all(|d| state[*d] == Some(true)) {
                    continue;
                }
                started.insert(name);
                running += 1;
                let tx = tx.clone();
                let svc: &Service = s;
                scope.spawn(move || {
                    let r = ctx.service(svc);
                    let _ = tx.send((svc.name.as_str(), r));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((name, result)) = rx.recv() else { break };
            running -= 1;
            match result {
                Ok(changed) => {
                    state.insert(name, Some(true));
                    let what = if changed {
                        "deployed and verified"
                    } else {
                        "unchanged, verified"
                    };
                    summary.services.insert(name.into(), what.into());
                }
                Err(e) => {
                    state.insert(name, Some(false));
                    summary.ok = false;
                    summary.services.insert(name.into(), format!("failed: {e}"));
                    summary.failures.push(e);
                }
            }
        }
    });
    Ok(())
}
