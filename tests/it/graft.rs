//! Running the graft binary from tests, isolated from the developer's credentials.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// What a graft run printed, and how it exited.
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Everything printed.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panic with the output unless the run succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "graft failed:\n{}", self.all());
        self
    }

    /// Panic unless the run failed with `code`.
    pub fn fails(self, code: i32) -> Run {
        assert_eq!(self.code, code, "expected exit {code}:\n{}", self.all());
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// A graft command with HOME pointed at `home` and no ambient credentials.
pub fn command(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graft"));
    cmd.env("HOME", home)
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("GRAFT_CREDS")
        .env_remove("GRAFT_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Run `cmd` and capture its output.
pub fn capture(cmd: &mut Command) -> Run {
    let out: Output = cmd.output().expect("run graft");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run graft in `dir` with a fresh HOME and `SOURCE_DATE_EPOCH=0` (without it the time would
/// come from the checkout's last commit).
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    capture(
        command(home.path())
            .current_dir(dir)
            .env("SOURCE_DATE_EPOCH", "0")
            .args(args),
    )
}

/// `graft layer build TREE -f HOME/layer.tar.gz` at `SOURCE_DATE_EPOCH=0` (deterministic); the
/// layer's path.
pub fn layer_file(home: &Path, tree: &Path) -> std::path::PathBuf {
    let out = home.join("layer.tar.gz");
    capture(
        command(home)
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["layer", "build"])
            .arg(tree)
            .arg("-f")
            .arg(&out),
    )
    .ok();
    out
}

/// Run graft with `args` (HOME = `home`).
pub fn graft<S: AsRef<std::ffi::OsStr>>(home: &Path, args: &[S]) -> Run {
    capture(command(home).args(args))
}
