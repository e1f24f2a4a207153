//! graft against the real cosign, both directions: cosign v2 (`cosign`, the `.sig`/`.att` tag
//! scheme by default, sigstore bundles with `--new-bundle-format`) and cosign v3 (`cosign3`,
//! bundles as OCI 1.1 referrers by default), all offline: no Rekor, no Fulcio, no TUF.
//!
//! Every check reads the tool's verdict (exit status) and what it says it verified (the digest
//! in its output), and each direction has a negative control (another key is refused), so a
//! tool that accepted anything would fail the test. The flags each version needs offline are
//! in [`Cosign`] and docs/interop/cosign.md.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::sign::{g, keypair, PW};
use crate::support::peers::{stdout_ok, Peer, RefRegistry};
use crate::support::registry::Registry;
use crate::support::tools::{science_oci_ref, sha256_digest, skopeo};

const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
const COSIGN_SIGN_V1: &str = "https://sigstore.dev/cosign/sign/v1";

/// Which cosign, and in which storage form: each has its own offline flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cosign {
    /// cosign v2, the `.sig`/`.att` tag scheme (its default).
    V2,
    /// cosign v2 with `--new-bundle-format`: a sigstore bundle as a referrer.
    V2Bundle,
    /// cosign v3: bundles as referrers by default.
    V3,
}

/// The peer tools with an isolated HOME, `COSIGN_PASSWORD` = graft's test password (so keys
/// of either tool open in both), and the two files cosign needs to stay offline.
struct Tools {
    peer: Peer,
    /// An empty sigstore trusted root: cosign v2 refuses to verify a bundle without one, even
    /// with `--key` and `--insecure-ignore-tlog=true`; with nothing in it nothing but the key
    /// is trusted.
    trusted_root: PathBuf,
    /// A signing config without any service (`cosign3 signing-config create`): cosign v3 signs
    /// with a key and uploads to no transparency log, and does not ask TUF for a config.
    signing_config: PathBuf,
}

impl Tools {
    fn new() -> Tools {
        let peer = Peer::new().with_cosign_password(PW);
        let trusted_root = peer.home().join("empty-trusted-root.json");
        std::fs::write(
            &trusted_root,
            br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
        )
        .unwrap();
        let signing_config = peer.home().join("offline-signing-config.json");
        let sc = signing_config.to_str().unwrap().to_string();
        peer.ok("cosign3", ["signing-config", "create", "--out", &sc]);
        let v: Value = serde_json::from_slice(&std::fs::read(&signing_config).unwrap()).unwrap();
        assert!(
            v.get("rekorTlogUrls").is_none() && v.get("caUrls").is_none(),
            "the offline signing config names a service: {v}"
        );
        Tools {
            peer,
            trusted_root,
            signing_config,
        }
    }

    fn bin(v: Cosign) -> &'static str {
        match v {
            Cosign::V2 | Cosign::V2Bundle => "cosign",
            Cosign::V3 => "cosign3",
        }
    }

    /// The flags `sign`/`attest` need offline.
    fn sign_flags(&self, v: Cosign) -> Vec<String> {
        let mut f: Vec<String> = vec!["-y".into()];
        match v {
            Cosign::V2 => f.push("--tlog-upload=false".into()),
            Cosign::V2Bundle => {
                f.push("--tlog-upload=false".into());
                f.push("--new-bundle-format".into());
            }
            Cosign::V3 => {
                f.push("--signing-config".into());
                f.push(self.signing_config.to_str().unwrap().into());
            }
        }
        f
    }

    /// The flags `verify`/`verify-attestation` need offline.
    fn verify_flags(&self, v: Cosign) -> Vec<String> {
        let mut f: Vec<String> = vec!["--insecure-ignore-tlog=true".into()];
        if v == Cosign::V2Bundle {
            f.push("--new-bundle-format".into());
            f.push("--trusted-root".into());
            f.push(self.trusted_root.to_str().unwrap().into());
        }
        f
    }

    fn run(&self, v: Cosign, args: Vec<String>) -> Output {
        self.peer.try_run(Self::bin(v), args)
    }

    /// `cosign sign --key KEY [offline flags] EXTRA IMAGE`, must succeed.
    fn sign(&self, v: Cosign, key: &Path, image: &str, extra: &[&str]) {
        let mut a = vec!["sign".into(), "--key".into(), path(key)];
        a.extend(self.sign_flags(v));
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(image.into());
        stdout_ok(&self.run(v, a), &format!("{v:?} sign {image}"));
    }

    /// `cosign attest --key KEY --type slsaprovenance1 --predicate FILE [offline flags] EXTRA
    /// IMAGE`, must succeed.
    fn attest(&self, v: Cosign, key: &Path, predicate: &Path, image: &str, extra: &[&str]) {
        let mut a = vec!["attest".into(), "--key".into(), path(key)];
        a.extend(["--type", "slsaprovenance1", "--predicate"].map(String::from));
        a.push(path(predicate));
        a.extend(self.sign_flags(v));
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(image.into());
        stdout_ok(&self.run(v, a), &format!("{v:?} attest {image}"));
    }

    fn verify_run(&self, v: Cosign, public: &Path, image: &str) -> Output {
        let mut a = vec!["verify".into(), "--key".into(), path(public)];
        a.extend(self.verify_flags(v));
        a.push(image.into());
        self.run(v, a)
    }

    fn verify_attestation_run(&self, v: Cosign, public: &Path, image: &str) -> Output {
        let mut a = vec!["verify-attestation".into(), "--key".into(), path(public)];
        a.extend(["--type", "slsaprovenance1"].map(String::from));
        a.extend(self.verify_flags(v));
        a.push(image.into());
        self.run(v, a)
    }

    /// cosign verifies a signature by `public` of `image` (`HOST/REPO@DIGEST`) and says it
    /// signs that digest, of `kind` (`cosign container image signature` for the tag scheme,
    /// the cosign sign predicate for bundles).
    fn verifies(&self, v: Cosign, public: &Path, image: &str, kind: &str) {
        let out = self.verify_run(v, public, image);
        let text = stdout_ok(
            &out,
            &format!("{v:?} verify --key {} {image}", public.display()),
        );
        let digest = digest_of(image);
        let list: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("{v:?} verify printed no JSON list ({e}): {text}"));
        let ok = list.as_array().unwrap().iter().any(|p| {
            p["critical"]["image"]["docker-manifest-digest"] == digest
                && p["critical"]["type"] == kind
        });
        assert!(
            ok,
            "{v:?} verify of {image}: no {kind:?} payload for {digest}: {text}"
        );
    }

    /// cosign refuses every signature of `image` with `public` (a negative control).
    fn refuses(&self, v: Cosign, public: &Path, image: &str) {
        let out = self.verify_run(v, public, image);
        assert!(
            !out.status.success(),
            "{v:?} verify accepted {image} with the wrong key {}:\n{}",
            public.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// cosign verifies an SLSA v1 attestation by `public` whose statement is about `image`'s
    /// digest.
    fn verifies_attestation(&self, v: Cosign, public: &Path, image: &str) {
        let out = self.verify_attestation_run(v, public, image);
        let text = stdout_ok(
            &out,
            &format!(
                "{v:?} verify-attestation --key {} {image}",
                public.display()
            ),
        );
        let hex = digest_of(image).trim_start_matches("sha256:").to_string();
        let mut found = false;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let env: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{v:?} verify-attestation: not JSON ({e}): {line}"));
            let payload = B64
                .decode(env["payload"].as_str().expect("an envelope payload"))
                .unwrap();
            let st: Value = serde_json::from_slice(&payload).unwrap();
            found |= st["predicateType"] == SLSA_V1
                && st["subject"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["digest"]["sha256"] == hex.as_str());
        }
        assert!(found, "{v:?} verify-attestation of {image}: {text}");
    }

    fn refuses_attestation(&self, v: Cosign, public: &Path, image: &str) {
        let out = self.verify_attestation_run(v, public, image);
        assert!(
            !out.status.success(),
            "{v:?} verify-attestation accepted {image} with the wrong key:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// A key pair made by `cosign generate-key-pair` (v2 or v3), as `PREFIX.key`/`.pub` in
    /// HOME.
    fn generate_key_pair(&self, v: Cosign, prefix: &str) -> (PathBuf, PathBuf) {
        self.peer.ok(
            Self::bin(v),
            ["generate-key-pair", "--output-key-prefix", prefix],
        );
        let home = self.peer.home();
        let key = home.join(format!("{prefix}.key"));
        let text = std::fs::read_to_string(&key).unwrap();
        assert!(text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        (key, home.join(format!("{prefix}.pub")))
    }

    /// Index digest and platform digests of `image` (`HOST/REPO:TAG`), read with crane.
    fn digests(&self, image: &str) -> (String, Vec<String>) {
        let raw = self.peer.crane(["manifest", image]).stdout;
        let v: Value = serde_json::from_slice(&raw).unwrap();
        let kids: Vec<String> = v["manifests"]
            .as_array()
            .expect("an index")
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_string())
            .collect();
        assert!(kids.len() >= 2, "{image} has {} platforms", kids.len());
        (sha256_digest(&raw), kids)
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `sha256:…` of `HOST/REPO@sha256:…`.
fn digest_of(image: &str) -> &str {
    image
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("{image} is not by digest"))
}

/// `HOST/REPO:TAG` → `HOST/REPO`.
fn repository(image: &str) -> &str {
    let slash = image.rfind('/').unwrap();
    match image[slash..].find(':') {
        Some(c) => &image[..slash + c],
        None => image,
    }
}

/// Push a sample science image (`astro-base`, `jupyter-sci`: two-platform indexes) to
/// `HOST/REPO:TAG` with skopeo, digests kept. Returns `HOST/REPO:TAG`.
fn seed(host: &str, name: &str, repo_tag: &str) -> String {
    skopeo([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &science_oci_ref(name),
        &format!("docker://{host}/{repo_tag}"),
    ]);
    format!("{host}/{repo_tag}")
}

/// graft (COSIGN_PASSWORD = [`PW`]) with `--tls-verify=false` first.
fn graft(home: &Path, args: &[&str]) -> Run {
    let mut a = vec!["--tls-verify=false"];
    a.extend_from_slice(args);
    g(home, &a)
}

/// A small SLSA v1 predicate.
fn predicate(dir: &Path) -> PathBuf {
    let p = dir.join("provenance.json");
    std::fs::write(
        &p,
        br#"{"buildDefinition":{"buildType":"https://graft.dev/interop-test/v1","externalParameters":{"test":"cosign"}},"runDetails":{"builder":{"id":"https://ci.example/runner/1"}}}"#,
    )
    .unwrap();
    p
}

/// What graft writes in the tag scheme (`graft sign -r`, `graft attest -r`), for the index and
/// every platform, is accepted by `cosign verify --key` and `cosign verify-attestation --type
/// slsaprovenance1`, v2 and v3, and refused with another key.
#[test]
fn graft_tag_scheme_signatures_and_attestations_verify_with_cosign_v2_and_v3() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let tools = Tools::new();
    let image = seed(reg.addr(), "jupyter-sci", "sci/jupyter:2.4");
    let (key, public) = keypair(home.path(), home.path(), "graft");
    let (_, stranger) = tools.generate_key_pair(Cosign::V2, "stranger");
    let docker = format!("docker://{image}");
    let k = path(&key);
    graft(home.path(), &["sign", "--key", &k, "-r", &docker]).ok();
    let pred = path(&predicate(home.path()));
    graft(
        home.path(),
        &[
            "attest",
            "--key",
            &k,
            "--type",
            "slsaprovenance1",
            "--predicate",
            &pred,
            "-r",
            &docker,
        ],
    )
    .ok();
    let (index, kids) = tools.digests(&image);
    let repo = repository(&image);
    for d in std::iter::once(&index).chain(&kids) {
        let by_digest = format!("{repo}@{d}");
        for v in [Cosign::V2, Cosign::V3] {
            tools.verifies(v, &public, &by_digest, "cosign container image signature");
            tools.verifies_attestation(v, &public, &by_digest);
        }
    }
    let by_digest = format!("{repo}@{index}");
    for v in [Cosign::V2, Cosign::V3] {
        tools.refuses(v, &stranger, &by_digest);
        tools.refuses_attestation(v, &stranger, &by_digest);
    }
}

/// The sample library copied to `dir`, its science images pointed at `science`
/// (`docker://HOST`), as tests/it/refresh.rs does.
fn library(dir: &Path, science: &str) -> PathBuf {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let t = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &t);
            } else {
                std::fs::copy(e.path(), &t).unwrap();
            }
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = dir.join("library");
    for sub in ["manifests", "layers", "schema"] {
        copy_dir(&root.join(sub), &lib.join(sub));
    }
    std::fs::copy(root.join("graft.yaml"), lib.join("graft.yaml")).unwrap();
    let file = lib.join("manifests/sci-notebook.yaml");
    let from = "oci:testdata/science/jupyter-sci:2.4";
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(from), "sci-notebook.yaml names {from}");
    std::fs::write(
        &file,
        text.replace(from, &format!("{science}/sci/jupyter:2.4")),
    )
    .unwrap();
    lib
}

/// `graft refresh --sign-key --provenance` signs and attests the index and every platform in a
/// form cosign v2 and v3 accept.
#[test]
fn refresh_signatures_and_provenance_verify_with_cosign_v2_and_v3() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let tools = Tools::new();
    seed(reg.addr(), "jupyter-sci", "sci/jupyter:2.4");
    let lib = library(home.path(), &format!("docker://{}", reg.addr()));
    let (key, public) = keypair(home.path(), home.path(), "ci");
    let (_, stranger) = tools.generate_key_pair(Cosign::V2, "stranger");
    let out = capture(
        command(home.path())
            .env("COSIGN_PASSWORD", PW)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "refresh",
                "--library",
            ])
            .arg(&lib)
            .args(["--repo", &format!("docker://{}/rel", reg.addr())])
            .args(["--build", "7", "--commit", "abc1234", "--sign-key"])
            .arg(&key)
            .args(["--provenance", "sci-notebook"]),
    )
    .ok()
    .json();
    let img = &out["images"][0];
    assert_eq!(
        img["signing"]["signed"].as_array().unwrap().len(),
        3,
        "{img}"
    );
    let image = reg.image_ref("rel/sci-notebook:2.4");
    let (index, kids) = tools.digests(&image);
    assert_eq!(img["digest"], index.as_str());
    let repo = repository(&image);
    for d in std::iter::once(&index).chain(&kids) {
        let by_digest = format!("{repo}@{d}");
        for v in [Cosign::V2, Cosign::V3] {
            tools.verifies(v, &public, &by_digest, "cosign container image signature");
            tools.verifies_attestation(v, &public, &by_digest);
        }
    }
    tools.refuses(Cosign::V2, &stranger, &format!("{repo}@{index}"));
    tools.refuses_attestation(Cosign::V3, &stranger, &format!("{repo}@{index}"));
}

/// What cosign v2 writes by default (`cosign sign --recursive`, `cosign attest`, with `--key
/// --tlog-upload=false`, for the index and every platform) is accepted by `graft verify -r`
/// and `graft verify-attestation -r`, and refused with another key (exit 1).
#[test]
fn cosign_v2_tag_scheme_signatures_and_attestations_verify_with_graft() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let tools = Tools::new();
    let image = seed(reg.addr(), "jupyter-sci", "sci/jupyter:2.4");
    let (key, public) = tools.generate_key_pair(Cosign::V2, "cosign");
    let (_, stranger) = keypair(home.path(), home.path(), "stranger");
    let pred = predicate(home.path());
    tools.sign(Cosign::V2, &key, &image, &["--recursive"]);
    // `cosign attest` has no --recursive: one call per manifest.
    let (index, kids) = tools.digests(&image);
    for d in std::iter::once(&index).chain(&kids) {
        let by_digest = format!("{}@{d}", repository(&image));
        tools.attest(Cosign::V2, &key, &pred, &by_digest, &[]);
    }
    let docker = format!("docker://{image}");
    let (p, s) = (path(&public), path(&stranger));
    let j = graft(
        home.path(),
        &["-o", "json", "verify", "--key", &p, "-r", &docker],
    )
    .ok()
    .json();
    assert_eq!(j["signatures"].as_array().unwrap().len(), 3, "{j}");
    let j = graft(
        home.path(),
        &[
            "-o",
            "json",
            "verify-attestation",
            "--key",
            &p,
            "--type",
            "slsaprovenance1",
            "-r",
            &docker,
        ],
    )
    .ok()
    .json();
    assert!(j.to_string().contains(SLSA_V1), "{j}");
    graft(home.path(), &["verify", "--key", &s, &docker]).fails(1);
    graft(
        home.path(),
        &[
            "verify-attestation",
            "--key",
            &s,
            "--type",
            "slsaprovenance1",
            &docker,
        ],
    )
    .fails(1);
}

/// Keys made by `cosign generate-key-pair` (v2 and v3) and `cosign import-key-pair` (P-256)
/// sign and verify in graft, and graft's keys sign in cosign; each tool verifies the other's
/// signature made with them. Imported RSA keys are refused by graft, clearly.
#[test]
fn keys_from_each_tool_sign_and_verify_in_the_other() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let tools = Tools::new();
    let (graft_key, graft_pub) = keypair(home.path(), home.path(), "graft");
    for (n, v) in [Cosign::V2, Cosign::V3].into_iter().enumerate() {
        let (cosign_key, cosign_pub) = tools.generate_key_pair(v, &format!("made-by-{n}"));
        // A cosign key signs in graft; cosign and graft verify with the cosign public key.
        let a = seed(reg.addr(), "astro-base", &format!("keys/a{n}:1.0"));
        graft(
            home.path(),
            &[
                "sign",
                "--key",
                &path(&cosign_key),
                &format!("docker://{a}"),
            ],
        )
        .ok();
        let (index, _) = tools.digests(&a);
        let a_digest = format!("{}@{index}", repository(&a));
        tools.verifies(
            v,
            &cosign_pub,
            &a_digest,
            "cosign container image signature",
        );
        graft(
            home.path(),
            &[
                "verify",
                "--key",
                &path(&cosign_pub),
                &format!("docker://{a}"),
            ],
        )
        .ok();
        tools.refuses(v, &graft_pub, &a_digest);
        // graft's key signs in cosign; graft and cosign verify with graft's public key.
        let b = seed(reg.addr(), "astro-base", &format!("keys/b{n}:1.0"));
        tools.sign(v, &graft_key, &b, &[]);
        graft(
            home.path(),
            &[
                "verify",
                "--key",
                &path(&graft_pub),
                &format!("docker://{b}"),
            ],
        )
        .ok();
        let b_digest = format!("{}@{index}", repository(&b));
        let kind = if v == Cosign::V3 {
            COSIGN_SIGN_V1
        } else {
            "cosign container image signature"
        };
        tools.verifies(v, &graft_pub, &b_digest, kind);
        graft(
            home.path(),
            &[
                "verify",
                "--key",
                &path(&cosign_pub),
                &format!("docker://{b}"),
            ],
        )
        .fails(1);
    }
    // `cosign import-key-pair` of a P-256 key made by openssl: graft signs with it, cosign
    // verifies. Of the other types it imports (RSA, Ed25519) graft refuses the files as bad
    // input (exit 2) with a message naming the type, before touching the registry.
    let dir = tools.peer.home();
    crate::support::tools::run_ok(
        std::process::Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(dir.join("ec.pem")),
    );
    crate::support::tools::run_ok(
        std::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(dir.join("rsa.pem"))
            .arg("2048"),
    );
    for name in ["ec", "rsa"] {
        tools.peer.ok(
            "cosign",
            [
                "import-key-pair",
                "--key",
                &format!("{name}.pem"),
                "--output-key-prefix",
                &format!("imported-{name}"),
            ],
        );
    }
    let c = seed(reg.addr(), "astro-base", "keys/imported:1.0");
    let imported = |name: &str, ext: &str| path(&dir.join(format!("imported-{name}.{ext}")));
    graft(
        home.path(),
        &[
            "sign",
            "--key",
            &imported("ec", "key"),
            &format!("docker://{c}"),
        ],
    )
    .ok();
    let (index, _) = tools.digests(&c);
    tools.verifies(
        Cosign::V2,
        &dir.join("imported-ec.pub"),
        &format!("{}@{index}", repository(&c)),
        "cosign container image signature",
    );
    let r = graft(
        home.path(),
        &[
            "sign",
            "--key",
            &imported("rsa", "key"),
            &format!("docker://{c}"),
        ],
    )
    .fails(2);
    assert!(r.stderr.contains("RSA"), "{}", r.stderr);
    let r = graft(
        home.path(),
        &[
            "verify",
            "--key",
            &imported("rsa", "pub"),
            &format!("docker://{c}"),
        ],
    )
    .fails(2);
    assert!(r.stderr.contains("RSA"), "{}", r.stderr);
}

/// One signer of each tool on one image, in both orders: both signatures survive, and each
/// tool verifies each key.
#[test]
fn two_signers_one_of_each_tool_keep_both_signatures() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let tools = Tools::new();
    let (graft_key, graft_pub) = keypair(home.path(), home.path(), "graft");
    let (cosign_key, cosign_pub) = tools.generate_key_pair(Cosign::V2, "cosign");
    let (_, stranger) = keypair(home.path(), home.path(), "stranger");
    for graft_first in [true, false] {
        let image = seed(reg.addr(), "astro-base", &format!("two/{graft_first}:1.0"));
        let docker = format!("docker://{image}");
        let graft_signs = || {
            graft(home.path(), &["sign", "--key", &path(&graft_key), &docker]).ok();
        };
        if graft_first {
            graft_signs();
            tools.sign(Cosign::V2, &cosign_key, &image, &[]);
        } else {
            tools.sign(Cosign::V2, &cosign_key, &image, &[]);
            graft_signs();
        }
        let (index, _) = tools.digests(&image);
        let repo = repository(&image);
        let sig: Value = serde_json::from_slice(
            &tools
                .peer
                .crane([
                    "manifest",
                    &format!("{repo}:sha256-{}.sig", index.trim_start_matches("sha256:")),
                ])
                .stdout,
        )
        .unwrap();
        assert_eq!(
            sig["layers"].as_array().unwrap().len(),
            2,
            "graft first: {graft_first}: {sig}"
        );
        let by_digest = format!("{repo}@{index}");
        for public in [&graft_pub, &cosign_pub] {
            for v in [Cosign::V2, Cosign::V3] {
                tools.verifies(v, public, &by_digest, "cosign container image signature");
            }
            graft(home.path(), &["verify", "--key", &path(public), &docker]).ok();
        }
        tools.refuses(Cosign::V2, &stranger, &by_digest);
        graft(home.path(), &["verify", "--key", &path(&stranger), &docker]).fails(1);
    }
}

/// Bundles both ways with cosign v2 (`--new-bundle-format`) on a registry with the referrers
/// API and on distribution 2.8 (the referrers tag-schema fallback): graft verifies cosign's
/// signature and attestation bundles, cosign verifies graft's `--format bundle` output.
///
/// cosign v2 lists its bundle in the fallback index under the config media type
/// (`application/vnd.oci.empty.v1+json`), and go-containerregistry's registry does the same in
/// its referrers answers: graft used to skip those entries and found no signature.
#[test]
fn bundles_both_ways_with_cosign_v2() {
    let home = tempfile::tempdir().unwrap();
    let refreg = RefRegistry::start();
    let reg = Registry::plain();
    let tools = Tools::new();
    let (cosign_key, cosign_pub) = tools.generate_key_pair(Cosign::V2, "cosign");
    let (graft_key, graft_pub) = keypair(home.path(), home.path(), "graft");
    let pred = predicate(home.path());
    for host in [refreg.host(), reg.addr()] {
        // cosign → graft
        // cosign → graft, the index and every platform.
        let image = seed(host, "jupyter-sci", "b2/cosign:2.4");
        tools.sign(Cosign::V2Bundle, &cosign_key, &image, &["--recursive"]);
        let (index, kids) = tools.digests(&image);
        for d in std::iter::once(&index).chain(&kids) {
            let by_digest = format!("{}@{d}", repository(&image));
            tools.attest(Cosign::V2Bundle, &cosign_key, &pred, &by_digest, &[]);
        }
        let docker = format!("docker://{image}");
        let j = graft(
            home.path(),
            &[
                "-o",
                "json",
                "verify",
                "-r",
                "--key",
                &path(&cosign_pub),
                &docker,
            ],
        )
        .ok()
        .json();
        let sigs = j["signatures"].as_array().unwrap();
        assert_eq!(sigs.len(), 3, "{host}: {j}");
        assert!(sigs.iter().all(|s| s["form"] == "bundle"), "{host}: {j}");
        graft(
            home.path(),
            &[
                "verify-attestation",
                "-r",
                "--key",
                &path(&cosign_pub),
                "--type",
                "slsaprovenance1",
                &docker,
            ],
        )
        .ok();
        graft(
            home.path(),
            &["verify", "--key", &path(&graft_pub), &docker],
        )
        .fails(1);
        // A second bundle signer, graft after cosign: graft adds its entry to the referrers
        // (or cosign's fallback index) and both signatures verify in both tools.
        graft(
            home.path(),
            &[
                "sign",
                "--format",
                "bundle",
                "--key",
                &path(&graft_key),
                &docker,
            ],
        )
        .ok();
        let by_digest = format!("{}@{index}", repository(&image));
        for public in [&graft_pub, &cosign_pub] {
            tools.verifies(Cosign::V2Bundle, public, &by_digest, COSIGN_SIGN_V1);
            graft(home.path(), &["verify", "--key", &path(public), &docker]).ok();
        }

        // graft → cosign, the index and every platform.
        let image = seed(host, "jupyter-sci", "b2/graft:2.4");
        let docker = format!("docker://{image}");
        let k = path(&graft_key);
        graft(
            home.path(),
            &["sign", "--format", "bundle", "--key", &k, "-r", &docker],
        )
        .ok();
        graft(
            home.path(),
            &[
                "attest",
                "--format",
                "bundle",
                "--key",
                &k,
                "--type",
                "slsaprovenance1",
                "--predicate",
                &path(&pred),
                "-r",
                &docker,
            ],
        )
        .ok();
        let (index, kids) = tools.digests(&image);
        let repo = repository(&image);
        for d in std::iter::once(&index).chain(&kids) {
            let by_digest = format!("{repo}@{d}");
            tools.verifies(Cosign::V2Bundle, &graft_pub, &by_digest, COSIGN_SIGN_V1);
            tools.verifies_attestation(Cosign::V2Bundle, &graft_pub, &by_digest);
        }
        let by_digest = format!("{repo}@{index}");
        tools.refuses(Cosign::V2Bundle, &cosign_pub, &by_digest);
        tools.refuses_attestation(Cosign::V2Bundle, &cosign_pub, &by_digest);
    }
}

/// Bundles both ways with cosign v3 (bundle by default, referrers), on the referrers-API
/// registry and on distribution 2.8; and two signers, one of each tool, as bundles on one
/// image: each tool verifies each key.
#[test]
fn bundles_both_ways_with_cosign_v3() {
    let home = tempfile::tempdir().unwrap();
    let refreg = RefRegistry::start();
    let reg = Registry::plain();
    let tools = Tools::new();
    let (cosign_key, cosign_pub) = tools.generate_key_pair(Cosign::V3, "cosign3");
    let (graft_key, graft_pub) = keypair(home.path(), home.path(), "graft");
    let pred = predicate(home.path());
    for host in [refreg.host(), reg.addr()] {
        // cosign → graft
        // cosign → graft, the index and every platform.
        let image = seed(host, "jupyter-sci", "b3/cosign:2.4");
        tools.sign(Cosign::V3, &cosign_key, &image, &["--recursive"]);
        let (index, kids) = tools.digests(&image);
        for d in std::iter::once(&index).chain(&kids) {
            let by_digest = format!("{}@{d}", repository(&image));
            tools.attest(Cosign::V3, &cosign_key, &pred, &by_digest, &[]);
        }
        let docker = format!("docker://{image}");
        let j = graft(
            home.path(),
            &[
                "-o",
                "json",
                "verify",
                "-r",
                "--key",
                &path(&cosign_pub),
                &docker,
            ],
        )
        .ok()
        .json();
        let sigs = j["signatures"].as_array().unwrap();
        assert_eq!(sigs.len(), 3, "{host}: {j}");
        assert!(sigs.iter().all(|s| s["form"] == "bundle"), "{host}: {j}");
        graft(
            home.path(),
            &[
                "verify-attestation",
                "-r",
                "--key",
                &path(&cosign_pub),
                "--type",
                "slsaprovenance1",
                &docker,
            ],
        )
        .ok();
        graft(
            home.path(),
            &["verify", "--key", &path(&graft_pub), &docker],
        )
        .fails(1);

        // graft → cosign, the index and every platform.
        let image = seed(host, "jupyter-sci", "b3/graft:2.4");
        let docker = format!("docker://{image}");
        let k = path(&graft_key);
        graft(
            home.path(),
            &["sign", "--format", "bundle", "--key", &k, "-r", &docker],
        )
        .ok();
        graft(
            home.path(),
            &[
                "attest",
                "--format",
                "bundle",
                "--key",
                &k,
                "--type",
                "slsaprovenance1",
                "--predicate",
                &path(&pred),
                "-r",
                &docker,
            ],
        )
        .ok();
        let (index, kids) = tools.digests(&image);
        let repo = repository(&image);
        for d in std::iter::once(&index).chain(&kids) {
            let by_digest = format!("{repo}@{d}");
            tools.verifies(Cosign::V3, &graft_pub, &by_digest, COSIGN_SIGN_V1);
            tools.verifies_attestation(Cosign::V3, &graft_pub, &by_digest);
        }
        let by_digest = format!("{repo}@{index}");
        tools.refuses(Cosign::V3, &cosign_pub, &by_digest);
        tools.refuses_attestation(Cosign::V3, &cosign_pub, &by_digest);

        // Two bundle signers on one image, graft then cosign v3: both verify in both tools.
        tools.sign(Cosign::V3, &cosign_key, &by_digest, &[]);
        for public in [&graft_pub, &cosign_pub] {
            tools.verifies(Cosign::V3, public, &by_digest, COSIGN_SIGN_V1);
            graft(home.path(), &["verify", "--key", &path(public), &docker]).ok();
        }
    }
}

/// `graft sign --format both` (a `.sig` layer and a bundle referrer): cosign v2 and v3 verify
/// it. Once an image has any bundle referrer, cosign verifies only bundles (v2.6 always, and
/// then needs `--trusted-root` even for the `.sig` form; v3 unless `--new-bundle-format=false`):
/// the `.sig` half stays readable by v3 with that flag, by containers/image and by graft, which
/// reads both forms and so also verifies a cosign `.sig` signer added beside graft's bundle.
#[test]
fn both_forms_verify_with_cosign_and_graft_reads_mixed_signers() {
    let home = tempfile::tempdir().unwrap();
    let refreg = RefRegistry::start();
    let tools = Tools::new();
    let (graft_key, graft_pub) = keypair(home.path(), home.path(), "graft");
    let (cosign_key, cosign_pub) = tools.generate_key_pair(Cosign::V2, "cosign");
    let image = seed(refreg.host(), "astro-base", "both/astro:1.0");
    let docker = format!("docker://{image}");
    let j = graft(
        home.path(),
        &[
            "-o",
            "json",
            "sign",
            "--format",
            "both",
            "--key",
            &path(&graft_key),
            "-a",
            "team=astro",
            &docker,
        ],
    )
    .ok()
    .json();
    assert!(j.to_string().contains(".sig"), "{j}");
    let (index, _) = tools.digests(&image);
    let by_digest = format!("{}@{index}", repository(&image));
    tools.verifies(Cosign::V2Bundle, &graft_pub, &by_digest, COSIGN_SIGN_V1);
    tools.verifies(Cosign::V3, &graft_pub, &by_digest, COSIGN_SIGN_V1);
    let legacy = |public: &Path| {
        let out = tools.peer.try_run(
            "cosign3",
            [
                "verify",
                "--key",
                &path(public),
                "--insecure-ignore-tlog=true",
                "--new-bundle-format=false",
                &by_digest,
            ],
        );
        let text = stdout_ok(&out, "cosign3 verify --new-bundle-format=false");
        assert!(text.contains("cosign container image signature"), "{text}");
    };
    legacy(&graft_pub);
    // graft's `-a` annotations are the ones cosign v3 checks with `-a`, in both forms.
    for (extra, ok) in [
        (&["-a", "team=astro"][..], true),
        (&["-a", "team=other"][..], false),
        (&["-a", "team=astro", "--new-bundle-format=false"][..], true),
        (
            &["-a", "team=other", "--new-bundle-format=false"][..],
            false,
        ),
    ] {
        let mut a = vec!["verify", "--key"];
        let p = path(&graft_pub);
        a.push(&p);
        a.push("--insecure-ignore-tlog=true");
        a.extend_from_slice(extra);
        a.push(&by_digest);
        let out = tools.peer.try_run("cosign3", &a);
        assert_eq!(
            out.status.success(),
            ok,
            "cosign3 {a:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A cosign `.sig` signer beside graft's bundle: graft verifies each key in its form.
    tools.sign(Cosign::V2, &cosign_key, &by_digest, &[]);
    legacy(&cosign_pub);
    for public in [&graft_pub, &cosign_pub] {
        graft(home.path(), &["verify", "--key", &path(public), &docker]).ok();
    }
}

/// `graft copy --with-attachments` carries cosign's signatures and attestations so that cosign
/// verifies them at the destination: v2's `.sig`/`.att` tags and v3's bundle referrers, from
/// the referrers-API registry to distribution 2.8 (where they land in the fallback index).
#[test]
fn graft_copy_with_attachments_carries_cosign_signatures_cosign_verifies_them() {
    let home = tempfile::tempdir().unwrap();
    let refreg = RefRegistry::start();
    let reg = Registry::plain();
    let tools = Tools::new();
    let (key, public) = tools.generate_key_pair(Cosign::V3, "cosign");
    let pred = predicate(home.path());
    for v in [Cosign::V2, Cosign::V3] {
        let src = seed(
            refreg.host(),
            "astro-base",
            &format!("src/{v:?}:1.0").to_lowercase(),
        );
        tools.sign(v, &key, &src, &[]);
        tools.attest(v, &key, &pred, &src, &[]);
        let dst = reg.image_ref(&format!("dst/{v:?}:1.0").to_lowercase());
        graft(
            home.path(),
            &[
                "-q",
                "copy",
                "--with-attachments",
                &format!("docker://{src}"),
                &format!("docker://{dst}"),
            ],
        )
        .ok();
        let (index, _) = tools.digests(&dst);
        let by_digest = format!("{}@{index}", repository(&dst));
        let kind = if v == Cosign::V3 {
            COSIGN_SIGN_V1
        } else {
            "cosign container image signature"
        };
        tools.verifies(v, &public, &by_digest, kind);
        tools.verifies_attestation(v, &public, &by_digest);
        graft(
            home.path(),
            &[
                "verify",
                "--key",
                &path(&public),
                &format!("docker://{dst}"),
            ],
        )
        .ok();
    }
}
