//! `graft mirror`: registry → archive → registry with digests intact, incremental reruns, and
//! failures that do not stop the other images.

use crate::graft::{capture, command};
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{skopeo, skopeo_inspect_raw};
use graft::store::archive::ArchiveSink;

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

    // Import on the other side of the air gap (requests counted on the way in).
    let proxy_b = Proxy::start(&b.base_url());
    let import = home.path().join("import.yaml");
    std::fs::write(
        &import,
        format!(
            "destination: docker://{}/internal\nsources:\n  - repository: oci-archive:{}\n",
            proxy_b.addr(),
            archive.display()
        ),
    )
    .unwrap();
    let out = run(&import).ok().json();
    assert_eq!(out["copied"], 3, "{out}");
    // astro 1.0 and 1.1 are imported at the same time into one repository: every blob is
    // uploaded once and every manifest written once by digest (a manifest written twice at
    // once is truncated and rewritten by distribution, and the other index PUT can fail).
    assert_eq!(
        proxy_b.count("PUT", "/blobs/uploads/"),
        6 + 7,
        "{:?}",
        proxy_b.requests()
    );
    let mut by_digest: Vec<String> = proxy_b
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "PUT" && p.contains("/manifests/sha256:"))
        .map(|(_, p)| p)
        .collect();
    let all = by_digest.len();
    by_digest.sort();
    by_digest.dedup();
    assert_eq!(
        all,
        by_digest.len(),
        "a manifest written twice: {by_digest:?}"
    );
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
    let run = capture(command(home.path()).args(["mirror", "--config"]).arg(&cfg)).fails(2);
    assert!(
        run.stderr.contains("m.yaml") && run.stderr.contains("source"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Attachments: signatures, attestations and referrers travel with their images.

use crate::sign::{g, keypair};
use crate::support::tools::sha256_hex;

const ARTIFACT: &str = "application/vnd.example.sbom.v1+json";

/// Sign (`.sig`) and attest (`.att`) `image` with graft, and push an OCI artifact referrer of
/// its index with a plain HTTP client, listing it in the fallback index as an independent
/// client would. Returns (public key, referrer digest, subject digest).
fn attach_everything(
    home: &std::path::Path,
    reg: &Registry,
    repo: &str,
    tag: &str,
) -> (std::path::PathBuf, String, String) {
    let (key, public) = keypair(home, home, "signer");
    let image = format!("docker://{}", reg.image_ref(&format!("{repo}:{tag}")));
    g(
        home,
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            key.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    let predicate = home.join("predicate.json");
    std::fs::write(&predicate, br#"{"note":"built at the observatory"}"#).unwrap();
    g(
        home,
        &[
            "--tls-verify=false",
            "attest",
            "--key",
            key.to_str().unwrap(),
            "--type",
            "custom",
            "--predicate",
            predicate.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    let index = reg.raw(&format!("{repo}:{tag}"));
    let subject = format!("sha256:{}", sha256_hex(&index));
    let put_blob = |bytes: Vec<u8>| (reg.push_blob(repo, &bytes), bytes.len());
    let put_manifest = |reference: &str, media_type: &str, bytes: Vec<u8>| {
        reg.push_manifest(repo, reference, media_type, &bytes)
    };
    let (empty, _) = put_blob(b"{}".to_vec());
    let (sbom, sbom_size) = put_blob(br#"{"packages":["numpy","astropy"]}"#.to_vec());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": ARTIFACT,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": ARTIFACT, "digest": sbom, "size": sbom_size}],
        "subject": {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": subject,
            "size": index.len(),
        },
    }))
    .unwrap();
    let referrer = format!("sha256:{}", sha256_hex(&manifest));
    put_manifest(
        &referrer,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.clone(),
    );
    let fallback = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": referrer,
            "size": manifest.len(),
            "artifactType": ARTIFACT,
        }],
    }))
    .unwrap();
    put_manifest(
        &subject.replace(':', "-"),
        "application/vnd.oci.image.index.v1+json",
        fallback,
    );
    (public, referrer, subject)
}

fn entry_kept(index: &serde_json::Value) -> serde_json::Value {
    index["manifests"][0].clone()
}

fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let out = skopeo(["list-tags", "--tls-verify=false", &reg.docker_ref(repo)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut t: Vec<String> = v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

fn mirror(home: &std::path::Path, cfg: &std::path::Path, extra: &[&str]) -> crate::graft::Run {
    capture(
        command(home)
            .args(["-q", "-o", "json", "--tls-verify=false", "--retries", "0"])
            .arg("mirror")
            .args(extra)
            .arg("--config")
            .arg(cfg),
    )
}

#[test]
fn air_gap_keeps_signatures_attestations_and_referrers() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    let b = Registry::start(RegistryOpts::plain());
    a.seed("jupyter-sci", "sci/jupyter:2.4");
    let (public, referrer, subject) = attach_everything(home.path(), &a, "sci/jupyter", "2.4");
    let a_tags = tags(&a, "sci/jupyter");
    let hex = subject.trim_start_matches("sha256:");
    for t in [
        "2.4",
        &format!("sha256-{hex}"),
        &format!("sha256-{hex}.sig"),
        &format!("sha256-{hex}.att"),
    ] {
        assert!(a_tags.contains(&t.to_string()), "{a_tags:?}");
    }
    let proxy = Proxy::start(&a.base_url());
    let archive = home.path().join("export.tar");
    let export = home.path().join("export.yaml");
    std::fs::write(
        &export,
        format!(
            "destination: oci-archive:{}\nwith_attachments: true\nsources:\n  - repository: docker://{}\n    tags: ['2.4']\n",
            archive.display(),
            proxy.image_ref("sci/jupyter"),
        ),
    )
    .unwrap();
    let out = mirror(home.path(), &export, &[]).ok().json();
    assert_eq!(out["copied"], 1, "{out}");
    // .sig, .att, the fallback index and the referrer.
    assert_eq!(out["images"][0]["attachments"]["found"], 4, "{out}");
    // Nothing downloaded twice.
    let mut gets: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.contains("/blobs/"))
        .map(|(_, p)| p)
        .collect();
    let n = gets.len();
    gets.sort();
    gets.dedup();
    assert_eq!(gets.len(), n, "{:?}", proxy.requests());
    let mut manifests: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.contains("/manifests/sha256:"))
        .map(|(_, p)| p)
        .collect();
    let n = manifests.len();
    manifests.sort();
    manifests.dedup();
    assert!(n <= manifests.len() + 4, "{:?}", proxy.requests());

    // Second run: nothing new; nothing copied, no blob fetched. Manifest requests to the
    // source: the image's GET (1: resolved once, checked and copied as read), then discovery:
    // 4 lookups (.sig, .att, .sbom, fallback tag) for the index and each of its 2 children
    // (12), and for each attachment found, the .sig, the .att and the referrer (12), plus the
    // referrer's GET (1) = 26.
    proxy.clear();
    let out = mirror(home.path(), &export, &[]).ok().json();
    assert_eq!(
        (out["copied"].as_u64(), out["skipped"].as_u64()),
        (Some(0), Some(1)),
        "{out}"
    );
    assert_eq!(proxy.count("GET", "/blobs/"), 0);
    let second_run_requests = proxy.count("*", "/manifests/");
    assert_eq!(second_run_requests, 26, "{:?}", proxy.requests());
    // distribution 2.8 has no referrers API: asked once, then the fallback tag is used.
    assert_eq!(
        proxy.count("GET", "/referrers/"),
        1,
        "{:?}",
        proxy.requests()
    );

    // A wrong key refuses the import, names the image, and tags nothing.
    let (_, wrong) = keypair(home.path(), home.path(), "stranger");
    let import = home.path().join("import.yaml");
    std::fs::write(
        &import,
        format!(
            "destination: docker://{}\nwith_attachments: true\nsources:\n  - repository: oci-archive:{}\n",
            b.addr(),
            archive.display()
        ),
    )
    .unwrap();
    let run = mirror(
        home.path(),
        &import,
        &["--verify-key", wrong.to_str().unwrap()],
    )
    .fails(1);
    let out = run.json();
    let err = out["images"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("refusing to import")
            && err.contains("sci/jupyter:2.4")
            && err.contains("key"),
        "{out}"
    );
    // Nothing of the refused image at B: the repository does not even exist.
    let listed = std::process::Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &b.docker_ref("sci/jupyter"),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "{listed:?}");
    assert!(
        String::from_utf8_lossy(&listed.stderr).contains("404"),
        "{listed:?}"
    );

    // The right key: imported with every digest and tag intact.
    let out = mirror(
        home.path(),
        &import,
        &["--verify-key", public.to_str().unwrap()],
    )
    .ok()
    .json();
    assert_eq!(out["copied"], 1, "{out}");
    assert_eq!(tags(&b, "sci/jupyter"), a_tags);
    for t in &a_tags {
        assert_eq!(
            b.raw(&format!("sci/jupyter:{t}")),
            a.raw(&format!("sci/jupyter:{t}")),
            "{t}"
        );
    }
    assert_eq!(
        b.raw(&format!("sci/jupyter@{referrer}")),
        a.raw(&format!("sci/jupyter@{referrer}"))
    );
    let fallback: serde_json::Value =
        serde_json::from_slice(&b.raw(&format!("sci/jupyter:sha256-{hex}"))).unwrap();
    assert_eq!(fallback["manifests"][0]["digest"], referrer.as_str());
    g(
        home.path(),
        &[
            "--tls-verify=false",
            "verify",
            "--key",
            public.to_str().unwrap(),
            &format!("docker://{}", b.image_ref("sci/jupyter:2.4")),
        ],
    )
    .ok();

    // A tampered blob in the archive: the import is refused and nothing is tagged.
    let index: serde_json::Value = serde_json::from_slice(&a.raw("sci/jupyter:2.4")).unwrap();
    let child = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&a.raw(&format!("sci/jupyter@{child}"))).unwrap();
    let layer = m["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .replace("sha256:", "");
    let tampered = home.path().join("tampered.tar");
    std::fs::copy(&archive, &tampered).unwrap();
    let flip = format!(
        "import tarfile\nt = tarfile.open({:?})\nm = t.getmember('blobs/sha256/{layer}')\n\
         f = open({:?}, 'r+b'); f.seek(m.offset_data + m.size // 2); b = f.read(1)\n\
         f.seek(m.offset_data + m.size // 2); f.write(bytes([b[0] ^ 0xff])); f.close()\n",
        tampered.to_str().unwrap(),
        tampered.to_str().unwrap()
    );
    let py = std::process::Command::new("python3")
        .args(["-c", &flip])
        .output()
        .unwrap();
    assert!(py.status.success(), "{py:?}");
    std::fs::write(
        &import,
        format!(
            "destination: docker://{}/tampered\nwith_attachments: true\nsources:\n  - repository: oci-archive:{}\n",
            b.addr(),
            tampered.display()
        ),
    )
    .unwrap();
    let out = mirror(home.path(), &import, &[]).fails(1).json();
    let err = out["images"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&layer[..12]) || err.contains("digest"),
        "{out}"
    );
    let listed = std::process::Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &b.docker_ref("tampered/sci/jupyter"),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "{listed:?}");
}

#[test]
fn interrupted_export_resumes_without_refetching_finished_blobs() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    a.seed("jupyter-sci", "sci/jupyter:2.4");
    attach_everything(home.path(), &a, "sci/jupyter", "2.4");
    let proxy = Proxy::start(&a.base_url());
    let archive = home.path().join("export.tar");
    let export = home.path().join("export.yaml");
    std::fs::write(
        &export,
        format!(
            "destination: oci-archive:{}\nwith_attachments: true\njobs: 1\nsources:\n  - repository: docker://{}\n    tags: ['2.4']\n",
            archive.display(),
            proxy.image_ref("sci/jupyter"),
        ),
    )
    .unwrap();
    // The export dies on a config blob, after the layers have been fetched.
    let index: serde_json::Value = serde_json::from_slice(&a.raw("sci/jupyter:2.4")).unwrap();
    let child = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&a.raw(&format!("sci/jupyter@{child}"))).unwrap();
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    proxy.fail_with("GET", &format!("/blobs/{config}"), 500, 100);
    mirror(home.path(), &export, &["-j", "1"]).fails(1);
    let finished: Vec<String> = proxy
        .request_log()
        .into_iter()
        .filter(|r| {
            r.method == "GET" && r.path_and_query.contains("/blobs/") && r.status == Some(200)
        })
        .map(|r| r.path_and_query)
        .collect();
    assert!(!finished.is_empty(), "{:?}", proxy.requests());
    proxy.clear_faults();
    proxy.clear();
    let out = mirror(home.path(), &export, &[]).ok().json();
    assert_eq!(out["copied"], 1, "{out}");
    let again: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.contains("/blobs/"))
        .map(|(_, p)| p)
        .collect();
    assert!(again.iter().any(|p| p.contains(&config)), "{again:?}");
    for f in &finished {
        assert!(!again.contains(f), "{f} fetched again: {again:?}");
    }
}

#[test]
fn copy_with_attachments_between_registries_merges_the_fallback_index() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    let b = Registry::start(RegistryOpts::plain());
    a.seed("jupyter-sci", "sci/jupyter:2.4");
    let (public, referrer, subject) = attach_everything(home.path(), &a, "sci/jupyter", "2.4");
    let hex = subject.trim_start_matches("sha256:");
    // B already has the image and a fallback index of its own listing another artifact (its
    // arm64 manifest, as a stand-in): that entry must survive the copy.
    b.seed("jupyter-sci", "sci/jupyter:2.4");
    let index: serde_json::Value = serde_json::from_slice(&b.raw("sci/jupyter:2.4")).unwrap();
    let theirs = index["manifests"][1].clone();
    let mut entry = theirs.clone();
    entry.as_object_mut().unwrap().remove("platform");
    entry["artifactType"] = "application/vnd.example.other".into();
    b.push_manifest(
        "sci/jupyter",
        &format!("sha256-{hex}"),
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry],
        }))
        .unwrap(),
    );
    let before: serde_json::Value =
        serde_json::from_slice(&b.raw(&format!("sci/jupyter:sha256-{hex}"))).unwrap();
    // ... and its own signature, by another key: kept too.
    let other = home.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (their_key, their_pub) = keypair(home.path(), &other, "site");
    let dst_image = format!("docker://{}", b.image_ref("sci/jupyter:2.4"));
    g(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            their_key.to_str().unwrap(),
            &dst_image,
        ],
    )
    .ok();
    let src = format!("docker://{}", a.image_ref("sci/jupyter:2.4"));
    let dst = format!("docker://{}", b.image_ref("sci/jupyter:2.4"));
    let out = capture(
        command(home.path())
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "copy",
                "--with-attachments",
            ])
            .args([&src, &dst]),
    )
    .ok()
    .json();
    assert!(out["attachments"]["found"].as_u64().unwrap() >= 4, "{out}");
    let sig: serde_json::Value =
        serde_json::from_slice(&b.raw(&format!("sci/jupyter:sha256-{hex}.sig"))).unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 2, "{sig}");
    let att = format!("sci/jupyter:sha256-{hex}.att");
    assert_eq!(b.raw(&att), a.raw(&att));
    let after: serde_json::Value =
        serde_json::from_slice(&b.raw(&format!("sci/jupyter:sha256-{hex}"))).unwrap();
    let listed: Vec<&str> = after["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&referrer.as_str()), "{after}");
    assert_eq!(after["manifests"][0], entry_kept(&before), "{after}");
    for k in [&public, &their_pub] {
        g(
            home.path(),
            &[
                "--tls-verify=false",
                "verify",
                "--key",
                k.to_str().unwrap(),
                &dst,
            ],
        )
        .ok();
    }
}

// ---------------------------------------------------------------------------------------------
// Layouts and archives merge attachments like registries; `.sbom` tags travel; a killed export
// resumes.

/// `skopeo inspect --raw` of a tag in a layout or archive (`oci:DIR` / `oci-archive:FILE`).
fn local_raw(transport_path: &str, tag: &str) -> Vec<u8> {
    skopeo_inspect_raw(&format!("{transport_path}:{tag}"), &[] as &[&str])
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn listed_digests(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect()
}

fn verify(home: &std::path::Path, key: &std::path::Path, image: &str) {
    g(home, &["verify", "--key", key.to_str().unwrap(), image]).ok();
}

/// Member names of a tar, as GNU tar lists them (checks that plain `tar` reads it).
/// The archive's members as `tar -tf` lists them, after checking each is there once.
fn members_once(archive: &std::path::Path) -> Vec<String> {
    let members = tar_list(archive);
    let mut unique = members.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), members.len(), "{members:?}");
    members
}

fn tar_list(file: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn copy_with_attachments_into_a_layout_merges_its_own_signatures_and_referrers() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    a.seed("jupyter-sci", "sci/jupyter:2.4");
    let (public, referrer, subject) = attach_everything(home.path(), &a, "sci/jupyter", "2.4");
    let hex = subject.trim_start_matches("sha256:");
    let src = format!("docker://{}", a.image_ref("sci/jupyter:2.4"));
    // The site's layout holds the image, signed by the site's own key (a .sig layer, and a
    // bundle referrer listed in a fallback index of its own).
    let layout = home.path().join("site");
    let at = format!("oci:{}", layout.display());
    let dst = format!("{at}:2.4");
    g(home.path(), &["--tls-verify=false", "copy", &src, &dst]).ok();
    let site = home.path().join("site-keys");
    std::fs::create_dir(&site).unwrap();
    let (site_key, site_pub) = keypair(home.path(), &site, "site");
    g(
        home.path(),
        &[
            "sign",
            "--key",
            site_key.to_str().unwrap(),
            "--format",
            "both",
            &dst,
        ],
    )
    .ok();
    let own_sig = json(&local_raw(&at, &format!("sha256-{hex}.sig")));
    let own_index = json(&local_raw(&at, &format!("sha256-{hex}")));
    assert_eq!(own_sig["layers"].as_array().unwrap().len(), 1);
    let own_referrer = listed_digests(&own_index)[0].clone();

    let copy = |extra: &[&str]| {
        capture(
            command(home.path())
                .args(["-q", "-o", "json", "--tls-verify=false", "copy"])
                .args(extra)
                .args([&src, &dst]),
        )
        .ok()
        .json()
    };
    let out = copy(&["--with-attachments"]);
    assert!(out["attachments"]["merged"].as_u64().unwrap() >= 2, "{out}");
    // Both signatures: the site's layer kept verbatim, the source's appended.
    let sig = json(&local_raw(&at, &format!("sha256-{hex}.sig")));
    let layers = sig["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{sig}");
    assert_eq!(layers[0], own_sig["layers"][0]);
    let theirs = json(&a.raw(&format!("sci/jupyter:sha256-{hex}.sig")));
    assert_eq!(layers[1], theirs["layers"][0]);
    // The fallback index lists the site's bundle and the source's referrer; the attestation
    // (absent here before) and the referrer keep their digests.
    let index = json(&local_raw(&at, &format!("sha256-{hex}")));
    assert_eq!(index["manifests"][0], own_index["manifests"][0]);
    let listed = listed_digests(&index);
    assert!(
        listed.contains(&own_referrer) && listed.contains(&referrer),
        "{index}"
    );
    let att = format!("sha256-{hex}.att");
    assert_eq!(local_raw(&at, &att), a.raw(&format!("sci/jupyter:{att}")));
    let referrer_blob = layout
        .join("blobs/sha256")
        .join(referrer.trim_start_matches("sha256:"));
    assert_eq!(
        std::fs::read(referrer_blob).unwrap(),
        a.raw(&format!("sci/jupyter@{referrer}"))
    );
    for key in [&public, &site_pub] {
        verify(home.path(), key, &dst);
    }
    // Again: nothing to merge, nothing rewritten.
    let index_json = std::fs::read(layout.join("index.json")).unwrap();
    let out = copy(&["--with-attachments"]);
    assert_eq!(out["attachments"]["merged"], 0, "{out}");
    assert_eq!(
        std::fs::read(layout.join("index.json")).unwrap(),
        index_json
    );
}

#[test]
fn mirror_into_an_archive_merges_its_own_signatures() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    a.seed("jupyter-sci", "sci/jupyter:2.4");
    let (public, referrer, subject) = attach_everything(home.path(), &a, "sci/jupyter", "2.4");
    let hex = subject.trim_start_matches("sha256:");
    let src = format!("docker://{}", a.image_ref("sci/jupyter:2.4"));
    // The site's archive already holds the image under the name graft mirror gives it, with
    // the site's own signature (signed in a layout, copied into the archive).
    let layout = home.path().join("site");
    let site_image = format!("oci:{}:2.4", layout.display());
    g(
        home.path(),
        &["--tls-verify=false", "copy", &src, &site_image],
    )
    .ok();
    let site = home.path().join("site-keys");
    std::fs::create_dir(&site).unwrap();
    let (site_key, site_pub) = keypair(home.path(), &site, "site");
    g(
        home.path(),
        &["sign", "--key", site_key.to_str().unwrap(), &site_image],
    )
    .ok();
    let archive = home.path().join("export.tar");
    let at = format!("oci-archive:{}", archive.display());
    let name = a.image_ref("sci/jupyter");
    let image = format!("{at}:{name}:2.4");
    g(
        home.path(),
        &["copy", "--with-attachments", &site_image, &image],
    )
    .ok();
    let sig_tag = format!("{name}:sha256-{hex}.sig");
    let own_sig = json(&local_raw(&at, &sig_tag));
    assert_eq!(own_sig["layers"].as_array().unwrap().len(), 1);

    let export = home.path().join("export.yaml");
    std::fs::write(
        &export,
        format!(
            "destination: {at}\nwith_attachments: true\nsources:\n  - repository: docker://{}\n    tags: ['2.4']\n",
            a.image_ref("sci/jupyter"),
        ),
    )
    .unwrap();
    let out = mirror(home.path(), &export, &[]).ok().json();
    assert_eq!(out["copied"], 1, "{out}");
    let sig = json(&local_raw(&at, &sig_tag));
    let layers = sig["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{sig}");
    assert_eq!(layers[0], own_sig["layers"][0]);
    for key in [&public, &site_pub] {
        verify(home.path(), key, &image);
    }
    // Everything else arrived with its digest; the archive has each member once.
    let att = format!("sha256-{hex}.att");
    assert_eq!(
        local_raw(&at, &format!("{name}:{att}")),
        a.raw(&format!("sci/jupyter:{att}"))
    );
    let index = json(&local_raw(&at, &format!("{name}:sha256-{hex}")));
    assert!(listed_digests(&index).contains(&referrer), "{index}");
    members_once(&archive);
    assert!(!ArchiveSink::partial_path(&archive).unwrap().exists());
    // A rerun merges nothing and leaves the archive as it is.
    let before = std::fs::read(&archive).unwrap();
    let out = mirror(home.path(), &export, &[]).ok().json();
    assert_eq!(out["skipped"], 1, "{out}");
    assert!(std::fs::read(&archive).unwrap() == before);
}

#[test]
fn sbom_attachments_travel_with_their_image() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    let b = Registry::start(RegistryOpts::plain());
    a.seed("astro-base", "sci/astro:1.0");
    let subject = sha256_hex(&a.raw("sci/astro:1.0"));
    // A cosign-style SBOM (`cosign attach sbom`): an OCI manifest at sha256-<hex>.sbom with
    // one SPDX layer, pushed by an independent client.
    let spdx = br#"{"spdxVersion":"SPDX-2.3","name":"astro","packages":[{"name":"astropy","versionInfo":"6.0"}]}"#;
    let layer = a.push_blob("sci/astro", spdx);
    let config = format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{layer}"]}},"config":{{}}}}"#
    );
    let config_digest = a.push_blob("sci/astro", config.as_bytes());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": [{"mediaType": "text/spdx+json", "size": spdx.len(), "digest": layer}],
    }))
    .unwrap();
    let tag = format!("sha256-{subject}.sbom");
    a.push_manifest(
        "sci/astro",
        &tag,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    assert_eq!(a.raw(&format!("sci/astro:{tag}")), manifest);

    // graft copy --with-attachments.
    let src = format!("docker://{}", a.image_ref("sci/astro:1.0"));
    let dst = format!("docker://{}", b.image_ref("sci/astro:1.0"));
    let out = capture(
        command(home.path())
            .args(["-q", "-o", "json", "--tls-verify=false", "copy"])
            .args(["--with-attachments", &src, &dst]),
    )
    .ok()
    .json();
    assert_eq!(out["attachments"]["found"], 1, "{out}");
    assert_eq!(b.raw(&format!("sci/astro:{tag}")), manifest);

    // graft mirror, registry to registry and through an archive.
    let cfg = home.path().join("m.yaml");
    let archive = home.path().join("sbom.tar");
    for (destination, source, repo) in [
        (
            format!("docker://{}/mirrored", b.addr()),
            format!("docker://{}", a.image_ref("sci/astro")),
            "mirrored/sci/astro",
        ),
        (
            format!("oci-archive:{}", archive.display()),
            format!("docker://{}", a.image_ref("sci/astro")),
            "",
        ),
        (
            format!("docker://{}/airgap", b.addr()),
            format!("oci-archive:{}", archive.display()),
            "airgap/sci/astro",
        ),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "destination: {destination}\nwith_attachments: true\nsources:\n  - repository: {source}\n"
            ),
        )
        .unwrap();
        let out = mirror(home.path(), &cfg, &[]).ok().json();
        assert_eq!(out["copied"], 1, "{out}");
        assert_eq!(out["images"][0]["attachments"]["found"], 1, "{out}");
        if repo.is_empty() {
            let name = a.image_ref("sci/astro");
            assert_eq!(local_raw(&destination, &format!("{name}:{tag}")), manifest);
        } else {
            assert_eq!(b.raw(&format!("{repo}:{tag}")), manifest, "{repo}");
            assert_eq!(b.raw(&format!("{repo}:1.0")), a.raw("sci/astro:1.0"));
        }
    }
}

#[test]
fn killed_export_resumes_from_its_partial_archive() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    a.seed("jupyter-sci", "sci/jupyter:2.4");
    let proxy = Proxy::start(&a.base_url());
    let archive = home.path().join("export.tar");
    let partial = ArchiveSink::partial_path(&archive).unwrap();
    let export = home.path().join("export.yaml");
    std::fs::write(
        &export,
        format!(
            "destination: oci-archive:{}\nsources:\n  - repository: docker://{}\n    tags: ['2.4']\n",
            archive.display(),
            proxy.image_ref("sci/jupyter"),
        ),
    )
    .unwrap();
    // Hold a config (they come after the first layers), let the transfers in flight finish,
    // then kill the export.
    let index = json(&a.raw("sci/jupyter:2.4"));
    let child = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m = json(&a.raw(&format!("sci/jupyter@{child}")));
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    proxy.hang("GET", &format!("/blobs/{config}"), 1);
    let mut run = command(home.path())
        .args(["-q", "--tls-verify=false", "mirror", "--config"])
        .arg(&export)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = crate::support::poll_until(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(20),
        || {
            proxy
                .count("GET", &format!("/blobs/{config}"))
                .gt(&0)
                .then_some(())
        },
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(held.is_some(), "{:?}", proxy.requests());
    assert!(partial.exists() && !archive.exists());
    // The blobs the killed run finished: members of the partial tar whose bytes hash to
    // their name.
    let finished: Vec<String> = complete_members(&partial)
        .into_iter()
        .map(|hex| format!("/blobs/sha256:{hex}"))
        .collect();
    assert!(!finished.is_empty(), "nothing finished before the kill");

    proxy.clear_faults();
    proxy.clear();
    let out = mirror(home.path(), &export, &[]).ok().json();
    assert_eq!(out["copied"], 1, "{out}");
    let again: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.contains("/blobs/"))
        .map(|(_, p)| p)
        .collect();
    for f in &finished {
        assert!(
            !again.iter().any(|p| p.ends_with(f.as_str())),
            "{f} fetched again: {again:?}"
        );
    }
    assert!(!partial.exists());
    let name = format!(
        "oci-archive:{}:{}",
        archive.display(),
        proxy.image_ref("sci/jupyter")
    );
    assert_eq!(
        skopeo_inspect_raw(&format!("{name}:2.4"), &[] as &[&str]),
        a.raw("sci/jupyter:2.4")
    );
    // Plain tar reads it: every blob once, then index.json and oci-layout.
    let members = members_once(&archive);
    assert_eq!(&members[members.len() - 2..], ["index.json", "oci-layout"]);
    let out = tempfile::tempdir().unwrap();
    let x = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(x.status.success(), "{x:?}");
    for e in std::fs::read_dir(out.path().join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        assert_eq!(sha256_hex(&std::fs::read(e.path()).unwrap()), name);
    }
}

/// The `blobs/sha256/<hex>` members of a (possibly torn) tar whose bytes hash to `<hex>`.
fn complete_members(path: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let Ok(entries) = archive.entries() else {
        return out;
    };
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        let Ok(name) = entry.path().map(|p| p.to_string_lossy().into_owned()) else {
            break;
        };
        let Some(hex) = name.strip_prefix("blobs/sha256/").map(str::to_string) else {
            continue;
        };
        let mut bytes = Vec::new();
        if std::io::Read::read_to_end(&mut entry, &mut bytes).is_err() {
            break;
        }
        if sha256_hex(&bytes) == hex {
            out.push(hex);
        }
    }
    out
}
