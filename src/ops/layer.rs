//! `graft layer build`: one layer tarball from a library layer (its includes applied) or a
//! plain directory, with the same bytes `graft plan` and `graft refresh` build.
//!
//! **The time every entry gets** is decided as refresh decides it ([`crate::ops::plan::revision`],
//! decisions §19), so the digest `layer build` prints in a git checkout is the digest the
//! refresh writes: `SOURCE_DATE_EPOCH` when set; else, for a library layer in git, the time of
//! the last commit that touched a `layer.yaml` or `files/` of its chain, or the time of HEAD
//! when no commit touched them; else (outside git, or a plain directory) the epoch. A shallow
//! clone without `SOURCE_DATE_EPOCH` is refused, as refresh refuses it: its history would give
//! a wrong time.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::{self, Compression, LayerDigests, LayerSpec};
use crate::library::{self, git::Repo, CompatLayer};
use crate::timestamp::Timestamp;

/// What to build.
#[derive(Debug, Clone)]
pub enum LayerSource {
    /// A directory placed at `/` as it is (no `layer.yaml`).
    Tree(PathBuf),
    /// The layer `name` of the layers directory `layers_dir`, its includes resolved there.
    Library {
        /// The directory holding the layer directories (a library's `layers/`).
        layers_dir: PathBuf,
        /// The layer's name (its directory).
        name: String,
    },
}

/// A request for [`build_layer`].
#[derive(Debug, Clone)]
pub struct LayerBuild {
    /// The layer.
    pub source: LayerSource,
    /// Its compression.
    pub compression: Compression,
    /// Where to write it (replaced atomically); `None`: only hash it.
    pub file: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH`, read by the binary.
    pub epoch: Option<Timestamp>,
}

/// Where the entries' time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeSource {
    /// `SOURCE_DATE_EPOCH`.
    SourceDateEpoch,
    /// The last commit that touched the layer's chain.
    LastChange,
    /// The time of HEAD (no commit touched the chain).
    Head,
    /// The epoch (outside git, or a plain directory).
    Epoch,
}

/// What [`build_layer`] built.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    /// The layer's digests, size and media type.
    pub digests: LayerDigests,
    /// The time every entry got.
    pub mtime: Timestamp,
    /// Where that time came from.
    pub time_source: TimeSource,
}

/// Build (or only hash) the layer `req` names; see the module docs for its time.
pub fn build_layer(req: &LayerBuild) -> Result<BuiltLayer> {
    let (spec, mtime, time_source) = match &req.source {
        LayerSource::Tree(dir) => {
            let (t, s) = match req.epoch {
                Some(t) => (t, TimeSource::SourceDateEpoch),
                None => (Timestamp::EPOCH, TimeSource::Epoch),
            };
            (LayerSpec::tree(dir, t), t, s)
        }
        LayerSource::Library { layers_dir, name } => {
            let compat = library::compat_from_layers(layers_dir, name)?;
            let (t, s) = layer_time(layers_dir, &compat, req.epoch)?;
            (compat.spec(t), t, s)
        }
    };
    let digests = match &req.file {
        Some(path) => layer::build_to_file(&spec, req.compression, path)?,
        None => layer::build(&spec, req.compression, std::io::sink())?,
    };
    Ok(BuiltLayer {
        digests,
        mtime,
        time_source,
    })
}

/// The time of `compat`'s entries, as refresh would give them (see the module docs).
fn layer_time(
    layers_dir: &Path,
    compat: &CompatLayer,
    epoch: Option<Timestamp>,
) -> Result<(Timestamp, TimeSource)> {
    if let Some(t) = epoch {
        return Ok((t, TimeSource::SourceDateEpoch));
    }
    let Some(repo) = Repo::discover(layers_dir) else {
        return Ok((Timestamp::EPOCH, TimeSource::Epoch));
    };
    if repo.is_shallow() {
        return Err(Error::Unsupported(format!(
            "{} is in a shallow git clone: the layer's time (its last commit) would be wrong; \
             fetch the full history (git fetch --unshallow), or set SOURCE_DATE_EPOCH",
            layers_dir.display()
        )));
    }
    // The same inputs as refresh's (`library::changes::layer_inputs`), relative to the layers
    // directory git runs in: each chain layer's layer.yaml and files/.
    let groups: Vec<(String, Vec<String>)> = compat
        .chain
        .iter()
        .map(|n| {
            (
                n.clone(),
                vec![format!("{n}/layer.yaml"), format!("{n}/files")],
            )
        })
        .collect();
    let times = repo.last_changes(&groups)?;
    if let Some(t) = times.values().max() {
        return Ok((*t, TimeSource::LastChange));
    }
    Ok(match repo.head_time() {
        Some(t) => (t, TimeSource::Head),
        None => (Timestamp::EPOCH, TimeSource::Epoch),
    })
}
