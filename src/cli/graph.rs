//! `nixmox graph`: the dependency graph as DOT, Mermaid, JSON or SVG.

use super::common::{self, CliError};
use super::{Cli, GraphArgs, GraphFormat};
use crate::graph::{self, render};
use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

pub fn run(cli: &Cli, args: &GraphArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let selected = graph::select(m, &args.on.only)?;
    let include_disabled = args.include_disabled && args.on.only.is_empty();
    let bytes: Vec<u8> = match args.format {
        GraphFormat::Dot => render::dot(m, &selected, include_disabled).into_bytes(),
        GraphFormat::Mermaid => render::mermaid(m, &selected, include_disabled).into_bytes(),
        GraphFormat::Json => {
            common::to_json(&render::json(m, &selected, include_disabled))?.into_bytes()
        }
        GraphFormat::Svg => svg(&render::dot(m, &selected, include_disabled))?,
    };
    match &args.output {
        Some(path) => std::fs::write(path, &bytes)
            .map_err(|e| CliError::Message(format!("cannot write {}: {e}", path.display())))?,
        None => common::emit(&String::from_utf8_lossy(&bytes))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Renders DOT through Graphviz.
fn svg(dot: &str) -> Result<Vec<u8>, CliError> {
    let program = std::env::var("NIXMOX_DOT").unwrap_or_else(|_| "dot".into());
    let mut child = Command::new(&program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CliError::Message(if e.kind() == std::io::ErrorKind::NotFound {
                format!("graph --format svg needs Graphviz's `{program}`, which is not on PATH: install graphviz, or use --format dot and render it elsewhere")
            } else {
                format!("cannot run {program}: {e}")
            })
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot.as_bytes())
            .map_err(|e| CliError::Message(format!("cannot feed {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CliError::Message(format!("{program} failed: {e}")))?;
    if !out.status.success() {
        return Err(CliError::Message(format!(
            "{program} -Tsvg failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}
