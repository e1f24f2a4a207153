//! Appending layers to every platform of an image: the result is an [`AssembledSource`], an
//! image whose new documents and layers are local and whose old layers still point back at the
//! base image's store, so the copy engine mounts or skips them and never downloads them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::config::{edit_config, AppendedLayer, ConfigEdit, RuntimeConfig};
use super::manifest::{append_layers, layer_media_type_for, rebuild_index};
use crate::error::{Error, Result};
use crate::oci::{media_types as mt, Descriptor, Digest, Platform, RawManifest};
use crate::store::{read_blob, verify_stream, BlobStream, MountOrigin, Source};
use crate::timestamp::Timestamp;

/// Annotation keys of the OCI base-image convention.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// See [`BASE_NAME`].
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// Local blobs are streamed in pieces of this size.
const LOCAL_PIECE: usize = 256 << 10;

pub(crate) use crate::store::CONFIG_LIMIT;

/// Where the bytes of a blob graft made live until the copy engine moves them.
#[derive(Debug, Clone)]
pub enum LocalBlob {
    /// In memory (configs, small layers): bytes whose descriptor graft computed from these
    /// very bytes, so they are served without hashing them again (sizes are checked).
    Bytes(Bytes),
    /// In a file (layers).
    File(PathBuf),
}

/// A layer to append.
#[derive(Debug, Clone)]
pub struct NewLayer {
    /// Descriptor with the OCI media type it was built with.
    pub desc: Descriptor,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Its bytes.
    pub blob: LocalBlob,
    /// The history entry's `created_by`.
    pub created_by: String,
}

/// Extra labels for one platform, computed from that platform's base config bytes
/// (e.g. breadcrumbs that read the base's `created`).
pub type LabelFn<'a> = &'a (dyn Fn(&[u8]) -> Result<BTreeMap<String, String>> + Send + Sync);

/// What to append and how to label it.
pub struct AppendRequest<'a> {
    /// Layers appended to every selected platform, in order.
    pub layers: Vec<NewLayer>,
    /// Runtime settings merged into each config.
    pub runtime: RuntimeConfig,
    /// Labels set on every platform (`--label`).
    pub labels: BTreeMap<String, String>,
    /// Per-platform labels computed from the base config.
    pub platform_labels: Option<LabelFn<'a>>,
    /// Annotations set on the index and on every new manifest.
    pub annotations: BTreeMap<String, String>,
    /// Keep the base documents' own annotations under `annotations` (`graft append`, like
    /// `crane mutate`); refresh drops them, since the science image's title, version or
    /// description do not describe the final image (its base is named by the base annotations).
    pub inherit_annotations: bool,
    /// `org.opencontainers.image.base.name` (a tag reference to the base), if known.
    pub base_name: Option<String>,
    /// Append only to these platforms (the others are left out of the result).
    pub platforms: Option<Vec<Platform>>,
    /// The `created` time of configs and history entries.
    pub created: Timestamp,
}

/// One platform of the result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlatformResult {
    /// The platform (`None` for a single-manifest base).
    pub platform: Option<String>,
    /// The base manifest's digest.
    pub base: Digest,
    /// The new manifest's digest.
    pub digest: Digest,
    /// The new config's labels.
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

/// An index entry left out of the result, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Dropped {
    /// Its position in the base index.
    #[serde(skip)]
    pub position: usize,
    /// The entry's digest.
    pub digest: Digest,
    /// Why it was left out.
    pub reason: String,
}

/// The appended image.
pub struct Assembled {
    /// The image as a source for the copy engine.
    pub source: AssembledSource,
    /// The new root (index or manifest).
    pub root: Descriptor,
    /// The base root's digest.
    pub base_root: Digest,
    /// Each appended platform.
    pub platforms: Vec<PlatformResult>,
    /// Entries left out.
    pub dropped: Vec<Dropped>,
}

/// An image made of new local documents and layers over a base [`Source`].
pub struct AssembledSource {
    base: Arc<dyn Source>,
    root: RawManifest,
    manifests: HashMap<Digest, RawManifest>,
    blobs: HashMap<Digest, LocalBlob>,
}

#[async_trait]
impl Source for AssembledSource {
    fn name(&self) -> String {
        format!("{} + appended layers", self.base.name())
    }

    async fn resolve(&self) -> Result<RawManifest> {
        Ok(self.root.clone())
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        match self.manifests.get(&desc.digest) {
            Some(m) => Ok(m.clone()),
            None => self.base.manifest(desc).await,
        }
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        let what = format!("blob {}", desc.digest);
        match self.blobs.get(&desc.digest) {
            Some(LocalBlob::Bytes(b)) => {
                // Bytes graft made and digested itself a moment ago (a config, a compat layer
                // built in memory): handed over as they are, in pieces (no copies), not hashed
                // a third time. Files are verified: they could change on disk.
                if b.len() as u64 != desc.size {
                    return Err(Error::SizeMismatch {
                        what,
                        expected: desc.size,
                        found: b.len() as u64,
                    });
                }
                let b = b.clone();
                let pieces = (0..b.len().div_ceil(LOCAL_PIECE)).map(move |i| {
                    Ok::<_, Error>(b.slice(i * LOCAL_PIECE..b.len().min((i + 1) * LOCAL_PIECE)))
                });
                Ok(Box::pin(futures::stream::iter(pieces)))
            }
            Some(LocalBlob::File(path)) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| Error::io("opening layer", path, e))?;
                let p = path.clone();
                let s = tokio_util::io::ReaderStream::with_capacity(file, LOCAL_PIECE)
                    .map(move |r| r.map_err(|e| Error::io("reading layer", &p, e)));
                Ok(verify_stream(Box::pin(s), desc, what))
            }
            None => self.base.blob(desc).await,
        }
    }

    fn mount_origin(&self, desc: &Descriptor) -> Option<MountOrigin> {
        if self.blobs.contains_key(&desc.digest) {
            None
        } else {
            self.base.mount_origin(desc)
        }
    }
}

/// `org.opencontainers.image.base.name` for a base reference: a tag reference for registry
/// images (`host/repo:tag`), else the reference as given.
pub fn base_name(r: &crate::reference::ImageRef) -> String {
    use crate::reference::ImageRef;
    match r {
        ImageRef::Docker(d) => match &d.tag {
            Some(t) => format!("{}/{}:{t}", d.registry, d.repository),
            None => d.name(),
        },
        other => other.to_string(),
    }
}

/// Why an index entry is not a runnable image, if it is not.
pub(crate) fn not_runnable(d: &Descriptor) -> Option<String> {
    if d.annotation("vnd.docker.reference.type") == Some("attestation-manifest") {
        return Some("a buildx attestation manifest (it describes the old image)".into());
    }
    match &d.platform {
        Some(p) if p.is_unknown() => Some("platform unknown/unknown".into()),
        None => Some("no platform".into()),
        Some(_) if !mt::is_manifest(&d.media_type) => {
            Some(format!("not an image manifest ({})", d.media_type))
        }
        Some(_) => None,
    }
}

/// Append `req.layers` to every selected platform of the image `base` resolves to.
pub async fn append(base: Arc<dyn Source>, req: &AppendRequest<'_>) -> Result<Assembled> {
    let root = base.resolve().await?;
    let mut manifests = HashMap::new();
    let mut blobs = HashMap::new();
    for l in &req.layers {
        blobs.insert(l.desc.digest.clone(), l.blob.clone());
    }
    let mut platforms = Vec::new();
    let mut dropped = Vec::new();
    if !root.is_index() {
        if let Some(ps) = &req.platforms {
            // A single manifest without a config is an artifact, not an image: it has no
            // platform to select, and nothing to append to.
            let config = root.view().config.clone().ok_or_else(|| {
                Error::Unsupported(format!(
                    "{} is an artifact ({}), not an image: it has no platform to select and \
                     no config to append layers to",
                    base.name(),
                    root.media_type()
                ))
            })?;
            let bytes = read_blob(base.as_ref(), &config, CONFIG_LIMIT).await?;
            let have = config_platform(&bytes);
            if let Some(p) = ps
                .iter()
                .find(|p| !have.as_ref().is_some_and(|h| h.matches(p)))
            {
                return Err(Error::NotFound {
                    what: format!("platform {p} in {}", base.name()),
                    detail: Some(format!(
                        "it is a single image for {}",
                        have.map(|h| h.to_string())
                            .unwrap_or_else(|| "an unknown platform".into())
                    )),
                });
            }
        }
        let (m, result) = append_one(base.as_ref(), &root, None, req, &mut blobs).await?;
        platforms.push(result);
        let desc = m.descriptor();
        let new_root = m.clone();
        manifests.insert(m.digest().clone(), m);
        return Ok(Assembled {
            source: AssembledSource {
                base,
                root: new_root,
                manifests,
                blobs,
            },
            root: desc,
            base_root: root.digest().clone(),
            platforms,
            dropped,
        });
    }
    let entries = root.view().manifests.clone();
    let mut selected = Vec::new();
    for (position, e) in entries.iter().enumerate() {
        if let Some(reason) = not_runnable(e) {
            dropped.push(Dropped {
                position,
                digest: e.digest.clone(),
                reason,
            });
            continue;
        }
        selected.push((position, e.clone()));
    }
    if let Some(ps) = &req.platforms {
        let have: Vec<String> = selected
            .iter()
            .filter_map(|(_, e)| e.platform.as_ref().map(|p| p.to_string()))
            .collect();
        for p in ps {
            if !selected
                .iter()
                .any(|(_, e)| e.platform.as_ref().is_some_and(|q| q.matches(p)))
            {
                return Err(Error::NotFound {
                    what: format!("platform {p} in {}", base.name()),
                    detail: Some(format!("the index has {}", have.join(", "))),
                });
            }
        }
        selected.retain(|(position, e)| {
            let keep = ps
                .iter()
                .any(|p| e.platform.as_ref().is_some_and(|q| q.matches(p)));
            if !keep {
                dropped.push(Dropped {
                    position: *position,
                    digest: e.digest.clone(),
                    reason: format!(
                        "platform {} not selected",
                        e.platform
                            .as_ref()
                            .map(|p| p.to_string())
                            .unwrap_or_default()
                    ),
                });
            }
            keep
        });
    }
    if selected.is_empty() {
        return Err(Error::Invalid {
            what: format!("index {}", root.digest()),
            reason: "it has no runnable image manifest to append to".into(),
        });
    }
    let mut replace = HashMap::new();
    for (_, e) in &selected {
        let child = base.manifest(e).await?;
        let (m, result) =
            append_one(base.as_ref(), &child, e.platform.as_ref(), req, &mut blobs).await?;
        platforms.push(result);
        replace.insert(e.digest.clone(), m.descriptor());
        manifests.insert(m.digest().clone(), m);
    }
    let drop: HashSet<usize> = dropped.iter().map(|d| d.position).collect();
    let index = rebuild_index(
        &root,
        &replace,
        &drop,
        &annotations(req, root.digest()),
        req.inherit_annotations,
    )?;
    let desc = index.descriptor();
    Ok(Assembled {
        source: AssembledSource {
            base,
            root: index,
            manifests,
            blobs,
        },
        root: desc,
        base_root: root.digest().clone(),
        platforms,
        dropped,
    })
}

/// The request's annotations plus the base-image ones for a document built on `base`.
fn annotations(req: &AppendRequest<'_>, base: &Digest) -> BTreeMap<String, String> {
    let mut ann = req.annotations.clone();
    if let Some(n) = &req.base_name {
        ann.insert(BASE_NAME.into(), n.clone());
    }
    ann.insert(BASE_DIGEST.into(), base.to_string());
    ann
}

fn config_platform(config: &[u8]) -> Option<Platform> {
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    Some(Platform {
        os: v.get("os")?.as_str()?.to_string(),
        architecture: v.get("architecture")?.as_str()?.to_string(),
        variant: v
            .get("variant")
            .and_then(|x| x.as_str())
            .map(str::to_string),
        ..Platform::default()
    })
}

async fn append_one(
    base: &dyn Source,
    manifest: &RawManifest,
    platform: Option<&Platform>,
    req: &AppendRequest<'_>,
    blobs: &mut HashMap<Digest, LocalBlob>,
) -> Result<(RawManifest, PlatformResult)> {
    let config_desc = manifest
        .view()
        .config
        .clone()
        .ok_or_else(|| Error::Invalid {
            what: format!("manifest {}", manifest.digest()),
            reason: "no config".into(),
        })?;
    let base_config = read_blob(base, &config_desc, CONFIG_LIMIT)
        .await
        .map_err(|e| e.context(format!("reading the config of {}", manifest.digest())))?;
    let mut labels = req.labels.clone();
    if let Some(f) = req.platform_labels {
        labels.extend(f(&base_config)?);
    }
    let edit = ConfigEdit {
        layers: req
            .layers
            .iter()
            .map(|l| AppendedLayer {
                diff_id: l.diff_id.clone(),
                created_by: l.created_by.clone(),
                comment: None,
            })
            .collect(),
        runtime: req.runtime.clone(),
        labels,
        created: req.created,
    };
    let new_config = Bytes::from(edit_config(&base_config, &edit)?);
    let cfg_desc = Descriptor::new(
        config_desc.media_type.clone(),
        Digest::sha256(&new_config),
        new_config.len() as u64,
    );
    blobs.insert(
        cfg_desc.digest.clone(),
        LocalBlob::Bytes(new_config.clone()),
    );
    let layers = req
        .layers
        .iter()
        .map(|l| {
            let mut d = l.desc.clone();
            d.media_type = layer_media_type_for(manifest.media_type(), &l.desc.media_type)?;
            Ok(d)
        })
        .collect::<Result<Vec<_>>>()?;
    let m = append_layers(
        manifest,
        &cfg_desc,
        &layers,
        &annotations(req, manifest.digest()),
        req.inherit_annotations,
    )?;
    let result = PlatformResult {
        platform: platform.map(|p| p.to_string()),
        base: manifest.digest().clone(),
        digest: m.digest().clone(),
        labels: super::config::config_labels(&new_config)?,
    };
    Ok((m, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source whose reference is an OCI artifact manifest (no config).
    struct Artifact(RawManifest);

    #[async_trait]
    impl Source for Artifact {
        fn name(&self) -> String {
            "oci:artifact:1".into()
        }
        async fn resolve(&self) -> Result<RawManifest> {
            Ok(self.0.clone())
        }
        async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
            Err(Error::NotFound {
                what: desc.digest.to_string(),
                detail: None,
            })
        }
        async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
            Err(Error::NotFound {
                what: desc.digest.to_string(),
                detail: None,
            })
        }
    }

    #[tokio::test]
    async fn a_platform_of_an_artifact_is_bad_input_not_a_panic() {
        let doc = br#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"application/x-test","blobs":[]}"#;
        let m = RawManifest::from_bytes(Bytes::from_static(doc), None).unwrap();
        let req = AppendRequest {
            layers: Vec::new(),
            runtime: RuntimeConfig::default(),
            labels: BTreeMap::new(),
            platform_labels: None,
            annotations: BTreeMap::new(),
            inherit_annotations: false,
            base_name: None,
            platforms: Some(vec!["linux/amd64".parse().unwrap()]),
            created: Timestamp::EPOCH,
        };
        let e = match append(Arc::new(Artifact(m)), &req).await {
            Ok(_) => panic!("appending to an artifact succeeded"),
            Err(e) => e,
        };
        assert!(e.is_usage(), "{e:?}");
        assert!(
            e.to_string().contains("oci:artifact:1 is an artifact"),
            "{e}"
        );
    }
}
