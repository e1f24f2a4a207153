//! What everything one operation opens on local files shares: the lock that serialises edits
//! of a layout's `index.json`, and the one writer of an archive file. It is held by the
//! operation's [`crate::store::open::Endpoint`] (not in process-wide tables), so two
//! operations in one process never see each other's state, and every source, sink and
//! repository one operation opens on a file sees the same state: a layout written by two
//! images at once loses no `index.json` entry, and an archive being written is read back as
//! written so far (its commit makes it visible in the file).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::fsutil::parent_dir;
use crate::store::archive::ArchiveState;

/// Shared state of the local stores one operation opens, by resolved path.
#[derive(Debug, Default)]
pub struct LocalStores {
    index_locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    archives: Mutex<HashMap<PathBuf, Weak<ArchiveState>>>,
}

impl LocalStores {
    /// A new, empty set (one per operation).
    pub fn new() -> Arc<LocalStores> {
        Arc::new(LocalStores::default())
    }

    /// The lock guarding `index.json` of the layout at canonical path `key`.
    pub(crate) fn index_lock(&self, key: &Path) -> Arc<Mutex<()>> {
        lock(&self.index_locks)
            .entry(key.to_path_buf())
            .or_default()
            .clone()
    }

    /// Whether a layout sink of this operation has the layout at canonical path `key` open
    /// (it may not have created it yet).
    pub(crate) fn has_index_lock(&self, key: &Path) -> bool {
        lock(&self.index_locks).contains_key(key)
    }

    /// The writer state of the archive `path`, if a sink of this operation has it open.
    pub(crate) fn archive(&self, path: &Path) -> Option<Arc<ArchiveState>> {
        lock(&self.archives)
            .get(&file_key(path))
            .and_then(Weak::upgrade)
    }

    /// The writer state of the archive `path`, made by `new` unless a sink of this operation
    /// has it open.
    pub(crate) fn archive_or_insert(
        &self,
        path: &Path,
        new: impl FnOnce() -> crate::error::Result<Arc<ArchiveState>>,
    ) -> crate::error::Result<Arc<ArchiveState>> {
        let mut map = lock(&self.archives);
        map.retain(|_, w| w.strong_count() > 0);
        let key = file_key(path);
        if let Some(s) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let s = new()?;
        map.insert(key, Arc::downgrade(&s));
        Ok(s)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A file's key: its directory resolved, so spellings of one file agree.
fn file_key(path: &Path) -> PathBuf {
    match (std::fs::canonicalize(parent_dir(path)), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}
