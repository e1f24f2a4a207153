//! One pass over the headers of a tar, recording where every member's headers and bytes are.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::open_regular;
use crate::oci::Digest;
use crate::store::layout::BLOBS_DIR;

use super::archive_what;
use super::header::padded;

/// What kind of member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else (links, global headers, devices): kept, never read.
    Other,
}

/// One member of a tar, as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scanned {
    /// Where its first header block starts (extension headers included).
    pub start: u64,
    /// Where its bytes start.
    pub data: u64,
    /// How many bytes it has.
    pub size: u64,
    /// Where the next member starts (the bytes rounded up to whole blocks).
    pub end: u64,
    /// Its normalised name (no `./`, no leading or trailing `/`); `None` when unusable.
    pub name: Option<String>,
    /// Its kind.
    pub kind: Kind,
}

impl Scanned {
    /// The digest of a blob member (`blobs/<alg>/<hex>`, a regular file).
    pub fn blob_digest(&self) -> Option<Digest> {
        (self.kind == Kind::File)
            .then_some(self.name.as_deref())
            .flatten()
            .and_then(member_digest)
    }
}

/// The members of a tar, in order, and where the readable part ends.
#[derive(Debug, Default)]
pub(super) struct Walk {
    /// The members whose headers and bytes are all inside the file.
    pub members: Vec<Scanned>,
    /// The end of the last of them (where a writer would continue).
    pub end: u64,
    /// Why the walk stopped before the end of the file, if it did: an unreadable header or a
    /// member cut short.
    pub problem: Option<String>,
}

/// Walk the headers of `file` (`len` bytes long) without reading the members' bytes. Stops at
/// the end-of-archive blocks, at the end of the file, or at the first damaged header or
/// truncated member (reported in [`Walk::problem`]).
pub(super) fn walk(file: &File, len: u64) -> std::io::Result<Walk> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0))?;
    let mut archive = tar::Archive::new(reader);
    let mut out = Walk::default();
    let entries = match archive.entries_with_seek() {
        Ok(e) => e,
        Err(e) => {
            out.problem = Some(e.to_string());
            return Ok(out);
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.problem = Some(e.to_string());
                break;
            }
        };
        let data = entry.raw_file_position();
        let size = entry.size();
        if data.saturating_add(size) > len {
            out.problem = Some(format!(
                "a member of {size} bytes starting at offset {data} is cut short: the file has \
                 {len} bytes"
            ));
            break;
        }
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            _ => Kind::Other,
        };
        let raw = entry.path_bytes();
        let name = std::str::from_utf8(&raw).ok().and_then(normalize_member);
        let end = data + padded(size);
        out.members.push(Scanned {
            start: out.end,
            data,
            size,
            end,
            name,
            kind,
        });
        out.end = end;
    }
    Ok(out)
}

/// Walk an archive that must be readable: refuses compressed files and damaged tars, naming
/// the file.
pub(super) fn scan_archive(path: &Path) -> Result<Vec<Scanned>> {
    let what = || archive_what(path);
    // Only a regular file: a FIFO would block the open and every read.
    let mut file = open_regular(path, None).map_err(|e| {
        if e.is_not_found() {
            return Error::NotFound {
                what: what(),
                detail: Some("no such file".into()),
            };
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Error::Invalid {
                what: what(),
                reason: "is a directory (for a layout directory use oci:)".into(),
            },
            _ => e.into_error(path),
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("checking", path, e))?;
    let mut magic = [0u8; 4];
    let n = file
        .read(&mut magic)
        .map_err(|e| Error::io("reading", path, e))?;
    let compression = match &magic[..n] {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd] => Some("zstd"),
        [b'B', b'Z', b'h', ..] => Some("bzip2"),
        [0xfd, b'7', b'z', b'X'] => Some("xz"),
        _ => None,
    };
    if let Some(c) = compression {
        return Err(Error::Invalid {
            what: what(),
            reason: format!(
                "the file is {c}-compressed; graft reads plain tar archives (decompress it first)"
            ),
        });
    }
    let walked = walk(&file, meta.len()).map_err(|e| Error::io("reading", path, e))?;
    match walked.problem {
        Some(problem) => Err(Error::Invalid {
            what: what(),
            reason: format!("not a readable tar archive: {problem}"),
        }),
        None => Ok(walked.members),
    }
}

/// `./blobs//sha256/x` → `blobs/sha256/x`; `None` for names with `..` or no components.
pub(super) fn normalize_member(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The digest named by a blob member, `blobs/<alg>/<hex>`.
pub(super) fn member_digest(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix(BLOBS_DIR)?.strip_prefix('/')?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// The member name of a blob: `blobs/<alg>/<hex>`.
pub(super) fn blob_member(digest: &Digest) -> String {
    format!(
        "{BLOBS_DIR}/{}/{}",
        digest.algorithm().as_str(),
        digest.hex()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize_member("./a//b/"), Some("a/b".into()));
        assert_eq!(normalize_member("./"), None);
        assert_eq!(normalize_member("../x"), None);
        let d = Digest::sha256(b"x");
        assert_eq!(member_digest(&blob_member(&d)), Some(d));
        assert_eq!(member_digest("blobs/sha256/nothex"), None);
        assert_eq!(member_digest("index.json"), None);
    }
}
