//! Reading the library's git history: the one place graft runs `git`. The CLI and the use
//! cases call it and hand plain values (build number, commit, times, changed paths) to the
//! rest of the library, which never runs a process itself.
//!
//! Every command runs in the library directory (`git -C DIR`), so a library that is a
//! sub-directory of a bigger repository works: paths are relative to the library, and a
//! change outside it is not a change of the library.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

mod checkout;
pub mod source;

/// Most bytes read from one git command: a diff listing or an old manifest. A library's
/// history is not allowed to fill memory.
const MAX_OUTPUT: usize = 64 << 20;

/// Longest record (a commit line or a path) read from `git log -z`.
const MAX_RECORD: usize = 64 << 10;

/// How much of a failing git's stderr is kept for its error message.
const STDERR_KEPT: u64 = 4 << 10;

/// How reading `git log` ended.
enum Walk {
    /// Every group has its time; git was stopped early.
    Complete,
    /// The output ended: git's exit status says whether the history was complete.
    Ended,
}

/// The git work tree a library directory is in.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
}

/// What one git command printed.
struct Output {
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

impl Repo {
    /// The work tree `dir` is in, or `None` when it is in none (or git is not installed).
    pub fn discover(dir: &Path) -> Option<Repo> {
        let repo = Repo {
            dir: dir.to_path_buf(),
        };
        let out = repo.run(&["rev-parse", "--is-inside-work-tree"]).ok()?;
        (out.ok && out.stdout.trim_ascii() == b"true").then_some(repo)
    }

    /// The library directory commands run in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `git -C DIR` with settings that keep the output parseable.
    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(&self.dir)
            // Paths as they are (no octal quoting), no pager, no colour, whatever the user's
            // configuration says: the output is parsed.
            .args(["-c", "core.quotepath=off", "-c", "color.ui=false"])
            .env("GIT_PAGER", "cat")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| Error::io("running git in", &self.dir, e))?;
        if out.stdout.len() > MAX_OUTPUT {
            return Err(Error::Invalid {
                what: format!("git {} in {}", args.join(" "), self.dir.display()),
                reason: format!("printed more than {MAX_OUTPUT} bytes"),
            });
        }
        Ok(Output {
            ok: out.status.success(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    /// One trimmed line of output of a command that succeeded, if any.
    fn line(&self, args: &[&str]) -> Option<String> {
        let out = self.run(args).ok()?;
        if !out.ok {
            return None;
        }
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (!s.is_empty()).then_some(s)
    }

    /// Whether the clone is shallow (CI checkouts default to depth 1): history-derived values
    /// (build numbers, a layer's last change) would be wrong there.
    pub fn is_shallow(&self) -> bool {
        self.line(&["rev-parse", "--is-shallow-repository"])
            .is_some_and(|s| s == "true")
    }

    /// `git rev-list --count HEAD`: the build number.
    pub fn build_number(&self) -> Option<String> {
        self.line(&["rev-list", "--count", "HEAD"])
    }

    /// `git rev-parse --short HEAD`.
    pub fn short_commit(&self) -> Option<String> {
        self.line(&["rev-parse", "--short", "HEAD"])
    }

    /// `git rev-parse HEAD`.
    pub fn head_commit(&self) -> Option<String> {
        self.line(&["rev-parse", "HEAD"])
    }

    /// The current branch; `None` on a detached HEAD.
    pub fn branch(&self) -> Option<String> {
        self.line(&["rev-parse", "--abbrev-ref", "HEAD"])
            .filter(|b| b != "HEAD")
    }

    /// The default branch as the `origin` remote says it (`refs/remotes/origin/HEAD`, set by
    /// `git clone` or `git remote set-head origin --auto`); `None` when it is not recorded.
    pub fn remote_default_branch(&self) -> Option<String> {
        self.line(&["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"])
            .and_then(|r| r.strip_prefix("refs/remotes/origin/").map(str::to_string))
            .filter(|b| !b.is_empty())
    }

    /// The URL of the `origin` remote.
    pub fn origin_url(&self) -> Option<String> {
        self.line(&["remote", "get-url", "origin"])
    }

    /// The committer time of HEAD; `None` in a repository without commits.
    pub fn head_time(&self) -> Option<Timestamp> {
        self.line(&["log", "-1", "--format=%ct", "HEAD"])
            .and_then(|s| Timestamp::parse_epoch(&s).ok())
    }

    /// For each group (a name and its paths: files or directories, relative to the library
    /// directory), the committer time of the last commit reachable from HEAD that touched any
    /// of its paths; groups no commit touched are left out. One `git log` walks the history
    /// newest first and stops as soon as every group has its time: a library of 200 layers
    /// costs one process, not 200 walks.
    pub fn last_changes(
        &self,
        groups: &[(String, Vec<String>)],
    ) -> Result<BTreeMap<String, Timestamp>> {
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for (name, paths) in groups {
            for p in paths {
                owner.entry(p.as_str()).or_insert(name.as_str());
            }
        }
        let mut found = BTreeMap::new();
        if owner.is_empty() {
            return Ok(found);
        }
        let wanted: BTreeSet<&str> = groups.iter().map(|(n, _)| n.as_str()).collect();
        let mut cmd = self.command();
        // Commits as `\x01<time>`, then the paths they touched, every record NUL-terminated;
        // `--relative` makes the paths relative to the library directory.
        cmd.args([
            "log",
            "-z",
            "--relative",
            "--no-renames",
            "--format=%x01%ct",
            "--name-only",
            "HEAD",
            "--",
        ]);
        // Literal paths: a layer named `*` must not be a pathspec glob.
        cmd.args(owner.keys().map(|p| format!(":(literal){p}")));
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("running git in", &self.dir, e))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Unsupported("git log: no output pipe".into()));
        };
        // Drained on its own thread so a chatty git never blocks on a full stderr pipe while
        // stdout is read; only its start is kept, for the message.
        let stderr = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut stderr = stderr;
            let _ = (&mut stderr).take(STDERR_KEPT).read_to_end(&mut kept);
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            String::from_utf8_lossy(&kept).trim().to_string()
        });
        let walked = self.read_log(stdout, &owner, wanted.len(), &mut found);
        let ended = matches!(walked, Ok(Walk::Ended));
        if !ended {
            // Every group has its time, or reading failed: stop the walk.
            let _ = child.kill();
        }
        let status = child.wait();
        let stderr = stderr.join().unwrap_or_default();
        walked?;
        if ended {
            let status = status.map_err(|e| Error::io("running git in", &self.dir, e))?;
            // A repository without commits has no history: no group has a time.
            let unborn = || self.is_work_tree() && self.head_commit().is_none();
            if !status.success() && !unborn() {
                return Err(Error::Unsupported(format!(
                    "git log in {} failed ({status}){}",
                    self.dir.display(),
                    match stderr.is_empty() {
                        true => String::new(),
                        false => format!(": {stderr}"),
                    }
                )));
            }
        }
        Ok(found)
    }

    /// Whether the library directory is in a git work tree.
    fn is_work_tree(&self) -> bool {
        self.line(&["rev-parse", "--is-inside-work-tree"])
            .is_some_and(|s| s == "true")
    }

    /// Read `git log -z --format=%x01%ct --name-only` output, recording in `found` the first
    /// (newest) time of each group owning a path, until every one of `wanted` groups has one
    /// ([`Walk::Complete`]) or the output ends ([`Walk::Ended`]).
    fn read_log(
        &self,
        stdout: impl Read,
        owner: &HashMap<&str, &str>,
        wanted: usize,
        found: &mut BTreeMap<String, Timestamp>,
    ) -> Result<Walk> {
        let mut reader = BufReader::new(stdout);
        let mut record = Vec::new();
        let mut time: Option<Timestamp> = None;
        loop {
            record.clear();
            let n = (&mut reader)
                .take(MAX_RECORD as u64)
                .read_until(0, &mut record)
                .map_err(|e| Error::io("reading git log in", &self.dir, e))?;
            if n == 0 {
                return Ok(Walk::Ended);
            }
            if n == MAX_RECORD && record.last() != Some(&0) {
                // The rest of this record would be read as a record of its own: a path
                // belonging to nobody, or to the wrong group.
                return Err(Error::Invalid {
                    what: format!("git log in {}", self.dir.display()),
                    reason: format!("a path or commit record longer than {MAX_RECORD} bytes"),
                });
            }
            let text = String::from_utf8_lossy(&record);
            let text = text.trim_end_matches('\0').trim_start_matches('\n');
            if let Some(t) = text.strip_prefix('\x01') {
                time = Timestamp::parse_epoch(t).ok();
                continue;
            }
            let Some(t) = time else { continue };
            // The path itself, or a directory above it, is some group's path.
            let mut prefix = Some(text);
            while let Some(p) = prefix {
                if let Some(name) = owner.get(p) {
                    found.entry(name.to_string()).or_insert(t);
                }
                prefix = p.rsplit_once('/').map(|(d, _)| d);
            }
            if found.len() == wanted {
                return Ok(Walk::Complete);
            }
        }
    }

    /// `rev` as a full commit hash. An unknown revision is a usage error that names it (and,
    /// in a shallow clone, says that it may be outside the fetched history).
    pub fn resolve(&self, rev: &str) -> Result<String> {
        let bad = |detail: String| {
            let mut msg = format!(
                "unknown revision {rev:?} in the git repository of {}",
                self.dir.display()
            );
            if !detail.is_empty() {
                msg.push_str(&format!(" ({detail})"));
            }
            if self.is_shallow() {
                msg.push_str(
                    "; this is a shallow clone: fetch the history that has it (git fetch --unshallow, or fetch-depth: 0 in actions/checkout)",
                );
            }
            Error::Unsupported(msg)
        };
        // An option-looking revision must not be taken as a flag by git.
        if rev.is_empty() || rev.starts_with('-') {
            return Err(bad(String::new()));
        }
        let spec = format!("{rev}^{{commit}}");
        let out = self.run(&[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ])?;
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.ok || hash.is_empty() {
            return Err(bad(out.stderr));
        }
        Ok(hash)
    }

    /// The files that differ between commit `from` and HEAD, relative to the library
    /// directory (files outside it are left out); a rename counts as its old and new path.
    pub fn changed_files(&self, from: &str) -> Result<Vec<String>> {
        let out = self.run(&[
            "diff",
            "--name-only",
            "--no-renames",
            "--relative",
            "-z",
            from,
            "HEAD",
            "--",
        ])?;
        if !out.ok {
            return Err(Error::Unsupported(format!(
                "git diff {from}..HEAD in {} failed: {}",
                self.dir.display(),
                out.stderr
            )));
        }
        let mut files: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).to_string())
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// The content of `path` (relative to the library directory) at commit `rev`, or `None`
    /// when it did not exist there.
    pub fn file_at(&self, rev: &str, path: &str) -> Option<Vec<u8>> {
        let out = self.run(&["show", &format!("{rev}:./{path}")]).ok()?;
        out.ok.then_some(out.stdout)
    }
}

/// The branches a remote has, as `git ls-remote` lists them (what `graft prune
/// --branch-tags` compares the branch annotations with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHeads {
    /// The remote as given (a name such as `origin`, or a URL or path), credentials removed
    /// ([`redact_urls`]).
    pub remote: String,
    /// Its URL, when the remote is a configured name, credentials removed.
    pub url: Option<String>,
    /// Every branch (`refs/heads/` stripped).
    pub heads: BTreeSet<String>,
    /// The branch the remote's HEAD points at, when asked for and known.
    pub head: Option<String>,
}

impl Repo {
    /// `git ls-remote --heads REMOTE` (and, with `want_head`, `git ls-remote --symref REMOTE
    /// HEAD`): the branches the remote has now. `remote` is a configured remote's name or a
    /// URL/path. Each call waits at most `timeout` (a remote that does not answer is an
    /// error naming it; git never prompts for credentials). An unknown remote name is a usage
    /// error naming the fix.
    pub fn remote_heads(
        &self,
        remote: &str,
        want_head: bool,
        timeout: std::time::Duration,
    ) -> Result<RemoteHeads> {
        if remote.is_empty() || remote.starts_with('-') {
            return Err(Error::Unsupported(format!(
                "{remote:?} is not a git remote name or URL"
            )));
        }
        let url = self.line(&["remote", "get-url", "--end-of-options", remote]);
        let looks_like_url = remote.contains('/') || remote.contains(':') || remote == ".";
        if url.is_none() && !looks_like_url {
            return Err(Error::Unsupported(format!(
                "the git repository of {} has no remote named {remote:?}: add it (git remote \
                 add {remote} URL), or name another remote or a URL with --remote",
                self.dir.display()
            )));
        }
        let listing = self.run_for(&["ls-remote", "--heads", remote], timeout)?;
        let mut heads = BTreeSet::new();
        for line in String::from_utf8_lossy(&listing).lines() {
            if let Some(name) = line
                .split_once('\t')
                .and_then(|(_, r)| r.strip_prefix("refs/heads/"))
            {
                heads.insert(name.to_string());
            }
        }
        let head = match want_head {
            false => None,
            true => {
                let out = self.run_for(&["ls-remote", "--symref", remote, "HEAD"], timeout)?;
                String::from_utf8_lossy(&out).lines().find_map(|l| {
                    let (target, name) = l.strip_prefix("ref: ")?.split_once('\t')?;
                    (name == "HEAD")
                        .then(|| target.strip_prefix("refs/heads/").map(str::to_string))
                        .flatten()
                })
            }
        };
        Ok(RemoteHeads {
            remote: redact_urls(remote),
            url: url.map(|u| redact_urls(&u)),
            heads,
            head,
        })
    }

    /// Run a git command that may wait on the network: its stdout (at most [`MAX_OUTPUT`]
    /// bytes) when it succeeds within `timeout`; it is killed when it does not.
    fn run_for(&self, args: &[&str], timeout: std::time::Duration) -> Result<Vec<u8>> {
        // A URL may carry credentials (`https://user:token@host/x`): errors show it without.
        let shown: Vec<String> = args.iter().map(|a| redact_urls(a)).collect();
        let what = || format!("git {} (in {})", shown.join(" "), self.dir.display());
        let mut cmd = self.command();
        // Never ask for a password on the terminal: fail instead. ssh asks on /dev/tty, not
        // through git, so it runs in batch mode unless the user chose how ssh runs.
        cmd.env("GIT_TERMINAL_PROMPT", "0");
        let chosen = ["GIT_SSH_COMMAND", "GIT_SSH"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
            || self.line(&["config", "core.sshCommand"]).is_some();
        if !chosen {
            cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        // Its own process group, so a timeout ends its helpers (ssh, git-remote-https) too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("running git in", &self.dir, e))?;
        let kill_group = |child: &mut std::process::Child| {
            // The group's id is git's pid (process_group(0)).
            let group = rustix::process::Pid::from_child(child);
            if rustix::process::kill_process_group(group, rustix::process::Signal::KILL).is_err() {
                let _ = child.kill();
            }
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Unsupported(format!("{}: no output pipe", what())));
        };
        let out = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut stdout = stdout;
            let _ = (&mut stdout)
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut kept);
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            kept
        });
        let err = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut stderr = stderr;
            let _ = (&mut stderr).take(STDERR_KEPT).read_to_end(&mut kept);
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            String::from_utf8_lossy(&kept).trim().to_string()
        });
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() >= deadline => {
                    kill_group(&mut child);
                    let _ = child.wait();
                    return Err(Error::Invalid {
                        what: what(),
                        reason: format!(
                            "no answer within {} s (is the remote reachable?)",
                            timeout.as_secs()
                        ),
                    });
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(e) => {
                    kill_group(&mut child);
                    return Err(Error::io("waiting for git in", &self.dir, e));
                }
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        if !status.success() {
            // The remote could not be read (gone, unreachable, refused): the operation failed.
            return Err(Error::Invalid {
                what: what(),
                reason: match stderr.is_empty() {
                    true => format!("git failed ({status})"),
                    false => format!("git failed ({status}): {}", redact_urls(&stderr)),
                },
            });
        }
        if stdout.len() > MAX_OUTPUT {
            return Err(Error::Invalid {
                what: what(),
                reason: format!("printed more than {MAX_OUTPUT} bytes"),
            });
        }
        Ok(stdout)
    }
}

/// `text` with the user information of every `scheme://user:secret@host` URL in it removed
/// (`scheme://host`), and the query and fragment of each URL dropped: remotes and git's
/// messages may carry tokens, and errors must not.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The URL ends at a blank or a quote; its authority at the first '/'.
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>'))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        let url = url.split(['?', '#']).next().unwrap_or(url);
        let (authority, path) = url.split_at(url.find('/').unwrap_or(url.len()));
        out.push_str(authority.rsplit_once('@').map_or(authority, |(_, h)| h));
        out.push_str(path);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The branch a CI job builds, from its variables (read by the binary and passed as `var`),
/// for a detached HEAD: GitHub Actions (`GITHUB_HEAD_REF` in a pull request, else
/// `GITHUB_REF_NAME` unless the ref is a tag), GitLab CI (`CI_MERGE_REQUEST_SOURCE_BRANCH_NAME`,
/// else `CI_COMMIT_REF_NAME`), Jenkins (`BRANCH_NAME`, else `GIT_BRANCH` without its
/// `origin/`). Empty values count as unset.
pub fn ci_branch(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    if let Some(b) = get("GITHUB_HEAD_REF") {
        return Some(b);
    }
    if get("GITHUB_REF_TYPE").as_deref() != Some("tag") {
        if let Some(b) = get("GITHUB_REF_NAME") {
            return Some(b);
        }
    }
    get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
        .or_else(|| get("CI_COMMIT_REF_NAME"))
        .or_else(|| get("BRANCH_NAME"))
        .or_else(|| {
            get("GIT_BRANCH").map(|b| match b.strip_prefix("origin/") {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => b,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn last_changes_fails_when_git_fails() {
        // Not a repository: git log exits 128 having printed nothing; that is no history.
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo {
            dir: dir.path().to_path_buf(),
        };
        let groups = vec![("a".to_string(), vec!["a".to_string()])];
        let err = repo.last_changes(&groups).unwrap_err().to_string();
        assert!(err.contains("git log"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn last_changes_of_a_repository_without_commits_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let init = Command::new("git")
            .arg("init")
            .arg("-q")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(init.success());
        let repo = Repo::discover(dir.path()).expect("a work tree");
        let groups = vec![("a".to_string(), vec!["a".to_string()])];
        assert!(repo.last_changes(&groups).unwrap().is_empty());
    }

    #[test]
    fn last_changes_refuses_an_oversized_record() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo {
            dir: dir.path().to_path_buf(),
        };
        let owner: HashMap<&str, &str> = HashMap::from([("a", "a")]);
        let mut log = b"\x011700000000\0".to_vec();
        log.extend(std::iter::repeat_n(b'x', MAX_RECORD + 10));
        log.extend(b"/a\0");
        let mut found = BTreeMap::new();
        let err = repo.read_log(&log[..], &owner, 1, &mut found);
        assert!(err.is_err());
        assert!(found.is_empty());
        // Within the limit, the path is found.
        let log = b"\x011700000000\0\na\0".to_vec();
        let walk = repo.read_log(&log[..], &owner, 1, &mut found).unwrap();
        assert!(matches!(walk, Walk::Complete));
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn remote_heads_gives_up_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let init = Command::new("git")
            .args(["init", "-q"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(init.success());
        let repo = Repo::discover(dir.path()).expect("a work tree");
        // A server that takes the connection (the kernel's backlog) and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let err = repo
            .remote_heads(
                &format!("git://127.0.0.1:{port}/lib"),
                false,
                std::time::Duration::from_secs(1),
            )
            .unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let text = err.to_string();
        assert!(
            text.contains("no answer within 1 s") && text.contains("git ls-remote"),
            "{text}"
        );
        assert!(!err.is_usage());
        // An unknown remote name is bad input, naming the fix.
        let err = repo
            .remote_heads("upstream", false, std::time::Duration::from_secs(1))
            .unwrap_err();
        assert!(
            err.is_usage() && err.to_string().contains("git remote add"),
            "{err}"
        );
        drop(listener);
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_urls("https://user:tok@host/x.git?private_token=t#f"),
            "https://host/x.git"
        );
        assert_eq!(
            redact_urls("fatal: unable to access 'https://u:p@h:8/a/': no\nssh://git@h/b c"),
            "fatal: unable to access 'https://h:8/a/': no\nssh://h/b c"
        );
        assert_eq!(redact_urls("origin ../lib /x@y"), "origin ../lib /x@y");
    }

    #[test]
    fn a_timeout_ends_git_and_its_helpers_and_shows_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let init = Command::new("git")
            .args(["init", "-q"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(init.success());
        // An "ssh" that records its pid and never answers (as one waiting on a prompt).
        let pidfile = dir.path().join("ssh.pid");
        let ssh = dir.path().join("fake-ssh");
        std::fs::write(
            &ssh,
            format!(
                "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
                pidfile.display()
            ),
        )
        .unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&ssh, mode).unwrap();
        let set = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["config", "core.sshCommand"])
            .arg(&ssh)
            .status()
            .unwrap();
        assert!(set.success());
        let repo = Repo::discover(dir.path()).expect("a work tree");
        let err = repo
            .remote_heads(
                "ssh://user:s3cret@127.0.0.1/lib",
                false,
                std::time::Duration::from_secs(1),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no answer within 1 s"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let pid = std::fs::read_to_string(&pidfile).expect("the ssh helper ran");
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
        // Killed with its group: gone, or a zombie waiting for its new parent to reap it.
        let mut alive = true;
        for _ in 0..100 {
            alive = std::fs::read_to_string(proc_dir.join("stat"))
                .map(|st| {
                    !st.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false);
            if !alive {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(!alive, "the ssh helper {} survived the timeout", pid.trim());
    }

    #[test]
    fn ci_variables_name_the_branch() {
        assert_eq!(ci_branch(&env(&[])), None);
        let pr = [
            ("GITHUB_HEAD_REF", "fix/x"),
            ("GITHUB_REF_NAME", "12/merge"),
        ];
        assert_eq!(ci_branch(&env(&pr)).as_deref(), Some("fix/x"));
        let push = [("GITHUB_HEAD_REF", ""), ("GITHUB_REF_NAME", "main")];
        assert_eq!(ci_branch(&env(&push)).as_deref(), Some("main"));
        let tag = [("GITHUB_REF_TYPE", "tag"), ("GITHUB_REF_NAME", "v1")];
        assert_eq!(ci_branch(&env(&tag)), None);
        let mr = [
            ("CI_COMMIT_REF_NAME", "main"),
            ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "feat"),
        ];
        assert_eq!(ci_branch(&env(&mr)).as_deref(), Some("feat"));
        let jenkins = [("GIT_BRANCH", "origin/dev")];
        assert_eq!(ci_branch(&env(&jenkins)).as_deref(), Some("dev"));
        let jenkins = [("BRANCH_NAME", "PR-7"), ("GIT_BRANCH", "origin/dev")];
        assert_eq!(ci_branch(&env(&jenkins)).as_deref(), Some("PR-7"));
    }
}
