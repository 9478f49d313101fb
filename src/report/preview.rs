//! The online plan for people: Terraform workspaces, hosts and databases,
//! each with what would change, then one line that says whether anything
//! would. The same text heads `apply`'s confirmation.

use crate::engine::preview::{DbPreview, HostPreview, Preview, Secret, State};
use crate::terraform::stack::PhasePlan;
use std::fmt::Write;

/// Hashes are shown this short: enough to tell two apart, never a value.
const HASH_SHOWN: usize = 12;

fn short(hash: &str) -> &str {
    hash.get(..HASH_SHOWN).unwrap_or(hash)
}

fn store_name(path: &str) -> &str {
    path.strip_prefix("/nix/store/").unwrap_or(path)
}

fn host_label(h: &HostPreview) -> String {
    match (&h.host, &h.address) {
        (Some(name), Some(ip)) => format!("{name} ({ip})"),
        (Some(name), None) => name.clone(),
        (None, Some(ip)) => ip.clone(),
        (None, None) => String::new(),
    }
}

fn secret_line(what: &str, s: &Secret) -> Option<String> {
    Some(match s {
        Secret::None => return None,
        Secret::Unchanged { hash } => format!("{what}: unchanged ({})", short(hash)),
        Secret::Changes {
            before: Some(b),
            after,
        } => format!("{what}: changes ({} → {})", short(b), short(after)),
        Secret::Changes {
            before: None,
            after,
        } => {
            format!("{what}: new ({})", short(after))
        }
        Secret::After { workspaces } => format!(
            "{what}: made again after {} (whose outputs change)",
            workspaces.join(", ")
        ),
    })
}

/// The lines of one host: a heading, then (for a change) what differs.
fn host(out: &mut String, h: &HostPreview, only_changes: bool) {
    let what = match h.state {
        State::Unchanged => "unchanged".to_string(),
        State::Changes => h.reasons.join("; "),
        State::Unknown => format!("unknown: {}", h.reasons.join("; ")),
    };
    if only_changes && h.state == State::Unchanged {
        return;
    }
    let _ = writeln!(out, "  {:<14} {:<38} {what}", h.service, host_label(h));
    if h.state != State::Changes {
        return;
    }
    match (&h.current, &h.wanted) {
        (Some(c), Some(w)) if c != w => {
            let _ = writeln!(out, "      {} → {}", store_name(c), store_name(w));
        }
        (None, Some(w)) => {
            let _ = writeln!(out, "      → {}", store_name(w));
        }
        _ => {}
    }
    if let Some(d) = &h.closure {
        let lines = d.lines();
        // A first deploy lists every package: the summary says enough.
        let shown: Vec<&String> = if h.current.is_none() {
            lines.last().into_iter().collect()
        } else {
            lines.iter().collect()
        };
        for l in shown {
            let _ = writeln!(out, "      {l}");
        }
    }
    for line in [
        secret_line("env file", &h.env),
        secret_line("age key", &h.age_key),
    ]
    .into_iter()
    .flatten()
    {
        let _ = writeln!(out, "      {line}");
    }
}

fn database(out: &mut String, d: &DbPreview) {
    let what = match d.state {
        State::Unchanged => "in place, no migration to run".to_string(),
        State::Unknown => format!("unknown: {}", d.reason.as_deref().unwrap_or("not answered")),
        State::Changes => {
            let p = &d.pending;
            let mut parts = Vec::new();
            if let Some(r) = &p.role {
                parts.push(format!("create role {r}"));
            }
            if !p.databases.is_empty() {
                parts.push(format!("create database {}", p.databases.join(", ")));
            }
            if !p.migrations.is_empty() {
                parts.push(format!(
                    "run {} migration(s): {}",
                    p.migrations.len(),
                    p.migrations.join(", ")
                ));
            }
            if !p.edited.is_empty() {
                parts.push(format!(
                    "refused: migration(s) {} changed after they were applied (add a new migration instead)",
                    p.edited.join(", ")
                ));
            }
            parts.join("; ")
        }
    };
    let _ = writeln!(out, "  {:<14} {:<38} {what}", d.service, d.database);
}

/// Counts of what changes, for the closing line.
pub fn summary(p: &Preview) -> String {
    if !p.changes() {
        return "No changes.".into();
    }
    let tf = p.terraform.iter().filter(|t| t.pending_changes()).count();
    let hosts = p.nixos.iter().filter(|h| h.state == State::Changes).count();
    let unknown = p.nixos.iter().filter(|h| h.state == State::Unknown).count()
        + p.databases
            .iter()
            .filter(|d| d.state == State::Unknown)
            .count();
    let dbs = p
        .databases
        .iter()
        .filter(|d| d.state == State::Changes)
        .count();
    let mut parts = Vec::new();
    for (n, what) in [
        (tf, "Terraform workspace"),
        (hosts, "host"),
        (dbs, "database"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
        }
    }
    if unknown > 0 {
        parts.push(format!("{unknown} unknown"));
    }
    format!("Changes pending: {}.", parts.join(", "))
}

/// The whole plan. `only_changes`: leave out what stays as it is (the
/// confirmation before `apply`).
pub fn human(p: &Preview, manifest: &str, only_changes: bool) -> String {
    let mut out = String::new();
    let tf: Vec<_> = p
        .terraform
        .iter()
        .filter(|t| {
            !only_changes
                || t.pending_changes()
                || matches!(&t.plan, PhasePlan::Planned { changes } if !changes.drift.is_empty())
        })
        .collect();
    if !only_changes {
        let _ = writeln!(out, "Plan for {manifest}");
    }
    if !tf.is_empty() {
        let _ = writeln!(out, "Terraform:");
        let width = tf
            .iter()
            .map(|t| t.workspace.len())
            .max()
            .unwrap_or(0)
            .max(9);
        for t in tf {
            let _ = writeln!(
                out,
                "  {:<18} {:<width$}  {}",
                t.phase.id(),
                t.workspace,
                t.describe()
            );
        }
    }
    if p.nixos
        .iter()
        .any(|h| !only_changes || h.state != State::Unchanged)
    {
        let _ = writeln!(out, "NixOS hosts:");
        for h in &p.nixos {
            host(&mut out, h, only_changes);
        }
    }
    if p.databases
        .iter()
        .any(|d| !only_changes || d.state != State::Unchanged)
    {
        let _ = writeln!(out, "Databases:");
        for d in p
            .databases
            .iter()
            .filter(|d| !only_changes || d.state != State::Unchanged)
        {
            database(&mut out, d);
        }
    }
    let _ = writeln!(out, "{}", summary(p));
    out
}
