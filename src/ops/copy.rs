//! One image copy, with everything attached to it when asked: `graft copy` is one call to
//! [`copy`], and `graft mirror` copies each of its images through [`copy_attached`].

use std::sync::Arc;

use serde::Serialize;

use crate::copy::{copy_image, resolve_root, CopyOptions, CopyReport};
use crate::error::{Error, Result};
use crate::oci::Platform;
use crate::ops::attachments::{copy_attachments, discover, AttachmentsReport};
use crate::progress::Reporter;
use crate::reference::ImageRef;
use crate::sign::Repo;
use crate::store::open::{destination_tags, open_sink, open_source, Endpoint};
use crate::store::{Sink, Source};

/// What to copy, and how.
#[derive(Debug, Clone)]
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
/// its attachments when asked; commit the destination; check a digest the destination names.
pub async fn copy(
    req: &CopyRequest,
    src_ep: &Endpoint,
    dst_ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<CopyOutcome> {
    let src = open_source(&req.source, src_ep).await?;
    let dst = open_sink(&req.destination, dst_ep).await?;
    let opts = CopyOptions {
        platform: req.platform.clone(),
        jobs: req.jobs.max(1),
        tags: destination_tags(&req.destination),
        commit: false,
        ..CopyOptions::default()
    };
    let report = copy_image(src.as_ref(), dst.as_ref(), &opts, reporter).await?;
    let attachments = if req.with_attachments {
        let repo = Repo::open_read(&req.source, src_ep).await?;
        // The destination, for merging into its own signatures and referrers indexes.
        let merge_repo = Repo::open_destination(&req.destination, dst_ep).await?;
        Some(
            copy_attached(
                &repo,
                src.as_ref(),
                dst.as_ref(),
                &req.destination,
                &merge_repo,
                &opts,
                reporter,
            )
            .await?,
        )
    } else {
        None
    };
    dst.commit().await?;
    if let ImageRef::Docker(d) = &req.destination {
        if let Some(want) = &d.digest {
            if *want != report.digest {
                return Err(Error::Invalid {
                    what: format!("destination {}", req.destination),
                    reason: format!(
                        "it names digest {want} but the copied image is {}",
                        report.digest
                    ),
                });
            }
        }
    }
    Ok(CopyOutcome {
        source: src.name(),
        destination: dst.name(),
        report,
        attachments,
    })
}

/// Find everything attached to the image `src` reads (and to its children) in `repo`, and copy
/// it into `dst` (named `dst_ref`) after the image, merging into the destination's own
/// `.sig`/`.att` tags and referrers indexes through `merge_repo`.
pub async fn copy_attached(
    repo: &Repo,
    src: &dyn Source,
    dst: &dyn Sink,
    dst_ref: &ImageRef,
    merge_repo: &Repo,
    opts: &CopyOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<AttachmentsReport> {
    let root = resolve_root(src, opts.platform.as_ref()).await?;
    let found = discover(repo, &root).await?;
    copy_attachments(repo, dst, dst_ref, &found, Some(merge_repo), opts, reporter).await
}
