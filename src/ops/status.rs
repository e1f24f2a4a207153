//! `graft status`: per final image, what the registry has against what the library would
//! write now (decisions §22), and the tags no manifest produces any more.
//!
//! An image is compared through the tags of the run's branch whose template has no per-build
//! placeholder (`{version}` on the default branch, `{version}-{branch}` on others): the root
//! they point at records the input digest it was made from ([`crate::ops::inputs`]) and the
//! science root it was built on (`org.opencontainers.image.base.digest`). The same reading
//! serves `refresh` ([`existing`], [`Existing::up_to_date`]), which skips images up to date.
//!
//! Costs per image: the science root (one manifest read), the compat layer (built locally,
//! once per run), one manifest read per compared tag; per repository, one tag list and, for
//! each tag no template produces, one HEAD (a tag on a current image, such as `stable` right
//! after `graft promote`, is not an orphan).

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::image::append::BASE_DIGEST;
use crate::library::branches::OTHER_BRANCH_TAGS;
use crate::library::load::locate;
use crate::library::template::{expand_tag, parse, BuildInfo, Piece};
use crate::library::{Library, Manifest};
use crate::oci::Digest;
use crate::ops::inputs::{per_build, recorded, Inputs};
use crate::ops::refresh::{probe, select, LayerCache, RefreshOptions, CHECKS_AT_ONCE};
use crate::ops::tag::is_digest_tag;
use crate::reference::{validate_tag, ImageRef};
use crate::store::open::{open_repository, open_source, Endpoint};
use crate::timestamp::Timestamp;

/// What one compared tag of an image holds.
#[derive(Debug, Clone, Serialize)]
pub struct ExistingTag {
    /// The reference, as the library writes it.
    pub reference: String,
    /// The reference, resolved (relative layout paths made absolute).
    #[serde(skip)]
    pub image: ImageRef,
    /// What it points at; `None` when the tag does not exist.
    pub root: Option<SeenRoot>,
}

/// The root a tag points at, as far as status reads it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SeenRoot {
    /// Its digest.
    pub digest: Digest,
    /// The input digest it records (`org.graft.inputs`), if any.
    pub inputs: Option<Digest>,
    /// The science root it was built on (`org.opencontainers.image.base.digest`), if recorded.
    pub science: Option<Digest>,
}

/// The compared tags of one image (see the module docs).
#[derive(Debug, Clone, Serialize)]
pub struct Existing {
    /// One per template without a per-build placeholder, in the library's order.
    pub tags: Vec<ExistingTag>,
}

impl Existing {
    /// The digest the image has when it is up to date for `inputs`: every compared tag
    /// exists, all point at one root, and that root records `inputs`. `None` otherwise, and
    /// when there is no tag to compare (every template is per-build: never skipped).
    pub fn up_to_date(&self, inputs: &Digest) -> Option<Digest> {
        let first = self.tags.first()?.root.as_ref()?;
        for t in &self.tags {
            let r = t.root.as_ref()?;
            if r.digest != first.digest || r.inputs.as_ref() != Some(inputs) {
                return None;
            }
        }
        Some(first.digest.clone())
    }

    fn present(&self) -> impl Iterator<Item = &SeenRoot> {
        self.tags.iter().filter_map(|t| t.root.as_ref())
    }
}

/// Read the roots of `m`'s compared tags for `build` (one manifest read each).
pub async fn existing(
    lib: &Library,
    m: &Manifest,
    build: &BuildInfo,
    ep: &Endpoint,
) -> Result<Existing> {
    let mut refs = Vec::new();
    for t in lib.templates(m) {
        if per_build(t) {
            continue;
        }
        let tag = expand_tag(t, &m.version, build);
        validate_tag(&tag).map_err(|reason| Error::Invalid {
            what: format!("tag {tag:?} of {}", m.rel),
            reason,
        })?;
        let located = locate(lib.root(), &lib.reference_text(m, &tag))?;
        if !refs
            .iter()
            .any(|r: &crate::library::Located| r.text == located.text)
        {
            refs.push(located);
        }
    }
    let mut tags = Vec::new();
    for r in refs {
        let root = read_root(&r.image, ep)
            .await
            .map_err(|e| e.context(format!("reading {} (a tag of {})", r.text, m.rel)))?;
        tags.push(ExistingTag {
            reference: r.text,
            image: r.image,
            root,
        });
    }
    Ok(Existing { tags })
}

/// The root `image` points at, `None` when the tag (or its repository, or layout) does not
/// exist.
async fn read_root(image: &ImageRef, ep: &Endpoint) -> Result<Option<SeenRoot>> {
    let not_found = |e: &Error| matches!(e.root(), Error::NotFound { .. });
    let src = match open_source(image, ep).await {
        Err(e) if not_found(&e) => return Ok(None),
        src => src?,
    };
    let root = match src.resolve().await {
        Err(e) if not_found(&e) => return Ok(None),
        root => root?,
    };
    let ann = root.view().annotations.as_ref();
    Ok(Some(SeenRoot {
        digest: root.digest().clone(),
        inputs: recorded(ann),
        science: ann
            .and_then(|a| a.get(BASE_DIGEST))
            .and_then(|d| d.parse().ok()),
    }))
}

/// What to look at.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// Only the manifests with these image names (empty: all).
    pub names: Vec<String>,
    /// `{branch}` (the run's branch decides the compared tags); build and commit are not used.
    pub build: BuildInfo,
    /// The time a compat layer git knows nothing about gets (as refresh would use).
    pub created: Timestamp,
    /// Also list the tags no manifest produces any more, per repository.
    pub orphans: bool,
}

/// An image's state in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The compared tags hold what a refresh would write now: a refresh skips it.
    UpToDate,
    /// The registry has the image, but not as a refresh would write it now (see the reasons).
    Stale,
    /// None of the compared tags exists.
    Missing,
    /// Every tag template of the branch is per-build: no tag says which image is current.
    Untracked,
}

/// Why an image is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonKind {
    /// The science reference now resolves to another root (a moved tag).
    ScienceMoved,
    /// The compat layer, its config edits, or the library's labels or annotations changed.
    CompatChanged,
    /// The image records no input digest (written by an older graft, or another tool).
    NotRecorded,
    /// A compared tag is missing while another exists.
    TagMissing,
    /// The compared tags point at different images.
    TagsDiffer,
}

/// One reason an image is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// What kind.
    pub kind: ReasonKind,
    /// For people.
    pub message: String,
    /// The old value (science: the digest the image was built on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The new value (science: the digest the reference has now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One final image: the registry against the library.
#[derive(Debug, Clone, Serialize)]
pub struct ImageState {
    /// The image name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The manifest file, relative to the library.
    pub manifest: String,
    /// Up to date, stale, missing or untracked.
    pub state: State,
    /// The compared tags and what they hold.
    pub tags: Vec<ExistingTag>,
    /// The digest the first existing compared tag points at.
    pub digest: Option<Digest>,
    /// The input digest a refresh would write now.
    pub inputs: Digest,
    /// The input digest the image records.
    pub recorded: Option<Digest>,
    /// The science image as named in the manifest.
    pub science: String,
    /// Its root digest now.
    pub science_digest: Digest,
    /// Why it is stale (empty otherwise).
    pub reasons: Vec<Reason>,
}

/// A tag no current manifest produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Orphan {
    /// The repository, as the library names it (`docker://host/repo`, `oci:DIR`).
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// What it points at.
    pub digest: Digest,
}

/// What [`status`] found.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// One per selected manifest, in the library's order.
    pub images: Vec<ImageState>,
    /// Tags no manifest produces any more (with [`StatusRequest::orphans`]), by repository
    /// and tag.
    pub orphans: Vec<Orphan>,
}

/// Compare the selected images of `lib` with what the registry has (see the module docs).
/// Reads only; the images are looked at [`CHECKS_AT_ONCE`] at a time.
pub async fn status(lib: &Library, req: &StatusRequest, ep: &Endpoint) -> Result<StatusReport> {
    let manifests = select(lib, &req.names)?;
    let work = tempfile::tempdir()
        .map_err(|e| Error::io("creating a work directory", std::env::temp_dir(), e))?;
    let opts = RefreshOptions {
        build: req.build.clone(),
        created: req.created,
        dry_run: true,
        jobs: 4,
        work_dir: work.path().to_path_buf(),
    };
    let layers = LayerCache::default();
    let images: Vec<ImageState> = futures::stream::iter(&manifests)
        .map(|m| image_state(lib, m, &opts, ep, &layers))
        .buffered(CHECKS_AT_ONCE)
        .try_collect()
        .await?;
    let orphans = match req.orphans {
        true => orphans(lib, &manifests, &images, ep).await?,
        false => Vec::new(),
    };
    Ok(StatusReport { images, orphans })
}

async fn image_state(
    lib: &Library,
    m: &Manifest,
    opts: &RefreshOptions,
    ep: &Endpoint,
    layers: &LayerCache,
) -> Result<ImageState> {
    let (probe, existing) = tokio::try_join!(
        probe(lib, m, opts, ep, layers),
        existing(lib, m, &opts.build, ep)
    )?;
    let inputs = probe.inputs().clone();
    let science_digest = probe.science_digest().clone();
    let first = existing.present().next().cloned();
    let mut reasons = Vec::new();
    let state = match &first {
        _ if existing.tags.is_empty() => State::Untracked,
        None => State::Missing,
        Some(_) if existing.up_to_date(&inputs).is_some() => State::UpToDate,
        Some(first) => {
            for t in existing.tags.iter().filter(|t| t.root.is_none()) {
                reasons.push(reason(
                    ReasonKind::TagMissing,
                    format!("{} does not exist", t.reference),
                ));
            }
            if existing.present().any(|r| r.digest != first.digest) {
                reasons.push(reason(
                    ReasonKind::TagsDiffer,
                    "the compared tags point at different images".into(),
                ));
            }
            let moved = first.science.as_ref().filter(|old| **old != science_digest);
            if let Some(old) = moved {
                reasons.push(Reason {
                    kind: ReasonKind::ScienceMoved,
                    message: format!(
                        "science {} moved: {old} -> {science_digest}",
                        m.science.image.text
                    ),
                    from: Some(old.to_string()),
                    to: Some(science_digest.to_string()),
                });
            }
            match &first.inputs {
                None => reasons.push(reason(
                    ReasonKind::NotRecorded,
                    "the image records no input digest (written by an older graft or another tool)"
                        .into(),
                )),
                Some(rec) if *rec != inputs => {
                    // With the science moved, the old inputs on the old science root tell whether
                    // the compat side changed too.
                    let compat_same = match moved {
                        Some(old) => {
                            Inputs::of(lib, m, old, probe.layer(), opts.build.branch.as_deref())?
                                .digest()?
                                == *rec
                        }
                        None => false,
                    };
                    if !compat_same {
                        reasons.push(reason(
                        ReasonKind::CompatChanged,
                        "the compat inputs changed (the layer, its config, or the library's labels or annotations)".into(),
                    ));
                    }
                }
                Some(_) => {}
            }
            State::Stale
        }
    };
    Ok(ImageState {
        name: m.name.clone(),
        version: m.version.clone(),
        manifest: m.rel.clone(),
        state,
        digest: first.as_ref().map(|r| r.digest.clone()),
        inputs,
        recorded: first.as_ref().and_then(|r| r.inputs.clone()),
        science: m.science.image.text.clone(),
        science_digest,
        reasons,
        tags: existing.tags,
    })
}

fn reason(kind: ReasonKind, message: String) -> Reason {
    Reason {
        kind,
        message,
        from: None,
        to: None,
    }
}

/// The tags of the selected images' repositories that no manifest of the library produces:
/// a tag matches a manifest when one of its templates (every branch's) matches it with
/// `{version}` as the manifest's version and the other placeholders as wildcards. Digest tags
/// (signatures, attestations, fallback indexes) are attachments, not orphans; a tag on the
/// image a compared tag holds now (a promotion such as `stable`) is not an orphan either.
async fn orphans(
    lib: &Library,
    selected: &[&Manifest],
    images: &[ImageState],
    ep: &Endpoint,
) -> Result<Vec<Orphan>> {
    let repos: BTreeSet<String> = selected.iter().map(|m| lib.target_text(m)).collect();
    let found: Vec<Vec<Orphan>> = futures::stream::iter(repos)
        .map(|repo| async move {
            // Every manifest writing here, selected or not, and what its images hold now.
            let owners: Vec<&Manifest> = lib
                .manifests()
                .iter()
                .filter(|m| lib.target_text(m) == repo)
                .collect();
            let current: BTreeSet<&Digest> = images
                .iter()
                .filter(|i| owners.iter().any(|m| m.rel == i.manifest))
                .filter_map(|i| i.digest.as_ref())
                .collect();
            repo_orphans(lib, &repo, &owners, &current, ep).await
        })
        .buffered(CHECKS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

async fn repo_orphans(
    lib: &Library,
    repo: &str,
    owners: &[&Manifest],
    current: &BTreeSet<&Digest>,
    ep: &Endpoint,
) -> Result<Vec<Orphan>> {
    let what = || format!("listing the tags of {repo}");
    let located = locate(lib.root(), repo)?;
    let repository = match open_repository(&located.image, ep, false) {
        Err(e) if matches!(e.root(), Error::NotFound { .. }) => return Ok(Vec::new()),
        r => r.map_err(|e| e.context(what()))?,
    };
    let tags = match repository.list_tags().await {
        Err(e) if matches!(e.root(), Error::NotFound { .. }) => return Ok(Vec::new()),
        t => t.map_err(|e| e.context(what()))?,
    };
    let templates: Vec<(&str, Vec<&str>)> = owners
        .iter()
        .map(|m| (m.version.as_str(), all_templates(lib, m)))
        .collect();
    let unmatched: Vec<String> = tags
        .into_iter()
        .filter(|t| !is_digest_tag(t))
        .filter(|t| {
            !templates
                .iter()
                .any(|(v, ts)| ts.iter().any(|tpl| produces(tpl, v, t)))
        })
        .collect();
    let repository = &repository;
    let resolved: Vec<(String, Option<Digest>)> = futures::stream::iter(unmatched)
        .map(|tag| async move {
            let d = repository
                .resolve(&tag)
                .await
                .map_err(|e| e.context(format!("resolving {repo}:{tag}")))?;
            Ok::<_, Error>((tag, d))
        })
        .buffered(CHECKS_AT_ONCE)
        .try_collect()
        .await?;
    let mut out: Vec<Orphan> = resolved
        .into_iter()
        .filter_map(|(tag, d)| Some((tag, d?)))
        .filter(|(_, d)| !current.contains(d))
        .map(|(tag, digest)| Orphan {
            repository: repo.to_string(),
            tag,
            digest,
        })
        .collect();
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(out)
}

/// Every tag template `m` is written with on any branch: its own `tags` (the default
/// branch), each `branches:` entry's, and the fallback for other branches.
fn all_templates<'a>(lib: &'a Library, m: &'a Manifest) -> Vec<&'a str> {
    let rules = &lib.settings().branches;
    let mut out: Vec<&str> = m.tags.iter().map(String::as_str).collect();
    out.extend(rules.iter().flat_map(|r| r.tags.iter().map(String::as_str)));
    if !rules.iter().any(|r| r.branch == "**") {
        out.extend(OTHER_BRANCH_TAGS);
    }
    out
}

/// Whether `template` can expand to `tag` for `version`: `{version}` must be the version,
/// any other placeholder matches one or more characters.
fn produces(template: &str, version: &str, tag: &str) -> bool {
    fn go(pieces: &[Piece<'_>], version: &str, rest: &str) -> bool {
        match pieces.split_first() {
            None => rest.is_empty(),
            Some((Piece::Text(t), tail)) => {
                rest.strip_prefix(t).is_some_and(|r| go(tail, version, r))
            }
            Some((Piece::Placeholder("version"), tail)) => rest
                .strip_prefix(version)
                .is_some_and(|r| go(tail, version, r)),
            Some((Piece::Placeholder(_), tail)) => (1..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| go(tail, version, &rest[i..])),
        }
    }
    parse(template).is_ok_and(|p| go(&p, version, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_tags_with_per_build_wildcards() {
        assert!(produces("{version}", "2.4", "2.4"));
        assert!(!produces("{version}", "2.4", "2.5"));
        assert!(!produces("{version}", "2.4", "2.4-1-abc"));
        assert!(produces(
            "{version}-{build}-{commit}",
            "2.4",
            "2.4-12-abc1234"
        ));
        assert!(!produces("{version}-{build}-{commit}", "2.4", "2.4-12"));
        assert!(!produces("{version}-{build}-{commit}", "2.5", "2.4-12-abc"));
        assert!(produces("{version}-{branch}", "2.4", "2.4-fix-x"));
        assert!(produces("latest", "2.4", "latest"));
        assert!(!produces("{version}-{branch}", "2.4", "2.4-"));
        // Version "2" claims "2-4" only through a wildcard after its literal "-", never "2.4".
        assert!(produces("{version}-{branch}", "2", "2-4"));
        assert!(!produces("{version}", "2", "2.4"));
    }

    #[test]
    fn up_to_date_needs_every_tag_on_one_root_with_the_inputs() {
        let d = |c: char| -> Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let tag = |root: Option<(char, Option<char>)>| ExistingTag {
            reference: "oci:x:1".into(),
            image: "oci:x:1".parse().unwrap(),
            root: root.map(|(r, i)| SeenRoot {
                digest: d(r),
                inputs: i.map(d),
                science: None,
            }),
        };
        let e = |tags| Existing { tags };
        assert_eq!(e(vec![]).up_to_date(&d('e')), None);
        assert_eq!(
            e(vec![tag(Some(('a', Some('e'))))]).up_to_date(&d('e')),
            Some(d('a'))
        );
        assert_eq!(
            e(vec![tag(Some(('a', Some('f'))))]).up_to_date(&d('e')),
            None
        );
        assert_eq!(e(vec![tag(Some(('a', None)))]).up_to_date(&d('e')), None);
        assert_eq!(
            e(vec![tag(Some(('a', Some('e')))), tag(None)]).up_to_date(&d('e')),
            None
        );
        assert_eq!(
            e(vec![
                tag(Some(('a', Some('e')))),
                tag(Some(('b', Some('e'))))
            ])
            .up_to_date(&d('e')),
            None
        );
    }
}
