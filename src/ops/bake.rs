//! BuildKit as the builder: `graft plan --bake FILE` writes a `docker-bake.json` for the
//! library's `build:` images, and `graft build --from-metadata FILE` takes over from buildx's
//! `--metadata-file` once `docker buildx bake --push` has pushed them.
//!
//! graft does not run buildx (it cannot be installed where graft is tested); it writes the
//! file buildx documents (`https://docs.docker.com/build/bake/reference/`) and reads the file
//! buildx writes. Between the two, buildx has pushed every target to the tags the bake file
//! names; graft checks each pushed digest against the registry before it writes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::library::order::{BuildStep, SourceState};
use crate::library::{BuildInfo, Library, Located};
use crate::oci::Digest;
use crate::ops::build::{destinations, refresh_built, step_manifest, BuildReport, BuiltImage};
use crate::progress::Reporter;
use crate::reference::{DockerRef, ImageRef};
use crate::store::open::{open_source, Endpoint};
use crate::timestamp::Timestamp;

/// buildx's own attestations, off: graft writes provenance itself, and an attestation
/// manifest in the index would move the digest on every build. An empty `attest` list is not
/// enough (buildx then adds its default `mode=min` provenance), so both are disabled.
const ATTEST_OFF: [&str; 2] = ["type=provenance,disabled=true", "type=sbom,disabled=true"];

/// A bake file and what it could not pin.
#[derive(Debug, Clone)]
pub struct BakeFile {
    /// The `docker-bake.json` document (keys sorted).
    pub document: Value,
    /// Library bases outside the bake left unpinned (resolution skipped): `FROM` as expanded.
    pub unpinned: Vec<String>,
}

impl BakeFile {
    /// The file's bytes: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(&self.document)
            .map_err(|e| Error::internal("serialising the bake file", e))?;
        out.push(b'\n');
        Ok(out)
    }
}

/// The bake target name of an image: bake allows `[a-zA-Z0-9_-]`; anything else becomes `_`.
pub fn target_name(name: &str) -> String {
    name.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            },
        )
        .collect()
}

/// `to` relative to the directory `from` (both relative to the library root, `/`-separated,
/// without `..`: the loader refuses those).
fn relative_to(to: &str, from: &str) -> String {
    let parts = |p: &str| -> Vec<String> {
        Path::new(p)
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    };
    let (t, f) = (parts(to), parts(from));
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut out: Vec<String> = vec!["..".to_string(); f.len() - common];
    out.extend(t[common..].iter().cloned());
    out.join("/")
}

/// The registry reference of a destination (bake pushes to registries only).
fn registry_ref(l: &Located, manifest: &str) -> Result<DockerRef> {
    match &l.image {
        ImageRef::Docker(d) => Ok(d.clone()),
        _ => Err(Error::Unsupported(format!(
            "{manifest}: {} is not a registry reference; a bake file pushes to registries only",
            l.text
        ))),
    }
}

/// A child FROM the final image of a base with compat cannot be in the base's bake: the bake
/// builds the science image, and the compat layer is added only afterwards (`--from-metadata`).
fn refuse_final_of_compat(
    lib: &Library,
    base_step: &BuildStep,
    base: &crate::library::order::BaseImage,
    child: &str,
    build: &BuildInfo,
) -> Result<()> {
    let Some(bm) = lib.manifests().iter().find(|x| x.rel == base_step.manifest) else {
        return Ok(());
    };
    if bm.compat_layer().is_none() {
        return Ok(());
    }
    let from = DockerRef::parse(&base.expanded)?.name();
    let science = destinations(lib, bm, build)?
        .first()
        .and_then(|l| match &l.image {
            ImageRef::Docker(d) => Some(d.name()),
            _ => None,
        });
    if science.as_deref() == Some(from.as_str()) {
        return Ok(());
    }
    Err(Error::Unsupported(format!(
        "{child}: its base {} is {}'s final image, which gets its compat layer after the bake (graft build --from-metadata): bake {} first, or name its science image {} in the FROM",
        base.expanded,
        bm.rel,
        bm.name,
        science.unwrap_or_default()
    )))
}

/// The bake file for `steps` (in build order, as `graft plan` selected them). A library base
/// built in the same bake becomes `contexts: {FROM: "target:NAME"}`; one outside it is pinned
/// as `docker-image://REPO@DIGEST`, its tag resolved once through `ep` (None: left unpinned,
/// the builder pulls the tag the Dockerfile names).
pub async fn bake_file(
    lib: &Library,
    steps: &[BuildStep],
    build: &BuildInfo,
    ep: Option<&Endpoint>,
) -> Result<BakeFile> {
    let in_bake: BTreeMap<&str, &BuildStep> =
        steps.iter().map(|s| (s.manifest.as_str(), s)).collect();
    let mut targets = serde_json::Map::new();
    let mut names = Vec::new();
    let mut unpinned = Vec::new();
    let mut resolved: BTreeMap<String, String> = BTreeMap::new();
    for step in steps {
        let m = step_manifest(lib, step)?;
        let Some(b) = &m.build else {
            return Err(Error::Unsupported(format!("{} has no build:", m.rel)));
        };
        if step.source == SourceState::NotFetched {
            return Err(Error::Unsupported(format!(
                "{}: the Dockerfile {} is in git.repo, which is not checked out in the library: a bake file needs it in the build context",
                m.rel, step.dockerfile
            )));
        }
        let name = target_name(&m.name);
        if targets.contains_key(&name) {
            return Err(Error::Unsupported(format!(
                "{}: the bake target {name} is also another manifest's: one build per image name",
                m.rel
            )));
        }
        let mut tags = Vec::new();
        for l in destinations(lib, m, build)? {
            tags.push(registry_ref(&l, &m.rel)?.to_string());
        }
        let mut contexts = BTreeMap::new();
        for base in &step.bases {
            let Some(library) = &base.library else {
                continue;
            };
            // BuildKit looks a named context up by the FROM name after ARG substitution.
            let value = match in_bake.get(library.as_str()) {
                Some(s) => {
                    refuse_final_of_compat(lib, s, base, &m.rel, build)?;
                    format!("target:{}", target_name(&s.name))
                }
                None => match ep {
                    None => {
                        if !unpinned.contains(&base.expanded) {
                            unpinned.push(base.expanded.clone());
                        }
                        continue;
                    }
                    Some(ep) => {
                        if let Some(v) = resolved.get(&base.expanded) {
                            v.clone()
                        } else {
                            let r = DockerRef::parse(&base.expanded)?;
                            let src = open_source(&ImageRef::Docker(r.clone()), ep)
                                .await
                                .map_err(|e| {
                                    e.context(format!(
                                        "{}: resolving its base {} ({library}, not in this bake)",
                                        m.rel, base.expanded
                                    ))
                                })?;
                            let d = src.resolve_digest().await.map_err(|e| {
                                e.context(format!(
                                    "{}: resolving its base {} ({library}, not in this bake)",
                                    m.rel, base.expanded
                                ))
                            })?;
                            let v = format!("docker-image://{}@{d}", r.name());
                            resolved.insert(base.expanded.clone(), v.clone());
                            v
                        }
                    }
                },
            };
            contexts.insert(base.expanded.clone(), value);
        }
        let annotations: Vec<String> = lib
            .build_annotations(m)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut t = BTreeMap::new();
        t.insert("annotations", json!(annotations));
        t.insert("args", json!(b.args));
        t.insert("attest", json!(ATTEST_OFF));
        t.insert("context", json!(step.context));
        if !contexts.is_empty() {
            t.insert("contexts", json!(contexts));
        }
        t.insert(
            "dockerfile",
            json!(relative_to(&step.dockerfile, &step.context)),
        );
        t.insert("labels", json!(lib.build_labels(m)));
        t.insert("output", json!(["type=registry"]));
        if !step.platforms.is_empty() {
            t.insert("platforms", json!(step.platforms));
        }
        t.insert("tags", json!(tags));
        if let Some(stage) = &b.target {
            t.insert("target", json!(stage));
        }
        targets.insert(name.clone(), json!(t));
        names.push(name);
    }
    names.sort();
    let sorted: BTreeMap<String, Value> = targets.into_iter().collect();
    let document = json!({
        "group": {"default": {"targets": names}},
        "target": sorted,
    });
    Ok(BakeFile { document, unpinned })
}

/// One target of buildx's `--metadata-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The bake target.
    pub target: String,
    /// `containerimage.digest`: the pushed image (index or manifest).
    pub digest: Digest,
    /// `image.name`, split at commas.
    pub names: Vec<String>,
}

/// Read buildx's metadata file: a JSON object keyed by target name, each with
/// `containerimage.digest` (and optionally `containerimage.descriptor`, whose digest must then
/// agree) and `image.name`. Other top-level keys that are not objects (`buildx.build.warnings`
/// is a list) are not targets. Errors are bad input (exit 2) naming the file and the target.
pub fn parse_metadata(bytes: &[u8], file: &Path) -> Result<Vec<Pushed>> {
    let bad = |reason: String| Error::Input {
        what: format!("the buildx metadata file {}", file.display()),
        reason,
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object keyed by bake target".into()))?;
    let mut out = Vec::new();
    for (target, entry) in obj {
        let Some(e) = entry.as_object() else {
            continue;
        };
        if target.starts_with("buildx.") {
            continue;
        }
        let text = e
            .get("containerimage.digest")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("target {target:?} has no containerimage.digest")))?;
        let digest: Digest = text.parse().map_err(|_| {
            bad(format!(
                "target {target:?}: containerimage.digest {text:?} is not a digest"
            ))
        })?;
        if let Some(d) = e
            .get("containerimage.descriptor")
            .and_then(|d| d.get("digest"))
            .and_then(Value::as_str)
        {
            if d != text {
                return Err(bad(format!(
                    "target {target:?}: containerimage.descriptor.digest {d} is not containerimage.digest {text}"
                )));
            }
        }
        let names = e
            .get("image.name")
            .and_then(Value::as_str)
            .map(|n| n.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        out.push(Pushed {
            target: target.clone(),
            digest,
            names,
        });
    }
    if out.is_empty() {
        return Err(bad("no target in it".into()));
    }
    Ok(out)
}

/// How `graft build --from-metadata` continues.
#[derive(Debug, Clone)]
pub struct FromMetadataOptions {
    /// `{build}`, `{commit}`, `{branch}` (the same as the bake file's).
    pub build: BuildInfo,
    /// The refresh's `created`.
    pub created: Timestamp,
    /// Concurrent blob transfers.
    pub jobs: usize,
    /// A directory for the refresh's files.
    pub work_dir: PathBuf,
    /// Sign (and attest) each image once it is written: the pushed image with the build
    /// statement (builder `buildx`), the final image of a manifest with compat with the
    /// refresh's.
    pub signing: Option<crate::ops::refresh::Signing>,
    /// The time a statement is finished (the binary's clock).
    pub clock: crate::ops::build_sign::Clock,
}

/// Continue after `docker buildx bake --push --metadata-file FILE`: every target of the file
/// (or only those of `names`) is matched to its `build:` manifest, each of its tags is
/// resolved in the registry and must be the pushed digest (all checked before anything is
/// written), then manifests with compat are refreshed as after `graft build`.
pub async fn from_metadata(
    lib: &Library,
    metadata: &Path,
    names: &[String],
    opts: &FromMetadataOptions,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<BuildReport> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(metadata)
        .and_then(|f| {
            f.take(crate::library::load::MAX_FILE_BYTES)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| Error::Input {
            what: format!("the buildx metadata file {}", metadata.display()),
            reason: e.to_string(),
        })?;
    let pushed = parse_metadata(&bytes, metadata)?;
    let order = lib.build_order();
    let by_target: BTreeMap<String, &BuildStep> = order
        .builds
        .iter()
        .map(|s| (target_name(&s.name), s))
        .collect();
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    for n in &wanted {
        if !pushed.iter().any(|p| p.target == target_name(n)) {
            return Err(Error::Input {
                what: format!("the buildx metadata file {}", metadata.display()),
                reason: format!("no target {:?} in it (image {n})", target_name(n)),
            });
        }
    }
    let mut selected: Vec<(&BuildStep, &Pushed)> = Vec::new();
    for p in &pushed {
        let step = by_target.get(&p.target).ok_or_else(|| Error::Input {
            what: format!("the buildx metadata file {}", metadata.display()),
            reason: format!(
                "target {:?} is no build: manifest of the library {}",
                p.target,
                lib.root().display()
            ),
        })?;
        if wanted.is_empty() || wanted.contains(step.name.as_str()) {
            selected.push((step, p));
        }
    }
    // Build order, so a child's refresh follows its base's.
    selected.sort_by_key(|(s, _)| order.builds.iter().position(|b| b.manifest == s.manifest));
    // Everything is verified before anything is written.
    let mut images = Vec::new();
    for (step, p) in &selected {
        let m = step_manifest(lib, step)?;
        let refs = destinations(lib, m, &opts.build)?;
        for l in &refs {
            let r = registry_ref(l, &m.rel)?;
            let src = open_source(&ImageRef::Docker(r), ep).await.map_err(|e| {
                e.context(format!("{}: reading {} pushed by buildx", m.rel, l.text))
            })?;
            let found = src.resolve_digest().await.map_err(|e| {
                e.context(format!("{}: reading {} pushed by buildx", m.rel, l.text))
            })?;
            if found != p.digest {
                return Err(Error::DigestMismatch {
                    what: format!(
                        "{} (target {} of {}): the registry's {}",
                        m.rel,
                        p.target,
                        metadata.display(),
                        l.text
                    ),
                    expected: p.digest.clone(),
                    found,
                });
            }
        }
        images.push((m, refs, p.digest.clone()));
    }
    let mut out = Vec::new();
    let driver = crate::ops::build_sign::Driver {
        name: "buildx",
        // The metadata file does not say which BuildKit built the image.
        versions: Vec::new(),
    };
    for ((m, refs, digest), (step, _)) in images.into_iter().zip(&selected) {
        let refresh = match m.compat_layer() {
            None => None,
            Some(_) => {
                let work = opts.work_dir.join(format!("refresh-{}", m.name));
                refresh_built(
                    lib,
                    m,
                    &opts.build,
                    opts.created,
                    opts.jobs,
                    &work,
                    ep,
                    reporter,
                )
                .await?
            }
        };
        let mut image = BuiltImage {
            name: m.name.clone(),
            version: m.version.clone(),
            manifest: m.rel.clone(),
            digest: Some(digest),
            references: refs.iter().map(|r| r.text.clone()).collect(),
            platforms: Vec::new(),
            bases: Vec::new(),
            tests: Vec::new(),
            refresh_tests: Vec::new(),
            tests_skipped: None,
            refresh,
            signing: None,
        };
        if let (Some(signing), Some(first)) = (&opts.signing, refs.first()) {
            // The Dockerfile as read for the build order, not read again now.
            let dockerfile = step.dockerfile_digest.as_ref().ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: the Dockerfile {} was not read: no build statement can name it",
                    m.rel, step.dockerfile
                ))
            })?;
            let facts = crate::ops::build_sign::BuiltFacts {
                manifest: m,
                step,
                dockerfile_digest: dockerfile,
                written: &first.image,
                platforms: step.platforms.clone(),
                // buildx resolved the bases itself: recorded as the FROM lines write them.
                pinned: Vec::new(),
                driver: &driver,
            };
            crate::ops::build_sign::sign_built(lib, &facts, &mut image, signing, &opts.clock, ep)
                .await?;
        }
        out.push(image);
    }
    Ok(BuildReport {
        dry_run: false,
        order: selected.iter().map(|(s, _)| (*s).clone()).collect(),
        images: out,
        changes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfiles_are_relative_to_their_context() {
        assert_eq!(relative_to("images/a/Dockerfile", "images/a"), "Dockerfile");
        assert_eq!(
            relative_to("images/a/Dockerfile", "."),
            "images/a/Dockerfile"
        );
        assert_eq!(
            relative_to("df/a.Dockerfile", "images/a"),
            "../../df/a.Dockerfile"
        );
        assert_eq!(target_name("a.b+c-d_e"), "a_b_c-d_e");
    }

    #[test]
    fn metadata_is_read_as_buildx_writes_it() {
        let d = Digest::sha256(b"x");
        let f = Path::new("m.json");
        let doc = json!({
            "buildx.build.warnings": [],
            "base": {"buildx.build.ref": "b/b/x", "containerimage.digest": d.to_string(),
                     "containerimage.descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d.to_string(), "size": 1},
                     "image.name": "r/a:1,r/a:latest"}
        });
        let p = parse_metadata(doc.to_string().as_bytes(), f).unwrap();
        assert_eq!(p[0].target, "base");
        assert_eq!(p[0].names, vec!["r/a:1", "r/a:latest"]);
        for bad in [
            json!({"base": {"image.name": "x"}}),
            json!({"base": {"containerimage.digest": "nope"}}),
            json!({"base": {"containerimage.digest": d.to_string(), "containerimage.descriptor": {"digest": Digest::sha256(b"y").to_string()}}}),
            json!([]),
            json!({}),
        ] {
            let e = parse_metadata(bad.to_string().as_bytes(), f).unwrap_err();
            assert!(e.is_usage(), "{e}");
        }
        assert!(parse_metadata(b"{", f).unwrap_err().is_usage());
    }
}
