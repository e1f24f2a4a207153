//! Helpers to run the real clients installed on the machine (skopeo, umoci),
//! hash bytes and find free loopback ports.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

/// Runs `cmd` (stdin closed) and returns its output, whatever the exit status.
/// Panics only if the program cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` and panics, showing stdout and stderr, unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    if !out.status.success() {
        panic!(
            "command failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn skopeo_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("skopeo");
    // The default Debian policy accepts everything anyway; this makes the
    // helpers independent of /etc/containers/policy.json.
    cmd.arg("--insecure-policy").args(args);
    cmd
}

/// Runs `skopeo --insecure-policy ARGS...`; panics with stderr on failure.
pub fn skopeo<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_ok(&mut skopeo_command(args))
}

/// Like [`skopeo`] but returns the output whatever the exit status.
pub fn try_skopeo<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&mut skopeo_command(args))
}

/// `skopeo inspect --raw EXTRA... REFERENCE`: the exact manifest bytes.
/// `extra_args` carries e.g. [`crate::support::registry::Registry::skopeo_inspect_args`].
pub fn skopeo_inspect_raw<S: AsRef<OsStr>>(reference: &str, extra_args: &[S]) -> Vec<u8> {
    let mut args: Vec<&OsStr> = vec![OsStr::new("inspect"), OsStr::new("--raw")];
    args.extend(extra_args.iter().map(AsRef::as_ref));
    args.push(OsStr::new(reference));
    skopeo(args).stdout
}

/// Runs `umoci ARGS...`; panics with stderr on failure.
pub fn umoci<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_ok(Command::new("umoci").args(args))
}

/// Like [`umoci`] but returns the output whatever the exit status.
pub fn try_umoci<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new("umoci").args(args))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// OCI digest string `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
/// the port, close). Another process may take it before you bind it: callers
/// that can should retry on "address already in use" (the registry does).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The crate's `testdata/` directory.
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// OCI layout directory of a sample science image: `"astro-base"` (ref `1.0`)
/// or `"jupyter-sci"` (ref `2.4`), made by `testdata/make-science.py`.
pub fn science_layout(name: &str) -> PathBuf {
    testdata_dir().join("science").join(name)
}

/// `oci:<layout>:<ref>` reference of a sample science image, for skopeo.
pub fn science_oci_ref(name: &str) -> String {
    let tag = match name {
        "astro-base" => "1.0",
        "jupyter-sci" => "2.4",
        other => panic!("unknown science image {other:?}"),
    };
    format!("oci:{}:{tag}", science_layout(name).display())
}

/// Copies the tree `from` to `to` (created), files with their permission bits (as
/// `std::fs::copy` does); a symlink is copied as the file it points to.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// Writes `text` to `dir/path`, creating its parent directories.
pub fn write_file(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A temporary directory holding `files` (path, content).
pub fn files_dir<S: AsRef<str>>(files: &[(&str, S)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        write_file(dir.path(), path, content.as_ref());
    }
    dir
}
