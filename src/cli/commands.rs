//! The command bodies.

use std::path::Path;
use std::process::ExitCode;

use regsweep::maintenance::error::MaintenanceError;
use regsweep::maintenance::interrupt::Interrupt;
use regsweep::maintenance::lock::LockError;
use regsweep::maintenance::run::{MaintenanceOptions, run_maintenance};
use regsweep::plan::{self, Protection};
use regsweep::policy::reference::ProtectedRef;
use regsweep::policy::{compile, load};
use regsweep::registry::{ClientOptions, RegistryClient};
use regsweep::storage::{Layout, read_storage};

use super::{CliResult, Command, Failure, Output, Protect, RegistryAccess, exit};

pub async fn run(command: Command) -> CliResult {
    match command {
        Command::Operator {
            listen,
            image,
            watch_namespaces,
            in_use_namespaces,
            poll_seconds,
            leader_election,
            lease_name,
            lease_namespace,
            identity,
        } => {
            let watch_namespaces = (!watch_namespaces.is_empty()).then_some(watch_namespaces);
            let config = regsweep::operator::context::OperatorConfig {
                image,
                // An operator confined to some namespaces may list nothing outside them.
                in_use_namespaces: (!in_use_namespaces.is_empty()).then_some(in_use_namespaces).or_else(|| watch_namespaces.clone()),
                watch_namespaces,
                poll: std::time::Duration::from_secs(poll_seconds.max(1)),
            };
            let leader = leader_election.then_some((lease_namespace, lease_name, identity));
            regsweep::operator::run::run(regsweep::operator::run::OperatorOptions { config, listen, leader_election: leader })
                .await
                .map_err(|e| Failure::other(format!("operator: {e:#}")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { policy, storage, url, ages, age_from_config: _, access, protect, output, all } => {
            let policy = load::from_file(&policy).map_err(Failure::invalid)?;
            let compiled = compile(&policy.spec).map_err(Failure::invalid)?;
            let protections = protections(&protect, &compiled.hosts)?;
            let snapshot = match (storage, url) {
                (Some(dir), _) => read_storage(&Layout::new(dir)).map_err(Failure::invalid)?,
                (None, Some(url)) => {
                    let client = client(&url, &access)?;
                    regsweep::storage::api::read_api(&client, ages).await.map_err(Failure::registry)?
                }
                (None, None) => return Err(Failure::invalid("give --storage DIR or --url URL")),
            };
            for p in &snapshot.problems {
                tracing::warn!(path = %p.path, problem = %p.problem, "entry skipped");
            }
            let plan = plan::plan(&compiled, &snapshot, &protections, chrono::Utc::now());
            match output {
                Output::Json => print_json(&plan)?,
                Output::Table => print!("{}", plan::render::table(&plan, all)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Maintenance {
            policy,
            config,
            registry_bin,
            protect,
            url,
            access,
            dry_run,
            report,
            summary_file,
            plan_file,
            upload_max_age,
            concurrency,
            run_id,
            allow_redis_cache,
            untag_via_api,
            approved_plan,
            approved_run,
            save_plan,
            output,
        } => {
            // First, so a SIGTERM at any later point (PID 1 in a container included) stops cleanly.
            let interrupt = Interrupt::install().map_err(|e| Failure::other(format!("cannot handle signals: {e}")))?;
            let policy = load::from_file(&policy).map_err(Failure::invalid)?;
            let compiled = compile(&policy.spec).map_err(Failure::invalid)?;
            let protections = protections(&protect, &compiled.hosts)?;
            let upload_max_age = regsweep::policy::compiled::parse_duration(&upload_max_age)
                .map_err(|e| Failure::invalid(format!("--upload-max-age: {e}")))?;
            if let Some(url) = &url {
                client(url, &access)?;
            }
            let approved = match &approved_plan {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| Failure::invalid(format!("--approved-plan {}: {e}; nothing was changed", path.display())))?;
                    let approval = regsweep::plan::approval::Approval::from_json(&text)
                        .map_err(|e| Failure::invalid(format!("--approved-plan {}: {e}", path.display())))?;
                    Some(approval)
                }
                None => None,
            };
            if let Some(dir) = plan_file.as_deref().and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Failure::invalid(format!("--plan-file: cannot create {}: {e}", dir.display())))?;
            }
            for (flag, path) in [("--report", &report), ("--summary-file", &summary_file), ("--plan-file", &plan_file)] {
                if let Some(path) = path {
                    check_writable(flag, path)?;
                }
            }
            let opts = MaintenanceOptions {
                policy,
                config,
                registry_bin,
                env: std::env::vars().filter(|(k, _)| k.starts_with("REGISTRY_")).collect(),
                protections,
                public_url: url,
                public_client: client_options(&access),
                dry_run,
                upload_max_age,
                concurrency,
                run_id: run_id.unwrap_or_else(regsweep::policy::RunState::new_id),
                interrupt: interrupt.clone(),
                allow_redis_cache,
                untag_on_storage: !untag_via_api,
                approved,
                approved_run,
                save_plan,
                // Every decision only where it is shown or written.
                full_plan: plan_file.is_some() || (dry_run && matches!(output, Output::Table)),
            };
            let outcome = run_maintenance(opts).await.map_err(|e| Failure {
                exit_code: match &e {
                    _ if e.is_invalid_input() => exit::INVALID_INPUT,
                    MaintenanceError::Locked(LockError::Held { .. }) => exit::LOCKED,
                    MaintenanceError::OverLimit(_) => exit::OVER_LIMIT,
                    MaintenanceError::Interrupted { .. } => interrupt.signal().map_or(exit::OTHER, |s| 128 + s as u8),
                    _ => exit::REGISTRY_FAILURE,
                },
                message: e.to_string(),
            })?;
            if let Some(path) = report {
                write_json_file(&path, &outcome.report)?;
            }
            if let Some(path) = plan_file {
                write_json_file(&path, &outcome.plan)?;
            }
            if let Some(path) = summary_file {
                write(&path, &serde_json::to_string(&outcome.report.compact()).expect("summary serializes"))?;
            }
            match output {
                Output::Json => print_json(&outcome.report)?,
                Output::Table => {
                    if outcome.report.dry_run {
                        print!("{}", plan::render::table(&outcome.plan, false));
                    }
                    print!("{}", outcome.report.human());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { url, access, output } => {
            let client = client(&url, &access)?;
            let report = regsweep::verify::verify_registry(&client).await.map_err(Failure::registry)?;
            match output {
                Output::Json => print_json(&report)?,
                Output::Table => {
                    println!(
                        "verified {} repositories, {} tags, {} manifests, {} blobs: {}",
                        report.repositories,
                        report.tags,
                        report.manifests,
                        report.blobs,
                        if report.is_ok() {
                            "all fetchable with correct digests".to_string()
                        } else {
                            format!("{} problem(s)", report.problems.len())
                        }
                    );
                    for p in &report.problems {
                        println!(
                            "  {}:{} {}: {}",
                            p.repository,
                            p.tag,
                            p.digest.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                            p.problem
                        );
                    }
                }
            }
            Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(exit::VERIFY_FAILED) })
        }
        Command::Quarantine { command } => super::quarantine::list(command).await,
        Command::Restore { url, access, run, references, force, output } => {
            super::quarantine::restore(&client(&url, &access)?, run, &references, force, output).await
        }
        Command::Demo { registry_bin } => {
            regsweep::demo::run(registry_bin.as_deref()).await.map(|_| ExitCode::SUCCESS).map_err(Failure::other)
        }
        Command::CopySelf { dest } => {
            use std::os::unix::fs::PermissionsExt;
            let me = std::env::current_exe().map_err(Failure::other)?;
            std::fs::copy(&me, &dest).map_err(|e| Failure::other(format!("cannot copy {} to {}: {e}", me.display(), dest.display())))?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).map_err(Failure::other)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rbac { output } => {
            match output {
                Output::Table => print!("{}", regsweep::operator::rbac::render_table()),
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(regsweep::operator::rbac::PERMISSIONS).map_err(Failure::other)?)
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Crd => {
            print!("{}", regsweep::policy::crd_yaml());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An output file must be writable before the sweep starts, not found unwritable after it.
/// Checked without creating anything.
fn check_writable(flag: &str, path: &Path) -> Result<(), Failure> {
    let bad = |why: String| Failure::invalid(format!("{flag} {}: {why}; nothing was changed", path.display()));
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Err(bad("is a directory".into())),
        Ok(_) => return std::fs::OpenOptions::new().append(true).open(path).map(drop).map_err(|e| bad(format!("cannot be written: {e}"))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(bad(e.to_string())),
        Err(_) => {}
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(bad(format!("its directory {} does not exist", parent.display())));
    }
    nix::unistd::access(parent, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK)
        .map_err(|e| bad(format!("its directory {} is not writable: {e}", parent.display())))
}

/// Pretty JSON streamed to `out`, not built in memory first: a plan of 200,000 tags is tens
/// of megabytes of text.
fn write_json(out: impl std::io::Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(out);
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn write_json_file(path: &Path, value: &impl serde::Serialize) -> Result<(), Failure> {
    std::fs::File::create(path)
        .and_then(|file| write_json(file, value))
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))
}

pub(super) fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    write_json(std::io::stdout().lock(), value).map_err(|e| Failure::other(format!("cannot write to standard output: {e}")))
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))
}

fn client_options(access: &RegistryAccess) -> ClientOptions {
    ClientOptions {
        username: access.username.clone(),
        password: access.password.clone(),
        ca_cert: access.ca_cert.clone(),
        insecure_skip_tls_verify: access.insecure_skip_tls_verify,
        ..Default::default()
    }
}

pub(super) fn client(url: &str, access: &RegistryAccess) -> Result<RegistryClient, Failure> {
    RegistryClient::new(url, client_options(access)).map_err(Failure::invalid)
}

/// `--protect` and `--protect-file` references; those naming another registry are dropped
/// with a warning (the operator's in-use scan passes every image it finds).
fn protections(protect: &Protect, hosts: &[String]) -> Result<Vec<Protection>, Failure> {
    let mut refs = protect.refs.clone();
    if let Some(file) = &protect.protect_file {
        let text = std::fs::read_to_string(file).map_err(|e| Failure::invalid(format!("--protect-file {}: {e}", file.display())))?;
        refs.extend(text.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_string()).filter(|l| !l.is_empty()));
    }
    let mut out = Vec::new();
    for r in refs {
        let reference = ProtectedRef::parse(&r).map_err(|e| Failure::invalid(format!("--protect: {e}")))?;
        if reference.names_registry(hosts) {
            out.push(Protection::in_use(reference));
        } else {
            tracing::warn!(reference = %r, "protected reference names another registry; ignored");
        }
    }
    Ok(out)
}
