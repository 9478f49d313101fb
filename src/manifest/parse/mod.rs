//! Reading the raw manifest tree (already turned into JSON values, whatever
//! the file format) into the normalised [`Manifest`], reporting every shape
//! problem with its path.

mod build_host;
mod interface;
mod network;
mod serve;
mod service;

use super::decode::Obj;
use super::diag::{Diagnostics, Path};
use super::model::{
    BuildHost, DeploymentPhases, Manifest, NixosSettings, Options, SecretsSettings, ServiceKind,
    SshSettings, TerraformRetry, TerraformSettings, VerifySettings, VerifyUser,
};
use serde_json::Value;
use std::path::Path as FsPath;

pub use interface::terraform_phase;

const TOP_LEVEL_KEYS: &[&str] = &[
    "network",
    "core_services",
    "services",
    "deployment_phases",
    "health_check_timeout",
    "retry_attempts",
    "retry_delay",
    "enable_rollback",
    "enable_health_monitoring",
    "enable_dependency_graphing",
    "enable_deployment_logging",
    "terraform",
    "secrets",
    "nixos",
    "verify",
    "serve",
];

/// Reads the whole manifest. Returns a model even when there were errors
/// (with best-effort placeholders) so cross-field rules can still run and
/// report everything at once; callers must check `diags` before using it.
pub fn manifest(diags: &mut Diagnostics, source: &FsPath, root: &Value) -> Option<Manifest> {
    let top = Obj::open(diags, Path::root(), root, TOP_LEVEL_KEYS)?;
    let options = options(diags, &top);
    let network = match top.raw("network") {
        Some(v) => network::network(diags, top.at("network"), v),
        None => {
            diags.error(&top.at("network"), "missing required network block");
            None
        }
    }
    .unwrap_or_else(network::placeholder);

    let mut services = Vec::new();
    for (key, kind) in [
        ("core_services", ServiceKind::Core),
        ("services", ServiceKind::Application),
    ] {
        let Some(value) = top.raw(key) else {
            if kind == ServiceKind::Core {
                diags.error_hint(
                    &top.at(key),
                    "missing core_services block",
                    Some("every stack needs dns, postgresql, caddy and authentik".into()),
                );
            }
            continue;
        };
        let Value::Object(map) = value else {
            diags.error(
                &top.at(key),
                format!(
                    "expected an attribute set of services, found {}",
                    super::decode::kind_of(value)
                ),
            );
            continue;
        };
        for (name, body) in map {
            if let Some(s) =
                service::service(diags, &top.at(key).key(name), name, kind, body, &options)
            {
                services.push(s);
            }
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));

    let deployment_phases = top
        .raw("deployment_phases")
        .and_then(|v| deployment_phases(diags, top.at("deployment_phases"), v));
    let terraform = top
        .raw("terraform")
        .and_then(|v| terraform_settings(diags, top.at("terraform"), v))
        .unwrap_or_else(default_terraform);

    let secrets = top
        .raw("secrets")
        .and_then(|v| secrets(diags, top.at("secrets"), v))
        .unwrap_or_default();

    let nixos = top
        .raw("nixos")
        .and_then(|v| nixos(diags, top.at("nixos"), v))
        .unwrap_or_default();

    let verify = top
        .raw("verify")
        .and_then(|v| verify(diags, top.at("verify"), v))
        .unwrap_or_default();

    let serve = top
        .raw("serve")
        .and_then(|v| serve::serve(diags, top.at("serve"), v))
        .unwrap_or_default();

    Some(Manifest {
        serve,
        verify,
        nixos,
        source: source.to_path_buf(),
        network,
        services,
        options,
        deployment_phases,
        terraform,
        secrets,
    })
}

fn options(diags: &mut Diagnostics, top: &Obj) -> Options {
    let d = Options::default();
    let options = Options {
        health_check_timeout: top.or(diags, "health_check_timeout", d.health_check_timeout),
        retry_attempts: top.or(diags, "retry_attempts", d.retry_attempts),
        retry_delay: top.or(diags, "retry_delay", d.retry_delay),
        enable_rollback: top.or(diags, "enable_rollback", d.enable_rollback),
        enable_health_monitoring: top.or(
            diags,
            "enable_health_monitoring",
            d.enable_health_monitoring,
        ),
        enable_dependency_graphing: top.or(
            diags,
            "enable_dependency_graphing",
            d.enable_dependency_graphing,
        ),
        enable_deployment_logging: top.or(
            diags,
            "enable_deployment_logging",
            d.enable_deployment_logging,
        ),
    };
    interface::check_timing(
        diags,
        &top.at("health_check_timeout"),
        options.health_check_timeout,
        true,
    );
    interface::check_timing(diags, &top.at("retry_delay"), options.retry_delay, false);
    if options.retry_attempts > 1000 {
        diags.error(
            &top.at("retry_attempts"),
            "at most 1000 retry attempts are allowed",
        );
    }
    options
}

fn deployment_phases(
    diags: &mut Diagnostics,
    path: Path,
    value: &Value,
) -> Option<DeploymentPhases> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &["tf_infra", "nix_core", "tf_auth_core", "services"],
    )?;
    Some(DeploymentPhases {
        tf_infra: obj.or(diags, "tf_infra", Vec::new()),
        nix_core: obj.or(diags, "nix_core", Vec::new()),
        tf_auth_core: obj.or(diags, "tf_auth_core", Vec::new()),
        services: obj.or(diags, "services", Vec::new()),
    })
}

fn nixos(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<NixosSettings> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &[
            "flake",
            "nix_config",
            "build_host",
            "activation_timeout",
            "confirm_timeout",
            "ssh",
            "age_key_file",
            "age_key",
            "age_key_target",
            "psql",
        ],
    )?;
    let d = NixosSettings::default();
    let mut n = NixosSettings {
        flake: obj.opt(diags, "flake"),
        // NIX_CONFIG lines: line breaks are its syntax.
        nix_config: obj
            .opt::<crate::manifest::decode::Text>(diags, "nix_config")
            .map(|t| t.0),
        build_host: build_host::build_host(diags, &obj).unwrap_or(BuildHost::Local),
        activation_timeout: obj.or(diags, "activation_timeout", d.activation_timeout),
        confirm_timeout: obj.or(diags, "confirm_timeout", d.confirm_timeout),
        ssh: d.ssh,
        age_key_file: obj.opt(diags, "age_key_file"),
        age_key_sops: obj.opt(diags, "age_key"),
        age_key_target: obj.or(diags, "age_key_target", d.age_key_target),
        psql: obj.or(diags, "psql", d.psql),
    };
    interface::check_timing(
        diags,
        &obj.at("activation_timeout"),
        n.activation_timeout,
        true,
    );
    interface::check_timing(diags, &obj.at("confirm_timeout"), n.confirm_timeout, false);
    if let Some(Err(e)) = n.flake.as_deref().map(super::syntax::argument) {
        diags.error(&obj.at("flake"), e);
    }
    if let Some(Err(e)) = n.age_key_file.as_deref().map(super::syntax::argument) {
        diags.error(&obj.at("age_key_file"), e);
    }
    if n.age_key_file.is_some() && obj.has("age_key") {
        diags.error(
            &obj.at("age_key"),
            "both age_key and age_key_file name the hosts' age key: keep one",
        );
    }
    if !n.age_key_target.starts_with('/') {
        diags.error(
            &obj.at("age_key_target"),
            "must be an absolute path on the hosts",
        );
    }
    if let Some(v) = obj.raw("ssh") {
        if let Some(ssh) = Obj::open(
            diags,
            obj.at("ssh"),
            v,
            &[
                "user",
                "port",
                "key",
                "known_hosts",
                "known_hosts_file",
                "connect_timeout",
                "persist",
            ],
        ) {
            let ds = n.ssh.clone();
            n.ssh = SshSettings {
                user: ssh.or(diags, "user", ds.user),
                port: ssh.or(diags, "port", ds.port),
                key: ssh.opt(diags, "key"),
                known_hosts: ssh.or(diags, "known_hosts", ds.known_hosts),
                known_hosts_file: ssh.opt(diags, "known_hosts_file"),
                connect_timeout: ssh.or(diags, "connect_timeout", ds.connect_timeout),
                persist: ssh.or(diags, "persist", ds.persist),
            };
            if n.ssh.persist > crate::nixos::ssh_control::MAX_PERSIST {
                diags.error(
                    &ssh.at("persist"),
                    format!(
                        "{} s is longer than an SSH connection may be kept ({} s); \
                         0 ends each run's connections with it",
                        n.ssh.persist,
                        crate::nixos::ssh_control::MAX_PERSIST
                    ),
                );
            }
            if let Err(e) = super::syntax::user_name(&n.ssh.user) {
                diags.error(&ssh.at("user"), e);
            }
            for (key, value) in [
                ("key", &n.ssh.key),
                ("known_hosts_file", &n.ssh.known_hosts_file),
            ] {
                if let Some(Err(e)) = value.as_deref().map(super::syntax::ssh_file) {
                    diags.error(&ssh.at(key), e);
                }
            }
            if !matches!(n.ssh.known_hosts.as_str(), "accept-new" | "strict" | "off") {
                diags.error(&ssh.at("known_hosts"), format!("unknown known-hosts policy {}: expected \"accept-new\", \"strict\" or \"off\"", super::syntax::quote(&n.ssh.known_hosts)));
            }
            interface::check_timing(
                diags,
                &ssh.at("connect_timeout"),
                n.ssh.connect_timeout,
                true,
            );
        }
    }
    Some(n)
}

fn verify(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<VerifySettings> {
    let obj = Obj::open(diags, path, value, &["ca_file", "tls_min_days", "user"])?;
    let d = VerifySettings::default();
    Some(VerifySettings {
        ca_file: obj.opt(diags, "ca_file"),
        tls_min_days: obj.or(diags, "tls_min_days", d.tls_min_days),
        user: obj
            .raw("user")
            .and_then(|v| verify_user(diags, obj.at("user"), v)),
    })
}

pub(super) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `verify.user`: who `verify` logs in as, and where its password comes from
/// (never the manifest itself).
fn verify_user(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<VerifyUser> {
    // `password` is known only to be refused with a reason rather than a did-you-mean.
    let obj = Obj::open(
        diags,
        path,
        value,
        &[
            "username",
            "password_env",
            "password_file",
            "password_output",
            "groups",
            "password",
        ],
    )?;
    // `password` names the password's place in a SOPS file; the password
    // itself is refused with a reason rather than taken.
    let password_sops = match obj.raw("password") {
        Some(v) if crate::secrets::SopsRef::is_ref(v) => obj.opt(diags, "password"),
        Some(_) => {
            diags.error_hint(
                &obj.at("password"),
                "the verification password never goes in the manifest",
                Some(format!(
                    "name its place in a SOPS file (password = {{ sops = \"section.key\"; }}), an environment variable in password_env (default {}), a file in password_file or a Terraform output in password_output",
                    VerifyUser::DEFAULT_PASSWORD_ENV
                )),
            );
            None
        }
        None => None,
    };
    let username: String = obj.req(diags, "username", "verification user name")?;
    if username.trim().is_empty() {
        diags.error(&obj.at("username"), "empty user name");
    }
    let password_env = obj.or(
        diags,
        "password_env",
        VerifyUser::DEFAULT_PASSWORD_ENV.to_string(),
    );
    if !is_env_name(&password_env) {
        diags.error(
            &obj.at("password_env"),
            format!(
                "{} is not an environment variable name (letters, digits and _, not starting with a digit)",
                super::syntax::quote(&password_env)
            ),
        );
    }
    let password_output: Option<String> = obj.opt(diags, "password_output");
    if password_output
        .as_deref()
        .is_some_and(|o| o.trim().is_empty())
    {
        diags.error(&obj.at("password_output"), "empty output name");
    }
    let password_file: Option<String> = obj.opt(diags, "password_file");
    if let Some(f) = &password_file {
        if f.trim().is_empty() {
            diags.error(&obj.at("password_file"), "empty file name");
        } else if f.chars().any(char::is_control) {
            diags.error(
                &obj.at("password_file"),
                "a file name with control characters (a newline, a tab, …)",
            );
        }
    }
    let groups: Vec<String> = obj.or(diags, "groups", Vec::new());
    for (i, g) in groups.iter().enumerate() {
        if g.trim().is_empty() {
            diags.error(&obj.at("groups").index(i), "empty group name");
        }
    }
    Some(VerifyUser {
        username,
        password_env,
        password_file,
        password_output,
        password_sops,
        groups,
    })
}

fn secrets(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<SecretsSettings> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &["sops_file", "age_key_file", "write_outputs"],
    )?;
    let age_key_file: Option<String> = obj.opt(diags, "age_key_file");
    if let Some(Err(e)) = age_key_file.as_deref().map(super::syntax::argument) {
        diags.error(&obj.at("age_key_file"), e);
    }
    let write_outputs = obj.or(diags, "write_outputs", true);
    let sops_file: Option<String> = obj.opt(diags, "sops_file");
    if let Some(Err(e)) = sops_file
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(super::syntax::argument)
    {
        diags.error(&obj.at("sops_file"), e);
    }
    if sops_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
        diags.error(&obj.at("sops_file"), "empty file name");
    }
    Some(SecretsSettings {
        sops_file,
        age_key_file,
        write_outputs,
    })
}

fn default_terraform() -> TerraformSettings {
    TerraformSettings {
        binary: "terraform".into(),
        root: None,
        infra: Default::default(),
        auth_core: Default::default(),
        lock_timeout: 60,
        timeout: 3600,
        retry: Default::default(),
    }
}

fn terraform_settings(
    diags: &mut Diagnostics,
    path: Path,
    value: &Value,
) -> Option<TerraformSettings> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &[
            "binary",
            "root",
            "infra",
            "auth_core",
            "lock_timeout",
            "timeout",
            "retry",
        ],
    )?;
    let mut settings = default_terraform();
    if let Some(binary) = obj.opt::<String>(diags, "binary") {
        if binary.trim().is_empty() {
            diags.error(&obj.at("binary"), "the Terraform binary name is empty");
        } else if let Err(e) = super::syntax::argument(&binary) {
            diags.error(&obj.at("binary"), e);
        } else {
            settings.binary = binary;
        }
    }
    if let Some(v) = obj.raw("infra") {
        settings.infra = terraform_phase(diags, obj.at("infra"), v, false).unwrap_or_default();
    }
    if let Some(v) = obj.raw("auth_core") {
        settings.auth_core =
            terraform_phase(diags, obj.at("auth_core"), v, false).unwrap_or_default();
    }
    settings.lock_timeout = obj.or(diags, "lock_timeout", settings.lock_timeout);
    interface::check_timing(diags, &obj.at("lock_timeout"), settings.lock_timeout, false);
    settings.timeout = obj.or(diags, "timeout", settings.timeout);
    interface::check_timing(diags, &obj.at("timeout"), settings.timeout, true);
    settings.root = obj.opt(diags, "root");
    if let Some(Err(e)) = settings.root.as_deref().map(super::syntax::argument) {
        diags.error(&obj.at("root"), e);
    }
    if let Some(v) = obj.raw("retry") {
        if let Some(r) = Obj::open(
            diags,
            obj.at("retry"),
            v,
            &["attempts", "backoff_seconds", "patterns"],
        ) {
            let d = TerraformRetry::default();
            settings.retry = TerraformRetry {
                attempts: r.or(diags, "attempts", d.attempts),
                backoff_seconds: r.or(diags, "backoff_seconds", d.backoff_seconds),
                patterns: r.opt(diags, "patterns"),
            };
            if !(1..=20).contains(&settings.retry.attempts) {
                diags.error(
                    &r.at("attempts"),
                    "attempts must be from 1 (no retry) to 20",
                );
            }
            interface::check_timing(
                diags,
                &r.at("backoff_seconds"),
                settings.retry.backoff_seconds,
                false,
            );
            for (i, p) in settings.retry.patterns.iter().flatten().enumerate() {
                if let Err(e) = regex::Regex::new(p) {
                    diags.error(
                        &r.at("patterns").index(i),
                        format!("not a valid regular expression: {e}"),
                    );
                }
            }
        }
    }
    Some(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> (Option<VerifySettings>, Vec<String>) {
        let mut d = Diagnostics::default();
        let s = verify(&mut d, Path::root().key("verify"), &v);
        let (errors, _) = d.into_sorted();
        (s, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn verify_user_is_read_strictly() {
        let (s, errors) = read(json!({"user": {"username": "labuser", "groups": ["lab-admins"]}}));
        assert!(errors.is_empty(), "{errors:?}");
        let u = s.and_then(|s| s.user).expect("user");
        assert_eq!(u.password_env, "NIXMOX_VERIFY_PASSWORD");
        assert_eq!(u.groups, ["lab-admins"]);
        assert_eq!(u.password_output, None);

        let (_, errors) = read(json!({"user": {
            "username": "labuser", "password": "hunter2", "password_evn": "X",
            "password_env": "1BAD-NAME", "groups": [""]}}));
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains(
                "verify.user.password: the verification password never goes in the manifest"
            )),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e
                .contains("verify.user.password_evn: unknown key (did you mean 'password_env'?)")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("verify.user.password_env")
                && e.contains("not an environment variable name")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("verify.user.groups[0]: empty group name")),
            "{errors:?}"
        );
        assert!(!errors.iter().any(|e| e.contains("hunter2")), "{errors:?}");

        let (_, errors) = read(json!({"user": {"groups": []}}));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("verify.user.username: missing required")),
            "{errors:?}"
        );
        let (_, errors) = read(json!({"usr": {}}));
        assert!(
            errors.iter().any(|e| e.contains("did you mean 'user'")),
            "{errors:?}"
        );
    }
}
