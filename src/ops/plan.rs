//! `graft plan`: what a refresh of the library would produce (references, tags, labels, compat
//! layer digests built in memory), without writing anything; with an endpoint, each science
//! reference is resolved to its digest and the labels are those refresh writes (computed by
//! refresh's own assembly, in a dry run).

use crate::error::{Error, Result};
use crate::layer::{self, Compression, LayerDigests};
use crate::library::plan::Plan;
use crate::library::{BuildInfo, CompatLayer, Library};
use crate::ops::refresh::{prepare, LayerCache, RefreshOptions};
use crate::store::open::{open_source, Endpoint};
use crate::timestamp::Timestamp;

/// The plan of `lib` for `build` (layer times `mtime`, layers compressed with `compression`);
/// with `resolve`, every science reference is resolved through it (one manifest read each).
pub async fn plan(
    lib: &Library,
    build: &BuildInfo,
    mtime: Timestamp,
    compression: Compression,
    resolve: Option<&Endpoint>,
) -> Result<Plan> {
    let mut plan = Plan::new(lib, build, mtime, |c| build_layer(c, mtime, compression))?;
    if let Some(ep) = resolve {
        let work = tempfile::tempdir()
            .map_err(|e| Error::io("creating a work directory", std::env::temp_dir(), e))?;
        let opts = RefreshOptions {
            build: build.clone(),
            created: mtime,
            dry_run: true,
            jobs: 4,
            work_dir: work.path().to_path_buf(),
        };
        let layers = LayerCache::default();
        for (i, m) in lib.manifests().iter().enumerate() {
            let src = open_source(&m.science.image.image, ep).await?;
            let root = src.resolve().await?;
            plan.set_resolved(i, root.digest().clone());
            if plan.has_errors() {
                continue;
            }
            // The labels refresh would write, from refresh's own assembly (a dry run): what
            // the plan shows is what refresh writes, not a prediction of it.
            let prepared = prepare(lib, m, &opts, ep, &layers).await?;
            let written: Vec<_> = prepared
                .result
                .platforms
                .iter()
                .map(|p| (p.platform.clone(), p.labels.clone()))
                .collect();
            plan.set_written_labels(i, &written);
        }
    }
    Ok(plan)
}

/// The digests of a compat layer: built and hashed in one pass, nothing written to disk.
fn build_layer(
    compat: &CompatLayer,
    mtime: Timestamp,
    compression: Compression,
) -> Result<Option<LayerDigests>> {
    let spec = compat.spec(mtime);
    layer::build(&spec, compression, std::io::sink())
        .map(Some)
        .map_err(|e| e.context(format!("building compat layer {:?}", compat.name)))
}
