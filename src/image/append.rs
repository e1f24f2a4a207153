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
    append_to(base, req, true).await
}

/// [`append`], with the base-image annotations (`base.name`, `base.digest`) written or not:
/// an image made from scratch has no base to name.
async fn append_to(
    base: Arc<dyn Source>,
    req: &AppendRequest<'_>,
    base_annotations: bool,
) -> Result<Assembled> {
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
        let (m, result) = append_one(
            base.as_ref(),
            &root,
            None,
            req,
            base_annotations,
            &mut blobs,
        )
        .await?;
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
        let (m, result) = append_one(
            base.as_ref(),
            &child,
            e.platform.as_ref(),
            req,
            base_annotations,
            &mut blobs,
        )
        .await?;
        platforms.push(result);
        replace.insert(e.digest.clone(), m.descriptor());
        manifests.insert(m.digest().clone(), m);
    }
    let drop: HashSet<usize> = dropped.iter().map(|d| d.position).collect();
    let index = rebuild_index(
        &root,
        &replace,
        &drop,
        &annotations(req, base_annotations.then(|| root.digest())),
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

/// The request's annotations plus the base-image ones for a document built on `base` (none
/// when there is no base image: scratch).
fn annotations(req: &AppendRequest<'_>, base: Option<&Digest>) -> BTreeMap<String, String> {
    let mut ann = req.annotations.clone();
    if let Some(base) = base {
        if let Some(n) = &req.base_name {
            ann.insert(BASE_NAME.into(), n.clone());
        }
        ann.insert(BASE_DIGEST.into(), base.to_string());
    }
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
    base_annotations: bool,
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
        &annotations(req, base_annotations.then(|| manifest.digest())),
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

/// What `--base` (and a Dockerfile's `FROM`) names the empty base.
pub const SCRATCH: &str = "scratch";

/// Make a new image from `req.layers` alone, for each of `platforms`: one platform gives an
/// image manifest, several an index with one manifest per platform (the same layers, a config
/// per platform). The configs are minimal (`created`, `architecture`, `os`, the platform's
/// `variant`/`os.version`, `config`, `rootfs`, `history`) plus `req`'s runtime settings and
/// labels; no base annotations are written (`req.base_name` and `req.platforms` are ignored).
///
/// It is [`append`] over an empty base made in memory, so an image from scratch gets exactly
/// the config and manifest edits of any other append; the empty base's own documents are all
/// replaced, so none of them is ever written.
pub async fn append_scratch(platforms: &[Platform], req: &AppendRequest<'_>) -> Result<Assembled> {
    let base = Scratch::new(platforms, req.created)?;
    // The empty base has exactly `platforms`: nothing to select, no base to name.
    let req = AppendRequest {
        layers: req.layers.clone(),
        runtime: req.runtime.clone(),
        labels: req.labels.clone(),
        platform_labels: req.platform_labels,
        annotations: req.annotations.clone(),
        inherit_annotations: req.inherit_annotations,
        base_name: None,
        platforms: None,
        created: req.created,
    };
    let mut out = append_to(Arc::new(base), &req, false).await?;
    if let ([p], [only]) = (platforms, out.platforms.as_mut_slice()) {
        // A single manifest has no index entry to carry its platform; the caller chose it.
        only.platform = Some(p.to_string());
    }
    Ok(out)
}

/// The empty base of [`append_scratch`]: per platform, a manifest without layers and its
/// config, held in memory.
struct Scratch {
    root: RawManifest,
    manifests: HashMap<Digest, RawManifest>,
    configs: HashMap<Digest, Bytes>,
}

impl Scratch {
    fn new(platforms: &[Platform], created: Timestamp) -> Result<Scratch> {
        let input = |reason: String| Error::Input {
            what: "platforms of an image from scratch".into(),
            reason,
        };
        if platforms.is_empty() {
            return Err(input(
                "none given: the empty base has no platform of its own".into(),
            ));
        }
        for (i, p) in platforms.iter().enumerate() {
            if p.os.is_empty() || p.architecture.is_empty() {
                return Err(input(format!("{p:?} lacks an os or an architecture")));
            }
            if platforms[..i]
                .iter()
                .any(|q| q.normalized() == p.normalized())
            {
                return Err(input(format!("{p} is given twice")));
            }
        }
        let mut manifests = HashMap::new();
        let mut configs = HashMap::new();
        let mut entries = Vec::new();
        for p in platforms {
            let config = Bytes::from(scratch_config(p, created)?);
            let config_desc =
                Descriptor::new(mt::OCI_CONFIG, Digest::sha256(&config), config.len() as u64);
            let doc = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": mt::OCI_MANIFEST,
                "config": config_desc,
                "layers": [],
            });
            let m = RawManifest::from_bytes(Bytes::from(to_json(&doc)?), Some(mt::OCI_MANIFEST))?;
            let mut entry = m.descriptor();
            entry.platform = Some(p.clone());
            entries.push(entry);
            configs.insert(config_desc.digest.clone(), config);
            manifests.insert(m.digest().clone(), m);
        }
        let root = if let [only] = entries.as_slice() {
            manifests.get(&only.digest).cloned().ok_or_else(|| {
                Error::internal("making the empty base", "its manifest is missing")
            })?
        } else {
            let doc = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": mt::OCI_INDEX,
                "manifests": entries,
            });
            RawManifest::from_bytes(Bytes::from(to_json(&doc)?), Some(mt::OCI_INDEX))?
        };
        Ok(Scratch {
            root,
            manifests,
            configs,
        })
    }
}

fn to_json(v: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Json {
        what: "empty base".into(),
        source: e,
    })
}

/// The config of the empty base for `p`: `created` first, so that the edit replaces it in
/// place and every image from scratch has the same key order.
fn scratch_config(p: &Platform, created: Timestamp) -> Result<Vec<u8>> {
    use serde_json::{Map, Value};
    let mut doc = Map::new();
    doc.insert("created".into(), Value::String(created.rfc3339()));
    doc.insert("architecture".into(), Value::String(p.architecture.clone()));
    doc.insert("os".into(), Value::String(p.os.clone()));
    if let Some(v) = &p.os_version {
        doc.insert("os.version".into(), Value::String(v.clone()));
    }
    if let Some(f) = &p.os_features {
        doc.insert(
            "os.features".into(),
            Value::Array(f.iter().cloned().map(Value::String).collect()),
        );
    }
    if let Some(v) = &p.variant {
        doc.insert("variant".into(), Value::String(v.clone()));
    }
    doc.insert("config".into(), Value::Object(Map::new()));
    doc.insert(
        "rootfs".into(),
        serde_json::json!({"type": "layers", "diff_ids": []}),
    );
    doc.insert("history".into(), Value::Array(Vec::new()));
    to_json(&Value::Object(doc))
}

#[async_trait]
impl Source for Scratch {
    fn name(&self) -> String {
        SCRATCH.into()
    }

    async fn resolve(&self) -> Result<RawManifest> {
        Ok(self.root.clone())
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.manifests
            .get(&desc.digest)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("manifest {} in the empty base", desc.digest),
                detail: None,
            })
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        match self.configs.get(&desc.digest) {
            Some(b) => Ok(Box::pin(futures::stream::iter([Ok::<_, Error>(b.clone())]))),
            None => Err(Error::NotFound {
                what: format!("blob {} in the empty base", desc.digest),
                detail: None,
            }),
        }
    }
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

    fn scratch_request(created: Timestamp) -> AppendRequest<'static> {
        // A layer is only described here (an uncompressed tar's digest is its diff_id); its
        // bytes are never read by the assembly.
        let tar = Bytes::from_static(b"not really a tar, but bytes with a digest");
        let digest = Digest::sha256(&tar);
        AppendRequest {
            layers: vec![NewLayer {
                desc: Descriptor::new(mt::OCI_LAYER_TAR, digest.clone(), tar.len() as u64),
                diff_id: digest,
                blob: LocalBlob::Bytes(tar),
                created_by: "graft append root.tar".into(),
            }],
            runtime: RuntimeConfig {
                entrypoint: Some(vec!["/graft".into()]),
                env: vec![("SSL_CERT_FILE".into(), "/etc/ssl/certs/ca.crt".into())],
                ..RuntimeConfig::default()
            },
            labels: BTreeMap::from([("org.example.k".into(), "v".into())]),
            platform_labels: None,
            annotations: BTreeMap::from([("org.example.a".into(), "1".into())]),
            inherit_annotations: true,
            base_name: Some("ignored for scratch".into()),
            platforms: None,
            created,
        }
    }

    async fn config_of(a: &Assembled, manifest: &RawManifest) -> serde_json::Value {
        let desc = manifest.view().config.clone().unwrap();
        let bytes = read_blob(&a.source, &desc, CONFIG_LIMIT).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn scratch_one_platform_is_a_manifest_with_a_minimal_config() {
        let req = scratch_request(Timestamp(1_700_000_000));
        let a = append_scratch(&["linux/amd64".parse().unwrap()], &req)
            .await
            .unwrap();
        let root = a.source.resolve().await.unwrap();
        assert_eq!(root.media_type(), mt::OCI_MANIFEST);
        // Golden: the bytes of an image from scratch never move.
        assert_eq!(
            root.digest().to_string(),
            "sha256:a5e9a692720254328c76b1331391f217227dc3d91c57ab03f8186cab292dd3ca",
            "{}",
            String::from_utf8_lossy(root.bytes())
        );
        assert_eq!(a.platforms[0].platform.as_deref(), Some("linux/amd64"));
        let text = std::str::from_utf8(root.bytes()).unwrap();
        assert!(!text.contains("org.opencontainers.image.base"), "{text}");
        assert!(text.contains(r#""org.example.a":"1""#), "{text}");
        let config = config_of(&a, &root).await;
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            format!(
                r#"{{"created":"2023-11-14T22:13:20Z","architecture":"amd64","os":"linux","config":{{"Env":["SSL_CERT_FILE=/etc/ssl/certs/ca.crt"],"Entrypoint":["/graft"],"Cmd":null,"Labels":{{"org.example.k":"v"}}}},"rootfs":{{"type":"layers","diff_ids":["{}"]}},"history":[{{"created":"2023-11-14T22:13:20Z","created_by":"graft append root.tar"}}]}}"#,
                req.layers[0].diff_id
            )
        );
        // Same inputs, same bytes; another time, another digest.
        let again = append_scratch(&["linux/amd64".parse().unwrap()], &req)
            .await
            .unwrap();
        assert_eq!(again.root.digest, a.root.digest);
        let later = append_scratch(
            &["linux/amd64".parse().unwrap()],
            &scratch_request(Timestamp(1_700_000_001)),
        )
        .await
        .unwrap();
        assert_ne!(later.root.digest, a.root.digest);
    }

    #[tokio::test]
    async fn scratch_several_platforms_is_an_index_with_a_config_each() {
        let req = scratch_request(Timestamp(1_700_000_000));
        let platforms: Vec<Platform> = vec![
            "linux/amd64".parse().unwrap(),
            "linux/arm64/v8".parse().unwrap(),
            "linux/arm/v7".parse().unwrap(),
        ];
        let a = append_scratch(&platforms, &req).await.unwrap();
        let root = a.source.resolve().await.unwrap();
        assert_eq!(root.media_type(), mt::OCI_INDEX);
        assert_eq!(
            root.digest().to_string(),
            "sha256:cbd555c8616ce64f73df432ee28de38083d120284e55a6020a7bc19d63f094f3",
            "{}",
            String::from_utf8_lossy(root.bytes())
        );
        let text = std::str::from_utf8(root.bytes()).unwrap();
        assert!(!text.contains("org.opencontainers.image.base"), "{text}");
        let entries = root.view().manifests.clone();
        assert_eq!(entries.len(), 3);
        let mut layers = HashSet::new();
        for (e, p) in entries.iter().zip(&platforms) {
            assert_eq!(e.platform.as_ref(), Some(p));
            let m = a.source.manifest(e).await.unwrap();
            assert!(!std::str::from_utf8(m.bytes())
                .unwrap()
                .contains("org.opencontainers.image.base"));
            layers.insert(
                m.view()
                    .layers
                    .iter()
                    .map(|l| l.digest.to_string())
                    .collect::<Vec<_>>(),
            );
            let config = config_of(&a, &m).await;
            assert_eq!(config["architecture"], p.architecture.as_str());
            assert_eq!(config["os"], "linux");
            assert_eq!(
                config.get("variant").and_then(|v| v.as_str()),
                p.variant.as_deref()
            );
        }
        assert_eq!(layers.len(), 1, "every platform has the same layers");
    }

    #[tokio::test]
    async fn scratch_ignores_the_requests_platform_selection() {
        let mut req = scratch_request(Timestamp(1_700_000_000));
        req.platforms = Some(vec!["linux/s390x".parse().unwrap()]);
        let a = append_scratch(&["linux/amd64".parse().unwrap()], &req)
            .await
            .unwrap();
        assert_eq!(
            a.root.digest.to_string(),
            "sha256:a5e9a692720254328c76b1331391f217227dc3d91c57ab03f8186cab292dd3ca"
        );
    }

    #[tokio::test]
    async fn scratch_needs_distinct_platforms() {
        let req = scratch_request(Timestamp::EPOCH);
        for bad in [
            vec![],
            vec![
                "linux/amd64".parse().unwrap(),
                "linux/x86_64".parse().unwrap(),
            ],
        ] {
            let e = match append_scratch(&bad, &req).await {
                Ok(_) => panic!("{bad:?} accepted"),
                Err(e) => e,
            };
            assert!(e.is_usage(), "{e:?}");
        }
    }
}
