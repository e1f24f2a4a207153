//! Opening a [`Source`] or [`Sink`] for an [`ImageRef`], whatever its transport.

use std::sync::Arc;

use crate::error::Result;
use crate::reference::ImageRef;
use crate::store::archive::{ArchiveSink, ArchiveSource};
use crate::store::layout::{LayoutSink, LayoutSource};
use crate::store::local::LocalStores;
use crate::store::registry::{RegistryConfig, RegistryPool, RegistrySink, RegistrySource};
use crate::store::repo::{LayoutRepository, RegistryRepository, Repository};
use crate::store::{Sink, Source};

/// Registry settings for one side of an operation, the pool its clients come from, and the state
/// of the local stores it opens.
#[derive(Clone)]
pub struct Endpoint {
    /// Shared clients (tokens are reused across sources and sinks with the same key).
    pub pool: Arc<RegistryPool>,
    /// Pool key: sides with different credentials use different keys.
    pub key: String,
    /// TLS, credentials, retries.
    pub config: RegistryConfig,
    /// Layout locks and archive writers (both sides of a copy share one).
    pub local: Arc<LocalStores>,
}

impl Endpoint {
    /// An endpoint with its own pool.
    pub fn new(config: RegistryConfig) -> Endpoint {
        Endpoint {
            pool: Arc::new(RegistryPool::new()),
            key: "default".into(),
            config,
            local: LocalStores::new(),
        }
    }
}

/// Open `r` for reading.
pub async fn open_source(r: &ImageRef, ep: &Endpoint) -> Result<Box<dyn Source>> {
    Ok(match r {
        ImageRef::Docker(d) => {
            let client = ep.pool.get(&ep.key, &d.registry, &ep.config)?;
            Box::new(RegistrySource::new(client, d.clone()))
        }
        ImageRef::Layout(l) => Box::new(LayoutSource::open_in(l.clone(), &ep.local)?),
        ImageRef::Archive(l) => Box::new(ArchiveSource::open(l.clone(), &ep.local)?),
    })
}

/// Open `r` for writing.
pub async fn open_sink(r: &ImageRef, ep: &Endpoint) -> Result<Box<dyn Sink>> {
    Ok(match r {
        ImageRef::Docker(d) => {
            let client = ep.pool.get(&ep.key, &d.registry, &ep.config)?;
            Box::new(RegistrySink::new(client, d.clone()))
        }
        ImageRef::Layout(l) => Box::new(LayoutSink::open(l.clone(), &ep.local)?),
        ImageRef::Archive(l) => Box::new(ArchiveSink::open(l.clone(), &ep.local)?),
    })
}

/// The repository `r` names (its tag or digest only names a namespace in a multi-image
/// layout: see [`crate::store::repo`]). With `write`, its sink is opened (a layout directory is
/// created if needed); otherwise it must exist (registries are not asked until used).
pub fn open_repository(r: &ImageRef, ep: &Endpoint, write: bool) -> Result<Box<dyn Repository>> {
    Ok(match r {
        ImageRef::Docker(d) => {
            let client = ep.pool.get(&ep.key, &d.registry, &ep.config)?;
            Box::new(RegistryRepository::new(client, d))
        }
        ImageRef::Layout(l) => Box::new(LayoutRepository::open(l, false, write, &ep.local)?),
        ImageRef::Archive(l) => Box::new(LayoutRepository::open(l, true, write, &ep.local)?),
    })
}

/// The tags a copy into `r` writes: the reference's tag, if any.
pub fn destination_tags(r: &ImageRef) -> Vec<String> {
    match r {
        ImageRef::Docker(d) if d.digest.is_none() => d.tag.clone().into_iter().collect(),
        ImageRef::Docker(_) => Vec::new(),
        ImageRef::Layout(l) | ImageRef::Archive(l) => l.tag.clone().into_iter().collect(),
    }
}
