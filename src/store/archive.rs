//! OCI layout archives (`oci-archive:FILE[:tag]`): a tar whose root is an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as skopeo writes it.
//!
//! Reading never extracts: [`ArchiveSource`] makes one pass over the tar headers, recording
//! where each member's bytes start and how long they are, then serves `index.json`, manifests
//! and blobs by seeking into the file (streamed and verified).
//!
//! Writing goes through a staging layout directory next to the target, `FILE.graft-staging/`.
//! It is kept when the process stops before [`Sink::commit`] and reused by the next run, so
//! blobs that were finished are not written again. If `FILE` exists, its content is first
//! imported into the staging layout (idempotently), so adding an image to an archive keeps the
//! images already in it. `commit` packs the staging layout deterministically into `FILE.tmp`
//! (entries sorted, directories before their children, mtime 0, uid/gid 0, no user or group
//! names, modes 0644/0755), fsyncs it, renames it to `FILE` and removes the staging directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::error::{Error, Result, ResultExt};
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::reference::LayoutRef;
use crate::store::layout::{
    check_layout_marker, display_ref, manifest_from_bytes, parent_dir, parse_index, resolve_in,
    sync_dir, Layout, LayoutSink, BLOBS_DIR, INDEX_FILE, OCI_LAYOUT_FILE, READ_CHUNK, TMP_PREFIX,
};
use crate::store::{verify_stream, BlobStream, Sink, Source};

/// Suffix of the staging layout directory next to an archive being written.
pub const STAGING_SUFFIX: &str = ".graft-staging";

/// Where one member's bytes are inside the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    offset: u64,
    size: u64,
}

/// Reads images from a tar of an OCI layout without extracting it.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    path: PathBuf,
    tag: Option<String>,
    /// Regular-file members by normalised path (no `./`, no leading `/`).
    members: BTreeMap<String, Member>,
    /// The parsed `index.json` entries.
    entries: Vec<Descriptor>,
    /// `index.json` as a JSON document (for imports that keep its other fields).
    index: Value,
}

impl ArchiveSource {
    /// Open the archive at `r.path`: scan its headers once and read its `oci-layout` and
    /// `index.json`. [`Source::resolve`] picks the entry tagged `r.tag`, or the only entry.
    pub fn open(r: LayoutRef) -> Result<ArchiveSource> {
        let path = r.path;
        let members = scan(&path)?;
        let what = archive_what(&path);
        let member = |name: &str| {
            members.get(name).copied().ok_or_else(|| Error::Invalid {
                what: what.clone(),
                reason: format!(
                    "no {name} at the archive root: this is not a tar of an OCI image layout"
                ),
            })
        };
        let marker = read_member_sync(&path, member(OCI_LAYOUT_FILE)?)?;
        check_layout_marker(&marker, &path.join(OCI_LAYOUT_FILE))?;
        let index_bytes = read_member_sync(&path, member(INDEX_FILE)?)?;
        let index_what = format!("{INDEX_FILE} in {what}");
        let entries = parse_index(&index_bytes, &index_what)?;
        let index = serde_json::from_slice(&index_bytes).map_err(|e| Error::Json {
            what: index_what,
            source: e,
        })?;
        Ok(ArchiveSource {
            path,
            tag: r.tag,
            members,
            entries,
            index,
        })
    }

    /// The archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries of the archive's `index.json`, in file order.
    pub fn entries(&self) -> &[Descriptor] {
        &self.entries
    }

    /// The entry named `tag`, or the only entry; [`Error::NotFound`] listing the tags otherwise.
    pub fn find_entry(&self, tag: Option<&str>) -> Result<Descriptor> {
        resolve_in(&self.entries, tag, &archive_what(&self.path))
    }

    /// Whether the archive holds the blob with the descriptor's size.
    pub fn has_blob(&self, desc: &Descriptor) -> bool {
        self.members
            .get(&blob_member(&desc.digest))
            .is_some_and(|m| m.size == desc.size)
    }

    /// Every blob in the archive (members under `blobs/<alg>/` named by a valid digest), as
    /// descriptors without media type, sorted by digest.
    pub fn blobs(&self) -> Vec<Descriptor> {
        self.members
            .iter()
            .filter_map(|(name, m)| {
                let rest = name.strip_prefix(BLOBS_DIR)?.strip_prefix('/')?;
                let (alg, hex) = rest.split_once('/')?;
                let digest: Digest = format!("{alg}:{hex}").parse().ok()?;
                Some(Descriptor::new("", digest, m.size))
            })
            .collect()
    }

    /// Stream a blob out of the archive, verified against `desc`.
    pub async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        let member = self.member_of(&desc.digest)?;
        let mut file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| Error::io("opening", &self.path, e))?;
        file.seek(SeekFrom::Start(member.offset))
            .await
            .map_err(|e| Error::io("seeking in", &self.path, e))?;
        let path = self.path.clone();
        let stream = ReaderStream::with_capacity(file.take(member.size), READ_CHUNK)
            .map(move |r| r.map_err(|e| Error::io("reading", &path, e)));
        Ok(verify_stream(
            Box::pin(stream),
            desc,
            format!("blob {} in {}", desc.digest, archive_what(&self.path)),
        ))
    }

    /// Read and verify a manifest or index (media type from the document, else from `desc`).
    pub async fn read_manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        let member = self.member_of(&desc.digest)?;
        let what = format!("manifest {} in {}", desc.digest, archive_what(&self.path));
        if member.size != desc.size {
            return Err(Error::SizeMismatch {
                what,
                expected: desc.size,
                found: member.size,
            });
        }
        let path = self.path.clone();
        let bytes = tokio::task::spawn_blocking(move || read_member_sync(&path, member))
            .await
            .map_err(|e| Error::io("reading", &self.path, std::io::Error::other(e)))??;
        manifest_from_bytes(Bytes::from(bytes), desc, what)
    }

    fn member_of(&self, digest: &Digest) -> Result<Member> {
        self.members
            .get(&blob_member(digest))
            .copied()
            .ok_or_else(|| Error::NotFound {
                what: format!("blob {digest} in {}", archive_what(&self.path)),
                detail: None,
            })
    }
}

#[async_trait]
impl Source for ArchiveSource {
    fn name(&self) -> String {
        display_ref("oci-archive", &self.path, self.tag.as_deref())
    }

    async fn resolve(&self) -> Result<RawManifest> {
        let desc = self.find_entry(self.tag.as_deref())?;
        self.read_manifest(&desc).await
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.read_manifest(desc).await
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        self.read_blob(desc).await
    }
}

/// Writes images into a tar of an OCI layout, through a reusable staging layout directory
/// (`FILE.graft-staging/`); nothing reaches `FILE` before [`Sink::commit`].
///
/// If `FILE` exists, its content is imported into the staging layout before the first
/// operation (including `commit`), so the images already in it are kept. Tags follow
/// [`LayoutSink`]: `put_tag` names the entry, `put_root` (an `oci-archive:FILE` destination
/// without a tag) lists it untagged.
#[derive(Debug, Clone)]
pub struct ArchiveSink {
    path: PathBuf,
    tag: Option<String>,
    staging: LayoutSink,
    imported: Arc<tokio::sync::OnceCell<()>>,
}

impl ArchiveSink {
    /// Prepare to write the archive `r.path`: open (or create, or reuse after an interrupted
    /// run) its staging layout. Cheap: if the archive exists, its content is imported on first
    /// use (blobs already staged are skipped; tags already staged win over the archive's).
    pub fn open(r: LayoutRef) -> Result<ArchiveSink> {
        let path = r.path;
        if path.is_dir() {
            return Err(Error::Invalid {
                what: archive_what(&path),
                reason: "is a directory (for a layout directory use oci:)".into(),
            });
        }
        let staging = LayoutSink::open(LayoutRef {
            path: ArchiveSink::staging_dir(&path)?,
            tag: r.tag.clone(),
        })
        .context(|| format!("opening the staging directory of {}", archive_what(&path)))?;
        Ok(ArchiveSink {
            path,
            tag: r.tag,
            staging,
            imported: Arc::default(),
        })
    }

    /// The staging directory used for the archive `file`: `FILE.graft-staging` next to it.
    pub fn staging_dir(file: &Path) -> Result<PathBuf> {
        let name = file.file_name().ok_or_else(|| Error::Invalid {
            what: archive_what(file),
            reason: "the path has no file name".into(),
        })?;
        let mut staged = name.to_os_string();
        staged.push(STAGING_SUFFIX);
        Ok(file.with_file_name(staged))
    }

    /// The staging layout.
    pub fn staging(&self) -> &Layout {
        self.staging.layout()
    }

    /// The staging sink, after importing the existing archive (once).
    async fn ready(&self) -> Result<&LayoutSink> {
        self.imported
            .get_or_try_init(|| async {
                if self.path.exists() {
                    import(self.staging(), &self.path).await.context(|| {
                        format!("importing the existing {}", archive_what(&self.path))
                    })?;
                }
                Ok::<(), Error>(())
            })
            .await?;
        Ok(&self.staging)
    }
}

#[async_trait]
impl Sink for ArchiveSink {
    fn name(&self) -> String {
        display_ref("oci-archive", &self.path, self.tag.as_deref())
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        self.ready().await?.has_blob(desc).await
    }

    async fn put_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<()> {
        self.ready().await?.put_blob(desc, data).await
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool> {
        self.ready().await?.has_manifest(desc).await
    }

    async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>> {
        self.ready().await?.tag_digest(tag).await
    }

    async fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        self.ready().await?.put_manifest(manifest).await
    }

    async fn put_root(&self, manifest: &RawManifest) -> Result<bool> {
        self.ready().await?.put_root(manifest).await
    }

    async fn put_tag(&self, manifest: &RawManifest, tag: &str) -> Result<()> {
        self.ready().await?.put_tag(manifest, tag).await
    }

    /// Pack the staging layout into the archive (atomically) and remove the staging directory.
    async fn commit(&self) -> Result<()> {
        self.ready().await?;
        let staging = self.staging().path().to_path_buf();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            pack(&staging, &path)?;
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io("removing", &staging, e))
        })
        .await
        .map_err(|e| Error::io("writing", &self.path, std::io::Error::other(e)))?
    }
}

/// Copy an existing archive's blobs (those not staged yet) and index entries into `staging`.
async fn import(staging: &Layout, file: &Path) -> Result<()> {
    let src = ArchiveSource::open(LayoutRef {
        path: file.to_path_buf(),
        tag: None,
    })?;
    for desc in src.blobs() {
        if staging.has_blob(&desc)? {
            continue;
        }
        staging
            .write_blob(&desc, src.read_blob(&desc).await?)
            .await?;
    }
    let staging = staging.clone();
    let index = src.index.clone();
    let index_path = staging.index_path();
    tokio::task::spawn_blocking(move || staging.merge_index(&index))
        .await
        .map_err(|e| Error::io("updating", index_path, std::io::Error::other(e)))?
}

/// Pack the layout at `staging` into `out` deterministically, via `out.tmp` (removed on
/// error), fsync and rename.
pub(crate) fn pack(staging: &Path, out: &Path) -> Result<()> {
    let mut members = Vec::new();
    collect_members(staging, "", &mut members)?;
    let mut tmp_name = out
        .file_name()
        .ok_or_else(|| Error::Invalid {
            what: archive_what(out),
            reason: "the path has no file name".into(),
        })?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = out.with_file_name(tmp_name);
    let guard = RemoveOnDrop(Some(tmp.clone()));
    let file = File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    let werr = |e: std::io::Error| Error::io("writing", &tmp, e);
    let mut builder = tar::Builder::new(BufWriter::with_capacity(READ_CHUNK, file));
    for m in &members {
        let mut headers = member_headers(&m.name, m.len);
        let (header, _) = headers.pop().expect("at least the member's own header");
        for (extension, data) in headers {
            builder.append(&extension, &data[..]).map_err(werr)?;
        }
        match &m.source {
            None => builder.append(&header, std::io::empty()).map_err(werr)?,
            Some(src) => {
                let f = File::open(src).map_err(|e| Error::io("opening", src, e))?;
                // `take` guards against a file that grew since it was listed.
                builder.append(&header, f.take(m.len)).map_err(werr)?;
            }
        }
    }
    builder.finish().map_err(werr)?;
    let file = builder
        .into_inner()
        .map_err(werr)?
        .into_inner()
        .map_err(|e| werr(e.into_error()))?;
    file.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, out).map_err(|e| Error::io("renaming a temp file to", out, e))?;
    guard.disarm();
    sync_dir(parent_dir(out))
}

/// One tar member to write: its name (directories end with `/`), length and source file.
struct PackMember {
    name: String,
    len: u64,
    source: Option<PathBuf>,
}

/// Depth-first walk with sorted names: directories come before their children.
fn collect_members(dir: &Path, prefix: &str, out: &mut Vec<PackMember>) -> Result<()> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| Error::Invalid {
                what: layout_dir_what(dir),
                reason: format!("file name {n:?} is not UTF-8"),
            })?;
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("checking", &path, e))?;
        let member = format!("{prefix}{name}");
        if meta.is_dir() {
            out.push(PackMember {
                name: format!("{member}/"),
                len: 0,
                source: None,
            });
            collect_members(&path, &format!("{member}/"), out)?;
        } else if meta.is_file() {
            out.push(PackMember {
                name: member,
                len: meta.len(),
                source: Some(path),
            });
        } else {
            return Err(Error::Invalid {
                what: layout_dir_what(dir),
                reason: format!("{} is neither a file nor a directory", path.display()),
            });
        }
    }
    Ok(())
}

/// The deterministic header(s) of one member: mtime 0, uid/gid 0, no user or group names,
/// 0644 files / 0755 dirs. A name that does not fit a ustar header (e.g. a sha512 blob, whose
/// hex alone is 128 bytes) is carried by a PAX extended header (`path=`) written first.
fn member_headers(name: &str, len: u64) -> Vec<(tar::Header, Vec<u8>)> {
    let dir = name.ends_with('/');
    let kind = if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    };
    let mut out = Vec::new();
    let mut main = base_header(kind, len, if dir { 0o755 } else { 0o644 });
    if !set_ustar_name(&mut main, name.as_bytes()) {
        let record = pax_record("path", name);
        let mut pax = base_header(tar::EntryType::XHeader, record.len() as u64, 0o644);
        let short = truncate_name(&format!("PaxHeaders/{}", name.trim_end_matches('/')));
        set_ustar_name(&mut pax, short.as_bytes());
        pax.set_cksum();
        out.push((pax, record));
        set_ustar_name(&mut main, truncate_name(name).as_bytes());
    }
    main.set_cksum();
    out.push((main, Vec::new()));
    out
}

fn base_header(kind: tar::EntryType, len: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(len);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Put `name` in the ustar name field, or split at a '/' into prefix (155 bytes) and name
/// (100 bytes). `false` if it does not fit.
fn set_ustar_name(h: &mut tar::Header, name: &[u8]) -> bool {
    let ustar = h.as_ustar_mut().expect("a ustar header");
    if name.len() <= ustar.name.len() {
        ustar.name[..name.len()].copy_from_slice(name);
        return true;
    }
    let split = (0..name.len())
        .rev()
        .filter(|&i| name[i] == b'/' && i + 1 < name.len())
        .find(|&i| i <= ustar.prefix.len() && name.len() - i - 1 <= ustar.name.len());
    match split {
        Some(i) => {
            ustar.prefix[..i].copy_from_slice(&name[..i]);
            ustar.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
            true
        }
        None => false,
    }
}

/// The first 100 bytes of an ASCII name (a placeholder for readers without PAX support).
fn truncate_name(name: &str) -> String {
    name.chars().take(100).collect()
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// One pass over the tar headers: regular-file members by normalised name (the last one wins,
/// as when extracting).
fn scan(path: &Path) -> Result<BTreeMap<String, Member>> {
    let what = || archive_what(path);
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                what: what(),
                detail: Some("no such file".into()),
            }
        } else {
            Error::io("opening", path, e)
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("checking", path, e))?;
    if meta.is_dir() {
        return Err(Error::Invalid {
            what: what(),
            reason: "is a directory (for a layout directory use oci:)".into(),
        });
    }
    let mut file = file;
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
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("reading", path, e))?;
    let bad = |e: std::io::Error| Error::Invalid {
        what: what(),
        reason: format!("not a readable tar archive: {e}"),
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut members = BTreeMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            continue;
        }
        let raw = entry.path_bytes();
        let Some(name) = std::str::from_utf8(&raw).ok().and_then(normalize_member) else {
            continue;
        };
        members.insert(
            name,
            Member {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
        );
    }
    Ok(members)
}

/// `./blobs//sha256/x` → `blobs/sha256/x`; `None` for names with `..` or no components.
fn normalize_member(name: &str) -> Option<String> {
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

/// Read a whole (small) member.
fn read_member_sync(path: &Path, m: Member) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    file.seek(SeekFrom::Start(m.offset))
        .map_err(|e| Error::io("seeking in", path, e))?;
    let len = usize::try_from(m.size).map_err(|_| Error::Invalid {
        what: archive_what(path),
        reason: format!(
            "a member of {} bytes is too large to read into memory",
            m.size
        ),
    })?;
    let mut buf = vec![0; len];
    file.read_exact(&mut buf)
        .map_err(|e| Error::io("reading", path, e))?;
    Ok(buf)
}

fn blob_member(digest: &Digest) -> String {
    format!(
        "{BLOBS_DIR}/{}/{}",
        digest.algorithm().as_str(),
        digest.hex()
    )
}

fn archive_what(path: &Path) -> String {
    format!("OCI archive {}", path.display())
}

fn layout_dir_what(dir: &Path) -> String {
    format!("staging directory {}", dir.display())
}

/// Removes a file when dropped, unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::test_image::{collect, image, put};

    fn aref(path: &Path, tag: Option<&str>) -> LayoutRef {
        LayoutRef {
            path: path.to_path_buf(),
            tag: tag.map(str::to_string),
        }
    }

    async fn write_archive(path: &Path, images: &[(&str, &str)]) {
        for (content, tag) in images {
            let sink = ArchiveSink::open(aref(path, Some(tag))).unwrap();
            put(&sink, &image(content), tag).await;
            sink.commit().await.unwrap();
        }
    }

    #[tokio::test]
    async fn archive_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("img.tar");
        let img = image("arch");
        let sink = ArchiveSink::open(aref(&file, Some("v1"))).unwrap();
        put(&sink, &img, "v1").await;
        assert!(!file.exists(), "nothing visible before commit");
        sink.commit().await.unwrap();
        assert!(file.exists());
        assert!(!ArchiveSink::staging_dir(&file).unwrap().exists());
        assert!(!dir.path().join("img.tar.tmp").exists());

        let src = ArchiveSource::open(aref(&file, Some("v1"))).unwrap();
        assert_eq!(src.name(), format!("oci-archive:{}:v1", file.display()));
        let m = src.resolve().await.unwrap();
        assert_eq!(m.bytes, img.manifest.bytes);
        assert_eq!(m.media_type, img.manifest.media_type);
        assert!(src.has_blob(&img.layer.0));
        let layer = collect(src.blob(&img.layer.0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(layer, img.layer.1);
        let config = collect(src.blob(&img.config.0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(config, img.config.1);
        assert_eq!(src.blobs().len(), 3);

        let err = src.find_entry(Some("nope")).unwrap_err().to_string();
        assert!(err.contains("tags: v1"), "{err}");
        let missing = Descriptor::new("", Digest::sha256(b"missing"), 7);
        assert!(matches!(
            src.blob(&missing).await.err().unwrap(),
            Error::NotFound { .. }
        ));

        // The tar is what the packer promises.
        let mut ar = tar::Archive::new(File::open(&file).unwrap());
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            assert_eq!(h.groupname_bytes(), Some(&b""[..]));
            let dir = h.entry_type() == tar::EntryType::Directory;
            assert_eq!(h.mode().unwrap(), if dir { 0o755 } else { 0o644 });
            names.push(String::from_utf8(e.path_bytes().to_vec()).unwrap());
        }
        assert_eq!(&names[..2], &["blobs/", "blobs/sha256/"]);
        assert_eq!(&names[5..], &["index.json", "oci-layout"]);
        let mut sorted = names[2..5].to_vec();
        sorted.sort();
        assert_eq!(sorted, names[2..5]);
    }

    #[tokio::test]
    async fn identical_content_gives_identical_archives() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        write_archive(&a, &[("one", "x"), ("two", "y")]).await;
        write_archive(&b, &[("one", "x"), ("two", "y")]).await;
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(bytes, std::fs::read(&b).unwrap());
        // Re-opening and committing with nothing new reproduces the same bytes.
        let sink = ArchiveSink::open(aref(&a, Some("x"))).unwrap();
        sink.commit().await.unwrap();
        assert_eq!(bytes, std::fs::read(&a).unwrap());
    }

    #[tokio::test]
    async fn adding_to_an_archive_keeps_other_images() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("multi.tar");
        write_archive(&file, &[("one", "x"), ("two", "y")]).await;
        // Retag x to another image: replaced in place; y kept.
        write_archive(&file, &[("three", "x")]).await;
        let src = ArchiveSource::open(aref(&file, None)).unwrap();
        let tags: Vec<_> = src
            .entries()
            .iter()
            .map(|d| {
                (
                    d.annotation(crate::store::layout::REF_NAME)
                        .unwrap()
                        .to_string(),
                    d.digest.clone(),
                )
            })
            .collect();
        assert_eq!(
            tags,
            vec![
                ("x".to_string(), image("three").manifest.digest),
                ("y".to_string(), image("two").manifest.digest)
            ]
        );
        let err = src.find_entry(None).unwrap_err().to_string();
        assert!(err.contains("tags: x, y"), "{err}");
    }

    #[tokio::test]
    async fn staging_is_reused_after_interruption() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resume.tar");
        let img = image("resume");
        {
            let sink = ArchiveSink::open(aref(&file, Some("t"))).unwrap();
            sink.put_blob(
                &img.layer.0,
                crate::store::layout::bytes_stream(img.layer.1.clone()),
            )
            .await
            .unwrap();
            // Dropped without commit: the process "died".
        }
        let staging = ArchiveSink::staging_dir(&file).unwrap();
        assert!(staging.is_dir());
        assert!(!file.exists());
        let staged = Layout::open(&staging)
            .unwrap()
            .blob_path(&img.layer.0.digest);
        let inode = std::fs::metadata(&staged).unwrap().ino();

        let sink = ArchiveSink::open(aref(&file, Some("t"))).unwrap();
        assert!(
            sink.has_blob(&img.layer.0).await.unwrap(),
            "finished blob is reused"
        );
        put(&sink, &img, "t").await; // put_blob of the layer is a no-op
        assert_eq!(
            std::fs::metadata(&staged).unwrap().ino(),
            inode,
            "not rewritten"
        );
        sink.commit().await.unwrap();
        assert!(!staging.exists());
        let m = ArchiveSource::open(aref(&file, Some("t")))
            .unwrap()
            .resolve()
            .await
            .unwrap();
        assert_eq!(m.digest, img.manifest.digest);
    }

    #[tokio::test]
    async fn reads_dot_slash_members_and_detects_corruption() {
        // A tar of a layout written by hand with `./` prefixes, the way `tar -C dir .` does.
        let dir = tempfile::tempdir().unwrap();
        let lay = dir.path().join("lay");
        let img = image("dots");
        let sink = crate::store::layout::LayoutSink::open(aref(&lay, Some("d"))).unwrap();
        put(&sink, &img, "d").await;
        let file = dir.path().join("dots.tar");
        let mut b = tar::Builder::new(File::create(&file).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "./", std::io::empty()).unwrap();
        let mut files = vec![
            (format!("./{OCI_LAYOUT_FILE}"), lay.join(OCI_LAYOUT_FILE)),
            (format!("./{INDEX_FILE}"), lay.join(INDEX_FILE)),
        ];
        for d in [&img.layer.0, &img.config.0] {
            files.push((
                format!("./blobs/sha256/{}", d.digest.hex()),
                sink.layout().blob_path(&d.digest),
            ));
        }
        let md = img.manifest.descriptor();
        files.push((
            format!("./blobs/sha256/{}", md.digest.hex()),
            sink.layout().blob_path(&md.digest),
        ));
        for (name, path) in &files {
            let mut data = std::fs::read(path).unwrap();
            if name.ends_with(img.layer.0.digest.hex()) {
                data[0] ^= 1; // corrupt the layer inside the archive
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.finish().unwrap();
        drop(b);

        let src = ArchiveSource::open(aref(&file, None)).unwrap();
        let m = src.resolve().await.unwrap();
        assert_eq!(m.bytes, img.manifest.bytes);
        let config = collect(src.blob(&img.config.0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(config, img.config.1);
        let err = collect(src.blob(&img.layer.0).await.unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn open_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.tar");
        let err = ArchiveSource::open(aref(&missing, None)).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }));
        assert!(err.to_string().contains("missing.tar"), "{err}");
        let junk = dir.path().join("junk.tar");
        std::fs::write(&junk, vec![7u8; 1024]).unwrap();
        let err = ArchiveSource::open(aref(&junk, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("junk.tar"), "{err}");
        let gz = dir.path().join("img.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
        let err = ArchiveSource::open(aref(&gz, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gzip-compressed"), "{err}");
        // An existing file that is not an OCI archive is not overwritten by a sink.
        let sink = ArchiveSink::open(aref(&junk, None)).unwrap();
        let err = sink.has_blob(&image("j").layer.0).await.unwrap_err();
        assert!(err.to_string().contains("junk.tar"), "{err}");
        assert!(sink.commit().await.is_err());
        assert_eq!(std::fs::read(&junk).unwrap(), vec![7u8; 1024]);
    }

    #[test]
    fn long_member_names() {
        let read_back = |name: &str| {
            let mut b = tar::Builder::new(Vec::new());
            let mut headers = member_headers(name, 1);
            let (main, _) = headers.pop().unwrap();
            for (h, data) in headers {
                b.append(&h, &data[..]).unwrap();
            }
            b.append(&main, &b"x"[..]).unwrap();
            let bytes = b.into_inner().unwrap();
            let mut ar = tar::Archive::new(&bytes[..]);
            let mut entries = ar.entries().unwrap();
            let e = entries.next().unwrap().unwrap();
            assert!(entries.next().is_none());
            String::from_utf8(e.path_bytes().to_vec()).unwrap()
        };
        let sha512 = format!("blobs/sha512/{}", "a".repeat(128));
        assert_eq!(read_back(&sha512), sha512);
        let deep = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert_eq!(read_back(&deep), deep);
        assert_eq!(read_back("blobs/sha256/"), "blobs/sha256/");
        assert_eq!(pax_record("path", "abc"), b"12 path=abc\n");
        for n in [85, 90, 91, 92, 1000] {
            let r = pax_record("path", &"x".repeat(n));
            let stated: usize = std::str::from_utf8(&r)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(stated, r.len(), "value of {n} bytes");
        }
        assert_eq!(normalize_member("./a//b/"), Some("a/b".into()));
        assert_eq!(normalize_member("./"), None);
        assert_eq!(normalize_member("../x"), None);
    }
}
