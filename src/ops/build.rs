//! `graft build`: the library's `build:` images built with an existing builder (buildah), in
//! dependency order, tested inside the image, then written by graft itself (every platform,
//! then the index, then the tags, last) and, with a compat layer, refreshed.
//!
//! The steps, per image in [`crate::library::order`]'s order:
//! 1. **Check first.** Every selected Dockerfile is read and every platform checked before any
//!    build starts: a stage with `RUN` for a foreign platform needs a QEMU emulator
//!    ([`crate::builder::binfmt`]); without one the run stops naming the platform. Stages whose
//!    FROM says `--platform=$BUILDPLATFORM`, and stages without RUN, need none.
//! 2. **Pin the library bases.** A base that is one of the library's images is built FROM an
//!    exact digest: the one this run just wrote, or, for a base not rebuilt, its existing tag
//!    resolved once. buildah gets it through its storage: the pinned image is pulled and named
//!    exactly as the FROM line writes it, and the build does not pull (`--pull=false`). The
//!    final stage's base is recorded as `org.opencontainers.image.base.name`/`.digest`.
//! 3. **Build** each platform (`buildah build --platform`), and write it with `buildah push
//!    --digestfile` into an OCI layout in the work directory.
//! 4. **Test** (`build.test`, then `checks:`) inside the image of this machine's platform, each
//!    `sh -c COMMAND` with a time limit ([`crate::ops::test`]). A failure stops the run
//!    before any tag is written (exit 3, [`Error::TestFailed`]).
//! 5. **Write**: graft writes the index of the platform images into the layout and copies it
//!    with the copy engine to `target` (no compat: blobs, manifests, index, tags last). With
//!    compat it goes to `science_target` by digest only, no tag yet.
//! 6. **Refresh and test again** (compat only): the refresh reads the science image pinned to
//!    that digest ([`Manifest::science`]), assembles the final image, and the same tests run
//!    inside it before anything of it is written; then the science tags are written, then
//!    the final image and its tags (`target`). A failing test leaves neither image tagged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::builder::binfmt::{has_emulator, is_native};
use crate::builder::buildah::{BuildSpec, Buildah};
use crate::builder::BuilderError;
use crate::copy::{copy_image, CopyOptions, Dedupe};
use crate::error::{Error, Result};
use crate::library::changes::ChangeSet;
use crate::library::dockerfile::{Base, Dockerfile};
use crate::library::git::source::{within, SourceCache};
use crate::library::load::{locate, MAX_FILE_BYTES};
use crate::library::order::{BuildStep, SourceState};
use crate::library::{template, BuildInfo, Library, Located, Manifest};
use crate::oci::{Digest, Platform};
use crate::ops::build_sign::{sign_built, BuiltFacts, Clock, Driver};
use crate::ops::refresh::{
    commit_all, prepare as refresh_prepare, push as refresh_push, refresh, LayerCache,
    RefreshOptions, RefreshRequest, RefreshResult, Signed,
};
use crate::ops::test::{run_commands, test_image};
use crate::progress::Reporter;
use crate::reference::{DockerRef, ImageRef};
use crate::store::open::{destination_tags, open_sink, open_source, Endpoint};
use crate::store::Source;
use crate::timestamp::Timestamp;

/// The default time limit of one test inside an image.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The layout tag under which graft writes the index it assembles in the work directory.
const INDEX_TAG: &str = "graft-index";

/// How a build runs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `{build}`, `{commit}`, `{branch}`.
    pub build: BuildInfo,
    /// The images' time (`--timestamp` of the builder, the refresh's `created`).
    pub created: Timestamp,
    /// Print the ordered plan; build and write nothing.
    pub dry_run: bool,
    /// Concurrent blob transfers.
    pub jobs: usize,
    /// A directory for the builder's layouts (and the refresh's files).
    pub work_dir: PathBuf,
    /// The builder, with its own storage.
    pub buildah: Buildah,
    /// Time limit of each test inside an image.
    pub test_timeout: Duration,
    /// This machine's platform: tests run there; other platforms' RUN steps need QEMU.
    pub host: Platform,
    /// Where binfmt_misc entries are listed ([`crate::builder::binfmt::BINFMT_DIR`]).
    pub binfmt_dir: PathBuf,
    /// Where `git.repo` sources are cloned and their commits checked out.
    pub sources: SourceCache,
    /// Sign (and attest) what is written.
    pub signing: Option<crate::ops::refresh::Signing>,
    /// The time a statement is finished (the binary's clock).
    pub clock: Clock,
    /// `--changed-since`: build only the images it affects and their children
    /// ([`with_dependents`]).
    pub changes: Option<ChangeSet>,
    /// Bases outside the library pinned to a digest: a FROM line naming one of these tags is
    /// built on that digest (pulled by digest and named as the FROM line writes it, as a
    /// library base is), not on whatever buildah's storage or the registry holds under the
    /// tag. `graft factory check --refresh` pins each base to the digest its check resolved,
    /// so the build is made on the base the check saw, and recorded so. Empty: none.
    pub base_pins: Vec<(DockerRef, Digest)>,
}

/// A base image of a build, as it was used.
#[derive(Debug, Clone, Serialize)]
pub struct UsedBase {
    /// The FROM reference, after ARG substitution.
    pub reference: String,
    /// The library manifest whose image it is (empty: a base outside the library, pinned by
    /// [`BuildOptions::base_pins`]).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub library: String,
    /// The digest it was pinned to.
    pub digest: Digest,
    /// Whether this run built it (else its existing tag was resolved).
    pub built_now: bool,
}

/// One platform built.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltPlatform {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The platform manifest's digest.
    pub digest: Digest,
}

pub use crate::ops::test::TestRun;

/// What was built for one manifest.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltImage {
    /// The image name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The manifest, relative to the library root.
    pub manifest: String,
    /// The index written (none on a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Where the built image was (or would be) written.
    pub references: Vec<String>,
    /// Platforms built.
    pub platforms: Vec<BuiltPlatform>,
    /// Library bases, pinned.
    pub bases: Vec<UsedBase>,
    /// Tests run inside the built image.
    pub tests: Vec<TestRun>,
    /// The same tests run again inside the refreshed image (manifests with compat), before
    /// any tag of either image was written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refresh_tests: Vec<TestRun>,
    /// The tests were not run: this machine's platform is not built (emulated runs are not
    /// done yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests_skipped: Option<String>,
    /// The compat refresh of the built image (manifests with compat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshResult>,
    /// What signing added to the built image (with `--sign-key`); the final image's is in
    /// `refresh.signing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signed>,
}

/// What `graft build` did, in build order.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Nothing was built or written.
    pub dry_run: bool,
    /// The order (as `graft plan` shows it) of the selected builds.
    pub order: Vec<BuildStep>,
    /// One entry per built manifest.
    pub images: Vec<BuiltImage>,
    /// With `--changed-since`: what changed and which images it affects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeSet>,
}

/// A builder failure, named: which image, which platform (or test), and why.
fn failed(what: String, e: BuilderError) -> Error {
    Error::internal(what, e)
}

/// Build the `build:` images of `lib` that `names` selects (all when empty), bases first.
pub async fn build(
    lib: &Library,
    names: &[String],
    opts: &BuildOptions,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<BuildReport> {
    build_recording(lib, names, opts, ep, reporter, &mut Vec::new()).await
}

/// [`build`], pushing each image into `written` as soon as its last tag is written (before
/// it is signed; with compat: once the science tags are written, updated when the final image
/// is): when signing, a later write or a later image fails, the caller still knows what this
/// run moved (`graft factory check --refresh` records those builds before it reports the
/// failure).
pub async fn build_recording(
    lib: &Library,
    names: &[String],
    opts: &BuildOptions,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
    written: &mut Vec<BuiltImage>,
) -> Result<BuildReport> {
    crate::ops::refresh::select(lib, names)?;
    let checkouts = fetch_sources(lib, &opts.sources)?;
    let loader = crate::library::load::Loader::new(lib.root());
    let order =
        crate::library::order::build_order_from(lib, |rel| loader.read_library_file(rel), &|m| {
            checkouts.get(&m.rel).cloned()
        });
    if let Some(i) = order.issues.first() {
        return Err(Error::Unsupported(format!(
            "the build order cannot be made: {}",
            i.message
        )));
    }
    let mut steps: Vec<BuildStep> = order
        .builds
        .into_iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .collect();
    for n in names {
        if !steps.iter().any(|s| &s.name == n) {
            let rel = lib
                .manifests_named(n)
                .next()
                .map_or(n.clone(), |m| m.rel.clone());
            return Err(Error::Unsupported(format!(
                "{rel} names an existing science image (science:): there is nothing to build; `graft refresh {n}` refreshes it"
            )));
        }
    }
    if let Some(c) = &opts.changes {
        steps = with_dependents(steps, c);
    }
    // Everything that can be checked is checked before the first build.
    let mut plans = Vec::new();
    for s in &steps {
        plans.push(prepare(lib, s, opts, &checkouts)?);
    }
    if opts.dry_run {
        return Ok(BuildReport {
            dry_run: true,
            images: plans.iter().map(|p| p.report(lib)).collect(),
            order: steps,
            changes: opts.changes.clone(),
        });
    }
    // The builder's version, asked once, for the statements.
    let driver = Driver {
        name: "buildah",
        versions: match opts.signing.as_ref().and_then(|s| s.provenance.as_ref()) {
            Some(_) => vec![(
                "buildah".to_string(),
                opts.buildah
                    .version()
                    .await
                    .map_err(|e| failed("asking buildah its version".into(), e))?,
            )],
            None => Vec::new(),
        },
    };
    let mut built: BTreeMap<String, Written> = BTreeMap::new();
    let first = written.len();
    for (step, plan) in steps.iter().zip(&plans) {
        let image = build_one(
            lib, step, plan, opts, ep, reporter, &built, &driver, written,
        )
        .await?;
        if let Some(d) = &image.digest {
            built.insert(
                step.manifest.clone(),
                Written {
                    built_repo: plan.references.first().and_then(|r| match &r.image {
                        ImageRef::Docker(d) => Some(d.name()),
                        _ => None,
                    }),
                    built: d.clone(),
                    refreshed: image.refresh.as_ref().map(|r| r.digest.clone()),
                },
            );
        }
    }
    Ok(BuildReport {
        dry_run: false,
        order: steps,
        changes: opts.changes.clone(),
        images: written[first..].to_vec(),
    })
}

/// `--changed-since`: of `steps` (in build order), the builds `changes` affects (their
/// Dockerfile, build context, manifest, compat layers, …: [`crate::library::changes`]) and
/// every build with one of those as a library base, transitively: a child of a rebuilt base
/// is rebuilt on it. A base left out is pinned at its existing tag, as for `graft build
/// CHILD`.
pub fn with_dependents(steps: Vec<BuildStep>, changes: &ChangeSet) -> Vec<BuildStep> {
    let mut chosen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    steps
        .into_iter()
        .filter(|s| {
            let take = changes.reasons(&s.manifest).is_some()
                || s.after.iter().any(|a| chosen.contains(a));
            if take {
                chosen.insert(s.manifest.clone());
            }
            take
        })
        .collect()
}

/// What this run wrote for a library image: a child's FROM names either the built image (its
/// repository, `science_target` with compat) or the final, refreshed one (`target`).
struct Written {
    built_repo: Option<String>,
    built: Digest,
    refreshed: Option<Digest>,
}

impl Written {
    /// The digest `from` (a FROM reference of that image) stands for.
    fn digest_for(&self, from: &DockerRef) -> &Digest {
        match &self.refreshed {
            Some(r) if self.built_repo.as_deref() != Some(from.name().as_str()) => r,
            _ => &self.built,
        }
    }
}

/// One build, checked and ready.
struct Plan<'a> {
    manifest: &'a Manifest,
    dockerfile_path: PathBuf,
    context_path: PathBuf,
    dockerfile: Dockerfile,
    /// The sha256 of the Dockerfile's bytes read here, before the build: what the build
    /// statement names.
    dockerfile_digest: Digest,
    platforms: Vec<Platform>,
    references: Vec<Located>,
    tests: Vec<String>,
}

impl Plan<'_> {
    fn report(&self, _lib: &Library) -> BuiltImage {
        let m = self.manifest;
        BuiltImage {
            name: m.name.clone(),
            version: m.version.clone(),
            manifest: m.rel.clone(),
            digest: None,
            references: self.references.iter().map(|r| r.text.clone()).collect(),
            platforms: Vec::new(),
            bases: Vec::new(),
            tests: Vec::new(),
            refresh_tests: Vec::new(),
            tests_skipped: None,
            refresh: None,
            signing: None,
        }
    }
}

/// Read the Dockerfile, check the platforms can be built here, compute where the image goes.
fn prepare<'a>(
    lib: &'a Library,
    step: &BuildStep,
    opts: &BuildOptions,
    checkouts: &BTreeMap<String, PathBuf>,
) -> Result<Plan<'a>> {
    let m = step_manifest(lib, step)?;
    let Some(b) = &m.build else {
        return Err(Error::Unsupported(format!("{} has no build:", m.rel)));
    };
    if step.source == SourceState::NotFetched {
        return Err(Error::Unsupported(format!(
            "{}: the Dockerfile {} is in git.repo, which graft does not fetch yet: check it out into the library, or build it elsewhere and use science:",
            m.rel, step.dockerfile
        )));
    }
    let (dockerfile_path, context_path) = match checkouts.get(&m.rel) {
        Some(dir) if step.source == SourceState::Git => {
            (within(dir, &step.dockerfile)?, within(dir, &step.context)?)
        }
        _ => (
            lib.root().join(&step.dockerfile),
            lib.root().join(&step.context),
        ),
    };
    let text = read_limited(&dockerfile_path)?;
    let dockerfile = Dockerfile::parse(&text, &b.args).map_err(|e| Error::Invalid {
        what: format!("{} ({})", step.dockerfile, m.rel),
        reason: e.to_string(),
    })?;
    let platforms = match b.platforms.is_empty() {
        true => vec![opts.host.clone()],
        false => b.platforms.clone(),
    };
    // RUN executes the stage's own binaries: a foreign platform needs an emulator, unless
    // the stage runs on the build machine's platform ($BUILDPLATFORM).
    let target = b.target.as_deref();
    for p in &platforms {
        if is_native(p, &opts.host) {
            continue;
        }
        let needs = dockerfile.built_stages(target).iter().find(|s| {
            s.has_run
                && !s
                    .platform
                    .as_deref()
                    .is_some_and(|w| w.contains("BUILDPLATFORM"))
        });
        if let Some(s) = needs {
            if !has_emulator(&opts.binfmt_dir, p) {
                return Err(Error::Unsupported(format!(
                    "{}: platform {p} cannot be built on this {} machine: the stage at {}:{} has RUN steps, which need a QEMU emulator for {p} (binfmt_misc has no qemu-{} entry in {}); install qemu-user-static with binfmt support, or build {p} on a {p} machine",
                    m.rel,
                    opts.host,
                    step.dockerfile,
                    s.line,
                    p.architecture,
                    opts.binfmt_dir.display()
                )));
            }
        }
    }
    let references = destinations(lib, m, &opts.build)?;
    let mut tests: Vec<String> = b.test.iter().cloned().collect();
    tests.extend(m.checks.iter().cloned());
    Ok(Plan {
        manifest: m,
        dockerfile_path,
        context_path,
        dockerfile,
        dockerfile_digest: Digest::sha256(text.as_bytes()),
        platforms,
        references,
        tests,
    })
}

/// Check out the `git.commit` of every `build:` manifest with `git:` whose Dockerfile is not
/// in the library (a library that is itself the `git.repo`, as canfar's is, builds from its
/// own files): manifest → checkout. A missing `git.commit` or an unknown one is bad input.
fn fetch_sources(lib: &Library, cache: &SourceCache) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for m in lib.manifests() {
        let (Some(b), Some(git)) = (&m.build, &m.git) else {
            continue;
        };
        if lib.root().join(b.dockerfile_path()).exists() {
            continue;
        }
        let Some(commit) = &git.commit else {
            return Err(Error::Input {
                what: format!("{}: git", m.rel),
                reason: "has no commit: graft builds a git.repo source only at a pinned git.commit"
                    .into(),
            });
        };
        let dir = cache
            .checkout(&git.repo, &git.fetch, commit)
            .map_err(|e| e.context(format!("{}: the source of the build", m.rel)))?;
        out.insert(m.rel.clone(), dir);
    }
    Ok(out)
}

/// The manifest of a build step (the order was made from this library, so it is there).
pub(crate) fn step_manifest<'a>(lib: &'a Library, step: &BuildStep) -> Result<&'a Manifest> {
    lib.manifests()
        .iter()
        .find(|m| m.rel == step.manifest)
        .ok_or_else(|| Error::NotFound {
            what: format!("the manifest {}", step.manifest),
            detail: None,
        })
}

/// Where the built image is written: the final `target` under `build.tags` (no compat), or
/// `science_target` under `build.tags` (compat).
pub(crate) fn destinations(lib: &Library, m: &Manifest, build: &BuildInfo) -> Result<Vec<Located>> {
    if m.compat_layer().is_none() {
        return lib.references(m, build);
    }
    let s = lib.settings();
    let repo = template::expand_target(&s.science_target, &s.repo, &m.name);
    let mut out: Vec<Located> = Vec::new();
    for t in m.build.iter().flat_map(|b| &b.tags) {
        if let Some(first) = template::missing(t, build).first() {
            return Err(Error::Unsupported(format!(
                "no value for {{{first}}} in build.tags template {t:?} of {}: pass --{first}, or run inside the library's git repository",
                m.rel
            )));
        }
        let tag = template::expand_tag(t, &m.version, build);
        crate::reference::validate_tag(&tag).map_err(|reason| Error::Invalid {
            what: format!("build tag {tag:?} of {}", m.rel),
            reason,
        })?;
        let l = locate(lib.root(), &format!("{repo}:{tag}"))?;
        if !out.iter().any(|o| o.text == l.text) {
            out.push(l);
        }
    }
    Ok(out)
}

fn read_limited(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut s))
        .map_err(|e| Error::io("reading", path, e))?;
    Ok(s)
}

/// The name buildah's storage gives an image a FROM line writes: a reference without a
/// registry is Docker Hub's (`debian` → `docker.io/library/debian`), as buildah resolves it.
fn storage_name(from: &str) -> String {
    let first = from.split('/').next().unwrap_or("");
    let has_registry =
        from.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_registry, from.contains('/')) {
        (true, _) => from.to_string(),
        (false, true) => format!("docker.io/{from}"),
        (false, false) => format!("docker.io/library/{from}"),
    }
}

/// `os-arch[-variant]`: a platform as a tag.
fn platform_tag(p: &Platform) -> String {
    p.to_string().replace('/', "-")
}

#[allow(clippy::too_many_arguments)]
async fn build_one(
    lib: &Library,
    step: &BuildStep,
    plan: &Plan<'_>,
    opts: &BuildOptions,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
    built: &BTreeMap<String, Written>,
    driver: &Driver,
    written: &mut Vec<BuiltImage>,
) -> Result<BuiltImage> {
    let m = plan.manifest;
    let b = m
        .build
        .as_ref()
        .ok_or_else(|| Error::Unsupported(format!("{} has no build:", m.rel)))?;
    let mut report = plan.report(lib);
    // Pin each library base: the digest this run wrote, else the existing tag resolved once.
    let mut pins: Vec<(String, UsedBase)> = Vec::new();
    for base in &step.bases {
        if pins.iter().any(|(e, _)| e == &base.expanded) {
            continue;
        }
        let Some(library) = &base.library else {
            // Outside the library: pinned when the caller says so.
            let r = DockerRef::parse(&base.expanded).ok();
            let pin = r.filter(|r| r.digest.is_none()).and_then(|r| {
                opts.base_pins
                    .iter()
                    .find(|(p, _)| p.digest.is_none() && *p == r)
            });
            if let Some((_, digest)) = pin {
                pins.push((
                    base.expanded.clone(),
                    UsedBase {
                        reference: base.expanded.clone(),
                        library: String::new(),
                        digest: digest.clone(),
                        built_now: false,
                    },
                ));
            }
            continue;
        };
        let r = DockerRef::parse(&base.expanded)?;
        let (digest, built_now) = match built.get(library) {
            Some(w) => (w.digest_for(&r).clone(), true),
            None => {
                let src = open_source(&ImageRef::Docker(r.clone()), ep)
                    .await
                    .map_err(|e| {
                        e.context(format!(
                            "{}: resolving its base {} ({library}, not rebuilt in this run)",
                            m.rel, base.expanded
                        ))
                    })?;
                (src.resolve_digest().await?, false)
            }
        };
        pins.push((
            base.expanded.clone(),
            UsedBase {
                reference: base.expanded.clone(),
                library: library.clone(),
                digest,
                built_now,
            },
        ));
    }
    let mut annotations = lib.build_annotations(m);
    if let Some(stage) = plan.dockerfile.final_stage(b.target.as_deref()) {
        // The base of the image itself: the final stage's, through earlier stages.
        let mut s = stage;
        while let Base::Stage { index, .. } = &s.base {
            match plan.dockerfile.stages.get(*index) {
                Some(prev) if prev.index < s.index => s = prev,
                _ => break,
            }
        }
        if let Base::Image { expanded, .. } = &s.base {
            annotations.insert(
                "org.opencontainers.image.base.name".into(),
                expanded.clone(),
            );
            if let Some((_, u)) = pins.iter().find(|(e, _)| e == expanded) {
                annotations.insert(
                    "org.opencontainers.image.base.digest".into(),
                    u.digest.to_string(),
                );
            }
        }
    }
    let labels = lib.build_labels(m);
    let layout = opts.work_dir.join(format!("build-{}", m.name));
    let local = |p: &Platform| format!("localhost/graft-build/{}:{}", m.name, platform_tag(p));
    let mut platforms = Vec::new();
    for p in &plan.platforms {
        let what = |doing: &str| format!("{}: {doing} for {p}", m.rel);
        for (written, u) in &pins {
            let pinned = format!("{}@{}", DockerRef::parse(written)?.name(), u.digest);
            opts.buildah
                .pull_as(&pinned, p, &storage_name(written))
                .await
                .map_err(|e| failed(what(&format!("pinning the base {written}")), e))?;
        }
        let spec = BuildSpec {
            dockerfile: &plan.dockerfile_path,
            context: &plan.context_path,
            platform: p,
            args: &b.args,
            target: b.target.as_deref(),
            labels: &labels,
            annotations: &annotations,
            tag: &local(p),
            timestamp: Some(opts.created.0),
        };
        opts.buildah
            .build(&spec)
            .await
            .map_err(|e| failed(what("building"), e))?;
        let digest = opts
            .buildah
            .push(&local(p), &layout, &platform_tag(p))
            .await
            .map_err(|e| failed(what("writing the built image"), e))?;
        platforms.push((p.clone(), digest));
    }
    // Tests, on this machine's platform, before anything is tagged.
    let native = plan.platforms.iter().find(|p| is_native(p, &opts.host));
    match native {
        Some(p) => {
            report.tests = run_commands(
                &opts.buildah,
                &local(p),
                &plan.tests,
                p,
                opts.test_timeout,
                true,
            )
            .await
            .map_err(|e| e.context(format!("{}: testing the built image", m.rel)))?;
            if let Some(t) = report.tests.iter().find(|t| !t.passed()) {
                return Err(t.error("the built image").context(format!(
                    "{}: a test inside the built image failed, nothing was tagged",
                    m.rel
                )));
            }
        }
        None if !plan.tests.is_empty() => {
            report.tests_skipped = Some(format!(
                "this machine's platform {} is not built; tests in emulated platforms are not run yet",
                opts.host
            ));
        }
        None => {}
    }
    let index = write_index(&layout, &platforms, &annotations)?;
    // Blobs, platform manifests, the index, then every tag: the copy engine's order.
    let src_ref: ImageRef = format!("oci:{}:{INDEX_TAG}", layout.display()).parse()?;
    let src: Arc<dyn Source> = Arc::from(open_source(&src_ref, ep).await?);
    let first = plan.references.first().ok_or_else(|| {
        Error::Unsupported(format!("{}: build.tags gives no tag to write", m.rel))
    })?;
    let tags: Vec<String> = plan
        .references
        .iter()
        .flat_map(|r| destination_tags(&r.image))
        .collect();
    let compat = m.compat_layer().is_some();
    // With compat, the built image is written by digest only to a registry (the refresh reads
    // it pinned there): its tags follow the refreshed image's tests (`refresh_tested`). A
    // layout or archive gets nothing before those tests (an untagged entry would stay in its
    // index.json): the refresh reads the work directory's layout, and the image is written
    // once, with its tags.
    let registry = matches!(first.image, ImageRef::Docker(_));
    if !compat || registry {
        write_built(
            src.as_ref(),
            first,
            if compat { Vec::new() } else { tags.clone() },
            opts.jobs,
            ep,
            reporter,
        )
        .await
        .map_err(|e| e.context(format!("{}: writing the built image", m.rel)))?;
    }
    report.digest = Some(index.clone());
    report.platforms = platforms
        .into_iter()
        .map(|(p, digest)| BuiltPlatform {
            platform: p.to_string(),
            digest,
        })
        .collect();
    report.bases = pins.into_iter().map(|(_, u)| u).collect();
    // Where this image goes in `written`: pushed right after its tags are written.
    let at = written.len();
    if compat {
        let built = Built {
            digest: &index,
            source: src,
            reference: first,
            tags,
        };
        refresh_tested(
            lib,
            m,
            plan,
            opts,
            built,
            native,
            ep,
            reporter,
            &mut report,
            written,
        )
        .await?;
    } else {
        written.push(report.clone());
    }
    // Last, once everything (tags included) is written and handed to `written`: a signing
    // failure fails the run, but what was written stays known.
    if let Some(signing) = &opts.signing {
        let facts = BuiltFacts {
            manifest: m,
            step,
            dockerfile_digest: &plan.dockerfile_digest,
            written: &first.image,
            platforms: plan.platforms.iter().map(|p| p.to_string()).collect(),
            pinned: report
                .bases
                .iter()
                .map(|u| (u.reference.clone(), u.digest.clone()))
                .collect(),
            driver,
        };
        sign_built(lib, &facts, &mut report, signing, &opts.clock, ep).await?;
        if let Some(w) = written.get_mut(at) {
            *w = report.clone();
        }
    }
    Ok(report)
}

/// The built image in the work directory, and where it goes.
struct Built<'a> {
    /// Its index.
    digest: &'a Digest,
    /// The work directory's layout, at that index.
    source: Arc<dyn Source>,
    /// The first reference it is written to (`science_target` with compat).
    reference: &'a Located,
    /// Every tag it gets.
    tags: Vec<String>,
}

/// Copy the built image to `to` under `tags` (none: by digest only) and commit.
async fn write_built(
    src: &dyn Source,
    to: &Located,
    tags: Vec<String>,
    jobs: usize,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<()> {
    let sink = open_sink(&to.image, ep).await?;
    let copy_opts = CopyOptions {
        jobs: jobs.max(1),
        tags,
        commit: true,
        ..CopyOptions::default()
    };
    copy_image(src, sink.as_ref(), &copy_opts, reporter)
        .await
        .map_err(|e| e.context(format!("writing to {}", to.text)))?;
    Ok(())
}

/// The compat refresh of an image this run built (and wrote by digest only to a registry;
/// nothing to a layout or archive yet), tested before any tag: the refresh reads the science
/// image pinned to that digest (a registry) or from the work directory's layout (layouts,
/// archives: an untagged image there cannot be named, and none is written before the tests),
/// assembles the final image, runs `plan.tests` inside it (this machine's platform), then
/// writes the science tags, then the final image with its tags. A failing test leaves no tag
/// of either image. `report` gets the tests and the refresh; it is pushed into `written` once
/// the science tags are written, and updated there once the final image is.
#[allow(clippy::too_many_arguments)]
async fn refresh_tested(
    lib: &Library,
    m: &Manifest,
    plan: &Plan<'_>,
    opts: &BuildOptions,
    built: Built<'_>,
    native: Option<&Platform>,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
    report: &mut BuiltImage,
    written: &mut Vec<BuiltImage>,
) -> Result<()> {
    let what = |doing: &str| format!("{}: {doing}", m.rel);
    let lib = lib.clone().as_built();
    let mut science = m.clone();
    science.build = None;
    let layers = LayerCache::default();
    match &science.science.image.image {
        ImageRef::Docker(_) => science.science.digest = Some(built.digest.clone()),
        _ => layers.preload_science(&science, built.source.clone()),
    }
    let ropts = RefreshOptions {
        build: opts.build.clone(),
        created: opts.created,
        dry_run: false,
        jobs: opts.jobs.max(1),
        work_dir: opts.work_dir.join(format!("refresh-{}", m.name)),
    };
    std::fs::create_dir_all(&ropts.work_dir)
        .map_err(|e| Error::io("creating", &ropts.work_dir, e))?;
    let prepared = refresh_prepare(&lib, &science, &ropts, ep, &layers)
        .await
        .map_err(|e| e.context(what("the compat refresh of the built image")))?;
    let mut tests = Vec::new();
    if let (Some(p), false) = (native, plan.tests.is_empty()) {
        let dir = opts.work_dir.join(format!("refreshed-{}", m.name));
        // Pulled, tested and removed again: a kept --storage does not grow per refresh.
        let (_, t) = test_image(
            prepared.source(),
            p,
            &opts.buildah,
            &dir,
            &plan.tests,
            opts.test_timeout,
            true,
            opts.jobs,
            ep,
            reporter,
        )
        .await
        .map_err(|e| e.context(what("testing the refreshed image")))?;
        tests = t;
        if let Some(t) = tests.iter().find(|t| !t.passed()) {
            return Err(t.error("the refreshed image").context(what(
                "a test inside the refreshed image failed, no tag of it or of the built image was written",
            )));
        }
    }
    // The science tags, then the final image and its tags.
    write_built(
        built.source.as_ref(),
        built.reference,
        built.tags,
        opts.jobs,
        ep,
        reporter,
    )
    .await
    .map_err(|e| e.context(what("tagging the built image")))?;
    report.refresh_tests = tests;
    let at = written.len();
    written.push(report.clone());
    let dedupe = Arc::new(Dedupe::default());
    let (result, sink) = refresh_push(prepared, &ropts, ep, &dedupe, reporter)
        .await
        .map_err(|e| e.context(what("writing the refreshed image")))?;
    commit_all(vec![sink]).await?;
    report.refresh = Some(result);
    if let Some(w) = written.get_mut(at) {
        *w = report.clone();
    }
    Ok(())
}

/// The compat refresh of `m`'s image just written to [`Manifest::science`] with its tags (by
/// buildx, [`crate::ops::bake`]; `graft build`'s own builds use `refresh_tested`): the
/// existing refresh for that one manifest on
/// [`Library::as_built`], forced, so the final image a child pins to is written and reported.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn refresh_built(
    lib: &Library,
    m: &Manifest,
    build: &BuildInfo,
    created: Timestamp,
    jobs: usize,
    work_dir: &Path,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<Option<RefreshResult>> {
    let one = lib.clone().as_built().retain_manifests(|x| x.rel == m.rel);
    let req = RefreshRequest {
        names: Vec::new(),
        options: RefreshOptions {
            build: build.clone(),
            created,
            dry_run: false,
            jobs: jobs.max(1),
            work_dir: work_dir.to_path_buf(),
        },
        signing: None,
        // The science image was just written: the refresh must write (and report) the
        // final image a child of this one pins to, even when it looks up to date.
        force: true,
        clock: Box::new(move || created),
    };
    std::fs::create_dir_all(&req.options.work_dir)
        .map_err(|e| Error::io("creating", &req.options.work_dir, e))?;
    let r = refresh(&one, req, ep, reporter)
        .await
        .map_err(|e| e.context(format!("{}: the compat refresh of the built image", m.rel)))?;
    Ok(r.images.into_iter().next())
}

/// Write the index of `platforms` (each a manifest buildah pushed into `layout` under its
/// platform tag) into the layout, tagged [`INDEX_TAG`]; its digest.
fn write_index(
    layout: &Path,
    platforms: &[(Platform, Digest)],
    annotations: &BTreeMap<String, String>,
) -> Result<Digest> {
    let index_path = layout.join("index.json");
    let bytes = std::fs::read(&index_path).map_err(|e| Error::io("reading", &index_path, e))?;
    let mut index: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
        what: index_path.display().to_string(),
        source: e,
    })?;
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let mut manifests = Vec::new();
    for (p, digest) in platforms {
        let e = entries
            .iter()
            .find(|e| e["digest"].as_str() == Some(&digest.to_string()))
            .ok_or_else(|| Error::NotFound {
                what: format!("{digest} in {}", index_path.display()),
                detail: Some("buildah push wrote another digest".into()),
            })?;
        let mut platform = json!({"architecture": p.architecture, "os": p.os});
        if let Some(v) = &p.variant {
            platform["variant"] = json!(v);
        }
        manifests.push(json!({
            "mediaType": e["mediaType"],
            "digest": e["digest"],
            "size": e["size"],
            "platform": platform,
        }));
    }
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    if !annotations.is_empty() {
        doc["annotations"] = json!(annotations);
    }
    let body = serde_json::to_vec(&doc).map_err(|e| Error::internal("serialising the index", e))?;
    let digest = Digest::sha256(&body);
    let blob = layout.join("blobs/sha256").join(digest.hex());
    std::fs::write(&blob, &body).map_err(|e| Error::io("writing", &blob, e))?;
    let mut kept: Vec<serde_json::Value> = entries
        .into_iter()
        .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"] != INDEX_TAG)
        .collect();
    kept.push(json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": digest.to_string(),
        "size": body.len(),
        "annotations": {"org.opencontainers.image.ref.name": INDEX_TAG},
    }));
    index["manifests"] = json!(kept);
    let out =
        serde_json::to_vec(&index).map_err(|e| Error::internal("serialising index.json", e))?;
    std::fs::write(&index_path, out).map_err(|e| Error::io("writing", &index_path, e))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_since_takes_the_affected_builds_and_their_children_transitively() {
        let step = |m: &str, after: &[&str]| BuildStep {
            name: m.into(),
            version: "1".into(),
            manifest: format!("manifests/{m}.yaml"),
            dockerfile: format!("images/{m}/Dockerfile"),
            context: format!("images/{m}"),
            source: SourceState::Library,
            stage: None,
            image: format!("r/{m}:1"),
            platforms: vec!["linux/amd64".into()],
            bases: Vec::new(),
            after: after
                .iter()
                .map(|a| format!("manifests/{a}.yaml"))
                .collect(),
            dockerfile_digest: None,
        };
        let steps = vec![
            step("base", &[]),
            step("other", &[]),
            step("child", &["base"]),
            step("grandchild", &["child"]),
            step("cousin", &["other"]),
        ];
        let changes = |rels: &[&str]| ChangeSet {
            since: "HEAD~1".into(),
            commit: "c".into(),
            files: Vec::new(),
            ignored: Vec::new(),
            images: rels
                .iter()
                .map(|r| crate::library::changes::Affected {
                    manifest: format!("manifests/{r}.yaml"),
                    name: r.to_string(),
                    reasons: Vec::new(),
                })
                .collect(),
        };
        let names = |c: &ChangeSet| -> Vec<String> {
            with_dependents(steps.clone(), c)
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(names(&changes(&["base"])), ["base", "child", "grandchild"]);
        assert_eq!(names(&changes(&["child"])), ["child", "grandchild"]);
        assert_eq!(
            names(&changes(&["cousin", "base"])),
            ["base", "child", "grandchild", "cousin"]
        );
        assert!(names(&changes(&[])).is_empty());
    }

    #[test]
    fn storage_names_as_buildah_resolves_them() {
        assert_eq!(
            storage_name("127.0.0.1:5000/lib/base:1"),
            "127.0.0.1:5000/lib/base:1"
        );
        assert_eq!(storage_name("debian:12"), "docker.io/library/debian:12");
        assert_eq!(storage_name("org/x:1"), "docker.io/org/x:1");
        assert_eq!(storage_name("localhost/x:1"), "localhost/x:1");
        assert_eq!(
            platform_tag(&"linux/arm/v7".parse().unwrap()),
            "linux-arm-v7"
        );
    }

    #[test]
    fn the_index_lists_each_platform_and_is_tagged_once() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path();
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        let amd = Digest::sha256(b"amd");
        let arm = Digest::sha256(b"arm");
        let entry = |d: &Digest, tag: &str| json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.to_string(), "size": 3, "annotations": {"org.opencontainers.image.ref.name": tag}});
        let index = json!({"schemaVersion": 2, "manifests": [entry(&amd, "linux-amd64"), entry(&arm, "linux-arm64-v8")]});
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        let platforms = vec![
            ("linux/amd64".parse().unwrap(), amd.clone()),
            ("linux/arm64/v8".parse().unwrap(), arm.clone()),
        ];
        let ann = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let d = write_index(layout, &platforms, &ann).unwrap();
        // Twice: the index tag moves, it is not listed twice.
        assert_eq!(write_index(layout, &platforms, &ann).unwrap(), d);
        let body = std::fs::read(layout.join("blobs/sha256").join(d.hex())).unwrap();
        assert!(d.matches(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["manifests"][1]["platform"]["variant"], "v8");
        assert_eq!(v["manifests"][0]["digest"], amd.to_string());
        assert_eq!(v["annotations"]["a"], "b");
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let tagged: Vec<_> = idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"] == INDEX_TAG)
            .collect();
        assert_eq!(tagged.len(), 1);
        // A digest buildah did not write is an error, not a guess.
        let bad = vec![("linux/s390x".parse().unwrap(), Digest::sha256(b"x"))];
        assert!(write_index(layout, &bad, &ann).is_err());
    }
}
