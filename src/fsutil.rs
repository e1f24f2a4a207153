//! Files replaced atomically: written under a temporary name in the target's directory and
//! renamed over it only when complete, so a reader (or a crash) sees the old file or the new
//! one, never half of one. The one way graft writes a whole file in place.
//!
//! And files read from stores that may be hostile ([`open_regular`], [`read_limited`]): only
//! regular files, opened without blocking, optionally only inside one directory, and read
//! only up to a limit.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
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

/// Create `path` with `bytes` (through a temp file, as [`write_atomic`]) unless it exists:
/// a file that appears meanwhile (another creator's) is kept, never replaced. Whether this
/// call created it.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32, durability: Durability) -> Result<bool> {
    let mut file = AtomicFile::create(path, mode)
        .map_err(|e| Error::io("creating a temp file in", parent_dir(path), e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io("writing", file.tmp.path(), e))?;
    let AtomicFile { tmp, path } = file;
    if durability == Durability::Synced {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io("writing", tmp.path(), e))?;
    }
    match tmp.persist_noclobber(&path) {
        Ok(_) => {}
        // The temp file is removed when the error (holding it) is dropped.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::io("renaming a temp file to", &path, e.error)),
    }
    if durability == Durability::Synced {
        sync_dir(parent_dir(&path))?;
    }
    Ok(true)
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

/// Why [`open_regular`] did not open a file.
#[derive(Debug)]
pub enum OpenRefused {
    /// The OS refused (the file does not exist, no permission, ...).
    Io(std::io::Error),
    /// The file is not one graft reads: not a regular file, or outside its directory. The text
    /// says which, as the reason of an [`Error::Invalid`].
    Refused(String),
}

impl OpenRefused {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpenRefused::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// The error for opening `path`.
    pub fn into_error(self, path: &Path) -> Error {
        match self {
            OpenRefused::Io(e) => Error::io("opening", path, e),
            OpenRefused::Refused(reason) => Error::Invalid {
                what: path.display().to_string(),
                reason,
            },
        }
    }
}

/// Open `path` for reading if it is a regular file; with `within` (a canonical directory, as
/// [`std::fs::canonicalize`] returns it), only if its real path, every symlink resolved, is
/// inside that directory.
///
/// A FIFO would block the open (and every read) until a writer came, and a device or
/// `/dev/zero` never ends: the file is opened with `O_NONBLOCK` (no effect on a regular
/// file's reads) and its type checked on the opened handle, so a file swapped for another
/// kind after a check is caught too. The checked real path is then opened one component at a
/// time from `within`, each with `O_NOFOLLOW`: a directory swapped for a symlink after the
/// check is refused, not followed out of the directory.
pub fn open_regular(path: &Path, within: Option<&Path>) -> std::result::Result<File, OpenRefused> {
    match within {
        Some(root) => {
            let real = std::fs::canonicalize(path).map_err(OpenRefused::Io)?;
            let Ok(rel) = real.strip_prefix(root) else {
                return Err(OpenRefused::Refused(format!(
                    "it resolves to {}, outside {}: graft reads no file outside the directory",
                    real.display(),
                    root.display()
                )));
            };
            open_beneath(root, rel)
        }
        None => open_checked(path, libc::O_NONBLOCK),
    }
}

/// Open `root/rel` (`rel` without `..` or symlinks, as a canonical path has none) following
/// no symlink on the way: each directory is opened with `O_NOFOLLOW | O_DIRECTORY` relative to
/// the one before, the file with `O_NOFOLLOW | O_NONBLOCK`, and its type checked on the handle.
fn open_beneath(root: &Path, rel: &Path) -> std::result::Result<File, OpenRefused> {
    use std::os::fd::OwnedFd;
    let names: Vec<&std::ffi::OsStr> = rel
        .components()
        .map(|c| match c {
            std::path::Component::Normal(n) => Ok(n),
            other => Err(OpenRefused::Refused(format!(
                "{:?} in the path: graft opens only plain names beneath a directory",
                other.as_os_str()
            ))),
        })
        .collect::<std::result::Result<_, _>>()?;
    let Some((last, dirs)) = names.split_last() else {
        return Err(OpenRefused::Refused(
            "a directory, not a regular file: graft reads only regular files here".into(),
        ));
    };
    use rustix::fs::{openat, Mode, OFlags};
    let open_at = |at: &OwnedFd, name: &std::ffi::OsStr, flags: OFlags| {
        openat(
            at,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            match e {
                // What O_NOFOLLOW answers for a symlink (ENOTDIR with O_DIRECTORY).
                rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                    OpenRefused::Refused(format!(
                    "{} is a symlink now (or no longer a directory): graft does not follow it here",
                    name.to_string_lossy()
                ))
                }
                e => OpenRefused::Io(e.into()),
            }
        })
    };
    let mut dir: OwnedFd = File::open(root).map_err(OpenRefused::Io)?.into();
    for name in dirs {
        dir = open_at(&dir, name, OFlags::RDONLY | OFlags::DIRECTORY)?;
    }
    let fd = open_at(&dir, last, OFlags::RDONLY | OFlags::NONBLOCK)?;
    regular_only(File::from(fd))
}

/// Open `path` for reading if it is a regular file and not a symlink: for a file found (and
/// checked) by path earlier, which may have been swapped since. A symlink in its last
/// component is refused, not followed (`O_NOFOLLOW`), a FIFO does not block the open
/// (`O_NONBLOCK`), and the type is checked on the opened handle (`fstat`), so what is read is
/// what the check saw: a regular file at that name.
pub fn open_regular_nofollow(path: &Path) -> std::result::Result<File, OpenRefused> {
    open_checked(path, libc::O_NONBLOCK | libc::O_NOFOLLOW)
}

/// Open `path` with `flags`, then refuse anything but a regular file.
fn open_checked(path: &Path, flags: i32) -> std::result::Result<File, OpenRefused> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(file) => file,
        // What O_NOFOLLOW answers for a symlink.
        Err(e) if flags & libc::O_NOFOLLOW != 0 && e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(OpenRefused::Refused(
                "a symlink, not a regular file: graft does not follow it here".into(),
            ))
        }
        Err(e) => return Err(OpenRefused::Io(e)),
    };
    regular_only(file)
}

/// `file` if it is a regular file (checked on the handle: what is read is what was checked).
fn regular_only(file: File) -> std::result::Result<File, OpenRefused> {
    let meta = file.metadata().map_err(OpenRefused::Io)?;
    if !meta.is_file() {
        return Err(OpenRefused::Refused(format!(
            "{}, not a regular file: graft reads only regular files here",
            file_kind(&meta.file_type())
        )));
    }
    Ok(file)
}

/// "a FIFO", "a directory", ... for messages.
pub fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// Read all of `file` (`path` names it in errors), refusing a file of more than `limit` bytes
/// before reading any of it: its size is checked first (so a claimed size is never
/// allocated), and the read stops one byte past the limit (for a file that grows meanwhile).
pub fn read_limited(file: File, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let too_large = |n: u64| Error::Invalid {
        what: path.display().to_string(),
        reason: too_large_reason(n, limit),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::io("checking", path, e))?
        .len();
    if len > limit {
        return Err(too_large(len));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("reading", path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_large(buf.len() as u64));
    }
    Ok(buf)
}

/// "N bytes is more than the L (X MiB) graft reads".
pub fn too_large_reason(size: u64, limit: u64) -> String {
    let human = if limit >= 1 << 20 && limit % (1 << 20) == 0 {
        format!(" ({} MiB)", limit >> 20)
    } else {
        String::new()
    };
    format!("{size} bytes is more than the {limit} bytes{human} graft reads of such a document")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_regular_files_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let inner = root.join("in");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(inner.join("f"), b"data").unwrap();
        std::fs::write(root.join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("f", inner.join("link")).unwrap();
        std::os::unix::fs::symlink("../outside", inner.join("escape")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", inner.join("zero")).unwrap();

        let read = |name: &str, within: Option<&Path>| {
            let p = inner.join(name);
            let f = open_regular(&p, within).map_err(|e| e.into_error(&p).to_string())?;
            read_limited(f, &p, 1024).map_err(|e| e.to_string())
        };
        assert_eq!(read("f", Some(&inner)).unwrap(), b"data");
        assert_eq!(read("link", Some(&inner)).unwrap(), b"data");
        let err = read("escape", Some(&inner)).unwrap_err();
        assert!(err.contains("escape") && err.contains("outside"), "{err}");
        assert_eq!(read("escape", None).unwrap(), b"secret");
        let err = read("zero", Some(&inner)).unwrap_err();
        assert!(err.contains("outside"), "{err}");
        let err = read("zero", None).unwrap_err();
        assert!(
            err.contains("a character device, not a regular file"),
            "{err}"
        );
        let err = read(".", None).unwrap_err();
        assert!(err.contains("a directory"), "{err}");
        let missing = open_regular(&inner.join("nope"), Some(&inner)).unwrap_err();
        assert!(missing.is_not_found());

        // Size limits: checked before reading.
        let p = inner.join("f");
        let err = read_limited(File::open(&p).unwrap(), &p, 3).unwrap_err();
        assert!(
            err.to_string().contains("4 bytes is more than the 3 bytes"),
            "{err}"
        );
    }

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

    #[test]
    fn nofollow_opens_refuse_links_and_fifos_on_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"data").unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"secret").unwrap();
        let mut text = String::new();
        open_regular_nofollow(&f)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "data");
        // The checked file swapped for a link: refused, not followed.
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink(&outside, &f).unwrap();
        let err = open_regular_nofollow(&f).unwrap_err().into_error(&f);
        assert_eq!(
            err.to_string(),
            format!(
                "invalid {}: a symlink, not a regular file: graft does not follow it here",
                f.display()
            )
        );
        // ... or for a FIFO: refused without blocking.
        std::fs::remove_file(&f).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&f)
            .status()
            .unwrap();
        assert!(made.success());
        let err = open_regular_nofollow(&f).unwrap_err().into_error(&f);
        assert!(
            err.to_string().contains("a FIFO, not a regular file"),
            "{err}"
        );
        assert!(open_regular_nofollow(&dir.path().join("nope"))
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn opens_beneath_a_directory_through_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("in/sub")).unwrap();
        std::fs::create_dir_all(root.join("out")).unwrap();
        std::fs::write(root.join("in/sub/f"), b"inside").unwrap();
        std::fs::write(root.join("out/f"), b"outside").unwrap();
        let inner = root.join("in");
        let mut s = String::new();
        open_beneath(&inner, Path::new("sub/f"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        // The directory checked is swapped for a symlink out of `in` before the open: refused.
        std::fs::rename(inner.join("sub"), root.join("was-sub")).unwrap();
        std::os::unix::fs::symlink(root.join("out"), inner.join("sub")).unwrap();
        let e = open_beneath(&inner, Path::new("sub/f")).unwrap_err();
        assert!(
            e.into_error(Path::new("sub/f"))
                .to_string()
                .contains("sub is a symlink now"),
            "refused, not followed"
        );
        // `..` and an empty path are never opened.
        assert!(open_beneath(&inner, Path::new("../out/f")).is_err());
        assert!(open_beneath(&inner, Path::new("")).is_err());
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(write_new(&path, b"first", 0o600, Durability::Unsynced).unwrap());
        assert!(!write_new(&path, b"second", 0o600, Durability::Synced).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
