//! `graft append`: new layers from tarballs over a base image (every platform of an index, or
//! the selected ones), written to a destination through the copy engine; base layers are never
//! downloaded (mounted or skipped). The base may also be `scratch`, the empty base: then the
//! layers alone make a new image for the given platforms.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::copy::{copy_image, CopyOptions, CopyReport};
use crate::error::{Error, Result};
use crate::image::append::{
    append, append_scratch, base_name, AppendRequest, Dropped, LocalBlob, NewLayer, PlatformResult,
    SCRATCH,
};
use crate::image::config::RuntimeConfig;
use crate::image::tarball::inspect_tarball;
use crate::oci::{Digest, Platform};
use crate::progress::Reporter;
use crate::reference::ImageRef;
use crate::store::open::{destination_tags, open_sink, open_source, Endpoint};
use crate::store::Source;
use crate::timestamp::Timestamp;

/// What the layers are appended to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `scratch`: nothing; the layers alone make the image (`platforms` must be given).
    Scratch,
    /// An image on any transport.
    Image(ImageRef),
}

impl std::str::FromStr for Base {
    type Err = Error;

    /// `scratch` (exactly, as in a Dockerfile's `FROM scratch`) is the empty base; anything
    /// else is an image reference (`docker://scratch` would be an image named scratch).
    fn from_str(s: &str) -> Result<Base> {
        if s == SCRATCH {
            Ok(Base::Scratch)
        } else {
            Ok(Base::Image(s.parse()?))
        }
    }
}

impl std::fmt::Display for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Base::Scratch => f.write_str(SCRATCH),
            Base::Image(r) => r.fmt(f),
        }
    }
}

/// An append to run.
#[derive(Debug, Clone)]
pub struct AppendImage {
    /// The base image, or scratch.
    pub base: Base,
    /// Where the result goes (its tag is written last).
    pub destination: ImageRef,
    /// Layer tarballs (tar, tar.gz or tar.zst), appended in order.
    pub layers: Vec<PathBuf>,
    /// Runtime settings (env, entrypoint, cmd, user, working directory) set on every
    /// platform, with Dockerfile semantics.
    pub runtime: RuntimeConfig,
    /// Config labels set on every platform.
    pub labels: BTreeMap<String, String>,
    /// Annotations set on the index and every manifest.
    pub annotations: BTreeMap<String, String>,
    /// Append only to these platforms (empty: all); with [`Base::Scratch`], the platforms to
    /// make (required).
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
    /// The base root's digest (none for scratch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<Digest>,
    /// Each appended platform (from scratch, `base` is the empty manifest graft started from,
    /// which is never written).
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
    if req.base == Base::Scratch && req.platforms.is_empty() {
        // Checked before any layer is read: bad usage costs nothing.
        return Err(Error::Input {
            what: "--base scratch".into(),
            reason: "the empty base has no platform of its own: give --platform (e.g. \
                     --platform linux/amd64, or linux/amd64,linux/arm64 for an index)"
                .into(),
        });
    }
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
    let mut request = AppendRequest {
        layers,
        runtime: req.runtime.clone(),
        labels: req.labels.clone(),
        platform_labels: None,
        annotations: req.annotations.clone(),
        inherit_annotations: true,
        base_name: None,
        platforms: (!req.platforms.is_empty()).then(|| req.platforms.clone()),
        created: req.created,
    };
    let (assembled, base) = match &req.base {
        Base::Scratch => (append_scratch(&req.platforms, &request).await?, None),
        Base::Image(r) => {
            request.base_name = Some(base_name(r));
            let base: Arc<dyn Source> = Arc::from(open_source(r, ep).await?);
            let a = append(base, &request).await?;
            let root = a.base_root.clone();
            (a, Some(root))
        }
    };
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
        base,
        platforms: assembled.platforms,
        dropped: assembled.dropped,
        report,
    })
}
