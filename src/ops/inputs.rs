//! The input digest of a refreshed image: one `sha256:` over everything a refresh takes from
//! its inputs, except the per-build breadcrumbs. `refresh` writes it as the annotation
//! [`INPUTS_ANNOTATION`] on every document it makes (the root included), and a later run that
//! computes the same digest, and finds it on the root its `{version}` tag points at, knows the
//! image is up to date without reading anything else (decisions §22).
//!
//! What counts: the science reference as written and its resolved root digest (the science
//! breadcrumbs and `org.opencontainers.image.base.name` come from them), the compat layer's
//! chain, blob digest, diff_id and media type (its bytes), the runtime config edits of the
//! chain (env in order, entrypoint, cmd, user, workdir, ports), the labels and annotations the
//! library adds, the selected platforms, `label_prefix` and the science `target`.
//!
//! What does not: `P.compat.version` and `P.compat.buildtime` (build number, commit, time) and
//! `org.opencontainers.image.created`. A run on a new, unrelated commit therefore computes the
//! same digest. The branch (`org.graft.branch`) does count: it is the same on every run of one
//! branch, and when two branches sanitise to one tag (`feat/a`, `feat+a`) the image must be
//! written again so that its annotation names the branch that made it last (`graft prune`
//! decides by it).
//!
//! The document is serialised by graft (structs in a fixed field order, maps sorted, compact
//! JSON), so the digest is stable; [`INPUTS_FORMAT`] changes whenever graft changes how it
//! assembles an image from the same inputs, which makes every image stale once.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::layer::LayerDigests;
use crate::library::template::{parse, Piece};
use crate::library::{Library, Manifest};
use crate::oci::Digest;

/// The annotation that records the input digest on what refresh writes.
pub const INPUTS_ANNOTATION: &str = "org.graft.inputs";

/// The version of the inputs document: bump it when graft changes how it assembles an image
/// from the same inputs (a different config edit, a new annotation), so that images written
/// by the older graft are not taken as up to date.
pub const INPUTS_FORMAT: &str = "graft.inputs/v1";

/// The annotations refresh adds per build, left out of the inputs (the branch annotation is
/// [`Inputs::branch`]).
const PER_BUILD_ANNOTATIONS: [&str; 2] = [
    "org.opencontainers.image.created",
    crate::library::branches::BRANCH_ANNOTATION,
];

/// Placeholders whose value changes with every build: a tag made with one of them never
/// names "the" current image.
const PER_BUILD_PLACEHOLDERS: [&str; 2] = ["build", "commit"];

/// Everything a refresh of one manifest takes from its inputs (see the module docs). Field
/// order is the order of the serialised document: do not reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inputs {
    /// [`INPUTS_FORMAT`].
    pub format: &'static str,
    /// The science image.
    pub science: ScienceInputs,
    /// The compat layer.
    pub compat: CompatInputs,
    /// The runtime config edits of the compat chain.
    pub config: ConfigInputs,
    /// Labels of every final config, without the per-build breadcrumbs.
    pub labels: BTreeMap<String, String>,
    /// Annotations of every final document, without the per-build ones.
    pub annotations: BTreeMap<String, String>,
    /// The platforms selected (empty: all of the science image's).
    pub platforms: Vec<String>,
    /// `graft.yaml`'s `label_prefix`.
    pub label_prefix: Option<String>,
    /// The branch the run is on, as git names it (`org.graft.branch`), if known.
    pub branch: Option<String>,
}

/// The science side of [`Inputs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScienceInputs {
    /// The reference as the manifest writes it (its tag is the science version breadcrumb).
    pub reference: String,
    /// Its root (index or manifest) digest, resolved now.
    pub digest: Digest,
    /// The science target of the breadcrumbs.
    pub target: String,
}

/// The compat side of [`Inputs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatInputs {
    /// The chain, includes first.
    pub chain: Vec<String>,
    /// The layer blob's digest.
    pub digest: Digest,
    /// The uncompressed tar's digest.
    pub diff_id: Digest,
    /// The layer's media type.
    pub media_type: String,
}

/// The runtime config edits of [`Inputs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigInputs {
    /// `NAME=value`, in the chain's order.
    pub env: Vec<String>,
    /// Entrypoint (`null`: kept; `[]`: cleared).
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    pub cmd: Option<Vec<String>>,
    /// User.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Exposed ports, sorted.
    pub ports: Vec<String>,
}

impl Inputs {
    /// The inputs of a refresh of `m` on the science root `science` with the compat layer
    /// `layer` (as built for this run), on `branch` (the run's `{branch}`).
    pub fn of(
        lib: &Library,
        m: &Manifest,
        science: &Digest,
        layer: &LayerDigests,
        branch: Option<&str>,
    ) -> Result<Inputs> {
        let compat = lib.compat(&m.compat)?;
        let settings = lib.settings();
        // The labels refresh writes, less the compat breadcrumbs (the only per-build labels).
        let mut labels = lib.label_preview(
            m,
            &crate::library::BuildInfo::default(),
            crate::timestamp::Timestamp::EPOCH,
        )?;
        if let Some(p) = &settings.label_prefix {
            labels.remove(&format!("{p}.compat.version"));
            labels.remove(&format!("{p}.compat.buildtime"));
        }
        let mut annotations = lib.annotations(m);
        for a in PER_BUILD_ANNOTATIONS {
            annotations.remove(a);
        }
        let platforms = if m.platforms.is_empty() {
            &settings.platforms
        } else {
            &m.platforms
        };
        let c = &compat.config;
        Ok(Inputs {
            format: INPUTS_FORMAT,
            science: ScienceInputs {
                reference: m.science.image.text.clone(),
                digest: science.clone(),
                target: m.science.target.clone(),
            },
            compat: CompatInputs {
                chain: compat.chain.clone(),
                digest: layer.digest.clone(),
                diff_id: layer.diff_id.clone(),
                media_type: layer.media_type.clone(),
            },
            config: ConfigInputs {
                env: c.env_strings(),
                entrypoint: c.entrypoint.clone(),
                cmd: c.cmd.clone(),
                user: c.user.clone(),
                workdir: c.workdir.clone(),
                ports: c.exposed_ports.iter().cloned().collect(),
            },
            labels,
            annotations,
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            label_prefix: settings.label_prefix.clone(),
            branch: branch.map(str::to_string),
        })
    }

    /// The canonical document: compact JSON in the structs' field order, maps sorted.
    pub fn document(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::internal("serialising the refresh inputs", e))
    }

    /// `sha256:` of [`Inputs::document`]: the value of [`INPUTS_ANNOTATION`].
    pub fn digest(&self) -> Result<Digest> {
        Ok(Digest::sha256(&self.document()?))
    }
}

/// Whether a tag template names a different tag on every build (`{build}`, `{commit}`):
/// such a tag never says which image is current, so it is never compared for "up to date",
/// and its old values are not orphans.
pub fn per_build(template: &str) -> bool {
    parse(template).is_ok_and(|pieces| {
        pieces
            .iter()
            .any(|p| matches!(p, Piece::Placeholder(n) if PER_BUILD_PLACEHOLDERS.contains(n)))
    })
}

/// The input digest recorded on a root document, if any.
pub fn recorded(annotations: Option<&BTreeMap<String, String>>) -> Option<Digest> {
    annotations?.get(INPUTS_ANNOTATION)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sample() -> Library {
        Library::open(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn layer() -> LayerDigests {
        LayerDigests {
            digest: d('a'),
            diff_id: d('b'),
            size: 100,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    fn sci(lib: &Library) -> &Manifest {
        lib.manifests_named("sci-notebook").next().unwrap()
    }

    /// The digest of the sample's sci-notebook on fixed science and layer digests. It moves
    /// only when the inputs document changes: then bump [`INPUTS_FORMAT`] if an old image
    /// must not pass as up to date.
    #[test]
    fn golden_digest_of_the_sample() {
        let lib = sample();
        let i = Inputs::of(&lib, sci(&lib), &d('c'), &layer(), None).unwrap();
        let doc = String::from_utf8(i.document().unwrap()).unwrap();
        assert!(
            doc.starts_with(r#"{"format":"graft.inputs/v1","science":{"reference":"oci:testdata/science/jupyter-sci:2.4","digest":"sha256:cccc"#),
            "{doc}"
        );
        assert!(
            doc.contains(r#""config":{"env":["GRAFT_PLATFORM=sample-jupyter","LANG=C.UTF-8","JUPYTER_PORT=8888"],"entrypoint":["/usr/local/bin/start.sh"],"cmd":["jupyter","lab"],"user":null,"workdir":"/home/jovyan","ports":["8888/tcp"]}"#),
            "{doc}"
        );
        assert!(
            doc.ends_with(
                r#""platforms":["linux/amd64","linux/arm64"],"label_prefix":"org.graft","branch":null}"#
            ),
            "{doc}"
        );
        assert_eq!(
            i.digest().unwrap().to_string(),
            "sha256:3630fe4dffb2cb050d1ced681ee4f45333759dd19e9787e3bfc5b39971bc0cd0"
        );
    }

    #[test]
    fn per_build_values_do_not_count() {
        let lib = sample();
        let m = sci(&lib);
        let i = Inputs::of(&lib, m, &d('c'), &layer(), None).unwrap();
        for key in ["org.graft.compat.version", "org.graft.compat.buildtime"] {
            assert!(!i.labels.contains_key(key), "{key}");
        }
        assert_eq!(
            i.labels["org.opencontainers.image.title"],
            "Science notebook"
        );
        assert_eq!(i.annotations["org.opencontainers.image.version"], "2.4");
        // A manifest that sets the per-build annotations itself: still left out.
        let mut m2 = m.clone();
        m2.annotations
            .insert("org.opencontainers.image.created".into(), "2020".into());
        m2.annotations.insert("org.graft.branch".into(), "x".into());
        assert_eq!(
            Inputs::of(&lib, &m2, &d('c'), &layer(), None)
                .unwrap()
                .digest()
                .unwrap(),
            i.digest().unwrap()
        );
    }

    #[test]
    fn every_input_counts() {
        let lib = sample();
        let m = sci(&lib);
        let base = Inputs::of(&lib, m, &d('c'), &layer(), None).unwrap();
        let digest = |i: &Inputs| i.digest().unwrap();
        let mut changed = Vec::new();
        // The science digest (a moved tag), the layer bytes, the layer's diff_id.
        changed.push(Inputs::of(&lib, m, &d('e'), &layer(), None).unwrap());
        let mut l = layer();
        l.digest = d('f');
        changed.push(Inputs::of(&lib, m, &d('c'), &l, None).unwrap());
        let mut l = layer();
        l.diff_id = d('f');
        changed.push(Inputs::of(&lib, m, &d('c'), &l, None).unwrap());
        // A manifest label, an annotation, the platforms, the science reference and target.
        let mut m2 = m.clone();
        m2.labels.insert("x".into(), "y".into());
        changed.push(Inputs::of(&lib, &m2, &d('c'), &layer(), None).unwrap());
        let mut m2 = m.clone();
        m2.annotations.insert("x".into(), "y".into());
        changed.push(Inputs::of(&lib, &m2, &d('c'), &layer(), None).unwrap());
        let mut m2 = m.clone();
        m2.platforms.pop();
        changed.push(Inputs::of(&lib, &m2, &d('c'), &layer(), None).unwrap());
        let mut m2 = m.clone();
        m2.science.target = "other".into();
        changed.push(Inputs::of(&lib, &m2, &d('c'), &layer(), None).unwrap());
        let mut m2 = m.clone();
        m2.version = "2.5".into();
        changed.push(Inputs::of(&lib, &m2, &d('c'), &layer(), None).unwrap());
        // Each config edit, alone.
        let mut c = base.clone();
        c.config.env[0] = "GRAFT_PLATFORM=other".into();
        changed.push(c);
        let mut c = base.clone();
        c.config.entrypoint = Some(Vec::new());
        changed.push(c);
        let mut c = base.clone();
        c.config.cmd = None;
        changed.push(c);
        let mut c = base.clone();
        c.config.user = Some("1000".into());
        changed.push(c);
        let mut c = base.clone();
        c.config.workdir = None;
        changed.push(c);
        let mut c = base.clone();
        c.config.ports.clear();
        changed.push(c);
        let mut c = base.clone();
        c.label_prefix = None;
        changed.push(c);
        // The branch: two branches that sanitise to one tag must not share an image.
        changed.push(Inputs::of(&lib, m, &d('c'), &layer(), Some("feat/a")).unwrap());
        changed.push(Inputs::of(&lib, m, &d('c'), &layer(), Some("feat+a")).unwrap());
        let mut seen = vec![digest(&base)];
        for (n, c) in changed.iter().enumerate() {
            let dg = digest(c);
            assert!(!seen.contains(&dg), "change {n} did not change the digest");
            seen.push(dg);
        }
    }

    #[test]
    fn per_build_templates() {
        assert!(per_build("{version}-{build}-{commit}"));
        assert!(per_build("{commit}"));
        assert!(!per_build("{version}"));
        assert!(!per_build("{version}-{branch}"));
        assert!(!per_build("latest"));
        let ann = BTreeMap::from([(INPUTS_ANNOTATION.to_string(), d('a').to_string())]);
        assert_eq!(recorded(Some(&ann)), Some(d('a')));
        assert_eq!(recorded(None), None);
        let bad = BTreeMap::from([(INPUTS_ANNOTATION.to_string(), "x".to_string())]);
        assert_eq!(recorded(Some(&bad)), None);
    }
}
