//! `graft plan`: what a refresh of the library would produce (references, tags, labels, compat
//! layer digests built in memory), without writing anything; with an endpoint, each science
//! reference is resolved to its digest and the labels are those refresh writes (computed by
//! refresh's own assembly, in a dry run).
//!
//! Also what `plan` and `refresh` learn from the library's git history before they start
//! ([`revision`]: build values, times, each layer's last change) and which images a diff
//! affects ([`changed_since`]).

use crate::error::{Error, Result};
use crate::layer::{self, Compression, LayerDigests};
use crate::library::changes::{affected, layer_inputs, ChangeSet};
use crate::library::git::Repo;
use crate::library::plan::Plan;
use crate::library::{BuildInfo, CompatLayer, Library};
use crate::ops::refresh::{prepare, LayerCache, RefreshOptions};
use crate::store::open::{open_source, Endpoint};
use crate::timestamp::Timestamp;

/// What a run takes from the library's history: the library with each layer's own time,
/// the build values and the time stamped into configs.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The library, with [`Library::with_layer_times`] applied when the times come from git.
    pub library: Library,
    /// `{build}`, `{commit}`, `{branch}`: the flags', else git's.
    pub build: BuildInfo,
    /// `SOURCE_DATE_EPOCH`, else the time of HEAD, else the epoch: configs, history,
    /// breadcrumbs, and the mtime of a layer git knows nothing about.
    pub created: Timestamp,
    /// The library's git repository, if it is in one.
    pub repo: Option<Repo>,
}

/// How strict [`revision`] is about missing build values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// An error (refresh: never write a raw `{build}`).
    Refuse,
    /// Allowed: `graft plan` shows the placeholders.
    Preview,
}

/// Read what `lib` needs from its git history. `flags` are `--build/--commit/--branch`
/// (they win), `epoch` is `SOURCE_DATE_EPOCH` (read by the binary). Errors (usage):
/// - outside git without the flags a tag or breadcrumb needs (with [`Missing::Refuse`]);
/// - in a shallow clone, when a value would come from the (cut) history: the build number
///   without `--build`, the layer times without `SOURCE_DATE_EPOCH`.
pub fn revision(
    lib: Library,
    flags: &BuildInfo,
    epoch: Option<Timestamp>,
    missing: Missing,
) -> Result<Revision> {
    let repo = Repo::discover(lib.root());
    let Some(repo) = repo else {
        let out = Revision {
            created: epoch.unwrap_or(Timestamp::EPOCH),
            build: flags.clone(),
            library: lib,
            repo: None,
        };
        if missing == Missing::Refuse {
            refuse_missing(&out.library, &out.build, "is not in a git repository")?;
        }
        return Ok(out);
    };
    let needs = lib.missing_build_values(&BuildInfo::default());
    if repo.is_shallow() {
        let fix = "fetch the full history (actions/checkout: fetch-depth: 0; GitLab: GIT_DEPTH: 0; or git fetch --unshallow)";
        if flags.build.is_none() && needs.iter().any(|(v, _)| *v == "build") {
            return Err(Error::Unsupported(format!(
                "the library {} is a shallow git clone: its build number (git rev-list --count) would be wrong; {fix}, or pass --build",
                lib.root().display()
            )));
        }
        if epoch.is_none() {
            return Err(Error::Unsupported(format!(
                "the library {} is a shallow git clone: each compat layer's time (its last commit) would be wrong; {fix}, or set SOURCE_DATE_EPOCH",
                lib.root().display()
            )));
        }
    }
    let build = BuildInfo {
        build: flags.build.clone().or_else(|| repo.build_number()),
        commit: flags.commit.clone().or_else(|| repo.short_commit()),
        branch: flags.branch.clone().or_else(|| repo.branch()),
    };
    let created = epoch
        .or_else(|| repo.head_time())
        .unwrap_or(Timestamp::EPOCH);
    // SOURCE_DATE_EPOCH, when set, is every layer's time; otherwise each layer's own last
    // change (of its layer.yaml and files/, in one walk of the history).
    let library = match epoch {
        Some(_) => lib,
        None => {
            let groups: Vec<(String, Vec<String>)> = lib
                .layers()
                .keys()
                .map(|name| (name.clone(), layer_inputs(&lib, name)))
                .collect();
            let times = repo.last_changes(&groups)?;
            lib.with_layer_times(times)
        }
    };
    if missing == Missing::Refuse {
        refuse_missing(&library, &build, "has no commit to take them from")?;
    }
    Ok(Revision {
        library,
        build,
        created,
        repo: Some(repo),
    })
}

fn refuse_missing(lib: &Library, build: &BuildInfo, why: &str) -> Result<()> {
    let missing = lib.missing_build_values(build);
    let Some((_, first)) = missing.first() else {
        return Ok(());
    };
    let flags: Vec<String> = missing.iter().map(|(v, _)| format!("--{v}")).collect();
    let names: Vec<String> = missing.iter().map(|(v, _)| format!("{{{v}}}")).collect();
    Err(Error::Unsupported(format!(
        "no value for {} (needed by {first}): the library {} {why}; pass {}",
        names.join(", "),
        lib.root().display(),
        flags.join(" ")
    )))
}

/// The images of `lib` that `git diff SINCE..HEAD` affects, each with its reasons. Usage
/// errors: the library is not in git, or `since` names no commit.
pub fn changed_since(lib: &Library, repo: Option<&Repo>, since: &str) -> Result<ChangeSet> {
    let Some(repo) = repo else {
        return Err(Error::Unsupported(format!(
            "--changed-since {since}: the library {} is not in a git repository",
            lib.root().display()
        )));
    };
    let commit = repo.resolve(since)?;
    let files = repo.changed_files(&commit)?;
    Ok(affected(lib, since, &commit, &files, |rel| {
        repo.file_at(&commit, rel)
    }))
}

/// The plan of `lib` for `build` (layer times from the library, else `mtime`, layers
/// compressed with `compression`); with `changes`, only the affected images; with `resolve`,
/// every science reference is resolved through it (one manifest read each).
pub async fn plan(
    lib: &Library,
    build: &BuildInfo,
    mtime: Timestamp,
    compression: Compression,
    changes: Option<&ChangeSet>,
    resolve: Option<&Endpoint>,
) -> Result<Plan> {
    let mut plan = Plan::new(lib, build, mtime, changes, |c| {
        build_layer(c, mtime, compression)
    })?;
    if let Some(ep) = resolve {
        let work = tempfile::tempdir()
            .map_err(|e| Error::io("creating a work directory", std::env::temp_dir(), e))?;
        let opts = RefreshOptions {
            build: build.clone(),
            created: mtime,
            dry_run: true,
            jobs: 4,
            work_dir: work.path().to_path_buf(),
        };
        let layers = LayerCache::default();
        for (i, m) in lib
            .manifests()
            .iter()
            .filter(|m| changes.map_or(true, |c| c.reasons(&m.rel).is_some()))
            .enumerate()
        {
            let src = open_source(&m.science.image.image, ep).await?;
            let root = src.resolve().await?;
            plan.set_resolved(i, root.digest().clone());
            if plan.has_errors() {
                continue;
            }
            // The labels refresh would write, from refresh's own assembly (a dry run): what
            // the plan shows is what refresh writes, not a prediction of it.
            let prepared = prepare(lib, m, &opts, ep, &layers).await?;
            let written: Vec<_> = prepared
                .result
                .platforms
                .iter()
                .map(|p| (p.platform.clone(), p.labels.clone()))
                .collect();
            plan.set_written_labels(i, &written);
        }
    }
    Ok(plan)
}

/// The digests of a compat layer: built and hashed in one pass, nothing written to disk.
fn build_layer(
    compat: &CompatLayer,
    mtime: Timestamp,
    compression: Compression,
) -> Result<Option<LayerDigests>> {
    let spec = compat.spec(mtime);
    layer::build(&spec, compression, std::io::sink())
        .map(Some)
        .map_err(|e| e.context(format!("building compat layer {:?}", compat.name)))
}
