//! `graft factory` against a real registry and a real git repository: the seed's images.yaml
//! examples (a backstage-like managed image built from a Dockerfile, a postgres-like external
//! image) give state files of the seed's structure; a second sync after a config change keeps
//! digests and history; a new digest under a base tag makes the dependent due only once
//! `--now` is past lastBuilt + rebuildDelay, never with autoRebuild off; `--exec` gets the
//! image in its environment; the Warehouses validate against Kargo's vendored CRD; bad input
//! is refused with file:line, or recorded as `discoveryStatus: failed`, with no state file
//! lost or truncated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::support::git::git;
use crate::support::registry::Registry;
use crate::support::tools::run_ok;

const T0: &str = "2024-12-04T10:00:00Z";
const T1: &str = "2024-12-04T11:00:00Z"; // the build
const T2: &str = "2024-12-04T12:00:00Z"; // second sync
const CONFIG_MT: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_MT: &str = "application/vnd.oci.image.manifest.v1+json";

/// Push a small image (a config, no layers) whose digest depends on `seed`; its digest.
fn push(reg: &Registry, repo: &str, tag: &str, seed: &str) -> String {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{"Labels":{{"seed":"{seed}"}}}}}}"#
    );
    let cd = reg.push_blob(repo, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MT}","config":{{"mediaType":"{CONFIG_MT}","digest":"{cd}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    reg.push_manifest(repo, tag, MANIFEST_MT, manifest.as_bytes());
    crate::support::tools::sha256_digest(manifest.as_bytes())
}

/// A git repository with `files` committed on `main`.
fn repo(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    for (p, text) in files {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "files"]);
    dir.to_path_buf()
}

struct Factory {
    dir: tempfile::TempDir,
}

impl Factory {
    fn new() -> Factory {
        Factory {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Run {
        capture(
            command(self.path())
                .current_dir(self.path())
                .args(["-q", "--tls-verify=false", "factory"])
                .args(args),
        )
    }

    fn images_yaml(&self, text: &str) {
        std::fs::write(self.path().join("images.yaml"), text).unwrap();
    }

    fn state(&self, kind: &str, name: &str) -> String {
        let p = self
            .path()
            .join("state")
            .join(kind)
            .join(format!("{name}.yaml"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn yaml(&self, kind: &str, name: &str) -> Value {
        serde_yaml_ng::from_str(&self.state(kind, name)).unwrap()
    }

    /// Every state file and its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for kind in ["images", "base-images"] {
            let d = self.path().join("state").join(kind);
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries {
                    let p = e.unwrap().path();
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }
}

fn images_yaml(addr: &str, src: &Path, delay: &str, frontend: bool) -> String {
    let mut text = format!(
        "\
- name: backstage
  registry: {addr}
  repository: owner/backstage
  source:
    provider: git
    repo: {src}
    branch: main
    dockerfile: apps/backstage/Dockerfile
    workflow: build.yml
  rebuildDelay: {delay}
  autoRebuild: true
- name: postgres
  registry: {addr}
  repository: library/postgres
  allowTags: ^16-alpine$
  imageSelectionStrategy: Lexical
  rebuildDelay: 30d
  autoRebuild: false
",
        src = src.display()
    );
    if frontend {
        text.push_str(&format!(
            "\
- name: frontend
  registry: {addr}
  repository: owner/frontend
  source:
    provider: git
    repo: {src}
    branch: main
    dockerfile: apps/frontend/Dockerfile
  rebuildDelay: 1h
  autoRebuild: false
",
            src = src.display()
        ));
    }
    text
}

const BACKSTAGE_DOCKERFILE: &str = "\
ARG NODE_IMAGE=REG/library/node:22-bookworm-slim
FROM ${NODE_IMAGE} AS build
RUN yarn install
FROM scratch AS nothing
FROM build
COPY --from=nothing / /
";

#[test]
fn seed_examples_sync_check_record_warehouses() {
    let reg = Registry::plain();
    let addr = reg.addr().to_string();
    let f = Factory::new();
    let d1 = push(&reg, "library/node", "22-bookworm-slim", "node-1");
    let _ = push(&reg, "library/postgres", "15-alpine", "pg15");
    let pg16 = push(&reg, "library/postgres", "16-alpine", "pg16");
    let _ = push(&reg, "library/postgres", "16", "pg16-debian");
    let src = repo(
        &f.path().join("src"),
        &[
            (
                "apps/backstage/Dockerfile",
                &BACKSTAGE_DOCKERFILE.replace("REG", &addr),
            ),
            (
                "apps/frontend/Dockerfile",
                &format!("FROM {addr}/library/node:22-bookworm-slim\n"),
            ),
        ],
    );
    f.images_yaml(&images_yaml(&addr, &src, "7d", true));

    // 1. sync: the seed's structure.
    f.run(&["sync", "--now", T0]).ok();
    let expected = format!(
        "\
name: backstage
enrolledAt: {T0}
lastDiscovery: {T0}
discoveryStatus: success
enrollment:
  registry: {addr}
  repository: owner/backstage
  source:
    provider: git
    repo: {src}
    branch: main
    dockerfile: apps/backstage/Dockerfile
    workflow: build.yml
  rebuildDelay: 7d
  autoRebuild: true
baseImages:
- node-22-bookworm-slim
currentVersion: null
currentDigest: null
lastBuilt: null
rebuildState:
  status: monitoring
  pendingRebuild: false
",
        src = src.display()
    );
    assert_eq!(f.state("images", "backstage"), expected);
    let expected = format!(
        "\
name: postgres
enrolledAt: {T0}
discoveryStatus: external
enrollment:
  registry: {addr}
  repository: library/postgres
  rebuildDelay: 30d
  autoRebuild: false
repoURL: {addr}/library/postgres
allowTags: ^16-alpine$
imageSelectionStrategy: Lexical
baseImages: []
currentVersion: null
currentDigest: null
lastBuilt: null
"
    );
    assert_eq!(f.state("images", "postgres"), expected);
    let expected = format!(
        "\
name: node-22-bookworm-slim
fullImage: {addr}/library/node:22-bookworm-slim
registry: {addr}
repository: library/node
tag: 22-bookworm-slim
repoURL: {addr}/library/node
allowTags: ^22-bookworm-slim$
imageSelectionStrategy: Digest
firstDiscovered: {T0}
lastChecked: null
dependentImages:
- backstage
- frontend
currentDigest: null
lastUpdated: null
"
    );
    assert_eq!(f.state("base-images", "node-22-bookworm-slim"), expected);

    // 2. check: digests recorded; nothing built yet.
    let j = f.run(&["-o", "json", "check", "--now", T0]).ok().json();
    assert_eq!(j["baseImages"][0]["digest"], d1.as_str(), "{j}");
    assert_eq!(j["externalImages"][0]["digest"], pg16.as_str(), "{j}");
    let pg = f.yaml("images", "postgres");
    assert_eq!(pg["currentVersion"], "16-alpine");
    assert_eq!(pg["currentDigest"], pg16.as_str());
    let b = f.yaml("images", "backstage");
    assert_eq!(b["rebuildState"]["status"], "unbuilt");
    assert_eq!(
        f.yaml("base-images", "node-22-bookworm-slim")["currentDigest"],
        d1.as_str()
    );

    // 3. record builds from refresh reports.
    let built = "sha256:".to_string() + &"b".repeat(64);
    let report = serde_json::json!({"dry_run": false, "images": [
        {"name": "backstage", "version": "0.6.5", "digest": built,
         "references": [format!("{addr}/owner/backstage:0.6.5")],
         "science": format!("{addr}/library/node:22-bookworm-slim"), "science_digest": d1},
        {"name": "frontend", "version": "1.0", "digest": "sha256:".to_string() + &"f".repeat(64),
         "references": [format!("docker://{addr}/owner/frontend:1.0")]},
        {"name": "stranger", "version": "1", "digest": "sha256:".to_string() + &"0".repeat(64),
         "references": [format!("{addr}/other/stranger:1")]}
    ]});
    std::fs::write(f.path().join("report.json"), report.to_string()).unwrap();
    let r = f
        .run(&[
            "record",
            "report.json",
            "--now",
            T1,
            "--commit",
            "abc1234",
            "--trigger",
            "push",
        ])
        .ok();
    assert!(r.stderr.contains("stranger"), "{}", r.all());
    // Recording the same report again adds nothing.
    f.run(&["record", "report.json", "--now", T2]).ok();
    let b = f.yaml("images", "backstage");
    assert_eq!(b["currentDigest"], built.as_str());
    assert_eq!(b["currentVersion"], "0.6.5");
    assert_eq!(b["lastBuilt"], T1);
    let history = b["buildHistory"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["commit"], "abc1234");
    assert_eq!(history[0]["trigger"], "push");
    assert_eq!(
        history[0]["baseDigests"]["node-22-bookworm-slim"],
        d1.as_str()
    );

    // 4. a config change: the runtime data stays.
    f.images_yaml(&images_yaml(&addr, &src, "2d", true));
    f.run(&["sync", "--now", T2]).ok();
    let b2 = f.yaml("images", "backstage");
    assert_eq!(b2["enrollment"]["rebuildDelay"], "2d");
    assert_eq!(b2["enrolledAt"], T0);
    assert_eq!(b2["lastDiscovery"], T2);
    for k in [
        "currentDigest",
        "currentVersion",
        "lastBuilt",
        "buildHistory",
    ] {
        assert_eq!(b2[k], b[k], "{k}");
    }
    assert_eq!(
        f.yaml("base-images", "node-22-bookworm-slim")["currentDigest"],
        d1.as_str()
    );
    assert_eq!(f.yaml("images", "postgres")["currentDigest"], pg16.as_str());

    // 5. the base moves: due only after lastBuilt (T1) + 2d, never for frontend (autoRebuild off).
    let d2 = push(&reg, "library/node", "22-bookworm-slim", "node-2");
    assert_ne!(d1, d2);
    let j = f
        .run(&["-o", "json", "check", "--now", "2024-12-05T11:00:00Z"])
        .ok()
        .json();
    let decision = |j: &Value, n: &str| {
        j["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .unwrap()
            .clone()
    };
    let bs = decision(&j, "backstage");
    assert_eq!(bs["status"], "waiting", "{j}");
    assert_eq!(bs["due"], false);
    assert_eq!(bs["dueAt"], "2024-12-06T11:00:00Z");
    assert!(
        bs["reason"].as_str().unwrap().contains("1d 0h left"),
        "{bs}"
    );
    assert_eq!(decision(&j, "frontend")["status"], "held");
    let base = f.yaml("base-images", "node-22-bookworm-slim");
    assert_eq!(base["currentDigest"], d2.as_str());
    assert_eq!(base["previousDigest"], d1.as_str());
    assert_eq!(base["lastUpdated"], "2024-12-05T11:00:00Z");
    // One second short of the delay: still waiting.
    let j = f
        .run(&["-o", "json", "check", "--now", "2024-12-06T10:59:59Z"])
        .ok()
        .json();
    assert_eq!(decision(&j, "backstage")["status"], "waiting");
    // Past it: due, and --exec runs once, for backstage only, with the image in its environment
    // and the state directory unlocked (a hook may run `graft factory record`).
    let out = f.path().join("exec.txt");
    let script = format!(
        "test ! -e state/.lock || exit 9; printf '%s|%s|%s\\n' \"$GRAFT_IMAGE_NAME\" \"$GRAFT_IMAGE_REFERENCE\" \"$GRAFT_REBUILD_REASON\" >> {}",
        out.display()
    );
    let run = f
        .run(&[
            "check",
            "--now",
            "2024-12-06T11:00:00Z",
            "--exec",
            "sh",
            "-c",
            &script,
            ";",
        ])
        .ok();
    assert!(
        run.stdout.contains("backstage") && run.stdout.contains("due"),
        "{}",
        run.all()
    );
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        lines,
        format!("backstage|{addr}/owner/backstage|node-22-bookworm-slim moved to {d2}\n")
    );
    let b = f.yaml("images", "backstage");
    assert_eq!(b["rebuildState"]["status"], "due");
    assert_eq!(b["rebuildState"]["pendingRebuild"], true);
    let j = f
        .run(&["-o", "json", "check", "--now", "2030-01-01T00:00:00Z"])
        .ok()
        .json();
    assert_eq!(decision(&j, "frontend")["status"], "held");

    // 6. Warehouses: deterministic, valid against Kargo's CRD.
    f.run(&["warehouses", "--out-dir", "wh", "--namespace", "factory"])
        .ok();
    let first = std::fs::read_to_string(f.path().join("wh/node-22-bookworm-slim.yaml")).unwrap();
    let stdout = f.run(&["warehouses", "--namespace", "factory"]).ok().stdout;
    assert!(stdout.contains(&first), "{stdout}");
    assert_eq!(
        stdout,
        f.run(&["warehouses", "--namespace", "factory"]).ok().stdout
    );
    let validator = crd_validator();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(f.path().join("wh")).unwrap() {
        let p = entry.unwrap().path();
        let w: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let w: serde_json::Value = serde_json::to_value(&w).unwrap();
        check_warehouse(&validator, &w);
        names.push(w["metadata"]["name"].as_str().unwrap().to_string());
    }
    names.sort();
    assert_eq!(names, ["node-22-bookworm-slim", "postgres"]);
    let pg: serde_json::Value = serde_json::to_value(
        serde_yaml_ng::from_str::<Value>(
            &std::fs::read_to_string(f.path().join("wh/postgres.yaml")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let image = &pg["spec"]["subscriptions"][0]["image"];
    assert_eq!(image["allowTagsRegex"], serde_json::json!(["^16-alpine$"]));
    assert_eq!(image["imageSelectionStrategy"], "Lexical");
    assert_eq!(image["repoURL"], format!("{addr}/library/postgres"));
    let node: serde_json::Value =
        serde_json::to_value(serde_yaml_ng::from_str::<Value>(&first).unwrap()).unwrap();
    assert_eq!(
        node["spec"]["subscriptions"][0]["image"]["constraint"],
        "22-bookworm-slim"
    );
    assert_eq!(node["metadata"]["namespace"], "factory");

    // 7. frontend leaves images.yaml: marked, not deleted.
    f.images_yaml(&images_yaml(&addr, &src, "2d", false));
    f.run(&["sync", "--now", "2024-12-07T00:00:00Z"]).ok();
    let fe = f.yaml("images", "frontend");
    assert_eq!(fe["removedAt"], "2024-12-07T00:00:00Z");
    assert_eq!(fe["rebuildState"]["status"], "removed");
    assert_eq!(fe["buildHistory"].as_array().unwrap().len(), 1);
    assert_eq!(
        f.yaml("base-images", "node-22-bookworm-slim")["dependentImages"],
        serde_yaml_ng::from_str::<Value>("[backstage]").unwrap()
    );
}

fn crd_validator() -> jsonschema::Validator {
    let crd = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/kargo/kargo.akuity.io_warehouses.yaml"),
    )
    .unwrap();
    let crd: serde_json::Value =
        serde_json::to_value(serde_yaml_ng::from_str::<Value>(&crd).unwrap()).unwrap();
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .unwrap();
    jsonschema::draft4::new(&version["schema"]["openAPIV3Schema"]).unwrap()
}

/// The schema, and the CEL rules of an image subscription that apply (the validator does not
/// run `x-kubernetes-validations`).
fn check_warehouse(v: &jsonschema::Validator, w: &serde_json::Value) {
    let errors: Vec<String> = v.iter_errors(w).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{w}: {errors:?}");
    assert_eq!(w["apiVersion"], "kargo.akuity.io/v1alpha1");
    assert_eq!(w["kind"], "Warehouse");
    for s in w["spec"]["subscriptions"].as_array().unwrap() {
        let image = &s["image"];
        assert!(!(image.get("constraint").is_some() && image.get("semverConstraint").is_some()));
        if image["imageSelectionStrategy"] == "Digest" {
            assert!(image.get("constraint").is_some(), "{w}");
        }
        assert!(image.get("allowTags").is_none(), "deprecated field: {w}");
    }
}

#[test]
fn a_broken_warehouse_fails_the_crd_check() {
    // The check can fail: a strategy Kargo does not know, and a missing repoURL.
    let v = crd_validator();
    let bad = serde_json::json!({"apiVersion": "kargo.akuity.io/v1alpha1", "kind": "Warehouse",
        "metadata": {"name": "x"}, "spec": {"interval": "5m0s", "subscriptions": [
            {"image": {"imageSelectionStrategy": "Newest", "strictSemvers": true}}]}});
    assert!(v.iter_errors(&bad).count() >= 2);
}

#[test]
fn bad_input_is_refused_and_state_survives() {
    let reg = Registry::plain();
    let addr = reg.addr().to_string();
    let f = Factory::new();
    push(&reg, "library/node", "22-bookworm-slim", "node-1");
    push(&reg, "library/postgres", "16-alpine", "pg16");
    let src = repo(
        &f.path().join("src"),
        &[
            (
                "apps/backstage/Dockerfile",
                &BACKSTAGE_DOCKERFILE.replace("REG", &addr),
            ),
            (
                "apps/frontend/Dockerfile",
                &format!("FROM {addr}/library/node:22-bookworm-slim\n"),
            ),
        ],
    );
    let good = images_yaml(&addr, &src, "7d", true);
    f.images_yaml(&good);
    f.run(&["sync", "--now", T0]).ok();
    f.run(&["check", "--now", T0]).ok();
    let before = f.snapshot();
    assert_eq!(before.len(), 4);

    // An unknown field: file:line:column and the field; nothing written.
    f.images_yaml(&good.replace(
        "    branch: main\n    dockerfile: apps/backstage",
        "    brunch: main\n    dockerfile: apps/backstage",
    ));
    let r = f.run(&["sync", "--now", T2]).fails(2);
    assert!(
        r.stderr
            .contains("images.yaml:7:5: [0].source.brunch: unknown field"),
        "{}",
        r.all()
    );
    assert_eq!(f.snapshot(), before);
    // A bad duration.
    f.images_yaml(&good.replace("rebuildDelay: 30d", "rebuildDelay: 30 days"));
    let r = f.run(&["sync", "--now", T2]).fails(2);
    assert!(
        r.stderr
            .contains("images.yaml:17:17: [1].rebuildDelay: \"30 days\" is not a duration"),
        "{}",
        r.all()
    );
    assert_eq!(f.snapshot(), before);

    // A Dockerfile with no FROM: that image's discovery failed (it keeps its bases); the others sync.
    std::fs::write(src.join("apps/backstage/Dockerfile"), "RUN echo no base\n").unwrap();
    git(&src, &["commit", "-q", "-am", "no FROM"]);
    f.images_yaml(&good);
    let r = f.run(&["sync", "--now", T2]).ok();
    assert!(
        r.stderr.contains("backstage: discovery failed"),
        "{}",
        r.all()
    );
    let b = f.yaml("images", "backstage");
    assert_eq!(b["discoveryStatus"], "failed");
    assert!(
        b["discoveryError"]
            .as_str()
            .unwrap()
            .contains("RUN before the first FROM"),
        "{b:?}"
    );
    assert_eq!(
        b["baseImages"],
        serde_yaml_ng::from_str::<Value>("[node-22-bookworm-slim]").unwrap()
    );
    assert_eq!(f.yaml("images", "frontend")["discoveryStatus"], "success");
    assert_eq!(f.snapshot().len(), 4);
    std::fs::write(src.join("apps/backstage/Dockerfile"), "# only a comment\n").unwrap();
    git(&src, &["commit", "-q", "-am", "empty"]);
    f.run(&["sync", "--now", T2]).ok();
    assert!(f.yaml("images", "backstage")["discoveryError"]
        .as_str()
        .unwrap()
        .contains("no FROM instruction"));

    // An unreachable base registry: a clear error naming it, the other checks done, no file lost.
    std::fs::write(
        src.join("apps/frontend/Dockerfile"),
        "FROM 127.0.0.1:1/library/gone:1\n",
    )
    .unwrap();
    git(&src, &["commit", "-q", "-am", "gone"]);
    f.run(&["sync", "--now", T2]).ok();
    let before = f.snapshot();
    let r = capture(command(f.path()).current_dir(f.path()).args([
        "-q",
        "--tls-verify=false",
        "--retries",
        "0",
        "--timeout",
        "5",
        "factory",
        "check",
        "--now",
        T2,
    ]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("gone-1") && r.stderr.contains("127.0.0.1:1"),
        "{}",
        r.all()
    );
    let after = f.snapshot();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (p, bytes) in &after {
        serde_yaml_ng::from_slice::<Value>(bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    let fe = f.yaml("images", "frontend");
    assert_eq!(fe["rebuildState"]["status"], "failed");
    assert!(fe["rebuildState"]["reason"]
        .as_str()
        .unwrap()
        .contains("gone-1 could not be checked"));

    // A state file that is not YAML: refused, not overwritten.
    let broken = f.path().join("state/images/postgres.yaml");
    std::fs::write(&broken, "name: [unclosed\n").unwrap();
    let r = f.run(&["sync", "--now", T2]).fails(2);
    assert!(r.stderr.contains("postgres.yaml"), "{}", r.all());
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        "name: [unclosed\n"
    );
}

#[test]
fn check_costs_one_head_per_base() {
    // 30 managed images on 3 bases (Dockerfiles on disk, `provider: local`) and one Lexical
    // external image, behind a counting proxy: 3 + 1 manifest HEADs and one tag list.
    let reg = Registry::plain();
    let proxy = crate::support::proxy::Proxy::start(reg.addr());
    let addr = proxy.addr();
    let f = Factory::new();
    for b in 0..3 {
        push(&reg, &format!("library/base{b}"), "1", &format!("b{b}"));
    }
    push(&reg, "library/postgres", "16-alpine", "pg16");
    push(&reg, "library/postgres", "17-alpine", "pg17");
    let mut yaml = String::new();
    for i in 0..30 {
        let dir = f.path().join(format!("src/app{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            format!("FROM {addr}/library/base{}:1\n", i % 3),
        )
        .unwrap();
        yaml.push_str(&format!(
            "- name: app{i}\n  registry: {addr}\n  repository: apps/app{i}\n  source: {{provider: local, repo: {}}}\n  rebuildDelay: 1d\n  autoRebuild: true\n",
            dir.display()
        ));
    }
    yaml.push_str(&format!(
        "- name: postgres\n  registry: {addr}\n  repository: library/postgres\n  allowTags: ^1[0-9]-alpine$\n  imageSelectionStrategy: Lexical\n"
    ));
    f.images_yaml(&yaml);
    f.run(&["sync", "--now", T0]).ok();
    assert_eq!(
        f.yaml("base-images", "base1-1")["dependentImages"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    proxy.clear();
    let j = f.run(&["-o", "json", "check", "--now", T0]).ok().json();
    assert_eq!(j["images"].as_array().unwrap().len(), 30);
    assert_eq!(f.yaml("images", "postgres")["currentVersion"], "17-alpine");
    let requests = proxy.requests();
    let heads: Vec<_> = requests
        .iter()
        .filter(|(m, p)| m == "HEAD" && p.contains("/manifests/"))
        .collect();
    let lists: Vec<_> = requests
        .iter()
        .filter(|(_, p)| p.contains("/tags/list"))
        .collect();
    assert_eq!(heads.len(), 4, "{requests:?}");
    assert_eq!(lists.len(), 1, "{requests:?}");
    assert!(
        requests.iter().all(|(m, p)| p == "/v2/"
            || ((m == "HEAD" && p.contains("/manifests/")) || p.contains("/tags/list"))),
        "{requests:?}"
    );
}

/// The sample library in `dir/library` as a git repository on `main`, its images going to
/// `docker://ADDR/lib/NAME` and its science images read from `docker://ADDR/sci/…`, with
/// graft.yaml's `factory:` section `factory`.
fn sample_library(dir: &Path, addr: &str, factory: &str) -> PathBuf {
    use crate::support::tools::{copy_dir, write_file};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = dir.join("library");
    for sub in ["manifests", "layers", "testdata/science"] {
        copy_dir(&root.join(sub), &lib.join(sub));
    }
    let settings = std::fs::read_to_string(root.join("graft.yaml")).unwrap();
    assert!(settings.contains("\nrepo: oci:out/library\n"));
    let settings = settings.replace(
        "\nrepo: oci:out/library\n",
        &format!("\nrepo: docker://{addr}/lib\n"),
    );
    write_file(&lib, "graft.yaml", &format!("{settings}{factory}"));
    for (file, from, to) in [
        (
            "manifests/sci-notebook.yaml",
            "oci:testdata/science/jupyter-sci:2.4",
            format!("docker://{addr}/sci/jupyter:2.4"),
        ),
        (
            "manifests/astro-notebook.yaml",
            "oci:testdata/science/astro-base:1.0",
            format!("docker://{addr}/sci/astro:1.0"),
        ),
    ] {
        let p = lib.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} names {from}");
        std::fs::write(&p, text.replace(from, &to)).unwrap();
    }
    git(&lib, &["init", "-q", "-b", "main"]);
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "library"]);
    lib
}

/// `graft copy` of a sample science image into the registry.
fn copy_science(f: &Factory, lib: &Path, from: &str, to: &str) {
    let from = format!("oci:{}/{from}", lib.join("testdata/science").display());
    capture(command(f.path()).current_dir(f.path()).args([
        "-q",
        "--tls-verify=false",
        "copy",
        &from,
        to,
    ]))
    .ok();
}

/// The digest a reference points at (skopeo: not graft's own code).
fn digest_of(reference: &str) -> String {
    let out =
        run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", reference]));
    crate::support::tools::sha256_digest(&out.stdout)
}

#[test]
fn library_images_follow_their_science_base_and_refresh_in_process() {
    let reg = Registry::plain();
    let addr = reg.addr().to_string();
    let f = Factory::new();
    let lib = sample_library(
        f.path(),
        &addr,
        "factory:\n  namespace: science-images\n  rebuild_delay: 1h\n  auto_rebuild: true\n",
    );
    let libs = lib.display().to_string();
    copy_science(
        &f,
        &lib,
        "jupyter-sci:2.4",
        &format!("docker://{addr}/sci/jupyter:2.4"),
    );
    copy_science(
        &f,
        &lib,
        "astro-base:1.0",
        &format!("docker://{addr}/sci/astro:1.0"),
    );
    let jupyter = digest_of(&format!("docker://{addr}/sci/jupyter:2.4"));

    // Enrolled: name = manifest name, registry/repository from the target, base = science.
    f.run(&["sync", "--library", &libs, "--now", T0]).ok();
    let img = f.yaml("images", "sci-notebook");
    assert_eq!(img["discoveryStatus"], "success");
    assert_eq!(img["enrollment"]["registry"], addr.as_str());
    assert_eq!(img["enrollment"]["repository"], "lib/sci-notebook");
    assert_eq!(
        img["enrollment"]["library"]["manifest"],
        "manifests/sci-notebook.yaml"
    );
    assert_eq!(img["enrollment"]["rebuildDelay"], "1h");
    assert_eq!(img["enrollment"]["autoRebuild"], true);
    assert_eq!(img["baseImages"], serde_json::json!(["jupyter-2-4"]));
    let base = f.yaml("base-images", "jupyter-2-4");
    assert_eq!(
        base["fullImage"],
        format!("{addr}/sci/jupyter:2.4").as_str()
    );
    assert_eq!(base["dependentImages"], serde_json::json!(["sci-notebook"]));
    assert_eq!(
        f.yaml("images", "astro-notebook")["baseImages"],
        serde_json::json!(["astro-1-0"])
    );
    assert!(
        !f.path().join("state/.lock").exists(),
        "the lock is released"
    );

    // The first refresh, recorded: built on the science digest.
    let report = capture(command(f.path()).current_dir(f.path()).args([
        "-q",
        "--tls-verify=false",
        "-o",
        "json",
        "refresh",
        "--library",
        &libs,
    ]))
    .ok();
    std::fs::write(f.path().join("r1.json"), &report.stdout).unwrap();
    f.run(&["record", "r1.json", "--now", T1]).ok();
    let img = f.yaml("images", "sci-notebook");
    let first = img["currentDigest"].as_str().unwrap().to_string();
    assert_eq!(
        img["buildHistory"][0]["baseDigests"]["jupyter-2-4"],
        jupyter.as_str()
    );
    let j = f.run(&["-o", "json", "check", "--now", T1]).ok().json();
    let status = |j: &Value, name: &str| -> String {
        j["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {j}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status(&j, "sci-notebook"), "monitoring");

    // The science tag moves (another image under it).
    copy_science(
        &f,
        &lib,
        "astro-base:1.0",
        &format!("docker://{addr}/sci/jupyter:2.4"),
    );
    let moved = digest_of(&format!("docker://{addr}/sci/jupyter:2.4"));
    assert_ne!(moved, jupyter);

    // Within rebuildDelay of the build: waiting, nothing refreshed.
    let j = f
        .run(&[
            "-o",
            "json",
            "check",
            "--now",
            "2024-12-04T11:30:00Z",
            "--refresh",
            "--library",
            &libs,
        ])
        .ok()
        .json();
    assert_eq!(status(&j, "sci-notebook"), "waiting", "{j}");
    assert_eq!(status(&j, "astro-notebook"), "monitoring", "{j}");
    assert_eq!(j["refreshed"], serde_json::json!([]));
    assert_eq!(
        digest_of(&format!("docker://{addr}/lib/sci-notebook:2.4")),
        first
    );

    // Past it: due, refreshed by graft itself, signed, the new build recorded.
    let home = tempfile::tempdir().unwrap();
    let (key, public) = crate::sign::keypair(home.path(), home.path(), "factory");
    let j = capture(
        command(f.path())
            .current_dir(f.path())
            .env("COSIGN_PASSWORD", crate::sign::PW)
            .args(["-q", "--tls-verify=false", "-o", "json", "factory", "check"])
            .args([
                "--now",
                "2024-12-04T12:30:00Z",
                "--refresh",
                "--library",
                &libs,
            ])
            .args(["--sign-key", key.to_str().unwrap()]),
    )
    .ok()
    .json();
    assert_eq!(status(&j, "sci-notebook"), "due", "{j}");
    let refreshed = j["refreshed"].as_array().unwrap();
    assert_eq!(refreshed.len(), 1, "{j}");
    assert_eq!(refreshed[0]["name"], "sci-notebook");
    let new = refreshed[0]["digest"].as_str().unwrap().to_string();
    assert_ne!(new, first);
    assert_eq!(
        digest_of(&format!("docker://{addr}/lib/sci-notebook:2.4")),
        new
    );
    let peer = crate::support::peers::Peer::new();
    let verified = peer.cosign_verify(&public, &format!("{addr}/lib/sci-notebook@{new}"), &[]);
    crate::support::peers::stdout_ok(&verified, "cosign verify");
    let img = f.yaml("images", "sci-notebook");
    assert_eq!(img["currentDigest"], new.as_str());
    assert_eq!(img["lastBuilt"], "2024-12-04T12:30:00Z");
    assert_eq!(img["buildHistory"][0]["trigger"], "base-update");
    assert_eq!(
        img["buildHistory"][0]["baseDigests"]["jupyter-2-4"],
        moved.as_str()
    );
    assert_eq!(img["buildHistory"][1]["digest"], first.as_str());
    // Built on the moved base: nothing due any more.
    let j = f
        .run(&["-o", "json", "check", "--now", "2024-12-04T15:00:00Z"])
        .ok()
        .json();
    assert_eq!(status(&j, "sci-notebook"), "monitoring", "{j}");

    // The Warehouses' namespace from graft.yaml; the flag wins.
    let j = f
        .run(&["-o", "json", "warehouses", "--library", &libs])
        .ok()
        .json();
    let all = j.as_array().unwrap();
    assert!(!all.is_empty());
    for w in all {
        assert_eq!(w["metadata"]["namespace"], "science-images", "{w}");
    }
    let j = f
        .run(&[
            "-o",
            "json",
            "warehouses",
            "--library",
            &libs,
            "--namespace",
            "other",
        ])
        .ok()
        .json();
    for w in j.as_array().unwrap() {
        assert_eq!(w["metadata"]["namespace"], "other", "{w}");
    }
}

#[test]
fn a_second_writer_is_refused_naming_the_lock() {
    let reg = Registry::plain();
    let addr = reg.addr().to_string();
    let f = Factory::new();
    push(&reg, "library/node", "22-bookworm-slim", "node-1");
    push(&reg, "library/postgres", "16-alpine", "pg16");
    let src = repo(
        &f.path().join("src"),
        &[
            (
                "apps/backstage/Dockerfile",
                &BACKSTAGE_DOCKERFILE.replace("REG", &addr),
            ),
            (
                "apps/frontend/Dockerfile",
                &format!("FROM {addr}/library/node:22-bookworm-slim\n"),
            ),
        ],
    );
    f.images_yaml(&images_yaml(&addr, &src, "7d", false));
    f.run(&["sync", "--now", T0]).ok();
    let before = f.snapshot();
    // Another writer holds the directory (its lock file, as StateDir::lock writes it).
    let lock = f.path().join("state/.lock");
    std::fs::write(&lock, "pid 4242\n").unwrap();
    for args in [
        vec!["sync", "--now", T2],
        vec!["check", "--now", T2],
        vec!["record", "r.json", "--now", T2],
    ] {
        if args[0] == "record" {
            std::fs::write(f.path().join("r.json"), r#"{"images":[]}"#).unwrap();
        }
        let r = f.run(&args).fails(1);
        assert!(r.stderr.contains("state/.lock"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("pid 4242"), "{args:?}: {}", r.stderr);
        assert_eq!(f.snapshot(), before, "{args:?} wrote nothing");
        assert!(lock.exists(), "another writer's lock is left alone");
    }
    // Released: the next writer gets in.
    std::fs::remove_file(&lock).unwrap();
    f.run(&["check", "--now", T2]).ok();
    assert!(!lock.exists());
}

#[test]
fn library_build_manifests_get_bases_from_dockerfile_or_annotations() {
    use crate::support::tools::write_file;
    let reg = Registry::plain();
    let addr = reg.addr().to_string();
    let f = Factory::new();
    let node = push(&reg, "library/node", "22", "node-22");
    // `remote` was built elsewhere: its image carries graft's base annotations.
    let config =
        r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = reg.push_blob("lib/remote", config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MT}","config":{{"mediaType":"{CONFIG_MT}","digest":"{cd}","size":{}}},"layers":[],"annotations":{{"org.opencontainers.image.base.name":"{addr}/library/node:22","org.opencontainers.image.base.digest":"{node}"}}}}"#,
        config.len()
    );
    reg.push_manifest("lib/remote", "1.0", MANIFEST_MT, manifest.as_bytes());
    let lib = f.path().join("library");
    write_file(&lib, "graft.yaml", &format!("repo: docker://{addr}/lib\n"));
    write_file(
        &lib,
        "manifests/local.yaml",
        &format!(
            "name: local\nversion: 1.0\nbuild:\n  path: images/local\n  args: {{REG: '{addr}'}}\n"
        ),
    );
    write_file(
        &lib,
        "images/local/Dockerfile",
        "ARG REG=example.org\nFROM ${REG}/library/node:22 AS b\nFROM scratch AS s\nFROM b\n",
    );
    write_file(
        &lib,
        "manifests/remote.yaml",
        "name: remote\nversion: 1.0\ngit:\n  repo: https://example.org/remote\n  commit: 0123456789abcdef0123456789abcdef01234567\nbuild:\n  path: x\n",
    );
    let libs = lib.display().to_string();
    f.run(&["sync", "--library", &libs, "--now", T0]).ok();
    for name in ["local", "remote"] {
        let img = f.yaml("images", name);
        assert_eq!(img["discoveryStatus"], "success", "{name}: {img:?}");
        assert_eq!(img["baseImages"], serde_json::json!(["node-22"]), "{name}");
    }
    assert_eq!(
        f.yaml("images", "local")["enrollment"]["library"]["dockerfile"],
        "images/local/Dockerfile"
    );
    assert_eq!(
        f.yaml("base-images", "node-22")["dependentImages"],
        serde_json::json!(["local", "remote"])
    );
    // Without the annotations (another image under the tag): discovery fails, saying why.
    push(&reg, "lib/remote", "1.0", "plain");
    f.run(&["sync", "--library", &libs, "--now", T2]).ok();
    let img = f.yaml("images", "remote");
    assert_eq!(img["discoveryStatus"], "failed");
    let why = img["discoveryError"].as_str().unwrap();
    assert!(why.contains("x/Dockerfile is not in the library"), "{why}");
    assert!(why.contains("org.opencontainers.image.base.name"), "{why}");
    // It keeps the bases it had.
    assert_eq!(img["baseImages"], serde_json::json!(["node-22"]));
}

#[test]
fn graft_yaml_factory_settings_are_schema_checked() {
    use crate::support::tools::write_file;
    let f = Factory::new();
    let lib = f.path().join("library");
    write_file(
        &lib,
        "graft.yaml",
        "repo: docker://registry.example.org/lib\nfactory:\n  namespace: Not_A_Label\n  rebuild_delay: 7 days\n  auto_rebuild: yes please\n  namespce: x\n",
    );
    write_file(
        &lib,
        "manifests/m.yaml",
        "name: m\nversion: 1.0\nscience:\n  image: docker://registry.example.org/sci/x:1\n",
    );
    let libs = lib.display().to_string();
    let r = f.run(&["sync", "--library", &libs]).fails(2);
    for field in [
        "graft.yaml:3:14: factory.namespace",
        "graft.yaml:4:18: factory.rebuild_delay",
        "graft.yaml:5:17: factory.auto_rebuild",
        "graft.yaml:6:3: factory.namespce: unknown field",
    ] {
        assert!(r.stderr.contains(field), "{field}: {}", r.stderr);
    }
    assert!(!f.path().join("state/images").exists(), "nothing written");
}

/// `graft build` of the library in `lib` (buildah's storage kept in `lib/.storage`) with
/// build values `build`/`commit`, `names` only (all when empty); the run.
fn graft_build(lib: &Path, build: &str, commit: &str, names: &[&str]) -> Run {
    let storage = lib.join(".storage");
    let mut args = vec![
        "-o",
        "json",
        "build",
        "--library",
        ".",
        "--tls-verify=false",
        "--storage",
        storage.to_str().unwrap(),
        "--build",
        build,
        "--commit",
        commit,
        "--branch",
        "main",
    ];
    args.extend(names);
    crate::graft::run_in(lib, &args)
}

/// The decision `check -o json` made for `name`.
fn decision<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {j}"))
}

#[test]
fn library_build_images_are_built_on_the_moved_base_signed_and_recorded() {
    use crate::build::{library, BASE_DOCKERFILE};
    use crate::sign::{keypair, PW};
    let reg = Registry::plain();
    let addr = reg.addr().to_string();
    let f = Factory::new();
    // `base` (busybox FROM scratch) and `app` FROM base's tag, both built by graft with buildah.
    let lib = library(&[
        (
            "graft.yaml",
            format!("repo: docker://{addr}/lib\ndefault_branch: main\nfactory:\n  rebuild_delay: 1h\n  auto_rebuild: true\n"),
        ),
        (
            "manifests/base.yaml",
            "name: base\nversion: 1.0\nbuild:\n  path: images/base\n  platforms: [linux/amd64]\n".into(),
        ),
        ("images/base/Dockerfile", BASE_DOCKERFILE.into()),
        (
            "manifests/app.yaml",
            format!("name: app\nversion: 1.0\nbuild:\n  path: images/app\n  platforms: [linux/amd64]\n  args: {{REGISTRY: '{addr}'}}\n  test: grep -q app /app\n"),
        ),
        (
            "images/app/Dockerfile",
            "ARG REGISTRY\nFROM ${REGISTRY}/lib/base:1.0\nRUN echo app > /app\n".into(),
        ),
    ]);
    let libs = lib.path().display().to_string();
    let storage = lib.path().join(".storage").display().to_string();
    // The first build (`graft build`, before the factory enrolls the images).
    let run = graft_build(lib.path(), "1", "abc", &[]).ok();
    let first = run.json();
    let base1 = first["images"][0]["digest"].as_str().unwrap().to_string();
    let app1 = first["images"][1]["digest"].as_str().unwrap().to_string();
    std::fs::write(f.path().join("r1.json"), &run.stdout).unwrap();
    f.run(&["sync", "--library", &libs, "--now", T0]).ok();
    let img = f.yaml("images", "app");
    assert_eq!(
        img["baseImages"],
        serde_json::json!(["base-1-0"]),
        "{img:?}"
    );
    assert_eq!(
        img["enrollment"]["library"]["dockerfile"],
        "images/app/Dockerfile"
    );

    // Never built: unbuilt (nothing to compare a base with); `record` adds the first build.
    let j = f.run(&["-o", "json", "check", "--now", T0]).ok().json();
    assert_eq!(decision(&j, "app")["status"], "unbuilt", "{j}");
    assert!(decision(&j, "app")["reason"]
        .as_str()
        .unwrap()
        .contains("graft factory record"));

    // The first build recorded from its `graft build -o json` report.
    let rec = f
        .run(&[
            "-o", "json", "record", "r1.json", "--now", T1, "--commit", "abc",
        ])
        .ok()
        .json();
    assert_eq!(rec["recorded"].as_array().unwrap().len(), 2, "{rec}");
    let img = f.yaml("images", "app");
    assert_eq!(img["currentDigest"], app1.as_str());
    assert_eq!(img["currentVersion"], "1.0");
    assert_eq!(img["lastBuilt"], T1);
    assert_eq!(
        img["buildHistory"][0]["baseDigests"]["base-1-0"],
        base1.as_str()
    );
    assert_eq!(img["buildHistory"][0]["commit"], "abc");
    let j = f.run(&["-o", "json", "check", "--now", T1]).ok().json();
    assert_eq!(decision(&j, "app")["status"], "monitoring", "{j}");

    // A new digest under the base tag (graft builds a changed base).
    std::fs::write(
        lib.path().join("images/base/Dockerfile"),
        format!("{BASE_DOCKERFILE}RUN echo 2 > /base-version\n"),
    )
    .unwrap();
    let run = graft_build(lib.path(), "2", "def", &["base"]).ok();
    let base2 = run.json()["images"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(base2, base1);
    assert_eq!(digest_of(&format!("docker://{addr}/lib/base:1.0")), base2);

    // check --refresh: within rebuildDelay waiting, nothing built; past it, app is built with
    // buildah FROM the new base digest, signed, and recorded.
    let home = tempfile::tempdir().unwrap();
    let (key, public) = keypair(home.path(), home.path(), "factory");
    let check_refresh = |now: &str| {
        capture(
            command(f.path())
                .current_dir(f.path())
                .env("COSIGN_PASSWORD", PW)
                .args(["-q", "--tls-verify=false", "-o", "json", "factory", "check"])
                .args(["--now", now, "--refresh", "--library", &libs])
                .args(["--storage", &storage, "--build", "2", "--commit", "def"])
                .args(["--branch", "main", "--sign-key", key.to_str().unwrap()]),
        )
    };
    // --sign-key signs what --refresh writes: alone it is refused, nothing checked.
    let r = f.run(&["check", "--now", T1, "--sign-key", key.to_str().unwrap()]);
    let r = r.fails(2);
    assert!(
        r.stderr.contains("--sign-key") && r.stderr.contains("--refresh"),
        "{}",
        r.stderr
    );
    let j = check_refresh("2024-12-04T11:30:00Z").ok().json();
    assert_eq!(decision(&j, "app")["status"], "waiting", "{j}");
    assert_eq!(j["built"], serde_json::json!([]));
    assert_eq!(digest_of(&format!("docker://{addr}/lib/app:1.0")), app1);
    let j = check_refresh("2024-12-04T12:30:00Z").ok().json();
    assert_eq!(decision(&j, "app")["status"], "due", "{j}");
    assert!(decision(&j, "app")["reason"]
        .as_str()
        .unwrap()
        .contains(&format!("base-1-0 moved to {base2}")));
    let built = j["built"].as_array().unwrap();
    assert_eq!(built.len(), 1, "{j}");
    assert_eq!(built[0]["name"], "app");
    let app2 = built[0]["digest"].as_str().unwrap().to_string();
    assert_ne!(app2, app1);
    assert_eq!(digest_of(&format!("docker://{addr}/lib/app:1.0")), app2);
    // Built FROM the new base: graft's base annotation and the first layer say so.
    let index: Value = serde_json::from_slice(
        &run_ok(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{addr}/lib/app@{app2}"),
        ]))
        .stdout,
    )
    .unwrap();
    assert_eq!(
        index["annotations"]["org.opencontainers.image.base.digest"],
        base2.as_str()
    );
    let layers = |r: &str| -> Vec<Value> {
        let out = run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--override-os",
            "linux",
            "--override-arch",
            "amd64",
            &format!("docker://{r}"),
        ]));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Layers"].as_array().unwrap().clone()
    };
    let base_layers = layers(&format!("{addr}/lib/base@{base2}"));
    let app_layers = layers(&format!("{addr}/lib/app@{app2}"));
    assert_eq!(app_layers[..base_layers.len()], base_layers[..]);
    let img = f.yaml("images", "app");
    assert_eq!(img["currentDigest"], app2.as_str());
    assert_eq!(img["lastBuilt"], "2024-12-04T12:30:00Z");
    let newest = &img["buildHistory"][0];
    assert_eq!(newest["trigger"], "base-update");
    assert_eq!(newest["commit"], "def");
    assert_eq!(newest["baseDigests"]["base-1-0"], base2.as_str());
    assert_eq!(img["buildHistory"][1]["digest"], app1.as_str());
    // Signed with --sign-key: the real cosign verifies what check --refresh built.
    let peer = crate::support::peers::Peer::new();
    crate::support::peers::stdout_ok(
        &peer.cosign_verify(&public, &format!("{addr}/lib/app@{app2}"), &[]),
        "cosign verify",
    );

    // Built on the moved base: nothing due any more.
    let j = f
        .run(&["-o", "json", "check", "--now", "2024-12-04T15:00:00Z"])
        .ok()
        .json();
    assert_eq!(decision(&j, "app")["status"], "monitoring", "{j}");
    assert_eq!(
        f.yaml("images", "app")["rebuildState"]["status"],
        "monitoring"
    );
}

#[test]
fn builds_use_the_checked_base_digest_and_a_failed_build_records_only_what_was_written() {
    use crate::build::{library, BASE_DOCKERFILE};
    let reg = Registry::plain();
    let addr = reg.addr().to_string();
    let f = Factory::new();
    // An upstream busybox image outside the factory's library (made by graft).
    let up = library(&[
        (
            "graft.yaml",
            format!("repo: docker://{addr}/up\ndefault_branch: main\n"),
        ),
        (
            "manifests/busybox.yaml",
            "name: busybox\nversion: 1\nbuild:\n  path: images/base\n  platforms: [linux/amd64]\n"
                .into(),
        ),
        ("images/base/Dockerfile", BASE_DOCKERFILE.into()),
    ]);
    graft_build(up.path(), "1", "abc", &[]).ok();
    let up1 = digest_of(&format!("docker://{addr}/up/busybox:1"));
    // Two library images FROM it, independent of each other: `tools` builds before `zeta`.
    let child = |name: &str| {
        format!("name: {name}\nversion: 1.0\nbuild:\n  path: images/{name}\n  platforms: [linux/amd64]\n  args: {{REGISTRY: '{addr}'}}\n")
    };
    let dockerfile = |name: &str| {
        format!("ARG REGISTRY\nFROM ${{REGISTRY}}/up/busybox:1\nRUN echo {name} > /{name}\n")
    };
    let lib = library(&[
        (
            "graft.yaml",
            format!(
                "repo: docker://{addr}/lib\ndefault_branch: main\nfactory:\n  auto_rebuild: true\n"
            ),
        ),
        ("manifests/tools.yaml", child("tools")),
        ("images/tools/Dockerfile", dockerfile("tools")),
        ("manifests/zeta.yaml", child("zeta")),
        ("images/zeta/Dockerfile", dockerfile("zeta")),
    ]);
    let libs = lib.path().display().to_string();
    let storage = lib.path().join(".storage").display().to_string();
    // Built once (buildah's storage, kept, now holds up/busybox:1 = up1), enrolled, checked,
    // recorded.
    let run = graft_build(lib.path(), "1", "abc", &[]).ok();
    std::fs::write(f.path().join("r1.json"), &run.stdout).unwrap();
    let zeta1 = run.json()["images"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    f.run(&["sync", "--library", &libs, "--now", T0]).ok();
    f.run(&["check", "--now", T0]).ok();
    f.run(&["record", "r1.json", "--now", T1]).ok();
    assert_eq!(
        f.yaml("images", "tools")["buildHistory"][0]["baseDigests"]["busybox-1"],
        up1.as_str()
    );

    // Upstream moves; zeta's Dockerfile breaks.
    std::fs::write(
        up.path().join("images/base/Dockerfile"),
        format!("{BASE_DOCKERFILE}RUN echo 2 > /up-version\n"),
    )
    .unwrap();
    graft_build(up.path(), "2", "def", &[]).ok();
    let up2 = digest_of(&format!("docker://{addr}/up/busybox:1"));
    assert_ne!(up2, up1);
    std::fs::write(
        lib.path().join("images/zeta/Dockerfile"),
        format!("{}RUN exit 3\n", dockerfile("zeta")),
    )
    .unwrap();
    let zeta_before = f.yaml("images", "zeta");
    // An --exec hook, run for every due image although zeta's build fails.
    let hooked = f.path().join("exec.txt");
    let script = format!(
        "printf '%s\\n' \"$GRAFT_IMAGE_NAME\" >> {}",
        hooked.display()
    );
    let run = f
        .run(&[
            "-o",
            "json",
            "check",
            "--now",
            T2,
            "--refresh",
            "--library",
            &libs,
            "--storage",
            &storage,
            "--build",
            "2",
            "--commit",
            "def",
            "--branch",
            "main",
            "--exec",
            "sh",
            "-c",
            &script,
            ";",
        ])
        .fails(1);
    assert_eq!(
        std::fs::read_to_string(&hooked).unwrap_or_default(),
        "tools\nzeta\n",
        "{}",
        run.all()
    );
    assert!(
        run.stderr
            .contains("manifests/zeta.yaml: building for linux/amd64"),
        "{}",
        run.all()
    );
    // tools was written before zeta failed: recorded, built on the digest the check saw
    // (up2), pinned (graft's base annotation names it; without the pin there is none).
    let tools = f.yaml("images", "tools");
    let tools2 = tools["currentDigest"].as_str().unwrap().to_string();
    assert_eq!(digest_of(&format!("docker://{addr}/lib/tools:1.0")), tools2);
    assert_eq!(tools["buildHistory"][0]["trigger"], "base-update");
    assert_eq!(tools["buildHistory"][0]["commit"], "def");
    assert_eq!(
        tools["buildHistory"][0]["baseDigests"]["busybox-1"],
        up2.as_str()
    );
    assert_eq!(tools["rebuildState"]["status"], "monitoring");
    let layers = |r: &str| -> Vec<Value> {
        let out = run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--override-os",
            "linux",
            "--override-arch",
            "amd64",
            &format!("docker://{r}"),
        ]));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Layers"].as_array().unwrap().clone()
    };
    let up_layers = layers(&format!("{addr}/up/busybox@{up2}"));
    let tools_layers = layers(&format!("{addr}/lib/tools@{tools2}"));
    assert_eq!(tools_layers.len(), up_layers.len() + 1);
    assert_eq!(tools_layers[..up_layers.len()], up_layers[..]);
    let index: Value = serde_json::from_slice(
        &run_ok(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{addr}/lib/tools@{tools2}"),
        ]))
        .stdout,
    )
    .unwrap();
    assert_eq!(
        index["annotations"]["org.opencontainers.image.base.digest"],
        up2.as_str()
    );
    // zeta: nothing recorded, its tag unchanged, still due (the next check retries it).
    let zeta = f.yaml("images", "zeta");
    assert_eq!(zeta["buildHistory"], zeta_before["buildHistory"]);
    assert_eq!(zeta["currentDigest"], zeta1.as_str());
    assert_eq!(zeta["lastBuilt"], T1);
    assert_eq!(digest_of(&format!("docker://{addr}/lib/zeta:1.0")), zeta1);
    let j = f.run(&["-o", "json", "check", "--now", T2]).ok().json();
    assert_eq!(decision(&j, "zeta")["status"], "due", "{j}");
    assert_eq!(decision(&j, "tools")["status"], "monitoring", "{j}");
}

#[test]
fn a_build_whose_signing_fails_is_recorded_with_the_tags_it_moved() {
    use crate::build::{library, BASE_DOCKERFILE};
    use crate::sign::{keypair, PW};
    use crate::support::proxy::Proxy;
    let reg = Registry::plain();
    // Everything goes through a proxy that can refuse the signature's tag.
    let proxy = Proxy::start(&reg.base_url());
    let addr = proxy.addr();
    let f = Factory::new();
    let up = library(&[
        (
            "graft.yaml",
            format!("repo: docker://{addr}/up\ndefault_branch: main\n"),
        ),
        (
            "manifests/busybox.yaml",
            "name: busybox\nversion: 1\nbuild:\n  path: images/base\n  platforms: [linux/amd64]\n"
                .into(),
        ),
        ("images/base/Dockerfile", BASE_DOCKERFILE.into()),
    ]);
    graft_build(up.path(), "1", "abc", &[]).ok();
    let lib = library(&[
        (
            "graft.yaml",
            format!(
                "repo: docker://{addr}/lib\ndefault_branch: main\nfactory:\n  auto_rebuild: true\n"
            ),
        ),
        (
            "manifests/tools.yaml",
            format!("name: tools\nversion: 1.0\nbuild:\n  path: images/tools\n  platforms: [linux/amd64]\n  args: {{REGISTRY: '{addr}'}}\n"),
        ),
        (
            "images/tools/Dockerfile",
            "ARG REGISTRY\nFROM ${REGISTRY}/up/busybox:1\nRUN echo tools > /tools\n".into(),
        ),
    ]);
    let libs = lib.path().display().to_string();
    let storage = lib.path().join(".storage").display().to_string();
    let run = graft_build(lib.path(), "1", "abc", &[]).ok();
    std::fs::write(f.path().join("r1.json"), &run.stdout).unwrap();
    let tools1 = run.json()["images"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    f.run(&["sync", "--library", &libs, "--now", T0]).ok();
    f.run(&["check", "--now", T0]).ok();
    f.run(&["record", "r1.json", "--now", T1]).ok();
    assert_eq!(f.yaml("images", "tools")["currentDigest"], tools1.as_str());

    // Upstream moves: tools is due; its signature's tag is refused (400, not retried).
    std::fs::write(
        up.path().join("images/base/Dockerfile"),
        format!("{BASE_DOCKERFILE}RUN echo 2 > /up-version\n"),
    )
    .unwrap();
    graft_build(up.path(), "2", "def", &[]).ok();
    proxy.fail_with("PUT", ".sig", 400, 1000);
    let home = tempfile::tempdir().unwrap();
    let (key, _) = keypair(home.path(), home.path(), "factory");
    let r = capture(
        command(f.path())
            .current_dir(f.path())
            .env("COSIGN_PASSWORD", PW)
            .args(["-q", "--tls-verify=false", "-o", "json", "factory", "check"])
            .args(["--now", T2, "--refresh", "--library", &libs])
            .args(["--storage", &storage, "--build", "2", "--commit", "def"])
            .args(["--branch", "main", "--sign-key", key.to_str().unwrap()]),
    )
    .fails(1);
    assert!(r.stderr.contains("injected failure"), "{}", r.all());
    // The tag moved before signing failed: the state follows it.
    let tools2 = digest_of(&format!("docker://{addr}/lib/tools:1.0"));
    assert_ne!(tools2, tools1);
    let tools = f.yaml("images", "tools");
    assert_eq!(tools["currentDigest"], tools2.as_str(), "{tools:?}");
    assert_eq!(tools["buildHistory"][0]["trigger"], "base-update");
    assert_eq!(tools["buildHistory"][1]["digest"], tools1.as_str());
}

#[test]
fn a_refresh_whose_signing_fails_is_recorded_with_the_tags_it_moved() {
    use crate::support::proxy::Proxy;
    let reg = Registry::plain();
    // Everything goes through a proxy that can refuse the signature's tag.
    let proxy = Proxy::start(&reg.base_url());
    let addr = proxy.addr();
    let f = Factory::new();
    let lib = sample_library(f.path(), &addr, "factory:\n  auto_rebuild: true\n");
    let libs = lib.display().to_string();
    for (from, to) in [
        ("jupyter-sci:2.4", "jupyter:2.4"),
        ("astro-base:1.0", "astro:1.0"),
    ] {
        copy_science(&f, &lib, from, &format!("docker://{addr}/sci/{to}"));
    }
    f.run(&["sync", "--library", &libs, "--now", T0]).ok();
    let report = capture(command(f.path()).current_dir(f.path()).args([
        "-q",
        "--tls-verify=false",
        "-o",
        "json",
        "refresh",
        "--library",
        &libs,
    ]))
    .ok();
    std::fs::write(f.path().join("r1.json"), &report.stdout).unwrap();
    f.run(&["record", "r1.json", "--now", T1]).ok();
    let first = f.yaml("images", "sci-notebook")["currentDigest"]
        .as_str()
        .unwrap()
        .to_string();
    // The science tag moves: sci-notebook is due; its signature's tag is refused (400).
    copy_science(
        &f,
        &lib,
        "astro-base:1.0",
        &format!("docker://{addr}/sci/jupyter:2.4"),
    );
    proxy.fail_with("PUT", ".sig", 400, 1000);
    let home = tempfile::tempdir().unwrap();
    let (key, _) = crate::sign::keypair(home.path(), home.path(), "factory");
    let r = capture(
        command(f.path())
            .current_dir(f.path())
            .env("COSIGN_PASSWORD", crate::sign::PW)
            .args(["-q", "--tls-verify=false", "-o", "json", "factory", "check"])
            .args(["--now", T2, "--refresh", "--library", &libs])
            .args(["--sign-key", key.to_str().unwrap()]),
    )
    .fails(1);
    assert!(r.stderr.contains("injected failure"), "{}", r.all());
    // The tag moved before signing failed: the state follows it.
    let new = digest_of(&format!("docker://{addr}/lib/sci-notebook:2.4"));
    assert_ne!(new, first);
    let img = f.yaml("images", "sci-notebook");
    assert_eq!(img["currentDigest"], new.as_str(), "{img:?}");
    assert_eq!(img["buildHistory"][0]["trigger"], "base-update");
    assert_eq!(img["buildHistory"][1]["digest"], first.as_str());
}
