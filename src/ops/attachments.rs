//! Everything attached to an image, found and copied with it (`graft copy --with-attachments`,
//! `graft mirror` with `with_attachments`).
//!
//! **Discovery** ([`discover`]) starts at the root digest and at each child of an index, and for
//! every digest looks up, in the source repository:
//! - cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom`;
//! - OCI 1.1 referrers: the referrers API where the registry has it, else the `sha256-<hex>`
//!   tag-schema fallback index; in `oci:` layouts and `oci-archive:` files, the fallback index
//!   and, besides it, every `index.json` entry whose manifest names the digest as its
//!   `subject` (how `oras attach --oci-layout` keeps referrers:
//!   [`crate::store::repo::Repository::listed_referrers`]).
//!
//! A manifest listed as a referrer of a digest that is not its own `subject` (or that has
//! none) is skipped and reported ([`AttachmentsReport::skipped`]), with the fallback index
//! that lists it: that index is not copied verbatim, the true referrers are listed at the
//! destination one by one.
//!
//! Every attachment found is explored the same way, so a signature of an attestation comes too,
//! up to [`MAX_DEPTH`] attachments deep and [`MAX_ATTACHMENTS`] in all: a registry that
//! invents a new signature for every lookup must not keep discovery going forever (a layout
//! listing more referrers of one digest than that is refused before they are read).
//! Requests: 4 manifest lookups per digest (3 tags + the fallback tag, or the referrers API),
//! plus one GET per referrer; a registry whose referrers API answers 404 once is not asked
//! again in that discovery. A layout's manifests are each read once per discovery to find
//! their subjects.
//!
//! **Copy** ([`copy_attachments`]) goes through the one copy engine ([`copy_graph`]), after the
//! subject: tag-scheme attachments keep their tag; a cosign tag that exists at the destination
//! with another manifest gets our layers added to its own (cosign's append,
//! [`crate::sign::attach::merge_cosign_layer`]). Referrers go where the destination looks for
//! them ([`ReferrersAt`], decided once per copy):
//! - a registry with the referrers API (its `GET /v2/<name>/referrers/<digest>` answers an
//!   index; graft does not wait for an `OCI-Subject` header, which go-containerregistry's
//!   registry never sends): each referrer is pushed by digest, with its `subject`, and the
//!   registry lists it; the source's fallback indexes are not written;
//! - a registry without it: referrers by digest, and the fallback index copied verbatim when
//!   the destination has none (so its digest is kept), otherwise merged (existing entries
//!   kept exactly, missing ones added, [`crate::sign::attach::merge_referrer_entry`]);
//!   referrers no source fallback index lists are added to the destination's;
//! - a layout or archive: each referrer also becomes an untagged `index.json` entry, as oras
//!   writes them, and the fallback index is written as for a registry without the API (see
//!   docs/decisions.md, "Referrers in OCI layouts").
//!
//! Registries, `oci:` layouts and `oci-archive:` files merge alike: the destination is opened
//! with [`Repo::open_destination`] (an archive's merges go into the uncommitted state its
//! sinks share).
//! An attachment whose tag already points at the same digest costs one HEAD and is skipped.
//!
//! **Naming in multi-image layouts**: `graft mirror` names images `host/repo:tag`
//! (`org.opencontainers.image.ref.name`); an attachment of that image is named
//! `host/repo:sha256-<hex>.sig` (and `.att`, `.sbom`, `sha256-<hex>`) so attachments of
//! different repositories never collide ([`crate::store::repo::layout_tag`]), and an import maps them back to plain
//! tags of `host/repo`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::copy::{copy_graph, CopyOptions, Graph};
use crate::error::{Error, Result};
use crate::oci::{media_types as mt, Digest, RawManifest};
use crate::progress::Reporter;
use crate::reference::ImageRef;
use crate::sign::attach::{merge_cosign_layer, merge_referrer_entry, referrers_tag};
use crate::sign::repo::Repo;
use crate::store::repo::layout_tag;
use crate::store::Sink;

/// How deep attachments of attachments are followed (an image's signature is 1 deep, a
/// signature of its attestation 2). Real chains stop at 2 or 3.
pub const MAX_DEPTH: usize = 8;

/// How many attachments one image may have, all depths together (the same bound as the
/// referrers `graft verify` reads for one digest, [`crate::store::MAX_REFERRERS`]).
pub const MAX_ATTACHMENTS: usize = crate::store::MAX_REFERRERS;

/// The cosign tag suffixes graft copies.
pub const COSIGN_SUFFIXES: [&str; 3] = [".sig", ".att", ".sbom"];

/// Whether `tag` is an attachment tag (`sha256-<hex>`, optionally `.sig`/`.att`/`.sbom`):
/// such tags travel with their subject and are not images of their own.
pub fn is_attachment_tag(tag: &str) -> bool {
    let base = COSIGN_SUFFIXES
        .iter()
        .find_map(|s| tag.strip_suffix(s))
        .unwrap_or(tag);
    base.strip_prefix("sha256-")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One attachment found in the source.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The digest it is attached to.
    pub subject: Digest,
    /// The plain tag it is stored under (`sha256-<hex>.sig`, … or the fallback index
    /// `sha256-<hex>`); `None` for a referrer stored by digest only.
    pub tag: Option<String>,
    /// The attachment's manifest (or the fallback index), exact bytes.
    pub manifest: RawManifest,
    /// Why it is not copied, when it is not: a referrer whose own `subject` is not the digest
    /// it was listed under, or a fallback index that lists one (its other referrers are
    /// listed at the destination one by one instead).
    pub skipped: Option<String>,
}

impl Attachment {
    /// Whether this is a referrers fallback index.
    pub fn is_fallback_index(&self) -> bool {
        self.tag.as_deref() == Some(referrers_tag(&self.subject).as_str())
    }
}

/// Find everything attached to `root` (and to each child of an index), recursively, in the
/// repository `repo` (opened with [`Repo::open_read`] on the image reference). Subjects come
/// before their attachments.
pub async fn discover(repo: &Repo, root: &RawManifest) -> Result<Vec<Attachment>> {
    let mut out = Vec::new();
    // Each manifest with its depth: the image is 0, its attachments 1, theirs 2.
    let mut queue: VecDeque<(RawManifest, usize)> = VecDeque::from([(root.clone(), 0)]);
    let mut seen: HashSet<Digest> = HashSet::new();
    // A registry without the referrers API answers 404 once: use the fallback tag after that.
    let mut has_api = true;
    let too_many = |reason: String| Error::Invalid {
        what: format!("the attachments of {}", repo.describe(root.digest())),
        reason,
    };
    while let Some((m, depth)) = queue.pop_front() {
        if !seen.insert(m.digest().clone()) {
            continue;
        }
        if out.len() > MAX_ATTACHMENTS {
            return Err(too_many(format!(
                "more than {MAX_ATTACHMENTS} attachments (signatures, attestations, referrers); \
                 graft stops there rather than follow a registry that keeps inventing them"
            )));
        }
        if depth > MAX_DEPTH {
            return Err(too_many(format!(
                "attachments of attachments more than {MAX_DEPTH} deep ({} is one); graft \
                 stops there rather than follow a registry that keeps inventing them",
                m.digest()
            )));
        }
        let mut subjects = vec![m.digest().clone()];
        if m.is_index() && !is_fallback(&m, &out) {
            subjects.extend(m.view().manifests.iter().map(|d| d.digest.clone()));
        }
        for d in subjects {
            if d != *m.digest() && !seen.insert(d.clone()) {
                continue;
            }
            for suffix in COSIGN_SUFFIXES {
                let tag = format!("{}{suffix}", d.tag_form());
                if let Some(a) = repo.tagged(&tag).await.map_err(|e| ctx(e, repo, &tag))? {
                    out.push(Attachment {
                        subject: d.clone(),
                        tag: Some(tag),
                        manifest: a.clone(),
                        skipped: None,
                    });
                    queue.push_back((a, depth + 1));
                }
            }
            let api = if has_api {
                repo.referrers_api(&d)
                    .await
                    .map_err(|e| e.context(format!("listing referrers of {}", repo.describe(&d))))?
            } else {
                None
            };
            has_api = api.is_some();
            let listed = match api {
                Some(list) => list,
                None => {
                    let (index, list) = repo.referrers_without_api(&d).await?;
                    if let Some(index) = index {
                        out.push(Attachment {
                            subject: d.clone(),
                            tag: Some(referrers_tag(&d)),
                            manifest: index,
                            skipped: None,
                        });
                    }
                    list
                }
            };
            if out.len() + listed.len() > MAX_ATTACHMENTS {
                return Err(too_many(format!(
                    "more than {MAX_ATTACHMENTS} attachments (signatures, attestations, \
                     referrers; {} list {} alone); graft stops there rather than follow a \
                     registry that keeps inventing them",
                    repo.describe(&d),
                    listed.len()
                )));
            }
            for desc in listed {
                let r = repo.manifest(&desc).await.map_err(|e| {
                    e.context(format!(
                        "reading referrer {} of {}",
                        desc.digest,
                        repo.describe(&d)
                    ))
                })?;
                // Referrers go before the fallback index that lists them.
                let at = out.iter().rposition(|a| a.tag.is_some() && a.subject == d);
                // A manifest listed under `d` whose own subject is another digest (or none)
                // is no referrer of `d`: copied, the destination would list it as one.
                let skipped = match &r.view().subject {
                    Some(s) if s.digest == d => None,
                    Some(s) => Some(format!(
                        "{} is listed as a referrer of {} but its subject is {}",
                        desc.digest,
                        repo.describe(&d),
                        s.digest
                    )),
                    None => Some(format!(
                        "{} is listed as a referrer of {} but has no subject",
                        desc.digest,
                        repo.describe(&d)
                    )),
                };
                if let (Some(why), Some(i)) = (&skipped, at) {
                    // Its fallback index cannot travel verbatim (it would list the stray
                    // manifest at the destination, and bring it along).
                    if out[i].is_fallback_index() && out[i].skipped.is_none() {
                        out[i].skipped = Some(format!(
                            "the fallback index {} of {} lists a stray referrer ({why}); \
                             its other referrers are listed one by one",
                            out[i].manifest.digest(),
                            repo.describe(&d)
                        ));
                    }
                }
                let follow = skipped.is_none();
                let item = Attachment {
                    subject: d.clone(),
                    tag: None,
                    manifest: r.clone(),
                    skipped,
                };
                match at {
                    Some(i) if out[i].is_fallback_index() => out.insert(i, item),
                    _ => out.push(item),
                }
                if follow {
                    queue.push_back((r, depth + 1));
                }
            }
        }
    }
    Ok(out)
}

fn is_fallback(m: &RawManifest, found: &[Attachment]) -> bool {
    found
        .iter()
        .any(|a| a.is_fallback_index() && a.manifest.digest() == m.digest())
}

fn ctx(e: Error, repo: &Repo, tag: &str) -> Error {
    e.context(format!("looking up {tag} in {}", repo.describe_repo()))
}

/// What copying the attachments did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttachmentsReport {
    /// Attachments found at the source (not counting those skipped).
    pub found: usize,
    /// What was found but not copied, and why: manifests listed as referrers of a digest
    /// that is not their `subject`, and the fallback indexes listing them.
    pub skipped: Vec<String>,
    /// Attachments written (manifests or tags).
    pub copied: usize,
    /// Attachments already at the destination.
    pub present: usize,
    /// Entries added to an existing destination fallback index.
    pub merged: usize,
    /// Source fallback indexes not written because the destination has the referrers API
    /// (it lists the referrers, copied by digest, itself).
    pub fallback_skipped: usize,
    /// How the destination lists referrers: `api`, `fallback-tag` or `layout` (untagged
    /// `index.json` entries and the fallback tag), see [`ReferrersAt`]; absent when no
    /// referrer was found.
    pub referrers_at: Option<ReferrersAt>,
    /// Bytes of blobs uploaded.
    pub bytes_uploaded: u64,
}

/// How a destination lists the referrers graft copies into it (see `docs/interop/oras.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrersAt {
    /// A registry with the OCI 1.1 referrers API (its `GET /v2/<name>/referrers/<digest>`
    /// answers an index): referrers are pushed by digest with their `subject` and the
    /// registry lists them; no fallback tag is written.
    Api,
    /// A registry without the API: referrers by digest, listed in the `sha256-<hex>` fallback
    /// index (the source's copied verbatim when the destination has none, else merged).
    FallbackTag,
    /// An OCI layout or archive: each referrer is an untagged `index.json` entry (as `oras
    /// attach --oci-layout` writes) and is also listed in the fallback index (as regclient
    /// and graft before it read).
    Layout,
}

/// How `dst_ref` lists referrers, `None` when there are none to copy: a registry's is asked of
/// `merge_repo` (one referrers API request, about a subject already copied).
async fn referrers_at(
    dst_ref: &ImageRef,
    merge_repo: Option<&Repo>,
    attachments: &[Attachment],
) -> Result<Option<ReferrersAt>> {
    let Some(first) = attachments
        .iter()
        .filter(|a| a.skipped.is_none())
        .find(|a| a.tag.is_none() || a.is_fallback_index())
    else {
        return Ok(None);
    };
    if let ImageRef::Layout(_) | ImageRef::Archive(_) = dst_ref {
        return Ok(Some(ReferrersAt::Layout));
    }
    let Some(repo) = merge_repo else {
        return Ok(Some(ReferrersAt::FallbackTag));
    };
    if repo.store().capabilities().referrers_listed {
        return Ok(Some(ReferrersAt::Layout));
    }
    let api = repo
        .has_referrers_api(&first.subject)
        .await
        .map_err(|e| e.context(format!("asking {dst_ref} for its referrers API")))?;
    Ok(Some(match api {
        true => ReferrersAt::Api,
        false => ReferrersAt::FallbackTag,
    }))
}

/// Copy `attachments` (from [`discover`]; their subjects already at the destination) from
/// `src` into `dst`, a sink opened for `dst_ref`. `merge_repo` is the destination repository
/// ([`Repo::open_destination`] on `dst_ref`) used to merge into an existing `.sig`/`.att`
/// manifest or fallback index there, and to ask whether it has the referrers API; without it
/// an existing `.sig`/`.att` is replaced, a differing fallback index is an error rather than
/// an overwrite, and a registry is taken to have no referrers API.
///
/// Referrers go where the destination looks for them ([`ReferrersAt`]): through the referrers
/// API (the source's fallback indexes are not written there), the fallback tag, or, in
/// layouts, untagged `index.json` entries and the fallback tag.
pub async fn copy_attachments(
    src: &Repo,
    dst: &dyn Sink,
    dst_ref: &ImageRef,
    attachments: &[Attachment],
    merge_repo: Option<&Repo>,
    opts: &CopyOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<AttachmentsReport> {
    let at = referrers_at(dst_ref, merge_repo, attachments).await?;
    let mut report = AttachmentsReport {
        found: attachments.iter().filter(|a| a.skipped.is_none()).count(),
        skipped: attachments
            .iter()
            .filter_map(|a| a.skipped.clone())
            .collect(),
        referrers_at: at,
        ..AttachmentsReport::default()
    };
    let by_digest = CopyOptions {
        tags: Vec::new(),
        commit: false,
        ..opts.clone()
    };
    // Referrers listed in a fallback index that is copied verbatim travel inside it (a
    // registry without the API; a layout lists each one as an entry of its own as well).
    let mut via_index: HashSet<Digest> = HashSet::new();
    // Referrers (subject, digest) some source fallback index lists: that index, copied or
    // merged, lists them at the destination too.
    let mut in_src_index: HashSet<(Digest, Digest)> = HashSet::new();
    let mut plans = Vec::new();
    for a in attachments.iter().filter(|a| a.skipped.is_none()) {
        if a.is_fallback_index() && at == Some(ReferrersAt::Api) {
            // The destination's API lists the referrers: no fallback tag there.
            report.fallback_skipped += 1;
            continue;
        }
        if let Some(tag) = &a.tag {
            let dtag = layout_tag(dst_ref, tag);
            let there = dst.tag_digest(&dtag).await?;
            plans.push((a, Some((dtag, there))));
        } else {
            plans.push((a, None));
        }
    }
    for (a, t) in &plans {
        if let Some((_, there)) = t {
            if a.is_fallback_index() {
                let listed = a.manifest.view().manifests.iter();
                in_src_index.extend(listed.map(|d| (a.subject.clone(), d.digest.clone())));
                if there.is_none() && at != Some(ReferrersAt::Layout) {
                    via_index.extend(a.manifest.view().manifests.iter().map(|d| d.digest.clone()));
                }
            }
        }
    }
    let mut unlisted: Vec<&Attachment> = Vec::new();
    for (a, t) in plans {
        match t {
            Some((_, Some(there))) if there == *a.manifest.digest() => report.present += 1,
            Some((dtag, there)) => {
                if a.is_fallback_index() && there.is_some() {
                    // Someone else's index: merge ours in, never overwrite.
                    let repo = merge_repo.ok_or_else(|| {
                        Error::Unsupported(format!(
                            "{dst_ref}: {dtag} exists with other referrers and cannot be merged \
                             in this destination"
                        ))
                    })?;
                    report.merged += merge_entries(src, dst, repo, a, opts, reporter).await?;
                    continue;
                }
                if let (Some(repo), Some(_), false) = (merge_repo, &there, a.manifest.is_index()) {
                    // The destination has its own cosign manifest at this tag: add our layers
                    // to it (blobs first), keeping its own. (The repository names the tag the
                    // way its image is named: the plain tag goes in.)
                    let tag = a.tag.as_deref().expect("a tag attachment");
                    report.merged += merge_layers(src, dst, repo, a, tag, opts, reporter).await?;
                    continue;
                }
                let graph = Graph::walk(src.source(), a.manifest.clone(), opts.jobs).await?;
                let o = CopyOptions {
                    tags: vec![dtag],
                    commit: false,
                    ..opts.clone()
                };
                let r = copy_graph(src.source(), dst, &graph, &o, reporter).await?;
                report.bytes_uploaded += r.uploaded.bytes;
                report.copied += 1;
            }
            None if via_index.contains(a.manifest.digest()) => {}
            None => {
                let desc = a.manifest.descriptor();
                if dst.has_manifest(&desc).await? {
                    // In a layout it must be listed too: `put_root` adds the untagged entry
                    // unless the digest is listed already.
                    let listed_now = match at {
                        Some(ReferrersAt::Layout) => dst.put_root(&a.manifest).await?,
                        _ => false,
                    };
                    match listed_now {
                        true => report.copied += 1,
                        false => report.present += 1,
                    }
                } else {
                    // Without a tag the copy ends with `put_root`: by digest in a registry,
                    // an untagged `index.json` entry in a layout.
                    let graph = Graph::walk(src.source(), a.manifest.clone(), opts.jobs).await?;
                    let r = copy_graph(src.source(), dst, &graph, &by_digest, reporter).await?;
                    report.bytes_uploaded += r.uploaded.bytes;
                    report.copied += 1;
                }
                if !in_src_index.contains(&(a.subject.clone(), a.manifest.digest().clone())) {
                    unlisted.push(a);
                }
            }
        }
    }
    // Referrers no source fallback index lists (found through the source's API or as layout
    // entries): list them in the destination's fallback index, unless its API lists them.
    if at == Some(ReferrersAt::Api) {
        return Ok(report);
    }
    if let Some(repo) = merge_repo {
        for a in unlisted {
            if merge_referrer_entry(repo, &a.subject, &entry_for(&a.manifest))
                .await?
                .added
            {
                report.merged += 1;
            }
        }
    }
    Ok(report)
}

/// Copy each referrer of the source's fallback index `a` missing from the destination's, and
/// list it there.
async fn merge_entries(
    src: &Repo,
    dst: &dyn Sink,
    repo: &Repo,
    a: &Attachment,
    opts: &CopyOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<usize> {
    let v: Value = serde_json::from_slice(a.manifest.bytes()).map_err(|e| Error::Json {
        what: format!("referrers index {}", a.manifest.digest()),
        source: e,
    })?;
    let entries = v
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut n = 0;
    for (entry, desc) in entries.iter().zip(a.manifest.view().manifests.iter()) {
        if !dst.has_manifest(desc).await? {
            let m = src.manifest(desc).await?;
            let graph = Graph::walk(src.source(), m, opts.jobs).await?;
            let o = CopyOptions {
                tags: Vec::new(),
                commit: false,
                ..opts.clone()
            };
            copy_graph(src.source(), dst, &graph, &o, reporter).await?;
        }
        if merge_referrer_entry(repo, &a.subject, entry).await?.added {
            n += 1;
        }
    }
    Ok(n)
}

/// Copy the blobs of the cosign manifest `a` and add each of its layers to the destination's
/// own manifest at `tag` (a plain tag: `repo` maps it to its naming).
async fn merge_layers(
    src: &Repo,
    dst: &dyn Sink,
    repo: &Repo,
    a: &Attachment,
    tag: &str,
    opts: &CopyOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<usize> {
    let graph = Graph::walk(src.source(), a.manifest.clone(), opts.jobs).await?;
    let o = CopyOptions {
        tags: Vec::new(),
        commit: false,
        ..opts.clone()
    };
    copy_graph(src.source(), dst, &graph, &o, reporter).await?;
    let v: Value = serde_json::from_slice(a.manifest.bytes()).map_err(|e| Error::Json {
        what: format!("{tag} ({})", a.manifest.digest()),
        source: e,
    })?;
    let mut n = 0;
    for layer in v
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if merge_cosign_layer(repo, tag, layer).await?.added {
            n += 1;
        }
    }
    Ok(n)
}

/// A fallback-index entry for a referrer manifest: media type, digest, size, artifact type
/// and annotations, as the distribution spec lists them.
fn entry_for(m: &RawManifest) -> Value {
    let v: Value = serde_json::from_slice(m.bytes()).unwrap_or(Value::Null);
    let mut e = Map::new();
    e.insert("mediaType".into(), json!(m.media_type()));
    e.insert("digest".into(), json!(m.digest().to_string()));
    e.insert("size".into(), json!(m.bytes().len()));
    let artifact = v
        .get("artifactType")
        .cloned()
        .or_else(|| v.pointer("/config/mediaType").cloned())
        .filter(|t| t.as_str() != Some(mt::OCI_EMPTY));
    if let Some(t) = artifact {
        e.insert("artifactType".into(), t);
    }
    if let Some(a) = v.get("annotations").filter(|a| a.is_object()) {
        e.insert("annotations".into(), a.clone());
    }
    Value::Object(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_tags() {
        let hex = "a".repeat(64);
        assert!(is_attachment_tag(&format!("sha256-{hex}.sig")));
        assert!(is_attachment_tag(&format!("sha256-{hex}")));
        assert!(!is_attachment_tag("sha256-abc.sig"));
        assert!(!is_attachment_tag("2.4"));
    }
}
