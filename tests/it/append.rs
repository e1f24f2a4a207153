//! `graft append` against the real registry: science layers are mounted, never downloaded;
//! the result reads back with skopeo and unpacks with umoci.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::graft::graft;
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{run_ok, science_oci_ref, skopeo, skopeo_inspect_raw};

/// A gzip compat layer made with GNU tar: overrides start.sh and deletes
/// /opt/conda/share/obsolete with a whiteout.
pub fn compat_tarball(dir: &Path) -> PathBuf {
    let tree = dir.join("compat-tree");
    std::fs::create_dir_all(tree.join("usr/local/bin")).unwrap();
    std::fs::create_dir_all(tree.join("opt/conda/share")).unwrap();
    std::fs::write(
        tree.join("usr/local/bin/start.sh"),
        "#!/bin/sh\necho compat start\n",
    )
    .unwrap();
    std::fs::write(tree.join("opt/conda/share/.wh.obsolete"), "").unwrap();
    let out = dir.join("compat.tar.gz");
    run_ok(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-czf",
            ])
            .arg(&out)
            .arg("-C")
            .arg(&tree)
            .arg("."),
    );
    out
}

fn layer_digests(reg: &Registry, repo_ref: &str) -> Vec<String> {
    let index: Value = serde_json::from_slice(&skopeo_inspect_raw(
        &reg.docker_ref(repo_ref),
        &reg.skopeo_inspect_args(),
    ))
    .unwrap();
    let repo = repo_ref.split(':').next().unwrap();
    let mut out = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        let man: Value = serde_json::from_slice(&skopeo_inspect_raw(
            &reg.docker_ref(&format!("{repo}@{d}")),
            &reg.skopeo_inspect_args(),
        ))
        .unwrap();
        for l in man["layers"].as_array().unwrap() {
            out.push(l["digest"].as_str().unwrap().to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn append_mounts_science_layers_and_is_idempotent() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let mut seed = vec![
        "copy".to_string(),
        "--all".into(),
        "--preserve-digests".into(),
    ];
    seed.extend(reg.skopeo_args(true));
    seed.push(science_oci_ref("jupyter-sci"));
    seed.push(reg.docker_ref("sci/jupyter:2.4"));
    skopeo(&seed);
    let science_layers = layer_digests(&reg, "sci/jupyter:2.4");
    let compat = compat_tarball(home.path());
    let proxy = Proxy::start(&reg.base_url());
    let base = format!("docker://{}", proxy.image_ref("sci/jupyter:2.4"));
    let dst = format!("docker://{}", proxy.image_ref("rel/jupyter:2.4"));
    let run_append = || {
        crate::graft::capture(
            crate::graft::command(home.path())
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args([
                    "-q",
                    "-o",
                    "json",
                    "--tls-verify=false",
                    "append",
                    "--base",
                    &base,
                    "--layer",
                ])
                .arg(&compat)
                .args(["--label", "org.example.team=platform", &dst]),
        )
        .ok()
        .json()
    };
    let first = run_append();
    for l in &science_layers {
        assert_eq!(
            proxy.count("GET", &format!("/blobs/{l}")),
            0,
            "science layer {l} was downloaded"
        );
    }
    let report = &first["report"];
    assert_eq!(
        report["mounted"]["count"].as_u64().unwrap(),
        science_layers.len() as u64,
        "{report}"
    );
    assert_eq!(
        report["uploaded"]["count"], 3,
        "compat layer + two configs: {report}"
    );
    // The result: both platforms, science layers + the compat layer, label and annotations.
    let index: Value = serde_json::from_slice(&skopeo_inspect_raw(
        &reg.docker_ref("rel/jupyter:2.4"),
        &reg.skopeo_inspect_args(),
    ))
    .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let science_index = skopeo_inspect_raw(
        &reg.docker_ref("sci/jupyter:2.4"),
        &reg.skopeo_inspect_args(),
    );
    assert_eq!(
        index["annotations"]["org.opencontainers.image.base.digest"],
        format!(
            "sha256:{}",
            crate::support::tools::sha256_hex(&science_index)
        )
    );
    let config: Value = serde_json::from_slice(
        &skopeo([
            "inspect",
            "--config",
            "--tls-verify=false",
            "--override-arch",
            "arm64",
            "--override-variant",
            "v8",
            &reg.docker_ref("rel/jupyter:2.4"),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(config["config"]["Labels"]["org.example.team"], "platform");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 4);
    let base_config: Value = serde_json::from_slice(
        &skopeo([
            "inspect",
            "--config",
            "--tls-verify=false",
            "--override-arch",
            "arm64",
            "--override-variant",
            "v8",
            &reg.docker_ref("sci/jupyter:2.4"),
        ])
        .stdout,
    )
    .unwrap();
    for (k, v) in base_config["config"].as_object().unwrap() {
        if k != "Labels" {
            assert_eq!(&config["config"][k], v, "config.{k} survives");
        }
    }
    assert_eq!(config["author"], base_config["author"]);

    // Second run: same digest, nothing uploaded.
    proxy.clear();
    let second = run_append();
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(second["report"]["uploaded"]["count"], 0);
    assert_eq!(
        proxy.count("PUT", "/blobs/") + proxy.count("POST", "/blobs/") + proxy.count("PATCH", "/"),
        0,
        "{:?}",
        proxy.requests()
    );

    // umoci unpacks the amd64 image: compat file overrides the science one, whiteout applied.
    let rootfs = reg.unpack_amd64("rel/jupyter:2.4", home.path());
    let start = std::fs::read_to_string(rootfs.join("usr/local/bin/start.sh")).unwrap();
    assert_eq!(start, "#!/bin/sh\necho compat start\n");
    assert!(
        !rootfs.join("opt/conda/share/obsolete").exists(),
        "whiteout applied"
    );
    assert!(
        rootfs
            .join("opt/conda/etc/jupyter/jupyter_server_config.py")
            .exists(),
        "science files kept"
    );
}

#[test]
fn append_drops_attestation_entries_and_rejects_missing_platforms() {
    let home = tempfile::tempdir().unwrap();
    let layout = home.path().join("with-att");
    skopeo([
        "copy",
        "--all",
        "--preserve-digests",
        &science_oci_ref("astro-base"),
        &format!("oci:{}:1.0", layout.display()),
    ]);
    // Add a buildx-style attestation manifest (platform unknown/unknown) to the index.
    let blobs = layout.join("blobs/sha256");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = crate::support::tools::sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (cfg, cfg_len) = put(b"{}");
    let (stmt, stmt_len) = put(br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#);
    let att = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{cfg_len}}},"layers":[{{"mediaType":"application/vnd.in-toto+json","digest":"{stmt}","size":{stmt_len}}}]}}"#
    );
    let (att_digest, att_len) = put(att.as_bytes());
    let top: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let inner_digest = top["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let mut inner: Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&inner_digest)).unwrap()).unwrap();
    inner["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att_digest, "size": att_len,
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"}
    }));
    let inner_bytes = serde_json::to_vec(&inner).unwrap();
    let (new_inner, new_len) = put(&inner_bytes);
    let mut top = top;
    top["manifests"][0]["digest"] = Value::String(new_inner);
    top["manifests"][0]["size"] = Value::from(new_len);
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();

    let compat = compat_tarball(home.path());
    let base = format!("oci:{}:1.0", layout.display());
    let out = format!("oci:{}:r", home.path().join("out").display());
    let run = graft(
        home.path(),
        &[
            "append",
            "--base",
            &base,
            "--layer",
            compat.to_str().unwrap(),
            &out,
        ],
    )
    .ok();
    assert!(
        run.stderr.contains(&format!("note: left out {att_digest}"))
            && run.stderr.contains("attestation"),
        "{}",
        run.stderr
    );
    let idx: Value = serde_json::from_slice(&skopeo_inspect_raw(&out, &[] as &[&str])).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);

    // A platform the index lacks: clear error, nothing written.
    let out2 = format!("oci:{}:r", home.path().join("out2").display());
    let run = graft(
        home.path(),
        &[
            "append",
            "--platform",
            "linux/ppc64le",
            "--base",
            &base,
            "--layer",
            compat.to_str().unwrap(),
            &out2,
        ],
    )
    .fails(1);
    assert!(
        run.stderr.contains("linux/ppc64le") && run.stderr.contains("linux/amd64"),
        "{}",
        run.stderr
    );
    assert!(!home.path().join("out2/index.json").exists());
    // --platform keeps just that platform.
    let run = graft(
        home.path(),
        &[
            "-o",
            "json",
            "append",
            "--platform",
            "linux/arm64",
            "--base",
            &base,
            "--layer",
            compat.to_str().unwrap(),
            &out2,
        ],
    )
    .ok();
    assert_eq!(run.json()["platforms"].as_array().unwrap().len(), 1);
}
