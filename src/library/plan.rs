//! The build plan: for every manifest, the final references it would produce, the science
//! image, the compat layer chain and its built digest, and the platforms; plus conflicts
//! (two manifests producing one reference, a layer nobody uses). Pure: layer digests come
//! from the caller (which builds or hashes the layers), science digests too (`--resolve`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Result, ResultExt};
use crate::layer::{LayerDigests, PlannedKind};
use crate::oci::Digest;
use crate::timestamp::Timestamp;

use super::changes::{ChangeSet, Reason};
use super::{BuildInfo, CompatLayer, ImageConfig, Library};

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Build number, commit and branch used in tags (null where unknown).
    pub build: BuildInfo,
    /// The branch the plan is for and whether it is the default one (null when no branch
    /// is known: outside git, the manifests' own tags).
    pub branch: Option<super::branches::Branch>,
    /// One entry per manifest, in file name order.
    pub images: Vec<ImagePlan>,
    /// One entry per layer directory, by name.
    pub layers: Vec<LayerPlan>,
    /// The images graft builds (`build:` manifests among the planned ones), in build order:
    /// bases first, each with its Dockerfile's base images ([`super::order`]).
    pub builds: Vec<super::order::BuildStep>,
    /// Problems with the plan as a whole.
    pub conflicts: Vec<Conflict>,
    /// With `--changed-since`: the diff the images were selected by (only the affected
    /// images are in `images`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeSet>,
}

/// The science image of one planned image.
#[derive(Debug, Clone, Serialize)]
pub struct SciencePlan {
    /// The reference as written.
    pub image: String,
    /// Breadcrumb name.
    pub target: String,
    /// The pinned digest, if the manifest pins one.
    pub pinned: Option<Digest>,
    /// The digest the reference resolved to (`--resolve`), else null.
    pub resolved: Option<Digest>,
}

/// One final image.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePlan {
    /// Final image name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The manifest file, relative to the library root.
    pub manifest: String,
    /// The manifest's `description`.
    pub description: Option<String>,
    /// The manifest's `maintainers`.
    pub maintainers: Vec<super::Maintainer>,
    /// The manifest's `metadata`.
    pub metadata: super::Metadata,
    /// The science image (for a `build:` manifest: where the built image is written).
    pub science: SciencePlan,
    /// Whether graft builds the science image (`build:`; its step is in [`Plan::builds`]).
    pub build: bool,
    /// The compat layer's name (empty: none, the built image is the final image).
    pub compat: String,
    /// Its chain, includes first.
    pub chain: Vec<String>,
    /// Digest of the built compat layer (null if not built).
    pub layer_digest: Option<Digest>,
    /// Platforms to produce; empty means every platform of the science image.
    pub platforms: Vec<String>,
    /// Tags (placeholders without a value kept as `{build}` etc.).
    pub tags: Vec<String>,
    /// Final references, `{target}:{tag}`, as written (relative to the library root).
    pub references: Vec<String>,
    /// The tags on every branch (the default branch, each `branches:` entry of graft.yaml,
    /// the fallback `**`), the row this run writes marked `current`.
    pub branch_tags: Vec<super::branches::BranchTags>,
    /// Labels of the final configs (compat layer's, manifest's, breadcrumbs). With
    /// `--resolve`, exactly what refresh writes into every platform's config (the science
    /// image's own labels and its breadcrumbs included; see [`Plan::set_written_labels`]).
    pub labels: BTreeMap<String, String>,
    /// With `--resolve`, labels refresh writes into some platform configs but not into all
    /// with the same value (e.g. a science build time that differs by platform), by platform.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub platform_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Annotations of the final manifests and index.
    pub annotations: BTreeMap<String, String>,
    /// With `--changed-since`: why this image is affected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<Reason>>,
}

/// One compat layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerPlan {
    /// The layer's name.
    pub name: String,
    /// Its chain, includes first.
    pub chain: Vec<String>,
    /// Manifests whose compat layer this is (by file).
    pub used_by: Vec<String>,
    /// The built layer, if it was built.
    #[serde(flatten)]
    pub built: Option<LayerDigests>,
    /// Entries of the layer's tar (directories included).
    pub entries: usize,
    /// Files, symlinks and hard links among them.
    pub files: usize,
    /// Paths removed (whiteouts).
    pub remove: Vec<String>,
    /// Config settings merged along the chain.
    pub config: ImageConfig,
}

/// A conflict in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// `duplicate-reference`, `unused-layer` or `pin-mismatch`.
    pub kind: &'static str,
    /// Whether it makes the plan unusable (an error) or is worth a look (a warning).
    pub error: bool,
    /// What is wrong.
    pub message: String,
}

impl Plan {
    /// Plan every manifest of `lib` for `build` (with `changes`, only the affected ones,
    /// each with its reasons). `build_layer` is called once per layer that a planned manifest
    /// uses (as a compat layer) and gives its digests, or `None` to leave them out.
    pub fn new(
        lib: &Library,
        build: &BuildInfo,
        created: Timestamp,
        changes: Option<&ChangeSet>,
        mut build_layer: impl FnMut(&CompatLayer) -> Result<Option<LayerDigests>>,
    ) -> Result<Plan> {
        let selected = |rel: &str| changes.map_or(true, |c| c.reasons(rel).is_some());
        let mut layers = Vec::new();
        let mut built: BTreeMap<String, Option<LayerDigests>> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for name in lib.layers().keys() {
            let compat = lib.compat(name)?;
            let used_by: Vec<String> = lib
                .manifests()
                .iter()
                .filter(|m| &m.compat == name)
                .map(|m| m.rel.clone())
                .collect();
            let info = if !used_by.iter().any(|m| selected(m)) {
                None
            } else {
                build_layer(&compat)?
            };
            built.insert(name.clone(), info.clone());
            let entries = crate::layer::plan(&compat.spec(Timestamp::EPOCH))
                .context(|| format!("planning layer {name:?}"))?;
            let files = entries
                .iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        PlannedKind::File { .. }
                            | PlannedKind::Symlink { .. }
                            | PlannedKind::HardLink { .. }
                    )
                })
                .count();
            layers.push(LayerPlan {
                name: name.clone(),
                chain: compat.chain.clone(),
                used_by,
                built: info,
                entries: entries.len(),
                files,
                remove: compat.remove.clone(),
                config: compat.config.clone(),
            });
        }
        let used: Vec<String> = lib
            .manifests()
            .iter()
            .flat_map(|m| lib.chain(&m.compat))
            .collect();
        for name in lib.layers().keys() {
            if !used.contains(name) {
                conflicts.push(Conflict {
                    kind: "unused-layer",
                    error: false,
                    message: format!(
                        "layer {name:?} is not used: no manifest's compat is it or includes it"
                    ),
                });
            }
        }
        let mut images = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for m in lib.manifests() {
            let tags = lib.tag_preview(m, build);
            let reasons = changes
                .and_then(|c| c.reasons(&m.rel))
                .map(<[Reason]>::to_vec);
            if !selected(&m.rel) {
                // Not affected, but its references still count for duplicates below.
                for t in &tags {
                    seen.entry(lib.reference_text(m, t))
                        .or_insert_with(|| m.rel.clone());
                }
                continue;
            }
            let mut references = Vec::new();
            for t in &tags {
                let r = lib.reference_text(m, t);
                match seen.get(&r) {
                    Some(first) => conflicts.push(Conflict {
                        kind: "duplicate-reference",
                        error: true,
                        message: format!("{r} is produced by both {first} and {}", m.rel),
                    }),
                    None => {
                        seen.insert(r.clone(), m.rel.clone());
                    }
                }
                references.push(r);
            }
            images.push(ImagePlan {
                name: m.name.clone(),
                version: m.version.clone(),
                manifest: m.rel.clone(),
                description: m.description.clone(),
                maintainers: m.maintainers.clone(),
                metadata: m.metadata.clone(),
                build: m.build.is_some(),
                science: SciencePlan {
                    image: m.science.image.text.clone(),
                    target: m.science.target.clone(),
                    pinned: m.science.digest.clone(),
                    resolved: None,
                },
                compat: m.compat.clone(),
                chain: lib.chain(&m.compat),
                layer_digest: built.get(&m.compat).cloned().flatten().map(|i| i.digest),
                platforms: m.platforms.iter().map(|p| p.to_string()).collect(),
                labels: lib.label_preview(m, build, created)?,
                platform_labels: BTreeMap::new(),
                annotations: lib.annotations(m),
                branch_tags: lib.branch_table(m, build),
                tags,
                references,
                reasons,
            });
        }
        Ok(Plan {
            build: build.clone(),
            branch: lib.branch().cloned(),
            builds: builds(lib, &images),
            images,
            layers,
            conflicts,
            changes: changes.cloned(),
        })
    }

    /// Keep only the images (and their builds) `keep` accepts by name (`--shard`).
    pub fn retain_names(&mut self, keep: impl Fn(&str) -> bool) {
        self.images.retain(|i| keep(&i.name));
        self.builds.retain(|b| keep(&b.name));
    }

    /// Record that image `index`'s science reference resolved to `digest`; a pinned digest
    /// that differs is a conflict.
    pub fn set_resolved(&mut self, index: usize, digest: Digest) {
        let image = &mut self.images[index];
        if let Some(pin) = &image.science.pinned {
            if *pin != digest {
                self.conflicts.push(Conflict {
                    kind: "pin-mismatch",
                    error: true,
                    message: format!(
                        "{}: science image {} resolves to {digest}, but science.digest pins {pin}",
                        image.manifest, image.science.image
                    ),
                });
            }
        }
        image.science.resolved = Some(digest);
    }

    /// Record the labels refresh writes into each platform config of image `index` (computed
    /// by refresh's own code, not predicted here): those every platform has go to `labels`,
    /// the rest to `platform_labels`.
    pub fn set_written_labels(
        &mut self,
        index: usize,
        written: &[(Option<String>, BTreeMap<String, String>)],
    ) {
        let image = &mut self.images[index];
        let Some((_, first)) = written.first() else {
            return;
        };
        let common: BTreeMap<String, String> = first
            .iter()
            .filter(|(k, v)| written.iter().all(|(_, l)| l.get(*k) == Some(*v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        image.platform_labels = written
            .iter()
            .map(|(p, l)| {
                let own = l
                    .iter()
                    .filter(|(k, _)| !common.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>();
                (p.clone().unwrap_or_else(|| "image".into()), own)
            })
            .filter(|(_, own)| !own.is_empty())
            .collect();
        image.labels = common;
    }

    /// Whether any conflict is an error.
    pub fn has_errors(&self) -> bool {
        self.conflicts.iter().any(|c| c.error)
    }
}

/// The build steps of the planned `images`, in the library's build order.
fn builds(lib: &Library, images: &[ImagePlan]) -> Vec<super::order::BuildStep> {
    if !images.iter().any(|i| i.build) {
        return Vec::new();
    }
    let mut steps = lib.build_order().builds;
    steps.retain(|s| images.iter().any(|i| i.manifest == s.manifest));
    steps
}
