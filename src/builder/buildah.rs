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
    /// stdout and stderr captured (a test's output).
    Both,
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
        let mut a = self.global();
        a.extend(["pull".into(), "--quiet".into(), self.tls()]);
        a.extend(["--platform".into(), platform.to_string().into()]);
        a.push(format!("docker://{reference}").into());
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
                what: format!("buildah pull {reference}"),
                reason: format!("expected an image id, got {id:?}"),
            });
        }
        let mut a = self.global();
        a.extend(["tag".into(), id.into(), name.into()]);
        self.run("buildah tag", a, Out::Stderr, self.timeout)
            .await
            .map(|_| ())
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
    /// entrypoint is not used) with a time limit; its output, last [`OUTPUT_TAIL`] bytes.
    /// The container is removed afterwards, whatever happened.
    pub async fn test(
        &self,
        image: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<String, BuilderError> {
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
        let result = self
            .run(&format!("the test {command:?}"), a, Out::Both, timeout)
            .await;
        let mut rm = self.global();
        rm.extend(["rm".into(), ctr.into()]);
        let _ = self.run("buildah rm", rm, Out::Value, self.timeout).await;
        result.map(|o| String::from_utf8_lossy(&o).into_owned())
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
            Out::Both => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
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
        let keep = output.len().saturating_sub(OUTPUT_TAIL);
        Err(BuilderError::Failed {
            what: what.to_string(),
            status: status.to_string(),
            tail: match out {
                Out::Both => String::from_utf8_lossy(&output[keep..])
                    .trim_end()
                    .to_string(),
                _ => String::new(),
            },
        })
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

    #[tokio::test]
    async fn failures_timeouts_and_output_tails() {
        // A failing test: exit status and the end of its output.
        let (_d, b) = fake(
            "case \"$7\" in from) echo ctr;; run) yes line | head -n 5000; echo boom >&2; exit 3;; esac",
        );
        let e = b
            .test("img", "false", Duration::from_secs(5))
            .await
            .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("exit status: 3"), "{s}");
        assert!(s.ends_with("boom"), "{s}");
        assert!(s.len() < OUTPUT_TAIL + 200, "{}", s.len());
        // A test that hangs is stopped.
        let (_d, b) = fake("case \"$7\" in from) echo ctr;; run) sleep 30;; esac");
        let e = b
            .test("img", "sleep", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, BuilderError::TimedOut { .. }), "{e}");
        // A missing program.
        let (_d, mut b) = fake("true");
        b.program = PathBuf::from("/nonexistent/buildah");
        let e = b
            .test("img", "true", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("cannot start /nonexistent/buildah"),
            "{e}"
        );
    }
}
