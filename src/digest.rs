//! Content digests (`sha256:<hex>`), the identity of every manifest and blob.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 hex>` digest. Only sha256 is accepted: it is the only
/// algorithm the registry's filesystem layout stores (`blobs/sha256/...`).
///
/// Stored inline (71 bytes, no allocation): a snapshot of 200,000 tags holds millions of
/// digests, and a heap `String` each nearly doubled its memory. Orders like the text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest([u8; DIGEST_LEN]);

const PREFIX: &str = "sha256:";
const DIGEST_LEN: usize = PREFIX.len() + 64;

impl Digest {
    /// From 64 lowercase hex bytes, already checked.
    fn from_checked_hex(hex: &[u8]) -> Self {
        let mut text = [0u8; DIGEST_LEN];
        text[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        text[PREFIX.len()..].copy_from_slice(hex);
        Digest(text)
    }

    fn from_bytes(sha: &[u8]) -> Self {
        Self::from_checked_hex(hex::encode(sha).as_bytes())
    }
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| format!("digest {s:?} is not of the form sha256:<hex>"))?;
        Self::from_hex(hex).map_err(|_| format!("digest {s:?} is not of the form sha256:<64 lowercase hex>"))
    }

    pub fn from_hex(hex: &str) -> Result<Self, String> {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Digest::from_checked_hex(hex.as_bytes()))
        } else {
            Err(format!("{hex:?} is not 64 lowercase hex characters"))
        }
    }

    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Digest::from_bytes(&Sha256::digest(bytes))
    }

    pub fn hex(&self) -> &str {
        &self.as_str()[PREFIX.len()..]
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from checked ASCII.
        std::str::from_utf8(&self.0).expect("a digest is ASCII")
    }

    /// The first 12 hex characters, for tables.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.as_str().to_string()
    }
}

impl std::str::FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Digest::parse(s)
    }
}

/// Incremental sha256, for verifying streamed blobs.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> Digest {
        Digest::from_bytes(&self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d = Digest::of(b"hello");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("sha512:".to_string().as_str()).is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert_eq!(d.as_str(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        let mut h = Hasher::default();
        h.update(b"hel");
        h.update(b"lo");
        assert_eq!(h.finish(), d);
        assert_eq!(d.hex(), &d.as_str()[7..]);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
        // Ordered like the text.
        let (a, b) =
            (Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap(), Digest::parse(&format!("sha256:{}", "f".repeat(64))).unwrap());
        assert!(a < b && a.as_str() < b.as_str());
    }
}
