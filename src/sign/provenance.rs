//! SLSA provenance v1 (`https://slsa.dev/provenance/v1`) for images graft builds.
//!
//! [`Provenance`] is a small builder of the predicate; [`RefreshProvenance`] fills it with what
//! a compat refresh knows (manifest file and its digest, library repository and commit, refresh
//! options, science index and platform digests, compat layer digest). The builder identity
//! comes from [`BuilderInfo::from_ci_env`] (GitHub Actions, GitLab CI, Jenkins) or flags; times
//! are [`Timestamp`]s handed in by the binary (clock or `SOURCE_DATE_EPOCH`), so the statement
//! is reproducible when the inputs are.

use serde_json::{json, Map, Value};

use crate::oci::Digest;
use crate::sign::attach::SLSA_PROVENANCE_V1;
use crate::sign::dsse::Statement;
use crate::timestamp::Timestamp;

/// `buildType` of a graft compat refresh. Stable: describes the parameters below.
pub const REFRESH_BUILD_TYPE: &str = "https://graft.dev/buildtypes/refresh/v1";
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

    /// A git commit of a repository: `uri` `git+REPO@COMMIT`, digest `gitCommit`.
    pub fn git(repo: &str, commit: &str) -> ResourceDescriptor {
        let uri = if repo.starts_with("git+") {
            format!("{repo}@{commit}")
        } else {
            format!("git+{repo}@{commit}")
        };
        ResourceDescriptor {
            uri: Some(uri),
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

/// What a compat refresh records about itself.
#[derive(Debug, Clone)]
pub struct RefreshProvenance {
    /// The library manifest file (path as given, relative to the library root).
    pub manifest_path: String,
    /// Content digest of that file.
    pub manifest_digest: Digest,
    /// The library repository (URL), if known.
    pub library_repo: Option<String>,
    /// The library's git commit, if known.
    pub library_commit: Option<String>,
    /// The refresh options (flags) as a JSON object.
    pub options: Value,
    /// The science index: reference and digest.
    pub science_index: Option<(String, Digest)>,
    /// The science platform manifests: platform (`linux/amd64`) and digest.
    pub science_platforms: Vec<(String, Digest)>,
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

impl RefreshProvenance {
    /// The provenance predicate builder for this refresh.
    pub fn provenance(&self) -> Provenance {
        let mut manifest = Map::new();
        manifest.insert("path".into(), json!(self.manifest_path));
        let mut digest = Map::new();
        digest.insert(
            self.manifest_digest.algorithm().as_str().to_string(),
            json!(self.manifest_digest.hex()),
        );
        manifest.insert("digest".into(), Value::Object(digest));
        let mut library = Map::new();
        if let Some(r) = &self.library_repo {
            library.insert("repository".into(), json!(r));
        }
        if let Some(c) = &self.library_commit {
            library.insert("commit".into(), json!(c));
        }
        let mut p = Provenance::new(REFRESH_BUILD_TYPE, self.builder.clone())
            .external_parameter("manifest", Value::Object(manifest));
        if !library.is_empty() {
            p = p.external_parameter("library", Value::Object(library));
        }
        p = p
            .external_parameter("options", self.options.clone())
            .internal_parameter("graftVersion", json!(self.graft_version))
            .builder_version("graft", &self.graft_version);
        if let Some((reference, d)) = &self.science_index {
            p = p.dependency(
                ResourceDescriptor::oci(reference.clone(), d)
                    .named("science-index")
                    .annotate("mediaType", json!(crate::oci::media_types::OCI_INDEX)),
            );
        }
        for (platform, d) in &self.science_platforms {
            let uri = match &self.science_index {
                Some((r, _)) => format!("{}@{d}", r.split('@').next().unwrap_or(r)),
                None => d.to_string(),
            };
            p = p.dependency(
                ResourceDescriptor::oci(uri, d)
                    .named(format!("science-{platform}"))
                    .annotate("platform", json!(platform)),
            );
        }
        if let Some(d) = &self.compat_layer {
            p = p.dependency(ResourceDescriptor::oci(d.to_string(), d).named("compat-layer"));
        }
        if let (Some(r), Some(c)) = (&self.library_repo, &self.library_commit) {
            p = p.dependency(ResourceDescriptor::git(r, c).named("library"));
        }
        p.started_on(self.started_on).finished_on(self.finished_on)
    }
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

    #[test]
    fn deterministic_predicate() {
        let r = RefreshProvenance {
            manifest_path: "manifests/astro.yaml".into(),
            manifest_digest: Digest::sha256(b"m"),
            library_repo: Some("https://github.com/opencadc/canfar-library".into()),
            library_commit: Some("1234567890123456789012345678901234567890".into()),
            options: json!({"platforms": ["linux/amd64", "linux/arm64"]}),
            science_index: Some((
                "registry.example/sci/astro:1.0".into(),
                Digest::sha256(b"i"),
            )),
            science_platforms: vec![("linux/amd64".into(), Digest::sha256(b"a"))],
            compat_layer: Some(Digest::sha256(b"c")),
            builder: BuilderInfo::local(),
            graft_version: "0.1.0".into(),
            started_on: Timestamp(1_700_000_000),
            finished_on: Timestamp(1_700_000_060),
        };
        let a = r
            .provenance()
            .statement("registry.example/rel/astro", &Digest::sha256(b"out"));
        let b = r
            .provenance()
            .statement("registry.example/rel/astro", &Digest::sha256(b"out"));
        assert_eq!(a.bytes, b.bytes);
        let v = &a.value["predicate"];
        assert_eq!(v["buildDefinition"]["buildType"], REFRESH_BUILD_TYPE);
        assert_eq!(
            v["runDetails"]["metadata"]["startedOn"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            v["buildDefinition"]["resolvedDependencies"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }
}
