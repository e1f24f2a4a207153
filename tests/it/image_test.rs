//! `graft test REF --cmd …` with real buildah (vfs storage, chroot isolation) on an image made
//! by graft from Debian's static busybox: a passing command, a failing one (exit 3 with its
//! output), the JSON report, a time limit, an `oci:` layout, a registry with credentials
//! (never shown), a foreign platform without QEMU.

use std::path::Path;

use crate::graft::{capture, command, Run};
use crate::support::registry::{Registry, RegistryOpts};

/// A layer with busybox as /bin/sh, /bin/sleep and /bin/cat, and a marker file.
fn busybox_layer(home: &Path) -> std::path::PathBuf {
    let tree = home.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .expect("/bin/busybox (Debian package busybox-static)");
    for applet in ["sh", "sleep", "cat", "yes", "head"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    std::fs::write(tree.join("etc/marker"), "marked\n").unwrap();
    let out = home.join("layer.tar.gz");
    capture(
        command(home)
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["layer", "build"])
            .arg(&tree)
            .arg("-f")
            .arg(&out),
    )
    .ok();
    out
}

/// The busybox image written to `dest` (linux/amd64 in an index, and linux/s390x).
fn image(home: &Path, dest: &str, extra: &[&str]) {
    image_for(home, "linux/amd64,linux/s390x", dest, extra)
}

/// The busybox image for `platforms` written to `dest` (one: a single manifest).
fn image_for(home: &Path, platforms: &str, dest: &str, extra: &[&str]) {
    let layer = busybox_layer(home);
    capture(
        command(home)
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["-q", "--tls-verify=false", "append", "--base", "scratch"])
            .args(["--platform", platforms, "--layer"])
            .arg(&layer)
            .args(extra)
            .arg(dest),
    )
    .ok();
}

/// `graft test` with its own buildah storage under `home`.
fn test(home: &Path, args: &[&str]) -> Run {
    let storage = home.join("storage");
    capture(
        command(home)
            .args(["-q", "--tls-verify=false", "test", "--storage"])
            .arg(&storage)
            .args(args),
    )
}

#[test]
fn commands_pass_fail_and_time_out_in_a_registry_image() {
    let reg = Registry::start(RegistryOpts::htpasswd("alice", "s3cret-pass"));
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let reference = format!("{}/t/bb:1", reg.addr());
    image(
        h,
        &format!("docker://{reference}"),
        &["--creds", "alice:s3cret-pass"],
    );
    let creds = "alice:s3cret-pass";
    // Passing commands: text report, exit 0.
    let run = test(
        h,
        &[
            "--creds",
            creds,
            &reference,
            "--cmd",
            "test \"$(cat /etc/marker)\" = marked",
            "--cmd",
            "echo hello",
        ],
    )
    .ok();
    assert!(run.stdout.contains("passed"), "{}", run.all());
    assert!(run.stdout.contains("@sha256:"), "{}", run.all());
    assert!(!run.all().contains("s3cret"), "{}", run.all());
    // JSON: the digest resolved once, the platform, each command with its output.
    let run = test(
        h,
        &[
            "-o",
            "json",
            "--creds",
            creds,
            &format!("docker://{reference}"),
            "--cmd",
            "echo out; echo err >&2",
            "--cmd",
            "echo broken; exit 7",
            "--cmd",
            "true",
        ],
    )
    .fails(3);
    let r = run.json();
    assert_eq!(r["passed"], false);
    assert_eq!(r["platform"], "linux/amd64");
    assert!(r["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_ne!(
        r["digest"], r["manifest"],
        "an index: the amd64 manifest is tested"
    );
    let tests = r["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3, "every command runs");
    assert_eq!(tests[0]["status"], "passed");
    assert_eq!(tests[0]["exit_code"], 0);
    assert!(tests[0]["output"].as_str().unwrap().contains("out"));
    assert!(tests[0]["output"].as_str().unwrap().contains("err"));
    assert_eq!(tests[1]["status"], "failed");
    assert_eq!(tests[1]["exit_code"], 7);
    // buildah adds its own lines after the command's.
    assert!(
        tests[1]["output"].as_str().unwrap().starts_with("broken\n"),
        "{}",
        run.stdout
    );
    assert_eq!(tests[1]["command"], "echo broken; exit 7");
    assert_eq!(tests[2]["status"], "passed");
    // The error names the command, its status and its output (stderr).
    assert!(
        run.stderr
            .contains("the test \"echo broken; exit 7\" failed (exit status: 7)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("broken"), "{}", run.stderr);
    assert!(!run.all().contains("s3cret"));
    // Much output is bounded to its end.
    let run = test(
        h,
        &[
            "-o",
            "json",
            "--creds",
            creds,
            &reference,
            "--cmd",
            "yes line | head -n 100000; echo last",
        ],
    )
    .ok();
    let t = &run.json()["tests"][0];
    assert!(t["output"].as_str().unwrap().ends_with("last"));
    assert!(t["output"].as_str().unwrap().len() <= 4096);
    assert_eq!(t["output_truncated"], true);
    // A time limit: the command is stopped, the test fails cleanly.
    let run = test(
        h,
        &[
            "-o",
            "json",
            "--creds",
            creds,
            "--test-timeout",
            "2",
            &reference,
            "--cmd",
            "echo waiting; sleep 60",
        ],
    )
    .fails(3);
    let t = &run.json()["tests"][0];
    assert_eq!(t["status"], "timed-out", "{}", run.all());
    assert_eq!(t["exit_code"], serde_json::Value::Null);
    assert_eq!(t["output"], "waiting");
    assert!(run.stderr.contains("stopped after 2s"), "{}", run.stderr);
    // Without credentials the registry refuses: graft's own error, before buildah.
    let run = test(h, &[&reference, "--cmd", "true"]).fails(1);
    assert!(
        run.stderr.contains("401") || run.stderr.contains("auth"),
        "{}",
        run.all()
    );
}

#[test]
fn a_layout_image_and_a_foreign_platform() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let layout = h.join("layout");
    let oci = format!("oci:{}:1", layout.display());
    image(h, &oci, &[]);
    let run = test(h, &["-o", "json", &oci, "--cmd", "cat /etc/marker"]).ok();
    let r = run.json();
    assert_eq!(r["tests"][0]["output"], "marked", "{}", run.all());
    assert_eq!(r["reference"], oci);
    // s390x without an emulator: refused before anything runs (exit 2), naming the platform.
    let no_qemu = tempfile::tempdir().unwrap();
    let run = capture(
        command(h)
            .args(["test", "--platform", "linux/s390x", "--binfmt-dir"])
            .arg(no_qemu.path())
            .args(["--buildah", "/nonexistent", &oci, "--cmd", "true"]),
    )
    .fails(2);
    assert!(
        run.stderr.contains("platform linux/s390x cannot run"),
        "{}",
        run.all()
    );
    // A single-manifest image is for its config's platform: s390x needs an emulator, and
    // another --platform is not in it.
    let single = format!("oci:{}:s390x", h.join("single").display());
    let home2 = tempfile::tempdir().unwrap();
    image_for(home2.path(), "linux/s390x", &single, &[]);
    let run = capture(
        command(h)
            .args(["test", "--binfmt-dir"])
            .arg(no_qemu.path())
            .args([&single, "--cmd", "true"]),
    )
    .fails(2);
    assert!(
        run.stderr.contains("platform linux/s390x cannot run"),
        "{}",
        run.all()
    );
    let run = capture(command(h).args([
        "test",
        "--platform",
        "linux/amd64",
        &single,
        "--cmd",
        "true",
    ]))
    .fails(2);
    assert!(
        run.stderr
            .contains("is a single-platform image for linux/s390x, not linux/amd64"),
        "{}",
        run.all()
    );
    // No command: a usage error.
    capture(command(h).args(["test", &oci])).fails(2);
}
