//! Hostile input, part "verify what you copy": a registry that answers a HEAD with one image
//! and a GET with another, a registry that invents a new signature for every lookup, a
//! digest-pinned mirror source, and `plan --resolve` labels against what refresh writes.
//!
//! The graft runs that face a hostile peer go through [`bounded`]: `ulimit -v` (memory) and
//! `timeout` (time) in a subprocess, so a hang or a runaway allocation fails the test instead
//! of the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::sign::{g, keypair};
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::sha256_digest;

/// Address space allowed to a graft run facing a hostile peer (KiB): far more than graft
/// needs, far less than an unbounded read would take.
const MEMORY_KIB: u64 = 2 << 20;
/// Wall-clock limit of such a run (seconds).
const SECONDS: u64 = 120;

/// Run graft (HOME = `home`, `COSIGN_PASSWORD` unset) under `ulimit -v` and `timeout`;
/// returns the run and how long it took.
fn bounded(home: &Path, args: &[&str]) -> (Run, Duration) {
    let cmd = command(home);
    let graft = cmd.get_program().to_owned();
    let script = format!("ulimit -v {MEMORY_KIB} && exec timeout {SECONDS} \"$0\" \"$@\"");
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(script).arg(graft).args(args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.stdin(std::process::Stdio::null());
    let start = Instant::now();
    let run = capture(&mut sh);
    (run, start.elapsed())
}

/// Sign `reference` (docker://…) with a new key; returns the public key.
fn sign(home: &Path, reference: &str) -> PathBuf {
    let (key, public) = keypair(home, home, "signer");
    g(
        home,
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            key.to_str().unwrap(),
            reference,
        ],
    )
    .ok();
    public
}

/// A registry with two different images in one repository: `sci/astro:signed` (signed) and
/// `sci/astro:unsigned`. Returns the registry, the public key and both digests.
fn signed_and_unsigned(home: &Path) -> (Registry, PathBuf, String, String) {
    let a = Registry::start(RegistryOpts::plain());
    a.seed("astro-base", "sci/astro:signed");
    a.seed("jupyter-sci", "sci/astro:unsigned");
    let public = sign(
        home,
        &format!("docker://{}", a.image_ref("sci/astro:signed")),
    );
    let signed = sha256_digest(&a.raw("sci/astro:signed"));
    let unsigned = sha256_digest(&a.raw("sci/astro:unsigned"));
    assert_ne!(signed, unsigned);
    (a, public, signed, unsigned)
}

/// `proxy` tells the truth to HEAD and answers every GET of the tag `signed` with the
/// manifest of `unsigned`.
fn swap_on_get(proxy: &Proxy) {
    proxy.rewrite(
        "GET",
        "/manifests/signed",
        "/manifests/signed",
        "/manifests/unsigned",
        1000,
    );
}

#[test]
fn mirror_verify_key_refuses_an_image_swapped_between_check_and_copy() {
    let home = tempfile::tempdir().unwrap();
    let (a, public, signed, unsigned) = signed_and_unsigned(home.path());
    let proxy = Proxy::start(&a.base_url());
    swap_on_get(&proxy);
    // The hostile registry really does answer differently: HEAD says signed, GET unsigned.
    let out = home.path().join("out");
    let cfg = home.path().join("sync.yaml");
    std::fs::write(
        &cfg,
        format!(
            "destination: oci:{}\nsources:\n  - repository: docker://{}\n    tags: [signed]\n",
            out.display(),
            proxy.image_ref("sci/astro"),
        ),
    )
    .unwrap();
    let (run, took) = bounded(
        home.path(),
        &[
            "-q",
            "-o",
            "json",
            "--tls-verify=false",
            "--retries",
            "0",
            "mirror",
            "--verify-key",
            public.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let run = run.fails(1);
    assert!(took < Duration::from_secs(SECONDS), "{took:?}");
    let v = run.json();
    assert_eq!(v["failed"], 1, "{v}");
    let err = v["images"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("refusing to import") && err.contains("sci/astro:signed"),
        "{v}"
    );
    // The unsigned image was the one checked (and refused), not the signed one.
    assert!(err.contains(&unsigned), "{v}");
    assert!(!err.contains(&signed), "{v}");
    // Nothing written: the layout (opened for the whole mirror) holds no image and no blob.
    let index = std::fs::read(out.join("index.json")).unwrap_or_default();
    let index: Value = serde_json::from_slice(&index).unwrap_or(Value::Null);
    assert!(
        index["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .is_empty(),
        "{index}"
    );
    let blobs = std::fs::read_dir(out.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0);
    // The source was resolved with one GET, never a HEAD that a GET could contradict.
    assert_eq!(
        proxy.count("HEAD", "/manifests/signed"),
        0,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(
        proxy.count("GET", "/manifests/signed"),
        1,
        "{:?}",
        proxy.requests()
    );
}

#[test]
fn copy_verify_key_refuses_a_swapped_image_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (a, public, _, unsigned) = signed_and_unsigned(home.path());
    let proxy = Proxy::start(&a.base_url());
    swap_on_get(&proxy);
    let out = home.path().join("out");
    let dest = format!("oci:{}:imported", out.display());
    let src = format!("docker://{}", proxy.image_ref("sci/astro:signed"));
    let (run, took) = bounded(
        home.path(),
        &[
            "--tls-verify=false",
            "--retries",
            "0",
            "copy",
            "--verify-key",
            public.to_str().unwrap(),
            &src,
            &dest,
        ],
    );
    let run = run.fails(1);
    assert!(took < Duration::from_secs(SECONDS), "{took:?}");
    assert!(
        run.stderr.contains("refusing to import") && run.stderr.contains(&unsigned),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    assert!(!out.exists(), "the destination was created");
}

#[test]
fn copy_verify_key_copies_a_signed_image_and_refuses_a_wrong_key() {
    let home = tempfile::tempdir().unwrap();
    let (a, public, signed, _) = signed_and_unsigned(home.path());
    let b = Registry::start(RegistryOpts::plain());
    let src = format!("docker://{}", a.image_ref("sci/astro:signed"));
    let dst = format!("docker://{}", b.image_ref("mirror/astro:1.0"));
    let copy = |key: &Path, dst: &str| {
        capture(command(home.path()).args([
            "--tls-verify=false",
            "--retries",
            "0",
            "copy",
            "--verify-key",
            key.to_str().unwrap(),
            &src,
            dst,
        ]))
    };
    // A key that did not sign it: refused, exit 1, the destination repository not created.
    let (_, wrong) = keypair(home.path(), home.path(), "stranger");
    let run = copy(&wrong, &dst).fails(1);
    assert!(run.stderr.contains("refusing to import"), "{}", run.stderr);
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &b.docker_ref("mirror/astro"),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "{listed:?}");
    // The signer's key: copied, digest kept.
    let run = copy(&public, &dst).ok();
    assert_eq!(run.stdout.trim(), signed);
    assert_eq!(sha256_digest(&b.raw("mirror/astro:1.0")), signed);
    // Into a layout too, by digest-pinned source.
    let out = home.path().join("layout");
    let pinned = format!("docker://{}@{signed}", a.image_ref("sci/astro"));
    let run = capture(command(home.path()).args([
        "--tls-verify=false",
        "copy",
        "--verify-key",
        public.to_str().unwrap(),
        &pinned,
        &format!("oci:{}:x", out.display()),
    ]))
    .ok();
    assert_eq!(run.stdout.trim(), signed);
}

/// A signature manifest for the subject `hex`: new bytes for every subject, so its own
/// `.sig` is a new lookup, forever.
fn invented_signature(hex: &str) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2
        },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": 1,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}
        }]
    })
    .to_string()
    .into_bytes()
}

#[test]
fn attachment_discovery_stops_at_a_registry_that_invents_signatures() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    a.seed("astro-base", "sci/astro:1.0");
    let proxy = Proxy::start(&a.base_url());
    // Every `sha256-<hex>.sig` exists, and is a fresh signature whose own `.sig` exists too.
    proxy.respond("*", ".sig", usize::MAX, |_, pq| {
        let tag = pq.rsplit('/').next()?;
        let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
        let body = invented_signature(hex);
        let headers = vec![
            (
                "Content-Type".to_string(),
                "application/vnd.oci.image.manifest.v1+json".to_string(),
            ),
            ("Docker-Content-Digest".to_string(), sha256_digest(&body)),
        ];
        Some((200, headers, body))
    });
    let out = home.path().join("out");
    let src = format!("docker://{}", proxy.image_ref("sci/astro:1.0"));
    let (run, took) = bounded(
        home.path(),
        &[
            "--tls-verify=false",
            "--retries",
            "0",
            "copy",
            "--with-attachments",
            &src,
            &format!("oci:{}:x", out.display()),
        ],
    );
    let run = run.fails(1);
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(
        run.stderr.contains("more than 8 deep") && run.stderr.contains("sci/astro"),
        "{}",
        run.stderr
    );
    // Found before anything was written: no layout at all.
    assert!(!out.exists(), "the destination was created");
    // Bounded lookups: 9 levels of signatures, a handful of requests each.
    let sigs = proxy.count("*", ".sig");
    assert!((9..=40).contains(&sigs), "{sigs}: {:?}", proxy.requests());
    assert_eq!(proxy.count("GET", "/blobs/"), 0, "{:?}", proxy.requests());
}

/// `(source, destination)` of every image a mirror dry run lists.
fn dry_run(home: &Path, cfg: &Path) -> Vec<(String, String)> {
    let run = capture(
        command(home)
            .args([
                "-o",
                "json",
                "--tls-verify=false",
                "mirror",
                "--dry-run",
                "--config",
            ])
            .arg(cfg),
    )
    .ok();
    run.json()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["source"].as_str().unwrap().to_string(),
                i["destination"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn mirror(home: &Path, cfg: &Path) -> Value {
    capture(
        command(home)
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "--retries",
                "0",
                "mirror",
                "--config",
            ])
            .arg(cfg),
    )
    .ok()
    .json()
}

#[test]
fn a_digest_pinned_mirror_source_mirrors_exactly_that_image() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    let b = Registry::start(RegistryOpts::plain());
    a.seed("astro-base", "sci/astro:1.0");
    a.seed("jupyter-sci", "sci/astro:2.0");
    let pinned = sha256_digest(&a.raw("sci/astro:1.0"));
    let other = sha256_digest(&a.raw("sci/astro:2.0"));
    let name = format!("{}@{pinned}", a.image_ref("sci/astro"));

    // Export: exactly one image, named host/repo@sha256:… in the archive.
    let archive = home.path().join("export.tar");
    let export = home.path().join("export.yaml");
    std::fs::write(
        &export,
        format!(
            "destination: oci-archive:{}\nsources:\n  - repository: docker://{name}\n",
            archive.display()
        ),
    )
    .unwrap();
    assert_eq!(
        dry_run(home.path(), &export),
        vec![(
            format!("docker://{name}"),
            format!("oci-archive:{}:{name}", archive.display())
        )]
    );
    let v = mirror(home.path(), &export);
    assert_eq!(
        (v["copied"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(0)),
        "{v}"
    );
    assert_eq!(v["images"][0]["digest"], pinned.as_str(), "{v}");
    let listing = Command::new("tar")
        .args(["-xOf", archive.to_str().unwrap(), "index.json"])
        .output()
        .unwrap();
    let index: Value = serde_json::from_slice(&listing.stdout).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["digest"], pinned.as_str());
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        name.as_str()
    );

    // Import: mapped back to <prefix>/repo@sha256:…, stored by digest, no tag.
    let import = home.path().join("import.yaml");
    std::fs::write(
        &import,
        format!(
            "destination: docker://{}/internal\nsources:\n  - repository: oci-archive:{}\n",
            b.addr(),
            archive.display()
        ),
    )
    .unwrap();
    let dest = format!("docker://{}/internal/sci/astro@{pinned}", b.addr());
    assert_eq!(
        dry_run(home.path(), &import),
        vec![(format!("oci-archive:{}:{name}", archive.display()), dest)]
    );
    let v = mirror(home.path(), &import);
    assert_eq!(v["copied"], 1, "{v}");
    assert_eq!(
        b.raw(&format!("internal/sci/astro@{pinned}")),
        a.raw("sci/astro:1.0")
    );
    // Incremental: the second import finds it there.
    let v = mirror(home.path(), &import);
    assert_eq!(v["skipped"], 1, "{v}");

    // Registry to registry, directly: the pinned digest, not the other tag.
    let direct = home.path().join("direct.yaml");
    std::fs::write(
        &direct,
        format!(
            "destination: docker://{}/direct\nsources:\n  - repository: docker://{name}\n",
            b.addr()
        ),
    )
    .unwrap();
    let v = mirror(home.path(), &direct);
    assert_eq!(v["copied"], 1, "{v}");
    assert_eq!(v["images"][0]["digest"], pinned.as_str(), "{v}");
    assert_ne!(pinned, other);
    // Filters cannot apply to a pinned digest: said, not ignored.
    std::fs::write(
        &direct,
        format!(
            "destination: docker://{}/direct\nsources:\n  - repository: docker://{name}\n    tags: ['2.0']\n",
            b.addr()
        ),
    )
    .unwrap();
    let run = capture(
        command(home.path())
            .args([
                "-o",
                "json",
                "--tls-verify=false",
                "mirror",
                "--dry-run",
                "--config",
            ])
            .arg(&direct),
    )
    .fails(1);
    assert!(run.all().contains("pins a digest"), "{}", run.all());
}

/// Each platform (`os/arch[/variant]`, `None` for a single manifest) of the image `oci:DIR:TAG`
/// and its config's labels, read from the files.
fn layout_labels(dir: &Path, tag: &str) -> Vec<(Option<String>, serde_json::Map<String, Value>)> {
    let read = |digest: &str| -> Value {
        let path = dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let root = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let root = read(root["digest"].as_str().unwrap());
    let manifests: Vec<(Option<String>, Value)> = match root["manifests"].as_array() {
        Some(list) => list
            .iter()
            .map(|d| {
                let p = &d["platform"];
                let mut name = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                );
                if let Some(v) = p["variant"].as_str() {
                    name = format!("{name}/{v}");
                }
                (Some(name), read(d["digest"].as_str().unwrap()))
            })
            .collect(),
        None => vec![(None, root)],
    };
    manifests
        .iter()
        .map(|(p, m)| {
            let config = read(m["config"]["digest"].as_str().unwrap());
            let labels = config["config"]["Labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            (p.clone(), labels)
        })
        .collect()
}

#[test]
fn plan_resolve_shows_the_labels_refresh_writes() {
    let home = tempfile::tempdir().unwrap();
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = home.path().join("out");
    let repo = format!("oci:{}", out.display());
    let run = |args: &[&str]| {
        capture(
            command(home.path())
                .current_dir(&sample)
                .env("SOURCE_DATE_EPOCH", "0")
                .args(args),
        )
    };
    let plan = run(&[
        "-o",
        "json",
        "plan",
        "--resolve",
        "--build",
        "7",
        "--commit",
        "abc",
        // The sample's default branch, whatever the checkout's own branch is.
        "--branch",
        "main",
    ])
    .ok()
    .json();
    run(&[
        "-q", "refresh", "--repo", &repo, "--build", "7", "--commit", "abc", "--branch", "main",
    ])
    .ok();
    for image in plan["images"].as_array().unwrap() {
        let name = image["name"].as_str().unwrap();
        let version = image["version"].as_str().unwrap();
        let labels = image["labels"].as_object().unwrap();
        assert!(
            !labels.keys().any(|k| k.ends_with(".digest")),
            "{name}: {labels:?}"
        );
        let written = layout_labels(&out.join(name), version);
        assert!(!written.is_empty());
        for (platform, config) in &written {
            // What plan shows for every platform, plus what it shows for this one.
            let mut shown = labels.clone();
            let key = platform.clone().unwrap_or_else(|| "image".into());
            if let Some(Value::Object(own)) = image["platform_labels"].get(&key) {
                shown.extend(own.clone());
            }
            assert_eq!(&shown, config, "{name} {key}");
        }
    }
}
