//! Where an image's signatures live: the image's own repository (a registry repository or an
//! OCI layout directory), read and written through the store layer.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::reference::{ImageRef, DOCKER_HUB_HOST};
use crate::store::open::{open_repository, open_source, Endpoint};
use crate::store::repo::Repository;
use crate::store::{read_blob, Source};

/// The largest signature payload, envelope or bundle graft reads into memory.
pub const ATTACHMENT_LIMIT: u64 = 16 << 20;

/// An image's repository as signing sees it: the store's [`Repository`] handle, and the
/// image reference it was opened with (which names the signature's `docker-reference`).
pub struct Repo {
    image: ImageRef,
    store: Box<dyn Repository>,
    source: Box<dyn Source>,
    referrers_api: tokio::sync::OnceCell<bool>,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repo({})", self.image)
    }
}

impl Repo {
    async fn with(image: &ImageRef, endpoint: &Endpoint, write: bool) -> Result<Repo> {
        Ok(Repo {
            image: image.clone(),
            store: open_repository(image, endpoint, write)?,
            source: open_source(image, endpoint).await?,
            referrers_api: tokio::sync::OnceCell::new(),
        })
    }

    /// The repository of `image` (`docker://` or `oci:`; archives cannot be signed in place).
    pub async fn open(image: &ImageRef, endpoint: &Endpoint) -> Result<Repo> {
        if let ImageRef::Archive(_) = image {
            return Err(Error::Unsupported(format!(
                "{image}: signatures cannot be added to an oci-archive in place; \
                 copy it to oci:DIR or a registry first"
            )));
        }
        Repo::with(image, endpoint, true).await
    }

    /// The repository of `image` as a copy destination (any transport): like [`Repo::open`],
    /// and `oci-archive:` too, whose writes go into the state the archive's sinks of this
    /// process share, and become visible in the file when the sink the copy writes through
    /// is committed. Used to merge attachments into a destination's own (`graft copy
    /// --with-attachments`, `graft mirror`).
    pub async fn open_destination(image: &ImageRef, endpoint: &Endpoint) -> Result<Repo> {
        Repo::with(image, endpoint, true).await
    }

    /// The repository of `image`, for reading only (any transport, `oci-archive:` too).
    pub async fn open_read(image: &ImageRef, endpoint: &Endpoint) -> Result<Repo> {
        Repo::with(image, endpoint, false).await
    }

    /// The store's handle of the repository.
    pub fn store(&self) -> &dyn Repository {
        self.store.as_ref()
    }

    /// The source the repository was opened with (reads manifests and blobs by digest).
    pub fn source(&self) -> &dyn Source {
        self.source.as_ref()
    }

    /// The reference the repository was opened with.
    pub fn image(&self) -> &ImageRef {
        &self.image
    }

    /// The `docker-reference` a signature names by default: `registry/repository` as cosign
    /// writes it (`index.docker.io/…` for Docker Hub), or the layout directory's name.
    pub fn identity(&self) -> String {
        match &self.image {
            ImageRef::Docker(d) if d.registry == DOCKER_HUB_HOST => {
                format!("index.docker.io/{}", d.repository)
            }
            ImageRef::Docker(d) => d.name(),
            ImageRef::Layout(l) | ImageRef::Archive(l) => l
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| l.path.display().to_string()),
        }
    }

    /// `registry/repo@digest` or `oci:DIR@digest`, for messages.
    pub fn describe(&self, digest: &Digest) -> String {
        match &self.image {
            ImageRef::Docker(d) => format!("{}@{digest}", d.name()),
            ImageRef::Layout(l) | ImageRef::Archive(l) => {
                format!("oci:{}@{digest}", l.path.display())
            }
        }
    }

    /// `docker://registry/repo` or `oci:DIR`, for messages.
    pub fn describe_repo(&self) -> String {
        match &self.image {
            ImageRef::Docker(d) => format!("docker://{}", d.name()),
            ImageRef::Layout(l) | ImageRef::Archive(l) => format!("oci:{}", l.path.display()),
        }
    }

    /// The manifest or index the opening reference points at.
    pub async fn resolve(&self) -> Result<RawManifest> {
        self.source.resolve().await
    }

    /// A manifest by digest (verified).
    pub async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.source.manifest(desc).await
    }

    /// Another tag of the same repository (in a multi-image layout named by mirror, the tag
    /// of the same original repository: see [`crate::store::repo`]).
    pub fn tag_ref(&self, tag: &str) -> ImageRef {
        self.store.reference(Some(tag))
    }

    /// The manifest `tag` points at, or `None` when the tag does not exist.
    pub async fn tagged(&self, tag: &str) -> Result<Option<RawManifest>> {
        self.store.tagged(tag).await
    }

    /// The digest `tag` points at (a HEAD on registries); `tag` is a plain tag, named as
    /// [`Repo::tag_ref`] says.
    pub async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>> {
        match self.store.resolve(tag).await {
            Ok(d) => Ok(d),
            Err(e) if matches!(e.root(), Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A small blob, verified, in memory.
    pub async fn blob(&self, desc: &Descriptor) -> Result<Bytes> {
        read_blob(self.source.as_ref(), desc, ATTACHMENT_LIMIT).await
    }

    /// Store `bytes` as a blob unless it is present.
    pub async fn put_blob(&self, desc: &Descriptor, bytes: Bytes) -> Result<()> {
        self.store.put_blob(desc, bytes, true).await
    }

    /// Upload a blob without checking whether it is there (for blobs known to be new).
    pub async fn upload_blob(&self, desc: &Descriptor, bytes: Bytes) -> Result<()> {
        self.store.put_blob(desc, bytes, false).await
    }

    /// Whether a manifest is present (by digest).
    pub async fn has_manifest(&self, desc: &Descriptor) -> Result<bool> {
        self.store.sink()?.has_manifest(desc).await
    }

    /// Store a manifest by digest (untagged); `Ok(false)` when it was already there.
    pub async fn put_manifest(&self, m: &RawManifest) -> Result<bool> {
        self.store.put_manifest(m).await
    }

    /// Store a manifest and point `tag` at it (a plain tag, named as [`Repo::tag_ref`] says).
    pub async fn put_tag(&self, m: &RawManifest, tag: &str) -> Result<()> {
        self.store.put_tag(m, tag).await
    }

    /// Whether the registry implements the referrers API (asked once, about `digest`, then
    /// remembered for this repository).
    pub async fn has_referrers_api(&self, digest: &Digest) -> Result<bool> {
        self.referrers_api
            .get_or_try_init(|| async { Ok(self.referrers_api(digest).await?.is_some()) })
            .await
            .copied()
    }

    /// Referrers of `digest` from the registry's referrers API; `None` when there is no such
    /// API (registries that lack it, and OCI layouts).
    pub async fn referrers_api(&self, digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        self.store.referrers(digest).await
    }

    /// Referrers of `digest` that the store lists as entries of their own: in OCI layouts and
    /// archives, the untagged `index.json` entries with that subject (how `oras attach
    /// --oci-layout` and cosign keep them there). Empty for registries.
    pub async fn listed_referrers(&self, digest: &Digest) -> Result<Vec<Descriptor>> {
        self.store.listed_referrers(digest).await
    }

    /// The referrers of `digest` where there is no referrers API: those of the `sha256-<hex>`
    /// fallback index (returned too, for copies that carry it) and, in OCI layouts and
    /// archives, the `index.json` entries with that subject (how oras keeps them). A layout
    /// may hold either or both; each referrer is listed once.
    pub async fn referrers_without_api(
        &self,
        digest: &Digest,
    ) -> Result<(Option<RawManifest>, Vec<Descriptor>)> {
        let tag = crate::sign::attach::referrers_tag(digest);
        let index = self
            .tagged(&tag)
            .await
            .map_err(|e| e.context(format!("looking up {tag} in {}", self.describe_repo())))?
            .filter(RawManifest::is_index);
        let mut list = index
            .as_ref()
            .map(|m| m.view().manifests.clone())
            .unwrap_or_default();
        let listed = self
            .listed_referrers(digest)
            .await
            .map_err(|e| e.context(format!("listing referrers of {}", self.describe(digest))))?;
        let mut seen: std::collections::HashSet<Digest> =
            list.iter().map(|d| d.digest.clone()).collect();
        list.extend(listed.into_iter().filter(|d| seen.insert(d.digest.clone())));
        Ok((index, list))
    }
}
