//! The blob store's sizes, compact: a sorted table of (digest, size), 40 bytes a blob. At
//! 200,000 tags the store holds about 630,000 blobs; a `HashMap` of them took twice that.
//! A blob's position in the table is its index for the planner's marks (see
//! [`crate::plan::estimate`]).

use serde::Serialize;

use crate::digest::Digest;

#[derive(Clone, Debug, Default, Serialize)]
#[serde(into = "std::collections::BTreeMap<Digest, u64>")]
pub struct Blobs {
    /// Sorted by digest, no digest twice.
    table: Vec<(Digest, u64)>,
}

impl From<Blobs> for std::collections::BTreeMap<Digest, u64> {
    fn from(b: Blobs) -> Self {
        b.table.into_iter().collect()
    }
}

impl Blobs {
    /// From entries in any order (the last size of a digest given twice wins).
    pub fn from_unsorted(mut table: Vec<(Digest, u64)>) -> Blobs {
        table.sort_by_key(|(d, _)| *d);
        table.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 = later.1;
            }
            same
        });
        table.shrink_to_fit();
        Blobs { table }
    }

    /// Adds or replaces one blob (for snapshots built by hand; O(n)).
    pub fn insert(&mut self, digest: Digest, size: u64) {
        match self.table.binary_search_by_key(&digest, |(d, _)| *d) {
            Ok(at) => self.table[at].1 = size,
            Err(at) => self.table.insert(at, (digest, size)),
        }
    }

    /// The blob's position in the table.
    pub fn index(&self, digest: &Digest) -> Option<usize> {
        self.table.binary_search_by_key(digest, |(d, _)| *d).ok()
    }

    pub fn get(&self, digest: &Digest) -> Option<u64> {
        self.index(digest).map(|at| self.table[at].1)
    }

    pub fn contains_key(&self, digest: &Digest) -> bool {
        self.index(digest).is_some()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn total_bytes(&self) -> u64 {
        self.table.iter().map(|(_, s)| s).sum()
    }

    /// Every blob with its size, in digest order; the position is [`Blobs::index`].
    pub fn iter(&self) -> impl Iterator<Item = (&Digest, u64)> {
        self.table.iter().map(|(d, s)| (d, *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sorted_table_found_by_digest() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let mut blobs = Blobs::from_unsorted(vec![(c, 3), (a, 1), (c, 30)]);
        assert_eq!((blobs.len(), blobs.get(&c), blobs.get(&b)), (2, Some(30), None));
        blobs.insert(b, 2);
        blobs.insert(a, 10);
        let order: Vec<Digest> = blobs.iter().map(|(d, _)| *d).collect();
        let mut sorted = vec![a, b, c];
        sorted.sort();
        assert_eq!(order, sorted);
        assert_eq!((blobs.total_bytes(), blobs.index(&order[1])), (42, Some(1)));
    }
}
