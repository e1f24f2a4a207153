//! `graft append`: new layers from tarballs over a base image (every platform of an index, or
//! the selected ones), written to a destination through the copy engine; base layers are never
//! downloaded (mounted or skipped).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::copy::{copy_image, CopyOptions, CopyReport};
use crate::error::{Error, Result};
use crate::image::append::{
    append, base_name, AppendRequest, Dropped, LocalBlob, NewLayer, PlatformResult,
};
use crate::image::config::RuntimeConfig;
use crate::image::tarball::inspect_tarball;
use crate::oci::{Digest, Platform};
use crate::progress::Reporter;
use crate::reference::ImageRef;
use crate::store::open::{destination_tags, open_sink, open_source, Endpoint};
use crate::store::Source;
use crate::timestamp::Timestamp;

/// An append to run.
#[derive(Debug, Clone)]
pub struct AppendImage {
    /// The base image.
    pub base: ImageRef,
    /// Where the result goes (its tag is written last).
    pub destination: ImageRef,
    /// Layer tarballs (tar, tar.gz or tar.zst), appended in order.
    pub layers: Vec<PathBuf>,
    /// Config labels set on every platform.
    pub labels: BTreeMap<String, String>,
    /// Annotations set on the index and every manifest.
    pub annotations: BTreeMap<String, String>,
    /// Append only to these platforms (empty: all).
    pub platforms: Vec<Platform>,
    /// Concurrent blob transfers.
    pub jobs: usize,
    /// The time stamped into history.
    pub created: Timestamp,
}

/// What [`append_image`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Appended {
    /// The destination, as a name for messages.
    pub destination: String,
    /// The new root's digest.
    pub digest: Digest,
    /// The base root's digest.
    pub base: Digest,
    /// Each appended platform.
    pub platforms: Vec<PlatformResult>,
    /// Index entries left out.
    pub dropped: Vec<Dropped>,
    /// The copy.
    pub report: CopyReport,
}

/// Append `req.layers` to `req.base` and write the result to `req.destination`.
pub async fn append_image(
    req: &AppendImage,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<Appended> {
    let mut layers = Vec::new();
    for path in &req.layers {
        if !path.is_file() {
            return Err(Error::Unsupported(format!(
                "--layer {}: not a file; give a layer tarball (tar, tar.gz or tar.zst)",
                path.display()
            )));
        }
        let (desc, diff_id) = inspect_tarball(path)?;
        layers.push(NewLayer {
            desc,
            diff_id,
            blob: LocalBlob::File(path.clone()),
            created_by: format!(
                "graft append {}",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        });
    }
    let base: Arc<dyn Source> = Arc::from(open_source(&req.base, ep).await?);
    let request = AppendRequest {
        layers,
        runtime: RuntimeConfig::default(),
        labels: req.labels.clone(),
        platform_labels: None,
        annotations: req.annotations.clone(),
        inherit_annotations: true,
        base_name: Some(base_name(&req.base)),
        platforms: (!req.platforms.is_empty()).then(|| req.platforms.clone()),
        created: req.created,
    };
    let assembled = append(base, &request).await?;
    let sink = open_sink(&req.destination, ep).await?;
    let opts = CopyOptions {
        jobs: req.jobs.max(1),
        tags: destination_tags(&req.destination),
        ..CopyOptions::default()
    };
    let report = copy_image(&assembled.source, sink.as_ref(), &opts, reporter).await?;
    Ok(Appended {
        destination: sink.name(),
        digest: report.digest.clone(),
        base: assembled.base_root,
        platforms: assembled.platforms,
        dropped: assembled.dropped,
        report,
    })
}
