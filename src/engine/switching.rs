//! Quiet while a host switches. A run that changes a few hosts still
//! checks the rest of the stack: every unchanged application's host looked
//! at and probed, every application's end-to-end checks. The run needs
//! none of those answers before that application's own step, but all of
//! them go through the stack's shared services (its proxy, identity
//! provider and databases) just when a changed host starts its new system
//! and passes its health gate through the same services, and in the lab
//! they share the cores too. So while a host the run is about to switch
//! has not switched yet, that work goes on one item at a time, in the
//! run's order (a step waiting for an answer always gets it in the end),
//! and at full width after.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub(super) struct Switching {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Hosts the run will switch, not switched yet.
    pending: BTreeSet<String>,
    /// Hosts that switched (or whose step ended) already.
    done: BTreeSet<String>,
    /// Nothing waits any more: the walk ended, or its answers went stale.
    over: bool,
}

impl Switching {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run will switch `names` (those whose step ended already excepted).
    pub(super) fn expect(&self, names: impl IntoIterator<Item = String>) {
        let mut st = self.state();
        for n in names {
            if !st.done.contains(&n) {
                st.pending.insert(n);
            }
        }
    }

    /// `name`'s activation ended, whatever its result, or its step did.
    pub(super) fn switched(&self, name: &str) {
        let mut st = self.state();
        st.pending.remove(name);
        st.done.insert(name.to_string());
        drop(st);
        self.changed.notify_all();
    }

    /// Marks `name` switched when dropped: however its step ends.
    pub(super) fn on_end<'a>(&'a self, name: &'a str) -> OnEnd<'a> {
        OnEnd(self, name)
    }

    /// The walk ended, or something changed the stack: nobody waits any more.
    pub(super) fn end(&self) {
        self.state().over = true;
        self.changed.notify_all();
    }

    /// Waits while a host is still to switch, unless `enough` says there is
    /// nothing left to wait for.
    fn wait(&self, enough: impl Fn() -> bool) {
        let mut st = self.state();
        while !st.over && !st.pending.is_empty() && !enough() {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// `f` of every item, in order, `at_once` at a time; while a host is
    /// still to switch, one at a time (the first worker never waits).
    pub(super) fn map<T: Sync>(&self, items: &[T], at_once: usize, f: impl Fn(&T) + Sync) {
        let next = AtomicUsize::new(0);
        let taken = || next.load(Ordering::SeqCst) >= items.len();
        std::thread::scope(|scope| {
            for worker in 0..at_once.max(1).min(items.len()) {
                let (next, f, taken) = (&next, &f, &taken);
                scope.spawn(move || loop {
                    if worker > 0 {
                        self.wait(taken);
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else {
                        break;
                    };
                    if i + 1 == items.len() {
                        // The last one: whoever waits has nothing left to wait for.
                        // (Under the lock, so no waiter misses it.)
                        drop(self.state());
                        self.changed.notify_all();
                    }
                    f(item);
                });
            }
        });
    }
}

/// See [`Switching::on_end`].
pub(super) struct OnEnd<'a>(&'a Switching, &'a str);

impl Drop for OnEnd<'_> {
    fn drop(&mut self) {
        self.0.switched(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `items` through `s.map` and reports the most seen at once.
    fn widest(s: &Switching, items: usize, at_once: usize, during: impl Fn(usize) + Sync) -> usize {
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let order: Vec<usize> = (0..items).collect();
        s.map(&order, at_once, |i| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            during(*i);
            std::thread::sleep(Duration::from_millis(20));
            now.fetch_sub(1, Ordering::SeqCst);
        });
        most.load(Ordering::SeqCst)
    }

    #[test]
    fn full_width_when_nothing_switches() {
        assert_eq!(widest(&Switching::default(), 8, 4, |_| {}), 4);
    }

    #[test]
    fn one_at_a_time_until_the_host_switched() {
        let s = Switching::default();
        s.expect(["app01".to_string()]);
        assert_eq!(
            widest(&s, 6, 4, |_| {}),
            1,
            "nothing released it: all in order, one by one"
        );
        // Released midway: full width from then on, every item done.
        let s = Switching::default();
        s.expect(["app01".to_string()]);
        let done = AtomicUsize::new(0);
        let most = widest(&s, 12, 4, |i| {
            done.fetch_add(1, Ordering::SeqCst);
            if i == 2 {
                s.switched("app01");
            }
        });
        assert!(most > 1, "still one at a time after the switch");
        assert_eq!(done.load(Ordering::SeqCst), 12);
    }

    #[test]
    fn a_host_that_switched_first_is_not_waited_for() {
        let s = Switching::default();
        s.switched("app01");
        s.expect(["app01".to_string()]);
        assert_eq!(widest(&s, 8, 4, |_| {}), 4);
        // The end releases whatever is still pending.
        let s = Switching::default();
        s.expect(["app02".to_string()]);
        s.end();
        assert_eq!(widest(&s, 8, 4, |_| {}), 4);
    }
}
