//! The dependency graph of services: cycle detection, deterministic order,
//! selection with `--only`, and the waves of applications that may run side by side.
//!
//! Every application implicitly depends on every core service (the phase
//! contract deploys the whole core first); explicit `depends_on` edges add
//! the rest.

pub mod render;
mod selector;

pub use selector::{is_tag, resolve};

use crate::manifest::diag::{did_you_mean, Diagnostics};
use crate::manifest::rules::service_path;
use crate::manifest::{Manifest, ServiceKind, CORE_SERVICES};
use std::collections::{BTreeSet, HashMap};

/// Indices into `Manifest::services` (which is sorted by name, so index order is name order).
type Idx = usize;

/// Resolved `depends_on` edges: `deps[i]` are the services `i` depends on.
fn edges(m: &Manifest) -> Vec<Vec<Idx>> {
    let index: HashMap<&str, Idx> = m
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    m.services
        .iter()
        .map(|s| {
            let mut d: Vec<Idx> = s
                .depends_on
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect()
}

/// Every dependency cycle, each as the names along it with the first repeated
/// at the end (`a -> b -> a` reads "a depends on b, which depends on a").
pub fn cycles(m: &Manifest) -> Vec<Vec<String>> {
    let deps = edges(m);
    let n = deps.len();
    // Self-dependencies are reported by validation on their own; ignore them here.
    let mut live_deps: Vec<usize> = (0..n)
        .map(|i| deps[i].iter().filter(|&&d| d != i).count())
        .collect();
    let mut dependents: Vec<Vec<Idx>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            if d != i {
                dependents[d].push(i);
            }
        }
    }
    let mut alive = vec![true; n];
    // Removes a node and peels off, Kahn-style, everything that then has no live dependency.
    let remove = |start: Vec<Idx>, alive: &mut Vec<bool>, live_deps: &mut Vec<usize>| {
        let mut queue = start;
        while let Some(i) = queue.pop() {
            if !alive[i] {
                continue;
            }
            alive[i] = false;
            for &dep in &dependents[i] {
                live_deps[dep] -= 1;
                if live_deps[dep] == 0 && alive[dep] {
                    queue.push(dep);
                }
            }
        }
    };
    let roots: Vec<Idx> = (0..n).filter(|&i| live_deps[i] == 0).collect();
    remove(roots, &mut alive, &mut live_deps);
    let mut found = Vec::new();
    let mut next_start = 0;
    while let Some(start) = (next_start..n).find(|&i| alive[i]) {
        next_start = start;
        // Every live node has a live dependency, so walking them must revisit a node.
        let mut walk = vec![start];
        let mut pos: HashMap<Idx, usize> = HashMap::from([(start, 0)]);
        let cycle = loop {
            let cur = walk[walk.len() - 1];
            let Some(next) = deps[cur].iter().copied().find(|&d| d != cur && alive[d]) else {
                break Vec::new();
            };
            if let Some(&p) = pos.get(&next) {
                break walk[p..].to_vec();
            }
            pos.insert(next, walk.len());
            walk.push(next);
        };
        if cycle.is_empty() {
            remove(vec![start], &mut alive, &mut live_deps);
            continue;
        }
        // Start the cycle at its smallest name so the report is stable.
        let min_pos = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
        let mut names: Vec<String> = cycle[min_pos..]
            .iter()
            .chain(&cycle[..min_pos])
            .map(|&i| m.services[i].name.clone())
            .collect();
        names.push(names[0].clone());
        found.push(names);
        remove(cycle, &mut alive, &mut live_deps);
    }
    found
}

/// Adds one error per dependency cycle, at the first service of the cycle.
pub fn check_cycles(diags: &mut Diagnostics, m: &Manifest) {
    for cycle in cycles(m) {
        let Some(first) = m.service(&cycle[0]) else {
            continue;
        };
        diags.error(
            &service_path(first).key("depends_on"),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// The services a run touches, in the order they deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Core services in deployment order (one after another).
    pub core: Vec<String>,
    /// Application services in a valid order (ties broken by name).
    pub apps: Vec<String>,
    /// Applications grouped into waves: every member of a wave depends only on
    /// core services and on members of earlier waves, so a wave may run side by side.
    pub waves: Vec<Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("{flag} {name}: no such service{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Unknown {
        flag: &'static str,
        name: String,
        hint: Option<String>,
    },
    #[error(
        "{flag} {name}: the service is disabled in the manifest (set enable = true to deploy it)"
    )]
    Disabled { flag: &'static str, name: String },
    #[error("--force {name}: the service is not part of this run{why}")]
    NotInRun { name: String, why: String },
    #[error("{flag} {selector}: selects nothing{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    NoMatch {
        flag: &'static str,
        selector: String,
        hint: Option<String>,
    },
}

/// The enabled service `name`, or why `flag` cannot name it.
pub(crate) fn named<'m>(
    m: &'m Manifest,
    flag: &'static str,
    name: &str,
) -> Result<&'m crate::manifest::Service, SelectError> {
    match m.service(name) {
        None => Err(SelectError::Unknown {
            flag,
            name: name.to_string(),
            hint: did_you_mean(name, m.services.iter().map(|s| s.name.as_str())),
        }),
        Some(s) if !s.enabled => Err(SelectError::Disabled {
            flag,
            name: name.to_string(),
        }),
        Some(s) => Ok(s),
    }
}

/// The enabled services selected by `only` plus everything they depend on
/// (an application pulls in the whole core). Empty `only` selects everything enabled.
pub fn select(m: &Manifest, only: &[String]) -> Result<BTreeSet<String>, SelectError> {
    if only.is_empty() {
        return Ok(m.enabled().map(|s| s.name.clone()).collect());
    }
    let mut chosen = BTreeSet::new();
    let mut stack: Vec<String> = resolve(m, "--on", only)?;
    while let Some(name) = stack.pop() {
        let Some(s) = m.service(&name) else { continue };
        if !s.enabled || !chosen.insert(name.clone()) {
            continue;
        }
        stack.extend(s.depends_on.iter().cloned());
        if s.kind == ServiceKind::Application {
            stack.extend(m.enabled().filter(|c| c.is_core()).map(|c| c.name.clone()));
        }
    }
    Ok(chosen)
}

/// `names` with every enabled service that needs them: their dependents
/// through `depends_on`, directly or not, and for a core service every
/// application (each needs the whole core).
pub fn needing(m: &Manifest, names: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let mut stack: Vec<String> = names.into_iter().collect();
    let mut out = BTreeSet::new();
    while let Some(name) = stack.pop() {
        let Some(s) = m.service(&name) else { continue };
        if !out.insert(name.clone()) {
            continue;
        }
        stack.extend(
            m.enabled()
                .filter(|d| d.depends_on.contains(&name))
                .map(|d| d.name.clone()),
        );
        if s.is_core() {
            stack.extend(
                m.enabled()
                    .filter(|a| a.kind == ServiceKind::Application)
                    .map(|a| a.name.clone()),
            );
        }
    }
    out
}

/// Takes the `skip` services out of `selected`, with everything that needs
/// them: their dependents through `depends_on`, and for a core service every
/// application (each needs the whole core). Returns what was taken out, in
/// name order.
pub fn skip(
    m: &Manifest,
    selected: &mut BTreeSet<String>,
    skip: &[String],
) -> Result<Vec<String>, SelectError> {
    let mut out = needing(m, resolve(m, "--skip", skip)?);
    out.retain(|n| selected.remove(n));
    Ok(out.into_iter().collect())
}

/// Checks that every `force` name is a service of this run.
pub fn check_force(
    m: &Manifest,
    selected: &BTreeSet<String>,
    skipped: &[String],
    force: &[String],
) -> Result<(), SelectError> {
    for name in &resolve(m, "--force", force)? {
        if !selected.contains(name) {
            let why = if skipped.contains(name) {
                " (--skip leaves it out)".to_string()
            } else {
                " (--on/--only leaves it out)".to_string()
            };
            return Err(SelectError::NotInRun {
                name: name.clone(),
                why,
            });
        }
    }
    Ok(())
}

/// Deployment order of the selected services. The manifest must be free of
/// cycles (validation guarantees it); should one slip through, the services on
/// it are left out rather than looping.
pub fn order(m: &Manifest, selected: &BTreeSet<String>) -> Order {
    let deps = edges(m);
    let picked: Vec<bool> = m
        .services
        .iter()
        .map(|s| s.enabled && selected.contains(&s.name))
        .collect();

    // Core: dependency order; ties follow deployment_phases.nix_core, then the
    // canonical dns → postgresql → caddy → authentik, then name.
    let stated = m
        .deployment_phases
        .as_ref()
        .map(|p| p.nix_core.clone())
        .unwrap_or_default();
    let core_rank = |i: Idx| {
        let name = m.services[i].name.as_str();
        (
            stated.iter().position(|n| n == name).unwrap_or(usize::MAX),
            CORE_SERVICES
                .iter()
                .position(|n| *n == name)
                .unwrap_or(usize::MAX),
            i,
        )
    };
    let is = |kind: ServiceKind| move |i: &Idx| m.services[*i].kind == kind;
    let core_nodes: Vec<Idx> = (0..m.services.len())
        .filter(|i| picked[*i])
        .filter(is(ServiceKind::Core))
        .collect();
    let core = kahn(&core_nodes, &deps, core_rank);
    let app_nodes: Vec<Idx> = (0..m.services.len())
        .filter(|i| picked[*i])
        .filter(is(ServiceKind::Application))
        .collect();
    let apps = kahn(&app_nodes, &deps, |i| (0, 0, i));

    let mut level: HashMap<Idx, usize> = HashMap::new();
    for &i in &apps {
        let l = deps[i]
            .iter()
            .filter_map(|d| level.get(d))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(i, l);
    }
    let mut waves: Vec<Vec<String>> = Vec::new();
    for &i in &apps {
        let l = level[&i];
        if waves.len() <= l {
            waves.resize(l + 1, Vec::new());
        }
        waves[l].push(m.services[i].name.clone());
    }
    for w in &mut waves {
        w.sort();
    }
    let names = |v: Vec<Idx>| v.into_iter().map(|i| m.services[i].name.clone()).collect();
    Order {
        core: names(core),
        apps: names(apps),
        waves,
    }
}

/// Kahn's algorithm over `nodes`, taking among the ready nodes the one with the smallest `rank`.
fn kahn<K: Ord + Copy>(nodes: &[Idx], deps: &[Vec<Idx>], rank: impl Fn(Idx) -> K) -> Vec<Idx> {
    let member: HashMap<Idx, usize> = nodes.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut waiting: Vec<usize> = vec![0; nodes.len()];
    let mut dependents: Vec<Vec<Idx>> = vec![Vec::new(); nodes.len()];
    for (k, &i) in nodes.iter().enumerate() {
        for d in &deps[i] {
            if let Some(&dk) = member.get(d) {
                if *d != i {
                    waiting[k] += 1;
                    dependents[dk].push(i);
                }
            }
        }
    }
    let mut ready: BTreeSet<(K, Idx)> = nodes
        .iter()
        .enumerate()
        .filter(|(k, _)| waiting[*k] == 0)
        .map(|(_, &i)| (rank(i), i))
        .collect();
    let mut out = Vec::with_capacity(nodes.len());
    while let Some((_, i)) = ready.pop_first() {
        out.push(i);
        for &dep in &dependents[member[&i]] {
            let dk = member[&dep];
            waiting[dk] -= 1;
            if waiting[dk] == 0 {
                ready.insert((rank(dep), dep));
            }
        }
    }
    out
}
