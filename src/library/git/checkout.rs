//! A library at another commit, for `graft verify-provenance`: a throw-away clone that shares
//! the user's object store (`git clone --shared`), so the user's work tree, index, branches and
//! worktree list are never touched, and any commit the repository holds can be checked out.

use std::path::Path;

use super::Repo;
use crate::error::{Error, Result};

impl Repo {
    /// Where the library directory is inside its repository, `/`-separated, `.` at the top
    /// (`git rev-parse --show-prefix`).
    pub fn prefix(&self) -> Option<String> {
        let out = self.run(&["rev-parse", "--show-prefix"]).ok()?;
        if !out.ok {
            return None;
        }
        let p = String::from_utf8(out.stdout).ok()?;
        let p = p.trim().trim_end_matches('/');
        Some(if p.is_empty() {
            ".".into()
        } else {
            p.to_string()
        })
    }

    /// Check out `commit` (a full hash: resolve it first with [`Repo::resolve`]) of this
    /// repository into `dest`, a directory that must not exist yet or be empty; the clone's
    /// work tree is returned. Nothing of this repository changes.
    pub fn checkout_at(&self, commit: &str, dest: &Path) -> Result<Repo> {
        let top = self
            .line(&["rev-parse", "--show-toplevel"])
            .ok_or_else(|| Error::Input {
                what: self.dir.display().to_string(),
                reason: "is not in a git work tree".into(),
            })?;
        let dest_text = dest.to_str().ok_or_else(|| Error::Input {
            what: dest.display().to_string(),
            reason: "is not a UTF-8 path".into(),
        })?;
        let failed = |what: &str, out: super::Output| {
            Error::Unsupported(format!(
                "git {what} of {top} into {}: {}",
                dest.display(),
                out.stderr
            ))
        };
        let out = self.run(&[
            "clone",
            "--quiet",
            "--shared",
            "--no-checkout",
            "--",
            &top,
            dest_text,
        ])?;
        if !out.ok {
            return Err(failed("clone --shared", out));
        }
        let clone = Repo {
            dir: dest.to_path_buf(),
        };
        let out = clone.run(&[
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            "--detach",
            commit,
            "--",
        ])?;
        if !out.ok {
            return Err(failed(&format!("checkout {commit}"), out));
        }
        Ok(clone)
    }
}
