//! OCI layout archives (`oci-archive:FILE[:tag]`): a tar whose root is an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as skopeo writes it.
//!
//! **Reading** never extracts: [`ArchiveSource`] makes one pass over the tar headers, recording
//! where each member's bytes start and how long they are, then serves `index.json`, manifests
//! and blobs by seeking into the file (streamed in 256 KiB reads, verified).
//!
//! **Writing** streams every blob once, straight into a growing tar next to the target,
//! `FILE.graft-partial` (the slot mechanics are in `partial.rs`): each blob's member is
//! reserved at the tail when its transfer starts (its size comes from the descriptor), and
//! its bytes are written into it as they arrive (size checked; the digest is checked by the
//! verified source stream, not hashed a second time); concurrent transfers write their own
//! slots side by side. A failed transfer leaves no member behind (the tail is cut back, or the
//! slot is reused by the retry, or covered by filler headers every reader skips). `index.json`
//! is kept in memory; [`Sink::commit`] appends it, `oci-layout` and the end-of-archive blocks,
//! fsyncs and renames the file to `FILE`, so `FILE` is never half-written.
//!
//! - **Resume**: a partial file left by an interrupted run is taken over by the next one;
//!   members that hash to their names are kept (not fetched again), a torn tail is cut off.
//! - **Adding to an archive**: if `FILE` exists, its blobs are copied into the new partial
//!   file first (a kernel-side copy of its leading run of blobs) and its `index.json` is the
//!   starting point, so the images already in it are kept; a commit that adds nothing leaves
//!   `FILE` untouched.
//! - **Members**: `blobs/`, `blobs/sha256/`, the blobs in the order their transfers started,
//!   `index.json`, `oci-layout`; ustar headers with mtime 0, uid/gid 0, no user or group names,
//!   modes 0644/0755. Member order depends on the order of arrival (docs/decisions.md §12).
//! - **One writer per file and operation**: every [`ArchiveSink`] an operation opens on the same
//!   file shares one state (held by its [`LocalStores`]), and an [`ArchiveSource`] opened with
//!   those stores on a file being written reads the
//!   uncommitted state (as a layout directory shows its own writes), which is how signatures
//!   are merged into an archive being written.

mod header;
mod partial;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::error::{Error, Result, ResultExt};
use crate::fsutil::{open_regular, too_large_reason};
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::reference::LayoutRef;
use crate::store::index_json::{
    index_doc_bytes, index_entry, lists_digest, manifests_mut, parse_index, resolve_in,
    set_index_entry, tag_digest, with_index_header, INDEX_FILE,
};
use crate::store::layout::{
    bytes_stream, check_layout_marker, check_manifest_size, display_ref, manifest_from_bytes,
    OCI_LAYOUT_FILE,
};
use crate::store::local::LocalStores;
use crate::store::{
    verify_stream, BlobStream, Sink, Source, INDEX_JSON_LIMIT, LAYOUT_MARKER_LIMIT, MANIFEST_LIMIT,
};

use partial::Partial;
use scan::{blob_member, member_digest, scan_archive, Kind, Scanned};

/// Suffix of the growing tar next to an archive being written.
pub const PARTIAL_SUFFIX: &str = ".graft-partial";

/// The member name of the layout's index.
const INDEX_MEMBER: &str = INDEX_FILE;

/// Read size when streaming members out of an archive (as fast as 1 MiB reads when uploading
/// to a registry, with less memory per transfer).
const ARCHIVE_READ_CHUNK: usize = 256 << 10;

/// Where one member's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    offset: u64,
    size: u64,
    /// In the partial file of a writer of this operation, not in the archive itself.
    in_partial: bool,
}

/// Reads images from a tar of an OCI layout without extracting it.
///
/// Opened on a file that an [`ArchiveSink`] of the same operation is writing, it reads what that
/// sink has written so far (its blobs and its `index.json`, committed or not).
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    path: PathBuf,
    /// The partial file members marked `in_partial` live in.
    partial: Option<PathBuf>,
    tag: Option<String>,
    /// Regular-file members by normalised path (no `./`, no leading `/`).
    members: BTreeMap<String, Member>,
    /// Every member of the archive file, in order.
    scanned: Arc<Vec<Scanned>>,
    /// The parsed `index.json` entries.
    entries: Vec<Descriptor>,
    /// `index.json` as a JSON document.
    index: Value,
}

impl ArchiveSource {
    /// Open the archive at `r.path`: scan its headers once and read its `oci-layout` and
    /// `index.json`. [`Source::resolve`] picks the entry tagged `r.tag`, or the only entry.
    pub fn open(r: LayoutRef, local: &LocalStores) -> Result<ArchiveSource> {
        match local.archive(&r.path) {
            Some(shared) => shared.view(r.tag),
            None => ArchiveSource::open_file(r.path, r.tag),
        }
    }

    /// Open the archive file itself (never a writer's state).
    fn open_file(path: PathBuf, tag: Option<String>) -> Result<ArchiveSource> {
        let scanned = scan_archive(&path)?;
        let mut members = BTreeMap::new();
        for m in &scanned {
            if let (Kind::File, Some(name)) = (m.kind, &m.name) {
                // The last one wins, as when extracting.
                members.insert(
                    name.clone(),
                    Member {
                        offset: m.data,
                        size: m.size,
                        in_partial: false,
                    },
                );
            }
        }
        let what = archive_what(&path);
        let member = |name: &str| {
            members.get(name).copied().ok_or_else(|| Error::Invalid {
                what: what.clone(),
                reason: format!(
                    "no {name} at the archive root: this is not a tar of an OCI image layout"
                ),
            })
        };
        let marker_what = format!("{OCI_LAYOUT_FILE} in {what}");
        let marker = read_member_sync(
            &path,
            member(OCI_LAYOUT_FILE)?,
            LAYOUT_MARKER_LIMIT,
            &marker_what,
        )?;
        check_layout_marker(&marker, &path.join(OCI_LAYOUT_FILE))?;
        let index_what = format!("{INDEX_FILE} in {what}");
        let index_bytes =
            read_member_sync(&path, member(INDEX_FILE)?, INDEX_JSON_LIMIT, &index_what)?;
        let entries = parse_index(&index_bytes, &index_what)?;
        let index = serde_json::from_slice(&index_bytes).map_err(|e| Error::Json {
            what: index_what,
            source: e,
        })?;
        Ok(ArchiveSource {
            path,
            partial: None,
            tag,
            members,
            scanned: Arc::new(scanned),
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
            .filter_map(|(name, m)| Some(Descriptor::new("", member_digest(name)?, m.size)))
            .collect()
    }

    /// Every member of the archive file in order (empty for a writer's state).
    fn scanned(&self) -> &[Scanned] {
        &self.scanned
    }

    /// The file a member's bytes are in.
    fn file_of(&self, m: &Member) -> &Path {
        match (&self.partial, m.in_partial) {
            (Some(p), true) => p,
            _ => &self.path,
        }
    }

    /// Stream a blob out of the archive, verified against `desc`.
    pub async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        let member = self.member_of(&desc.digest)?;
        let path = self.file_of(&member).to_path_buf();
        let file = open_regular(&path, None).map_err(|e| e.into_error(&path))?;
        let mut file = tokio::fs::File::from_std(file);
        file.seek(SeekFrom::Start(member.offset))
            .await
            .map_err(|e| Error::io("seeking in", &path, e))?;
        let stream = ReaderStream::with_capacity(file.take(member.size), ARCHIVE_READ_CHUNK)
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
        check_manifest_size(desc, &what)?;
        if member.size != desc.size {
            return Err(Error::SizeMismatch {
                what,
                expected: desc.size,
                found: member.size,
            });
        }
        let path = self.file_of(&member).to_path_buf();
        let member_what = what.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            read_member_sync(&path, member, MANIFEST_LIMIT, &member_what)
        })
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

/// Writes images into a tar of an OCI layout, streaming each blob once into
/// `FILE.graft-partial`; nothing reaches `FILE` before [`Sink::commit`], which renames the
/// finished tar into place.
///
/// If `FILE` exists, the images in it are kept (its `index.json` is the starting point: a tag
/// written again is replaced in place). Tags follow [`crate::store::layout::LayoutSink`]:
/// `put_tag` names the entry, `put_root` (an `oci-archive:FILE` destination without a tag)
/// lists it untagged. All sinks opened on one file with one [`LocalStores`] share one state;
/// commit once,
/// after the last write.
#[derive(Clone)]
pub struct ArchiveSink {
    shared: Arc<ArchiveState>,
    tag: Option<String>,
}

impl std::fmt::Debug for ArchiveSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveSink({})", self.shared.path.display())
    }
}

impl ArchiveSink {
    /// Prepare to write the archive `r.path`. Cheap: the existing archive and a partial file
    /// left by an interrupted run are read on first use (errors then name the file).
    pub fn open(r: LayoutRef, local: &LocalStores) -> Result<ArchiveSink> {
        if r.path.is_dir() {
            return Err(Error::Invalid {
                what: archive_what(&r.path),
                reason: "is a directory (for a layout directory use oci:)".into(),
            });
        }
        Ok(ArchiveSink {
            shared: local.archive_or_insert(&r.path, || ArchiveState::new(&r.path))?,
            tag: r.tag,
        })
    }

    /// The partial file used while writing the archive `file`: `FILE.graft-partial` next to it.
    pub fn partial_path(file: &Path) -> Result<PathBuf> {
        let name = file.file_name().ok_or_else(|| Error::Invalid {
            what: archive_what(file),
            reason: "the path has no file name".into(),
        })?;
        let mut partial = name.to_os_string();
        partial.push(PARTIAL_SUFFIX);
        Ok(file.with_file_name(partial))
    }

    async fn session(&self) -> Result<Arc<Session>> {
        if let Some(s) = self.shared.current() {
            return Ok(s);
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.session_blocking())
            .await
            .map_err(|e| Error::io("reading", &self.shared.path, std::io::Error::other(e)))?
    }

    /// Store a blob unless it is there; same-digest writers take turns.
    async fn write_blob(&self, s: &Session, desc: &Descriptor, data: BlobStream) -> Result<()> {
        if s.has_blob(desc) {
            return Ok(());
        }
        let lock = s.lock_for(&desc.digest);
        let _turn = lock.lock().await;
        if s.has_blob(desc) {
            return Ok(());
        }
        let partial = s.partial(&self.shared).await?;
        let what = format!(
            "blob {} written to {}",
            desc.digest,
            archive_what(&self.shared.path)
        );
        // In a task of its own, so that the stream's own work (hashing, for a verified source
        // stream) runs beside the other transfers; aborted if this future is dropped.
        let task = AbortOnDrop(tokio::spawn(partial.write(desc.clone(), data, what)));
        let wrote = task.await.map_err(|e| {
            Error::io(
                "writing",
                &self.shared.partial_path,
                std::io::Error::other(e),
            )
        })??;
        if wrote {
            s.wrote.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for ArchiveSink {
    fn name(&self) -> String {
        display_ref("oci-archive", &self.shared.path, self.tag.as_deref())
    }

    fn scope(&self) -> String {
        display_ref("oci-archive", &self.shared.path, None)
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        Ok(self.session().await?.has_blob(desc))
    }

    async fn put_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<()> {
        let s = self.session().await?;
        self.write_blob(&s, desc, data).await
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool> {
        self.has_blob(desc).await
    }

    async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>> {
        if tag.is_empty() {
            return Ok(None);
        }
        Ok(self.session().await?.tag_digest(tag))
    }

    async fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        let s = self.session().await?;
        self.write_blob(
            &s,
            &manifest.descriptor(),
            bytes_stream(manifest.bytes().clone()),
        )
        .await
    }

    /// Writes the manifest and lists it untagged in `index.json` unless its digest is listed
    /// already; `Ok(false)` when both were already there.
    async fn put_root(&self, manifest: &RawManifest) -> Result<bool> {
        let s = self.session().await?;
        let desc = manifest.descriptor();
        if s.has_blob(&desc) && s.listed(&desc.digest) {
            return Ok(false);
        }
        self.write_blob(&s, &desc, bytes_stream(manifest.bytes().clone()))
            .await?;
        s.set_tag(&desc, None, &self.shared.path)?;
        Ok(true)
    }

    async fn put_tag(&self, manifest: &RawManifest, tag: &str) -> Result<()> {
        let s = self.session().await?;
        let desc = manifest.descriptor();
        self.write_blob(&s, &desc, bytes_stream(manifest.bytes().clone()))
            .await?;
        s.set_tag(&desc, (!tag.is_empty()).then_some(tag), &self.shared.path)
    }

    /// Finish the archive: blobs of the existing archive not yet in the partial file are
    /// copied in, then `index.json`, `oci-layout` and the end-of-archive blocks are appended,
    /// the file is fsynced and renamed to `FILE`. With nothing new, `FILE` is left as it is.
    async fn commit(&self) -> Result<()> {
        let _one = self.shared.committing.lock().await;
        let s = self.session().await?;
        let path = self.shared.path.clone();
        // A new archive listing no image is not made: every copy into it failed (its blobs
        // stay in the partial file, to be resumed, as after a failed copy that never commits).
        let no_image = s.base.is_none() && s.lists_nothing();
        if !s.dirty() || no_image {
            if let (Some(p), false, false) = (s.partial.get(), s.resumed, s.wrote()) {
                // Created by this run for a write that failed: only a copy of FILE's blobs.
                p.wait_idle().await;
                match std::fs::remove_file(p.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io("removing", p.path(), e))
                    }
                    _ => {}
                }
            }
            self.shared.end(&s);
            return Ok(());
        }
        let partial = s.partial(&self.shared).await?;
        if let Some(base) = &s.base {
            for desc in base.blobs() {
                if partial.has(&desc) {
                    continue;
                }
                let what = format!("blob {} copied from {}", desc.digest, archive_what(&path));
                let data = base.read_blob(&desc).await?;
                partial.clone().write(desc, data, what).await?;
            }
        }
        partial.wait_idle().await;
        let index = s.index_bytes(&path)?;
        let p = partial.clone();
        let out = path.clone();
        tokio::task::spawn_blocking(move || p.seal(&index, &out))
            .await
            .map_err(|e| Error::io("writing", &path, std::io::Error::other(e)))?
            .context(|| format!("finishing {}", archive_what(&path)))?;
        self.shared.end(&s);
        Ok(())
    }
}

/// The state every sink one operation opens on an archive file shares (one per file, held by
/// [`LocalStores`]).
pub struct ArchiveState {
    /// The archive, as first given.
    path: PathBuf,
    partial_path: PathBuf,
    /// From first use to commit.
    session: Mutex<Option<Arc<Session>>>,
    committing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ArchiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveState({})", self.path.display())
    }
}

impl ArchiveState {
    /// A new writer state for `path` (nothing is read until first use).
    fn new(path: &Path) -> Result<Arc<ArchiveState>> {
        Ok(Arc::new(ArchiveState {
            path: path.to_path_buf(),
            partial_path: ArchiveSink::partial_path(path)?,
            session: Mutex::new(None),
            committing: tokio::sync::Mutex::new(()),
        }))
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<Session>>> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.slot().clone()
    }

    /// The current session, started (the archive and a leftover partial file read) if needed.
    fn session_blocking(&self) -> Result<Arc<Session>> {
        let mut slot = self.slot();
        if let Some(s) = &*slot {
            return Ok(s.clone());
        }
        let s = Arc::new(Session::start(self)?);
        *slot = Some(s.clone());
        Ok(s)
    }

    /// End `s` (after a commit): the next use starts over from the archive file.
    fn end(&self, s: &Arc<Session>) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, s)) {
            *slot = None;
        }
    }

    /// A source reading this writer's state (the session is started if need be).
    fn view(&self, tag: Option<String>) -> Result<ArchiveSource> {
        self.session_blocking()?.view(&self.path, tag)
    }
}

/// One run of writes into an archive: from first use to commit.
struct Session {
    /// The archive as it was when the session started.
    base: Option<Arc<ArchiveSource>>,
    /// Its `index.json`.
    base_index: Map<String, Value>,
    /// `index.json` as it will be written.
    index: Mutex<Map<String, Value>>,
    partial: tokio::sync::OnceCell<Arc<Partial>>,
    /// The partial file was left by an earlier run.
    resumed: bool,
    /// A blob was written in this session.
    wrote: AtomicBool,
    /// One writer per digest at a time.
    locks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

impl Session {
    fn start(shared: &ArchiveState) -> Result<Session> {
        let what = || archive_what(&shared.path);
        let base = if exists(&shared.path)? {
            Some(Arc::new(
                ArchiveSource::open_file(shared.path.clone(), None)
                    .context(|| format!("reading the existing {}", what()))?,
            ))
        } else {
            None
        };
        let partial = if exists(&shared.partial_path)? {
            Some(Arc::new(Partial::resume(&shared.partial_path).context(
                || format!("resuming the interrupted write of {}", what()),
            )?))
        } else {
            None
        };
        let base_index = match &base {
            Some(b) => match &b.index {
                Value::Object(m) => with_index_header(m.clone()),
                _ => {
                    return Err(Error::Invalid {
                        what: format!("{INDEX_FILE} in {}", what()),
                        reason: "not a JSON object".into(),
                    })
                }
            },
            None => with_index_header(Map::new()),
        };
        Ok(Session {
            base,
            index: Mutex::new(base_index.clone()),
            base_index,
            resumed: partial.is_some(),
            partial: tokio::sync::OnceCell::new_with(partial),
            wrote: AtomicBool::new(false),
            locks: Mutex::default(),
        })
    }

    fn index(&self) -> MutexGuard<'_, Map<String, Value>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_blob(&self, desc: &Descriptor) -> bool {
        self.partial.get().is_some_and(|p| p.has(desc))
            || self.base.as_ref().is_some_and(|b| b.has_blob(desc))
    }

    fn lock_for(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(digest.clone()).or_default().clone()
    }

    /// The partial file, created on first need.
    async fn partial(&self, shared: &ArchiveState) -> Result<Arc<Partial>> {
        self.partial
            .get_or_try_init(|| async {
                let path = shared.partial_path.clone();
                let base = self.base.clone();
                let p = tokio::task::spawn_blocking(move || {
                    Partial::create(&path, base.as_deref()).map(Arc::new)
                })
                .await
                .map_err(|e| {
                    Error::io("creating", &shared.partial_path, std::io::Error::other(e))
                })?;
                p
            })
            .await
            .cloned()
    }

    fn dirty(&self) -> bool {
        self.wrote() || *self.index() != self.base_index
    }

    /// Whether a blob was written in this session.
    fn wrote(&self) -> bool {
        self.wrote.load(Ordering::SeqCst)
    }

    /// Whether `index.json` as it will be written lists no image.
    fn lists_nothing(&self) -> bool {
        self.index()
            .get("manifests")
            .and_then(Value::as_array)
            .map_or(true, Vec::is_empty)
    }

    fn tag_digest(&self, tag: &str) -> Option<Digest> {
        tag_digest(&self.index(), tag)
    }

    fn listed(&self, digest: &Digest) -> bool {
        lists_digest(&self.index(), digest)
    }

    fn set_tag(&self, desc: &Descriptor, tag: Option<&str>, path: &Path) -> Result<()> {
        let entry = index_entry(desc, tag)?;
        let mut index = self.index();
        let what = PathBuf::from(format!("{INDEX_FILE} of {}", archive_what(path)));
        set_index_entry(manifests_mut(&mut index, &what)?, entry, &desc.digest, tag);
        Ok(())
    }

    fn index_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let what = format!("{INDEX_FILE} of {}", archive_what(path));
        index_doc_bytes(self.index().clone(), &what)
    }

    /// A source over what this session has: the archive's blobs, the partial file's, and the
    /// index as it stands.
    fn view(&self, path: &Path, tag: Option<String>) -> Result<ArchiveSource> {
        let mut members = self
            .base
            .as_ref()
            .map(|b| b.members.clone())
            .unwrap_or_default();
        let partial = self.partial.get();
        if let Some(p) = partial {
            for d in p.done() {
                members.insert(
                    d.name,
                    Member {
                        offset: d.data,
                        size: d.size,
                        in_partial: true,
                    },
                );
            }
        }
        let index = Value::Object(self.index().clone());
        let what = format!("{INDEX_FILE} of {}", archive_what(path));
        let bytes = serde_json::to_vec(&index).map_err(|e| Error::Json {
            what: what.clone(),
            source: e,
        })?;
        Ok(ArchiveSource {
            path: path.to_path_buf(),
            partial: partial.map(|p| p.path().to_path_buf()),
            tag,
            members,
            scanned: Arc::default(),
            entries: parse_index(&bytes, &what)?,
            index,
        })
    }
}

/// A spawned task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("checking", path, e)),
    }
}

/// Read a whole (small) member of the file at `path`, refusing one of more than `limit`
/// bytes before allocating anything (its size comes from its tar header, which a hostile
/// archive sets at will); `what` names the member.
fn read_member_sync(path: &Path, m: Member, limit: u64, what: &str) -> Result<Vec<u8>> {
    if m.size > limit {
        return Err(Error::Invalid {
            what: what.to_string(),
            reason: too_large_reason(m.size, limit),
        });
    }
    let mut file: File = open_regular(path, None).map_err(|e| e.into_error(path))?;
    file.seek(SeekFrom::Start(m.offset))
        .map_err(|e| Error::io("seeking in", path, e))?;
    // Within the limit, so the size fits in memory.
    let mut buf = vec![0; m.size as usize];
    file.read_exact(&mut buf)
        .map_err(|e| Error::io("reading", path, e))?;
    Ok(buf)
}

fn archive_what(path: &Path) -> String {
    format!("OCI archive {}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index_json::REF_NAME;
    use crate::store::layout::test_image::{collect, image, put, TestImage};

    fn aref(path: &Path, tag: Option<&str>) -> LayoutRef {
        LayoutRef {
            path: path.to_path_buf(),
            tag: tag.map(str::to_string),
        }
    }

    async fn write_archive(path: &Path, images: &[(&str, &str)]) {
        let local = LocalStores::default();
        for (content, tag) in images {
            let sink = ArchiveSink::open(aref(path, Some(tag)), &local).unwrap();
            put(&sink, &image(content), tag).await;
            sink.commit().await.unwrap();
        }
    }

    /// Member names and data, in archive order, as the `tar` crate reads them.
    fn members(file: &Path) -> Vec<(String, Vec<u8>)> {
        let mut ar = tar::Archive::new(File::open(file).unwrap());
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.header().entry_type() == tar::EntryType::XGlobalHeader {
                continue;
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((String::from_utf8(e.path_bytes().to_vec()).unwrap(), data));
        }
        out
    }

    fn blob_name(d: &Descriptor) -> String {
        format!("blobs/sha256/{}", d.digest.hex())
    }

    /// A stream of `bytes` in `n` pieces, yielding to the scheduler between them.
    fn slow_stream(bytes: Bytes, n: usize) -> BlobStream {
        let step = bytes.len().div_ceil(n).max(1);
        let pieces: Vec<Bytes> = (0..bytes.len())
            .step_by(step)
            .map(|i| bytes.slice(i..(i + step).min(bytes.len())))
            .collect();
        Box::pin(futures::stream::iter(pieces).then(|p| async move {
            tokio::task::yield_now().await;
            Ok(p)
        }))
    }

    /// A blob of `n` bytes that is not all one value.
    fn blob(seed: u8, n: usize) -> (Descriptor, Bytes) {
        let bytes: Bytes = (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        (
            Descriptor::new(
                crate::oci::media_types::OCI_LAYER_TAR,
                Digest::sha256(&bytes),
                n as u64,
            ),
            bytes,
        )
    }

    async fn tag_image(sink: &ArchiveSink, img: &TestImage, tag: &str) {
        sink.put_tag(&img.manifest, tag).await.unwrap();
    }

    #[tokio::test]
    async fn archive_round_trip() {
        let local = LocalStores::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("img.tar");
        let img = image("arch");
        let sink = ArchiveSink::open(aref(&file, Some("v1")), &local).unwrap();
        put(&sink, &img, "v1").await;
        assert!(!file.exists(), "nothing visible before commit");
        let partial = ArchiveSink::partial_path(&file).unwrap();
        assert!(partial.exists());
        sink.commit().await.unwrap();
        assert!(file.exists());
        assert!(!partial.exists());

        let src = ArchiveSource::open(aref(&file, Some("v1")), &local).unwrap();
        assert_eq!(src.name(), format!("oci-archive:{}:v1", file.display()));
        let m = src.resolve().await.unwrap();
        assert_eq!(m.bytes(), img.manifest.bytes());
        assert_eq!(m.media_type(), img.manifest.media_type());
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

        // The tar is what the writer promises: directories, the blobs in the order they were
        // written, index.json and oci-layout; deterministic headers; end-of-archive blocks.
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
        let md = img.manifest.descriptor();
        assert_eq!(
            names,
            vec![
                "blobs/".to_string(),
                "blobs/sha256/".to_string(),
                blob_name(&img.layer.0),
                blob_name(&img.config.0),
                blob_name(&md),
                "index.json".to_string(),
                "oci-layout".to_string(),
            ]
        );
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        assert!(bytes[bytes.len() - 1024..].iter().all(|&b| b == 0));
        let index: Value = serde_json::from_slice(&members(&file)[5].1).unwrap();
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "v1");
    }

    #[tokio::test]
    async fn identical_content_gives_identical_archives() {
        let local = LocalStores::default();
        // Writes in the same order (one transfer at a time, as `--jobs 1` does) give the same
        // bytes.
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        write_archive(&a, &[("one", "x"), ("two", "y")]).await;
        write_archive(&b, &[("one", "x"), ("two", "y")]).await;
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(bytes, std::fs::read(&b).unwrap());
        // Re-opening and committing with nothing new leaves the file as it is.
        let sink = ArchiveSink::open(aref(&a, Some("x")), &local).unwrap();
        put(&sink, &image("one"), "x").await;
        sink.commit().await.unwrap();
        assert_eq!(bytes, std::fs::read(&a).unwrap());
        assert!(!ArchiveSink::partial_path(&a).unwrap().exists());
    }

    #[tokio::test]
    async fn concurrent_writes_give_the_same_members_in_arrival_order() {
        let local = LocalStores::default();
        // Concurrent transfers write side by side; the member order follows arrival, the
        // members and index.json do not depend on it.
        let dir = tempfile::tempdir().unwrap();
        let blobs: Vec<(Descriptor, Bytes)> = (0..6)
            .map(|i| blob(i, 300_000 + 777 * i as usize))
            .collect();
        let mut outputs = Vec::new();
        for (name, order) in [
            ("fwd.tar", [0, 1, 2, 3, 4, 5]),
            ("rev.tar", [5, 4, 3, 2, 1, 0]),
        ] {
            let file = dir.path().join(name);
            let sink = ArchiveSink::open(aref(&file, None), &local).unwrap();
            // The image first (the partial file exists then): the six transfers below start,
            // and take their slots, in the order they are listed.
            let img = image("concurrent");
            put(&sink, &img, "t").await;
            futures::future::join_all(order.iter().enumerate().map(|(i, &b)| {
                let (d, bytes) = blobs[b].clone();
                let sink = &sink;
                async move {
                    sink.put_blob(&d, slow_stream(bytes, 3 + i)).await.unwrap();
                }
            }))
            .await;
            sink.commit().await.unwrap();
            let mut m = members(&file);
            let order: Vec<String> = m.iter().map(|(n, _)| n.clone()).collect();
            m.sort();
            outputs.push((order, m));
        }
        let blob_order = |o: &[String]| -> Vec<String> {
            o.iter()
                .filter(|n| blobs.iter().any(|(d, _)| **n == blob_name(d)))
                .cloned()
                .collect()
        };
        let fwd = blob_order(&outputs[0].0);
        let mut rev = blob_order(&outputs[1].0);
        rev.reverse();
        assert_eq!(fwd, rev, "members in the order the transfers started");
        assert_eq!(outputs[0].1, outputs[1].1, "same members, same bytes");
        for (d, bytes) in &blobs {
            let found = outputs[0]
                .1
                .iter()
                .find(|(n, _)| *n == blob_name(d))
                .unwrap();
            assert_eq!(&found.1[..], &bytes[..]);
        }
    }

    #[tokio::test]
    async fn adding_to_an_archive_keeps_other_images() {
        let local = LocalStores::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("multi.tar");
        write_archive(&file, &[("one", "x"), ("two", "y")]).await;
        // Retag x to another image: replaced in place; y kept.
        write_archive(&file, &[("three", "x")]).await;
        let src = ArchiveSource::open(aref(&file, None), &local).unwrap();
        let tags: Vec<_> = src
            .entries()
            .iter()
            .map(|d| {
                (
                    d.annotation(REF_NAME).unwrap().to_string(),
                    d.digest.clone(),
                )
            })
            .collect();
        assert_eq!(
            tags,
            vec![
                ("x".to_string(), image("three").manifest.digest().clone()),
                ("y".to_string(), image("two").manifest.digest().clone())
            ]
        );
        let err = src.find_entry(None).unwrap_err().to_string();
        assert!(err.contains("tags: x, y"), "{err}");
        // Every blob of every image is there once (the old ones copied, the new ones added).
        let names: Vec<String> = members(&file).into_iter().map(|(n, _)| n).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for c in ["one", "two", "three"] {
            let img = image(c);
            for d in [&img.layer.0, &img.config.0, &img.manifest.descriptor()] {
                assert!(src.has_blob(d), "{c}");
                collect(src.blob(d).await.unwrap()).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn partial_file_is_resumed_after_interruption() {
        let local = LocalStores::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resume.tar");
        let partial = ArchiveSink::partial_path(&file).unwrap();
        let img = image("resume");
        let (big, big_bytes) = blob(7, 100_000);
        {
            let sink = ArchiveSink::open(aref(&file, Some("t")), &local).unwrap();
            sink.put_blob(&img.layer.0, bytes_stream(img.layer.1.clone()))
                .await
                .unwrap();
            sink.put_blob(&big, bytes_stream(big_bytes.clone()))
                .await
                .unwrap();
            sink.put_blob(&img.config.0, bytes_stream(img.config.1.clone()))
                .await
                .unwrap();
            // Dropped without commit: the process "died".
        }
        assert!(partial.exists());
        assert!(!file.exists());
        // ... in the middle of a third blob: a header and half its bytes.
        let (torn, torn_bytes) = blob(9, 50_000);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&partial)
            .unwrap();
        std::io::Write::write_all(
            &mut f,
            &header::member_header_bytes(&blob_name(&torn), 50_000),
        )
        .unwrap();
        std::io::Write::write_all(&mut f, &torn_bytes[..25_000]).unwrap();
        drop(f);
        // ... and a byte of the second blob went bad on disk.
        let len_before = std::fs::metadata(&partial).unwrap().len();
        let bytes = std::fs::read(&partial).unwrap();
        let at = bytes
            .windows(big_bytes.len())
            .position(|w| w == &big_bytes[..])
            .unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&partial)
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[big_bytes[10] ^ 1], (at + 10) as u64)
            .unwrap();
        drop(f);

        let sink = ArchiveSink::open(aref(&file, Some("t")), &local).unwrap();
        // The finished blobs are kept and not read again; the damaged and the torn ones are not.
        assert!(sink.has_blob(&img.layer.0).await.unwrap());
        assert!(sink.has_blob(&img.config.0).await.unwrap());
        assert!(!sink.has_blob(&big).await.unwrap());
        assert!(!sink.has_blob(&torn).await.unwrap());
        assert!(
            std::fs::metadata(&partial).unwrap().len() < len_before,
            "torn tail cut off"
        );
        let unread: BlobStream = Box::pin(futures::stream::iter(vec![Err(Error::Unsupported(
            "must not be read".into(),
        ))]));
        sink.put_blob(&img.layer.0, unread).await.unwrap();
        // The damaged blob (in the middle) is written again into its own slot, in place.
        let len = std::fs::metadata(&partial).unwrap().len();
        sink.put_blob(&big, bytes_stream(big_bytes.clone()))
            .await
            .unwrap();
        assert_eq!(std::fs::metadata(&partial).unwrap().len(), len);
        sink.put_blob(&torn, bytes_stream(torn_bytes.clone()))
            .await
            .unwrap();
        put(&sink, &img, "t").await;
        sink.commit().await.unwrap();
        assert!(!partial.exists());
        let src = ArchiveSource::open(aref(&file, Some("t")), &local).unwrap();
        assert_eq!(src.resolve().await.unwrap().digest(), img.manifest.digest());
        for (d, b) in [(&big, &big_bytes), (&torn, &torn_bytes)] {
            assert_eq!(
                &collect(src.blob(d).await.unwrap()).await.unwrap()[..],
                &b[..]
            );
        }
        let names: Vec<String> = members(&file).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 2 + 5 + 2, "{names:?}");
    }

    #[tokio::test]
    async fn failed_transfers_leave_no_member() {
        let local = LocalStores::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fail.tar");
        let partial = ArchiveSink::partial_path(&file).unwrap();
        let sink = ArchiveSink::open(aref(&file, Some("t")), &local).unwrap();
        let img = image("fail");
        let (a, a_bytes) = blob(1, 40_000);
        let (b, b_bytes) = blob(2, 40_000);
        // The last slot fails: the file is cut back.
        sink.put_blob(&a, bytes_stream(a_bytes.clone()))
            .await
            .unwrap();
        let len = std::fs::metadata(&partial).unwrap().len();
        // A corrupt blob, as a source hands it out (verified while streaming).
        let mut wrong = b_bytes.to_vec();
        wrong[5] ^= 1;
        let corrupt = verify_stream(
            slow_stream(Bytes::from(wrong), 4),
            &b,
            format!("blob {} in fail.tar's source", b.digest),
        );
        let err = sink.put_blob(&b, corrupt).await.unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains("fail.tar"), "{err}");
        assert_eq!(std::fs::metadata(&partial).unwrap().len(), len);
        let err = sink
            .put_blob(&b, bytes_stream(b_bytes.slice(..100)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::SizeMismatch { found: 100, .. }),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&partial).unwrap().len(), len);

        // A slot in the middle fails while a later one completes: the retry reuses it.
        let (c, c_bytes) = blob(3, 40_000);
        let failing: BlobStream = Box::pin(
            futures::stream::iter(vec![
                Ok(b_bytes.slice(..1000)),
                Err(Error::Unsupported("connection dropped".into())),
            ])
            .then(|x| async move {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                x
            }),
        );
        let (rb, rc) = tokio::join!(
            sink.put_blob(&b, failing),
            sink.put_blob(&c, slow_stream(c_bytes.clone(), 1))
        );
        assert!(rb.is_err());
        rc.unwrap();
        let grown = std::fs::metadata(&partial).unwrap().len();
        sink.put_blob(&b, bytes_stream(b_bytes.clone()))
            .await
            .unwrap();
        assert_eq!(
            std::fs::metadata(&partial).unwrap().len(),
            grown,
            "slot reused"
        );

        // Another one fails in the middle and is never retried: filled at commit.
        let (d, d_bytes) = blob(4, 70_000);
        let (e, e_bytes) = blob(5, 10_000);
        let failing: BlobStream = Box::pin(
            futures::stream::iter(vec![
                Ok(d_bytes.slice(..1000)),
                Err(Error::Unsupported("gone".into())),
            ])
            .then(|x| async move {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                x
            }),
        );
        let (rd, re) = tokio::join!(
            sink.put_blob(&d, failing),
            sink.put_blob(&e, slow_stream(e_bytes.clone(), 1))
        );
        assert!(rd.is_err());
        re.unwrap();
        put(&sink, &img, "t").await;
        sink.commit().await.unwrap();

        let names: Vec<String> = members(&file).into_iter().map(|(n, _)| n).collect();
        assert!(!names.contains(&blob_name(&d)), "{names:?}");
        for x in [&a, &b, &c, &e] {
            assert!(names.contains(&blob_name(x)), "{names:?}");
        }
        let src = ArchiveSource::open(aref(&file, Some("t")), &local).unwrap();
        assert!(!src.has_blob(&d));
        for (x, bytes) in [
            (&a, &a_bytes),
            (&b, &b_bytes),
            (&c, &c_bytes),
            (&e, &e_bytes),
        ] {
            assert_eq!(
                &collect(src.blob(x).await.unwrap()).await.unwrap()[..],
                &bytes[..]
            );
        }
        assert_eq!(src.resolve().await.unwrap().digest(), img.manifest.digest());
    }

    #[tokio::test]
    async fn sources_read_what_this_process_is_writing() {
        let local = LocalStores::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("live.tar");
        write_archive(&file, &[("old", "old")]).await;
        let sink = ArchiveSink::open(aref(&file, None), &local).unwrap();
        let img = image("new");
        put(&sink, &img, "new").await;
        // Another sink on the same file (another spelling of the path) shares the state.
        let other =
            ArchiveSink::open(aref(&dir.path().join(".").join("live.tar"), None), &local).unwrap();
        assert_eq!(
            other.tag_digest("new").await.unwrap(),
            Some(img.manifest.digest().clone())
        );
        for tag in ["old", "new"] {
            let src = ArchiveSource::open(aref(&file, Some(tag)), &local).unwrap();
            let m = src.resolve().await.unwrap();
            assert_eq!(m.digest(), image(tag).manifest.digest());
            let layer = &image(tag).layer;
            assert_eq!(
                collect(src.blob(&layer.0).await.unwrap()).await.unwrap(),
                layer.1
            );
        }
        // The archive file itself is untouched until the commit.
        let committed = ArchiveSource::open_file(file.clone(), None).unwrap();
        assert_eq!(committed.entries().len(), 1);
        other.commit().await.unwrap();
        assert_eq!(
            ArchiveSource::open(aref(&file, None), &local)
                .unwrap()
                .entries()
                .len(),
            2
        );
        // A tag written twice is one entry; a new session starts from the committed file.
        tag_image(&sink, &img, "new").await;
        sink.commit().await.unwrap();
        assert_eq!(
            ArchiveSource::open(aref(&file, None), &local)
                .unwrap()
                .entries()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn reads_dot_slash_members_and_detects_corruption() {
        let local = LocalStores::default();
        // A tar of a layout written by hand with `./` prefixes, the way `tar -C dir .` does.
        let dir = tempfile::tempdir().unwrap();
        let lay = dir.path().join("lay");
        let img = image("dots");
        let sink = crate::store::layout::LayoutSink::open(aref(&lay, Some("d")), &local).unwrap();
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
                sink.layout().unwrap().blob_path(&d.digest),
            ));
        }
        let md = img.manifest.descriptor();
        files.push((
            format!("./blobs/sha256/{}", md.digest.hex()),
            sink.layout().unwrap().blob_path(&md.digest),
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

        let src = ArchiveSource::open(aref(&file, None), &local).unwrap();
        let m = src.resolve().await.unwrap();
        assert_eq!(m.bytes(), img.manifest.bytes());
        let config = collect(src.blob(&img.config.0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(config, img.config.1);
        let err = collect(src.blob(&img.layer.0).await.unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

        // Adding to it: index.json and oci-layout come first there, so each blob is copied
        // over (verified) at the commit; the new archive has one of each member.
        let good = image("after dots");
        let sink = ArchiveSink::open(aref(&file, Some("g")), &local).unwrap();
        put(&sink, &good, "g").await;
        let err = sink.commit().await.unwrap_err();
        assert!(
            matches!(err.root(), Error::DigestMismatch { .. }),
            "the corrupt layer is not carried over: {err}"
        );
    }

    #[tokio::test]
    async fn open_errors_name_the_file() {
        let local = LocalStores::default();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.tar");
        let err = ArchiveSource::open(aref(&missing, None), &local).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }));
        assert!(err.to_string().contains("missing.tar"), "{err}");
        let junk = dir.path().join("junk.tar");
        std::fs::write(&junk, vec![7u8; 1024]).unwrap();
        let err = ArchiveSource::open(aref(&junk, None), &local)
            .unwrap_err()
            .to_string();
        assert!(err.contains("junk.tar"), "{err}");
        let gz = dir.path().join("img.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
        let err = ArchiveSource::open(aref(&gz, None), &local)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gzip-compressed"), "{err}");
        // An existing file that is not an OCI archive is not overwritten by a sink.
        let sink = ArchiveSink::open(aref(&junk, None), &local).unwrap();
        let err = sink.has_blob(&image("j").layer.0).await.unwrap_err();
        assert!(err.to_string().contains("junk.tar"), "{err}");
        assert!(sink.commit().await.is_err());
        assert_eq!(std::fs::read(&junk).unwrap(), vec![7u8; 1024]);
        assert!(!ArchiveSink::partial_path(&junk).unwrap().exists());
        // A truncated archive is refused, naming the file.
        let cut = dir.path().join("cut.tar");
        write_archive(&cut, &[("cut", "c")]).await;
        let bytes = std::fs::read(&cut).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() - 1024 - 512 + 10]).unwrap();
        let err = ArchiveSource::open(aref(&cut, None), &local)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cut.tar") && err.contains("cut short"),
            "{err}"
        );
    }
}
