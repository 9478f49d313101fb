//! Executing the plan.

use super::core::{core_again, core_deploy, core_verify};
use super::event::{Event, StepStatus};
use super::lookahead::{self, Lookahead};
use crate::manifest::{Manifest, Service};
use crate::nixos::build::NixSettings;
use crate::nixos::deploy::{self, Goal};
use crate::nixos::targets;
use crate::plan::{Phase, Plan, Step};
use crate::terraform::phases::{self, TfStep};
use crate::terraform::runner::Status;
use crate::terraform::{stack, Outputs, Terraform};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone)]
pub struct ApplyOptions {
    /// Applications deployed side by side at most.
    pub parallel: usize,
    pub goal: Goal,
    /// Only steps of these phases run (`--phase`); empty: all.
    pub phases: Vec<Phase>,
    /// Steps of these phases are skipped (`--skip-phase`).
    pub skip: Vec<Phase>,
    /// Services whose hosts are activated even when current (`--force`).
    pub force: BTreeSet<String>,
    /// The last configuration of each Terraform workspace that was part of a
    /// verified service (see [`TfSnapshot`]), for rolling back.
    pub last_good_tf: BTreeMap<String, String>,
    /// The system each host was last deployed with and verified on, as the
    /// state records it: a host whose system evaluates to something else
    /// is built at once, without waiting for a look at it.
    pub last_good_systems: BTreeMap<String, String>,
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
            force: BTreeSet::new(),
            last_good_tf: BTreeMap::new(),
            last_good_systems: BTreeMap::new(),
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
    pub(super) steps: HashMap<&'a str, &'a Step>,
    pub(super) known: Mutex<BTreeMap<String, Outputs>>,
    pub(super) systems: Mutex<BTreeMap<String, String>>,
    /// Workspaces a Terraform step changed in this run.
    pub(super) tf_changed: Mutex<BTreeSet<String>>,
    pub(super) last_good_tf: BTreeMap<String, String>,
    /// See [`ApplyOptions::last_good_systems`].
    pub(super) last_good_systems: BTreeMap<String, String>,
    /// Snapshots of the workspaces of services verified in this run.
    pub(super) tf_good: Mutex<BTreeMap<String, String>>,
    /// Every question of the run, asked at its start (see [`super::lookahead`]).
    pub(super) look: Lookahead,
    /// Set when a Terraform phase changed something: systems built before
    /// that may have read older outputs and are built again.
    pub(super) outputs_changed: std::sync::atomic::AtomicBool,
    pub(super) control: crate::nixos::ssh_control::Control,
    /// `nixos.age_key_file`, read once: installed on every host.
    pub(super) age_key: Option<deploy::AgeKey>,
    pub(super) goal: Goal,
    pub(super) phases: Vec<Phase>,
    pub(super) skip: Vec<Phase>,
    /// `--force`: these hosts are activated even when current.
    pub(super) force: BTreeSet<String>,
    /// By service: the system and secrets hash its host was left with in
    /// this run, so the core's second round knows what changed since.
    pub(super) deployed: Mutex<BTreeMap<String, (String, String)>>,
    /// What to say once with a service's deploy step: what its host did by
    /// itself since the last run (its guard's rollbacks), where its system
    /// was built.
    pub(super) guard_notes: Mutex<BTreeMap<String, Vec<String>>>,
    pub(super) emit: &'a (dyn Fn(Event) + Sync),
    /// Services whose system was built on their host or sent there by a
    /// builder in this run (the path), so the deploy copies nothing.
    pub(super) placed: Mutex<BTreeMap<String, String>>,
    /// `--batch`: the places for hosts switching at once.
    pub(super) switching: Option<super::schedule::Slots>,
}

impl<'a> Ctx<'a> {
    pub(super) fn runs(&self, phase: Phase) -> bool {
        selected(&self.phases, &self.skip, phase)
    }

    /// Reports a step not run because of --phase/--skip-phase.
    pub(super) fn not_selected(&self, step: &Step) {
        self.event(
            step,
            StepStatus::Skipped,
            "not selected (--phase/--skip-phase)".into(),
            Instant::now(),
        );
    }

    /// The application whose own host alone a step touches: its system,
    /// its gate, its checks. A Terraform step (outputs flow anywhere) or a
    /// core service's step (everything stands on the core) is the stack's.
    fn own_host_step<'s>(&self, step: &'s Step) -> Option<&'s str> {
        let service = step.service.as_deref()?;
        let app = self.m.service(service).is_some_and(|s| !s.is_core());
        let own = matches!(
            step.phase,
            Phase::NixServiceConfig | Phase::Health | Phase::Verify
        );
        (app && own).then_some(service)
    }

    pub(super) fn event(&self, step: &Step, status: StepStatus, detail: String, started: Instant) {
        if matches!(status, StepStatus::Changed | StepStatus::Failed) {
            match self.own_host_step(step) {
                Some(service) => self
                    .look
                    .stale_for(crate::graph::needing(self.m, [service.to_string()])),
                None => self.look.stale(),
            }
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

    /// `known`, with each of `workspaces` it lacks (not applied yet in this
    /// run, or left out of it) counted with the outputs it held at the start.
    pub(super) fn with_held(
        &self,
        mut known: BTreeMap<String, Outputs>,
        workspaces: impl IntoIterator<Item = String>,
    ) -> BTreeMap<String, Outputs> {
        for ws in workspaces {
            if let std::collections::btree_map::Entry::Vacant(slot) = known.entry(ws) {
                if let Some(held) = self.look.held(slot.key()) {
                    slot.insert(held);
                }
            }
        }
        known
    }

    /// Runs one Terraform step; `Ok(changed)`.
    pub(super) fn terraform(&self, step: &Step) -> Result<bool, String> {
        let Some(tf_step) = self.tf_steps.get(&step.id) else {
            return Ok(false);
        };
        let base = self.m.dir();
        // An upstream workspace this run has not reached (one `--phase` or
        // `--skip-phase` left out) counts with the outputs it holds: a
        // phase run alone plans with the same inputs as in a whole run.
        let known = self.with_held(
            self.known.lock().map(|k| k.clone()).unwrap_or_default(),
            tf_step.upstream.iter().cloned(),
        );
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
    let control = crate::nixos::ssh_control::Control::for_run(m)?;
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
        last_good_systems: opts.last_good_systems.clone(),
        tf_good: Mutex::new(BTreeMap::new()),
        outputs_changed: std::sync::atomic::AtomicBool::new(false),
        control: control.clone(),
        age_key: deploy::AgeKey::of_manifest(m)?,
        goal: opts.goal,
        phases: opts.phases.clone(),
        skip: opts.skip.clone(),
        force: opts.force.clone(),
        deployed: Mutex::new(BTreeMap::new()),
        guard_notes: Mutex::new(BTreeMap::new()),
        emit,
        placed: Mutex::new(BTreeMap::new()),
        switching: plan
            .rolling
            .as_ref()
            .and_then(|r| r.batch)
            .map(super::schedule::Slots::new),
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
    // End the run's own connections (kept ones stay for the next run).
    control.end();
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

/// The run: every look started at once, then the phases walked in order.
fn run_all(ctx: &Ctx, opts: &ApplyOptions, summary: &mut Summary) -> Result<(), String> {
    std::thread::scope(|scope| {
        lookahead::start(ctx, scope);
        let walked = walk(ctx, opts, summary);
        // Whatever still makes way for a host that switches waits no more.
        ctx.look.switching.end();
        walked
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
    let auth_core_changed = match stack_step(ctx, "tf:auth-core", Phase::TfAuthCore) {
        Ok(c) => c,
        Err(e) => {
            halt(summary, format!("tf:auth-core: {e}"));
            return Ok(());
        }
    };
    // What it made reaches the SOPS file now, for the core's second round
    // (a system may read that file) and everything after.
    if auth_core_changed {
        let known = ctx.known.lock().map(|k| k.clone()).unwrap_or_default();
        if let Err(e) = stack::write_sinks(ctx.m, &known) {
            halt(summary, format!("tf:auth-core: writing its outputs: {e}"));
            return Ok(());
        }
    }
    // 3b. The core again where tf:auth-core changed its inputs, then every
    // core service verified; any failure halts, as in nix:core.
    for s in &core_all {
        if let Err(e) = core_again(ctx, summary, s) {
            halt(summary, e);
            return Ok(());
        }
    }
    for s in &core_all {
        if let Err(e) = core_verify(ctx, s) {
            halt(summary, e);
            return Ok(());
        }
    }
    // 4. Applications: a small scheduler over the dependency graph.
    super::schedule::applications(ctx, opts.parallel, summary);
    Ok(())
}
