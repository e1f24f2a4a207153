//! The registry store: a [`Registry`] client per host, and the [`RegistrySource`] and
//! [`RegistrySink`] that read and write one repository.

mod api;
pub mod auth;
mod client;
pub mod credentials;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use url::Url;

pub use api::Mount;
pub use client::{redact_url, Registry, RegistryConfig};

use crate::error::Result;
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::reference::DockerRef;
use crate::store::{BlobStream, MountOrigin, Sink, Source};

/// Shares one [`Registry`] client (and its tokens) per host and configuration.
#[derive(Debug, Default)]
pub struct RegistryPool {
    clients: Mutex<HashMap<String, Arc<Registry>>>,
}

impl RegistryPool {
    /// An empty pool.
    pub fn new() -> RegistryPool {
        RegistryPool::default()
    }

    /// The client for `host` under `key` (callers use different keys for different
    /// credentials), created with `cfg` on first use.
    pub fn get(&self, key: &str, host: &str, cfg: &RegistryConfig) -> Result<Arc<Registry>> {
        let mut clients = self.clients.lock().expect("pool lock");
        let k = format!("{key}\u{0}{host}");
        if let Some(c) = clients.get(&k) {
            return Ok(c.clone());
        }
        let c = Registry::new(host, cfg.clone())?;
        clients.insert(k, c.clone());
        Ok(c)
    }
}

/// Reads an image from a registry repository.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    client: Arc<Registry>,
    reference: DockerRef,
}

impl RegistrySource {
    /// A source for `reference` using `client` (which must be for `reference.registry`).
    pub fn new(client: Arc<Registry>, reference: DockerRef) -> RegistrySource {
        RegistrySource { client, reference }
    }

    /// The client.
    pub fn client(&self) -> &Arc<Registry> {
        &self.client
    }

    /// The reference.
    pub fn reference(&self) -> &DockerRef {
        &self.reference
    }
}

#[async_trait]
impl Source for RegistrySource {
    fn name(&self) -> String {
        format!("docker://{}", self.reference)
    }

    async fn resolve(&self) -> Result<RawManifest> {
        self.client
            .get_manifest(&self.reference.repository, &self.reference.reference())
            .await
    }

    async fn resolve_digest(&self) -> Result<Digest> {
        if let Some(d) = &self.reference.digest {
            return Ok(d.clone());
        }
        let reference = self.reference.reference();
        self.client
            .head_manifest(&self.reference.repository, &reference)
            .await?
            .ok_or_else(|| crate::Error::NotFound {
                what: format!("manifest {}", self.reference),
                detail: None,
            })
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.client
            .get_manifest(&self.reference.repository, &desc.digest.to_string())
            .await
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        self.client.get_blob(&self.reference.repository, desc).await
    }

    fn mount_origin(&self, _desc: &Descriptor) -> Option<MountOrigin> {
        Some(MountOrigin {
            registry: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
        })
    }
}

/// Writes images into a registry repository.
#[derive(Debug)]
pub struct RegistrySink {
    client: Arc<Registry>,
    reference: DockerRef,
    /// Upload sessions left open by a mount that answered 202, by digest.
    sessions: Mutex<HashMap<Digest, Url>>,
}

impl RegistrySink {
    /// A sink for `reference`'s repository using `client`.
    pub fn new(client: Arc<Registry>, reference: DockerRef) -> RegistrySink {
        RegistrySink {
            client,
            reference,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn repo(&self) -> &str {
        &self.reference.repository
    }
}

#[async_trait]
impl Sink for RegistrySink {
    fn name(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn scope(&self) -> String {
        format!(
            "docker://{}/{}",
            self.reference.registry, self.reference.repository
        )
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        self.client.has_blob(self.repo(), desc).await
    }

    async fn mount_blob(&self, desc: &Descriptor, origin: &MountOrigin) -> Result<bool> {
        if origin.registry != self.reference.registry || origin.repository == self.repo() {
            return Ok(false);
        }
        match self
            .client
            .mount_blob(self.repo(), desc, &origin.repository)
            .await?
        {
            Mount::Mounted => Ok(true),
            Mount::Refused => Ok(false),
            Mount::Session(url) => {
                self.sessions
                    .lock()
                    .expect("sessions lock")
                    .insert(desc.digest.clone(), url);
                Ok(false)
            }
        }
    }

    async fn put_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<()> {
        let session = self
            .sessions
            .lock()
            .expect("sessions lock")
            .remove(&desc.digest);
        self.client
            .upload_blob(self.repo(), desc, data, session)
            .await
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool> {
        Ok(self
            .client
            .head_manifest(self.repo(), &desc.digest.to_string())
            .await?
            .is_some())
    }

    async fn tag_digest(&self, tag: &str) -> Result<Option<Digest>> {
        self.client.head_manifest(self.repo(), tag).await
    }

    async fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        self.client
            .put_manifest(self.repo(), &manifest.digest().to_string(), manifest)
            .await
    }

    async fn put_tag(&self, manifest: &RawManifest, tag: &str) -> Result<()> {
        self.client.put_manifest(self.repo(), tag, manifest).await
    }
}
