//! Sources of `build:` manifests with `git:` (`repo`, `fetch`, `commit`): each repository is a
//! bare clone in a cache directory, named by the SHA-256 of its URL without credentials (one
//! clone per repository, whatever token the URL carries), and each pinned commit a detached,
//! verified checkout beside it. Every command that may reach the network has a time limit and
//! cannot prompt; a URL is only ever shown with its credentials removed ([`redact`]).
//!
//! Clones and checkouts are made under a temporary name and renamed into place, so an
//! interrupted one is never taken for a complete one.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::Repo;
use crate::error::{Error, Result};

/// The source cache: bare clones `REPOKEY.git` and checkouts `REPOKEY-COMMIT`.
#[derive(Debug, Clone)]
pub struct SourceCache {
    dir: PathBuf,
    timeout: Duration,
}

/// What changed between two commits of a source, under one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDiff {
    /// `git diff --stat` output.
    pub stat: String,
    /// The Dockerfile's patch (empty when it did not change).
    pub dockerfile_patch: String,
    /// The changed files, relative to the repository root.
    pub files: Vec<String>,
}

/// `url` with any `user:password@` removed: the only form of a source URL graft prints.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return format!("{scheme}://{host}{path}");
    }
    url.to_string()
}

/// Remove `url`'s credentials from a message git printed (git usually does, not always).
fn scrub(message: &str, url: &str) -> String {
    let mut m = message.replace(url, &redact(url));
    if let Some((_, rest)) = url.split_once("://") {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if !userinfo.is_empty() {
                m = m.replace(userinfo, "***");
            }
        }
    }
    m
}

/// Whether `commit` is a full hash (SHA-1 or SHA-256), lower-case hex.
fn is_commit(commit: &str) -> bool {
    matches!(commit.len(), 40 | 64)
        && commit
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl SourceCache {
    /// A cache in `dir` (created when first used); each git command waits at most `timeout`.
    pub fn new(dir: &Path, timeout: Duration) -> SourceCache {
        SourceCache {
            dir: dir.to_path_buf(),
            timeout,
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stable name of `url`'s clone: 16 hex digits of the SHA-256 of the URL without
    /// credentials.
    fn key(url: &str) -> String {
        let h = hex::encode(Sha256::digest(redact(url).trim().as_bytes()));
        h[..16].to_string()
    }

    fn bare(&self, url: &str) -> PathBuf {
        self.dir.join(format!("{}.git", Self::key(url)))
    }

    fn checkout_dir(&self, url: &str, commit: &str) -> PathBuf {
        self.dir.join(format!("{}-{commit}", Self::key(url)))
    }

    /// The checkout of `commit` if it is already in the cache and verified (nothing fetched):
    /// what `graft plan` reads.
    pub fn existing(&self, url: &str, commit: &str) -> Option<PathBuf> {
        let dir = self.checkout_dir(url, commit);
        (is_commit(commit) && verify(&dir, commit).is_ok()).then_some(dir)
    }

    /// The checkout of `commit` of `url`: the clone is made or fetched (`fetch`, a ref or
    /// refspec, plus every branch and tag) when it lacks the commit, then the commit is checked
    /// out detached into its own directory and verified to be at that commit and clean. An
    /// unknown commit is bad input naming the repository (redacted) and the commit.
    pub fn checkout(&self, url: &str, fetch: &str, commit: &str) -> Result<PathBuf> {
        let shown = redact(url);
        if !is_commit(commit) {
            return Err(Error::Input {
                what: format!("git.commit {commit:?} of {shown}"),
                reason: "is not a full commit hash (40 or 64 lower-case hex digits)".into(),
            });
        }
        if url.trim().is_empty() || url.starts_with('-') {
            return Err(Error::Input {
                what: format!("git.repo {shown:?}"),
                reason: "is not a repository URL or path".into(),
            });
        }
        if let Some(dir) = self.existing(url, commit) {
            return Ok(dir);
        }
        let bare = self.clone_or_fetch(url, fetch, commit)?;
        let dest = self.checkout_dir(url, commit);
        let tmp = self.dir.join(format!(".{}-{commit}.tmp", Self::key(url)));
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&dest);
        let repo = Repo { dir: bare.clone() };
        let tmp_text = tmp.to_str().ok_or_else(|| Error::Input {
            what: tmp.display().to_string(),
            reason: "is not a UTF-8 path".into(),
        })?;
        let bare_text = bare.to_string_lossy().into_owned();
        let out = repo.run(&[
            "clone",
            "--quiet",
            "--shared",
            "--no-checkout",
            "--",
            &bare_text,
            tmp_text,
        ])?;
        if !out.ok {
            return Err(Error::Unsupported(format!(
                "checking out {commit} of {shown}: {}",
                scrub(&out.stderr, url)
            )));
        }
        let co = Repo { dir: tmp.clone() };
        let out = co.run(&[
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            "--detach",
            commit,
            "--",
        ])?;
        if !out.ok {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Error::Unsupported(format!(
                "checking out {commit} of {shown}: {}",
                scrub(&out.stderr, url)
            )));
        }
        verify(&tmp, commit).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })?;
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io("moving a checkout to", &dest, e))?;
        Ok(dest)
    }

    /// The bare clone of `url`, holding `commit` (fetched when missing).
    fn clone_or_fetch(&self, url: &str, fetch: &str, commit: &str) -> Result<PathBuf> {
        let shown = redact(url);
        let bare = self.bare(url);
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))?;
        let cache = Repo {
            dir: self.dir.clone(),
        };
        // git's own words (its command line names the URL as given): credentials removed.
        let scrubbed = |e: Error| Error::Invalid {
            what: format!("git.repo {shown}"),
            reason: scrub(
                &match e {
                    Error::Invalid { reason, .. } => reason,
                    other => other.to_string(),
                },
                url,
            ),
        };
        if !bare.join("HEAD").exists() {
            let tmp_name = format!(".{}.git.tmp", Self::key(url));
            let _ = std::fs::remove_dir_all(self.dir.join(&tmp_name));
            // A local path is made absolute: git runs in the cache directory.
            let from = match std::fs::canonicalize(url) {
                Ok(p) if !url.contains("://") => p.to_string_lossy().into_owned(),
                _ => url.to_string(),
            };
            cache
                .run_for(
                    &["clone", "--quiet", "--bare", "--", &from, &tmp_name],
                    self.timeout,
                )
                .map_err(scrubbed)?;
            std::fs::rename(self.dir.join(&tmp_name), &bare)
                .map_err(|e| Error::io("moving a clone to", &bare, e))?;
        }
        let repo = Repo { dir: bare.clone() };
        if !has_commit(&repo, commit) {
            repo.run_for(
                &[
                    "fetch",
                    "--quiet",
                    "--force",
                    "origin",
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                self.timeout,
            )
            .map_err(scrubbed)?;
            // The manifest's own ref (a pull request, say) and the commit itself, where the
            // server allows: either may be absent, which the check below reports.
            for extra in [fetch, commit] {
                if !extra.is_empty() && !extra.starts_with('-') && !has_commit(&repo, commit) {
                    let _ = repo.run_for(&["fetch", "--quiet", "origin", extra], self.timeout);
                }
            }
        }
        if !has_commit(&repo, commit) {
            return Err(Error::Input {
                what: format!("git.commit {commit} of {shown}"),
                reason: "is not in the repository (fetched its branches, tags and git.fetch)"
                    .into(),
            });
        }
        Ok(bare)
    }

    /// What changed between `from` and `to` of `url` under `path` (relative to the
    /// repository, `.` for all), and the patch of `dockerfile`. Both commits must be in the
    /// clone (it is fetched when they are not).
    pub fn diff(
        &self,
        url: &str,
        fetch: &str,
        from: &str,
        to: &str,
        path: &str,
        dockerfile: &str,
    ) -> Result<SourceDiff> {
        // A revision is never taken for an option of git.
        for rev in [from, to] {
            if rev.is_empty() || rev.starts_with('-') {
                return Err(Error::Input {
                    what: format!("the revision {rev:?}"),
                    reason: "is not a commit or revision name".into(),
                });
            }
        }
        self.clone_or_fetch(url, fetch, to)?;
        let bare = self.clone_or_fetch(url, fetch, from)?;
        let repo = Repo { dir: bare };
        let run = |args: &[&str]| -> Result<String> {
            let out = repo.run(args)?;
            if !out.ok {
                return Err(Error::Unsupported(format!(
                    "git {} in the clone of {}: {}",
                    args.first().copied().unwrap_or(""),
                    redact(url),
                    scrub(&out.stderr, url)
                )));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let stat = run(&["diff", "--stat", from, to, "--", path])?;
        let names = run(&["diff", "--name-only", "-z", from, to, "--", path])?;
        let dockerfile_patch = run(&["diff", from, to, "--", dockerfile])?;
        Ok(SourceDiff {
            stat,
            dockerfile_patch,
            files: names
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

fn has_commit(repo: &Repo, commit: &str) -> bool {
    let spec = format!("{commit}^{{commit}}");
    repo.run(&["cat-file", "-e", &spec]).is_ok_and(|o| o.ok)
}

/// `dir` is a checkout at exactly `commit` (`git rev-parse HEAD`) with nothing changed.
fn verify(dir: &Path, commit: &str) -> Result<()> {
    if !dir.join(".git").exists() {
        return Err(Error::Input {
            what: dir.display().to_string(),
            reason: "is not a checkout".into(),
        });
    }
    let repo = Repo {
        dir: dir.to_path_buf(),
    };
    let head = repo.line(&["rev-parse", "HEAD"]);
    if head.as_deref() != Some(commit) {
        return Err(Error::Invalid {
            what: dir.display().to_string(),
            reason: format!(
                "is at {}, not at {commit}",
                head.as_deref().unwrap_or("no commit")
            ),
        });
    }
    let out = repo.run(&[
        "status",
        "--porcelain",
        "--ignored",
        "--untracked-files=all",
    ])?;
    if !out.ok || !out.stdout.is_empty() {
        return Err(Error::Invalid {
            what: dir.display().to_string(),
            reason: "has changes: a source checkout must be exactly its commit".into(),
        });
    }
    Ok(())
}

/// `rel` (a `/`-separated path from a manifest) inside `root`, refused when it leaves it by
/// `..`, an absolute path, or a symbolic link pointing outside.
pub fn within(root: &Path, rel: &str) -> Result<PathBuf> {
    let refuse = |why: &str| Error::Input {
        what: format!("the path {rel:?}"),
        reason: format!("{why}: build.path, dockerfile and context stay inside the source"),
    };
    if Path::new(rel)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(refuse("leaves the source checkout"));
    }
    let joined = root.join(rel);
    let real_root = std::fs::canonicalize(root).map_err(|e| Error::io("reading", root, e))?;
    // The deepest part that exists decides: a link out of the checkout is refused even when
    // the file it would lead to does not exist.
    let real = joined
        .ancestors()
        .find_map(|a| std::fs::canonicalize(a).ok())
        .unwrap_or_default();
    match real.starts_with(&real_root) {
        false => Err(refuse("is a symbolic link out of the source checkout")),
        true => Ok(joined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_shown() {
        let u = "https://bob:s3cret@example.org/a/b.git";
        assert_eq!(redact(u), "https://example.org/a/b.git");
        assert_eq!(redact("/srv/x.git"), "/srv/x.git");
        let m = scrub(
            "fatal: could not read bob:s3cret from https://bob:s3cret@example.org/a/b.git",
            u,
        );
        assert!(!m.contains("s3cret"), "{m}");
        assert_eq!(
            SourceCache::key(u),
            SourceCache::key("https://example.org/a/b.git")
        );
    }

    #[test]
    fn paths_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        assert!(within(d.path(), "a/Dockerfile").is_ok());
        assert!(within(d.path(), "../x").is_err());
        assert!(within(d.path(), "/etc").is_err());
        std::os::unix::fs::symlink("/etc", d.path().join("out")).unwrap();
        assert!(within(d.path(), "out").is_err());
        assert!(within(d.path(), "out/passwd").is_err());
        assert!(within(d.path(), "out/no-such-file").is_err());
        assert!(within(d.path(), "a/not-yet").is_ok());
    }
}
