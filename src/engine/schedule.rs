//! Phase 4's scheduler: applications in dependency order, independent ones
//! side by side (at most `--parallel`), and the rollout rules of the plan's
//! [`Rolling`]: at most `batch` hosts switching at once, `canary` (waves
//! one after another, each wave's first application alone first), and
//! `max_failures` (no host started after that many failures). A service
//! whose dependency failed is skipped; one a rule kept back is reported as
//! not started, each of its steps with the reason.

use super::event::StepStatus;
use super::run::{Ctx, Summary};
use crate::manifest::Service;
use crate::plan::{Phase, Rolling};
use std::collections::{BTreeSet, HashMap};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::Instant;

/// Places for hosts switching at once (`--batch`).
pub(super) struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A place taken; given back when dropped, however the deploy ended.
pub(super) struct Slot<'s>(&'s Slots);

impl Slots {
    pub(super) fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    pub(super) fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// How a service ended in this phase.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Ok,
    Failed,
    /// Skipped (a dependency failed) or not started (a rollout rule).
    Held,
}

impl End {
    fn ok(self) -> bool {
        self == End::Ok
    }
}

pub(super) fn applications(ctx: &Ctx, parallel: usize, summary: &mut Summary) {
    let apps = ctx.apps();
    let rolling = ctx.plan.rolling.clone().unwrap_or_default();
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
    let wave_of: HashMap<&str, usize> = ctx
        .plan
        .waves
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let mut state: HashMap<&str, Option<End>> =
        apps.iter().map(|s| (s.name.as_str(), None)).collect();
    let mut started: BTreeSet<&str> = BTreeSet::new();
    let mut failures = 0usize;
    let parallel = parallel.max(1);

    // Marks `name` as not run, every step of it with `why`.
    let hold = |name: &str, why: &str, summary: &mut Summary| {
        summary.services.insert(name.into(), why.to_string());
        for phase in Phase::APPLICATION {
            if let Some(step) = ctx.step(&format!("{}:{name}", phase.id())) {
                ctx.event(step, StepStatus::Skipped, why.to_string(), Instant::now());
            }
        }
    };

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(&str, Result<bool, String>)>();
        let mut running = 0;
        loop {
            // Skip whatever depends on a failure, and what a failed canary holds back.
            let mut changed = true;
            while changed {
                changed = false;
                for s in &apps {
                    let name = s.name.as_str();
                    if started.contains(name) {
                        continue;
                    }
                    let why = if let Some(bad) = deps[name]
                        .iter()
                        .find(|d| matches!(state[*d], Some(e) if !e.ok()))
                    {
                        if state[bad] == Some(End::Failed) {
                            format!("skipped: depends on {bad}, which failed")
                        } else {
                            format!("skipped: depends on {bad}, which was not deployed")
                        }
                    } else if let Some(c) = canary_failed(&rolling, ctx, &wave_of, &state, name) {
                        format!("not started: {c}, the canary of its wave, failed")
                    } else {
                        continue;
                    };
                    started.insert(name);
                    state.insert(name, Some(End::Held));
                    hold(name, &why, summary);
                    changed = true;
                }
            }
            let stop = rolling.max_failures.is_some_and(|k| failures >= k);
            for s in &apps {
                let name = s.name.as_str();
                if running >= parallel || stop {
                    break;
                }
                if started.contains(name) || !deps[name].iter().all(|d| state[*d] == Some(End::Ok))
                {
                    continue;
                }
                if rolling.canary && !canary_allows(ctx, &wave_of, &state, name) {
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
                // Whatever was never started now never will be.
                let why = match rolling.max_failures {
                    Some(k) => {
                        format!("not started: --max-failures {k} reached ({failures} failed)")
                    }
                    None => "not started: what it waits for did not finish".to_string(),
                };
                for s in &apps {
                    let name = s.name.as_str();
                    if started.insert(name) {
                        state.insert(name, Some(End::Held));
                        summary.ok = false;
                        hold(name, &why, summary);
                    }
                }
                break;
            }
            let Ok((name, result)) = rx.recv() else { break };
            running -= 1;
            match result {
                Ok(changed) => {
                    state.insert(name, Some(End::Ok));
                    let what = if changed {
                        "deployed and verified"
                    } else {
                        "unchanged, verified"
                    };
                    summary.services.insert(name.into(), what.into());
                }
                Err(e) => {
                    state.insert(name, Some(End::Failed));
                    failures += 1;
                    summary.ok = false;
                    summary.services.insert(name.into(), format!("failed: {e}"));
                    summary.failures.push(e);
                }
            }
        }
    });
}

/// With `--canary`: the canary of `name`'s wave, when it failed and `name` is not it.
fn canary_failed<'p>(
    rolling: &Rolling,
    ctx: &Ctx<'p>,
    wave_of: &HashMap<&str, usize>,
    state: &HashMap<&str, Option<End>>,
    name: &str,
) -> Option<&'p str> {
    if !rolling.canary {
        return None;
    }
    let canary = canary_of(ctx, wave_of, name)?;
    (canary != name && state.get(canary) == Some(&Some(End::Failed))).then_some(canary)
}

fn canary_of<'p>(ctx: &Ctx<'p>, wave_of: &HashMap<&str, usize>, name: &str) -> Option<&'p str> {
    let w = *wave_of.get(name)?;
    ctx.plan.waves.get(w)?.first().map(String::as_str)
}

/// With `--canary`, whether `name` may start: every earlier wave is done,
/// and it is its wave's canary or that canary passed.
fn canary_allows(
    ctx: &Ctx,
    wave_of: &HashMap<&str, usize>,
    state: &HashMap<&str, Option<End>>,
    name: &str,
) -> bool {
    let Some(&w) = wave_of.get(name) else {
        return true;
    };
    let earlier_done = ctx.plan.waves[..w]
        .iter()
        .flatten()
        .all(|n| state.get(n.as_str()).is_some_and(Option::is_some));
    let canary = canary_of(ctx, wave_of, name).unwrap_or(name);
    earlier_done && (canary == name || state.get(canary) == Some(&Some(End::Ok)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn slots_bound_how_many_hold_one_at_once() {
        let slots = Slots::new(2);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _slot = slots.take();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
