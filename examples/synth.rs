//! Writes a synthetic registry storage for profiling and by-hand benchmarking:
//! `cargo run --release --example synth -- <storage root> <tags>` (100 tags per repository,
//! the lean benchmark's mix). Serve it with `registry serve` on a config naming that root.

use regsweep::storage::Layout;
use regsweep::synth::{RepoShape, write};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(tags)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: synth <storage root> <tags>");
    };
    let tags: usize = tags.parse()?;
    let shapes: Vec<RepoShape> = (0..tags.div_ceil(100)).map(|i| RepoShape::mixed(format!("team-{}/app-{i}", i % 50), 100)).collect();
    let written = write(&Layout::new(&root), &shapes, chrono::Utc::now())?;
    println!("{} tags, {} manifests, {} blobs in {root}", written.tags, written.manifests, written.blobs);
    Ok(())
}
