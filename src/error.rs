//! graft's error type: structured kinds that keep their cause chain.

use std::path::PathBuf;

use crate::oci::digest::Digest;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One entry of a registry's JSON error body (`{"errors":[{code,message,detail}]}`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
pub struct RegistryErrorItem {
    /// The registry's code, e.g. `MANIFEST_UNKNOWN`.
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// Everything that can go wrong in graft's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference could not be parsed.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest string could not be parsed.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A platform string could not be parsed.
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Content did not hash to the digest it was addressed by.
    #[error("digest mismatch for {what}: expected {expected}, found {found}")]
    DigestMismatch {
        /// What was being read.
        what: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        found: Digest,
    },
    /// Content did not have the size its descriptor states.
    #[error("size mismatch for {what}: expected {expected} bytes, found {found}")]
    SizeMismatch {
        /// What was being read.
        what: String,
        /// The size it should have.
        expected: u64,
        /// The size it has (so far).
        found: u64,
    },
    /// A manifest, blob or tag does not exist.
    #[error("{what} not found{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    NotFound {
        /// What was looked for (a reference, a digest).
        what: String,
        /// Extra detail, e.g. the registry's message or the tags that do exist.
        detail: Option<String>,
    },
    /// The registry answered with an error status.
    #[error("{method} {url}: registry answered {status}{}", format_items(errors))]
    Registry {
        /// HTTP method of the failed request.
        method: String,
        /// The URL, with credentials removed.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The registry's own error codes and messages.
        errors: Vec<RegistryErrorItem>,
    },
    /// Authentication failed or credentials could not be obtained.
    #[error("authentication to {registry} failed: {reason}")]
    Auth {
        /// The registry host.
        registry: String,
        /// Why (never contains a secret).
        reason: String,
    },
    /// A network-level failure (connection refused, reset, TLS, timeout).
    #[error("{context}")]
    Http {
        /// What was being done, e.g. `GET https://host/v2/`.
        context: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A local file operation failed.
    #[error("{context} {}", path.display())]
    Io {
        /// What was being done, e.g. "reading".
        context: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document could not be parsed.
    #[error("invalid JSON in {what}")]
    Json {
        /// Which document.
        what: String,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A document is structurally wrong (missing field, unknown media type, bad layout).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which document or directory.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Input named on the command line is wrong: a sync file whose contents are invalid, a
    /// library or layer that does not exist. Bad input (exit 2), unlike a document read from
    /// a store or registry ([`Error::Invalid`]).
    #[error("invalid {what}: {reason}")]
    Input {
        /// The file, directory or name given.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob stream failed on the reading side (the full error is reported by the engine).
    #[error("the source stream failed: {0}")]
    SourceStream(String),
    /// The operation is not possible with these arguments.
    #[error("{0}")]
    Unsupported(String),
    /// A library has problems. The library layer's own error type (its root and every
    /// problem, each with file, line, column and field path), carried opaque so that this
    /// module depends on nothing above it: shown, and chained, exactly as that error.
    #[error(transparent)]
    Library(Box<dyn std::error::Error + Send + Sync>),
    /// A layer source tree holds something that cannot go into a layer (a device, fifo or
    /// socket, a symlink out of the tree, a reserved or non-UTF-8 name).
    #[error("{}: {reason}", path.display())]
    Layer {
        /// The file or directory in the source tree.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry of a layer's `remove` or `modes` list is unusable.
    #[error("{field} entry {entry:?}: {reason}")]
    LayerSpec {
        /// The list: `remove` or `modes`.
        field: String,
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing a layer to its output failed.
    #[error("writing the layer failed")]
    LayerWrite(#[source] std::io::Error),
    /// A signing or verification key could not be read, decrypted or used. Never carries the
    /// key material or the password.
    #[error("key {what}: {reason}")]
    Key {
        /// Where the key came from (a path or `env://VAR`).
        what: String,
        /// What is wrong (wrong password, unsupported type, bad PEM).
        reason: String,
    },
    /// A signature or attestation did not verify. The signing layer's own failure type
    /// (subject, kind, every candidate's problem), carried opaque like [`Error::Library`].
    #[error(transparent)]
    Verify(Box<dyn std::error::Error + Send + Sync>),
    /// Something inside graft failed that no input explains: a task panicked or was cancelled.
    #[error("{context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The failure (e.g. the task's join error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read-modify-write of a shared tag (a `.sig`/`.att` manifest, a referrers index) kept
    /// losing to concurrent writers.
    #[error("{what}: concurrent writers replaced it {attempts} times; giving up")]
    Conflict {
        /// The tag being updated.
        what: String,
        /// How many times graft merged and wrote.
        attempts: u32,
    },
    /// A command run inside an image (`graft test`, the tests of `graft build`) failed or ran
    /// out of time. Not graft's failure nor bad input: exit 3 ([`Error::is_test_failure`]).
    #[error("{}", test_failed(image, command, ended, output))]
    TestFailed {
        /// The image (reference and digest, or what was built).
        image: String,
        /// The command (`sh -c`).
        command: String,
        /// How it ended (`exit status: 7`, `stopped after 600s`).
        ended: String,
        /// The end of its output (bounded by the caller).
        output: String,
    },
    /// An error with added context about what was being done.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
}

fn test_failed(image: &str, command: &str, ended: &str, output: &str) -> String {
    let mut s = format!("the test {command:?} failed ({ended}) in {image}");
    if !output.is_empty() {
        s.push_str("; its output ends with:\n");
        s.push_str(output);
    }
    s
}

fn format_items(items: &[RegistryErrorItem]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = items
        .iter()
        .map(|i| {
            if i.message.is_empty() {
                i.code.clone()
            } else {
                format!("{}: {}", i.code, i.message)
            }
        })
        .collect();
    format!(" ({})", parts.join("; "))
}

impl Error {
    /// Wrap with a description of what was being done.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost graft error (skipping context wrappers).
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// Whether retrying the operation may succeed: dropped connections, timeouts,
    /// 5xx and 429 answers.
    pub fn is_retryable(&self) -> bool {
        match self.root() {
            Error::Http { source, .. } => {
                source.is_connect()
                    || source.is_timeout()
                    || source.is_request()
                    || source.is_body()
                    || source.is_decode()
            }
            Error::Registry { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether this is (at its root) a bad-input error: the user should fix their arguments
    /// or their input files (a library with problems, a missing key or sync file).
    pub fn is_usage(&self) -> bool {
        matches!(
            self.root(),
            Error::InvalidReference { .. }
                | Error::Library(_)
                | Error::InvalidDigest { .. }
                | Error::InvalidPlatform { .. }
                | Error::Unsupported(_)
                | Error::Input { .. }
                | Error::Layer { .. }
                | Error::LayerSpec { .. }
                | Error::Key { .. }
        )
    }

    /// Whether this is (at its root) a test inside an image that failed: exit 3.
    pub fn is_test_failure(&self) -> bool {
        matches!(self.root(), Error::TestFailed { .. })
    }

    /// Build an internal error: `context` says what was being done.
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Internal {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Build an I/O error.
    pub fn io(context: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.to_string(),
            path: path.into(),
            source,
        }
    }
}

/// Adds `.context()` to results.
pub trait ResultExt<T> {
    /// Wrap the error with a description of what was being done.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.context(context()))
    }
}

/// The messages of `e`'s causes, outermost first (not `e`'s own): the one walk of a cause
/// chain, used to print an error (one `caused by:` line each) and to flatten it into one line.
pub fn causes(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push(s.to_string());
        source = s.source();
    }
    out
}

/// `e` and its causes on one line, joined by `: ` (for reports that hold an error as text).
pub fn one_line(e: &dyn std::error::Error) -> String {
    std::iter::once(e.to_string())
        .chain(causes(e))
        .collect::<Vec<_>>()
        .join(": ")
}
