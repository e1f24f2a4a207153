//! Driving an existing builder. graft does not interpret Dockerfiles: it plans and orders the
//! builds ([`crate::library::order`]), runs the builder once per image and platform, and owns
//! everything after (index, tags, compat, signatures). [`buildah`] drives buildah (daemonless,
//! a Debian package); [`binfmt`] says whether a foreign platform's RUN steps can execute here.

pub mod binfmt;
pub mod buildah;

use std::fmt;
use std::time::Duration;

/// Why a builder process failed. Carried inside [`crate::Error::Internal`] by the use case,
/// whose context names the image and platform.
#[derive(Debug)]
pub enum BuilderError {
    /// The program could not be started (not installed, not executable).
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It ran and exited unsuccessfully.
    Failed {
        /// What was run (`buildah build`).
        what: String,
        /// The exit status as the system reports it (`exit status: 1`, `signal: 9`).
        status: String,
        /// The end of its output, when captured (tests inside images), else empty.
        tail: String,
    },
    /// It ran longer than its time limit and was killed.
    TimedOut {
        /// What was run.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// It succeeded but what it left behind is unusable (a digest file, say).
    Output {
        /// What was expected.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for BuilderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuilderError::Spawn { program, source } => {
                write!(f, "cannot start {program}: {source}")
            }
            BuilderError::Failed { what, status, tail } => {
                write!(f, "{what} failed ({status})")?;
                if !tail.is_empty() {
                    write!(f, "; its output ends with:\n{tail}")?;
                }
                Ok(())
            }
            BuilderError::TimedOut { what, after } => {
                write!(
                    f,
                    "{what} ran longer than {}s and was stopped",
                    after.as_secs()
                )
            }
            BuilderError::Output { what, reason } => write!(f, "{what}: {reason}"),
        }
    }
}

impl std::error::Error for BuilderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuilderError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}
