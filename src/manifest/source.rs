//! Finding the manifest and turning its file, whatever the format, into one
//! JSON value tree.

use super::convert;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Files larger than this are refused before parsing: no real manifest comes close.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// How long Nix may take to evaluate a manifest before it is stopped.
pub const NIX_EVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Names looked for in the current directory, in order of preference; the
/// last is the manifest of a repository laid out with its NixOS files in `nixos/`.
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
    "nixos/service-manifest.nix",
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
    /// Not a regular file, too large, or not readable: the message says which.
    #[error("{0}")]
    File(String),
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
    // A FIFO, a device or a directory is refused before anything reads it.
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_file() && meta.len() > MAX_MANIFEST_BYTES {
            return Err(SourceError::TooLarge {
                path: shown,
                size: meta.len(),
                max: MAX_MANIFEST_BYTES,
            });
        }
    }
    if format == Format::Nix {
        crate::files::check_regular(path, MAX_MANIFEST_BYTES, "manifest")
            .map_err(SourceError::File)?;
        return eval_nix(path);
    }
    let bytes = crate::files::read_regular(path, MAX_MANIFEST_BYTES, "manifest")
        .map_err(SourceError::File)?;

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
    // A byte order mark is not part of the text (some editors write one).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Json => serde_json::from_str::<UniqueKeys>(text)
            .map(|v| v.0)
            .map_err(|e| {
                if e.to_string().contains("recursion limit exceeded") {
                    (
                        "JSON",
                        format!(
                            "nested deeper than {MAX_DEPTH} levels; a manifest needs a handful"
                        ),
                    )
                } else {
                    ("JSON", e.to_string())
                }
            }),
        Format::Toml => {
            let value: toml::Value =
                toml::from_str(text).map_err(|e| ("TOML", toml_message(text, &e)))?;
            convert::toml(value, &mut Vec::new()).map_err(|e| ("TOML", e))
        }
        Format::Yaml => {
            if let Some((tag, line)) = convert::yaml_tag(text) {
                return Err((
                    "YAML",
                    format!("at line {line}: the YAML tag {tag} is not accepted: a manifest holds plain values only"),
                ));
            }
            let mut value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| ("YAML", yaml_message(&e)))?;
            value.apply_merge().map_err(|e| ("YAML", e.to_string()))?;
            convert::yaml(value, &mut Vec::new()).map_err(|e| ("YAML", e))
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
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        convert::number(v).map_err(E::custom)
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

/// The YAML parser's message, saying plainly which bound was hit.
fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    let m = e.to_string();
    let place = e
        .location()
        .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
        .unwrap_or_default();
    if m.contains("recursion limit exceeded") {
        return format!("nested deeper than the YAML parser allows{place}; a manifest needs a handful of levels");
    }
    // Integers past 64 bits arrive as 128-bit ones the tree cannot hold.
    if let (Some(start), true) = (m.find("invalid type: integer `"), m.contains("128")) {
        let digits: String = m[start + "invalid type: integer `".len()..]
            .chars()
            .take_while(|c| *c != '`')
            .collect();
        let at = m[..start].trim_end_matches(": ").trim();
        return format!(
            "{}the integer {digits} is beyond 64 bits{place}: no setting takes one that large",
            if at.is_empty() {
                String::new()
            } else {
                format!("at {at}: ")
            }
        );
    }
    m
}

/// toml's own rendering of an error quotes the offending source line, which
/// may hold a secret (`network.outposts.radius.shared_secret`): name the place instead.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let beyond;
    // Integers past 64 bits arrive as 128-bit ones the tree cannot hold.
    let message = match message.find("invalid type: integer `") {
        Some(start) if message.contains("128") => {
            let digits: String = message[start + "invalid type: integer `".len()..]
                .chars()
                .take_while(|c| *c != '`')
                .collect();
            beyond =
                format!("the integer {digits} is beyond 64 bits: no setting takes one that large");
            beyond.as_str()
        }
        _ => message,
    };
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
    let mut cmd = Command::new(&program);
    cmd.args(&args);
    // Bounded in time and output, and never outliving nixmox (nor what it starts).
    let done = crate::process::run(cmd, None, NIX_EVAL_TIMEOUT).map_err(|e| match e {
        crate::process::Bounded::Spawn(e) if e.kind() == std::io::ErrorKind::NotFound => nix_err(format!(
            "{program} was not found on PATH. Install Nix (Debian: apt-get install nix-bin) or write the manifest as .json, .toml or .yaml"
        )),
        crate::process::Bounded::Spawn(e) => nix_err(format!("cannot run {program}: {e}")),
        crate::process::Bounded::Timeout => nix_err(format!(
            "{program} did not finish within {} s (an endless evaluation?); it was stopped",
            NIX_EVAL_TIMEOUT.as_secs()
        )),
        crate::process::Bounded::TooMuch { stream: "standard output" } => nix_err(format!(
            "the manifest evaluates to more than {} MiB of JSON; no stack needs that much (a value repeated without end?)",
            crate::process::MAX_OUTPUT >> 20
        )),
        crate::process::Bounded::TooMuch { .. } => nix_err(format!(
            "{program} printed more than {} MiB of messages; it was stopped",
            crate::process::MAX_OUTPUT >> 20
        )),
    })?;
    if done.code != Some(0) {
        let message = without_source_excerpt(&done.stderr);
        return Err(nix_err(format!(
            "Nix evaluation failed ({}):\n{}",
            done.code
                .map(|c| format!("exit status {c}"))
                .unwrap_or_else(|| "killed by a signal".into()),
            if message.is_empty() {
                "(Nix printed nothing)".into()
            } else {
                message
            }
        )));
    }
    serde_json::from_str(&done.stdout)
        .map_err(|e| nix_err(json_limit_message(&e, "Nix's JSON of the manifest")))
}

/// The deepest nesting a manifest may have (serde_json's own limit).
pub const MAX_DEPTH: usize = 128;

/// A JSON error, saying plainly when a bound was hit rather than blaming the syntax.
fn json_limit_message(e: &serde_json::Error, what: &str) -> String {
    if e.to_string().contains("recursion limit exceeded") {
        format!("{what} is nested deeper than {MAX_DEPTH} levels; a manifest needs a handful")
    } else {
        format!("{what} is not valid JSON: {e}")
    }
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
    fn a_repository_keeps_its_manifest_in_nixos() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("nixos")).expect("mkdir");
        std::fs::write(dir.path().join("nixos/service-manifest.nix"), "{}").expect("write");
        let (p, origin) = locate(None, None, dir.path()).expect("found");
        assert_eq!(p, dir.path().join("nixos/service-manifest.nix"));
        assert_eq!(origin, Origin::Discovered { others: vec![] });
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
    fn values_are_never_changed_on_the_way() {
        let (format, message) = parse_text(
            "services:\n  wiki:\n    vmid: 99999999999999999999999\n",
            Format::Yaml,
        )
        .expect_err("a 77-bit integer");
        assert_eq!(format, "YAML");
        assert!(
            message.starts_with("at services.wiki.vmid: the integer 99999999999999999999999 is beyond 64 bits (line 3"),
            "{message}"
        );
        let (_, message) =
            parse_text(r#"{"vmid": 123456789012345678901234}"#, Format::Json).expect_err("big");
        assert!(message.contains("beyond 64 bits"), "{message}");
        let (_, message) =
            parse_text("[x]\nvmid = 99999999999999999999\n", Format::Toml).expect_err("big");
        assert_eq!(
            message,
            "at line 2, column 8: the integer 99999999999999999999 is beyond 64 bits: no setting takes one that large"
        );
        let (_, message) = parse_text("a: .inf\n", Format::Yaml).expect_err("inf");
        assert!(message.contains("at a: a value is infinity"), "{message}");
        let (_, message) = parse_text("a: !!binary aGk=\n", Format::Yaml).expect_err("tag");
        assert!(message.contains("YAML tag"), "{message}");
        // A byte order mark is not part of the document, in any format.
        for (text, format) in [
            ("\u{feff}{\"a\": 1}", Format::Json),
            ("\u{feff}a: 1\n", Format::Yaml),
            ("\u{feff}a = 1\n", Format::Toml),
        ] {
            assert_eq!(
                parse_text(text, format).expect("a BOM is accepted"),
                serde_json::json!({"a": 1})
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let (_, message) = parse_text(&deep, Format::Json).expect_err("deep");
        assert!(
            message.starts_with("nested deeper than 128 levels"),
            "{message}"
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
