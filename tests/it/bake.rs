//! BuildKit through a bake file, without buildx (it cannot be installed here): `graft plan
//! --bake` is checked against the bake file's documented JSON structure
//! (https://docs.docker.com/build/bake/reference/: keys and value types), a base built in the
//! same bake is a `target:` context, an unchanged base is pinned to the registry's digest, the
//! output is byte-identical run to run. `graft build --from-metadata` is fed a metadata file in
//! buildx's format for an image pushed as buildx would (by `graft append --base scratch`); it
//! checks the digest against the registry and refreshes; a wrong digest writes nothing.

use std::path::Path;

use serde_json::{json, Value};

use crate::graft::{run_in, Run};
use crate::support::git::git;
use crate::support::peers::Peer;
use crate::support::registry::Registry;
use crate::support::tools::files_dir;

fn library(files: &[(&str, String)]) -> tempfile::TempDir {
    files_dir(files)
}

fn chain(reg: &Registry) -> Vec<(&'static str, String)> {
    vec![
        ("graft.yaml", format!("repo: docker://{}/lib\ndefault_branch: main\n", reg.addr())),
        (
            "manifests/base.yaml",
            "name: base\nversion: 1.0\nmaintainers: [{name: Ann, email: ann@example.org}]\nbuild:\n  path: images/base\n  platforms: [linux/amd64, linux/arm64]\n  labels: {org.example.kind: base}\n".into(),
        ),
        ("images/base/Dockerfile", "FROM scratch\nCOPY hello /hello\n".into()),
        ("images/base/hello", "hello\n".into()),
        (
            "manifests/child.yaml",
            format!("name: child\nversion: 1.0\nbuild:\n  path: images/child\n  dockerfile: df/Dockerfile.child\n  platforms: [linux/amd64]\n  target: final\n  tags: ['{{version}}', 'b{{build}}']\n  args: {{REGISTRY: '{}'}}\n", reg.addr()),
        ),
        (
            "images/child/df/Dockerfile.child",
            "ARG REGISTRY\nFROM ${REGISTRY}/lib/base:1.0 AS final\nCOPY x /x\n".into(),
        ),
        ("images/child/x", "x\n".into()),
    ]
}

fn plan_bake(lib: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "plan",
        "--library",
        ".",
        "--tls-verify=false",
        "--build",
        "7",
        "--commit",
        "abc",
        "--branch",
        "main",
        "--bake",
        "docker-bake.json",
    ];
    args.extend(extra);
    run_in(lib, &args)
}

fn read_bake(lib: &Path) -> (Vec<u8>, Value) {
    let bytes = std::fs::read(lib.join("docker-bake.json")).unwrap();
    let v = serde_json::from_slice(&bytes).unwrap();
    (bytes, v)
}

/// The bake file's JSON structure as buildx documents it: a `group` map of `{targets: [string]}`
/// and a `target` map whose attributes have these types. An attribute graft writes that is not
/// listed here, or of another type, fails.
fn check_documented_structure(v: &Value) {
    let top = v.as_object().expect("a JSON object");
    for k in top.keys() {
        assert!(k == "group" || k == "target", "top-level key {k}");
    }
    let strings = |x: &Value, what: &str| {
        let a = x.as_array().unwrap_or_else(|| panic!("{what}: a list"));
        assert!(a.iter().all(Value::is_string), "{what}: strings");
    };
    let string_map = |x: &Value, what: &str| {
        let o = x.as_object().unwrap_or_else(|| panic!("{what}: a map"));
        assert!(o.values().all(Value::is_string), "{what}: string values");
    };
    for (g, group) in top["group"].as_object().expect("group: a map") {
        for k in group.as_object().unwrap().keys() {
            assert_eq!(k, "targets", "group {g}");
        }
        strings(&group["targets"], "group.targets");
        for t in group["targets"].as_array().unwrap() {
            assert!(
                top["target"].get(t.as_str().unwrap()).is_some(),
                "{t} defined"
            );
        }
    }
    for (name, t) in top["target"].as_object().expect("target: a map") {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "target name {name}"
        );
        for (k, x) in t.as_object().unwrap() {
            let what = format!("target.{name}.{k}");
            match k.as_str() {
                "context" | "dockerfile" | "target" => assert!(x.is_string(), "{what}"),
                "platforms" | "tags" | "annotations" | "attest" | "output" => strings(x, &what),
                "args" | "labels" | "contexts" => string_map(x, &what),
                other => panic!("{what}: {other} is not a documented attribute graft writes"),
            }
        }
    }
}

#[test]
fn plan_bake_writes_the_documented_structure_with_target_contexts_deterministically() {
    let reg = Registry::plain();
    let lib = library(&chain(&reg));
    let run = plan_bake(lib.path(), &[]).ok();
    let (bytes, v) = read_bake(lib.path());
    check_documented_structure(&v);
    assert_eq!(
        v["group"]["default"]["targets"],
        json!(["base", "child"]),
        "{}",
        run.all()
    );
    let base = &v["target"]["base"];
    assert_eq!(base["context"], "images/base");
    assert_eq!(base["dockerfile"], "Dockerfile");
    assert_eq!(base["platforms"], json!(["linux/amd64", "linux/arm64"]));
    assert_eq!(
        base["tags"],
        json!([format!("{}/lib/base:1.0", reg.addr())])
    );
    assert_eq!(base["labels"]["org.example.kind"], "base");
    assert!(base["annotations"].as_array().unwrap().contains(&json!(
        "org.opencontainers.image.authors=Ann <ann@example.org>"
    )));
    assert_eq!(
        base["attest"],
        json!(["type=provenance,disabled=true", "type=sbom,disabled=true"])
    );
    assert_eq!(base["output"], json!(["type=registry"]));
    assert!(base.get("contexts").is_none());
    let child = &v["target"]["child"];
    assert_eq!(child["dockerfile"], "df/Dockerfile.child");
    assert_eq!(child["target"], "final");
    assert_eq!(child["args"]["REGISTRY"], reg.addr());
    assert_eq!(
        child["tags"],
        json!([
            format!("{}/lib/child:1.0", reg.addr()),
            format!("{}/lib/child:b7", reg.addr())
        ])
    );
    // The base built in the same bake: the FROM name (as BuildKit sees it, after ARG
    // substitution) is that target.
    assert_eq!(
        child["contexts"],
        json!({format!("{}/lib/base:1.0", reg.addr()): "target:base"})
    );
    // Nothing was asked of the registry, and the same inputs give the same bytes.
    plan_bake(lib.path(), &[]).ok();
    assert_eq!(read_bake(lib.path()).0, bytes);
    assert!(bytes.ends_with(b"}\n"));
}

#[test]
fn an_unchanged_base_is_pinned_to_the_registry_digest() {
    let reg = Registry::plain();
    let lib = library(&chain(&reg));
    git(lib.path(), &["init", "-q", "-b", "main"]);
    git(lib.path(), &["add", "-A"]);
    git(lib.path(), &["commit", "-q", "-m", "one"]);
    std::fs::write(lib.path().join("images/child/x"), "y\n").unwrap();
    git(lib.path(), &["commit", "-q", "-am", "two"]);
    // The base as it is in the registry (made without a builder).
    let home = tempfile::tempdir().unwrap();
    let tree = home.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello"), "hello\n").unwrap();
    let base_ref = format!("docker://{}/lib/base:1.0", reg.addr());
    let layer = home.path().join("l.tar.gz");
    let lp = layer.to_str().unwrap();
    let tp = tree.to_str().unwrap();
    run_in(home.path(), &["layer", "build", tp, "-f", lp]).ok();
    run_in(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "append",
            "--base",
            "scratch",
            "--platform",
            "linux/amd64",
            "--layer",
            lp,
            &base_ref,
        ],
    )
    .ok();
    let peer = Peer::new().plain_http(reg.addr());
    let digest = peer.crane(["digest", &format!("{}/lib/base:1.0", reg.addr())]);
    let digest = String::from_utf8_lossy(&digest.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:"));

    let run = plan_bake(lib.path(), &["--changed-since", "HEAD~1"]).ok();
    let (_, v) = read_bake(lib.path());
    check_documented_structure(&v);
    assert_eq!(
        v["group"]["default"]["targets"],
        json!(["child"]),
        "{}",
        run.all()
    );
    assert_eq!(
        v["target"]["child"]["contexts"],
        json!({format!("{}/lib/base:1.0", reg.addr()):
            format!("docker-image://{}/lib/base@{digest}", reg.addr())})
    );
    // Without resolution: no context (the builder pulls the tag), and a warning.
    let run = plan_bake(
        lib.path(),
        &["--changed-since", "HEAD~1", "--bake-unpinned"],
    )
    .ok();
    let (_, v) = read_bake(lib.path());
    assert!(v["target"]["child"].get("contexts").is_none());
    assert!(run.all().contains("not pinned"), "{}", run.all());
}

fn compat_library(reg: &Registry) -> tempfile::TempDir {
    library(&[
        ("graft.yaml", format!("repo: docker://{}/lib\ndefault_branch: main\n", reg.addr())),
        ("layers/compat/layer.yaml", "{}\n".into()),
        ("layers/compat/files/etc/compat", "compat\n".into()),
        (
            "manifests/app.yaml",
            "name: app\nversion: 1.0\ncompat: compat\nbuild:\n  path: images/app\n  platforms: [linux/amd64]\n  tags: ['{version}']\n".into(),
        ),
        ("images/app/Dockerfile", "FROM scratch\nCOPY hello /hello\n".into()),
        ("images/app/hello", "hello\n".into()),
    ])
}

fn from_metadata(lib: &Path, file: &str, names: &[&str]) -> Run {
    let mut args = vec![
        "-o",
        "json",
        "--tls-verify=false",
        "build",
        "--library",
        ".",
        "--build",
        "1",
        "--commit",
        "abc",
        "--branch",
        "main",
        "--from-metadata",
        file,
    ];
    args.extend(names);
    run_in(lib, &args)
}

#[test]
fn from_metadata_verifies_the_pushed_digest_then_refreshes() {
    let reg = Registry::plain();
    let lib = compat_library(&reg);
    let (_, bake) = {
        plan_bake(lib.path(), &[]).ok();
        read_bake(lib.path())
    };
    // buildx, simulated: the image pushed to the tag the bake file names.
    let tag = bake["target"]["app"]["tags"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(tag, format!("{}/lib/sci/app:1.0", reg.addr()));
    let home = tempfile::tempdir().unwrap();
    let tree = home.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello"), "hello\n").unwrap();
    let layer = home.path().join("l.tar.gz");
    let lp = layer.to_str().unwrap();
    run_in(
        home.path(),
        &["layer", "build", tree.to_str().unwrap(), "-f", lp],
    )
    .ok();
    let dest = format!("docker://{tag}");
    run_in(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "append",
            "--base",
            "scratch",
            "--platform",
            "linux/amd64",
            "--layer",
            lp,
            &dest,
        ],
    )
    .ok();
    let peer = Peer::new().plain_http(reg.addr());
    let pushed = peer.crane(["digest", &tag]);
    let pushed = String::from_utf8_lossy(&pushed.stdout).trim().to_string();
    let final_tags = || {
        let out = peer.try_run("crane", ["ls", &format!("{}/lib/app", reg.addr())]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let metadata = |digest: &str, target: &str| {
        json!({
            "buildx.build.warnings": [],
            target: {
                "buildx.build.ref": "builder/builder0/abc",
                "containerimage.descriptor": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": 400
                },
                "containerimage.digest": digest,
                "image.name": tag
            }
        })
        .to_string()
    };
    // A digest the registry does not have at that tag: exit 1, nothing written.
    let wrong = format!("sha256:{}", "0".repeat(64));
    std::fs::write(lib.path().join("wrong.json"), metadata(&wrong, "app")).unwrap();
    let run = from_metadata(lib.path(), "wrong.json", &[]).fails(1);
    assert!(run.all().contains("digest mismatch"), "{}", run.all());
    assert!(run.all().contains(&pushed), "{}", run.all());
    assert!(!final_tags().contains("1.0"), "{}", final_tags());
    // Bad files: exit 2.
    std::fs::write(lib.path().join("unknown.json"), metadata(&pushed, "nope")).unwrap();
    let run = from_metadata(lib.path(), "unknown.json", &[]).fails(2);
    assert!(run.all().contains("\"nope\""), "{}", run.all());
    std::fs::write(
        lib.path().join("nodigest.json"),
        json!({"app": {"image.name": tag}}).to_string(),
    )
    .unwrap();
    from_metadata(lib.path(), "nodigest.json", &[]).fails(2);
    assert!(!final_tags().contains("1.0"));

    std::fs::write(lib.path().join("meta.json"), metadata(&pushed, "app")).unwrap();
    let run = from_metadata(lib.path(), "meta.json", &["app"]).ok();
    let r = run.json();
    let img = &r["images"][0];
    assert_eq!(img["digest"], pushed.as_str(), "{}", run.all());
    assert_eq!(img["refresh"]["science_digest"], pushed.as_str());
    let final_digest = img["refresh"]["digest"].as_str().unwrap();
    let got = peer.crane(["digest", &format!("{}/lib/app:1.0", reg.addr())]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), final_digest);
    // The final image is the pushed one plus the compat layer.
    let m = peer.crane([
        "manifest",
        "--platform",
        "linux/amd64",
        &format!("{}/lib/app:1.0", reg.addr()),
    ]);
    let m: Value = serde_json::from_slice(&m.stdout).unwrap();
    assert_eq!(m["layers"].as_array().unwrap().len(), 2, "{m}");
}

#[test]
fn a_child_of_a_compat_base_names_its_science_image_in_the_same_bake() {
    let reg = Registry::plain();
    let lib = compat_library(&reg);
    let child = |from: &str| {
        std::fs::create_dir_all(lib.path().join("images/kid")).unwrap();
        std::fs::write(
            lib.path().join("manifests/kid.yaml"),
            "name: kid\nversion: 1.0\nbuild:\n  path: images/kid\n  platforms: [linux/amd64]\n",
        )
        .unwrap();
        std::fs::write(
            lib.path().join("images/kid/Dockerfile"),
            format!("FROM {}/lib/{from}:1.0\n", reg.addr()),
        )
        .unwrap();
    };
    // The final image gets its compat layer after the bake: refused, no file written.
    child("app");
    let run = plan_bake(lib.path(), &[]).fails(2);
    assert!(
        run.all().contains("compat layer after the bake"),
        "{}",
        run.all()
    );
    assert!(!lib.path().join("docker-bake.json").exists());
    // Its science image is what the bake builds.
    child("sci/app");
    plan_bake(lib.path(), &[]).ok();
    let (_, v) = read_bake(lib.path());
    assert_eq!(
        v["target"]["kid"]["contexts"],
        json!({format!("{}/lib/sci/app:1.0", reg.addr()): "target:app"})
    );
}
