//! buildah, driven as a process: `buildah build` once per image and platform, `buildah push
//! --digestfile` into an OCI layout that graft then copies, `buildah pull` + `buildah tag` to
//! pin a base to a digest under the name its FROM line writes, and `buildah from` + `buildah
//! run` for tests inside an image.
//!
//! Every call has a time limit and runs against the storage this value names (`--root`,
//! `--runroot`), never the machine's default, so concurrent runs and tests do not meet.
//! Isolation is `chroot`: it works inside containers, where the default (an OCI runtime with
//! cgroups) often does not. A builder's progress goes to graft's stderr (graft's stdout is for
//! data); a test's output is captured, its last bytes kept for the error.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::BuilderError;
use crate::oci::{Digest, Platform};

/// How many bytes of a test's output are kept for the error message.
pub const OUTPUT_TAIL: usize = 4096;

/// buildah, with its own storage.
#[derive(Debug, Clone)]
pub struct Buildah {
    /// The program (`buildah`, or a path).
    pub program: PathBuf,
    /// Storage root (`--root`).
    pub root: PathBuf,
    /// Storage state directory (`--runroot`).
    pub runroot: PathBuf,
    /// Storage driver (`vfs` works everywhere, also inside containers).
    pub storage_driver: String,
    /// Verify TLS and refuse plain HTTP when pulling bases (`--tls-verify`).
    pub tls_verify: bool,
    /// Time limit of one build, push or pull.
    pub timeout: Duration,
}

/// One `buildah build`.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    /// The Dockerfile (`-f`).
    pub dockerfile: &'a Path,
    /// The build context.
    pub context: &'a Path,
    /// The platform built (`--platform`).
    pub platform: &'a Platform,
    /// Build arguments (`--build-arg`).
    pub args: &'a BTreeMap<String, String>,
    /// The stage built (`--target`).
    pub target: Option<&'a str>,
    /// Config labels (`--label`).
    pub labels: &'a BTreeMap<String, String>,
    /// Manifest annotations (`--annotation`).
    pub annotations: &'a BTreeMap<String, String>,
    /// The name the result gets in buildah's storage.
    pub tag: &'a str,
    /// Seconds since the epoch for the image's `created` and its files (`--timestamp`).
    pub timestamp: Option<i64>,
}

/// Where a child's stdout goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    /// To graft's stderr (progress).
    Stderr,
    /// Captured (a value the call returns); stderr to graft's stderr.
    Value,
}

/// The version number in `buildah --version`'s answer.
fn parse_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "version")?;
    let v = words.next()?.trim_end_matches(',');
    v.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit())
        .then(|| v.to_string())
}

impl Buildah {
    fn global(&self) -> Vec<OsString> {
        vec![
            "--root".into(),
            self.root.clone().into(),
            "--runroot".into(),
            self.runroot.clone().into(),
            "--storage-driver".into(),
            self.storage_driver.clone().into(),
        ]
    }

    fn tls(&self) -> OsString {
        format!("--tls-verify={}", self.tls_verify).into()
    }

    /// Build one platform of an image into buildah's storage as `spec.tag`. Bases already in
    /// the storage under the name a FROM line writes are used as they are (`--pull=false`):
    /// that is how a pinned base ([`Buildah::pull_as`]) wins over the registry's tag.
    pub async fn build(&self, spec: &BuildSpec<'_>) -> Result<(), BuilderError> {
        let mut a = self.global();
        a.extend(["build".into(), "--isolation".into(), "chroot".into()]);
        a.extend(["--pull=false".into(), self.tls()]);
        a.extend(["--platform".into(), spec.platform.to_string().into()]);
        a.extend(["-f".into(), spec.dockerfile.into()]);
        for (k, v) in spec.args {
            a.extend(["--build-arg".into(), format!("{k}={v}").into()]);
        }
        if let Some(t) = spec.target {
            a.extend(["--target".into(), t.into()]);
        }
        for (k, v) in spec.labels {
            a.extend(["--label".into(), format!("{k}={v}").into()]);
        }
        for (k, v) in spec.annotations {
            a.extend(["--annotation".into(), format!("{k}={v}").into()]);
        }
        if let Some(t) = spec.timestamp {
            a.extend(["--timestamp".into(), t.to_string().into()]);
        }
        a.extend(["-t".into(), spec.tag.into(), spec.context.into()]);
        self.run("buildah build", a, Out::Stderr, self.timeout)
            .await
            .map(|_| ())
    }

    /// Write `image` from buildah's storage to the OCI layout `dir` under `tag`; the digest of
    /// the manifest written (from `--digestfile`).
    pub async fn push(&self, image: &str, dir: &Path, tag: &str) -> Result<Digest, BuilderError> {
        // Beside the layout, not inside it: the layout holds only what OCI says it holds.
        let file_name = dir
            .file_name()
            .map_or("layout".into(), |n| n.to_string_lossy());
        let digest_file = dir.with_file_name(format!("{file_name}-{tag}.digest"));
        let mut a = self.global();
        a.extend([
            "push".into(),
            "--digestfile".into(),
            digest_file.clone().into(),
        ]);
        a.push(image.into());
        let mut dest = OsString::from("oci:");
        dest.push(dir);
        dest.push(format!(":{tag}"));
        a.push(dest);
        self.run("buildah push", a, Out::Stderr, self.timeout)
            .await?;
        let bad = |reason: String| BuilderError::Output {
            what: format!("the digest file {}", digest_file.display()),
            reason,
        };
        let text = std::fs::read_to_string(&digest_file).map_err(|e| bad(e.to_string()))?;
        text.trim()
            .parse::<Digest>()
            .map_err(|e| bad(e.to_string()))
    }

    /// Pull `reference` (pinned by digest) for `platform` and name it `name` in buildah's
    /// storage: a later build whose FROM line writes `name` uses exactly that image.
    pub async fn pull_as(
        &self,
        reference: &str,
        platform: &Platform,
        name: &str,
    ) -> Result<(), BuilderError> {
        let id = self
            .pull(&format!("docker://{reference}"), platform)
            .await?;
        let mut a = self.global();
        a.extend(["tag".into(), id.into(), name.into()]);
        self.run("buildah tag", a, Out::Stderr, self.timeout)
            .await
            .map(|_| ())
    }

    /// Pull `source` (a transport reference: `docker://…`, `oci:DIR:TAG`) for `platform` into
    /// buildah's storage; the image's id.
    pub async fn pull(&self, source: &str, platform: &Platform) -> Result<String, BuilderError> {
        let mut a = self.global();
        a.extend(["pull".into(), "--quiet".into(), self.tls()]);
        a.extend(["--platform".into(), platform.to_string().into()]);
        a.push(source.into());
        let out = self
            .run("buildah pull", a, Out::Value, self.timeout)
            .await?;
        let id = String::from_utf8_lossy(&out)
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(BuilderError::Output {
                what: format!("buildah pull {source}"),
                reason: format!("expected an image id, got {id:?}"),
            });
        }
        Ok(id)
    }

    /// Remove `image` (a name or id) from buildah's storage; a failure is ignored (the
    /// storage is a cache or temporary).
    pub async fn remove_image(&self, image: &str) {
        let mut a = self.global();
        a.extend(["rmi".into(), "--force".into(), image.into()]);
        let _ = self.run("buildah rmi", a, Out::Value, self.timeout).await;
    }

    /// buildah's version (`buildah --version` says `buildah version 1.39.3 (image-spec …)`):
    /// the number, for provenance's `builder.version`.
    pub async fn version(&self) -> Result<String, BuilderError> {
        let out = self
            .run(
                "buildah --version",
                vec!["--version".into()],
                Out::Value,
                self.timeout.min(Duration::from_secs(60)),
            )
            .await?;
        let text = String::from_utf8_lossy(&out);
        parse_version(&text).ok_or_else(|| BuilderError::Output {
            what: "buildah --version".into(),
            reason: format!("no version in {:?}", text.trim()),
        })
    }

    /// Run `sh -c command` inside a container of `image` (from buildah's storage; the image's
    /// entrypoint is not used) with a time limit. How the command ended is the answer, a
    /// failing or stopped command included; an error is only that buildah could not run it
    /// (no such image, no buildah). The output (stdout and stderr as they come) is kept to
    /// its last [`OUTPUT_TAIL`] bytes, whatever the command prints. On timeout the command
    /// and everything it started (its process group) is killed. The container is removed
    /// afterwards, whatever happened.
    pub async fn check(
        &self,
        image: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<TestOutcome, BuilderError> {
        let mut a = self.global();
        a.extend(["from".into(), "--quiet".into(), "--pull=never".into()]);
        a.push(image.into());
        let out = self
            .run("buildah from", a, Out::Value, self.timeout)
            .await?;
        let ctr = String::from_utf8_lossy(&out).trim().to_string();
        if ctr.is_empty() {
            return Err(BuilderError::Output {
                what: format!("buildah from {image}"),
                reason: "no container name".into(),
            });
        }
        let mut a = self.global();
        a.extend(["run".into(), "--isolation".into(), "chroot".into()]);
        a.extend([ctr.clone().into(), "--".into(), "sh".into(), "-c".into()]);
        a.push(command.into());
        let result = self.run_captured(a, timeout).await;
        let mut rm = self.global();
        rm.extend(["rm".into(), ctr.into()]);
        let _ = self.run("buildah rm", rm, Out::Value, self.timeout).await;
        result
    }

    /// Run buildah with `args`, its stdout and stderr kept together (last [`OUTPUT_TAIL`]
    /// bytes), in its own process group, killed with it after `timeout`. Whatever is left of
    /// the group when buildah ends (a server or `sleep` started in the background) is killed
    /// too, success included; the group is registered meanwhile, for [`super::stop_running`].
    async fn run_captured(
        &self,
        args: Vec<OsString>,
        timeout: Duration,
    ) -> Result<TestOutcome, BuilderError> {
        use std::sync::{Arc, Mutex};
        let program = self.program.display().to_string();
        let spawn_error = |source| BuilderError::Spawn {
            program: program.clone(),
            source,
        };
        // One pipe for stdout and stderr: the output in the order it was written.
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| spawn_error(e.into()))?;
        // Read without blocking (the write end, the child's, stays blocking): the reader can
        // be stopped when a process that escaped the group keeps the pipe open.
        let read = tokio::net::unix::pipe::Receiver::from_owned_fd(read).map_err(spawn_error)?;
        let write2 = write.try_clone().map_err(spawn_error)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write2))
            .kill_on_drop(true)
            // Its own group: a timeout stops what the command started too.
            .process_group(0);
        let spawned = cmd.spawn();
        // The write ends now belong to the child alone: the read end sees its end.
        drop(cmd);
        let mut child = spawned.map_err(spawn_error)?;
        // Killed with its group when dropped (graft interrupted, the future dropped).
        let group = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(super::Running::new);
        let kept = Arc::new(Mutex::new(Tail::default()));
        let mut reader = {
            let kept = kept.clone();
            tokio::spawn(async move { tail_into(read, &kept).await })
        };
        let waited = tokio::time::timeout(timeout, child.wait()).await;
        // Whatever it started and left running goes with it, whether it passed or not.
        drop(group);
        let status = match waited {
            Ok(status) => Some(status.map_err(|source| BuilderError::Spawn {
                program: program.clone(),
                source,
            })?),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        };
        // The pipe closes when the processes holding it end; a process that escaped the
        // group (setsid) may keep it open: what arrived within a short wait is what is
        // reported, and the reader stops.
        if tokio::time::timeout(Duration::from_secs(5), &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
        let tail = kept.lock().unwrap_or_else(|p| p.into_inner()).take();
        let output = String::from_utf8_lossy(&tail.bytes).trim_end().to_string();
        Ok(match status {
            None => TestOutcome {
                status: TestStatus::TimedOut,
                exit_code: None,
                ended: format!("stopped after {}s", timeout.as_secs()),
                output,
                truncated: tail.dropped,
            },
            Some(s) => TestOutcome {
                status: match s.success() {
                    true => TestStatus::Passed,
                    false => TestStatus::Failed,
                },
                exit_code: s.code(),
                ended: s.to_string(),
                output,
                truncated: tail.dropped,
            },
        })
    }

    async fn run(
        &self,
        what: &str,
        args: Vec<OsString>,
        out: Out,
        timeout: Duration,
    ) -> Result<Vec<u8>, BuilderError> {
        let program = self.program.display().to_string();
        let mut cmd = Command::new(&self.program);
        cmd.args(&args).stdin(Stdio::null()).kill_on_drop(true);
        match out {
            Out::Stderr => {
                // The builder's progress goes where graft's own messages go.
                match std::io::stderr().as_fd().try_clone_to_owned() {
                    Ok(fd) => cmd.stdout(Stdio::from(fd)),
                    Err(_) => cmd.stdout(Stdio::null()),
                };
                cmd.stderr(Stdio::inherit());
            }
            Out::Value => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
            }
        }
        let mut child = cmd.spawn().map_err(|source| BuilderError::Spawn {
            program: program.clone(),
            source,
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // stdout of `Value` calls is a short answer (an id, a name): keep up to 64 KiB.
        let limit = if out == Out::Value {
            65536
        } else {
            OUTPUT_TAIL
        };
        let work = async {
            let (o, e, status) =
                tokio::join!(tail(stdout, limit), tail(stderr, limit), child.wait());
            (o, e, status)
        };
        let (o, e, status) = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                // kill_on_drop stops it when `child` goes; say why.
                return Err(BuilderError::TimedOut {
                    what: what.to_string(),
                    after: timeout,
                });
            }
        };
        let status = status.map_err(|source| BuilderError::Spawn { program, source })?;
        let mut output = o;
        output.extend_from_slice(&e);
        if status.success() {
            return Ok(output);
        }
        Err(BuilderError::Failed {
            what: what.to_string(),
            status: status.to_string(),
            tail: String::new(),
        })
    }
}

/// How a command run inside an image ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestStatus {
    /// It exited with status 0.
    Passed,
    /// It exited with another status, or was killed by a signal.
    Failed,
    /// It ran longer than its time limit and was stopped.
    TimedOut,
}

/// A command run inside an image ([`Buildah::check`]).
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// Passed, failed or stopped.
    pub status: TestStatus,
    /// Its exit code (none when killed by a signal or stopped).
    pub exit_code: Option<i32>,
    /// How it ended, as the system says it (`exit status: 3`, `signal: 9`), or the limit.
    pub ended: String,
    /// The end of its output: stdout and stderr as they came, at most [`OUTPUT_TAIL`] bytes.
    pub output: String,
    /// Earlier output was dropped to keep the last [`OUTPUT_TAIL`] bytes.
    pub truncated: bool,
}

/// The last bytes of a stream, and whether earlier ones were dropped.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    dropped: bool,
}

impl Tail {
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        if self.bytes.len() > OUTPUT_TAIL {
            self.bytes.drain(..self.bytes.len() - OUTPUT_TAIL);
            self.dropped = true;
        }
    }

    fn take(&mut self) -> Tail {
        std::mem::take(self)
    }
}

/// Read `r` to its end into `kept` (bounded: [`Tail`]).
async fn tail_into<R: AsyncRead + Unpin>(mut r: R, kept: &std::sync::Mutex<Tail>) {
    let mut chunk = vec![0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => kept
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(&chunk[..n]),
        }
    }
}

/// Everything `r` yields, keeping only the last `limit` bytes (bounded memory for any output).
async fn tail<R: AsyncRead + Unpin>(r: Option<R>, limit: usize) -> Vec<u8> {
    let Some(mut r) = r else {
        return Vec::new();
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 2 * limit {
                    buf.drain(..buf.len() - limit);
                }
            }
        }
    }
    if buf.len() > limit {
        buf.drain(..buf.len() - limit);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_number_is_read_from_buildahs_answer() {
        assert_eq!(
            parse_version(
                "buildah version 1.28.2 (image-spec 1.1.0-rc2, runtime-spec 1.0.2-dev)\n"
            )
            .as_deref(),
            Some("1.28.2")
        );
        assert_eq!(
            parse_version("buildah version 1.39.3\n").as_deref(),
            Some("1.39.3")
        );
        assert_eq!(parse_version("something else"), None);
        assert_eq!(parse_version("buildah version dev"), None);
    }

    fn fake(script: &str) -> (tempfile::TempDir, Buildah) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("buildah");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let b = Buildah {
            program: p,
            root: dir.path().join("root"),
            runroot: dir.path().join("run"),
            storage_driver: "vfs".into(),
            tls_verify: true,
            timeout: Duration::from_secs(5),
        };
        (dir, b)
    }

    /// Whether process `pid` has ended (gone, or a zombie not yet reaped by its new parent),
    /// waiting a while for a killed process to finish dying.
    fn ended(pid: &str) -> bool {
        for _ in 0..100 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z') =>
                {
                    return true
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        false
    }

    #[tokio::test]
    async fn what_a_passing_command_left_running_is_stopped() {
        // `sleep 300 &` keeps the output pipe open after the command ended: the test still
        // ends now, with its output, and the background process is killed (issue 14).
        let dir = tempfile::tempdir().unwrap();
        let bg = dir.path().join("bg");
        let (_d, b) = fake(&format!(
            "case \"$7\" in from) echo ctr;; run) sleep 300 & echo $! > {}; echo done;; esac",
            bg.display()
        ));
        let o = b
            .check("img", "true", Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!((o.status, o.exit_code), (TestStatus::Passed, Some(0)));
        assert_eq!(o.output, "done");
        let pid = std::fs::read_to_string(&bg).unwrap();
        assert!(ended(pid.trim()), "sleep 300 ({}) still runs", pid.trim());
    }

    #[tokio::test]
    async fn failures_timeouts_and_output_tails() {
        // A failing command: its exit code and the end of its output, bounded.
        let (_d, b) = fake(
            "case \"$7\" in from) echo ctr;; run) yes line | head -n 5000; echo boom >&2; exit 3;; esac",
        );
        let o = b
            .check("img", "false", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(o.status, TestStatus::Failed);
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.ended, "exit status: 3");
        assert!(o.output.ends_with("boom"), "{}", o.output);
        assert!(o.output.len() <= OUTPUT_TAIL, "{}", o.output.len());
        assert!(o.truncated);
        // A passing one.
        let (_d, b) = fake("case \"$7\" in from) echo ctr;; run) echo fine;; esac");
        let o = b
            .check("img", "true", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((o.status, o.exit_code), (TestStatus::Passed, Some(0)));
        assert_eq!(o.output, "fine");
        assert!(!o.truncated);
        // A command that hangs is stopped, with what it printed so far, and so is what it
        // started (its process group).
        let (_d, b) =
            fake("case \"$7\" in from) echo ctr;; run) echo started; sleep 30 & wait;; esac");
        let o = b
            .check("img", "sleep", Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(o.status, TestStatus::TimedOut);
        assert_eq!(o.exit_code, None);
        assert_eq!(o.output, "started");
        // `buildah from` failing is an error, not a test result; so is a missing program.
        let (_d, b) = fake("echo nope >&2; exit 125");
        let e = b
            .check("img", "true", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("buildah from failed"), "{e}");
        let (_d, mut b) = fake("true");
        b.program = PathBuf::from("/nonexistent/buildah");
        let e = b
            .check("img", "true", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("cannot start /nonexistent/buildah"),
            "{e}"
        );
    }
}
