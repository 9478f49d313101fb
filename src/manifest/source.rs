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
        Format::Json => serde_json::from_str::<UniqueKeys>(text)
            .map(|v| v.0)
            .map_err(|e| ("JSON", e.to_string())),
        Format::Toml => toml::from_str::<Value>(text)
            .map(plain_toml_datetimes)
            .map_err(|e| ("TOML", toml_message(text, &e))),
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

/// A JSON value whose objects repeat no key. serde_json alone keeps the last of
/// two equal keys without a word, so a service pasted twice would silently lose
/// its first definition; Nix, TOML and YAML all refuse that.
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor).map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {}",
                    super::syntax::quote(&key)
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// TOML dates and times arrive from the toml crate as a private marker object;
/// every other format gives them as strings, so they become strings here too.
fn plain_toml_datetimes(value: Value) -> Value {
    const MARKER: &str = "$__toml_private_datetime";
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key(MARKER) => map
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or(Value::Null),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, plain_toml_datetimes(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(plain_toml_datetimes).collect()),
        other => other,
    }
}

/// toml's own rendering of an error quotes the offending source line, which
/// may hold a secret (`network.outposts.radius.shared_secret`): name the place instead.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return message.to_string();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("at line {line}, column {column}: {message}")
}

/// Nix quotes the manifest's source around an error (`  4|   key = "…";` and a
/// `   |   ^` marker); those lines may hold a secret, so only Nix's own message
/// and the location it names are kept.
fn without_source_excerpt(stderr: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in stderr.lines() {
        let excerpt = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .starts_with('|');
        let repeated_blank =
            line.trim().is_empty() && kept.last().is_none_or(|l| l.trim().is_empty());
        if !excerpt && !repeated_blank {
            kept.push(line);
        }
    }
    kept.join("\n").trim().to_string()
}

/// Evaluates a `.nix` manifest with the real Nix. A manifest that is a
/// function (`{ ... }: { … }`) is called with no arguments, so its defaults apply.
fn eval_nix(path: &Path) -> Result<Value, SourceError> {
    eval_nix_file(path, None)
}

/// Evaluates a `.nix` file to JSON with the real Nix. A file that is a
/// function is called with the JSON object at `inputs` (or `{ }`).
pub fn eval_nix_file(path: &Path, inputs: Option<&Path>) -> Result<Value, SourceError> {
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
    let inputs = match inputs {
        Some(p) => Some(
            std::fs::canonicalize(p)
                .ok()
                .and_then(|p| p.to_str().map(str::to_string))
                .ok_or_else(|| nix_err(format!("cannot read the inputs file {}", p.display())))?,
        ),
        None => None,
    };
    let args = nix_eval_args(&abs, inputs.as_deref());
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
        let message = without_source_excerpt(&String::from_utf8_lossy(&stderr));
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
pub fn nix_eval_args(abs_path: &str, inputs_path: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--eval",
        "--strict",
        "--json",
        "--argstr",
        "manifestPath",
        abs_path,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(inputs) = inputs_path {
        args.extend([
            "--argstr".to_string(),
            "inputsPath".to_string(),
            inputs.to_string(),
        ]);
    }
    args.push("--expr".into());
    args.push(
        "{ manifestPath, inputsPath ? \"\" }: let m = import (/. + manifestPath); \
         args = if inputsPath == \"\" then { } else builtins.fromJSON (builtins.readFile (/. + inputsPath)); \
         in if builtins.isFunction m then m args else m"
            .into(),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_args_are_exact() {
        let args = nix_eval_args("/srv/stack/manifest.nix", None);
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
    fn syntax_errors_name_the_place_without_quoting_the_source() {
        let (format, message) =
            parse_text("[a]\nsecret = \"hunter2\" x\n", Format::Toml).expect_err("bad TOML");
        assert_eq!(format, "TOML");
        assert!(message.starts_with("at line 2, column 20: "), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        let nix = "error: syntax error, unexpected '}'\n\n       at /m.nix:5:3:\n\n            4|     secret = \"hunter2\"\n            5|   };\n             |   ^\n            6| }\n";
        assert_eq!(
            without_source_excerpt(nix),
            "error: syntax error, unexpected '}'\n\n       at /m.nix:5:3:"
        );
    }

    #[test]
    fn toml_datetimes_become_strings() {
        let v = parse_text(
            "built = 2026-11-26T03:48:00Z\n[x]\nday = 2026-11-26\n",
            Format::Toml,
        )
        .expect("toml");
        assert_eq!(
            v,
            serde_json::json!({"built": "2026-11-26T03:48:00Z", "x": {"day": "2026-11-26"}})
        );
    }

    #[test]
    fn json_objects_may_not_repeat_a_key() {
        let (_, message) = parse_text(r#"{"a": {"b": 1, "b": 2}}"#, Format::Json)
            .expect_err("a repeated key is refused");
        assert!(
            message.starts_with("duplicate key \"b\" at line 1"),
            "{message}"
        );
        let nested = parse_text(r#"{"a": [{"b": 1}, {"b": 2}], "c": null}"#, Format::Json);
        assert_eq!(
            nested.expect("equal keys in different objects are fine"),
            serde_json::json!({"a": [{"b": 1}, {"b": 2}], "c": null})
        );
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
