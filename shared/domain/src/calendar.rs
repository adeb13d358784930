//! Business calendars (docs/domain.md, "Handover and SLA"): the working time SLA deadlines
//! run on. A lead routed on Friday at 17:55 with two working hours to go is due on Monday
//! morning, not on Friday night; holidays count as days off.
//!
//! A calendar has a time zone (IANA, daylight saving included), the working days of the week,
//! one working window per working day (`08:00-18:00`; `00:00-24:00` for the whole day) and
//! holiday dates. Working time is counted only inside the windows.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many days a search for working time may look ahead (ten years): a calendar with
/// working days always finds some long before; validation refuses one without.
const MAX_DAYS: i64 = 3660;

/// An amount of working time: minutes (`15m`), hours (`4h`) or working days (`2d`, each as
/// long as the calendar's working window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkTime {
    Minutes(u32),
    Days(u32),
}

impl WorkTime {
    /// The longest amount accepted: a year of minutes or 366 working days.
    pub const MAX_MINUTES: u32 = 366 * 24 * 60;
    pub const MAX_DAYS: u32 = 366;

    pub fn is_zero(self) -> bool {
        matches!(self, WorkTime::Minutes(0) | WorkTime::Days(0))
    }
}

impl FromStr for WorkTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!("{s:?} is not a duration: use minutes (15m), hours (4h) or working days (2d)")
        };
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
        let n: u32 = digits.parse().map_err(|_| bad())?;
        let t = match unit {
            "m" => WorkTime::Minutes(n),
            "h" => WorkTime::Minutes(n.checked_mul(60).ok_or_else(bad)?),
            "d" => WorkTime::Days(n),
            _ => return Err(bad()),
        };
        match t {
            WorkTime::Minutes(m) if m > Self::MAX_MINUTES => {
                Err(format!("{s:?} is longer than a year"))
            }
            WorkTime::Days(d) if d > Self::MAX_DAYS => Err(format!("{s:?} is longer than a year")),
            t => Ok(t),
        }
    }
}

impl fmt::Display for WorkTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkTime::Minutes(m) if *m % 60 == 0 && *m > 0 => write!(f, "{}h", m / 60),
            WorkTime::Minutes(m) => write!(f, "{m}m"),
            WorkTime::Days(d) => write!(f, "{d}d"),
        }
    }
}

impl Serialize for WorkTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WorkTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A working window of the day, in local time: `from` up to `to`, as minutes after midnight
/// (`to` may be 1440, the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    from: u16,
    to: u16,
}

impl WorkingHours {
    pub const ALL_DAY: WorkingHours = WorkingHours { from: 0, to: 1440 };

    fn minutes(self) -> i64 {
        i64::from(self.to - self.from)
    }
}

impl FromStr for WorkingHours {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a working window: use HH:MM-HH:MM, e.g. 08:00-18:00");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Result<u16, String> {
            let t = t.trim();
            if t == "24:00" {
                return Ok(1440);
            }
            let time = NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| bad())?;
            Ok((time.hour() * 60 + time.minute()) as u16)
        };
        let (from, to) = (minute(a)?, minute(b)?);
        if from >= to {
            return Err(format!("{s:?}: the window must end after it starts"));
        }
        Ok(Self { from, to })
    }
}

impl fmt::Display for WorkingHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.from), hm(self.to))
    }
}

/// A business calendar: when the working time of a team runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    time_zone: Tz,
    /// Monday first.
    working_days: [bool; 7],
    hours: WorkingHours,
    holidays: BTreeSet<NaiveDate>,
}

/// What is wrong with a calendar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("time_zone {0:?} is not an IANA time zone (e.g. Europe/Berlin)")]
    TimeZone(String),
    #[error("working_days: {0:?} is not a day (mon, tue, wed, thu, fri, sat, sun)")]
    Day(String),
    #[error("working_days must name at least one day")]
    NoWorkingDays,
    #[error("working_hours: {0}")]
    Hours(String),
}

impl BusinessCalendar {
    /// Every minute of every day counts (UTC): working time is elapsed time.
    pub fn always() -> Self {
        Self {
            time_zone: Tz::UTC,
            working_days: [true; 7],
            hours: WorkingHours::ALL_DAY,
            holidays: BTreeSet::new(),
        }
    }

    pub fn new(
        time_zone: &str,
        working_days: &[String],
        working_hours: &str,
        holidays: BTreeSet<NaiveDate>,
    ) -> Result<Self, CalendarError> {
        let time_zone: Tz = time_zone
            .parse()
            .map_err(|_| CalendarError::TimeZone(time_zone.to_owned()))?;
        let mut days = [false; 7];
        for d in working_days {
            let day: Weekday = d.parse().map_err(|_| CalendarError::Day(d.clone()))?;
            days[day.num_days_from_monday() as usize] = true;
        }
        if !days.contains(&true) {
            return Err(CalendarError::NoWorkingDays);
        }
        let hours = working_hours.parse().map_err(CalendarError::Hours)?;
        Ok(Self {
            time_zone,
            working_days: days,
            hours,
            holidays,
        })
    }

    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// How long one working day is (the window).
    pub fn working_day(&self) -> Duration {
        Duration::minutes(self.hours.minutes())
    }

    fn is_working_day(&self, date: NaiveDate) -> bool {
        self.working_days[date.weekday().num_days_from_monday() as usize]
            && !self.holidays.contains(&date)
    }

    /// The instant of a local date and minute of the day. A local time that a daylight-saving
    /// change skips counts as the first instant after the gap; one it repeats, as the first.
    fn instant(&self, date: NaiveDate, minute: u16) -> DateTime<Utc> {
        let (date, minute) = if minute >= 1440 {
            (date.succ_opt().unwrap_or(date), minute - 1440)
        } else {
            (date, minute)
        };
        let local = date.and_time(NaiveTime::MIN) + Duration::minutes(i64::from(minute));
        for shift in [0, 30, 60, 90, 120] {
            if let Some(t) = self
                .time_zone
                .from_local_datetime(&(local + Duration::minutes(shift)))
                .earliest()
            {
                return t.with_timezone(&Utc);
            }
        }
        // No zone has gaps longer than two hours; stay total all the same.
        Utc.from_utc_datetime(&local)
    }

    /// The working window of a local date, in UTC; `None` on days off.
    fn window(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.is_working_day(date).then(|| {
            (
                self.instant(date, self.hours.from),
                self.instant(date, self.hours.to),
            )
        })
    }

    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }

    /// The instant `work` of working time after `start`. Zero work is `start` itself.
    pub fn add(&self, start: DateTime<Utc>, work: WorkTime) -> DateTime<Utc> {
        let mut remaining = match work {
            WorkTime::Minutes(m) => Duration::minutes(i64::from(m)),
            WorkTime::Days(d) => self.working_day() * d as i32,
        };
        if remaining <= Duration::zero() {
            return start;
        }
        // The window of the day before may still be open (a window that ends after midnight
        // in UTC terms is not one, but a local day starts before its UTC date may).
        let mut date = self.local_date(start).pred_opt().unwrap_or(NaiveDate::MIN);
        for _ in 0..MAX_DAYS {
            if let Some((from, to)) = self.window(date) {
                let begin = from.max(start);
                if begin < to {
                    let available = to - begin;
                    if remaining <= available {
                        return begin + remaining;
                    }
                    remaining -= available;
                }
            }
            date = match date.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        DateTime::<Utc>::MAX_UTC
    }

    /// The working time between `from` and `to` (none when `to` is not later).
    pub fn working_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        if to <= from {
            return Duration::zero();
        }
        let mut total = Duration::zero();
        let mut date = self.local_date(from).pred_opt().unwrap_or(NaiveDate::MIN);
        let last = self.local_date(to);
        while date <= last {
            if let Some((a, b)) = self.window(date) {
                let (a, b) = (a.max(from), b.min(to));
                if a < b {
                    total += b - a;
                }
            }
            date = match date.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn berlin() -> BusinessCalendar {
        let weekdays: Vec<String> = ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        let holidays = ["2026-12-24", "2026-12-25", "2026-12-26", "2027-01-01"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect();
        BusinessCalendar::new("Europe/Berlin", &weekdays, "08:00-18:00", holidays).unwrap()
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!("15m".parse(), Ok(WorkTime::Minutes(15)));
        assert_eq!("48h".parse(), Ok(WorkTime::Minutes(48 * 60)));
        assert_eq!("2d".parse(), Ok(WorkTime::Days(2)));
        assert_eq!(WorkTime::Minutes(90).to_string(), "90m");
        assert_eq!(WorkTime::Minutes(120).to_string(), "2h");
        for bad in ["", "15", "m", "1.5h", "2w", "-3h", "9999999d", "99999999h"] {
            assert!(bad.parse::<WorkTime>().is_err(), "{bad:?}");
        }
        assert!(WorkTime::Minutes(0).is_zero() && WorkTime::Days(0).is_zero());
    }

    #[test]
    fn a_lead_routed_on_friday_evening_is_due_on_monday() {
        let c = berlin();
        // Friday 2026-11-20 17:55 in Berlin (CET, UTC+1) is 16:55 UTC.
        let friday = at("2026-11-20T16:55:00Z");
        // 5 minutes on Friday, then 2 h from Monday 08:00 (07:00 UTC).
        assert_eq!(
            c.add(friday, "125m".parse().unwrap()),
            at("2026-11-23T09:00:00Z")
        );
        // Two working days: Monday's ten hours and all but five minutes of Tuesday's.
        assert_eq!(c.add(friday, WorkTime::Days(2)), at("2026-11-24T16:55:00Z"));
        assert_eq!(
            c.working_between(friday, at("2026-11-23T09:00:00Z")),
            Duration::minutes(125)
        );
        // Saturday counts for nothing.
        assert_eq!(
            c.working_between(at("2026-11-21T00:00:00Z"), at("2026-11-22T23:00:00Z")),
            Duration::zero()
        );
    }

    #[test]
    fn holidays_are_days_off() {
        let c = berlin();
        // Wednesday 23 December 2026, 17:00 local: one hour left; 24 to 27 are off.
        let start = at("2026-12-23T16:00:00Z");
        assert_eq!(
            c.add(start, "2h".parse().unwrap()),
            at("2026-12-28T08:00:00Z")
        );
    }

    #[test]
    fn daylight_saving_moves_the_window_in_utc() {
        let c = berlin();
        // Friday 27 March 2026 is CET (08:00 = 07:00 UTC); Monday 30 March is CEST (06:00 UTC).
        let friday_close = at("2026-03-27T17:00:00Z");
        assert_eq!(
            c.add(friday_close, "1h".parse().unwrap()),
            at("2026-03-30T07:00:00Z")
        );
        let always = BusinessCalendar::always();
        assert_eq!(
            always.add(friday_close, "1h".parse().unwrap()),
            at("2026-03-27T18:00:00Z")
        );
    }

    #[test]
    fn calendars_are_checked() {
        let days = vec!["mon".to_owned()];
        assert!(matches!(
            BusinessCalendar::new("Mars/Olympus", &days, "08:00-18:00", BTreeSet::new()),
            Err(CalendarError::TimeZone(_))
        ));
        assert!(matches!(
            BusinessCalendar::new("UTC", &["funday".into()], "08:00-18:00", BTreeSet::new()),
            Err(CalendarError::Day(_))
        ));
        assert!(matches!(
            BusinessCalendar::new("UTC", &[], "08:00-18:00", BTreeSet::new()),
            Err(CalendarError::NoWorkingDays)
        ));
        for hours in ["18:00-08:00", "8-18", "08:00", "08:00-25:00"] {
            assert!(
                BusinessCalendar::new("UTC", &days, hours, BTreeSet::new()).is_err(),
                "{hours}"
            );
        }
        assert!(BusinessCalendar::new("UTC", &days, "00:00-24:00", BTreeSet::new()).is_ok());
    }

    proptest! {
        #[test]
        fn adding_working_time_is_counted_back_exactly(
            start_min in 0i64..(4 * 365 * 24 * 60),
            minutes in 1u32..(30 * 24 * 60),
        ) {
            let c = berlin();
            let start = at("2026-01-01T00:00:00Z") + Duration::minutes(start_min);
            let due = c.add(start, WorkTime::Minutes(minutes));
            prop_assert!(due > start);
            prop_assert_eq!(c.working_between(start, due), Duration::minutes(i64::from(minutes)));
            // Due inside working time: a minute earlier is still working time.
            prop_assert_eq!(
                c.working_between(due - Duration::minutes(1), due),
                Duration::minutes(1)
            );
            let always = BusinessCalendar::always();
            prop_assert_eq!(always.add(start, WorkTime::Minutes(minutes)), start + Duration::minutes(i64::from(minutes)));
        }

        #[test]
        fn more_work_is_never_due_earlier(start_min in 0i64..(365 * 24 * 60), a in 1u32..20_000, b in 1u32..20_000) {
            let c = berlin();
            let start = at("2026-01-01T00:00:00Z") + Duration::minutes(start_min);
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(c.add(start, WorkTime::Minutes(lo)) <= c.add(start, WorkTime::Minutes(hi)));
        }
    }
}
