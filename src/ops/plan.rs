//! `graft plan`: what a refresh of the library would produce (references, tags, labels, compat
//! layer digests built in memory), without writing anything; with an endpoint, each science
//! reference is resolved to its digest and the labels are those refresh writes (computed by
//! refresh's own assembly, in a dry run).
//!
//! Also what `plan` and `refresh` learn from the library's git history before they start
//! ([`revision`]: build values, times, each layer's last change) and which images a diff
//! affects ([`changed_since`]).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::layer::{self, Compression, LayerDigests};
use crate::library::branches::Branch;
use crate::library::changes::{affected, layer_inputs, ChangeSet};
use crate::library::git::Repo;
use crate::library::plan::Plan;
use crate::library::{BuildInfo, CompatLayer, Library};
use crate::ops::refresh::{prepare, LayerCache, RefreshOptions};
use crate::ops::shard::Shard;
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
    /// What [`Missing::Preview`] let pass that a refresh would refuse (the branch or the
    /// default branch unknown), for the CLI to print.
    pub warnings: Vec<String>,
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
/// (they win), `ci_branch` is the branch the CI's variables name ([`crate::library::git::ci_branch`],
/// read by the binary; used on a detached HEAD only), `epoch` is `SOURCE_DATE_EPOCH` (read by
/// the binary). The library comes back on its branch ([`Library::with_branch`]): the branch
/// policy decides its tags. Errors (usage), with [`Missing::Refuse`]:
/// - outside git without the flags a tag or breadcrumb needs;
/// - a detached HEAD with neither `--branch` nor a CI variable naming the branch;
/// - a branch known, but no default branch to compare it with (`default_branch` in
///   graft.yaml, else the remote's HEAD).
///
/// and in a shallow clone, when a value would come from the (cut) history: the build number
/// without `--build`, the layer times without `SOURCE_DATE_EPOCH`.
pub fn revision(
    lib: Library,
    flags: &BuildInfo,
    ci_branch: Option<String>,
    epoch: Option<Timestamp>,
    missing: Missing,
) -> Result<Revision> {
    let repo = Repo::discover(lib.root());
    let Some(repo) = repo else {
        // Outside git there is no branch unless --branch says one: the manifests' own tags.
        let mut warnings = Vec::new();
        let branch = on_branch(
            &lib,
            flags.branch.clone(),
            None,
            false,
            missing,
            &mut warnings,
        )?;
        let out = Revision {
            created: epoch.unwrap_or(Timestamp::EPOCH),
            build: flags.clone(),
            library: lib.with_branch(branch),
            repo: None,
            warnings,
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
    // The branch: --branch, else git's, else (a detached HEAD: pull-request builds) the CI's.
    let name = flags.branch.clone().or_else(|| repo.branch()).or(ci_branch);
    let mut warnings = Vec::new();
    let branch = on_branch(
        &lib,
        name.clone(),
        // The remote's HEAD only when graft.yaml does not say: one git process less.
        lib.settings()
            .default_branch
            .is_none()
            .then(|| repo.remote_default_branch())
            .flatten(),
        true,
        missing,
        &mut warnings,
    )?;
    let lib = lib.with_branch(branch);
    let build = BuildInfo {
        build: flags.build.clone().or_else(|| repo.build_number()),
        commit: flags.commit.clone().or_else(|| repo.short_commit()),
        branch: name,
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
        warnings,
    })
}

/// Which branch the run is on and whether it is the default one. `in_git`: the library is in
/// a git work tree (no branch there means a detached HEAD). What [`Missing::Refuse`] turns
/// into errors, [`Missing::Preview`] turns into `warnings` and the default branch's tags.
fn on_branch(
    lib: &Library,
    name: Option<String>,
    remote_default: Option<String>,
    in_git: bool,
    missing: Missing,
    warnings: &mut Vec<String>,
) -> Result<Option<Branch>> {
    let settings = lib.settings();
    let refuse = |msg: String, warnings: &mut Vec<String>| match missing {
        Missing::Refuse => Err(Error::Unsupported(msg)),
        Missing::Preview => {
            warnings.push(format!("{msg} (shown: the default branch's tags)"));
            Ok(())
        }
    };
    let Some(name) = name else {
        if in_git {
            refuse(
                format!(
                    "the git HEAD of the library {} is detached and no branch is known, so graft cannot tell which tags the branch policy allows; pass --branch NAME (in CI: GITHUB_HEAD_REF or GITHUB_REF_NAME, CI_MERGE_REQUEST_SOURCE_BRANCH_NAME or CI_COMMIT_REF_NAME, BRANCH_NAME or GIT_BRANCH name it)",
                    lib.root().display()
                ),
                warnings,
            )?;
        }
        return Ok(None);
    };
    let default_branch = settings.default_branch.clone().or(remote_default);
    let Some(default) = default_branch else {
        refuse(
            format!(
                "cannot tell whether branch {name:?} is the library's default branch (only the default branch writes the production tags): set default_branch in {}, or record the remote's HEAD (git remote set-head origin --auto)",
                settings.file.display()
            ),
            warnings,
        )?;
        return Ok(Some(Branch {
            name,
            default_branch: None,
            is_default: true,
        }));
    };
    Ok(Some(Branch {
        is_default: name == default,
        name,
        default_branch: Some(default),
    }))
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
/// compressed with `compression`); with `changes`, only the affected images; with `shard`,
/// only its images (conflicts are still those of the whole library); with `resolve`,
/// every science reference is resolved through it (one manifest read each).
pub async fn plan(
    lib: &Library,
    build: &BuildInfo,
    mtime: Timestamp,
    compression: Compression,
    changes: Option<&ChangeSet>,
    shard: Option<Shard>,
    resolve: Option<&Endpoint>,
) -> Result<Plan> {
    let in_shard = |name: &str| shard.map_or(true, |s| s.contains(name));
    let mut plan = Plan::new(lib, build, mtime, changes, |c| {
        match shard_uses(lib, changes, shard, &c.name) {
            true => build_layer(c, mtime, compression),
            false => Ok(None),
        }
    })?;
    plan.retain_names(in_shard);
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
            .filter(|m| in_shard(&m.name))
            .enumerate()
        {
            if m.build.is_some() {
                continue; // Built by `graft build`: nothing to resolve before it runs.
            }
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

/// Whether a selected image of `shard` has `layer` as its compat layer (with no shard: every
/// layer a selected image uses, as [`Plan::new`] asks). Layers of other shards' images are
/// not built: a shard's plan costs its share.
fn shard_uses(
    lib: &Library,
    changes: Option<&ChangeSet>,
    shard: Option<Shard>,
    layer: &str,
) -> bool {
    let Some(shard) = shard else {
        return true;
    };
    lib.manifests().iter().any(|m| {
        m.compat == layer
            && shard.contains(&m.name)
            && changes.map_or(true, |c| c.reasons(&m.rel).is_some())
    })
}

/// One job of a CI matrix: one final image name with all its manifests, because
/// `graft refresh NAME` refreshes every manifest of a name (and a shard never splits a name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatrixJob {
    /// The image name: what the job passes to `graft refresh`.
    pub name: String,
    /// Its versions in the plan, space-separated (for job titles and logs).
    pub versions: String,
    /// Its manifest files in the plan, space-separated.
    pub manifests: String,
}

/// The CI system a matrix is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiSystem {
    /// GitHub Actions: `strategy.matrix`, `{"include": [{"name": …}, …]}` (for `fromJSON`).
    Github,
    /// GitLab CI: `parallel:matrix`, a list of variable maps `[{"IMAGE": …}, …]`.
    Gitlab,
}

/// The plan's images as matrix jobs, one per name, in the plan's order (first manifest of
/// each name).
pub fn matrix_jobs(plan: &Plan) -> Vec<MatrixJob> {
    let mut jobs: Vec<MatrixJob> = Vec::new();
    for img in &plan.images {
        match jobs.iter_mut().find(|j| j.name == img.name) {
            Some(j) => {
                j.versions = format!("{} {}", j.versions, img.version);
                j.manifests = format!("{} {}", j.manifests, img.manifest);
            }
            None => jobs.push(MatrixJob {
                name: img.name.clone(),
                versions: img.version.clone(),
                manifests: img.manifest.clone(),
            }),
        }
    }
    jobs
}

/// The matrix document for `ci` (a value: the caller encodes it as JSON or YAML). Every
/// value is a string (GitLab's variables are strings). No jobs give `{"include":[]}` or `[]`:
/// valid documents that a workflow tests to skip its refresh jobs (see docs/ci.md).
pub fn matrix(jobs: &[MatrixJob], ci: CiSystem) -> serde_json::Value {
    use serde_json::{json, Value};
    let entries: Vec<Value> = jobs
        .iter()
        .map(|j| match ci {
            CiSystem::Github => json!({
                "name": j.name,
                "versions": j.versions,
                "manifests": j.manifests,
            }),
            CiSystem::Gitlab => json!({
                "IMAGE": j.name,
                "VERSIONS": j.versions,
                "MANIFESTS": j.manifests,
            }),
        })
        .collect();
    match ci {
        CiSystem::Github => json!({ "include": entries }),
        CiSystem::Gitlab => Value::Array(entries),
    }
}

#[cfg(test)]
mod matrix_tests {
    use super::*;

    fn job(name: &str, versions: &str, manifests: &str) -> MatrixJob {
        MatrixJob {
            name: name.into(),
            versions: versions.into(),
            manifests: manifests.into(),
        }
    }

    #[test]
    fn github_and_gitlab_shapes() {
        let jobs = [
            job("a", "1.0", "manifests/a.yaml"),
            job("b", "2.4 2.5", "manifests/b.yaml manifests/b25.yaml"),
        ];
        assert_eq!(
            matrix(&jobs, CiSystem::Github).to_string(),
            r#"{"include":[{"name":"a","versions":"1.0","manifests":"manifests/a.yaml"},{"name":"b","versions":"2.4 2.5","manifests":"manifests/b.yaml manifests/b25.yaml"}]}"#
        );
        assert_eq!(
            matrix(&jobs, CiSystem::Gitlab).to_string(),
            r#"[{"IMAGE":"a","VERSIONS":"1.0","MANIFESTS":"manifests/a.yaml"},{"IMAGE":"b","VERSIONS":"2.4 2.5","MANIFESTS":"manifests/b.yaml manifests/b25.yaml"}]"#
        );
    }

    /// The exact bytes docs/ci.md tells workflows to compare against.
    #[test]
    fn empty_matrices_are_valid_documents() {
        assert_eq!(
            matrix(&[], CiSystem::Github).to_string(),
            r#"{"include":[]}"#
        );
        assert_eq!(matrix(&[], CiSystem::Gitlab).to_string(), "[]");
    }
}
