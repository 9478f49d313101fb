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
}
