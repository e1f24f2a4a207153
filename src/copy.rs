//! The one transfer engine. Every command that moves images (copy, refresh, mirror, export)
//! goes through [`copy_image`]: blobs first (present → mount → upload, each digest once,
//! bounded concurrency), then child manifests, then the root, then tags.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, Platform, RawManifest};
use crate::progress::{BlobOutcome, Reporter};
use crate::store::{BlobStream, Sink, Source};

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Copy only this platform's manifest out of an index.
    pub platform: Option<Platform>,
    /// Concurrent blob transfers.
    pub jobs: usize,
    /// Tags to point at the copied root, written last. Empty: the root is stored by digest.
    pub tags: Vec<String>,
    /// Retries of a whole blob transfer after a retryable failure.
    pub retries: u32,
    /// Shared between concurrent copies into the same sink so each digest moves once.
    pub dedupe: Option<Arc<Dedupe>>,
    /// Call [`Sink::commit`] at the end (false when the caller commits after many copies).
    pub commit: bool,
}

/// Blob transfers and manifest writes in flight or done, by sink scope and digest: concurrent
/// copies that share one wait for the one write instead of starting their own.
#[derive(Debug, Default)]
pub struct Dedupe {
    blobs: Cells<BlobOutcome>,
    manifests: Cells<bool>,
}

/// The outcome of one write (a blob transfer, a manifest write: whether it stored it), shared
/// by every copy that needs it.
type Shared<T> = Arc<tokio::sync::OnceCell<T>>;

/// Shared outcomes by (sink scope, digest).
type Cells<T> = std::sync::Mutex<HashMap<(String, Digest), Shared<T>>>;

/// The cell for `key` in `cells`, and whether this caller created it.
fn cell_in<T>(cells: &Cells<T>, scope: &str, digest: &Digest) -> (Shared<T>, bool) {
    let mut cells = cells.lock().unwrap_or_else(|p| p.into_inner());
    let key = (scope.to_string(), digest.clone());
    if let Some(c) = cells.get(&key) {
        return (c.clone(), false);
    }
    let c = Arc::new(tokio::sync::OnceCell::new());
    cells.insert(key, c.clone());
    (c, true)
}

impl Dedupe {
    fn cell(&self, scope: &str, digest: &Digest) -> (Shared<BlobOutcome>, bool) {
        cell_in(&self.blobs, scope, digest)
    }

    fn manifest_cell(&self, scope: &str, digest: &Digest) -> (Shared<bool>, bool) {
        cell_in(&self.manifests, scope, digest)
    }
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platform: None,
            jobs: 4,
            tags: Vec::new(),
            retries: 3,
            dedupe: None,
            commit: true,
        }
    }
}

/// Count and bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// How many bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// What a copy did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// Digest of the root written at the destination.
    pub digest: Digest,
    /// Media type of the root.
    pub media_type: String,
    /// Size of the root.
    pub size: u64,
    /// Tags written or confirmed.
    pub tags: Vec<String>,
    /// Blobs whose bytes were sent.
    pub uploaded: Tally,
    /// Blobs mounted from another repository.
    pub mounted: Tally,
    /// Blobs already present.
    pub present: Tally,
    /// Blobs not copied (foreign layers).
    pub skipped: Tally,
    /// Manifests written.
    pub manifests_written: u64,
    /// Manifests already present.
    pub manifests_present: u64,
}

/// The manifests and blobs reachable from a root, children before parents.
#[derive(Debug, Default)]
pub struct Graph {
    /// Manifests in write order: every child before the index that lists it; the root last.
    pub manifests: Vec<RawManifest>,
    /// Layer blobs, each digest once, in first-seen order.
    pub layers: Vec<Descriptor>,
    /// Config blobs, each digest once.
    pub configs: Vec<Descriptor>,
}

/// How deep indexes may nest: an index listing an index (depth 1) listing an index ... Real
/// images nest one or two levels; a hostile source could nest thousands (or invent children
/// forever), so the walk stops here with an error.
pub const MAX_INDEX_DEPTH: usize = 16;

/// The most manifests and indexes one graph may hold, counted before they are fetched, so a
/// hostile source cannot make graft walk (or hold) without end.
pub const MAX_GRAPH_MANIFESTS: usize = 10_000;

impl Graph {
    /// Walk `root` through `src`, fetching child manifests (verified) with bounded concurrency.
    /// The walk is iterative (no recursion, whatever the nesting) and bounded: indexes may
    /// nest [`MAX_INDEX_DEPTH`] levels, and a graph holds at most [`MAX_GRAPH_MANIFESTS`]
    /// manifests; beyond either the walk fails with [`Error::Invalid`] naming the index.
    pub async fn walk(src: &dyn Source, root: RawManifest, jobs: usize) -> Result<Graph> {
        Walker {
            src,
            jobs: jobs.max(1),
            graph: Graph::default(),
            seen_blobs: HashSet::new(),
            seen_manifests: HashSet::new(),
            listed: 1,
        }
        .run(root)
        .await
    }

    /// The root manifest.
    pub fn root(&self) -> &RawManifest {
        self.manifests.last().expect("a graph has a root")
    }
}

/// An index whose children are being walked.
struct Frame {
    index: RawManifest,
    /// Its children not walked yet, in order.
    children: std::vec::IntoIter<RawManifest>,
}

/// The state of one [`Graph::walk`].
struct Walker<'a> {
    src: &'a dyn Source,
    jobs: usize,
    graph: Graph,
    seen_blobs: HashSet<Digest>,
    seen_manifests: HashSet<Digest>,
    /// Manifests listed so far (fetched or about to be), the root included.
    listed: usize,
}

impl Walker<'_> {
    /// Depth first, children in order, each index written after its children: an explicit
    /// stack of the indexes being walked, so nesting costs heap, not stack.
    async fn run(mut self, root: RawManifest) -> Result<Graph> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut next = Some(root);
        loop {
            if let Some(m) = next.take() {
                if self.seen_manifests.insert(m.digest().clone()) {
                    if m.is_index() {
                        let children = self.children(&m, stack.len()).await?;
                        stack.push(Frame {
                            index: m,
                            children: children.into_iter(),
                        });
                    } else {
                        self.image(m);
                    }
                }
            }
            let Some(top) = stack.last_mut() else {
                break;
            };
            match top.children.next() {
                Some(child) => next = Some(child),
                None => {
                    let done = stack.pop().expect("the stack has a top");
                    self.graph.manifests.push(done.index);
                }
            }
        }
        Ok(self.graph)
    }

    /// Record an image manifest and its blobs.
    fn image(&mut self, m: RawManifest) {
        if let Some(c) = &m.view().config {
            if self.seen_blobs.insert(c.digest.clone()) {
                self.graph.configs.push(c.clone());
            }
        }
        for l in &m.view().layers {
            if self.seen_blobs.insert(l.digest.clone()) {
                self.graph.layers.push(l.clone());
            }
        }
        self.graph.manifests.push(m);
    }

    /// Fetch the children of `index`, found `depth` indexes below the root, with bounded
    /// concurrency; refused when they would nest too deep or make the graph too large.
    async fn children(&mut self, index: &RawManifest, depth: usize) -> Result<Vec<RawManifest>> {
        let parent = index.digest();
        let entries = &index.view().manifests;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(Error::Invalid {
                what: format!("index {parent} in {}", self.src.name()),
                reason: format!(
                    "indexes nest more than {MAX_INDEX_DEPTH} levels deep here; graft refuses \
                     deeper nesting"
                ),
            });
        }
        let fresh = entries
            .iter()
            .filter(|d| !self.seen_manifests.contains(&d.digest))
            .count();
        self.listed = self.listed.saturating_add(fresh);
        if self.listed > MAX_GRAPH_MANIFESTS {
            return Err(Error::Invalid {
                what: format!("index {parent} in {}", self.src.name()),
                reason: format!(
                    "the image lists more than {MAX_GRAPH_MANIFESTS} manifests; graft refuses \
                     larger graphs"
                ),
            });
        }
        let src = self.src;
        futures::stream::iter(entries.iter().cloned())
            .map(|d| async move {
                src.manifest(&d).await.map_err(|e| {
                    e.context(format!(
                        "reading manifest {} listed in index {}",
                        d.digest, parent
                    ))
                })
            })
            .buffered(self.jobs)
            .try_collect()
            .await
    }
}

/// Resolve the source's root, narrowing an index to one platform if asked.
pub async fn resolve_root(src: &dyn Source, platform: Option<&Platform>) -> Result<RawManifest> {
    let root = src.resolve().await?;
    match platform {
        Some(p) if root.is_index() => {
            let entry = root
                .view()
                .manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|q| q.matches(p)))
                .ok_or_else(|| {
                    let have: Vec<String> = root
                        .view()
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                        .collect();
                    Error::NotFound {
                        what: format!("platform {p} in {}", src.name()),
                        detail: Some(format!("the index has {}", have.join(", "))),
                    }
                })?;
            src.manifest(entry).await
        }
        _ => Ok(root),
    }
}

/// Copy the image `src` points at (all platforms unless `opts.platform`) into `dst`.
pub async fn copy_image(
    src: &dyn Source,
    dst: &dyn Sink,
    opts: &CopyOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<CopyReport> {
    let root = resolve_root(src, opts.platform.as_ref()).await?;
    let graph = Graph::walk(src, root, opts.jobs).await?;
    copy_graph(src, dst, &graph, opts, reporter).await
}

/// Whether `m` lists a blob or manifest this copy added (so `m` itself is new there).
fn lists_fresh(m: &RawManifest, fresh: &HashSet<Digest>) -> bool {
    let v = m.view();
    v.config
        .iter()
        .chain(&v.layers)
        .chain(&v.manifests)
        .any(|d| fresh.contains(&d.digest))
}

/// Write a child manifest unless present (not asked when it is `new`); whether it was written.
/// With `dedupe`, copies running at the same time write each manifest once (registries do not
/// like the same manifest written twice at once: distribution truncates and rewrites its
/// files, and a concurrent index PUT can find a child missing).
async fn write_child(
    dst: &dyn Sink,
    m: &RawManifest,
    new: bool,
    dedupe: Option<&Dedupe>,
    reporter: &Arc<dyn Reporter>,
) -> Result<bool> {
    let desc = m.descriptor();
    let write = || async {
        let write = new || !dst.has_manifest(&desc).await?;
        if write {
            dst.put_manifest(m).await.map_err(|e| {
                e.context(format!("writing manifest {} to {}", m.digest(), dst.name()))
            })?;
        }
        Ok::<_, Error>(write)
    };
    let written = match dedupe {
        None => write().await?,
        Some(dedupe) => {
            let (cell, first) = dedupe.manifest_cell(&dst.scope(), m.digest());
            let written = *cell.get_or_try_init(write).await?;
            written && first
        }
    };
    reporter.manifest_done(&desc, written);
    Ok(written)
}

/// Copy an already-walked graph: blobs, then child manifests, then the root and its tags.
pub async fn copy_graph(
    src: &dyn Source,
    dst: &dyn Sink,
    graph: &Graph,
    opts: &CopyOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<CopyReport> {
    let root = graph.root();
    let mut report = CopyReport {
        digest: root.digest().clone(),
        media_type: root.media_type().to_string(),
        size: root.bytes().len() as u64,
        tags: Vec::new(),
        uploaded: Tally::default(),
        mounted: Tally::default(),
        present: Tally::default(),
        skipped: Tally::default(),
        manifests_written: 0,
        manifests_present: 0,
    };
    // What this copy added (blobs uploaded, manifests written): a manifest that lists one of
    // them cannot be at the destination yet, so it is written without asking first (one round
    // trip less per manifest and tag; asking wrongly costs only an idempotent PUT).
    let mut fresh: HashSet<Digest> = HashSet::new();
    // Layers and configs in one pass: registries do not care about their order, only that
    // every blob is in place before the manifests that list it. Blobs that cannot be mounted
    // (new ones: a refresh's compat layer and configs) go first, so their uploads do not wait
    // behind the quick checks of blobs the destination already has.
    {
        let mut blobs: Vec<&Descriptor> = graph.layers.iter().chain(&graph.configs).collect();
        blobs.sort_by_key(|d| src.mount_origin(d).is_some());
        let outcomes: Vec<(&Descriptor, BlobOutcome)> = futures::stream::iter(blobs)
            .map(|d| async move {
                let outcome = match &opts.dedupe {
                    None => transfer_blob(src, dst, d, opts.retries, reporter).await,
                    Some(dedupe) => {
                        let (cell, first) = dedupe.cell(&dst.scope(), &d.digest);
                        let outcome = cell
                            .get_or_try_init(|| transfer_blob(src, dst, d, opts.retries, reporter))
                            .await
                            .copied();
                        // Only the copy that moved the bytes counts them.
                        outcome.map(|o| if first { o } else { BlobOutcome::Present })
                    }
                }
                .map_err(|e| e.context(format!("copying blob {} to {}", d.digest, dst.name())))?;
                reporter.blob_done(d, outcome);
                Ok::<_, Error>((d, outcome))
            })
            .buffer_unordered(opts.jobs.max(1))
            .try_collect()
            .await?;
        for (d, outcome) in outcomes {
            if outcome == BlobOutcome::Uploaded {
                fresh.insert(d.digest.clone());
            }
            let size = d.size;
            match outcome {
                BlobOutcome::Present => report.present.add(size),
                BlobOutcome::Mounted => report.mounted.add(size),
                BlobOutcome::Uploaded => report.uploaded.add(size),
                BlobOutcome::Skipped => report.skipped.add(size),
            }
        }
    }
    let (children, _) = graph.manifests.split_at(graph.manifests.len() - 1);
    // Image manifests list only blobs, so they go together; indexes (nested ones are rare)
    // follow one by one, in walk order, each after the manifests it lists.
    let (images, indexes): (Vec<&RawManifest>, Vec<&RawManifest>) =
        children.iter().partition(|m| !m.is_index());
    let fresh_ref = &fresh;
    let dedupe = opts.dedupe.as_deref();
    let written: Vec<(Digest, bool)> = futures::stream::iter(images)
        .map(|m| async move {
            let new = lists_fresh(m, fresh_ref);
            Ok::<_, Error>((
                m.digest().clone(),
                write_child(dst, m, new, dedupe, reporter).await?,
            ))
        })
        .buffered(opts.jobs.max(1))
        .try_collect()
        .await?;
    fresh.extend(written.iter().filter(|w| w.1).map(|w| w.0.clone()));
    for m in indexes {
        if write_child(dst, m, lists_fresh(m, &fresh), dedupe, reporter).await? {
            fresh.insert(m.digest().clone());
        }
    }
    for m in children {
        if fresh.contains(m.digest()) {
            report.manifests_written += 1;
        } else {
            report.manifests_present += 1;
        }
    }
    let root_is_new = lists_fresh(root, &fresh);
    let desc = root.descriptor();
    if opts.tags.is_empty() {
        let written = dst.put_root(root).await.map_err(|e| {
            e.context(format!(
                "writing manifest {} to {}",
                root.digest(),
                dst.name()
            ))
        })?;
        if written {
            report.manifests_written += 1;
        } else {
            report.manifests_present += 1;
        }
        reporter.manifest_done(&desc, written);
    }
    for tag in &opts.tags {
        if !root_is_new && dst.tag_digest(tag).await?.as_ref() == Some(root.digest()) {
            report.manifests_present += 1;
        } else {
            dst.put_tag(root, tag).await.map_err(|e| {
                e.context(format!(
                    "tagging {} as {tag} in {}",
                    root.digest(),
                    dst.name()
                ))
            })?;
            report.manifests_written += 1;
        }
        reporter.manifest_done(&desc, true);
        report.tags.push(tag.clone());
    }
    if opts.commit {
        dst.commit().await?;
    }
    Ok(report)
}

fn is_foreign(desc: &Descriptor) -> bool {
    desc.urls.as_ref().is_some_and(|u| !u.is_empty())
        && (desc.media_type.contains("foreign") || desc.media_type.contains("nondistributable"))
}

/// One blob: present → mount → upload (retried as a whole on retryable failures).
async fn transfer_blob(
    src: &dyn Source,
    dst: &dyn Sink,
    desc: &Descriptor,
    retries: u32,
    reporter: &Arc<dyn Reporter>,
) -> Result<BlobOutcome> {
    if is_foreign(desc) {
        return Ok(BlobOutcome::Skipped);
    }
    if dst.has_blob(desc).await? {
        return Ok(BlobOutcome::Present);
    }
    if let Some(origin) = src.mount_origin(desc) {
        if dst.mount_blob(desc, &origin).await? {
            return Ok(BlobOutcome::Mounted);
        }
    }
    let mut attempt = 0;
    loop {
        reporter.transfer_started(desc);
        let source_error = Arc::new(std::sync::Mutex::new(None));
        let result = async {
            let stream = src.blob(desc).await?;
            let stream = watch_stream(stream, desc.clone(), reporter, source_error.clone());
            dst.put_blob(desc, stream).await
        }
        .await;
        // A corrupt source explains a failed upload better than whatever the sink saw.
        let result = match (result, source_error.lock().expect("error slot").take()) {
            (Err(_), Some(src_err)) => Err(src_err),
            (r, _) => r,
        };
        match result {
            Ok(()) => return Ok(BlobOutcome::Uploaded),
            Err(e) if e.is_retryable() && attempt < retries => {
                reporter.transfer_retry(desc, &e);
                tracing::debug!("retrying blob {} after: {e}", desc.digest);
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Report progress, and keep the source's own failure (e.g. a digest mismatch) in `slot` so it
/// can be shown instead of the sink's reaction to the broken stream.
fn watch_stream(
    stream: BlobStream,
    desc: Descriptor,
    reporter: &Arc<dyn Reporter>,
    slot: Arc<std::sync::Mutex<Option<Error>>>,
) -> BlobStream {
    let reporter = reporter.clone();
    Box::pin(stream.map(move |item| match item {
        Ok(b) => {
            reporter.transfer_progress(&desc, b.len() as u64);
            Ok(b)
        }
        Err(e) => {
            let shown = Error::SourceStream(e.to_string());
            *slot.lock().expect("error slot") = Some(e);
            Err(shown)
        }
    }))
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
