//! Cosign-style signature tags: `sha256-<hex>.sig`, `.att`, `.sbom` name the image they sign.
//! They follow their subject: kept with it, deleted with it, never counted by `keepLatest`.

use crate::digest::Digest;

/// The subject digest a signature tag refers to, or None for an ordinary tag.
pub fn signature_subject(tag: &str) -> Option<Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.')?;
    if !matches!(suffix, "sig" | "att" | "sbom") {
        return None;
    }
    Digest::from_hex(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_cosign_tags() {
        let d = Digest::of(b"img");
        for s in ["sig", "att", "sbom"] {
            assert_eq!(signature_subject(&format!("sha256-{}.{s}", d.hex())), Some(d.clone()));
        }
        assert_eq!(signature_subject(&format!("sha256-{}.txt", d.hex())), None);
        assert_eq!(signature_subject("sha256-abc.sig"), None);
        assert_eq!(signature_subject("v1.0"), None);
    }
}
