//! Quarantine: what a sweep deletes stays restorable, whole, until it expires.
//!
//! The registry itself holds it, so it works on a stock registry and survives its collector:
//! a reserved repository per source repository, `regsweep-quarantine/<repository>`, links
//! every deleted manifest (and every child of a deleted index) as a revision and its config
//! and layers as blobs, so `garbage-collect` marks them like any other image. Each linked
//! manifest is also tagged `m-<hex>` there, so even `garbage-collect --delete-untagged` keeps
//! it. One small OCI index per run and source repository, tagged `run-<run id>`, is the
//! record: it lists the deleted manifests with their original tags, and says when they were
//! deleted and when they expire. Nothing is copied; the links are written on the frozen
//! storage before the first delete.
//!
//! Expiry is an ordinary plan decision (see [`crate::plan`]): a sweep after a record expires
//! deletes the record and every manifest in the quarantine repository that no live record
//! needs, and the collector frees their bytes. No rule ever matches a quarantine repository.

pub mod list;
pub mod prepare;
pub mod record;
pub mod restore;
pub mod write;

pub use record::{Entry, Record};

/// The reserved namespace: `regsweep-quarantine/<source repository>`.
pub const NAMESPACE: &str = "regsweep-quarantine";

/// The quarantine repository of a source repository.
pub fn repository_for(source: &str) -> String {
    format!("{NAMESPACE}/{source}")
}

/// The source repository of a quarantine repository; `None` for any other repository.
pub fn source_of(repository: &str) -> Option<&str> {
    repository.strip_prefix(NAMESPACE).and_then(|rest| rest.strip_prefix('/')).filter(|s| !s.is_empty())
}

/// True for the reserved namespace and everything in it (even a repository named just
/// `regsweep-quarantine`): none of it is ever matched by a rule.
pub fn is_quarantine(repository: &str) -> bool {
    repository == NAMESPACE || source_of(repository).is_some()
}

/// The tag of a run's record. Run ids are 12 hex characters (the operator's) or whatever
/// `--run-id` was given; what a tag cannot hold becomes `-`.
pub fn record_tag(run_id: &str) -> String {
    let safe: String =
        run_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' { c } else { '-' }).collect();
    let mut tag = format!("run-{safe}");
    tag.truncate(128);
    tag
}

/// The tag that keeps one quarantined manifest tagged (so `--delete-untagged` keeps it too).
pub fn manifest_tag(digest: &crate::digest::Digest) -> String {
    format!("m-{}", digest.hex())
}

/// True when `tag` is the `m-<hex>` tag of `digest`.
pub fn is_manifest_tag(tag: &str, digest: &crate::digest::Digest) -> bool {
    tag.strip_prefix("m-") == Some(&digest.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(repository_for("team/app"), "regsweep-quarantine/team/app");
        assert_eq!(source_of("regsweep-quarantine/team/app"), Some("team/app"));
        assert_eq!(source_of("regsweep-quarantine"), None);
        assert_eq!(source_of("regsweep-quarantined/app"), None);
        assert!(is_quarantine("regsweep-quarantine") && is_quarantine("regsweep-quarantine/a"));
        assert!(!is_quarantine("team/regsweep-quarantine") && !is_quarantine("regsweep-quarantine-x"));
        assert_eq!(record_tag("0123abcd"), "run-0123abcd");
        assert_eq!(record_tag("a/b c"), "run-a-b-c");
        assert_eq!(record_tag(&"x".repeat(300)).len(), 128);
    }
}
