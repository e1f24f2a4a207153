//! Compat refresh: for each manifest of a library, append its compat layer to every platform
//! of its science image, write breadcrumbs and annotations, and write the result under every
//! tag (tags last). Science layers are mounted or found at the destination, never downloaded
//! when both are in one registry; the compat layer is built once and shared. An image whose
//! `{version}` tags already hold what it would write (the same input digest,
//! [`crate::ops::inputs`]) is up to date and skipped, unless forced: checking costs one read of
//! the science root and one of each compared tag (decisions §22).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::copy::{copy_image, CopyOptions, CopyReport, Dedupe};
use crate::error::{Error, Result};
use crate::image::append::{
    append, base_name, AppendRequest, Dropped, LocalBlob, NewLayer, PlatformResult,
};
use crate::image::breadcrumbs::science_labels;
use crate::image::config::{config_labels, RuntimeConfig};
use crate::layer::{build_spilling, Built, Compression, LayerDigests};
use crate::library::branches::BRANCH_ANNOTATION;
use crate::library::{BuildInfo, Library, Manifest};
use crate::oci::{Descriptor, Digest};
use crate::ops::inputs::{Inputs, INPUTS_ANNOTATION};
use crate::ops::memo::Memo;
use crate::ops::status::{existing, Existing};
use crate::progress::Reporter;
use crate::reference::ImageRef;
use crate::store::open::{destination_tags, open_sink, open_source, Endpoint};
use crate::store::{Sink, Source};
use crate::timestamp::Timestamp;

/// How to refresh.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// Build number, commit and branch for tags and breadcrumbs.
    pub build: BuildInfo,
    /// The time stamped into configs, history, breadcrumbs and annotations.
    pub created: Timestamp,
    /// Compute and print, write nothing.
    pub dry_run: bool,
    /// Concurrent blob transfers.
    pub jobs: usize,
    /// Where built compat layers are kept for the run.
    pub work_dir: PathBuf,
}

/// What a refresh did with one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageStatus {
    /// Assembled and written (in a dry run: would be written).
    Written,
    /// Its `{version}` tags already hold an image made from the same inputs: nothing was
    /// written, no tag added, nothing signed.
    UpToDate,
}

/// What a refresh of one manifest produced.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshResult {
    /// The manifest's image name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The manifest file, relative to the library.
    pub manifest: String,
    /// Written, or up to date (skipped).
    pub status: ImageStatus,
    /// The digest written (an index for multi-platform science images); for an image up to
    /// date, the digest its tags already have.
    pub digest: Digest,
    /// The input digest (`org.graft.inputs`): what the image is made of, less the per-build
    /// breadcrumbs.
    pub inputs: Digest,
    /// Every reference written, one per tag; for an image up to date, the tags compared
    /// (those without a per-build placeholder), which it keeps.
    pub references: Vec<String>,
    /// The science image as named in the manifest.
    pub science: String,
    /// The science digest the image was built on.
    pub science_digest: Digest,
    /// The compat layer name and its chain of includes.
    pub compat: Vec<String>,
    /// The compat layer blob.
    pub compat_layer: Descriptor,
    /// Each platform: science manifest → new manifest (empty for an image up to date: its
    /// platforms are not read).
    pub platforms: Vec<PlatformResult>,
    /// Index entries left out (attestation manifests, unselected platforms).
    pub dropped: Vec<Dropped>,
    /// What moved (absent in a dry run).
    pub transfer: Option<CopyReport>,
    /// What signing added (with `--sign-key`).
    pub signing: Option<Signed>,
    /// The references written, resolved (relative layout paths made absolute).
    #[serde(skip)]
    pub targets: Vec<ImageRef>,
}

/// Compat layers built during one run, by name: each built once, however many manifests use
/// it and however many are prepared at once. Science images are opened once per reference
/// too: images on one science image share its root, manifests and configs (read once).
#[derive(Default)]
pub struct LayerCache {
    built: std::sync::Mutex<HashMap<String, Arc<OnceCell<BuiltLayer>>>>,
    sciences: std::sync::Mutex<HashMap<String, Arc<Memo>>>,
    /// Bytes of compat layers held in memory (or reserved for builds under way).
    in_memory: std::sync::atomic::AtomicUsize,
}

/// A built compat layer: its digests and where its bytes are.
type BuiltLayer = (LayerDigests, Built);

/// Compat layers up to this size are kept in memory, larger ones in the work directory.
const IN_MEMORY_LAYER: usize = 64 << 20;

/// At most this much of all compat layers of a run is kept in memory; the rest go to files.
const IN_MEMORY_TOTAL: usize = 256 << 20;

impl LayerCache {
    /// Build (once) the compat layer `name` of `lib`.
    pub async fn get(
        &self,
        lib: &Library,
        name: &str,
        opts: &RefreshOptions,
    ) -> Result<BuiltLayer> {
        let cell = self
            .built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let built = cell
            .get_or_try_init(|| async {
                let spec = lib.compat(name)?.spec(opts.created);
                let path = opts.work_dir.join(format!("{name}.tar.gz"));
                use std::sync::atomic::Ordering::SeqCst;
                // Reserve this layer's share of the budget (what is left, at most one layer's).
                let share = |used: usize| IN_MEMORY_LAYER.min(IN_MEMORY_TOTAL.saturating_sub(used));
                let limit = self
                    .in_memory
                    .fetch_update(SeqCst, SeqCst, |used| Some(used + share(used)))
                    .map_or(0, share);
                let built = tokio::task::spawn_blocking(move || {
                    build_spilling(&spec, Compression::Gzip, &path, limit)
                })
                .await
                .map_err(|e| Error::internal("the layer build task failed", e));
                // Give back what the layer does not hold.
                let kept = match &built {
                    Ok(Ok((_, Built::Memory(bytes)))) => bytes.len(),
                    _ => 0,
                };
                self.in_memory.fetch_sub(limit - kept, SeqCst);
                built?.map_err(|e| e.context(format!("building compat layer {name:?}")))
            })
            .await?;
        Ok(built.clone())
    }
}

impl LayerCache {
    /// Read `m`'s science image from `source` instead of opening its reference: an image
    /// just written without tags (`graft build`), which its reference cannot find yet.
    pub fn preload_science(&self, m: &Manifest, source: Arc<dyn Source>) {
        let key = pinned(&m.science.image.image, m).to_string();
        self.sciences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(Memo::new(source)));
    }
}

/// The runtime settings a compat layer chain sets.
fn runtime_of(lib: &Library, name: &str) -> Result<RuntimeConfig> {
    let c = lib.compat(name)?.config;
    Ok(RuntimeConfig {
        env: c.env.clone(),
        labels: c.labels.clone(),
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        user: c.user.clone(),
        workdir: c.workdir.clone(),
        exposed_ports: c.exposed_ports.iter().cloned().collect(),
    })
}

/// The science version for breadcrumbs: the reference's tag, else the config's
/// `org.opencontainers.image.version` label, else `unknown`.
fn science_version(science: &ImageRef, labels: &BTreeMap<String, String>) -> String {
    let tag = match science {
        ImageRef::Docker(d) => d.tag.clone(),
        ImageRef::Layout(l) | ImageRef::Archive(l) => l.tag.clone(),
    };
    tag.or_else(|| labels.get("org.opencontainers.image.version").cloned())
        .unwrap_or_else(|| "unknown".into())
}

fn config_created(config: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    v.get("created")?.as_str().map(str::to_string)
}

/// One manifest, assembled and ready to write.
pub struct Prepared {
    /// What will be (or was) written.
    pub result: RefreshResult,
    assembled: crate::image::append::Assembled,
    references: Vec<crate::library::Located>,
}

impl Prepared {
    /// The assembled image as a source: what [`push`] writes (to test it first).
    pub fn source(&self) -> &dyn Source {
        &self.assembled.source
    }
}

/// What a refresh learns of one image before reading the science image's children: the
/// science root (one manifest read, kept for the assembly), the compat layer (built once per
/// run) and the input digest they give.
pub struct Probe {
    base: Arc<Memo>,
    science_digest: Digest,
    built: BuiltLayer,
    inputs: Digest,
}

impl Probe {
    /// The input digest ([`crate::ops::inputs`]).
    pub fn inputs(&self) -> &Digest {
        &self.inputs
    }

    /// The science root digest, resolved now.
    pub fn science_digest(&self) -> &Digest {
        &self.science_digest
    }

    /// The compat layer's digests.
    pub fn layer(&self) -> &LayerDigests {
        &self.built.0
    }
}

/// Resolve `m`'s science root and build its compat layer (at the same time), and compute the
/// input digest: reads only the science root, writes nothing.
pub async fn probe(
    lib: &Library,
    m: &Manifest,
    opts: &RefreshOptions,
    ep: &Endpoint,
    layers: &LayerCache,
) -> Result<Probe> {
    let what = || format!("refreshing {} ({})", m.name, m.rel);
    let science_ref = pinned(&m.science.image.image, m);
    let key = science_ref.to_string();
    let known = layers
        .sciences
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let base = match known {
        Some(base) => base,
        None => {
            let opened = Arc::new(Memo::new(Arc::from(
                open_source(&science_ref, ep)
                    .await
                    .map_err(|e| e.context(what()))?,
            )));
            // Two images may open it at once: the first one kept wins, so both share it.
            layers
                .sciences
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_insert(opened)
                .clone()
        }
    };
    // The root is read (and kept) rather than HEADed: an image that is not up to date needs
    // it next, and one that is costs the same single request.
    let science = async { base.resolve().await.map(|r| r.digest().clone()) };
    let (science_digest, built) = tokio::join!(science, layers.get(lib, &m.compat, opts));
    let science_digest = science_digest.map_err(|e| {
        e.context(format!(
            "resolving science image {} of {}",
            m.science.image.text, m.rel
        ))
    })?;
    if let Some(pin) = &m.science.digest {
        if *pin != science_digest {
            return Err(Error::DigestMismatch {
                what: format!("science image {} pinned in {}", m.science.image.text, m.rel),
                expected: pin.clone(),
                found: science_digest,
            });
        }
    }
    let built = built?;
    let inputs = Inputs::of(
        lib,
        m,
        &science_digest,
        &built.0,
        opts.build.branch.as_deref(),
    )?
    .digest()?;
    Ok(Probe {
        base,
        science_digest,
        built,
        inputs,
    })
}

/// Read the science image, build the compat layer and assemble the new image of `m`: reads
/// only, writes nothing, so bad input stops a run before anything is pushed.
pub async fn prepare(
    lib: &Library,
    m: &Manifest,
    opts: &RefreshOptions,
    ep: &Endpoint,
    layers: &LayerCache,
) -> Result<Prepared> {
    let probe = probe(lib, m, opts, ep, layers).await?;
    assemble(lib, m, opts, probe).await
}

/// Assemble the new image of `m` from what [`probe`] found: reads the science image's
/// platform manifests and configs, writes nothing.
pub async fn assemble(
    lib: &Library,
    m: &Manifest,
    opts: &RefreshOptions,
    probe: Probe,
) -> Result<Prepared> {
    let what = || format!("refreshing {} ({})", m.name, m.rel);
    let science_ref = m.science.image.image.clone();
    let Probe {
        base,
        science_digest,
        built,
        inputs,
    } = probe;
    let platforms = if m.platforms.is_empty() {
        lib.settings().platforms.clone()
    } else {
        m.platforms.clone()
    };
    base.warm(opts.jobs, (!platforms.is_empty()).then_some(&platforms[..]))
        .await
        .map_err(|e| {
            e.context(format!(
                "reading science image {} of {}",
                m.science.image.text, m.rel
            ))
        })?;
    let (layer, built) = built;
    let compat_desc = Descriptor::new(layer.media_type.clone(), layer.digest.clone(), layer.size);
    let build = &opts.build;
    let prefix = lib.settings().label_prefix.clone();
    let labels = lib.labels(m, build, opts.created)?;
    let target = m.science.target.clone();
    let science_for_labels = science_ref.clone();
    let platform_labels = move |config: &[u8]| -> Result<BTreeMap<String, String>> {
        let Some(p) = &prefix else {
            return Ok(BTreeMap::new());
        };
        let existing = config_labels(config)?;
        let version = science_version(&science_for_labels, &existing);
        Ok(science_labels(
            p,
            &target,
            &version,
            config_created(config).as_deref(),
            &existing,
        ))
    };
    let mut annotations = lib.annotations(m);
    // On every document written, the root included: a later run that computes the same
    // digest knows the image is up to date from the root alone.
    annotations.insert(INPUTS_ANNOTATION.into(), inputs.to_string());
    annotations.insert(
        "org.opencontainers.image.created".into(),
        opts.created.rfc3339(),
    );
    // The branch as git names it: `graft prune --branch-tags` asks git whether it still
    // exists (two branches can sanitise to one tag, so the tag alone cannot say).
    if let Some(branch) = &build.branch {
        annotations.insert(BRANCH_ANNOTATION.into(), branch.clone());
    }
    let mut runtime = runtime_of(lib, &m.compat)?;
    runtime.labels.clear(); // already in `labels`, which the breadcrumbs follow
    let req = AppendRequest {
        layers: vec![NewLayer {
            desc: compat_desc.clone(),
            diff_id: layer.diff_id.clone(),
            blob: match built {
                Built::Memory(bytes) => LocalBlob::Bytes(bytes),
                Built::File(path) => LocalBlob::File(path),
            },
            created_by: format!(
                "graft refresh: compat layer {}",
                lib.chain(&m.compat).join(" + ")
            ),
        }],
        runtime,
        labels,
        platform_labels: Some(&platform_labels),
        annotations,
        inherit_annotations: false,
        // A layout as the manifest writes it (relative to the library), not resolved to this
        // machine's checkout: the image must not depend on where the library is.
        base_name: Some(match &science_ref {
            ImageRef::Docker(_) => base_name(&science_ref),
            _ => m.science.image.text.clone(),
        }),
        platforms: (!platforms.is_empty()).then_some(platforms),
        created: opts.created,
    };
    let assembled = append(base, &req).await.map_err(|e| e.context(what()))?;
    let references = lib.references(m, build)?;
    if references.is_empty() {
        return Err(Error::Invalid {
            what: m.rel.clone(),
            reason: "no tags to write".into(),
        });
    }
    let result = RefreshResult {
        name: m.name.clone(),
        version: m.version.clone(),
        manifest: m.rel.clone(),
        status: ImageStatus::Written,
        digest: assembled.root.digest.clone(),
        inputs,
        references: references.iter().map(|r| r.text.clone()).collect(),
        science: m.science.image.text.clone(),
        science_digest,
        compat: lib.chain(&m.compat),
        compat_layer: compat_desc,
        platforms: assembled.platforms.clone(),
        dropped: assembled.dropped.clone(),
        transfer: None,
        signing: None,
        targets: references.iter().map(|r| r.image.clone()).collect(),
    };
    Ok(Prepared {
        result,
        assembled,
        references,
    })
}

/// Write a prepared image: blobs, manifests, the index, then every tag. The sink is returned
/// uncommitted: images written at the same time may share it (an `oci-archive:` file), so the
/// caller commits each sink once, after the last write ([`commit_all`]).
pub async fn push(
    mut prepared: Prepared,
    opts: &RefreshOptions,
    ep: &Endpoint,
    dedupe: &Arc<Dedupe>,
    reporter: &Arc<dyn Reporter>,
) -> Result<(RefreshResult, Box<dyn Sink>)> {
    let sink = open_sink(&prepared.references[0].image, ep).await?;
    let tags: Vec<String> = prepared
        .references
        .iter()
        .flat_map(|r| destination_tags(&r.image))
        .collect();
    let copy_opts = CopyOptions {
        jobs: opts.jobs,
        tags,
        dedupe: Some(dedupe.clone()),
        commit: false,
        ..CopyOptions::default()
    };
    let report = copy_image(
        &prepared.assembled.source,
        sink.as_ref(),
        &copy_opts,
        reporter,
    )
    .await
    .map_err(|e| {
        e.context(format!(
            "writing {} to {}",
            prepared.result.name,
            sink.name()
        ))
    })?;
    prepared.result.transfer = Some(report);
    Ok((prepared.result, sink))
}

/// Commit every sink once (sinks with the same scope share their writes).
pub async fn commit_all(sinks: Vec<Box<dyn Sink>>) -> Result<()> {
    let mut done = std::collections::HashSet::new();
    for sink in sinks {
        if done.insert(sink.scope()) {
            sink.commit()
                .await
                .map_err(|e| e.context(format!("finishing {}", sink.name())))?;
        }
    }
    Ok(())
}

/// The science reference to read: pinned by digest when the manifest pins one (registries).
fn pinned(science: &ImageRef, m: &Manifest) -> ImageRef {
    match (science, &m.science.digest) {
        (ImageRef::Docker(d), Some(pin)) => ImageRef::Docker(crate::reference::DockerRef {
            digest: Some(pin.clone()),
            ..d.clone()
        }),
        _ => science.clone(),
    }
}

/// Signing and provenance for a refresh (`--sign-key`, `--provenance`).
#[derive(Debug, Clone)]
pub struct Signing {
    /// The cosign key.
    pub key: crate::sign::SigningKey,
    /// Attach SLSA v1 provenance too.
    pub provenance: Option<ProvenanceContext>,
}

/// What provenance records beyond the image itself; gathered by the binary at the edge.
/// Nothing in it may depend on the machine (paths, temporary directories): the same refresh
/// from two checkouts must attest alike.
#[derive(Debug, Clone)]
pub struct ProvenanceContext {
    /// Who runs the refresh (CI variables or flags).
    pub builder: crate::sign::BuilderInfo,
    /// The library's git remote (without credentials) and commit, if it is in git.
    pub library: Option<crate::sign::LibrarySource>,
    /// The build values and time the refresh used ([`RefreshOptions`]).
    pub build: crate::sign::BuildValues,
    /// [`RefreshOptions::created`].
    pub created: Timestamp,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub source_date_epoch: Option<Timestamp>,
    /// `--repo` as given, when it replaced graft.yaml's.
    pub repo_override: Option<String>,
    /// When the refresh started.
    pub started_on: Timestamp,
    /// When it finished.
    pub finished_on: Timestamp,
}

/// What signing added for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Signed {
    /// Digests signed (the index first, then each platform manifest).
    pub signed: Vec<Digest>,
    /// Digests that got a provenance attestation.
    pub attested: Vec<Digest>,
}

/// Sign the index and every platform manifest a refresh wrote, and attach provenance to each.
pub async fn sign_result(
    m: &Manifest,
    result: &RefreshResult,
    signing: &Signing,
    ep: &Endpoint,
) -> Result<Signed> {
    use crate::sign::{attest, sign, AttestOptions, RefreshProvenance, Repo, SignOptions};
    let reference = result.targets.first().ok_or_else(|| Error::Invalid {
        what: m.rel.clone(),
        reason: "no reference to sign".into(),
    })?;
    let repo = Repo::open(reference, ep).await?;
    let root = repo.resolve().await?;
    if *root.digest() != result.digest {
        return Err(Error::DigestMismatch {
            what: format!("{reference} just before signing (another writer moved the tag)"),
            expected: result.digest.clone(),
            found: root.digest().clone(),
        });
    }
    let mut subjects = vec![root.descriptor()];
    if root.is_index() {
        for e in &root.view().manifests {
            if result.platforms.iter().any(|p| p.digest == e.digest) {
                let mut d = e.clone();
                d.annotations = None;
                d.platform = None;
                subjects.push(d);
            }
        }
    }
    let mut out = Signed {
        signed: Vec::new(),
        attested: Vec::new(),
    };
    for s in &subjects {
        sign(&repo, s, &signing.key, &SignOptions::default())
            .await
            .map_err(|e| e.context(format!("signing {}", s.digest)))?;
        out.signed.push(s.digest.clone());
    }
    if let Some(ctx) = &signing.provenance {
        let science_index = root.is_index().then(|| result.science_digest.clone());
        let science_platforms: Vec<(String, Digest)> = result
            .platforms
            .iter()
            .map(|p| {
                (
                    p.platform.clone().unwrap_or_else(|| "image".into()),
                    p.base.clone(),
                )
            })
            .collect();
        // References as the library writes them (relative layout paths stay relative): the
        // statement must not depend on where the library is checked out.
        let subject_name = result.references.first().cloned().unwrap_or_default();
        let statement_for = |digest: &Digest| {
            RefreshProvenance {
                manifest_path: m.rel.clone(),
                // The bytes the library was loaded from, not the file as it is now.
                manifest_digest: m.file_digest.clone(),
                library: ctx.library.clone(),
                build: ctx.build.clone(),
                created: ctx.created,
                source_date_epoch: ctx.source_date_epoch,
                repo_override: ctx.repo_override.clone(),
                science: m.science.image.text.clone(),
                science_index: science_index.clone(),
                science_platforms: science_platforms.clone(),
                compat_chain: result.compat.clone(),
                compat_layer: Some(result.compat_layer.digest.clone()),
                builder: ctx.builder.clone(),
                graft_version: env!("CARGO_PKG_VERSION").to_string(),
                started_on: ctx.started_on,
                finished_on: ctx.finished_on,
            }
            .provenance()
            .statement(&subject_name, digest)
        };
        for s in &subjects {
            attest(
                &repo,
                s,
                &signing.key,
                &statement_for(&s.digest),
                &AttestOptions::default(),
            )
            .await
            .map_err(|e| e.context(format!("attaching provenance to {}", s.digest)))?;
            out.attested.push(s.digest.clone());
        }
    }
    Ok(out)
}
/// Images of a library prepared, and then written, at the same time.
pub const IMAGES_AT_ONCE: usize = 4;

/// Images checked at the same time (science root, compat layer, destination root): small
/// requests, so more at once than images assembled; a no-change run of a large library is
/// only this.
pub const CHECKS_AT_ONCE: usize = 16;

/// A whole refresh: which images, with what options, signed or not.
pub struct RefreshRequest {
    /// Refresh only the manifests with these image names (empty: all).
    pub names: Vec<String>,
    /// Build values, time, dry run, concurrency, work directory.
    pub options: RefreshOptions,
    /// Sign (and attest) what is written.
    pub signing: Option<Signing>,
    /// Write every image, even those up to date (`--force`).
    pub force: bool,
    /// The clock, for provenance's `finishedOn` (the binary's edge: `SOURCE_DATE_EPOCH` when
    /// set, else the wall clock). Library code reads no clock of its own.
    pub clock: Box<dyn Fn() -> Timestamp + Send + Sync>,
}

/// What a refresh did, image by image in the library's order.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// One result per refreshed manifest.
    pub images: Vec<RefreshResult>,
}

/// The manifests of `lib` that `names` selects (all when empty); an unknown name is an error
/// listing the known ones.
pub fn select<'a>(lib: &'a Library, names: &[String]) -> Result<Vec<&'a Manifest>> {
    for n in names {
        if lib.manifests_named(n).next().is_none() {
            return Err(Error::NotFound {
                what: format!(
                    "a manifest in {} naming the image {n:?}",
                    lib.root().join("manifests").display()
                ),
                detail: Some(format!(
                    "known: {}",
                    lib.manifests()
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        }
    }
    Ok(lib
        .manifests()
        .iter()
        .filter(|m| names.is_empty() || names.contains(&m.name))
        .collect())
}

/// Refresh the selected images of `lib`: check each one first (science root, compat layer,
/// destination root: an image whose `{version}` tags hold the same input digest is up to
/// date and skipped, unless `force`), assemble every other one (reads only: bad input stops
/// the run before anything is written), then write them a few at a time, commit every
/// destination once, and sign what was written.
pub async fn refresh(
    lib: &Library,
    req: RefreshRequest,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<RefreshReport> {
    refresh_recording(lib, req, ep, reporter, &mut Vec::new()).await
}

/// [`refresh`], putting every result into `written` as soon as the tags are written (before
/// signing; replaced by the signed results once signed): when signing fails, the caller still
/// knows what this run moved (`graft factory check --refresh` records it before it reports
/// the failure).
pub async fn refresh_recording(
    lib: &Library,
    req: RefreshRequest,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
    written: &mut Vec<RefreshResult>,
) -> Result<RefreshReport> {
    let manifests = select(lib, &req.names)?;
    manifests.iter().try_for_each(|m| lib.needs_build(m))?;
    let opts = &req.options;
    let layers = LayerCache::default();
    // Every image is checked first, many at a time; results keep the library's order.
    let checked: Vec<(Probe, Option<Existing>)> = futures::stream::iter(&manifests)
        .map(|m| async {
            let current = async {
                match req.force {
                    true => Ok(None),
                    false => existing(lib, m, &opts.build, ep).await.map(Some),
                }
            };
            tokio::try_join!(probe(lib, m, opts, ep, &layers), current)
        })
        .buffered(CHECKS_AT_ONCE)
        .try_collect()
        .await?;
    // Then the images to write are read and assembled a few at a time (all of them before
    // anything is written).
    let mut slots: Vec<Slot> = Vec::new();
    let mut to_assemble = Vec::new();
    for (m, (probe, existing)) in manifests.iter().zip(checked) {
        match existing.and_then(|e| e.up_to_date(probe.inputs()).map(|d| (e, d))) {
            Some((e, digest)) => {
                slots.push(Slot::Kept(Box::new(up_to_date(lib, m, &probe, &e, digest))))
            }
            None => {
                slots.push(Slot::Write);
                to_assemble.push((*m, probe));
            }
        }
    }
    let prepared: Vec<Prepared> = futures::stream::iter(to_assemble)
        .map(|(m, probe)| assemble(lib, m, opts, probe))
        .buffered(IMAGES_AT_ONCE)
        .try_collect()
        .await?;
    if opts.dry_run {
        return Ok(RefreshReport {
            dry_run: true,
            images: merge(slots, prepared.into_iter().map(|p| p.result).collect()),
        });
    }
    let dedupe = Arc::new(Dedupe::default());
    let pushed: Vec<_> = futures::stream::iter(prepared)
        .map(|p| push(p, opts, ep, &dedupe, reporter))
        .buffered(IMAGES_AT_ONCE)
        .try_collect()
        .await?;
    let (written_now, sinks): (Vec<_>, Vec<_>) = pushed.into_iter().unzip();
    commit_all(sinks).await?;
    let mut results = merge(slots, written_now);
    *written = results.clone();
    if let Some(mut signing) = req.signing {
        if let Some(p) = &mut signing.provenance {
            p.finished_on = (req.clock)();
        }
        for (r, m) in results.iter_mut().zip(&manifests) {
            // An image up to date keeps the signatures it has: nothing new to sign.
            if r.status == ImageStatus::Written {
                r.signing = Some(sign_result(m, r, &signing, ep).await?);
            }
        }
        *written = results.clone();
    }
    Ok(RefreshReport {
        dry_run: false,
        images: results,
    })
}

/// Where one image's result comes from, in the library's order.
enum Slot {
    /// Up to date: its result is ready.
    Kept(Box<RefreshResult>),
    /// The next result of the images written.
    Write,
}

/// The results in the library's order: kept ones where they were, written ones in between.
fn merge(slots: Vec<Slot>, written: Vec<RefreshResult>) -> Vec<RefreshResult> {
    let mut written = written.into_iter();
    slots
        .into_iter()
        .filter_map(|s| match s {
            Slot::Kept(r) => Some(*r),
            Slot::Write => written.next(),
        })
        .collect()
}

/// The result of an image that is up to date: what its tags hold, nothing written.
fn up_to_date(
    lib: &Library,
    m: &Manifest,
    probe: &Probe,
    existing: &Existing,
    digest: Digest,
) -> RefreshResult {
    let layer = probe.layer();
    RefreshResult {
        name: m.name.clone(),
        version: m.version.clone(),
        manifest: m.rel.clone(),
        status: ImageStatus::UpToDate,
        digest,
        inputs: probe.inputs().clone(),
        references: existing.tags.iter().map(|t| t.reference.clone()).collect(),
        science: m.science.image.text.clone(),
        science_digest: probe.science_digest().clone(),
        compat: lib.chain(&m.compat),
        compat_layer: Descriptor::new(layer.media_type.clone(), layer.digest.clone(), layer.size),
        platforms: Vec::new(),
        dropped: Vec::new(),
        transfer: None,
        signing: None,
        targets: existing.tags.iter().map(|t| t.image.clone()).collect(),
    }
}
