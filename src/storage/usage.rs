//! Bytes on disk under the storage root: measured, not estimated.

use std::path::Path;

use serde::Serialize;

use super::layout::Layout;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub total_bytes: u64,
    pub blob_bytes: u64,
    pub blobs: usize,
    pub files: usize,
}

fn walk(dir: &Path, usage: &mut Usage, in_blobs: bool) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), usage, in_blobs)?;
        } else if kind.is_file() {
            let len = entry.metadata()?.len();
            usage.files += 1;
            usage.total_bytes += len;
            if in_blobs && entry.file_name() == "data" {
                usage.blobs += 1;
                usage.blob_bytes += len;
            }
        }
    }
    Ok(())
}

pub fn measure(layout: &Layout) -> std::io::Result<Usage> {
    let mut usage = Usage::default();
    walk(&layout.blobs(), &mut usage, true)?;
    walk(&layout.repositories(), &mut usage, false)?;
    Ok(usage)
}
