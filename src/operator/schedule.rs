//! When a policy runs next: on its cron schedule (in its time zone), or once per spec
//! generation when it has none; never while suspended. Missed ticks are not caught up one by
//! one: one run covers them, like a CronJob without a starting deadline.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Start a run now; `scheduled_for` is the tick it covers (None without a schedule).
    Now {
        scheduled_for: Option<DateTime<Utc>>,
        reason: String,
    },
    /// Nothing to do until then.
    At(DateTime<Utc>),
    /// The tick passed longer ago than the starting deadline (the operator was down, say):
    /// it is skipped and reported, and the next one waited for.
    Missed {
        scheduled_for: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    },
    Never {
        reason: String,
    },
}

pub struct ScheduleInput<'a> {
    pub schedule: Option<&'a croner::Cron>,
    pub time_zone: Tz,
    pub suspend: bool,
    pub generation: i64,
    /// The spec generation the last run was started for.
    pub last_run_generation: Option<i64>,
    /// The schedule tick the last run covered.
    pub last_scheduled: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Like a CronJob's `startingDeadlineSeconds`: a tick missed by more is skipped.
    pub starting_deadline: Option<chrono::Duration>,
}

pub fn due(input: &ScheduleInput) -> Due {
    if input.suspend {
        return Due::Never { reason: "suspended".into() };
    }
    let Some(cron) = input.schedule else {
        return match input.last_run_generation {
            Some(g) if g == input.generation => Due::Never { reason: format!("ran for generation {g}; no schedule") },
            _ => Due::Now { scheduled_for: None, reason: format!("generation {} has not run yet", input.generation) },
        };
    };
    let anchor = input.last_scheduled.unwrap_or(input.created).with_timezone(&input.time_zone);
    let Ok(next) = cron.find_next_occurrence(&anchor, false) else {
        return Due::Never { reason: "the schedule has no future occurrence".into() };
    };
    let next = next.with_timezone(&Utc);
    if next > input.now {
        return Due::At(next);
    }
    // Cover the latest tick that has passed, not the first missed one.
    let latest =
        cron.find_previous_occurrence(&input.now.with_timezone(&input.time_zone), true).map(|t| t.with_timezone(&Utc)).unwrap_or(next);
    if input.starting_deadline.is_some_and(|d| input.now - latest > d) {
        let next = cron.find_next_occurrence(&input.now.with_timezone(&input.time_zone), false).ok().map(|t| t.with_timezone(&Utc));
        return Due::Missed { scheduled_for: latest, next };
    }
    Due::Now { scheduled_for: Some(latest), reason: format!("scheduled for {}", latest.format("%Y-%m-%d %H:%M UTC")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn input<'a>(cron: Option<&'a croner::Cron>, now: DateTime<Utc>) -> ScheduleInput<'a> {
        ScheduleInput {
            schedule: cron,
            time_zone: chrono_tz::UTC,
            suspend: false,
            generation: 1,
            last_run_generation: None,
            last_scheduled: None,
            created: at(2026, 1, 1, 0, 0),
            now,
            starting_deadline: None,
        }
    }

    #[test]
    fn once_per_generation_without_a_schedule() {
        let mut i = input(None, at(2026, 1, 1, 0, 5));
        assert!(matches!(due(&i), Due::Now { scheduled_for: None, .. }));
        i.last_run_generation = Some(1);
        assert!(matches!(due(&i), Due::Never { .. }));
        i.generation = 2;
        assert!(matches!(due(&i), Due::Now { .. }), "a spec change runs again");
        i.suspend = true;
        assert_eq!(due(&i), Due::Never { reason: "suspended".into() });
    }

    #[test]
    fn cron_in_a_time_zone() {
        let cron = crate::policy::compiled::parse_cron("0 3 * * *").unwrap();
        let mut i = input(Some(&cron), at(2026, 1, 1, 1, 0));
        i.time_zone = chrono_tz::Europe::Berlin;
        // 03:00 in Berlin is 02:00 UTC in winter.
        assert_eq!(due(&i), Due::At(at(2026, 1, 1, 2, 0)));
        i.now = at(2026, 1, 1, 2, 0);
        assert!(matches!(due(&i), Due::Now { scheduled_for: Some(t), .. } if t == at(2026, 1, 1, 2, 0)));
        // In summer it is 01:00 UTC.
        i.last_scheduled = Some(at(2026, 7, 1, 1, 0));
        i.now = at(2026, 7, 1, 12, 0);
        assert_eq!(due(&i), Due::At(at(2026, 7, 2, 1, 0)));
    }

    #[test]
    fn missed_ticks_are_covered_by_one_run() {
        let cron = crate::policy::compiled::parse_cron("0 * * * *").unwrap();
        let mut i = input(Some(&cron), at(2026, 1, 1, 5, 30));
        i.last_scheduled = Some(at(2026, 1, 1, 1, 0));
        assert!(matches!(due(&i), Due::Now { scheduled_for: Some(t), .. } if t == at(2026, 1, 1, 5, 0)));
        i.last_scheduled = Some(at(2026, 1, 1, 5, 0));
        assert_eq!(due(&i), Due::At(at(2026, 1, 1, 6, 0)));
        i.suspend = true;
        assert!(matches!(due(&i), Due::Never { .. }));
    }

    #[test]
    fn a_tick_missed_past_the_starting_deadline_is_skipped() {
        let cron = crate::policy::compiled::parse_cron("0 3 * * *").unwrap();
        let mut i = input(Some(&cron), at(2026, 1, 2, 12, 0));
        i.last_scheduled = Some(at(2026, 1, 1, 3, 0));
        // Without a deadline the 03:00 tick runs at noon, when the operator is back.
        assert!(matches!(due(&i), Due::Now { scheduled_for: Some(t), .. } if t == at(2026, 1, 2, 3, 0)));
        i.starting_deadline = Some(chrono::Duration::minutes(30));
        assert_eq!(due(&i), Due::Missed { scheduled_for: at(2026, 1, 2, 3, 0), next: Some(at(2026, 1, 3, 3, 0)) });
        // Within the deadline it still runs.
        i.now = at(2026, 1, 2, 3, 20);
        assert!(matches!(due(&i), Due::Now { .. }));
    }
}
