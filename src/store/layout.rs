//! OCI image layout directories (`oci:DIR[:tag]`), as specified by the OCI image-layout spec:
//! an `oci-layout` file (`{"imageLayoutVersion":"1.0.0"}`), an `index.json` (an OCI index whose
//! entries are the layout's images, named by the `org.opencontainers.image.ref.name`
//! annotation) and content-addressed blobs under `blobs/<alg>/<hex>`.
//!
//! Writes are crash-safe: blobs are streamed into a temp file inside `blobs/<alg>/`, verified
//! (digest and size), fsynced and renamed into place; `index.json` is rewritten through a temp
//! file and a rename, under a lock per layout directory shared by one operation
//! ([`LocalStores`]). Manifests are stored as the exact bytes given; only `index.json` is serialised by graft (deterministically, keeping the
//! fields and entries it does not touch; the document is handled by
//! [`crate::store::index_json`], shared with archives).
//!
//! Reads trust nothing in the directory: only regular files are opened (never blocking on a
//! FIFO), none whose real path leaves the layout directory, and documents are read only up to
//! their limits ([`crate::store::MANIFEST_LIMIT`], [`crate::store::INDEX_JSON_LIMIT`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::error::{Error, Result};
use crate::fsutil::{
    open_regular, parent_dir, read_limited, sync_dir, too_large_reason, write_atomic, write_new,
    Durability, OpenRefused, TMP_PREFIX,
};
use crate::oci::{Descriptor, Digest, Digester, RawManifest};
use crate::reference::LayoutRef;
use crate::store::index_json::{
    empty_index_bytes, index_doc_bytes, index_entry, manifests_mut, parse_index, parse_index_doc,
    remove_index_entries, resolve_in, set_index_entry, with_index_header, INDEX_FILE, REF_NAME,
};
use crate::store::local::LocalStores;
use crate::store::{
    verify_stream, BlobStream, Sink, Source, INDEX_JSON_LIMIT, LAYOUT_MARKER_LIMIT, MANIFEST_LIMIT,
};

/// The file marking a directory as an OCI image layout.
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
/// The directory holding the blobs.
pub const BLOBS_DIR: &str = "blobs";
/// The `oci-layout` content graft writes.
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The mode of the small files graft writes into a layout (`oci-layout`, `index.json`): 0600,
/// as they have always been written (the temp file's mode).
const DOC_MODE: u32 = 0o600;

/// Read buffer size for streaming blobs from files.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The directory, as given (used in messages).
    root: PathBuf,
    /// The directory, every symlink resolved: no file outside it is read.
    real_root: PathBuf,
    /// Serialises edits of `index.json`: shared by everything one operation opens on this
    /// layout ([`LocalStores`]), private to this value otherwise.
    lock: Arc<Mutex<()>>,
}

impl Layout {
    /// Open an existing layout. The directory must exist and hold a valid `oci-layout` file and
    /// a parseable `index.json`; errors name the path.
    pub fn open(path: impl AsRef<Path>) -> Result<Layout> {
        let root = path.as_ref().to_path_buf();
        let what = || layout_what(&root);
        match std::fs::metadata(&root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    what: what(),
                    detail: Some("no such directory".into()),
                })
            }
            Err(e) => return Err(Error::io("reading", &root, e)),
            Ok(m) if !m.is_dir() => {
                return Err(Error::Invalid {
                    what: what(),
                    reason: "not a directory (for a tar of a layout use oci-archive:)".into(),
                })
            }
            Ok(_) => {}
        }
        let real_root =
            std::fs::canonicalize(&root).map_err(|e| Error::io("resolving", &root, e))?;
        let marker = root.join(OCI_LAYOUT_FILE);
        let bytes = match open_regular(&marker, Some(&real_root)) {
            Ok(file) => read_limited(file, &marker, LAYOUT_MARKER_LIMIT)?,
            Err(e) if e.is_not_found() => {
                return Err(Error::Invalid {
                    what: what(),
                    reason: "no oci-layout file: this is not an OCI image layout".into(),
                })
            }
            Err(e) => return Err(e.into_error(&marker)),
        };
        check_layout_marker(&bytes, &marker)?;
        let layout = Layout {
            root,
            real_root,
            lock: Arc::default(),
        };
        layout.entries()?;
        Ok(layout)
    }

    /// Open a layout, creating it (directory, `oci-layout`, empty `index.json`) if needed.
    /// An existing non-empty directory without an `oci-layout` file is refused rather than
    /// written into ([`Layout::check_writable`]). Safe against another creator of the same
    /// directory at the same time: files that appear meanwhile are kept, never replaced.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Layout> {
        let root = path.as_ref();
        std::fs::create_dir_all(root).map_err(|e| Error::io("creating directory", root, e))?;
        let marker = root.join(OCI_LAYOUT_FILE);
        if !exists(&marker)? {
            Layout::check_writable(root)?;
            write_new(&marker, OCI_LAYOUT_CONTENT, DOC_MODE, Durability::Synced)?;
        }
        let index = root.join(INDEX_FILE);
        if !exists(&index)? {
            write_new(&index, &empty_index_bytes(), DOC_MODE, Durability::Synced)?;
        }
        let blobs = root.join(BLOBS_DIR);
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io("creating directory", &blobs, e))?;
        Layout::open(root)
    }

    /// Whether [`Layout::open_or_create`] may write at `path`, checked without writing
    /// anything: it does not exist, or is a directory that is empty or holds an `oci-layout`
    /// file. (graft's own leftover temp files from an interrupted creation do not count.)
    pub fn check_writable(path: &Path) -> Result<()> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("checking", path, e)),
        };
        if !meta.is_dir() {
            return Err(Error::Invalid {
                what: layout_what(path),
                reason: "not a directory (for a tar of a layout use oci-archive:)".into(),
            });
        }
        let marker = path.join(OCI_LAYOUT_FILE);
        if exists(&marker)? {
            return Ok(());
        }
        let listing = std::fs::read_dir(path).map_err(|e| Error::io("listing", path, e))?;
        let mut names = listing.filter_map(|e| e.ok().map(|e| e.file_name()));
        // A creator in another thread writes `oci-layout` first: once anything else is
        // there, so is the marker (checked again, after the listing).
        if names.any(|n| !n.to_string_lossy().starts_with(TMP_PREFIX)) && !exists(&marker)? {
            return Err(Error::Invalid {
                what: layout_what(path),
                reason: "the directory is not empty and has no oci-layout file; refusing to \
                         turn it into an OCI layout"
                    .into(),
            });
        }
        Ok(())
    }

    /// The same layout, its `index.json` edits serialised with everything else `local` opens
    /// on it.
    pub fn sharing(self, local: &LocalStores) -> Result<Layout> {
        let lock = local.index_lock(&self.real_root);
        Ok(self.with_lock(lock))
    }

    /// The same layout, its `index.json` edits serialised by `lock`.
    fn with_lock(self, lock: Arc<Mutex<()>>) -> Layout {
        Layout { lock, ..self }
    }

    /// The layout directory, as given.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The path of `index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// The entries (`manifests`) of `index.json`, in file order.
    pub fn entries(&self) -> Result<Vec<Descriptor>> {
        let path = self.index_path();
        let bytes = self.read_index_file()?;
        parse_index(&bytes, &path.display().to_string())
    }

    /// The entry named `tag` (by its `org.opencontainers.image.ref.name` annotation); without a
    /// tag, the only entry. Otherwise [`Error::NotFound`] whose detail lists the tags that exist.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor> {
        resolve_in(&self.entries()?, tag, &layout_what(&self.root))
    }

    /// Where the blob with `digest` lives: `blobs/<alg>/<hex>`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(BLOBS_DIR)
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Whether the blob exists as a regular file of the descriptor's size, inside the layout
    /// directory. (Its content is checked when it is read.) Anything else in its place (a
    /// symlink out of the layout, a FIFO) counts as absent: a write replaces it.
    pub fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        let path = self.blob_path(&desc.digest);
        let real = match std::fs::canonicalize(&path) {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("checking", path, e)),
        };
        if !real.starts_with(&self.real_root) {
            return Ok(false);
        }
        match std::fs::metadata(&real) {
            Ok(m) => Ok(m.is_file() && m.len() == desc.size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("checking", path, e)),
        }
    }

    /// Open a file of the layout for reading: a regular file inside the layout directory
    /// (see [`open_regular`]).
    fn open_file(&self, path: &Path) -> std::result::Result<std::fs::File, OpenRefused> {
        open_regular(path, Some(&self.real_root))
    }

    /// Open the file of the blob `digest`; [`Error::NotFound`] if there is none.
    fn open_blob(&self, digest: &Digest) -> Result<(PathBuf, std::fs::File)> {
        let path = self.blob_path(digest);
        match self.open_file(&path) {
            Ok(file) => Ok((path, file)),
            Err(e) if e.is_not_found() => Err(self.blob_not_found(digest)),
            Err(e) => Err(e.into_error(&path)),
        }
    }

    /// Stream a blob from its file. The stream is verified: it ends with
    /// [`Error::DigestMismatch`] or [`Error::SizeMismatch`] when the file is not what `desc`
    /// says.
    pub async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        let (path, file) = self.open_blob(&desc.digest)?;
        let file = tokio::fs::File::from_std(file);
        let stream = ReaderStream::with_capacity(file, READ_CHUNK)
            .map(move |r| r.map_err(|e| Error::io("reading", &path, e)));
        Ok(verify_stream(
            Box::pin(stream),
            desc,
            format!("blob {} in {}", desc.digest, layout_what(&self.root)),
        ))
    }

    /// Read and verify a manifest or index (at most [`MANIFEST_LIMIT`] bytes). The media
    /// type comes from the document, else from the descriptor (umoci writes manifests without
    /// `mediaType`).
    pub async fn read_manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        let what = format!("manifest {} in {}", desc.digest, layout_what(&self.root));
        check_manifest_size(desc, &what)?;
        let layout = self.clone();
        let d = desc.clone();
        let read = move || -> Result<Vec<u8>> {
            let (path, file) = layout.open_blob(&d.digest)?;
            let len = file
                .metadata()
                .map_err(|e| Error::io("checking", &path, e))?
                .len();
            if len != d.size {
                return Err(Error::SizeMismatch {
                    what: format!("manifest {} in {}", d.digest, layout_what(&layout.root)),
                    expected: d.size,
                    found: len,
                });
            }
            read_limited(file, &path, d.size)
        };
        let bytes = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| Error::internal(format!("reading {what}"), e))??;
        manifest_from_bytes(Bytes::from(bytes), desc, what)
    }

    /// Store a blob from a stream: the bytes go to a temp file in `blobs/<alg>/`, are checked
    /// against the descriptor's digest and size while they arrive, fsynced, and renamed into
    /// place only if both match. A blob already present with the right size is left alone
    /// (and `data` is not read). On any error the temp file is removed.
    pub async fn write_blob(&self, desc: &Descriptor, mut data: BlobStream) -> Result<()> {
        if self.has_blob(desc)? {
            return Ok(());
        }
        let final_path = self.blob_path(&desc.digest);
        let dir = final_path
            .parent()
            .expect("a blob path has a parent")
            .to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io("creating directory", &dir, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(&dir)
            .map_err(|e| Error::io("creating a temp file in", &dir, e))?;
        // `tmp_path` deletes the file when dropped, i.e. on every early return below.
        let (file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let what = || {
            format!(
                "blob {} written to {}",
                desc.digest,
                layout_what(&self.root)
            )
        };
        let mut digester = Digester::new(desc.digest.algorithm());
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            digester.update(&chunk);
            if digester.len() > desc.size {
                return Err(Error::SizeMismatch {
                    what: what(),
                    expected: desc.size,
                    found: digester.len(),
                });
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::io("writing", &*tmp_path, e))?;
        }
        if digester.len() != desc.size {
            return Err(Error::SizeMismatch {
                what: what(),
                expected: desc.size,
                found: digester.len(),
            });
        }
        let found = digester.finish();
        if found != desc.digest {
            return Err(Error::DigestMismatch {
                what: what(),
                expected: desc.digest.clone(),
                found,
            });
        }
        file.flush()
            .await
            .map_err(|e| Error::io("writing", &*tmp_path, e))?;
        file.sync_all()
            .await
            .map_err(|e| Error::io("syncing", &*tmp_path, e))?;
        drop(file);
        tmp_path
            .persist(&final_path)
            .map_err(|e| Error::io("renaming a temp file to", &final_path, e.error))?;
        sync_dir(&dir)
    }

    /// [`Layout::write_blob`] for bytes already in memory.
    pub async fn write_bytes(&self, desc: &Descriptor, bytes: Bytes) -> Result<()> {
        self.write_blob(desc, bytes_stream(bytes)).await
    }

    /// Record `desc` in `index.json`. With a tag, the entry holding that
    /// `org.opencontainers.image.ref.name` is replaced in place (or the entry appended); without
    /// one, the entry is appended unless an entry with that digest is already listed. The entry
    /// written is `desc` with its `ref.name` annotation set to `tag` (or removed). Other entries,
    /// their order and unknown top-level fields are kept; the file is replaced atomically under
    /// the layout's lock (shared by one operation: [`Layout::sharing`]).
    pub fn set_tag(&self, desc: &Descriptor, tag: Option<&str>) -> Result<()> {
        let value = index_entry(desc, tag)?;
        self.edit_index(|manifests| {
            set_index_entry(manifests, value, &desc.digest, tag);
            Ok(())
        })
    }

    /// Remove every `index.json` entry of `digest` that is untagged or whose name `named`
    /// accepts, under the layout's lock (the file replaced atomically, other entries and
    /// unknown fields kept). Only `index.json` changes: the manifest and its blobs stay in
    /// `blobs/`. Returns the removed entries' names (`None`: untagged).
    pub fn remove_entries(
        &self,
        digest: &Digest,
        named: impl Fn(&str) -> bool,
    ) -> Result<Vec<Option<String>>> {
        let mut removed = Vec::new();
        self.edit_index(|manifests| {
            removed = remove_index_entries(manifests, digest, named);
            Ok(())
        })?;
        Ok(removed)
    }

    /// Read-modify-write of the `manifests` array of `index.json`.
    fn edit_index(&self, f: impl FnOnce(&mut Vec<Value>) -> Result<()>) -> Result<()> {
        let path = self.index_path();
        self.edit_index_doc(|doc| f(manifests_mut(doc, &path)?))
    }

    /// Read-modify-write of `index.json` as an ordered JSON object, under the layout's lock.
    /// The file is rewritten (temp file + rename) only if the document changed.
    fn edit_index_doc(&self, f: impl FnOnce(&mut Map<String, Value>) -> Result<()>) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.index_path();
        let bytes = self.read_index_file()?;
        let what = path.display().to_string();
        let original = parse_index_doc(&bytes, &what)?;
        let mut edited = original.clone();
        f(&mut edited)?;
        let edited = with_index_header(edited);
        if edited == original {
            return Ok(());
        }
        let out = index_doc_bytes(edited, &what)?;
        write_atomic(&path, &out, DOC_MODE, Durability::Synced)
    }

    /// The bytes of `index.json` (a regular file inside the layout, at most
    /// [`INDEX_JSON_LIMIT`] bytes).
    fn read_index_file(&self) -> Result<Vec<u8>> {
        let path = self.index_path();
        match self.open_file(&path) {
            Ok(file) => read_limited(file, &path, INDEX_JSON_LIMIT),
            Err(e) if e.is_not_found() => Err(Error::Invalid {
                what: layout_what(parent_dir(&path)),
                reason: "no index.json".into(),
            }),
            Err(e) => Err(e.into_error(&path)),
        }
    }

    fn blob_not_found(&self, digest: &Digest) -> Error {
        Error::NotFound {
            what: format!("blob {digest} in {}", layout_what(&self.root)),
            detail: None,
        }
    }
}

/// Reads images from an OCI layout directory (`oci:DIR[:tag]`).
#[derive(Debug, Clone)]
pub struct LayoutSource {
    /// The directory, as given.
    path: PathBuf,
    tag: Option<String>,
    /// The layout; `None` until a sink of this operation creates it
    /// ([`LayoutSource::open_in`]).
    layout: Arc<Mutex<Option<Layout>>>,
}

impl LayoutSource {
    /// Open the layout at `r.path` (which must exist). [`Source::resolve`] picks the entry
    /// tagged `r.tag`, or the only entry when there is no tag.
    pub fn open(r: LayoutRef) -> Result<LayoutSource> {
        let layout = Layout::open(&r.path)?;
        Ok(LayoutSource {
            path: r.path,
            tag: r.tag,
            layout: Arc::new(Mutex::new(Some(layout))),
        })
    }

    /// [`LayoutSource::open`] within one operation: a layout that does not exist yet but that
    /// a [`LayoutSink`] of `local` writes (it is created by the sink's first write) reads as
    /// empty until then, every image, manifest and blob not found (a destination read to
    /// merge into its own signatures, before anything was copied).
    pub fn open_in(r: LayoutRef, local: &LocalStores) -> Result<LayoutSource> {
        match LayoutSource::open(r.clone()) {
            Err(Error::NotFound { .. }) if local.has_index_lock(&layout_key(&r.path)) => {
                Ok(LayoutSource {
                    path: r.path,
                    tag: r.tag,
                    layout: Arc::default(),
                })
            }
            opened => opened,
        }
    }

    /// The underlying layout (an error if it does not exist yet).
    pub fn layout(&self) -> Result<Layout> {
        let mut slot = self.layout.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(layout) = &*slot {
            return Ok(layout.clone());
        }
        let layout = Layout::open(&self.path)?;
        *slot = Some(layout.clone());
        Ok(layout)
    }
}

#[async_trait]
impl Source for LayoutSource {
    fn name(&self) -> String {
        display_ref("oci", &self.path, self.tag.as_deref())
    }

    async fn resolve(&self) -> Result<RawManifest> {
        let layout = self.layout()?;
        let desc = layout.resolve(self.tag.as_deref())?;
        layout.read_manifest(&desc).await
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.layout()?.read_manifest(desc).await
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        self.layout()?.read_blob(desc).await
    }
}

/// Writes images into an OCI layout directory (created on the first write).
///
/// Manifests are stored as blobs, byte for byte; [`Sink::put_manifest`] does not touch
/// `index.json`. Entries are recorded by [`Sink::put_tag`] (replacing the entry that holds the
/// tag) and by [`Sink::put_root`], which the copy engine calls for a destination without a tag
/// (`oci:DIR`): it lists the manifest **untagged**, once per digest, as `skopeo copy … oci:DIR`
/// does, so the image stays reachable. An empty tag given to `put_tag` also means "untagged".
///
/// Opening writes nothing: the directory, `oci-layout` and `index.json` are created by the
/// first write, so a copy refused while its source is walked (a hostile layout, a missing
/// manifest) leaves no new directory behind. Until then the layout reads as empty.
#[derive(Debug, Clone)]
pub struct LayoutSink {
    /// The directory, as given.
    path: PathBuf,
    tag: Option<String>,
    /// The `index.json` lock of this layout, shared by the operation ([`LocalStores`]).
    lock: Arc<Mutex<()>>,
    /// The layout once it exists (shared by clones: it is created once).
    layout: Arc<Mutex<Option<Layout>>>,
}

impl LayoutSink {
    /// Prepare to write the layout at `r.path`: refused now if it could not become one (a
    /// non-empty directory that is no layout, a file), created on the first write. `r.tag` is
    /// only used in [`Sink::name`]: the caller says which tags to write.
    pub fn open(r: LayoutRef, local: &LocalStores) -> Result<LayoutSink> {
        Layout::check_writable(&r.path)?;
        let sink = LayoutSink {
            lock: local.index_lock(&layout_key(&r.path)),
            path: r.path,
            tag: r.tag,
            layout: Arc::default(),
        };
        // An existing layout is opened (and checked) now, as a source would be.
        sink.existing()?;
        Ok(sink)
    }

    /// The underlying layout, created if it does not exist yet.
    pub fn layout(&self) -> Result<Layout> {
        let mut slot = self.layout.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(layout) = &*slot {
            return Ok(layout.clone());
        }
        let layout = Layout::open_or_create(&self.path)?.with_lock(self.lock.clone());
        *slot = Some(layout.clone());
        Ok(layout)
    }

    /// The layout if it exists (created by this sink, another of this operation, or before);
    /// `None` while nothing has been written.
    fn existing(&self) -> Result<Option<Layout>> {
        {
            let slot = self.layout.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_some() || !exists(&self.path.join(OCI_LAYOUT_FILE))? {
                return Ok(slot.clone());
            }
        }
        self.layout().map(Some)
    }

    /// Write the manifest blob and record it in `index.json` under `tag` (untagged if `None`).
    async fn put_entry(&self, manifest: &RawManifest, tag: Option<&str>) -> Result<()> {
        self.put_manifest(manifest).await?;
        let layout = self.layout()?;
        let desc = manifest.descriptor();
        let tag = tag.map(str::to_string);
        let index = layout.index_path();
        tokio::task::spawn_blocking(move || layout.set_tag(&desc, tag.as_deref()))
            .await
            .map_err(|e| Error::io("updating", index, std::io::Error::other(e)))?
    }
}

#[async_trait]
impl Sink for LayoutSink {
    fn name(&self) -> String {
        display_ref("oci", &self.path, self.tag.as_deref())
    }

    fn scope(&self) -> String {
        display_ref("oci", &self.path, None)
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        match self.existing()? {
            Some(layout) => layout.has_blob(desc),
            None => Ok(false),
        }
    }

    async fn put_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<()> {
        self.layout()?.write_blob(desc, data).await
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool> {
        self.has_blob(desc).await
    }

    async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>> {
        let layout = match self.existing()? {
            Some(layout) if !tag.is_empty() => layout,
            _ => return Ok(None),
        };
        Ok(layout
            .entries()?
            .into_iter()
            .find(|d| d.annotation(REF_NAME) == Some(tag))
            .map(|d| d.digest))
    }

    async fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        self.layout()?
            .write_bytes(&manifest.descriptor(), manifest.bytes().clone())
            .await
    }

    /// Writes the manifest blob and lists it untagged in `index.json` unless its digest is
    /// listed already; `Ok(false)` when both were already there.
    async fn put_root(&self, manifest: &RawManifest) -> Result<bool> {
        let desc = manifest.descriptor();
        if let Some(layout) = self.existing()? {
            if layout.has_blob(&desc)? && layout.entries()?.iter().any(|d| d.digest == desc.digest)
            {
                return Ok(false);
            }
        }
        self.put_entry(manifest, None).await?;
        Ok(true)
    }

    async fn put_tag(&self, manifest: &RawManifest, tag: &str) -> Result<()> {
        self.put_entry(manifest, (!tag.is_empty()).then_some(tag))
            .await
    }
}

/// The key of the layout at `path` in [`LocalStores`], the same before and after the
/// directory exists: its nearest existing ancestor resolved, the rest appended.
///
/// A `..` in the part that does not exist yet steps back over the name before it (no
/// symlink can be there): `new/../x` and `x` are one layout, with one lock.
fn layout_key(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest
                .iter()
                .rev()
                .fold(real, |mut p, name: &std::ffi::OsString| {
                    if name == ".." {
                        p.pop();
                        p
                    } else {
                        p.join(name)
                    }
                });
        }
        let last = match at.components().next_back() {
            Some(Component::Normal(n)) => Some(n.to_os_string()),
            Some(Component::ParentDir) => Some("..".into()),
            _ => None,
        };
        match (at.parent(), last) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                at = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
            }
            _ => return path.to_path_buf(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with the archive backend.

/// `OCI layout <path>`, for messages.
pub(crate) fn layout_what(path: &Path) -> String {
    format!("OCI layout {}", path.display())
}

/// `oci:PATH[:TAG]` / `oci-archive:PATH[:TAG]`.
pub(crate) fn display_ref(transport: &str, path: &Path, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("{transport}:{}:{t}", path.display()),
        None => format!("{transport}:{}", path.display()),
    }
}

/// Check the content of an `oci-layout` file.
pub(crate) fn check_layout_marker(bytes: &[u8], path: &Path) -> Result<()> {
    let what = path.display().to_string();
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: what.clone(),
        source: e,
    })?;
    match v.get("imageLayoutVersion").and_then(Value::as_str) {
        Some(ver) if ver.starts_with("1.") => Ok(()),
        Some(ver) => Err(Error::Invalid {
            what,
            reason: format!("unsupported imageLayoutVersion {ver:?} (graft reads 1.x)"),
        }),
        None => Err(Error::Invalid {
            what,
            reason: "no imageLayoutVersion".into(),
        }),
    }
}

/// Verify manifest bytes against `desc` and parse them, taking the media type from the
/// document or else from the descriptor.
pub(crate) fn manifest_from_bytes(
    bytes: Bytes,
    desc: &Descriptor,
    what: String,
) -> Result<RawManifest> {
    if bytes.len() as u64 != desc.size {
        return Err(Error::SizeMismatch {
            what,
            expected: desc.size,
            found: bytes.len() as u64,
        });
    }
    let found = Digest::compute(desc.digest.algorithm(), &bytes);
    if found != desc.digest {
        return Err(Error::DigestMismatch {
            what,
            expected: desc.digest.clone(),
            found,
        });
    }
    let content_type = (!desc.media_type.is_empty()).then_some(desc.media_type.as_str());
    RawManifest::with_digest(bytes, content_type, desc.digest.clone())
        .map_err(|e| e.context(format!("reading {what}")))
}

/// A one-chunk [`BlobStream`].
pub(crate) fn bytes_stream(bytes: Bytes) -> BlobStream {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}

fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("checking", path, e)),
    }
}

/// Refuse a manifest whose descriptor claims more than [`MANIFEST_LIMIT`] bytes, before
/// reading any of it; `what` names it.
pub(crate) fn check_manifest_size(desc: &Descriptor, what: &str) -> Result<()> {
    if desc.size > MANIFEST_LIMIT {
        return Err(Error::Invalid {
            what: what.to_string(),
            reason: too_large_reason(desc.size, MANIFEST_LIMIT),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_image {
    //! A tiny valid image for tests.

    use super::*;
    use crate::oci::media_types as mt;

    /// A config, an uncompressed layer and an OCI manifest referencing them.
    pub struct TestImage {
        /// Config descriptor and bytes.
        pub config: (Descriptor, Bytes),
        /// Layer descriptor and bytes.
        pub layer: (Descriptor, Bytes),
        /// The manifest.
        pub manifest: RawManifest,
    }

    /// Build an image whose layer holds one file with `content`.
    pub fn image(content: &str) -> TestImage {
        let layer = Bytes::from(format!("layer:{content}"));
        let layer_desc = Descriptor::new(
            mt::OCI_LAYER_TAR,
            Digest::sha256(&layer),
            layer.len() as u64,
        );
        let config = Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            layer_desc.digest
        ));
        let config_desc =
            Descriptor::new(mt::OCI_CONFIG, Digest::sha256(&config), config.len() as u64);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
            mt::OCI_MANIFEST,
            serde_json::to_string(&config_desc).unwrap(),
            serde_json::to_string(&layer_desc).unwrap()
        );
        TestImage {
            config: (config_desc, config),
            layer: (layer_desc, layer),
            manifest: RawManifest::from_bytes(Bytes::from(manifest), None).unwrap(),
        }
    }

    /// Write the image through a sink, tagging it.
    pub async fn put(sink: &dyn Sink, img: &TestImage, tag: &str) {
        for (d, b) in [&img.layer, &img.config] {
            sink.put_blob(d, bytes_stream(b.clone())).await.unwrap();
        }
        sink.put_tag(&img.manifest, tag).await.unwrap();
    }

    /// Collect a stream, returning the bytes or the first error.
    pub async fn collect(mut s: BlobStream) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::test_image::{collect, image, put};
    use super::*;
    use crate::oci::media_types as mt;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn lref(path: &Path, tag: Option<&str>) -> LayoutRef {
        LayoutRef {
            path: path.to_path_buf(),
            tag: tag.map(str::to_string),
        }
    }

    fn tmp_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(tmp_files(&e.path()));
            } else if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                out.push(e.path());
            }
        }
        out
    }

    #[tokio::test]
    async fn write_read_round_trip() {
        let local = LocalStores::default();
        let dir = tmp();
        let root = dir.path().join("lay");
        let img = image("a");
        let sink = LayoutSink::open(lref(&root, Some("v1")), &local).unwrap();
        put(&sink, &img, "v1").await;
        assert_eq!(
            std::fs::read(root.join(OCI_LAYOUT_FILE)).unwrap(),
            OCI_LAYOUT_CONTENT
        );
        let index: Value =
            serde_json::from_slice(&std::fs::read(root.join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], mt::OCI_INDEX);
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "v1");
        assert_eq!(index["manifests"][0]["size"], img.manifest.bytes().len());
        assert_eq!(
            sink.tag_digest("v1").await.unwrap(),
            Some(img.manifest.digest().clone())
        );
        assert!(sink.has_manifest(&img.manifest.descriptor()).await.unwrap());

        let src = LayoutSource::open(lref(&root, Some("v1"))).unwrap();
        assert_eq!(src.name(), format!("oci:{}:v1", root.display()));
        let m = src.resolve().await.unwrap();
        assert_eq!(m.bytes(), img.manifest.bytes());
        assert_eq!(m.digest(), img.manifest.digest());
        let layer = collect(src.blob(&img.layer.0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(layer, img.layer.1);
        // No tag and a single entry: that entry.
        let m = LayoutSource::open(lref(&root, None))
            .unwrap()
            .resolve()
            .await
            .unwrap();
        assert_eq!(m.digest(), img.manifest.digest());
        assert!(tmp_files(&root).is_empty());
    }

    #[tokio::test]
    async fn corrupted_blob_is_detected_on_read() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let img = image("corrupt-me");
        layout
            .write_bytes(&img.layer.0, img.layer.1.clone())
            .await
            .unwrap();
        let path = layout.blob_path(&img.layer.0.digest);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(layout.has_blob(&img.layer.0).unwrap(), "size still matches");
        let err = collect(layout.read_blob(&img.layer.0).await.unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );

        // A corrupted manifest is refused too.
        let md = img.manifest.descriptor();
        layout
            .write_bytes(&md, img.manifest.bytes().clone())
            .await
            .unwrap();
        let path = layout.blob_path(&md.digest);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let err = layout.read_manifest(&md).await.unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn size_mismatch_on_write_and_read() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let img = image("sizes");
        let (desc, bytes) = img.layer.clone();
        // Too many bytes for the descriptor.
        let mut short = desc.clone();
        short.size -= 1;
        let err = layout.write_bytes(&short, bytes.clone()).await.unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        // Too few.
        let err = layout
            .write_bytes(&desc, bytes.slice(..bytes.len() - 1))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        // Right size, wrong content.
        let mut wrong = bytes.to_vec();
        wrong[0] ^= 1;
        let err = layout
            .write_bytes(&desc, Bytes::from(wrong))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!layout.blob_path(&desc.digest).exists());
        assert!(tmp_files(dir.path()).is_empty());

        // A file longer than its descriptor fails on read.
        layout.write_bytes(&desc, bytes.clone()).await.unwrap();
        let path = layout.blob_path(&desc.digest);
        let mut longer = bytes.to_vec();
        longer.push(b'!');
        std::fs::write(&path, &longer).unwrap();
        assert!(!layout.has_blob(&desc).unwrap());
        let err = collect(layout.read_blob(&desc).await.unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        // ... and is replaced by the next write.
        layout.write_bytes(&desc, bytes.clone()).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[tokio::test]
    async fn interrupted_write_leaves_no_blob() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let img = image("interrupted");
        let (desc, bytes) = img.layer.clone();
        let first = bytes.slice(..3);
        let stream: BlobStream = Box::pin(futures::stream::iter(vec![
            Ok(first),
            Err(Error::Unsupported("connection dropped".into())),
        ]));
        let err = layout.write_blob(&desc, stream).await.unwrap_err();
        assert!(err.to_string().contains("connection dropped"));
        assert!(!layout.blob_path(&desc.digest).exists());
        assert!(!layout.has_blob(&desc).unwrap());
        assert!(tmp_files(dir.path()).is_empty());
        let err = layout.read_blob(&desc).await.err().unwrap();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn existing_blob_is_left_alone() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let img = image("keep");
        layout
            .write_bytes(&img.layer.0, img.layer.1.clone())
            .await
            .unwrap();
        // A stream that would fail if read: it is not read.
        let stream: BlobStream = Box::pin(futures::stream::iter(vec![Err(Error::Unsupported(
            "must not be read".into(),
        ))]));
        layout.write_blob(&img.layer.0, stream).await.unwrap();
    }

    fn entry(digest: &Digest, tag: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(mt::OCI_MANIFEST, digest.clone(), 10);
        if let Some(t) = tag {
            d.annotations = Some([(REF_NAME.to_string(), t.to_string())].into());
        }
        d
    }

    fn tags(layout: &Layout) -> Vec<(Option<String>, Digest)> {
        layout
            .entries()
            .unwrap()
            .into_iter()
            .map(|d| (d.annotation(REF_NAME).map(str::to_string), d.digest))
            .collect()
    }

    #[test]
    fn set_tag_replaces_and_adds() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let (a, b, c) = (
            Digest::sha256(b"a"),
            Digest::sha256(b"b"),
            Digest::sha256(b"c"),
        );
        layout.set_tag(&entry(&a, None), Some("one")).unwrap();
        layout.set_tag(&entry(&b, None), Some("two")).unwrap();
        layout.set_tag(&entry(&a, None), None).unwrap(); // digest listed (tagged): no new entry
        layout.set_tag(&entry(&c, None), None).unwrap();
        layout.set_tag(&entry(&c, None), None).unwrap(); // once only
        layout
            .set_tag(&entry(&c, Some("stale")), Some("one"))
            .unwrap(); // replace in place
        assert_eq!(
            tags(&layout),
            vec![
                (Some("one".into()), c.clone()),
                (Some("two".into()), b.clone()),
                (None, c.clone()),
            ]
        );
        // The ref.name annotation given in a descriptor never leaks into an untagged entry.
        layout.set_tag(&entry(&b, Some("x")), None).unwrap();
        assert_eq!(tags(&layout).len(), 3);
        let before = std::fs::read(layout.index_path()).unwrap();
        layout.set_tag(&entry(&b, None), Some("two")).unwrap();
        assert_eq!(
            std::fs::read(layout.index_path()).unwrap(),
            before,
            "no-op edit"
        );
    }

    #[test]
    fn set_tag_keeps_unknown_fields() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let a = Digest::sha256(b"a");
        let other = Digest::sha256(b"other");
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{other}","size":3,"x-entry":[1,2],"annotations":{{"{REF_NAME}":"old","z":"1","a":"2"}}}}],"annotations":{{"zz":"top"}},"x-custom":{{"b":1,"a":2}}}}"#,
            mt::OCI_MANIFEST
        );
        std::fs::write(layout.index_path(), &doc).unwrap();
        layout.set_tag(&entry(&a, None), Some("new")).unwrap();
        let text = std::fs::read_to_string(layout.index_path()).unwrap();
        let expected = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{other}","size":3,"x-entry":[1,2],"annotations":{{"{REF_NAME}":"old","z":"1","a":"2"}}}},{{"mediaType":"{}","digest":"{a}","size":10,"annotations":{{"{REF_NAME}":"new"}}}}],"annotations":{{"zz":"top"}},"x-custom":{{"b":1,"a":2}}}}"#,
            mt::OCI_INDEX,
            mt::OCI_MANIFEST,
            mt::OCI_MANIFEST
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn concurrent_set_tag_loses_nothing() {
        // Layouts one operation opens (one LocalStores) share the index.json lock.
        let dir = tmp();
        let local = LocalStores::default();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        std::thread::scope(|s| {
            for i in 0..16 {
                let layout = Layout::open(dir.path()).unwrap().sharing(&local).unwrap();
                s.spawn(move || {
                    let d = Digest::sha256(format!("{i}").as_bytes());
                    layout
                        .set_tag(&entry(&d, None), Some(&format!("t{i}")))
                        .unwrap();
                });
            }
        });
        assert_eq!(layout.entries().unwrap().len(), 16);
    }

    #[test]
    fn resolve_errors_list_tags() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let err = layout.resolve(None).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("lists no images"), "{err}");
        layout
            .set_tag(&entry(&Digest::sha256(b"1"), None), Some("v1"))
            .unwrap();
        layout
            .set_tag(&entry(&Digest::sha256(b"2"), None), Some("v2"))
            .unwrap();
        layout
            .set_tag(&entry(&Digest::sha256(b"3"), None), None)
            .unwrap();
        let err = layout.resolve(Some("v3")).unwrap_err().to_string();
        assert!(err.contains("tag \"v3\""), "{err}");
        assert!(err.contains("tags: v1, v2 (1 untagged entry)"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        let err = layout.resolve(None).unwrap_err().to_string();
        assert!(err.contains("3 images are listed"), "{err}");
        assert!(err.contains("v1, v2"), "{err}");
        assert_eq!(
            layout.resolve(Some("v2")).unwrap().digest,
            Digest::sha256(b"2")
        );
    }

    #[test]
    fn open_errors_name_the_path() {
        let dir = tmp();
        let missing = dir.path().join("nope");
        let err = Layout::open(&missing).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        std::fs::write(plain.join("README"), "hi").unwrap();
        let err = Layout::open(&plain).unwrap_err().to_string();
        assert!(
            err.contains("no oci-layout") && err.contains("plain"),
            "{err}"
        );
        let err = Layout::open_or_create(&plain).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");

        let file = dir.path().join("file.tar");
        std::fs::write(&file, "x").unwrap();
        let err = Layout::open(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        let bad = dir.path().join("bad");
        Layout::open_or_create(&bad).unwrap();
        std::fs::write(bad.join(INDEX_FILE), "{").unwrap();
        let err = Layout::open(&bad).unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err}");
        std::fs::remove_file(bad.join(INDEX_FILE)).unwrap();
        let err = Layout::open(&bad).unwrap_err().to_string();
        assert!(err.contains("no index.json"), "{err}");
        std::fs::write(
            bad.join(OCI_LAYOUT_FILE),
            r#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let err = Layout::open_or_create(&bad).unwrap_err().to_string();
        assert!(err.contains("imageLayoutVersion"), "{err}");
    }

    #[tokio::test]
    async fn put_root_adds_untagged_entry_once() {
        let local = LocalStores::default();
        let dir = tmp();
        let img = image("untagged");
        let sink = LayoutSink::open(lref(dir.path(), None), &local).unwrap();
        for (d, b) in [&img.layer, &img.config] {
            sink.put_blob(d, bytes_stream(b.clone())).await.unwrap();
        }
        assert!(sink.put_root(&img.manifest).await.unwrap());
        assert!(!sink.put_root(&img.manifest).await.unwrap());
        let layout = Layout::open(dir.path()).unwrap();
        assert_eq!(tags(&layout), vec![(None, img.manifest.digest().clone())]);
        // The single untagged entry resolves without a tag.
        let m = LayoutSource::open(lref(dir.path(), None))
            .unwrap()
            .resolve()
            .await
            .unwrap();
        assert_eq!(m.bytes(), img.manifest.bytes());

        // put_tag honours its tag; an empty tag means untagged (already listed: no change).
        put(&sink, &img, "a").await;
        put(&sink, &img, "").await;
        assert_eq!(tags(&layout).len(), 2);
        assert_eq!(
            sink.tag_digest("a").await.unwrap(),
            Some(img.manifest.digest().clone())
        );
        assert_eq!(sink.tag_digest("b").await.unwrap(), None);
    }

    #[test]
    fn a_layout_not_yet_made_has_one_key_however_its_path_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = layout_key(&d.join("x"));
        assert_eq!(key, std::fs::canonicalize(d).unwrap().join("x"));
        assert_eq!(layout_key(&d.join("new/../x")), key);
        assert_eq!(layout_key(&d.join("new/deeper/../../x")), key);
        assert_eq!(layout_key(&d.join("./x")), key);
        // Once it exists, the same key.
        std::fs::create_dir(d.join("x")).unwrap();
        assert_eq!(layout_key(&d.join("new/../x")), key);
    }

    #[tokio::test]
    async fn a_sink_creates_its_layout_on_the_first_write_only() {
        let local = LocalStores::default();
        let dir = tmp();
        let root = dir.path().join("new").join("layout");
        let img = image("lazy");
        let sink = LayoutSink::open(lref(&root, Some("t")), &local).unwrap();
        assert!(!sink.has_blob(&img.layer.0).await.unwrap());
        assert_eq!(sink.tag_digest("t").await.unwrap(), None);
        assert!(!root.exists() && !dir.path().join("new").exists());
        // A second sink of the same operation sees what the first one creates, and both
        // share one index lock (keyed the same before and after the directory exists).
        let other = LayoutSink::open(lref(&root, None), &local).unwrap();
        put(&sink, &img, "t").await;
        assert_eq!(
            other.tag_digest("t").await.unwrap(),
            Some(img.manifest.digest().clone())
        );
        assert!(Arc::ptr_eq(&sink.lock, &other.lock));
        assert!(Arc::ptr_eq(
            &sink.lock,
            &local.index_lock(&std::fs::canonicalize(&root).unwrap())
        ));

        // What could never become a layout is refused when opened, before any write.
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        std::fs::write(plain.join("README"), "hi").unwrap();
        let err = LayoutSink::open(lref(&plain, None), &local).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = LayoutSink::open(lref(&file, None), &local).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[tokio::test]
    async fn put_manifest_does_not_touch_index() {
        let local = LocalStores::default();
        let dir = tmp();
        let img = image("m");
        let sink = LayoutSink::open(lref(dir.path(), Some("t")), &local).unwrap();
        sink.put_manifest(&img.manifest).await.unwrap();
        assert!(sink.has_manifest(&img.manifest.descriptor()).await.unwrap());
        assert!(sink.layout().unwrap().entries().unwrap().is_empty());
    }

    #[tokio::test]
    async fn hostile_files_are_refused_unread() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        // A manifest claiming more than the limit: refused on its descriptor (there is no
        // file at all: the size is checked before anything is opened).
        let big = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"big"), MANIFEST_LIMIT + 1);
        let err = layout.read_manifest(&big).await.unwrap_err().to_string();
        assert!(
            err.contains("4194305 bytes is more than the 4194304 bytes"),
            "{err}"
        );

        // A FIFO blob: refused at once, not waited on.
        let img = image("fifo");
        let path = layout.blob_path(&img.layer.0.digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(!layout.has_blob(&img.layer.0).unwrap());
        let err = layout
            .read_blob(&img.layer.0)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("a FIFO, not a regular file"), "{err}");
        // A write replaces it.
        layout
            .write_bytes(&img.layer.0, img.layer.1.clone())
            .await
            .unwrap();
        assert!(layout.has_blob(&img.layer.0).unwrap());

        // A blob linked out of the layout counts as absent and is not read.
        let outside = tmp();
        let target = outside.path().join("blob");
        std::fs::write(&target, &img.config.1).unwrap();
        let path = layout.blob_path(&img.config.0.digest);
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(!layout.has_blob(&img.config.0).unwrap());
        let err = layout
            .read_blob(&img.config.0)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("outside"), "{err}");

        // An index.json over its limit.
        let index = layout.index_path();
        let f = std::fs::File::create(&index).unwrap();
        f.set_len(INDEX_JSON_LIMIT + 1).unwrap();
        let err = Layout::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("67108865 bytes is more than"), "{err}");
    }

    #[tokio::test]
    async fn manifest_without_media_type_takes_the_descriptors() {
        let dir = tmp();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let img = image("no-mt");
        let body = format!(
            r#"{{"schemaVersion":2,"config":{},"layers":[]}}"#,
            serde_json::to_string(&img.config.0).unwrap()
        );
        let bytes = Bytes::from(body);
        let desc = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(&bytes), bytes.len() as u64);
        layout.write_bytes(&desc, bytes.clone()).await.unwrap();
        layout.set_tag(&desc, Some("t")).unwrap();
        let m = LayoutSource::open(lref(dir.path(), Some("t")))
            .unwrap()
            .resolve()
            .await
            .unwrap();
        assert_eq!(m.media_type(), mt::OCI_MANIFEST);
        assert_eq!(*m.bytes(), bytes);
    }
}
