//! Repositories: one handle per backend for everything that is about a repository rather than
//! one image (regclient's scheme interface is the model).
//!
//! A [`Repository`] lists tags, resolves a tag with one HEAD, reads manifests by digest, asks
//! the referrers API, writes a manifest under a tag (children and blobs must be there),
//! deletes a manifest, and opens [`Source`]s for images in it and the one [`Sink`] that writes
//! into it. Backend state (a registry client with credentials bound to its origin, a layout
//! directory, an archive's writer) is held once in the handle; callers never match on the
//! transport.
//!
//! **Namespaces in multi-image layouts.** `graft mirror` names the entries of one `oci:` or
//! `oci-archive:` by their original references (`host/repo:tag`), so a layout can hold several
//! repositories. A layout repository opened for `oci:DIR:host/repo:tag` is the repository
//! `host/repo` in that layout: its plain tag `t` is stored as `host/repo:t`, and
//! [`Repository::list_tags`] lists only its own tags. A layout opened without such a name is
//! one repository whose tags are the entries' names as written.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::reference::{DockerRef, ImageRef, LayoutRef};
use crate::store::archive::{ArchiveSink, ArchiveSource};
use crate::store::index_json::REF_NAME;
use crate::store::layout::{Layout, LayoutSink, LayoutSource};
use crate::store::local::LocalStores;
use crate::store::registry::{Registry, RegistrySink, RegistrySource};
use crate::store::{BlobStream, Sink, Source};

/// What a repository can do beyond reading and writing images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Manifests can be deleted (registries may still refuse: distribution answers 405 unless
    /// deletes are enabled in its configuration).
    pub delete: bool,
    /// Blobs can be mounted into it from another repository of the same registry.
    pub mount: bool,
    /// It can answer the OCI 1.1 referrers API (registries: asked per registry, see
    /// [`Repository::referrers`]; layouts and archives never).
    pub referrers_api: bool,
    /// Referrers are kept as entries of their own that name their subject, found by
    /// [`Repository::listed_referrers`]: OCI layouts and archives, where oras lists them
    /// untagged in `index.json` (no registry: there the API or the fallback tag lists them).
    pub referrers_listed: bool,
}

/// A repository in a registry, an OCI layout directory or an OCI layout archive.
#[async_trait]
pub trait Repository: Send + Sync {
    /// `docker://host/repo`, `oci:DIR` or `oci-archive:FILE` (with the namespace, if any), for
    /// messages.
    fn name(&self) -> String;

    /// What the backend can do. `referrers_api` is `true` for every registry: whether a
    /// particular registry implements it is found out by [`Repository::referrers`].
    fn capabilities(&self) -> Capabilities;

    /// The reference of `tag` (or of the repository itself, without one) in this repository.
    fn reference(&self, tag: Option<&str>) -> ImageRef;

    /// Every tag, in the backend's order (registries sort them; layouts keep `index.json`
    /// order).
    async fn list_tags(&self) -> Result<Vec<String>>;

    /// The digest `tag` points at (one HEAD on registries), `None` when the tag does not exist.
    async fn resolve(&self, tag: &str) -> Result<Option<Digest>>;

    /// The manifest `tag` points at (verified), `None` when the tag does not exist.
    async fn tagged(&self, tag: &str) -> Result<Option<RawManifest>> {
        match self.source(Some(tag))?.resolve().await {
            Ok(m) => Ok(Some(m)),
            Err(e) if matches!(e.root(), Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A manifest by its digest (verified).
    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.source(None)?.manifest(desc).await
    }

    /// The referrers of `subject` from the referrers API, `None` when there is no such API
    /// (a registry without it, a layout, an archive): then the tag-schema fallback index
    /// `sha256-<hex>` lists them.
    async fn referrers(&self, subject: &Digest) -> Result<Option<Vec<Descriptor>>>;

    /// The referrers of `subject` the store lists as entries of their own (see
    /// [`Capabilities::referrers_listed`]): in an OCI layout or archive, the `index.json`
    /// entries, tagged or not, whose manifest's `subject` is `subject` (how `oras attach
    /// --oci-layout` keeps them). Empty for registries. Complements the fallback index: a
    /// layout may have either, or both.
    async fn listed_referrers(&self, _subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(Vec::new())
    }

    /// Delete the manifest `digest` (and with it, in registries, every tag pointing at it).
    async fn delete_manifest(&self, digest: &Digest) -> Result<()>;

    /// A source for the image `tag` (or, without a tag, the repository's only image; manifests
    /// and blobs are read by digest either way).
    fn source(&self, tag: Option<&str>) -> Result<Box<dyn Source>>;

    /// The sink that writes into this repository (opened once; every call shares it).
    fn sink(&self) -> Result<&dyn Sink>;

    /// Store a manifest under `tag` (a plain tag of this repository; the manifest's children
    /// and blobs must be present): one manifest PUT on registries.
    async fn put_tag(&self, manifest: &RawManifest, tag: &str) -> Result<()> {
        self.sink()?.put_tag(manifest, &self.stored_tag(tag)).await
    }

    /// Store a manifest by digest (untagged); `Ok(false)` when it was already there.
    async fn put_manifest(&self, manifest: &RawManifest) -> Result<bool> {
        let sink = self.sink()?;
        if sink.has_manifest(&manifest.descriptor()).await? {
            return Ok(false);
        }
        sink.put_manifest(manifest).await?;
        Ok(true)
    }

    /// Store a small blob unless it is present; with `check: false` it is uploaded without
    /// asking (for blobs known to be new: a HEAD costs a registry a third of an upload).
    async fn put_blob(&self, desc: &Descriptor, bytes: Bytes, check: bool) -> Result<()> {
        let sink = self.sink()?;
        if check && sink.has_blob(desc).await? {
            return Ok(());
        }
        sink.put_blob(desc, bytes_stream(bytes)).await
    }

    /// The name `tag` is stored under by [`Repository::sink`] (the namespaced name in a
    /// multi-image layout, else `tag`).
    fn stored_tag(&self, tag: &str) -> String {
        tag.to_string()
    }
}

/// A stream of one chunk.
pub fn bytes_stream(bytes: Bytes) -> BlobStream {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}

/// The repository of `r.repository` in the registry `client` talks to.
pub struct RegistryRepository {
    client: Arc<Registry>,
    repo: DockerRef,
    sink: RegistrySink,
}

impl RegistryRepository {
    /// The repository of `image` (its tag or digest is ignored); `client` must be for
    /// `image.registry`.
    pub fn new(client: Arc<Registry>, image: &DockerRef) -> RegistryRepository {
        let repo = DockerRef {
            tag: None,
            digest: None,
            ..image.clone()
        };
        RegistryRepository {
            sink: RegistrySink::new(client.clone(), repo.clone()),
            client,
            repo,
        }
    }

    /// The client (bound to the registry's origin and credentials).
    pub fn client(&self) -> &Arc<Registry> {
        &self.client
    }
}

#[async_trait]
impl Repository for RegistryRepository {
    fn name(&self) -> String {
        format!("docker://{}", self.repo.name())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            delete: true,
            mount: true,
            referrers_api: true,
            referrers_listed: false,
        }
    }

    fn reference(&self, tag: Option<&str>) -> ImageRef {
        ImageRef::Docker(match tag {
            Some(t) => self.repo.with_tag(t),
            None => self.repo.clone(),
        })
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        self.client.list_tags(&self.repo.repository).await
    }

    async fn resolve(&self, tag: &str) -> Result<Option<Digest>> {
        self.client.head_manifest(&self.repo.repository, tag).await
    }

    async fn tagged(&self, tag: &str) -> Result<Option<RawManifest>> {
        match self.client.get_manifest(&self.repo.repository, tag).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if matches!(e.root(), Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.client
            .get_manifest(&self.repo.repository, &desc.digest.to_string())
            .await
    }

    async fn referrers(&self, subject: &Digest) -> Result<Option<Vec<Descriptor>>> {
        self.client.referrers(&self.repo.repository, subject).await
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        self.client
            .delete_manifest(&self.repo.repository, digest)
            .await
    }

    fn source(&self, tag: Option<&str>) -> Result<Box<dyn Source>> {
        let r = match tag {
            Some(t) => self.repo.with_tag(t),
            None => self.repo.clone(),
        };
        Ok(Box::new(RegistrySource::new(self.client.clone(), r)))
    }

    fn sink(&self) -> Result<&dyn Sink> {
        Ok(&self.sink)
    }
}

/// The namespace of a layout entry name as `graft mirror` writes them: `host/repo:tag`,
/// `host/repo@sha256:…` (a digest-pinned source) and `host/repo:tag@sha256:…` all give
/// `host/repo`; `None` for a plain tag (plain tags contain neither `:` nor `@`).
pub fn layout_namespace(name: &str) -> Option<&str> {
    // The digest first: its own `:` (`sha256:…`) is not a tag separator.
    let repo = match name.split_once('@') {
        Some((named, _)) => match named.rsplit_once(':') {
            // A tag has no `/`; what follows a registry's `host:port` does.
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => named,
        },
        None => name.rsplit_once(':')?.0,
    };
    (!repo.is_empty()).then_some(repo)
}

/// The entry name a layout repository opened for `image` stores the plain tag `tag` under
/// (see the module docs on namespaces).
pub fn layout_tag(image: &ImageRef, tag: &str) -> String {
    match image {
        ImageRef::Layout(l) | ImageRef::Archive(l) => {
            match l.tag.as_deref().and_then(layout_namespace) {
                Some(ns) => format!("{ns}:{tag}"),
                None => tag.to_string(),
            }
        }
        ImageRef::Docker(_) => tag.to_string(),
    }
}

/// Whether a layout's writes go to a directory or an archive file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayoutKind {
    Directory,
    Archive,
}

/// A repository in an OCI layout directory or archive (optionally one namespace of it).
pub struct LayoutRepository {
    kind: LayoutKind,
    local: Arc<LocalStores>,
    path: std::path::PathBuf,
    namespace: Option<String>,
    sink: Option<Box<dyn Sink>>,
    /// Subject → referrers listed in `index.json`, built once by the first
    /// [`Repository::listed_referrers`] of a read-only handle (a writable one may change under
    /// it, so it reads `index.json` again each time).
    by_subject: tokio::sync::OnceCell<ReferrerMap>,
}

/// Referrers listed in a layout's `index.json`, by subject.
type ReferrerMap = std::collections::HashMap<Digest, Vec<Descriptor>>;

impl LayoutRepository {
    /// The repository of `r` (a directory, or an archive with `archive`); its namespace comes
    /// from `r.tag` (see the module docs). With `write`, the sink is opened (a directory is
    /// created if needed); otherwise the layout must exist.
    pub fn open(
        r: &LayoutRef,
        archive: bool,
        write: bool,
        local: &Arc<LocalStores>,
    ) -> Result<LayoutRepository> {
        let kind = if archive {
            LayoutKind::Archive
        } else {
            LayoutKind::Directory
        };
        let whole = LayoutRef {
            path: r.path.clone(),
            tag: None,
        };
        let sink: Option<Box<dyn Sink>> = match (write, kind) {
            (false, LayoutKind::Directory) => {
                Layout::open(&r.path)?;
                None
            }
            (false, LayoutKind::Archive) => {
                ArchiveSource::open(whole, local)?;
                None
            }
            (true, LayoutKind::Directory) => Some(Box::new(LayoutSink::open(whole, local)?)),
            (true, LayoutKind::Archive) => Some(Box::new(ArchiveSink::open(whole, local)?)),
        };
        Ok(LayoutRepository {
            kind,
            local: local.clone(),
            path: r.path.clone(),
            namespace: r
                .tag
                .as_deref()
                .and_then(layout_namespace)
                .map(str::to_string),
            sink,
            by_subject: tokio::sync::OnceCell::new(),
        })
    }

    /// Every `index.json` entry whose manifest has a `subject`, by subject. Each entry's
    /// manifest is read once (at most [`crate::store::MANIFEST_LIMIT`] bytes, verified); entries
    /// that are not manifests or indexes (by their media type) are not read.
    async fn scan_referrers(&self) -> Result<ReferrerMap> {
        let source = self.source(None)?;
        let mut map = ReferrerMap::new();
        let mut seen = std::collections::HashSet::new();
        for entry in self.entries()? {
            if !crate::oci::media_types::is_any_manifest(&entry.media_type)
                || !seen.insert(entry.digest.clone())
            {
                continue;
            }
            let m = source.manifest(&entry).await.map_err(|e| {
                e.context(format!(
                    "{}: reading index.json entry {} to find referrers",
                    self.name(),
                    entry.digest
                ))
            })?;
            if let Some(subject) = &m.view().subject {
                // The entry as index.json has it, without its ref name (a tag is not part of a
                // referrer), with the artifact type the referrers API would list.
                let mut desc = m.descriptor();
                desc.artifact_type = m.view().artifact_type.clone().or_else(|| {
                    m.view()
                        .config
                        .as_ref()
                        .map(|c| c.media_type.clone())
                        .filter(|t| t != crate::oci::media_types::OCI_EMPTY)
                });
                map.entry(subject.digest.clone()).or_default().push(desc);
            }
        }
        Ok(map)
    }

    fn layout_ref(&self, name: Option<String>) -> LayoutRef {
        LayoutRef {
            path: self.path.clone(),
            tag: name,
        }
    }

    /// The entries of `index.json` (the uncommitted state, for an archive this operation is
    /// writing).
    fn entries(&self) -> Result<Vec<Descriptor>> {
        match self.kind {
            LayoutKind::Directory => Layout::open(&self.path)?.entries(),
            LayoutKind::Archive => Ok(ArchiveSource::open(self.layout_ref(None), &self.local)?
                .entries()
                .to_vec()),
        }
    }
}

#[async_trait]
impl Repository for LayoutRepository {
    fn name(&self) -> String {
        let scheme = match self.kind {
            LayoutKind::Directory => "oci",
            LayoutKind::Archive => "oci-archive",
        };
        match &self.namespace {
            Some(ns) => format!("{scheme}:{}:{ns}", self.path.display()),
            None => format!("{scheme}:{}", self.path.display()),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // A directory's index.json is edited in place; an archive would be rewritten whole.
            delete: self.kind == LayoutKind::Directory,
            mount: false,
            referrers_api: false,
            referrers_listed: true,
        }
    }

    fn reference(&self, tag: Option<&str>) -> ImageRef {
        let r = self.layout_ref(tag.map(|t| self.stored_tag(t)));
        match self.kind {
            LayoutKind::Directory => ImageRef::Layout(r),
            LayoutKind::Archive => ImageRef::Archive(r),
        }
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        let names = self
            .entries()?
            .into_iter()
            .filter_map(|d| d.annotation(REF_NAME).map(str::to_string));
        Ok(match &self.namespace {
            Some(ns) => names
                .filter_map(|n| {
                    n.strip_prefix(ns.as_str())
                        .and_then(|t| t.strip_prefix(':'))
                        .map(str::to_string)
                })
                .collect(),
            None => names.collect(),
        })
    }

    async fn resolve(&self, tag: &str) -> Result<Option<Digest>> {
        if let Some(sink) = &self.sink {
            return sink.tag_digest(&self.stored_tag(tag)).await;
        }
        let name = self.stored_tag(tag);
        Ok(self
            .entries()?
            .into_iter()
            .find(|d| d.annotation(REF_NAME) == Some(name.as_str()))
            .map(|d| d.digest))
    }

    async fn referrers(&self, _subject: &Digest) -> Result<Option<Vec<Descriptor>>> {
        Ok(None)
    }

    async fn listed_referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        let found = match self.sink {
            None => self
                .by_subject
                .get_or_try_init(|| self.scan_referrers())
                .await?
                .get(subject)
                .cloned(),
            Some(_) => self.scan_referrers().await?.remove(subject),
        };
        Ok(found.unwrap_or_default())
    }

    /// Removes the `index.json` entries of `digest` in this repository: those named by its
    /// tags (in a multi-image layout, only this namespace's) and the untagged ones, as a
    /// registry's delete would. The manifest and blobs stay in `blobs/` (a layout has no
    /// garbage collection; another entry may still need them). Archives: unsupported.
    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        if self.kind == LayoutKind::Archive {
            return Err(Error::Unsupported(format!(
                "{}: deleting from an OCI archive is not supported (the whole archive would be \
                 rewritten); copy what you keep into a new archive with graft copy, or unpack \
                 it into an oci: layout and delete there",
                self.name()
            )));
        }
        let layout = Layout::open(&self.path)?.sharing(&self.local)?;
        let namespace = self.namespace.clone();
        let digest_owned = digest.clone();
        let index = layout.index_path();
        let removed = tokio::task::spawn_blocking(move || {
            layout.remove_entries(&digest_owned, |name| match &namespace {
                None => true,
                // Only this repository's own names (`ns:…`), as list_tags lists them.
                Some(ns) => name
                    .strip_prefix(ns.as_str())
                    .is_some_and(|t| t.starts_with(':')),
            })
        })
        .await
        .map_err(|e| Error::io("updating", index, std::io::Error::other(e)))??;
        if removed.is_empty() {
            return Err(Error::NotFound {
                what: format!("{digest} in {}", self.name()),
                detail: Some("index.json lists no entry of it".into()),
            });
        }
        Ok(())
    }

    fn source(&self, tag: Option<&str>) -> Result<Box<dyn Source>> {
        let r = self.layout_ref(tag.map(|t| self.stored_tag(t)));
        Ok(match self.kind {
            LayoutKind::Directory => Box::new(LayoutSource::open(r)?),
            LayoutKind::Archive => Box::new(ArchiveSource::open(r, &self.local)?),
        })
    }

    fn sink(&self) -> Result<&dyn Sink> {
        self.sink
            .as_deref()
            .ok_or_else(|| Error::Unsupported(format!("{}: opened for reading only", self.name())))
    }

    fn stored_tag(&self, tag: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}:{tag}"),
            None => tag.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_of_mirrored_names() {
        assert_eq!(
            layout_namespace("reg.io/team/app:1.0"),
            Some("reg.io/team/app")
        );
        assert_eq!(
            layout_namespace("localhost:5000/app:v1"),
            Some("localhost:5000/app")
        );
        assert_eq!(layout_namespace("v1"), None);
        assert_eq!(layout_namespace(":v1"), None);
        // Digest-pinned entries, with and without a tag, with and without a port.
        let digest = format!("sha256:{}", "ab".repeat(32));
        for (name, ns) in [
            (format!("reg.io/team/app@{digest}"), "reg.io/team/app"),
            (format!("reg.io/team/app:1.0@{digest}"), "reg.io/team/app"),
            (format!("localhost:5000/app@{digest}"), "localhost:5000/app"),
            (
                format!("localhost:5000/app:v1@{digest}"),
                "localhost:5000/app",
            ),
        ] {
            assert_eq!(layout_namespace(&name), Some(ns), "{name}");
        }
        assert_eq!(layout_namespace(&format!("@{digest}")), None);
        let pinned: ImageRef = format!("oci:/x:localhost:5000/app@{digest}")
            .parse()
            .unwrap();
        assert_eq!(
            layout_tag(&pinned, "sha256-ab.sig"),
            "localhost:5000/app:sha256-ab.sig"
        );
        let image: ImageRef = "oci:/x:reg.io/app:1.0".parse().unwrap();
        assert_eq!(
            layout_tag(&image, "sha256-ab.sig"),
            "reg.io/app:sha256-ab.sig"
        );
        let plain: ImageRef = "oci:/x:1.0".parse().unwrap();
        assert_eq!(layout_tag(&plain, "latest"), "latest");
    }

    #[tokio::test]
    async fn archive_delete_is_refused_in_one_readable_line() {
        let dir = tempfile::tempdir().unwrap();
        let r = LayoutRef {
            path: dir.path().join("a.tar"),
            tag: Some("v1".into()),
        };
        let local = LocalStores::new();
        let repo = LayoutRepository::open(&r, true, true, &local).unwrap();
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let text = repo.delete_manifest(&digest).await.unwrap_err().to_string();
        assert!(text.contains("would be rewritten); copy"), "{text}");
        assert!(!text.contains("  "), "{text}");
    }

    /// A manifest of `image`'s blobs naming `subject` (an oras-style referrer).
    fn referrer(
        img: &crate::store::layout::test_image::TestImage,
        subject: &RawManifest,
    ) -> RawManifest {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media_types::OCI_MANIFEST,
            "artifactType": "application/vnd.graft.test.note",
            "config": img.config.0,
            "layers": [img.layer.0],
            "subject": subject.descriptor(),
        });
        RawManifest::from_bytes(Bytes::from(serde_json::to_vec(&m).unwrap()), None).unwrap()
    }

    #[tokio::test]
    async fn layout_referrers_are_the_entries_naming_their_subject() {
        use crate::store::layout::test_image::{image, put};
        let dir = tempfile::tempdir().unwrap();
        let r: LayoutRef = format!("oci:{}:v1", dir.path().display())
            .parse::<ImageRef>()
            .map(|i| match i {
                ImageRef::Layout(l) => l,
                _ => unreachable!(),
            })
            .unwrap();
        let local = LocalStores::new();
        let repo = LayoutRepository::open(&r, false, true, &local).unwrap();
        let img = image("subject");
        put(repo.sink().unwrap(), &img, "v1").await;
        let untagged = referrer(&img, &img.manifest);
        let tagged = referrer(&image("other"), &img.manifest);
        put(repo.sink().unwrap(), &image("other"), "other").await;
        let of_referrer = referrer(&img, &untagged);
        repo.sink().unwrap().put_root(&untagged).await.unwrap();
        repo.sink().unwrap().put_tag(&tagged, "note").await.unwrap();
        repo.sink().unwrap().put_root(&of_referrer).await.unwrap();
        assert!(repo.capabilities().referrers_listed);
        assert_eq!(repo.referrers(img.manifest.digest()).await.unwrap(), None);

        // Read-only (cached) and writable handles answer alike.
        let ro = LayoutRepository::open(&r, false, false, &local).unwrap();
        for h in [&repo, &ro] {
            let found = h.listed_referrers(img.manifest.digest()).await.unwrap();
            let digests: Vec<_> = found.iter().map(|d| d.digest.clone()).collect();
            assert_eq!(
                digests,
                vec![untagged.digest().clone(), tagged.digest().clone()]
            );
            assert!(found.iter().all(|d| d.annotations.is_none()));
            assert_eq!(
                found[0].artifact_type.as_deref(),
                Some("application/vnd.graft.test.note")
            );
            let nested = h.listed_referrers(untagged.digest()).await.unwrap();
            assert_eq!(nested.len(), 1);
            assert!(h
                .listed_referrers(tagged.digest())
                .await
                .unwrap()
                .is_empty());
        }
    }
}
