//! Deterministic layer tarballs: the same sources give the same bytes on any machine.
//!
//! A [`LayerSpec`] (the `files/` trees overlaid in order, the paths to remove, owner, modes
//! and one mtime) is everything that determines a layer. [`plan`] checks it and lists the
//! entries without reading a file; [`build`] streams the tar through the chosen
//! [`Compression`] into any writer, hashing the tar (diff_id) and the compressed bytes (digest)
//! on the way, and returns the [`LayerDigests`] a manifest and config need. [`build_to_file`]
//! and [`build_spilling`] put the result in a file (renamed into place when complete) or, for
//! small layers, keep it in memory. The modules: `tree` (overlay, checks, entry order),
//! `compress` (block-parallel gzip, zstd, hashing), and the shared tar header writer
//! [`crate::oci::tar`].
//!
//! # What the archive holds
//! - The trees are overlaid in order: a later tree's file, symlink or directory replaces an
//!   earlier tree's non-directory at the same path, a later non-directory replaces an earlier
//!   directory with everything under it, and directories merge.
//! - Each `remove` entry becomes an empty `.wh.<name>` file in its parent directory (parents
//!   are written as directories when the trees do not have them).
//! - Entries are sorted by path, component by component (bytewise), so parents come before
//!   their children; within a directory whiteouts come first, so an extractor deletes the
//!   lower file before it writes a new one of the same name. The root directory itself is not
//!   an entry.
//! - Every entry has the spec's mtime and owner (default 0:0), no user or group names, and a
//!   normalised mode: directories and files with any execute bit 0755, other files 0644,
//!   symlinks 0777, whiteouts 0644; `modes` overrides any of them.
//! - Symlinks are kept as links; a relative target that climbs out of the tree is an error.
//! - Regular files with several links in the trees: the first path in archive order holds
//!   the bytes, later paths are tar hard links to it.
//! - POSIX ustar headers ([`crate::oci::tar::Style::Layer`]); names or link targets longer
//!   than 100 bytes or not ASCII, and values too large for ustar, go into a PAX extended header
//!   (keys sorted, fixed header name).
//!
//! # Compression
//! See `docs/decisions.md` (section "Deterministic layer compression"): gzip is deflate level
//! 6 by zlib-rs over independent 1 MiB blocks (written in parallel, like `pigz -i`), with a
//! `gzip -n` header; zstd is level 3 with a checksum, single-threaded. The golden tests below
//! pin the bytes.

mod compress;
mod tree;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::fsutil::{parent_dir, AtomicFile, Durability};
use crate::oci::digest::Digest;
use crate::oci::media_types;
use crate::oci::tar;
use crate::timestamp::Timestamp;

use compress::{Blocks, HashingWriter, ParallelGzip, PlainSink, ZstdSink};
pub use compress::{CHUNK, GZIP_LEVEL, ZSTD_LEVEL};
pub use tree::{image_path, PlannedEntry, PlannedKind, WHITEOUT_PREFIX};

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (deflate level 6): what every registry and runtime reads.
    #[default]
    Gzip,
    /// zstd (level 3).
    Zstd,
    /// An uncompressed tar.
    None,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media_types::OCI_LAYER_GZIP,
            Compression::Zstd => media_types::OCI_LAYER_ZSTD,
            Compression::None => media_types::OCI_LAYER_TAR,
        }
    }

    /// The name used on the command line and in files: `gzip`, `zstd` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = Error;

    fn from_str(s: &str) -> Result<Compression> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            other => Err(Error::Unsupported(format!(
                "unknown compression {other:?}: expected gzip, zstd or none"
            ))),
        }
    }
}

/// Everything that determines a layer's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// Directories placed at `/`, overlaid in order: later files win, directories merge.
    pub trees: Vec<PathBuf>,
    /// Absolute image paths to delete from lower layers (written as whiteouts).
    pub remove: Vec<String>,
    /// uid and gid of every entry (default 0:0).
    pub owner: Option<(u32, u32)>,
    /// Absolute image path → permission bits, overriding the normalised mode.
    pub modes: BTreeMap<String, u32>,
    /// The modification time of every entry.
    pub mtime: Timestamp,
}

impl LayerSpec {
    /// A spec for one tree placed at `/`, with defaults for everything else.
    pub fn tree(path: impl Into<PathBuf>, mtime: Timestamp) -> LayerSpec {
        LayerSpec {
            trees: vec![path.into()],
            remove: Vec::new(),
            owner: None,
            modes: BTreeMap::new(),
            mtime,
        }
    }
}

/// What identifies a built layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerDigests {
    /// Digest of the compressed bytes (the blob's digest in a manifest).
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Size of the compressed bytes.
    pub size: u64,
    /// The OCI layer media type.
    pub media_type: String,
}

/// The archive entries `spec` produces, in order, after every check (no file is read).
pub fn plan(spec: &LayerSpec) -> Result<Vec<PlannedEntry>> {
    tree::plan(spec)
}

/// Build the layer described by `spec` and stream it to `out`. All checks of the trees and of
/// `remove`/`modes` run before anything is written. Memory stays bounded by a few
/// [`CHUNK`]-sized blocks per thread whatever the layer's size.
pub fn build<W: Write + Send>(
    spec: &LayerSpec,
    compression: Compression,
    out: W,
) -> Result<LayerDigests> {
    build_with_threads(spec, compression, out, threads())
}

/// [`build`] with `threads` gzip compression threads (the bytes are the same for any number).
pub(crate) fn build_with_threads<W: Write + Send>(
    spec: &LayerSpec,
    compression: Compression,
    out: W,
    threads: usize,
) -> Result<LayerDigests> {
    let entries = tree::plan(spec)?;
    let mut sink = HashingWriter::new(out, compression != Compression::None);
    let (diff_id, _) = std::thread::scope(|scope| -> Result<(Digest, u64)> {
        let blocks: Box<dyn compress::BlockSink + '_> = match compression {
            Compression::Gzip => Box::new(ParallelGzip::start(scope, &mut sink, threads)),
            Compression::Zstd => Box::new(ZstdSink::new(&mut sink)?),
            Compression::None => Box::new(PlainSink(&mut sink)),
        };
        let mut stream = Blocks::new(scope, blocks);
        write_entries(&entries, spec, &mut stream)?;
        stream.finish()
    })?;
    let (digest, size) = sink.finish()?;
    Ok(LayerDigests {
        digest: digest.unwrap_or_else(|| diff_id.clone()),
        diff_id,
        size,
        media_type: compression.media_type().to_string(),
    })
}

/// [`build`] into the file at `path`: the layer is written to a temp file in the same
/// directory and renamed into place only when complete (mode 0644). The file is not fsynced:
/// it can be rebuilt from its sources.
pub fn build_to_file(
    spec: &LayerSpec,
    compression: Compression,
    path: &Path,
) -> Result<LayerDigests> {
    build_spilling(spec, compression, path, 0).map(|(digests, _)| digests)
}

/// Where [`build_spilling`] left a layer.
#[derive(Debug, Clone)]
pub enum Built {
    /// Small enough to keep in memory.
    Memory(bytes::Bytes),
    /// Written to this file.
    File(PathBuf),
}

/// [`build`] into memory while the layer stays within `limit` bytes, else into the file at
/// `path` (a temp file renamed into place when complete, like [`build_to_file`], which is
/// this with no memory at all). Small compat layers never touch the disk: writing and
/// reading back 16 MiB costs more than building it.
pub fn build_spilling(
    spec: &LayerSpec,
    compression: Compression,
    path: &Path,
    limit: usize,
) -> Result<(LayerDigests, Built)> {
    let mut out = Spill {
        buf: Vec::new(),
        limit,
        path,
        file: None,
    };
    if limit == 0 {
        out.spill()
            .map_err(|e| Error::io("creating a temp file in", parent_dir(path), e))?;
    }
    let digests = build(spec, compression, &mut out).map_err(|e| match e {
        Error::LayerWrite(source) => Error::io("writing layer to", path, source),
        e => e,
    })?;
    let built = match out.file {
        None => Built::Memory(out.buf.into()),
        Some(file) => {
            file.commit(Durability::Unsynced)?;
            Built::File(path.to_path_buf())
        }
    };
    Ok((digests, built))
}

/// Bytes in memory up to a limit, then in an atomic file for `path`.
struct Spill<'p> {
    buf: Vec<u8>,
    limit: usize,
    path: &'p Path,
    file: Option<AtomicFile>,
}

impl Spill<'_> {
    /// Move to a temp file (mode 0644), with what is in memory so far.
    fn spill(&mut self) -> std::io::Result<()> {
        let mut file = AtomicFile::create(self.path, 0o644)?;
        file.write_all(&self.buf)?;
        self.buf = Vec::new();
        self.file = Some(file);
        Ok(())
    }
}

impl Write for Spill<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() && self.buf.len() + data.len() > self.limit {
            self.spill()?;
        }
        match &mut self.file {
            Some(f) => f.write(data),
            None => {
                self.buf.extend_from_slice(data);
                Ok(data.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Compression threads: the machine's parallelism, at most 8. The bytes do not depend on it.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

fn write_entries(entries: &[PlannedEntry], spec: &LayerSpec, out: &mut Blocks<'_>) -> Result<()> {
    let (uid, gid) = spec.owner.unwrap_or((0, 0));
    let mut header = Vec::with_capacity(4 * tar::BLOCK);
    let zeros = [0u8; tar::BLOCK];
    for e in entries {
        let (kind, size, link) = match &e.kind {
            PlannedKind::Dir => (tar::EntryType::Directory, 0, ""),
            PlannedKind::File { size, .. } => (tar::EntryType::File, *size, ""),
            PlannedKind::Symlink { target } => (tar::EntryType::Symlink, 0, target.as_str()),
            PlannedKind::HardLink { target } => (tar::EntryType::HardLink, 0, target.as_str()),
            PlannedKind::Whiteout => (tar::EntryType::File, 0, ""),
        };
        header.clear();
        tar::encode(
            &tar::HeaderFields {
                name: &e.name,
                kind,
                mode: e.mode,
                uid: u64::from(uid),
                gid: u64::from(gid),
                size,
                mtime: spec.mtime.0,
                link,
            },
            tar::Style::Layer,
            &mut header,
        );
        out.write_all(&header)?;
        if let PlannedKind::File { source, size } = &e.kind {
            let mut file = tree::open_source_file(source)?;
            out.copy_exact(&mut file, *size, source)?;
            out.write_all(&zeros[..tar::padding(*size)])?;
        }
    }
    out.write_all(&tar::END)
}

#[cfg(test)]
mod tests;
