//! Progress reporting. The library calls a [`Reporter`]; only the binary draws bars.

use crate::oci::Descriptor;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobOutcome {
    /// The destination already had it.
    Present,
    /// Linked from another repository of the same registry.
    Mounted,
    /// Bytes were sent.
    Uploaded,
    /// Not copied: a foreign or non-distributable layer.
    Skipped,
}

/// Receives events from long operations. Every method has a no-op default.
pub trait Reporter: Send + Sync {
    /// A blob transfer (bytes moving) starts.
    fn transfer_started(&self, _desc: &Descriptor) {}
    /// `bytes` more bytes of `desc` moved.
    fn transfer_progress(&self, _desc: &Descriptor, _bytes: u64) {}
    /// A blob is done.
    fn blob_done(&self, _desc: &Descriptor, _outcome: BlobOutcome) {}
    /// A transfer failed and will be retried.
    fn transfer_retry(&self, _desc: &Descriptor, _error: &crate::Error) {}
    /// A manifest was written (`true`) or found present (`false`).
    fn manifest_done(&self, _desc: &Descriptor, _written: bool) {}
}

/// A reporter that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Reporter for NoProgress {}
