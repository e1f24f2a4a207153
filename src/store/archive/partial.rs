//! The growing tar an archive is written into, `FILE.graft-partial`.
//!
//! The file is a sequence of tar members, each a **slot**: header block(s), the bytes, zero
//! padding to a whole block. A blob gets its slot when its transfer starts: the slot is
//! reserved at the tail (its size is known from the descriptor) and its header written there,
//! under a short lock, so the file is always a walkable tar; the bytes are then written into
//! the slot at their own offsets while they stream in, so concurrent transfers proceed side by
//! side and every byte is written once. The slot is marked done only when the stream ended
//! without error (a verified stream fails before its last chunk when the digest does not
//! match) and the size matches. Writeback to disk is started every 64 MiB, so the fsync at
//! the end is short.
//!
//! A slot whose transfer fails is freed: at the tail it is cut off (the file is truncated);
//! in the middle it is kept for the next transfer of the same blob (a retry, or the rerun
//! after an interruption), which writes into it in place. A freed slot nobody takes is
//! overwritten with filler headers when the archive is sealed (see
//! [`super::header::write_filler`]), so no bad or partial member remains.
//!
//! After an interruption the next run walks the file: members whose bytes hash to the digest
//! their name states are kept, the others become free slots, and a torn tail (a header cut
//! short, a member whose bytes stop at the end of the file) is cut off.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::fsutil::{file_kind, open_regular, parent_dir, sync_dir};
use crate::oci::{Descriptor, Digest, Digester};
use crate::store::layout::{OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE};
use crate::store::BlobStream;

use super::header::{member_bytes, member_header_bytes, padded, write_filler, BLOCK};
use super::scan::{blob_member, walk, Kind, Scanned};
use super::ArchiveSource;

/// Bytes collected from a stream before they are handed to a blocking write (and hashed
/// there). Two such buffers per transfer, at most.
const WRITE_CHUNK: usize = 1 << 20;

/// Written bytes after which a writeback is started in the background.
const SYNC_EVERY: u64 = 64 << 20;

/// Directory members written first into a new archive, as the old packer did.
const DIRS: [&str; 2] = ["blobs/", "blobs/sha256/"];

/// The state of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A complete, verified blob.
    Done,
    /// A transfer is writing into it.
    Writing,
    /// Reserved, not valid: reusable by the same blob, else filled when sealing.
    Free,
    /// A member that is not a blob (directories, fillers): kept as it is.
    Kept,
}

#[derive(Debug)]
struct Slot {
    /// The member name (blobs: `blobs/<alg>/<hex>`).
    name: Option<String>,
    data: u64,
    size: u64,
    end: u64,
    state: State,
}

#[derive(Debug, Default)]
struct Slots {
    /// Where the next slot goes: the end of the last one.
    tail: u64,
    by_start: BTreeMap<u64, Slot>,
    /// The current slot of each blob member.
    by_name: HashMap<String, u64>,
    /// Slots being written.
    writing: usize,
}

impl Slots {
    fn push(&mut self, m: &Scanned, state: State) {
        let name = m.name.clone();
        if let (Some(n), State::Done | State::Free) = (&name, state) {
            // A blob listed twice: the last copy counts (as when extracting). An earlier good
            // copy is kept as it is; an earlier bad one stays free, to be covered by filler.
            if let Some(old) = self.by_name.insert(n.clone(), m.start) {
                if let Some(s) = self.by_start.get_mut(&old) {
                    if matches!(s.state, State::Done) {
                        s.state = State::Kept;
                    }
                }
            }
        }
        self.by_start.insert(
            m.start,
            Slot {
                name,
                data: m.data,
                size: m.size,
                end: m.end,
                state,
            },
        );
        self.tail = self.tail.max(m.end);
    }

    /// Drop free slots at the tail; returns whether the tail moved.
    fn trim(&mut self) -> bool {
        let mut moved = false;
        while let Some(entry) = self.by_start.last_entry() {
            if entry.get().state != State::Free {
                break;
            }
            let (start, slot) = entry.remove_entry();
            if let Some(n) = &slot.name {
                if self.by_name.get(n) == Some(&start) {
                    self.by_name.remove(n);
                }
            }
            self.tail = start;
            moved = true;
        }
        moved
    }
}

/// A blob member found in the partial file, for readers.
#[derive(Debug, Clone)]
pub(super) struct DoneMember {
    pub name: String,
    pub data: u64,
    pub size: u64,
}

/// The growing tar of an archive being written.
#[derive(Debug)]
pub(super) struct Partial {
    path: PathBuf,
    file: Arc<File>,
    slots: Mutex<Slots>,
    idle: tokio::sync::Notify,
    /// Bytes written since the last early writeback was started.
    unsynced: AtomicU64,
    /// An early writeback is running.
    syncing: Arc<AtomicBool>,
}

/// What [`Partial::reserve`] found.
enum Reserved {
    /// The blob is already there.
    Present,
    /// A slot to write into.
    Lease(Lease),
}

/// The right to write one slot. Dropped unfinished (an error, a cancelled transfer), it frees
/// the slot; blocking writes in flight hold a clone, so the slot is freed only after the last
/// of them has finished.
#[derive(Debug)]
struct Lease {
    partial: Arc<Partial>,
    start: u64,
    data: u64,
    finished: AtomicBool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            self.partial.release(self.start);
        }
    }
}

impl Partial {
    /// Start a new partial file at `path`. With `base` (the existing archive), its leading run
    /// of blobs and directories is copied first (one kernel-side copy; in an archive graft or
    /// skopeo wrote, that is every blob), so the images already in it are kept.
    pub fn create(path: &Path, base: Option<&ArchiveSource>) -> Result<Partial> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io("creating", path, e))?;
        let mut slots = Slots::default();
        if let Some(base) = base {
            let prefix: Vec<&Scanned> = base
                .scanned()
                .iter()
                .take_while(|m| m.kind == Kind::Dir || m.blob_digest().is_some())
                .collect();
            if let Some(last) = prefix.last() {
                let from = base.path();
                let src = open_regular(from, None).map_err(|e| e.into_error(from))?;
                let copied = std::io::copy(&mut src.take(last.end), &mut &file)
                    .map_err(|e| Error::io("copying into", path, e))?;
                if copied < last.data + last.size {
                    return Err(Error::io(
                        "copying into",
                        path,
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("{} ended early", from.display()),
                        ),
                    ));
                }
                file.set_len(last.end)
                    .map_err(|e| Error::io("writing", path, e))?;
                for m in prefix {
                    let state = match m.kind {
                        Kind::Dir => State::Kept,
                        _ => State::Done,
                    };
                    slots.push(m, state);
                }
            }
        }
        if slots.tail == 0 {
            let mut at = 0;
            for dir in DIRS {
                let bytes = member_header_bytes(dir, 0);
                file.write_all_at(&bytes, at)
                    .map_err(|e| Error::io("writing", path, e))?;
                slots.push(
                    &Scanned {
                        start: at,
                        data: at + bytes.len() as u64,
                        size: 0,
                        end: at + bytes.len() as u64,
                        name: Some(dir.trim_end_matches('/').to_string()),
                        kind: Kind::Dir,
                    },
                    State::Kept,
                );
                at += bytes.len() as u64;
            }
        }
        Ok(Partial::new(path, file, slots))
    }

    /// Take over the partial file an interrupted run left at `path`: keep the members that
    /// are complete and hash to their names, free the others, cut off a torn tail.
    pub fn resume(path: &Path) -> Result<Partial> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("opening", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("checking", path, e))?;
        if !meta.is_file() {
            return Err(Error::Invalid {
                what: path.display().to_string(),
                reason: format!(
                    "{}, not a regular file: graft reads only regular files here",
                    file_kind(&meta.file_type())
                ),
            });
        }
        let len = meta.len();
        let walked = walk(&file, len).map_err(|e| Error::io("reading", path, e))?;
        if let Some(problem) = &walked.problem {
            tracing::debug!(
                "{}: keeping the first {} bytes ({problem})",
                path.display(),
                walked.end
            );
        }
        let mut slots = Slots::default();
        let mut buf = vec![0; WRITE_CHUNK];
        for m in &walked.members {
            let state = match m.blob_digest() {
                Some(digest) => {
                    if hashes_to(&file, m, &digest, &mut buf)
                        .map_err(|e| Error::io("reading", path, e))?
                    {
                        State::Done
                    } else {
                        State::Free
                    }
                }
                None => State::Kept,
            };
            slots.push(m, state);
        }
        slots.tail = walked.end;
        slots.trim();
        file.set_len(slots.tail)
            .map_err(|e| Error::io("truncating", path, e))?;
        Ok(Partial::new(path, file, slots))
    }

    fn new(path: &Path, file: File, slots: Slots) -> Partial {
        Partial {
            path: path.to_path_buf(),
            file: Arc::new(file),
            slots: Mutex::new(slots),
            idle: tokio::sync::Notify::new(),
            unsynced: AtomicU64::new(0),
            syncing: Arc::default(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the blob is complete in the file.
    pub fn has(&self, desc: &Descriptor) -> bool {
        let s = self.lock();
        s.by_name
            .get(&blob_member(&desc.digest))
            .and_then(|start| s.by_start.get(start))
            .is_some_and(|slot| slot.state == State::Done && slot.size == desc.size)
    }

    /// The complete blob members, for reading.
    pub fn done(&self) -> Vec<DoneMember> {
        let s = self.lock();
        s.by_name
            .iter()
            .filter_map(|(name, start)| {
                let slot = s.by_start.get(start)?;
                (slot.state == State::Done).then(|| DoneMember {
                    name: name.clone(),
                    data: slot.data,
                    size: slot.size,
                })
            })
            .collect()
    }

    /// A slot for the blob `name` of `size` bytes: its own freed slot if it has one of that
    /// size, else a new one at the tail (header written now).
    fn reserve(self: &Arc<Self>, name: &str, size: u64) -> Result<Reserved> {
        let header = member_header_bytes(name, size);
        let mut s = self.lock();
        if let Some(&start) = s.by_name.get(name) {
            let slot = s.by_start.get_mut(&start).expect("named slots exist");
            match slot.state {
                State::Done if slot.size == size => return Ok(Reserved::Present),
                State::Free if slot.size == size && slot.data - start == header.len() as u64 => {
                    slot.state = State::Writing;
                    let data = slot.data;
                    s.writing += 1;
                    return Ok(Reserved::Lease(self.lease(start, data)));
                }
                _ => {}
            }
        }
        let start = s.tail;
        self.file
            .write_all_at(&header, start)
            .map_err(|e| Error::io("writing", &self.path, e))?;
        let data = start + header.len() as u64;
        let end = data + padded(size);
        let keep_name = s
            .by_name
            .get(name)
            .and_then(|old| s.by_start.get(old))
            .is_some_and(|old| old.state == State::Done);
        if !keep_name {
            s.by_name.insert(name.to_string(), start);
        }
        s.by_start.insert(
            start,
            Slot {
                name: Some(name.to_string()),
                data,
                size,
                end,
                state: State::Writing,
            },
        );
        s.tail = end;
        s.writing += 1;
        Ok(Reserved::Lease(self.lease(start, data)))
    }

    fn lease(self: &Arc<Self>, start: u64, data: u64) -> Lease {
        Lease {
            partial: self.clone(),
            start,
            data,
            finished: AtomicBool::new(false),
        }
    }

    /// Mark the slot at `start` complete.
    fn finish(&self, lease: &Lease) {
        let mut s = self.lock();
        if let Some(slot) = s.by_start.get_mut(&lease.start) {
            slot.state = State::Done;
        }
        s.writing -= 1;
        lease.finished.store(true, Ordering::SeqCst);
        drop(s);
        self.idle.notify_waiters();
    }

    /// Free the slot at `start`; cut the file back if it was the last.
    fn release(&self, start: u64) {
        let mut s = self.lock();
        if let Some(slot) = s.by_start.get_mut(&start) {
            slot.state = State::Free;
        }
        s.writing -= 1;
        if s.trim() {
            if let Err(e) = self.file.set_len(s.tail) {
                // Harmless: the next slot or the seal overwrites what lies past the tail.
                tracing::debug!("truncating {}: {e}", self.path.display());
            }
        }
        drop(s);
        self.idle.notify_waiters();
    }

    /// Wait until no transfer is writing (cancelled ones finish their last write first).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.lock().writing == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Stream a blob into its slot; `what` names it in errors. Returns whether bytes were
    /// written (`false`: already complete, `data` not read).
    ///
    /// The size is checked here; the digest is checked by the stream itself, not computed a
    /// second time: every stream a sink is given comes from a [`crate::store::Source`] (verified
    /// while streaming: it ends with an error, before its last chunk, when the digest does not
    /// match; see [`crate::store::verify_stream`]) or from bytes in memory whose descriptor
    /// was computed from them. A stream that ends in an error leaves no member.
    pub async fn write(
        self: Arc<Self>,
        desc: Descriptor,
        mut data: BlobStream,
        what: String,
    ) -> Result<bool> {
        let lease = match self.reserve(&blob_member(&desc.digest), desc.size)? {
            Reserved::Present => return Ok(false),
            Reserved::Lease(l) => Arc::new(l),
        };
        let mut writer = SlotWriter {
            partial: self.clone(),
            lease: lease.clone(),
            at: lease.data,
            inflight: None,
            spare: Vec::new(),
        };
        let mut buf = Vec::with_capacity(WRITE_CHUNK);
        let mut received = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            received += chunk.len() as u64;
            if received > desc.size {
                return Err(Error::SizeMismatch {
                    what,
                    expected: desc.size,
                    found: received,
                });
            }
            buf.extend_from_slice(&chunk);
            if buf.len() >= WRITE_CHUNK {
                buf = writer.push(buf).await?;
            }
        }
        if received != desc.size {
            return Err(Error::SizeMismatch {
                what,
                expected: desc.size,
                found: received,
            });
        }
        // The padding goes out with the last bytes.
        buf.resize(buf.len() + (padded(desc.size) - desc.size) as usize, 0);
        if !buf.is_empty() {
            writer.push(buf).await?;
        }
        writer.settle().await?;
        self.finish(&lease);
        Ok(true)
    }

    /// Start writing back what was written so far once [`SYNC_EVERY`] bytes have piled up,
    /// so the fsync at the end does not have to do it all.
    fn written(&self, n: u64) {
        let total = self.unsynced.fetch_add(n, Ordering::SeqCst) + n;
        if total < SYNC_EVERY || self.syncing.swap(true, Ordering::SeqCst) {
            return;
        }
        self.unsynced.fetch_sub(total, Ordering::SeqCst);
        let file = self.file.clone();
        let path = self.path.clone();
        let partial = self.syncing.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = file.sync_data() {
                // The fsync when the archive is sealed reports what matters.
                tracing::debug!("syncing {}: {e}", path.display());
            }
            partial.store(false, Ordering::SeqCst);
        });
    }

    /// Finish the archive: fill freed slots, append `index.json`, `oci-layout` and the
    /// end-of-archive blocks, fsync, and rename the file to `out`. Blocking; call when no
    /// transfer is writing. Nothing of the file changes before the tail unless slots are
    /// filled, so a failed seal can be repeated.
    pub fn seal(&self, index: &[u8], out: &Path) -> Result<()> {
        let mut s = self.lock();
        if s.writing > 0 {
            return Err(Error::Unsupported(format!(
                "{}: {} blob(s) still being written; cannot finish the archive",
                self.path.display(),
                s.writing
            )));
        }
        let werr = |e| Error::io("writing", &self.path, e);
        if s.trim() {
            self.file.set_len(s.tail).map_err(werr)?;
        }
        let free: Vec<(u64, u64)> = s
            .by_start
            .iter()
            .filter(|(_, slot)| slot.state == State::Free)
            .map(|(&start, slot)| (start, slot.end))
            .collect();
        for (start, end) in free {
            write_filler(end - start, |bytes, at| {
                self.file.write_all_at(bytes, start + at)
            })
            .map_err(werr)?;
            let slot = s.by_start.get_mut(&start).expect("listed above");
            slot.state = State::Kept;
            if let Some(n) = slot.name.take() {
                if s.by_name.get(&n) == Some(&start) {
                    s.by_name.remove(&n);
                }
            }
        }
        let mut trailer = member_bytes(super::INDEX_MEMBER, index);
        trailer.extend_from_slice(&member_bytes(OCI_LAYOUT_FILE, OCI_LAYOUT_CONTENT));
        trailer.resize(trailer.len() + 2 * BLOCK, 0);
        self.file.write_all_at(&trailer, s.tail).map_err(werr)?;
        self.file
            .set_len(s.tail + trailer.len() as u64)
            .map_err(werr)?;
        self.file
            .sync_all()
            .map_err(|e| Error::io("syncing", &self.path, e))?;
        std::fs::rename(&self.path, out)
            .map_err(|e| Error::io("renaming the finished archive to", out, e))?;
        sync_dir(parent_dir(out))
    }
}

/// Does the member hash to `digest`?
fn hashes_to(file: &File, m: &Scanned, digest: &Digest, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut d = Digester::new(digest.algorithm());
    let mut at = m.data;
    let end = m.data + m.size;
    while at < end {
        let n = ((end - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        d.update(&buf[..n]);
        at += n as u64;
    }
    Ok(&d.finish() == digest)
}

/// Writes one slot: each buffer is written on the blocking pool while the next one is
/// collected (two buffers in use at most).
struct SlotWriter {
    partial: Arc<Partial>,
    lease: Arc<Lease>,
    /// Where the next buffer goes.
    at: u64,
    inflight: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
    spare: Vec<u8>,
}

impl SlotWriter {
    /// Hand `buf` to a blocking write; returns an empty buffer to fill next.
    async fn push(&mut self, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.settle().await?;
        let file = self.partial.file.clone();
        let lease = self.lease.clone();
        let at = self.at;
        self.at += buf.len() as u64;
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let _lease = lease;
            file.write_all_at(&buf, at)?;
            Ok(buf)
        }));
        let mut next = std::mem::take(&mut self.spare);
        next.clear();
        if next.capacity() == 0 {
            next.reserve(WRITE_CHUNK);
        }
        Ok(next)
    }

    /// Wait for the write in flight.
    async fn settle(&mut self) -> Result<()> {
        if let Some(h) = self.inflight.take() {
            let buf = h
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| Error::io("writing", &self.partial.path, e))?;
            self.partial.written(buf.len() as u64);
            self.spare = buf;
        }
        Ok(())
    }
}
