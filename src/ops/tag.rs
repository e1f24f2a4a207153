//! Tags inside one repository, registry-cheap (`graft tag`, `graft delete`, `graft ls
//! --omit-digest-tags`).
//!
//! **A tag is one manifest PUT.** Within one repository the image's children and blobs are
//! already there, so a new tag needs only the root's bytes: one GET of the source, then one
//! PUT of exactly those bytes, with the media type they came with, per new tag. Nothing else
//! is read (no child manifest, no blob HEAD): this is why `tag` is not a `copy`. A tag in
//! another repository is a copy (its children and blobs must exist there) and is refused with
//! a pointer to `graft copy`.
//!
//! **A delete takes every tag with it.** The distribution API deletes manifests by digest
//! only, and a deleted manifest loses every tag that points at it. [`delete`] therefore finds
//! every tag of the repository that points at the digest (one HEAD each) and refuses when one
//! of them is not among the tags being deleted: deleting a branch tag must never take
//! `stable` with it. Between that check and the DELETE another writer may still tag the
//! digest; the registry has no conditional delete to close that window.
//!
//! **In an OCI layout directory** a delete removes the digest's `index.json` entries (its
//! tags and untagged entries), under the same refusal rules; the blobs stay (a layout has no
//! garbage collection, and the report says so). Archives are not edited.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::oci::{Digest, RawManifest};
use crate::reference::{validate_tag, ImageRef};
use crate::store::open::{open_repository, open_source, Endpoint};
use crate::store::repo::{layout_namespace, Repository};

/// HEAD requests in flight at once while finding the tags on a digest.
const RESOLVE_JOBS: usize = 8;

/// What [`tag`] wrote.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TagReport {
    /// The source as given.
    pub source: String,
    /// The repository the tags were written in.
    pub repository: String,
    /// The digest every new tag points at (the source's root, as read once).
    pub digest: Digest,
    /// Its media type, sent with every PUT.
    pub media_type: String,
    /// The tags written, in order.
    pub tags: Vec<String>,
}

/// The plain tag `arg` names in the repository of `source`: a tag (`stable`), or a reference
/// in the same repository (`docker://host/repo:stable`, `oci:DIR:stable`). A reference in
/// another repository is refused: tagging there is a copy.
pub fn target_tag(source: &ImageRef, arg: &str) -> Result<String> {
    let is_reference = ["docker://", "oci:", "oci-archive:"]
        .iter()
        .any(|p| arg.starts_with(p));
    if !is_reference {
        validate_tag(arg).map_err(|reason| Error::InvalidReference {
            input: arg.to_string(),
            reason: format!("{reason} (give a tag, or a reference in the source's repository)"),
        })?;
        return Ok(arg.to_string());
    }
    let target: ImageRef = arg.parse()?;
    let elsewhere = || {
        Error::Unsupported(format!(
            "{arg} is not in the repository of {source}: a tag there is a copy (its child \
             manifests and blobs must be there too); use `graft copy {source} {arg}`"
        ))
    };
    let tag = match (source, &target) {
        (ImageRef::Docker(s), ImageRef::Docker(t)) => {
            if s.registry != t.registry || s.repository != t.repository {
                return Err(elsewhere());
            }
            if t.digest.is_some() {
                return Err(Error::InvalidReference {
                    input: arg.to_string(),
                    reason: "a tag is wanted here, not a digest".into(),
                });
            }
            t.tag.clone().unwrap_or_else(|| "latest".into())
        }
        (ImageRef::Layout(s), ImageRef::Layout(t))
        | (ImageRef::Archive(s), ImageRef::Archive(t)) => {
            let ns = |tag: &Option<String>| {
                tag.as_deref()
                    .and_then(layout_namespace)
                    .map(str::to_string)
            };
            if s.path != t.path || ns(&s.tag) != ns(&t.tag) {
                return Err(elsewhere());
            }
            let Some(full) = &t.tag else {
                return Err(Error::InvalidReference {
                    input: arg.to_string(),
                    reason: "no tag after the layout path".into(),
                });
            };
            match layout_namespace(full) {
                Some(ns) => full[ns.len() + 1..].to_string(),
                None => full.clone(),
            }
        }
        _ => return Err(elsewhere()),
    };
    validate_tag(&tag).map_err(|reason| Error::InvalidReference {
        input: arg.to_string(),
        reason,
    })?;
    Ok(tag)
}

/// Point every tag in `tags` (see [`target_tag`]) at the image `source` names, in its own
/// repository: one manifest GET, then one PUT per tag of the bytes that GET returned. Every
/// argument is checked before the first request; a missing source writes nothing.
pub async fn tag(source: &ImageRef, tags: &[String], ep: &Endpoint) -> Result<TagReport> {
    if tags.is_empty() {
        return Err(Error::Unsupported("give at least one tag to add".into()));
    }
    let mut plain = Vec::new();
    for t in tags {
        let t = target_tag(source, t)?;
        if !plain.contains(&t) {
            plain.push(t);
        }
    }
    // The source is read before the repository is opened for writing: opening a layout for
    // writing creates it, and a missing source must leave nothing behind.
    let root = open_source(source, ep)
        .await?
        .resolve()
        .await
        .map_err(|e| e.context(format!("reading {source} to tag it")))?;
    let repo = open_repository(source, ep, true)?;
    put_tags(repo.as_ref(), &root, &plain).await?;
    Ok(TagReport {
        source: source.to_string(),
        repository: repo.name(),
        digest: root.digest().clone(),
        media_type: root.media_type().to_string(),
        tags: plain,
    })
}

/// Store `root` (its exact bytes) under every tag of `repo` in `tags`, then commit the
/// repository's sink (an archive is packed once). One manifest PUT per tag on registries.
pub async fn put_tags(repo: &dyn Repository, root: &RawManifest, tags: &[String]) -> Result<()> {
    for t in tags {
        repo.put_tag(root, t).await.map_err(|e| {
            e.context(format!(
                "tagging {} as {t} in {}",
                root.digest(),
                repo.name()
            ))
        })?;
    }
    repo.sink()?.commit().await
}

/// Whether `tag` is one graft and cosign derive from a digest: `sha256-<hex>` (a referrers
/// fallback index) or `sha256-<hex>.sig`, `.att`, `.sbom` (cosign's attachments).
pub fn is_digest_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = match rest.split_once('.') {
        Some((hex, "sig" | "att" | "sbom")) => hex,
        Some(_) => return false,
        None => rest,
    };
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The tags of the repository `r` names, without the digest-derived ones (see
/// [`is_digest_tag`]) when `omit_digest_tags`.
pub async fn list_tags(r: &ImageRef, ep: &Endpoint, omit_digest_tags: bool) -> Result<Vec<String>> {
    let mut tags = open_repository(r, ep, false)?.list_tags().await?;
    if omit_digest_tags {
        tags.retain(|t| !is_digest_tag(t));
    }
    Ok(tags)
}

/// One manifest [`delete`] removes (or, in a dry run, would remove).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Deleted {
    /// The repository.
    pub repository: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The tags that pointed at it (all of them named by the request).
    pub tags: Vec<String>,
}

/// What [`delete`] did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeleteReport {
    /// Nothing was deleted: the report says what would have been.
    pub dry_run: bool,
    /// The manifests deleted, in the order of the request.
    pub deleted: Vec<Deleted>,
    /// What people should know about the stores (an OCI layout keeps the blobs).
    pub notes: Vec<String>,
}

/// A manifest to delete: where, which, and the tags the request names on it.
struct Target {
    reference: ImageRef,
    repo: Box<dyn Repository>,
    digest: Digest,
    named: Vec<String>,
}

/// Every tag of a repository with the digest it resolves to (`None`: listed, but it does
/// not resolve).
pub(crate) type Listing = Vec<(String, Option<Digest>)>;

/// The tags of one digest in a [`Listing`], against the tags a request names.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct OnDigest {
    /// Every tag pointing at the digest.
    pub tags: Vec<String>,
    /// Those the request does not name: a delete would take them too (sorted).
    pub others: Vec<String>,
    /// Listed tags not named that do not resolve: they might be on the digest (sorted).
    pub unresolved: Vec<String>,
}

/// Sort `listed` out for a delete of `digest` that names `named` (see [`OnDigest`]).
pub(crate) fn on_digest(
    listed: &[(String, Option<Digest>)],
    digest: &Digest,
    named: &[String],
) -> OnDigest {
    let mut out = OnDigest::default();
    for (tag, d) in listed {
        match d {
            Some(d) if d == digest => {
                out.tags.push(tag.clone());
                if !named.contains(tag) {
                    out.others.push(tag.clone());
                }
            }
            None if !named.contains(tag) => out.unresolved.push(tag.clone()),
            _ => {}
        }
    }
    out.others.sort_unstable();
    out.unresolved.sort_unstable();
    out
}

/// Every tag of `repo` with its digest (one HEAD each on registries, a few at once).
pub(crate) async fn resolve_all(repo: &dyn Repository) -> Result<Listing> {
    let tags = repo.list_tags().await?;
    futures::stream::iter(tags)
        .map(|tag| async move {
            let d = repo.resolve(&tag).await?;
            Ok::<_, Error>((tag, d))
        })
        .buffered(RESOLVE_JOBS)
        .try_collect()
        .await
}

/// Delete `digest` from `repo` (its `tags`, for the message). A registry that refuses
/// deletes (405) gets a message naming the setting that allows them.
pub(crate) async fn delete_digest(
    repo: &dyn Repository,
    digest: &Digest,
    tags: &[String],
) -> Result<()> {
    repo.delete_manifest(digest).await.map_err(|e| {
        let refused = matches!(e.root(), Error::Registry { status: 405, .. });
        let why = if refused {
            " (the registry does not allow deletes; distribution needs \
             storage.delete.enabled: true in its configuration)"
        } else {
            ""
        };
        e.context(format!(
            "deleting {}@{digest} (tags: {}){why}",
            repo.name(),
            if tags.is_empty() {
                "none".to_string()
            } else {
                tags.join(", ")
            }
        ))
    })
}

/// The note for people about what a delete leaves in `repo`, if any: a layout keeps the
/// manifests' blobs (only `index.json` entries are removed).
pub(crate) fn store_note(repo: &dyn Repository) -> Option<String> {
    matches!(repo.reference(None), ImageRef::Layout(_)).then(|| {
        format!(
            "{}: a delete there removes index.json entries only; the manifests and their \
             blobs stay in blobs/ (an OCI layout has no garbage collection)",
            repo.name()
        )
    })
}

/// What a request names in its repository: the tag or digest to resolve, the tags it names,
/// and the digest it pins.
fn asked(r: &ImageRef) -> Result<(String, Vec<String>, Option<Digest>)> {
    match r {
        ImageRef::Docker(d) => {
            let named = match (&d.tag, &d.digest) {
                (Some(t), None) => vec![t.clone()],
                // `repo:tag@digest` names the digest: the tag is only a label, as in pulls.
                _ => Vec::new(),
            };
            Ok((d.reference(), named, d.digest.clone()))
        }
        ImageRef::Layout(l) => {
            let Some(full) = &l.tag else {
                return Err(Error::InvalidReference {
                    input: r.to_string(),
                    reason: "name the tag to delete (oci:DIR:TAG)".into(),
                });
            };
            // The plain tag in the repository open_repository makes of `r` (its namespace).
            let plain = match layout_namespace(full) {
                Some(ns) => full
                    .strip_prefix(ns)
                    .and_then(|t| t.strip_prefix(':'))
                    .unwrap_or(full),
                None => full,
            };
            Ok((plain.to_string(), vec![plain.to_string()], None))
        }
        ImageRef::Archive(_) => Err(Error::Unsupported(format!(
            "{r}: deleting from an OCI archive is not supported (the whole archive would be \
             rewritten); copy what you keep into a new archive with graft copy, or use an oci: \
             layout directory"
        ))),
    }
}

/// Delete the manifests `references` name: registry tags or digests, or tags of an OCI
/// layout directory (whose `index.json` entries of the digest are removed; blobs stay).
/// First, for each manifest, every tag of its repository that points at it is found; when
/// one of them is not named by `references`, nothing is deleted and the error names those
/// tags. With `dry_run`, the same checks, and no delete.
pub async fn delete(references: &[ImageRef], dry_run: bool, ep: &Endpoint) -> Result<DeleteReport> {
    if references.is_empty() {
        return Err(Error::Unsupported(
            "give at least one reference to delete".into(),
        ));
    }
    for r in references {
        // Bad input first, before any request.
        asked(r)?;
    }
    let mut targets: Vec<Target> = Vec::new();
    for r in references {
        let (asked, named, pinned) = asked(r)?;
        let repo = open_repository(r, ep, false)?;
        if !repo.capabilities().delete {
            return Err(Error::Unsupported(format!(
                "{}: this repository cannot delete manifests",
                repo.name()
            )));
        }
        // A tag is resolved with one HEAD; a digest is checked the same way (a DELETE of a
        // missing manifest would fail anyway, a dry run must say so too).
        let digest = repo.resolve(&asked).await?.ok_or_else(|| Error::NotFound {
            what: r.to_string(),
            detail: Some("nothing to delete".into()),
        })?;
        if let Some(pinned) = pinned {
            if pinned != digest {
                return Err(Error::DigestMismatch {
                    what: r.to_string(),
                    expected: pinned,
                    found: digest,
                });
            }
        }
        match targets
            .iter_mut()
            .find(|t| t.repo.name() == repo.name() && t.digest == digest)
        {
            Some(t) => {
                for n in named {
                    if !t.named.contains(&n) {
                        t.named.push(n);
                    }
                }
            }
            None => targets.push(Target {
                reference: r.clone(),
                repo,
                digest,
                named,
            }),
        }
    }
    // Every tag on every digest, per repository (listed once each).
    let mut listed: BTreeMap<String, Listing> = BTreeMap::new();
    for t in &targets {
        if let std::collections::btree_map::Entry::Vacant(e) = listed.entry(t.repo.name()) {
            e.insert(resolve_all(t.repo.as_ref()).await?);
        }
    }
    let mut report = DeleteReport {
        dry_run,
        deleted: Vec::new(),
        notes: Vec::new(),
    };
    for t in &targets {
        let found = on_digest(
            listed.get(&t.repo.name()).map_or(&[][..], Vec::as_slice),
            &t.digest,
            &t.named,
        );
        // A listed tag that does not resolve (it went between the listing and the HEAD, or
        // the registry lists what it cannot serve) may still be on this digest: a DELETE
        // could take it too, so nothing is deleted.
        if !found.unresolved.is_empty() {
            return Err(Error::Invalid {
                what: format!("request to delete {}", t.reference),
                reason: format!(
                    "{} lists the tag {} but does not resolve it, so graft cannot tell \
                     whether a delete of {} would take it too; nothing was deleted",
                    t.repo.name(),
                    found.unresolved.join(", "),
                    t.digest
                ),
            });
        }
        if !found.others.is_empty() {
            return Err(Error::Invalid {
                what: format!("request to delete {}", t.reference),
                reason: format!(
                    "{} is also tagged {}, and a registry deletes a manifest with every tag on \
                     it, so nothing was deleted (name those tags too to delete them all, or \
                     move them first)",
                    t.digest,
                    found.others.join(", ")
                ),
            });
        }
        report.deleted.push(Deleted {
            repository: t.repo.name(),
            digest: t.digest.clone(),
            tags: found.tags,
        });
    }
    for t in &targets {
        if let Some(note) = store_note(t.repo.as_ref()) {
            if !report.notes.contains(&note) {
                report.notes.push(note);
            }
        }
    }
    if dry_run {
        return Ok(report);
    }
    for (t, d) in targets.iter().zip(&report.deleted) {
        delete_digest(t.repo.as_ref(), &t.digest, &d.tags).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_tags_are_recognised() {
        let hex = "a".repeat(64);
        for t in [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
            format!("sha256-{hex}.sbom"),
        ] {
            assert!(is_digest_tag(&t), "{t}");
        }
        for t in [
            "stable".to_string(),
            "sha256-abc.sig".into(),
            format!("sha256-{hex}.txt"),
            format!("sha256-{}", "A".repeat(64)),
            format!("sha512-{hex}"),
            format!("sha256-{hex}x"),
        ] {
            assert!(!is_digest_tag(&t), "{t}");
        }
    }

    #[test]
    fn target_tags_stay_in_the_source_repository() {
        let src: ImageRef = "docker://reg.example/team/app:1.0".parse().unwrap();
        assert_eq!(target_tag(&src, "stable").unwrap(), "stable");
        assert_eq!(
            target_tag(&src, "docker://reg.example/team/app:v0.1.1").unwrap(),
            "v0.1.1"
        );
        let other = target_tag(&src, "docker://reg.example/team/other:stable").unwrap_err();
        assert!(other.to_string().contains("graft copy"), "{other}");
        assert!(other.is_usage());
        let bad = target_tag(&src, "-bad").unwrap_err();
        assert!(bad.is_usage(), "{bad}");
        assert!(bad.to_string().contains("\"-bad\""), "{bad}");
        assert!(target_tag(
            &src,
            "docker://reg.example/team/app@sha256:".to_string().as_str()
        )
        .is_err());
        assert!(target_tag(&src, "oci:/x:stable").unwrap_err().is_usage());

        let layout: ImageRef = "oci:/lib/out:reg.io/app:1.0".parse().unwrap();
        assert_eq!(
            target_tag(&layout, "oci:/lib/out:reg.io/app:stable").unwrap(),
            "stable"
        );
        assert!(target_tag(&layout, "oci:/lib/out:reg.io/other:stable").is_err());
        assert!(target_tag(&layout, "oci:/elsewhere:reg.io/app:stable").is_err());
        let plain: ImageRef = "oci:/lib/out:1.0".parse().unwrap();
        assert_eq!(target_tag(&plain, "oci:/lib/out:stable").unwrap(), "stable");
    }
}
