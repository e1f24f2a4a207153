//! `graft tag`, `graft promote`, `graft delete` and `graft ls --omit-digest-tags` against the
//! real registry behind a counting proxy, and over an OCI layout: a tag is one manifest GET
//! and one PUT per tag (no child manifest, no blob); crane and regctl see the new tags on the
//! same digest; a delete that would take another tag with it is refused with nothing deleted;
//! bad input and a registry that refuses deletes fail clearly and change nothing.

use crate::support::tools::copy_dir;
use std::path::{Path, PathBuf};

use crate::graft::{capture, command, graft, Run};
use crate::support::peers::{stdout_ok, Peer};
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::science_layout;

const JUPYTER_INDEX: &str =
    "sha256:f2aaf80f9cbdafbb471999c57af2b7e9ecd67bed98db14dfe6dcabc56e1f69ed";
const ASTRO_INDEX: &str = "sha256:d214be40b7757cc1dc8f6516985ea7c9f43e0ffe690b93a1e9ddbb1d8831d19c";
const PW: &str = "promote-test-pw";

/// The hex digests of everything below the root of a sample science image (child manifests,
/// configs, layers): a tag or a promotion must never ask for any of them.
fn below_root(name: &str, root: &str) -> Vec<String> {
    let root = root.strip_prefix("sha256:").unwrap();
    std::fs::read_dir(science_layout(name).join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|h| h != root)
        .collect()
}

/// Requests that read a child manifest or touch any blob of the images (`below`).
fn deep_requests(proxy: &Proxy, below: &[String]) -> Vec<(String, String)> {
    proxy
        .requests()
        .into_iter()
        .filter(|(_, p)| p.contains("/blobs/") || below.iter().any(|h| p.contains(h.as_str())))
        .collect()
}

/// The manifest requests with `method`, as paths.
fn manifest_requests(proxy: &Proxy, method: &str) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|(m, p)| m == method && p.contains("/manifests/"))
        .map(|(_, p)| p)
        .collect()
}

fn run(home: &Path, args: &[&str]) -> Run {
    let mut all = vec!["-q", "--tls-verify=false"];
    all.extend_from_slice(args);
    graft(home, &all)
}

fn crane_digest(peer: &Peer, image: &str) -> String {
    stdout_ok(
        &peer.try_run("crane", ["digest", image]),
        &format!("crane digest {image}"),
    )
    .trim()
    .to_string()
}

fn regctl_digest(peer: &Peer, image: &str) -> String {
    String::from_utf8(peer.regctl(["image", "digest", image]).stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// Tags of `repo` (`host/repo`) as crane lists them.
fn crane_tags(peer: &Peer, repo: &str) -> Vec<String> {
    let mut tags: Vec<String> = String::from_utf8(peer.crane(["ls", repo]).stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

#[test]
fn tag_is_one_manifest_get_and_one_put_per_tag_and_peers_see_the_same_digest() {
    let reg = Registry::plain();
    reg.seed("jupyter-sci", "lib/sci:2.4");
    let proxy = Proxy::start(reg.addr());
    let home = tempfile::tempdir().unwrap();
    let peer = Peer::new().plain_http(reg.addr());
    let below = below_root("jupyter-sci", JUPYTER_INDEX);
    let src = format!("docker://{}", proxy.image_ref("lib/sci:2.4"));

    proxy.clear();
    let out = run(
        home.path(),
        &[
            "-o",
            "json",
            "tag",
            &src,
            "stable",
            &format!("docker://{}", proxy.image_ref("lib/sci:v0.1.1")),
        ],
    )
    .ok()
    .json();
    assert_eq!(out["digest"], JUPYTER_INDEX, "{out}");
    assert_eq!(
        out["tags"],
        serde_json::json!(["stable", "v0.1.1"]),
        "{out}"
    );
    assert_eq!(
        out["media_type"], "application/vnd.oci.image.index.v1+json",
        "{out}"
    );
    // One GET of the source, one PUT per tag, nothing below the root.
    assert_eq!(
        manifest_requests(&proxy, "GET"),
        vec!["/v2/lib/sci/manifests/2.4"]
    );
    assert_eq!(
        manifest_requests(&proxy, "PUT"),
        vec![
            "/v2/lib/sci/manifests/stable",
            "/v2/lib/sci/manifests/v0.1.1"
        ]
    );
    assert_eq!(manifest_requests(&proxy, "HEAD"), Vec::<String>::new());
    assert!(
        deep_requests(&proxy, &below).is_empty(),
        "{:?}",
        proxy.requests()
    );
    // The PUT carried the source's exact bytes with their media type.
    let puts: Vec<_> = proxy
        .request_log()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    for p in &puts {
        assert_eq!(
            p.header("content-type"),
            Some("application/vnd.oci.image.index.v1+json"),
            "{p:?}"
        );
    }
    assert_eq!(reg.raw("lib/sci:stable"), reg.raw("lib/sci:2.4"));

    // crane and regctl see the new tags on the same digest.
    for t in ["2.4", "stable", "v0.1.1"] {
        let image = reg.image_ref(&format!("lib/sci:{t}"));
        assert_eq!(crane_digest(&peer, &image), JUPYTER_INDEX, "crane {t}");
        assert_eq!(regctl_digest(&peer, &image), JUPYTER_INDEX, "regctl {t}");
    }

    // Tagging by digest works the same way.
    let by_digest = format!("docker://{}@{JUPYTER_INDEX}", proxy.image_ref("lib/sci"));
    run(home.path(), &["tag", &by_digest, "pinned"]).ok();
    assert_eq!(
        crane_digest(&peer, &reg.image_ref("lib/sci:pinned")),
        JUPYTER_INDEX
    );
}

#[test]
fn tag_bad_input_fails_clearly_and_writes_nothing() {
    let reg = Registry::plain();
    reg.seed("jupyter-sci", "lib/sci:2.4");
    let proxy = Proxy::start(reg.addr());
    let home = tempfile::tempdir().unwrap();
    let peer = Peer::new().plain_http(reg.addr());
    let src = format!("docker://{}", proxy.image_ref("lib/sci:2.4"));
    proxy.clear();

    // A bad tag name: usage, before any request.
    let bad = run(home.path(), &["tag", &src, "ok", "v1:bad"]).fails(2);
    assert!(bad.stderr.contains("\"v1:bad\""), "{}", bad.stderr);
    assert!(bad.stderr.contains("contains ':'"), "{}", bad.stderr);
    // Another repository: a copy, refused with the way to do it.
    let other = format!("docker://{}", proxy.image_ref("lib/other:stable"));
    let elsewhere = run(home.path(), &["tag", &src, &other]).fails(2);
    assert!(
        elsewhere.stderr.contains("graft copy"),
        "{}",
        elsewhere.stderr
    );
    assert!(
        proxy.requests().iter().all(|(_, p)| p == "/v2/"),
        "{:?}",
        proxy.requests()
    );

    // A missing source: the operation fails (exit 1), naming it, and nothing is written.
    let missing = format!("docker://{}", proxy.image_ref("lib/sci:nope"));
    let gone = run(home.path(), &["tag", &missing, "stable"]).fails(1);
    assert!(gone.stderr.contains("lib/sci:nope"), "{}", gone.stderr);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
    assert_eq!(manifest_requests(&proxy, "PUT"), Vec::<String>::new());
    assert_eq!(crane_tags(&peer, &reg.image_ref("lib/sci")), vec!["2.4"]);
    let repos = String::from_utf8(peer.crane(["catalog", reg.addr()]).stdout).unwrap();
    assert!(!repos.contains("lib/other"), "{repos}");
}

/// The sample library copied to `dir`, its science images pointed at a registry (promote
/// never reads them), final images under `--repo`.
fn library(dir: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = dir.join("library");
    for sub in ["manifests", "layers", "schema"] {
        copy_dir(&root.join(sub), &lib.join(sub));
    }
    std::fs::copy(root.join("graft.yaml"), lib.join("graft.yaml")).unwrap();
    for (file, from, to) in [
        (
            "manifests/sci-notebook.yaml",
            "oci:testdata/science/jupyter-sci:2.4",
            "docker://science.invalid/sci/jupyter:2.4",
        ),
        (
            "manifests/astro-notebook.yaml",
            "oci:testdata/science/astro-base:1.0",
            "docker://science.invalid/sci/astro:1.0",
        ),
    ] {
        let p = lib.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} names {from}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }
    lib
}

fn promote(home: &Path, lib: &Path, repo: &str, extra: &[&str]) -> Run {
    capture(
        command(home)
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "promote",
                "--library",
            ])
            .arg(lib)
            .args(["--repo", repo])
            .args(extra),
    )
}

#[test]
fn promote_release_tags_every_image_on_its_version_digest_cheaply_and_delete_keeps_stable() {
    let reg = Registry::plain();
    // The final images as a refresh leaves them: `{version}` tags (the sample images stand in).
    reg.seed("jupyter-sci", "lib/sci-notebook:2.4");
    reg.seed("astro-base", "lib/astro-notebook:1.0");
    let proxy = Proxy::start(reg.addr());
    let home = tempfile::tempdir().unwrap();
    let peer = Peer::new().plain_http(reg.addr());
    let lib = library(home.path());
    let repo = format!("docker://{}", proxy.image_ref("lib"));
    let mut below = below_root("jupyter-sci", JUPYTER_INDEX);
    below.extend(below_root("astro-base", ASTRO_INDEX));

    // A dry run reads and writes nothing.
    proxy.clear();
    let dry = promote(
        home.path(),
        &lib,
        &repo,
        &["--release", "v0.1.1", "--dry-run"],
    )
    .ok()
    .json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(manifest_requests(&proxy, "PUT"), Vec::<String>::new());

    proxy.clear();
    let out = promote(home.path(), &lib, &repo, &["--release", "v0.1.1"])
        .ok()
        .json();
    let images = out["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{out}");
    assert_eq!(images[0]["name"], "astro-notebook");
    assert_eq!(images[0]["digest"], ASTRO_INDEX);
    assert_eq!(images[1]["digest"], JUPYTER_INDEX);
    assert_eq!(images[1]["tags"], serde_json::json!(["v0.1.1", "stable"]));
    assert_eq!(images[1]["verified"], false);
    // One GET per image ({version}), one PUT per new tag, nothing below the roots.
    assert_eq!(
        manifest_requests(&proxy, "GET"),
        vec![
            "/v2/lib/astro-notebook/manifests/1.0",
            "/v2/lib/sci-notebook/manifests/2.4"
        ]
    );
    assert_eq!(manifest_requests(&proxy, "PUT").len(), 4);
    assert!(
        deep_requests(&proxy, &below).is_empty(),
        "{:?}",
        proxy.requests()
    );
    let requests_per_image =
        proxy.requests().iter().filter(|(_, p)| p != "/v2/").count() as f64 / 2.0;
    eprintln!("promote: {requests_per_image} registry requests per image");
    for (repo_name, version, digest) in [
        ("lib/sci-notebook", "2.4", JUPYTER_INDEX),
        ("lib/astro-notebook", "1.0", ASTRO_INDEX),
    ] {
        for t in [version, "stable", "v0.1.1"] {
            let image = reg.image_ref(&format!("{repo_name}:{t}"));
            assert_eq!(crane_digest(&peer, &image), digest, "crane {image}");
            assert_eq!(regctl_digest(&peer, &image), digest, "regctl {image}");
        }
    }

    // A branch tag on the released digest: deleting it would take `stable` (and the rest)
    // with it, so it is refused and nothing is deleted.
    let sci = |t: &str| {
        format!(
            "docker://{}",
            proxy.image_ref(&format!("lib/sci-notebook:{t}"))
        )
    };
    run(home.path(), &["tag", &sci("2.4"), "2.4-fix-x"]).ok();
    proxy.clear();
    let refused = run(home.path(), &["delete", &sci("2.4-fix-x")]).fails(1);
    for t in ["stable", "2.4", "v0.1.1"] {
        assert!(refused.stderr.contains(t), "{t}: {}", refused.stderr);
    }
    assert!(
        refused.stderr.contains("nothing was deleted"),
        "{}",
        refused.stderr
    );
    assert_eq!(proxy.count("DELETE", ""), 0);
    assert_eq!(
        crane_tags(&peer, &reg.image_ref("lib/sci-notebook")),
        vec!["2.4", "2.4-fix-x", "stable", "v0.1.1"]
    );

    // Naming every tag: a dry run says what would go, then the delete does it.
    let all: Vec<String> = ["2.4", "2.4-fix-x", "stable", "v0.1.1"]
        .iter()
        .map(|t| sci(t))
        .collect();
    let mut args = vec!["-o", "json", "delete", "--dry-run"];
    args.extend(all.iter().map(String::as_str));
    let dry = run(home.path(), &args).ok().json();
    assert_eq!(dry["deleted"][0]["digest"], JUPYTER_INDEX, "{dry}");
    assert_eq!(
        dry["deleted"][0]["tags"].as_array().unwrap().len(),
        4,
        "{dry}"
    );
    assert_eq!(proxy.count("DELETE", ""), 0);
    args.retain(|a| *a != "--dry-run");
    run(home.path(), &args).ok();
    assert_eq!(proxy.count("DELETE", ""), 1);
    assert!(
        peer.try_run(
            "crane",
            ["digest", &reg.image_ref("lib/sci-notebook:stable")]
        )
        .status
        .code()
            != Some(0)
    );
    // The other image is untouched.
    assert_eq!(
        crane_digest(&peer, &reg.image_ref("lib/astro-notebook:stable")),
        ASTRO_INDEX
    );
}

#[test]
fn promote_verify_key_refuses_an_unsigned_image_and_tags_the_verified_digest() {
    let reg = Registry::plain();
    reg.seed("jupyter-sci", "lib/sci-notebook:2.4");
    reg.seed("astro-base", "lib/astro-notebook:1.0");
    let proxy = Proxy::start(reg.addr());
    let home = tempfile::tempdir().unwrap();
    let lib = library(home.path());
    let repo = format!("docker://{}", proxy.image_ref("lib"));
    let prefix = home.path().join("ci");
    capture(
        command(home.path())
            .env("COSIGN_PASSWORD", PW)
            .args(["generate-key-pair", "--output-key-prefix"])
            .arg(&prefix),
    )
    .ok();
    let key = home.path().join("ci.key");
    let public = home.path().join("ci.pub");
    let public = public.to_str().unwrap();
    capture(
        command(home.path())
            .env("COSIGN_PASSWORD", PW)
            .args(["-q", "--tls-verify=false", "sign", "--key"])
            .arg(&key)
            .arg(format!(
                "docker://{}",
                proxy.image_ref("lib/astro-notebook:1.0")
            )),
    )
    .ok();

    // sci-notebook is unsigned: the whole promotion is refused, nothing tagged.
    proxy.clear();
    let refused = promote(
        home.path(),
        &lib,
        &repo,
        &["--to", "stable", "--verify-key", public],
    )
    .fails(1);
    assert!(
        refused.stderr.contains("refusing to promote") && refused.stderr.contains("sci-notebook"),
        "{}",
        refused.stderr
    );
    assert_eq!(manifest_requests(&proxy, "PUT"), Vec::<String>::new());

    // The signed one alone: verified, tagged; the image's children and blobs never read.
    proxy.clear();
    let out = promote(
        home.path(),
        &lib,
        &repo,
        &["astro-notebook", "--to", "stable", "--verify-key", public],
    )
    .ok()
    .json();
    assert_eq!(out["images"][0]["verified"], true, "{out}");
    assert_eq!(out["images"][0]["digest"], ASTRO_INDEX, "{out}");
    let below = below_root("astro-base", ASTRO_INDEX);
    let deep: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|(_, p)| below.iter().any(|h| p.contains(h.as_str())))
        .collect();
    assert!(deep.is_empty(), "{deep:?}");
    assert_eq!(
        manifest_requests(&proxy, "PUT"),
        vec!["/v2/lib/astro-notebook/manifests/stable"]
    );

    // `ls --omit-digest-tags` hides the signature tag `sign` wrote.
    let astro = format!("docker://{}", reg.image_ref("lib/astro-notebook"));
    let all = run(home.path(), &["ls", &astro]).ok().stdout;
    let sig = format!(
        "sha256-{}.sig",
        ASTRO_INDEX.strip_prefix("sha256:").unwrap()
    );
    assert!(all.lines().any(|l| l == sig), "{all}");
    let shown = run(home.path(), &["ls", "--omit-digest-tags", &astro])
        .ok()
        .stdout;
    assert_eq!(shown.lines().collect::<Vec<_>>(), vec!["1.0", "stable"]);
}

#[test]
fn promote_bad_input_is_refused_before_any_request() {
    let reg = Registry::plain();
    let proxy = Proxy::start(reg.addr());
    let home = tempfile::tempdir().unwrap();
    let lib = library(home.path());
    let repo = format!("docker://{}", proxy.image_ref("lib"));
    let bad = promote(home.path(), &lib, &repo, &["--to", "{build}-x"]).fails(2);
    assert!(bad.stderr.contains("{build}"), "{}", bad.stderr);
    let none = promote(home.path(), &lib, &repo, &[]).fails(2);
    assert!(none.stderr.contains("--to"), "{}", none.stderr);
    let unknown = promote(home.path(), &lib, &repo, &["nope", "--to", "stable"]).fails(1);
    assert!(unknown.stderr.contains("\"nope\""), "{}", unknown.stderr);
    // Two versions of one image: one `stable` cannot point at both.
    let text = std::fs::read_to_string(lib.join("manifests/sci-notebook.yaml")).unwrap();
    let v25 = lib.join("manifests/sci-notebook-2.5.yaml");
    std::fs::write(&v25, text.replace("version: 2.4", "version: 2.5")).unwrap();
    let twice = promote(home.path(), &lib, &repo, &["--to", "stable"]).fails(2);
    assert!(
        twice.stderr.contains("sci-notebook:stable") && twice.stderr.contains("{version}-stable"),
        "{}",
        twice.stderr
    );
    std::fs::remove_file(&v25).unwrap();
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    // A missing {version} tag: the operation fails, naming the reference.
    let missing = promote(home.path(), &lib, &repo, &["--to", "stable"]).fails(1);
    assert!(
        missing.stderr.contains("lib/astro-notebook:1.0") && missing.stderr.contains("not found"),
        "{}",
        missing.stderr
    );
    assert_eq!(manifest_requests(&proxy, "PUT"), Vec::<String>::new());
}

#[test]
fn delete_on_a_registry_that_refuses_deletes_fails_clearly_and_keeps_everything() {
    let reg = Registry::start(RegistryOpts::plain().without_delete());
    reg.seed("jupyter-sci", "lib/sci:2.4");
    let home = tempfile::tempdir().unwrap();
    let peer = Peer::new().plain_http(reg.addr());
    let r = format!("docker://{}", reg.image_ref("lib/sci:2.4"));
    let out = run(home.path(), &["delete", &r]).fails(1);
    assert!(
        out.stderr.contains("does not allow deletes")
            && out.stderr.contains("storage.delete.enabled")
            && out.stderr.contains("405"),
        "{}",
        out.stderr
    );
    assert_eq!(
        crane_digest(&peer, &reg.image_ref("lib/sci:2.4")),
        JUPYTER_INDEX
    );
    // A missing tag is a clear failure too.
    let gone = run(
        home.path(),
        &[
            "delete",
            &format!("docker://{}", reg.image_ref("lib/sci:nope")),
        ],
    )
    .fails(1);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
}

/// A registry that lists a tag it does not resolve (HEAD 404): graft cannot tell whether the
/// DELETE would take that tag too, so it refuses, names the tag and deletes nothing.
#[test]
fn delete_refuses_when_a_listed_tag_does_not_resolve() {
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "lib/sci:2.4");
    let upstream = reg.addr().to_string();
    let front = crate::support::hostile::Hostile::start(move |seen| {
        if seen.method == "GET" && seen.path().ends_with("/tags/list") {
            let tags = serde_json::json!(["2.4", "ghost"]);
            crate::support::hostile::Reply::json(
                200,
                serde_json::json!({"name": "lib/sci", "tags": tags}),
            )
        } else {
            crate::support::hostile::Reply::forward(&upstream)
        }
    });
    let home = tempfile::tempdir().unwrap();
    let r = format!("docker://{}/lib/sci:2.4", front.addr());
    let out = run(home.path(), &["delete", &r]).fails(1);
    assert!(
        out.stderr.contains("ghost") && out.stderr.contains("nothing was deleted"),
        "{}",
        out.stderr
    );
    assert!(front.seen().iter().all(|s| s.method != "DELETE"));
    let peer = Peer::new().plain_http(reg.addr());
    assert_eq!(
        crane_digest(&peer, &reg.image_ref("lib/sci:2.4")),
        JUPYTER_INDEX
    );
}

#[test]
fn tag_in_an_oci_layout_keeps_the_bytes_and_a_delete_there_keeps_other_tags() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("layout");
    copy_dir(&science_layout("jupyter-sci"), &dir);
    let before = std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count();
    let src = format!("oci:{}:2.4", dir.display());
    let out = run(
        home.path(),
        &[
            "-o",
            "json",
            "tag",
            &src,
            "stable",
            &format!("oci:{}:v0.1.1", dir.display()),
        ],
    )
    .ok()
    .json();
    assert_eq!(out["digest"], JUPYTER_INDEX, "{out}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let tagged: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap(),
                e["digest"].as_str().unwrap(),
            )
        })
        .collect();
    for t in ["2.4", "stable", "v0.1.1"] {
        assert!(tagged.contains(&(t, JUPYTER_INDEX)), "{t}: {tagged:?}");
    }
    // No blob was added or rewritten.
    assert_eq!(
        std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count(),
        before
    );
    let listed = run(home.path(), &["ls", &format!("oci:{}", dir.display())])
        .ok()
        .stdout;
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        vec!["2.4", "stable", "v0.1.1"]
    );

    // A layout deletes under the registry's rules: `stable` alone would take 2.4 and v0.1.1
    // (one digest), so it is refused, naming them, and nothing changes (tests/it/prune.rs
    // has the deletes that go through). A missing source tag fails clearly.
    let refused = run(
        home.path(),
        &["delete", &format!("oci:{}:stable", dir.display())],
    )
    .fails(1);
    assert!(
        refused.stderr.contains("also tagged 2.4, v0.1.1"),
        "{}",
        refused.stderr
    );
    let missing = run(
        home.path(),
        &["tag", &format!("oci:{}:nope", dir.display()), "x"],
    )
    .fails(1);
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(after["manifests"].as_array().unwrap().len(), 3);
}

#[test]
fn tag_in_an_oci_archive_is_packed_once_with_the_new_tags() {
    let home = tempfile::tempdir().unwrap();
    let archive = home.path().join("sci.tar");
    let src = format!("oci-archive:{}:2.4", archive.display());
    run(
        home.path(),
        &[
            "copy",
            &format!("oci:{}:2.4", science_layout("jupyter-sci").display()),
            &src,
        ],
    )
    .ok();
    let out = run(
        home.path(),
        &["-o", "json", "tag", &src, "stable", "v0.1.1"],
    )
    .ok()
    .json();
    assert_eq!(out["digest"], JUPYTER_INDEX, "{out}");
    let listed = run(
        home.path(),
        &["ls", &format!("oci-archive:{}", archive.display())],
    )
    .ok()
    .stdout;
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        vec!["2.4", "stable", "v0.1.1"]
    );
    let raw = |t: &str| {
        run(
            home.path(),
            &[
                "inspect",
                "--raw",
                &format!("oci-archive:{}:{t}", archive.display()),
            ],
        )
        .ok()
        .stdout
    };
    assert_eq!(raw("stable"), raw("2.4"));
}
