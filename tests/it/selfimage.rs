//! graft's own image (`scripts/graft-image.sh`): the binary under test as /graft (the
//! entrypoint) and the machine's CA bundle on the empty base, with breadcrumb labels, signed and
//! with provenance attached by graft itself; pushed to a real registry and written to an `oci:`
//! layout with the same digest, unpacked by umoci and run; signature and provenance checked by
//! cosign.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::peers::{stdout_ok, Peer};
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{run, run_ok, umoci};

const CA: &str = "/etc/ssl/certs/ca-certificates.crt";
const PW: &str = "selfimage-test";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";
const SOURCE: &str = "https://example.org/graft.git";
/// Quotes and a backslash: the provenance statement is JSON-encoded, not interpolated.
const BUILDER: &str = r#"https://ci.example.org/"graft"\runner"#;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/graft-image.sh")
}

/// `scripts/graft-image.sh [--key KEY] BINARY DEST` with fixed breadcrumbs and time; the
/// digest it prints.
fn build_image(home: &Path, key: Option<&Path>, dest: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg(script());
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    cmd.arg(env!("CARGO_BIN_EXE_graft"))
        .arg(dest)
        .env("HOME", home)
        .env("COSIGN_PASSWORD", PW)
        .env("GRAFT_FLAGS", "--tls-verify=false")
        .env("GRAFT_REVISION", REVISION)
        .env("GRAFT_SOURCE", SOURCE)
        .env("GRAFT_BUILDER_ID", BUILDER)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("GRAFT_CREDS")
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE");
    let out = run_ok(&mut cmd);
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    digest
}

#[test]
fn graft_builds_its_own_image_from_scratch() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let peer = Peer::new().plain_http(reg.addr()).with_cosign_password(PW);
    let gen = crate::graft::capture(
        crate::graft::command(home.path())
            .current_dir(home.path())
            .env("COSIGN_PASSWORD", PW)
            .arg("generate-key-pair"),
    )
    .ok();
    drop(gen);
    let (key, public) = (
        home.path().join("cosign.key"),
        home.path().join("cosign.pub"),
    );

    let pushed = build_image(home.path(), Some(&key), &reg.docker_ref("tools/graft:0.1"));
    let layout = home.path().join("layout");
    let written = build_image(home.path(), None, &format!("oci:{}:0.1", layout.display()));
    assert_eq!(
        pushed, written,
        "same binary, same image, on every transport"
    );

    // crane: entrypoint, environment and breadcrumbs; no base annotations (scratch).
    let plain = reg.image_ref("tools/graft:0.1");
    let config: Value = serde_json::from_str(&stdout_ok(
        &peer.crane(["config", plain.as_str()]),
        "crane config",
    ))
    .unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/graft"])
    );
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], REVISION);
    assert_eq!(labels["org.opencontainers.image.source"], SOURCE);
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    let manifest = stdout_ok(&peer.crane(["manifest", plain.as_str()]), "crane manifest");
    assert!(
        !manifest.contains("org.opencontainers.image.base"),
        "{manifest}"
    );

    // umoci: /graft runs and is the binary under test; the CA bundle is the machine's.
    let rootfs = reg.unpack_amd64("tools/graft:0.1", home.path());
    assert_eq!(
        std::fs::read(rootfs.join("graft")).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_graft")).unwrap()
    );
    let version = run_ok(Command::new(rootfs.join("graft")).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("graft {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        std::fs::read(rootfs.join(CA.trim_start_matches('/'))).unwrap(),
        std::fs::read(CA).unwrap()
    );
    let entries: Vec<_> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut entries = entries;
    entries.sort();
    assert_eq!(entries, ["etc", "graft"], "nothing else in the image");

    // The layout unpacks the same.
    let bundle = home.path().join("layout-bundle");
    umoci([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:0.1", layout.display()),
        bundle.to_str().unwrap(),
    ]);
    assert!(bundle.join("rootfs/graft").is_file());

    // cosign checks what graft signed and attested.
    let image = format!("{}@{pushed}", reg.image_ref("tools/graft"));
    let verified = peer.cosign_verify(&public, &image, &[]);
    stdout_ok(&verified, "cosign verify");
    let mut cmd = peer.command("cosign");
    cmd.args(["verify-attestation", "--key"])
        .arg(&public)
        .args([
            "--type",
            "slsaprovenance1",
            "--insecure-ignore-tlog=true",
            image.as_str(),
        ]);
    let attested = run(&mut cmd);
    let out = stdout_ok(&attested, "cosign verify-attestation");
    let envelope: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let statement: Value =
        serde_json::from_slice(&base64_decode(envelope["payload"].as_str().unwrap())).unwrap();
    let deps = &statement["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert_eq!(
        statement["predicate"]["runDetails"]["builder"]["id"],
        BUILDER
    );
    assert_eq!(deps[0]["uri"], format!("git+{SOURCE}@{REVISION}"));
    assert_eq!(deps[0]["digest"]["gitCommit"], REVISION);
    assert_eq!(
        deps[1]["digest"]["sha256"],
        crate::support::tools::sha256_hex(&std::fs::read(env!("CARGO_BIN_EXE_graft")).unwrap())
    );
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        pushed.trim_start_matches("sha256:")
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
