//! The plan as a table a person reads: every tag, then the untagged manifests, then totals.

use std::fmt::Write;

use super::{Action, Plan};
use crate::units;

/// Signature tags carry a whole digest; the table shows its first 12 characters.
fn display_tag(tag: &str) -> String {
    match tag.strip_prefix("sha256-").and_then(|rest| rest.split_once('.')) {
        Some((hex, suffix)) if hex.len() == 64 => format!("sha256-{}….{suffix}", &hex[..12]),
        _ => tag.to_string(),
    }
}

fn action(a: Action) -> &'static str {
    match a {
        Action::Keep => "keep",
        Action::Delete => "DELETE",
    }
}

/// Renders the plan. `all` lists kept entries too; otherwise kept tags of untouched
/// repositories are summarised in one line each.
pub fn table(plan: &Plan, all: bool) -> String {
    let now = plan.generated_at;
    let mut rows: Vec<[String; 6]> = Vec::new();
    for repo in &plan.repositories {
        if crate::quarantine::is_quarantine(&repo.name) && !all {
            let expired = repo.manifests.iter().filter(|m| m.action == Action::Delete).count();
            rows.push([
                repo.name.clone(),
                format!("({} manifests)", repo.manifests.len()),
                String::new(),
                String::new(),
                if expired > 0 { format!("DELETE {expired}") } else { "keep".into() },
                if expired > 0 { "quarantine: expired".into() } else { "quarantine: restorable until it expires".into() },
            ]);
            continue;
        }
        let untouched = repo.rule.is_none();
        if untouched && !all {
            rows.push([
                repo.name.clone(),
                format!("({} tags)", repo.tags.len()),
                String::new(),
                String::new(),
                "keep".into(),
                "no rule matches this repository".into(),
            ]);
            continue;
        }
        for t in &repo.tags {
            rows.push([
                repo.name.clone(),
                display_tag(&t.tag),
                t.digest.short().to_string(),
                units::age(t.pushed, now),
                action(t.action).into(),
                t.reason.clone(),
            ]);
        }
        for m in repo.manifests.iter().filter(|m| m.tags.is_empty()) {
            rows.push([
                repo.name.clone(),
                "<untagged>".into(),
                m.digest.short().to_string(),
                units::age(m.pushed, now),
                action(m.action).into(),
                m.reason.clone(),
            ]);
        }
    }
    let header = ["REPOSITORY", "TAG", "DIGEST", "PUSHED", "ACTION", "REASON"].map(String::from);
    let mut widths = header.each_ref().map(|h| h.len());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "Plan for {} at {}", plan.source, now.format("%Y-%m-%d %H:%M:%S UTC"));
    for w in &plan.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> =
            r.iter().zip(widths).enumerate().map(|(i, (c, w))| if i == 5 { c.clone() } else { format!("{c:w$}") }).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "\n{} repositories; tags: {} kept, {} deleted; manifests: {} kept, {} deleted",
        s.repositories, s.tags_kept, s.tags_deleted, s.manifests_kept, s.manifests_deleted
    );
    let _ = writeln!(
        out,
        "garbage collection would free {} in {} blobs of {} (of which {} is already unreferenced)",
        units::bytes(s.estimate.bytes_freed),
        s.estimate.blobs_freed,
        units::bytes(s.estimate.blob_bytes_before),
        units::bytes(s.estimate.bytes_already_unreferenced)
    );
    if let Some(q) = &s.quarantine {
        let _ = writeln!(out, "{}", q.describe());
    }
    let _ = writeln!(out, "plan id {} (approve it with `maintenance --approved-plan` on this plan's JSON)", plan.id);
    out
}
