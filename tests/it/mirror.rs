//! `graft mirror`: registry → archive → registry with digests intact, incremental reruns, and
//! failures that do not stop the other images.

use crate::graft::{capture, command};
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{skopeo, skopeo_inspect_raw};

#[test]
fn mirror_through_an_archive_keeps_every_digest_and_reruns_incrementally() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    let b = Registry::start(RegistryOpts::plain());
    a.seed("astro-base", "sci/astro:1.0");
    a.seed("astro-base", "sci/astro:1.1");
    a.seed("astro-base", "sci/astro:0.9");
    a.seed("jupyter-sci", "sci/jupyter:2.4");
    a.seed("jupyter-sci", "sci/jupyter:latest");
    let proxy = Proxy::start(&a.base_url());
    let archive = home.path().join("export.tar");
    let export = home.path().join("export.yaml");
    std::fs::write(
        &export,
        format!(
            "destination: oci-archive:{}\nsources:\n  - repository: docker://{}\n    allow_tags: '^1\\.\\d+$'\n    latest: 2\n  - repository: docker://{}\n    tags: ['2.4']\n",
            archive.display(),
            proxy.image_ref("sci/astro"),
            proxy.image_ref("sci/jupyter"),
        ),
    )
    .unwrap();
    let run = |cfg: &std::path::Path| {
        capture(
            command(home.path())
                .args([
                    "-q",
                    "-o",
                    "json",
                    "--tls-verify=false",
                    "mirror",
                    "--config",
                ])
                .arg(cfg),
        )
    };
    let out = run(&export).ok().json();
    assert_eq!(out["copied"], 3, "{out}");
    let blob_gets = proxy.count("GET", "/blobs/");
    // astro 1.0 and 1.1 share every blob: each blob is fetched once.
    // Distinct blobs: astro 2 configs + 4 layers, jupyter 2 configs + 5 layers (one shared by
    // both platforms); astro 1.0 and 1.1 are the same image. Each is fetched exactly once.
    assert_eq!(blob_gets, 6 + 7, "{:?}", proxy.requests());

    // Second run: nothing new, one request per image to the source, nothing copied.
    proxy.clear();
    let out = run(&export).ok().json();
    assert_eq!(
        (out["copied"].as_u64(), out["skipped"].as_u64()),
        (Some(0), Some(3)),
        "{out}"
    );
    let manifest_requests = proxy.count("*", "/manifests/");
    assert_eq!(manifest_requests, 3, "{:?}", proxy.requests());
    assert_eq!(proxy.count("GET", "/blobs/"), 0);

    // Import on the other side of the air gap.
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
    let out = run(&import).ok().json();
    assert_eq!(out["copied"], 3, "{out}");
    for (src, dst) in [
        ("sci/astro:1.1", "internal/sci/astro:1.1"),
        ("sci/astro:1.0", "internal/sci/astro:1.0"),
        ("sci/jupyter:2.4", "internal/sci/jupyter:2.4"),
    ] {
        assert_eq!(b.raw(dst), a.raw(src), "{dst}");
    }
    assert!(!skopeo([
        "list-tags",
        "--tls-verify=false",
        &b.docker_ref("internal/sci/astro")
    ])
    .stdout
    .is_empty());
}

#[test]
fn mirror_failures_do_not_stop_the_others() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    a.seed("astro-base", "sci/astro:1.0");
    let cfg = home.path().join("m.yaml");
    std::fs::write(
        &cfg,
        format!(
            "destination: oci:{}\nsources:\n  - repository: docker://127.0.0.1:1/nothing/here\n  - repository: docker://{}\n    allow_tags: '^9'\n  - repository: docker://{}\n",
            home.path().join("out").display(),
            a.image_ref("sci/astro"),
            a.image_ref("sci/astro"),
        ),
    )
    .unwrap();
    let run = capture(
        command(home.path())
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
            .arg(&cfg),
    )
    .fails(1);
    let out = run.json();
    assert_eq!(
        (out["copied"].as_u64(), out["failed"].as_u64()),
        (Some(1), Some(2)),
        "{out}"
    );
    let errors: Vec<String> = out["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["error"].as_str().map(str::to_string))
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("127.0.0.1:1")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("matching the filters")),
        "{errors:?}"
    );
    let tag = format!(
        "oci:{}:{}/sci/astro:1.0",
        home.path().join("out").display(),
        a.addr()
    );
    assert_eq!(
        skopeo_inspect_raw(&tag, &[] as &[&str]),
        a.raw("sci/astro:1.0")
    );
    // A bad sync file is bad input.
    std::fs::write(&cfg, "destination: oci:x\nsource: []\n").unwrap();
    let run = capture(command(home.path()).args(["mirror", "--config"]).arg(&cfg)).fails(1);
    assert!(
        run.stderr.contains("m.yaml") && run.stderr.contains("source"),
        "{}",
        run.stderr
    );
}
