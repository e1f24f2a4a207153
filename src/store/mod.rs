//! Where images live: the [`Source`] and [`Sink`] traits and their backends (registry,
//! OCI layout directory, OCI layout archive). Bytes move between them only in
//! [`crate::copy`].

/// The most referrers graft reads for one digest (the referrers API's answer, or a fallback
/// index plus a layout's own entries), and the most attachments one image may have: a list
/// of 4 MiB can name tens of thousands of descriptors, each costing a request.
pub const MAX_REFERRERS: usize = 1000;

pub mod archive;
pub mod index_json;
pub mod layout;
pub mod local;
pub mod memory;
pub mod open;
pub mod registry;
pub mod repo;
pub mod update;
mod verify;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::oci::{Descriptor, Digest, RawManifest};

pub use verify::verify_stream;

/// The most bytes of one manifest or index graft reads (what distribution accepts).
pub const MANIFEST_LIMIT: u64 = 4 << 20;

/// The most bytes of a layout's or archive's `index.json` graft reads. graft's own exports
/// stay far below it (an entry is a few hundred bytes).
pub const INDEX_JSON_LIMIT: u64 = 64 << 20;

/// The most bytes of an image config graft reads into memory.
pub const CONFIG_LIMIT: u64 = 64 << 20;

/// The most bytes of an `oci-layout` file graft reads (it holds one short field).
pub const LAYOUT_MARKER_LIMIT: u64 = 64 << 10;

/// A stream of blob bytes. Streams handed out by a [`Source`] are verified: they end with an
/// error instead of `None` when the digest or size does not match.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A repository a blob can be mounted from without moving its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountOrigin {
    /// Registry host (`host[:port]`).
    pub registry: String,
    /// Repository inside that registry.
    pub repository: String,
}

/// Something images can be read from.
#[async_trait]
pub trait Source: Send + Sync {
    /// A human-readable name for messages (`docker://host/repo:tag`, `oci:dir:tag`).
    fn name(&self) -> String;

    /// The manifest or index the source's reference points at.
    async fn resolve(&self) -> Result<RawManifest>;

    /// The digest of the manifest or index the reference points at; registries answer it with
    /// one HEAD request.
    async fn resolve_digest(&self) -> Result<Digest> {
        Ok(self.resolve().await?.digest().clone())
    }

    /// A manifest by its descriptor's digest, verified.
    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest>;

    /// The bytes of a blob, verified while streaming.
    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream>;

    /// Where the blob can be mounted from, if it lives in a registry.
    fn mount_origin(&self, _desc: &Descriptor) -> Option<MountOrigin> {
        None
    }
}

/// Something images can be written to.
#[async_trait]
pub trait Sink: Send + Sync {
    /// A human-readable name for messages.
    fn name(&self) -> String;

    /// Where this sink's blobs and manifests live (a registry repository, a layout), without
    /// the tag: two sinks with the same scope share them. Used to do each write once when
    /// several copies run at the same time.
    fn scope(&self) -> String {
        self.name()
    }

    /// Whether the blob is already present.
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool>;

    /// Try to mount the blob from `origin`; `Ok(false)` means the caller must upload it.
    async fn mount_blob(&self, _desc: &Descriptor, _origin: &MountOrigin) -> Result<bool> {
        Ok(false)
    }

    /// Store a blob from a stream. Nothing becomes visible unless every byte arrived and the
    /// digest and size match.
    async fn put_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<()>;

    /// Whether a manifest with this digest is already present.
    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool>;

    /// The digest `tag` currently points at, if the tag exists.
    async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>>;

    /// Store a manifest by digest (untagged). Everything it references must be present.
    async fn put_manifest(&self, manifest: &RawManifest) -> Result<()>;

    /// Store the root of a copy that has no tag; `Ok(false)` if it was already there.
    /// Registries keep it by digest; layouts also list it, untagged, in `index.json` so it
    /// stays reachable.
    async fn put_root(&self, manifest: &RawManifest) -> Result<bool> {
        if self.has_manifest(&manifest.descriptor()).await? {
            return Ok(false);
        }
        self.put_manifest(manifest).await?;
        Ok(true)
    }

    /// Store a manifest and point `tag` at it.
    async fn put_tag(&self, manifest: &RawManifest, tag: &str) -> Result<()>;

    /// Make the writes durable and visible (e.g. pack an archive). Called once at the end.
    async fn commit(&self) -> Result<()> {
        Ok(())
    }
}

/// Read a whole (small) blob into memory, verified; refuses blobs larger than `limit`.
pub async fn read_blob(src: &dyn Source, desc: &Descriptor, limit: u64) -> Result<Bytes> {
    use futures::TryStreamExt;
    if desc.size > limit {
        return Err(crate::Error::Invalid {
            what: format!("blob {}", desc.digest),
            reason: format!(
                "{} bytes is more than the {limit} bytes graft reads into memory",
                desc.size
            ),
        });
    }
    let chunks: Vec<Bytes> = src.blob(desc).await?.try_collect().await?;
    Ok(chunks.concat().into())
}
