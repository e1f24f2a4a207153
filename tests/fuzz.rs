//! Property and structure-aware random tests over every parser that reads outside input:
//! references, digests, platforms, manifests and indexes (lenient view), a layout's
//! `index.json`, archive scanning, library YAML, Dockerfile FROM lines, sync files, cosign
//! keys, signature payloads, DSSE envelopes and bundles, and the keyless material (trusted
//! roots, Rekor entries, SCTs).
//!
//! The properties: no panic and no hang on any input (inputs are small), and for the types that
//! round-trip (references, digests, platforms) `parse(display(x)) == x`. Inputs are either
//! built the way real documents are (then mutated), or arbitrary bytes.
//!
//! In the suite each property runs a few dozen cases (`PROPTEST_CASES` overrides it);
//! `benches/fuzz.sh TARGET|all SECONDS` runs them for longer with fresh seeds. Each test is
//! named after its target: `cargo test --test fuzz digest`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use graft::oci::{Digest, Platform, RawManifest};
use graft::reference::{DockerRef, ImageRef, LayoutRef};

/// The suite's default number of cases per property (the debug build must stay quick).
const SUITE_CASES: u32 = 48;

/// Cases from `PROPTEST_CASES`, else [`SUITE_CASES`]; the seed from `PROPTEST_RNG_SEED`
/// (proptest reads it); no regression files written into the tree.
fn config() -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = SUITE_CASES;
    }
    c.failure_persistence = None;
    c
}

/// Run `test` over `strategy` with [`config`].
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Generators.

fn hex(len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..16, len)
        .prop_map(|v| v.iter().map(|d| format!("{d:x}")).collect())
}

fn arb_digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        hex(64).prop_map(|h| format!("sha256:{h}")),
        hex(128).prop_map(|h| format!("sha512:{h}")),
    ]
    .prop_map(|s| s.parse().expect("a generated digest parses"))
}

/// A registry host that graft does not normalise (not Docker Hub).
fn registry() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}\\.[a-z]{2,5}",
        "[a-z][a-z0-9-]{0,8}\\.[a-z]{2,5}:[1-9][0-9]{0,4}",
        "127\\.0\\.0\\.1:[1-9][0-9]{0,4}",
        Just("localhost".to_string()),
        "localhost:[1-9][0-9]{0,4}",
    ]
}

/// A repository path as distribution's grammar allows.
fn repository() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?", 1..4).prop_map(|v| v.join("/"))
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}"
}

fn docker_ref() -> impl Strategy<Value = DockerRef> {
    (
        registry(),
        repository(),
        proptest::option::of(tag()),
        proptest::option::of(arb_digest()),
    )
        .prop_map(|(registry, repository, tag, digest)| {
            // Without tag and digest a reference means `:latest`.
            let tag = match (&tag, &digest) {
                (None, None) => Some("latest".to_string()),
                _ => tag,
            };
            DockerRef {
                registry,
                repository,
                tag,
                digest,
            }
        })
}

fn arb_platform() -> impl Strategy<Value = Platform> {
    (
        "[a-z0-9_.-]{1,10}",
        "[a-z0-9_.-]{1,10}",
        proptest::option::of("[a-z0-9_.-]{1,6}"),
    )
        .prop_map(|(os, architecture, variant)| Platform {
            os,
            architecture,
            variant,
            ..Platform::default()
        })
}

/// Short text, mostly printable, with the characters parsers split on.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "[a-z0-9:/@._-]{0,80}",
        any::<String>().prop_map(|s| s.chars().take(80).collect()),
    ]
}

/// A JSON value a few levels deep, with the keys OCI documents use.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let key = prop_oneof![
        Just("schemaVersion".to_string()),
        Just("mediaType".to_string()),
        Just("manifests".to_string()),
        Just("layers".to_string()),
        Just("config".to_string()),
        Just("digest".to_string()),
        Just("size".to_string()),
        Just("platform".to_string()),
        Just("annotations".to_string()),
        Just("subject".to_string()),
        Just("architecture".to_string()),
        Just("os".to_string()),
        Just("payloadType".to_string()),
        Just("payload".to_string()),
        Just("signatures".to_string()),
        Just("critical".to_string()),
        Just("image".to_string()),
        Just("docker-manifest-digest".to_string()),
        Just("identity".to_string()),
        Just("type".to_string()),
        Just("org.opencontainers.image.ref.name".to_string()),
        "[a-zA-Z.]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u64..1 << 40).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        arb_digest().prop_map(|d| Value::String(d.to_string())),
        text().prop_map(Value::String),
        prop_oneof![
            Just("application/vnd.oci.image.manifest.v1+json"),
            Just("application/vnd.oci.image.index.v1+json"),
            Just("application/vnd.docker.distribution.manifest.v2+json"),
            Just("application/vnd.docker.distribution.manifest.list.v2+json"),
            Just("application/vnd.dev.cosign.simplesigning.v1+json"),
            Just("application/vnd.in-toto+json"),
            Just("cosign container image signature"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A document as bytes: a generated JSON value (sometimes cut or with a byte flipped), or
/// arbitrary bytes.
fn document() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => (json_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, i, b)| {
            let mut bytes = serde_json::to_vec(&v).unwrap();
            if !bytes.is_empty() {
                let at = i.index(bytes.len());
                if b % 2 == 0 {
                    bytes.truncate(at);
                } else {
                    bytes[at] = b;
                }
            }
            bytes
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---------------------------------------------------------------------------------------------
// Round trips.

#[test]
fn digest() {
    check(arb_digest(), |d| {
        let back: Digest = d
            .to_string()
            .parse()
            .map_err(|e| TestCaseError::fail(format!("{d} does not parse back: {e}")))?;
        prop_assert_eq!(back, d);
        Ok(())
    });
    check(text(), |s| {
        if let Ok(d) = s.parse::<Digest>() {
            prop_assert_eq!(d.to_string(), s);
        }
        Ok(())
    });
}

#[test]
fn reference() {
    check(docker_ref(), |r| {
        let text = r.to_string();
        let back =
            DockerRef::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&back, &r);
        let image: ImageRef = format!("docker://{text}")
            .parse()
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(image, ImageRef::Docker(r));
        Ok(())
    });
    check(
        (
            "(/[a-z0-9._-]{1,8}){1,3}",
            proptest::option::of("[ -~]{1,40}"),
            any::<bool>(),
        ),
        |(path, tag, archive)| {
            let l = LayoutRef {
                path: PathBuf::from(path),
                tag,
            };
            let r = match archive {
                true => ImageRef::Archive(l),
                false => ImageRef::Layout(l),
            };
            let back: ImageRef = r
                .to_string()
                .parse()
                .map_err(|e| TestCaseError::fail(format!("{r}: {e}")))?;
            prop_assert_eq!(back, r);
            Ok(())
        },
    );
    check(text(), |s| {
        let _ = DockerRef::parse(&s);
        let _ = s.parse::<ImageRef>();
        for prefix in ["docker://", "oci:", "oci-archive:"] {
            if let Ok(r) = format!("{prefix}{s}").parse::<ImageRef>() {
                // Whatever parses prints as something that parses to the same.
                let again: ImageRef = r
                    .to_string()
                    .parse()
                    .map_err(|e| TestCaseError::fail(format!("{r} does not parse back: {e}")))?;
                prop_assert_eq!(again, r);
            }
        }
        Ok(())
    });
}

#[test]
fn platform() {
    check(arb_platform(), |p| {
        let back: Platform = p
            .to_string()
            .parse()
            .map_err(|e| TestCaseError::fail(format!("{p}: {e}")))?;
        prop_assert_eq!(back, p);
        Ok(())
    });
    check(text(), |s| {
        if let Ok(p) = s.parse::<Platform>() {
            let _ = p.normalized();
            let _ = p.matches(&p);
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Documents.

#[test]
fn manifest() {
    let content_type = proptest::option::of(prop_oneof![
        Just("application/vnd.oci.image.manifest.v1+json".to_string()),
        Just("application/vnd.oci.image.index.v1+json".to_string()),
        Just("application/json".to_string()),
        text(),
    ]);
    check((document(), content_type), |(bytes, ct)| {
        if let Ok(m) = RawManifest::from_bytes(bytes.into(), ct.as_deref()) {
            let _ = m.is_index();
            let _ = m.blobs();
            let _ = m.descriptor();
            let v = m.view();
            for d in v.manifests.iter().chain(&v.layers) {
                let _ = d.platform.as_ref().map(|p| p.to_string());
            }
        }
        Ok(())
    });
}

/// A layout directory with `index.json` = `index` (and `oci-layout`), opened for `tag` and
/// resolved.
fn open_layout(dir: &Path, index: &[u8], tag: Option<String>) {
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), index).unwrap();
    let r = LayoutRef {
        path: dir.to_path_buf(),
        tag,
    };
    if let Ok(src) = graft::store::layout::LayoutSource::open(r) {
        use graft::store::Source;
        let _ = runtime().block_on(src.resolve());
    }
}

#[test]
fn index_json() {
    check(
        (document(), proptest::option::of(prop_oneof![tag(), text()])),
        |(index, tag)| {
            let dir = tempdir();
            open_layout(dir.path(), &index, tag);
            Ok(())
        },
    );
}

/// Members of a crafted archive: names an OCI layout tar has, and hostile ones.
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("oci-layout".to_string()),
        Just("index.json".to_string()),
        Just("./index.json".to_string()),
        Just("blobs/".to_string()),
        Just("blobs/sha256/".to_string()),
        hex(64).prop_map(|h| format!("blobs/sha256/{h}")),
        Just("../escape".to_string()),
        Just("/abs/index.json".to_string()),
        "[a-z./]{1,20}",
    ]
}

#[test]
fn archive() {
    let member = (member_name(), document(), 0u8..4);
    check(
        (
            proptest::collection::vec(member, 0..6),
            any::<prop::sample::Index>(),
            any::<u8>(),
            any::<bool>(),
        ),
        |(members, at, byte, flip)| {
            let mut tar = tar::Builder::new(Vec::new());
            for (name, body, kind) in &members {
                let mut h = tar::Header::new_ustar();
                let _ = h.set_path(name);
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(match kind {
                    0 | 1 => tar::EntryType::Regular,
                    2 => tar::EntryType::Directory,
                    _ => tar::EntryType::Symlink,
                });
                if *kind == 3 {
                    let _ = h.set_link_name("index.json");
                    h.set_size(0);
                }
                h.set_cksum();
                let body: &[u8] = if *kind >= 2 { &[] } else { body };
                let _ = tar.append(&h, body);
            }
            let mut bytes = tar.into_inner().unwrap_or_default();
            if flip && !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let dir = tempdir();
            let file = dir.path().join("a.tar");
            std::fs::write(&file, &bytes).unwrap();
            let local = graft::store::local::LocalStores::new();
            let r = LayoutRef {
                path: file,
                tag: None,
            };
            if let Ok(src) = graft::store::archive::ArchiveSource::open(r, &local) {
                use graft::store::Source;
                let _ = runtime().block_on(src.resolve());
            }
            Ok(())
        },
    );
}

/// YAML-ish text: generated mappings with the keys graft's files use, or arbitrary text.
fn yaml() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("version"),
        Just("science"),
        Just("image"),
        Just("compat"),
        Just("tags"),
        Just("repo"),
        Just("target"),
        Just("label_prefix"),
        Just("platforms"),
        Just("labels"),
        Just("include"),
        Just("remove"),
        Just("config"),
        Just("env"),
        Just("destination"),
        Just("sources"),
        Just("repository"),
        Just("allow_tags"),
        Just("latest"),
        Just("platform"),
        Just("with_attachments"),
        Just("<<"),
    ];
    let scalar = prop_oneof![
        Just("oci:sci:1.0".to_string()),
        Just("docker://127.0.0.1:1/a/b:1".to_string()),
        Just("oci:out".to_string()),
        Just("linux/amd64".to_string()),
        Just("'^1\\.\\d+$'".to_string()),
        Just("[a, b]".to_string()),
        Just("{}".to_string()),
        Just("*a".to_string()),
        Just("&a x".to_string()),
        Just("\"{version}-{build}\"".to_string()),
        "[ -~]{0,20}",
    ];
    let line = (0usize..3, key, scalar)
        .prop_map(|(indent, k, v)| format!("{}{k}: {v}", "  ".repeat(indent)));
    prop_oneof![
        4 => proptest::collection::vec(line, 0..10).prop_map(|l| l.join("\n") + "\n"),
        1 => proptest::collection::vec(
            prop_oneof!["[ -~]{0,30}", Just("- x".to_string()), Just("---".to_string())],
            0..8
        )
        .prop_map(|l| l.join("\n")),
    ]
}

#[test]
fn library() {
    check((yaml(), yaml(), yaml()), |(graft_yaml, manifest, layer)| {
        let dir = tempdir();
        let root = dir.path();
        std::fs::create_dir_all(root.join("manifests")).unwrap();
        std::fs::create_dir_all(root.join("layers/c/files")).unwrap();
        std::fs::write(root.join("graft.yaml"), graft_yaml).unwrap();
        std::fs::write(root.join("manifests/m.yaml"), manifest).unwrap();
        std::fs::write(root.join("layers/c/layer.yaml"), layer).unwrap();
        std::fs::write(root.join("layers/c/files/x"), "x").unwrap();
        let _ = graft::library::Library::open(root);
        Ok(())
    });
}

/// Dockerfile text: FROM/ARG/RUN lines with variables, stages, continuations, heredocs and
/// directives, or arbitrary printable text.
fn dockerfile_text() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("FROM".to_string()),
        Just("from --platform=$BUILDPLATFORM".to_string()),
        Just("ARG".to_string()),
        Just("AS".to_string()),
        Just("scratch".to_string()),
        Just("RUN <<EOF".to_string()),
        Just("EOF".to_string()),
        Just("${A:-${B:+x}}".to_string()),
        Just("$A".to_string()),
        Just("A=\"q".to_string()),
        Just("\\".to_string()),
        Just("`".to_string()),
        Just("# escape=`".to_string()),
        Just("img@sha256:00".to_string()),
        "[ -~]{0,12}",
    ];
    prop_oneof![
        4 => proptest::collection::vec(proptest::collection::vec(word, 0..5), 0..12)
            .prop_map(|lines| lines.iter().map(|l| l.join(" ")).collect::<Vec<_>>().join("\n")),
        1 => "[ -~\n]{0,200}",
    ]
}

#[test]
fn dockerfile() {
    use graft::library::dockerfile::Dockerfile;
    let args: std::collections::BTreeMap<String, String> =
        [("A".to_string(), "reg.example/x".to_string())].into();
    check(dockerfile_text(), |text| {
        if let Ok(d) = Dockerfile::parse(&text, &args) {
            prop_assert!(!d.stages.is_empty());
            let _ = d.external_bases(None);
            let _ = d.external_bases(Some("a"));
        }
        Ok(())
    });
}

#[test]
fn sync_file() {
    check(yaml(), |text| {
        let dir = tempdir();
        let file = dir.path().join("sync.yaml");
        std::fs::write(&file, text).unwrap();
        if let Ok(cfg) = graft::ops::mirror::load_config(&file) {
            let _ = graft::ops::mirror::parse_destination(&cfg.destination);
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Signing documents.

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pem(label: &str, body: &[u8]) -> String {
    let b = b64(body);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A cosign encrypted key document with small scrypt costs (the parser's limits on large ones
/// are another test's subject) and random salt, nonce and ciphertext.
fn encrypted_key() -> impl Strategy<Value = Vec<u8>> {
    (
        1u32..10,
        prop_oneof![Just(8u32), 1u32..16],
        prop_oneof![Just(1u32), 1u32..3],
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<u8>(), 0..30),
        proptest::collection::vec(any::<u8>(), 0..200),
        prop_oneof![Just("scrypt".to_string()), text()],
        prop_oneof![Just("nacl/secretbox".to_string()), text()],
    )
        .prop_map(|(log_n, r, p, salt, nonce, ct, kdf, cipher)| {
            serde_json::to_vec(&serde_json::json!({
                "kdf": {"name": kdf, "params": {"N": 1u64 << log_n, "r": r, "p": p}, "salt": b64(&salt)},
                "cipher": {"name": cipher, "nonce": b64(&nonce)},
                "ciphertext": b64(&ct),
            }))
            .unwrap()
        })
}

#[test]
fn cosign_key() {
    let label = prop_oneof![
        Just("ENCRYPTED SIGSTORE PRIVATE KEY".to_string()),
        Just("ENCRYPTED COSIGN PRIVATE KEY".to_string()),
        Just("PRIVATE KEY".to_string()),
        Just("PUBLIC KEY".to_string()),
        "[A-Z ]{0,20}",
    ];
    let body = prop_oneof![
        encrypted_key(),
        document(),
        proptest::collection::vec(any::<u8>(), 0..120),
    ];
    check((label, body, any::<bool>()), |(label, body, raw)| {
        let text = match raw {
            true => String::from_utf8_lossy(&body).into_owned(),
            false => pem(&label, &body),
        };
        let _ = graft::sign::PublicKey::from_pem(&text, "fuzz");
        let _ = graft::sign::SigningKey::from_pem(&text, b"pw", "fuzz");
        Ok(())
    });
}

#[test]
fn payload() {
    check(document(), |bytes| {
        let _ = graft::sign::payload::SimpleSigning::parse(&bytes);
        let _ = graft::sign::dsse::Statement::parse(&bytes);
        Ok(())
    });
}

#[test]
fn dsse() {
    let envelope = (
        text(),
        prop_oneof![document().prop_map(|d| b64(&d)), text()],
        proptest::collection::vec(
            (
                text(),
                prop_oneof![text(), any::<Vec<u8>>().prop_map(|b| b64(&b))],
            ),
            0..3,
        ),
    )
        .prop_map(|(payload_type, payload, sigs)| {
            let sigs: Vec<_> = sigs
                .into_iter()
                .map(|(keyid, sig)| serde_json::json!({"keyid": keyid, "sig": sig}))
                .collect();
            serde_json::to_vec(&serde_json::json!({
                "payloadType": payload_type, "payload": payload, "signatures": sigs,
            }))
            .unwrap()
        });
    let key = graft::sign::SigningKey::generate().public_key();
    check(prop_oneof![envelope, document()], |bytes| {
        if let Ok(env) = serde_json::from_slice::<graft::sign::dsse::Envelope>(&bytes) {
            if let Ok(body) = env.payload_bytes() {
                let _ = graft::sign::dsse::Statement::parse(&body);
            }
            let _ = env.verify(&key);
        }
        Ok(())
    });
}

#[test]
fn bundle() {
    check(document(), |bytes| {
        let _ = graft::sign::bundle::Bundle::parse(&bytes);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Keyless: trusted roots, bundles' verification material, cosign's Rekor annotation, SCT
// lists, certificates, checkpoints, and the whole check on altered real signatures.

fn fixture(path: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/interop")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `bytes`, cut at a point or with up to three bytes replaced.
fn mutated(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = bytes.len().max(1);
    (
        any::<bool>(),
        proptest::collection::vec((0..n, any::<u8>()), 1..4),
    )
        .prop_map(move |(cut, edits)| {
            let mut b = bytes.clone();
            if cut {
                b.truncate(edits[0].0);
            } else {
                for (at, v) in edits {
                    if at < b.len() {
                        b[at] = v;
                    }
                }
            }
            b
        })
}

#[test]
fn trusted_root() {
    use graft::sign::keyless::trust::{parse_rfc3339, TrustedRoot};
    let real = fixture("attestations/sigstore-go/public-good.json");
    let doc = (json_value(), json_value(), json_value()).prop_map(|(a, b, c)| {
        serde_json::to_vec(&serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": a, "ctlogs": b, "certificateAuthorities": c,
        }))
        .unwrap()
    });
    check(prop_oneof![mutated(real), doc, document()], |bytes| {
        let _ = TrustedRoot::parse(&bytes);
        Ok(())
    });
    check(text(), |s| {
        let _ = parse_rfc3339(&s);
        Ok(())
    });
}

#[test]
fn keyless_material() {
    use graft::sign::keyless::cert::{parse_sct_list, Leaf};
    use graft::sign::keyless::tlog::{verify_checkpoint, TlogEntry};
    use graft::sign::keyless::Material;
    let bundles = [
        fixture("attestations/sigstore-go/sigstore.js@2.0.0-provenance.sigstore.json"),
        fixture("attestations/sigstore-go/dsse.sigstore.json"),
    ];
    check(
        prop_oneof![
            mutated(bundles[0].clone()),
            mutated(bundles[1].clone()),
            document()
        ],
        |bytes| {
            if let Ok(Some(m)) = Material::from_bundle(&bytes) {
                let _ = Leaf::parse(&m.certificate);
            }
            Ok(())
        },
    );
    let sig: serde_json::Value = serde_json::from_slice(&fixture(
        "cosign-signatures/zarf-podinfo-keyless/sig-manifest.json",
    ))
    .unwrap();
    let rekor = sig["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    check(prop_oneof![mutated(rekor), document()], |bytes| {
        let _ = TlogEntry::from_cosign_bundle(&String::from_utf8_lossy(&bytes));
        Ok(())
    });
    check(proptest::collection::vec(any::<u8>(), 0..300), |bytes| {
        let _ = parse_sct_list(&bytes);
        let _ = Leaf::parse(&bytes);
        Ok(())
    });
    check((text(), any::<u64>()), |(note, size)| {
        let _ = verify_checkpoint(&note, &[0x30, 0x00], &[1, 2, 3, 4], size, &[0; 32]);
        let _ = verify_checkpoint(
            &format!("o\n{size}\nAAAA\n\n— o {note}\n"),
            &[],
            &[],
            size,
            &[],
        );
        Ok(())
    });
}

#[test]
fn keyless_verify() {
    // The whole check over a real keyless signature with its certificate, Rekor annotation or
    // payload altered: never a panic, and never a pass unless nothing that matters changed.
    use graft::sign::keyless::{Content, Keyless, Matcher, Material, TrustedRoot};
    let root = TrustedRoot::parse(&fixture("attestations/sigstore-go/public-good.json")).unwrap();
    let keyless = Keyless {
        root,
        identity: Matcher::regex(".").unwrap(),
        issuer: Matcher::regex(".").unwrap(),
        ignore_sct: false,
    };
    let sig: serde_json::Value = serde_json::from_slice(&fixture(
        "cosign-signatures/zarf-podinfo-keyless/sig-manifest.json",
    ))
    .unwrap();
    let ann = sig["layers"][0]["annotations"].clone();
    let payload = fixture("cosign-signatures/zarf-podinfo-keyless/payload.json");
    let get = |a: &serde_json::Value, k: &str| a[k].as_str().unwrap().as_bytes().to_vec();
    let field = prop_oneof![
        Just("dev.sigstore.cosign/certificate"),
        Just("dev.sigstore.cosign/bundle"),
        Just("dev.cosignproject.cosign/signature"),
        Just("payload"),
    ];
    let case = field.prop_flat_map(move |f| {
        let original = if f == "payload" {
            payload.clone()
        } else {
            get(&ann, f)
        };
        (Just(f), mutated(original))
    });
    let ann = sig["layers"][0]["annotations"].clone();
    let payload = fixture("cosign-signatures/zarf-podinfo-keyless/payload.json");
    check(case, |(field, bytes)| {
        let mut a = ann.clone();
        let mut p = payload.clone();
        if field == "payload" {
            p = bytes.clone();
        } else {
            a[field] = serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned());
        }
        let material = Material::from_annotations(|k| a.get(k).and_then(|v| v.as_str()));
        let sig = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            a["dev.cosignproject.cosign/signature"].as_str().unwrap(),
        );
        if let (Ok(Some(m)), Ok(sig)) = (material, sig) {
            let ok = keyless.verify(&m, Content::Payload(&p), &sig).is_ok();
            // A changed payload never passes.
            prop_assert!(!(ok && p != payload), "an altered payload verified");
        }
        Ok(())
    });
}
