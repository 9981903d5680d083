//! Whether a TenantControlPlane sleeps now, and when that changes next: `spec.hibernation` read at
//! an instant the caller passes in (pure: no clock here).
//!
//! `enabled` decides when set. Otherwise the schedules do: each `start` and `end` is a cron
//! expression in the schedule's time zone, and the tenant sleeps while the latest of them that has
//! passed (over all schedules) is a `start`. A start and an end at the same instant wake it.

use hostplane_api::v1alpha1::HibernationSpec;
use jiff::Timestamp;
use thiserror::Error;

use crate::schedule::{ScheduleError, occurrences};

/// A schedule the operator cannot read; the message names the field and what to write instead.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HibernationError {
    #[error(
        "spec.hibernation.schedules[{index}].{field} {expression:?} is not a cron expression \
         (minute hour day-of-month month day-of-week, e.g. \"0 20 * * 1-5\"): {why}"
    )]
    Cron {
        index: usize,
        field: &'static str,
        expression: String,
        why: String,
    },
    #[error(
        "spec.hibernation.schedules[{index}].location {location:?} is not a known time zone \
         (an IANA name such as Europe/Berlin, or UTC)"
    )]
    Location { index: usize, location: String },
}

/// What `spec.hibernation` asks for at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sleep {
    pub asleep: bool,
    /// Why, in words, for the Ready condition's message.
    pub why: String,
    /// The next start or end of a schedule, when the schedules decide.
    pub next_change: Option<Timestamp>,
}

/// Reads `spec` at `now`. Every schedule is checked, even when `enabled` overrides them, so a
/// bad one is reported when it is written rather than when it would first matter.
pub fn decide(spec: Option<&HibernationSpec>, now: Timestamp) -> Result<Sleep, HibernationError> {
    let Some(spec) = spec else {
        return Ok(Sleep {
            asleep: false,
            why: "no hibernation is set".to_owned(),
            next_change: None,
        });
    };
    // The latest start or end that has passed (`true` for a start), and the next one to come.
    let mut latest: Option<(Timestamp, bool)> = None;
    let mut next: Option<Timestamp> = None;
    for (index, schedule) in spec.schedules.iter().enumerate() {
        for (field, expression, is_start) in [
            ("start", &schedule.start, true),
            ("end", &schedule.end, false),
        ] {
            let Some(expression) = expression else {
                continue;
            };
            let (previous, upcoming) = occurrences(expression, schedule.location.as_deref(), now)
                .map_err(|e| match e {
                ScheduleError::Location => HibernationError::Location {
                    index,
                    location: schedule.location.clone().unwrap_or_default(),
                },
                ScheduleError::Cron(why) => HibernationError::Cron {
                    index,
                    field,
                    expression: expression.clone(),
                    why,
                },
            })?;
            if let Some(at) = previous {
                // Later wins; at the same instant, an end wins.
                if latest.is_none_or(|(t, start)| at > t || (at == t && start && !is_start)) {
                    latest = Some((at, is_start));
                }
            }
            if let Some(at) = upcoming {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
    }
    Ok(match spec.enabled {
        Some(true) => Sleep {
            asleep: true,
            why: "spec.hibernation.enabled is true".to_owned(),
            next_change: None,
        },
        Some(false) => Sleep {
            asleep: false,
            why: "spec.hibernation.enabled is false (the schedules wait until it is unset)"
                .to_owned(),
            next_change: None,
        },
        None => match latest {
            Some((at, true)) => Sleep {
                asleep: true,
                why: format!("a hibernation schedule started at {at}"),
                next_change: next,
            },
            Some((at, false)) => Sleep {
                asleep: false,
                why: format!("a hibernation schedule ended at {at}"),
                next_change: next,
            },
            None => Sleep {
                asleep: false,
                why: "no hibernation schedule has started yet".to_owned(),
                next_change: next,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use hostplane_api::v1alpha1::HibernationSchedule;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn weekdays_at_night(location: Option<&str>) -> HibernationSpec {
        HibernationSpec {
            enabled: None,
            schedules: vec![HibernationSchedule {
                start: Some("0 20 * * 1-5".into()),
                end: Some("0 7 * * 1-5".into()),
                location: location.map(Into::into),
            }],
        }
    }

    #[test]
    fn no_spec_means_awake_with_nothing_to_wait_for() {
        let sleep = decide(None, at("2026-11-23T12:00:00Z")).unwrap();
        assert!(!sleep.asleep);
        assert_eq!(sleep.next_change, None);
    }

    #[test]
    fn a_weekday_night_schedule_sleeps_at_night_and_over_the_weekend() {
        let spec = weekdays_at_night(None);
        // Monday 2026-11-23.
        let cases = [
            ("2026-11-23T12:00:00Z", false, "2026-11-23T20:00:00Z"),
            ("2026-11-23T19:59:59Z", false, "2026-11-23T20:00:00Z"),
            ("2026-11-23T20:00:00Z", true, "2026-11-24T07:00:00Z"),
            ("2026-11-24T03:00:00Z", true, "2026-11-24T07:00:00Z"),
            ("2026-11-24T07:00:00Z", false, "2026-11-24T20:00:00Z"),
            // Friday night until Monday morning: no end fires at the weekend.
            ("2026-11-28T12:00:00Z", true, "2026-11-30T07:00:00Z"),
        ];
        for (now, asleep, next) in cases {
            let sleep = decide(Some(&spec), at(now)).unwrap();
            assert_eq!(sleep.asleep, asleep, "at {now}: {sleep:?}");
            assert_eq!(sleep.next_change, Some(at(next)), "at {now}");
        }
    }

    #[test]
    fn schedules_are_read_in_their_time_zone() {
        // 20:00 in Berlin is 19:00 UTC in November (CET, +01:00).
        let spec = weekdays_at_night(Some("Europe/Berlin"));
        let sleep = decide(Some(&spec), at("2026-11-23T19:30:00Z")).unwrap();
        assert!(sleep.asleep, "{sleep:?}");
        assert_eq!(sleep.next_change, Some(at("2026-11-24T06:00:00Z")));
        // And in summer (CEST, +02:00).
        let sleep = decide(Some(&spec), at("2026-07-01T18:30:00Z")).unwrap();
        assert!(sleep.asleep, "{sleep:?}");
    }

    #[test]
    fn enabled_wins_over_the_schedules() {
        let mut spec = weekdays_at_night(None);
        spec.enabled = Some(true);
        let noon = at("2026-11-23T12:00:00Z");
        let sleep = decide(Some(&spec), noon).unwrap();
        assert!(sleep.asleep);
        assert_eq!(sleep.next_change, None);
        spec.enabled = Some(false);
        let sleep = decide(Some(&spec), at("2026-11-24T03:00:00Z")).unwrap();
        assert!(!sleep.asleep);
    }

    #[test]
    fn the_latest_of_several_schedules_decides_and_an_end_wins_a_tie() {
        let spec = HibernationSpec {
            enabled: None,
            schedules: vec![
                HibernationSchedule {
                    start: Some("0 18 * * *".into()),
                    end: None,
                    location: None,
                },
                HibernationSchedule {
                    start: None,
                    end: Some("0 18 * * *".into()),
                    location: None,
                },
            ],
        };
        let sleep = decide(Some(&spec), at("2026-11-23T19:00:00Z")).unwrap();
        assert!(!sleep.asleep, "{sleep:?}");
        // A start only: asleep from its first occurrence on.
        let only_start = HibernationSpec {
            enabled: None,
            schedules: vec![spec.schedules[0].clone()],
        };
        assert!(
            decide(Some(&only_start), at("2026-11-23T19:00:00Z"))
                .unwrap()
                .asleep
        );
    }

    #[test]
    fn bad_expressions_and_zones_name_the_field() {
        let mut spec = weekdays_at_night(Some("Mars/Olympus"));
        spec.enabled = Some(true);
        let err = decide(Some(&spec), at("2026-11-23T12:00:00Z")).unwrap_err();
        assert_eq!(
            err,
            HibernationError::Location {
                index: 0,
                location: "Mars/Olympus".into()
            }
        );
        spec.schedules[0].location = None;
        spec.schedules[0].end = Some("every evening".into());
        let err = decide(Some(&spec), at("2026-11-23T12:00:00Z")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.hibernation.schedules[0].end \"every evening\""),
            "{err}"
        );
    }
}
