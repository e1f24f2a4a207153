//! `--shard I/N`: a deterministic 1/N of a library's images, so that N CI jobs refresh the
//! library exactly once between them, without talking to each other.
//!
//! An image belongs to shard `1 + (h mod N)`, where `h` is the first eight bytes (big-endian)
//! of the SHA-256 of its name. SHA-256 rather than Rust's `DefaultHasher`, whose output may
//! change between Rust releases: the assignment must stay the same across graft versions and
//! machines (a plan job and its refresh jobs may even run different builds). By name, not by
//! manifest file, because `graft refresh NAME` refreshes every manifest of a name together:
//! one name is never split between two jobs.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::library::Library;

/// One shard of N: `index` in `1..=count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count` (both counted from 1). Usage error unless
    /// `1 <= index <= count`.
    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 || index == 0 || index > count {
            return Err(Error::Input {
                what: format!("shard {index}/{count}"),
                reason: "the shard is I/N with 1 <= I <= N (e.g. 1/3, 2/3, 3/3)".into(),
            });
        }
        Ok(Shard { index, count })
    }

    /// This shard's number, from 1.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The shard (from 1) that the image `name` belongs to among `count` (0 is treated as 1).
    pub fn of(name: &str, count: u32) -> u32 {
        let hash = Sha256::digest(name.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&hash[..8]);
        // The modulo's bias is below 2^-32 for any u32 count: irrelevant for a job split.
        (u64::from_be_bytes(head) % u64::from(count.max(1))) as u32 + 1
    }

    /// Whether the image `name` is in this shard.
    pub fn contains(&self, name: &str) -> bool {
        Shard::of(name, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// `I/N`, e.g. `2/3`.
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::Input {
            what: format!("shard {s:?}"),
            reason: "expected I/N with whole numbers 1 <= I <= N (e.g. 2/3)".into(),
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let number = |t: &str| {
            // `u32::from_str` accepts a leading `+`: a shard is digits only.
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<u32>().map_err(|_| bad())
        };
        Shard::new(number(i)?, number(n)?)
    }
}

/// The images of `lib` named in `names` (every image when empty) that are in `shard`.
/// `names` are checked against the whole library first (an unknown name is an error even
/// when it would be in another shard).
pub fn select(lib: Library, names: &[String], shard: Shard) -> Result<Library> {
    crate::ops::refresh::select(&lib, names)?;
    Ok(lib.retain_manifests(|m| {
        shard.contains(&m.name) && (names.is_empty() || names.contains(&m.name))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard::new(2, 3).unwrap());
        assert_eq!("1/1".parse::<Shard>().unwrap().to_string(), "1/1");
        for bad in [
            "",
            "3",
            "0/3",
            "4/3",
            "1/0",
            "0/0",
            "a/3",
            "1/b",
            "+1/3",
            "1/-3",
            " 1/3",
            "1/3/3",
            "1.0/3",
            "1/99999999999",
        ] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.is_usage(), "{bad:?}: {err}");
        }
    }

    /// The assignment must never change across versions: CI jobs of one run may use
    /// different graft builds, and a changed split would refresh some images twice and some
    /// never. These values are SHA-256 of the name, first 8 bytes, mod N, plus 1.
    #[test]
    fn the_assignment_is_golden() {
        let golden: &[(&str, u32, u32)] = &[
            ("astro-notebook", 3, 1),
            ("sci-notebook", 3, 3),
            ("solo", 3, 2),
            ("jupyter-sci", 7, 1),
            ("", 5, 3),
            ("image-00", 3, 2),
            ("image-04", 3, 3),
            ("image-05", 3, 1),
            ("image-01", 1, 1),
        ];
        for (name, n, want) in golden {
            assert_eq!(Shard::of(name, *n), *want, "{name:?} of {n}");
            assert!(Shard::new(*want, *n).unwrap().contains(name));
        }
    }

    #[test]
    fn every_name_is_in_exactly_one_shard() {
        for n in 1..=9 {
            for i in 0..50 {
                let name = format!("image-{i:02}");
                let hits = (1..=n)
                    .filter(|&k| Shard::new(k, n).unwrap().contains(&name))
                    .count();
                assert_eq!(hits, 1, "{name} of {n}");
            }
        }
    }
}
