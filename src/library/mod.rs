//! The library: `graft.yaml`, `manifests/*.yaml` and `layers/<name>/{layer.yaml,files/}`,
//! schema-validated, with every problem reported at its file, line, column and field path.
//!
//! ```text
//! graft.yaml                 repo, target, label_prefix, platforms, tags
//! manifests/astro.yaml       one final image: science image + compat layer + tags
//! layers/jupyter-compat/     layer.yaml (includes, config, remove, owner, modes) + files/
//! ```
//!
//! [`validate`] lists every problem; [`Library::open`] loads a library that has none (warnings
//! allowed). A [`Library`] answers what refresh needs per manifest: the resolved science
//! reference ([`Manifest::science`]), the compat layer resolved through its includes
//! ([`Library::compat`]), the final references ([`Library::references`]), labels and
//! annotations ([`Library::labels`], [`Library::annotations`]).

pub mod branches;
pub mod changes;
pub mod dockerfile;
pub mod git;
pub mod load;
pub mod model;
pub mod order;
pub mod plan;
pub mod problem;
pub mod schema;
pub mod template;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::layer::LayerSpec;
use crate::timestamp::Timestamp;

pub use model::{
    Build, GitSource, ImageConfig, Layer, Located, Maintainer, Manifest, Metadata, Science,
    Settings,
};
pub use problem::{InvalidLibrary, Problem, Severity};
pub use template::BuildInfo;

/// A loaded library.
#[derive(Debug, Clone)]
pub struct Library {
    root: PathBuf,
    settings: Settings,
    manifests: Vec<Manifest>,
    layers: BTreeMap<String, Layer>,
    /// Per layer, the time of the last commit that touched its `layer.yaml` or `files/` (set by
    /// [`Library::with_layer_times`]); a chain's time is the latest of its layers'.
    layer_times: BTreeMap<String, Timestamp>,
    /// The branch the run is on (set by [`Library::with_branch`]); none writes the
    /// manifests' own tags, as outside git.
    branch: Option<branches::Branch>,
}

/// The result of checking a library: what could be loaded, and every problem found.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The library as far as it could be loaded (files with errors may be missing from it).
    pub library: Library,
    /// Every problem, sorted by file, line and column.
    pub problems: Vec<Problem>,
}

impl Validation {
    /// Whether any problem is an error (warnings do not count).
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }
}

/// A compat layer with its includes applied: what gets built into one layer tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatLayer {
    /// The layer's name.
    pub name: String,
    /// Layers in application order (includes first, depth-first, each once; this layer last).
    pub chain: Vec<String>,
    /// The `files/` trees of the chain, in order: later files overwrite earlier ones.
    pub trees: Vec<PathBuf>,
    /// Absolute image paths to delete, in chain order, each once.
    pub remove: Vec<String>,
    /// uid and gid of every entry: the last layer of the chain that sets `owner` wins.
    pub owner: Option<(u32, u32)>,
    /// Path → mode, later layers winning.
    pub modes: BTreeMap<String, u32>,
    /// Config merged in chain order (env by variable, labels by key, the rest replaced).
    pub config: ImageConfig,
    /// The time of the chain's last change, when the library knows it (the latest commit
    /// that touched a `layer.yaml` or `files/` of the chain): the mtime of every entry.
    #[serde(skip)]
    pub mtime: Option<Timestamp>,
}

impl CompatLayer {
    /// What the layer builder needs: the trees in order, removals, owner, modes, and the
    /// mtime every entry gets: the chain's own time ([`CompatLayer::mtime`]) when the library
    /// knows it, else `fallback` (`SOURCE_DATE_EPOCH`, or the time of the library's HEAD).
    /// A layer's bytes then depend on its chain's content and history only: a commit that
    /// touches nothing of the chain leaves its digest as it was.
    pub fn spec(&self, fallback: Timestamp) -> LayerSpec {
        LayerSpec {
            trees: self.trees.clone(),
            remove: self.remove.clone(),
            owner: self.owner,
            modes: self.modes.clone(),
            mtime: self.mtime.unwrap_or(fallback),
        }
    }
}

/// Load the layers in `layers_dir` (every directory with a `layer.yaml`) and resolve `name`
/// through its includes, without a whole library: what `graft layer build` needs. Problems
/// in the files of `name`'s chain are errors ([`InvalidLibrary`]); others are ignored.
pub fn compat_from_layers(layers_dir: &Path, name: &str) -> Result<CompatLayer> {
    let layers_dir =
        std::path::absolute(layers_dir).map_err(|e| Error::io("resolving", layers_dir, e))?;
    let (root, rel) = match (layers_dir.file_name(), layers_dir.parent()) {
        (Some(n), Some(parent)) if n == "layers" => (parent.to_path_buf(), "layers".to_string()),
        _ => (layers_dir.clone(), String::new()),
    };
    let mut loader = load::Loader::new(&root).with_layers_dir(&rel);
    let mut layers = BTreeMap::new();
    for n in list(&layers_dir, true)? {
        if layers_dir.join(&n).join("layer.yaml").exists() {
            if let Some(l) = loader.layer(&n) {
                layers.insert(n, l);
            }
        }
    }
    if !layers_dir.join(name).join("layer.yaml").exists() {
        // The name was given on the command line: bad input.
        return Err(Error::Input {
            what: format!("layer name {name:?}"),
            reason: format!(
                "there is no {} (layers there: {})",
                layers_dir.join(name).join("layer.yaml").display(),
                match list(&layers_dir, true)?.join(", ") {
                    none if none.is_empty() => "none".to_string(),
                    names => names,
                }
            ),
        });
    }
    let library = Library {
        root: root.clone(),
        settings: Settings {
            file: root.join("graft.yaml"),
            repo: String::new(),
            target: model::DEFAULT_TARGET.to_string(),
            science_target: model::DEFAULT_SCIENCE_TARGET.to_string(),
            label_prefix: None,
            platforms: Vec::new(),
            tags: Vec::new(),
            change_ignore: Vec::new(),
            rebuild_all: Vec::new(),
            default_branch: None,
            branches: Vec::new(),
        },
        manifests: Vec::new(),
        layers,
        layer_times: BTreeMap::new(),
        branch: None,
    };
    loader.layer_checks(&library);
    let mut chain_files: Vec<String> = library
        .chain(name)
        .iter()
        .filter_map(|n| library.layers.get(n).map(|l| l.rel.clone()))
        .collect();
    chain_files.push(loader.layer_rel(name));
    let mut problems: Vec<Problem> = loader
        .problems
        .into_iter()
        .filter(|p| p.is_error() && chain_files.contains(&p.file))
        .collect();
    if !problems.is_empty() {
        problems.sort();
        problems.dedup();
        return Err(Error::Library(Box::new(InvalidLibrary { root, problems })));
    }
    library.compat(name)
}

/// Check the library in `root`: every file, then the library as a whole. `Err` only when
/// `root` is not a directory; everything else is a [`Problem`].
pub fn validate(root: &Path) -> Result<Validation> {
    // The directory was given on the command line: missing, it is bad input.
    let not_a_library = |reason: &str| Error::Input {
        what: format!("library {}", root.display()),
        reason: reason.into(),
    };
    let meta = match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_a_library("no such directory"))
        }
        meta => meta.map_err(|e| Error::io("opening the library", root, e))?,
    };
    if !meta.is_dir() {
        return Err(not_a_library("not a directory"));
    }
    let root = std::path::absolute(root).map_err(|e| Error::io("resolving", root, e))?;
    let mut loader = load::Loader::new(&root);
    let settings = loader.settings();

    let mut layers = BTreeMap::new();
    if loader.dir_inside("layers") {
        for name in list(&root.join("layers"), true)? {
            if let Some(l) = loader.layer(&name) {
                layers.insert(name, l);
            }
        }
    }

    let mut manifests = Vec::new();
    let manifests_inside = loader.dir_inside("manifests");
    let mut files = match manifests_inside {
        true => list(&root.join("manifests"), false)?,
        false => Vec::new(),
    };
    files.retain(|n| n.ends_with(".yaml") || n.ends_with(".yml"));
    if files.is_empty() && manifests_inside {
        loader.problems.push(Problem::error(
            "manifests",
            yaml::Pos::START,
            "(root)",
            "no manifests: add manifests/NAME.yaml, one per final image",
            "missing-file",
        ));
    }
    for f in files {
        if let Some(m) = loader.manifest(&format!("manifests/{f}"), &settings, &layers) {
            manifests.push(m);
        }
    }
    let library = Library {
        root,
        settings,
        manifests,
        layers,
        layer_times: BTreeMap::new(),
        branch: None,
    };
    loader.cross_checks(&library);
    let mut problems = loader.problems;
    problems.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.path, &a.message)
            .cmp(&(&b.file, b.line, b.column, &b.path, &b.message))
    });
    problems.dedup();
    Ok(Validation { library, problems })
}

/// Names in `dir` (sorted; hidden entries skipped): directories if `dirs`, else files.
/// A missing directory has no entries.
fn list(dir: &Path, dirs: bool) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let is_dir = std::fs::metadata(entry.path())
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir == dirs {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

impl Library {
    /// Load the library in `root`; fails with [`InvalidLibrary`] listing the problems if
    /// there is any error (warnings are fine).
    pub fn open(root: &Path) -> Result<Library> {
        let v = validate(root)?;
        if v.has_errors() {
            return Err(Error::Library(Box::new(InvalidLibrary {
                root: root.to_path_buf(),
                problems: v.problems.into_iter().filter(Problem::is_error).collect(),
            })));
        }
        Ok(v.library)
    }

    /// The library root (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The same library with `graft.yaml`'s `repo` replaced (`graft refresh --repo`).
    pub fn with_repo(mut self, repo: &str) -> Library {
        self.settings.repo = repo.to_string();
        // A built science image goes under the repo: it moves with it.
        for m in &mut self.manifests {
            if m.build.is_some() {
                let with_compat = m.compat_layer().is_some();
                if let Ok(l) = load::built_science(
                    &self.root,
                    &self.settings,
                    &m.name,
                    &m.version,
                    with_compat,
                ) {
                    m.science.image = l;
                }
            }
        }
        self
    }

    /// The same library where each layer's own time is given (the last commit that touched
    /// its inputs, [`changes::layer_inputs`], from [`git::Repo::last_changes`]): a compat
    /// layer's entries get the
    /// latest time of its chain. Layers missing from `times` keep the caller's fallback.
    pub fn with_layer_times(mut self, times: BTreeMap<String, Timestamp>) -> Library {
        self.layer_times = times;
        self
    }

    /// The same library on `branch` (from [`crate::ops::plan::revision`]): tags follow the
    /// branch policy ([`branches`]).
    pub fn with_branch(mut self, branch: Option<branches::Branch>) -> Library {
        self.branch = branch;
        self
    }

    /// The branch the library is on, if known.
    pub fn branch(&self) -> Option<&branches::Branch> {
        self.branch.as_ref()
    }

    /// The tag templates `m` writes on the library's branch: the manifest's `tags` on the
    /// default branch (or with no branch, as outside git), else the branch policy's.
    pub fn templates<'a>(&'a self, m: &'a Manifest) -> Vec<&'a str> {
        match &self.branch {
            Some(b) if !b.is_default => branches::rule_for(&self.settings.branches, &b.name).1,
            _ => m.tags.iter().map(String::as_str).collect(),
        }
    }

    /// `m`'s tags on every branch, as `graft plan` shows them: the default branch's, each
    /// `branches:` entry's, then the fallback for other branches (when no entry is `**`),
    /// expanded for `build` (unknown values kept visible); the row the run writes is marked.
    pub fn branch_table(&self, m: &Manifest, build: &BuildInfo) -> Vec<branches::BranchTags> {
        // Rows other than the run's keep `{branch}` visible: they are for other branches.
        let other = BuildInfo {
            branch: None,
            ..build.clone()
        };
        let row = |branch: String, default: bool, templates: Vec<&str>, current: bool| {
            let b = if current { build } else { &other };
            branches::BranchTags {
                branch,
                default,
                tags: templates
                    .into_iter()
                    .map(|t| template::expand_tag(t, &m.version, b))
                    .collect(),
                current,
            }
        };
        let current_rule = match &self.branch {
            Some(b) if !b.is_default => {
                Some(branches::rule_for(&self.settings.branches, &b.name).0)
            }
            _ => None,
        };
        let default_name = self
            .branch
            .as_ref()
            .and_then(|b| b.default_branch.clone())
            .or_else(|| self.settings.default_branch.clone())
            .unwrap_or_else(|| "(default branch)".into());
        let mut out = vec![row(
            default_name,
            true,
            m.tags.iter().map(String::as_str).collect(),
            current_rule.is_none(),
        )];
        for (i, r) in self.settings.branches.iter().enumerate() {
            out.push(row(
                r.branch.clone(),
                false,
                r.tags.iter().map(String::as_str).collect(),
                current_rule == Some(Some(i)),
            ));
        }
        if !self.settings.branches.iter().any(|r| r.branch == "**") {
            out.push(row(
                "**".into(),
                false,
                branches::OTHER_BRANCH_TAGS.to_vec(),
                current_rule == Some(None),
            ));
        }
        out
    }

    /// The same library as refresh reads it once `graft build` has written the built science
    /// images: `build:` is dropped, so each manifest reads [`Manifest::science`] (where the
    /// build wrote it) like an existing image.
    pub fn as_built(mut self) -> Library {
        for m in &mut self.manifests {
            m.build = None;
        }
        self
    }

    /// The same library with only the manifests `keep` accepts (`--changed-since`).
    pub fn retain_manifests(mut self, keep: impl Fn(&Manifest) -> bool) -> Library {
        self.manifests.retain(|m| keep(m));
        self
    }

    /// The build values some manifest needs but `build` lacks (`build`, `commit`, `branch`),
    /// each with the first manifest and template (or the breadcrumbs) that needs it: what
    /// makes a refresh refuse to write a raw `{build}` into a tag or label.
    pub fn missing_build_values(&self, build: &BuildInfo) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        for m in &self.manifests {
            for t in self.templates(m) {
                for v in template::missing(t, build) {
                    if !out.iter().any(|(n, _)| *n == v) {
                        out.push((v, format!("tag template {t:?} of {}", m.rel)));
                    }
                }
            }
        }
        if self.settings.label_prefix.is_some()
            && self.manifests.iter().any(|m| m.compat_layer().is_some())
        {
            for (v, missing) in [
                ("build", build.build.is_none()),
                ("commit", build.commit.is_none()),
            ] {
                if missing && !out.iter().any(|(n, _)| *n == v) {
                    out.push((
                        v,
                        "the breadcrumb label P.compat.version (label_prefix in graft.yaml)".into(),
                    ));
                }
            }
        }
        out
    }

    /// The `build:` manifests in build order, each with its Dockerfile's bases
    /// ([`order::build_order`]; files read as validation reads them).
    pub fn build_order(&self) -> order::BuildOrder {
        let loader = load::Loader::new(&self.root);
        order::build_order(self, |rel| loader.read_library_file(rel))
    }

    /// `graft.yaml`.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every manifest, in file name order.
    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }

    /// The manifests named `name` (several versions of an image may exist).
    pub fn manifests_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Manifest> {
        self.manifests.iter().filter(move |m| m.name == name)
    }

    /// Every layer, by name.
    pub fn layers(&self) -> &BTreeMap<String, Layer> {
        &self.layers
    }

    /// One layer as written (includes not applied).
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.get(name)
    }

    /// Layer names in application order for `name`: includes first (depth-first, in the
    /// order listed, each layer once even if included twice), `name` last. Unknown names and
    /// cycles are cut (validation reports them).
    pub fn chain(&self, name: &str) -> Vec<String> {
        fn visit(lib: &Library, name: &str, path: &mut Vec<String>, out: &mut Vec<String>) {
            if out.iter().any(|n| n == name) || path.iter().any(|n| n == name) {
                return;
            }
            let Some(layer) = lib.layers.get(name) else {
                return;
            };
            path.push(name.to_string());
            for inc in &layer.includes {
                visit(lib, inc, path, out);
            }
            path.pop();
            out.push(name.to_string());
        }
        let mut out = Vec::new();
        visit(self, name, &mut Vec::new(), &mut out);
        out
    }

    /// The compat layer `name` with its includes applied.
    pub fn compat(&self, name: &str) -> Result<CompatLayer> {
        if !self.layers.contains_key(name) {
            return Err(Error::NotFound {
                what: format!("layer {name:?}"),
                detail: Some(format!(
                    "layers in {}: {}",
                    self.root.join("layers").display(),
                    self.layers.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            });
        }
        let chain = self.chain(name);
        let mut out = CompatLayer {
            name: name.to_string(),
            chain: chain.clone(),
            trees: Vec::new(),
            remove: Vec::new(),
            owner: None,
            modes: BTreeMap::new(),
            config: ImageConfig::default(),
            mtime: chain
                .iter()
                .filter_map(|n| self.layer_times.get(n).copied())
                .max(),
        };
        for n in &chain {
            let l = &self.layers[n];
            out.trees.extend(l.files.clone());
            for r in &l.remove {
                if !out.remove.contains(r) {
                    out.remove.push(r.clone());
                }
            }
            if l.owner.is_some() {
                out.owner = l.owner;
            }
            out.modes
                .extend(l.modes.iter().map(|(k, v)| (k.clone(), *v)));
            out.config.merge(&l.config);
        }
        Ok(out)
    }

    /// The final repository of `m` as written (`graft.yaml`'s target expanded), e.g.
    /// `docker://registry.example.org/images/astro` or `oci:out/library/astro`.
    pub fn target_text(&self, m: &Manifest) -> String {
        template::expand_target(&self.settings.target, &self.settings.repo, &m.name)
    }

    /// `{target}:{tag}` as text.
    pub fn reference_text(&self, m: &Manifest, tag: &str) -> String {
        format!("{}:{tag}", self.target_text(m))
    }

    /// The tags of `m` for `build`; placeholders without a value stay as `{build}` etc.
    /// (a preview, as `graft plan` shows it).
    pub fn tag_preview(&self, m: &Manifest, build: &BuildInfo) -> Vec<String> {
        self.templates(m)
            .into_iter()
            .map(|t| template::expand_tag(t, &m.version, build))
            .collect()
    }

    /// The tags of `m` for `build`; an error names the template and the missing value.
    pub fn tags(&self, m: &Manifest, build: &BuildInfo) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for t in self.templates(m) {
            let missing = template::missing(t, build);
            if let Some(first) = missing.first() {
                return Err(Error::Unsupported(format!(
                    "no value for {{{first}}} in tag template {t:?} of {}: pass --{first}, or run inside the library's git repository",
                    m.rel
                )));
            }
            let tag = template::expand_tag(t, &m.version, build);
            crate::reference::validate_tag(&tag).map_err(|reason| Error::Invalid {
                what: format!("tag {tag:?} of {}", m.rel),
                reason,
            })?;
            if !out.contains(&tag) {
                out.push(tag);
            }
        }
        Ok(out)
    }

    /// Every final reference of `m` for `build` (`{target}:{tag}` per tag), resolved
    /// against the library root: what refresh writes.
    pub fn references(&self, m: &Manifest, build: &BuildInfo) -> Result<Vec<Located>> {
        self.tags(m, build)?
            .iter()
            .map(|t| load::locate(&self.root, &self.reference_text(m, t)))
            .collect()
    }

    /// Labels of `m`'s final config, lowest precedence first: the compat layer's merged
    /// `config.labels`, then the manifest's `labels`, then, when `graft.yaml` sets
    /// `label_prefix`, the compat breadcrumbs (`P.compat.version` =
    /// `<compat>:<version>-<build>-<commit>`, `P.compat.buildtime` = `created`). The science
    /// breadcrumbs depend on each platform's science config and are added by refresh.
    /// A missing `{build}` or `{commit}` is an error: a label is never written with a raw
    /// placeholder.
    pub fn labels(
        &self,
        m: &Manifest,
        build: &BuildInfo,
        created: Timestamp,
    ) -> Result<BTreeMap<String, String>> {
        if self.settings.label_prefix.is_some() && m.compat_layer().is_some() {
            for (v, missing) in [
                ("build", build.build.is_none()),
                ("commit", build.commit.is_none()),
            ] {
                if missing {
                    return Err(Error::Unsupported(format!(
                        "no value for {{{v}}} in the breadcrumb label of {} (label_prefix in graft.yaml): pass --build and --commit, or run inside the library's git repository",
                        m.rel
                    )));
                }
            }
        }
        self.label_preview(m, build, created)
    }

    /// [`Library::labels`] as `graft plan` previews them: a missing value stays visible as
    /// `{build}`/`{commit}`.
    pub fn label_preview(
        &self,
        m: &Manifest,
        build: &BuildInfo,
        created: Timestamp,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = self.described(m);
        match m.compat_layer() {
            Some(c) => out.extend(self.compat(c)?.config.labels),
            // No compat: the built image is the final image, with its build labels.
            None => out.extend(m.build.iter().flat_map(|b| b.labels.clone())),
        }
        out.extend(m.labels.clone());
        if let (Some(p), Some(_)) = (&self.settings.label_prefix, m.compat_layer()) {
            out.extend(crate::image::breadcrumbs::compat_labels(
                p,
                &m.compat,
                &m.version,
                build.build.as_deref().unwrap_or("{build}"),
                build.commit.as_deref().unwrap_or("{commit}"),
                created,
            ));
        }
        Ok(out)
    }

    /// Annotations of `m`'s final manifests and index: the manifest's `annotations`, plus
    /// `org.opencontainers.image.source`/`.revision` from `git` and `.version` from
    /// `version` unless the manifest sets them; for a manifest with `build:`, also what
    /// [`Library::described`] gives (and `build.annotations` when the built image is final).
    pub fn annotations(&self, m: &Manifest) -> BTreeMap<String, String> {
        let mut out = self.described(m);
        if let Some(g) = &m.git {
            out.insert(
                "org.opencontainers.image.source".to_string(),
                g.repo.clone(),
            );
            if let Some(c) = &g.commit {
                out.insert("org.opencontainers.image.revision".to_string(), c.clone());
            }
        }
        out.insert(
            "org.opencontainers.image.version".to_string(),
            m.version.clone(),
        );
        if m.compat_layer().is_none() {
            out.extend(m.build.iter().flat_map(|b| b.annotations.clone()));
        }
        out.extend(m.annotations.clone());
        out
    }

    /// What a `build:` manifest says about its image, as label and annotation keys (both
    /// sets get them, lowest precedence: any label or annotation the manifest writes wins):
    /// - `org.opencontainers.image.authors`: the maintainers, `Name <email>` (or `Name`),
    ///   joined by `", "`;
    /// - `org.opencontainers.image.description`: `description`;
    /// - `org.graft.metadata.identifier`, `org.graft.metadata.project`: `metadata`.
    ///
    /// Empty for a `science:` manifest: graft did not build that image, and its final images
    /// stay byte for byte what they were before `build:` existed.
    pub fn described(&self, m: &Manifest) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if m.build.is_none() {
            return out;
        }
        let authors: Vec<String> = m
            .maintainers
            .iter()
            .map(|a| match &a.email {
                Some(e) => format!("{} <{e}>", a.name),
                None => a.name.clone(),
            })
            .collect();
        if !authors.is_empty() {
            out.insert(
                "org.opencontainers.image.authors".to_string(),
                authors.join(", "),
            );
        }
        if let Some(d) = &m.description {
            out.insert(
                "org.opencontainers.image.description".to_string(),
                d.clone(),
            );
        }
        if let Some(i) = &m.metadata.identifier {
            out.insert("org.graft.metadata.identifier".to_string(), i.clone());
        }
        if let Some(p) = &m.metadata.project {
            out.insert("org.graft.metadata.project".to_string(), p.clone());
        }
        out
    }

    /// Labels of the science image graft builds for `m` (`build:`): [`Library::described`],
    /// then `build.labels`. Empty for a `science:` manifest.
    pub fn build_labels(&self, m: &Manifest) -> BTreeMap<String, String> {
        let mut out = self.described(m);
        out.extend(m.build.iter().flat_map(|b| b.labels.clone()));
        out
    }

    /// Annotations of the science image graft builds for `m`: [`Library::described`], the
    /// source and revision from `git`, the version, then `build.annotations`.
    pub fn build_annotations(&self, m: &Manifest) -> BTreeMap<String, String> {
        let mut out = self.described(m);
        if m.build.is_none() {
            return out;
        }
        if let Some(g) = &m.git {
            // Without credentials: `https://user:token@host/x` is a clone URL, not a label.
            let public = crate::sign::provenance::public_git_url(&g.repo)
                .unwrap_or_else(|| git::redact_urls(&g.repo));
            out.insert("org.opencontainers.image.source".into(), public);
            if let Some(c) = &g.commit {
                out.insert("org.opencontainers.image.revision".into(), c.clone());
            }
        }
        out.insert("org.opencontainers.image.version".into(), m.version.clone());
        out.extend(m.build.iter().flat_map(|b| b.annotations.clone()));
        out
    }

    /// `m`'s built science image (`build:`), as `refresh` would need it first: an error (usage)
    /// saying `graft build` must run instead (it builds, then refreshes). So a `build:`
    /// manifest cannot be refreshed.
    pub fn needs_build(&self, m: &Manifest) -> Result<()> {
        match &m.build {
            None => Ok(()),
            Some(_) => Err(Error::Unsupported(format!(
                "{} builds its science image from a Dockerfile (build:): `graft build {}` builds it and then runs its refresh; refresh only manifests with science: (an existing image)",
                m.rel, m.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::ImageRef;

    fn sample() -> Library {
        Library::open(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn sample_answers_what_refresh_asks() {
        let lib = sample();
        let m = lib.manifests_named("sci-notebook").next().unwrap();
        // The science reference resolves against the library root.
        match &m.science.image.image {
            ImageRef::Layout(l) => {
                assert!(l.path.is_absolute());
                assert!(l.path.ends_with("testdata/science/jupyter-sci"));
                assert_eq!(l.tag.as_deref(), Some("2.4"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.science.image.text, "oci:testdata/science/jupyter-sci:2.4");
        let c = lib.compat(&m.compat).unwrap();
        assert_eq!(c.chain, ["platform-base", "jupyter-compat"]);
        assert_eq!(c.trees.len(), 2);
        assert!(c.trees[1].ends_with("layers/jupyter-compat/files"));
        assert_eq!(c.remove, ["/opt/conda/share/obsolete"]);
        assert_eq!(c.modes["/usr/local/bin/start.sh"], 0o755);
        assert_eq!(c.modes["/usr/local/bin/platform-info"], 0o755);
        assert_eq!(
            c.config.env_strings(),
            [
                "GRAFT_PLATFORM=sample-jupyter",
                "LANG=C.UTF-8",
                "JUPYTER_PORT=8888"
            ]
        );
        assert_eq!(
            c.config.entrypoint.as_deref(),
            Some(&["/usr/local/bin/start.sh".to_string()][..])
        );
        assert!(c.config.exposed_ports.contains("8888/tcp"));
        let spec = c.spec(Timestamp(7));
        assert_eq!(spec.trees, c.trees);
        assert_eq!(spec.mtime, Timestamp(7));

        // Tags: strict where real values are needed, previews keep placeholders.
        let none = BuildInfo::default();
        assert_eq!(lib.tag_preview(m, &none), ["2.4", "2.4-{build}-{commit}"]);
        let err = lib.tags(m, &none).unwrap_err().to_string();
        assert!(err.contains("no value for {build}"), "{err}");
        let b = BuildInfo {
            build: Some("42".into()),
            commit: Some("abc1234".into()),
            branch: None,
        };
        let refs = lib.references(m, &b).unwrap();
        assert_eq!(refs[1].text, "oci:out/library/sci-notebook:2.4-42-abc1234");
        match &refs[1].image {
            ImageRef::Layout(l) => {
                assert!(l.path.is_absolute() && l.path.ends_with("out/library/sci-notebook"))
            }
            other => panic!("{other:?}"),
        }
        let labels = lib.labels(m, &b, Timestamp(0)).unwrap();
        assert_eq!(
            labels["org.graft.compat.version"],
            "jupyter-compat:2.4-42-abc1234"
        );
        assert_eq!(labels["org.graft.compat.buildtime"], "1970-01-01T00:00:00Z");
        assert_eq!(labels["org.opencontainers.image.title"], "Science notebook");
        assert_eq!(
            labels["org.opencontainers.image.vendor"],
            "graft sample platform"
        );
        let ann = lib.annotations(m);
        assert_eq!(ann["org.opencontainers.image.version"], "2.4");
    }

    #[test]
    fn a_chain_takes_the_latest_time_of_its_layers() {
        let lib = sample().with_layer_times(BTreeMap::from([
            ("platform-base".to_string(), Timestamp(300)),
            ("jupyter-compat".to_string(), Timestamp(100)),
        ]));
        // platform-base changed last: both chains that include it carry its time.
        assert_eq!(
            lib.compat("jupyter-compat").unwrap().mtime,
            Some(Timestamp(300))
        );
        assert_eq!(
            lib.compat("astro-compat").unwrap().mtime,
            Some(Timestamp(300))
        );
        assert_eq!(
            lib.compat("platform-base")
                .unwrap()
                .spec(Timestamp(9))
                .mtime,
            Timestamp(300)
        );
        // A layer git knows nothing about keeps the caller's fallback.
        let lib = lib.with_layer_times(BTreeMap::new());
        assert_eq!(
            lib.compat("astro-compat").unwrap().spec(Timestamp(9)).mtime,
            Timestamp(9)
        );
        // Missing build values are named with what needs them.
        let missing = sample().missing_build_values(&BuildInfo::default());
        assert_eq!(
            missing.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            ["build", "commit"]
        );
        assert!(
            missing[0].1.contains("manifests/astro-notebook.yaml"),
            "{missing:?}"
        );
    }

    #[test]
    fn commits_that_look_like_numbers_stay_text() {
        // All digits (an integer too big for any type), a leading zero, and hex that YAML
        // reads as a float: each is the commit as written.
        for commit in [
            "1234567890123456789012345678901234567890",
            "0123456789012345678901234567890123456789",
            "1234567890123456789012345678901234567e10",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let w = |p: &str, s: &str| {
                let p = dir.path().join(p);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, s).unwrap();
            };
            w("graft.yaml", "repo: docker://r.example/lib\n");
            w("Dockerfile", "FROM scratch\n");
            w(
                "manifests/m.yaml",
                &format!("name: m\nversion: 1\ngit:\n  repo: https://x\n  commit: {commit}\nbuild: {{}}\n"),
            );
            let lib = Library::open(dir.path()).unwrap();
            let m = &lib.manifests()[0];
            assert_eq!(m.git.as_ref().unwrap().commit.as_deref(), Some(commit));
            assert_eq!(
                lib.annotations(m)["org.opencontainers.image.revision"],
                commit
            );
        }
    }

    #[test]
    fn the_source_annotation_has_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, s: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w("graft.yaml", "repo: docker://r.example/lib\n");
        w("Dockerfile", "FROM scratch\n");
        w(
            "manifests/m.yaml",
            "name: m\nversion: 1\ngit:\n  repo: 'https://bot:s3cret@git.example/x.git?private_token=t2'\nbuild: {}\n",
        );
        let lib = Library::open(dir.path()).unwrap();
        let m = &lib.manifests()[0];
        assert_eq!(
            lib.build_annotations(m)["org.opencontainers.image.source"],
            "https://git.example/x.git"
        );
    }

    #[test]
    fn science_manifests_get_no_derived_labels() {
        // The sample's manifests have maintainers and metadata, but their images were not
        // built by graft: nothing is added (their digests stay what they were).
        let lib = sample();
        for m in lib.manifests() {
            assert!(lib.described(m).is_empty());
            assert!(lib.build_labels(m).is_empty());
            assert!(!lib
                .annotations(m)
                .contains_key("org.opencontainers.image.authors"));
        }
    }

    #[test]
    fn built_science_moves_with_the_repo() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, s: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w(
            "graft.yaml",
            "repo: docker://r.example/lib\nscience_target: '{repo}/science/{name}'\n",
        );
        w("Dockerfile", "FROM scratch\n");
        w("layers/c/layer.yaml", "{}\n");
        w(
            "manifests/a.yaml",
            "name: a\nversion: 2.4\nbuild: {}\ncompat: c\n",
        );
        w(
            "manifests/b.yaml",
            "name: b\nversion: 1\nbuild: {tags: ['{version}', latest]}\n",
        );
        // A number-like tag stays as written: 3.10 is not 3.1.
        w(
            "manifests/c.yaml",
            "name: c\nbuild: {tags: [3.10, latest]}\n",
        );
        let lib = Library::open(dir.path()).unwrap();
        let a = &lib.manifests()[0];
        assert_eq!(a.science.image.text, "docker://r.example/lib/science/a:2.4");
        assert_eq!(a.compat_layer(), Some("c"));
        assert_eq!(
            lib.manifests()[1].science.image.text,
            "docker://r.example/lib/b:1"
        );
        assert_eq!(lib.manifests()[1].tags, ["{version}", "latest"]);
        assert_eq!(lib.manifests()[2].version, "3.10");
        assert_eq!(lib.manifests()[2].tags, ["3.10", "latest"]);
        assert!(lib.needs_build(a).is_err_and(|e| e.is_usage()));
        let lib = lib.with_repo("docker://other.example/x");
        assert_eq!(
            lib.manifests()[0].science.image.text,
            "docker://other.example/x/science/a:2.4"
        );
    }

    #[test]
    fn diamond_includes_apply_each_layer_once() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, s: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w("graft.yaml", "repo: oci:out\n");
        w(
            "manifests/m.yaml",
            "name: m\nversion: 1\nscience: {image: 'oci:s:1'}\ncompat: top\n",
        );
        w(
            "layers/top/layer.yaml",
            "includes: [left, right]\nowner: 5\n",
        );
        w(
            "layers/left/layer.yaml",
            "includes: [base]\nconfig: {env: {A: left}}\n",
        );
        w(
            "layers/right/layer.yaml",
            "includes: [base]\nconfig: {env: {A: right}}\nowner: '1:2'\n",
        );
        w(
            "layers/base/layer.yaml",
            "config: {env: {A: base, B: base}}\nremove: [/x]\n",
        );
        let lib = Library::open(dir.path()).unwrap();
        let c = lib.compat("top").unwrap();
        assert_eq!(c.chain, ["base", "left", "right", "top"]);
        assert_eq!(c.config.env_strings(), ["A=right", "B=base"]);
        assert_eq!(c.owner, Some((5, 5)));
        assert_eq!(c.remove, ["/x"]);
        assert!(lib.compat("nope").is_err());
    }
}
