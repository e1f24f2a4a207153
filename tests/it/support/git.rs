//! git for tests: a fixed identity and fixed dates, no user or system configuration, so a
//! library made by a test has the same commits on every machine.

use std::path::Path;
use std::process::Command;

/// Run git in `dir` as author and committer at `at` (seconds since the epoch); its stdout,
/// trimmed. Fails the test when git fails.
pub fn git_at(dir: &Path, at: i64, args: &[&str]) -> String {
    let date = format!("@{at} +0000");
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(["-c", "commit.gpgsign=false"])
        .args(["-c", "protocol.file.allow=always"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// [`git_at`] at t=1000.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_at(dir, 1000, args)
}

/// Commit everything in `dir` at time `at`.
pub fn commit_at(dir: &Path, at: i64, message: &str) {
    git_at(dir, at, &["add", "-A"]);
    git_at(dir, at, &["commit", "-q", "-m", message]);
}

/// Commit everything in `dir` at t=1000.
pub fn commit(dir: &Path, message: &str) {
    commit_at(dir, 1000, message);
}
