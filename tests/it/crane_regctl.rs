//! graft beside crane and regctl, the real tools (pinned in `scripts/tools.env`), on a real
//! distribution registry and on the referrers-API registry:
//! - images written by `crane append`, `crane mutate`, `crane index append` and `regctl image
//!   mod` are read (`graft inspect`), copied (registry → registry, → `oci:` and back) and used
//!   as science images by `graft refresh`, with every digest kept (the destination's manifest
//!   bytes are the source's);
//! - everything graft writes (copy, append, refresh, and the signatures and attestations of
//!   `refresh --sign-key --provenance`) passes `crane validate --remote`, which reads every blob,
//!   for the index and for every platform;
//! - `regctl image check-base` finds graft's `org.opencontainers.image.base.*` annotations and
//!   says the base matches, and exits non-zero once the science tag has moved.
//!
//! Two things `crane validate` cannot check, whoever wrote the image (see
//! docs/interop/crane-regctl.md): layers that are not gzip (it always gunzips), and cosign's
//! `.sig`/`.att` manifests, whose config lists a diff_id for a layer that is not a filesystem
//! layer. For those the test asserts that graft's signature fails exactly as cosign's own does,
//! that `--fast` passes, and that every blob reads back with its digest.

use crate::support::tools::copy_dir;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::graft::{capture, command, graft};
use crate::support::peers::{Peer, RefRegistry};
use crate::support::registry::Registry;
use crate::support::tools::{run_ok, science_oci_ref, sha256_digest, skopeo};

/// The password of the keys made here.
const PW: &str = "crane-regctl-test";

/// The one message `crane validate` gives for a cosign `.sig`/`.att` manifest (its config names
/// one diff_id, and the layer is a signature payload, not a filesystem layer).
const COSIGN_DIFFIDS: &str =
    "mismatched number of diffids: len(ConfigFile.RootFS.DiffIDs)=1, len(layers)=0";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pushes a sample science image to `host/repo_tag` with skopeo, digests kept.
fn seed(host: &str, name: &str, repo_tag: &str) {
    skopeo([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &science_oci_ref(name),
        &format!("docker://{host}/{repo_tag}"),
    ]);
}

/// A one-file layer as an uncompressed tar (what `regctl --layer-add tar=` takes: it
/// compresses it itself) and as a gzip tar (what `crane append -f` and `graft append` take
/// as is). Returns `(tar, tar.gz)`.
fn layer_files(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("layer-root");
    std::fs::create_dir_all(root.join("opt/peer")).unwrap();
    std::fs::write(
        root.join("opt/peer/hello.txt"),
        b"hello from a peer layer\n",
    )
    .unwrap();
    let tar = dir.join("layer.tar");
    let tgz = dir.join("layer.tar.gz");
    for (file, flag) in [(&tar, "-cf"), (&tgz, "-czf")] {
        run_ok(
            std::process::Command::new("tar")
                .arg(flag)
                .arg(file)
                .arg("-C")
                .arg(&root)
                .arg("opt"),
        );
    }
    (tar, tgz)
}

/// `crane digest REF`.
fn digest(peer: &Peer, reference: &str) -> String {
    String::from_utf8(peer.crane(["digest", reference]).stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// `crane manifest REF`: the exact bytes the registry serves.
fn manifest(peer: &Peer, reference: &str) -> Vec<u8> {
    peer.crane(["manifest", reference]).stdout
}

/// The child manifest digests of an index (empty for a manifest), with their platforms as
/// `os/arch[/variant]`.
fn children(bytes: &[u8]) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_slice(bytes).unwrap();
    doc["manifests"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let p = &m["platform"];
                    let mut platform = format!(
                        "{}/{}",
                        p["os"].as_str().unwrap_or(""),
                        p["architecture"].as_str().unwrap_or("")
                    );
                    if let Some(v) = p["variant"].as_str() {
                        platform = format!("{platform}/{v}");
                    }
                    (m["digest"].as_str().unwrap().to_string(), platform)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `host/repo` of `host/repo:tag` or `host/repo@digest`.
fn repo_of(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    let slash = reference.rfind('/').unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(colon) => &reference[..slash + colon],
        None => reference,
    }
}

/// `crane validate --remote` of `reference` and, for an index, of every child by digest: each
/// must say PASS (crane reads and hashes every blob).
fn validate_all(peer: &Peer, reference: &str) {
    let out = peer.try_run("crane", ["validate", "--remote", reference]);
    assert!(
        out.status.success() && text(&out).contains("PASS"),
        "crane validate --remote {reference}:\n{}",
        text(&out)
    );
    for (child, platform) in children(&manifest(peer, reference)) {
        let r = format!("{}@{child}", repo_of(reference));
        let out = peer.try_run("crane", ["validate", "--remote", &r]);
        assert!(
            out.status.success() && text(&out).contains("PASS"),
            "crane validate --remote {r} ({platform} of {reference}):\n{}",
            text(&out)
        );
    }
}

/// The JSON config of `reference` (of `platform` when it is an index), read by graft.
fn graft_config(home: &Path, reference: &str, platform: Option<&str>) -> Value {
    let mut args = vec!["--tls-verify=false", "inspect", "--config", "--raw"];
    if let Some(p) = platform {
        args.extend(["--platform", p]);
    }
    let r = format!("docker://{reference}");
    args.push(&r);
    let run = graft(home, &args).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

/// Images made by crane and regctl at `host`: `(name, reference)`.
fn make_peer_images(peer: &Peer, host: &str, dir: &Path) -> Vec<(&'static str, String)> {
    let r = |s: &str| format!("{host}/{s}");
    let (tar, tgz) = layer_files(dir);
    seed(host, "astro-base", "sci/astro:1.0");
    // crane append on an index writes one platform (linux/amd64 unless --platform says).
    peer.crane([
        "append",
        "-b",
        &r("sci/astro:1.0"),
        "-f",
        tgz.to_str().unwrap(),
        "-t",
        &r("crane/append:1"),
    ]);
    // crane mutate sets annotations only on a single manifest ("not yet supported" on an index).
    peer.crane([
        "mutate",
        &r("crane/append:1"),
        "--label",
        "org.example.tool=crane",
        "--annotation",
        "org.example.made-by=crane mutate",
        "--entrypoint",
        "/bin/sh,-c",
        "-t",
        &r("crane/mutate:1"),
    ]);
    let layer_add = format!("tar={}", tar.display());
    peer.regctl([
        "image",
        "mod",
        &r("sci/astro:1.0"),
        "--layer-add",
        &layer_add,
        "--label",
        "org.example.tool=regctl",
        "--annotation",
        "[*]org.example.made-by=regctl image mod",
        "--create",
        &r("regctl/index:1"),
    ]);
    peer.regctl([
        "image",
        "mod",
        &r("crane/mutate:1"),
        "--layer-add",
        &layer_add,
        "--label",
        "org.example.tool=regctl",
        "--annotation",
        "org.example.made-by=regctl image mod",
        "--create",
        &r("regctl/single:1"),
    ]);
    // Docker media types (manifest list, schema 2), as older registries and builders write.
    skopeo([
        "copy",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &science_oci_ref("astro-base"),
        &format!("docker://{host}/docker/astro:1.0"),
    ]);
    peer.regctl([
        "image",
        "mod",
        &r("docker/astro:1.0"),
        "--layer-add",
        &layer_add,
        "--label",
        "org.example.tool=regctl",
        "--create",
        &r("regctl/docker:1"),
    ]);
    vec![
        ("crane-append", r("crane/append:1")),
        ("crane-mutate", r("crane/mutate:1")),
        ("regctl-index", r("regctl/index:1")),
        ("regctl-single", r("regctl/single:1")),
        ("regctl-docker", r("regctl/docker:1")),
    ]
}

/// Reads, copies (registry → registry, → `oci:`, `oci:` → registry) and appends to every image
/// crane and regctl made at `host`.
fn read_copy_append(host: &str) {
    let home = tempfile::tempdir().unwrap();
    let peer = Peer::new().plain_http(host);
    let images = make_peer_images(&peer, host, home.path());
    let (_, tgz) = layer_files(&home.path().join("graft-layer"));
    let layout = home.path().join("layout");
    for (name, src) in &images {
        let bytes = manifest(&peer, src);
        let d = digest(&peer, src);
        assert_eq!(sha256_digest(&bytes), d, "{src}");

        // Read: the digest crane computes, the bytes crane reads, what the tools set.
        let info = graft(
            home.path(),
            &[
                "-o",
                "json",
                "--tls-verify=false",
                "inspect",
                &format!("docker://{src}"),
            ],
        )
        .ok()
        .json();
        assert_eq!(info["digest"], d.as_str(), "{name}: {info}");
        let raw = graft(
            home.path(),
            &[
                "--tls-verify=false",
                "inspect",
                "--raw",
                &format!("docker://{src}"),
            ],
        )
        .ok();
        assert!(
            raw.stdout.as_bytes() == bytes,
            "{name}: inspect --raw differs"
        );
        let platform = (!children(&bytes).is_empty()).then_some("linux/arm64/v8");
        let config = graft_config(home.path(), src, platform);
        let tool = if name.starts_with("crane") {
            "crane"
        } else {
            "regctl"
        };
        // The layer each tool added (two in the science image), the label the others set.
        let layers = if *name == "regctl-single" { 4 } else { 3 };
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().unwrap().len(),
            layers,
            "{name}: {config}"
        );
        if *name != "crane-append" {
            assert_eq!(
                config["config"]["Labels"]["org.example.tool"], tool,
                "{name}: {config}"
            );
        }
        if *name == "regctl-docker" {
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(
                doc["mediaType"],
                "application/vnd.docker.distribution.manifest.list.v2+json"
            );
        }
        if *name != "crane-append" && *name != "regctl-docker" {
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            assert!(
                doc["annotations"]["org.example.made-by"]
                    .as_str()
                    .is_some_and(|v| v.starts_with(tool)),
                "{name}: {doc}"
            );
        }
        if name.ends_with("mutate") || name.ends_with("single") {
            assert_eq!(
                config["config"]["Entrypoint"],
                serde_json::json!(["/bin/sh", "-c"]),
                "{name}"
            );
        }

        // Registry → registry: the same bytes, every blob valid for crane.
        let dst = format!("{host}/copy/{name}:1");
        graft(
            home.path(),
            &[
                "-q",
                "--tls-verify=false",
                "copy",
                &format!("docker://{src}"),
                &format!("docker://{dst}"),
            ],
        )
        .ok();
        assert!(manifest(&peer, &dst) == bytes, "{name}: copy changed bytes");
        assert_eq!(digest(&peer, &dst), d);
        validate_all(&peer, &dst);

        // → oci: (read back by regctl's ocidir) and oci: → registry.
        let oci = format!("oci:{}:{name}", layout.display());
        graft(
            home.path(),
            &[
                "-q",
                "--tls-verify=false",
                "copy",
                &format!("docker://{src}"),
                &oci,
            ],
        )
        .ok();
        let from_layout = peer.regctl([
            "manifest",
            "get",
            "--format",
            "raw-body",
            &format!("ocidir://{}:{name}", layout.display()),
        ]);
        assert!(
            from_layout.stdout == bytes,
            "{name}: oci: layout bytes differ"
        );
        let back = format!("{host}/back/{name}:1");
        graft(
            home.path(),
            &[
                "-q",
                "--tls-verify=false",
                "copy",
                &oci,
                &format!("docker://{back}"),
            ],
        )
        .ok();
        assert_eq!(digest(&peer, &back), d, "{name}: oci: round trip");
        validate_all(&peer, &back);

        // graft append on the peer's image: valid for crane, its base found by regctl.
        let app = format!("{host}/app/{name}:1");
        graft(
            home.path(),
            &[
                "-q",
                "--tls-verify=false",
                "append",
                "--base",
                &format!("docker://{src}"),
                "--layer",
                tgz.to_str().unwrap(),
                "--label",
                "org.example.appended=graft",
                "--annotation",
                "org.example.appended=graft",
                &format!("docker://{app}"),
            ],
        )
        .ok();
        validate_all(&peer, &app);
        let media_type =
            |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap()["mediaType"].clone();
        assert_eq!(
            media_type(&manifest(&peer, &app)),
            media_type(&bytes),
            "{name}: append keeps the media type"
        );
        let out = peer.regctl(["image", "check-base", &app]);
        assert!(
            text(&out).contains("base image matches"),
            "{name}: {}",
            text(&out)
        );
    }
}

#[test]
fn crane_and_regctl_images_are_read_copied_and_appended_to_on_distribution() {
    let reg = Registry::plain();
    read_copy_append(reg.addr());
}

#[test]
fn crane_and_regctl_images_are_read_copied_and_appended_to_on_the_referrers_registry() {
    let reg = RefRegistry::start();
    read_copy_append(reg.host());
}

/// The sample library copied under `dir`, its science images at `host/sci/jupyter:2.4` and
/// `host/sci/astro:1.0`.
fn library(dir: &Path, host: &str) -> PathBuf {
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
            format!("docker://{host}/sci/jupyter:2.4"),
        ),
        (
            "manifests/astro-notebook.yaml",
            "oci:testdata/science/astro-base:1.0",
            format!("docker://{host}/sci/astro:1.0"),
        ),
    ] {
        let p = lib.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} names {from}");
        std::fs::write(&p, text.replace(from, &to)).unwrap();
    }
    lib
}

/// The cosign attachments (`.sig`, `.att` tags) of `repo`: each passes `crane validate
/// --fast`, every blob reads back with its digest, and the full validation fails with the one
/// message it gives for cosign's own signatures, nothing else.
fn check_cosign_attachments(peer: &Peer, repo: &str) -> usize {
    let tags = String::from_utf8(peer.crane(["ls", repo]).stdout).unwrap();
    let mut n = 0;
    for tag in tags
        .lines()
        .filter(|t| t.ends_with(".sig") || t.ends_with(".att"))
    {
        n += 1;
        let r = format!("{repo}:{tag}");
        let out = peer.try_run("crane", ["validate", "--fast", "--remote", &r]);
        assert!(out.status.success(), "{r}: {}", text(&out));
        let doc: Value = serde_json::from_slice(&manifest(peer, &r)).unwrap();
        let mut blobs = vec![doc["config"]["digest"].as_str().unwrap().to_string()];
        for l in doc["layers"].as_array().unwrap() {
            blobs.push(l["digest"].as_str().unwrap().to_string());
        }
        for b in blobs {
            let bytes = peer.crane(["blob", &format!("{repo}@{b}")]).stdout;
            assert_eq!(sha256_digest(&bytes), b, "{r}: blob {b}");
        }
        let out = peer.try_run("crane", ["validate", "--remote", &r]);
        let said = text(&out);
        let problems: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("FAIL") || l.starts_with("Error"))
            .collect();
        assert!(
            problems.iter().all(|l| l.ends_with(COSIGN_DIFFIDS)),
            "{r}: crane validate says more than it says of cosign's own signatures:\n{said}"
        );
    }
    n
}

/// The science images made by the peers: `sci/jupyter:2.4` an index assembled by `crane
/// append` per platform and `crane index append`, `sci/astro:1.0` by `regctl image mod`.
fn peer_science(peer: &Peer, host: &str, dir: &Path) {
    let r = |s: &str| format!("{host}/{s}");
    let (tar, tgz) = layer_files(dir);
    seed(host, "jupyter-sci", "upstream/jupyter:2.4");
    seed(host, "astro-base", "upstream/astro:1.0");
    for (platform, tag) in [("linux/amd64", "amd64"), ("linux/arm64/v8", "arm64")] {
        peer.crane([
            "append",
            "--platform",
            platform,
            "-b",
            &r("upstream/jupyter:2.4"),
            "-f",
            tgz.to_str().unwrap(),
            "-t",
            &r(&format!("build/jupyter:{tag}")),
        ]);
    }
    peer.crane([
        "index",
        "append",
        "-m",
        &r("build/jupyter:amd64"),
        "-m",
        &r("build/jupyter:arm64"),
        "-t",
        &r("sci/jupyter:2.4"),
    ]);
    peer.regctl([
        "image",
        "mod",
        &r("upstream/astro:1.0"),
        "--layer-add",
        &format!("tar={}", tar.display()),
        "--label",
        "org.example.science=regctl",
        "--annotation",
        "[*]org.example.made-by=regctl image mod",
        "--create",
        &r("sci/astro:1.0"),
    ]);
}

/// `refresh --sign-key --provenance` of the sample library on science images made by crane
/// and regctl at `host`; checks the outputs with crane and regctl. With `referrers`, also signs
/// in the bundle format (referrers API) and validates those referrers.
fn refresh_with_peer_science(host: &str, referrers: bool) {
    let home = tempfile::tempdir().unwrap();
    let peer = Peer::new().plain_http(host).with_cosign_password(PW);
    peer_science(&peer, host, home.path());
    let lib = library(home.path(), host);
    let key = home.path().join("ci");
    capture(
        command(home.path())
            .env("COSIGN_PASSWORD", PW)
            .args(["generate-key-pair", "--output-key-prefix"])
            .arg(&key),
    )
    .ok();
    let key = home.path().join("ci.key");
    let out = capture(
        command(home.path())
            .env("COSIGN_PASSWORD", PW)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "refresh",
                "--library",
            ])
            .arg(&lib)
            .args(["--repo", &format!("docker://{host}/rel"), "--build", "7"])
            .args(["--commit", "abc1234", "--provenance", "--sign-key"])
            .arg(&key),
    )
    .ok()
    .json();
    assert_eq!(out["images"].as_array().unwrap().len(), 2, "{out}");

    for (image, science) in [
        ("rel/sci-notebook:2.4", "sci/jupyter:2.4"),
        ("rel/astro-notebook:1.0", "sci/astro:1.0"),
    ] {
        let image = format!("{host}/{image}");
        let science = format!("{host}/{science}");
        validate_all(&peer, &image);
        validate_all(&peer, &format!("{}-7-abc1234", image));

        // Digests kept: the base annotations name the science digests crane computes, and each
        // platform starts with its science manifest's layers, descriptor for descriptor.
        let index: Value = serde_json::from_slice(&manifest(&peer, &image)).unwrap();
        let sci_bytes = manifest(&peer, &science);
        assert_eq!(
            index["annotations"]["org.opencontainers.image.base.digest"],
            digest(&peer, &science).as_str()
        );
        assert_eq!(
            index["annotations"]["org.opencontainers.image.base.name"],
            science.as_str()
        );
        let sci_children = children(&sci_bytes);
        let out_children = children(&serde_json::to_vec(&index).unwrap());
        assert_eq!(sci_children.len(), 2, "{science}");
        for (child, platform) in &out_children {
            let (sci_child, _) = sci_children
                .iter()
                .find(|(_, p)| p == platform)
                .unwrap_or_else(|| panic!("{science} has no {platform}"));
            let m: Value =
                serde_json::from_slice(&manifest(&peer, &format!("{}@{child}", repo_of(&image))))
                    .unwrap();
            let s: Value = serde_json::from_slice(&manifest(
                &peer,
                &format!("{}@{sci_child}", repo_of(&science)),
            ))
            .unwrap();
            assert_eq!(
                m["annotations"]["org.opencontainers.image.base.digest"],
                sci_child.as_str()
            );
            let sl = s["layers"].as_array().unwrap();
            assert_eq!(&m["layers"].as_array().unwrap()[..sl.len()], &sl[..]);
            // regctl finds the base from graft's annotations, per platform too.
            let out = peer.regctl(["image", "check-base", "--platform", platform, &image]);
            assert!(
                text(&out).contains("base image matches"),
                "{image} {platform}: {}",
                text(&out)
            );
        }
        let out = peer.regctl(["image", "check-base", &image]);
        assert!(text(&out).contains("base image matches"), "{}", text(&out));

        // The signatures and attestations: index and both platforms, each one.
        assert_eq!(
            check_cosign_attachments(&peer, repo_of(&image)),
            6,
            "{image}: .sig and .att for the index and two platforms"
        );
    }

    // crane validate says the same of cosign's own signature as of graft's.
    let (cosign_key, _) = peer.cosign_generate_key_pair();
    let science = format!("{host}/sci/astro:1.0");
    peer.cosign_sign(&cosign_key, &science, &[]);
    assert_eq!(
        check_cosign_attachments(&peer, &format!("{host}/sci/astro")),
        1
    );

    if referrers {
        // Sigstore bundles as referrers: crane validates each one in full.
        let image = format!("{host}/rel/astro-notebook:1.0");
        capture(
            command(home.path())
                .env("COSIGN_PASSWORD", PW)
                .args(["-q", "--tls-verify=false", "sign", "--format", "bundle"])
                .args(["--recursive", "--key"])
                .arg(&key)
                .arg(format!("docker://{image}")),
        )
        .ok();
        let mut subjects = vec![digest(&peer, &image)];
        subjects.extend(
            children(&manifest(&peer, &image))
                .into_iter()
                .map(|(d, _)| d),
        );
        for subject in subjects {
            let url = format!("http://{host}/v2/rel/astro-notebook/referrers/{subject}");
            let body = crate::support::block_on(async move {
                let resp = reqwest::get(url).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.bytes().await.unwrap()
            });
            let index: Value = serde_json::from_slice(&body).unwrap();
            let refs = index["manifests"].as_array().unwrap();
            assert!(!refs.is_empty(), "no referrer of {subject}: {index}");
            for r in refs {
                let r = format!(
                    "{host}/rel/astro-notebook@{}",
                    r["digest"].as_str().unwrap()
                );
                validate_all(&peer, &r);
            }
        }
    }

    // The science tag moves (a new upstream build): regctl sees it through graft's annotations
    // and exits non-zero, for the index and each platform; the untouched one still matches.
    peer.crane([
        "copy",
        &format!("{host}/upstream/astro:1.0"),
        &format!("{host}/sci/astro:1.0"),
    ]);
    let image = format!("{host}/rel/astro-notebook:1.0");
    for extra in [&[][..], &["--platform", "linux/amd64"][..]] {
        let mut args = vec!["image", "check-base"];
        args.extend(extra);
        args.push(&image);
        let out = peer.try_run("regctl", &args);
        assert!(
            !out.status.success() && text(&out).contains("base image has changed"),
            "regctl {args:?} after the science tag moved: {}\n{}",
            out.status,
            text(&out)
        );
    }
    let out = peer.regctl([
        "image",
        "check-base",
        &format!("{host}/rel/sci-notebook:2.4"),
    ]);
    assert!(text(&out).contains("base image matches"), "{}", text(&out));

    // regctl rebases graft's image from the same annotations: the moved science image's layers,
    // then graft's compat layer, and crane finds the result valid.
    let rebased = format!("{host}/rebased/astro-notebook:1.0");
    peer.regctl(["image", "mod", &image, "--rebase", "--create", &rebased]);
    validate_all(&peer, &rebased);
    let layers = |r: &str| -> Vec<Value> {
        let m: Value = serde_json::from_slice(
            &peer
                .crane(["manifest", "--platform", "linux/amd64", r])
                .stdout,
        )
        .unwrap();
        m["layers"].as_array().unwrap().clone()
    };
    let (old, new, science) = (
        layers(&image),
        layers(&rebased),
        layers(&format!("{host}/sci/astro:1.0")),
    );
    let mut want = science;
    want.push(old.last().unwrap().clone());
    assert_eq!(
        new, want,
        "rebased = moved science layers + graft's compat layer"
    );
}

#[test]
fn refresh_of_crane_and_regctl_science_passes_crane_validate_and_regctl_check_base_on_distribution()
{
    let reg = Registry::plain();
    refresh_with_peer_science(reg.addr(), false);
}

#[test]
fn refresh_of_crane_and_regctl_science_passes_crane_validate_and_regctl_check_base_on_refreg() {
    let reg = RefRegistry::start();
    refresh_with_peer_science(reg.host(), true);
}
