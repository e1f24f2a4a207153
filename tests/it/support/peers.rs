//! The peer tools our users run beside graft (cosign v2 and v3, crane, oras, regctl), pinned in
//! `scripts/tools.env` and installed by `scripts/install-tools.sh`, and [`RefRegistry`], a real
//! registry with the OCI 1.1 referrers API (`tools/refreg`: go-containerregistry's
//! `pkg/registry` with referrers on).
//!
//! A missing tool fails the test that needs it, naming the install command: the suite never
//! skips a check against a peer.
//!
//! Each [`Peer`] command runs with `HOME` set to a fresh temporary directory, so no user
//! configuration is read and nothing the tools cache (`~/.sigstore`, `~/.regctl`) outlives the
//! test. Flags each tool needs for a plain-HTTP registry on loopback:
//! - cosign: none (go-containerregistry speaks HTTP to 127.0.0.1 by itself); offline signing
//!   needs `--tlog-upload=false` on `sign`/`attest` and `--insecure-ignore-tlog=true` on
//!   `verify`/`verify-attestation` (see [`Peer::cosign_sign`] and friends);
//! - crane: `--insecure` (added by [`Peer::crane`]);
//! - oras: `--plain-http` (add it per subcommand);
//! - regctl: `--host reg=HOST,tls=disabled` (added by [`Peer::regctl`] for every host given).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::tools::{run, run_ok};

/// The pinned tools: `(name, go package, version)` from `scripts/tools.env`.
fn pins() -> &'static Vec<(String, String, String)> {
    static PINS: OnceLock<Vec<(String, String, String)>> = OnceLock::new();
    PINS.get_or_init(|| {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools.env");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, spec) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{}: bad line {l:?}", file.display()));
                let (pkg, version) = spec
                    .rsplit_once('@')
                    .unwrap_or_else(|| panic!("{}: no @VERSION in {l:?}", file.display()));
                (name.to_string(), pkg.to_string(), version.to_string())
            })
            .collect()
    })
}

fn gopath() -> &'static PathBuf {
    static GOPATH: OnceLock<PathBuf> = OnceLock::new();
    GOPATH.get_or_init(|| {
        let out = Command::new("go")
            .args(["env", "GOPATH"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("the peer tools need Go (`go env GOPATH` failed: {e}); run scripts/install-tools.sh")
            });
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The pinned version of tool `name` (as in `scripts/tools.env`, e.g. `v2.6.5`).
pub fn version(name: &str) -> &'static str {
    pins()
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, _, v)| v.as_str())
        .unwrap_or_else(|| panic!("no tool {name:?} in scripts/tools.env"))
}

/// Path of the installed, pinned tool `name` (`cosign`, `cosign3`, `crane`, `oras`, `regctl`).
/// Panics, naming the fix, when it is not installed.
pub fn tool(name: &str) -> PathBuf {
    let (_, pkg, version) = pins()
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no tool {name:?} in scripts/tools.env"));
    let bin = pkg.rsplit('/').next().unwrap_or(pkg);
    let path = gopath()
        .join("graft-tools")
        .join(format!("{name}-{version}"))
        .join("bin")
        .join(bin);
    assert!(
        path.is_file(),
        "peer tool {name} {version} is not installed at {}: run scripts/install-tools.sh \
         (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Path of the referrers-API registry binary built from `tools/refreg`.
pub fn refreg_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/refreg");
    assert!(
        path.is_file(),
        "the referrers registry is not built at {}: run scripts/install-tools.sh \
         (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running `refreg` (registry with the referrers API) on 127.0.0.1, blobs in a temporary
/// directory. Killed on drop.
pub struct RefRegistry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl RefRegistry {
    /// Starts one and waits (at most 30 s) until it listens.
    pub fn start() -> RefRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(refreg_binary())
            .arg("-dir")
            .arg(dir.path().join("blobs"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start refreg");
        let stdout = child.stdout.take().expect("refreg stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("refreg did not start within 30 s");
            }
        };
        let host = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("refreg said {line:?}"))
            .to_string();
        RefRegistry {
            child,
            host,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `HOST/REPO_AND_TAG`, the form crane, oras, regctl and cosign take.
    pub fn plain_ref(&self, repo_and_tag: &str) -> String {
        format!("{}/{repo_and_tag}", self.host)
    }

    /// `docker://HOST/REPO_AND_TAG`, the form graft and skopeo take.
    pub fn docker_ref(&self, repo_and_tag: &str) -> String {
        format!("docker://{}/{repo_and_tag}", self.host)
    }
}

impl Drop for RefRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the peer tools with an isolated `HOME` (a temporary directory kept as long as this
/// value), and `COSIGN_PASSWORD` when [`Peer::with_cosign_password`] set it.
pub struct Peer {
    home: tempfile::TempDir,
    insecure_hosts: Vec<String>,
    cosign_password: Option<String>,
}

impl Default for Peer {
    fn default() -> Self {
        Self::new()
    }
}

impl Peer {
    /// A fresh, empty `HOME`.
    pub fn new() -> Peer {
        Peer {
            home: tempfile::tempdir().expect("temp dir"),
            insecure_hosts: Vec::new(),
            cosign_password: None,
        }
    }

    /// Registries (`HOST:PORT`) that speak plain HTTP: regctl is told so on every call.
    pub fn plain_http(mut self, host: &str) -> Peer {
        self.insecure_hosts.push(host.to_string());
        self
    }

    /// `COSIGN_PASSWORD` for cosign commands (key generation, signing).
    pub fn with_cosign_password(mut self, password: &str) -> Peer {
        self.cosign_password = Some(password.to_string());
        self
    }

    /// The isolated home directory (a good place for keys and files the tools read).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A `Command` for tool `name` with the isolated environment, working directory `HOME`.
    pub fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(tool(name));
        cmd.env("HOME", self.home.path())
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env("SIGSTORE_NO_CACHE", "1")
            .current_dir(self.home.path());
        match &self.cosign_password {
            Some(p) => cmd.env("COSIGN_PASSWORD", p),
            None => cmd.env_remove("COSIGN_PASSWORD"),
        };
        if name == "crane" {
            cmd.arg("--insecure");
        }
        if name == "regctl" {
            for h in &self.insecure_hosts {
                cmd.arg("--host").arg(format!("reg={h},tls=disabled"));
            }
        }
        cmd
    }

    /// Runs tool `name` with `args`; panics with its output unless it exits 0.
    pub fn ok<I, S>(&self, name: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(self.command(name).args(args))
    }

    /// Runs tool `name` with `args`; returns the output whatever the exit status.
    pub fn try_run<I, S>(&self, name: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.command(name).args(args))
    }

    /// `crane --insecure ARGS`, must succeed.
    pub fn crane<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ok("crane", args)
    }

    /// `regctl --host reg=H,tls=disabled… ARGS`, must succeed.
    pub fn regctl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ok("regctl", args)
    }

    /// `oras ARGS` (add `--plain-http` yourself), must succeed.
    pub fn oras<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ok("oras", args)
    }

    /// `cosign generate-key-pair` in `HOME` (needs [`Peer::with_cosign_password`]); returns the
    /// paths of `cosign.key` and `cosign.pub`.
    pub fn cosign_generate_key_pair(&self) -> (PathBuf, PathBuf) {
        assert!(
            self.cosign_password.is_some(),
            "set a password first (with_cosign_password)"
        );
        self.ok("cosign", ["generate-key-pair"]);
        (
            self.home.path().join("cosign.key"),
            self.home.path().join("cosign.pub"),
        )
    }

    /// `cosign sign --key KEY --tlog-upload=false -y EXTRA… IMAGE` (cosign v2; offline: no
    /// transparency log). Must succeed.
    pub fn cosign_sign(&self, key: &Path, image: &str, extra: &[&str]) -> Output {
        let mut cmd = self.command("cosign");
        cmd.arg("sign")
            .arg("--key")
            .arg(key)
            .args(["--tlog-upload=false", "-y"])
            .args(extra)
            .arg(image);
        run_ok(&mut cmd)
    }

    /// `cosign verify --key PUB --insecure-ignore-tlog=true EXTRA… IMAGE` (cosign v2), whatever
    /// the exit status.
    pub fn cosign_verify(&self, public_key: &Path, image: &str, extra: &[&str]) -> Output {
        let mut cmd = self.command("cosign");
        cmd.arg("verify")
            .arg("--key")
            .arg(public_key)
            .arg("--insecure-ignore-tlog=true")
            .args(extra)
            .arg(image);
        run(&mut cmd)
    }
}

/// Asserts `out` succeeded, showing its output otherwise; returns stdout as text.
pub fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
