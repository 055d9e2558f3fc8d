//! Name matching as the README documents it, written here rather than borrowed from
//! `regsweep::policy::pattern`, so the checker does not inherit the planner's mistakes.
//!
//! Repository globs: `*` and `?` stay within one path segment, `**` crosses segments. The
//! README does not say whether `team-a/**` matches `team-a` itself; src/policy/pattern.rs
//! builds globset globs, whose documented rule is that `foo/**` matches `foo/a` and `foo/a/b`
//! but not `foo`, and that `**/foo` and `a/**/b` match zero or more segments. The checker
//! follows that. The generator uses only `*`, `?`, `**` and literals.
//!
//! Tag patterns: a glob (`*`, `?`), or `regex:<expr>` anchored at both ends.

/// Matches a glob over one segment (or a whole tag) with `*` and `?`.
fn segment(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(b'*'), _) => segment(&pattern[1..], text) || (!text.is_empty() && segment(pattern, &text[1..])),
        (Some(b'?'), Some(_)) => segment(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => segment(&pattern[1..], &text[1..]),
        _ => false,
    }
}

fn segments(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some(&"**") => {
            // A trailing `/**` needs at least one more segment (globset's RecursiveSuffix);
            // `**` alone matches everything.
            if pattern.len() == 1 {
                return !name.is_empty();
            }
            (0..=name.len()).any(|skip| segments(&pattern[1..], &name[skip..]))
        }
        Some(p) => !name.is_empty() && segment(p.as_bytes(), name[0].as_bytes()) && segments(&pattern[1..], &name[1..]),
    }
}

pub fn repo_glob(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    segments(&p, &n)
}

pub fn tag_pattern(pattern: &str, tag: &str) -> bool {
    match pattern.strip_prefix("regex:") {
        Some(expr) => regex::Regex::new(&format!("^(?:{expr})$")).expect("generated regexes are valid").is_match(tag),
        None => segment(pattern.as_bytes(), tag.as_bytes()),
    }
}

/// A cosign-style tag (`sha256-<64 hex>.sig|.att|.sbom`) and the hex of its subject.
pub fn cosign_subject(tag: &str) -> Option<&str> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.')?;
    let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (ok && matches!(suffix, "sig" | "att" | "sbom")).then_some(hex)
}

/// README: references match the registry's `hosts` "with or without port". A reference
/// without a host names this registry. Two explicit, different ports are different registries
/// and an empty `hosts` accepts any host (src/policy/reference.rs; the README says neither).
pub fn names_registry(host: Option<&str>, hosts: &[String]) -> bool {
    let split = |h: &str| -> (String, Option<String>) {
        match h.rsplit_once(':') {
            Some((n, p)) => (n.to_ascii_lowercase(), Some(p.to_string())),
            None => (h.to_ascii_lowercase(), None),
        }
    };
    match host {
        None => true,
        Some(_) if hosts.is_empty() => true,
        Some(h) => {
            let (hn, hp) = split(h);
            hosts.iter().any(|k| {
                let (kn, kp) = split(k);
                kn == hn && (hp.is_none() || kp.is_none() || hp == kp)
            })
        }
    }
}

#[test]
fn matching_follows_the_documented_rules() {
    assert!(repo_glob("team-a/*", "team-a/app"));
    assert!(!repo_glob("team-a/*", "team-a/app/sub"));
    assert!(repo_glob("team-a/**", "team-a/app/sub"));
    assert!(!repo_glob("team-a/**", "team-a"));
    assert!(!repo_glob("team-a/**", "team-b/app"));
    assert!(repo_glob("**", "a/b/c"));
    assert!(repo_glob("**/z", "z") && repo_glob("**/z", "x/y/z"));
    assert!(repo_glob("x/**/z", "x/z") && repo_glob("x/**/z", "x/y/z"));
    assert!(repo_glob("team-?/app", "team-b/app"));
    assert!(!repo_glob("*", "team-a/app"));
    assert!(tag_pattern("v*", "v1.2") && !tag_pattern("v*", "latest"));
    assert!(tag_pattern("regex:release-[0-9]+", "release-12"));
    assert!(!tag_pattern("regex:release-[0-9]+", "release-12-rc"));
    assert!(tag_pattern("release-?", "release-1") && !tag_pattern("release-?", "release-12"));
    let hex = "a".repeat(64);
    assert_eq!(cosign_subject(&format!("sha256-{hex}.sig")), Some(hex.as_str()));
    assert_eq!(cosign_subject(&format!("sha256-{hex}.txt")), None);
    let hosts = vec!["registry.example.com".to_string(), "reg.svc:5000".to_string()];
    assert!(names_registry(Some("registry.example.com:443"), &hosts));
    assert!(names_registry(Some("reg.svc"), &hosts));
    assert!(!names_registry(Some("reg.svc:5001"), &hosts));
    assert!(!names_registry(Some("docker.io"), &hosts));
}
