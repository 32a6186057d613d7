//! Cron schedules: six-field expressions (with seconds) evaluated in an IANA time zone,
//! and the rule the scheduler applies to a trigger that is due.
//!
//! Parsing and evaluation are croner's; time zones are chrono-tz's. Every search moves
//! along real (UTC) time, so daylight-saving changes behave as croner documents them
//! (OCPS / Vixie cron):
//!
//! - **Spring forward** (a wall-clock hour is skipped): a schedule with a fixed second,
//!   minute and hour that falls into the gap fires once, at the first instant after the
//!   gap (02:30 on a 02:00→03:00 day fires at 03:00). Interval schedules (`*`, `*/n` in
//!   those fields) simply have no windows inside the gap.
//! - **Fall back** (a wall-clock hour happens twice): a fixed-time schedule fires once,
//!   on the first pass. Interval schedules fire on both passes, since each is real
//!   time that passes (`0 */15 * * * *` fires eight times in the doubled hour).
//!
//! Catch-up ([`plan`]): a trigger that missed several windows (the server was down)
//! fires once, for the latest missed window, and then waits for the first window after
//! now.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// The number of fields a schedule has: second minute hour day-of-month month
/// day-of-week.
pub const FIELDS: usize = 6;

/// Longest schedule text accepted (a real one is a few dozen characters).
const MAX_EXPRESSION_LEN: usize = 256;

/// Why a schedule or time zone was refused; the message is for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("{0}")]
    Schedule(String),
    #[error("{0}")]
    Timezone(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parses `expression` (exactly six fields) and `timezone` (an IANA name such as
    /// `Europe/Berlin` or `UTC`), and refuses a schedule that never fires.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, CronError> {
        let zone = Tz::from_str(timezone.trim()).map_err(|_| {
            CronError::Timezone(format!(
                "{timezone:?} is not an IANA time zone (like \"UTC\" or \"Europe/Berlin\")"
            ))
        })?;
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(CronError::Schedule(format!(
                "schedule is longer than {MAX_EXPRESSION_LEN} characters"
            )));
        }
        let fields = expression.split_whitespace().count();
        if fields != FIELDS {
            return Err(CronError::Schedule(format!(
                "schedule must have 6 fields (second minute hour day-of-month month \
                 day-of-week), like \"0 */5 * * * *\"; it has {fields}"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| CronError::Schedule(format!("invalid schedule: {e}")))?;
        let schedule = Self { cron, zone };
        if schedule.next_after(crate::now()).is_none() {
            return Err(CronError::Schedule(
                "schedule never fires (no matching date)".into(),
            ));
        }
        Ok(schedule)
    }

    /// The first window strictly after `t`; `None` when there is none (a date that
    /// never comes, or past croner's search range).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The latest window at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.zone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// What the scheduler does with a due trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firing {
    /// The window the event reports (`ctx.event.cron.scheduled_at`).
    pub scheduled_at: DateTime<Utc>,
    /// The trigger's next window; `None` when the schedule has no more.
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// The catch-up rule for a trigger whose stored next window `due` has come (`due <=
/// now`): fire once, for the latest window that has passed (never one before `due`),
/// and wait for the first window after `now`. However many windows were missed, one
/// event results.
pub fn plan(schedule: &CronSchedule, due: DateTime<Utc>, now: DateTime<Utc>) -> Firing {
    let scheduled_at = schedule
        .latest_at_or_before(now)
        .filter(|latest| *latest >= due)
        .unwrap_or(due);
    Firing {
        scheduled_at,
        next_fire_at: schedule.next_after(now.max(scheduled_at)),
    }
}

/// A time as cron events show it: RFC 3339 in UTC with milliseconds, the form every
/// time a script sees has (`time::now()`, document envelopes).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    fn schedule(expression: &str, zone: &str) -> CronSchedule {
        CronSchedule::parse(expression, zone).expect("valid schedule")
    }

    /// Every window in `[from, to)`.
    fn windows(s: &CronSchedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from - chrono::Duration::microseconds(1);
        while let Some(next) = s.next_after(t) {
            if next >= to {
                break;
            }
            out.push(next);
            t = next;
        }
        out
    }

    #[test]
    fn every_two_seconds() {
        let s = schedule("*/2 * * * * *", "UTC");
        let got = windows(&s, utc("2026-01-01T00:00:01Z"), utc("2026-01-01T00:00:09Z"));
        let want: Vec<_> = ["00:00:02", "00:00:04", "00:00:06", "00:00:08"]
            .iter()
            .map(|t| utc(&format!("2026-01-01T{t}Z")))
            .collect();
        assert_eq!(got, want);
        // Strictly after: a window is never its own successor.
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:02Z")),
            Some(utc("2026-01-01T00:00:04Z"))
        );
        // Fractions of a second round up to the next window.
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:02.5Z")),
            Some(utc("2026-01-01T00:00:04Z"))
        );
    }

    #[test]
    fn schedules_follow_their_time_zone() {
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        let s = schedule("0 0 9 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_after(utc("2026-01-15T00:00:00Z")),
            Some(utc("2026-01-15T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-07-15T00:00:00Z")),
            Some(utc("2026-07-15T07:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_fires_a_skipped_time_once_right_after_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 never happens.
        let s = schedule("0 30 2 * * *", "Europe/Berlin");
        let day = windows(&s, utc("2026-03-28T00:00:00Z"), utc("2026-03-30T12:00:00Z"));
        assert_eq!(
            day,
            vec![
                utc("2026-03-28T01:30:00Z"), // 02:30 CET the day before
                utc("2026-03-29T01:00:00Z"), // 03:00 CEST: the first instant after the gap
                utc("2026-03-30T00:30:00Z"), // 02:30 CEST the day after
            ]
        );
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
        let s = schedule("0 30 2 * * *", "America/New_York");
        let day = windows(&s, utc("2026-03-08T00:00:00Z"), utc("2026-03-09T00:00:00Z"));
        assert_eq!(day, vec![utc("2026-03-08T07:00:00Z")]);
    }

    #[test]
    fn fall_back_fires_a_repeated_time_once() {
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice
        // (05:30 and 06:30 UTC). The fixed-time schedule fires on the first pass only.
        let s = schedule("0 30 1 * * *", "America/New_York");
        let day = windows(&s, utc("2026-11-01T00:00:00Z"), utc("2026-11-02T00:00:00Z"));
        assert_eq!(day, vec![utc("2026-11-01T05:30:00Z")]);
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let s = schedule("0 30 2 * * *", "Europe/Berlin");
        let day = windows(&s, utc("2026-10-24T22:00:00Z"), utc("2026-10-25T22:00:00Z"));
        assert_eq!(day, vec![utc("2026-10-25T00:30:00Z")]);
    }

    #[test]
    fn interval_schedules_run_in_real_time_across_the_repeated_hour() {
        // Every 15 minutes through New York's doubled 01:00 hour: both passes fire,
        // and no window is repeated or skipped in real time.
        let s = schedule("0 */15 * * * *", "America/New_York");
        let got = windows(&s, utc("2026-11-01T05:00:00Z"), utc("2026-11-01T07:00:00Z"));
        assert_eq!(got.len(), 8);
        for pair in got.windows(2) {
            assert_eq!(pair[1] - pair[0], chrono::Duration::minutes(15));
        }
    }

    #[test]
    fn catch_up_fires_once_for_the_latest_missed_window() {
        let s = schedule("0 * * * * *", "UTC");
        // Down from 10:00:00 to 10:42:30: 43 windows missed, one firing.
        let f = plan(&s, utc("2026-01-01T10:00:00Z"), utc("2026-01-01T10:42:30Z"));
        assert_eq!(f.scheduled_at, utc("2026-01-01T10:42:00Z"));
        assert_eq!(f.next_fire_at, Some(utc("2026-01-01T10:43:00Z")));
        // On time (a few milliseconds late): the due window itself.
        let f = plan(
            &s,
            utc("2026-01-01T10:00:00Z"),
            utc("2026-01-01T10:00:00.004Z"),
        );
        assert_eq!(f.scheduled_at, utc("2026-01-01T10:00:00Z"));
        assert_eq!(f.next_fire_at, Some(utc("2026-01-01T10:01:00Z")));
        // Exactly on the window: the next one is strictly later.
        let f = plan(&s, utc("2026-01-01T10:00:00Z"), utc("2026-01-01T10:00:00Z"));
        assert_eq!(f.next_fire_at, Some(utc("2026-01-01T10:01:00Z")));
    }

    #[test]
    fn catch_up_never_reports_a_window_before_the_due_one() {
        // A due time that is not a window of the schedule (it was edited, or set by
        // hand) with no window between it and now: the due time itself is reported.
        let s = schedule("0 0 * * * *", "UTC");
        let f = plan(&s, utc("2026-01-01T10:20:00Z"), utc("2026-01-01T10:30:00Z"));
        assert_eq!(f.scheduled_at, utc("2026-01-01T10:20:00Z"));
        assert_eq!(f.next_fire_at, Some(utc("2026-01-01T11:00:00Z")));
    }

    #[test]
    fn expressions_need_six_valid_fields() {
        for bad in [
            "* * * * *",        // five fields: no seconds
            "0 * * * * * 2030", // a year field
            "@daily",           // nicknames are not six fields
            "",
            "61 * * * * *",  // second out of range
            "* * 25 * * *",  // hour out of range
            "* * * * 13 *",  // month out of range
            "*/0 * * * * *", // step of zero
            "a b c d e f",
            "0 0 0 31 2 *", // 31 February never comes
        ] {
            match CronSchedule::parse(bad, "UTC") {
                Err(CronError::Schedule(message)) => assert!(!message.is_empty(), "{bad}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let long = format!("{} * * * * *", "0,".repeat(200));
        assert!(matches!(
            CronSchedule::parse(&long, "UTC"),
            Err(CronError::Schedule(_))
        ));
        for good in [
            "0 0 12 * * MON-FRI",
            "*/10 * * * * *",
            "0 0 0 L * *",
            "0 0 0 * * 5#2",
            "0 0 0 * * 5L",
            "0 0 0 15W * *",
            "0 0 0 1 * +MON",
            "0 10-50/10 * * JAN-DEC 0-7",
            "  0 0 * * * *  ",
        ] {
            assert!(CronSchedule::parse(good, "UTC").is_ok(), "{good}");
        }
    }

    #[test]
    fn time_zones_must_be_iana_names() {
        for bad in ["Mars/Olympus", "CEST", "europe/berlin", "+02:00", ""] {
            assert!(
                matches!(
                    CronSchedule::parse("0 * * * * *", bad),
                    Err(CronError::Timezone(_))
                ),
                "{bad:?}"
            );
        }
        for good in ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"] {
            assert!(CronSchedule::parse("0 * * * * *", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn event_times_are_rfc3339_utc() {
        let t = Utc
            .with_ymd_and_hms(2026, 3, 29, 1, 0, 0)
            .single()
            .expect("time");
        assert_eq!(rfc3339(t), "2026-03-29T01:00:00.000Z");
    }
}
