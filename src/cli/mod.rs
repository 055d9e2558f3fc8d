//! Arguments, exit codes and dispatch.

mod commands;
mod quarantine;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use commands::run;

/// Exit codes: scripts tell bad input from a failing registry. An interrupted sweep exits
/// 128 + the signal (130 for SIGINT, 143 for SIGTERM).
pub mod exit {
    pub const INVALID_INPUT: u8 = 2;
    pub const REGISTRY_FAILURE: u8 = 3;
    pub const VERIFY_FAILED: u8 = 4;
    /// The plan exceeds the policy's `spec.limits`; nothing was changed.
    pub const OVER_LIMIT: u8 = 5;
    pub const LOCKED: u8 = 6;
    pub const OTHER: u8 = 1;
}

/// `--concurrency`: a whole number of requests in flight.
fn concurrency(text: &str) -> Result<usize, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n as usize),
        _ => Err(format!("{text:?} is not a number of requests in flight; give a whole number from 1 to 256 (default 16)")),
    }
}

pub struct Failure {
    pub message: String,
    pub exit_code: u8,
}

impl Failure {
    pub fn invalid(message: impl ToString) -> Self {
        Failure { message: message.to_string(), exit_code: exit::INVALID_INPUT }
    }
    pub fn registry(message: impl ToString) -> Self {
        Failure { message: message.to_string(), exit_code: exit::REGISTRY_FAILURE }
    }
    pub fn other(message: impl ToString) -> Self {
        Failure { message: message.to_string(), exit_code: exit::OTHER }
    }
}

pub type CliResult = Result<ExitCode, Failure>;

const AFTER_HELP: &str = "\
Environment:
  REGSWEEP_REGISTRY_USERNAME  user name for the registry (same as --username)
  REGSWEEP_REGISTRY_PASSWORD  the registry password (read from the environment only, so it
                              never shows in a process list)
  REGSWEEP_LOG_FORMAT         text or json (same as --log-format)
  RUST_LOG                    log filter, e.g. regsweep=debug
  NO_COLOR                    no colours in logs (they are only used on a terminal anyway)

Exit codes:
  0    success
  1    other failure
  2    invalid input: policy, arguments, registry configuration or storage root, an unknown
       or expired quarantine reference; nothing was changed
  3    registry failure: unreachable, 401/403, delete disabled, still writable, or
       garbage-collect cannot run on the storage
  4    verify found problems
  5    the plan exceeds spec.limits; nothing was changed
  6    another sweep holds the storage's lock
  130  stopped by SIGINT, 143 stopped by SIGTERM";

#[derive(Parser)]
#[command(name = "regsweep", version, about = "Safe, declarative cleanup of CNCF Distribution registries", after_help = AFTER_HELP)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "REGSWEEP_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// How to reach a registry's API.
#[derive(clap::Args, Clone)]
pub struct RegistryAccess {
    /// User name for basic or token authentication.
    #[arg(long, env = "REGSWEEP_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Password; read from the environment only, so it never shows in a process list.
    #[arg(skip = std::env::var("REGSWEEP_REGISTRY_PASSWORD").ok())]
    pub password: Option<String>,
    /// PEM file of the CA that signed the registry's certificate.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the registry's TLS certificate.
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
}

#[derive(clap::Args, Clone)]
pub struct Protect {
    /// An image reference that must survive (`[host/]repo[:tag][@digest]`, globs allowed); repeatable.
    #[arg(long = "protect", value_name = "REF")]
    pub refs: Vec<String>,
    /// A file of references to protect, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub protect_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the Kubernetes operator: reconcile every RegistryCleanupPolicy.
    Operator {
        /// Address of /metrics, /livez and /readyz.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// This operator's image, which the sweep Job's init container copies regsweep from.
        #[arg(long, env = "REGSWEEP_IMAGE")]
        image: String,
        /// Watch policies only in this namespace (default: every namespace); repeatable. With
        /// it, the operator needs Roles in these namespaces only, not ClusterRoles.
        #[arg(long = "watch-namespace")]
        watch_namespaces: Vec<String>,
        /// Namespaces scanned for images in use (default: the watched ones, or all); repeatable.
        #[arg(long = "in-use-namespace")]
        in_use_namespaces: Vec<String>,
        /// Seconds between looks at a run in flight.
        #[arg(long, default_value_t = 2)]
        poll_seconds: u64,
        /// Elect a leader on a Lease, so several replicas never act at once.
        #[arg(long)]
        leader_election: bool,
        /// Name of the Lease (one per installation).
        #[arg(long, default_value = "regsweep-operator")]
        lease_name: String,
        /// Namespace of the Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "regsweep-system")]
        lease_namespace: String,
        /// This replica's identity in the Lease.
        #[arg(long, env = "POD_NAME", default_value = "regsweep")]
        identity: String,
    },
    /// Dry run: what goes, what stays, why, and the bytes it would free.
    Plan {
        /// The RegistryCleanupPolicy YAML file.
        #[arg(short = 'f', long = "file")]
        policy: PathBuf,
        /// The registry's storage root directory (storage.filesystem.rootdirectory).
        #[arg(long, conflicts_with = "url", required_unless_present = "url")]
        storage: Option<PathBuf>,
        /// The registry's URL: an API-only preview (no untagged manifests; the API cannot tell
        /// push times, so ages are build times, see --ages).
        #[arg(long)]
        url: Option<String>,
        /// With --url: where image ages come from: each config's `created` field (its build
        /// time), or none (age-based rules then keep everything).
        #[arg(long, value_enum, default_value_t = regsweep::storage::api::Ages::Config, requires = "url")]
        ages: regsweep::storage::api::Ages,
        /// Accepted for compatibility: build times are the default now.
        #[arg(long, hide = true, requires = "url")]
        age_from_config: bool,
        #[command(flatten)]
        access: RegistryAccess,
        #[command(flatten)]
        protect: Protect,
        /// Output format on standard output.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
        /// List every repository's tags, also those no rule matches.
        #[arg(long)]
        all: bool,
    },
    /// The whole sweep on a storage the caller has frozen: plan, delete through a private
    /// registry instance, garbage-collect, prune, report.
    Maintenance {
        /// The RegistryCleanupPolicy YAML file.
        #[arg(short = 'f', long = "file")]
        policy: PathBuf,
        /// The registry's configuration file (its REGISTRY_* environment applies too).
        #[arg(long)]
        config: PathBuf,
        /// The registry binary (default: `registry` or `docker-registry` on PATH).
        #[arg(long)]
        registry_bin: Option<PathBuf>,
        #[command(flatten)]
        protect: Protect,
        /// The public registry's URL: regsweep refuses to change anything unless it refuses writes.
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        access: RegistryAccess,
        /// Plan and report only.
        #[arg(long)]
        dry_run: bool,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Also write a compact JSON summary here (a container's termination message).
        #[arg(long)]
        summary_file: Option<PathBuf>,
        /// Write the plan this run made, as `plan -o json` does (its directory is created):
        /// with --dry-run, the plan to review and then pass to --approved-plan.
        #[arg(long, value_name = "FILE")]
        plan_file: Option<PathBuf>,
        /// Remove upload sessions older than this.
        #[arg(long, default_value = "24h")]
        upload_max_age: String,
        /// Concurrent DELETE requests (1 to 256).
        #[arg(long, default_value_t = 16, value_parser = concurrency, allow_hyphen_values = true)]
        concurrency: usize,
        /// An identifier for this run in logs and the report (default: generated).
        #[arg(long)]
        run_id: Option<String>,
        /// Sweep although the registry caches blob descriptors in Redis: you flush that cache
        /// after the sweep (it survives the restart and would describe deleted blobs).
        #[arg(long)]
        allow_redis_cache: bool,
        /// Leave all untagging to the registry's manifest DELETE instead of removing the
        /// planned tags on the frozen storage first (slower: O(tags²) per repository).
        #[arg(long)]
        untag_via_api: bool,
        /// A plan reviewed beforehand (`regsweep plan -o json > FILE`): the run deletes at most
        /// what it deletes (anything pushed, retagged or protected since is kept), and
        /// `spec.limits` do not hold it.
        #[arg(long, value_name = "FILE", conflicts_with = "approved_run")]
        approved_plan: Option<PathBuf>,
        /// The approved plan is the one run RUN_ID saved on the storage with --save-plan (how
        /// the operator hands a reviewed plan to the run that executes it).
        #[arg(long, value_name = "RUN_ID")]
        approved_run: Option<String>,
        /// Save this run's plan on the storage, under `.regsweep/plans/<run id>.json`, for
        /// review (the newest 10 are kept).
        #[arg(long)]
        save_plan: bool,
        /// Output format on standard output.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Walk every tag's whole graph (index → manifests → config → layers) and report anything
    /// unfetchable or with a wrong digest. Exits 4 when something is wrong.
    Verify {
        /// The registry's URL.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        access: RegistryAccess,
        /// Output format on standard output.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// What the quarantine holds (`spec.quarantine`): every deleted image that can still be
    /// restored, with its run, original tags, digest, and when it expires.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Bring quarantined images back through the API of a writable registry: the original
    /// tags return with the same digests (signatures quarantined with an image come too).
    /// Refuses, changing nothing, when a reference is unknown or expired, or when a tag now
    /// names another image (unless --force). No freeze is needed.
    Restore {
        /// The registry's URL (it must accept pushes).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        access: RegistryAccess,
        /// Everything this run quarantined.
        #[arg(long, value_name = "RUN_ID", conflicts_with = "references", required_unless_present = "references")]
        run: Option<String>,
        /// Images as they were before the sweep: `repository:tag` or `repository@sha256:...`.
        #[arg(value_name = "REF")]
        references: Vec<String>,
        /// Point tags pushed again since the sweep back at the restored images.
        #[arg(long)]
        force: bool,
        /// Output format on standard output.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Start a local registry, fill it, and sweep it: the whole routine in a minute.
    Demo {
        /// The registry binary (default: `registry` or `docker-registry` on PATH).
        #[arg(long)]
        registry_bin: Option<PathBuf>,
    },
    /// Print the RegistryCleanupPolicy CustomResourceDefinition.
    Crd,
    /// Print every Kubernetes API permission the operator uses, and why (what the Helm chart's
    /// RBAC grants).
    Rbac {
        /// Output format on standard output.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Copy this binary to DEST (the sweep Job's init container uses it to bring regsweep
    /// into the registry's image).
    CopySelf {
        /// Where to write the copy (made executable).
        dest: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// Every quarantine record: run id, original reference with all its tags, digest, deleted
    /// at, expires at, bytes.
    List {
        /// The registry's storage root directory (no registry needed).
        #[arg(long, conflicts_with = "url", required_unless_present = "url")]
        storage: Option<PathBuf>,
        /// The registry's URL.
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        access: RegistryAccess,
        /// Output format on standard output.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

impl Command {
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Maintenance { .. } | Command::Operator { .. } => "info",
            _ => "warn",
        }
    }
}

pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("regsweep={default_level}")));
    // Colours only for a person at a terminal, and never with NO_COLOR (https://no-color.org).
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.compact().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set() && !["help", "version"].contains(&a.get_id().as_str())) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no description)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "regsweep", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:?}");
    }

    #[test]
    fn help_names_the_password_variable_and_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for needle in ["REGSWEEP_REGISTRY_PASSWORD", "Exit codes:", "5    the plan exceeds spec.limits", "NO_COLOR"] {
            assert!(help.contains(needle), "{needle:?} in {help}");
        }
    }
}
