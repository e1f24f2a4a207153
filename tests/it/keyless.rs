//! Keyless verification through the CLI: a real keyless cosign signature (containers/image's
//! `dir-img-cosign-fulcio-rekor-valid`, public-good Fulcio and Rekor) pushed to a real registry,
//! verified against the vendored public-good trusted root; and signatures made here with a test
//! CA, CT log and Rekor key of this file's own, for the failures (wrong identity, wrong issuer,
//! tampered payload, wrong trusted root, expired certificate), each exit 1 naming the check.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use x509_cert::der::{Decode as _, Encode as _};

use crate::graft::{graft, Run};
use crate::support::block_on;
use crate::support::registry::Registry;
use crate::support::tools::{sha256_digest, sha256_hex, skopeo, testdata_dir};

const SIMPLE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn interop(path: &str) -> PathBuf {
    testdata_dir().join("interop").join(path)
}

fn public_good() -> PathBuf {
    interop("attestations/sigstore-go/public-good.json")
}

// ---------------------------------------------------------------------------------------------
// OCI layouts with a `.sig` tag

/// A blob in `dir`'s `blobs/sha256/`, and its descriptor.
fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(sha256_hex(bytes)), bytes).unwrap();
    json!({"mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len()})
}

/// The cosign `.sig` manifest for one simple-signing layer (`payload`, `annotations`), with
/// its blobs written to `dir`. Returns the manifest bytes.
fn sig_manifest(dir: &Path, payload: &[u8], annotations: &Value) -> Vec<u8> {
    cosign_manifest(dir, SIMPLE, payload, annotations)
}

/// A cosign `.sig`/`.att` manifest with one layer of `media_type`.
fn cosign_manifest(dir: &Path, media_type: &str, payload: &[u8], annotations: &Value) -> Vec<u8> {
    let config = json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(payload)]},
    });
    let config = put_blob(dir, OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
    let mut layer = put_blob(dir, media_type, payload);
    layer["annotations"] = annotations.clone();
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer],
    }))
    .unwrap()
}

/// An OCI layout at `dir` holding `image` (manifest bytes of `media_type`) under tag `1` and
/// its `.sig` manifest under cosign's tag.
fn layout(dir: &Path, image: &[u8], media_type: &str, sig: &[u8]) {
    let tag = format!("sha256-{}.sig", sha256_hex(image));
    layout_with(dir, image, media_type, &[(tag, OCI_MANIFEST, sig.to_vec())]);
}

/// An OCI layout at `dir` holding `image` under tag `1` and each `(tag, media type, bytes)`.
fn layout_with(dir: &Path, image: &[u8], media_type: &str, tagged: &[(String, &str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut m = put_blob(dir, media_type, image);
    m["annotations"] = json!({"org.opencontainers.image.ref.name": "1"});
    let mut manifests = vec![m];
    for (tag, mt, bytes) in tagged {
        let mut d = put_blob(dir, mt, bytes);
        d["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        manifests.push(d);
    }
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// `graft verify` with keyless flags.
fn verify(home: &Path, image: &str, id: &str, iss: &str, root: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "--tls-verify=false",
        "verify",
        "--certificate-identity",
        id,
        "--certificate-oidc-issuer",
        iss,
        "--trusted-root",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(image);
    graft(home, &args)
}

// ---------------------------------------------------------------------------------------------
// The real fixture, through a real registry

/// containers/image's keyless signature file: (payload, layer annotations).
fn containers_image_signature() -> (Vec<u8>, Value) {
    let raw = std::fs::read(interop(
        "cosign-signatures/containers-image/dir-img-cosign-fulcio-rekor-valid/signature-1",
    ))
    .unwrap();
    let doc: Value =
        serde_json::from_slice(raw.strip_prefix(b"\x00sigstore-json\n").unwrap()).unwrap();
    let payload = B64.decode(doc["payload"].as_str().unwrap()).unwrap();
    (payload, doc["annotations"].clone())
}

/// Make `digest` a blob the registry holds in `repo` without its bytes: the fixture's config
/// and layer are not published, and distribution only checks that a manifest's blobs exist.
fn seed_blob(reg: &Registry, repo: &str, digest: &str) {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let v2 = reg.storage_dir().join("docker/registry/v2");
    let data = v2.join("blobs/sha256").join(&hex[..2]).join(hex);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("data"), b"placeholder").unwrap();
    let link = v2
        .join("repositories")
        .join(repo)
        .join("_layers/sha256")
        .join(hex);
    std::fs::create_dir_all(&link).unwrap();
    std::fs::write(link.join("link"), digest).unwrap();
}

#[test]
fn containers_image_keyless_signature_verifies_from_a_real_registry() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let dir = interop("cosign-signatures/containers-image/dir-img-cosign-fulcio-rekor-valid");
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let digest = sha256_digest(&manifest);
    assert_eq!(
        digest,
        "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a"
    );
    // The signed manifest, byte for byte, under tag 1.
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    seed_blob(
        &reg,
        "cosign/fulcio",
        m["config"]["digest"].as_str().unwrap(),
    );
    for l in m["layers"].as_array().unwrap() {
        seed_blob(&reg, "cosign/fulcio", l["digest"].as_str().unwrap());
    }
    let url = format!("{}/v2/cosign/fulcio/manifests/1", reg.base_url());
    let client = reg.http_client();
    let (ct, body) = (
        m["mediaType"].as_str().unwrap().to_string(),
        manifest.clone(),
    );
    let status = block_on(async move {
        client
            .put(url)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "PUT manifest: {status}");
    // The signature: a cosign `.sig` image made from the fixture, copied by skopeo.
    let (payload, annotations) = containers_image_signature();
    let layout_dir = home.path().join("sig-layout");
    let sig = sig_manifest(&layout_dir, &payload, &annotations);
    layout(
        &layout_dir,
        &manifest,
        m["mediaType"].as_str().unwrap(),
        &sig,
    );
    let tag = format!("sha256-{}.sig", sha256_hex(&manifest));
    let mut args = vec!["copy".to_string(), "--preserve-digests".into()];
    args.extend(reg.skopeo_args(true));
    args.push(format!("oci:{}:{tag}", layout_dir.display()));
    args.push(reg.docker_ref(&format!("cosign/fulcio:{tag}")));
    skopeo(args);

    let image = format!("docker://{}", reg.image_ref("cosign/fulcio:1"));
    let oauth = "https://github.com/login/oauth";
    let ok = verify(
        home.path(),
        &image,
        "mitr@redhat.com",
        oauth,
        &public_good(),
        &[],
    )
    .ok();
    let printed: Value = serde_json::from_str(ok.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        printed["critical"]["image"]["docker-manifest-digest"],
        digest
    );
    assert!(ok.stderr.contains("mitr@redhat.com"), "{}", ok.stderr);
    // JSON output carries who signed and when the log recorded it.
    let j = graft(
        home.path(),
        &[
            "--tls-verify=false",
            "-o",
            "json",
            "verify",
            "--certificate-identity-regexp",
            "^mitr@redhat\\.com$",
            "--certificate-oidc-issuer-regexp",
            "^https://github\\.com/",
            "--trusted-root",
            public_good().to_str().unwrap(),
            &image,
        ],
    )
    .ok()
    .json();
    let k = &j["signatures"][0]["keyless"];
    assert_eq!(k["identity"], "mitr@redhat.com");
    assert_eq!(k["issuer"], oauth);
    assert_eq!(k["integrated_time"], 1674247893);
    // Someone else's identity, through the registry: exit 1, the check named.
    let e = verify(
        home.path(),
        &image,
        "eve@example.org",
        oauth,
        &public_good(),
        &[],
    )
    .fails(1);
    assert!(e.stderr.contains("identity mismatch"), "{}", e.stderr);

    // The trusted root containers/image's tests use: its fulcio-chain (intermediate and
    // fulcio_v1.crt.pem) and rekor.pub, without a CT log key, so the SCT cannot be checked
    // unless asked not to.
    let ci_root = testdata_dir().join("keyless/containers-image-trusted-root.json");
    let e = verify(home.path(), &image, "mitr@redhat.com", oauth, &ci_root, &[]).fails(1);
    assert!(e.stderr.contains("SCT check failed"), "{}", e.stderr);
    verify(
        home.path(),
        &image,
        "mitr@redhat.com",
        oauth,
        &ci_root,
        &["--insecure-ignore-sct"],
    )
    .ok();
}

#[test]
fn the_containers_image_trusted_root_is_made_from_its_fixture_files() {
    // testdata/keyless/make-containers-image-root.py wrote it; the same bytes again.
    let out = std::process::Command::new("python3")
        .arg(testdata_dir().join("keyless/make-containers-image-root.py"))
        .arg("--stdout")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file =
        std::fs::read(testdata_dir().join("keyless/containers-image-trusted-root.json")).unwrap();
    assert_eq!(out.stdout, file);
}

// ---------------------------------------------------------------------------------------------
// A test PKI: Fulcio-like CA, CT log, Rekor

const DAY: i64 = 86400;
/// 2024-01-01T00:00:00Z.
const JAN1: i64 = 1704067200;

struct Pki {
    ca_key: rcgen::KeyPair,
    ca: rcgen::Certificate,
    ct: p256::ecdsa::SigningKey,
    rekor: p256::ecdsa::SigningKey,
}

fn spki(key: &p256::ecdsa::SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

fn random_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)
}

fn der_sig(key: &p256::ecdsa::SigningKey, msg: &[u8]) -> Vec<u8> {
    let sig: p256::ecdsa::Signature = key.sign(msg);
    sig.to_der().as_bytes().to_vec()
}

fn rfc3339(t: i64) -> String {
    graft::timestamp::Timestamp(t).rfc3339()
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "graft test fulcio");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let ca = p.self_signed(&ca_key).unwrap();
        Pki {
            ca_key,
            ca,
            ct: random_key(),
            rekor: random_key(),
        }
    }

    /// The trusted root for this PKI.
    fn trusted_root(&self) -> Value {
        let log = |key: &p256::ecdsa::SigningKey, url: &str| {
            let spki = spki(key);
            json!({
                "baseUrl": url, "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": B64.encode(&spki), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2020-01-01T00:00:00Z"}},
                "logId": {"keyId": B64.encode(Sha256::digest(&spki))},
            })
        };
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor, "https://rekor.test")],
            "certificateAuthorities": [{
                "subject": {"organization": "graft", "commonName": "graft test fulcio"},
                "uri": "https://fulcio.test",
                "certChain": {"certificates": [{"rawBytes": B64.encode(self.ca.der())}]},
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            }],
            "ctlogs": [log(&self.ct, "https://ctfe.test")],
        })
    }

    /// A leaf for `email` issued by `issuer`, valid on the days `[from, to]` (Unix seconds at
    /// midnight), with an SCT by the CT log; and its key.
    fn leaf(
        &self,
        email: &str,
        issuer: &str,
        from: i64,
        to: i64,
    ) -> (Vec<u8>, p256::ecdsa::SigningKey) {
        self.leaf_by((&self.ca, &self.ca_key), email, issuer, from, to)
    }

    /// An intermediate CA issued by the root, valid 2020 to 2040.
    fn intermediate(&self) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "graft test fulcio intermediate");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
        (p.signed_by(&key, &self.ca, &self.ca_key).unwrap(), key)
    }

    /// As [`Pki::leaf`], issued by the CA `(certificate, key)`.
    fn leaf_by(
        &self,
        (ca, ca_key): (&rcgen::Certificate, &rcgen::KeyPair),
        email: &str,
        issuer: &str,
        from: i64,
        to: i64,
    ) -> (Vec<u8>, p256::ecdsa::SigningKey) {
        let leaf_kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&leaf_kp.serialize_der()).unwrap();
        let date = |t: i64| {
            let ts = rfc3339(t);
            let n = |r: std::ops::Range<usize>| ts[r].parse::<u32>().unwrap();
            rcgen::date_time_ymd(n(0..4) as i32, n(5..7) as u8, n(8..10) as u8)
        };
        let issuer_ext = x509_cert::der::asn1::Utf8StringRef::new(issuer)
            .unwrap()
            .to_der()
            .unwrap();
        let params = |sct: Option<Vec<u8>>| {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(email.try_into().unwrap())];
            p.serial_number = Some(rcgen::SerialNumber::from(vec![0x11, 0x22, 0x33]));
            p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
            p.not_before = date(from);
            p.not_after = date(to);
            p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                issuer_ext.clone(),
            )];
            if let Some(sct) = sct {
                p.custom_extensions
                    .push(rcgen::CustomExtension::from_oid_content(
                        &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
                        sct,
                    ));
            }
            p
        };
        // The precertificate's TBS: the same certificate without the SCT list (last).
        let pre = params(None).signed_by(&leaf_kp, ca, ca_key).unwrap();
        let tbs = x509_cert::Certificate::from_der(pre.der())
            .unwrap()
            .tbs_certificate
            .to_der()
            .unwrap();
        let ca_spki = x509_cert::Certificate::from_der(ca.der())
            .unwrap()
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap();
        let timestamp = (from as u64 + 60) * 1000;
        let mut signed = vec![0u8, 0];
        signed.extend_from_slice(&timestamp.to_be_bytes());
        signed.extend_from_slice(&1u16.to_be_bytes());
        signed.extend_from_slice(&Sha256::digest(&ca_spki));
        signed.extend_from_slice(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend_from_slice(&tbs);
        signed.extend_from_slice(&[0, 0]);
        let sig = der_sig(&self.ct, &signed);
        let mut sct = vec![0u8];
        sct.extend_from_slice(&Sha256::digest(spki(&self.ct)));
        sct.extend_from_slice(&timestamp.to_be_bytes());
        sct.extend_from_slice(&[0, 0, 4, 3]);
        sct.extend_from_slice(&(sig.len() as u16).to_be_bytes());
        sct.extend_from_slice(&sig);
        let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&(sct.len() as u16).to_be_bytes());
        list.extend_from_slice(&sct);
        let ext = x509_cert::der::asn1::OctetString::new(list)
            .unwrap()
            .to_der()
            .unwrap();
        let cert = params(Some(ext)).signed_by(&leaf_kp, ca, ca_key).unwrap();
        (cert.der().to_vec(), key)
    }

    /// cosign's `dev.sigstore.cosign/bundle` annotation for a hashedrekord entry.
    fn rekor_bundle(&self, payload: &[u8], sig: &[u8], cert_pem: &str, time: i64) -> String {
        let body = json!({
            "apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": sha256_hex(payload)}},
                "signature": {"content": B64.encode(sig),
                    "publicKey": {"content": B64.encode(cert_pem)}},
            },
        });
        self.rekor_annotation(&body, time)
    }

    /// A Rekor entry for `body` logged at `time`: (base64 body, log ID, SET).
    fn rekor_entry(&self, body: &Value, time: i64) -> (String, Vec<u8>, Vec<u8>) {
        let body = B64.encode(serde_json::to_vec(body).unwrap());
        let log_id = Sha256::digest(spki(&self.rekor)).to_vec();
        let canonical = format!(
            r#"{{"body":"{body}","integratedTime":{time},"logID":"{}","logIndex":7}}"#,
            hex::encode(&log_id)
        );
        let set = der_sig(&self.rekor, canonical.as_bytes());
        (body, log_id, set)
    }

    /// The `dev.sigstore.cosign/bundle` annotation for `body`.
    fn rekor_annotation(&self, body: &Value, time: i64) -> String {
        let (body, log_id, set) = self.rekor_entry(body, time);
        json!({
            "SignedEntryTimestamp": B64.encode(set),
            "Payload": {"body": body, "integratedTime": time, "logIndex": 7,
                "logID": hex::encode(log_id)},
        })
        .to_string()
    }
}

fn pem(der: &[u8]) -> String {
    let b = B64.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// A layout at `dir` with a small image signed keylessly by `leaf` (key `key`), logged at
/// `time`; `payload_edit` may change the payload after signing. Returns the `oci:` reference.
fn signed_layout(
    pki: &Pki,
    dir: &Path,
    leaf: &(Vec<u8>, p256::ecdsa::SigningKey),
    time: i64,
    payload_edit: impl Fn(Vec<u8>) -> Vec<u8>,
) -> String {
    signed_layout_chain(pki, dir, leaf, &pem(pki.ca.der()), time, payload_edit)
}

/// As [`signed_layout`], with `chain` (PEM) as the `dev.sigstore.cosign/chain` annotation.
fn signed_layout_chain(
    pki: &Pki,
    dir: &Path,
    (leaf, key): &(Vec<u8>, p256::ecdsa::SigningKey),
    chain: &str,
    time: i64,
    payload_edit: impl Fn(Vec<u8>) -> Vec<u8>,
) -> String {
    let config = put_blob(
        dir,
        OCI_CONFIG,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let image = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [],
    }))
    .unwrap();
    let payload = serde_json::to_vec(&json!({
        "critical": {"identity": {"docker-reference": "registry.test/sci/img"},
            "image": {"docker-manifest-digest": sha256_digest(&image)},
            "type": "cosign container image signature"},
        "optional": null,
    }))
    .unwrap();
    let sig = der_sig(key, &payload);
    let cert_pem = pem(leaf);
    let annotations = json!({
        "dev.cosignproject.cosign/signature": B64.encode(&sig),
        "dev.sigstore.cosign/certificate": cert_pem,
        "dev.sigstore.cosign/chain": chain,
        "dev.sigstore.cosign/bundle": pki.rekor_bundle(&payload, &sig, &cert_pem, time),
    });
    let payload = payload_edit(payload);
    let sig_m = sig_manifest(dir, &payload, &annotations);
    layout(dir, &image, OCI_MANIFEST, &sig_m);
    format!("oci:{}:1", dir.display())
}

#[test]
fn keyless_failures_name_the_check_and_exit_1() {
    let home = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let root = home.path().join("trusted_root.json");
    std::fs::write(&root, serde_json::to_vec(&pki.trusted_root()).unwrap()).unwrap();
    let (id, iss) = ("dev@example.org", "https://issuer.test");
    let noon = JAN1 + DAY / 2;
    let leaf = pki.leaf(id, iss, JAN1, JAN1 + DAY);
    let good = signed_layout(&pki, &home.path().join("good"), &leaf, noon, |p| p);

    // The control: everything right verifies.
    let ok = verify(home.path(), &good, id, iss, &root, &[]).ok();
    assert!(ok.stderr.contains("dev@example.org"), "{}", ok.stderr);

    let fails = |image: &str, id: &str, iss: &str, root: &Path, want: &[&str]| {
        let r = verify(home.path(), image, id, iss, root, &[]).fails(1);
        for w in want {
            assert!(r.stderr.contains(w), "want {w:?}:\n{}", r.stderr);
        }
    };
    // Wrong identity, wrong issuer (and the regexp forms).
    fails(
        &good,
        "eve@example.org",
        iss,
        &root,
        &["identity mismatch", "eve@example.org", "dev@example.org"],
    );
    fails(
        &good,
        id,
        "https://accounts.google.com",
        &root,
        &["OIDC issuer mismatch", "https://issuer.test"],
    );
    let r = graft(
        home.path(),
        &[
            "verify",
            "--certificate-identity-regexp",
            "^eve@",
            "--certificate-oidc-issuer",
            iss,
            "--trusted-root",
            root.to_str().unwrap(),
            &good,
        ],
    )
    .fails(1);
    assert!(r.stderr.contains("identity mismatch"), "{}", r.stderr);
    // A payload changed after signing (stored under its new digest, so only the signature
    // can tell).
    let tampered = signed_layout(&pki, &home.path().join("tampered"), &leaf, noon, |p| {
        String::from_utf8(p)
            .unwrap()
            .replace("sci/img", "sci/evil")
            .into_bytes()
    });
    fails(
        &tampered,
        id,
        iss,
        &root,
        &["signature check failed", "altered after signing"],
    );
    // The wrong trusted root: public-good does not know this Rekor (nor this CA).
    fails(
        &good,
        id,
        iss,
        &public_good(),
        &[
            "transparency-log check failed",
            "not a transparency log of the trusted root",
        ],
    );
    // A trusted root with the right logs but another CA.
    let mut other = pki.trusted_root();
    other["certificateAuthorities"] = Pki::new().trusted_root()["certificateAuthorities"].clone();
    let other_root = home.path().join("other_root.json");
    std::fs::write(&other_root, serde_json::to_vec(&other).unwrap()).unwrap();
    fails(
        &good,
        id,
        iss,
        &other_root,
        &["certificate chain check failed", "does not chain"],
    );
    // Expired: the certificate's notAfter (Jan 1) is before the log's integrated time (Jan 2).
    let old = pki.leaf(id, iss, JAN1 - DAY, JAN1);
    let expired = signed_layout(
        &pki,
        &home.path().join("expired"),
        &old,
        JAN1 + DAY + 3600,
        |p| p,
    );
    fails(
        &expired,
        id,
        iss,
        &root,
        &["certificate expired", "2024-01-02T01:00:00Z"],
    );
    // The same certificate logged in time verifies: the wall clock plays no part.
    let in_time = signed_layout(
        &pki,
        &home.path().join("in-time"),
        &old,
        JAN1 - DAY / 2,
        |p| p,
    );
    verify(home.path(), &in_time, id, iss, &root, &[]).ok();
}

/// A trusted root whose CA entry with an intermediate ended on 2023-12-31 (a later entry has
/// the same root alone): a signature of 2024 carrying that intermediate in its chain
/// annotation does not bring it back, as cosign builds the path from the entry alone.
#[test]
fn a_carried_intermediate_of_an_ended_ca_entry_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (inter, inter_key) = pki.intermediate();
    let (id, iss) = ("dev@example.org", "https://issuer.test");
    let noon = JAN1 + DAY / 2;
    let leaf = pki.leaf_by((&inter, &inter_key), id, iss, JAN1, JAN1 + DAY);
    let chain = format!("{}{}", pem(inter.der()), pem(pki.ca.der()));
    let image = signed_layout_chain(&pki, &home.path().join("l"), &leaf, &chain, noon, |p| p);
    let write_root = |name: &str, entries: Value| {
        let mut root = pki.trusted_root();
        root["certificateAuthorities"] = entries;
        let path = home.path().join(name);
        std::fs::write(&path, serde_json::to_vec(&root).unwrap()).unwrap();
        path
    };
    let entry = |certs: &[&[u8]], valid: Value| {
        let certs: Vec<Value> = certs
            .iter()
            .map(|c| json!({"rawBytes": B64.encode(c)}))
            .collect();
        json!({"uri": "https://fulcio.test", "certChain": {"certificates": certs},
            "validFor": valid})
    };
    let with_inter = [inter.der().as_ref(), pki.ca.der().as_ref()];
    // The control: the entry with the intermediate still valid (the SCT is checked with the
    // intermediate's key).
    let open = write_root(
        "open.json",
        json!([entry(&with_inter, json!({"start": "2020-01-01T00:00:00Z"}))]),
    );
    verify(home.path(), &image, id, iss, &open, &[]).ok();
    let ended = write_root(
        "ended.json",
        json!([
            entry(
                &with_inter,
                json!({"start": "2020-01-01T00:00:00Z", "end": "2023-12-31T00:00:00Z"})
            ),
            entry(
                &[pki.ca.der().as_ref()],
                json!({"start": "2023-12-31T00:00:00Z"})
            ),
        ]),
    );
    let r = verify(home.path(), &image, id, iss, &ended, &[]).fails(1);
    assert!(
        r.stderr.contains("certificate chain check failed"),
        "{}",
        r.stderr
    );
}

#[test]
fn keyless_flags_are_checked_before_anything_is_read() {
    let home = tempfile::tempdir().unwrap();
    let pg = public_good();
    let pg = pg.to_str().unwrap();
    let image = "oci:/nonexistent/layout:1";
    for cmd in ["verify", "verify-attestation"] {
        let cases: [(&[&str], &str); 6] = [
            (&[], "give --key PUB, or --certificate-identity"),
            (
                &[
                    "--key",
                    "k.pub",
                    "--certificate-identity",
                    "a",
                    "--certificate-oidc-issuer",
                    "b",
                    "--trusted-root",
                    pg,
                ],
                "alternatives",
            ),
            (
                &[
                    "--certificate-identity",
                    "a",
                    "--certificate-oidc-issuer",
                    "b",
                ],
                "graft never fetches trust roots",
            ),
            (
                &["--certificate-identity", "a", "--trusted-root", pg],
                "--certificate-oidc-issuer or --certificate-oidc-issuer-regexp",
            ),
            (
                &[
                    "--certificate-identity-regexp",
                    "(",
                    "--certificate-oidc-issuer",
                    "b",
                    "--trusted-root",
                    pg,
                ],
                "is not a regular expression",
            ),
            (
                &[
                    "--certificate-identity",
                    "a",
                    "--certificate-oidc-issuer",
                    "b",
                    "--trusted-root",
                    "/nonexistent/root.json",
                ],
                "--trusted-root /nonexistent/root.json: cannot read it",
            ),
        ];
        for (flags, want) in cases {
            let mut args = vec![cmd];
            args.extend_from_slice(flags);
            args.push(image);
            let r = graft(home.path(), &args).fails(2);
            assert!(
                r.stderr.contains(want),
                "{cmd} {flags:?}: want {want:?}:\n{}",
                r.stderr
            );
        }
    }
}

/// A DSSE envelope of `statement` signed by `key`: (envelope JSON, signature).
fn envelope(key: &p256::ecdsa::SigningKey, statement: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let pt = "application/vnd.in-toto+json";
    let sig = der_sig(key, &graft::sign::dsse::pae(pt, statement));
    let env = json!({"payloadType": pt, "payload": B64.encode(statement),
        "signatures": [{"keyid": "", "sig": B64.encode(&sig)}]});
    (serde_json::to_vec(&env).unwrap(), sig)
}

#[test]
fn keyless_attestations_and_bundle_signatures_verify_and_fail_by_name() {
    let home = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let root = home.path().join("trusted_root.json");
    std::fs::write(&root, serde_json::to_vec(&pki.trusted_root()).unwrap()).unwrap();
    let (id, iss) = ("ci@example.org", "https://issuer.test");
    let time = JAN1 + DAY / 2;
    let leaf = pki.leaf(id, iss, JAN1, JAN1 + DAY);
    let (cert, key) = (&leaf.0, &leaf.1);
    let cert_pem = pem(cert);
    let dir = home.path().join("layout");
    let config = put_blob(
        &dir,
        OCI_CONFIG,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let image = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [],
    }))
    .unwrap();
    let hex_digest = sha256_hex(&image);
    let statement = |predicate_type: &str| {
        serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "registry.test/sci/img", "digest": {"sha256": hex_digest}}],
            "predicateType": predicate_type,
            "predicate": {"buildDefinition": {}},
        }))
        .unwrap()
    };

    // A `.att` layer, Rekor kind intoto 0.0.2 (signature base64 twice, as Rekor keeps it).
    let slsa = statement("https://slsa.dev/provenance/v1");
    let (env, sig) = envelope(key, &slsa);
    let body = json!({"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {
        "envelope": {"payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": B64.encode(B64.encode(&sig)), "publicKey": B64.encode(&cert_pem)}]},
        "hash": {"algorithm": "sha256", "value": sha256_hex(&env)},
        "payloadHash": {"algorithm": "sha256", "value": sha256_hex(&slsa)}}}});
    let att = cosign_manifest(
        &dir,
        "application/vnd.dsse.envelope.v1+json",
        &env,
        &json!({
            "predicateType": "https://slsa.dev/provenance/v1",
            "dev.cosignproject.cosign/signature": "",
            "dev.sigstore.cosign/certificate": cert_pem,
            "dev.sigstore.cosign/bundle": pki.rekor_annotation(&body, time),
        }),
    );

    // A cosign v3 signature bundle (DSSE, Rekor kind dsse 0.0.1) as a referrer, found through
    // the referrers fallback tag.
    let sign = statement("https://sigstore.dev/cosign/sign/v1");
    let (env2, sig2) = envelope(key, &sign);
    let body2 = json!({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "envelopeHash": {"algorithm": "sha256", "value": sha256_hex(&env2)},
        "payloadHash": {"algorithm": "sha256", "value": sha256_hex(&sign)},
        "signatures": [{"signature": B64.encode(&sig2), "verifier": B64.encode(&cert_pem)}]}});
    let (b64_body, log_id, set) = pki.rekor_entry(&body2, time);
    let env2: Value = serde_json::from_slice(&env2).unwrap();
    let bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let bundle = serde_json::to_vec(&json!({
        "mediaType": bundle_type,
        "verificationMaterial": {
            "certificate": {"rawBytes": B64.encode(cert)},
            "tlogEntries": [{"logIndex": "7", "logId": {"keyId": B64.encode(&log_id)},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                "integratedTime": time.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": B64.encode(&set)},
                "canonicalizedBody": b64_body}],
        },
        "dsseEnvelope": env2,
    }))
    .unwrap();
    let empty = put_blob(&dir, "application/vnd.oci.empty.v1+json", b"{}");
    let layer = put_blob(&dir, bundle_type, &bundle);
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": bundle_type,
        "config": empty, "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256_digest(&image), "size": image.len()},
    }))
    .unwrap();
    let mut rdesc = put_blob(&dir, OCI_MANIFEST, &referrer);
    rdesc["artifactType"] = json!(bundle_type);
    let fallback = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [rdesc],
    }))
    .unwrap();
    layout_with(
        &dir,
        &image,
        OCI_MANIFEST,
        &[
            (format!("sha256-{hex_digest}.att"), OCI_MANIFEST, att),
            (
                format!("sha256-{hex_digest}"),
                "application/vnd.oci.image.index.v1+json",
                fallback,
            ),
        ],
    );
    let image_ref = format!("oci:{}:1", dir.display());
    let rootp = root.to_str().unwrap();
    let keyless = |cmd: &str, id: &str| {
        graft(
            home.path(),
            &[
                "-o",
                "json",
                cmd,
                "--certificate-identity",
                id,
                "--certificate-oidc-issuer",
                iss,
                "--trusted-root",
                rootp,
                &image_ref,
            ],
        )
    };
    let j = keyless("verify-attestation", id).ok().json();
    assert_eq!(
        j["attestations"][0]["predicate_type"],
        "https://slsa.dev/provenance/v1"
    );
    assert_eq!(j["attestations"][0]["keyless"]["identity"], id);
    let j = keyless("verify", id).ok().json();
    assert_eq!(j["signatures"][0]["form"], "bundle");
    assert_eq!(j["signatures"][0]["keyless"]["integrated_time"], time);
    for cmd in ["verify", "verify-attestation"] {
        let r = keyless(cmd, "eve@example.org").fails(1);
        assert!(
            r.stderr.contains("identity mismatch"),
            "{cmd}: {}",
            r.stderr
        );
        assert_eq!(r.json()["failures"][0]["kind"], "wrong-identity", "{cmd}");
    }
    // The wrong trusted root fails both, naming the log.
    for cmd in ["verify", "verify-attestation"] {
        let r = graft(
            home.path(),
            &[
                cmd,
                "--certificate-identity",
                id,
                "--certificate-oidc-issuer",
                iss,
                "--trusted-root",
                public_good().to_str().unwrap(),
                &image_ref,
            ],
        )
        .fails(1);
        assert!(
            r.stderr.contains("transparency-log check failed"),
            "{cmd}: {}",
            r.stderr
        );
    }
}
