//! When a backup is due: `spec.backup.schedule` (a cron expression in a time zone) and the
//! `hostplane.dev/backup-now` annotation, against what `status.backup` says was last started.
//! Pure: the caller passes the clock in.
//!
//! A scheduled backup is due when the schedule's latest occurrence is after the last one started
//! (and after the TenantControlPlane was created: no backfill of times before it existed). Only
//! the latest missed occurrence runs, like a CronJob with `concurrencyPolicy: Forbid`. A request
//! (a new value of the annotation) runs once.

use hostplane_api::v1alpha1::{BackupSpec, BackupStatus};
use jiff::Timestamp;
use thiserror::Error;

use crate::schedule::{ScheduleError, occurrences};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackupError {
    #[error(
        "spec.backup.schedule {0:?} is not a cron expression (minute hour day-of-month month \
         day-of-week, e.g. \"0 */6 * * *\"): {1}"
    )]
    Schedule(String, String),
    #[error(
        "spec.backup.location {0:?} is not a known time zone (an IANA name such as \
         Europe/Berlin, or UTC)"
    )]
    Location(String),
}

/// Why a backup is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The schedule's occurrence at this time.
    Scheduled(Timestamp),
    /// This value of `hostplane.dev/backup-now`.
    OnDemand(String),
}

/// What is due now, and when the schedule fires next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub due: Option<Request>,
    pub next: Option<Timestamp>,
}

/// Reads the backup spec at `now`. `requested` is the annotation's value; `created` the
/// TenantControlPlane's creation time.
pub fn plan(
    spec: &BackupSpec,
    status: Option<&BackupStatus>,
    requested: Option<&str>,
    created: Timestamp,
    now: Timestamp,
) -> Result<Plan, BackupError> {
    let (scheduled, next) = match &spec.schedule {
        None => (None, None),
        Some(expression) => {
            let (latest, next) =
                occurrences(expression, spec.location.as_deref(), now).map_err(|e| match e {
                    ScheduleError::Location => {
                        BackupError::Location(spec.location.clone().unwrap_or_default())
                    }
                    ScheduleError::Cron(why) => BackupError::Schedule(expression.clone(), why),
                })?;
            let last_started = status
                .and_then(|s| s.last_scheduled.as_deref())
                .and_then(|t| t.parse::<Timestamp>().ok());
            let floor = last_started.map_or(created, |t| t.max(created));
            (latest.filter(|l| *l > floor), next)
        }
    };
    let request = requested
        .filter(|r| !r.is_empty())
        .filter(|r| status.and_then(|s| s.last_request.as_deref()) != Some(*r));
    // A request first: the scheduled one is still due on the next pass.
    let due = match (request, scheduled) {
        (Some(r), _) => Some(Request::OnDemand(r.to_owned())),
        (None, Some(at)) => Some(Request::Scheduled(at)),
        (None, None) => None,
    };
    Ok(Plan { due, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn every_six_hours() -> BackupSpec {
        BackupSpec {
            schedule: Some("0 */6 * * *".into()),
            ..BackupSpec::default()
        }
    }

    #[test]
    fn the_latest_occurrence_runs_once_and_never_before_creation() {
        let spec = every_six_hours();
        let created = at("2026-11-23T07:00:00Z");
        // Created at 07:00: the 06:00 occurrence was before it.
        let p = plan(&spec, None, None, created, at("2026-11-23T08:00:00Z")).unwrap();
        assert_eq!(p.due, None);
        assert_eq!(p.next, Some(at("2026-11-23T12:00:00Z")));
        // At 12:00 it is due; once started (status), not again.
        let p = plan(&spec, None, None, created, at("2026-11-23T12:00:30Z")).unwrap();
        assert_eq!(p.due, Some(Request::Scheduled(at("2026-11-23T12:00:00Z"))));
        let started = BackupStatus {
            last_scheduled: Some("2026-11-23T12:00:00Z".into()),
            ..BackupStatus::default()
        };
        let p = plan(
            &spec,
            Some(&started),
            None,
            created,
            at("2026-11-23T13:00:00Z"),
        )
        .unwrap();
        assert_eq!(p.due, None);
        // Missed two (operator down): only the latest runs.
        let p = plan(
            &spec,
            Some(&started),
            None,
            created,
            at("2026-11-24T01:00:00Z"),
        )
        .unwrap();
        assert_eq!(p.due, Some(Request::Scheduled(at("2026-11-24T00:00:00Z"))));
    }

    #[test]
    fn a_request_runs_once_per_value_and_before_the_schedule() {
        let spec = BackupSpec::default();
        let created = at("2026-11-23T07:00:00Z");
        let now = at("2026-11-23T08:00:00Z");
        assert_eq!(plan(&spec, None, None, created, now).unwrap().due, None);
        assert_eq!(plan(&spec, None, Some(""), created, now).unwrap().due, None);
        let p = plan(&spec, None, Some("before-upgrade"), created, now).unwrap();
        assert_eq!(p.due, Some(Request::OnDemand("before-upgrade".into())));
        assert_eq!(p.next, None);
        let served = BackupStatus {
            last_request: Some("before-upgrade".into()),
            ..BackupStatus::default()
        };
        let p = plan(&spec, Some(&served), Some("before-upgrade"), created, now).unwrap();
        assert_eq!(p.due, None);
        let p = plan(
            &every_six_hours(),
            Some(&served),
            Some("again"),
            created,
            at("2026-11-23T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(p.due, Some(Request::OnDemand("again".into())));
    }

    #[test]
    fn a_bad_schedule_or_zone_names_the_field() {
        let spec = BackupSpec {
            schedule: Some("hourly-ish".into()),
            ..BackupSpec::default()
        };
        let now = at("2026-11-23T08:00:00Z");
        let err = plan(&spec, None, None, now, now).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.backup.schedule \"hourly-ish\""),
            "{err}"
        );
        let spec = BackupSpec {
            location: Some("Atlantis/Capital".into()),
            ..every_six_hours()
        };
        assert_eq!(
            plan(&spec, None, None, now, now).unwrap_err(),
            BackupError::Location("Atlantis/Capital".into())
        );
    }
}
