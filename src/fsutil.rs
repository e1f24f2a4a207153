//! Files replaced atomically: written under a temporary name in the target's directory and
//! renamed over it only when complete, so a reader (or a crash) sees the old file or the new
//! one, never half of one. The one way graft writes a whole file in place.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Prefix of graft's temp files (left behind only if the process is killed; safe to delete).
pub const TMP_PREFIX: &str = ".graft-tmp-";

/// How far a finished write is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The file is fsynced before the rename and its directory after: once the call returns
    /// the new content survives a crash. For files that cannot be made again.
    Synced,
    /// No fsync: after a crash the file may be missing or incomplete. For files rebuilt from
    /// their sources.
    Unsynced,
}

/// A file being written to a temp file next to `path`; [`AtomicFile::commit`] renames it into
/// place. Dropped without a commit, the temp file is removed.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// Start writing `path`: a temp file in its directory, created with permission bits
    /// `mode` (less the umask, as for any new file). The error is that of creating the temp
    /// file in [`parent_dir`] of `path`.
    pub fn create(path: &Path, mode: u32) -> std::io::Result<AtomicFile> {
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .permissions(std::fs::Permissions::from_mode(mode))
            .tempfile_in(parent_dir(path))?;
        Ok(AtomicFile {
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Rename the temp file to the path given to [`AtomicFile::create`], fsyncing as
    /// `durability` says.
    pub fn commit(self, durability: Durability) -> Result<()> {
        let AtomicFile { mut tmp, path } = self;
        if durability == Durability::Synced {
            tmp.flush()
                .and_then(|()| tmp.as_file().sync_all())
                .map_err(|e| Error::io("writing", tmp.path(), e))?;
        }
        tmp.persist(&path)
            .map_err(|e| Error::io("renaming a temp file to", &path, e.error))?;
        match durability {
            Durability::Synced => sync_dir(parent_dir(&path)),
            Durability::Unsynced => Ok(()),
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tmp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.flush()
    }
}

/// Replace `path` with `bytes` through an [`AtomicFile`] created with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, durability: Durability) -> Result<()> {
    let mut file = AtomicFile::create(path, mode)
        .map_err(|e| Error::io("creating a temp file in", parent_dir(path), e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io("writing", file.tmp.path(), e))?;
    file.commit(durability)
}

/// fsync a directory so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}

/// The directory containing `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new", 0o600, Durability::Synced).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);

        // Not committed: the old file stays and no temp file is left.
        let mut f = AtomicFile::create(&path, 0o644).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        assert_eq!(parent_dir(Path::new("f")), Path::new("."));
    }
}
