//! Mirroring: a sync file names source repositories with tag filters and a destination (a
//! registry prefix, an `oci:` layout or an `oci-archive:` file); every selected image goes
//! through the copy engine. A source may select by Kargo's strategies
//! (`image_selection_strategy`, [`crate::ops::select`]). Incremental: an image whose digest
//! is already at the destination is skipped after one request to each side.
//!
//! In a multi-image layout or archive, each image is tagged with its original reference
//! (`org.opencontainers.image.ref.name` = `host/repo:tag`, as crane and zarf do), so an import
//! maps it back to `<prefix>/repo:tag`.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::copy::{copy_image, resolve_root, CopyOptions, Dedupe};
use crate::error::{Error, Result};
use crate::oci::{Digest, Platform};
use crate::ops::attachments::{copy_attachments, AttachmentsReport};
use crate::ops::copy::{discover_attached, verify_root, Pinned};
use crate::ops::select::{newest_builds, ordered_tags, Strategy};
use crate::progress::Reporter;
use crate::reference::{DockerRef, ImageRef, LayoutRef};
use crate::sign::repo::Repo;
use crate::sign::PublicKey;
use crate::store::open::{open_repository, open_sink, open_source, Endpoint};
use crate::store::Sink;

/// A sync file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// `docker://HOST[/PREFIX]`, `oci:DIR` or `oci-archive:FILE`.
    pub destination: String,
    /// Images copied at once (default 4).
    #[serde(default)]
    pub jobs: Option<usize>,
    /// Copy signatures, attestations, SBOMs and referrers with every image (default false;
    /// a source's own `with_attachments` overrides it).
    #[serde(default)]
    pub with_attachments: Option<bool>,
    /// What to mirror.
    pub sources: Vec<SourceSpec>,
}

/// One source repository and its filters.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `docker://HOST/REPO` (a tag, if given, is ignored; a digest, `HOST/REPO@sha256:…`,
    /// mirrors exactly that image, stored by digest and named `HOST/REPO@sha256:…` in an
    /// export), or an `oci:`/`oci-archive:` made by a mirror (its images carry their
    /// original references).
    pub repository: String,
    /// Exact tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A regular expression tags must match (like the image factory's `allowTags`).
    #[serde(default)]
    pub allow_tags: Option<String>,
    /// Keep only the newest N of the selected tags, by version order (`v1.10` > `v1.9`;
    /// without `image_selection_strategy`).
    #[serde(default)]
    pub latest: Option<usize>,
    /// Kargo's `imageSelectionStrategy`, with Kargo's meaning ([`crate::ops::select`]):
    /// `SemVer`, `Lexical` or `NewestBuild` among the tags `allow_tags` matches (all without
    /// it), or `Digest`: the one tag `tags` names, at its digest now.
    #[serde(default)]
    pub image_selection_strategy: Option<String>,
    /// With `image_selection_strategy`: mirror the N newest by it (default 1, Kargo's newest
    /// image).
    #[serde(default)]
    pub newest: Option<usize>,
    /// Copy only this platform out of each index (a single platform; the digest then is that
    /// platform's manifest).
    #[serde(default)]
    pub platform: Option<String>,
    /// Destination repository path (default: the source repository path).
    #[serde(default)]
    pub to: Option<String>,
    /// Copy this source's attachments (overrides the top-level `with_attachments`).
    #[serde(default)]
    pub with_attachments: Option<bool>,
}

/// Read and check a sync file.
pub fn load_config(path: &Path) -> Result<MirrorConfig> {
    // A sync file that is missing or unreadable is a wrong argument (exit 2).
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Unsupported(format!("cannot read the sync file {}: {e}", path.display()))
    })?;
    // Its contents are input too: a mistake in them is bad input (exit 2).
    let cfg: MirrorConfig = serde_yaml_ng::from_str(&text).map_err(|e| Error::Input {
        what: format!("sync file {}", path.display()),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| Error::Input {
        what: format!("sync file {}", path.display()),
        reason,
    };
    cfg.destination
        .parse::<ImageRef>()
        .map_err(|e| bad(format!("destination: {e}")))?;
    for (i, s) in cfg.sources.iter().enumerate() {
        s.repository
            .parse::<ImageRef>()
            .map_err(|e| bad(format!("sources[{i}].repository: {e}")))?;
        if let Some(re) = &s.allow_tags {
            regex::Regex::new(re).map_err(|e| bad(format!("sources[{i}].allow_tags: {e}")))?;
        }
        if let Some(p) = &s.platform {
            p.parse::<Platform>()
                .map_err(|e| bad(format!("sources[{i}].platform: {e}")))?;
        }
        check_strategy(s).map_err(|(field, why)| bad(format!("sources[{i}].{field}: {why}")))?;
    }
    Ok(cfg)
}

/// A source's strategy and its count; a mistake as (field, why).
fn check_strategy(
    s: &SourceSpec,
) -> std::result::Result<Option<(Strategy, usize)>, (&str, String)> {
    let Some(name) = &s.image_selection_strategy else {
        if s.newest.is_some() {
            return Err((
                "newest",
                "needs image_selection_strategy (without one, `latest: N` keeps the newest N by \
                 version order)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let strategy = Strategy::parse(name).ok_or_else(|| {
        (
            "image_selection_strategy",
            format!(
                "{name:?} is not one of SemVer, Lexical, NewestBuild, Digest (Kargo's spelling)"
            ),
        )
    })?;
    if s.latest.is_some() {
        return Err((
            "latest",
            "cannot go with image_selection_strategy: say how many with `newest: N`".into(),
        ));
    }
    let n = s.newest.unwrap_or(1);
    if n == 0 {
        return Err(("newest", "must be at least 1".into()));
    }
    match strategy {
        Strategy::Digest => {
            if s.tags.len() != 1 || s.allow_tags.is_some() {
                return Err((
                    "tags",
                    "the Digest strategy follows exactly one tag: `tags: [TAG]`, no allow_tags"
                        .into(),
                ));
            }
            if n != 1 {
                return Err(("newest", "the Digest strategy selects one image".into()));
            }
        }
        _ if !s.tags.is_empty() => {
            return Err((
                "tags",
                format!(
                    "the {strategy} strategy selects among the tags allow_tags matches: exact \
                     tags go without a strategy (or with Digest)"
                ),
            ));
        }
        _ => {}
    }
    Ok(Some((strategy, n)))
}

/// A source's strategy and count, or the error naming the field.
fn strategy_of(spec: &SourceSpec) -> Result<Option<(Strategy, usize)>> {
    check_strategy(spec).map_err(|(field, why)| Error::Input {
        what: format!("source {}", spec.repository),
        reason: format!("{field}: {why}"),
    })
}

/// Order version-like tags: numeric runs compare as numbers, a leading `v` is ignored, and a
/// release sorts after its pre-releases (`1.0` > `1.0-rc1`).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> (Vec<u64>, String) {
        let s = s.strip_prefix('v').unwrap_or(s);
        let (core, pre) = s.split_once('-').unwrap_or((s, ""));
        let nums = core
            .split(['.', '_'])
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        (nums, pre.to_string())
    }
    let (na, pa) = parts(a);
    let (nb, pb) = parts(b);
    na.cmp(&nb)
        .then_with(|| match (pa.is_empty(), pb.is_empty()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => pa.cmp(&pb),
        })
        .then_with(|| a.cmp(b))
}

/// A source's `allow_tags`, compiled (checked when the sync file was read).
fn allow_tags(spec: &SourceSpec) -> Result<Option<regex::Regex>> {
    spec.allow_tags
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| Error::Unsupported(format!("allow_tags: {e}")))
}

/// No tag of the source is left by `allow_tags` and `strategy`.
fn none_selected(spec: &SourceSpec, strategy: Strategy, available: &[String]) -> Error {
    Error::NotFound {
        what: format!(
            "a tag of {} that allow_tags and {strategy} select",
            spec.repository
        ),
        detail: Some(format!("{} tag(s) exist", available.len())),
    }
}

/// Apply a source's filters to the tags that exist. Attachment tags (`sha256-<hex>[.sig|.att|
/// .sbom]`) are never images of their own: they travel with their subjects.
///
/// With `image_selection_strategy` SemVer or Lexical, the `newest` (default 1) best tags by it;
/// with Digest, its one tag. NewestBuild reads images: [`plan`] does it, not this.
pub fn select_tags(available: &[String], spec: &SourceSpec) -> Result<Vec<String>> {
    if let Some((strategy, n)) = strategy_of(spec)? {
        let allow = allow_tags(spec)?;
        let selected = match strategy {
            Strategy::Digest => {
                let t = &spec.tags[0];
                if !available.contains(t) {
                    return Err(Error::NotFound {
                        what: format!("tag {t:?} of {}", spec.repository),
                        detail: None,
                    });
                }
                vec![t.clone()]
            }
            Strategy::NewestBuild => {
                return Err(Error::Unsupported(format!(
                    "source {}: NewestBuild reads images, not tag names: only registry \
                     sources can use it",
                    spec.repository
                )))
            }
            s => {
                let mut v = ordered_tags(s, allow.as_ref(), available);
                v.truncate(n);
                v
            }
        };
        if selected.is_empty() {
            return Err(none_selected(spec, strategy, available));
        }
        return Ok(selected);
    }
    let available: Vec<String> = available
        .iter()
        .filter(|t| !crate::ops::attachments::is_attachment_tag(t))
        .cloned()
        .collect();
    let available = available.as_slice();
    let mut selected: Vec<String> = if spec.tags.is_empty() && spec.allow_tags.is_none() {
        available.to_vec()
    } else {
        let re = allow_tags(spec)?;
        for t in &spec.tags {
            if !available.contains(t) {
                return Err(Error::NotFound {
                    what: format!("tag {t:?} of {}", spec.repository),
                    detail: None,
                });
            }
        }
        available
            .iter()
            .filter(|t| spec.tags.contains(t) || re.as_ref().is_some_and(|r| r.is_match(t)))
            .cloned()
            .collect()
    };
    selected.sort_by(|a, b| version_cmp(b, a));
    if let Some(n) = spec.latest {
        selected.truncate(n);
    }
    if selected.is_empty() {
        return Err(Error::NotFound {
            what: format!("a tag of {} matching the filters", spec.repository),
            detail: Some(format!("{} tag(s) exist", available.len())),
        });
    }
    Ok(selected)
}

/// One image to mirror.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Where it comes from.
    pub source: String,
    /// Where it goes.
    pub destination: String,
    /// Platform filter.
    pub platform: Option<String>,
    /// Copy its attachments too.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub with_attachments: bool,
}

/// What happened to one image, as `--output json` and the text listing name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Written (the image, or attachments it lacked).
    Copied,
    /// Already at the destination: nothing written.
    Skipped,
    /// Not copied; the outcome's `error` says why.
    Failed,
}

impl Status {
    /// The word for it: `copied`, `skipped` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Copied => "copied",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The image.
    #[serde(flatten)]
    pub item: Item,
    /// Copied, skipped or failed.
    pub status: Status,
    /// The digest at the destination.
    pub digest: Option<Digest>,
    /// Bytes sent.
    pub bytes_uploaded: u64,
    /// The error, for failures.
    pub error: Option<String>,
    /// What was found and copied of its attachments (with `with_attachments`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<AttachmentsReport>,
}

fn repo_path(d: &DockerRef) -> String {
    d.repository.clone()
}

/// Where `original` goes in `dest`. A digest-pinned original keeps its digest and no tag: by
/// digest in a registry, named `host/repo@sha256:…` in a layout or archive.
fn destination_for(dest: &ImageRef, original: &DockerRef, to: Option<&str>) -> Result<ImageRef> {
    let tag = original.tag.clone().unwrap_or_else(|| "latest".into());
    let (tag, digest) = match &original.digest {
        Some(d) => (None, Some(d.clone())),
        None => (Some(tag), None),
    };
    // How a layout entry names it: `:tag` or `@sha256:…`.
    let suffix = match (&tag, &digest) {
        (_, Some(d)) => format!("@{d}"),
        (Some(t), None) => format!(":{t}"),
        (None, None) => String::new(),
    };
    Ok(match dest {
        ImageRef::Docker(prefix) => {
            let path = to
                .map(str::to_string)
                .unwrap_or_else(|| repo_path(original));
            let repository = if prefix.repository.is_empty() {
                path
            } else {
                format!("{}/{}", prefix.repository, path)
            };
            ImageRef::Docker(DockerRef {
                registry: prefix.registry.clone(),
                repository,
                tag,
                digest,
            })
        }
        ImageRef::Layout(l) | ImageRef::Archive(l) => {
            let name = match to {
                Some(t) => format!("{}/{t}{suffix}", original.registry),
                None => format!("{}{suffix}", original.name()),
            };
            let r = LayoutRef {
                path: l.path.clone(),
                tag: Some(name),
            };
            if matches!(dest, ImageRef::Layout(_)) {
                ImageRef::Layout(r)
            } else {
                ImageRef::Archive(r)
            }
        }
    })
}

/// Parse a mirror destination: a registry prefix may be just a host.
pub fn parse_destination(s: &str) -> Result<ImageRef> {
    if let Some(rest) = s.strip_prefix("docker://") {
        let rest = rest.trim_end_matches('/');
        if !rest.contains('/') {
            return Ok(ImageRef::Docker(DockerRef {
                registry: rest.to_string(),
                repository: String::new(),
                tag: None,
                digest: None,
            }));
        }
        let d = DockerRef::parse(rest)?;
        return Ok(ImageRef::Docker(DockerRef { tag: None, ..d }));
    }
    s.parse()
}

/// Turn the sync file into a list of images, listing tags where needed. Sources that cannot be
/// listed or whose filters match nothing are returned as failures.
pub async fn plan(cfg: &MirrorConfig, ep: &Endpoint) -> (Vec<Item>, Vec<Outcome>) {
    let mut items = Vec::new();
    let mut failures = Vec::new();
    let dest = match parse_destination(&cfg.destination) {
        Ok(d) => d,
        Err(e) => {
            failures.push(failure(&cfg.destination, &cfg.destination, None, &e));
            return (items, failures);
        }
    };
    for spec in &cfg.sources {
        let with = spec
            .with_attachments
            .or(cfg.with_attachments)
            .unwrap_or(false);
        match plan_source(spec, &dest, ep).await {
            Ok(mut v) if with => {
                v.iter_mut().for_each(|i| i.with_attachments = true);
                items.append(&mut v)
            }
            Ok(mut v) => items.append(&mut v),
            Err(e) => failures.push(failure(
                &spec.repository,
                &cfg.destination,
                spec.platform.clone(),
                &e,
            )),
        }
    }
    (items, failures)
}

fn failure(source: &str, destination: &str, platform: Option<String>, e: &Error) -> Outcome {
    Outcome {
        item: Item {
            source: source.to_string(),
            destination: destination.to_string(),
            platform,
            with_attachments: false,
        },
        status: Status::Failed,
        digest: None,
        bytes_uploaded: 0,
        error: Some(crate::error::one_line(e)),
        attachments: None,
    }
}

async fn plan_source(spec: &SourceSpec, dest: &ImageRef, ep: &Endpoint) -> Result<Vec<Item>> {
    let src: ImageRef = spec.repository.parse()?;
    let mut out = Vec::new();
    // Tags of a registry repository; in an export made by graft mirror, every entry's name
    // (its original reference).
    let listed = match &src {
        ImageRef::Docker(d) if d.digest.is_some() => Vec::new(),
        _ => open_repository(&src, ep, false)?.list_tags().await?,
    };
    match &src {
        ImageRef::Docker(d) if d.digest.is_some() => {
            // Pinned: exactly that image, whatever the tags say now.
            let filters = [
                (!spec.tags.is_empty(), "tags"),
                (spec.allow_tags.is_some(), "allow_tags"),
                (spec.latest.is_some(), "latest"),
                (
                    spec.image_selection_strategy.is_some(),
                    "image_selection_strategy",
                ),
                (spec.newest.is_some(), "newest"),
                (spec.platform.is_some(), "platform"),
            ];
            if let Some((_, field)) = filters.iter().find(|(set, _)| *set) {
                return Err(Error::Invalid {
                    what: format!("source {}", spec.repository),
                    reason: format!(
                        "it pins a digest, which mirrors exactly that image: `{field}` cannot \
                         apply to it"
                    ),
                });
            }
            let original = DockerRef {
                tag: None,
                ..d.clone()
            };
            out.push(Item {
                source: ImageRef::Docker(original.clone()).to_string(),
                destination: destination_for(dest, &original, spec.to.as_deref())?.to_string(),
                platform: None,
                with_attachments: false,
            });
        }
        ImageRef::Docker(d) => {
            let available = listed;
            let tags = match strategy_of(spec)? {
                Some((Strategy::NewestBuild, n)) => {
                    newest_build_tags(&src, &available, spec, n, ep).await?
                }
                _ => select_tags(&available, spec)?,
            };
            for tag in tags {
                let original = d.with_tag(&tag);
                out.push(Item {
                    source: ImageRef::Docker(original.clone()).to_string(),
                    destination: destination_for(dest, &original, spec.to.as_deref())?.to_string(),
                    platform: spec.platform.clone(),
                    with_attachments: false,
                });
            }
        }
        ImageRef::Layout(l) | ImageRef::Archive(l) => {
            let names = listed;
            let mut by_repo: Vec<(DockerRef, String)> = Vec::new();
            for n in names {
                let tag = n.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                if crate::ops::attachments::is_attachment_tag(tag) {
                    continue;
                }
                let original = DockerRef::parse(&n).map_err(|e| Error::Invalid {
                    what: format!("{src}"),
                    reason: format!(
                        "entry {n:?} is not an image reference as graft mirror writes them: {e}"
                    ),
                })?;
                by_repo.push((original, n));
            }
            let available: Vec<String> =
                by_repo.iter().filter_map(|(d, _)| d.tag.clone()).collect();
            // Entries named by digest (`host/repo@sha256:…`, from a digest-pinned source) have
            // no tag to filter: they come with every import that does not name tags.
            let unfiltered = spec.tags.is_empty()
                && spec.allow_tags.is_none()
                && spec.image_selection_strategy.is_none();
            let pinned = by_repo.iter().any(|(d, _)| d.tag.is_none());
            let wanted = match available.is_empty() && pinned && unfiltered {
                true => Vec::new(),
                false => select_tags(&available, spec)?,
            };
            for (original, name) in by_repo {
                let keep = match &original.tag {
                    Some(t) => wanted.contains(t),
                    None => unfiltered,
                };
                if !keep {
                    continue;
                }
                let source = LayoutRef {
                    path: l.path.clone(),
                    tag: Some(name),
                };
                let source = match &src {
                    ImageRef::Layout(_) => ImageRef::Layout(source),
                    _ => ImageRef::Archive(source),
                };
                out.push(Item {
                    source: source.to_string(),
                    destination: destination_for(dest, &original, spec.to.as_deref())?.to_string(),
                    platform: spec.platform.clone(),
                    with_attachments: false,
                });
            }
        }
    }
    Ok(out)
}

/// The `n` newest builds of a registry source (Kargo's NewestBuild over allow_tags).
async fn newest_build_tags(
    src: &ImageRef,
    available: &[String],
    spec: &SourceSpec,
    n: usize,
    ep: &Endpoint,
) -> Result<Vec<String>> {
    let allow = allow_tags(spec)?;
    let platform = spec
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let repo = open_repository(src, ep, false)?;
    let built = newest_builds(
        repo.as_ref(),
        allow.as_ref(),
        available,
        platform.as_ref(),
        NEWEST_BUILD_JOBS,
    )
    .await?;
    if built.is_empty() {
        return Err(none_selected(spec, Strategy::NewestBuild, available));
    }
    Ok(built.into_iter().take(n).map(|b| b.tag).collect())
}

/// Candidate images NewestBuild reads at once.
const NEWEST_BUILD_JOBS: usize = 4;

/// Mirror every item, `jobs` images at a time; failures do not stop the others. Items bound
/// for one layout or archive share one sink, committed once at the end.
///
/// With `verify_key`, an image whose signature does not verify with it is refused (failed,
/// naming the image and the reason) before anything of it is written.
pub async fn run(
    items: Vec<Item>,
    ep: &Endpoint,
    jobs: usize,
    verify_key: Option<&PublicKey>,
    reporter: &Arc<dyn Reporter>,
) -> Vec<Outcome> {
    let dedupe = Arc::new(Dedupe::default());
    let mut shared: Option<(ImageRef, Arc<dyn Sink>)> = None;
    if let Some(first) = items.first() {
        if let Ok(ImageRef::Layout(l) | ImageRef::Archive(l)) =
            first.destination.parse::<ImageRef>()
        {
            let whole = LayoutRef {
                path: l.path.clone(),
                tag: None,
            };
            let r = if first.destination.starts_with("oci:") {
                ImageRef::Layout(whole)
            } else {
                ImageRef::Archive(whole)
            };
            match open_sink(&r, ep).await {
                Ok(s) => shared = Some((r, Arc::from(s))),
                Err(e) => {
                    return items
                        .into_iter()
                        .map(|i| failure(&i.source, &i.destination, i.platform.clone(), &e))
                        .collect();
                }
            }
        }
    }
    let shared_sink = shared.as_ref().map(|(_, s)| s.clone());
    let mut outcomes: Vec<Outcome> = futures::stream::iter(items)
        .map(|item| {
            let dedupe = dedupe.clone();
            let shared_sink = shared_sink.clone();
            async move {
                match mirror_one(&item, ep, jobs, dedupe, shared_sink, verify_key, reporter).await {
                    Ok(o) => o,
                    Err(e) => Outcome {
                        item,
                        status: Status::Failed,
                        digest: None,
                        bytes_uploaded: 0,
                        error: Some(crate::error::one_line(&e)),
                        attachments: None,
                    },
                }
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    if let Some((r, sink)) = shared {
        if let Err(e) = sink.commit().await {
            let msg = crate::error::one_line(&e.context(format!("writing {r}")));
            for o in outcomes.iter_mut().filter(|o| o.status == Status::Copied) {
                o.status = Status::Failed;
                o.error = Some(msg.clone());
            }
        }
    }
    outcomes
}

async fn mirror_one(
    item: &Item,
    ep: &Endpoint,
    jobs: usize,
    dedupe: Arc<Dedupe>,
    shared_sink: Option<Arc<dyn Sink>>,
    verify_key: Option<&PublicKey>,
    reporter: &Arc<dyn Reporter>,
) -> Result<Outcome> {
    let src_ref: ImageRef = item.source.parse()?;
    let dst_ref: ImageRef = item.destination.parse()?;
    let platform = item
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    // Resolved once: the root checked below is the root copied (see ops::copy).
    let src = Pinned::pin(open_source(&src_ref, ep).await?).await?;
    let repo = if item.with_attachments || verify_key.is_some() {
        Some(Repo::open_read(&src_ref, ep).await?)
    } else {
        None
    };
    if let (Some(key), Some(repo)) = (verify_key, &repo) {
        verify_root(&src, repo, key, &item.source).await?;
    }
    let found = match (&repo, item.with_attachments) {
        (Some(repo), true) => Some(
            discover_attached(repo, &src, platform.as_ref())
                .await
                .map_err(|e| e.context(format!("finding the attachments of {}", item.source)))?,
        ),
        _ => None,
    };
    if let ImageRef::Docker(DockerRef {
        digest: Some(want), ..
    }) = &dst_ref
    {
        let root = resolve_root(&src, platform.as_ref()).await?;
        if want != root.digest() {
            return Err(Error::DigestMismatch {
                what: format!("{} (mirrored to {})", item.source, item.destination),
                expected: want.clone(),
                found: root.digest().clone(),
            });
        }
    }
    let commit = shared_sink.is_none();
    let dst: Arc<dyn Sink> = match shared_sink {
        Some(s) => s,
        None => Arc::from(open_sink(&dst_ref, ep).await?),
    };
    let tags = crate::store::open::destination_tags(&dst_ref);
    let opts = CopyOptions {
        platform,
        jobs,
        tags,
        dedupe: Some(dedupe),
        commit: false,
        ..CopyOptions::default()
    };
    // The destination, for merging into its own signatures and referrers indexes.
    let merge_repo = match item.with_attachments {
        true => Some(Repo::open_destination(&dst_ref, ep).await?),
        false => None,
    };
    let mut skip = None;
    if opts.platform.is_none() {
        // Incremental: one request to each side when nothing changed (plus, with attachments,
        // the discovery at the source and one HEAD per attachment at the destination).
        let root = src.root();
        let there = match opts.tags.first() {
            Some(tag) => dst.tag_digest(tag).await?.as_ref() == Some(root.digest()),
            // Stored by digest (a digest-pinned source).
            None => dst.has_manifest(&root.descriptor()).await?,
        };
        if there {
            skip = Some(root.digest().clone());
        }
    }
    let (digest, mut bytes, mut status) = match &skip {
        Some(d) => (d.clone(), 0, Status::Skipped),
        None => {
            let report = copy_image(&src, dst.as_ref(), &opts, reporter).await?;
            (report.digest, report.uploaded.bytes, Status::Copied)
        }
    };
    let mut attachments = None;
    if let (Some(found), Some(repo), Some(merge_repo)) =
        (&found, repo.as_ref(), merge_repo.as_ref())
    {
        let r = copy_attachments(
            repo,
            dst.as_ref(),
            &dst_ref,
            found,
            Some(merge_repo),
            &opts,
            reporter,
        )
        .await
        .map_err(|e| e.context(format!("copying the attachments of {}", item.source)))?;
        bytes += r.bytes_uploaded;
        if r.copied > 0 || r.merged > 0 {
            status = Status::Copied;
        }
        attachments = Some(r);
    }
    if commit {
        dst.commit().await?;
    }
    Ok(Outcome {
        item: item.clone(),
        status,
        digest: Some(digest),
        bytes_uploaded: bytes,
        error: None,
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SourceSpec {
        SourceSpec {
            repository: "docker://r.example/app".into(),
            tags: vec![],
            allow_tags: None,
            latest: None,
            image_selection_strategy: None,
            newest: None,
            platform: None,
            to: None,
            with_attachments: None,
        }
    }

    #[test]
    fn versions_order() {
        let mut v = vec!["v1.9", "v1.10", "1.10-rc1", "latest", "2.0"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, vec!["latest", "v1.9", "1.10-rc1", "v1.10", "2.0"]);
    }

    #[test]
    fn filters() {
        let tags: Vec<String> = ["1.0", "1.1", "1.2", "2.0-rc1", "latest"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut s = spec();
        s.allow_tags = Some(r"^\d+\.\d+$".into());
        s.latest = Some(2);
        assert_eq!(select_tags(&tags, &s).unwrap(), vec!["1.2", "1.1"]);
        s.tags = vec!["latest".into()];
        s.latest = None;
        assert_eq!(select_tags(&tags, &s).unwrap().len(), 4);
        s.tags = vec!["nope".into()];
        assert!(select_tags(&tags, &s)
            .unwrap_err()
            .to_string()
            .contains("nope"));
        let mut s = spec();
        s.allow_tags = Some("^9".into());
        assert!(select_tags(&tags, &s)
            .unwrap_err()
            .to_string()
            .contains("matching the filters"));
    }

    #[test]
    fn strategies() {
        let tags: Vec<String> = ["1.9.0", "1.10.0", "v2.0.0-rc.1", "latest", "zz"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut s = spec();
        s.image_selection_strategy = Some("SemVer".into());
        assert_eq!(select_tags(&tags, &s).unwrap(), vec!["v2.0.0-rc.1"]);
        s.allow_tags = Some(r"^\d".into());
        s.newest = Some(5);
        assert_eq!(select_tags(&tags, &s).unwrap(), vec!["1.10.0", "1.9.0"]);
        s.image_selection_strategy = Some("Lexical".into());
        s.allow_tags = None;
        s.newest = None;
        assert_eq!(select_tags(&tags, &s).unwrap(), vec!["zz"]);
        s.image_selection_strategy = Some("Digest".into());
        s.tags = vec!["latest".into()];
        assert_eq!(select_tags(&tags, &s).unwrap(), vec!["latest"]);
        let bad = |f: fn(&mut SourceSpec), field: &str| {
            let mut s = spec();
            f(&mut s);
            let (got, why) = check_strategy(&s).unwrap_err();
            assert_eq!(got, field, "{why}");
        };
        bad(
            |s| s.image_selection_strategy = Some("Newest".into()),
            "image_selection_strategy",
        );
        bad(|s| s.newest = Some(2), "newest");
        bad(
            |s| {
                s.image_selection_strategy = Some("Digest".into());
                s.tags = vec!["a".into(), "b".into()];
            },
            "tags",
        );
        bad(
            |s| {
                s.image_selection_strategy = Some("SemVer".into());
                s.latest = Some(2);
            },
            "latest",
        );
        bad(
            |s| {
                s.image_selection_strategy = Some("NewestBuild".into());
                s.newest = Some(0);
            },
            "newest",
        );
    }

    #[test]
    fn destinations() {
        let orig = DockerRef::parse("ghcr.io/org/app:1.0").unwrap();
        let d = destination_for(
            &parse_destination("docker://127.0.0.1:5000/mirror").unwrap(),
            &orig,
            None,
        )
        .unwrap();
        assert_eq!(d.to_string(), "docker://127.0.0.1:5000/mirror/org/app:1.0");
        let d = destination_for(
            &parse_destination("docker://127.0.0.1:5000").unwrap(),
            &orig,
            Some("x/y"),
        )
        .unwrap();
        assert_eq!(d.to_string(), "docker://127.0.0.1:5000/x/y:1.0");
        let d = destination_for(
            &parse_destination("oci-archive:/tmp/a.tar").unwrap(),
            &orig,
            None,
        )
        .unwrap();
        assert_eq!(d.to_string(), "oci-archive:/tmp/a.tar:ghcr.io/org/app:1.0");
    }
}
