//! Running Terraform phases: plan, apply only what really changes, read
//! outputs, retry what is transient, fail with everything a user needs.

use super::command::{self, Locking, PlanMode};
use super::hcl;
use super::outputs::{scrub, Outputs};
use super::report::{self, Changes};
use super::retry::RetryPolicy;
use super::workdir::{self, Prepared};
use crate::manifest::TerraformPhase;
use crate::plan::Phase;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Left in a working directory's `.terraform` after a successful apply.
const APPLIED_MARKER: &str = "nixmox-applied";

/// The variable through which a phase receives the outputs of the phases before it.
pub const UPSTREAM_VARIABLE: &str = "upstream_outputs";

#[derive(Debug, thiserror::Error)]
pub enum TfError {
    #[error("{phase} (workspace {workspace}): cannot run `{binary}`: {message}. Install Terraform (scripts/setup.sh puts one in /opt/nixmox/bin), or name the binary with terraform.binary in the manifest or NIXMOX_TERRAFORM")]
    Spawn {
        phase: Phase,
        workspace: String,
        binary: String,
        message: String,
    },
    #[error("{phase} (workspace {workspace}): `terraform {command}` did not finish within {seconds} s (terraform.timeout) and was interrupted; it may have left a state lock: run again, and raise terraform.timeout if the provider is that slow")]
    Timeout {
        phase: Phase,
        workspace: String,
        command: String,
        seconds: u64,
    },
    #[error("{phase} (workspace {workspace}): {message}")]
    Prepare {
        phase: Phase,
        workspace: String,
        message: String,
    },
    #[error("{phase} (workspace {workspace}, modules {modules}): `terraform {command}` failed{attempts}:\n{diagnostics}\nnext: fix the module or its inputs, then run again")]
    Failed {
        phase: Phase,
        workspace: String,
        modules: String,
        command: String,
        attempts: String,
        diagnostics: String,
    },
}

/// One Terraform phase to run.
pub struct PhaseSpec<'a> {
    pub phase: Phase,
    pub service: Option<String>,
    pub workspace: String,
    pub config: &'a TerraformPhase,
    /// Module paths are relative to this directory (the manifest's).
    pub base_dir: PathBuf,
    /// `terraform.root`: the tree a root module is copied with (see
    /// [`super::workdir`]); the manifest's directory unless set.
    pub tree_root: PathBuf,
    /// Variables derived from the manifest (see [`super::inputs`]); never secret.
    pub derived: Map<String, Value>,
    /// Outputs of the workspaces that ran before, by workspace.
    pub upstream: BTreeMap<String, Outputs>,
    /// Where variables written `{ sops = "…"; }` are read from.
    pub secrets: crate::secrets::sops::Context,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing to run: the phase has no modules.
    NoModules,
    Unchanged,
    /// Something was applied; `outputs_only` when no resource changed.
    Applied {
        outputs_only: bool,
    },
}

#[derive(Debug)]
pub struct PhaseResult {
    pub workspace: String,
    pub status: Status,
    /// Everything applied, summed over `apply_order` targets and the full apply.
    pub changes: Changes,
    /// The `apply_order` targets that had changes, in the order applied.
    pub targets_applied: Vec<String>,
    pub outputs: Outputs,
    /// Things worth telling the user (for example variables no module declares).
    pub notes: Vec<String>,
}

/// The Terraform command line and where it works.
pub struct Terraform {
    pub binary: String,
    /// `.nixmox/terraform`: one working directory per workspace below it.
    pub root: PathBuf,
    pub lock: Locking,
    pub retry: RetryPolicy,
    /// Extra environment for every Terraform command (and so for `local-exec`).
    pub env: Vec<(String, String)>,
    /// How long one Terraform command may run (`terraform.timeout`).
    pub timeout: Duration,
    plan_dir: PathBuf,
}

struct Exec {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A saved plan, deleted when dropped: plan files can hold secrets in plaintext.
struct PlanFile(PathBuf);

impl Drop for PlanFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The largest local state file read directly.
const STATE_LIMIT: u64 = 256 * 1024 * 1024;

impl Terraform {
    /// `binary` unless `NIXMOX_TERRAFORM` names another.
    pub fn new(binary: &str, root: PathBuf, lock: Locking, retry: RetryPolicy) -> Self {
        // Terraform runs elsewhere (in a tree copy) and finds its data here.
        let root = std::path::absolute(&root).unwrap_or(root);
        let binary = std::env::var("NIXMOX_TERRAFORM")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| binary.to_string());
        // Saved plans go to memory-backed storage where there is some.
        let shm = Path::new("/dev/shm");
        let plan_dir = if shm.is_dir() && tempfile::tempfile_in(shm).is_ok() {
            shm.to_path_buf()
        } else {
            root.join(".plans")
        };
        remove_orphaned_plans(&plan_dir);
        // Modules may call nixmox itself from local-exec (the lab's hosts do).
        let env = std::env::current_exe()
            .map(|p| vec![("NIXMOX_BIN".to_string(), p.display().to_string())])
            .unwrap_or_default();
        Terraform {
            binary,
            root,
            lock,
            retry,
            env,
            timeout: Duration::from_secs(3600),
            plan_dir,
        }
    }

    /// The same runner with another bound on each command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn workdir(&self, workspace: &str) -> PathBuf {
        self.root.join(workspace)
    }

    /// Plans and applies one phase: `apply_order` targets one by one, then the
    /// whole configuration; applies only when the plan really changes something.
    pub fn apply_phase(&self, spec: &PhaseSpec) -> Result<PhaseResult, TfError> {
        if spec.config.is_empty() {
            return Ok(PhaseResult {
                workspace: spec.workspace.clone(),
                status: Status::NoModules,
                changes: Changes::default(),
                targets_applied: Vec::new(),
                outputs: Outputs::default(),
                notes: Vec::new(),
            });
        }
        let (prepared, vars, notes) = self.ready(spec)?;
        let mut total = Changes::default();
        let mut targets_applied = Vec::new();
        for target in &spec.config.apply_order {
            let applied = self.plan_and_apply(
                spec,
                &prepared,
                &vars,
                PlanMode::Normal,
                std::slice::from_ref(target),
            )?;
            if applied.any() {
                targets_applied.push(target.clone());
                add(&mut total, &applied);
            }
        }
        let applied = self.plan_and_apply(spec, &prepared, &vars, PlanMode::Normal, &[])?;
        add(&mut total, &applied);
        let outputs = self.read_outputs(spec, &prepared.dir)?;
        let _ = std::fs::write(prepared.home.join(".terraform").join(APPLIED_MARKER), "");
        let status = if total.any() {
            Status::Applied {
                outputs_only: total.resources() == 0,
            }
        } else {
            Status::Unchanged
        };
        Ok(PhaseResult {
            workspace: spec.workspace.clone(),
            status,
            changes: total,
            targets_applied,
            outputs,
            notes,
        })
    }

    /// Plans without applying (`mode` Normal for `nixmox plan`, RefreshOnly for drift).
    pub fn plan_phase(&self, spec: &PhaseSpec, mode: PlanMode) -> Result<Option<Changes>, TfError> {
        if spec.config.is_empty() {
            return Ok(None);
        }
        let (prepared, vars, _) = self.ready(spec)?;
        let (changes, _plan) = self.plan(spec, &prepared, &vars, mode, &[])?;
        Ok(Some(changes))
    }

    /// Destroys what the phase created (a destroy plan, applied when non-empty).
    pub fn destroy_phase(&self, spec: &PhaseSpec) -> Result<Changes, TfError> {
        if spec.config.is_empty() || !self.workdir(&spec.workspace).exists() {
            return Ok(Changes::default());
        }
        let (prepared, vars, _) = self.ready(spec)?;
        self.plan_and_apply(spec, &prepared, &vars, PlanMode::Destroy, &[])
    }

    /// The outputs of a workspace that has run before (empty if it never did).
    pub fn outputs(&self, phase: Phase, workspace: &str) -> Result<Outputs, TfError> {
        let dir = self.workdir(workspace);
        if !dir.join(".terraform").exists() {
            return Ok(Outputs::default());
        }
        let spec_like = (phase, workspace);
        let exec = self.exec_plain(
            spec_like,
            &workdir::run_dir(&dir),
            &command::output_json(),
            None,
            &[],
        )?;
        if exec.code != 0 {
            return Err(self.failed(spec_like, "-", "output", 1, &exec, &[]));
        }
        Outputs::parse(&exec.stdout).map_err(|message| TfError::Prepare {
            phase,
            workspace: workspace.into(),
            message,
        })
    }

    /// The outputs a workspace holds now. With local state (no backend block:
    /// init then leaves no `.terraform/terraform.tfstate`) they are read from
    /// the state file, which costs no Terraform process; otherwise, or when
    /// the file is not a state Terraform 0.12+ writes (or is larger than
    /// [`STATE_LIMIT`]), `output -json`.
    pub fn held_outputs(&self, phase: Phase, workspace: &str) -> Result<Outputs, TfError> {
        let dir = self.workdir(workspace);
        if !dir.join(".terraform").join("terraform.tfstate").exists() {
            let state = dir
                .join("terraform.tfstate.d")
                .join(workspace)
                .join("terraform.tfstate");
            if let Some(outputs) =
                crate::files::read_regular(&state, STATE_LIMIT, "terraform state")
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .and_then(|text| Outputs::from_state(&text))
            {
                return Ok(outputs);
            }
        }
        self.outputs(phase, workspace)
    }

    /// True when the workspace was applied at least once: nixmox marks every
    /// successful apply (a remote backend's state cannot be seen from here),
    /// and local state counts too.
    pub fn has_state(&self, workspace: &str) -> bool {
        let dir = self.workdir(workspace);
        dir.join(".terraform").join(APPLIED_MARKER).exists()
            || dir
                .join("terraform.tfstate.d")
                .join(workspace)
                .join("terraform.tfstate")
                .exists()
    }

    fn ready(&self, spec: &PhaseSpec) -> Result<(Prepared, String, Vec<String>), TfError> {
        let prepare_err = |message: String| TfError::Prepare {
            phase: spec.phase,
            workspace: spec.workspace.clone(),
            message,
        };
        let nix_inputs = Value::Object(spec.derived.clone());
        // nixmox's own directories (its state, its Terraform homes) when they
        // lie inside the tree.
        let skip: Vec<PathBuf> = std::iter::once(self.root.clone())
            .chain(self.root.parent().map(Path::to_path_buf))
            .collect();
        let sources = workdir::Sources {
            modules: &spec.config.modules,
            base: &spec.base_dir,
            tree_root: &spec.tree_root,
            skip: &skip,
        };
        let prepared = workdir::prepare(&self.root, &spec.workspace, &sources, &nix_inputs)
            .map_err(prepare_err)?;
        self.init_if_needed(spec, &prepared)?;
        self.select_workspace(spec, &prepared)?;
        let (vars, notes) = variables(spec, &prepared).map_err(prepare_err)?;
        Ok((prepared, vars, notes))
    }

    fn init_if_needed(&self, spec: &PhaseSpec, prepared: &Prepared) -> Result<(), TfError> {
        let marker = prepared.home.join(".terraform").join("nixmox-init");
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == prepared.fingerprint) {
            return Ok(());
        }
        let args = command::init(self.lock);
        match self.run_retrying(spec, &prepared.dir, &args, None, "init") {
            Err(TfError::Failed { diagnostics, .. }) if command::lock_refused(&diagnostics) => {
                // The user's own lock file is never rewritten. One nixmox
                // kept from an earlier init (the tree has none) is chosen
                // anew under the changed constraint, as the first init did.
                if let Some(lock) = &prepared.user_lock {
                    return Err(TfError::Prepare {
                        phase: spec.phase,
                        workspace: spec.workspace.clone(),
                        message: format!(
                            "`terraform init` refuses your lock file {}: it locks a provider version the configuration no longer allows. Run `terraform init -upgrade` in {} and keep the lock file it writes (nixmox never writes into your tree), then run again",
                            lock.display(),
                            lock.parent().unwrap_or(lock).display()
                        ),
                    });
                }
                let upgrade = command::init_upgrade(self.lock);
                self.run_retrying(spec, &prepared.dir, &upgrade, None, "init -upgrade")?;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        // A configuration without providers leaves no .terraform behind.
        let _ = std::fs::create_dir_all(prepared.home.join(".terraform"));
        std::fs::write(&marker, &prepared.fingerprint).map_err(|e| TfError::Prepare {
            phase: spec.phase,
            workspace: spec.workspace.clone(),
            message: format!("cannot write {}: {e}", marker.display()),
        })
    }

    fn select_workspace(&self, spec: &PhaseSpec, prepared: &Prepared) -> Result<(), TfError> {
        // Terraform records the selected workspace here; this home only ever selects one.
        let dir = &prepared.dir;
        let current = std::fs::read_to_string(prepared.home.join(".terraform").join("environment"))
            .unwrap_or_default();
        if current.trim() == spec.workspace {
            return Ok(());
        }
        self.run_retrying(
            spec,
            dir,
            &command::workspace_select(&spec.workspace),
            None,
            "workspace select",
        )
        .map(|_| ())
    }

    fn plan(
        &self,
        spec: &PhaseSpec,
        prepared: &Prepared,
        vars: &str,
        mode: PlanMode,
        targets: &[String],
    ) -> Result<(Changes, PlanFile), TfError> {
        // One counter for the whole process: two runners planning the same
        // workspace name at once (tests, library users) never share a plan file.
        static PLANS: AtomicU64 = AtomicU64::new(0);
        let n = PLANS.fetch_add(1, Ordering::Relaxed);
        std::fs::create_dir_all(&self.plan_dir).map_err(|e| TfError::Prepare {
            phase: spec.phase,
            workspace: spec.workspace.clone(),
            message: format!("cannot create {}: {e}", self.plan_dir.display()),
        })?;
        let file = PlanFile(self.plan_dir.join(format!(
            "nixmox-{}-{}-{n}.tfplan",
            std::process::id(),
            spec.workspace
        )));
        let out = file.0.display().to_string();
        let exec = self.run_retrying(
            spec,
            &prepared.dir,
            &command::plan(&out, mode, targets, self.lock),
            Some(vars),
            "plan",
        )?;
        if exec.code == 0 {
            return Ok((Changes::default(), file));
        }
        let show = self.exec(spec, &prepared.dir, &command::show_json(&out), None)?;
        if show.code != 0 {
            return Err(self.failed(
                (spec.phase, &spec.workspace),
                &modules(spec),
                "show -json",
                1,
                &show,
                &secrets(spec),
            ));
        }
        let changes = report::changes(&show.stdout).map_err(|message| TfError::Prepare {
            phase: spec.phase,
            workspace: spec.workspace.clone(),
            message,
        })?;
        Ok((changes, file))
    }

    /// Plans and, when the plan changes something real, applies it. A
    /// transient failure of the apply re-plans (the saved plan is stale then).
    fn plan_and_apply(
        &self,
        spec: &PhaseSpec,
        prepared: &Prepared,
        vars: &str,
        mode: PlanMode,
        targets: &[String],
    ) -> Result<Changes, TfError> {
        let mut attempt = 1;
        loop {
            let (changes, file) = self.plan(spec, prepared, vars, mode, targets)?;
            if !changes.any() {
                return Ok(Changes {
                    drift: changes.drift,
                    ..Changes::default()
                });
            }
            let exec = self.exec(
                spec,
                &prepared.dir,
                &command::apply(&file.0.display().to_string(), self.lock),
                None,
            )?;
            drop(file);
            if exec.code == 0 {
                return Ok(changes);
            }
            self.retry_or_fail(spec, "apply", &mut attempt, &exec)?;
        }
    }

    /// After a failed command: waits and returns `Ok` when the failure looks
    /// transient and attempts are left (the caller tries again), else the error.
    fn retry_or_fail(
        &self,
        spec: &PhaseSpec,
        name: &str,
        attempt: &mut u32,
        exec: &Exec,
    ) -> Result<(), TfError> {
        let text = format!("{}\n{}", exec.stdout, exec.stderr);
        if *attempt < self.retry.attempts && self.retry.is_transient(&text) {
            std::thread::sleep(self.retry.delay(*attempt));
            *attempt += 1;
            return Ok(());
        }
        Err(self.failed(
            (spec.phase, &spec.workspace),
            &modules(spec),
            name,
            *attempt,
            exec,
            &secrets(spec),
        ))
    }

    fn read_outputs(&self, spec: &PhaseSpec, dir: &Path) -> Result<Outputs, TfError> {
        let exec = self.run_retrying(spec, dir, &command::output_json(), None, "output")?;
        Outputs::parse(&exec.stdout).map_err(|message| TfError::Prepare {
            phase: spec.phase,
            workspace: spec.workspace.clone(),
            message,
        })
    }

    /// Runs a command; exit codes 0 and 2 count as success (2: plan has changes).
    /// Runs a command, retrying transient failures; exit codes 0 and 2 count
    /// as success (2: a plan has changes).
    fn run_retrying(
        &self,
        spec: &PhaseSpec,
        dir: &Path,
        args: &[String],
        stdin: Option<&str>,
        name: &str,
    ) -> Result<Exec, TfError> {
        let mut attempt = 1;
        loop {
            let exec = self.exec(spec, dir, args, stdin)?;
            if exec.code == 0 || (exec.code == 2 && name == "plan") {
                return Ok(exec);
            }
            self.retry_or_fail(spec, name, &mut attempt, &exec)?;
        }
    }

    fn exec(
        &self,
        spec: &PhaseSpec,
        dir: &Path,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<Exec, TfError> {
        self.exec_plain(
            (spec.phase, &spec.workspace),
            dir,
            args,
            stdin,
            &secrets(spec),
        )
    }

    /// Waits for Terraform within [`Self::timeout`]. Past it Terraform is
    /// interrupted the way Ctrl-C does (it stops, saves its state and
    /// releases its lock), and killed only if it is still there a minute
    /// later. `Err(None)`: the bound was hit.
    fn wait_bounded(
        &self,
        child: &mut std::process::Child,
    ) -> Result<std::process::ExitStatus, Option<std::io::Error>> {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().map_err(Some)? {
                return Ok(status);
            }
            if started.elapsed() > self.timeout {
                // SAFETY: a plain system call on a child of this process.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGINT);
                }
                let grace = std::time::Instant::now();
                while grace.elapsed() < Duration::from_secs(60) {
                    if child.try_wait().ok().flatten().is_some() {
                        return Err(None);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn exec_plain(
        &self,
        (phase, workspace): (Phase, &str),
        dir: &Path,
        args: &[String],
        stdin: Option<&str>,
        secrets: &[String],
    ) -> Result<Exec, TfError> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(dir)
            .envs(command::environment())
            // The workspace's own data directory, wherever Terraform runs.
            .env("TF_DATA_DIR", self.workdir(workspace).join(".terraform"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // One provider cache for every workspace: a provider is fetched or
        // unpacked once, however many workspaces use it.
        if std::env::var_os("TF_PLUGIN_CACHE_DIR").is_none() {
            let cache = self.root.join("plugin-cache");
            let _ = std::fs::create_dir_all(&cache);
            cmd.env("TF_PLUGIN_CACHE_DIR", cache);
        }
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        // Terraform writes to files, not pipes: if nixmox is killed, a
        // Terraform in the middle of an apply must not die of a broken pipe
        // at its next line of output. It finishes, saves its state and
        // releases its lock, and the next run finds the work done.
        let (out_file, err_file) = (
            self.capture(phase, workspace, "out")?,
            self.capture(phase, workspace, "err")?,
        );
        let reopen = |f: &tempfile::NamedTempFile| {
            f.reopen().map_err(|e| TfError::Prepare {
                phase,
                workspace: workspace.into(),
                message: format!("cannot open {}: {e}", f.path().display()),
            })
        };
        cmd.stdout(reopen(&out_file)?).stderr(reopen(&err_file)?);
        // A CLI configuration named but missing only earns a warning on every command.
        if std::env::var_os("TF_CLI_CONFIG_FILE").is_some_and(|p| !Path::new(&p).exists()) {
            cmd.env_remove("TF_CLI_CONFIG_FILE");
        }
        let spawn_err = |message: String| TfError::Spawn {
            phase,
            workspace: workspace.into(),
            binary: self.binary.clone(),
            message,
        };
        let mut child = cmd.spawn().map_err(|e| spawn_err(e.to_string()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Terraform reads the whole var-file before planning; a closed pipe means it failed early.
            let _ = pipe.write_all(text.as_bytes());
        }
        let status = self.wait_bounded(&mut child).map_err(|e| match e {
            None => TfError::Timeout {
                phase,
                workspace: workspace.into(),
                command: args.first().cloned().unwrap_or_default(),
                seconds: self.timeout.as_secs(),
            },
            Some(e) => spawn_err(e.to_string()),
        })?;
        // What Terraform printed is read within a bound, like every tool's output.
        let printed = |path: &Path, stream: &str| -> Result<Vec<u8>, TfError> {
            let limit = crate::process::MAX_OUTPUT as u64;
            match std::fs::metadata(path) {
                Ok(m) if m.len() > limit => Err(TfError::Prepare {
                    phase,
                    workspace: workspace.into(),
                    message: format!(
                        "`terraform {}` printed more than {} MiB on its {stream}; nixmox does not read that much",
                        args.first().map(String::as_str).unwrap_or_default(),
                        limit >> 20
                    ),
                }),
                _ => Ok(crate::files::read_regular(path, limit, "terraform's output").unwrap_or_default()),
            }
        };
        let out = std::process::Output {
            status,
            stdout: printed(out_file.path(), "standard output")?,
            stderr: printed(err_file.path(), "standard error")?,
        };

        // `output` and `show` print values, sensitive ones included: never logged.
        if !matches!(
            args.first().map(String::as_str),
            Some("output") | Some("show")
        ) {
            crate::report::runlog::append(
                "terraform.log",
                &format!("[{workspace}] terraform {}", args.join(" ")),
                out.status.code(),
                &scrub(&String::from_utf8_lossy(&out.stdout), secrets),
                &scrub(&String::from_utf8_lossy(&out.stderr), secrets),
            );
        }
        Ok(Exec {
            code: out.status.code().unwrap_or(1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// A file for one stream of one Terraform command, beside the saved plans
    /// (memory-backed where possible; it can hold what a plan shows) and
    /// deleted when dropped, or by the next run if this one is killed.
    fn capture(
        &self,
        phase: Phase,
        workspace: &str,
        stream: &str,
    ) -> Result<tempfile::NamedTempFile, TfError> {
        let _ = std::fs::create_dir_all(&self.plan_dir);
        tempfile::Builder::new()
            .prefix(&format!("nixmox-{}-", std::process::id()))
            .suffix(&format!(".{stream}"))
            .tempfile_in(&self.plan_dir)
            .map_err(|e| TfError::Prepare {
                phase,
                workspace: workspace.into(),
                message: format!(
                    "cannot create a file for Terraform's output in {}: {e}",
                    self.plan_dir.display()
                ),
            })
    }

    fn failed(
        &self,
        (phase, workspace): (Phase, &str),
        modules: &str,
        command: &str,
        attempts: u32,
        exec: &Exec,
        secrets: &[String],
    ) -> TfError {
        let mut lines: Vec<String> = report::diagnostics(&exec.stdout)
            .into_iter()
            .filter(|d| d.severity == "error")
            .map(|d| {
                if d.detail.is_empty() {
                    format!("  Error: {}", d.summary)
                } else {
                    format!("  Error: {}: {}", d.summary, d.detail)
                }
            })
            .collect();
        let stderr = exec.stderr.trim();
        if !stderr.is_empty() {
            lines.push(format!("  {}", stderr.replace('\n', "\n  ")));
        }
        if lines.is_empty() {
            lines.push(format!(
                "  (exit status {}, no diagnostic printed)",
                exec.code
            ));
        }
        TfError::Failed {
            phase,
            workspace: workspace.to_string(),
            modules: modules.to_string(),
            command: command.to_string(),
            attempts: if attempts > 1 {
                format!(" after {attempts} attempts")
            } else {
                String::new()
            },
            diagnostics: scrub(&lines.join("\n"), secrets),
        }
    }
}

/// Saved plans and captured output of nixmox processes that are gone (killed
/// before they could delete them): both can hold secrets, so they do not
/// outlive their run. A Terraform still using one has it open; deleting is safe.
fn remove_orphaned_plans(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("nixmox-")
            .filter(|_| {
                [".tfplan", ".out", ".err"]
                    .iter()
                    .any(|s| name.ends_with(s))
            })
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn add(total: &mut Changes, c: &Changes) {
    total.add += c.add;
    total.change += c.change;
    total.destroy += c.destroy;
    total.replace += c.replace;
    for o in &c.outputs {
        if !total.outputs.contains(o) {
            total.outputs.push(o.clone());
        }
    }
    for d in &c.drift {
        if !total.drift.contains(d) {
            total.drift.push(d.clone());
        }
    }
}

fn modules(spec: &PhaseSpec) -> String {
    spec.config.modules.join(", ")
}

/// What Terraform's words are scrubbed of: the upstream outputs' secrets and
/// every value this process read from a SOPS file.
fn secrets(spec: &PhaseSpec) -> Vec<String> {
    spec.upstream
        .values()
        .flat_map(Outputs::secret_texts)
        .chain(crate::secrets::sops::known_texts())
        .collect()
}

/// The var-file for a phase: derived inputs, then the manifest's `variables`
/// (which win; a `{ sops = "…"; }` one decrypted here, in memory), then the
/// upstream outputs; only what the configuration declares. The text goes to
/// Terraform on its standard input, never to a file.
fn variables(spec: &PhaseSpec, prepared: &Prepared) -> Result<(String, Vec<String>), String> {
    let mut all: BTreeMap<String, Value> = spec
        .derived
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut notes = Vec::new();
    for (k, v) in &spec.config.variables {
        if !crate::secrets::SopsRef::is_ref(v) {
            all.insert(k.clone(), v.clone());
            continue;
        }
        let r = crate::secrets::SopsRef::parse(v).map_err(|e| format!("variable {k}: {e}"))?;
        let secret = crate::secrets::sops::resolve_in(&spec.secrets, &r)
            .map_err(|e| format!("variable {k} ({r}): {e}"))?;
        if prepared.declared.contains(k) && !prepared.sensitive.contains(k) {
            notes.push(format!(
                "variable {k} of {} takes a value from SOPS ({r}) but is not declared sensitive = true: Terraform would show it in its plans (nixmox hides it from its own output); declare it sensitive",
                spec.workspace
            ));
        }
        all.insert(k.clone(), secret.expose().clone());
    }
    let upstream: Map<String, Value> = spec
        .upstream
        .iter()
        .map(|(ws, o)| (ws.clone(), Value::Object(o.values())))
        .collect();
    all.insert(UPSTREAM_VARIABLE.into(), Value::Object(upstream));
    for k in spec.config.variables.keys() {
        if !prepared.declared.contains(k) {
            notes.push(format!("variable {k} from the manifest is not declared by the modules of {}; it is not passed", spec.workspace));
        }
    }
    all.retain(|k, _| prepared.declared.contains(k));
    Ok((hcl::var_file(&all), notes))
}
