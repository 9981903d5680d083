//! Cron expressions read in an IANA time zone (hibernation and backup schedules): the latest
//! occurrence at or before an instant and the next one after it. Pure.

use croner::Cron;
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Why an expression or zone cannot be read; the caller names the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// Not a cron expression; croner's reason.
    Cron(String),
    /// Not a time zone jiff knows (its database is bundled).
    Location,
}

/// The latest occurrence of `expression` at or before `now`, and the first one after it, read in
/// `location` (UTC when None). An expression that never matches (30 February) has neither.
pub fn occurrences(
    expression: &str,
    location: Option<&str>,
    now: Timestamp,
) -> Result<(Option<Timestamp>, Option<Timestamp>), ScheduleError> {
    let zone = match location {
        None => TimeZone::UTC,
        Some(l) => TimeZone::get(l).map_err(|_| ScheduleError::Location)?,
    };
    let cron: Cron = expression
        .parse()
        .map_err(|e: croner::errors::CronError| ScheduleError::Cron(e.to_string()))?;
    let here = now.to_zoned(zone);
    let previous = cron
        .find_previous_occurrence(&here, true)
        .ok()
        .map(|z| z.timestamp());
    let next = cron
        .find_next_occurrence(&here, false)
        .ok()
        .map(|z| z.timestamp());
    Ok((previous, next))
}
