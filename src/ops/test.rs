//! `graft test REF --cmd …`: commands run inside any image, without a daemon, the way
//! `graft build` tests what it builds (decisions §32).
//!
//! 1. **The platform** is this machine's, or `--platform`, or the one a single-manifest
//!    image's config names; another than this machine's needs a QEMU binfmt emulator
//!    ([`crate::builder::binfmt`]), checked before anything runs (a `--platform` before
//!    anything is read).
//! 2. **Exactly those bytes.** The reference is resolved once to its root digest; graft copies
//!    that root (narrowed to the platform when it is an index) with its own registry client
//!    and credentials into a layout in the work directory, and buildah pulls it from there
//!    (`oci:DIR:TAG`): buildah never sees the registry, its credentials, or a tag that may move.
//! 3. **Each command** runs as `sh -c COMMAND` in a new container of that image (the image's
//!    entrypoint is not used), with a time limit; its output is kept to the last 4 KiB.
//!    Every command runs; the report says how each ended. The caller turns the first failure
//!    into [`Error::TestFailed`] (exit 3) with [`TestReport::failure`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::builder::binfmt::{has_emulator, is_native};
use crate::builder::buildah::{Buildah, TestStatus};
use crate::copy::{copy_image, resolve_root, CopyOptions};
use crate::error::{Error, Result};
use crate::image::append::CONFIG_LIMIT;
use crate::image::rebase::config_platform;
use crate::oci::{Digest, Platform};
use crate::ops::memo::Memo;
use crate::progress::Reporter;
use crate::reference::{ImageRef, LayoutRef};
use crate::store::open::{open_sink, open_source, Endpoint};
use crate::store::{read_blob, Source};

/// The layout tag under which an image to test is handed to buildah.
const TESTED_TAG: &str = "graft-tested";

/// How `graft test` runs.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The commands, each run as `sh -c COMMAND`, in order.
    pub commands: Vec<String>,
    /// The platform to test (default: `host`).
    pub platform: Option<Platform>,
    /// This machine's platform.
    pub host: Platform,
    /// Where binfmt_misc entries are listed ([`crate::builder::binfmt::BINFMT_DIR`]).
    pub binfmt_dir: PathBuf,
    /// The builder that runs the commands, with its own storage.
    pub buildah: Buildah,
    /// Time limit of each command.
    pub timeout: Duration,
    /// A directory for the layout handed to buildah.
    pub work_dir: PathBuf,
    /// Concurrent blob transfers.
    pub jobs: usize,
}

/// One command run inside an image.
#[derive(Debug, Clone, Serialize)]
pub struct TestRun {
    /// The command (`sh -c`).
    pub command: String,
    /// The platform of the image it ran in.
    pub platform: String,
    /// Passed, failed or timed out.
    pub status: TestStatus,
    /// Its exit code (null when killed by a signal or stopped at the time limit).
    pub exit_code: Option<i32>,
    /// How it ended (`exit status: 0`, `signal: 9`, `stopped after 600s`).
    pub ended: String,
    /// The end of its output (stdout and stderr as they came, at most 4 KiB).
    pub output: String,
    /// Earlier output was dropped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
}

impl TestRun {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.status == TestStatus::Passed
    }

    /// This run as the error of a failed test in `image` (a description for the message).
    pub fn error(&self, image: &str) -> Error {
        Error::TestFailed {
            image: format!("{image} ({})", self.platform),
            command: self.command.clone(),
            ended: self.ended.clone(),
            output: self.output.clone(),
        }
    }
}

/// What `graft test` did.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// The reference as given.
    pub reference: String,
    /// Its root (index or manifest), resolved once: what was tested.
    pub digest: Digest,
    /// The platform tested.
    pub platform: String,
    /// The platform manifest the commands ran in (the root when it is not an index).
    pub manifest: Digest,
    /// Every command passed.
    pub passed: bool,
    /// Each command, in order.
    pub tests: Vec<TestRun>,
}

impl TestReport {
    /// The first command that did not pass, as [`Error::TestFailed`] (exit 3).
    pub fn failure(&self) -> Option<Error> {
        self.tests
            .iter()
            .find(|t| !t.passed())
            .map(|t| t.error(&format!("{}@{}", self.reference, self.digest)))
    }
}

/// Whether `platform` can run here: this machine's, or one with a QEMU emulator; otherwise
/// bad input (exit 2) naming it.
pub fn check_platform(platform: &Platform, host: &Platform, binfmt_dir: &Path) -> Result<()> {
    if is_native(platform, host) || has_emulator(binfmt_dir, platform) {
        return Ok(());
    }
    Err(Error::Unsupported(format!(
        "platform {platform} cannot run on this {host} machine: binfmt_misc has no QEMU emulator for it in {}; install qemu-user-static with binfmt support, or test {platform} on a {platform} machine",
        binfmt_dir.display()
    )))
}

/// Run `opts.commands` inside the image `reference` names (see the module documentation).
pub async fn test(
    reference: &ImageRef,
    opts: &TestOptions,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<TestReport> {
    if opts.commands.is_empty() {
        return Err(Error::Input {
            what: "--cmd".into(),
            reason: "no command to run: give at least one".into(),
        });
    }
    if let Some(p) = &opts.platform {
        check_platform(p, &opts.host, &opts.binfmt_dir)?;
    }
    let src = Memo::new(Arc::from(open_source(reference, ep).await?));
    // Resolved once: every later read of the root is this one (the memo keeps it).
    let root = src
        .resolve()
        .await
        .map_err(|e| e.context(format!("resolving {reference}")))?;
    // A single-manifest image is for the platform its config names.
    let single = match (root.is_index(), root.view().config.clone()) {
        (false, Some(config)) => {
            let bytes = read_blob(&src, &config, CONFIG_LIMIT)
                .await
                .map_err(|e| e.context(format!("reading the config of {reference}")))?;
            config_platform(&bytes)
        }
        _ => None,
    };
    let platform = match (&opts.platform, single) {
        (Some(p), Some(q)) if !p.matches(&q) => {
            return Err(Error::Unsupported(format!(
                "{reference} is a single-platform image for {q}, not {p}"
            )))
        }
        (Some(p), _) => p.clone(),
        (None, Some(q)) => q,
        (None, None) => opts.host.clone(),
    };
    check_platform(&platform, &opts.host, &opts.binfmt_dir)?;
    let (manifest, tests) = test_image(
        &src,
        &platform,
        &opts.buildah,
        &opts.work_dir.join("tested"),
        &opts.commands,
        opts.timeout,
        false,
        opts.jobs,
        ep,
        reporter,
    )
    .await
    .map_err(|e| e.context(format!("testing {reference}@{}", root.digest())))?;
    Ok(TestReport {
        reference: reference.to_string(),
        digest: root.digest().clone(),
        platform: platform.to_string(),
        manifest,
        passed: tests.iter().all(TestRun::passed),
        tests,
    })
}

/// Copy the image `src` points at (its `platform` manifest, when it is an index) into the
/// layout `dir` and pull it from there into buildah's storage: the image id, and the digest
/// of the manifest pulled. `src` must resolve to the same root every time (a [`Memo`], an
/// assembled image).
pub(crate) async fn into_buildah(
    src: &dyn Source,
    platform: &Platform,
    buildah: &Buildah,
    dir: &Path,
    jobs: usize,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<(String, Digest)> {
    let root = src.resolve().await?;
    let narrowed = root.is_index().then(|| platform.clone());
    let manifest = resolve_root(src, narrowed.as_ref()).await?.digest().clone();
    // buildah names an image pulled from a layout after the layout's path, which must then
    // be a valid repository name (lowercase, no leading dot): a fresh directory named so.
    let dir = name_safe_dir(dir)?;
    let layout = ImageRef::Layout(LayoutRef {
        path: dir.path().to_path_buf(),
        tag: Some(TESTED_TAG.into()),
    });
    let sink = open_sink(&layout, ep).await?;
    let copy_opts = CopyOptions {
        platform: narrowed,
        jobs: jobs.max(1),
        tags: vec![TESTED_TAG.into()],
        commit: true,
        ..CopyOptions::default()
    };
    copy_image(src, sink.as_ref(), &copy_opts, reporter).await?;
    let shown = dir.path().display();
    let id = buildah
        .pull(&format!("oci:{shown}:{TESTED_TAG}"), platform)
        .await
        .map_err(|e| Error::internal(format!("pulling {shown} into buildah"), e))?;
    Ok((id, manifest))
}

/// Whether `path` can name an image buildah pulls from a layout (`oci:PATH:TAG`): absolute,
/// each component lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit.
fn buildah_safe(path: &Path) -> bool {
    path.is_absolute()
        && path.components().skip(1).all(|c| {
            let s = c.as_os_str().to_string_lossy();
            s.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && s.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        })
}

/// A new directory `PREFIXHEX` in `parent` (created), removed when dropped.
fn fresh_dir(parent: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    use rand_core::RngCore;
    std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    let name = format!("{prefix}{:016x}", rand_core::OsRng.next_u64());
    tempfile::Builder::new()
        .prefix(&name)
        .rand_bytes(0)
        .tempdir_in(parent)
        .map_err(|e| Error::io("creating a directory in", parent, e))
}

/// The system's temporary directory when buildah can pull from a layout under it, else bad
/// input naming TMPDIR.
fn safe_temp_dir() -> Result<PathBuf> {
    let tmp = std::env::temp_dir();
    match buildah_safe(&tmp) {
        true => Ok(tmp),
        false => Err(Error::Input {
            what: format!("TMPDIR ({})", tmp.display()),
            reason: "buildah names an image pulled from a directory after its path, which must then be lowercase letters, digits, '.', '_', '-' (each part starting with a letter or digit): set TMPDIR to such a directory (e.g. /tmp)".into(),
        }),
    }
}

/// A work directory for `graft test` under the system's temporary directory (`TMPDIR`),
/// named `graft-test-HEX`, whose path buildah accepts in a layout reference; removed when
/// dropped. A TMPDIR buildah cannot use is bad input naming it.
pub fn work_dir() -> Result<tempfile::TempDir> {
    fresh_dir(&safe_temp_dir()?, "graft-test-")
}

/// A new directory for a layout buildah pulls from: under `preferred` when its path is a
/// valid repository name, else under the system's temporary directory (checked likewise:
/// bad input naming TMPDIR when it cannot work), named `graft-HEX`. Removed when dropped.
fn name_safe_dir(preferred: &Path) -> Result<tempfile::TempDir> {
    let parent = match buildah_safe(preferred) {
        true => preferred.to_path_buf(),
        false => safe_temp_dir()?,
    };
    fresh_dir(&parent, "graft-")
}

/// Pull the image `src` points at (its `platform` manifest) into buildah's storage through
/// the layout `dir` ([`into_buildah`]), run `commands` in it ([`run_commands`]) and remove
/// it from buildah's storage again, pass or fail: a persistent storage does not grow a full
/// image per test. The digest of the manifest tested and each command's run.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn test_image(
    src: &dyn Source,
    platform: &Platform,
    buildah: &Buildah,
    dir: &Path,
    commands: &[String],
    timeout: Duration,
    stop_at_first: bool,
    jobs: usize,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<(Digest, Vec<TestRun>)> {
    let (id, manifest) = into_buildah(src, platform, buildah, dir, jobs, ep, reporter).await?;
    let tests = run_commands(buildah, &id, commands, platform, timeout, stop_at_first).await;
    buildah.remove_image(&id).await;
    Ok((manifest, tests?))
}

/// Run each command in a new container of `image` (in buildah's storage) as `sh -c`, with
/// `timeout` each; after the first that does not pass when `stop_at_first`. A test that
/// fails is a result; an error is only buildah failing to run it.
pub(crate) async fn run_commands(
    buildah: &Buildah,
    image: &str,
    commands: &[String],
    platform: &Platform,
    timeout: Duration,
    stop_at_first: bool,
) -> Result<Vec<TestRun>> {
    let mut out = Vec::new();
    for cmd in commands {
        let o = buildah
            .check(image, cmd, timeout)
            .await
            .map_err(|e| Error::internal(format!("running the test {cmd:?}"), e))?;
        let run = TestRun {
            command: cmd.clone(),
            platform: platform.to_string(),
            status: o.status,
            exit_code: o.exit_code,
            ended: o.ended,
            output: o.output,
            output_truncated: o.truncated,
        };
        let stop = stop_at_first && !run.passed();
        out.push(run);
        if stop {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_platform_needs_an_emulator() {
        let dir = tempfile::tempdir().unwrap();
        let host: Platform = "linux/amd64".parse().unwrap();
        check_platform(&host, &host, dir.path()).unwrap();
        let arm: Platform = "linux/arm64".parse().unwrap();
        let e = check_platform(&arm, &host, dir.path()).unwrap_err();
        assert!(e.is_usage());
        assert!(
            e.to_string().contains("platform linux/arm64 cannot run"),
            "{e}"
        );
        std::fs::write(dir.path().join("qemu-aarch64"), "enabled\n").unwrap();
        check_platform(&arm, &host, dir.path()).unwrap();
    }

    #[test]
    fn layout_paths_buildah_accepts() {
        assert!(buildah_safe(Path::new("/tmp/graft-test-0a1b/tested")));
        // tempfile's names (a leading dot, capitals) and a capital anywhere are refused.
        assert!(!buildah_safe(Path::new("/tmp/.tmpAbC12/tested")));
        assert!(!buildah_safe(Path::new("/home/Runner/_tmp")));
        assert!(!buildah_safe(Path::new("relative/dir")));
        // Refused: the system's temporary directory is used, when it works.
        let dir = name_safe_dir(Path::new("/tmp/.tmpAbC12/tested")).unwrap();
        assert!(buildah_safe(dir.path()), "{}", dir.path().display());
    }

    #[test]
    fn the_first_failure_is_the_error() {
        let run = |command: &str, status| TestRun {
            command: command.into(),
            platform: "linux/amd64".into(),
            status,
            exit_code: Some(7),
            ended: "exit status: 7".into(),
            output: "boom".into(),
            output_truncated: false,
        };
        let mut r = TestReport {
            reference: "docker://r/x:1".into(),
            digest: Digest::sha256(b"x"),
            platform: "linux/amd64".into(),
            manifest: Digest::sha256(b"m"),
            passed: false,
            tests: vec![run("true", TestStatus::Passed)],
        };
        assert!(r.failure().is_none());
        r.tests.push(run("exit 7", TestStatus::Failed));
        r.tests.push(run("sleep 9", TestStatus::TimedOut));
        let e = r.failure().unwrap();
        assert!(e.is_test_failure() && !e.is_usage());
        let s = e.to_string();
        assert!(
            s.starts_with("the test \"exit 7\" failed (exit status: 7) in docker://r/x:1@sha256:"),
            "{s}"
        );
        assert!(
            s.ends_with(" (linux/amd64); its output ends with:\nboom"),
            "{s}"
        );
    }
}
