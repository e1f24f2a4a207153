//! `graft build` with real buildah (vfs storage, chroot isolation) and a real registry: a
//! base FROM scratch with busybox and a child FROM it (RUN, ARG) build in order, the child
//! pinned to the base's digest; a rebuild of the child alone pins the base's existing tag;
//! with compat the build goes to science_target and refresh writes the target, and a child
//! FROM the target builds on the refreshed image; a failing
//! test tags nothing; a foreign platform with RUN fails before any build.

use std::path::Path;

use crate::graft::{run_in, Run};
use crate::support::peers::Peer;
use crate::support::registry::Registry;
use crate::support::tools::files_dir;

pub(crate) fn library(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = files_dir(files);
    // The base image's only file: Debian's static busybox (busybox-static).
    let bb = dir.path().join("images/base/busybox");
    std::fs::create_dir_all(bb.parent().unwrap()).unwrap();
    std::fs::copy("/bin/busybox", &bb).expect("/bin/busybox (Debian package busybox-static)");
    dir
}

pub(crate) const BASE_DOCKERFILE: &str = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

pub(crate) const CHILD_DOCKERFILE: &str =
    "ARG REGISTRY\nFROM ${REGISTRY}/lib/base:1.0\nARG GREETING=hello\nRUN echo $GREETING > /greeting\n";

pub(crate) fn base_manifest(extra: &str) -> String {
    format!("name: base\nversion: 1.0\nbuild:\n  path: images/base\n  platforms: [linux/amd64]\n  test: /bin/busybox true\n{extra}")
}

pub(crate) fn chain(
    reg: &Registry,
    base_extra: &str,
    child_checks: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("graft.yaml", format!("repo: docker://{}/lib\ndefault_branch: main\n", reg.addr())),
        ("layers/compat/layer.yaml", "{}\n".into()),
        ("layers/compat/files/etc/compat", "compat\n".into()),
        ("manifests/base.yaml", base_manifest(base_extra)),
        ("images/base/Dockerfile", BASE_DOCKERFILE.into()),
        (
            "manifests/child.yaml",
            format!("name: child\nversion: 1.0\nbuild:\n  path: images/child\n  platforms: [linux/amd64]\n  args: {{REGISTRY: '{}', GREETING: hi}}\n  test: grep -q hi /greeting\nchecks: [{child_checks}]\n", reg.addr()),
        ),
        ("images/child/Dockerfile", CHILD_DOCKERFILE.into()),
    ]
}

fn build(lib: &Path, names: &[&str]) -> Run {
    let storage = lib.join(".storage");
    let storage = storage.to_str().unwrap();
    let mut args = vec![
        "build",
        "--library",
        ".",
        "--tls-verify=false",
        "--storage",
        storage,
        "--build",
        "1",
        "--commit",
        "abc",
        "--branch",
        "main",
        "-o",
        "json",
    ];
    args.extend(names);
    run_in(lib, &args)
}

fn tags(peer: &Peer, reference: &str) -> String {
    let out = peer.try_run("crane", ["ls", reference]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chain_builds_in_order_pinned_then_child_alone_pins_the_existing_base() {
    let reg = Registry::plain();
    let lib = library(&chain(&reg, "", "'cat /greeting'"));
    let run = build(lib.path(), &[]).ok();
    let r = run.json();
    let images = r["images"].as_array().unwrap();
    assert_eq!(images[0]["name"], "base", "{}", run.all());
    assert_eq!(images[1]["name"], "child");
    let base_digest = images[0]["digest"].as_str().unwrap().to_string();
    let child = &images[1];
    assert_eq!(child["bases"][0]["digest"], base_digest.as_str());
    assert_eq!(child["bases"][0]["built_now"], true);
    assert_eq!(child["tests"][0]["command"], "grep -q hi /greeting");
    assert_eq!(child["tests"][1]["command"], "cat /greeting");
    // The final images (no compat) have their tags, readable by other clients.
    let peer = Peer::new().plain_http(reg.addr());
    let child_ref = format!("{}/lib/child:1.0", reg.addr());
    let index = peer.crane(["manifest", &child_ref]);
    let index: serde_json::Value = serde_json::from_slice(&index.stdout).unwrap();
    assert_eq!(
        index["annotations"]["org.opencontainers.image.base.digest"],
        base_digest.as_str()
    );
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    assert_eq!(
        index["annotations"]["org.opencontainers.image.base.name"],
        format!("{}/lib/base:1.0", reg.addr())
    );
    let cfg = peer.crane(["config", "--platform", "linux/amd64", &child_ref]);
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
    assert_eq!(
        cfg["config"]["Labels"]["org.opencontainers.image.version"],
        serde_json::Value::Null
    );
    assert!(tags(&peer, &format!("{}/lib/base", reg.addr())).contains("1.0"));
    // Built FROM the base just written: the child's first layer is the base's.
    let layers = |r: &str| {
        let m = peer.crane(["manifest", "--platform", "linux/amd64", r]);
        let m: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
        m["layers"].as_array().unwrap().clone()
    };
    let base_layers = layers(&format!("{}/lib/base:1.0", reg.addr()));
    let child_layers = layers(&child_ref);
    assert_eq!(child_layers.len(), base_layers.len() + 1);
    assert_eq!(child_layers[0]["digest"], base_layers[0]["digest"]);

    // The child alone: the base is not rebuilt, its tag is resolved once and pinned.
    let run = build(lib.path(), &["child"]).ok();
    let r = run.json();
    assert_eq!(r["images"].as_array().unwrap().len(), 1, "{}", run.all());
    assert_eq!(r["images"][0]["bases"][0]["built_now"], false);
    assert_eq!(r["images"][0]["bases"][0]["digest"], base_digest.as_str());
}

#[test]
fn with_compat_the_build_goes_to_science_target_and_refresh_writes_target() {
    let reg = Registry::plain();
    // The child's FROM names the base's final (refreshed) image: it builds on the compat
    // layer, which its check finds.
    let files = chain(&reg, "compat: compat\n", "'test -f /etc/compat'");
    let lib = library(&files);
    let run = build(lib.path(), &[]).ok();
    let r = run.json();
    let img = &r["images"][0];
    let child = &r["images"][1];
    assert_eq!(
        child["bases"][0]["digest"],
        img["refresh"]["digest"],
        "{}",
        run.all()
    );
    assert_eq!(child["tests"][1]["command"], "test -f /etc/compat");
    // The tests ran again inside the refreshed image, before its tags.
    assert_eq!(img["tests"][0]["status"], "passed");
    assert_eq!(img["refresh_tests"][0]["command"], "/bin/busybox true");
    assert_eq!(img["refresh_tests"][0]["status"], "passed");
    assert_eq!(img["refresh_tests"][0]["platform"], "linux/amd64");
    assert!(
        child.get("refresh_tests").is_none(),
        "no compat, no refresh"
    );
    let science = img["digest"].as_str().unwrap();
    assert_eq!(
        img["references"][0],
        format!("docker://{}/lib/sci/base:1.0", reg.addr())
    );
    assert_eq!(img["refresh"]["science_digest"], science, "{}", run.all());
    let final_digest = img["refresh"]["digest"].as_str().unwrap();
    assert_ne!(final_digest, science);
    let peer = Peer::new().plain_http(reg.addr());
    let got = peer.crane(["digest", &format!("{}/lib/base:1.0", reg.addr())]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), final_digest);
    let got = peer.crane(["digest", &format!("{}/lib/sci/base:1.0", reg.addr())]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), science);
}

#[test]
fn a_check_failing_only_in_the_refreshed_image_tags_neither_image() {
    let reg = Registry::plain();
    // Passes in the built image, fails once the compat layer adds /etc/compat.
    let mut files = chain(
        &reg,
        "compat: compat\nchecks: ['test ! -e /etc/compat']\n",
        "",
    );
    files.retain(|(p, _)| !p.contains("child"));
    let lib = library(&files);
    let run = build(lib.path(), &[]).fails(3);
    let err = &run.stderr;
    assert!(
        err.contains("manifests/base.yaml: a test inside the refreshed image failed, no tag of it or of the built image was written"),
        "{}",
        run.all()
    );
    assert!(
        err.contains("the test \"test ! -e /etc/compat\" failed (exit status: 1) in the refreshed image (linux/amd64)"),
        "{err}"
    );
    // Neither the final image nor the science image has a tag.
    let peer = Peer::new().plain_http(reg.addr());
    for repo in ["lib/base", "lib/sci/base"] {
        let out = peer.try_run("crane", ["ls", &format!("{}/{repo}", reg.addr())]);
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(listed.trim().is_empty(), "{repo}: {listed}");
    }
}

#[test]
fn a_layout_science_target_is_tagged_only_after_the_refreshed_tests() {
    let reg = Registry::plain();
    let mut files = chain(
        &reg,
        "compat: compat\nchecks: ['test ! -e /etc/compat']\n",
        "",
    );
    files.retain(|(p, _)| !p.contains("child"));
    files[0].1.push_str("science_target: oci:sci/{name}\n");
    let lib = library(&files);
    let layout_tags = |lib: &Path| -> Vec<String> {
        let Ok(index) = std::fs::read(lib.join("sci/base/index.json")) else {
            return Vec::new();
        };
        let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .map(str::to_string)
            .collect()
    };
    // Every entry of the layout's index.json, tagged or not.
    let layout_entries = |lib: &Path| -> usize {
        let Ok(index) = std::fs::read(lib.join("sci/base/index.json")) else {
            return 0;
        };
        let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
        index["manifests"].as_array().unwrap().len()
    };
    build(lib.path(), &[]).fails(3);
    assert!(layout_tags(lib.path()).is_empty());
    // Nothing at all was written to the layout: not even an untagged entry.
    assert_eq!(layout_entries(lib.path()), 0);
    // Passing: the refresh read the untagged science image from the work directory, then
    // the science tag and the final image were written.
    std::fs::write(
        lib.path().join("manifests/base.yaml"),
        base_manifest("compat: compat\nchecks: ['test -e /etc/compat || echo built-only']\n"),
    )
    .unwrap();
    let run = build(lib.path(), &[]).ok();
    let img = &run.json()["images"][0];
    assert_eq!(img["refresh_tests"][1]["status"], "passed", "{}", run.all());
    assert_eq!(img["refresh_tests"][1]["output"], "");
    assert_eq!(img["tests"][1]["output"], "built-only");
    assert_eq!(layout_tags(lib.path()), ["1.0"]);
    // Written once, with its tag: no untagged duplicate beside it.
    assert_eq!(layout_entries(lib.path()), 1);
    assert_eq!(img["refresh"]["science_digest"], img["digest"]);
    let peer = Peer::new().plain_http(reg.addr());
    let got = peer.crane(["digest", &format!("{}/lib/base:1.0", reg.addr())]);
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        img["refresh"]["digest"].as_str().unwrap()
    );
}

#[test]
fn a_failing_check_or_build_tags_nothing() {
    let reg = Registry::plain();
    let mut files = chain(&reg, "checks: ['test -x /bin/sh']\n", "");
    files.retain(|(p, _)| !p.contains("child"));
    let lib = library(&files);
    let peer = Peer::new().plain_http(reg.addr());
    let repo = format!("{}/lib/base", reg.addr());
    let reference = format!("{repo}:1.0");
    build(lib.path(), &[]).ok();
    let before = tags(&peer, &repo);
    assert_eq!(before.trim(), "1.0");
    let digest = |r: &str| {
        String::from_utf8_lossy(&peer.crane(["digest", r]).stdout)
            .trim()
            .to_string()
    };
    let first = digest(&reference);
    // A changed image whose check fails: exit 3, the command and its output; the tag stays.
    std::fs::write(
        lib.path().join("images/base/Dockerfile"),
        format!("{BASE_DOCKERFILE}RUN echo changed > /changed\n"),
    )
    .unwrap();
    let m = lib.path().join("manifests/base.yaml");
    std::fs::write(&m, base_manifest("checks: ['echo broken-check; exit 7']\n")).unwrap();
    let run = build(lib.path(), &[]).fails(3);
    let err = run.stderr.clone();
    assert!(
        err.contains(
            "manifests/base.yaml: a test inside the built image failed, nothing was tagged"
        ),
        "{err}"
    );
    assert!(
        err.contains("the test \"echo broken-check; exit 7\" failed (exit status: 7)"),
        "{err}"
    );
    assert!(err.contains("broken-check"), "{err}");
    assert_eq!(tags(&peer, &repo), before);
    assert_eq!(digest(&reference), first);
    // A failing build: named with its platform and buildah's status; nothing written.
    std::fs::write(
        lib.path().join("images/base/Dockerfile"),
        format!("{BASE_DOCKERFILE}RUN exit 3\n"),
    )
    .unwrap();
    let run = build(lib.path(), &[]).fails(1);
    assert!(
        run.stderr
            .contains("manifests/base.yaml: building for linux/amd64"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("buildah build failed (exit status: "),
        "{}",
        run.all()
    );
    assert_eq!(digest(&reference), first);
}

#[test]
fn a_foreign_platform_needs_qemu_only_for_run() {
    let reg = Registry::plain();
    let mut files = chain(&reg, "", "");
    files.retain(|(p, _)| !p.contains("child"));
    files[3].1 = files[3]
        .1
        .replace("[linux/amd64]", "[linux/amd64, linux/s390x]");
    let lib = library(&files);
    let no_qemu = tempfile::tempdir().unwrap();
    let dir = no_qemu.path().to_str().unwrap();
    let run = run_in(
        lib.path(),
        &[
            "build",
            "--dry-run",
            "--tls-verify=false",
            "--binfmt-dir",
            dir,
            "--buildah",
            "/nonexistent",
        ],
    )
    .fails(2);
    assert!(
        run.stderr.contains("platform linux/s390x cannot be built"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("images/base/Dockerfile:1"),
        "{}",
        run.all()
    );
    // COPY only: no emulator needed (the dry run checks and prints the order).
    std::fs::write(
        lib.path().join("images/base/Dockerfile"),
        // busybox named sh is a shell: the test's `sh -c` needs one.
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\n",
    )
    .unwrap();
    let run = run_in(
        lib.path(),
        &[
            "build",
            "--dry-run",
            "--binfmt-dir",
            dir,
            "--buildah",
            "/nonexistent",
        ],
    )
    .ok();
    assert!(run.stdout.contains("build order"), "{}", run.all());
    let run = run_in(
        lib.path(),
        &[
            "build",
            "--dry-run",
            "-o",
            "json",
            "--binfmt-dir",
            dir,
            "--buildah",
            "/nonexistent",
        ],
    )
    .ok();
    let r = run.json();
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["order"][0]["name"], "base");
    assert_eq!(
        r["images"][0]["references"][0],
        format!("docker://{}/lib/base:1.0", reg.addr())
    );
    assert!(r["images"][0].get("digest").is_none());
    // And built for real: one index, both platforms, the test run on this machine's.
    let run = build(lib.path(), &[]).ok();
    let r = run.json();
    let img = &r["images"][0];
    assert_eq!(
        img["platforms"].as_array().unwrap().len(),
        2,
        "{}",
        run.all()
    );
    assert_eq!(img["tests"][0]["platform"], "linux/amd64");
    let peer = Peer::new().plain_http(reg.addr());
    let index = peer.crane(["manifest", &format!("{}/lib/base:1.0", reg.addr())]);
    let index: serde_json::Value = serde_json::from_slice(&index.stdout).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "s390x"]);
    assert_eq!(
        index["manifests"][1]["digest"],
        img["platforms"][1]["digest"]
    );
    // With an emulator registered, RUN is fine.
    std::fs::write(lib.path().join("images/base/Dockerfile"), BASE_DOCKERFILE).unwrap();
    std::fs::write(
        no_qemu.path().join("qemu-s390x"),
        "enabled\ninterpreter /usr/bin/qemu-s390x-static\n",
    )
    .unwrap();
    run_in(
        lib.path(),
        &[
            "build",
            "--dry-run",
            "--binfmt-dir",
            dir,
            "--buildah",
            "/nonexistent",
        ],
    )
    .ok();
}

#[test]
fn checks_belong_to_build_manifests() {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in [
        ("graft.yaml", "repo: docker://reg.example:5000/lib\n"),
        ("layers/compat/layer.yaml", "{}\n"),
        (
            "manifests/m.yaml",
            "name: m\nversion: 1\nscience:\n  image: docker://reg.example:5000/x:1\ncompat: compat\nchecks: ['true']\n",
        ),
    ] {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    let run = run_in(dir.path(), &["validate"]).fails(1);
    assert!(
        run.stdout.contains("manifests/m.yaml:6:9: checks: checks run inside an image graft builds: they need build:"),
        "{}",
        run.all()
    );
}
