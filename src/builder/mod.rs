//! Driving an existing builder. graft does not interpret Dockerfiles: it plans and orders the
//! builds ([`crate::library::order`]), runs the builder once per image and platform, and owns
//! everything after (index, tags, compat, signatures). [`buildah`] drives buildah (daemonless,
//! a Debian package); [`binfmt`] says whether a foreign platform's RUN steps can execute here.

pub mod binfmt;
pub mod buildah;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// Process groups of builder commands running now (tests inside images, each in its own
/// group): what [`stop_running`] kills when graft is interrupted.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// A running process group, registered while it lives; dropping it kills the group (what is
/// left of it: the leader may have ended) and unregisters it.
pub(crate) struct Running(i32);

impl Running {
    /// Register the group `pgid` (a child started with `process_group(0)`: its pid).
    pub(crate) fn new(pgid: i32) -> Running {
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pgid);
        Running(pgid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill_group(self.0);
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        // Gone already (nothing was left of it): nothing to do.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Kill every registered process group (tests inside images running now), for a graft that
/// is interrupted (SIGINT, SIGTERM): without it they would run on with no time limit, each
/// in its own group that the terminal's or CI's signal does not reach.
pub fn stop_running() {
    let groups = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner()));
    for g in groups {
        kill_group(g);
    }
}

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
