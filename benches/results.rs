//! Recording benchmark rows in `bench/RESULTS.md`: each benchmark owns one table, found by its
//! header line; a row goes after the table's last row (the file has prose after the tables).

use std::path::Path;

/// `regsweep maintenance` of `reg` with `policy`, writing its JSON report to `report`: the
/// command every sweep benchmark times.
#[allow(dead_code)]
pub fn maintenance(reg: &regsweep::demo::DemoRegistry, policy: &Path, report: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"));
    cmd.args(["maintenance", "-f"])
        .arg(policy)
        .arg("--config")
        .arg(reg.config_path())
        .arg("--registry-bin")
        .arg(&reg.bin)
        .args(["--url", &reg.url(), "--report"])
        .arg(report);
    cmd
}

/// A policy keeping the newest `keep` tags of every repository matching `repositories`.
pub fn keep_latest_policy(name: &str, repositories: &str, keep: usize) -> String {
    format!(
        "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: {name}}}\nspec:\n  registry: {{}}\n  rules:\n    - repositories: [\"{repositories}\"]\n      keepLatest: {keep}\n"
    )
}

pub fn machine() -> String {
    format!("{} cores, {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), std::env::consts::ARCH)
}

/// Adds `row` to the table whose header is `header`, creating the table (under `title`,
/// with `intro`) at the end of the file when it is not there yet.
pub fn record(title: &str, intro: &str, header: &str, row: &str) -> std::io::Result<()> {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/RESULTS.md"));
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmark results\n".into());
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    match lines.iter().position(|l| l == header) {
        Some(at) => {
            let mut end = at + 1;
            while end < lines.len() && lines[end].starts_with('|') {
                end += 1;
            }
            lines.insert(end, row.to_string());
        }
        None => {
            let columns = header.matches('|').count().saturating_sub(1);
            lines.extend(["".into(), format!("## {title}"), "".into(), intro.into(), "".into(), header.into()]);
            lines.push(format!("|{}", "---|".repeat(columns)));
            lines.push(row.to_string());
        }
    }
    std::fs::write(path, lines.join("\n") + "\n")
}
