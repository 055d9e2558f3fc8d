//! What can be restored: every quarantine record, read from the storage (no registry needed)
//! or through the registry's API (catalog, tags, the `run-<id>` tags' manifests).

use std::path::Path;

use crate::registry::{RegistryClient, RegistryError};
use crate::storage::Layout;
use crate::storage::entry::{self, Kind, Listing};

use super::Record;

/// Records found, and what could not be read (each with where).
#[derive(Debug, Default)]
pub struct Found {
    pub records: Vec<Record>,
    pub problems: Vec<String>,
}

impl Found {
    fn sort(mut self) -> Self {
        self.records.sort_by(|a, b| b.deleted_at.cmp(&a.deleted_at).then_with(|| a.repository.cmp(&b.repository)));
        self
    }
}

fn is_record_tag(tag: &str) -> bool {
    tag.starts_with("run-")
}

/// Every record under `<root>/.../repositories/regsweep-quarantine`, never through a symlink.
pub fn from_storage(layout: &Layout) -> Found {
    let mut found = Found::default();
    let mut repositories = Vec::new();
    find(&layout.repository(super::NAMESPACE), super::NAMESPACE, &mut repositories);
    for repository in repositories {
        let Listing::Entries(tags) = entry::list(&layout.tags(&repository)) else { continue };
        for tag in tags.iter().filter(|t| t.kind == Kind::Dir && is_record_tag(&t.name)) {
            let link = layout.tag_current_link(&repository, &tag.name);
            let read = entry::read_link(&link)
                .map_err(|e| e.to_string())
                .and_then(|d| d.ok_or_else(|| "the tag has no current link".to_string()))
                .and_then(|d| {
                    let path = layout.blob_data(&d);
                    match entry::kind_of(&path) {
                        Ok(Some(Kind::File)) => std::fs::read(&path).map_err(|e| e.to_string()),
                        _ => Err(format!("its manifest {d} is not a regular file in the blob store")),
                    }
                })
                .and_then(|body| Record::from_manifest(&body).unwrap_or_else(|| Err("not a quarantine record".into())));
            match read {
                Ok(record) => found.records.push(record),
                Err(e) => found.problems.push(format!("{repository}:{}: {e}", tag.name)),
            }
        }
    }
    found.sort()
}

fn find(dir: &Path, name: &str, out: &mut Vec<String>) {
    let Listing::Entries(children) = entry::list(dir) else { return };
    if children.iter().any(|c| c.name == "_manifests") {
        out.push(name.to_string());
    }
    for c in children.iter().filter(|c| c.kind == Kind::Dir && !c.name.starts_with('_')) {
        find(&c.path, &format!("{name}/{}", c.name), out);
    }
}

/// Every record the registry serves.
pub async fn from_api(client: &RegistryClient) -> Result<Found, RegistryError> {
    let mut found = Found::default();
    for repository in client.catalog().await?.into_iter().filter(|r| super::source_of(r).is_some()) {
        for tag in client.tags(&repository).await?.into_iter().filter(|t| is_record_tag(t)) {
            let read = match client.get_manifest(&repository, &tag).await {
                Ok(m) => Record::from_manifest(&m.body).unwrap_or_else(|| Err("not a quarantine record".into())),
                Err(e) => Err(e.to_string()),
            };
            match read {
                Ok(record) => found.records.push(record),
                Err(e) => found.problems.push(format!("{repository}:{tag}: {e}")),
            }
        }
    }
    Ok(found.sort())
}
