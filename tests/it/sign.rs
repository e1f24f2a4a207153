//! Signing and provenance, checked by independent tools: openssl verifies every signature
//! (simple-signing payloads and DSSE PAE bytes), Python `cryptography` + PyNaCl decrypt the
//! keys graft writes, the `in-toto-attestation` package validates the SLSA statements, and
//! the documents are read back from a real registry over plain HTTP.

use crate::support::tools::copy_dir;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::graft::{capture, command, Run};
use crate::support::block_on;
use crate::support::registry::Registry;
use crate::support::tools::{run, science_layout, sha256_digest, skopeo, testdata_dir};

pub(crate) const PW: &str = "correct horse battery staple";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const SIMPLE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Third-party keys and signatures (read-only), vendored under `testdata/interop/` (sources
/// in `testdata/SOURCES.md`).
fn interop() -> PathBuf {
    testdata_dir().join("interop")
}

/// graft with `COSIGN_PASSWORD` = [`PW`].
pub(crate) fn g<S: AsRef<std::ffi::OsStr>>(home: &Path, args: &[S]) -> Run {
    capture(command(home).env("COSIGN_PASSWORD", PW).args(args))
}

fn gs(home: &Path, args: &[&str]) -> Run {
    g(home, args)
}

/// `PREFIX.key` / `PREFIX.pub` made by `graft generate-key-pair`.
pub(crate) fn keypair(home: &Path, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    gs(
        home,
        &[
            "generate-key-pair",
            "--output-key-prefix",
            prefix.to_str().unwrap(),
        ],
    )
    .ok();
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// GET `/v2/<path>`; `None` on 404.
fn http_get(reg: &Registry, path: &str, accept: &str) -> Option<Vec<u8>> {
    let client = reg.http_client();
    let url = format!("{}/v2/{path}", reg.base_url());
    let accept = accept.to_string();
    block_on(async move {
        let resp = client
            .get(&url)
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            return None;
        }
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        Some(resp.bytes().await.unwrap().to_vec())
    })
}

fn manifest(reg: &Registry, repo: &str, reference: &str) -> Option<(Vec<u8>, Value)> {
    let accept = format!("{OCI_INDEX}, {OCI_MANIFEST}");
    http_get(reg, &format!("{repo}/manifests/{reference}"), &accept)
        .map(|b| (b.clone(), serde_json::from_slice(&b).unwrap()))
}

fn blob(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let b = http_get(reg, &format!("{repo}/blobs/{digest}"), "*/*").expect("blob exists");
    assert_eq!(sha256_digest(&b), digest);
    b
}

/// `openssl dgst -sha256 -verify PUB -signature SIG DATA`.
fn openssl_verifies(pubkey: &Path, sig_der: &[u8], data: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (dir.path().join("sig.der"), dir.path().join("data"));
    std::fs::write(&s, sig_der).unwrap();
    std::fs::write(&d, data).unwrap();
    let out = run(Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(pubkey)
        .arg("-signature")
        .arg(&s)
        .arg(&d));
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("Verified OK")
}

/// DSSE PAE, written out here from the spec (independently of graft's).
fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|s| s.to_string()).collect()
}

/// Index digest and child digests of `repo:tag`.
fn digests(reg: &Registry, repo: &str, tag: &str) -> (String, Vec<String>) {
    let (bytes, v) = manifest(reg, repo, tag).unwrap();
    let kids = v["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["digest"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (sha256_digest(&bytes), kids)
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// A Python interpreter that has `modules` (the Debian one when pyenv's lacks them).
fn python_with(modules: &str) -> String {
    for py in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(py)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return py.to_string();
        }
    }
    panic!("no python3 with {modules}: run scripts/test.sh (it installs python3-cryptography python3-nacl)");
}

#[test]
fn simple_signatures_verify_with_openssl_and_have_exactly_the_containers_image_fields() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    reg.seed("jupyter-sci", "sci/jupyter:2.4");
    let (key, pubk) = keypair(home.path(), home.path(), "ci");
    let (other_key, other_pub) = keypair(home.path(), home.path(), "other");
    let image = format!("docker://{}", reg.image_ref("sci/jupyter:2.4"));
    let out = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--recursive",
            &image,
        ],
    )
    .ok();
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.all());
    let (index, kids) = digests(&reg, "sci/jupyter", "2.4");
    assert_eq!(kids.len(), 2);
    for d in std::iter::once(&index).chain(&kids) {
        let (_, sig) =
            manifest(&reg, "sci/jupyter", &format!("sha256-{}.sig", hex_of(d))).expect(".sig tag");
        assert_eq!(sig["mediaType"], OCI_MANIFEST);
        let layers = sig["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], SIMPLE);
        let payload_digest = layers[0]["digest"].as_str().unwrap();
        let payload = blob(&reg, "sci/jupyter", payload_digest);
        // The config is cosign's: zero times, one diff_id per layer.
        let config: Value = serde_json::from_slice(&blob(
            &reg,
            "sci/jupyter",
            sig["config"]["digest"].as_str().unwrap(),
        ))
        .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"], json!([payload_digest]));
        assert_eq!(config["created"], "0001-01-01T00:00:00Z");
        assert_eq!(config["history"].as_array().unwrap().len(), 1);
        // Exactly the fields containers/image's strict parser accepts.
        let p: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(keys_of(&p), set(&["critical", "optional"]));
        assert_eq!(p["optional"], Value::Null);
        assert_eq!(keys_of(&p["critical"]), set(&["identity", "image", "type"]));
        assert_eq!(
            keys_of(&p["critical"]["identity"]),
            set(&["docker-reference"])
        );
        assert_eq!(
            keys_of(&p["critical"]["image"]),
            set(&["docker-manifest-digest"])
        );
        assert_eq!(p["critical"]["type"], "cosign container image signature");
        assert_eq!(p["critical"]["image"]["docker-manifest-digest"], d.as_str());
        assert_eq!(
            p["critical"]["identity"]["docker-reference"],
            reg.image_ref("sci/jupyter")
        );
        let sig_b64 = layers[0]["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap();
        let der = B64.decode(sig_b64).unwrap();
        assert!(
            openssl_verifies(&pubk, &der, &payload),
            "openssl rejects the signature of {d}"
        );
        assert!(!openssl_verifies(&other_pub, &der, &payload));
        let mut tampered = payload.clone();
        tampered[10] ^= 1;
        assert!(!openssl_verifies(&pubk, &der, &tampered));
    }
    let v = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "verify",
            "--key",
            pubk.to_str().unwrap(),
            "--recursive",
            &image,
        ],
    )
    .ok();
    assert_eq!(v.stdout.lines().count(), 3);
    let j = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "-o",
            "json",
            "verify",
            "--key",
            pubk.to_str().unwrap(),
            "--recursive",
            &image,
        ],
    )
    .ok()
    .json();
    assert_eq!(j["verified"], true);
    assert_eq!(j["signatures"].as_array().unwrap().len(), 3);
    // With annotations: `optional` carries them, still accepted by the strict parser's rules.
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            other_key.to_str().unwrap(),
            "-a",
            "team=astro",
            "-a",
            "creator=ci",
            &image,
        ],
    )
    .ok();
    let (_, sig) = manifest(
        &reg,
        "sci/jupyter",
        &format!("sha256-{}.sig", hex_of(&index)),
    )
    .unwrap();
    let p: Value = serde_json::from_slice(&blob(
        &reg,
        "sci/jupyter",
        sig["layers"][1]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(p["optional"], json!({"creator": "ci", "team": "astro"}));
    let bad = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            key.to_str().unwrap(),
            "-a",
            "timestamp=now",
            &image,
        ],
    )
    .fails(2);
    assert!(bad.stderr.contains("timestamp"), "{}", bad.stderr);
}

#[test]
fn bundle_signatures_are_referrers_listed_in_the_fallback_index_and_verify_with_openssl() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    reg.seed("astro-base", "sci/astro:1.0");
    let (key, pubk) = keypair(home.path(), home.path(), "k");
    let image = format!("docker://{}", reg.image_ref("sci/astro:1.0"));
    // distribution 2.8 has no referrers API: graft must use the tag schema.
    assert!(http_get(&reg, "sci/astro/referrers/sha256:0000000000000000000000000000000000000000000000000000000000000000", OCI_INDEX).is_none());
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--format",
            "bundle",
            "--key",
            key.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    let (index, _) = digests(&reg, "sci/astro", "1.0");
    let (fallback_bytes, fallback) =
        manifest(&reg, "sci/astro", &format!("sha256-{}", hex_of(&index))).expect("fallback tag");
    assert_eq!(fallback["mediaType"], OCI_INDEX);
    let entries = fallback["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["artifactType"], BUNDLE);
    assert_eq!(
        entries[0]["annotations"]["dev.sigstore.bundle.content"],
        "dsse-envelope"
    );
    assert_eq!(
        entries[0]["annotations"]["dev.sigstore.bundle.predicateType"],
        "https://sigstore.dev/cosign/sign/v1"
    );
    let referrer_digest = entries[0]["digest"].as_str().unwrap();
    let (rbytes, referrer) = manifest(&reg, "sci/astro", referrer_digest).unwrap();
    assert_eq!(sha256_digest(&rbytes), referrer_digest);
    assert_eq!(entries[0]["size"], rbytes.len());
    assert_eq!(referrer["artifactType"], BUNDLE);
    assert_eq!(referrer["subject"]["digest"], index.as_str());
    assert_eq!(referrer["subject"]["mediaType"], OCI_INDEX);
    assert_eq!(
        referrer["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(
        blob(
            &reg,
            "sci/astro",
            referrer["config"]["digest"].as_str().unwrap()
        ),
        b"{}"
    );
    assert_eq!(referrer["layers"][0]["mediaType"], BUNDLE);
    let bundle: Value = serde_json::from_slice(&blob(
        &reg,
        "sci/astro",
        referrer["layers"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(bundle["mediaType"], BUNDLE);
    assert!(bundle["verificationMaterial"]["publicKey"]["hint"].is_string());
    assert!(bundle["verificationMaterial"].get("tlogEntries").is_none());
    let env = &bundle["dsseEnvelope"];
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let body = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    let statement: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["predicateType"],
        "https://sigstore.dev/cosign/sign/v1"
    );
    assert_eq!(statement["subject"][0]["digest"]["sha256"], hex_of(&index));
    let sig = B64
        .decode(env["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    assert!(openssl_verifies(
        &pubk,
        &sig,
        &pae("application/vnd.in-toto+json", &body)
    ));
    assert!(
        !openssl_verifies(&pubk, &sig, &body),
        "the signature must cover the PAE, not the bare payload"
    );
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "verify",
            "--key",
            pubk.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    // Signing again adds nothing.
    let again = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--format",
            "bundle",
            "--key",
            key.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    assert!(again.stdout.contains("already present"), "{}", again.all());
    assert_eq!(
        manifest(&reg, "sci/astro", &format!("sha256-{}", hex_of(&index)))
            .unwrap()
            .0,
        fallback_bytes
    );
    // A second signer's bundle joins the index; both verify.
    let (key2, pub2) = keypair(home.path(), home.path(), "k2");
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--format",
            "both",
            "--key",
            key2.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    let (_, fallback) = manifest(&reg, "sci/astro", &format!("sha256-{}", hex_of(&index))).unwrap();
    assert_eq!(fallback["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        fallback["manifests"][0], entries[0],
        "the first entry is kept as it was"
    );
    for p in [&pubk, &pub2] {
        gs(
            home.path(),
            &[
                "--tls-verify=false",
                "verify",
                "--key",
                p.to_str().unwrap(),
                &image,
            ],
        )
        .ok();
    }
}

#[test]
fn two_signers_both_verify_signing_twice_adds_nothing_and_others_layers_survive() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    reg.seed("astro-base", "sci/astro:1.0");
    let (index, _) = digests(&reg, "sci/astro", "1.0");
    let sig_tag = format!("sha256-{}.sig", hex_of(&index));
    // Someone else's signature is already there: a real cosign layer (containers/image
    // fixture), with its own annotations and an unknown field, in a manifest graft did not write.
    let fixture = std::fs::read(
        interop().join("cosign-signatures/containers-image/dir-img-cosign-valid/signature-1"),
    )
    .unwrap();
    let doc: Value = serde_json::from_slice(&fixture[b"\x00sigstore-json\n".len()..]).unwrap();
    let foreign_payload = B64.decode(doc["payload"].as_str().unwrap()).unwrap();
    let pd = reg.push_blob("sci/astro", &foreign_payload);
    let config = format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{pd}"]}},"config":{{}}}}"#
    );
    let cd = reg.push_blob("sci/astro", config.as_bytes());
    let foreign_layer = format!(
        r#"{{"mediaType":"{SIMPLE}","size":{},"digest":"{pd}","annotations":{{"dev.cosignproject.cosign/signature":"{}","z-unknown":"kept"}},"x-extra":[1,2]}}"#,
        foreign_payload.len(),
        doc["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap()
    );
    let foreign_manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{cd}"}},"layers":[{foreign_layer}]}}"#,
        config.len()
    );
    reg.push_manifest(
        "sci/astro",
        &sig_tag,
        OCI_MANIFEST,
        foreign_manifest.as_bytes(),
    );

    let image = format!("docker://{}", reg.image_ref("sci/astro:1.0"));
    let (a_key, a_pub) = keypair(home.path(), home.path(), "alice");
    let (b_key, b_pub) = keypair(home.path(), home.path(), "bob");
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            a_key.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            b_key.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    let (bytes, sig) = manifest(&reg, "sci/astro", &sig_tag).unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 3);
    assert!(
        String::from_utf8(bytes.clone())
            .unwrap()
            .contains(&foreign_layer),
        "the foreign layer is kept byte for byte"
    );
    for p in [&a_pub, &b_pub] {
        gs(
            home.path(),
            &[
                "--tls-verify=false",
                "verify",
                "--key",
                p.to_str().unwrap(),
                &image,
            ],
        )
        .ok();
    }
    // Signing twice adds nothing: same manifest, same bytes.
    let again = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            a_key.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    assert!(again.stdout.contains("already present"), "{}", again.all());
    assert_eq!(manifest(&reg, "sci/astro", &sig_tag).unwrap().0, bytes);
    // The cosign-made layer verifies with cosign's key but signs another image.
    let cosign_pub = interop().join("cosign-signatures/containers-image/cosign.pub");
    let out = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "verify",
            "--key",
            cosign_pub.to_str().unwrap(),
            &image,
        ],
    )
    .fails(1);
    assert!(
        out.stderr.contains("valid but sign another image"),
        "{}",
        out.stderr
    );
}

#[test]
fn verify_failures_have_distinct_messages_and_exit_1() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let (a_key, a_pub) = keypair(home.path(), home.path(), "a");
    let (_, b_pub) = keypair(home.path(), home.path(), "b");
    for (name, tag) in [("astro-base", "x"), ("jupyter-sci", "y")] {
        reg.seed(name, &format!("sci/img:{tag}"));
    }
    let x = format!("docker://{}", reg.image_ref("sci/img:x"));
    let y = format!("docker://{}", reg.image_ref("sci/img:y"));
    let verify = |key: &Path, image: &str| {
        gs(
            home.path(),
            &[
                "--tls-verify=false",
                "verify",
                "--key",
                key.to_str().unwrap(),
                image,
            ],
        )
        .fails(1)
        .stderr
    };
    // No signature at all.
    let none = verify(&a_pub, &y);
    assert!(none.contains("no signatures found"), "{none}");
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            a_key.to_str().unwrap(),
            &x,
        ],
    )
    .ok();
    // Wrong key.
    let wrong = verify(&b_pub, &x);
    assert!(
        wrong.contains("verifies with the given key") && wrong.contains("signed by another key"),
        "{wrong}"
    );
    // A signature over another digest: x's signature manifest put at y's signature tag.
    let (xd, _) = digests(&reg, "sci/img", "x");
    let (yd, _) = digests(&reg, "sci/img", "y");
    let (xsig_bytes, xsig) =
        manifest(&reg, "sci/img", &format!("sha256-{}.sig", hex_of(&xd))).unwrap();
    reg.push_manifest(
        "sci/img",
        &format!("sha256-{}.sig", hex_of(&yd)),
        OCI_MANIFEST,
        &xsig_bytes,
    );
    let other = verify(&a_pub, &y);
    assert!(
        other.contains("valid but sign another image") && other.contains(&xd),
        "{other}"
    );
    // A tampered payload: the payload edited (docker-reference) and re-pushed under x's tag
    // with the original signature annotation.
    let payload = blob(
        &reg,
        "sci/img",
        xsig["layers"][0]["digest"].as_str().unwrap(),
    );
    let edited = String::from_utf8(payload)
        .unwrap()
        .replace(&reg.image_ref("sci/img"), "evil.example/img");
    let ed = reg.push_blob("sci/img", edited.as_bytes());
    let mut tampered = xsig.clone();
    tampered["layers"][0]["digest"] = json!(ed);
    tampered["layers"][0]["size"] = json!(edited.len());
    reg.push_manifest(
        "sci/img",
        &format!("sha256-{}.sig", hex_of(&xd)),
        OCI_MANIFEST,
        &serde_json::to_vec(&tampered).unwrap(),
    );
    let t = verify(&a_pub, &x);
    assert!(
        t.contains("tampered with") && t.contains("altered after signing"),
        "{t}"
    );
    // Altered in storage: the registry's blob file of y's (copied) payload changed on disk.
    let pd = xsig["layers"][0]["digest"].as_str().unwrap();
    let data = reg.storage_dir().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &hex_of(pd)[..2],
        hex_of(pd)
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    let i = bytes.len() - 20;
    bytes[i] ^= 1;
    std::fs::write(&data, bytes).unwrap();
    let s = verify(&a_pub, &y);
    assert!(
        s.contains("tampered with") && s.contains("altered in storage"),
        "{s}"
    );
    // The four messages differ.
    let kinds: BTreeSet<&str> = [&none, &wrong, &other, &t]
        .iter()
        .map(|m| m.lines().next().unwrap())
        .collect();
    assert_eq!(kinds.len(), 4);
    // Attestations: none attached.
    let n = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "verify-attestation",
            "--key",
            a_pub.to_str().unwrap(),
            &x,
        ],
    )
    .fails(1);
    assert!(n.stderr.contains("no attestations found"), "{}", n.stderr);
}

/// Validates a statement JSON file with the `in-toto-attestation` package (protobuf schemas
/// of Statement v1 and SLSA Provenance v1; unknown fields rejected).
pub(crate) const VALIDATE_PY: &str = r#"
import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
doc = json.load(open(sys.argv[1]))
st = json_format.ParseDict(doc, statement_pb2.Statement())
Statement.copy_from_pb(st).validate()
assert doc["predicateType"] == "https://slsa.dev/provenance/v1", doc["predicateType"]
prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
bd = doc["predicate"]["buildDefinition"]
assert prov.build_definition.build_type, "buildType required"
assert "externalParameters" in bd, "externalParameters required"
assert prov.run_details.builder.id, "builder.id required"
for dep in prov.build_definition.resolved_dependencies:
    assert dep.uri or dep.name or len(dep.digest), "empty resource descriptor"
print("valid")
"#;

pub(crate) fn intoto_python() -> PathBuf {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-intoto/bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/test.sh (it creates the venv with the in-toto-attestation package)",
        py.display()
    );
    py
}

#[test]
fn slsa_provenance_attestations_validate_and_their_dsse_signature_verifies_with_openssl() {
    use graft::oci::Digest;
    use graft::sign::provenance::{BuildValues, BuilderInfo, LibrarySource, RefreshProvenance};
    use graft::timestamp::Timestamp;

    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    reg.seed("jupyter-sci", "rel/jupyter:2.4");
    let (key, pubk) = keypair(home.path(), home.path(), "ci");
    let (index, kids) = digests(&reg, "rel/jupyter", "2.4");
    let gh = |k: &str| {
        match k {
            "GITHUB_ACTIONS" => Some("true"),
            "GITHUB_REPOSITORY" => Some("sciserver/compute-images"),
            "GITHUB_WORKFLOW_REF" => {
                Some("sciserver/compute-images/.github/workflows/refresh.yml@refs/heads/main")
            }
            "GITHUB_RUN_ID" => Some("77"),
            _ => None,
        }
        .map(str::to_string)
    };
    let prov = RefreshProvenance {
        manifest_path: "manifests/jupyter.yaml".into(),
        manifest_digest: Digest::sha256(b"name: jupyter\n"),
        library: Some(LibrarySource {
            url: Some("https://github.com/sciserver/compute-images".into()),
            git_ref: "refs/heads/main".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            path: ".".into(),
        }),
        build: BuildValues {
            build: Some("12".into()),
            commit: Some("0123456".into()),
            branch: Some("main".into()),
        },
        created: Timestamp(1_700_000_000),
        source_date_epoch: None,
        repo_override: None,
        science: reg.image_ref("sci/jupyter:2.4"),
        science_index: Some(index.parse().unwrap()),
        science_platforms: vec![
            ("linux/amd64".into(), kids[0].parse().unwrap()),
            ("linux/arm64".into(), kids[1].parse().unwrap()),
        ],
        compat_chain: vec!["jupyter-compat".into()],
        compat_layer: Some(Digest::sha256(b"compat")),
        builder: BuilderInfo::from_ci_env(&gh).unwrap(),
        graft_version: "0.1.0".into(),
        started_on: Timestamp(1_700_000_000),
        finished_on: Timestamp(1_700_000_042),
    };
    let predicate = home.path().join("provenance.json");
    std::fs::write(
        &predicate,
        serde_json::to_vec(&prov.provenance().predicate()).unwrap(),
    )
    .unwrap();
    let image = format!("docker://{}", reg.image_ref("rel/jupyter:2.4"));
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "attest",
            "--key",
            key.to_str().unwrap(),
            "--type",
            "slsaprovenance1",
            "--predicate",
            predicate.to_str().unwrap(),
            "--recursive",
            &image,
        ],
    )
    .ok();
    let py = intoto_python();
    for d in std::iter::once(&index).chain(&kids) {
        let (_, att) =
            manifest(&reg, "rel/jupyter", &format!("sha256-{}.att", hex_of(d))).expect(".att tag");
        let layer = &att["layers"][0];
        assert_eq!(layer["mediaType"], DSSE);
        assert_eq!(
            layer["annotations"]["predicateType"],
            "https://slsa.dev/provenance/v1"
        );
        assert_eq!(
            layer["annotations"]["dev.cosignproject.cosign/signature"],
            ""
        );
        let env: Value = serde_json::from_slice(&blob(
            &reg,
            "rel/jupyter",
            layer["digest"].as_str().unwrap(),
        ))
        .unwrap();
        assert_eq!(
            keys_of(&env),
            set(&["payload", "payloadType", "signatures"])
        );
        let body = B64.decode(env["payload"].as_str().unwrap()).unwrap();
        let sig = B64
            .decode(env["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        assert!(
            openssl_verifies(
                &pubk,
                &sig,
                &pae(env["payloadType"].as_str().unwrap(), &body)
            ),
            "DSSE PAE signature of {d}"
        );
        let statement: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(statement["subject"][0]["digest"]["sha256"], hex_of(d));
        assert_eq!(
            statement["predicate"]["runDetails"]["metadata"]["invocationId"],
            "https://github.com/sciserver/compute-images/actions/runs/77/attempts/1"
        );
        let file = home.path().join("statement.json");
        std::fs::write(&file, &body).unwrap();
        let out = run(Command::new(&py).args(["-c", VALIDATE_PY]).arg(&file));
        assert!(
            out.status.success(),
            "in-toto validation failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The validator can fail: a statement without subject digests, a predicate with an
    // unknown field.
    for broken in [
        json!({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "x"}], "predicateType": "https://slsa.dev/provenance/v1", "predicate": prov.provenance().predicate()}),
        json!({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "x", "digest": {"sha256": "ab"}}], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {"buildDefinition": {"buildType": "x", "externalParameters": {}, "bogus": 1}, "runDetails": {"builder": {"id": "b"}}}}),
    ] {
        let file = home.path().join("broken.json");
        std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
        assert!(!run(Command::new(&py).args(["-c", VALIDATE_PY]).arg(&file))
            .status
            .success());
    }
    // graft reads them back: verify-attestation and provenance (index and one platform).
    let v = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "verify-attestation",
            "--key",
            pubk.to_str().unwrap(),
            "--type",
            "slsaprovenance1",
            "--recursive",
            &image,
        ],
    )
    .ok();
    assert_eq!(v.stdout.lines().count(), 3);
    let p = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "-o",
            "json",
            "provenance",
            "--key",
            pubk.to_str().unwrap(),
            &image,
        ],
    )
    .ok()
    .json();
    assert_eq!(p["verified"], true);
    assert_eq!(
        p["provenance"][0]["statement"]["predicate"]["buildDefinition"]["buildType"],
        "https://graft.dev/buildtypes/refresh/v2"
    );
    let arm = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "provenance",
            "--platform",
            "linux/arm64",
            &image,
        ],
    )
    .ok();
    assert!(arm.stdout.contains(hex_of(&kids[1])), "{}", arm.all());
    // Bundle form: a DSSE bundle referrer, also found by verify-attestation and provenance.
    let (key2, pub2) = keypair(home.path(), home.path(), "release");
    gs(
        home.path(),
        &[
            "--tls-verify=false",
            "attest",
            "--format",
            "bundle",
            "--key",
            key2.to_str().unwrap(),
            "--type",
            "slsaprovenance1",
            "--predicate",
            predicate.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    let (_, fallback) =
        manifest(&reg, "rel/jupyter", &format!("sha256-{}", hex_of(&index))).unwrap();
    assert_eq!(
        fallback["manifests"][0]["annotations"]["dev.sigstore.bundle.predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    let j = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "-o",
            "json",
            "verify-attestation",
            "--key",
            pub2.to_str().unwrap(),
            &image,
        ],
    )
    .ok()
    .json();
    assert_eq!(j["attestations"][0]["form"], "bundle");
    // Wrong key for the attestation.
    let (_, stranger) = keypair(home.path(), home.path(), "stranger");
    let w = gs(
        home.path(),
        &[
            "--tls-verify=false",
            "verify-attestation",
            "--key",
            stranger.to_str().unwrap(),
            &image,
        ],
    )
    .fails(1);
    assert!(w.stderr.contains("signed by another key"), "{}", w.stderr);
}

/// Decrypts a cosign key file with hashlib.scrypt + PyNaCl + cryptography and prints the SPKI
/// PEM of its public key.
const DECRYPT_PY: &str = r#"
import base64, hashlib, json, sys
from nacl.secret import SecretBox
from cryptography.hazmat.primitives import serialization
text = open(sys.argv[1]).read().strip().splitlines()
assert text[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", text[0]
assert text[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----", text[-1]
assert all(len(l) <= 64 for l in text[1:-1])
doc = json.loads(base64.b64decode("".join(text[1:-1])))
assert list(doc) == ["kdf", "cipher", "ciphertext"], list(doc)
assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}, doc["kdf"]
assert list(doc["kdf"]["params"]) == ["N", "r", "p"]
salt = base64.b64decode(doc["kdf"]["salt"])
assert len(salt) == 32
assert doc["cipher"]["name"] == "nacl/secretbox"
key = hashlib.scrypt(sys.argv[2].encode(), salt=salt, n=65536, r=8, p=1, dklen=32, maxmem=256 * 1024 * 1024)
der = SecretBox(key).decrypt(base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"]))
priv = serialization.load_der_private_key(der, password=None)
assert priv.curve.name == "secp256r1", priv.curve.name
sys.stdout.write(priv.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
"#;

#[test]
fn keys_graft_generates_decrypt_with_python_cryptography_and_nacl() {
    let home = tempfile::tempdir().unwrap();
    let (key, pubk) = keypair(home.path(), home.path(), "cosign");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let py = python_with("nacl, cryptography");
    let out = run(Command::new(&py).args(["-c", DECRYPT_PY]).arg(&key).arg(PW));
    assert!(
        out.status.success(),
        "python could not decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(&pubk).unwrap()
    );
    let wrong = run(Command::new(&py)
        .args(["-c", DECRYPT_PY])
        .arg(&key)
        .arg("not the password"));
    assert!(!wrong.status.success());
    // generate-key-pair refuses to overwrite, and needs a password.
    let again = gs(
        home.path(),
        &[
            "generate-key-pair",
            "--output-key-prefix",
            home.path().join("cosign").to_str().unwrap(),
        ],
    )
    .fails(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let nopw = capture(command(home.path()).env_remove("COSIGN_PASSWORD").args([
        "generate-key-pair",
        "--output-key-prefix",
        home.path().join("x").to_str().unwrap(),
    ]))
    .fails(2);
    assert!(nopw.stderr.contains("COSIGN_PASSWORD"), "{}", nopw.stderr);
}

#[test]
fn cosign_made_keys_load_sign_and_verify() {
    let home = tempfile::tempdir().unwrap();
    let layout = home.path().join("layout");
    copy_dir(&science_layout("astro-base"), &layout);
    let image = format!("oci:{}:1.0", layout.display());
    let k = interop().join("keys");
    let cases = [
        (
            "zarf/signing_testdata.cosign.key",
            "test",
            "zarf/signing_testdata.cosign.pub",
        ),
        (
            "zarf/packager_testdata_publish.cosign.key",
            "password",
            "zarf/packager_testdata_publish.cosign.pub",
        ),
        ("zarf/zarf-test.prv-key", "", "zarf/zarf-test.pub"),
        (
            "zarf/zoci_testdata.cosign.key",
            "",
            "derived/zarf.zoci_testdata.cosign.derived.pub",
        ),
        (
            "sigstore-rs/cosign_generated_encrypted_empty_private.key",
            "",
            "derived/sigstore-rs.cosign_generated_encrypted_empty_private.derived.pub",
        ),
        (
            "sigstore-rs/ecdsa_encrypted_private.key",
            "123",
            "derived/sigstore-rs.ecdsa_encrypted_private.derived.pub",
        ),
        (
            "sigstore-rs/ECDSA_P256_ASN1_ENCRYPTED_PRIVATE_PEM.key",
            "password",
            "derived/sigstore-rs.ECDSA_P256_ASN1_ENCRYPTED_PRIVATE_PEM.derived.pub",
        ),
    ];
    for (key, pw, pubk) in cases {
        let label = std::fs::read_to_string(k.join(key)).unwrap();
        assert!(label.starts_with("-----BEGIN ENCRYPTED"), "{key}");
        let out = capture(command(home.path()).env("COSIGN_PASSWORD", pw).args([
            "sign",
            "--key",
            k.join(key).to_str().unwrap(),
            &image,
        ]));
        assert_eq!(out.code, 0, "{key}: {}", out.all());
        gs(
            home.path(),
            &["verify", "--key", k.join(pubk).to_str().unwrap(), &image],
        )
        .ok();
    }
    // The key is also accepted from an environment variable.
    let (gen_key, gen_pub) = keypair(home.path(), home.path(), "envkey");
    let out = capture(
        command(home.path())
            .env("COSIGN_PASSWORD", PW)
            .env("MY_COSIGN_KEY", std::fs::read_to_string(&gen_key).unwrap())
            .args(["sign", "--key", "env://MY_COSIGN_KEY", &image]),
    );
    assert_eq!(out.code, 0, "{}", out.all());
    gs(
        home.path(),
        &["verify", "--key", gen_pub.to_str().unwrap(), &image],
    )
    .ok();
    // Keys graft cannot use say why.
    for (key, pw, want) in [
        (
            "sigstore-rs/ed25519_encrypted_private.key",
            "123",
            "unsupported key type Ed25519",
        ),
        (
            "sigstore-rs/rsa_encrypted_private.key",
            "123",
            "unsupported key type RSA",
        ),
        ("cosign/cosign-test.key", "", "wrong password"),
        ("cosign/cosign-test.key", "test", "wrong password"),
        ("zarf/signing_testdata.cosign.key", "nope", "wrong password"),
    ] {
        let out = capture(command(home.path()).env("COSIGN_PASSWORD", pw).args([
            "sign",
            "--key",
            k.join(key).to_str().unwrap(),
            &image,
        ]))
        .fails(2);
        assert!(
            out.stderr.contains(want) && out.stderr.contains(key.rsplit('/').next().unwrap()),
            "{key}: {}",
            out.stderr
        );
    }
}

#[test]
fn cosign_made_signatures_verify_with_the_verification_core() {
    use graft::oci::Digest;
    use graft::sign::verify::check_simple_signing;
    use graft::sign::{FailureKind, PublicKey};

    let dir = interop().join("cosign-signatures/containers-image");
    let key = |name: &str| {
        PublicKey::from_pem(&std::fs::read_to_string(dir.join(name)).unwrap(), name).unwrap()
    };
    let (cosign, cosign2) = (key("cosign.pub"), key("cosign2.pub"));
    // (fixture, signature file, key, expected outcome)
    let cases: [(&str, &str, &PublicKey, Option<FailureKind>); 9] = [
        ("dir-img-cosign-valid", "signature-1", &cosign, None),
        ("dir-img-cosign-valid-2", "signature-1", &cosign, None),
        ("dir-img-cosign-valid-2", "signature-2", &cosign, None),
        (
            "dir-img-cosign-valid-with-tag",
            "signature-1",
            &cosign,
            None,
        ),
        (
            "dir-img-cosign-key-rekor-valid",
            "signature-1",
            &cosign2,
            None,
        ),
        ("dir-img-cosign-mixed", "signature-2", &cosign, None),
        (
            "dir-img-cosign-mixed",
            "signature-1",
            &cosign,
            Some(FailureKind::WrongKey),
        ),
        (
            "dir-img-cosign-modified-manifest",
            "signature-1",
            &cosign,
            Some(FailureKind::OtherDigest),
        ),
        (
            "dir-img-cosign-manifest-digest-error",
            "signature-1",
            &cosign,
            Some(FailureKind::OtherDigest),
        ),
    ];
    for (fixture, file, k, want) in cases {
        let raw = std::fs::read(dir.join(fixture).join(file)).unwrap();
        let doc: Value =
            serde_json::from_slice(raw.strip_prefix(b"\x00sigstore-json\n").unwrap()).unwrap();
        assert_eq!(doc["mimeType"], SIMPLE);
        let payload = B64.decode(doc["payload"].as_str().unwrap()).unwrap();
        let sig = doc["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap();
        let manifest = std::fs::read(dir.join(fixture).join("manifest.json")).unwrap();
        let expected = Digest::sha256(&manifest);
        let got = check_simple_signing(&payload, sig, None, k, &expected);
        match want {
            None => {
                let p = got.unwrap_or_else(|e| panic!("{fixture}/{file}: {e:?}"));
                assert_eq!(p.digest, expected);
            }
            Some(kind) => assert_eq!(got.unwrap_err().kind, kind, "{fixture}/{file}"),
        }
        // The same signatures, judged by openssl (independent referee).
        let pem = if std::ptr::eq(k, &cosign2) {
            "cosign2.pub"
        } else {
            "cosign.pub"
        };
        let ok = openssl_verifies(&dir.join(pem), &B64.decode(sig).unwrap(), &payload);
        assert_eq!(
            ok,
            want != Some(FailureKind::WrongKey),
            "openssl on {fixture}/{file}"
        );
    }
    // A layer that is not a signature is not mistaken for one.
    let raw = std::fs::read(dir.join("dir-img-cosign-other-attachment/signature-1")).unwrap();
    let doc: Value =
        serde_json::from_slice(raw.strip_prefix(b"\x00sigstore-json\n").unwrap()).unwrap();
    assert_ne!(doc["mimeType"], SIMPLE);
}

#[test]
fn oci_layout_images_are_signed_attested_and_verified_in_place() {
    let home = tempfile::tempdir().unwrap();
    let layout = home.path().join("layout");
    copy_dir(&science_layout("jupyter-sci"), &layout);
    let image = format!("oci:{}:2.4", layout.display());
    let (key, pubk) = keypair(home.path(), home.path(), "k");
    gs(
        home.path(),
        &[
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--recursive",
            "--format",
            "both",
            &image,
        ],
    )
    .ok();
    let predicate = home.path().join("p.json");
    std::fs::write(&predicate, br#"{"buildDefinition":{"buildType":"https://example/x","externalParameters":{}},"runDetails":{"builder":{"id":"https://example/b"}}}"#).unwrap();
    gs(
        home.path(),
        &[
            "attest",
            "--key",
            key.to_str().unwrap(),
            "--type",
            "slsaprovenance1",
            "--predicate",
            predicate.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    gs(
        home.path(),
        &[
            "verify",
            "--key",
            pubk.to_str().unwrap(),
            "--recursive",
            &image,
        ],
    )
    .ok();
    gs(
        home.path(),
        &[
            "verify-attestation",
            "--key",
            pubk.to_str().unwrap(),
            "--type",
            "slsaprovenance1",
            &image,
        ],
    )
    .ok();
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let names: BTreeSet<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(names.contains("2.4"));
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".sig")).count(),
        3,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".att")).count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("sha256-") && !n.contains('.'))
            .count(),
        3,
        "{names:?}"
    );
    // The layout stays valid for other tools: skopeo reads the signed image.
    skopeo(["inspect", "--raw", &image]);
    // The signature verifies with openssl straight from the layout's blobs.
    let sig_entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".sig"))
        })
        .unwrap();
    let read = |d: &str| std::fs::read(layout.join("blobs/sha256").join(hex_of(d))).unwrap();
    let sig: Value = serde_json::from_slice(&read(sig_entry["digest"].as_str().unwrap())).unwrap();
    let payload = read(sig["layers"][0]["digest"].as_str().unwrap());
    let der = B64
        .decode(
            sig["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(openssl_verifies(&pubk, &der, &payload));
}

#[test]
fn secrets_never_reach_output() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    reg.seed("astro-base", "sci/astro:1.0");
    let secret_pw = "s3cr3t-Pa55-phrase";
    let prefix = home.path().join("k");
    let out = capture(
        command(home.path())
            .env("COSIGN_PASSWORD", secret_pw)
            .args([
                "-vv",
                "generate-key-pair",
                "--output-key-prefix",
                prefix.to_str().unwrap(),
            ]),
    )
    .ok();
    let key_text = std::fs::read_to_string(prefix.with_extension("key")).unwrap();
    let body_line = key_text.lines().nth(1).unwrap().to_string();
    let image = format!("docker://{}", reg.image_ref("sci/astro:1.0"));
    let predicate = home.path().join("p.json");
    std::fs::write(&predicate, b"{}").unwrap();
    let key_path = prefix.with_extension("key").display().to_string();
    let mut outputs = vec![out.all()];
    for pw in [secret_pw, "wrong-s3cr3t"] {
        let sign: Vec<&str> = vec![
            "-vv",
            "--tls-verify=false",
            "sign",
            "--key",
            &key_path,
            &image,
        ];
        let attest: Vec<&str> = vec![
            "-vv",
            "--tls-verify=false",
            "-o",
            "json",
            "attest",
            "--key",
            "env://K",
            "--predicate",
            predicate.to_str().unwrap(),
            &image,
        ];
        for args in [sign, attest] {
            let r = capture(
                command(home.path())
                    .env("COSIGN_PASSWORD", pw)
                    .env("K", &key_text)
                    .args(&args),
            );
            assert_eq!(r.code, if pw == secret_pw { 0 } else { 2 }, "{}", r.all());
            outputs.push(r.all());
        }
    }
    for o in &outputs {
        assert!(
            !o.contains(secret_pw) && !o.contains("wrong-s3cr3t"),
            "password in output:\n{o}"
        );
        assert!(!o.contains(&body_line), "key material in output:\n{o}");
    }
}

#[test]
fn ten_concurrent_signers_merge_and_confirm() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    // Ten plain PKCS#8 P-256 keys made by openssl (no scrypt: the processes start signing
    // within milliseconds of each other).
    let keys: Vec<(PathBuf, PathBuf)> = (0..10)
        .map(|i| {
            let k = home.path().join(format!("k{i}.pem"));
            let p = home.path().join(format!("k{i}.pub"));
            run(Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                ])
                .arg(&k));
            run(Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&k)
                .arg("-out")
                .arg(&p));
            (k, p)
        })
        .collect();
    let rounds = 3;
    let mut report = Vec::new();
    for round in 0..rounds {
        let repo = format!("race/img{round}");
        reg.seed("astro-base", &format!("{repo}:1.0"));
        let image = format!("docker://{}", reg.image_ref(&format!("{repo}:1.0")));
        let children: Vec<_> = keys
            .iter()
            .map(|(k, _)| {
                command(home.path())
                    .env("COSIGN_PASSWORD", "")
                    .args(["--tls-verify=false", "-o", "json", "sign", "--key"])
                    .arg(k)
                    .arg(&image)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut lost_races = 0;
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "a signer failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let j: Value = serde_json::from_slice(&out.stdout).unwrap();
            lost_races += j["lost_races"].as_u64().unwrap();
        }
        let (index, _) = digests(&reg, &repo, "1.0");
        let (_, sig) = manifest(&reg, &repo, &format!("sha256-{}.sig", hex_of(&index))).unwrap();
        let layers = sig["layers"].as_array().unwrap();
        let payloads: BTreeSet<&str> = layers
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        assert_eq!(payloads.len(), 1, "every signer signs the same payload");
        let sigs: BTreeSet<&str> = layers
            .iter()
            .map(|l| {
                l["annotations"]["dev.cosignproject.cosign/signature"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(sigs.len(), layers.len(), "no duplicate signatures");
        let survivors = keys
            .iter()
            .filter(|(_, p)| {
                gs(
                    home.path(),
                    &[
                        "--tls-verify=false",
                        "verify",
                        "--key",
                        p.to_str().unwrap(),
                        &image,
                    ],
                )
                .code
                    == 0
            })
            .count();
        assert_eq!(
            survivors,
            layers.len(),
            "every layer is one of the ten signatures"
        );
        assert!(survivors >= 1);
        report.push(format!("round {round}: {survivors}/10 signatures survived, {lost_races} lost race(s) detected and repaired"));
        // A sequential rerun repairs whatever a silent overwrite dropped.
        for (k, _) in &keys {
            capture(
                command(home.path())
                    .env("COSIGN_PASSWORD", "")
                    .args(["--tls-verify=false", "sign", "--key"])
                    .arg(k)
                    .arg(&image),
            )
            .ok();
        }
        let (_, sig) = manifest(&reg, &repo, &format!("sha256-{}.sig", hex_of(&index))).unwrap();
        assert_eq!(sig["layers"].as_array().unwrap().len(), 10);
    }
    eprintln!("ten concurrent signers:\n  {}", report.join("\n  "));
}
