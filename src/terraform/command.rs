//! Terraform command lines, built by pure functions so each is unit-tested as
//! an exact argument vector. Values never pass through a shell.

/// How a plan is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanMode {
    Normal,
    /// Only reconcile state with the real objects: drift detection.
    RefreshOnly,
    Destroy,
}

/// Settings every locking command shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locking {
    pub lock_timeout_secs: u64,
}

impl Locking {
    fn flag(self) -> String {
        format!("-lock-timeout={}s", self.lock_timeout_secs)
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

pub fn init(lock: Locking) -> Vec<String> {
    let mut a = owned(&["init", "-input=false", "-no-color"]);
    a.push(lock.flag());
    a
}

/// `init` choosing provider versions anew, as a first `init` does: for a
/// lock file nixmox keeps, never for the user's own.
pub fn init_upgrade(lock: Locking) -> Vec<String> {
    let mut a = init(lock);
    a.push("-upgrade".into());
    a
}

/// True when `init` refused a lock file because the configuration now asks
/// for a provider version it does not lock (Terraform wraps the message at
/// any word, so whitespace is not compared).
pub fn lock_refused(output: &str) -> bool {
    let flat: String = output.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.contains("does not match configured version constraint")
}

pub fn workspace_select(workspace: &str) -> Vec<String> {
    owned(&["workspace", "select", "-or-create=true", workspace])
}

/// `plan` writing a saved plan to `out`; variables come as an HCL var-file on
/// standard input, so their values (some secret) never touch the disk.
pub fn plan(out: &str, mode: PlanMode, targets: &[String], lock: Locking) -> Vec<String> {
    let mut a = owned(&[
        "plan",
        "-input=false",
        "-no-color",
        "-json",
        "-detailed-exitcode",
    ]);
    a.push(lock.flag());
    match mode {
        PlanMode::Normal => {}
        PlanMode::RefreshOnly => a.push("-refresh-only".into()),
        PlanMode::Destroy => a.push("-destroy".into()),
    }
    a.push(format!("-out={out}"));
    a.push("-var-file=/dev/stdin".into());
    a.extend(targets.iter().map(|t| format!("-target={t}")));
    a
}

pub fn show_json(plan_file: &str) -> Vec<String> {
    owned(&["show", "-json", "-no-color", plan_file])
}

pub fn apply(plan_file: &str, lock: Locking) -> Vec<String> {
    let mut a = owned(&["apply", "-input=false", "-no-color", "-json"]);
    a.push(lock.flag());
    a.push(plan_file.into());
    a
}

pub fn output_json() -> Vec<String> {
    owned(&["output", "-json", "-no-color"])
}

/// The environment every Terraform command runs with: no update check, no
/// prompts, output meant for a program.
pub fn environment() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CHECKPOINT_DISABLE", "1"),
        ("TF_IN_AUTOMATION", "1"),
        ("TF_INPUT", "0"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: Locking = Locking {
        lock_timeout_secs: 30,
    };

    #[test]
    fn exact_argument_vectors() {
        assert_eq!(
            init(LOCK),
            ["init", "-input=false", "-no-color", "-lock-timeout=30s"]
        );
        assert_eq!(
            workspace_select("wiki-infra"),
            ["workspace", "select", "-or-create=true", "wiki-infra"]
        );
        assert_eq!(
            plan(
                "/dev/shm/p",
                PlanMode::Normal,
                &["a.b".into(), "c.d".into()],
                LOCK
            ),
            [
                "plan",
                "-input=false",
                "-no-color",
                "-json",
                "-detailed-exitcode",
                "-lock-timeout=30s",
                "-out=/dev/shm/p",
                "-var-file=/dev/stdin",
                "-target=a.b",
                "-target=c.d"
            ]
        );
        assert_eq!(
            plan("p", PlanMode::RefreshOnly, &[], LOCK),
            [
                "plan",
                "-input=false",
                "-no-color",
                "-json",
                "-detailed-exitcode",
                "-lock-timeout=30s",
                "-refresh-only",
                "-out=p",
                "-var-file=/dev/stdin"
            ]
        );
        assert!(plan("p", PlanMode::Destroy, &[], LOCK).contains(&"-destroy".to_string()));
        assert_eq!(show_json("p"), ["show", "-json", "-no-color", "p"]);
        assert_eq!(
            apply("p", LOCK),
            [
                "apply",
                "-input=false",
                "-no-color",
                "-json",
                "-lock-timeout=30s",
                "p"
            ]
        );
        assert_eq!(output_json(), ["output", "-json", "-no-color"]);
    }

    #[test]
    fn a_refused_lock_is_told_apart_however_terraform_wraps_it() {
        assert_eq!(
            init_upgrade(LOCK),
            [
                "init",
                "-input=false",
                "-no-color",
                "-lock-timeout=30s",
                "-upgrade"
            ]
        );
        assert!(lock_refused(
            "  Error: Failed to query available provider packages\n  nixmox/nixmoxlab: locked provider registry.terraform.io/nixmox/nixmoxlab\n  0.0.1 does not match configured\n  version constraint >= 0.2.1; must use\n"
        ));
        assert!(!lock_refused(
            "Error: the cached package for registry.terraform.io/nixmox/nixmoxlab 0.2.1 does not match any of the checksums recorded in the dependency lock file"
        ));
    }
}
