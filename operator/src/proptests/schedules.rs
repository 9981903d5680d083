//! When things are due: cron expressions in time zones (`schedule::occurrences`), hibernation
//! (`hibernation::decide`), backups (`backup::plan`) and bootstrap token rotation, for random and
//! malformed expressions, unknown zones and instants from year 1 to 9999.

use std::time::{Duration, Instant};

use hostplane_api::v1alpha1::{BackupSpec, BackupStatus, HibernationSchedule, HibernationSpec};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use proptest::prelude::*;
use time::format_description::well_known::Rfc3339;

use super::strategies::{config, cron, text, zone};
use crate::backup::{self, BackupError, Request};
use crate::build::node_bootstrap::{BootstrapToken, JOIN_EXPIRATION, JOIN_TOKEN};
use crate::hibernation::{self, HibernationError};
use crate::schedule::{ScheduleError, occurrences};

/// No computation over one expression may take this long. croner searches at most to year 5000
/// and back to year 1: an expression that never matches (`0 0 30 2 *`) takes some 0.2 s in a
/// debug build, so this leaves room for a busy machine.
const SLOW: Duration = Duration::from_secs(10);

/// Mostly around now, sometimes anywhere jiff can represent.
fn instant() -> impl Strategy<Value = Timestamp> {
    let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    prop_oneof![
        4 => (1_700_000_000i64..2_100_000_000).prop_map(|s| Timestamp::from_second(s).unwrap()),
        1 => (min..=max).prop_map(|s| Timestamp::from_second(s).unwrap()),
        1 => prop::sample::select(vec![
            Timestamp::MIN,
            Timestamp::MAX,
            Timestamp::UNIX_EPOCH,
            // Around DST changes in Europe and the US, and the year croner stops at.
            "2026-03-29T00:59:59Z".parse().unwrap(),
            "2026-03-29T01:00:00Z".parse().unwrap(),
            "2026-10-25T00:30:00Z".parse().unwrap(),
            "2026-10-25T01:00:00Z".parse().unwrap(),
            "2026-11-01T06:00:00Z".parse().unwrap(),
            "4999-12-31T23:59:59Z".parse().unwrap(),
            "0001-01-01T00:00:00Z".parse().unwrap(),
        ]),
    ]
}

/// Mostly expressions croner reads (so that the properties get past the parser), some anything.
fn likely_cron() -> impl Strategy<Value = String> {
    let dom = prop::sample::select(vec!["*", "1", "15", "29", "31", "28-31", "*/10"]);
    let dow = prop::sample::select(vec!["*", "1-5", "0,6", "*/2", "0"]);
    prop_oneof![
        4 => (
            0u8..60,
            prop_oneof![(0u8..24).prop_map(|h| h.to_string()), Just("*".to_owned())],
            dom,
            dow,
        )
            .prop_map(|(m, h, dom, dow)| format!("{m} {h} {dom} * {dow}")),
        1 => cron(),
    ]
}

/// Mostly zones jiff knows (with DST, odd offsets), some anything.
fn likely_zone() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/St_Johns",
        "Asia/Kolkata",
        "Pacific/Apia",
        "America/Santiago",
        "Europe/Dublin",
    ]);
    prop_oneof![4 => known.prop_map(str::to_owned), 1 => zone()]
}

fn timed<T>(f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let start = Instant::now();
    let out = f();
    prop_assert!(start.elapsed() < SLOW, "took {:?}", start.elapsed());
    Ok(out)
}

fn hibernation_spec() -> impl Strategy<Value = HibernationSpec> {
    let schedule = (
        prop::option::of(likely_cron()),
        prop::option::of(likely_cron()),
        prop::option::of(likely_zone()),
    )
        .prop_map(|(start, end, location)| HibernationSchedule {
            start,
            end,
            location,
        });
    (
        prop::option::of(any::<bool>()),
        prop::collection::vec(schedule, 0..4),
    )
        .prop_map(|(enabled, schedules)| HibernationSpec { enabled, schedules })
}

proptest! {
    #![proptest_config(config(64))]

    /// An expression and a zone are read or refused (the reason says which); the latest
    /// occurrence is at or before now and the next after it, with none in between: the next one
    /// seen from the latest is the same, and the latest seen from the next is itself. In bounded
    /// time, even for an expression that never matches.
    #[test]
    fn occurrences_bracket_now(
        expression in likely_cron(),
        location in prop::option::of(likely_zone()),
        now in instant(),
    ) {
        let found = timed(|| occurrences(&expression, location.as_deref(), now))?;
        let (previous, next) = match found {
            Err(ScheduleError::Location) => {
                prop_assert!(location.is_some_and(|l| TimeZone::get(&l).is_err()));
                return Ok(());
            }
            Err(ScheduleError::Cron(why)) => {
                prop_assert!(!why.is_empty());
                return Ok(());
            }
            Ok(found) => found,
        };
        // croner stops searching at year 5000, and near it not consistently: from
        // 4999-12-31T23:00Z ("0 * */10 * *", Europe/Berlin) it finds no next occurrence, from
        // 23:59:59Z it finds 5000-01-01T00:00Z. Within its last year only the order is checked.
        let horizon = Timestamp::from_second(95_586_048_000).unwrap(); // 4999-01-01T00:00:00Z
        if now >= horizon {
            prop_assert!(previous.is_none_or(|p| p <= now) && next.is_none_or(|n| n > now));
            return Ok(());
        }
        if let Some(p) = previous {
            prop_assert!(p <= now, "{} after {}", p, now);
            let (again, after) =
                timed(|| occurrences(&expression, location.as_deref(), p))?.unwrap();
            prop_assert_eq!(again, Some(p));
            prop_assert_eq!(after, next, "from the latest occurrence {}", p);
        }
        if let Some(n) = next {
            prop_assert!(n > now, "{} not after {}", n, now);
            let (before, _) = timed(|| occurrences(&expression, location.as_deref(), n))?.unwrap();
            prop_assert_eq!(before, Some(n));
        }
    }

    /// `spec.hibernation` at an instant: a bad expression or zone is an error naming the
    /// schedule and field, whatever `enabled` says; `enabled` decides when set; otherwise the
    /// decision holds until the next change it announces.
    #[test]
    fn hibernation_holds_until_its_next_change(
        spec in hibernation_spec(),
        now in instant(),
        fraction in 0.0f64..1.0,
    ) {
        let sleep = match hibernation::decide(Some(&spec), now) {
            Err(HibernationError::Location { index, location }) => {
                prop_assert_eq!(spec.schedules[index].location.as_deref(), Some(location.as_str()));
                prop_assert!(TimeZone::get(&location).is_err());
                return Ok(());
            }
            Err(HibernationError::Cron { index, field, expression, .. }) => {
                let schedule = &spec.schedules[index];
                let written = if field == "start" { &schedule.start } else { &schedule.end };
                prop_assert_eq!(written.as_deref(), Some(expression.as_str()));
                prop_assert!(expression.parse::<croner::Cron>().is_err());
                return Ok(());
            }
            Ok(sleep) => sleep,
        };
        // The same schedules with `enabled` unset are read the same way.
        let free = HibernationSpec { enabled: None, ..spec.clone() };
        let schedules = hibernation::decide(Some(&free), now).unwrap();
        if let Some(enabled) = spec.enabled {
            prop_assert_eq!(sleep.asleep, enabled);
            prop_assert_eq!(sleep.next_change, None);
        } else {
            prop_assert_eq!(&sleep, &schedules);
        }
        if !spec.schedules.iter().any(|s| s.start.is_some()) {
            prop_assert!(!schedules.asleep);
        }
        if let Some(change) = schedules.next_change {
            prop_assert!(change > now);
            let span = (change.as_second() - now.as_second()).max(1);
            #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            let step = ((span - 1) as f64 * fraction) as i64;
            let later = Timestamp::from_second(now.as_second() + step).unwrap();
            let then = hibernation::decide(Some(&free), later).unwrap();
            prop_assert_eq!(
                then.asleep,
                schedules.asleep,
                "changed at {} before {}",
                later,
                change
            );
        }
    }

    /// A backup is due once: on demand for a new non-empty annotation value, else for the
    /// schedule's latest occurrence when it is after both the last one started and the creation;
    /// once the status records it, it is not due again. The next occurrence is after now.
    #[test]
    fn a_backup_is_due_once(
        schedule in prop::option::of(likely_cron()),
        location in prop::option::of(likely_zone()),
        last_scheduled in prop::option::of(prop_oneof![
            instant().prop_map(|t| t.to_string()),
            text(0, 30, true),
        ]),
        last_request in prop::option::of(text(0, 12, true)),
        requested in prop::option::weighted(
            0.4,
            prop_oneof![text(0, 12, true), Just("again".to_owned())],
        ),
        now in instant(),
        // Created mostly some time before now.
        age in prop_oneof![4 => 0i64..40_000_000, 1 => any::<i64>()],
    ) {
        let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        let created =
            Timestamp::from_second(now.as_second().saturating_sub(age).clamp(min, max)).unwrap();
        let spec = BackupSpec {
            schedule: schedule.clone(),
            location: location.clone(),
            ..BackupSpec::default()
        };
        let mut status = BackupStatus {
            last_scheduled: last_scheduled.clone(),
            last_request: last_request.clone(),
            ..BackupStatus::default()
        };
        let requested = requested.as_deref();
        let plan = match timed(|| backup::plan(&spec, Some(&status), requested, created, now))? {
            Err(BackupError::Location(l)) => {
                prop_assert_eq!(location.as_deref(), Some(l.as_str()));
                return Ok(());
            }
            Err(BackupError::Schedule(expression, _)) => {
                prop_assert_eq!(schedule.as_deref(), Some(expression.as_str()));
                return Ok(());
            }
            Ok(plan) => plan,
        };
        if let Some(next) = plan.next {
            prop_assert!(next > now);
        }
        let new_request =
            requested.filter(|r| !r.is_empty() && last_request.as_deref() != Some(*r));
        match &plan.due {
            Some(Request::OnDemand(r)) => {
                prop_assert_eq!(Some(r.as_str()), new_request);
                status.last_request = Some(r.clone());
            }
            Some(Request::Scheduled(at)) => {
                prop_assert!(new_request.is_none());
                prop_assert!(*at <= now && *at > created);
                let last = last_scheduled.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
                if let Some(last) = last {
                    prop_assert!(*at > last);
                }
                let expression = schedule.as_deref().unwrap();
                let (latest, _) = occurrences(expression, location.as_deref(), now).unwrap();
                prop_assert_eq!(latest, Some(*at));
                status.last_scheduled = Some(at.to_string());
            }
            None => prop_assert!(new_request.is_none()),
        }
        // Recorded: not due again for the same reason.
        let again = backup::plan(&spec, Some(&status), requested, created, now).unwrap();
        prop_assert!(again.due.is_none() || again.due != plan.due, "{:?} due twice", plan.due);
    }

    /// A join Secret's token is read back exactly when it is well-formed (random bytes, wrong
    /// lengths, an unparsable expiration are None), and rotation is due from `rotation_at` on.
    #[test]
    fn a_join_secret_token_is_read_back_and_rotated_on_time(
        chars in prop::collection::vec(
            prop::sample::select(BootstrapToken::alphabet().to_vec()),
            22,
        ),
        token_text in prop::option::of(prop_oneof![
            "[a-z0-9]{6}[.][a-z0-9]{16}",
            "[a-zA-Z0-9.]{0,30}",
            prop::collection::vec(any::<u8>(), 0..30)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]),
        expiration_text in prop::option::of(prop_oneof![
            Just("2026-11-23T12:00:00Z".to_owned()),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
            text(0, 30, true),
        ]),
        // Years 1 to 9999, what RFC 3339 writes.
        expiration_s in -62_135_596_800i64..=253_402_300_799,
        ttl in 900u64..=604_800,
        offset in -700_000i64..700_000,
    ) {
        let expiration = time::OffsetDateTime::from_unix_timestamp(expiration_s).unwrap();
        let chars: [u8; 22] = chars.try_into().unwrap();
        let token = BootstrapToken::from_chars(&chars, expiration).unwrap();
        // A Secret the operator wrote reads back as the same token.
        let secret = |token: &str, expiration: &str| Secret {
            data: Some(
                [
                    (JOIN_TOKEN.to_owned(), ByteString(token.as_bytes().to_vec())),
                    (JOIN_EXPIRATION.to_owned(), ByteString(expiration.as_bytes().to_vec())),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        let rfc3339 = expiration.format(&Rfc3339).unwrap();
        let read = BootstrapToken::from_join_secret(&secret(&token.token(), &rfc3339));
        prop_assert_eq!(read, Some(token.clone()));
        // Anything else: a token exactly when it looks like one and its expiration parses.
        let text = token_text.unwrap_or_default();
        let expiration_text = expiration_text.unwrap_or_default();
        let read = BootstrapToken::from_join_secret(&secret(&text, &expiration_text));
        let well_formed = text.len() == 23
            && text.as_bytes()[6] == b'.'
            && text
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 6 || BootstrapToken::alphabet().contains(&b));
        let expires = time::OffsetDateTime::parse(&expiration_text, &Rfc3339).is_ok();
        prop_assert_eq!(read.is_some(), well_formed && expires, "{:?} {:?}", text, expiration_text);
        // Due from rotation_at on, whole seconds.
        let now = expiration - time::Duration::seconds(offset);
        prop_assert_eq!(token.rotation_due(now, ttl), now >= token.rotation_at(ttl));
    }
}
