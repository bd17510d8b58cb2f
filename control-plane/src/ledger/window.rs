//! The windows limits count in: calendar minutes in UTC for the per-minute limits, calendar
//! days and months of the limit set's time zone for the token budgets (a day is 23 or 25 hours
//! when the clocks change). Only the control plane computes windows; every grant names its
//! window's start and end.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use vllm_gateway_filter::feed::limits::LimitKind;

/// One window: `[start, end)`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The first second of the window.
    pub start: i64,
    /// The first second after it.
    pub end: i64,
}

/// The time zone named by a limit set: an IANA name, UTC when absent; `None` when the name is
/// not a known zone.
pub fn zone(name: Option<&str>) -> Option<Tz> {
    match name {
        None => Some(Tz::UTC),
        Some(name) => name.parse().ok(),
    }
}

/// The window of `kind` that holds the instant `at` (Unix seconds), in `tz`; `None` for the
/// concurrency, which has no window.
pub fn window_at(kind: LimitKind, at: i64, tz: Tz) -> Option<Window> {
    match kind {
        LimitKind::ConcurrentRequests => None,
        LimitKind::RequestsPerMinute | LimitKind::TokensPerMinute => {
            let start = at - at.rem_euclid(60);
            Some(Window { start, end: start + 60 })
        }
        LimitKind::TokensPerDay => {
            let day = local_date(at, tz)?;
            Some(Window { start: day_start(day, tz)?, end: day_start(day.succ_opt()?, tz)? })
        }
        LimitKind::TokensPerMonth => {
            let first = local_date(at, tz)?.with_day(1)?;
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)?
            };
            Some(Window { start: day_start(first, tz)?, end: day_start(next, tz)? })
        }
    }
}

/// The calendar date in `tz` at the instant `at`.
fn local_date(at: i64, tz: Tz) -> Option<NaiveDate> {
    Some(DateTime::from_timestamp(at, 0)?.with_timezone(&tz).date_naive())
}

/// The first instant of `day` in `tz`: its midnight, or (in a zone whose clocks jump forward at
/// midnight) the first local time that exists that day.
fn day_start(day: NaiveDate, tz: Tz) -> Option<i64> {
    let midnight: NaiveDateTime = day.and_hms_opt(0, 0, 0)?;
    for minutes in (0..=180).step_by(15) {
        let local = midnight + chrono::Duration::minutes(minutes);
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return Some(t.timestamp()),
            LocalResult::Ambiguous(earliest, _) => return Some(earliest.timestamp()),
            LocalResult::None => {}
        }
    }
    None
}

/// An instant as RFC 3339 in `tz` (`Z` for UTC), for the admin API.
pub fn rfc3339(at: i64, tz: Tz) -> String {
    match DateTime::from_timestamp(at, 0) {
        Some(t) if tz == Tz::UTC => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        Some(t) => t.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        None => at.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    fn tz(name: &str) -> Tz {
        zone(Some(name)).unwrap()
    }

    #[test]
    fn minutes_are_utc_calendar_minutes() {
        let w =
            window_at(LimitKind::TokensPerMinute, at("2026-01-31T10:15:42Z"), tz("Asia/Shanghai"))
                .unwrap();
        assert_eq!((w.start, w.end), (at("2026-01-31T10:15:00Z"), at("2026-01-31T10:16:00Z")));
        assert_eq!(window_at(LimitKind::ConcurrentRequests, 5, Tz::UTC), None);
    }

    #[test]
    fn a_shanghai_day_starts_at_16_utc() {
        let w = window_at(LimitKind::TokensPerDay, at("2026-01-31T15:59:59Z"), tz("Asia/Shanghai"))
            .unwrap();
        assert_eq!((w.start, w.end), (at("2026-01-30T16:00:00Z"), at("2026-01-31T16:00:00Z")));
        let next =
            window_at(LimitKind::TokensPerDay, at("2026-01-31T16:00:00Z"), tz("Asia/Shanghai"))
                .unwrap();
        assert_eq!(next.start, w.end);
        assert_eq!(rfc3339(next.start, tz("Asia/Shanghai")), "2026-02-01T00:00:00+08:00");
        assert_eq!(rfc3339(next.start, Tz::UTC), "2026-01-31T16:00:00Z");
    }

    #[test]
    fn new_york_days_are_23_and_25_hours_when_the_clocks_change() {
        let ny = tz("America/New_York");
        let spring =
            window_at(LimitKind::TokensPerDay, at("2026-03-08T12:00:00-04:00"), ny).unwrap();
        assert_eq!(spring.start, at("2026-03-08T00:00:00-05:00"));
        assert_eq!(spring.end - spring.start, 23 * 3600);
        let autumn =
            window_at(LimitKind::TokensPerDay, at("2026-11-01T12:00:00-05:00"), ny).unwrap();
        assert_eq!(autumn.start, at("2026-11-01T00:00:00-04:00"));
        assert_eq!(autumn.end - autumn.start, 25 * 3600);
    }

    #[test]
    fn months_are_calendar_months_of_the_zone_and_december_rolls_over() {
        let w =
            window_at(LimitKind::TokensPerMonth, at("2026-12-31T20:00:00Z"), tz("Asia/Shanghai"))
                .unwrap();
        assert_eq!(
            (w.start, w.end),
            (at("2026-12-31T16:00:00Z"), at("2027-01-31T16:00:00Z")),
            "already January there"
        );
        let utc =
            window_at(LimitKind::TokensPerMonth, at("2026-02-15T00:00:00Z"), Tz::UTC).unwrap();
        assert_eq!((utc.start, utc.end), (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")));
    }

    #[test]
    fn a_zone_whose_clocks_jump_at_midnight_starts_its_day_at_the_first_existing_time() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2024-09-08.
        let w = window_at(
            LimitKind::TokensPerDay,
            at("2024-09-08T12:00:00-03:00"),
            tz("America/Santiago"),
        )
        .unwrap();
        assert_eq!(w.start, at("2024-09-08T01:00:00-03:00"));
        assert_eq!(zone(Some("Mars/Olympus")), None);
        assert_eq!(zone(None), Some(Tz::UTC));
    }
}
