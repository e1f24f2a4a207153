//! `graft build --sign-key K --provenance` and `graft build --changed-since REV` with real
//! buildah, a real registry and the real cosign: the built image (index and platform
//! manifest) verifies with `cosign verify --key` and `cosign verify-attestation --type
//! slsaprovenance1`, its statement validates with the in-toto-attestation package and records
//! the Dockerfile digest, the library's git commit, the build args and the pinned base; with
//! compat the science image carries the build statement and the final image the refresh's
//! (which `graft verify-provenance` re-runs; a build statement it refuses); a `git.repo` build
//! records its commit; `--from-metadata` signs what buildx pushed; the same build from two
//! checkouts attests alike; a wrong key password stops the run before
//! anything is built; `--changed-since` builds what a commit changed and the children of a
//! rebuilt base, pinning an unchanged base at its tag.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

use crate::build::{chain, library, CHILD_DOCKERFILE};
use crate::graft::{capture, command, Run};
use crate::sign::{intoto_python, keypair, PW, VALIDATE_PY};
use crate::support::git::{commit_at, git_at};
use crate::support::peers::{stdout_ok, Peer};
use crate::support::registry::Registry;

/// The chain library (base, child) committed as a git repository (branch main, t=1000).
fn git_library(files: &[(&str, String)]) -> tempfile::TempDir {
    let lib = library(files);
    std::fs::write(lib.path().join(".gitignore"), ".storage/\n").unwrap();
    git_at(lib.path(), 1000, &["init", "-q", "-b", "main"]);
    commit_at(lib.path(), 1000, "library");
    lib
}

/// `graft build` in `dir` with `SOURCE_DATE_EPOCH=0`, the key password `password`, the
/// storage in `storage` (default: `dir/.storage`).
fn build_with(dir: &Path, password: &str, storage: Option<&Path>, extra: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let storage = storage
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join(".storage"));
    let mut cmd = command(home.path());
    cmd.current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "0")
        .env("COSIGN_PASSWORD", password)
        .args(["build", "--library", ".", "--tls-verify=false", "--storage"])
        .arg(&storage)
        .args(["--build", "1", "--commit", "abc", "--branch", "main"])
        .args(extra);
    capture(&mut cmd)
}

/// [`build_with`] with the right password, `-o json`.
fn build(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["-o", "json"];
    args.extend(extra);
    build_with(dir, PW, None, &args)
}

/// `cosign verify --key` of `image` (`HOST/REPO@DIGEST`) passes.
fn cosign_verifies(peer: &Peer, public: &Path, image: &str) {
    let out = peer.cosign_verify(public, image, &[]);
    stdout_ok(&out, &format!("cosign verify {image}"));
}

/// `cosign verify-attestation --type slsaprovenance1` of `image` passes; the statements.
fn cosign_statements(peer: &Peer, public: &Path, image: &str) -> Vec<Value> {
    let out = peer.try_run(
        "cosign",
        [
            "verify-attestation",
            "--key",
            public.to_str().unwrap(),
            "--insecure-ignore-tlog=true",
            "--type",
            "slsaprovenance1",
            image,
        ],
    );
    let text = stdout_ok(&out, &format!("cosign verify-attestation {image}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let envelope: Value = serde_json::from_str(l).unwrap();
            let payload = B64.decode(envelope["payload"].as_str().unwrap()).unwrap();
            serde_json::from_slice(&payload).unwrap()
        })
        .collect()
}

/// The one statement attached to `image`, validated by the in-toto-attestation package.
fn statement(peer: &Peer, public: &Path, image: &str) -> Value {
    let mut all = cosign_statements(peer, public, image);
    assert_eq!(all.len(), 1, "one statement on {image}: {all:?}");
    let st = all.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statement.json");
    std::fs::write(&file, serde_json::to_vec(&st).unwrap()).unwrap();
    let out = std::process::Command::new(intoto_python())
        .args(["-c", VALIDATE_PY])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "in-toto validation of {image}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    st
}

fn sha256_of(path: &Path) -> String {
    graft::oci::Digest::sha256(&std::fs::read(path).unwrap())
        .hex()
        .to_string()
}

fn dependency<'a>(predicate: &'a Value, name: &str) -> &'a Value {
    predicate["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no dependency {name:?} in {predicate}"))
}

#[test]
fn signed_build_verifies_with_cosign_and_its_statement_records_the_build() {
    let reg = Registry::plain();
    let lib = git_library(&chain(&reg, "", ""));
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), keys.path(), "ci");
    let run = build(
        lib.path(),
        &["--sign-key", key.to_str().unwrap(), "--provenance"],
    )
    .ok();
    let r = run.json();
    let base = &r["images"][0];
    let child = &r["images"][1];
    assert_eq!(child["name"], "child", "{}", run.all());
    let head = git_at(lib.path(), 1000, &["rev-parse", "HEAD"]);
    let peer = Peer::new().plain_http(reg.addr());
    let child_repo = format!("{}/lib/child", reg.addr());
    let index = child["digest"].as_str().unwrap();
    let platform = child["platforms"][0]["digest"].as_str().unwrap();
    // The index and the platform manifest are signed and attested, as the report says.
    assert_eq!(
        child["signing"]["signed"],
        serde_json::json!([index, platform])
    );
    assert_eq!(child["signing"]["attested"], child["signing"]["signed"]);
    for d in [index, platform] {
        let image = format!("{child_repo}@{d}");
        cosign_verifies(&peer, &public, &image);
        let st = statement(&peer, &public, &image);
        assert_eq!(
            st["subject"][0]["digest"]["sha256"],
            d.trim_start_matches("sha256:")
        );
        let p = &st["predicate"];
        let bd = &p["buildDefinition"];
        assert_eq!(bd["buildType"], "https://graft.dev/buildtypes/build/v1");
        let ext = &bd["externalParameters"];
        assert_eq!(ext["manifest"]["path"], "manifests/child.yaml");
        assert_eq!(ext["dockerfile"]["path"], "images/child/Dockerfile");
        let dockerfile_sha = sha256_of(&lib.path().join("images/child/Dockerfile"));
        assert_eq!(
            ext["dockerfile"]["digest"]["sha256"],
            dockerfile_sha.as_str()
        );
        assert_eq!(ext["context"], "images/child");
        assert_eq!(ext["platforms"], serde_json::json!(["linux/amd64"]));
        assert_eq!(ext["buildArgs"]["GREETING"], "hi");
        assert_eq!(ext["buildArgs"]["REGISTRY"], reg.addr());
        assert_eq!(
            ext["tags"],
            serde_json::json!([format!("docker://{child_repo}:1.0")])
        );
        assert_eq!(ext["library"]["commit"], head.as_str());
        assert_eq!(
            dependency(p, "dockerfile")["digest"]["sha256"],
            dockerfile_sha.as_str()
        );
        assert_eq!(
            dependency(p, "library")["digest"]["gitCommit"],
            head.as_str()
        );
        // The base, pinned at the digest this run wrote.
        let from = format!("{}/lib/base:1.0", reg.addr());
        let b = dependency(p, &format!("base:{from}"));
        let base_digest = base["digest"].as_str().unwrap();
        assert_eq!(b["uri"], format!("{}/lib/base@{base_digest}", reg.addr()));
        assert_eq!(
            b["digest"]["sha256"],
            base_digest.trim_start_matches("sha256:")
        );
        let builder = &p["runDetails"]["builder"];
        assert_eq!(builder["id"], "https://graft.dev/builders/local");
        let buildah = builder["version"]["buildah"].as_str().unwrap();
        assert!(
            buildah.starts_with(|c: char| c.is_ascii_digit()),
            "{builder}"
        );
        // Nothing machine-specific: no path of this checkout or of the work directory.
        let text = st.to_string();
        assert!(!text.contains(lib.path().to_str().unwrap()), "{text}");
        assert!(!text.contains("/tmp/"), "{text}");
    }
    // verify-provenance re-runs refreshes: a build statement is refused, saying why.
    let home = tempfile::tempdir().unwrap();
    let v = capture(command(home.path()).current_dir(lib.path()).args([
        "--tls-verify=false",
        "verify-provenance",
        "--library",
        ".",
        "--key",
        public.to_str().unwrap(),
        &format!("docker://{child_repo}:1.0"),
    ]));
    assert_eq!(v.code, 2, "{}", v.all());
    assert!(
        v.stderr
            .contains("built from a Dockerfile by `graft build`"),
        "{}",
        v.all()
    );
    // The base: its Dockerfile's digest and no base image (FROM scratch).
    let base_image = format!(
        "{}/lib/base@{}",
        reg.addr(),
        base["digest"].as_str().unwrap()
    );
    cosign_verifies(&peer, &public, &base_image);
    let st = statement(&peer, &public, &base_image);
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(
        !deps
            .iter()
            .any(|d| d["name"].as_str().unwrap().starts_with("base:")),
        "{deps:?}"
    );
    assert_eq!(
        dependency(&st["predicate"], "dockerfile")["digest"]["sha256"],
        sha256_of(&lib.path().join("images/base/Dockerfile")).as_str()
    );
}

#[test]
fn with_compat_the_science_image_has_the_build_statement_and_the_final_image_refreshs() {
    let reg = Registry::plain();
    let mut files = chain(&reg, "compat: compat\n", "");
    files.retain(|(p, _)| !p.contains("child"));
    let lib = git_library(&files);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), keys.path(), "ci");
    let run = build(
        lib.path(),
        &["--sign-key", key.to_str().unwrap(), "--provenance"],
    )
    .ok();
    let r = run.json();
    let img = &r["images"][0];
    let science = img["digest"].as_str().unwrap();
    let final_digest = img["refresh"]["digest"].as_str().unwrap();
    let peer = Peer::new().plain_http(reg.addr());
    let sci_image = format!("{}/lib/sci/base@{science}", reg.addr());
    cosign_verifies(&peer, &public, &sci_image);
    let st = statement(&peer, &public, &sci_image);
    assert_eq!(
        st["predicate"]["buildDefinition"]["buildType"],
        "https://graft.dev/buildtypes/build/v1"
    );
    assert_eq!(
        st["subject"][0]["name"],
        format!("docker://{}/lib/sci/base:1.0", reg.addr())
    );
    // The final image: signed, index and platform, with the refresh's statement on the image
    // just built.
    let signed = img["refresh"]["signing"]["signed"].as_array().unwrap();
    assert_eq!(signed.len(), 2, "{}", run.all());
    assert_eq!(signed[0], final_digest);
    let final_image = format!("{}/lib/base@{final_digest}", reg.addr());
    cosign_verifies(&peer, &public, &final_image);
    let st = statement(&peer, &public, &final_image);
    let p = &st["predicate"];
    assert_eq!(
        p["buildDefinition"]["buildType"],
        "https://graft.dev/buildtypes/refresh/v2"
    );
    let deps = p["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let sci_platform = img["platforms"][0]["digest"].as_str().unwrap();
    assert!(
        deps.iter()
            .any(|d| d["digest"]["sha256"] == sci_platform.trim_start_matches("sha256:")),
        "the science platform {sci_platform} in {deps:?}"
    );
    // verify-provenance re-runs the refresh of the final image from the recorded commit.
    let home = tempfile::tempdir().unwrap();
    let v = capture(
        command(home.path())
            .current_dir(lib.path())
            .env("SOURCE_DATE_EPOCH", "0")
            .args([
                "--tls-verify=false",
                "verify-provenance",
                "--library",
                ".",
                "--key",
                public.to_str().unwrap(),
                &format!("docker://{}/lib/base:1.0", reg.addr()),
            ]),
    );
    assert_eq!(v.code, 0, "{}", v.all());
    // Text output names what was signed.
    let text = build_with(
        lib.path(),
        PW,
        None,
        &["--sign-key", key.to_str().unwrap(), "-o", "text"],
    )
    .ok();
    assert!(
        text.stdout.contains(&format!("signed   {science}")),
        "{}",
        text.all()
    );
    assert!(
        text.stdout.contains(&format!("signed   {final_digest}")),
        "{}",
        text.all()
    );
}

#[test]
fn the_same_build_from_two_checkouts_attests_alike() {
    let reg = Registry::plain();
    let mut files = chain(&reg, "", "");
    files.retain(|(p, _)| !p.contains("child"));
    let origin = git_library(&files);
    let tmp = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), keys.path(), "ci");
    let peer = Peer::new().plain_http(reg.addr());
    let mut statements = Vec::new();
    for dest in ["a/lib", "b/elsewhere/library"] {
        let dir = tmp.path().join(dest);
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        git_at(
            tmp.path(),
            1000,
            &[
                "clone",
                "-q",
                origin.path().to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        let run = build(&dir, &["--sign-key", key.to_str().unwrap(), "--provenance"]).ok();
        let d = run.json()["images"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let image = format!("{}/lib/base@{d}", reg.addr());
        let mut all = cosign_statements(&peer, &public, &image);
        for st in &mut all {
            let meta = &mut st["predicate"]["runDetails"]["metadata"];
            // Run times aside (SOURCE_DATE_EPOCH makes them equal here anyway).
            meta.as_object_mut().map(|m| m.remove("startedOn"));
            meta.as_object_mut().map(|m| m.remove("finishedOn"));
        }
        statements.push(all);
    }
    // The second build wrote the same image and the same statement: one statement.
    assert_eq!(statements[0].len(), 1, "{statements:?}");
    assert_eq!(statements[0], statements[1]);
}

#[test]
fn a_wrong_key_password_stops_the_run_before_anything_is_built() {
    let reg = Registry::plain();
    let lib = git_library(&chain(&reg, "", ""));
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keypair(keys.path(), keys.path(), "ci");
    let storage = tempfile::tempdir().unwrap();
    let storage = storage.path().join("s");
    let run = build_with(
        lib.path(),
        "not the password",
        Some(&storage),
        &["--sign-key", key.to_str().unwrap(), "--provenance"],
    );
    assert_ne!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.to_lowercase().contains("password"),
        "{}",
        run.all()
    );
    // buildah never ran (its storage was not made) and the registry has nothing.
    assert!(!storage.exists(), "{}", run.all());
    let peer = Peer::new().plain_http(reg.addr());
    let out = peer.try_run("crane", ["ls", &format!("{}/lib/base", reg.addr())]);
    assert!(
        !out.status.success() || out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn changed_since_builds_what_changed_and_the_children_of_a_rebuilt_base() {
    let reg = Registry::plain();
    let lib = git_library(&chain(&reg, "", ""));
    let dir = lib.path();
    build(dir, &[]).ok();
    // Only the child's Dockerfile: the child alone, on the base's existing tag.
    std::fs::write(
        dir.join("images/child/Dockerfile"),
        format!("{}RUN echo more > /more\n", CHILD_DOCKERFILE),
    )
    .unwrap();
    commit_at(dir, 1001, "child");
    let run = build(dir, &["--changed-since", "HEAD~1"]).ok();
    let r = run.json();
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{}", run.all());
    assert_eq!(images[0]["name"], "child");
    assert_eq!(images[0]["bases"][0]["built_now"], false);
    assert_eq!(
        r["changes"]["images"][0]["manifest"],
        "manifests/child.yaml"
    );
    assert!(
        run.stderr
            .contains("its Dockerfile images/child/Dockerfile"),
        "{}",
        run.all()
    );
    // A new file in the base's build context (the Dockerfile unchanged): the base, then
    // the child on it.
    std::fs::write(dir.join("images/base/motd"), "hello\n").unwrap();
    commit_at(dir, 1002, "base context");
    let run = build(dir, &["--changed-since", "HEAD~1"]).ok();
    let r = run.json();
    let names: Vec<&str> = r["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "child"], "{}", run.all());
    assert_eq!(r["images"][1]["bases"][0]["built_now"], true);
    // Nothing changed since HEAD: nothing builds.
    let run = build(dir, &["--changed-since", "HEAD"]).ok();
    assert_eq!(run.json()["images"], serde_json::json!([]), "{}", run.all());
}

#[test]
fn a_context_file_alone_counts_as_a_change_of_the_build() {
    let reg = Registry::plain();
    let mut files = chain(&reg, "", "");
    files.retain(|(p, _)| !p.contains("child"));
    let lib = git_library(&files);
    let dir = lib.path();
    std::fs::write(dir.join("images/base/notes.txt"), "v2\n").unwrap();
    commit_at(
        dir,
        1001,
        "a file in the context, not used by the Dockerfile",
    );
    let run = build(dir, &["--changed-since", "HEAD~1", "--dry-run"]).ok();
    let r = run.json();
    assert_eq!(r["images"][0]["name"], "base", "{}", run.all());
    assert_eq!(
        r["changes"]["images"][0]["reasons"][0]["files"],
        serde_json::json!(["images/base/notes.txt"])
    );
}

#[test]
fn from_metadata_signs_what_buildx_pushed_with_the_build_statement_and_the_final_image() {
    let reg = Registry::plain();
    let lib = git_library(&[
        ("graft.yaml", format!("repo: docker://{}/lib\ndefault_branch: main\n", reg.addr())),
        ("layers/compat/layer.yaml", "{}\n".into()),
        ("layers/compat/files/etc/compat", "compat\n".into()),
        (
            "manifests/app.yaml",
            "name: app\nversion: 1.0\ncompat: compat\nbuild:\n  path: images/app\n  platforms: [linux/amd64]\n  args: {FLAVOUR: plain}\n".into(),
        ),
        ("images/app/Dockerfile", "FROM scratch\nCOPY hello /hello\n".into()),
        ("images/app/hello", "hello\n".into()),
    ]);
    // buildx, simulated: an image pushed to the science tag.
    let tag = format!("{}/lib/sci/app:1.0", reg.addr());
    let tree = lib.path().join(".storage/tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello"), "hello\n").unwrap();
    let layer = lib.path().join(".storage/l.tar.gz");
    let run = |args: &[&str]| {
        let home = tempfile::tempdir().unwrap();
        capture(
            command(home.path())
                .current_dir(lib.path())
                .env("SOURCE_DATE_EPOCH", "0")
                .args(args),
        )
        .ok()
    };
    run(&[
        "layer",
        "build",
        tree.to_str().unwrap(),
        "-f",
        layer.to_str().unwrap(),
    ]);
    run(&[
        "-q",
        "--tls-verify=false",
        "append",
        "--base",
        "scratch",
        "--platform",
        "linux/amd64",
        "--layer",
        layer.to_str().unwrap(),
        &format!("docker://{tag}"),
    ]);
    let peer = Peer::new().plain_http(reg.addr());
    let pushed = peer.crane(["digest", &tag]);
    let pushed = String::from_utf8_lossy(&pushed.stdout).trim().to_string();
    let meta = serde_json::json!({
        "app": {"containerimage.digest": pushed, "image.name": tag}
    });
    std::fs::write(lib.path().join(".storage/meta.json"), meta.to_string()).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), keys.path(), "ci");
    let out = build(
        lib.path(),
        &[
            "--from-metadata",
            ".storage/meta.json",
            "--sign-key",
            key.to_str().unwrap(),
            "--provenance",
        ],
    )
    .ok();
    let r = out.json();
    let img = &r["images"][0];
    assert_eq!(
        img["signing"]["signed"][0],
        pushed.as_str(),
        "{}",
        out.all()
    );
    let science = format!("{}/lib/sci/app@{pushed}", reg.addr());
    cosign_verifies(&peer, &public, &science);
    let st = statement(&peer, &public, &science);
    let bd = &st["predicate"]["buildDefinition"];
    assert_eq!(bd["buildType"], "https://graft.dev/buildtypes/build/v1");
    assert_eq!(bd["internalParameters"]["builder"], "buildx");
    assert_eq!(bd["externalParameters"]["buildArgs"]["FLAVOUR"], "plain");
    assert_eq!(
        bd["externalParameters"]["dockerfile"]["digest"]["sha256"],
        sha256_of(&lib.path().join("images/app/Dockerfile")).as_str()
    );
    let final_digest = img["refresh"]["digest"].as_str().unwrap();
    let final_image = format!("{}/lib/app@{final_digest}", reg.addr());
    cosign_verifies(&peer, &public, &final_image);
    let st = statement(&peer, &public, &final_image);
    assert_eq!(
        st["predicate"]["buildDefinition"]["buildType"],
        "https://graft.dev/buildtypes/refresh/v2"
    );
}

#[test]
fn a_git_source_build_records_the_commit_it_was_built_from() {
    let reg = Registry::plain();
    // The source repository: a bare repository (a local path, which the statement leaves
    // out: nobody else can fetch it) holding the Dockerfile.
    let src = tempfile::tempdir().unwrap();
    let work = src.path().join("work");
    std::fs::create_dir_all(work.join("images/app")).unwrap();
    let dockerfile = "FROM scratch\nCOPY hello /hello\n";
    std::fs::write(work.join("images/app/Dockerfile"), dockerfile).unwrap();
    std::fs::write(work.join("images/app/hello"), "hello\n").unwrap();
    git_at(&work, 1000, &["init", "-q", "-b", "main"]);
    commit_at(&work, 1000, "app");
    let commit = git_at(&work, 1000, &["rev-parse", "HEAD"]);
    let bare = src.path().join("src.git");
    git_at(
        src.path(),
        1000,
        &["clone", "-q", "--bare", "work", bare.to_str().unwrap()],
    );
    let lib = git_library(&[
        ("graft.yaml", format!("repo: docker://{}/lib\ndefault_branch: main\n", reg.addr())),
        (
            "manifests/app.yaml",
            format!(
                "name: app\nversion: 1.0\ngit:\n  repo: {}\n  fetch: refs/heads/main\n  commit: {commit}\nbuild:\n  path: images/app\n  platforms: [linux/amd64]\n",
                bare.display()
            ),
        ),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), keys.path(), "ci");
    let run = build(
        lib.path(),
        &[
            "--cache",
            cache.path().to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
            "--provenance",
        ],
    )
    .ok();
    let d = run.json()["images"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let peer = Peer::new().plain_http(reg.addr());
    let image = format!("{}/lib/app@{d}", reg.addr());
    cosign_verifies(&peer, &public, &image);
    let st = statement(&peer, &public, &image);
    let p = &st["predicate"];
    let ext = &p["buildDefinition"]["externalParameters"];
    assert_eq!(ext["source"]["commit"], commit.as_str(), "{p}");
    assert!(ext["source"].get("repository").is_none(), "{p}");
    assert_eq!(ext["dockerfile"]["path"], "images/app/Dockerfile");
    assert_eq!(
        ext["dockerfile"]["digest"]["sha256"],
        graft::oci::Digest::sha256(dockerfile.as_bytes()).hex()
    );
    let source = dependency(p, "source");
    assert_eq!(source["digest"]["gitCommit"], commit.as_str());
    // The library's own commit too (the manifest is in it).
    let head = git_at(lib.path(), 1000, &["rev-parse", "HEAD"]);
    assert_eq!(
        dependency(p, "library")["digest"]["gitCommit"],
        head.as_str()
    );
    let text = st.to_string();
    assert!(!text.contains(cache.path().to_str().unwrap()), "{text}");
    assert!(!text.contains(bare.to_str().unwrap()), "{text}");
}

#[test]
fn an_external_base_is_recorded_as_written_or_by_the_digest_it_names() {
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("os-release"), "external\n").unwrap();
    let layer = work.path().join("l.tar.gz");
    let g = |args: &[&str]| {
        let home = tempfile::tempdir().unwrap();
        capture(
            command(home.path())
                .current_dir(work.path())
                .env("SOURCE_DATE_EPOCH", "0")
                .args(args),
        )
        .ok()
    };
    g(&[
        "layer",
        "build",
        tree.to_str().unwrap(),
        "-f",
        layer.to_str().unwrap(),
    ]);
    let external = format!("{}/other/thing:1", reg.addr());
    g(&[
        "-q",
        "--tls-verify=false",
        "append",
        "--base",
        "scratch",
        "--platform",
        "linux/amd64",
        "--layer",
        layer.to_str().unwrap(),
        &format!("docker://{external}"),
    ]);
    let peer = Peer::new().plain_http(reg.addr());
    let pinned = peer.crane(["digest", &external]);
    let pinned = String::from_utf8_lossy(&pinned.stdout).trim().to_string();
    let by_digest = format!("{}/other/thing@{pinned}", reg.addr());
    let lib = git_library(&[
        ("graft.yaml", format!("repo: docker://{}/lib\ndefault_branch: main\n", reg.addr())),
        (
            "manifests/app.yaml",
            "name: app\nversion: 1.0\nbuild:\n  path: images/app\n  platforms: [linux/amd64]\n".into(),
        ),
        (
            "images/app/Dockerfile",
            format!("FROM {by_digest} AS pinned\nFROM {external}\nCOPY --from=pinned /os-release /pinned\nCOPY hello /hello\n"),
        ),
        ("images/app/hello", "hello\n".into()),
    ]);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), keys.path(), "ci");
    let run = build(
        lib.path(),
        &["--sign-key", key.to_str().unwrap(), "--provenance"],
    )
    .ok();
    let d = run.json()["images"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let st = statement(&peer, &public, &format!("{}/lib/app@{d}", reg.addr()));
    let p = &st["predicate"];
    let tagged = dependency(p, &format!("base:{external}"));
    assert_eq!(tagged["uri"], external.as_str(), "{p}");
    assert!(tagged.get("digest").is_none(), "{p}");
    let named = dependency(p, &format!("base:{by_digest}"));
    assert_eq!(named["uri"], by_digest.as_str(), "{p}");
    assert_eq!(
        named["digest"]["sha256"],
        pinned.trim_start_matches("sha256:"),
        "{p}"
    );
}
