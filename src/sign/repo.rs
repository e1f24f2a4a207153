//! Where an image's signatures live: the image's own repository (a registry repository or an
//! OCI layout directory), read and written through the store layer.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::reference::{DockerRef, ImageRef, DOCKER_HUB_HOST};
use crate::store::open::{open_sink, open_source, Endpoint};
use crate::store::registry::Registry;
use crate::store::{read_blob, BlobStream, Sink, Source};

/// The largest signature payload, envelope or bundle graft reads into memory.
pub const ATTACHMENT_LIMIT: u64 = 16 << 20;

/// A repository that holds images and their signatures, attestations and referrers.
pub struct Repo {
    image: ImageRef,
    endpoint: Endpoint,
    source: Box<dyn Source>,
    /// `None` for a repository opened read-only ([`Repo::open_read`]).
    sink: Option<Box<dyn Sink>>,
    registry: Option<(Arc<Registry>, DockerRef)>,
    referrers_api: tokio::sync::OnceCell<bool>,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repo({})", self.image)
    }
}

impl Repo {
    /// The repository of `image` (`docker://` or `oci:`; archives cannot be signed in place).
    pub async fn open(image: &ImageRef, endpoint: &Endpoint) -> Result<Repo> {
        let registry = match image {
            ImageRef::Docker(d) => Some((
                endpoint
                    .pool
                    .get(&endpoint.key, &d.registry, &endpoint.config)?,
                d.clone(),
            )),
            ImageRef::Layout(_) => None,
            ImageRef::Archive(_) => {
                return Err(Error::Unsupported(format!(
                    "{image}: signatures cannot be added to an oci-archive in place; \
                     copy it to oci:DIR or a registry first"
                )))
            }
        };
        let source = open_source(image, endpoint).await?;
        let sink = Some(open_sink(image, endpoint).await?);
        Ok(Repo {
            image: image.clone(),
            endpoint: endpoint.clone(),
            source,
            sink,
            registry,
            referrers_api: tokio::sync::OnceCell::new(),
        })
    }

    /// The repository of `image` as a copy destination (any transport): like [`Repo::open`],
    /// and `oci-archive:` too, whose writes go into the state the archive's sinks of this
    /// process share, and become visible in the file when the sink the copy writes through
    /// is committed. Used to merge attachments into a destination's own (`graft copy
    /// --with-attachments`, `graft mirror`).
    pub async fn open_destination(image: &ImageRef, endpoint: &Endpoint) -> Result<Repo> {
        match image {
            ImageRef::Archive(_) => Ok(Repo {
                image: image.clone(),
                endpoint: endpoint.clone(),
                source: open_source(image, endpoint).await?,
                sink: Some(open_sink(image, endpoint).await?),
                registry: None,
                referrers_api: tokio::sync::OnceCell::new(),
            }),
            _ => Repo::open(image, endpoint).await,
        }
    }

    /// The repository of `image`, for reading only (any transport, `oci-archive:` too).
    pub async fn open_read(image: &ImageRef, endpoint: &Endpoint) -> Result<Repo> {
        let registry = match image {
            ImageRef::Docker(d) => Some((
                endpoint
                    .pool
                    .get(&endpoint.key, &d.registry, &endpoint.config)?,
                d.clone(),
            )),
            _ => None,
        };
        Ok(Repo {
            image: image.clone(),
            endpoint: endpoint.clone(),
            source: open_source(image, endpoint).await?,
            sink: None,
            registry,
            referrers_api: tokio::sync::OnceCell::new(),
        })
    }

    /// The source the repository was opened with (reads manifests and blobs by digest).
    pub fn source(&self) -> &dyn Source {
        self.source.as_ref()
    }

    fn sink(&self) -> Result<&dyn Sink> {
        self.sink
            .as_deref()
            .ok_or_else(|| Error::Unsupported(format!("{}: opened for reading only", self.image)))
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
    /// of the same original repository: see [`crate::attachments::sibling`]).
    pub fn tag_ref(&self, tag: &str) -> ImageRef {
        crate::attachments::sibling(&self.image, tag)
    }

    /// The manifest `tag` points at, or `None` when the tag does not exist.
    pub async fn tagged(&self, tag: &str) -> Result<Option<RawManifest>> {
        let src = open_source(&self.tag_ref(tag), &self.endpoint).await?;
        match src.resolve().await {
            Ok(m) => Ok(Some(m)),
            Err(e) if matches!(e.root(), Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The digest `tag` points at (a HEAD on registries); `tag` is a plain tag, named as
    /// [`Repo::tag_ref`] says.
    pub async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>> {
        let found = match &self.sink {
            Some(sink) => {
                sink.tag_digest(&crate::attachments::sibling_tag(&self.image, tag))
                    .await
            }
            None => match open_source(&self.tag_ref(tag), &self.endpoint).await {
                Ok(src) => src.resolve_digest().await.map(Some),
                Err(e) => Err(e),
            },
        };
        match found {
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
        if self.sink()?.has_blob(desc).await? {
            return Ok(());
        }
        let stream: BlobStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
        self.sink()?.put_blob(desc, stream).await
    }

    /// Upload a blob without checking whether it is there (for blobs known to be new).
    pub async fn upload_blob(&self, desc: &Descriptor, bytes: Bytes) -> Result<()> {
        let stream: BlobStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
        self.sink()?.put_blob(desc, stream).await
    }

    /// Whether a manifest is present (by digest).
    pub async fn has_manifest(&self, desc: &Descriptor) -> Result<bool> {
        self.sink()?.has_manifest(desc).await
    }

    /// Store a manifest by digest (untagged); `Ok(false)` when it was already there.
    pub async fn put_manifest(&self, m: &RawManifest) -> Result<bool> {
        if self.sink()?.has_manifest(&m.descriptor()).await? {
            return Ok(false);
        }
        self.sink()?.put_manifest(m).await?;
        Ok(true)
    }

    /// Store a manifest and point `tag` at it (a plain tag, named as [`Repo::tag_ref`] says).
    pub async fn put_tag(&self, m: &RawManifest, tag: &str) -> Result<()> {
        self.sink()?
            .put_tag(m, &crate::attachments::sibling_tag(&self.image, tag))
            .await
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
        match &self.registry {
            Some((client, d)) => client.referrers(&d.repository, digest).await,
            None => Ok(None),
        }
    }
}
