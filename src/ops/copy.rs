//! One image copy, with everything attached to it when asked: `graft copy` is one call to
//! [`copy`], and `graft mirror` copies each of its images with [`discover_attached`] and
//! [`copy_attachments`].
//!
//! **Check, then use, the same bytes.** A source's reference is resolved once: the root
//! manifest read then is the one that is verified ([`verify_root`]), searched for attachments
//! and copied ([`Pinned`]). Resolving a tag twice (a HEAD to check, a GET to copy) would let a
//! registry, or a push between the two requests, swap the image after the check.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::copy::{copy_image, resolve_root, CopyOptions, CopyReport};
use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, Platform, RawManifest};
use crate::ops::attachments::{copy_attachments, discover, Attachment, AttachmentsReport};
use crate::progress::Reporter;
use crate::reference::ImageRef;
use crate::sign::verify::verify_signatures;
use crate::sign::{PublicKey, Repo};
use crate::store::open::{destination_tags, open_sink, open_source, Endpoint};
use crate::store::{BlobStream, MountOrigin, Source};

/// A source whose reference was resolved once: [`Source::resolve`] answers that root, and
/// everything else (manifests by digest, blobs) is read, verified, through the wrapped source.
pub struct Pinned {
    inner: Box<dyn Source>,
    root: RawManifest,
}

impl Pinned {
    /// Resolve `inner` once and keep the root it answered.
    pub async fn pin(inner: Box<dyn Source>) -> Result<Pinned> {
        let root = inner.resolve().await?;
        Ok(Pinned { inner, root })
    }

    /// The root manifest or index, as read once.
    pub fn root(&self) -> &RawManifest {
        &self.root
    }
}

#[async_trait]
impl Source for Pinned {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn resolve(&self) -> Result<RawManifest> {
        Ok(self.root.clone())
    }

    async fn resolve_digest(&self) -> Result<Digest> {
        Ok(self.root.digest().clone())
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.inner.manifest(desc).await
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        self.inner.blob(desc).await
    }

    fn mount_origin(&self, desc: &Descriptor) -> Option<MountOrigin> {
        self.inner.mount_origin(desc)
    }
}

/// Check that the root `src` was pinned to carries a signature by `key` in `repo` (the source
/// repository); the error names `what` (the image, for messages).
pub async fn verify_root(src: &Pinned, repo: &Repo, key: &PublicKey, what: &str) -> Result<()> {
    verify_signatures(repo, src.root().digest(), key)
        .await
        .map(|_| ())
        .map_err(|e| e.context(format!("refusing to import {what}")))
}

/// What to copy, and how.
#[derive(Clone)]
pub struct CopyRequest {
    /// The image to read.
    pub source: ImageRef,
    /// Where to write it (its tag, if any, is written last).
    pub destination: ImageRef,
    /// Copy only this platform out of an index.
    pub platform: Option<Platform>,
    /// Concurrent blob transfers.
    pub jobs: usize,
    /// Also copy signatures, attestations and referrers of the image and its children.
    pub with_attachments: bool,
    /// Refuse the image unless the root it resolves to carries a signature by this key.
    pub verify_key: Option<PublicKey>,
}

/// What [`copy`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOutcome {
    /// The source, as a name for messages.
    pub source: String,
    /// The destination, as a name for messages.
    pub destination: String,
    /// The image copy.
    pub report: CopyReport,
    /// The attachments, when asked for.
    pub attachments: Option<AttachmentsReport>,
}

/// Copy `req.source` to `req.destination` (reading with `src_ep`, writing with `dst_ep`), then
/// its attachments when asked; commit the destination.
///
/// Everything that can refuse the copy is done before the destination is opened: the source
/// is resolved once, its signature checked (`verify_key`), its attachments found, and a
/// digest the destination names compared. That one root is what is copied.
pub async fn copy(
    req: &CopyRequest,
    src_ep: &Endpoint,
    dst_ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<CopyOutcome> {
    let src = Pinned::pin(open_source(&req.source, src_ep).await?).await?;
    let repo = match req.with_attachments || req.verify_key.is_some() {
        true => Some(Repo::open_read(&req.source, src_ep).await?),
        false => None,
    };
    if let (Some(key), Some(repo)) = (&req.verify_key, &repo) {
        verify_root(&src, repo, key, &req.source.to_string()).await?;
    }
    let found = match (&repo, req.with_attachments) {
        (Some(repo), true) => Some(discover_attached(repo, &src, req.platform.as_ref()).await?),
        _ => None,
    };
    if let ImageRef::Docker(d) = &req.destination {
        if let Some(want) = &d.digest {
            let root = resolve_root(&src, req.platform.as_ref()).await?;
            if want != root.digest() {
                return Err(Error::Invalid {
                    what: format!("destination {}", req.destination),
                    reason: format!(
                        "it names digest {want} but the image to copy is {}",
                        root.digest()
                    ),
                });
            }
        }
    }
    let dst = open_sink(&req.destination, dst_ep).await?;
    let opts = CopyOptions {
        platform: req.platform.clone(),
        jobs: req.jobs.max(1),
        tags: destination_tags(&req.destination),
        commit: false,
        ..CopyOptions::default()
    };
    let report = copy_image(&src, dst.as_ref(), &opts, reporter).await?;
    let attachments = match (&repo, &found) {
        (Some(repo), Some(found)) => {
            // The destination, for merging into its own signatures and referrers indexes.
            let merge_repo = Repo::open_destination(&req.destination, dst_ep).await?;
            Some(
                copy_attachments(
                    repo,
                    dst.as_ref(),
                    &req.destination,
                    found,
                    Some(&merge_repo),
                    &opts,
                    reporter,
                )
                .await?,
            )
        }
        _ => None,
    };
    dst.commit().await?;
    Ok(CopyOutcome {
        source: src.name(),
        destination: dst.name(),
        report,
        attachments,
    })
}

/// Find everything attached, in `repo`, to the image `src` was pinned to (narrowed to
/// `platform`) and to its children: what [`copy_attachments`] then copies after the image.
pub async fn discover_attached(
    repo: &Repo,
    src: &Pinned,
    platform: Option<&Platform>,
) -> Result<Vec<Attachment>> {
    let root = resolve_root(src, platform).await?;
    discover(repo, &root).await
}
