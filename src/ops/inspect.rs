//! `graft inspect`: an image's root (index or manifest), one platform's config, or the
//! breadcrumb labels of every platform, read once from wherever the image lives.

use bytes::Bytes;
use serde::Serialize;

use crate::copy::resolve_root;
use crate::error::{Error, Result};
use crate::image::breadcrumbs::{self, Crumb};
use crate::image::config::config_labels;
use crate::oci::{Platform, RawManifest};
use crate::reference::ImageRef;
use crate::store::open::{open_source, Endpoint};
use crate::store::{read_blob, Source, CONFIG_LIMIT};

/// What to show of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The manifest or index (of the platform, when one is given).
    Root,
    /// The config of the platform's image manifest.
    Config,
    /// The breadcrumb labels of every platform.
    Breadcrumbs,
}

/// One platform's breadcrumb.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformCrumb {
    /// `os/arch[/variant]`, or `-` for a single-platform image.
    pub platform: String,
    /// The breadcrumb.
    #[serde(flatten)]
    pub crumb: Crumb,
}

/// What [`inspect`] found.
#[derive(Debug, Clone)]
pub enum Inspected {
    /// The root manifest or index, exact bytes.
    Root(Box<RawManifest>),
    /// The config, exact bytes.
    Config(Bytes),
    /// The breadcrumbs of every platform, in index order.
    Breadcrumbs(Vec<PlatformCrumb>),
}

/// Read `part` of `reference` (picking `platform` out of an index); also returns the source's
/// name for messages.
pub async fn inspect(
    reference: &ImageRef,
    platform: Option<&Platform>,
    part: Part,
    ep: &Endpoint,
) -> Result<(String, Inspected)> {
    let src = open_source(reference, ep).await?;
    let m = resolve_root(src.as_ref(), platform).await?;
    let found = match part {
        Part::Root => Inspected::Root(Box::new(m)),
        Part::Config => {
            let config = m.view().config.clone().ok_or_else(|| {
                Error::Unsupported(format!(
                    "{} is an index, not an image: it has no config (pick one with --platform)",
                    src.name()
                ))
            })?;
            Inspected::Config(read_blob(src.as_ref(), &config, CONFIG_LIMIT).await?)
        }
        Part::Breadcrumbs => Inspected::Breadcrumbs(crumbs(src.as_ref(), &m).await?),
    };
    Ok((src.name(), found))
}

async fn crumbs(src: &dyn Source, m: &RawManifest) -> Result<Vec<PlatformCrumb>> {
    let mut images = Vec::new();
    if m.is_index() {
        for d in &m.view().manifests {
            match &d.platform {
                Some(p) if !p.is_unknown() => images.push((p.to_string(), src.manifest(d).await?)),
                _ => {}
            }
        }
    } else {
        images.push(("-".to_string(), m.clone()));
    }
    let mut rows = Vec::new();
    for (platform, image) in images {
        let Some(config) = image.view().config.clone() else {
            continue;
        };
        let bytes = read_blob(src, &config, CONFIG_LIMIT).await?;
        for crumb in breadcrumbs::read(&config_labels(&bytes)?) {
            rows.push(PlatformCrumb {
                platform: platform.clone(),
                crumb,
            });
        }
    }
    Ok(rows)
}
