//! A reader that stops early (`graft plan | head -1`) is normal use of a Unix filter: graft
//! must end quietly with exit 0, not panic on the closed pipe.

use std::path::Path;
use std::process::Stdio;

use crate::graft::command;

/// Run graft in the repository (whose sample library is at its root) with stdout a pipe whose
/// reader is closed before graft writes, and return its exit code and stderr.
fn with_closed_stdout(args: &[&str]) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let mut child = command(home.path())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        // CI may check the repository out shallow, where graft refuses history-derived layer
        // times unless SOURCE_DATE_EPOCH gives them.
        .env("SOURCE_DATE_EPOCH", "0")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run graft");
    // Closing the read end at once: graft's first write finds no reader (EPIPE), however
    // little it prints, whereas reading a line first would let small outputs fit the pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_quietly_with_exit_0() {
    let astro = "oci:testdata/science/astro-base";
    for args in [
        // --branch: a detached checkout would warn that no branch is known.
        &["plan", "--build", "1", "--commit", "c", "--branch", "main"][..],
        &[
            "plan", "--build", "1", "--commit", "c", "--branch", "main", "-o", "json",
        ],
        &["validate"],
        &["inspect", astro],
        &["inspect", "--raw", astro],
        &["ls", "oci:testdata/science/astro-base"],
    ] {
        let (code, stderr) = with_closed_stdout(args);
        assert!(!stderr.contains("panicked"), "graft {args:?}:\n{stderr}");
        assert_eq!(code, 0, "graft {args:?}:\n{stderr}");
        assert_eq!(stderr, "", "graft {args:?}");
    }
}
