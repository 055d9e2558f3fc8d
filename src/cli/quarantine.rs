//! `quarantine list` and `restore`.

use std::process::ExitCode;

use chrono::Utc;
use regsweep::quarantine::restore::{RestoreError, Selector, restore as restore_selected};
use regsweep::quarantine::{Record, list as records};
use regsweep::registry::RegistryClient;
use regsweep::storage::Layout;
use regsweep::units;

use super::commands::{client, print_json};
use super::{CliResult, Failure, Output, QuarantineCommand};

pub async fn list(command: QuarantineCommand) -> CliResult {
    let QuarantineCommand::List { storage, url, access, output } = command;
    let found = match (storage, url) {
        (Some(dir), _) => {
            let layout = Layout::new(&dir);
            regsweep::storage::read::check_root(&layout).map_err(Failure::invalid)?;
            records::from_storage(&layout)
        }
        (None, Some(url)) => records::from_api(&client(&url, &access)?).await.map_err(Failure::registry)?,
        (None, None) => return Err(Failure::invalid("give --storage DIR or --url URL")),
    };
    for p in &found.problems {
        tracing::warn!(problem = %p, "quarantine record not readable");
    }
    let now = Utc::now();
    match output {
        Output::Json => {
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Listed<'a> {
                #[serde(flatten)]
                record: &'a Record,
                expired: bool,
            }
            let listed: Vec<Listed> = found.records.iter().map(|r| Listed { record: r, expired: r.is_expired(now) }).collect();
            print_json(&serde_json::json!({ "records": listed, "problems": found.problems }))?;
        }
        Output::Table => print!("{}", table(&found.records, now)),
    }
    Ok(ExitCode::SUCCESS)
}

fn table(records: &[Record], now: chrono::DateTime<Utc>) -> String {
    if records.is_empty() {
        return "nothing in quarantine\n".into();
    }
    let mut rows = vec![["RUN".to_string(), "REFERENCE".into(), "DIGEST".into(), "DELETED".into(), "EXPIRES".into(), "SIZE".into()]];
    for r in records {
        for e in &r.entries {
            let reference = if e.tags.is_empty() {
                format!("{}@{}", r.repository, e.digest.short())
            } else {
                format!("{}:{}", r.repository, e.tags.join(","))
            };
            let expires = if r.is_expired(now) {
                format!("{} (expired)", r.expires_at.format("%Y-%m-%d %H:%M"))
            } else {
                r.expires_at.format("%Y-%m-%d %H:%M").to_string()
            };
            rows.push([
                r.run_id.clone(),
                reference,
                e.digest.to_string(),
                r.deleted_at.format("%Y-%m-%d %H:%M").to_string(),
                expires,
                units::bytes(e.bytes),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

pub async fn restore(client: &RegistryClient, run: Option<String>, references: &[String], force: bool, output: Output) -> CliResult {
    let selectors: Vec<Selector> = match run {
        Some(run) => vec![Selector::Run(run)],
        None => references.iter().map(|r| Selector::parse_reference(r)).collect::<Result<_, _>>().map_err(Failure::invalid)?,
    };
    let report = restore_selected(client, &selectors, force, Utc::now()).await.map_err(|e| match e {
        RestoreError::Refused(_) => Failure::invalid(e),
        RestoreError::Registry(_) => Failure::registry(e),
    })?;
    match output {
        Output::Json => print_json(&report)?,
        Output::Table => {
            for e in &report.restored {
                let tags = if e.tags.is_empty() { "(untagged)".to_string() } else { e.tags.join(", ") };
                println!("restored {}@{} ({tags}) from run {}", e.repository, e.digest, e.run_id);
                for (tag, was) in &e.replaced {
                    println!("  {}:{tag} pointed at {was}; it names the restored image again", e.repository);
                }
            }
            println!(
                "{} image(s) restored: {} manifest(s) pushed, {} blob(s) mounted, {} copied, {} already there",
                report.restored.len(),
                report.manifests_pushed,
                report.blobs_mounted,
                report.blobs_copied,
                report.blobs_present
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
