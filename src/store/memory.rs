//! An in-memory [`Source`] and [`Sink`]: blobs, manifests and tags in maps, and a log of every
//! read and write in the order it happened.
//!
//! Made for tests of the copy engine and of what builds on it: they seed a store, copy, and
//! assert on [`MemoryStore::events`] (blobs before the manifests that list them, tags last,
//! each digest written once) without a registry or a temporary directory. It checks what a
//! registry checks: a blob's bytes must match its descriptor, and a manifest may be written
//! only when everything it lists is already there. Every request yields to the runtime once,
//! as a network round trip would, so copies running at the same time really interleave.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::store::{verify_stream, BlobStream, Sink, Source};

/// One request a [`MemoryStore`] answered, in [`MemoryStore::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A blob was read through [`Source::blob`].
    ReadBlob(Digest),
    /// A manifest was read through [`Source::manifest`].
    ReadManifest(Digest),
    /// A blob was stored through [`Sink::put_blob`].
    PutBlob(Digest),
    /// A manifest was stored (untagged) through [`Sink::put_manifest`].
    PutManifest(Digest),
    /// A manifest was stored and a tag pointed at it through [`Sink::put_tag`].
    Tag(String, Digest),
}

#[derive(Debug, Default)]
struct State {
    blobs: HashMap<Digest, Bytes>,
    manifests: HashMap<Digest, RawManifest>,
    tags: BTreeMap<String, Digest>,
    events: Vec<Event>,
    /// Digests whose writes fail (see [`MemoryStore::fail_writes_of`]).
    failing: HashSet<Digest>,
}

/// Blobs, manifests and tags held in memory; see the module documentation.
///
/// Clones made with [`MemoryStore::at`] share the contents and the log: one handle can be the
/// sink of one copy and another the source of the next.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    name: String,
    /// The tag [`Source::resolve`] reads.
    tag: Option<String>,
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store; `name` appears in messages (`memory:NAME`) and is its sink scope.
    pub fn new(name: &str) -> MemoryStore {
        MemoryStore {
            name: name.to_string(),
            tag: None,
            state: Arc::default(),
        }
    }

    /// Another handle on the same contents whose [`Source::resolve`] reads `tag`.
    pub fn at(&self, tag: &str) -> MemoryStore {
        MemoryStore {
            tag: Some(tag.to_string()),
            ..self.clone()
        }
    }

    /// `memory:NAME[:TAG]`, for messages.
    fn label(&self) -> String {
        match &self.tag {
            Some(t) => format!("memory:{}:{t}", self.name),
            None => format!("memory:{}", self.name),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves consistent maps behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store `bytes` as a blob without logging it (seeding); returns its descriptor.
    pub fn insert_blob(&self, media_type: &str, bytes: impl Into<Bytes>) -> Descriptor {
        let bytes = bytes.into();
        let desc = Descriptor::new(media_type, Digest::sha256(&bytes), bytes.len() as u64);
        self.state().blobs.insert(desc.digest.clone(), bytes);
        desc
    }

    /// Store a manifest without logging it or checking what it lists (seeding); returns its
    /// descriptor.
    pub fn insert_manifest(&self, manifest: &RawManifest) -> Descriptor {
        self.state()
            .manifests
            .insert(manifest.digest().clone(), manifest.clone());
        manifest.descriptor()
    }

    /// Point `tag` at `digest` without logging it (seeding).
    pub fn insert_tag(&self, tag: &str, digest: &Digest) {
        self.state().tags.insert(tag.to_string(), digest.clone());
    }

    /// Make every later write of `digest` (blob or manifest) fail, as a broken sink would.
    pub fn fail_writes_of(&self, digest: &Digest) {
        self.state().failing.insert(digest.clone());
    }

    /// Every request answered so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.state().events.clone()
    }

    /// Forget the log (the contents stay).
    pub fn clear_events(&self) {
        self.state().events.clear();
    }

    /// The tags and the digests they point at.
    pub fn tags(&self) -> BTreeMap<String, Digest> {
        self.state().tags.clone()
    }

    /// Whether a blob with this digest is stored.
    pub fn contains_blob(&self, digest: &Digest) -> bool {
        self.state().blobs.contains_key(digest)
    }

    /// Whether a manifest with this digest is stored.
    pub fn contains_manifest(&self, digest: &Digest) -> bool {
        self.state().manifests.contains_key(digest)
    }

    fn check_write(state: &State, digest: &Digest) -> Result<()> {
        if state.failing.contains(digest) {
            return Err(Error::Invalid {
                what: format!("write of {digest}"),
                reason: "failure injected by the test".into(),
            });
        }
        Ok(())
    }

    /// Refuse a manifest that lists something not stored, as registries do.
    fn check_listed(state: &State, m: &RawManifest) -> Result<()> {
        let v = m.view();
        let missing_blob = v
            .config
            .iter()
            .chain(&v.layers)
            .find(|d| !state.blobs.contains_key(&d.digest));
        let missing_manifest = v
            .manifests
            .iter()
            .find(|d| !state.manifests.contains_key(&d.digest));
        match missing_blob.or(missing_manifest) {
            None => Ok(()),
            Some(d) => Err(Error::NotFound {
                what: format!("{} listed in manifest {}", d.digest, m.digest()),
                detail: Some("it must be written before the manifest".into()),
            }),
        }
    }
}

/// Where a real store would wait for an answer.
async fn round_trip() {
    tokio::task::yield_now().await;
}

fn not_found(what: String) -> Error {
    Error::NotFound { what, detail: None }
}

#[async_trait]
impl Source for MemoryStore {
    fn name(&self) -> String {
        self.label()
    }

    async fn resolve(&self) -> Result<RawManifest> {
        round_trip().await;
        let state = self.state();
        let tag = self
            .tag
            .as_ref()
            .ok_or_else(|| not_found(format!("a tag to resolve in {}", self.label())))?;
        state
            .tags
            .get(tag)
            .and_then(|d| state.manifests.get(d))
            .cloned()
            .ok_or_else(|| not_found(format!("tag {tag} in {}", self.label())))
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        round_trip().await;
        let mut state = self.state();
        state.events.push(Event::ReadManifest(desc.digest.clone()));
        state
            .manifests
            .get(&desc.digest)
            .cloned()
            .ok_or_else(|| not_found(format!("manifest {}", desc.digest)))
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        round_trip().await;
        let bytes = {
            let mut state = self.state();
            state.events.push(Event::ReadBlob(desc.digest.clone()));
            state.blobs.get(&desc.digest).cloned()
        }
        .ok_or_else(|| not_found(format!("blob {}", desc.digest)))?;
        let stream = futures::stream::once(async move { Ok(bytes) });
        Ok(verify_stream(
            Box::pin(stream),
            desc,
            format!("blob {}", desc.digest),
        ))
    }
}

#[async_trait]
impl Sink for MemoryStore {
    fn name(&self) -> String {
        self.label()
    }

    fn scope(&self) -> String {
        format!("memory:{}", self.name)
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        round_trip().await;
        Ok(self.contains_blob(&desc.digest))
    }

    async fn put_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<()> {
        round_trip().await;
        Self::check_write(&self.state(), &desc.digest)?;
        let chunks: Vec<Bytes> = data.try_collect().await?;
        let bytes = Bytes::from(chunks.concat());
        if bytes.len() as u64 != desc.size {
            return Err(Error::SizeMismatch {
                what: format!("blob {}", desc.digest),
                expected: desc.size,
                found: bytes.len() as u64,
            });
        }
        desc.digest
            .verify(&format!("blob {}", desc.digest), &bytes)?;
        let mut state = self.state();
        state.events.push(Event::PutBlob(desc.digest.clone()));
        state.blobs.insert(desc.digest.clone(), bytes);
        Ok(())
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool> {
        round_trip().await;
        Ok(self.contains_manifest(&desc.digest))
    }

    async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>> {
        round_trip().await;
        Ok(self.state().tags.get(tag).cloned())
    }

    async fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        round_trip().await;
        let mut state = self.state();
        Self::check_write(&state, manifest.digest())?;
        Self::check_listed(&state, manifest)?;
        state
            .events
            .push(Event::PutManifest(manifest.digest().clone()));
        state
            .manifests
            .insert(manifest.digest().clone(), manifest.clone());
        Ok(())
    }

    async fn put_tag(&self, manifest: &RawManifest, tag: &str) -> Result<()> {
        round_trip().await;
        let mut state = self.state();
        Self::check_write(&state, manifest.digest())?;
        Self::check_listed(&state, manifest)?;
        state
            .events
            .push(Event::Tag(tag.to_string(), manifest.digest().clone()));
        state
            .manifests
            .insert(manifest.digest().clone(), manifest.clone());
        state
            .tags
            .insert(tag.to_string(), manifest.digest().clone());
        Ok(())
    }
}
