//! A [`Source`] that remembers the small things it read: the root, manifests and configs.
//!
//! `graft refresh` warms one while the compat layer is being built, so reading the science
//! image (a handful of round trips) overlaps the build instead of following it. Layer blobs
//! are never kept: they stream through from the wrapped source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use crate::error::Result;
use crate::image::append::{not_runnable, CONFIG_LIMIT};
use crate::oci::{Descriptor, Digest, Platform, RawManifest};
use crate::store::{read_blob, BlobStream, MountOrigin, Source};

/// Wraps a source; see the module documentation.
pub struct Memo {
    inner: Arc<dyn Source>,
    root: OnceCell<RawManifest>,
    manifests: Mutex<HashMap<Digest, RawManifest>>,
    configs: Mutex<HashMap<Digest, Bytes>>,
}

impl Memo {
    /// Remember what is read from `inner`.
    pub fn new(inner: Arc<dyn Source>) -> Memo {
        Memo {
            inner,
            root: OnceCell::new(),
            manifests: Mutex::default(),
            configs: Mutex::default(),
        }
    }

    /// Read the root, the manifest of every runnable platform (of `platforms`, when given)
    /// and their configs, `jobs` at a time: what appending to the image will ask for.
    pub async fn warm(&self, jobs: usize, platforms: Option<&[Platform]>) -> Result<()> {
        let root = self.resolve().await?;
        let images = if root.is_index() {
            let entries: Vec<Descriptor> = root
                .view()
                .manifests
                .iter()
                .filter(|d| not_runnable(d).is_none())
                .filter(|d| match platforms {
                    None => true,
                    Some(ps) => ps
                        .iter()
                        .any(|p| d.platform.as_ref().is_some_and(|q| q.matches(p))),
                })
                .cloned()
                .collect();
            futures::stream::iter(entries)
                .map(|d| async move { self.manifest(&d).await })
                .buffered(jobs.max(1))
                .try_collect::<Vec<_>>()
                .await?
        } else {
            vec![root]
        };
        let configs: Vec<Descriptor> = images
            .iter()
            .filter(|m| !m.is_index())
            .filter_map(|m| m.view().config.clone())
            .filter(|c| c.size <= CONFIG_LIMIT)
            .collect();
        futures::stream::iter(configs)
            .map(|c| async move {
                let bytes = read_blob(self.inner.as_ref(), &c, CONFIG_LIMIT).await?;
                lock(&self.configs).insert(c.digest.clone(), bytes);
                Ok(())
            })
            .buffer_unordered(jobs.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Source for Memo {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn resolve(&self) -> Result<RawManifest> {
        self.root
            .get_or_try_init(|| self.inner.resolve())
            .await
            .cloned()
    }

    async fn resolve_digest(&self) -> Result<Digest> {
        match self.root.get() {
            Some(root) => Ok(root.digest().clone()),
            None => self.inner.resolve_digest().await,
        }
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        if let Some(m) = lock(&self.manifests).get(&desc.digest) {
            return Ok(m.clone());
        }
        let m = self.inner.manifest(desc).await?;
        lock(&self.manifests).insert(desc.digest.clone(), m.clone());
        Ok(m)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        // Kept configs were verified when they were read.
        if let Some(bytes) = lock(&self.configs).get(&desc.digest).cloned() {
            return Ok(Box::pin(futures::stream::once(async move { Ok(bytes) })));
        }
        self.inner.blob(desc).await
    }

    fn mount_origin(&self, desc: &Descriptor) -> Option<MountOrigin> {
        self.inner.mount_origin(desc)
    }
}
