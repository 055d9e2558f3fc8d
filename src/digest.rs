//! Content digests (`sha256:<hex>`), the identity of every manifest and blob.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 hex>` digest. Only sha256 is accepted: it is the only
/// algorithm the registry's filesystem layout stores (`blobs/sha256/...`).
///
/// Stored as the 32 bytes of the hash (no allocation, `Copy`): a snapshot of 200,000 tags
/// holds millions of digests; as text each took 71 bytes, as a heap `String` nearly 100.
/// Orders like the text (hex preserves the order of the bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest([u8; 32]);

const PREFIX: &str = "sha256:";
const TEXT_LEN: usize = PREFIX.len() + 64;

/// A digest as text, on the stack: `sha256:<hex>`, its hex, or a short hex. Reads as a `&str`.
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    bytes: [u8; TEXT_LEN],
    start: u8,
}

impl<const N: usize> std::ops::Deref for Text<N> {
    type Target = str;
    fn deref(&self) -> &str {
        // Only ever built from ASCII.
        std::str::from_utf8(&self.bytes[self.start as usize..self.start as usize + N]).expect("a digest is ASCII")
    }
}

impl<const N: usize> AsRef<str> for Text<N> {
    fn as_ref(&self) -> &str {
        self
    }
}

impl<const N: usize> AsRef<[u8]> for Text<N> {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl<const N: usize> PartialEq for Text<N> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialOrd for Text<N> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (**self).partial_cmp(&**other)
    }
}

impl<const N: usize> AsRef<std::path::Path> for Text<N> {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&**self)
    }
}

impl<const N: usize> AsRef<std::ffi::OsStr> for Text<N> {
    fn as_ref(&self) -> &std::ffi::OsStr {
        std::ffi::OsStr::new(&**self)
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self)
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<const N: usize> PartialEq<str> for Text<N> {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<&str> for Text<N> {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

/// `sha256:<64 hex>`.
pub type FullText = Text<TEXT_LEN>;
/// The 64 hex characters.
pub type Hex = Text<64>;
/// The first 12 hex characters, for tables.
pub type Short = Text<12>;

impl Digest {
    fn text<const N: usize>(&self, start: usize) -> Text<N> {
        let mut bytes = [0u8; TEXT_LEN];
        bytes[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        hex::encode_to_slice(self.0, &mut bytes[PREFIX.len()..]).expect("64 hex characters fit");
        Text { bytes, start: start as u8 }
    }
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| format!("digest {s:?} is not of the form sha256:<hex>"))?;
        Self::from_hex(hex).map_err(|_| format!("digest {s:?} is not of the form sha256:<64 lowercase hex>"))
    }

    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            hex::decode_to_slice(hex, &mut bytes).expect("checked hex");
            Ok(Digest(bytes))
        } else {
            Err(format!("{hex:?} is not 64 lowercase hex characters"))
        }
    }

    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> Hex {
        self.text(PREFIX.len())
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> FullText {
        self.text(0)
    }

    /// The first 12 hex characters, for tables.
    pub fn short(&self) -> Short {
        self.text(PREFIX.len())
    }

    /// The hash itself.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
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
        Digest(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d = Digest::of(b"hello");
        assert_eq!(Digest::parse(&d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("sha512:".to_string().as_str()).is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert_eq!(d.as_str(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        let mut h = Hasher::default();
        h.update(b"hel");
        h.update(b"lo");
        assert_eq!(h.finish(), d);
        assert_eq!(d.hex(), &d.as_str()[7..]);
        assert_eq!((&*d.short(), format!("{:>14}", d.short())), ("2cf24dba5fb0", "  2cf24dba5fb0".to_string()));
        assert_eq!(std::mem::size_of::<Digest>(), 32);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
        // Ordered like the text.
        let (a, b) =
            (Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap(), Digest::parse(&format!("sha256:{}", "f".repeat(64))).unwrap());
        assert!(a < b && a.as_str() < b.as_str());
    }
}
