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
    crate::graft::layer_file(home, &tree)
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
    // A TMPDIR whose path buildah refuses in a layout reference: bad input naming it.
    let upper = h.join("Upper");
    std::fs::create_dir_all(&upper).unwrap();
    let run = capture(
        command(h)
            .env("TMPDIR", &upper)
            .args(["test", &oci, "--cmd", "true"]),
    )
    .fails(2);
    assert!(run.stderr.contains("TMPDIR ("), "{}", run.all());
}

/// Processes whose command line is `sleep SECONDS` that have not ended (zombies count as
/// ended), waiting a while for killed ones to finish dying.
fn sleeps(seconds: &str) -> Vec<String> {
    let mut left = Vec::new();
    for _ in 0..100 {
        left = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let p = e.path();
                let cmd = std::fs::read(p.join("cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z');
                cmd == format!("sleep\0{seconds}\0").as_bytes() && !zombie
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    left
}

#[test]
fn background_processes_and_signals_end_with_the_test() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let oci = format!("oci:{}:1", h.join("layout").display());
    image_for(h, "linux/amd64", &oci, &[]);
    // A command that leaves a process running: the test passes and ends, and graft with it
    // (this run hung before: the harness's timeout is the bound), the process is killed.
    let run = test(
        h,
        &["-o", "json", &oci, "--cmd", "sleep 2917 & echo started"],
    )
    .ok();
    assert_eq!(run.json()["tests"][0]["output"], "started", "{}", run.all());
    assert_eq!(sleeps("2917"), Vec::<String>::new(), "left running");
    // The tested image was removed from buildah's storage afterwards.
    let storage = h.join("storage");
    let images = std::process::Command::new("buildah")
        .arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"))
        .args(["--storage-driver", "vfs", "images", "-q"])
        .output()
        .unwrap();
    assert!(images.status.success(), "{images:?}");
    assert_eq!(String::from_utf8_lossy(&images.stdout).trim(), "", "kept");
    // SIGTERM to graft while a test runs: the test's process group is killed, exit 143.
    let child = command(h)
        .args(["-q", "test", "--storage"])
        .arg(&storage)
        .args([&oci, "--cmd", "sleep 2918"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the command to be running (pulling the image comes first).
    let mut started = false;
    for _ in 0..1200 {
        if !sleeps_now("2918").is_empty() {
            started = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(started, "sleep 2918 never started");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert_eq!(sleeps("2918"), Vec::<String>::new(), "left running");
}

/// Processes running `sleep SECONDS` now (no waiting).
fn sleeps_now(seconds: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).unwrap_or_default()
                == format!("sleep\0{seconds}\0").as_bytes()
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
