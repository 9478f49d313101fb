//! Finding the manifest and turning its file, whatever the format, into one
//! JSON value tree.

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Files larger than this are refused before parsing: no real manifest comes close.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// How long Nix may take to evaluate a manifest before it is stopped.
pub const NIX_EVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Names looked for in the current directory, in order of preference.
pub const DISCOVERY_NAMES: &[&str] = &[
    "nixmox.nix",
    "nixmox.json",
    "nixmox.toml",
    "nixmox.yaml",
    "nixmox.yml",
    "manifest.nix",
    "manifest.json",
    "manifest.toml",
    "manifest.yaml",
    "manifest.yml",
    "service-manifest.nix",
];

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no manifest given and none found in {dir}: pass -m/--manifest or set NIXMOX_MANIFEST (looked for {names})")]
    NotFound { dir: String, names: String },
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("manifest {path} is {size} bytes; at most {max} are accepted")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error(
        "manifest {path} has an unknown format {ext:?}: expected .nix, .json, .toml, .yaml or .yml"
    )]
    UnknownFormat { path: String, ext: String },
    #[error("manifest {path} is not valid {format}: {message}")]
    Syntax {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error("cannot evaluate {path}: {message}")]
    Nix { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Nix,
    Json,
    Toml,
    Yaml,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, SourceError> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext.to_ascii_lowercase().as_str() {
            "nix" => Ok(Format::Nix),
            "json" => Ok(Format::Json),
            "toml" => Ok(Format::Toml),
            "yaml" | "yml" => Ok(Format::Yaml),
            _ => Err(SourceError::UnknownFormat {
                path: path.display().to_string(),
                ext: ext.to_string(),
            }),
        }
    }
}

/// Where the manifest path came from, so the user is told when it was guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    Discovered { others: Vec<PathBuf> },
}

/// `-m`, else `NIXMOX_MANIFEST`, else the first known name in `dir`.
pub fn locate(
    flag: Option<&Path>,
    env: Option<&str>,
    dir: &Path,
) -> Result<(PathBuf, Origin), SourceError> {
    if let Some(p) = flag {
        return Ok((p.to_path_buf(), Origin::Flag));
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return Ok((PathBuf::from(e), Origin::Env));
    }
    let found: Vec<PathBuf> = DISCOVERY_NAMES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    match found.split_first() {
        Some((first, rest)) => Ok((
            first.clone(),
            Origin::Discovered {
                others: rest.to_vec(),
            },
        )),
        None => Err(SourceError::NotFound {
            dir: dir.display().to_string(),
            names: DISCOVERY_NAMES.join(", "),
        }),
    }
}

/// Reads and parses the file into a JSON tree.
pub fn read(path: &Path) -> Result<Value, SourceError> {
    let shown = path.display().to_string();
    let format = Format::of(path)?;
    let meta = std::fs::metadata(path).map_err(|source| SourceError::Read {
        path: shown.clone(),
        source,
    })?;
    if meta.is_dir() {
        return Err(SourceError::Read {
            path: shown,
            source: std::io::Error::other("it is a directory"),
        });
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(SourceError::TooLarge {
            path: shown,
            size: meta.len(),
            max: MAX_MANIFEST_BYTES,
        });
    }
    if format == Format::Nix {
        return eval_nix(path);
    }
    let bytes = std::fs::read(path).map_err(|source| SourceError::Read {
        path: shown.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| SourceError::Syntax {
        path: shown.clone(),
        format: "UTF-8 text",
        message: format!("invalid byte at offset {}", e.utf8_error().valid_up_to()),
    })?;
    parse_text(&text, format).map_err(|(format, message)| SourceError::Syntax {
        path: shown,
        format,
        message,
    })
}

/// Parses JSON, TOML or YAML text; the error carries the format's name and the parser's message.
pub fn parse_text(text: &str, format: Format) -> Result<Value, (&'static str, String)> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| ("JSON", e.to_string())),
        Format::Toml => toml::from_str::<Value>(text)
            .map_err(|e| ("TOML", e.to_string().trim_end().to_string())),
        Format::Yaml => {
            let mut value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| ("YAML", e.to_string()))?;
            value.apply_merge().map_err(|e| ("YAML", e.to_string()))?;
            serde_json::to_value(&value)
                .map_err(|e| ("YAML", format!("{e} (keys must be strings)")))
        }
        Format::Nix => Err((
            "Nix",
            "Nix text is evaluated by Nix, not parsed here".into(),
        )),
    }
}

/// Evaluates a `.nix` manifest with the real Nix. A manifest that is a
/// function (`{ ... }: { … }`) is called with no arguments, so its defaults apply.
fn eval_nix(path: &Path) -> Result<Value, SourceError> {
    let shown = path.display().to_string();
    let abs = std::fs::canonicalize(path).map_err(|source| SourceError::Read {
        path: shown.clone(),
        source,
    })?;
    let nix_err = |message: String| SourceError::Nix {
        path: shown.clone(),
        message,
    };
    let abs = abs
        .to_str()
        .ok_or_else(|| nix_err("its path is not valid UTF-8".into()))?
        .to_string();
    let program =
        std::env::var("NIXMOX_NIX_INSTANTIATE").unwrap_or_else(|_| "nix-instantiate".into());
    let args = nix_eval_args(&abs);
    let mut child = Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                nix_err(format!(
                    "{program} was not found on PATH. Install Nix (Debian: apt-get install nix-bin) or write the manifest as .json, .toml or .yaml"
                ))
            } else {
                nix_err(format!("cannot run {program}: {e}"))
            }
        })?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.take(MAX_MANIFEST_BYTES * 4).read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.take(1024 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > NIX_EVAL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(nix_err(format!(
                    "{program} did not finish within {} s (an endless evaluation?); it was stopped",
                    NIX_EVAL_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(nix_err(format!("waiting for {program} failed: {e}"))),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let message = String::from_utf8_lossy(&stderr).trim().to_string();
        return Err(nix_err(format!(
            "Nix evaluation failed ({status}):\n{}",
            if message.is_empty() {
                "(Nix printed nothing)".into()
            } else {
                message
            }
        )));
    }
    serde_json::from_slice(&stdout)
        .map_err(|e| nix_err(format!("Nix printed output that is not JSON: {e}")))
}

/// The exact argument vector for evaluating a manifest; the path travels as
/// an argument, never spliced into Nix code.
pub fn nix_eval_args(abs_path: &str) -> Vec<String> {
    [
        "--eval",
        "--strict",
        "--json",
        "--argstr",
        "manifestPath",
        abs_path,
        "--expr",
        "{ manifestPath }: let m = import (/. + manifestPath); in if builtins.isFunction m then m { } else m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_args_are_exact() {
        let args = nix_eval_args("/srv/stack/manifest.nix");
        assert_eq!(
            args[..6],
            [
                "--eval",
                "--strict",
                "--json",
                "--argstr",
                "manifestPath",
                "/srv/stack/manifest.nix"
            ]
        );
        assert_eq!(args.len(), 8);
    }

    #[test]
    fn locate_prefers_flag_then_env_then_discovery() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            locate(None, None, dir.path()),
            Err(SourceError::NotFound { .. })
        ));
        std::fs::write(dir.path().join("manifest.json"), "{}").expect("write");
        std::fs::write(dir.path().join("nixmox.toml"), "").expect("write");
        let (p, origin) = locate(None, None, dir.path()).expect("found");
        assert_eq!(p, dir.path().join("nixmox.toml"));
        assert_eq!(
            origin,
            Origin::Discovered {
                others: vec![dir.path().join("manifest.json")]
            }
        );
        let (p, origin) = locate(None, Some("x.nix"), dir.path()).expect("env");
        assert_eq!((p, origin), (PathBuf::from("x.nix"), Origin::Env));
        let (p, origin) =
            locate(Some(Path::new("y.yaml")), Some("x.nix"), dir.path()).expect("flag");
        assert_eq!((p, origin), (PathBuf::from("y.yaml"), Origin::Flag));
    }

    #[test]
    fn formats_parse_to_the_same_tree() {
        let json = parse_text(r#"{"a": {"b": [1, 2]}, "c": "d"}"#, Format::Json).expect("json");
        let toml = parse_text("c = \"d\"\n[a]\nb = [1, 2]\n", Format::Toml).expect("toml");
        let yaml = parse_text("a:\n  b: [1, 2]\nc: d\n", Format::Yaml).expect("yaml");
        assert_eq!(json, toml);
        assert_eq!(json, yaml);
    }
}
