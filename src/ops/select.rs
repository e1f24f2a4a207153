//! Kargo's image selection strategies (`imageSelectionStrategy`: SemVer, Lexical, NewestBuild,
//! Digest), with Kargo's meaning, for every use case that picks "the newest" image of a
//! repository: `graft factory check` and `graft mirror` (docs/decisions.md, "Kargo's image
//! selection").
//!
//! SemVer and Lexical order tags ([`ordered_tags`]); NewestBuild reads images
//! ([`newest_builds`]): as Kargo's `newestBuildSelector`, every allowed tag's manifest and
//! config, ordered by the config's `created`, newest first, ties by tag (greater first). An
//! index's time is the newest `created` of its platform images (with a platform: that
//! platform's). Digest follows one given tag.

use std::fmt;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, Platform, RawManifest};
use crate::ops::attachments::is_attachment_tag;
use crate::store::repo::Repository;
use crate::store::{read_blob, Source, CONFIG_LIMIT};
use crate::timestamp::Timestamp;

/// The most candidate tags NewestBuild reads (a manifest, and a config per platform, each):
/// Kargo reads every allowed tag; graft refuses beyond this many, asking for a narrower
/// `allowTags`, rather than issue thousands of requests.
pub const MAX_NEWEST_BUILD_CANDIDATES: usize = 1000;

/// The most platform images of one index NewestBuild reads a config of.
const MAX_PLATFORMS: usize = 64;

/// How the newest image of a repository is chosen: Kargo's `imageSelectionStrategy`, with
/// Kargo's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// The image one tag points at now (a mutable tag followed by digest).
    Digest,
    /// The lexically greatest allowed tag.
    Lexical,
    /// The most recently built image (its config's `created`; see [`newest_builds`]).
    NewestBuild,
    /// The greatest allowed tag that is a strict semantic version (`1.2.3`, `v1.2.3-rc.1`).
    SemVer,
}

impl Strategy {
    /// From its Kargo spelling.
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "Digest" => Strategy::Digest,
            "Lexical" => Strategy::Lexical,
            "NewestBuild" => Strategy::NewestBuild,
            "SemVer" => Strategy::SemVer,
            _ => return None,
        })
    }

    /// Its Kargo spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Digest => "Digest",
            Strategy::Lexical => "Lexical",
            Strategy::NewestBuild => "NewestBuild",
            Strategy::SemVer => "SemVer",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one tag an `^TAG$` pattern allows, if it is that simple (dots may be escaped).
pub fn exact_tag(pattern: &str) -> Option<String> {
    let inner = pattern.strip_prefix('^')?.strip_suffix('$')?;
    let tag = inner.replace("\\.", ".");
    crate::reference::validate_tag(&tag).ok()?;
    (!tag.contains(['*', '+', '?', '(', ')', '[', ']', '|', '\\', '{', '}'])).then_some(tag)
}

/// `^TAG$`, dots escaped (a tag is `[\w][\w.-]*`: `.` is its only regex metacharacter),
/// as the seed writes it: `^22-bookworm-slim$`.
pub fn tag_pattern(tag: &str) -> String {
    format!("^{}$", tag.replace('.', "\\."))
}

/// The tag `strategy` selects among `tags` (those `allow` matches), or `None` (always `None`
/// for Digest and NewestBuild: the one needs its tag given, the other reads images, see
/// [`newest_builds`]).
pub fn select_tag(
    strategy: Strategy,
    allow: Option<&regex::Regex>,
    tags: &[String],
) -> Option<String> {
    ordered_tags(strategy, allow, tags).into_iter().next()
}

/// The candidates of a tag-ordered strategy, best first: the tags `allow` matches, attachment
/// tags (`sha256-<hex>[.sig|.att|.sbom]`) never among them; SemVer keeps only strict semantic
/// versions, greatest first (equal versions, `v1.0.0` and `1.0.0`, by tag, greater first);
/// Lexical orders by bytes, greatest first. Empty for Digest and NewestBuild.
pub fn ordered_tags(
    strategy: Strategy,
    allow: Option<&regex::Regex>,
    tags: &[String],
) -> Vec<String> {
    let allowed = candidates(allow, tags);
    match strategy {
        Strategy::Lexical => {
            let mut v: Vec<String> = allowed.cloned().collect();
            v.sort_by(|a, b| b.cmp(a));
            v.dedup();
            v
        }
        Strategy::SemVer => {
            let mut v: Vec<(SemVer, &String)> = allowed
                .filter_map(|t| SemVer::parse(t).map(|v| (v, t)))
                .collect();
            v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(a.1)));
            v.dedup_by(|a, b| a.1 == b.1);
            v.into_iter().map(|(_, t)| t.clone()).collect()
        }
        Strategy::Digest | Strategy::NewestBuild => Vec::new(),
    }
}

/// The tags `allow` matches (all without it), attachment tags never among them.
pub fn candidates<'a>(
    allow: Option<&'a regex::Regex>,
    tags: &'a [String],
) -> impl Iterator<Item = &'a String> + 'a {
    tags.iter()
        .filter(move |t| !is_attachment_tag(t) && allow.map_or(true, |re| re.is_match(t)))
}

/// A strict semantic version (major, minor and patch all present), as Kargo's default
/// `strictSemvers: true` reads tags; a leading `v` is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SemVer {
    core: [u64; 3],
    pre: Vec<String>,
}

impl SemVer {
    fn parse(tag: &str) -> Option<SemVer> {
        let t = tag.strip_prefix('v').unwrap_or(tag);
        let t = t.split_once('+').map_or(t, |(a, _)| a);
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, p.split('.').map(str::to_string).collect()),
            None => (t, Vec::new()),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3 {
            return None;
        }
        let mut n = [0u64; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return None;
            }
            n[i] = p.parse().ok()?;
        }
        Some(SemVer { core: n, pre })
    }
}

impl Ord for SemVer {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        self.core
            .cmp(&o.core)
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Equal,
                (true, false) => Greater,
                (false, true) => Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&o.pre) {
                        let c = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Less,
                            (Err(_), Ok(_)) => Greater,
                            _ => a.cmp(b),
                        };
                        if c != Equal {
                            return c;
                        }
                    }
                    self.pre.len().cmp(&o.pre.len())
                }
            })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// One candidate of NewestBuild: its tag, the digest the tag pointed at when read, and its
/// build time (`None`: no or an unreadable `created`, older than any time, as Kargo's zero
/// time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The tag.
    pub tag: String,
    /// The manifest or index it pointed at (with a platform: still the tag's root).
    pub digest: Digest,
    /// The config's `created` (an index: the newest of its platforms').
    pub created: Option<Timestamp>,
}

/// NewestBuild over `tags` of `repo`: the candidates (those `allow` matches, never attachment
/// tags) read `jobs` at a time, newest build first, ties broken by tag (greater first, as
/// Kargo). With `platform`, an index counts by that platform's image and a candidate without
/// it is left out; a single image must be of that platform. Every manifest and config is read
/// verified by digest and size-limited by the store's readers.
pub async fn newest_builds(
    repo: &dyn Repository,
    allow: Option<&regex::Regex>,
    tags: &[String],
    platform: Option<&Platform>,
    jobs: usize,
) -> Result<Vec<Built>> {
    let picked: Vec<&String> = candidates(allow, tags).collect();
    if picked.len() > MAX_NEWEST_BUILD_CANDIDATES {
        return Err(Error::Invalid {
            what: format!("NewestBuild over {}", repo.name()),
            reason: format!(
                "{} tags are allowed, more than the {MAX_NEWEST_BUILD_CANDIDATES} graft reads \
                 the configs of: narrow the allowed tags",
                picked.len()
            ),
        });
    }
    let src = repo.source(None)?;
    let src = src.as_ref();
    let read: Vec<Option<Built>> = stream::iter(picked)
        .map(|tag| async move {
            let root = repo.tagged(tag).await?.ok_or_else(|| Error::NotFound {
                what: format!("tag {tag} of {}", repo.name()),
                detail: Some("it was listed, then gone".into()),
            })?;
            let created = built_at(src, &root, platform)
                .await
                .map_err(|e| e.context(format!("reading the build time of {tag}")))?;
            Ok::<_, Error>(created.map(|created| Built {
                tag: tag.clone(),
                digest: root.digest().clone(),
                created,
            }))
        })
        .buffered(jobs.max(1))
        .try_collect()
        .await?;
    let mut built: Vec<Built> = read.into_iter().flatten().collect();
    sort_newest_first(&mut built);
    Ok(built)
}

/// Newest `created` first (no time last), ties by tag, greater first (Kargo's order).
pub fn sort_newest_first(built: &mut [Built]) {
    built.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.tag.cmp(&a.tag)));
}

/// The build time of `root`: `Some(time)` when it counts (with `platform`, `None` when it has
/// no image of that platform).
async fn built_at(
    src: &dyn Source,
    root: &RawManifest,
    platform: Option<&Platform>,
) -> Result<Option<Option<Timestamp>>> {
    if !root.is_index() {
        return config_created(src, root, platform).await;
    }
    let entries: Vec<&Descriptor> = root
        .view()
        .manifests
        .iter()
        // Attestation manifests (`unknown/unknown`) are not images of a platform.
        .filter(|d| !d.platform.as_ref().is_some_and(|p| p.is_unknown()))
        .filter(|d| match platform {
            Some(want) => d.platform.as_ref().is_some_and(|p| p.matches(want)),
            None => true,
        })
        .take(MAX_PLATFORMS)
        .collect();
    if entries.is_empty() && platform.is_some() {
        return Ok(None);
    }
    let mut newest: Option<Timestamp> = None;
    for d in entries
        .into_iter()
        .take(if platform.is_some() { 1 } else { MAX_PLATFORMS })
    {
        let m = src.manifest(d).await?;
        if m.is_index() {
            continue;
        }
        if let Some(t) = config_created(src, &m, None).await?.flatten() {
            newest = newest.max(Some(t));
        }
    }
    Ok(Some(newest))
}

/// The `created` of an image manifest's config (with `platform`: `None` unless the config's
/// os/architecture match).
async fn config_created(
    src: &dyn Source,
    m: &RawManifest,
    platform: Option<&Platform>,
) -> Result<Option<Option<Timestamp>>> {
    let Some(config) = &m.view().config else {
        return Ok(Some(None));
    };
    let bytes = read_blob(src, config, CONFIG_LIMIT).await?;
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        created: Option<String>,
        #[serde(default)]
        architecture: Option<String>,
        #[serde(default)]
        os: Option<String>,
        #[serde(default)]
        variant: Option<String>,
    }
    // Not an image config (an artifact's): no time.
    let Ok(c) = serde_json::from_slice::<Config>(&bytes) else {
        return Ok(Some(None));
    };
    if let Some(want) = platform {
        let have = Platform {
            architecture: c.architecture.clone().unwrap_or_default(),
            os: c.os.clone().unwrap_or_default(),
            variant: c.variant.clone(),
            ..Platform::default()
        };
        if !have.matches(want) {
            return Ok(None);
        }
    }
    Ok(Some(c.created.as_deref().and_then(parse_created)))
}

/// An image config's `created`: RFC 3339 with any offset and fraction (dropped), as Docker,
/// buildah and BuildKit write it.
pub fn parse_created(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())
            .flatten()
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let (sign, hm) = match rest.as_bytes().first()? {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return None,
            };
            let (oh, om) = hm.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            let (oh, om): (i64, i64) = (oh.parse().ok()?, om.parse().ok()?);
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(Timestamp(
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset,
    ))
}

/// Howard Hinnant's days_from_civil: a proleptic Gregorian date to days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_tags_as_kargo() {
        let tags: Vec<String> = [
            "16-alpine",
            "15-alpine",
            "16",
            "v1.2.3",
            "1.10.0",
            "1.9.9",
            "1.10.0-rc.1",
            "1.2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let re = regex::Regex::new("alpine$").unwrap();
        assert_eq!(
            select_tag(Strategy::Lexical, Some(&re), &tags).as_deref(),
            Some("16-alpine")
        );
        assert_eq!(
            select_tag(Strategy::SemVer, None, &tags).as_deref(),
            Some("1.10.0")
        );
        assert_eq!(exact_tag("^16-alpine$").as_deref(), Some("16-alpine"));
        assert_eq!(exact_tag("^3\\.12$").as_deref(), Some("3.12"));
        assert_eq!(exact_tag("^16-.*$"), None);
    }

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn orders_as_kargo() {
        let hex = "a".repeat(64);
        let sig = format!("sha256-{hex}.sig");
        let tags = owned(&[
            "1.9.0",
            "1.10.0",
            "v2.0.0-rc.1",
            "latest",
            "zz",
            &sig,
            "1.2",
        ]);
        assert_eq!(
            ordered_tags(Strategy::SemVer, None, &tags),
            owned(&["v2.0.0-rc.1", "1.10.0", "1.9.0"])
        );
        let with_release = owned(&["v2.0.0-rc.1", "2.0.0", "2.0.0-rc.2", "2.0.0-alpha"]);
        assert_eq!(
            ordered_tags(Strategy::SemVer, None, &with_release),
            owned(&["2.0.0", "2.0.0-rc.2", "v2.0.0-rc.1", "2.0.0-alpha"])
        );
        // Attachment tags are never candidates, even of Lexical (`sha256-…` > `latest`).
        assert_eq!(
            ordered_tags(Strategy::Lexical, None, &tags)[0],
            "zz".to_string()
        );
        let re = regex::Regex::new("^[0-9]").unwrap();
        assert_eq!(
            select_tag(Strategy::Lexical, Some(&re), &tags).as_deref(),
            Some("1.9.0")
        );
        assert!(ordered_tags(Strategy::NewestBuild, None, &tags).is_empty());
        assert!(ordered_tags(Strategy::Digest, None, &tags).is_empty());
    }

    #[test]
    fn newest_build_order() {
        let b = |tag: &str, t: Option<i64>| Built {
            tag: tag.into(),
            digest: Digest::sha256(tag.as_bytes()),
            created: t.map(Timestamp),
        };
        let mut v = vec![
            b("a", Some(5)),
            b("z", None),
            b("c", Some(9)),
            b("b", Some(9)),
        ];
        sort_newest_first(&mut v);
        let order: Vec<&str> = v.iter().map(|x| x.tag.as_str()).collect();
        assert_eq!(order, ["c", "b", "a", "z"]);
    }

    #[test]
    fn created_times() {
        assert_eq!(
            parse_created("2024-12-04T10:00:00Z"),
            Some(Timestamp(1_733_306_400))
        );
        assert_eq!(
            parse_created("2024-12-04T12:00:00.123456789+02:00"),
            Some(Timestamp(1_733_306_400))
        );
        assert_eq!(
            parse_created("2024-12-04T05:30:00-04:30"),
            Some(Timestamp(1_733_306_400))
        );
        for bad in [
            "",
            "2024-12-04",
            "2024-12-04T10:00:00",
            "2024-12-04T10:00:00+2",
        ] {
            assert_eq!(parse_created(bad), None, "{bad}");
        }
    }
}
