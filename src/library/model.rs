//! The library's typed values: `graft.yaml` ([`Settings`]), one [`Manifest`] per file under
//! `manifests/`, one [`Layer`] per directory under `layers/`. Each keeps the file it came
//! from, for messages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::oci::{Digest, Platform};
use crate::reference::ImageRef;

/// The default target template: `{repo}/{name}`.
pub const DEFAULT_TARGET: &str = "{repo}/{name}";

/// The default repository template of built science images that get a compat layer:
/// `{repo}/sci/{name}` (SciServer's layout).
pub const DEFAULT_SCIENCE_TARGET: &str = "{repo}/sci/{name}";

/// The default `build.tags` of a manifest that builds its science image.
pub const DEFAULT_BUILD_TAGS: [&str; 1] = ["{version}"];

/// The default tag templates.
pub const DEFAULT_TAGS: [&str; 2] = ["{version}", "{version}-{build}-{commit}"];

/// The default `git.fetch`.
pub const DEFAULT_FETCH: &str = "refs/heads/main";

/// `graft.yaml`: settings shared by every manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The file (`ROOT/graft.yaml`).
    pub file: PathBuf,
    /// Default destination prefix, as written (`docker://…`, `oci:DIR`).
    pub repo: String,
    /// Template of a final image's repository (`{repo}`, `{name}`).
    pub target: String,
    /// Template of the repository a built science image goes to when its manifest also has a
    /// compat layer (`{repo}`, `{name}`).
    pub science_target: String,
    /// Prefix of breadcrumb labels; none means no breadcrumbs.
    pub label_prefix: Option<String>,
    /// Default platforms (empty: every platform of the science image).
    pub platforms: Vec<Platform>,
    /// Default tag templates.
    pub tags: Vec<String>,
    /// Globs of files whose changes never trigger a rebuild (`--changed-since`): docs, tests.
    pub change_ignore: Vec<String>,
    /// Globs of files whose changes rebuild every image (`--changed-since`): shared scripts.
    /// `graft.yaml` always does.
    pub rebuild_all: Vec<String>,
    /// The default branch (`default_branch`); none means the remote's HEAD.
    pub default_branch: Option<String>,
    /// What branches other than the default write (`branches:`), first match wins; none
    /// matching means [`super::branches::OTHER_BRANCH_TAGS`].
    pub branches: Vec<super::branches::BranchRule>,
    /// `factory.namespace`: the Kubernetes namespace of the library's Kargo Warehouses
    /// (`graft factory warehouses --library`).
    pub factory_namespace: Option<String>,
    /// `factory.rebuild_delay` as written (`7d`); checked by the schema, parsed by the factory.
    pub factory_rebuild_delay: Option<String>,
    /// `factory.auto_rebuild`.
    pub factory_auto_rebuild: Option<bool>,
}

/// One maintainer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Maintainer {
    /// Full name.
    pub name: String,
    /// E-mail address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// GitHub user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<String>,
}

/// Catalogue metadata of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    /// A stable identifier of the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// The project it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// The source an image is built from: what provenance cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitSource {
    /// Repository URL.
    pub repo: String,
    /// The ref fetched (default `refs/heads/main`).
    pub fetch: String,
    /// The full commit hash, if pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A reference as written in a file plus the same reference resolved against the library
/// root (relative `oci:`/`oci-archive:` paths become absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// As written (stable across machines: what plans and messages show).
    pub text: String,
    /// Resolved, ready for [`crate::store::open::open_source`] or `open_sink`.
    pub image: ImageRef,
}

impl Serialize for Located {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// The science image of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Science {
    /// The image reference.
    pub image: Located,
    /// Breadcrumb name (default: last path element of the repository or layout directory).
    pub target: String,
    /// The digest the science image must resolve to, if pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// How graft builds a science image from a Dockerfile (a manifest's `build:`, canfar's
/// block). Paths are as written, relative to the source: the git checkout when the manifest
/// has `git:`, else the library root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Build {
    /// The image's directory in the source (`.` by default).
    pub path: String,
    /// The Dockerfile, relative to `path` (`Dockerfile` by default).
    pub dockerfile: String,
    /// The build context, relative to `path` (`.` by default).
    pub context: String,
    /// Platforms to build: `build.platforms`, else the manifest's, else `graft.yaml`'s.
    pub platforms: Vec<Platform>,
    /// Tag templates of the built image (default [`DEFAULT_BUILD_TAGS`]).
    pub tags: Vec<String>,
    /// Labels of the built image's config (`build.labels`).
    pub labels: BTreeMap<String, String>,
    /// Annotations of the built image (`build.annotations`).
    pub annotations: BTreeMap<String, String>,
    /// A command that must succeed inside the built image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Build arguments: they override ARG defaults, in FROM lines too.
    pub args: BTreeMap<String, String>,
    /// The Dockerfile stage to build; none: the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Build {
    /// `path/dockerfile`, normalised (`./` and empty components dropped), relative to the source.
    pub fn dockerfile_path(&self) -> String {
        join_rel(&self.path, &self.dockerfile)
    }

    /// `path/context`, normalised, relative to the source.
    pub fn context_path(&self) -> String {
        join_rel(&self.path, &self.context)
    }
}

/// `a/b` without `.` or empty components; `.` when nothing is left.
fn join_rel(a: &str, b: &str) -> String {
    let parts: Vec<&str> = a
        .split('/')
        .chain(b.split('/'))
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match parts.is_empty() {
        true => ".".to_string(),
        false => parts.join("/"),
    }
}

/// One final image (`manifests/<file>.yaml`), with defaults from `graft.yaml` applied.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The file.
    pub file: PathBuf,
    /// The sha256 of the file's bytes as read when the library was loaded: what provenance
    /// names (the file may change on disk while graft works).
    #[serde(skip)]
    pub file_digest: Digest,
    /// The file relative to the library root (`manifests/astro.yaml`).
    pub rel: String,
    /// Final image name.
    pub name: String,
    /// Version (`{version}`), as written.
    pub version: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Maintainers.
    pub maintainers: Vec<Maintainer>,
    /// Catalogue metadata.
    pub metadata: Metadata,
    /// Source repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// The science image refresh reads: as written under `science:`; for a manifest with
    /// `build:`, where graft writes the built image (`{science_target}:{version}` with a
    /// compat layer, else the final `{target}:{version}`).
    pub science: Science,
    /// Commands that must succeed inside the built image (`checks:`, DataHub's `info_cmds`),
    /// run after `build.test`; only meaningful with `build:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// How graft builds the science image (`build:`); none for an existing image (`science:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// Name of the compat layer (a directory under `layers/`); empty only for a manifest with
    /// `build:` and no compat, whose built image is the final image ([`Manifest::compat_layer`]).
    pub compat: String,
    /// Platforms to produce: the manifest's, else `graft.yaml`'s; empty means all of the
    /// science image's.
    pub platforms: Vec<Platform>,
    /// Tag templates: the manifest's, else `graft.yaml`'s, else [`DEFAULT_TAGS`].
    pub tags: Vec<String>,
    /// Labels for the final configs (win over the compat layer's).
    pub labels: BTreeMap<String, String>,
    /// Annotations for the final manifests and index.
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The compat layer's name, if the manifest has one (every `science:` manifest does).
    pub fn compat_layer(&self) -> Option<&str> {
        (!self.compat.is_empty()).then_some(self.compat.as_str())
    }
}

/// Image config settings of a layer (or of a merged chain of layers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageConfig {
    /// Environment, in order of first definition; a later layer replaces a variable's value.
    /// Serialised as OCI `Env` strings (`NAME=value`).
    #[serde(serialize_with = "env_strings")]
    pub env: Vec<(String, String)>,
    /// Entrypoint (exec form); `Some(vec![])` clears the science image's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd (exec form); `Some(vec![])` clears the science image's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// User (`name`, `uid`, `uid:gid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Exposed ports, normalised to `PORT/PROTO` (`8888/tcp`).
    pub exposed_ports: BTreeSet<String>,
}

fn env_strings<S: serde::Serializer>(env: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(env.iter().map(|(k, v)| format!("{k}={v}")))
}

impl ImageConfig {
    /// `Env` entries as the OCI config writes them: `NAME=value`.
    pub fn env_strings(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// Apply `later` on top of `self`: env by variable name, labels by key, ports added,
    /// entrypoint, cmd, user and workdir replaced when `later` sets them.
    pub fn merge(&mut self, later: &ImageConfig) {
        for (k, v) in &later.env {
            match self.env.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.clone(),
                None => self.env.push((k.clone(), v.clone())),
            }
        }
        if later.entrypoint.is_some() {
            self.entrypoint = later.entrypoint.clone();
        }
        if later.cmd.is_some() {
            self.cmd = later.cmd.clone();
        }
        if later.user.is_some() {
            self.user = later.user.clone();
        }
        if later.workdir.is_some() {
            self.workdir = later.workdir.clone();
        }
        for (k, v) in &later.labels {
            self.labels.insert(k.clone(), v.clone());
        }
        self.exposed_ports
            .extend(later.exposed_ports.iter().cloned());
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == ImageConfig::default()
    }
}

/// One compat layer (`layers/<name>/layer.yaml` and `layers/<name>/files/`), as written:
/// includes not applied (see [`super::CompatLayer`] for the resolved chain).
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// The layer's name (its directory name).
    pub name: String,
    /// The directory `layers/<name>`.
    pub dir: PathBuf,
    /// `layers/<name>/layer.yaml`.
    pub file: PathBuf,
    /// The file relative to the library root.
    pub rel: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Layers applied before this one, in order.
    pub includes: Vec<String>,
    /// Config settings.
    pub config: ImageConfig,
    /// Absolute image paths to delete (whiteouts).
    pub remove: Vec<String>,
    /// uid and gid of every entry, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<(u32, u32)>,
    /// Absolute image path → mode.
    pub modes: BTreeMap<String, u32>,
    /// `layers/<name>/files`, if it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<PathBuf>,
}

/// Parse an octal mode as written (`0755`, `755`, `0o755`).
pub fn parse_mode(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("0o").unwrap_or(t);
    if t.is_empty() || t.len() > 5 {
        return None;
    }
    u32::from_str_radix(t, 8).ok().filter(|m| *m <= 0o7777)
}

/// Parse an owner as written (`1000:100`, `1000` meaning `1000:1000`).
pub fn parse_owner(text: &str) -> Option<(u32, u32)> {
    match text.split_once(':') {
        Some((u, g)) => Some((u.parse().ok()?, g.parse().ok()?)),
        None => {
            let u = text.parse().ok()?;
            Some((u, u))
        }
    }
}

/// Normalise an exposed port (`8888` → `8888/tcp`).
pub fn normalize_port(text: &str) -> String {
    if text.contains('/') {
        text.to_string()
    } else {
        format!("{text}/tcp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0755"), Some(0o755));
        assert_eq!(parse_mode("755"), Some(0o755));
        assert_eq!(parse_mode("0o4755"), Some(0o4755));
        assert_eq!(parse_mode("493"), None);
        assert_eq!(parse_mode("77777"), None);
    }

    #[test]
    fn build_paths_are_joined_and_normalised() {
        let b = Build {
            path: "images/python".into(),
            dockerfile: "Dockerfile".into(),
            context: ".".into(),
            ..Build::default()
        };
        assert_eq!(b.dockerfile_path(), "images/python/Dockerfile");
        assert_eq!(b.context_path(), "images/python");
        let b = Build {
            path: "./".into(),
            dockerfile: "./x//Dockerfile".into(),
            context: ".".into(),
            ..Build::default()
        };
        assert_eq!(b.dockerfile_path(), "x/Dockerfile");
        assert_eq!(b.context_path(), ".");
    }

    #[test]
    fn owners() {
        assert_eq!(parse_owner("1000:100"), Some((1000, 100)));
        assert_eq!(parse_owner("7"), Some((7, 7)));
        assert_eq!(parse_owner("a:b"), None);
    }

    #[test]
    fn config_merge_in_order() {
        let mut a = ImageConfig {
            env: vec![("A".into(), "1".into()), ("B".into(), "2".into())],
            entrypoint: Some(vec!["/a".into()]),
            labels: [("x".to_string(), "1".to_string())].into(),
            ..ImageConfig::default()
        };
        let b = ImageConfig {
            env: vec![("B".into(), "3".into()), ("C".into(), "4".into())],
            cmd: Some(vec![]),
            labels: [
                ("x".to_string(), "2".to_string()),
                ("y".to_string(), "3".to_string()),
            ]
            .into(),
            exposed_ports: ["8888/tcp".to_string()].into(),
            ..ImageConfig::default()
        };
        a.merge(&b);
        assert_eq!(
            a.env,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "3".to_string()),
                ("C".to_string(), "4".to_string())
            ]
        );
        assert_eq!(a.entrypoint, Some(vec!["/a".to_string()]));
        assert_eq!(a.cmd, Some(vec![]));
        assert_eq!(a.labels["x"], "2");
        assert_eq!(a.exposed_ports.len(), 1);
    }
}
