//! The command line: argument definitions and one handler per command.

mod apply;
mod common;
mod destroy;
mod exec;
mod graph;
mod lab;
mod outputs;
mod plan;
mod serve;
mod status;
mod validate;
mod verify;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "nixmox",
    version,
    about = "Deploy a self-hosted NixOS stack (hosts, DNS, PostgreSQL, Caddy, Authentik, applications) from one manifest",
    long_about = "nixmox reads one manifest, builds the dependency graph of its services, prints the \
deployment plan and runs the Terraform and NixOS phases in the canonical order: tf:infra, nix:core, \
tf:auth-core, then per application tf:service-infra, nix:service-config, health, tf:service-config, verify.\n\n\
Exit status: 0 success, 1 error (including an invalid manifest), 2 changes pending (plan/status).",
    after_help = "Manifest: -m/--manifest, else $NIXMOX_MANIFEST, else nixmox.{nix,json,toml,yaml,yml}, \
manifest.{nix,json,toml,yaml,yml}, service-manifest.nix or nixos/service-manifest.nix in the current directory.\n\
Flake: nixos.flake, else the nearest flake.nix at or above the manifest's directory (not past its git repository's root).\n\
Secrets: a value written { sops = \"section.key\"; } is read from secrets.sops_file with the real sops \
($NIXMOX_SOPS), decrypted in memory with $SOPS_AGE_KEY_FILE or secrets.age_key_file; every command but \
lab down/status opens them first."
)]
pub struct Cli {
    /// The manifest (.nix, .json, .toml, .yaml or .yml).
    #[arg(short, long, global = true, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// The state store: a postgres:// URL shared by a team, or a SQLite file
    /// (default: .nixmox/state.db beside the manifest).
    #[arg(
        long,
        global = true,
        env = "NIXMOX_STATE",
        value_name = "URL|FILE",
        hide_env_values = true
    )]
    pub state: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check the manifest and report every problem at once (SOPS values it names
    /// included: each must decrypt); runs nothing.
    Validate(ValidateArgs),
    /// Show the deployment plan; without --offline, also what Terraform would change.
    Plan(PlanArgs),
    /// Deploy the stack: every phase in order, health gates, rollback of failed services.
    Apply(ApplyArgs),
    /// Show the Terraform outputs of every workspace (sensitive values redacted).
    Outputs(OutputsArgs),
    /// Take the stack down in reverse order: services (dependents first), auth-core, infra.
    Destroy(DestroyArgs),
    /// Switch a service's host back to its previous NixOS generation.
    Rollback(RollbackArgs),
    /// The last run, each service's liveness and drift from its last good system, Terraform drift (exit 0 / 2 drift or degraded / 1).
    Status(StatusArgs),
    /// Prove the stack works end to end: DNS, TLS, proxy routes and headers,
    /// forward auth, OIDC clients, database logins.
    Verify(VerifyArgs),
    /// Run a command on the selected hosts side by side, each output
    /// prefixed with its service, an exit status per host and a summary.
    Exec(ExecArgs),
    /// Remove a run lock whose holder is gone for good.
    Unlock,
    /// The stack in a browser and a JSON API (docs/serve.md): services,
    /// graph, plan, runs live; apply, rollback and unlock behind the
    /// stack's own login.
    Serve(ServeArgs),
    /// Draw the service dependency graph.
    Graph(GraphArgs),
    /// The lab: the whole stack on this machine, in network namespaces (needs root).
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Print the result as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Build the plan from the manifest alone: no tool runs, no host is
    /// contacted. Without it, the plan shows everything `apply` would do
    /// (Terraform plans, each host's system and closure diff, env files and
    /// age keys by hash, migrations), changing nothing; exit status 2 when
    /// something would change or cannot be known.
    #[arg(long)]
    pub offline: bool,
    /// Plan the Terraform phases only: no host or database is contacted.
    #[arg(long, conflicts_with = "offline")]
    pub terraform_only: bool,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print the plan as JSON (see docs/plan-json.md).
    #[arg(long)]
    pub json: bool,
}

/// Which services a `plan` or an `apply` takes, and which hosts it activates anyway.
/// `--on`: the services a command takes, and what they need.
#[derive(Args, Debug, Default)]
pub struct OnArgs {
    /// Only these services and what they depend on: names, @tags or globs
    /// ('app-*'), repeated or separated with commas.
    #[arg(
        long = "on",
        visible_alias = "only",
        value_name = "SELECTOR",
        value_delimiter = ','
    )]
    pub only: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SelectArgs {
    #[command(flatten)]
    pub on: OnArgs,
    /// Leave these services out of this run, with everything that needs
    /// them (repeat or separate with commas); a core service takes every
    /// application with it. Terraform's stack-wide phases still see the
    /// whole manifest: a skipped service's host is never destroyed.
    #[arg(long, value_name = "SELECTOR", value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Activate these services' hosts even when they already run their
    /// system (repeat or separate with commas); the health gate runs as usual.
    #[arg(
        long,
        value_name = "SELECTOR",
        value_delimiter = ',',
        conflicts_with = "terraform_only"
    )]
    pub force: Vec<String>,
    /// At most N hosts switching (deploy and health gate) at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64), conflicts_with = "terraform_only")]
    pub batch: Option<u16>,
    /// Applications wave by wave; each wave's first application alone, the
    /// rest of the wave only after it passed its gate and verify. A failing
    /// canary leaves the rest of its wave not started.
    #[arg(long, conflicts_with = "terraform_only")]
    pub canary: bool,
    /// Start no further host after K failures; the rest are reported as not started.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(1..), conflicts_with = "terraform_only")]
    pub max_failures: Option<u16>,
}

impl SelectArgs {
    pub fn selection(&self) -> crate::plan::Selection<'_> {
        crate::plan::Selection {
            only: &self.on.only,
            skip: &self.skip,
            force: &self.force,
            rolling: crate::plan::Rolling {
                batch: self.batch.map(usize::from),
                canary: self.canary,
                max_failures: self.max_failures.map(usize::from),
                canaries: Vec::new(),
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Run only the Terraform phases (tf:infra, tf:auth-core, tf:service-infra,
    /// tf:service-config), in plan order.
    #[arg(long)]
    pub terraform_only: bool,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Applications deployed side by side at most.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// switch-to-configuration goal: switch, boot, test or dry-activate.
    #[arg(long, default_value = "switch", value_parser = ["switch", "boot", "test", "dry-activate"])]
    pub goal: String,
    /// Print the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask. On a terminal, apply otherwise shows what would change
    /// (Terraform plans, hosts whose system differs) and asks first.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Run only steps of these phases (tf:infra, nix:core, tf:auth-core,
    /// tf:service-infra, nix:service-config, tf:service-config, verify).
    #[arg(long, value_name = "PHASE", value_delimiter = ',', value_parser = phase_parser())]
    pub phase: Vec<String>,
    /// Skip steps of these phases.
    #[arg(long, value_name = "PHASE", value_delimiter = ',', value_parser = phase_parser())]
    pub skip_phase: Vec<String>,
    /// Seconds to wait for another run of this stack to finish (0: fail at once, naming it).
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
    /// One JSON event per line instead of text (see docs/plan-json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DestroyArgs {
    /// Only these services (their Terraform workspaces): names, @tags or
    /// globs; the core stays.
    #[arg(
        long = "on",
        visible_alias = "only",
        value_name = "SELECTOR",
        value_delimiter = ','
    )]
    pub only: Vec<String>,
    /// Do not ask: destroy without confirmation (required without a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Seconds to wait for another run of this stack to finish.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The service whose host goes back one generation.
    #[arg(required_unless_present = "on")]
    pub service: Option<String>,
    /// Several services' hosts, one after another: names, @tags or globs
    /// (no dependencies pulled in: only these hosts go back).
    #[arg(
        long,
        value_name = "SELECTOR",
        value_delimiter = ',',
        conflicts_with = "service"
    )]
    pub on: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub on: OnArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The hosts: names, @tags or globs ('app-*'), repeated or separated
    /// with commas (default: every enabled service's host). Only these:
    /// no dependency is pulled in.
    #[arg(
        long,
        visible_alias = "only",
        value_name = "SELECTOR",
        value_delimiter = ','
    )]
    pub on: Vec<String>,
    /// Hosts running the command at once at most.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Seconds the command may take on each host; then it is stopped and
    /// that host counts as failed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: u64,
    /// One JSON document with every host's exit status and output.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments, after `--`; each word reaches the
    /// host as one word (`-- sh -c '…'` for a shell).
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on (default: serve.listen, else 127.0.0.1:8470).
    /// Reading is open only on loopback (or with serve.public_read).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// A file holding a token scripts send as `Authorization: Bearer`
    /// (default: serve.token_file).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds between looks at every host (`nixmox status`); 0: only when
    /// asked (POST /api/status/refresh or the page's button).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub status_every: u64,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only these services and what they depend on: names, @tags or globs
    /// (Terraform drift is looked at for the whole stack).
    #[arg(
        long = "on",
        visible_alias = "only",
        value_name = "SELECTOR",
        value_delimiter = ','
    )]
    pub only: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct OutputsArgs {
    /// Print as JSON (see docs/plan-json.md).
    #[arg(long)]
    pub json: bool,
    /// Show sensitive values instead of "(sensitive)".
    #[arg(long)]
    pub show_sensitive: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
    /// Rendered by Graphviz's `dot`.
    Svg,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    #[arg(long, short, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    #[command(flatten)]
    pub on: OnArgs,
    /// Also draw disabled services (dashed).
    #[arg(long)]
    pub include_disabled: bool,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Create the lab network, CA and keys, the manifest's hosts (through its
    /// tf:infra module) and, unless --no-systems, activate every host's system.
    Up {
        /// Only the network and the hosts; no systems.
        #[arg(long)]
        no_systems: bool,
    },
    /// Remove everything the lab made: hosts, namespaces, processes, bridge, route, files.
    Down,
    /// Show the lab's network and every host (namespace, sshd, processes).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Create one host (called by the lab's tf:infra module).
    #[command(hide = true)]
    HostUp {
        name: String,
        ip: std::net::Ipv4Addr,
    },
    /// Remove one host (called by the lab's tf:infra module on destroy).
    #[command(hide = true)]
    HostDown {
        name: String,
        ip: std::net::Ipv4Addr,
    },
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

fn phase_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new([
        "tf:infra",
        "nix:core",
        "tf:auth-core",
        "tf:service-infra",
        "nix:service-config",
        "tf:service-config",
        "verify",
    ])
}

/// Parses the arguments and runs the command. Usage errors exit 1 (2 is
/// reserved for "changes pending").
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    crate::process::stop_tools_on_signals();
    let result = match &cli.command {
        Command::Validate(args) => validate::run(&cli, args),
        Command::Plan(args) => plan::run(&cli, args),
        Command::Graph(args) => graph::run(&cli, args),
        Command::Apply(args) => apply::run(&cli, args),
        Command::Outputs(args) => outputs::run(&cli, args),
        Command::Lab(cmd) => lab::run(&cli, cmd),
        Command::Destroy(args) => destroy::run(&cli, args),
        Command::Rollback(args) => destroy::rollback(&cli, args),
        Command::Status(args) => status::run(&cli, args),
        Command::Verify(args) => verify::run(&cli, args),
        Command::Exec(args) => exec::run(&cli, args),
        Command::Unlock => status::unlock(&cli),
        Command::Serve(args) => serve::run(&cli, args),
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "nixmox", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            common::print_error(&e);
            ExitCode::from(1)
        }
    }
}
