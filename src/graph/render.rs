//! Drawing the graph: DOT (Graphviz), Mermaid and JSON. Arrows point from a
//! dependency to its dependent, the direction deployment flows.

use crate::manifest::{Manifest, Service, ServiceKind};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The services drawn: `selected` plus, when `include_disabled`, the disabled ones.
fn drawn<'m>(
    m: &'m Manifest,
    selected: &BTreeSet<String>,
    include_disabled: bool,
) -> Vec<&'m Service> {
    m.services
        .iter()
        .filter(|s| selected.contains(&s.name) || (include_disabled && !s.enabled))
        .collect()
}

fn edges<'m>(services: &[&'m Service]) -> Vec<(&'m str, &'m str)> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut out = Vec::new();
    for s in services {
        let mut deps: Vec<&str> = s
            .depends_on
            .iter()
            .map(String::as_str)
            .filter(|d| names.contains(d))
            .collect();
        deps.sort_unstable();
        deps.dedup();
        out.extend(deps.into_iter().map(|d| (d, s.name.as_str())));
    }
    out
}

fn label(s: &Service) -> String {
    match s.host.ip {
        Some(ip) => format!("{}\n{}", s.name, ip),
        None => s.name.clone(),
    }
}

fn dot_quote(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

pub fn dot(m: &Manifest, selected: &BTreeSet<String>, include_disabled: bool) -> String {
    let services = drawn(m, selected, include_disabled);
    let mut out = String::from(
        "digraph nixmox {\n  rankdir=LR;\n  graph [fontname=\"Helvetica\"];\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n",
    );
    let node = |out: &mut String, s: &Service, indent: &str| {
        let style = if s.enabled {
            ""
        } else {
            ", style=\"rounded,dashed\", fontcolor=gray50, color=gray50"
        };
        let _ = writeln!(
            out,
            "{indent}{} [label={}{style}];",
            dot_quote(&s.name),
            dot_quote(&label(s))
        );
    };
    out.push_str("  subgraph cluster_core {\n    label=\"core\";\n    style=dashed;\n");
    for s in services.iter().filter(|s| s.kind == ServiceKind::Core) {
        node(&mut out, s, "    ");
    }
    out.push_str("  }\n");
    for s in services
        .iter()
        .filter(|s| s.kind == ServiceKind::Application)
    {
        node(&mut out, s, "  ");
    }
    for (from, to) in edges(&services) {
        let _ = writeln!(out, "  {} -> {};", dot_quote(from), dot_quote(to));
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(m: &Manifest, selected: &BTreeSet<String>, include_disabled: bool) -> String {
    let services = drawn(m, selected, include_disabled);
    // Mermaid ids are positional so that no service name can clash with its syntax.
    let id = |name: &str| {
        services
            .iter()
            .position(|s| s.name == name)
            .map(|p| format!("s{p}"))
            .unwrap_or_default()
    };
    let node = |s: &Service| {
        let text = label(s).replace('\n', "<br/>").replace('"', "#quot;");
        format!("{}[\"{}\"]", id(&s.name), text)
    };
    let mut out = String::from("flowchart LR\n  subgraph core\n");
    for s in services.iter().filter(|s| s.kind == ServiceKind::Core) {
        let _ = writeln!(out, "    {}", node(s));
    }
    out.push_str("  end\n");
    for s in services
        .iter()
        .filter(|s| s.kind == ServiceKind::Application)
    {
        let _ = writeln!(out, "  {}", node(s));
    }
    for (from, to) in edges(&services) {
        let _ = writeln!(out, "  {} --> {}", id(from), id(to));
    }
    let disabled: Vec<String> = services
        .iter()
        .filter(|s| !s.enabled)
        .map(|s| id(&s.name))
        .collect();
    if !disabled.is_empty() {
        out.push_str("  classDef disabled stroke-dasharray: 5 5,color:#888\n");
        let _ = writeln!(out, "  class {} disabled", disabled.join(","));
    }
    out
}

#[derive(Serialize)]
pub struct GraphJson<'m> {
    pub nodes: Vec<NodeJson<'m>>,
    pub edges: Vec<EdgeJson<'m>>,
}

#[derive(Serialize)]
pub struct NodeJson<'m> {
    pub name: &'m str,
    pub kind: ServiceKind,
    pub enabled: bool,
    pub hostname: Option<&'m str>,
    pub ip: Option<String>,
}

/// `service` depends on `depends_on`.
#[derive(Serialize)]
pub struct EdgeJson<'m> {
    pub service: &'m str,
    pub depends_on: &'m str,
}

pub fn json<'m>(
    m: &'m Manifest,
    selected: &BTreeSet<String>,
    include_disabled: bool,
) -> GraphJson<'m> {
    let services = drawn(m, selected, include_disabled);
    GraphJson {
        nodes: services
            .iter()
            .map(|s| NodeJson {
                name: &s.name,
                kind: s.kind,
                enabled: s.enabled,
                hostname: s.host.hostname.as_deref(),
                ip: s.host.ip.map(|ip| ip.to_string()),
            })
            .collect(),
        edges: edges(&services)
            .into_iter()
            .map(|(from, to)| EdgeJson {
                service: to,
                depends_on: from,
            })
            .collect(),
    }
}
