//! The look ahead. A run that changes nothing still asks every question the
//! contract asks: does each Terraform workspace plan clean, does each host run
//! its system with its environment, is it healthy, are its databases in place,
//! do its end-to-end checks pass. Asked one after another in phase order,
//! those questions are nearly all of a re-run's time. So a run asks them all
//! at once when it starts, and the phase walk takes each answer when it gets
//! to that step instead of asking again.
//!
//! An answer holds only while the stack is as it was when it was asked. The
//! first step of the run that changes something (or fails) makes every answer
//! not yet taken stale, and from then on each step asks for itself, in order,
//! as before. A Terraform answer is also tied to its inputs: it counts only if
//! the step would now plan with exactly the variables the look planned with.

use super::run::Ctx;
use crate::manifest::{DbMode, Service};
use crate::nixos::{build, database, evaluation, glance, targets};
use crate::plan::Phase;
use crate::terraform::command::PlanMode;
use crate::terraform::outputs::Outputs;
use crate::terraform::runner::PhaseSpec;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::Scope;

/// An answer one thread looks up and others wait for.
pub(super) struct Slot<T> {
    value: Mutex<Option<Option<T>>>,
    ready: Condvar,
}

impl<T: Clone> Slot<T> {
    fn new() -> Self {
        Slot {
            value: Mutex::new(None),
            ready: Condvar::new(),
        }
    }

    fn put(&self, v: Option<T>) {
        if let Ok(mut g) = self.value.lock() {
            *g = Some(v);
        }
        self.ready.notify_all();
    }

    /// No answer, unless one came already.
    fn settle(&self) {
        if let Ok(mut g) = self.value.lock() {
            g.get_or_insert(None);
        }
        self.ready.notify_all();
    }

    /// The answer if it came already, without waiting.
    fn peek(&self) -> Option<T> {
        self.value.lock().ok()?.clone().flatten()
    }

    /// Waits for the answer; `None` when the look found none. Every look is
    /// bounded by the commands it runs, so this wait is too.
    fn wait(&self) -> Option<T> {
        let Ok(mut g) = self.value.lock() else {
            return None;
        };
        while g.is_none() {
            g = match self.ready.wait(g) {
                Ok(g) => g,
                Err(_) => return None,
            };
        }
        g.clone().flatten()
    }
}

/// Runs `look` and always fills `slot`, even if the look panics: a step
/// waiting on it must never wait forever.
fn fill<T: Clone>(slot: &Slot<T>, look: impl FnOnce() -> Option<T>) {
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(look))
        .ok()
        .flatten();
    slot.put(answer);
}

/// A Terraform workspace that planned clean, with the inputs it planned with.
#[derive(Clone)]
pub(super) struct TfLook {
    derived: Map<String, Value>,
    upstream: BTreeMap<String, Outputs>,
    pub outputs: Outputs,
}

pub(super) struct Lookahead {
    stale: AtomicBool,
    /// Services whose answers no longer hold, the rest of the stack's still do.
    stale_services: Mutex<HashSet<String>>,
    /// By step id: Terraform steps with modules, of selected phases.
    tf: HashMap<String, Slot<TfLook>>,
    /// By workspace (with modules): the outputs it holds at the start, and its phase.
    held: HashMap<String, (Phase, Slot<Outputs>)>,
    /// By service: its system as the run's evaluation gave it (the hosts
    /// evaluated a part at a time, side by side, in the run's order).
    evaluated: HashMap<String, Slot<build::Evaluated>>,
    /// By service: each host's system, built (or running already).
    built: HashMap<String, Slot<Result<String, String>>>,
    /// By service: one look at each host.
    hosts: HashMap<String, Slot<glance::Glance>>,
    /// By service: the new system whose closure was copied to its host
    /// ahead of need (none when its host runs it already, or has it built).
    copied: HashMap<String, Ahead>,
    /// By service: its native-migration databases are all in place.
    dbs: HashMap<String, Slot<()>>,
    /// By service: the end-to-end checks passed (the detail to report).
    verify: HashMap<String, Slot<String>>,
    /// The services of `verify` in the order the run reaches them (the core
    /// first): their checks run in this order, a few at a time.
    verify_order: Vec<String>,
    /// The services of `hosts` in the order the run reaches them: their
    /// hosts are looked at in this order, and their builds go first in it.
    host_order: Vec<String>,
    /// Builds ahead of need, a few at a time.
    builds: crate::bounded::Gate,
    /// The changed hosts the rest of the stack's looks and checks make way for.
    pub(super) switching: super::switching::Switching,
}

impl Lookahead {
    /// No questions (until [`Self::new`] can see the run's context).
    pub(super) fn empty() -> Self {
        Lookahead {
            stale: AtomicBool::new(false),
            stale_services: Mutex::new(HashSet::new()),
            tf: HashMap::new(),
            held: HashMap::new(),
            evaluated: HashMap::new(),
            built: HashMap::new(),
            hosts: HashMap::new(),
            copied: HashMap::new(),
            dbs: HashMap::new(),
            verify: HashMap::new(),
            verify_order: Vec::new(),
            host_order: Vec::new(),
            builds: crate::bounded::Gate::new(1),
            switching: Default::default(),
        }
    }

    /// The questions this run will ask, given its plan and selected phases.
    pub(super) fn new(ctx: &Ctx) -> Self {
        let (core, apps) = (ctx.core_services(), ctx.apps());
        let hosts: Vec<&Service> = core
            .iter()
            .filter(|_| ctx.runs(Phase::NixCore))
            .chain(apps.iter().filter(|_| ctx.runs(Phase::NixServiceConfig)))
            .copied()
            .collect();
        let verify_order: Vec<String> = core
            .iter()
            .chain(apps.iter())
            .filter(|s| {
                ctx.runs(Phase::Verify) && ctx.step(&format!("verify:{}", s.name)).is_some()
            })
            .map(|s| s.name.clone())
            .collect();
        Lookahead {
            stale: AtomicBool::new(false),
            stale_services: Mutex::new(HashSet::new()),
            tf: ctx
                .tf_steps
                .values()
                .filter(|t| !t.config.is_empty() && ctx.runs(t.phase))
                .map(|t| (t.step_id.clone(), Slot::new()))
                .collect(),
            held: ctx
                .tf_steps
                .values()
                .filter(|t| !t.config.is_empty())
                .map(|t| (t.workspace.clone(), (t.phase, Slot::new())))
                .collect(),
            evaluated: slots(hosts.iter().map(|s| s.name.clone())),
            built: slots(hosts.iter().map(|s| s.name.clone())),
            hosts: slots(hosts.iter().map(|s| s.name.clone())),
            copied: hosts
                .iter()
                .map(|s| (s.name.clone(), Ahead::new()))
                .collect(),
            dbs: slots(
                apps.iter()
                    .filter(|s| ctx.runs(Phase::TfServiceInfra) && has_native_db(s))
                    .map(|s| s.name.clone()),
            ),
            verify: slots(verify_order.iter().cloned()),
            verify_order,
            host_order: hosts.iter().map(|s| s.name.clone()).collect(),
            builds: crate::bounded::Gate::new(crate::bounded::builds_at_once()),
            switching: Default::default(),
        }
    }

    /// Something changed or failed: answers not yet taken no longer hold.
    pub(super) fn stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
        // Nothing looked at from now on is taken: no reason to hold it back.
        self.switching.end();
    }

    /// An application's own host changed or failed: the answers about it
    /// and about what depends on it no longer hold; the rest of the stack's
    /// do (another host's system, probes and end-to-end checks do not go
    /// through it).
    pub(super) fn stale_for(&self, services: impl IntoIterator<Item = String>) {
        self.stale_services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(services);
    }

    fn fresh(&self) -> bool {
        !self.stale.load(Ordering::SeqCst)
    }

    fn fresh_for(&self, service: &str) -> bool {
        self.fresh()
            && !self
                .stale_services
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(service)
    }

    /// The look's outputs when the workspace planned clean with `spec`'s inputs.
    /// Always waits for the look first: two Terraform commands must never
    /// work on one workspace at once.
    pub(super) fn terraform(&self, step_id: &str, spec: &PhaseSpec) -> Option<Outputs> {
        let look = self.tf.get(step_id)?.wait()?;
        (self.fresh() && look.derived == spec.derived && look.upstream == spec.upstream)
            .then_some(look.outputs)
    }

    /// The outputs `workspaces` held at the start (a workspace nobody has
    /// applied yet holds none); `None` when one could not be read.
    fn held_outputs<'a>(
        &self,
        workspaces: impl Iterator<Item = &'a String>,
    ) -> Option<BTreeMap<String, Outputs>> {
        let mut out = BTreeMap::new();
        for ws in workspaces {
            if let Some((_, slot)) = self.held.get(ws) {
                out.insert(ws.clone(), slot.wait()?);
            }
        }
        Some(out)
    }

    /// The outputs `workspace` held at the start of the run.
    pub(super) fn held(&self, workspace: &str) -> Option<Outputs> {
        self.held.get(workspace)?.1.wait()
    }

    /// `service`'s system as the run's evaluation gave it.
    pub(super) fn evaluation(&self, service: &str) -> Option<build::Evaluated> {
        self.evaluated.get(service)?.wait()
    }

    /// The system built at the start of the run.
    pub(super) fn built(&self, service: &str) -> Option<Result<String, String>> {
        self.built.get(service)?.wait()
    }

    pub(super) fn host(&self, service: &str) -> Option<glance::Glance> {
        if !self.fresh_for(service) {
            return None;
        }
        self.hosts
            .get(service)?
            .wait()
            .filter(|_| self.fresh_for(service))
    }

    /// True when `system`'s closure is on `service`'s host already: copied
    /// there ahead of need while nothing in the run has changed yet (a
    /// Terraform step that changed something may have made the host anew).
    /// A copy under way is waited for (two copies of one closure to one
    /// host would only race); one not yet started is left to the step.
    pub(super) fn copied(&self, service: &str, system: &str) -> bool {
        self.copied
            .get(service)
            .and_then(Ahead::take)
            .is_some_and(|path| path == system)
            && self.fresh_for(service)
    }

    pub(super) fn databases_in_place(&self, service: &str) -> bool {
        self.fresh_for(service)
            && self.dbs.get(service).and_then(Slot::wait).is_some()
            && self.fresh_for(service)
    }

    /// True when the run already knows `service`'s host will get a new
    /// system: its evaluation and its look both came, and they differ. Its
    /// checks now would be of a system about to go; never waits.
    fn will_change(&self, service: &str) -> bool {
        let evaluated = self.evaluated.get(service).and_then(Slot::peek);
        let seen = self.hosts.get(service).and_then(Slot::peek);
        matches!((evaluated, seen), (Some(e), Some(g)) if e.out != g.current)
    }

    /// Whether the run's evaluation gives `service` the very system its host
    /// was last left on: then it most likely runs it already; when not (or it
    /// never was deployed), it will most likely switch. Waits for that
    /// evaluation; `None` without one.
    fn as_last_deployed(&self, ctx: &Ctx, service: &str) -> Option<bool> {
        self.evaluation(service)
            .map(|e| ctx.last_good_systems.get(service) == Some(&e.out))
    }

    pub(super) fn verified(&self, service: &str) -> Option<String> {
        if !self.fresh_for(service) {
            return None;
        }
        self.verify
            .get(service)?
            .wait()
            .filter(|_| self.fresh_for(service))
    }
}

fn slots<T: Clone>(names: impl Iterator<Item = String>) -> HashMap<String, Slot<T>> {
    names.map(|n| (n, Slot::new())).collect()
}

fn has_native_db(s: &Service) -> bool {
    s.databases
        .iter()
        .any(|d| d.mode == Some(DbMode::NativeMigration))
}

/// Starts every look on `scope`; each fills its slot when done.
pub(super) fn start<'s, 'e>(ctx: &'e Ctx<'e>, scope: &'s Scope<'s, 'e>) {
    let look = &ctx.look;
    // Every host's system evaluated (see nixos::evaluation); each host's
    // answer comes as soon as it is known, and always comes.
    scope.spawn(move || {
        let attributes: Vec<(String, String)> = look
            .host_order
            .iter()
            .filter_map(|n| ctx.m.service(n))
            .map(|s| (s.name.clone(), targets::attribute(s)))
            .collect();
        let work_dir = ctx.m.work_dir();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            evaluation::evaluate(&ctx.nix, Some(&work_dir), &attributes, |name, e| {
                if let Some(slot) = look.evaluated.get(name) {
                    slot.put(e);
                }
            })
        }));
        for slot in look.evaluated.values() {
            slot.settle();
        }
    });
    // Each host's system: looked at on its own, built a few at a time (see
    // bounded::builds_at_once), the first the run reaches first.
    for (i, (name, slot)) in look.built.iter().enumerate() {
        // Ranks are unique: the gate admits one rank at a time.
        let rank = look
            .host_order
            .iter()
            .position(|n| n == name)
            .unwrap_or(look.host_order.len() + i);
        scope.spawn(move || {
            fill(slot, || {
                let s = ctx.m.service(name)?;
                // A host already running its system needs no build. One
                // whose system is not the one it was last deployed with
                // most likely does: its build starts at once, beside the
                // Terraform plans, instead of after a look at the host.
                let evaluated = look.evaluation(name);
                if let Some(path) = evaluated.as_ref().map(|e| &e.out) {
                    if look.as_last_deployed(ctx, name) == Some(true)
                        && look
                            .hosts
                            .get(name)
                            .and_then(Slot::wait)
                            .is_some_and(|g| &g.current == path)
                    {
                        return Some(Ok(path.clone()));
                    }
                }
                Some(
                    look.builds
                        .pass(rank, || ctx.build_system(s, evaluated.as_ref())),
                )
            })
        });
    }
    // The hosts, a few at a time in the order the run reaches them. The
    // first command to a host opens the connection later ones reuse. The
    // core's and those of hosts getting a new system at once; the other
    // applications' after the plans (the run needs them after the core's
    // steps), making way for the hosts that switch (see `switching`).
    scope.spawn(move || {
        let glance_one = |name: &String| {
            if let Some(slot) = look.hosts.get(name) {
                fill(slot, || {
                    let s = ctx.m.service(name)?;
                    let t = targets::target(ctx.m, s, &ctx.control).ok()?;
                    crate::process::in_background(|| glance::glance(&t, &s.health, &s.ports).ok())
                })
            }
        };
        let (core, apps) = core_first(ctx, &look.host_order);
        std::thread::scope(|inner| {
            inner.spawn(|| crate::bounded::map(&core, crate::bounded::HOSTS_AT_ONCE, glance_one));
            let (switching, unchanged): (Vec<String>, Vec<String>) =
                apps.iter().cloned().partition(|n| {
                    look.as_last_deployed(ctx, n) == Some(false) || ctx.force.contains(n)
                });
            look.switching.expect(switching.iter().cloned());
            inner.spawn(move || {
                crate::bounded::map(&switching, crate::bounded::HOSTS_AT_ONCE, glance_one)
            });
            for plan in look.tf.values() {
                plan.wait();
            }
            look.switching
                .map(&unchanged, crate::bounded::HOSTS_AT_ONCE, glance_one);
        });
    });
    // Each new system's closure, copied to its host while the plans run: a
    // copy only adds store paths (it changes nothing the host runs), and the
    // deploy step that comes after the plans has only to switch.
    scope.spawn(move || {
        crate::bounded::map(&look.host_order, COPIES_AT_ONCE, |name| {
            if let Some(ahead) = look.copied.get(name) {
                copy_ahead(ctx, name, ahead);
            }
        });
    });
    // Every application's databases in one round trip to PostgreSQL.
    scope.spawn(move || {
        let names: Vec<&String> = look.dbs.keys().collect();
        let answers =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| databases(ctx, &names)))
                .unwrap_or_default();
        for (i, name) in names.iter().enumerate() {
            if let Some(slot) = look.dbs.get(*name) {
                fill(slot, || {
                    answers.get(i).copied().unwrap_or(false).then_some(())
                });
            }
        }
    });
    // The outputs every workspace holds now, each read on its own...
    for (ws, (phase, slot)) in &look.held {
        scope.spawn(move || fill(slot, || ctx.tf.held_outputs(*phase, ws).ok()));
    }
    // ...each plan as soon as its upstream workspaces' outputs are read...
    for t in ctx.tf_steps.values() {
        let Some(slot) = look.tf.get(&t.step_id) else {
            continue;
        };
        scope.spawn(move || {
            fill(slot, || {
                let upstream = look.held_outputs(t.upstream.iter())?;
                let spec = t.spec(ctx.m, &ctx.m.dir(), &upstream);
                let changes = ctx.tf.plan_phase(&spec, PlanMode::Normal).ok()??;
                if changes.any() {
                    return None;
                }
                // The outputs read at the start must still be the workspace's:
                // a Terraform left running by a killed run may have applied
                // in between (the plan waited for its lock).
                let held = look
                    .held_outputs(std::iter::once(&t.workspace))?
                    .remove(&t.workspace)
                    .unwrap_or_default();
                let now = ctx.tf.held_outputs(t.phase, &t.workspace).ok()?;
                (now == held).then_some(TfLook {
                    derived: spec.derived,
                    upstream: spec.upstream,
                    outputs: held,
                })
            })
        });
    }
    // ...and the end-to-end checks with all of them, a few services at a
    // time in the order the run reaches them; not those of a host about to
    // change, whose step checks its new system itself. The core's come
    // first and at once: the run waits for them right after `tf:auth-core`.
    // The applications' wait for the plans, which the run waits for first,
    // and make way for the hosts that switch.
    scope.spawn(move || {
        let known = look.held_outputs(look.held.keys());
        let check = |name: &String| {
            if let Some(slot) = look.verify.get(name) {
                fill(slot, || {
                    if look.will_change(name) {
                        return None;
                    }
                    verify(ctx, name, known.as_ref()?)
                });
            }
        };
        let (core, apps) = core_first(ctx, &look.verify_order);
        std::thread::scope(|inner| {
            inner.spawn(|| crate::bounded::map(&core, crate::verify::SERVICES_AT_ONCE, check));
            for plan in look.tf.values() {
                plan.wait();
            }
            look.switching
                .map(&apps, crate::verify::SERVICES_AT_ONCE, check);
        });
    });
}

/// `names` split into the core's services and the applications', each in
/// its order.
fn core_first(ctx: &Ctx, names: &[String]) -> (Vec<String>, Vec<String>) {
    names
        .iter()
        .cloned()
        .partition(|n| ctx.m.service(n).is_some_and(Service::is_core))
}

/// Closures copied to their hosts at once, ahead of need.
const COPIES_AT_ONCE: usize = 2;

/// Copies `name`'s new system to its host when the run will deploy it
/// there: it was built here, and the host (reachable now) runs another.
/// Unless the deploy step came first and copies it itself.
fn copy_ahead(ctx: &Ctx, name: &str, ahead: &Ahead) {
    let look = &ctx.look;
    let wanted = || -> Option<(String, crate::nixos::ssh::SshTarget)> {
        // A host that was left on this very system most likely runs it:
        // nothing to send ahead (its step copies, should it not).
        if look.as_last_deployed(ctx, name) == Some(true) {
            return None;
        }
        let path = look.built.get(name)?.wait()?.ok()?;
        let seen = look.hosts.get(name)?.wait()?;
        let placed = ctx
            .placed
            .lock()
            .map_or(true, |p| p.get(name) == Some(&path));
        if seen.current == path || placed {
            return None;
        }
        let s = ctx.m.service(name)?;
        Some((path, targets::target(ctx.m, s, &ctx.control).ok()?))
    };
    let wanted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(wanted))
        .ok()
        .flatten();
    let Some((path, t)) = wanted else {
        ahead.start_then(|| None);
        return;
    };
    ahead.start_then(|| {
        crate::process::in_background(|| build::copy(&ctx.nix, &t, &path).ok())?;
        Some(path)
    });
}

/// A closure copied ahead of need, which the deploy step may take over
/// before it starts: a step never waits for copies queued before its own.
pub(super) struct Ahead {
    state: Mutex<AheadState>,
    done: Condvar,
}

enum AheadState {
    Waiting,
    Copying,
    /// The system copied, if any.
    Done(Option<String>),
    /// The step came first; it copies for itself.
    Taken,
}

impl Ahead {
    fn new() -> Self {
        Ahead {
            state: Mutex::new(AheadState::Waiting),
            done: Condvar::new(),
        }
    }

    /// Runs `copy` unless the step took the work first, and always leaves
    /// an answer, even if `copy` panics: a step waiting must never wait
    /// forever.
    fn start_then(&self, copy: impl FnOnce() -> Option<String>) {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !matches!(*state, AheadState::Waiting) {
                return;
            }
            *state = AheadState::Copying;
        }
        let copied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(copy))
            .ok()
            .flatten();
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = AheadState::Done(copied);
        self.done.notify_all();
    }

    /// The step's turn: what was copied, after waiting for a copy under
    /// way; `None` when none was made, or none had started (then none will).
    fn take(&self) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &*state {
                AheadState::Waiting | AheadState::Taken => {
                    *state = AheadState::Taken;
                    return None;
                }
                AheadState::Done(copied) => return copied.clone(),
                AheadState::Copying => {
                    state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}

/// One round trip to the PostgreSQL host for all `names`: by name, whether
/// every native database of the service exists and has every migration
/// recorded with its checksum.
fn databases(ctx: &Ctx, names: &[&String]) -> Vec<bool> {
    let (Some(pg), true) = (ctx.m.service("postgresql"), !names.is_empty()) else {
        return Vec::new();
    };
    let Ok(t) = targets::target(ctx.m, pg, &ctx.control) else {
        return Vec::new();
    };
    let services: Vec<Option<&Service>> = names.iter().map(|n| ctx.m.service(n)).collect();
    let entries: Vec<(usize, &crate::manifest::Database)> = services
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .flat_map(|(i, s)| {
            s.databases
                .iter()
                .filter(|d| d.mode == Some(DbMode::NativeMigration))
                .map(move |d| (i, d))
        })
        .collect();
    let dbs: Vec<&crate::manifest::Database> = entries.iter().map(|(_, d)| *d).collect();
    let in_place = database::in_place_all(&t, &ctx.m.nixos.psql, &ctx.m.dir(), &dbs);
    (0..names.len())
        .map(|i| {
            services[i].is_some()
                && entries
                    .iter()
                    .zip(&in_place)
                    .filter(|((owner, _), _)| *owner == i)
                    .all(|(_, ok)| *ok)
        })
        .collect()
}

/// The service's end-to-end checks with the outputs the workspaces hold now.
fn verify(ctx: &Ctx, name: &str, known: &BTreeMap<String, Outputs>) -> Option<String> {
    let s = ctx.m.service(name)?;
    let vctx = crate::verify::Context::new(ctx.m, known);
    crate::verify::verdict(&crate::verify::service(ctx.m, s, &vctx)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_copy(path: Option<&str>) -> Lookahead {
        let mut look = Lookahead::empty();
        let ahead = Ahead::new();
        ahead.start_then(|| path.map(str::to_string));
        look.copied = HashMap::from([("app01".to_string(), ahead)]);
        look
    }

    #[test]
    fn a_step_that_comes_first_copies_for_itself() {
        let ahead = Ahead::new();
        assert_eq!(ahead.take(), None);
        ahead.start_then(|| panic!("the look copies after the step took it over"));
        assert_eq!(ahead.take(), None);
        // A copy that panics still answers.
        let ahead = Ahead::new();
        ahead.start_then(|| panic!("a copy that panics"));
        assert_eq!(ahead.take(), None);
    }

    #[test]
    fn a_step_waits_for_a_copy_under_way() {
        let ahead = Ahead::new();
        let (started, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                ahead.start_then(|| {
                    started.wait();
                    go.wait();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    Some("/nix/store/aaaa-x".to_string())
                })
            });
            started.wait();
            go.wait();
            assert_eq!(ahead.take().as_deref(), Some("/nix/store/aaaa-x"));
        });
    }

    #[test]
    fn a_closure_copied_ahead_counts_only_while_nothing_changed() {
        let path = "/nix/store/aaaa-nixos-system-app01";
        assert!(with_copy(Some(path)).copied("app01", path));
        // Another system than the one copied, or no copy at all.
        assert!(!with_copy(Some(path)).copied("app01", "/nix/store/bbbb-other"));
        assert!(!with_copy(None).copied("app01", path));
        assert!(!with_copy(Some(path)).copied("app02", path));
        // A step of the stack changed something: the host may be new.
        let look = with_copy(Some(path));
        look.stale();
        assert!(!look.copied("app01", path));
        // Its own host changed or failed, or something it needs did.
        let look = with_copy(Some(path));
        look.stale_for(["app01".to_string()]);
        assert!(!look.copied("app01", path));
        // Another application's host changing leaves it standing.
        let look = with_copy(Some(path));
        look.stale_for(["app02".to_string()]);
        assert!(look.copied("app01", path));
    }

    #[test]
    fn checks_are_not_run_on_a_host_about_to_change() {
        let (old, new) = (
            "/nix/store/aaaa-nixos-system-app01",
            "/nix/store/bbbb-nixos-system-app01",
        );
        let glanced = |current: &str| glance::Glance {
            current: current.into(),
            env_hash: String::new(),
            healthy: true,
            pending: vec![],
            records: vec![],
        };
        let evaluated = |out: &str| build::Evaluated {
            out: out.into(),
            drv: None,
        };
        let look = |e: Option<&str>, g: Option<&str>| {
            let mut look = Lookahead::empty();
            look.evaluated = slots(["app01".to_string()].into_iter());
            look.hosts = slots(["app01".to_string()].into_iter());
            if let Some(e) = e {
                look.evaluated["app01"].put(Some(evaluated(e)));
            }
            if let Some(g) = g {
                look.hosts["app01"].put(Some(glanced(g)));
            }
            look
        };
        assert!(look(Some(new), Some(old)).will_change("app01"));
        assert!(!look(Some(old), Some(old)).will_change("app01"));
        // Not known yet: never waited for, the checks run.
        assert!(!look(None, Some(old)).will_change("app01"));
        assert!(!look(Some(new), None).will_change("app01"));
        assert!(!look(Some(new), Some(old)).will_change("app02"));
        // A look that found nothing is no answer either.
        let failed = look(Some(new), None);
        failed.hosts["app01"].put(None);
        assert!(!failed.will_change("app01"));
    }
}
