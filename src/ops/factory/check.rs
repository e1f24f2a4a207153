//! `graft factory check`: the base watch. Every base and external image is resolved (a base
//! follows one tag: one manifest HEAD per base; an external image with the Lexical or SemVer
//! strategy lists its tags, keeps those allowTags matches, and HEADs the one selected; with
//! NewestBuild it reads every allowed tag's manifest and config and takes the newest build,
//! see [`crate::ops::select`]), a
//! change is recorded (`previousDigest`, `lastUpdated`), and each managed image gets a
//! decision:
//!
//! - **due** when a base moved since its last build (the base digest its newest build recorded
//!   differs from the base's digest now; without one, the base changed after `lastBuilt`), at
//!   least `rebuildDelay` has passed since that build, and `autoRebuild` is on;
//! - otherwise **waiting** (the delay is a rate limit: at most one rebuild per `rebuildDelay`,
//!   counted from the last build; `dueAt` says when), **held** (autoRebuild off), **unbuilt**
//!   (no build recorded yet), **failed** (discovery failed, or a base could not be resolved),
//!   or **monitoring** (nothing moved).
//!
//! With `exec`, a command runs once per due image (argv as given, never through a shell) with
//! `GRAFT_IMAGE_NAME`, `GRAFT_IMAGE_REFERENCE` and `GRAFT_REBUILD_REASON` in its environment.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::library::Library;
use crate::ops::build::{build_recording, BuildOptions};
use crate::ops::refresh::{refresh_recording, RefreshReport, RefreshRequest};
use crate::progress::Reporter;
use crate::reference::{DockerRef, ImageRef};
use crate::store::open::{open_repository, Endpoint};
use crate::timestamp::Timestamp;

use super::record::{record_locked, BuildReportIn, RecordOptions, Recorded, RefreshReportIn};
use super::state::{status, RebuildState, State, StateDir};
use crate::ops::select::newest_builds;

use super::{exact_tag, human, parse_time, select_tag, Delay, Strategy};

/// How to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The time now (decisions and `lastChecked`).
    pub now: Timestamp,
    /// Registry requests at once.
    pub concurrency: usize,
    /// A command run once per due image (argv).
    pub exec: Option<Vec<String>>,
    /// Longest run of one exec command.
    pub exec_timeout: Duration,
}

/// One base or external image resolved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// Its state name.
    pub name: String,
    /// What was asked (`registry/repository:tag`).
    pub reference: String,
    /// The digest now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The digest before, when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Whether it changed in this check.
    pub changed: bool,
    /// Why it could not be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The decision for one managed image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The image's name.
    pub name: String,
    /// `registry/repository`.
    pub reference: String,
    /// A rebuild is due now.
    pub due: bool,
    /// due, waiting, held, unbuilt, failed, monitoring.
    pub status: String,
    /// Why.
    pub reason: String,
    /// When the delay runs out (waiting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    /// The exec command's exit code (with `--exec`, due images only; -1: it did not finish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_status: Option<i32>,
}

/// What a check found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// The time of the check.
    pub now: String,
    /// Every base in use.
    pub base_images: Vec<Resolved>,
    /// Every external image.
    pub external_images: Vec<Resolved>,
    /// Every managed image.
    pub images: Vec<Decision>,
    /// Bases or external images that could not be resolved, and exec commands that failed.
    pub failures: usize,
}

enum Target {
    /// One tag by digest (or a pinned digest: no request).
    Tag(DockerRef),
    /// Tags listed and selected.
    Select(DockerRef, Strategy, Option<regex::Regex>),
    /// Tags listed, every allowed one's config read: the newest build (NewestBuild).
    Newest(DockerRef, Option<regex::Regex>),
}

/// Candidate images NewestBuild reads at once, per external image.
const NEWEST_BUILD_JOBS: usize = 4;

/// Check every base and external image in `dir` and decide for every managed image.
pub async fn check(dir: &StateDir, ep: &Endpoint, opts: &CheckOptions) -> Result<CheckReport> {
    let lock = dir.lock()?;
    let mut report = check_locked(dir, ep, opts).await?;
    // The hooks run unlocked: one may well run `graft factory record`.
    drop(lock);
    run_execs(&mut report, opts).await?;
    Ok(report)
}

/// What `check --refresh` hands to graft's own refresh and build.
pub struct LibraryRefresh<'a> {
    /// The library whose manifests are enrolled (`factory sync --library`).
    pub library: &'a Library,
    /// The refresh's options, signing and clock; its `names` are set here (the due `science:`
    /// images).
    pub request: RefreshRequest,
    /// The build's options (buildah, signing) for the due `build:` images.
    pub build: BuildOptions,
    /// Progress of the refresh and the build.
    pub reporter: Arc<dyn Reporter>,
}

/// A due library image that was not refreshed, and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotRefreshed {
    /// The image.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// What `check --refresh` did: the check, then the refresh and the build of the due library
/// images and the builds recorded.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRefreshReport {
    /// The check (decisions as they were before the refresh).
    #[serde(flatten)]
    pub check: CheckReport,
    /// Builds recorded from the refresh of due `science:` images (digest per image).
    pub refreshed: Vec<Recorded>,
    /// Builds recorded from the build of due `build:` images (the final digest per image).
    pub built: Vec<Recorded>,
    /// Due images graft did not refresh or build.
    pub not_refreshed: Vec<NotRefreshed>,
}

/// `graft factory check --refresh`: check (as [`check`]), then, for the due images that are
/// manifests of `lib`: graft's own refresh ([`crate::ops::refresh::refresh`], in this process)
/// of those with `science:`, then one build ([`crate::ops::build::build`]: dependency order,
/// library bases pinned, a due child after its due base and on the digest just written) of
/// those with `build:`. What each wrote is recorded as [`super::record`] records a `graft
/// refresh -o json` or `graft build -o json` report, with trigger `base-update` and the run's
/// commit. The state directory stays locked from the check to the last record.
///
/// A failure stops the refresh and the build and is returned, after what was written before
/// it is recorded and the `--exec` hooks of the due images have run: a failed refresh records
/// the images whose tags it wrote (a signing failure comes after every tag) and builds
/// nothing; a failed build records the refreshes and every image the build wrote before the
/// failure (their tags moved: the state says so), the failing image too when its tags were
/// written before it failed (signing, the compat refresh's final image). When recording fails
/// as well, the run's failure is returned with the recording's attached. Due images that are
/// not library manifests are left to `--exec`.
pub async fn check_refresh(
    dir: &StateDir,
    ep: &Endpoint,
    opts: &CheckOptions,
    lib: LibraryRefresh<'_>,
) -> Result<CheckRefreshReport> {
    let lock = dir.lock()?;
    let mut check = check_locked(dir, ep, opts).await?;
    let state = dir.load()?;
    let mut refresh_names = Vec::new();
    let mut build_names = Vec::new();
    let mut not_refreshed = Vec::new();
    for d in check.images.iter().filter(|d| d.due) {
        let from_library = state
            .images
            .get(&d.name)
            .is_some_and(|s| s.enrollment.get("library").is_some());
        if !from_library {
            continue;
        }
        let Some(m) = lib.library.manifests_named(&d.name).next() else {
            not_refreshed.push(NotRefreshed {
                name: d.name.clone(),
                reason: format!(
                    "enrolled from a library, but {} has no manifest named {}",
                    lib.library.root().display(),
                    d.name
                ),
            });
            continue;
        };
        match m.build.is_some() {
            true => build_names.push(d.name.clone()),
            false => refresh_names.push(d.name.clone()),
        }
    }
    let record_opts = RecordOptions {
        now: opts.now,
        commit: lib.request.options.build.commit.clone(),
        trigger: "base-update".into(),
    };
    let mut refreshed = Vec::new();
    // The first failure of the refresh or the build: returned after the execs.
    let mut failure: Option<Error> = None;
    if !refresh_names.is_empty() {
        let mut request = lib.request;
        request.names = refresh_names;
        let mut written = Vec::new();
        let result = refresh_recording(lib.library, request, ep, &lib.reporter, &mut written).await;
        // What was written is recorded even when signing failed after the tags.
        let report = RefreshReport {
            dry_run: false,
            images: written,
        };
        let recorded = (|| {
            // The same reading `factory record` gives a `graft refresh -o json` report.
            let input: RefreshReportIn = reread(&report, "the refresh report")?;
            record_locked(dir, &[("refresh".into(), input.into())], &record_opts)
        })();
        match settle(result.map(|_| ()), recorded) {
            Ok(r) => refreshed = r,
            Err((e, r)) => {
                refreshed = r;
                failure = Some(e);
            }
        }
    }
    let mut built = Vec::new();
    if !build_names.is_empty() && failure.is_none() {
        // Each base at the digest this check resolved: the build is made on what the check
        // saw (not on a stale copy in buildah's storage), and recorded so.
        let mut build_opts = lib.build;
        let checked = &state;
        for name in &build_names {
            let Some(s) = checked.images.get(name) else {
                continue;
            };
            for b in s.base_images.iter().filter_map(|b| checked.bases.get(b)) {
                let (Some(d), Ok(r)) = (&b.current_digest, DockerRef::parse(&b.full_image)) else {
                    continue;
                };
                let Ok(d) = d.parse::<crate::oci::Digest>() else {
                    continue;
                };
                if r.digest.is_none() && !build_opts.base_pins.iter().any(|(p, _)| *p == r) {
                    build_opts.base_pins.push((r, d));
                }
            }
        }
        let mut written = Vec::new();
        let result = build_recording(
            lib.library,
            &build_names,
            &build_opts,
            ep,
            &lib.reporter,
            &mut written,
        )
        .await;
        // What was written is recorded even when a later image failed.
        let recorded = (|| {
            let input: BuildReportIn = reread(
                &serde_json::json!({"order": [], "images": written}),
                "the build report",
            )?;
            let input = input.into_report("build")?;
            record_locked(dir, &[("build".into(), input)], &record_opts)
        })();
        match settle(result.map(|_| ()), recorded) {
            Ok(r) => built = r,
            Err((e, r)) => {
                built = r;
                failure = Some(e);
            }
        }
    }
    drop(lock);
    // The hooks of every due image run even when a library image failed.
    let execs = run_execs(&mut check, opts).await;
    if let Some(e) = failure {
        return Err(match execs {
            Ok(()) => e,
            Err(x) => e.context(format!("then running the --exec hooks also failed: {x}")),
        });
    }
    execs?;
    Ok(CheckRefreshReport {
        check,
        refreshed,
        built,
        not_refreshed,
    })
}

/// The outcome of a refresh or a build and of recording what it wrote: the records, or the
/// run's failure first (a test failure keeps its exit code) with the recording's attached,
/// and what was recorded.
fn settle(
    run: Result<()>,
    recorded: Result<super::record::RecordReport>,
) -> std::result::Result<Vec<Recorded>, (Error, Vec<Recorded>)> {
    match (run, recorded) {
        (Ok(()), Ok(r)) => Ok(r.recorded),
        (Ok(()), Err(e)) => Err((e, Vec::new())),
        (Err(e), Ok(r)) => Err((e, r.recorded)),
        (Err(e), Err(r)) => Err((
            e.context(format!(
                "recording what was written failed too ({r}), after"
            )),
            Vec::new(),
        )),
    }
}

/// A report of this process read back as `factory record` reads the JSON of one.
fn reread<T: Serialize, U: serde::de::DeserializeOwned>(report: &T, what: &str) -> Result<U> {
    let value = serde_json::to_value(report).map_err(|e| Error::internal(what, e))?;
    serde_json::from_value(value).map_err(|e| Error::internal(what, e))
}

async fn check_locked(dir: &StateDir, ep: &Endpoint, opts: &CheckOptions) -> Result<CheckReport> {
    let old = dir.load()?;
    let mut state = old.clone();
    let now = opts.now.rfc3339();

    // What to resolve: (is_base, name, target).
    let mut jobs: Vec<(bool, String, std::result::Result<Target, String>)> = Vec::new();
    for (name, b) in old.bases.iter().filter(|(_, b)| b.removed_at.is_none()) {
        let t = DockerRef::parse(&b.full_image)
            .map(Target::Tag)
            .map_err(|e| e.to_string());
        jobs.push((true, name.clone(), t));
    }
    for (name, s) in old.images.iter().filter(|(_, s)| s.removed_at.is_none()) {
        if s.discovery_status != status::EXTERNAL {
            continue;
        }
        let t = external_target(
            s.repo_url.as_deref(),
            s.allow_tags.as_deref(),
            s.image_selection_strategy.as_deref(),
        );
        jobs.push((false, name.clone(), t));
    }
    let results: Vec<Outcome> =
        stream::iter(jobs.into_iter().map(|(is_base, name, t)| async move {
            let r = match t {
                Err(e) => Err(e),
                Ok(t) => resolve(&t, ep)
                    .await
                    .map_err(|e| crate::error::one_line(&e)),
            };
            (is_base, name, r)
        }))
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;

    let mut report = CheckReport {
        now: now.clone(),
        base_images: Vec::new(),
        external_images: Vec::new(),
        images: Vec::new(),
        failures: 0,
    };
    let mut base_errors: BTreeMap<String, String> = BTreeMap::new();
    for (is_base, name, r) in results {
        let (cur, prev_slot, checked, updated, version) = if is_base {
            let b = state
                .bases
                .get_mut(&name)
                .ok_or_else(|| Error::internal("check", "base vanished"))?;
            (
                &mut b.current_digest,
                &mut b.previous_digest,
                &mut b.last_checked,
                &mut b.last_updated,
                None,
            )
        } else {
            let s = state
                .images
                .get_mut(&name)
                .ok_or_else(|| Error::internal("check", "image vanished"))?;
            (
                &mut s.current_digest,
                &mut s.previous_digest,
                &mut s.last_checked,
                &mut s.last_updated,
                Some(&mut s.current_version),
            )
        };
        let mut out = Resolved {
            name: name.clone(),
            reference: String::new(),
            digest: None,
            previous: None,
            changed: false,
            error: None,
        };
        match r {
            Ok((reference, d)) => {
                out.reference = reference;
                let d = d.0;
                if cur.as_deref() != Some(d.as_str()) {
                    if let Some(p) = cur.clone() {
                        *prev_slot = Some(p.clone());
                        *updated = Some(now.clone());
                        out.previous = Some(p);
                        out.changed = true;
                    }
                    *cur = Some(d.clone());
                }
                *checked = Some(now.clone());
                if let (Some(v), Some(tag)) = (
                    version,
                    out.reference.rsplit_once(':').map(|(_, t)| t.to_string()),
                ) {
                    *v = Some(tag);
                }
                out.digest = Some(d);
            }
            Err(e) => {
                report.failures += 1;
                if is_base {
                    base_errors.insert(name.clone(), e.clone());
                }
                out.error = Some(e);
            }
        }
        if is_base {
            report.base_images.push(out);
        } else {
            report.external_images.push(out);
        }
    }

    for (name, s) in old
        .images
        .iter()
        .filter(|(_, s)| s.removed_at.is_none() && s.discovery_status != status::EXTERNAL)
    {
        let d = decide(s, &state, &base_errors, opts.now);
        let mut rs = RebuildState {
            status: d.status.clone(),
            pending_rebuild: d.due,
            reason: Some(d.reason.clone()),
            due_at: d.due_at.clone(),
        };
        if rs.status == "monitoring" {
            rs.reason = None;
        }
        if let Some(img) = state.images.get_mut(name) {
            img.rebuild_state = Some(rs);
        }
        report.images.push(d);
    }
    dir.write_changed(&old, &state)?;
    Ok(report)
}

/// `--exec`: the command once per due image, after the state is written and unlocked.
async fn run_execs(report: &mut CheckReport, opts: &CheckOptions) -> Result<()> {
    if let Some(argv) = &opts.exec {
        for d in report.images.iter_mut().filter(|d| d.due) {
            let code = run_exec(argv, d, opts.exec_timeout).await?;
            if code != 0 {
                report.failures += 1;
            }
            d.exec_status = Some(code);
        }
    }
    Ok(())
}

/// A digest as text.
struct Digestish(String);

/// One resolution: whether it is a base, its name, the reference asked and its digest or why not.
type Outcome = (
    bool,
    String,
    std::result::Result<(String, Digestish), String>,
);

fn external_target(
    repo_url: Option<&str>,
    allow: Option<&str>,
    strategy: Option<&str>,
) -> std::result::Result<Target, String> {
    let repo = repo_url.ok_or("no repoURL: run graft factory sync")?;
    let strategy =
        Strategy::parse(strategy.unwrap_or("SemVer")).ok_or("unknown imageSelectionStrategy")?;
    let r = DockerRef::parse(repo).map_err(|e| e.to_string())?;
    match strategy {
        Strategy::Digest => {
            let tag = allow
                .and_then(exact_tag)
                .ok_or("the Digest strategy needs allowTags `^TAG$`")?;
            Ok(Target::Tag(r.with_tag(&tag)))
        }
        Strategy::NewestBuild => {
            let re = allow
                .map(regex::Regex::new)
                .transpose()
                .map_err(|e| format!("allowTags: {e}"))?;
            Ok(Target::Newest(r, re))
        }
        s => {
            let re = allow
                .map(regex::Regex::new)
                .transpose()
                .map_err(|e| format!("allowTags: {e}"))?;
            Ok(Target::Select(r, s, re))
        }
    }
}

/// The reference asked and its digest.
async fn resolve(t: &Target, ep: &Endpoint) -> Result<(String, Digestish)> {
    let (r, tag) = match t {
        Target::Tag(r) => {
            if let Some(d) = &r.digest {
                // Pinned: it cannot move; no request.
                return Ok((r.to_string(), Digestish(d.to_string())));
            }
            (r.clone(), r.reference())
        }
        Target::Select(r, strategy, re) => {
            let repo = open_repository(&ImageRef::Docker(r.clone()), ep, false)?;
            let tags = repo.list_tags().await?;
            let tag = select_tag(*strategy, re.as_ref(), &tags).ok_or_else(|| Error::NotFound {
                what: format!("a tag of {} that allowTags and {strategy} select", r.name()),
                detail: Some(format!("{} tags listed", tags.len())),
            })?;
            (r.with_tag(&tag), tag)
        }
        Target::Newest(r, re) => {
            // The digest read with the build time: no second request, no race with a push.
            let repo = open_repository(&ImageRef::Docker(r.clone()), ep, false)?;
            let tags = repo.list_tags().await?;
            let built =
                newest_builds(repo.as_ref(), re.as_ref(), &tags, None, NEWEST_BUILD_JOBS).await?;
            let b = built.into_iter().next().ok_or_else(|| Error::NotFound {
                what: format!(
                    "a tag of {} that allowTags and NewestBuild select",
                    r.name()
                ),
                detail: Some(format!("{} tags listed", tags.len())),
            })?;
            return Ok((
                r.with_tag(&b.tag).to_string(),
                Digestish(b.digest.to_string()),
            ));
        }
    };
    let repo = open_repository(&ImageRef::Docker(r.clone()), ep, false)?;
    let d = repo.resolve(&tag).await?.ok_or_else(|| Error::NotFound {
        what: format!("{r}"),
        detail: None,
    })?;
    Ok((r.with_tag(&tag).to_string(), Digestish(d.to_string())))
}

fn decide(
    s: &super::state::ImageState,
    state: &State,
    base_errors: &BTreeMap<String, String>,
    now: Timestamp,
) -> Decision {
    let enrollment = |k: &str| s.enrollment.get(k);
    let reference = format!(
        "{}/{}",
        enrollment("registry")
            .and_then(|v| v.as_str())
            .unwrap_or(""),
        enrollment("repository")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    );
    let auto = enrollment("autoRebuild")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let delay = enrollment("rebuildDelay")
        .and_then(|v| v.as_str())
        .and_then(|t| Delay::parse(t).ok())
        .unwrap_or_else(Delay::zero);
    let mk = |st: &str, reason: String, due_at: Option<String>| Decision {
        name: s.name.clone(),
        reference: reference.clone(),
        due: st == "due",
        status: st.into(),
        reason,
        due_at,
        exec_status: None,
    };
    if s.discovery_status == status::FAILED && s.base_images.is_empty() {
        return mk(
            "failed",
            format!(
                "discovery failed: {}",
                s.discovery_error.as_deref().unwrap_or("?")
            ),
            None,
        );
    }
    for b in &s.base_images {
        if let Some(e) = base_errors.get(b) {
            return mk(
                "failed",
                format!("base {b} could not be checked: {e}"),
                None,
            );
        }
    }
    let Some(built) = s.last_built.as_deref() else {
        return mk(
            "unbuilt",
            "never built: no build recorded (graft factory record)".into(),
            None,
        );
    };
    let Ok(built_at) = parse_time(built) else {
        return mk("failed", format!("lastBuilt {built:?} is not a time"), None);
    };
    let newest = s.build_history.first();
    let mut moved = Vec::new();
    for name in &s.base_images {
        let Some(b) = state.bases.get(name) else {
            continue;
        };
        let Some(cur) = &b.current_digest else {
            continue;
        };
        let on = newest.and_then(|h| {
            h.base_digests
                .get(name)
                .or_else(|| h.base_digests.get(&b.full_image))
        });
        let has_moved = match on {
            Some(d) => d != cur,
            None => b
                .last_updated
                .as_deref()
                .and_then(|u| parse_time(u).ok())
                .is_some_and(|u| u > built_at),
        };
        if has_moved {
            moved.push(format!("{name} moved to {cur}"));
        }
    }
    if moved.is_empty() {
        return mk(
            "monitoring",
            "bases unchanged since the last build".into(),
            None,
        );
    }
    let why = moved.join(", ");
    if !auto {
        return mk("held", format!("{why}; autoRebuild is off"), None);
    }
    let due_at = Timestamp(built_at.0.saturating_add(delay.seconds));
    if now < due_at {
        return mk(
            "waiting",
            format!(
                "{why}; rebuildDelay {}: {} left",
                delay.text,
                human(due_at.0 - now.0)
            ),
            Some(due_at.rfc3339()),
        );
    }
    mk("due", why, None)
}

/// Run `argv` for one due image; its exit code (-1: killed or timed out).
async fn run_exec(argv: &[String], d: &Decision, timeout: Duration) -> Result<i32> {
    let (prog, args) = argv.split_first().ok_or_else(|| Error::Input {
        what: "--exec".into(),
        reason: "no command".into(),
    })?;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .env("GRAFT_IMAGE_NAME", &d.name)
        .env("GRAFT_IMAGE_REFERENCE", &d.reference)
        .env("GRAFT_REBUILD_REASON", &d.reason)
        .stdin(std::process::Stdio::null())
        // Its output is not graft's data: stdout stays for the report.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| Error::Input {
        what: format!("--exec {prog}"),
        reason: format!("cannot run it: {e}"),
    })?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => Ok(st.code().unwrap_or(-1)),
        Ok(Err(e)) => Err(Error::internal(format!("waiting for {prog}"), e)),
        Err(_) => {
            let _ = child.kill().await;
            Ok(-1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::factory::state::{BaseState, Build, ImageState};

    fn setup(auto: bool, history: bool) -> (ImageState, State) {
        let enrollment: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
            "{{registry: r.io, repository: a/b, rebuildDelay: 1d, autoRebuild: {auto}}}"
        ))
        .unwrap();
        let mut img = ImageState {
            name: "app".into(),
            discovery_status: status::SUCCESS.into(),
            enrollment,
            base_images: vec!["node-22".into()],
            last_built: Some("2024-01-01T00:00:00Z".into()),
            ..ImageState::default()
        };
        if history {
            img.build_history.push(Build {
                digest: "sha256:1".into(),
                time: "2024-01-01T00:00:00Z".into(),
                base_digests: [("node-22".to_string(), "sha256:old".to_string())].into(),
                ..Build::default()
            });
        }
        let mut state = State::default();
        state.bases.insert(
            "node-22".into(),
            BaseState {
                name: "node-22".into(),
                full_image: "node:22".into(),
                current_digest: Some("sha256:new".into()),
                last_updated: Some("2024-01-01T06:00:00Z".into()),
                ..BaseState::default()
            },
        );
        (img, state)
    }

    fn at(t: &str) -> Timestamp {
        parse_time(t).unwrap()
    }

    #[test]
    fn due_after_the_delay_from_the_last_build() {
        for history in [true, false] {
            let (img, state) = setup(true, history);
            let none = BTreeMap::new();
            let d = decide(&img, &state, &none, at("2024-01-01T23:59:59Z"));
            assert_eq!((d.status.as_str(), d.due), ("waiting", false), "{d:?}");
            assert_eq!(d.due_at.as_deref(), Some("2024-01-02T00:00:00Z"));
            let d = decide(&img, &state, &none, at("2024-01-02T00:00:00Z"));
            assert_eq!((d.status.as_str(), d.due), ("due", true), "{d:?}");
            assert!(d.reason.contains("node-22 moved to sha256:new"));
        }
    }

    #[test]
    fn why_not() {
        let none = BTreeMap::new();
        let late = at("2030-01-01T00:00:00Z");
        let (img, state) = setup(false, true);
        assert_eq!(decide(&img, &state, &none, late).status, "held");
        let (mut img, state) = setup(true, true);
        img.last_built = None;
        assert_eq!(decide(&img, &state, &none, late).status, "unbuilt");
        let (mut img, state) = setup(true, true);
        img.build_history[0]
            .base_digests
            .insert("node-22".into(), "sha256:new".into());
        assert_eq!(decide(&img, &state, &none, late).status, "monitoring");
        // Without a recorded base digest: a base changed before the build is no reason.
        let (mut img, state) = setup(true, false);
        img.last_built = Some("2024-01-01T07:00:00Z".into());
        assert_eq!(decide(&img, &state, &none, late).status, "monitoring");
        let (img, state) = setup(true, true);
        let errors = [("node-22".to_string(), "connection refused".to_string())].into();
        let d = decide(&img, &state, &errors, late);
        assert_eq!(d.status, "failed");
        assert!(d.reason.contains("connection refused"));
    }
}
