//! `graft append --base scratch`: an image made from layers alone, read back by the real tools
//! (skopeo, umoci, crane, regctl) from a real registry; one platform is an image manifest,
//! several an index with one manifest (and config) per platform. Same inputs, same digest, on
//! every transport.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::graft::{capture, command};
use crate::support::peers::{stdout_ok, Peer};
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{skopeo, skopeo_inspect_raw, try_skopeo};

/// A layer with a text file and an executable, built by `graft layer build` (deterministic).
fn layer(home: &Path) -> PathBuf {
    let tree = home.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("hello.txt"), "hello from scratch\n").unwrap();
    std::fs::write(tree.join("bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tree.join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    crate::graft::layer_file(home, &tree)
}

/// `graft append --base scratch --layer L EXTRA… DEST`, with `created` fixed; the run.
fn append(home: &Path, layer: &Path, extra: &[&str], dest: &str) -> crate::graft::Run {
    capture(
        command(home)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "append",
                "--base",
                "scratch",
                "--layer",
            ])
            .arg(layer)
            .args(extra)
            .arg(dest),
    )
}

fn json(out: &std::process::Output, what: &str) -> Value {
    serde_json::from_str(&stdout_ok(out, what)).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn scratch_one_platform_is_an_image_every_tool_reads() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let layer = layer(home.path());
    let extra = [
        "--platform",
        "linux/amd64",
        "--entrypoint",
        r#"["/bin/tool","--flag"]"#,
        "--env",
        "GREETING=hi",
        "--label",
        "org.opencontainers.image.version=1.0",
        "--annotation",
        "org.example.note=scratch",
    ];
    let dest = reg.docker_ref("scratch/one:1");
    let run = append(home.path(), &layer, &extra, &dest).ok().json();
    let digest = run["digest"].as_str().unwrap().to_string();
    assert!(run.get("base").is_none(), "no base digest: {run}");
    assert_eq!(run["platforms"][0]["platform"], "linux/amd64", "{run}");

    // skopeo: an OCI image manifest, no base annotations; the config as written.
    let raw = skopeo_inspect_raw(&dest, &reg.skopeo_inspect_args());
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        crate::support::tools::sha256_digest(&raw),
        digest,
        "the tag points at the digest graft printed"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["annotations"]["org.example.note"], "scratch");
    assert!(
        !String::from_utf8_lossy(&raw).contains("org.opencontainers.image.base"),
        "scratch has no base to name: {manifest}"
    );
    let info: Value =
        serde_json::from_slice(&skopeo(["inspect", "--tls-verify=false", dest.as_str()]).stdout)
            .unwrap();
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Created"], "2023-11-14T22:13:20Z");

    // crane and regctl: the config.
    let peer = Peer::new().plain_http(reg.addr());
    let plain = reg.image_ref("scratch/one:1");
    let crane_manifest = json(&peer.crane(["manifest", plain.as_str()]), "crane manifest");
    assert_eq!(crane_manifest, manifest);
    let config = json(&peer.crane(["config", plain.as_str()]), "crane config");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/tool", "--flag"])
    );
    assert_eq!(config["config"]["Env"], serde_json::json!(["GREETING=hi"]));
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.version"],
        "1.0"
    );
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    assert_eq!(config["history"].as_array().unwrap().len(), 1);
    let regctl = json(
        &peer.regctl(["image", "inspect", plain.as_str()]),
        "regctl image inspect",
    );
    assert_eq!(regctl["architecture"], "amd64");
    assert_eq!(regctl["os"], "linux");
    assert_eq!(
        regctl["config"]["Entrypoint"],
        config["config"]["Entrypoint"]
    );
    let validate = peer.try_run("crane", ["validate", "--remote", plain.as_str()]);
    stdout_ok(&validate, "crane validate");

    // umoci: the files, with the executable bit.
    let rootfs = reg.unpack_amd64("scratch/one:1", home.path());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).unwrap(),
        "hello from scratch\n"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(rootfs.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "bin/tool is executable: {mode:o}");
    }

    // Deterministic: the same inputs give the same digest in an OCI layout, and again in
    // the registry (nothing new to write).
    let layout = home.path().join("layout");
    let again = append(
        home.path(),
        &layer,
        &extra,
        &format!("oci:{}:1", layout.display()),
    )
    .ok()
    .json();
    assert_eq!(again["digest"], digest);
    let twice = append(home.path(), &layer, &extra, &dest).ok().json();
    assert_eq!(twice["digest"], digest);
    assert_eq!(twice["report"]["uploaded"]["count"], 0, "{twice}");
}

#[test]
fn scratch_several_platforms_is_an_index() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let layer = layer(home.path());
    let dest = reg.docker_ref("scratch/multi:1");
    let run = append(
        home.path(),
        &layer,
        &[
            "--platform",
            "linux/amd64,linux/arm64/v8",
            "--platform",
            "linux/arm/v7",
        ],
        &dest,
    )
    .ok()
    .json();
    let peer = Peer::new().plain_http(reg.addr());
    let plain = reg.image_ref("scratch/multi:1");
    let index = json(&peer.crane(["manifest", plain.as_str()]), "crane manifest");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|e| {
            let p = &e["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
    assert!(index.get("annotations").is_none(), "{index}");
    assert_eq!(run["platforms"].as_array().unwrap().len(), 3);

    // regctl sees the same index, and each platform's own config.
    let regctl = json(
        &peer.regctl(["manifest", "get", "--format", "raw-body", plain.as_str()]),
        "regctl manifest get",
    );
    assert_eq!(regctl, index);
    let mut layers = Vec::new();
    for (e, p) in entries.iter().zip(&platforms) {
        let child = format!(
            "{}@{}",
            reg.image_ref("scratch/multi"),
            e["digest"].as_str().unwrap()
        );
        let m = json(
            &peer.crane(["manifest", child.as_str()]),
            "crane manifest child",
        );
        layers.push(m["layers"].clone());
        let config = json(
            &peer.regctl(["image", "config", child.as_str()]),
            "regctl image config",
        );
        let mut parts = p.split('/');
        assert_eq!(config["os"], parts.next().unwrap());
        assert_eq!(config["architecture"], parts.next().unwrap());
        assert_eq!(config["variant"].as_str(), parts.next(), "{config}");
    }
    assert!(
        layers.windows(2).all(|w| w[0] == w[1]),
        "same layers: {layers:?}"
    );
    let config = json(
        &peer.crane(["config", "--platform", "linux/arm64/v8", plain.as_str()]),
        "crane config --platform",
    );
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    stdout_ok(
        &peer.try_run("crane", ["validate", "--remote", plain.as_str()]),
        "crane validate",
    );
}

#[test]
fn scratch_without_platform_is_bad_usage_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let layer = layer(home.path());
    let layout = home.path().join("never");
    for dest in [
        reg.docker_ref("scratch/none:1"),
        format!("oci:{}:1", layout.display()),
    ] {
        let run = append(home.path(), &layer, &[], &dest).fails(2);
        assert!(run.stderr.contains("--platform"), "{}", run.stderr);
        assert!(run.stderr.contains("scratch"), "{}", run.stderr);
    }
    assert!(!layout.exists(), "nothing written to the layout");
    let tags = try_skopeo([
        "list-tags",
        "--tls-verify=false",
        &reg.docker_ref("scratch/none"),
    ]);
    assert!(!tags.status.success(), "the repository was not created");
    // The same platform twice is bad usage too.
    let run = append(
        home.path(),
        &layer,
        &["--platform", "linux/amd64,linux/x86_64"],
        &reg.docker_ref("scratch/none:1"),
    )
    .fails(2);
    assert!(run.stderr.contains("twice"), "{}", run.stderr);
}
