//! The blob store's sizes, compact: (digest, size) pairs, 40 bytes a blob, in 256 sorted
//! buckets by the digest's first byte (the store's own `<xx>/` prefixes). At 200,000 tags the
//! store holds about 700,000 blobs; a `HashMap` of them took twice that, and one table grown
//! by pushes (then sorted and shrunk) held up to two and a half times its size at the peak:
//! a bucket is a prefix's own list, moved in whole.
//! A blob's position in digest order is its index for the planner's marks (see
//! [`crate::plan::estimate`]).

use serde::Serialize;

use crate::digest::Digest;

const BUCKETS: usize = 256;

#[derive(Clone, Debug, Serialize)]
#[serde(into = "std::collections::BTreeMap<Digest, u64>")]
pub struct Blobs {
    /// `buckets[b]`: the blobs whose digest starts with byte `b`, sorted, no digest twice.
    buckets: Vec<Vec<(Digest, u64)>>,
    /// `starts[b]`: how many blobs the buckets before `b` hold (their first index).
    starts: Vec<usize>,
}

impl Default for Blobs {
    fn default() -> Self {
        Blobs::from_parts(Vec::new())
    }
}

impl From<Blobs> for std::collections::BTreeMap<Digest, u64> {
    fn from(b: Blobs) -> Self {
        b.buckets.into_iter().flatten().collect()
    }
}

/// The bucket of a digest: its first byte.
fn bucket_of(digest: &Digest) -> usize {
    digest.bytes()[0] as usize
}

/// Sorts a bucket and keeps the last size of a digest given twice.
fn settle(bucket: &mut Vec<(Digest, u64)>) {
    bucket.sort_by_key(|(d, _)| *d);
    bucket.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1 = later.1;
        }
        same
    });
    bucket.shrink_to_fit();
}

impl Blobs {
    /// From entries in any order (the last size of a digest given twice wins).
    pub fn from_unsorted(table: Vec<(Digest, u64)>) -> Blobs {
        Blobs::from_parts(vec![table])
    }

    /// From parts in any order, each in any order. A part whose digests all share their
    /// first byte (a prefix directory's list) becomes that bucket without a copy when the
    /// bucket is still empty; anything else is moved in entry by entry.
    pub fn from_parts(parts: Vec<Vec<(Digest, u64)>>) -> Blobs {
        let mut buckets: Vec<Vec<(Digest, u64)>> = (0..BUCKETS).map(|_| Vec::new()).collect();
        for part in parts {
            let Some(first) = part.first().map(|(d, _)| bucket_of(d)) else { continue };
            if buckets[first].is_empty() && part.iter().all(|(d, _)| bucket_of(d) == first) {
                buckets[first] = part;
            } else {
                for entry in part {
                    buckets[bucket_of(&entry.0)].push(entry);
                }
            }
        }
        buckets.iter_mut().for_each(settle);
        let mut blobs = Blobs { buckets, starts: vec![0; BUCKETS + 1] };
        blobs.count();
        blobs
    }

    fn count(&mut self) {
        for b in 0..BUCKETS {
            self.starts[b + 1] = self.starts[b] + self.buckets[b].len();
        }
    }

    /// The digest's bucket and its position there.
    fn locate(&self, digest: &Digest) -> Option<(usize, usize)> {
        let b = bucket_of(digest);
        self.buckets[b].binary_search_by_key(digest, |(d, _)| *d).ok().map(|at| (b, at))
    }

    /// Adds or replaces one blob (for snapshots built by hand).
    pub fn insert(&mut self, digest: Digest, size: u64) {
        let bucket = &mut self.buckets[bucket_of(&digest)];
        match bucket.binary_search_by_key(&digest, |(d, _)| *d) {
            Ok(at) => bucket[at].1 = size,
            Err(at) => {
                bucket.insert(at, (digest, size));
                self.count();
            }
        }
    }

    /// The blob's position in digest order.
    pub fn index(&self, digest: &Digest) -> Option<usize> {
        self.locate(digest).map(|(b, at)| self.starts[b] + at)
    }

    pub fn get(&self, digest: &Digest) -> Option<u64> {
        self.locate(digest).map(|(b, at)| self.buckets[b][at].1)
    }

    pub fn contains_key(&self, digest: &Digest) -> bool {
        self.locate(digest).is_some()
    }

    pub fn len(&self) -> usize {
        self.starts[BUCKETS]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn total_bytes(&self) -> u64 {
        self.iter().map(|(_, s)| s).sum()
    }

    /// Every blob with its size, in digest order; the position is [`Blobs::index`].
    pub fn iter(&self) -> impl Iterator<Item = (&Digest, u64)> {
        self.buckets.iter().flatten().map(|(d, s)| (d, *s))
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

    #[test]
    fn parts_of_any_shape_make_one_table_in_digest_order() {
        // Many digests over every bucket, cut into parts by prefix (moved in whole), into
        // mixed parts and a part repeating digests with new sizes (the last wins).
        let digests: Vec<Digest> = (0..3000u32).map(|i| Digest::of(&i.to_le_bytes())).collect();
        let mut by_prefix: std::collections::BTreeMap<u8, Vec<(Digest, u64)>> = Default::default();
        for (i, d) in digests.iter().enumerate().take(2000) {
            by_prefix.entry(d.bytes()[0]).or_default().push((*d, i as u64));
        }
        let mut parts: Vec<Vec<(Digest, u64)>> = by_prefix.into_values().rev().collect();
        parts.push(digests[2000..].iter().enumerate().map(|(i, d)| (*d, 2000 + i as u64)).collect());
        parts.push(digests[..10].iter().map(|d| (*d, 7)).collect());
        parts.push(Vec::new());
        let blobs = Blobs::from_parts(parts);
        assert_eq!(blobs.len(), digests.len());
        let order: Vec<(Digest, u64)> = blobs.iter().map(|(d, s)| (*d, s)).collect();
        let mut expected: Vec<(Digest, u64)> = digests.iter().enumerate().map(|(i, d)| (*d, if i < 10 { 7 } else { i as u64 })).collect();
        expected.sort();
        assert_eq!(order, expected);
        for (at, (d, size)) in expected.iter().enumerate() {
            assert_eq!((blobs.index(d), blobs.get(d)), (Some(at), Some(*size)));
        }
        assert_eq!(blobs.index(&Digest::of(b"absent")), None);
        assert_eq!(blobs.total_bytes(), expected.iter().map(|(_, s)| s).sum::<u64>());
        assert!(Blobs::default().is_empty() && Blobs::default().iter().next().is_none());
    }
}
