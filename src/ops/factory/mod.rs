//! The image factory (issue 15; docs/factory.md): `images.yaml` is the source of truth, state
//! files under `state/` keep what was found out (bases discovered in Dockerfiles, digests,
//! builds), and `check` says which images are due for a rebuild because a base moved.
//!
//! - [`config`]: images.yaml, schema-checked with file:line problems;
//! - [`library`]: graft's own library manifests as managed images;
//! - [`names`]: DNS-1123 names of bases, derived from references;
//! - [`state`]: the state files (seed field order, atomic writes, unknown runtime data kept);
//! - [`sync`]: enrollment and base discovery (`graft factory sync`);
//! - [`check`]: the base watch and the rebuild decision (`graft factory check`);
//! - [`record`]: build history from refresh reports (`graft factory record`);
//! - [`warehouse`]: Kargo Warehouses for bases and external images (`graft factory warehouses`).
//!
//! Time is passed in (`now`): nothing here reads a clock.

pub mod check;
pub mod config;
pub mod library;
pub mod names;
pub mod record;
pub mod state;
pub mod sync;
pub mod warehouse;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

use crate::ops::select::days_from_civil;
pub use crate::ops::select::{exact_tag, select_tag, tag_pattern, Strategy};

/// A duration as images.yaml writes it: a whole number and a unit, `7d`, `12h`, `30m`, `45s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delay {
    /// As written (kept in state files).
    pub text: String,
    /// In seconds.
    pub seconds: i64,
}

impl Delay {
    /// No delay (`0s`), when images.yaml gives none.
    pub fn zero() -> Delay {
        Delay {
            text: "0s".into(),
            seconds: 0,
        }
    }

    /// Parse `7d`, `12h`, `30m`, `45s`, `2w`.
    pub fn parse(text: &str) -> std::result::Result<Delay, String> {
        let bad = || {
            format!(
                "{text:?} is not a duration: a whole number and a unit (s, m, h, d, w), e.g. 7d, 12h, 30m"
            )
        };
        let t = text.trim();
        let unit = t.chars().last().ok_or_else(bad)?;
        let per = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let digits = &t[..t.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        // At most ~100 years: beyond that it is a typo, and the arithmetic stays far from overflow.
        let seconds = n
            .checked_mul(per)
            .filter(|s| *s <= 100 * 366 * 86_400)
            .ok_or_else(bad)?;
        Ok(Delay {
            text: t.to_string(),
            seconds,
        })
    }
}

impl Serialize for Delay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Parse an RFC 3339 time in UTC (`2024-12-04T10:00:00Z`, fractions dropped, `+00:00`
/// allowed) or `@SECONDS`.
pub fn parse_time(s: &str) -> Result<Timestamp> {
    let bad = || Error::Input {
        what: format!("time {s:?}"),
        reason: "expected RFC 3339 in UTC (2024-12-04T10:00:00Z) or @SECONDS".into(),
    };
    if let Some(n) = s.strip_prefix('@') {
        return n.parse::<i64>().map(Timestamp).map_err(|_| bad());
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64> {
        let t = s.get(r).ok_or_else(bad)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00" | "-00:00") {
        return Err(bad());
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    Ok(Timestamp(
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se,
    ))
}

/// A duration in words for messages: `3d 4h`, `12m`.
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays() {
        assert_eq!(Delay::parse("7d").unwrap().seconds, 604_800);
        assert_eq!(Delay::parse("12h").unwrap().seconds, 43_200);
        assert_eq!(Delay::parse("30m").unwrap().seconds, 1800);
        for bad in ["", "7", "d", "7 days", "-1d", "1.5h", "99999999999999999d"] {
            assert!(Delay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_round_trip() {
        for t in [0i64, 1_733_306_400, 951_782_400, 1_700_000_000] {
            assert_eq!(parse_time(&Timestamp(t).rfc3339()).unwrap(), Timestamp(t));
        }
        assert_eq!(
            parse_time("2024-12-04T10:00:00.5+00:00").unwrap().rfc3339(),
            "2024-12-04T10:00:00Z"
        );
        assert_eq!(parse_time("@5").unwrap(), Timestamp(5));
        for bad in [
            "yesterday",
            "2024-12-04",
            "2024-12-04T10:00:00+02:00",
            "2024-13-04T10:00:00Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
