//! `graft refresh` of the sample library against the real registry: science layers are
//! mounted, never downloaded; breadcrumbs and annotations land; reruns upload nothing; an
//! interrupted run leaves no tag and a rerun finishes; bad input writes nothing.

use crate::support::tools::copy_dir;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{skopeo, try_skopeo};

/// The sample library copied to a temp dir, its science images pointed at `science` (a
/// `docker://HOST/PREFIX`), `sci/jupyter:2.4` and `sci/astro:1.0` below it.
fn library(dir: &Path, science: &str) -> PathBuf {
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
            format!("{science}/sci/jupyter:2.4"),
        ),
        (
            "manifests/astro-notebook.yaml",
            "oci:testdata/science/astro-base:1.0",
            format!("{science}/sci/astro:1.0"),
        ),
    ] {
        let p = lib.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} names {from}");
        std::fs::write(&p, text.replace(from, &to)).unwrap();
    }
    lib
}

fn refresh(home: &Path, lib: &Path, extra: &[&str]) -> Run {
    capture(
        command(home)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "refresh",
                "--build",
                "7",
                "--commit",
                "abc1234",
                "--library",
            ])
            .arg(lib)
            .args(extra),
    )
}

fn science_layers(reg: &Registry, repo_tag: &str) -> Vec<String> {
    let repo = repo_tag.split(':').next().unwrap();
    let index: Value = serde_json::from_slice(&reg.raw(repo_tag)).unwrap();
    let mut out = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let man: Value =
            serde_json::from_slice(&reg.raw(&format!("{repo}@{}", m["digest"].as_str().unwrap())))
                .unwrap();
        out.extend(
            man["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string()),
        );
    }
    out.sort();
    out.dedup();
    out
}

fn config(reg: &Registry, reference: &str, arch: &str) -> Value {
    let mut args = vec![
        "inspect",
        "--config",
        "--tls-verify=false",
        "--override-arch",
        arch,
    ];
    if arch == "arm64" {
        args.extend(["--override-variant", "v8"]);
    }
    let r = reg.docker_ref(reference);
    args.push(&r);
    serde_json::from_slice(&skopeo(args).stdout).unwrap()
}

#[test]
fn refresh_mounts_science_writes_breadcrumbs_and_reruns_idempotently() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "sci/jupyter:2.4");
    reg.seed("astro-base", "sci/astro:1.0");
    let proxy = Proxy::start(&reg.base_url());
    let lib = library(home.path(), &format!("docker://{}", proxy.addr()));
    let repo = format!("docker://{}/rel", proxy.addr());
    let first = refresh(home.path(), &lib, &["--repo", &repo]).ok().json();
    let images = first["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    let mut science = science_layers(&reg, "sci/jupyter:2.4");
    science.extend(science_layers(&reg, "sci/astro:1.0"));
    for l in &science {
        assert_eq!(
            proxy.count("GET", &format!("/blobs/{l}")),
            0,
            "science layer {l} was downloaded"
        );
    }
    let sci = images.iter().find(|i| i["name"] == "sci-notebook").unwrap();
    let t = &sci["transfer"];
    assert_eq!(t["mounted"]["count"], 5, "every science layer mounted: {t}");
    assert_eq!(t["uploaded"]["count"], 3, "compat layer + 2 configs: {t}");
    assert_eq!(
        sci["references"],
        serde_json::json!([
            format!("{repo}/sci-notebook:2.4"),
            format!("{repo}/sci-notebook:2.4-7-abc1234")
        ])
    );

    // The index: both platforms, base annotations pointing at the science index.
    let index: Value = serde_json::from_slice(&reg.raw("rel/sci-notebook:2.4")).unwrap();
    assert_eq!(
        reg.raw("rel/sci-notebook:2.4"),
        reg.raw("rel/sci-notebook:2.4-7-abc1234")
    );
    let ann = &index["annotations"];
    let science_index = reg.raw("sci/jupyter:2.4");
    assert_eq!(
        ann["org.opencontainers.image.base.digest"],
        format!(
            "sha256:{}",
            crate::support::tools::sha256_hex(&science_index)
        )
    );
    assert_eq!(
        ann["org.opencontainers.image.base.name"],
        format!("{}/sci/jupyter:2.4", proxy.addr())
    );
    assert_eq!(ann["org.opencontainers.image.version"], "2.4");
    assert_eq!(
        ann["org.opencontainers.image.title"],
        Value::Null,
        "the science index's own annotations are not inherited: {ann}"
    );
    assert_eq!(
        ann["org.opencontainers.image.description"],
        "Jupyter science stack for the sample platform"
    );
    assert_eq!(
        ann["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        ann["org.opencontainers.image.source"],
        "https://github.com/example/jupyter-images"
    );
    assert_eq!(
        ann["org.opencontainers.image.revision"],
        "9a8b7c6d5e4f30211203f4e5d6c7b8a9f0e1d2c3"
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let science_idx: Value = serde_json::from_slice(&science_index).unwrap();
    for (new, old) in index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .zip(science_idx["manifests"].as_array().unwrap())
    {
        assert_eq!(new["platform"], old["platform"]);
        let m: Value = serde_json::from_slice(&reg.raw(&format!(
            "rel/sci-notebook@{}",
            new["digest"].as_str().unwrap()
        )))
        .unwrap();
        let o: Value = serde_json::from_slice(
            &reg.raw(&format!("sci/jupyter@{}", old["digest"].as_str().unwrap())),
        )
        .unwrap();
        assert_eq!(
            m["annotations"]["org.opencontainers.image.base.digest"], old["digest"],
            "per-platform base digest"
        );
        let (nl, ol) = (
            m["layers"].as_array().unwrap(),
            o["layers"].as_array().unwrap(),
        );
        assert_eq!(nl.len(), ol.len() + 1);
        assert_eq!(&nl[..ol.len()], &ol[..], "science layers kept as they were");
    }
    // Breadcrumbs in each platform config; graft inspect reads them back.
    for arch in ["amd64", "arm64"] {
        let c = config(&reg, "rel/sci-notebook:2.4", arch);
        let labels = &c["config"]["Labels"];
        assert_eq!(
            labels["org.graft.compat.version"],
            "jupyter-compat:2.4-7-abc1234"
        );
        assert_eq!(labels["org.graft.compat.buildtime"], "2023-11-14T22:13:20Z");
        assert_eq!(labels["org.graft.science.jupyter-sci.version"], "2.4");
        assert_eq!(
            labels["org.graft.science.jupyter-sci.buildtime"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            c["config"]["Entrypoint"],
            serde_json::json!(["/usr/local/bin/start.sh"])
        );
        assert!(c["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GRAFT_PLATFORM=sample-jupyter"));
    }
    let crumbs = capture(command(home.path()).args([
        "-o",
        "json",
        "--tls-verify=false",
        "inspect",
        "--breadcrumbs",
        &format!("docker://{}", reg.image_ref("rel/sci-notebook:2.4")),
    ]))
    .ok()
    .json();
    assert_eq!(
        crumbs.as_array().unwrap().len(),
        4,
        "compat + science for two platforms: {crumbs}"
    );

    // umoci: the compat files override the science ones and the removed path is gone.
    let rootfs = reg.unpack_amd64("rel/sci-notebook:2.4", home.path());
    assert_eq!(
        std::fs::read(rootfs.join("usr/local/bin/start.sh")).unwrap(),
        std::fs::read(lib.join("layers/jupyter-compat/files/usr/local/bin/start.sh")).unwrap()
    );
    assert_eq!(
        std::fs::read(rootfs.join("opt/conda/etc/jupyter/jupyter_server_config.py")).unwrap(),
        std::fs::read(
            lib.join("layers/jupyter-compat/files/opt/conda/etc/jupyter/jupyter_server_config.py")
        )
        .unwrap()
    );
    assert!(
        rootfs.join("etc/graft/platform.conf").exists(),
        "included layer's files"
    );
    assert!(
        !rootfs.join("opt/conda/share/obsolete").exists(),
        "remove: path gone"
    );

    // Second run, forced past "up to date" (tests/it/uptodate.rs) so that the copy engine
    // runs: same digests, nothing uploaded, no blob or manifest written.
    proxy.clear();
    let second = refresh(home.path(), &lib, &["--repo", &repo, "--force"])
        .ok()
        .json();
    for (a, b) in images.iter().zip(second["images"].as_array().unwrap()) {
        assert_eq!(a["digest"], b["digest"]);
        assert_eq!(b["status"], "written");
        assert_eq!(b["transfer"]["uploaded"]["count"], 0);
        assert_eq!(b["transfer"]["manifests_written"], 0);
    }
    assert_eq!(
        proxy.count("PUT", "/") + proxy.count("POST", "/") + proxy.count("PATCH", "/"),
        0,
        "{:?}",
        proxy.requests()
    );
}

#[test]
fn interrupted_refresh_leaves_no_tag_and_rerun_completes() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "sci/jupyter:2.4");
    reg.seed("astro-base", "sci/astro:1.0");
    let proxy = Proxy::start(&reg.base_url());
    let lib = library(home.path(), &format!("docker://{}", proxy.addr()));
    let repo = format!("docker://{}/rel", proxy.addr());
    // 1: interrupted after the blobs, before any manifest.
    proxy.fail_with("PUT", "/manifests/", 500, 1000);
    refresh(
        home.path(),
        &lib,
        &["--retries", "0", "--repo", &repo, "sci-notebook"],
    )
    .fails(1);
    proxy.clear_faults();
    assert!(!try_skopeo([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref("rel/sci-notebook:2.4")
    ])
    .status
    .success());
    // 2: interrupted after the platform manifests, at the first tag.
    proxy.fail_with("PUT", "/manifests/2.4", 500, 1000);
    let run = refresh(
        home.path(),
        &lib,
        &["--retries", "0", "--repo", &repo, "sci-notebook"],
    )
    .fails(1);
    assert!(run.stderr.contains("500"), "{}", run.stderr);
    proxy.clear_faults();
    for tag in ["2.4", "2.4-7-abc1234"] {
        assert!(!try_skopeo([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &reg.docker_ref(&format!("rel/sci-notebook:{tag}"))
        ])
        .status
        .success());
    }
    // Rerun: finishes, uploads no blob twice, both tags on one digest.
    proxy.clear();
    let done = refresh(home.path(), &lib, &["--repo", &repo, "sci-notebook"])
        .ok()
        .json();
    let img = &done["images"][0];
    assert_eq!(img["transfer"]["uploaded"]["count"], 0, "{img}");
    assert_eq!(proxy.count("PUT", "/blobs/"), 0);
    assert_eq!(
        reg.raw("rel/sci-notebook:2.4"),
        reg.raw("rel/sci-notebook:2.4-7-abc1234")
    );
    assert_eq!(
        format!(
            "sha256:{}",
            crate::support::tools::sha256_hex(&reg.raw("rel/sci-notebook:2.4"))
        ),
        img["digest"].as_str().unwrap()
    );
}

#[test]
fn bad_input_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "sci/jupyter:2.4");
    reg.seed("astro-base", "sci/astro:1.0");
    let proxy = Proxy::start(&reg.base_url());
    let science = format!("docker://{}", proxy.addr());
    let repo = format!("docker://{}/rel", proxy.addr());
    let writes = |p: &Proxy| p.count("PUT", "/") + p.count("POST", "/") + p.count("PATCH", "/");

    // A science reference that does not exist (the other manifest is fine: nothing is written).
    let lib = library(home.path(), &science);
    let f = lib.join("manifests/astro-notebook.yaml");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f)
            .unwrap()
            .replace("sci/astro:1.0", "sci/astro:9.9"),
    )
    .unwrap();
    let run = refresh(home.path(), &lib, &["--repo", &repo]).fails(1);
    assert!(
        run.stderr.contains("sci/astro:9.9") && run.stderr.contains("not found"),
        "{}",
        run.stderr
    );
    assert_eq!(writes(&proxy), 0, "{:?}", proxy.requests());

    // A platform the science index lacks.
    let lib2 = home.path().join("lib2");
    std::fs::create_dir_all(&lib2).unwrap();
    let lib2 = library(&lib2, &science);
    let f = lib2.join("manifests/sci-notebook.yaml");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f)
            .unwrap()
            .replace("  - linux/arm64\nlabels", "  - linux/s390x\nlabels"),
    )
    .unwrap();
    let run = refresh(home.path(), &lib2, &["--repo", &repo]).fails(1);
    assert!(
        run.stderr.contains("linux/s390x") && run.stderr.contains("linux/amd64"),
        "{}",
        run.stderr
    );
    assert_eq!(writes(&proxy), 0);

    // A compat layer that fails validation: the library's problems, file and line.
    let lib3 = home.path().join("lib3");
    std::fs::create_dir_all(&lib3).unwrap();
    let lib3 = library(&lib3, &science);
    let f = lib3.join("layers/jupyter-compat/layer.yaml");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f).unwrap().replace(
            "  - /opt/conda/share/obsolete",
            "  - opt/conda/share/obsolete",
        ),
    )
    .unwrap();
    let run = refresh(home.path(), &lib3, &["--repo", &repo]).fails(2);
    assert!(
        run.stderr.contains("layers/jupyter-compat/layer.yaml:") && run.stderr.contains("absolute"),
        "{}",
        run.stderr
    );
    assert_eq!(writes(&proxy), 0);

    // A registry that refuses the push: the registry's code and message, nothing tagged.
    proxy.fail_with("PUT", "/manifests/", 403, 1000);
    let lib4 = home.path().join("lib4");
    std::fs::create_dir_all(&lib4).unwrap();
    let lib4 = library(&lib4, &science);
    let run = refresh(home.path(), &lib4, &["--repo", &repo]).fails(1);
    assert!(run.stderr.contains("403"), "{}", run.stderr);
    assert!(!try_skopeo([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref("rel/astro-notebook:1.0")
    ])
    .status
    .success());
}

#[test]
fn refresh_signs_and_attaches_provenance_that_verifies() {
    use crate::sign::{g, intoto_python, keypair, VALIDATE_PY};
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "sci/jupyter:2.4");
    reg.seed("astro-base", "sci/astro:1.0");
    let lib = library(home.path(), &format!("docker://{}", reg.addr()));
    let repo = format!("docker://{}/rel", reg.addr());
    let (key, public) = keypair(home.path(), home.path(), "ci");
    // A wrong password stops the run before anything is written.
    let run = capture(
        command(home.path())
            .env("COSIGN_PASSWORD", "not the password")
            .args(["-q", "--tls-verify=false", "refresh", "--library"])
            .arg(&lib)
            .args(["--repo", &repo, "--sign-key", key.to_str().unwrap()]),
    )
    .fails(2);
    assert!(run.stderr.contains("wrong password"), "{}", run.stderr);
    assert!(!run.stderr.contains("not the password"));
    assert!(!try_skopeo([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref("rel/sci-notebook:2.4")
    ])
    .status
    .success());

    let lib_s = lib.to_str().unwrap().to_string();
    let out = capture(
        command(home.path())
            .env("COSIGN_PASSWORD", crate::sign::PW)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "refresh",
                "--library",
                &lib_s,
                "--repo",
                &repo,
                "--build",
                "7",
                "--commit",
                "abc1234",
                "--sign-key",
                key.to_str().unwrap(),
                "--provenance",
                "--builder-id",
                "https://ci.example/runner/1",
                "--invocation-id",
                "run-42",
                "sci-notebook",
            ]),
    )
    .ok()
    .json();
    let img = &out["images"][0];
    assert_eq!(
        img["signing"]["signed"].as_array().unwrap().len(),
        3,
        "index + 2 platforms: {img}"
    );
    assert_eq!(img["signing"]["attested"].as_array().unwrap().len(), 3);
    let reference = format!("docker://{}", reg.image_ref("rel/sci-notebook:2.4"));
    let pub_s = public.to_str().unwrap();
    g(
        home.path(),
        &[
            "--tls-verify=false",
            "verify",
            "--key",
            pub_s,
            "--recursive",
            &reference,
        ],
    )
    .ok();
    g(
        home.path(),
        &[
            "--tls-verify=false",
            "verify-attestation",
            "--key",
            pub_s,
            "--type",
            "slsaprovenance1",
            &reference,
        ],
    )
    .ok();
    let prov = g(
        home.path(),
        &["-o", "json", "--tls-verify=false", "provenance", &reference],
    )
    .ok();
    let statement = prov.json()["provenance"][0]["statement"].clone();
    let p = &statement["predicate"];
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        img["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    );
    assert_eq!(
        p["runDetails"]["builder"]["id"],
        "https://ci.example/runner/1"
    );
    assert_eq!(p["runDetails"]["metadata"]["invocationId"], "run-42");
    assert_eq!(
        p["buildDefinition"]["externalParameters"]["manifest"]["path"],
        "manifests/sci-notebook.yaml"
    );
    let deps = p["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = deps.iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(
        names.contains(&"science-index") && names.contains(&"compat-layer"),
        "{names:?}"
    );
    let science = deps.iter().find(|d| d["name"] == "science-index").unwrap();
    assert_eq!(
        format!("sha256:{}", science["digest"]["sha256"].as_str().unwrap()),
        img["science_digest"].as_str().unwrap()
    );
    assert_eq!(
        p["runDetails"]["metadata"]["startedOn"], "2023-11-14T22:13:20Z",
        "SOURCE_DATE_EPOCH makes it reproducible"
    );
    // The in-toto-attestation package validates the statement.
    let file = home.path().join("statement.json");
    std::fs::write(&file, serde_json::to_vec(&statement).unwrap()).unwrap();
    let script = home.path().join("validate.py");
    std::fs::write(&script, VALIDATE_PY).unwrap();
    let v = std::process::Command::new(intoto_python())
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn refresh_killed_mid_upload_then_rerun_completes_with_consistent_tags() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "sci/jupyter:2.4");
    reg.seed("astro-base", "sci/astro:1.0");
    let proxy = Proxy::start(&reg.base_url());
    let lib = library(home.path(), &format!("docker://{}", proxy.addr()));
    // A compat layer big enough that its upload is still running when the process is killed.
    let big = lib.join("layers/jupyter-compat/files/opt/platform");
    std::fs::create_dir_all(&big).unwrap();
    let mut noise = vec![0u8; 48 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(big.join("assets.bin"), &noise).unwrap();
    let repo = format!("docker://{}/rel", proxy.addr());
    let mut child = command(home.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "-q",
            "--tls-verify=false",
            "refresh",
            "--build",
            "7",
            "--commit",
            "abc1234",
            "--library",
        ])
        .arg(&lib)
        .args(["--repo", &repo, "sci-notebook"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = crate::support::poll_until(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(2),
        || {
            proxy
                .request_log()
                .iter()
                .any(|r| {
                    r.method == "PUT"
                        && r.path_and_query.contains("/blobs/uploads/")
                        && r.status.is_none()
                })
                .then_some(())
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        started.is_some(),
        "the upload was seen in flight: {:?}",
        proxy.requests()
    );
    for tag in ["2.4", "2.4-7-abc1234"] {
        assert!(
            !try_skopeo([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &reg.docker_ref(&format!("rel/sci-notebook:{tag}"))
            ])
            .status
            .success(),
            "no tag after a kill mid-upload"
        );
    }
    let done = refresh(home.path(), &lib, &["--repo", &repo, "sci-notebook"])
        .ok()
        .json();
    let digest = done["images"][0]["digest"].as_str().unwrap().to_string();
    for tag in ["2.4", "2.4-7-abc1234"] {
        assert_eq!(
            format!(
                "sha256:{}",
                crate::support::tools::sha256_hex(&reg.raw(&format!("rel/sci-notebook:{tag}")))
            ),
            digest
        );
    }
}

/// Both sample images (versions 1.0 and 2.4, so their tags differ) written at the same time
/// into one `oci-archive:` file: the archive is
/// committed once, after the last write, and holds both images whole (skopeo reads each).
#[test]
fn refresh_of_several_images_into_one_archive_commits_once_with_everything() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "sci/jupyter:2.4");
    reg.seed("astro-base", "sci/astro:1.0");
    let lib = library(home.path(), &format!("docker://{}", reg.addr()));
    let archive = home.path().join("release.tar");
    let settings = lib.join("graft.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    let text = text
        .replace(
            "repo: oci:out/library",
            &format!("repo: oci-archive:{}", archive.display()),
        )
        .replace("target: \"{repo}/{name}\"", "target: \"{repo}\"");
    std::fs::write(&settings, text).unwrap();
    let out = refresh(home.path(), &lib, &[]).ok().json();
    let images = out["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{out}");
    assert!(archive.exists());
    assert!(!graft::store::archive::ArchiveSink::partial_path(&archive)
        .unwrap()
        .exists());
    for image in images {
        for reference in image["references"].as_array().unwrap() {
            let reference = reference.as_str().unwrap();
            let raw = crate::support::tools::skopeo_inspect_raw(reference, &[] as &[&str]);
            assert_eq!(
                format!("sha256:{}", crate::support::tools::sha256_hex(&raw)),
                image["digest"].as_str().unwrap(),
                "{reference}"
            );
            // Every platform image is whole: skopeo copies it out of the archive.
            let dir = home
                .path()
                .join(format!("check-{}", image["name"].as_str().unwrap()));
            skopeo([
                "copy",
                "--all",
                "--quiet",
                reference,
                &format!("oci:{}:x", dir.display()),
            ]);
        }
    }
}
