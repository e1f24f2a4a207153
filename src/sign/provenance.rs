//! SLSA provenance v1 (`https://slsa.dev/provenance/v1`) for images graft builds.
//!
//! [`Provenance`] is a small builder of the predicate; [`RefreshProvenance`] fills it with what
//! a compat refresh knows (manifest file and its digest, library repository and commit, build
//! values and time, science index and platform digests, compat layer digest) and reads it back
//! for `graft verify-provenance`. References are recorded as the library writes them, never
//! resolved to local paths, so two machines attest the same refresh alike. The builder identity
//! comes from [`BuilderInfo::from_ci_env`] (GitHub Actions, GitLab CI, Jenkins) or flags; times
//! are [`Timestamp`]s handed in by the binary (clock or `SOURCE_DATE_EPOCH`), so the statement
//! is reproducible when the inputs are.

use serde_json::{json, Map, Value};

use crate::oci::Digest;
use crate::sign::attach::SLSA_PROVENANCE_V1;
use crate::sign::dsse::Statement;
use crate::timestamp::Timestamp;

/// `buildType` of a graft compat refresh. Stable: describes the parameters below. v2 records
/// what a rebuild needs and nothing machine-specific (v1 had absolute layout paths and no
/// build values; `graft verify-provenance` refuses it).
pub const REFRESH_BUILD_TYPE: &str = "https://graft.dev/buildtypes/refresh/v2";
/// `buildType` of `graft build`: a Dockerfile built by an existing builder (buildah, or
/// BuildKit through buildx) and written by graft. Stable: describes [`BuildProvenance`]'s
/// parameters. `graft verify-provenance` does not re-run it (it re-runs refreshes).
pub const BUILD_BUILD_TYPE: &str = "https://graft.dev/buildtypes/build/v1";
/// Builder id used when neither CI variables nor flags name one.
pub const LOCAL_BUILDER_ID: &str = "https://graft.dev/builders/local";

/// An in-toto ResourceDescriptor (`resolvedDependencies` entries).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDescriptor {
    /// `uri`.
    pub uri: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `digest`: algorithm → hex (e.g. `sha256`, `gitCommit`).
    pub digest: Vec<(String, String)>,
    /// `annotations`.
    pub annotations: Map<String, Value>,
}

impl ResourceDescriptor {
    /// A descriptor with a `uri` and an OCI digest.
    pub fn oci(uri: impl Into<String>, digest: &Digest) -> ResourceDescriptor {
        ResourceDescriptor {
            uri: Some(uri.into()),
            name: None,
            digest: vec![(
                digest.algorithm().as_str().to_string(),
                digest.hex().to_string(),
            )],
            annotations: Map::new(),
        }
    }

    /// A git repository at a ref: `uri` `git+URL@REF`, digest `gitCommit` (SLSA's convention,
    /// e.g. `git+https://github.com/org/lib@refs/heads/main`).
    pub fn git(url: &str, git_ref: &str, commit: &str) -> ResourceDescriptor {
        let uri = if url.starts_with("git+") {
            format!("{url}@{git_ref}")
        } else {
            format!("git+{url}@{git_ref}")
        };
        ResourceDescriptor {
            uri: Some(uri),
            ..ResourceDescriptor::commit(commit)
        }
    }

    /// A git commit known only by its hash (a repository nobody else can fetch).
    pub fn commit(commit: &str) -> ResourceDescriptor {
        ResourceDescriptor {
            uri: None,
            name: None,
            digest: vec![("gitCommit".into(), commit.to_string())],
            annotations: Map::new(),
        }
    }

    /// With a `name`.
    pub fn named(mut self, name: impl Into<String>) -> ResourceDescriptor {
        self.name = Some(name.into());
        self
    }

    /// With one annotation.
    pub fn annotate(mut self, key: &str, value: Value) -> ResourceDescriptor {
        self.annotations.insert(key.to_string(), value);
        self
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        if let Some(n) = &self.name {
            m.insert("name".into(), json!(n));
        }
        if let Some(u) = &self.uri {
            m.insert("uri".into(), json!(u));
        }
        if !self.digest.is_empty() {
            let d: Map<String, Value> = self
                .digest
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            m.insert("digest".into(), Value::Object(d));
        }
        if !self.annotations.is_empty() {
            m.insert(
                "annotations".into(),
                Value::Object(self.annotations.clone()),
            );
        }
        Value::Object(m)
    }
}

/// Who ran the build: `runDetails.builder.id` and `runDetails.metadata.invocationId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderInfo {
    /// `builder.id`.
    pub id: String,
    /// `metadata.invocationId`.
    pub invocation_id: Option<String>,
}

impl BuilderInfo {
    /// The builder of the CI system described by `var` (an environment lookup the binary
    /// passes in): GitHub Actions (`GITHUB_ACTIONS`), GitLab CI (`GITLAB_CI`), Jenkins
    /// (`JENKINS_URL`). `None` outside CI.
    pub fn from_ci_env(var: &dyn Fn(&str) -> Option<String>) -> Option<BuilderInfo> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        if get("GITHUB_ACTIONS").as_deref() == Some("true") {
            let server = get("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
            let repo = get("GITHUB_REPOSITORY").unwrap_or_default();
            let id = match get("GITHUB_WORKFLOW_REF") {
                Some(w) => format!("{server}/{w}"),
                None => format!("{server}/{repo}/actions"),
            };
            let invocation_id = get("GITHUB_RUN_ID").map(|run| {
                let attempt = get("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
                format!("{server}/{repo}/actions/runs/{run}/attempts/{attempt}")
            });
            return Some(BuilderInfo { id, invocation_id });
        }
        if get("GITLAB_CI").as_deref() == Some("true") {
            let server = get("CI_SERVER_URL").unwrap_or_else(|| "https://gitlab.com".into());
            let project = get("CI_PROJECT_PATH").unwrap_or_default();
            let id = match get("CI_RUNNER_ID") {
                Some(r) => format!("{server}/{project}/-/runners/{r}"),
                None => format!("{server}/{project}/-/pipelines"),
            };
            let invocation_id = get("CI_JOB_URL")
                .or_else(|| get("CI_JOB_ID").map(|j| format!("{server}/{project}/-/jobs/{j}")));
            return Some(BuilderInfo { id, invocation_id });
        }
        if let Some(url) = get("JENKINS_URL") {
            let id = match get("JOB_NAME") {
                Some(job) => format!("{}/job/{job}", url.trim_end_matches('/')),
                None => url,
            };
            let invocation_id = get("BUILD_URL").or_else(|| get("BUILD_TAG"));
            return Some(BuilderInfo { id, invocation_id });
        }
        None
    }

    /// The local default ([`LOCAL_BUILDER_ID`], no invocation id).
    pub fn local() -> BuilderInfo {
        BuilderInfo {
            id: LOCAL_BUILDER_ID.into(),
            invocation_id: None,
        }
    }
}

/// A SLSA v1 provenance predicate under construction.
#[derive(Debug, Clone)]
pub struct Provenance {
    build_type: String,
    external: Map<String, Value>,
    internal: Map<String, Value>,
    dependencies: Vec<ResourceDescriptor>,
    builder: BuilderInfo,
    builder_version: Map<String, Value>,
    started_on: Option<Timestamp>,
    finished_on: Option<Timestamp>,
}

impl Provenance {
    /// The externalParameters every graft statement records of its run, in this order:
    /// `library` (when in git), `build` {build, commit, branch}, `sourceDateEpoch` (when set),
    /// `repo` (`--repo`, when given).
    fn run_parameters(
        self,
        library: Option<&LibrarySource>,
        build: &BuildValues,
        source_date_epoch: Option<Timestamp>,
        repo_override: Option<&str>,
    ) -> Provenance {
        let mut p = self;
        if let Some(l) = library {
            let mut m = Map::new();
            if let Some(u) = &l.url {
                m.insert("repository".into(), json!(u));
            }
            m.insert("ref".into(), json!(l.git_ref));
            m.insert("commit".into(), json!(l.commit));
            m.insert("path".into(), json!(l.path));
            p = p.external_parameter("library", Value::Object(m));
        }
        p = p.external_parameter(
            "build",
            json!({"build": build.build, "commit": build.commit, "branch": build.branch}),
        );
        if let Some(t) = source_date_epoch {
            p = p.external_parameter("sourceDateEpoch", json!(t.0));
        }
        if let Some(r) = repo_override {
            p = p.external_parameter("repo", json!(r));
        }
        p
    }

    /// A predicate of `build_type` built by `builder`.
    pub fn new(build_type: impl Into<String>, builder: BuilderInfo) -> Provenance {
        Provenance {
            build_type: build_type.into(),
            external: Map::new(),
            internal: Map::new(),
            dependencies: Vec::new(),
            builder,
            builder_version: Map::new(),
            started_on: None,
            finished_on: None,
        }
    }

    /// Add an `externalParameters` entry (inputs a user controls).
    pub fn external_parameter(mut self, key: &str, value: Value) -> Provenance {
        self.external.insert(key.to_string(), value);
        self
    }

    /// Add an `internalParameters` entry (set by the builder).
    pub fn internal_parameter(mut self, key: &str, value: Value) -> Provenance {
        self.internal.insert(key.to_string(), value);
        self
    }

    /// Add a `resolvedDependencies` entry.
    pub fn dependency(mut self, dep: ResourceDescriptor) -> Provenance {
        self.dependencies.push(dep);
        self
    }

    /// Add a `builder.version` entry (e.g. `graft` → its version).
    pub fn builder_version(mut self, component: &str, version: &str) -> Provenance {
        self.builder_version
            .insert(component.to_string(), json!(version));
        self
    }

    /// `metadata.startedOn`.
    pub fn started_on(mut self, t: Timestamp) -> Provenance {
        self.started_on = Some(t);
        self
    }

    /// `metadata.finishedOn`.
    pub fn finished_on(mut self, t: Timestamp) -> Provenance {
        self.finished_on = Some(t);
        self
    }

    /// The predicate document (deterministic key order).
    pub fn predicate(&self) -> Value {
        let mut build = Map::new();
        build.insert("buildType".into(), json!(self.build_type));
        build.insert(
            "externalParameters".into(),
            Value::Object(self.external.clone()),
        );
        if !self.internal.is_empty() {
            build.insert(
                "internalParameters".into(),
                Value::Object(self.internal.clone()),
            );
        }
        if !self.dependencies.is_empty() {
            build.insert(
                "resolvedDependencies".into(),
                Value::Array(self.dependencies.iter().map(|d| d.to_value()).collect()),
            );
        }
        let mut builder = Map::new();
        builder.insert("id".into(), json!(self.builder.id));
        if !self.builder_version.is_empty() {
            builder.insert(
                "version".into(),
                Value::Object(self.builder_version.clone()),
            );
        }
        let mut metadata = Map::new();
        if let Some(i) = &self.builder.invocation_id {
            metadata.insert("invocationId".into(), json!(i));
        }
        if let Some(t) = self.started_on {
            metadata.insert("startedOn".into(), json!(t.rfc3339()));
        }
        if let Some(t) = self.finished_on {
            metadata.insert("finishedOn".into(), json!(t.rfc3339()));
        }
        let mut run = Map::new();
        run.insert("builder".into(), Value::Object(builder));
        if !metadata.is_empty() {
            run.insert("metadata".into(), Value::Object(metadata));
        }
        json!({
            "buildDefinition": Value::Object(build),
            "runDetails": Value::Object(run),
        })
    }

    /// The in-toto Statement v1 about `subject_name` at `digest` carrying this predicate.
    pub fn statement(&self, subject_name: &str, digest: &Digest) -> Statement {
        Statement::new(subject_name, digest, SLSA_PROVENANCE_V1, self.predicate())
    }
}

/// The library a refresh read, as git knows it: where anyone can fetch it, and which commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibrarySource {
    /// The remote URL without credentials ([`public_git_url`]); `None` when the remote is a
    /// local path (machine-specific, and nobody else can fetch it) or there is no remote.
    pub url: Option<String>,
    /// What `git+URL@REF` names: `refs/heads/BRANCH` when the branch is known, else the commit.
    pub git_ref: String,
    /// The full commit hash (`gitCommit`).
    pub commit: String,
    /// The library directory inside the repository, `/`-separated (`.` at its top).
    pub path: String,
}

impl LibrarySource {
    /// The `library` resolved dependency: `git+URL@REF` with its commit, or the commit alone
    /// (a remote graft does not name, such as a local path).
    fn dependency(&self) -> ResourceDescriptor {
        match &self.url {
            Some(u) => ResourceDescriptor::git(u, &self.git_ref, &self.commit),
            None => ResourceDescriptor::commit(&self.commit),
        }
        .named(DEP_LIBRARY)
    }
}

/// `{build}`, `{commit}` and `{branch}` as the refresh used them in tags and breadcrumbs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildValues {
    /// `{build}`.
    pub build: Option<String>,
    /// `{commit}` (the short commit, or `--commit`).
    pub commit: Option<String>,
    /// `{branch}`.
    pub branch: Option<String>,
}

/// What a compat refresh records about itself: everything a rebuild needs and nothing that
/// depends on the machine it ran on (no absolute paths, no temporary directories), so the
/// same refresh from two checkouts attests byte for byte the same.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshProvenance {
    /// The library manifest file, relative to the library root (`manifests/astro.yaml`).
    pub manifest_path: String,
    /// Content digest of that file.
    pub manifest_digest: Digest,
    /// The library's repository and commit, when it is in git.
    pub library: Option<LibrarySource>,
    /// The build values used.
    pub build: BuildValues,
    /// The time stamped into configs, history and annotations.
    pub created: Timestamp,
    /// `SOURCE_DATE_EPOCH` when it was set (then it is every compat layer's mtime too;
    /// otherwise each layer's time comes from the library's history).
    pub source_date_epoch: Option<Timestamp>,
    /// `--repo`, as given, when it replaced graft.yaml's `repo`.
    pub repo_override: Option<String>,
    /// The science reference as the manifest writes it.
    pub science: String,
    /// The science index digest (when the science image is an index).
    pub science_index: Option<Digest>,
    /// The science platform manifests: platform (`linux/amd64`, or `image`) and digest.
    pub science_platforms: Vec<(String, Digest)>,
    /// The compat layer chain (`platform-base`, `jupyter-compat`).
    pub compat_chain: Vec<String>,
    /// The compat layer digest (compressed blob).
    pub compat_layer: Option<Digest>,
    /// Who ran it.
    pub builder: BuilderInfo,
    /// graft's version.
    pub graft_version: String,
    /// When the refresh started.
    pub started_on: Timestamp,
    /// When it finished.
    pub finished_on: Timestamp,
}

/// Resource names in `resolvedDependencies`, which [`RefreshProvenance::from_predicate`] reads back.
const DEP_LIBRARY: &str = "library";
const DEP_SCIENCE_INDEX: &str = "science-index";
const DEP_SCIENCE_PLATFORM: &str = "science-";
const DEP_COMPAT_LAYER: &str = "compat-layer";

fn digest_map(d: &Digest) -> Value {
    let mut m = Map::new();
    m.insert(d.algorithm().as_str().to_string(), json!(d.hex()));
    Value::Object(m)
}

/// `reference` without its tag (`host:5000/lib/base:1.0` → `host:5000/lib/base`), so that
/// pinned at a digest it reads `name@digest`.
fn untagged(reference: &str) -> &str {
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    match name.rfind(':') {
        Some(c) if !name[c..].contains('/') => &name[..c],
        _ => name,
    }
}

/// `reference` pinned at `digest`: a platform manifest has no tag of its own.
fn at_digest(reference: &str, digest: &Digest) -> String {
    let name = match reference.rsplit_once('@') {
        Some((name, pin)) if pin.contains(':') => name,
        _ => reference,
    };
    format!("{name}@{digest}")
}

impl RefreshProvenance {
    /// The provenance predicate builder for this refresh.
    pub fn provenance(&self) -> Provenance {
        let mut manifest = Map::new();
        manifest.insert("path".into(), json!(self.manifest_path));
        manifest.insert("digest".into(), digest_map(&self.manifest_digest));
        let mut p = Provenance::new(REFRESH_BUILD_TYPE, self.builder.clone())
            .external_parameter("manifest", Value::Object(manifest));
        p = p.run_parameters(
            self.library.as_ref(),
            &self.build,
            self.source_date_epoch,
            self.repo_override.as_deref(),
        );
        p = p
            .internal_parameter("created", json!(self.created.rfc3339()))
            .internal_parameter("graftVersion", json!(self.graft_version))
            .builder_version("graft", &self.graft_version);
        if let Some(l) = &self.library {
            p = p.dependency(l.dependency());
        }
        if let Some(d) = &self.science_index {
            p = p.dependency(
                ResourceDescriptor::oci(self.science.clone(), d)
                    .named(DEP_SCIENCE_INDEX)
                    .annotate("mediaType", json!(crate::oci::media_types::OCI_INDEX)),
            );
        }
        for (platform, d) in &self.science_platforms {
            p = p.dependency(
                ResourceDescriptor::oci(at_digest(&self.science, d), d)
                    .named(format!("{DEP_SCIENCE_PLATFORM}{platform}"))
                    .annotate("platform", json!(platform)),
            );
        }
        if let Some(d) = &self.compat_layer {
            let mut dep = ResourceDescriptor {
                uri: None,
                name: Some(DEP_COMPAT_LAYER.into()),
                digest: vec![(d.algorithm().as_str().to_string(), d.hex().to_string())],
                annotations: Map::new(),
            };
            if !self.compat_chain.is_empty() {
                dep = dep.annotate("layers", json!(self.compat_chain));
            }
            p = p.dependency(dep);
        }
        p.started_on(self.started_on).finished_on(self.finished_on)
    }

    /// Read back what [`RefreshProvenance::provenance`] wrote (the `predicate` of a statement
    /// whose `buildType` is [`REFRESH_BUILD_TYPE`]). `what` names the statement in errors.
    pub fn from_predicate(predicate: &Value, what: &str) -> crate::Result<RefreshProvenance> {
        let bad = |reason: String| crate::Error::Input {
            what: what.to_string(),
            reason,
        };
        let build_def = &predicate["buildDefinition"];
        let build_type = build_def["buildType"].as_str().unwrap_or("");
        if build_type == BUILD_BUILD_TYPE {
            return Err(bad(format!(
                "buildType is {BUILD_BUILD_TYPE:?}: the image was built from a Dockerfile by `graft build`, which graft does not re-run; verify-provenance re-runs compat refreshes ({REFRESH_BUILD_TYPE:?}), as on the final image of a manifest with compat. Check this statement's signature with `graft verify-attestation` and its Dockerfile, source and bases by hand"
            )));
        }
        if build_type != REFRESH_BUILD_TYPE {
            return Err(bad(format!(
                "buildType is {build_type:?}, not {REFRESH_BUILD_TYPE:?} (a statement of another builder, or of a graft that did not record what a rebuild needs)"
            )));
        }
        let ext = &build_def["externalParameters"];
        let int = &build_def["internalParameters"];
        let text = |v: &Value, field: &str| -> crate::Result<String> {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{field} is missing or not a string")))
        };
        let opt_text = |v: &Value, field: &str| -> crate::Result<Option<String>> {
            match v {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(bad(format!("{field} is not a string"))),
            }
        };
        let digest_of = |v: &Value, field: &str| -> crate::Result<Digest> {
            let m = v
                .as_object()
                .filter(|m| m.len() == 1)
                .ok_or_else(|| bad(format!("{field} is not one digest")))?;
            let (alg, hex) = m
                .iter()
                .next()
                .ok_or_else(|| bad(format!("{field} is empty")))?;
            let hex = hex
                .as_str()
                .ok_or_else(|| bad(format!("{field}.{alg} is not a string")))?;
            format!("{alg}:{hex}")
                .parse::<Digest>()
                .map_err(|e| bad(format!("{field}: {e}")))
        };
        let library = match &ext["library"] {
            Value::Null => None,
            l => Some(LibrarySource {
                url: opt_text(&l["repository"], "externalParameters.library.repository")?,
                git_ref: text(&l["ref"], "externalParameters.library.ref")?,
                commit: text(&l["commit"], "externalParameters.library.commit")?,
                path: text(&l["path"], "externalParameters.library.path")?,
            }),
        };
        let epoch_of = |v: &Value, field: &str| -> crate::Result<Option<Timestamp>> {
            match v {
                Value::Null => Ok(None),
                v => v
                    .as_i64()
                    .map(|s| Some(Timestamp(s)))
                    .ok_or_else(|| bad(format!("{field} is not a whole number of seconds"))),
            }
        };
        let time_of = |v: &Value, field: &str| -> crate::Result<Timestamp> {
            let s = text(v, field)?;
            parse_rfc3339(&s).ok_or_else(|| {
                bad(format!(
                    "{field} {s:?} is not a time graft writes (YYYY-MM-DDTHH:MM:SSZ)"
                ))
            })
        };
        let mut out = RefreshProvenance {
            manifest_path: text(&ext["manifest"]["path"], "externalParameters.manifest.path")?,
            manifest_digest: digest_of(
                &ext["manifest"]["digest"],
                "externalParameters.manifest.digest",
            )?,
            library,
            build: BuildValues {
                build: opt_text(&ext["build"]["build"], "externalParameters.build.build")?,
                commit: opt_text(&ext["build"]["commit"], "externalParameters.build.commit")?,
                branch: opt_text(&ext["build"]["branch"], "externalParameters.build.branch")?,
            },
            created: time_of(&int["created"], "internalParameters.created")?,
            source_date_epoch: epoch_of(
                &ext["sourceDateEpoch"],
                "externalParameters.sourceDateEpoch",
            )?,
            repo_override: opt_text(&ext["repo"], "externalParameters.repo")?,
            science: String::new(),
            science_index: None,
            science_platforms: Vec::new(),
            compat_chain: Vec::new(),
            compat_layer: None,
            builder: BuilderInfo {
                id: text(
                    &predicate["runDetails"]["builder"]["id"],
                    "runDetails.builder.id",
                )?,
                invocation_id: opt_text(
                    &predicate["runDetails"]["metadata"]["invocationId"],
                    "runDetails.metadata.invocationId",
                )?,
            },
            graft_version: text(&int["graftVersion"], "internalParameters.graftVersion")?,
            started_on: time_of(
                &predicate["runDetails"]["metadata"]["startedOn"],
                "runDetails.metadata.startedOn",
            )?,
            finished_on: time_of(
                &predicate["runDetails"]["metadata"]["finishedOn"],
                "runDetails.metadata.finishedOn",
            )?,
        };
        let deps = match &build_def["resolvedDependencies"] {
            Value::Null => &[][..],
            Value::Array(a) => &a[..],
            _ => return Err(bad("resolvedDependencies is not a list".into())),
        };
        for (i, dep) in deps.iter().enumerate() {
            let field = format!("resolvedDependencies[{i}]");
            let name = dep["name"].as_str().unwrap_or("");
            match name {
                DEP_LIBRARY => {
                    let commit = text(
                        &dep["digest"]["gitCommit"],
                        &format!("{field}.digest.gitCommit"),
                    )?;
                    if out.library.as_ref().map(|l| &l.commit) != Some(&commit) {
                        return Err(bad(format!(
                            "{field}: the library dependency's gitCommit {commit} is not externalParameters.library.commit"
                        )));
                    }
                }
                DEP_SCIENCE_INDEX => {
                    out.science = text(&dep["uri"], &format!("{field}.uri"))?;
                    out.science_index =
                        Some(digest_of(&dep["digest"], &format!("{field}.digest"))?);
                }
                DEP_COMPAT_LAYER => {
                    out.compat_layer = Some(digest_of(&dep["digest"], &format!("{field}.digest"))?);
                    if let Some(chain) = dep["annotations"]["layers"].as_array() {
                        out.compat_chain = chain
                            .iter()
                            .map(|l| text(l, &format!("{field}.annotations.layers")))
                            .collect::<crate::Result<_>>()?;
                    }
                }
                n if n.starts_with(DEP_SCIENCE_PLATFORM) => {
                    let platform = n[DEP_SCIENCE_PLATFORM.len()..].to_string();
                    let d = digest_of(&dep["digest"], &format!("{field}.digest"))?;
                    if out.science.is_empty() {
                        // A science image that is not an index: its one manifest's reference.
                        let uri = text(&dep["uri"], &format!("{field}.uri"))?;
                        out.science = match uri.rsplit_once('@') {
                            Some((name, _)) => name.to_string(),
                            None => uri,
                        };
                    }
                    out.science_platforms.push((platform, d));
                }
                _ => {}
            }
        }
        if out.science.is_empty() {
            return Err(bad("no science image among resolvedDependencies".into()));
        }
        Ok(out)
    }
}

/// A base image of a `graft build`, as the statement records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildBase {
    /// The FROM reference after ARG substitution (as the Dockerfile and build args write it).
    pub reference: String,
    /// The digest it was built on: pinned by graft (a library base), or written in the FROM
    /// line; `None` for an external base given by tag (recorded as written).
    pub digest: Option<Digest>,
}

/// Where a build's Dockerfile and context came from, besides the library itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSource {
    /// `git.repo` without credentials ([`public_git_url`]); `None` for a local path.
    pub url: Option<String>,
    /// `git.commit` (the full hash the checkout was verified at).
    pub commit: String,
}

/// What `graft build` records about one image it built ([`BUILD_BUILD_TYPE`]): the manifest,
/// Dockerfile (path and content digest), context, target, platforms, build args and tags as
/// external parameters; the Dockerfile, the source (a `git.repo` checkout, else the library's
/// own commit) and every base as resolved dependencies. Nothing machine-specific: paths are
/// relative to the source, so the same build from two checkouts attests alike.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildProvenance {
    /// The library manifest file, relative to the library root.
    pub manifest_path: String,
    /// Content digest of that file.
    pub manifest_digest: Digest,
    /// The Dockerfile, relative to the source (the library, or the `git.repo` checkout).
    pub dockerfile: String,
    /// sha256 of the Dockerfile's bytes.
    pub dockerfile_digest: Digest,
    /// The build context, relative to the source.
    pub context: String,
    /// The stage built (`build.target`).
    pub target: Option<String>,
    /// Platforms built.
    pub platforms: Vec<String>,
    /// `build.args`.
    pub args: std::collections::BTreeMap<String, String>,
    /// Every reference written, as the library writes them.
    pub tags: Vec<String>,
    /// The `git.repo` source when the Dockerfile came from it.
    pub source: Option<BuildSource>,
    /// The library's repository and commit, when it is in git.
    pub library: Option<LibrarySource>,
    /// Base images of the stages built, in FROM order.
    pub bases: Vec<BuildBase>,
    /// The build values used.
    pub build: BuildValues,
    /// The images' time (the builder's `--timestamp`).
    pub created: Timestamp,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub source_date_epoch: Option<Timestamp>,
    /// `--repo`, as given, when it replaced graft.yaml's `repo`.
    pub repo_override: Option<String>,
    /// Who ran it.
    pub builder: BuilderInfo,
    /// Versions of what built it besides graft (`buildah` → `1.39.3`).
    pub builder_versions: Vec<(String, String)>,
    /// The builder graft drove: `buildah`, or `buildx` (`--from-metadata`).
    pub driver: String,
    /// graft's version.
    pub graft_version: String,
    /// When the run started.
    pub started_on: Timestamp,
    /// When this image was written.
    pub finished_on: Timestamp,
}

/// `resolvedDependencies` names of a build statement.
const DEP_DOCKERFILE: &str = "dockerfile";
const DEP_SOURCE: &str = "source";
const DEP_BASE: &str = "base:";

impl BuildProvenance {
    /// The provenance predicate builder for this build.
    pub fn provenance(&self) -> Provenance {
        let mut manifest = Map::new();
        manifest.insert("path".into(), json!(self.manifest_path));
        manifest.insert("digest".into(), digest_map(&self.manifest_digest));
        let mut dockerfile = Map::new();
        dockerfile.insert("path".into(), json!(self.dockerfile));
        dockerfile.insert("digest".into(), digest_map(&self.dockerfile_digest));
        let mut p = Provenance::new(BUILD_BUILD_TYPE, self.builder.clone())
            .external_parameter("manifest", Value::Object(manifest))
            .external_parameter("dockerfile", Value::Object(dockerfile))
            .external_parameter("context", json!(self.context));
        if let Some(t) = &self.target {
            p = p.external_parameter("target", json!(t));
        }
        p = p
            .external_parameter("platforms", json!(self.platforms))
            .external_parameter("buildArgs", json!(self.args))
            .external_parameter("tags", json!(self.tags));
        if let Some(s) = &self.source {
            let mut source = Map::new();
            if let Some(u) = &s.url {
                source.insert("repository".into(), json!(u));
            }
            source.insert("commit".into(), json!(s.commit));
            p = p.external_parameter("source", Value::Object(source));
        }
        p = p.run_parameters(
            self.library.as_ref(),
            &self.build,
            self.source_date_epoch,
            self.repo_override.as_deref(),
        );
        p = p
            .internal_parameter("created", json!(self.created.rfc3339()))
            .internal_parameter("builder", json!(self.driver))
            .internal_parameter("graftVersion", json!(self.graft_version))
            .builder_version("graft", &self.graft_version);
        for (component, version) in &self.builder_versions {
            p = p.builder_version(component, version);
        }
        p = p.dependency(
            ResourceDescriptor {
                uri: None,
                name: None,
                digest: vec![(
                    self.dockerfile_digest.algorithm().as_str().to_string(),
                    self.dockerfile_digest.hex().to_string(),
                )],
                annotations: Map::new(),
            }
            .named(DEP_DOCKERFILE)
            .annotate("path", json!(self.dockerfile)),
        );
        if let Some(s) = &self.source {
            let dep = match &s.url {
                Some(u) => ResourceDescriptor::git(u, &s.commit, &s.commit),
                None => ResourceDescriptor::commit(&s.commit),
            };
            p = p.dependency(dep.named(DEP_SOURCE));
        }
        if let Some(l) = &self.library {
            p = p.dependency(l.dependency());
        }
        for b in &self.bases {
            let dep = match &b.digest {
                Some(d) => ResourceDescriptor::oci(at_digest(untagged(&b.reference), d), d),
                None => ResourceDescriptor {
                    uri: Some(b.reference.clone()),
                    name: None,
                    digest: Vec::new(),
                    annotations: Map::new(),
                },
            };
            p = p.dependency(dep.named(format!("{DEP_BASE}{}", b.reference)));
        }
        p.started_on(self.started_on).finished_on(self.finished_on)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (what [`Timestamp::rfc3339`] writes) back to a [`Timestamp`];
/// anything else is `None`.
fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm, the inverse of the one that formats).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = Timestamp(days * 86_400 + hh * 3600 + mm * 60 + ss);
    // Out-of-range fields (month 13, second 61) do not survive the round trip.
    (t.rfc3339() == s).then_some(t)
}

/// The URL of a git remote as provenance may record it: credentials (`user:token@`), query
/// and fragment removed, scp-like `host:path` as `ssh://host/path`. `None` for a local path
/// or `file://` URL: it names a directory on one machine, which nobody else can fetch.
pub fn public_git_url(url: &str) -> Option<String> {
    let url = url.trim();
    let url = url.split(['?', '#']).next().unwrap_or(url);
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" || scheme.is_empty() {
            return None;
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.is_empty() {
            return None;
        }
        return Some(format!("{scheme}://{host}{path}"));
    }
    // scp-like `[user@]host:path` (no slash before the colon; not a Windows drive letter).
    let (head, path) = url.split_once(':')?;
    if head.contains('/') || head.contains('\\') {
        return None;
    }
    let host = head.rsplit_once('@').map_or(head, |(_, h)| h);
    if host.len() < 2 || path.is_empty() {
        return None;
    }
    Some(format!("ssh://{host}/{}", path.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn a_build_statement_records_dockerfile_source_bases_and_args() {
        let base = Digest::sha256(b"base");
        let p = BuildProvenance {
            manifest_path: "manifests/child.yaml".into(),
            manifest_digest: Digest::sha256(b"m"),
            dockerfile: "images/child/Dockerfile".into(),
            dockerfile_digest: Digest::sha256(b"FROM x"),
            context: "images/child".into(),
            target: Some("final".into()),
            platforms: vec!["linux/amd64".into()],
            args: [("GREETING".to_string(), "hi".to_string())].into(),
            tags: vec!["docker://r.example/lib/child:1.0".into()],
            source: Some(BuildSource {
                url: Some("https://git.example/sci/images".into()),
                commit: "c0ffee".into(),
            }),
            library: None,
            bases: vec![
                BuildBase {
                    reference: "r.example:5000/lib/base:1.0".into(),
                    digest: Some(base.clone()),
                },
                BuildBase {
                    reference: "debian:12".into(),
                    digest: None,
                },
            ],
            build: BuildValues::default(),
            created: Timestamp(0),
            source_date_epoch: Some(Timestamp(0)),
            repo_override: None,
            builder: BuilderInfo::local(),
            builder_versions: vec![("buildah".into(), "1.28.2".into())],
            driver: "buildah".into(),
            graft_version: "0.1.0".into(),
            started_on: Timestamp(0),
            finished_on: Timestamp(0),
        };
        let v = p.provenance().predicate();
        let bd = &v["buildDefinition"];
        assert_eq!(bd["buildType"], BUILD_BUILD_TYPE);
        assert_eq!(bd["externalParameters"]["buildArgs"]["GREETING"], "hi");
        assert_eq!(bd["externalParameters"]["target"], "final");
        assert_eq!(bd["externalParameters"]["source"]["commit"], "c0ffee");
        assert_eq!(bd["internalParameters"]["builder"], "buildah");
        let deps = bd["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps[0]["name"], "dockerfile");
        assert_eq!(deps[1]["uri"], "git+https://git.example/sci/images@c0ffee");
        assert_eq!(deps[1]["digest"]["gitCommit"], "c0ffee");
        assert_eq!(deps[2]["uri"], format!("r.example:5000/lib/base@{base}"));
        assert_eq!(deps[3]["uri"], "debian:12");
        assert!(deps[3].get("digest").is_none());
        assert_eq!(v["runDetails"]["builder"]["version"]["buildah"], "1.28.2");
        // verify-provenance refuses it, saying what it is.
        let e = RefreshProvenance::from_predicate(&v, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("graft build"), "{e}");
    }

    #[test]
    fn ci_builders() {
        let gh = BuilderInfo::from_ci_env(&env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "opencadc/canfar-library"),
            (
                "GITHUB_WORKFLOW_REF",
                "opencadc/canfar-library/.github/workflows/refresh.yml@refs/heads/main",
            ),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
        ]))
        .unwrap();
        assert_eq!(gh.id, "https://github.com/opencadc/canfar-library/.github/workflows/refresh.yml@refs/heads/main");
        assert_eq!(
            gh.invocation_id.as_deref(),
            Some("https://github.com/opencadc/canfar-library/actions/runs/42/attempts/2")
        );
        let gl = BuilderInfo::from_ci_env(&env(&[
            ("GITLAB_CI", "true"),
            ("CI_SERVER_URL", "https://gitlab.example"),
            ("CI_PROJECT_PATH", "sci/images"),
            ("CI_RUNNER_ID", "7"),
            ("CI_JOB_URL", "https://gitlab.example/sci/images/-/jobs/99"),
        ]))
        .unwrap();
        assert_eq!(gl.id, "https://gitlab.example/sci/images/-/runners/7");
        assert_eq!(
            gl.invocation_id.as_deref(),
            Some("https://gitlab.example/sci/images/-/jobs/99")
        );
        let jk = BuilderInfo::from_ci_env(&env(&[
            ("JENKINS_URL", "https://ci.example/"),
            ("JOB_NAME", "compat"),
            ("BUILD_URL", "https://ci.example/job/compat/5/"),
        ]))
        .unwrap();
        assert_eq!(jk.id, "https://ci.example/job/compat");
        assert_eq!(
            jk.invocation_id.as_deref(),
            Some("https://ci.example/job/compat/5/")
        );
        assert_eq!(BuilderInfo::from_ci_env(&env(&[])), None);
    }

    fn sample() -> RefreshProvenance {
        RefreshProvenance {
            manifest_path: "manifests/astro.yaml".into(),
            manifest_digest: Digest::sha256(b"m"),
            library: Some(LibrarySource {
                url: Some("https://github.com/opencadc/canfar-library".into()),
                git_ref: "refs/heads/main".into(),
                commit: "1234567890123456789012345678901234567890".into(),
                path: ".".into(),
            }),
            build: BuildValues {
                build: Some("7".into()),
                commit: Some("1234567".into()),
                branch: Some("main".into()),
            },
            created: Timestamp(1_700_000_000),
            source_date_epoch: Some(Timestamp(1_700_000_000)),
            repo_override: Some("oci:out/rel".into()),
            science: "oci:testdata/science/astro-base:1.0".into(),
            science_index: Some(Digest::sha256(b"i")),
            science_platforms: vec![
                ("linux/amd64".into(), Digest::sha256(b"a")),
                ("linux/arm64".into(), Digest::sha256(b"b")),
            ],
            compat_chain: vec!["platform-base".into(), "astro-compat".into()],
            compat_layer: Some(Digest::sha256(b"c")),
            builder: BuilderInfo::local(),
            graft_version: "0.1.0".into(),
            started_on: Timestamp(1_700_000_000),
            finished_on: Timestamp(1_700_000_060),
        }
    }

    #[test]
    fn deterministic_predicate() {
        let r = sample();
        let a = r
            .provenance()
            .statement("oci:out/rel/astro-notebook:1.0", &Digest::sha256(b"out"));
        let b = r
            .provenance()
            .statement("oci:out/rel/astro-notebook:1.0", &Digest::sha256(b"out"));
        assert_eq!(a.bytes, b.bytes);
        let v = &a.value["predicate"];
        assert_eq!(v["buildDefinition"]["buildType"], REFRESH_BUILD_TYPE);
        assert_eq!(
            v["runDetails"]["metadata"]["startedOn"],
            "2023-11-14T22:13:20Z"
        );
        let deps = v["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(deps.len(), 5);
        assert_eq!(
            deps[0],
            json!({"name": "library", "uri": "git+https://github.com/opencadc/canfar-library@refs/heads/main", "digest": {"gitCommit": "1234567890123456789012345678901234567890"}})
        );
        // As the manifest writes it: relative, not resolved against this machine's checkout.
        assert_eq!(deps[1]["uri"], "oci:testdata/science/astro-base:1.0");
        assert_eq!(
            deps[2]["uri"],
            format!(
                "oci:testdata/science/astro-base:1.0@{}",
                Digest::sha256(b"a")
            )
        );
        let ext = &v["buildDefinition"]["externalParameters"];
        assert_eq!(
            ext["build"],
            json!({"build": "7", "commit": "1234567", "branch": "main"})
        );
        assert_eq!(ext["sourceDateEpoch"], 1_700_000_000);
        assert_eq!(
            v["buildDefinition"]["internalParameters"]["created"],
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn reads_back_what_it_writes() {
        let mut r = sample();
        assert_eq!(
            RefreshProvenance::from_predicate(&r.provenance().predicate(), "s").unwrap(),
            r
        );
        // Outside a fetchable repository, no SOURCE_DATE_EPOCH, a science image without index.
        r.library.as_mut().unwrap().url = None;
        r.source_date_epoch = None;
        r.repo_override = None;
        r.build.branch = None;
        r.science_index = None;
        r.science_platforms.truncate(1);
        r.science_platforms[0].0 = "image".into();
        let p = r.provenance().predicate();
        assert_eq!(
            p["buildDefinition"]["resolvedDependencies"][0],
            json!({"name": "library", "digest": {"gitCommit": "1234567890123456789012345678901234567890"}})
        );
        assert_eq!(RefreshProvenance::from_predicate(&p, "s").unwrap(), r);
        // Another build type, a missing field, a bad digest: errors naming the field.
        let mut other = p.clone();
        other["buildDefinition"]["buildType"] = json!("https://graft.dev/buildtypes/refresh/v1");
        let e = RefreshProvenance::from_predicate(&other, "s").unwrap_err();
        assert!(e.to_string().contains("refresh/v1"), "{e}");
        assert!(e.is_usage());
        let mut missing = p.clone();
        missing["buildDefinition"]["externalParameters"]
            .as_object_mut()
            .unwrap()
            .remove("manifest");
        let e = RefreshProvenance::from_predicate(&missing, "s").unwrap_err();
        assert!(e.to_string().contains("manifest.path"), "{e}");
        let mut bad = p.clone();
        bad["buildDefinition"]["externalParameters"]["manifest"]["digest"] =
            json!({"sha256": "zz"});
        assert!(RefreshProvenance::from_predicate(&bad, "s").is_err());
        let mut time = p;
        time["buildDefinition"]["internalParameters"]["created"] = json!("2023-13-01T00:00:00Z");
        assert!(RefreshProvenance::from_predicate(&time, "s").is_err());
    }

    #[test]
    fn rfc3339_round_trips() {
        for t in [0, 951_782_400, 1_700_000_000, -1, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&Timestamp(t).rfc3339()), Some(Timestamp(t)));
        }
        for s in [
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20+00:00",
            "2023-02-30T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn git_urls_lose_credentials_and_local_paths() {
        for (url, public) in [
            (
                "https://github.com/org/lib.git",
                Some("https://github.com/org/lib.git"),
            ),
            (
                "https://user:ghp_secret@github.com/org/lib.git",
                Some("https://github.com/org/lib.git"),
            ),
            (
                "https://oauth2:tok@gitlab.example:8443/g/lib?private_token=x#frag",
                Some("https://gitlab.example:8443/g/lib"),
            ),
            (
                "git@github.com:org/lib.git",
                Some("ssh://github.com/org/lib.git"),
            ),
            ("ssh://git@host/org/lib", Some("ssh://host/org/lib")),
            ("/home/me/lib.git", None),
            ("../lib", None),
            ("file:///srv/lib.git", None),
            ("C:\\repos\\lib", None),
        ] {
            assert_eq!(public_git_url(url).as_deref(), public, "{url}");
        }
    }
}
