//! Kargo's image selection strategies in `graft mirror` and `graft factory check`, against a
//! real registry: tags `1.9.0`, `1.10.0`, `v2.0.0-rc.1`, `latest`, `zz`, `zzz-dev`, a
//! two-platform index `idx` and a cosign signature tag, each with its own config `created`.
//! SemVer picks `1.10.0` among the release tags, Lexical `zz` (restricted by allow_tags),
//! NewestBuild the newest build whatever its name (an index by its newest platform, or by the
//! platform asked), Digest its one tag; the destination's tags, listed by skopeo, are exactly
//! those selected. `factory check` resolves an external image with NewestBuild and records its
//! digest; a strategy graft does not know is refused naming the field.

use std::path::Path;

use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::support::proxy::Proxy;
use crate::support::registry::Registry;
use crate::support::tools::{sha256_digest, skopeo};

const CONFIG_MT: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_MT: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";

/// Push an image manifest (a config, no layers) built at `created` for `arch`, untagged
/// unless `tag`; its (digest, size).
fn image(
    reg: &Registry,
    repo: &str,
    tag: Option<&str>,
    created: &str,
    arch: &str,
) -> (String, usize) {
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","created":"{created}","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{}}}}"#
    );
    let cd = reg.push_blob(repo, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MT}","config":{{"mediaType":"{CONFIG_MT}","digest":"{cd}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let digest = sha256_digest(manifest.as_bytes());
    reg.push_manifest(
        repo,
        tag.unwrap_or(&digest),
        MANIFEST_MT,
        manifest.as_bytes(),
    );
    (digest, manifest.len())
}

/// Push an index of two platform images, amd64 built at `amd64` and arm64 at `arm64`; its digest.
fn index(reg: &Registry, repo: &str, tag: &str, amd64: &str, arm64: &str) -> String {
    let (a, asz) = image(reg, repo, None, amd64, "amd64");
    let (b, bsz) = image(reg, repo, None, arm64, "arm64");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX_MT}","manifests":[{{"mediaType":"{MANIFEST_MT}","digest":"{a}","size":{asz},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{MANIFEST_MT}","digest":"{b}","size":{bsz},"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
    );
    reg.push_manifest(repo, tag, INDEX_MT, index.as_bytes());
    sha256_digest(index.as_bytes())
}

/// The repository `sel/app` with every candidate; the digest of each tag.
fn seed(reg: &Registry) -> std::collections::BTreeMap<String, String> {
    let mut d = std::collections::BTreeMap::new();
    for (tag, created) in [
        ("zz", "2020-01-01T00:00:00Z"),
        ("zzz-dev", "2020-06-01T00:00:00Z"),
        ("latest", "2021-01-01T00:00:00Z"),
        ("v2.0.0-rc.1", "2022-01-01T00:00:00Z"),
        ("1.10.0", "2023-01-01T00:00:00Z"),
        // The newest build, offset and fraction as some builders write them.
        ("1.9.0", "2025-01-01T02:00:00.123456789+02:00"),
    ] {
        d.insert(
            tag.to_string(),
            image(reg, "sel/app", Some(tag), created, "amd64").0,
        );
    }
    // By its newest platform (arm64, 2024) the second newest; by amd64 the oldest of all.
    d.insert(
        "idx".into(),
        index(
            reg,
            "sel/app",
            "idx",
            "2019-01-01T00:00:00Z",
            "2024-06-01T00:00:00Z",
        ),
    );
    // A signature tag built after everything: never a candidate.
    let subject = d["1.9.0"].trim_start_matches("sha256:").to_string();
    image(
        reg,
        "sel/app",
        Some(&format!("sha256-{subject}.sig")),
        "2026-01-01T00:00:00Z",
        "amd64",
    );
    d
}

fn mirror(home: &Path, cfg: &str) -> Run {
    let path = home.join("sync.yaml");
    std::fs::write(&path, cfg).unwrap();
    capture(
        command(home)
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "mirror",
                "--config",
            ])
            .arg(&path),
    )
}

/// The tags of `repo` at `reg`, sorted, as skopeo lists them.
fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let out = skopeo(["list-tags", "--tls-verify=false", &reg.docker_ref(repo)]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut t: Vec<String> = v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

#[test]
fn mirror_copies_exactly_what_each_strategy_selects() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::plain();
    let b = Registry::plain();
    let digests = seed(&a);
    let src = format!("docker://{}/sel/app", a.addr());
    let cfg = format!(
        "\
destination: docker://{dst}
sources:
  - repository: {src}
    image_selection_strategy: SemVer
    allow_tags: '^[0-9]'
    to: semver
  - repository: {src}
    image_selection_strategy: SemVer
    newest: 2
    to: semver2
  - repository: {src}
    image_selection_strategy: Lexical
    allow_tags: '^[^-]+$'
    to: lexical
  - repository: {src}
    image_selection_strategy: NewestBuild
    newest: 2
    to: newest
  - repository: {src}
    image_selection_strategy: NewestBuild
    platform: linux/amd64
    newest: 2
    to: newest-amd64
  - repository: {src}
    image_selection_strategy: Digest
    tags: [latest]
    to: digest
",
        dst = b.addr()
    );
    let out = mirror(home.path(), &cfg).ok().json();
    assert_eq!(out["failed"], 0, "{out}");
    for (repo, want) in [
        ("semver", vec!["1.10.0"]),
        // The release candidate of 2.0.0 is above every 1.x.
        ("semver2", vec!["1.10.0", "v2.0.0-rc.1"]),
        ("lexical", vec!["zz"]),
        // Whatever the names: the newest builds, the index by its newest platform.
        ("newest", vec!["1.9.0", "idx"]),
        // With a platform the index counts by amd64 (2019): the next newest is 1.10.0.
        ("newest-amd64", vec!["1.10.0", "1.9.0"]),
        ("digest", vec!["latest"]),
    ] {
        assert_eq!(tags(&b, repo), want, "{repo}: {out}");
    }
    for (repo, tag) in [
        ("semver", "1.10.0"),
        ("newest", "idx"),
        ("digest", "latest"),
    ] {
        assert_eq!(
            sha256_digest(&b.raw(&format!("{repo}:{tag}"))),
            digests[tag],
            "{repo}:{tag}"
        );
    }
}

#[test]
fn mirror_refuses_an_unknown_strategy_naming_the_field() {
    let home = tempfile::tempdir().unwrap();
    let cfg = "\
destination: docker://127.0.0.1:1
sources:
  - repository: docker://127.0.0.1:1/a
  - repository: docker://127.0.0.1:1/b
    image_selection_strategy: Newest
";
    let run = mirror(home.path(), cfg).fails(2);
    assert!(
        run.stderr
            .contains("sources[1].image_selection_strategy: \"Newest\" is not one of SemVer"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("sync.yaml"), "{}", run.stderr);
    let cfg = "\
destination: docker://127.0.0.1:1
sources:
  - repository: docker://127.0.0.1:1/a
    image_selection_strategy: Digest
    tags: [a, b]
";
    let run = mirror(home.path(), cfg).fails(2);
    assert!(run.stderr.contains("sources[0].tags:"), "{}", run.stderr);
}

#[test]
fn factory_check_resolves_newest_build() {
    let reg = Registry::plain();
    let digests = seed(&reg);
    // Requests counted: NewestBuild reads one manifest and one config per candidate.
    let proxy = Proxy::start(&reg.base_url());
    let home = tempfile::tempdir().unwrap();
    let f = home.path();
    std::fs::write(
        f.join("images.yaml"),
        format!(
            "\
- name: app
  registry: {addr}
  repository: sel/app
  allowTags: ^[0-9v]
  imageSelectionStrategy: NewestBuild
  rebuildDelay: 1d
  autoRebuild: false
",
            addr = proxy.addr()
        ),
    )
    .unwrap();
    let factory = |args: &[&str]| {
        capture(
            command(f)
                .current_dir(f)
                .args(["-q", "--tls-verify=false", "factory"])
                .args(args),
        )
    };
    factory(&["sync", "--now", "2026-01-01T00:00:00Z"]).ok();
    proxy.clear();
    let j = factory(&["-o", "json", "check", "--now", "2026-01-01T00:00:00Z"])
        .ok()
        .json();
    let ext = &j["externalImages"][0];
    assert_eq!(ext["digest"], digests["1.9.0"].as_str(), "{j}");
    assert_eq!(
        ext["reference"],
        format!("{}/sel/app:1.9.0", proxy.addr()).as_str(),
        "{j}"
    );
    assert_eq!(j["failures"], 0, "{j}");
    // Three candidates (1.9.0, 1.10.0, v2.0.0-rc.1): the tag list, a manifest and a config
    // each, and no second request for the digest.
    let log = proxy.requests();
    assert_eq!(proxy.count("GET", "/tags/list"), 1, "{log:?}");
    assert_eq!(proxy.count("*", "/manifests/"), 3, "{log:?}");
    assert_eq!(proxy.count("GET", "/blobs/"), 3, "{log:?}");
    let state: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(f.join("state/images/app.yaml")).unwrap())
            .unwrap();
    assert_eq!(state["currentVersion"], "1.9.0");
    assert_eq!(state["currentDigest"], digests["1.9.0"].as_str());
}
