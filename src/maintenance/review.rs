//! Plans kept for review on the storage itself, `<root>/.regsweep/plans/<run id>.json`: the
//! operator's review run (a dry run) saves its plan there, and the run that executes the
//! approval reads it back from the same volume, so no plan has to fit in a ConfigMap. Outside
//! the registry's tree: the registry and its collector never see it.

use std::path::PathBuf;

use crate::plan::Plan;
use crate::plan::approval::Approval;
use crate::storage::Layout;

/// Saved plans kept; older ones are removed when a new one is saved.
const KEPT: usize = 10;

pub fn plans_dir(layout: &Layout) -> PathBuf {
    layout.root().join(".regsweep/plans")
}

fn file(layout: &Layout, run_id: &str) -> Result<PathBuf, String> {
    if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!("{run_id:?} is not a run id"));
    }
    Ok(plans_dir(layout).join(format!("{run_id}.json")))
}

/// Writes the plan (whole, as `plan -o json` does) and drops all but the newest saved plans.
pub fn save(layout: &Layout, run_id: &str, plan: &Plan) -> Result<PathBuf, String> {
    let path = file(layout, run_id)?;
    let dir = plans_dir(layout);
    let fail = |e: std::io::Error| format!("cannot save the plan under {}: {e}", dir.display());
    // Never through a symlink: `.regsweep` and `plans` must be real directories.
    for d in [layout.root().join(".regsweep"), dir.clone()] {
        match crate::storage::entry::kind_of(&d).map_err(fail)? {
            None => std::fs::create_dir(&d)
                .or_else(|e| if e.kind() == std::io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })
                .map_err(fail)?,
            Some(crate::storage::entry::Kind::Dir) => {}
            Some(k) => return Err(format!("{} is {}, not a directory", d.display(), k.describe())),
        }
    }
    let tmp = dir.join(format!(".{run_id}.json.tmp"));
    let text = serde_json::to_vec_pretty(plan).expect("plan serializes");
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)).map_err(fail)?;
    let mut saved: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .map_err(fail)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()) && e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    saved.sort();
    let excess = saved.len().saturating_sub(KEPT);
    for (_, old) in saved.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// The approval of the plan saved by run `run_id`.
pub fn load(layout: &Layout, run_id: &str) -> Result<Approval, String> {
    let path = file(layout, run_id)?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("the plan of run {run_id} ({}) cannot be read: {e}", path.display()))?;
    Approval::from_json(&text).map_err(|e| format!("the plan of run {run_id} ({}) {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            id: crate::plan::approval::plan_id(&[]),
            source: "test".into(),
            generated_at: chrono::Utc::now(),
            times: Default::default(),
            repositories: Vec::new(),
            summary: Default::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn saved_plans_load_back_and_only_the_newest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        for i in 0..12 {
            let path = save(&layout, &format!("run{i:02}"), &plan()).unwrap();
            let t = filetime::FileTime::from_unix_time(1_700_000_000 + i, 0);
            filetime::set_file_mtime(&path, t).unwrap();
        }
        assert_eq!(load(&layout, "run11").unwrap().id, plan().id);
        let left = std::fs::read_dir(plans_dir(&layout)).unwrap().count();
        assert_eq!(left, KEPT, "the oldest go");
        assert!(load(&layout, "run00").unwrap_err().contains("cannot be read"));
        assert!(load(&layout, "../etc").unwrap_err().contains("not a run id"));
    }

    #[test]
    fn never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let layout = Layout::new(dir.path().join("root"));
        std::fs::create_dir_all(layout.root()).unwrap();
        std::os::unix::fs::symlink(&outside, layout.root().join(".regsweep")).unwrap();
        assert!(save(&layout, "run1", &plan()).unwrap_err().contains("not a directory"));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
