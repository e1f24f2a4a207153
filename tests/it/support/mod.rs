//! Integration-test support: a real `docker-registry` (distribution 2.8) with
//! optional htpasswd/token auth and TLS, an in-process token server, a
//! fault-injecting reverse proxy, helpers to run real clients (skopeo,
//! umoci), and the pinned peer tools (cosign, crane, oras, regctl) with a
//! referrers-API registry (`peers`).
//!
//! Everything here is synchronous to the caller: in-process servers run on a
//! dedicated support runtime (see [`runtime`]), so the helpers work from plain
//! `#[test]` functions and from `#[tokio::test]` functions of either flavour,
//! even while the test thread blocks on a child process.

// Each test binary uses only part of the support code.
#![allow(dead_code)]

pub mod git;
pub mod hostile;
pub mod peers;
pub mod proxy;
pub mod registry;
pub mod token;
pub mod tools;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// The runtime that hosts the in-process servers (token server, proxy) and
/// the readiness probes. Created on first use, never shut down.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("graft-test-support")
            .enable_all()
            .build()
            .expect("build the test-support runtime")
    })
}

/// Runs `fut` on the support [`runtime`] and blocks the calling thread until
/// it finishes. Safe to call from inside another tokio runtime (the work is
/// done on the support runtime's threads, not the caller's).
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("support task panicked")
}

/// Polls `check` every `interval` until it returns `Some`, or until `timeout`
/// has passed (then returns `None`). Bounded polling, for readiness checks.
pub fn poll_until<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}
