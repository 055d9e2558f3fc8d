//! The circuit breaker (`spec.limits`): a plan that deletes more tags than the policy allows
//! is held before anything is frozen or deleted. The percentage is of the tags in the
//! repositories the rules match, so adding unrelated repositories does not loosen it.

use std::fmt;

use super::{Action, Plan, RepositoryPlan};
use crate::policy::spec::Limits;

/// How many repositories the message names, those with the most deletions first.
const NAMED: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverLimit {
    /// The limit exceeded, as the policy spells it (`maxDeletedTags 100`).
    pub limit: String,
    pub tags_deleted: usize,
    /// Tags in the repositories a rule matches.
    pub tags_matched: usize,
    /// Repositories by tags deleted, most first (at most five).
    pub top: Vec<(String, usize)>,
}

impl OverLimit {
    pub fn percent(&self) -> f64 {
        if self.tags_matched == 0 { 0.0 } else { 100.0 * self.tags_deleted as f64 / self.tags_matched as f64 }
    }
}

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let top: Vec<String> = self.top.iter().map(|(r, n)| format!("{r} ({n})")).collect();
        write!(
            f,
            "the plan deletes {} of the {} tags in the repositories the rules match ({:.1}%), over spec.limits.{}; nothing was changed. Most deletions: {}. Review the plan (`regsweep plan`), then raise the limit or approve this plan",
            self.tags_deleted,
            self.tags_matched,
            self.percent(),
            self.limit,
            top.join(", ")
        )
    }
}

/// `Err` when the plan exceeds a limit.
pub fn check(limits: &Limits, plan: &Plan) -> Result<(), OverLimit> {
    let matched = plan.repositories.iter().filter(|r| r.rule.is_some());
    let tags_matched: usize = matched.clone().map(RepositoryPlan::tag_count).sum();
    // A repository no rule matches deletes nothing.
    let tags_deleted: usize = matched.flat_map(|r| &r.tags).filter(|t| t.action == Action::Delete).count();
    let over_count = limits.max_deleted_tags.filter(|&max| tags_deleted as u64 > max).map(|max| format!("maxDeletedTags {max}"));
    // Compared in integers: deleted / matched > p / 100.
    let over_percent =
        limits.max_deleted_percent.filter(|&p| tags_deleted * 100 > p as usize * tags_matched).map(|p| format!("maxDeletedPercent {p}"));
    let Some(limit) = over_count.or(over_percent) else { return Ok(()) };
    Err(OverLimit { limit, tags_deleted, tags_matched, top: plan.largest(NAMED) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::plan::{RepositoryPlan, Summary, TagDecision};

    fn repo(name: &str, rule: Option<usize>, kept: usize, deleted: usize) -> RepositoryPlan {
        let tag = |i: usize, action| TagDecision {
            tag: format!("t{i}"),
            digest: Digest::of(format!("{name}{i}").as_bytes()),
            pushed: None,
            action,
            reason: String::new(),
        };
        let tags = (0..kept).map(|i| tag(i, Action::Keep)).chain((kept..kept + deleted).map(|i| tag(i, Action::Delete))).collect();
        RepositoryPlan { name: name.into(), rule, tags, manifests: Vec::new(), left_out: Default::default() }
    }

    fn plan(repos: Vec<RepositoryPlan>) -> Plan {
        Plan {
            id: String::new(),
            source: String::new(),
            generated_at: chrono::Utc::now(),
            times: Default::default(),
            repositories: repos,
            summary: Summary::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn counts_and_percentages_of_the_matched_repositories() {
        // 10 of 40 matched tags (25%); the unmatched repository's 1,000 tags do not dilute it.
        let p = plan(vec![repo("a", Some(0), 10, 8), repo("b", Some(0), 20, 2), repo("other", None, 1000, 0)]);
        let limits = |tags, percent| Limits { max_deleted_tags: tags, max_deleted_percent: percent };
        assert_eq!(check(&limits(None, None), &p), Ok(()));
        assert_eq!(check(&limits(Some(10), Some(25)), &p), Ok(()), "exactly at both limits is allowed");
        let over = check(&limits(Some(9), None), &p).unwrap_err();
        assert_eq!((over.tags_deleted, over.tags_matched), (10, 40));
        assert_eq!(over.top, vec![("a".to_string(), 8), ("b".to_string(), 2)]);
        let text = over.to_string();
        assert!(text.contains("maxDeletedTags 9") && text.contains("10 of the 40") && text.contains("a (8), b (2)"), "{text}");
        let over = check(&limits(None, Some(24)), &p).unwrap_err();
        assert!(over.to_string().contains("maxDeletedPercent 24") && over.to_string().contains("25.0%"), "{over}");
    }

    #[test]
    fn zero_means_nothing_may_go() {
        let p = plan(vec![repo("a", Some(0), 1, 1)]);
        assert!(check(&Limits { max_deleted_tags: Some(0), max_deleted_percent: None }, &p).is_err());
        assert!(check(&Limits { max_deleted_tags: None, max_deleted_percent: Some(0) }, &p).is_err());
        assert_eq!(
            check(&Limits { max_deleted_tags: Some(0), max_deleted_percent: Some(0) }, &plan(vec![repo("a", Some(0), 3, 0)])),
            Ok(())
        );
    }
}
