//! Approval of a reviewed plan. A plan's id is a content hash of what it deletes; an approved
//! run deletes at most that: the plan made at run time is intersected with the approved one by
//! keeping (as if protected) everything the approval does not name, with the same digest. So a
//! tag pushed, retagged or protected since the review is kept, and whatever it holds with it.

use std::collections::HashSet;

use serde::Deserialize;

use super::{Action, Plan, Planner, Protection, RepositoryPlan};
use crate::digest::{Digest, Hasher};
use crate::policy::CompiledPolicy;
use crate::policy::reference::ProtectedRef;
use crate::storage::{Repository, Snapshot};

/// How many hex digits of the hash the id carries (80 bits).
const ID_HEX: usize = 20;

/// One thing a plan deletes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Deleted {
    Tag { repository: String, tag: String, digest: Digest },
    Manifest { repository: String, digest: Digest },
}

impl Deleted {
    /// Its line in the id's hash.
    fn line(&self) -> String {
        match self {
            Deleted::Tag { repository, tag, digest } => format!("tag\t{repository}\t{tag}\t{digest}\n"),
            Deleted::Manifest { repository, digest } => format!("manifest\t{repository}\t{digest}\n"),
        }
    }

    /// A reference that keeps it (a tag's keeps its digest too, which only keeps more).
    fn keeper(&self) -> Option<Protection> {
        let source = match self {
            Deleted::Tag { repository, tag, digest } => format!("{repository}:{tag}@{digest}"),
            Deleted::Manifest { repository, digest } => format!("{repository}@{digest}"),
        };
        ProtectedRef::parse(&source).ok().map(|reference| Protection { reference, label: "not in the approved plan" })
    }

    fn describe(&self) -> String {
        match self {
            Deleted::Tag { repository, tag, .. } => format!("tag {repository}:{tag}"),
            Deleted::Manifest { repository, digest } => format!("manifest {repository}@{digest}"),
        }
    }
}

fn deleted(repositories: &[RepositoryPlan]) -> impl Iterator<Item = Deleted> + '_ {
    repositories.iter().flat_map(|r| {
        let tags = r.tags.iter().filter(|t| t.action == Action::Delete).map(|t| Deleted::Tag {
            repository: r.name.clone(),
            tag: t.tag.clone(),
            digest: t.digest.clone(),
        });
        let manifests = r
            .manifests
            .iter()
            .filter(|m| m.action == Action::Delete)
            .map(|m| Deleted::Manifest { repository: r.name.clone(), digest: m.digest.clone() });
        tags.chain(manifests)
    })
}

fn id_of<'a>(items: impl Iterator<Item = &'a Deleted>) -> String {
    let mut lines: Vec<String> = items.map(Deleted::line).collect();
    lines.sort_unstable();
    let mut h = Hasher::default();
    for l in &lines {
        h.update(l.as_bytes());
    }
    format!("plan-{}", &h.finish().hex()[..ID_HEX])
}

/// `plan-<hash>` of every deleted tag (repository, tag, digest) and manifest (repository,
/// digest), in a fixed order.
pub fn plan_id(repositories: &[RepositoryPlan]) -> String {
    id_of(deleted(repositories).collect::<Vec<_>>().iter())
}

/// What a reviewed plan deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Approval {
    pub id: String,
    items: HashSet<Deleted>,
}

/// The parts of `plan -o json` an approval reads.
#[derive(Deserialize)]
struct PlanFile {
    id: String,
    repositories: Vec<RepoFile>,
}

#[derive(Deserialize)]
struct RepoFile {
    name: String,
    #[serde(default)]
    tags: Vec<EntryFile>,
    #[serde(default)]
    manifests: Vec<EntryFile>,
}

#[derive(Deserialize)]
struct EntryFile {
    #[serde(default)]
    tag: Option<String>,
    digest: Digest,
    action: Action,
}

impl Approval {
    pub fn of(plan: &Plan) -> Approval {
        Approval { id: plan.id.clone(), items: deleted(&plan.repositories).collect() }
    }

    /// Reads a plan written by `plan -o json`; refuses one whose content is not what its id
    /// says (edited after the review, or not a plan at all).
    pub fn from_json(text: &str) -> Result<Approval, String> {
        let file: PlanFile = serde_json::from_str(text)
            .map_err(|e| format!("is not a plan written by `regsweep plan -o json` ({e}); nothing was changed"))?;
        let mut items = HashSet::new();
        for r in file.repositories {
            for t in r.tags.into_iter().filter(|t| t.action == Action::Delete) {
                let tag = t.tag.ok_or("names a deleted tag without its name; nothing was changed")?;
                items.insert(Deleted::Tag { repository: r.name.clone(), tag, digest: t.digest });
            }
            for m in r.manifests.into_iter().filter(|m| m.action == Action::Delete) {
                items.insert(Deleted::Manifest { repository: r.name.clone(), digest: m.digest });
            }
        }
        let actual = id_of(items.iter());
        if actual != file.id {
            return Err(format!(
                "says it is plan {} but what it deletes hashes to {actual}: it was changed after it was made; nothing was changed",
                file.id
            ));
        }
        Ok(Approval { id: file.id, items })
    }

    /// What `plan` deletes that this approval does not (empty for a plan within it).
    pub fn beyond(&self, plan: &Plan) -> Vec<String> {
        deleted(&plan.repositories).filter(|d| !self.items.contains(d)).map(|d| d.describe()).collect()
    }

    /// `repo`'s decisions restricted to what this approval deletes: everything else it would
    /// delete is kept (as if protected), with whatever that keeps.
    pub fn restrict(&self, planner: &Planner, repo: &Repository) -> RepositoryPlan {
        let unrestricted = planner.decide(repo);
        let extra: Vec<Protection> =
            deleted(std::slice::from_ref(&unrestricted)).filter(|d| !self.items.contains(d)).filter_map(|d| d.keeper()).collect();
        if extra.is_empty() { unrestricted } else { planner.keeping(&extra).decide(repo) }
    }

    /// Refuses a restricted plan that still deletes something this approval does not name
    /// (adding protections only keeps more, so that is checked, not assumed).
    pub fn check_within(&self, plan: &Plan) -> Result<(), String> {
        let beyond = self.beyond(plan);
        if beyond.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the plan restricted to approved plan {} still deletes what it does not approve ({}); nothing was changed",
            self.id,
            beyond.join(", ")
        ))
    }
}

/// The plan of `snapshot`, restricted to what `approval` deletes, repository by repository.
pub fn plan_within(
    policy: &CompiledPolicy,
    snapshot: &Snapshot,
    protections: &[Protection],
    approval: &Approval,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Plan, String> {
    let planner = Planner::new(policy, protections, now, snapshot.sees_untagged);
    let within = super::plan_with(&planner, snapshot, |repo| approval.restrict(&planner, repo));
    approval.check_within(&within)?;
    Ok(within)
}
