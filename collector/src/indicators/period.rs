//! Report periods: a calendar month (`2026-10`), quarter (`2026-Q4`) or year (`2026`), in UTC,
//! as a half-open interval `[start, end)` of Unix milliseconds plus its length in months (costs
//! are monthly: a period's link cost is the monthly price times its months).

use serde::Serialize;
use time::{Date, Month, PrimitiveDateTime, Time};

/// A calendar period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// As written by the user: `2026-10`, `2026-Q4`, `2026`.
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub months: u32,
}

/// A period that does not parse; the message gives the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("period {0:?}: expected a month (2026-10), a quarter (2026-Q4) or a year (2026)")]
pub struct PeriodError(pub String);

fn month_start_ms(year: i32, month: u32) -> Option<i64> {
    let (y, m) = (year + (month as i32 - 1) / 12, (month - 1) % 12 + 1);
    let m = Month::try_from(u8::try_from(m).ok()?).ok()?;
    let d = Date::from_calendar_date(y, m, 1).ok()?;
    Some(
        PrimitiveDateTime::new(d, Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp()
            * 1000,
    )
}

impl Period {
    /// # Errors
    /// [`PeriodError`] for anything but `YYYY`, `YYYY-MM`, `YYYY-Qn` (years 1970–9999).
    pub fn parse(s: &str) -> Result<Self, PeriodError> {
        let err = || PeriodError(s.to_string());
        let t = s.trim();
        let year = |y: &str| -> Result<i32, PeriodError> {
            if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            let v: i32 = y.parse().map_err(|_| err())?;
            if v < 1970 {
                return Err(err());
            }
            Ok(v)
        };
        let (y, first, months) =
            if let Some((y, q)) = t.split_once("-Q").or_else(|| t.split_once("-q")) {
                let q: u32 = match q {
                    "1" => 1,
                    "2" => 2,
                    "3" => 3,
                    "4" => 4,
                    _ => return Err(err()),
                };
                (year(y)?, 3 * (q - 1) + 1, 3)
            } else if let Some((y, m)) = t.split_once('-') {
                if m.len() != 2 || !m.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                let m: u32 = m.parse().map_err(|_| err())?;
                if !(1..=12).contains(&m) {
                    return Err(err());
                }
                (year(y)?, m, 1)
            } else {
                (year(t)?, 1, 12)
            };
        Ok(Self {
            label: t.to_string(),
            start_ms: month_start_ms(y, first).ok_or_else(err)?,
            end_ms: month_start_ms(y, first + months).ok_or_else(err)?,
            months,
        })
    }

    /// End of what can have been measured: the period end, or `now` inside the period.
    pub fn measured_end(&self, now_ms: i64) -> i64 {
        self.end_ms.min(now_ms).max(self.start_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn months_quarters_years() {
        let p = Period::parse("2026-10").unwrap();
        // 2026-10-01T00:00:00Z = 1790812800 s.
        assert_eq!(p.start_ms, 1_790_812_800_000);
        assert_eq!(p.end_ms - p.start_ms, 31 * DAY);
        assert_eq!(p.months, 1);
        let q = Period::parse("2026-Q4").unwrap();
        assert_eq!(
            (q.start_ms, q.end_ms - q.start_ms, q.months),
            (p.start_ms, 92 * DAY, 3)
        );
        let y = Period::parse("2026").unwrap();
        assert_eq!((y.end_ms - y.start_ms, y.months), (365 * DAY, 12));
        // Leap years: February 2028 has 29 days, 2028 has 366.
        assert_eq!(
            Period::parse("2028-02").unwrap().end_ms - Period::parse("2028-02").unwrap().start_ms,
            29 * DAY
        );
        let l = Period::parse("2028").unwrap();
        assert_eq!(l.end_ms - l.start_ms, 366 * DAY);
        // December rolls over into the next year.
        let d = Period::parse("2026-12").unwrap();
        assert_eq!(d.end_ms, Period::parse("2027").unwrap().start_ms);
    }

    #[test]
    fn bad_periods() {
        for s in [
            "2026-13",
            "2026-Q5",
            "26",
            "2026-1",
            "octobre",
            "2026-10-01",
            "",
        ] {
            assert!(Period::parse(s).is_err(), "{s}");
        }
    }
}
