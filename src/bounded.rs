//! Work on many hosts or services at once, but never more than a bound:
//! each item starts tools or SSH commands, and a two-core machine starved
//! by all of them at once finishes later than one working a few at a time.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Hosts looked at side by side (`status`, and an apply's look ahead): each
/// look is an SSH connection and a command, waiting on the host more than
/// on this machine, but its key exchange costs both ends CPU; forty at once
/// starve the Terraform plans a run waits for first.
pub const HOSTS_AT_ONCE: usize = 8;
use std::sync::Mutex;

/// Systems a run builds ahead of need at once: one per core. Evaluating a
/// real NixOS system (nixpkgs) takes a core for seconds and a GiB or more;
/// forty at once, as a first deploy of forty hosts would start, exhaust
/// the memory before they save any time.
pub fn builds_at_once() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// At most `n` callers inside [`Gate::pass`] at a time; of those waiting,
/// the one of the lowest rank goes in first.
pub struct Gate {
    state: Mutex<GateState>,
    changed: std::sync::Condvar,
}

struct GateState {
    free: usize,
    waiting: std::collections::BTreeSet<usize>,
}

impl Gate {
    pub fn new(n: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                free: n.max(1),
                waiting: std::collections::BTreeSet::new(),
            }),
            changed: std::sync::Condvar::new(),
        }
    }

    /// `f`, once a place is free and no lower `rank` waits (ranks are
    /// unique among callers); the place is given back even when `f` panics.
    pub fn pass<R>(&self, rank: usize, f: impl FnOnce() -> R) -> R {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.waiting.insert(rank);
        while !(st.free > 0 && st.waiting.first() == Some(&rank)) {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.waiting.remove(&rank);
        st.free -= 1;
        drop(st);
        // The next rank may find a place free too.
        self.changed.notify_all();
        struct Leave<'a>(&'a Gate);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.state.lock().unwrap_or_else(|e| e.into_inner()).free += 1;
                self.0.changed.notify_all();
            }
        }
        let _leave = Leave(self);
        f()
    }
}

/// `f` of every item, at most `at_once` at a time, taken in order; the
/// results in the order of `items`, whatever order they finished in.
pub fn map<T: Sync, R: Send>(items: &[T], at_once: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..at_once.max(1).min(items.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                *done[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    done.into_iter()
        .filter_map(|d| d.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn results_keep_their_order_and_the_bound_holds() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<u64> = (0..40).collect();
        let out = map(&items, 3, |n| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(40 - n));
            running.fetch_sub(1, Ordering::SeqCst);
            n * 2
        });
        assert_eq!(out, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        let most = most.load(Ordering::SeqCst);
        assert!((2..=3).contains(&most), "{most} at once");
        assert!(map(&[] as &[u8], 4, |_| 1).is_empty());
    }

    #[test]
    fn a_gate_lets_n_in_lowest_rank_first_and_survives_a_panic() {
        let gate = Gate::new(2);
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let order = Mutex::new(Vec::new());
        // Two holders keep the gate full while ranks 9..2 queue up.
        let (hold, held) = (std::sync::Barrier::new(3), std::sync::Barrier::new(3));
        std::thread::scope(|s| {
            for r in [100, 101] {
                let (gate, hold, held) = (&gate, &hold, &held);
                s.spawn(move || {
                    gate.pass(r, || {
                        hold.wait();
                        held.wait();
                    })
                });
            }
            hold.wait();
            for r in (2..10).rev() {
                let (gate, inside, most, order) = (&gate, &inside, &most, &order);
                s.spawn(move || {
                    gate.pass(r, || {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        order.lock().expect("order").push(r);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                });
            }
            // Let them all queue before the holders leave.
            std::thread::sleep(std::time::Duration::from_millis(100));
            held.wait();
        });
        assert!(most.load(Ordering::SeqCst) <= 2);
        let order = order.into_inner().expect("order");
        assert_eq!(order.len(), 8);
        // Two go in at a time, so a rank is never more than one place late.
        for (i, r) in order.iter().enumerate() {
            assert!((*r as i64 - (i as i64 + 2)).abs() <= 1, "{order:?}");
        }
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gate.pass(1, || panic!("inside"))
        }));
        assert!(panicked.is_err());
        // Both places are free again.
        std::thread::scope(|s| {
            s.spawn(|| {
                gate.pass(0, || {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                })
            });
            s.spawn(|| {
                gate.pass(1, || {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                })
            });
        });
    }
}
