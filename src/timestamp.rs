//! Timestamps without clock reads: time enters graft once, at the edge (the binary reads
//! `SOURCE_DATE_EPOCH` or the clock) and flows through the library as a [`Timestamp`].

use std::fmt;

use crate::error::{Error, Result};

/// Seconds since the Unix epoch (UTC), formatted as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The fixed default used when `SOURCE_DATE_EPOCH` is unset and no clock is wanted:
    /// the epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Parse a `SOURCE_DATE_EPOCH` value (decimal seconds).
    pub fn parse_epoch(value: &str) -> Result<Timestamp> {
        value
            .trim()
            .parse::<i64>()
            .map(Timestamp)
            .map_err(|_| Error::Invalid {
                what: "SOURCE_DATE_EPOCH".into(),
                reason: format!("{value:?} is not a whole number of seconds since 1970-01-01"),
            })
    }

    /// `SOURCE_DATE_EPOCH` from the environment, if set. Only the binary should call this.
    pub fn from_env() -> Result<Option<Timestamp>> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Timestamp::parse_epoch(&v)?)),
            _ => Ok(None),
        }
    }

    /// RFC 3339 in UTC with a `Z` suffix, e.g. `2024-01-02T03:04:05Z`.
    pub fn rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(951_782_400).rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(Timestamp(1_700_000_000).rfc3339(), "2023-11-14T22:13:20Z");
        assert_eq!(Timestamp(-1).rfc3339(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses() {
        assert_eq!(Timestamp::parse_epoch(" 42 ").unwrap(), Timestamp(42));
        assert!(Timestamp::parse_epoch("yesterday")
            .unwrap_err()
            .to_string()
            .contains("SOURCE_DATE_EPOCH"));
    }
}
