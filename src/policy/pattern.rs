//! Name patterns: repository globs and tag patterns (glob, or an anchored regular expression
//! after `regex:`). The `regex` crate runs in linear time, so a policy cannot stall the planner.

use globset::{Glob, GlobBuilder, GlobMatcher};
use regex::Regex;

/// A glob over repository names: `*` stays within one path segment, `**` crosses segments.
#[derive(Clone, Debug)]
pub struct RepoGlob {
    source: String,
    matcher: GlobMatcher,
}

impl RepoGlob {
    pub fn new(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("an empty repository glob matches nothing".into());
        }
        if source.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "repository glob {source:?} has upper-case letters, but repository names are lower-case; it can never match"
            ));
        }
        let glob = GlobBuilder::new(source)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("repository glob {source:?} is invalid: {}", e.kind()))?;
        Ok(RepoGlob { source: source.to_string(), matcher: glob.compile_matcher() })
    }

    pub fn is_match(&self, repository: &str) -> bool {
        self.matcher.is_match(repository)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

/// A tag pattern: a glob (`v*`, `release-?`), or `regex:<expr>` matched against the whole tag.
#[derive(Clone, Debug)]
pub struct TagPattern {
    source: String,
    kind: TagPatternKind,
}

#[derive(Clone, Debug)]
enum TagPatternKind {
    Glob(GlobMatcher),
    Regex(Regex),
}

/// Tags are at most 128 characters of `[A-Za-z0-9_.-]`, starting with a word character.
const TAG_CHARS: &str = "letters, digits, '_', '.' and '-'";

impl TagPattern {
    pub fn new(source: &str) -> Result<Self, String> {
        if let Some(expr) = source.strip_prefix("regex:") {
            let anchored = format!("^(?:{expr})$");
            let re = regex::RegexBuilder::new(&anchored)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("tag pattern {source:?} is not a valid regular expression: {e}"))?;
            return Ok(TagPattern { source: source.to_string(), kind: TagPatternKind::Regex(re) });
        }
        if source.is_empty() {
            return Err("an empty tag pattern matches nothing; use \"*\" for every tag".into());
        }
        if source.contains('/') {
            return Err(format!(
                "tag pattern {source:?} contains '/', which tags never contain (tags are {TAG_CHARS}); it can never match"
            ));
        }
        let glob = Glob::new(source).map_err(|e| format!("tag pattern {source:?} is not a valid glob: {}", e.kind()))?;
        Ok(TagPattern { source: source.to_string(), kind: TagPatternKind::Glob(glob.compile_matcher()) })
    }

    pub fn is_match(&self, tag: &str) -> bool {
        match &self.kind {
            TagPatternKind::Glob(m) => m.is_match(tag),
            TagPatternKind::Regex(re) => re.is_match(tag),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_globs_respect_segments() {
        let one = RepoGlob::new("team-a/*").unwrap();
        assert!(one.is_match("team-a/app"));
        assert!(!one.is_match("team-a/app/sub"));
        let all = RepoGlob::new("team-a/**").unwrap();
        assert!(all.is_match("team-a/app/sub"));
        assert!(!all.is_match("team-b/app"));
        assert!(RepoGlob::new("**").unwrap().is_match("a/b/c"));
        assert!(RepoGlob::new("Team/*").is_err());
        assert!(RepoGlob::new("a/[").is_err());
    }

    #[test]
    fn tag_patterns() {
        let v = TagPattern::new("v*").unwrap();
        assert!(v.is_match("v1.2") && !v.is_match("latest"));
        let re = TagPattern::new("regex:release-[0-9]+").unwrap();
        assert!(re.is_match("release-12"));
        assert!(!re.is_match("release-12-rc"), "regex is anchored at both ends");
        assert!(!re.is_match("xrelease-1"));
        assert!(TagPattern::new("regex:(").is_err());
        assert!(TagPattern::new("a/b").is_err());
        assert!(TagPattern::new("").is_err());
    }
}
