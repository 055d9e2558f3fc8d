//! Review before the freeze (`spec.limits`, `spec.approval: Manual`): a run first makes its
//! plan in a dry-run Job that saves it on the registry's volume; from that Job's outcome this
//! module decides, without a client, whether the real run starts, waits for approval, or is
//! held over a limit, and whether an approval annotation names the pending plan.

use chrono::{DateTime, Utc};

use super::conditions::Health;
use crate::policy::{ApprovalMode, PendingPlan, PlanRef, RegistryCleanupPolicySpec, RunOutcome};

/// The annotation that approves a pending plan: its value is the plan id.
pub const APPROVE_ANNOTATION: &str = "regsweep.dev/approve-plan";

/// Whether a run must be reviewed before anything is frozen.
pub fn needs_review(spec: &RegistryCleanupPolicySpec) -> bool {
    !spec.dry_run && (spec.approval == ApprovalMode::Manual || !spec.limits.is_empty())
}

#[derive(Clone, Debug, PartialEq)]
pub enum AfterReview {
    /// Within the limits, no approval needed: the real run starts now, executing at most
    /// the reviewed plan (whatever was pushed since is kept).
    Run(PlanRef),
    /// Published; waits for the approval annotation.
    AwaitApproval(PendingPlan),
    /// Over a limit: held until the plan is approved or the limit raised.
    Hold(PendingPlan),
    /// The review run reported no plan (a sweep image older than this operator).
    Failed(String),
}

/// What follows a successful review run.
pub fn after_review(
    spec: &RegistryCleanupPolicySpec,
    run_id: &str,
    outcome: &RunOutcome,
    details: String,
    now: DateTime<Utc>,
) -> AfterReview {
    if outcome.plan_id.is_empty() {
        return AfterReview::Failed("the review run reported no plan id; the sweep image's regsweep is older than the operator".into());
    }
    let pending = PendingPlan {
        id: outcome.plan_id.clone(),
        run: run_id.to_string(),
        made: now,
        tags_deleted: outcome.tags_deleted,
        manifests_deleted: outcome.manifests_deleted,
        bytes_estimated: outcome.bytes_estimated,
        largest: outcome.largest.clone(),
        details,
        over_limit: outcome.over_limit.clone(),
        refused: None,
    };
    if pending.over_limit.is_some() {
        AfterReview::Hold(pending)
    } else if spec.approval == ApprovalMode::Manual {
        AfterReview::AwaitApproval(pending)
    } else {
        AfterReview::Run(PlanRef { id: pending.id, run: pending.run })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalCheck {
    /// No annotation, or one naming a plan already executed: nothing to do.
    None,
    Approved(PlanRef),
    /// Names another plan: said on the policy, nothing runs.
    Refused(String),
}

/// Whether the annotation approves the pending plan. `executed` are the ids of plans already
/// run (an annotation left in place after its run is not a new approval).
pub fn check_approval(annotation: Option<&str>, pending: &PendingPlan, executed: &[&str]) -> ApprovalCheck {
    match annotation.map(str::trim) {
        None | Some("") => ApprovalCheck::None,
        Some(id) if id == pending.id => ApprovalCheck::Approved(PlanRef { id: pending.id.clone(), run: pending.run.clone() }),
        Some(id) if executed.contains(&id) => ApprovalCheck::None,
        Some(id) => ApprovalCheck::Refused(format!(
            "{APPROVE_ANNOTATION}={id} names no pending plan: the plan waiting for approval is {} (made by run {} at {}); a plan is approved by its exact id, and a newer review replaces an older plan",
            pending.id,
            pending.run,
            pending.made.to_rfc3339()
        )),
    }
}

/// The command that approves the pending plan.
pub fn approve_command(pending: &PendingPlan, policy: &str) -> String {
    format!("kubectl annotate rcp {policy} {APPROVE_ANNOTATION}={} --overwrite", pending.id)
}

/// What the pending plan deletes, for people.
pub fn describe(pending: &PendingPlan) -> String {
    format!(
        "plan {} deletes {} tags and {} manifests (about {}); details: {}",
        pending.id,
        pending.tags_deleted,
        pending.manifests_deleted,
        crate::units::bytes(pending.bytes_estimated),
        pending.details
    )
}

/// The phase and health of a policy whose plan waits.
pub fn pending_health<'a>(pending: &'a PendingPlan, policy: &str, message: &'a mut String) -> (&'static str, Health<'a>) {
    let approve = approve_command(pending, policy);
    let counts = describe(pending);
    let refused = pending.refused.as_deref().map(|r| format!("; {r}")).unwrap_or_default();
    match &pending.over_limit {
        Some(over) => {
            *message = format!("held: {over}. {counts}. To run it anyway: {approve}{refused}");
            ("Held", Health::Stalled { reason: "OverLimit", message })
        }
        None => {
            *message = format!("waiting for approval: {counts}. To run it: {approve}{refused}");
            ("AwaitingApproval", Health::Waiting { reason: "AwaitingApproval", message })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::spec::Limits;

    fn spec(approval: ApprovalMode, limits: Limits) -> RegistryCleanupPolicySpec {
        RegistryCleanupPolicySpec { approval, limits, ..Default::default() }
    }

    fn outcome(over: Option<&str>) -> RunOutcome {
        RunOutcome { plan_id: "plan-abc".into(), tags_deleted: 7, over_limit: over.map(str::to_string), ..Default::default() }
    }

    #[test]
    fn a_review_leads_to_a_run_a_wait_or_a_hold() {
        let limits = Limits { max_deleted_tags: Some(5), max_deleted_percent: None };
        assert!(!needs_review(&spec(ApprovalMode::Auto, Limits::default())));
        assert!(needs_review(&spec(ApprovalMode::Manual, Limits::default())));
        assert!(needs_review(&spec(ApprovalMode::Auto, limits.clone())));
        assert!(!needs_review(&RegistryCleanupPolicySpec { dry_run: true, ..spec(ApprovalMode::Manual, limits.clone()) }));
        let now = Utc::now();
        let auto = spec(ApprovalMode::Auto, limits.clone());
        assert_eq!(
            after_review(&auto, "r1", &outcome(None), String::new(), now),
            AfterReview::Run(PlanRef { id: "plan-abc".into(), run: "r1".into() })
        );
        assert!(
            matches!(after_review(&auto, "r1", &outcome(Some("over")), String::new(), now), AfterReview::Hold(p) if p.tags_deleted == 7)
        );
        let manual = spec(ApprovalMode::Manual, Limits::default());
        assert!(
            matches!(after_review(&manual, "r1", &outcome(None), String::new(), now), AfterReview::AwaitApproval(p) if p.id == "plan-abc")
        );
        let old_image = RunOutcome { plan_id: String::new(), ..outcome(None) };
        assert!(matches!(after_review(&manual, "r1", &old_image, String::new(), now), AfterReview::Failed(_)));
    }

    #[test]
    fn only_the_pending_plan_id_approves() {
        let pending = PendingPlan { id: "plan-new".into(), run: "r2".into(), ..Default::default() };
        assert_eq!(check_approval(None, &pending, &[]), ApprovalCheck::None);
        assert_eq!(
            check_approval(Some(" plan-new "), &pending, &[]),
            ApprovalCheck::Approved(PlanRef { id: "plan-new".into(), run: "r2".into() })
        );
        assert_eq!(check_approval(Some("plan-old"), &pending, &["plan-old"]), ApprovalCheck::None, "left from the last run");
        let ApprovalCheck::Refused(why) = check_approval(Some("plan-typo"), &pending, &["plan-old"]) else { panic!("refused") };
        assert!(why.contains("plan-typo") && why.contains("plan-new"), "{why}");
    }
}
