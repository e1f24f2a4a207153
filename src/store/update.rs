//! Read-merge-write of a document under a shared tag (cosign's `.sig`/`.att` manifests, a
//! referrers fallback index), for registries that have no conditional writes
//! (docs/decisions.md §9).
//!
//! [`update_tag`] owns the protocol; what the document is and how an entry is merged into it
//! belongs to the caller's [`TagMerge`] (the cosign and referrer merges live in `sign/`):
//!
//! 1. read the tag; if the document already holds our entry, stop;
//! 2. store the blobs the merged document needs, and build it (every entry there kept verbatim);
//! 3. re-check the tag's digest (HEAD) just before the PUT; merge again if it moved;
//! 4. PUT, then read the tag back; if our entry is gone (a concurrent writer replaced the
//!    document with one made from an older read), merge and write again, with jittered backoff;
//! 5. when writers were seen, wait 100–200 ms and check once more.

use std::time::Duration;

use bytes::Bytes;
use rand_core::{OsRng, RngCore};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::store::repo::Repository;

/// A document to write at a shared tag, and the blobs it needs first.
pub type Built = (RawManifest, Vec<(Descriptor, Bytes)>);

/// How one entry joins the document at a shared tag.
pub trait TagMerge: Sync {
    /// Whether `doc` (the document now at the tag) already holds our entry (or an equivalent).
    fn contains(&self, doc: &RawManifest) -> Result<bool>;

    /// The blobs that must be stored before the merged document, other than those `current`
    /// already lists (they exist): e.g. a new signature payload.
    fn blobs(&self, current: Option<&RawManifest>) -> Result<Vec<(Descriptor, Bytes)>>;

    /// The document to write: `current`'s entries kept verbatim, ours added; and the blobs it
    /// needs (a config made for it).
    fn merge(&self, current: Option<&RawManifest>) -> Result<Built>;
}

/// One read-merge-write of a shared tag, or one referrer push.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Written {
    /// The tag written (`sha256-….sig`) or `referrer` for a manifest pushed by digest.
    pub location: String,
    /// The manifest now at that location.
    pub manifest: Digest,
    /// Whether graft added something (false: an equivalent entry was already there).
    pub added: bool,
    /// Merge-and-write rounds.
    pub attempts: u32,
    /// Times a concurrent writer replaced the tag and dropped graft's entry (then retried).
    pub lost_races: u32,
}

/// Read-merge-write-confirm of the document at `tag` in `repo` (see the module docs), at most
/// `max_attempts` rounds; [`Error::Conflict`] when concurrent writers keep winning.
pub async fn update_tag(
    repo: &dyn Repository,
    tag: &str,
    merge: &dyn TagMerge,
    max_attempts: u32,
) -> Result<Written> {
    let mut lost = 0;
    for attempt in 1..=max_attempts.max(1) {
        let current = repo.tagged(tag).await?;
        if let Some(m) = &current {
            if merge.contains(m)? {
                return Ok(Written {
                    location: tag.to_string(),
                    manifest: m.digest().clone(),
                    added: attempt > 1,
                    attempts: attempt,
                    lost_races: lost,
                });
            }
        }
        let current_digest = current.as_ref().map(|m| m.digest().clone());
        // Blobs: on a first attempt they are new (our payload, a config for a layer list
        // nobody wrote before) and are uploaded without asking (a HEAD costs the registry as
        // much as a third of an upload); retries ask first.
        for (desc, bytes) in merge.blobs(current.as_ref())? {
            repo.put_blob(&desc, bytes, attempt > 1).await?;
        }
        let (manifest, blobs) = merge.merge(current.as_ref())?;
        for (desc, bytes) in blobs {
            repo.put_blob(&desc, bytes, attempt > 1).await?;
        }
        // Last look before writing: merge again if the tag moved since we read it.
        if repo.resolve(tag).await? != current_digest {
            tracing::debug!("{tag} changed while merging; merging again");
            backoff(attempt).await;
            continue;
        }
        match repo.put_tag(&manifest, tag).await {
            Ok(()) => {}
            // Concurrent uploads of the same blob (every signer of an image uploads the same
            // payload) can leave it briefly unknown to distribution 2.8: upload and try again.
            Err(e) if blob_unknown(&e) && attempt < max_attempts => {
                tracing::debug!("{tag}: {e}; retrying");
                backoff(attempt).await;
                continue;
            }
            Err(e) => return Err(e),
        }
        let confirmed = repo.tagged(tag).await?;
        let present = match &confirmed {
            Some(m) => merge.contains(m)?,
            None => false,
        };
        let contended = confirmed.as_ref().map(|m| m.digest()) != Some(manifest.digest());
        let mut seen = confirmed.map(|m| m.digest().clone());
        let survived = if present && (contended || attempt > 1) {
            // Writers are active (someone wrote after us, or the tag moved under an earlier
            // attempt): look once more after they settle.
            tokio::time::sleep(Duration::from_millis(
                100 + u64::from(OsRng.next_u32() % 100),
            ))
            .await;
            match repo.tagged(tag).await? {
                Some(m) => {
                    let ok = merge.contains(&m)?;
                    seen = Some(m.digest().clone());
                    ok
                }
                None => false,
            }
        } else {
            present
        };
        if survived {
            return Ok(Written {
                location: tag.to_string(),
                manifest: seen.unwrap_or_else(|| manifest.digest().clone()),
                added: true,
                attempts: attempt,
                lost_races: lost,
            });
        }
        lost += 1;
        tracing::warn!(
            "{tag}: a concurrent writer replaced the tag and dropped graft's entry; merging again"
        );
        backoff(attempt).await;
    }
    Err(Error::Conflict {
        what: format!("{} {tag}", repo.name()),
        attempts: max_attempts,
    })
}

/// Whether a manifest PUT failed because the registry did not (yet) know one of its blobs.
pub fn blob_unknown(e: &Error) -> bool {
    matches!(e.root(), Error::Registry { status: 400, errors, .. }
        if errors.iter().any(|i| i.code == "MANIFEST_BLOB_UNKNOWN" || i.code == "BLOB_UNKNOWN"))
}

/// Jittered exponential backoff between rounds.
pub async fn backoff(attempt: u32) {
    let base = 20u64 << attempt.min(5);
    let jitter = u64::from(OsRng.next_u32() % 50);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}
