//! Validation: a policy is checked whole, up front, and compiled into matchers. An invalid
//! policy yields every problem at once, each with the field and how to fix it, and deletes
//! nothing.

use std::fmt;
use std::str::FromStr;

use chrono::Duration;

use super::pattern::{RepoGlob, TagPattern};
use super::reference::ProtectedRef;
use super::spec::{RegistryCleanupPolicySpec, Rule, UntaggedAction};

pub const DEFAULT_GRACE: &str = "24h";
pub const DEFAULT_MAX_READ_ONLY: &str = "1h";
pub const DEFAULT_SWEEP_GRACE: &str = "30s";

/// A policy ready for the planner.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub rules: Vec<CompiledRule>,
    pub protected: Vec<ProtectedRef>,
    pub hosts: Vec<String>,
    pub schedule: Option<croner::Cron>,
    pub time_zone: chrono_tz::Tz,
    pub max_read_only: Duration,
    /// How long an aborted sweep may take to stop.
    pub sweep_grace: Duration,
    pub dry_run: bool,
    /// The circuit breaker (checked by [`crate::plan::limits`]).
    pub limits: super::spec::Limits,
    /// How long deletions stay restorable (see [`crate::quarantine`]); None: final.
    pub quarantine: Option<Duration>,
    /// Legal but worth a second look (shown with the plan).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// Position in `spec.rules`, for reasons ("rule 2").
    pub index: usize,
    pub repositories: Vec<RepoGlob>,
    pub exclude: Vec<RepoGlob>,
    pub keep_latest: Option<usize>,
    pub keep_within: Option<Duration>,
    pub keep_tags: Vec<TagPattern>,
    /// None: every tag is a candidate.
    pub delete_tags: Option<Vec<TagPattern>>,
    pub untagged: UntaggedAction,
    pub untagged_grace: Duration,
}

impl CompiledRule {
    pub fn matches(&self, repository: &str) -> bool {
        self.repositories.iter().any(|g| g.is_match(repository)) && !self.exclude.iter().any(|g| g.is_match(repository))
    }

    /// Tag retention is active only when the rule says how many or how recent to keep.
    pub fn retains_tags(&self) -> bool {
        self.keep_latest.is_some() || self.keep_within.is_some()
    }
}

impl CompiledPolicy {
    /// The rule that governs a repository: the first that matches.
    pub fn rule_for(&self, repository: &str) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| r.matches(repository))
    }
}

/// One thing wrong with a policy, located by its field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPolicy {
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the policy is invalid ({} problem(s)); nothing was changed:", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidPolicy {}

/// Parses `90m`, `12h`, `30d` (and humantime's longer forms such as `1h 30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let std = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}); write a number and a unit, e.g. 90m, 12h or 30d"))?;
    Duration::from_std(std).map_err(|_| format!("{text:?} is too long a duration"))
}

struct Collector(Vec<Problem>);

impl Collector {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { field: field.into(), message: message.into() });
    }

    fn take<T>(&mut self, field: impl Into<String>, r: Result<T, String>) -> Option<T> {
        r.map_err(|m| self.push(field, m)).ok()
    }
}

pub fn compile(spec: &RegistryCleanupPolicySpec) -> Result<CompiledPolicy, InvalidPolicy> {
    let mut c = Collector(Vec::new());
    let mut warnings = Vec::new();

    let time_zone = match &spec.time_zone {
        None => chrono_tz::UTC,
        Some(tz) => c
            .take(
                "spec.timeZone",
                chrono_tz::Tz::from_str(tz)
                    .map_err(|_| format!("{tz:?} is not an IANA time zone name; use e.g. \"Europe/Berlin\" or \"UTC\"")),
            )
            .unwrap_or(chrono_tz::UTC),
    };
    let schedule = spec.schedule.as_ref().and_then(|s| c.take("spec.schedule", parse_cron(s)));

    let rules: Vec<CompiledRule> =
        spec.rules.iter().enumerate().filter_map(|(i, rule)| compile_rule(i, rule, &mut c, &mut warnings)).collect();
    if spec.rules.is_empty() {
        warnings.push("the policy has no rules, so it deletes nothing".to_string());
    }
    check_shadowed(&rules, &mut c);

    let hosts: Vec<String> = spec.registry.hosts.iter().map(|h| h.trim().to_string()).collect();
    for (i, h) in hosts.iter().enumerate() {
        if h.is_empty() || h.contains('/') || h.contains("://") {
            c.push(
                format!("spec.registry.hosts[{i}]"),
                format!("{h:?} is not a host name; write e.g. \"registry.example.com\" or \"registry.svc:5000\" without scheme or path"),
            );
        }
    }
    let mut protected = Vec::new();
    for (i, r) in spec.protection.references.iter().enumerate() {
        let field = format!("spec.protection.references[{i}]");
        if let Some(p) = c.take(&field, ProtectedRef::parse(r)) {
            if !p.names_registry(&hosts) {
                c.push(field, format!("{r:?} names a host that is not in spec.registry.hosts, so it protects nothing here; add the host there or drop it from the reference"));
            } else {
                protected.push(p);
            }
        }
    }
    if let Some(url) = &spec.registry.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        c.push("spec.registry.url", format!("{url:?} must start with http:// or https://"));
    }
    let max_read_only = c
        .take(
            "spec.maintenance.maxReadOnlyDuration",
            parse_duration(spec.maintenance.max_read_only_duration.as_deref().unwrap_or(DEFAULT_MAX_READ_ONLY)),
        )
        .unwrap_or(Duration::hours(1));

    if let Some(n) = spec.starting_deadline_seconds
        && n < 1
    {
        c.push("spec.startingDeadlineSeconds", format!("{n} must be 1 or more (seconds); omit it for no deadline"));
    }
    if spec.starting_deadline_seconds.is_some() && spec.schedule.is_none() {
        c.push("spec.startingDeadlineSeconds", "applies to scheduled runs: set spec.schedule, or drop it");
    }
    let sweep_grace = c
        .take(
            "spec.maintenance.sweepGracePeriod",
            parse_duration(spec.maintenance.sweep_grace_period.as_deref().unwrap_or(DEFAULT_SWEEP_GRACE)),
        )
        .unwrap_or(Duration::seconds(30));

    if let Some(p) = spec.limits.max_deleted_percent
        && p > 100
    {
        c.push("spec.limits.maxDeletedPercent", format!("{p} is not a percentage; give 0 to 100"));
    }

    let quarantine = spec.quarantine.as_ref().and_then(|q| {
        let keep_for = c.take("spec.quarantine.keepFor", parse_duration(&q.keep_for))?;
        if keep_for <= Duration::zero() {
            c.push(
                "spec.quarantine.keepFor",
                format!("{:?} keeps nothing; give a positive duration such as 7d, or drop spec.quarantine", q.keep_for),
            );
            return None;
        }
        Some(keep_for)
    });

    if !c.0.is_empty() {
        return Err(InvalidPolicy { problems: c.0 });
    }
    let limits = spec.limits.clone();
    Ok(CompiledPolicy {
        rules,
        protected,
        hosts,
        schedule,
        time_zone,
        max_read_only,
        sweep_grace,
        dry_run: spec.dry_run,
        limits,
        quarantine,
        warnings,
    })
}

pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    if text.split_whitespace().count() != 5 {
        return Err(format!("{text:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\""));
    }
    croner::Cron::from_str(text).map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))
}

fn compile_rule(i: usize, rule: &Rule, c: &mut Collector, warnings: &mut Vec<String>) -> Option<CompiledRule> {
    let at = |f: &str| format!("spec.rules[{i}].{f}");
    let before = c.0.len();
    if rule.repositories.is_empty() {
        c.push(at("repositories"), "lists no repository globs, so the rule can never match; use [\"**\"] for every repository");
    }
    let globs = |c: &mut Collector, field: &str, list: &[String]| -> Vec<RepoGlob> {
        list.iter().enumerate().filter_map(|(j, g)| c.take(format!("{}[{j}]", at(field)), RepoGlob::new(g))).collect()
    };
    let tags = |c: &mut Collector, field: &str, list: &[String]| -> Vec<TagPattern> {
        list.iter().enumerate().filter_map(|(j, g)| c.take(format!("{}[{j}]", at(field)), TagPattern::new(g))).collect()
    };
    let repositories = globs(c, "repositories", &rule.repositories);
    let exclude = globs(c, "exclude", &rule.exclude);
    // Only when certain: every repository glob is excluded as written (or by `**`). A glob
    // excluded by a different but wider glob is left to the plan, which shows it matches nothing.
    let excluded = |r: &RepoGlob| exclude.iter().any(|e| e.source() == r.source() || e.source() == "**");
    if !repositories.is_empty() && repositories.iter().all(excluded) {
        c.push(at("exclude"), "excludes every glob `repositories` selects, so the rule can never match");
    }
    let keep_latest = match rule.keep_latest {
        Some(n) if n < 0 => {
            c.push(at("keepLatest"), format!("{n} is negative; use 0 or more"));
            None
        }
        Some(n) => Some(n as usize),
        None => None,
    };
    let keep_within = rule.keep_within.as_deref().and_then(|d| c.take(at("keepWithin"), parse_duration(d)));
    let grace_text = rule.untagged_grace_period.as_deref().unwrap_or(DEFAULT_GRACE);
    let untagged_grace = c.take(at("untaggedGracePeriod"), parse_duration(grace_text));
    let keep_tags = tags(c, "keepTags", &rule.keep_tags);
    let delete_tags = rule.delete_tags.as_ref().map(|list| {
        if list.is_empty() {
            c.push(at("deleteTags"), "is empty, so no tag is a candidate; omit it to make every tag a candidate");
        }
        tags(c, "deleteTags", list)
    });
    if c.0.len() != before {
        return None;
    }
    if keep_latest == Some(0) && keep_within.is_none() && delete_tags.is_none() {
        warnings.push(format!(
            "rule {i} has keepLatest: 0 and no deleteTags or keepWithin: it deletes every tag of the repositories it matches except keepTags"
        ));
    }
    if keep_latest.is_none() && keep_within.is_none() && rule.untagged == UntaggedAction::Keep {
        warnings.push(format!("rule {i} sets neither keepLatest, keepWithin nor untagged: Delete, so it deletes nothing"));
    }
    Some(CompiledRule {
        index: i,
        repositories,
        exclude,
        keep_latest,
        keep_within,
        keep_tags,
        delete_tags,
        untagged: rule.untagged,
        untagged_grace: untagged_grace?,
    })
}

/// A rule after one that matches every repository without exclusions can never apply.
fn check_shadowed(rules: &[CompiledRule], c: &mut Collector) {
    for (pos, earlier) in rules.iter().enumerate() {
        let catch_all = earlier.exclude.is_empty() && earlier.repositories.iter().any(|g| g.source() == "**");
        for later in &rules[pos + 1..] {
            let same = earlier.exclude.is_empty()
                && later.repositories.iter().all(|g| earlier.repositories.iter().any(|e| e.source() == g.source()));
            if catch_all || same {
                c.push(
                    format!("spec.rules[{}]", later.index),
                    format!("can never match: rule {} before it already matches every repository it names (the first matching rule wins); reorder the rules", earlier.index),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::spec::*;

    fn rule(repos: &[&str]) -> Rule {
        Rule { repositories: repos.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    fn spec(rules: Vec<Rule>) -> RegistryCleanupPolicySpec {
        RegistryCleanupPolicySpec { rules, ..Default::default() }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("12h").unwrap(), Duration::hours(12));
        assert_eq!(parse_duration("30d").unwrap(), Duration::days(30));
        let e = parse_duration("30x").unwrap_err();
        assert!(e.contains("30m") || e.contains("90m"), "{e}");
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn collects_every_problem_with_its_field() {
        let mut bad = rule(&["team-a/["]);
        bad.keep_latest = Some(-1);
        bad.keep_within = Some("soon".into());
        bad.keep_tags = vec!["regex:(".into()];
        bad.untagged_grace_period = Some("1 fortnight".into());
        let mut s = spec(vec![bad]);
        s.schedule = Some("0 3 * *".into());
        s.time_zone = Some("Mars/Olympus".into());
        s.protection.references = vec!["app@sha256:nope".into()];
        let err = compile(&s).unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        for f in [
            "spec.timeZone",
            "spec.schedule",
            "spec.rules[0].repositories[0]",
            "spec.rules[0].keepLatest",
            "spec.rules[0].keepWithin",
            "spec.rules[0].untaggedGracePeriod",
            "spec.rules[0].keepTags[0]",
            "spec.protection.references[0]",
        ] {
            assert!(fields.contains(&f), "missing {f} in {fields:?}");
        }
        assert!(err.to_string().contains("nothing was changed"));
    }

    #[test]
    fn a_starting_deadline_needs_a_schedule_as_the_crd_says() {
        let mut s = spec(vec![rule(&["**"])]);
        s.starting_deadline_seconds = Some(60);
        assert_eq!(compile(&s).unwrap_err().problems[0].field, "spec.startingDeadlineSeconds");
        s.schedule = Some("0 3 * * *".into());
        assert!(compile(&s).is_ok());
    }

    #[test]
    fn quarantine_keep_for_must_be_a_positive_duration() {
        for (text, needle) in [("a week", "is not a duration"), ("0s", "keeps nothing")] {
            let mut s = spec(vec![rule(&["**"])]);
            s.quarantine = Some(super::super::spec::QuarantineSpec { keep_for: text.into() });
            let err = compile(&s).unwrap_err();
            assert_eq!(err.problems[0].field, "spec.quarantine.keepFor");
            assert!(err.problems[0].message.contains(needle), "{:?}", err.problems);
        }
        let mut s = spec(vec![rule(&["**"])]);
        s.quarantine = Some(super::super::spec::QuarantineSpec { keep_for: "36h".into() });
        assert_eq!(compile(&s).unwrap().quarantine, Some(Duration::hours(36)));
    }

    #[test]
    fn rules_that_can_never_match() {
        let err = compile(&spec(vec![rule(&["**"]), rule(&["team-a/*"])])).unwrap_err();
        assert_eq!(err.problems[0].field, "spec.rules[1]");
        let mut excluded = rule(&["team-a/*"]);
        excluded.exclude = vec!["team-a/*".into()];
        assert!(compile(&spec(vec![excluded])).is_err());
        // Excluding one of two globs leaves the other: `api/x` matches.
        let mut partly = rule(&["api/*", "img/**"]);
        partly.exclude = vec!["img/**".into()];
        let p = compile(&spec(vec![partly])).expect("a rule that can match is valid");
        assert!(p.rule_for("api/x").is_some() && p.rule_for("img/y").is_none());
        assert!(compile(&spec(vec![rule(&[])])).is_err());
        // An earlier rule with exclusions does not shadow a later one.
        let mut first = rule(&["**"]);
        first.exclude = vec!["base/*".into()];
        assert!(compile(&spec(vec![first, rule(&["base/*"])])).is_ok());
    }

    #[test]
    fn first_matching_rule_wins_and_exclude_falls_through() {
        let mut a = rule(&["team-a/**"]);
        a.exclude = vec!["team-a/base".into()];
        a.keep_latest = Some(3);
        let mut b = rule(&["**"]);
        b.keep_latest = Some(10);
        let p = compile(&spec(vec![a, b])).unwrap();
        assert_eq!(p.rule_for("team-a/app").unwrap().index, 0);
        assert_eq!(p.rule_for("team-a/base").unwrap().index, 1);
        assert_eq!(p.rule_for("other").unwrap().index, 1);
    }

    #[test]
    fn schedule_and_time_zone() {
        let mut s = spec(vec![]);
        s.schedule = Some("0 3 * * *".into());
        s.time_zone = Some("Europe/Berlin".into());
        let p = compile(&s).unwrap();
        assert!(p.schedule.is_some());
        assert_eq!(p.time_zone, chrono_tz::Europe::Berlin);
        s.schedule = Some("61 3 * * *".into());
        assert!(compile(&s).is_err());
    }

    #[test]
    fn references_for_other_hosts_are_rejected() {
        let mut s = spec(vec![]);
        s.registry.hosts = vec!["registry.example.com".into()];
        s.protection.references = vec!["docker.io/library/nginx:1".into()];
        assert!(compile(&s).is_err());
        s.protection.references = vec!["registry.example.com/base/*:stable".into()];
        assert_eq!(compile(&s).unwrap().protected.len(), 1);
    }

    #[test]
    fn keep_latest_zero_is_explicit_and_warned() {
        let mut r = rule(&["**"]);
        r.keep_latest = Some(0);
        let p = compile(&spec(vec![r])).unwrap();
        assert!(p.warnings.iter().any(|w| w.contains("keepLatest: 0")));
    }
}
