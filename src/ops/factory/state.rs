//! The state files: `state/images/<name>.yaml` and `state/base-images/<name>.yaml`, in the
//! seed's field order (docs/factory.md lists every field, and the few the seed lacks).
//!
//! Written whole, by serialising these structs (field order = declaration order, so a diff
//! shows only what changed), to a temporary file renamed over the old one: a crash or a full
//! disk leaves the old file, never a truncated one. Fields this version does not know are
//! kept (at the end), so an older graft does not drop a newer one's data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, Durability};

/// Most build-history entries kept per image (newest first).
pub const HISTORY_LIMIT: usize = 20;

/// `discoveryStatus` of an image.
pub mod status {
    /// Enrolled, not discovered yet.
    pub const PENDING: &str = "pending";
    /// Bases found in its Dockerfile.
    pub const SUCCESS: &str = "success";
    /// The Dockerfile could not be read or parsed: `discoveryError` says why.
    pub const FAILED: &str = "failed";
    /// An external image: nothing to discover.
    pub const EXTERNAL: &str = "external";
}

/// One image's state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageState {
    /// The enrolled name.
    pub name: String,
    /// When `sync` first saw it.
    pub enrolled_at: Option<String>,
    /// When `sync` last read its Dockerfile (managed images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_discovery: Option<String>,
    /// pending, success, failed, external.
    pub discovery_status: String,
    /// Why discovery failed (not in the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_error: Option<String>,
    /// The enrollment, as images.yaml says (rewritten by every sync).
    pub enrollment: serde_yaml_ng::Value,
    /// External images: Kargo's repoURL.
    #[serde(default, rename = "repoURL", skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    /// External images: the allowed tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tags: Option<String>,
    /// External images: the selection strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_selection_strategy: Option<String>,
    /// Names of its bases (state/base-images/).
    #[serde(default)]
    pub base_images: Vec<String>,
    /// The version of its last build (managed) or its selected tag (external).
    #[serde(default)]
    pub current_version: Option<String>,
    /// The digest of its last build (managed) or of its selected tag (external).
    #[serde(default)]
    pub current_digest: Option<String>,
    /// When it was last built (managed).
    #[serde(default)]
    pub last_built: Option<String>,
    /// External images: when `check` last resolved it (not in the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// External images: when `check` last saw its digest change (not in the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    /// External images: the digest before the last change (not in the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
    /// The rebuild decision of the last `check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_state: Option<RebuildState>,
    /// Builds, newest first, at most [`HISTORY_LIMIT`] (not in the seed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_history: Vec<Build>,
    /// When the image left images.yaml (not in the seed): kept, never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
    /// Fields this version does not know, kept as they are.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

/// `rebuildState` of an image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildState {
    /// monitoring (nothing to do), due, waiting (delay left), held (autoRebuild off),
    /// unbuilt (never built), failed (discovery or a base check failed), removed.
    pub status: String,
    /// Whether a rebuild is due now.
    pub pending_rebuild: bool,
    /// Why (not in the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the delay runs out (status waiting; not in the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
}

/// One build of an image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    /// The digest written.
    pub digest: String,
    /// When it was recorded.
    pub time: String,
    /// The commit it was built from, when known.
    #[serde(default)]
    pub commit: Option<String>,
    /// What caused it (`manual`, `base-update`, `push`, …: the recorder says).
    #[serde(default)]
    pub trigger: Option<String>,
    /// Base name (or reference) → the digest it was built on.
    #[serde(default)]
    pub base_digests: BTreeMap<String, String>,
}

/// One base image's state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseState {
    /// The derived name.
    pub name: String,
    /// The reference as the Dockerfile's FROM gives it (after ARG substitution).
    pub full_image: String,
    /// Registry host (`docker.io`).
    pub registry: String,
    /// Repository (`library/node`).
    pub repository: String,
    /// The tag followed (`None` for a digest-pinned base).
    pub tag: Option<String>,
    /// Kargo's repoURL.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// `^TAG$`.
    pub allow_tags: Option<String>,
    /// `Digest`: a base follows one tag by digest.
    pub image_selection_strategy: String,
    /// When `sync` first found it.
    pub first_discovered: Option<String>,
    /// When `check` last resolved it.
    #[serde(default)]
    pub last_checked: Option<String>,
    /// The images built on it.
    #[serde(default)]
    pub dependent_images: Vec<String>,
    /// Its digest at the last check.
    #[serde(default)]
    pub current_digest: Option<String>,
    /// The digest before the last change (not in the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
    /// When `check` last saw its digest change.
    #[serde(default)]
    pub last_updated: Option<String>,
    /// When no enrolled image used it any more (not in the seed): kept, never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
    /// Fields this version does not know, kept as they are.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

/// The state directory: `images/` and `base-images/`.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// The directory (`./state`).
    pub root: PathBuf,
}

/// Everything in a state directory.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Images by name.
    pub images: BTreeMap<String, ImageState>,
    /// Bases by name.
    pub bases: BTreeMap<String, BaseState>,
}

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = ".lock";

/// A state directory taken by one writer ([`StateDir::lock`]); dropping it releases it.
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Largest state file read (a state file is a few kilobytes).
const MAX_STATE_FILE: u64 = 4 << 20;

impl StateDir {
    /// `state/images`.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// `state/base-images`.
    pub fn bases(&self) -> PathBuf {
        self.root.join("base-images")
    }

    /// `state/.lock`: held by the one writer at a time.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Take the state directory for one writer (`sync`, `check`, `record`): the lock file is
    /// created with O_EXCL (`create_new`) and holds the writer's process id; it is removed
    /// when the guard drops. A second writer is refused with an error naming the file and
    /// its holder; nothing is read or written then. A file left by a writer that was killed
    /// stays until removed by hand (the message says so): a lock that expired by itself
    /// could let two writers in.
    pub fn lock(&self) -> Result<StateLock> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io("creating", &self.root, e))?;
        let path = self.lock_file();
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder: String = holder.trim().chars().take(200).collect();
                return Err(Error::Io {
                    context: format!(
                        "another writer holds the state directory ({}); wait for it, or remove the lock file if no such process runs:",
                        if holder.is_empty() { "holder unknown".to_string() } else { holder }
                    ),
                    path,
                    source: e,
                });
            }
            Err(e) => return Err(Error::io("creating the lock file", &path, e)),
        };
        use std::io::Write as _;
        // Who holds it, for the message a second writer gets.
        let _ = writeln!(f, "pid {}", std::process::id());
        Ok(StateLock { path })
    }

    /// Read every state file (none: an empty state). A file that cannot be parsed is an
    /// error naming it: it is never overwritten with less.
    pub fn load(&self) -> Result<State> {
        Ok(State {
            images: read_dir(&self.images())?,
            bases: read_dir(&self.bases())?,
        })
    }

    /// Write one image's file (atomically).
    pub fn write_image(&self, s: &ImageState) -> Result<()> {
        write_yaml(&self.images(), &s.name, s)
    }

    /// Write one base's file (atomically).
    pub fn write_base(&self, s: &BaseState) -> Result<()> {
        write_yaml(&self.bases(), &s.name, s)
    }

    /// Write every file of `state` whose content differs from `old`. All are serialised
    /// first (nothing is written when one cannot be), then written by a few threads at once:
    /// each write waits for an fsync, and 500 of them in a row take seconds.
    pub fn write_changed(&self, old: &State, state: &State) -> Result<Vec<PathBuf>> {
        let mut jobs: Vec<(PathBuf, String)> = Vec::new();
        for (n, s) in &state.images {
            if old.images.get(n) != Some(s) {
                jobs.push((self.images().join(format!("{n}.yaml")), to_yaml(n, s)?));
            }
        }
        for (n, s) in &state.bases {
            if old.bases.get(n) != Some(s) {
                jobs.push((self.bases().join(format!("{n}.yaml")), to_yaml(n, s)?));
            }
        }
        for dir in [self.images(), self.bases()] {
            if jobs.iter().any(|(p, _)| p.parent() == Some(dir.as_path())) {
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
            }
        }
        let chunk = jobs.len().div_ceil(WRITERS).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || -> Result<()> {
                        for (path, text) in part {
                            write_atomic(path, text.as_bytes(), 0o644, Durability::Synced)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| {
                    Error::internal("writing state files", "a writer thread panicked")
                })??;
            }
            Ok::<(), Error>(())
        })?;
        Ok(jobs.into_iter().map(|(p, _)| p).collect())
    }
}

/// Threads writing state files at once.
const WRITERS: usize = 8;

fn to_yaml<T: Serialize>(name: &str, value: &T) -> Result<String> {
    serde_yaml_ng::to_string(value)
        .map_err(|e| Error::internal(format!("serialising the state of {name}"), e))
}

fn read_dir<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<BTreeMap<String, T>> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("reading the state directory", dir, e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io("reading the state directory", dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".yaml") {
            if !stem.starts_with('.') {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    for stem in names {
        let path = dir.join(format!("{stem}.yaml"));
        let meta = std::fs::metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
        if meta.len() > MAX_STATE_FILE {
            return Err(Error::Input {
                what: path.display().to_string(),
                reason: format!("larger than {MAX_STATE_FILE} bytes: not a state file"),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
        let value: T = serde_yaml_ng::from_str(&text).map_err(|e| Error::Input {
            what: format!("state file {}", path.display()),
            reason: format!("{e} (fix or remove it; graft does not overwrite it)"),
        })?;
        out.insert(stem, value);
    }
    Ok(out)
}

fn write_yaml<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    write_atomic(
        &dir.join(format!("{name}.yaml")),
        to_yaml(name, value)?.as_bytes(),
        0o644,
        Durability::Synced,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_kept_and_order_is_fixed() {
        let text = "\
discoveryStatus: success
name: app
futureField:
  a: 1
enrolledAt: 2024-12-04T10:00:00Z
enrollment:
  registry: r.io
";
        let s: ImageState = serde_yaml_ng::from_str(text).unwrap();
        let out = serde_yaml_ng::to_string(&s).unwrap();
        assert_eq!(
            out,
            "\
name: app
enrolledAt: 2024-12-04T10:00:00Z
discoveryStatus: success
enrollment:
  registry: r.io
baseImages: []
currentVersion: null
currentDigest: null
lastBuilt: null
futureField:
  a: 1
"
        );
        let again: ImageState = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn one_writer_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir {
            root: tmp.path().join("state"),
        };
        let held = dir.lock().unwrap();
        let e = dir.lock().unwrap_err().to_string();
        assert!(e.contains("another writer"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("state/.lock"), "{e}");
        drop(held);
        assert!(!dir.lock_file().exists());
        let _again = dir.lock().unwrap();
    }

    #[test]
    fn a_write_replaces_the_file_whole() {
        let d = tempfile::tempdir().unwrap();
        let dir = StateDir {
            root: d.path().to_path_buf(),
        };
        let mut state = State::default();
        let mut img = ImageState {
            name: "app".into(),
            discovery_status: status::EXTERNAL.into(),
            ..ImageState::default()
        };
        state.images.insert("app".into(), img.clone());
        let written = dir.write_changed(&State::default(), &state).unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(dir.load().unwrap().images["app"], img);
        // Unchanged: not rewritten.
        assert!(dir.write_changed(&state, &state).unwrap().is_empty());
        img.current_digest = Some("sha256:x".into());
        state.images.insert("app".into(), img.clone());
        dir.write_changed(&State::default(), &state).unwrap();
        assert_eq!(dir.load().unwrap().images["app"], img);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.images()).unwrap().count(), 1);
    }
}
