//! Manifests that build their science image (`build:`, canfar's block): canfar's own example
//! validates unchanged, the build/science choice and the new fields are checked with exact
//! file:line messages, `plan` shows the build order and each image's bases from the
//! Dockerfiles, and `refresh` refuses a `build:` manifest (exit 2) until `graft build` exists.

use std::path::PathBuf;

use crate::graft::run_in;
use crate::support::tools::files_dir;

/// A library made of `files` (path, content) in a temp dir.
fn library(files: &[(&str, &str)]) -> tempfile::TempDir {
    files_dir(files)
}

fn canfar() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/canfar")
}

const GRAFT_YAML: &str = "repo: docker://reg.example:5000/lib\n";

/// `graft validate` fails (exit 1) with exactly `expected` on stdout.
fn problems(files: &[(&str, &str)], expected: &[&str]) {
    let lib = library(files);
    let run = run_in(lib.path(), &["validate"]).fails(1);
    let got: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(got, expected, "{}", run.all());
}

#[test]
fn canfar_example_manifest_validates_unchanged() {
    // The vendored file is byte for byte the seed's example (SOURCE.md).
    let text = std::fs::read_to_string(canfar().join("manifests/python.yaml")).unwrap();
    assert!(text.contains("  commit: 1234567890123456789012345678901234567890\n"));
    let run = run_in(&canfar(), &["validate"]).ok();
    assert_eq!(run.stdout, "OK: 1 manifest, 0 layers\n");
    assert_eq!(run.stderr, "");

    let run = run_in(&canfar(), &["plan", "-o", "json", "--branch", "main"]).ok();
    let plan = run.json();
    let img = &plan["images"][0];
    assert_eq!(img["name"], "python");
    // No version: the first of build.tags, as written (not the number 3.12 reformatted).
    assert_eq!(img["version"], "3.12");
    assert_eq!(img["build"], true);
    assert_eq!(img["compat"], "");
    assert_eq!(
        img["references"],
        serde_json::json!(["docker://images.canfar.net/library/python:3.12"])
    );
    assert_eq!(img["maintainers"][0]["github"], "shinybrar");
    assert_eq!(img["metadata"]["identifier"], "canfar-python");
    // The unquoted 40-digit commit is kept as text, exactly.
    assert_eq!(
        img["annotations"]["org.opencontainers.image.revision"],
        "1234567890123456789012345678901234567890"
    );
    assert_eq!(
        img["annotations"]["org.opencontainers.image.authors"],
        "Shiny Brar <shiny.brar@nrc-cnrc.gc.ca>"
    );
    assert_eq!(img["annotations"]["canfar.image.runtime"], "python");
    assert_eq!(img["labels"]["org.graft.metadata.project"], "canfar");
    assert_eq!(
        img["labels"]["org.opencontainers.image.description"],
        "Python runtime for CANFAR Science Platform"
    );
    let build = &plan["builds"][0];
    assert_eq!(build["manifest"], "manifests/python.yaml");
    assert_eq!(build["dockerfile"], "images/python/Dockerfile");
    assert_eq!(build["context"], "images/python");
    assert_eq!(build["source"], "not-fetched");
    assert_eq!(
        build["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(plan["builds"].as_array().unwrap().len(), 1);
}

#[test]
fn build_or_science_not_both_nor_neither() {
    problems(
        &[
            ("graft.yaml", GRAFT_YAML),
            (
                "manifests/m.yaml",
                "name: m\nversion: 1\nscience:\n  image: docker://r/x:1\nbuild:\n  path: x\n",
            ),
        ],
        &["manifests/m.yaml:5:1: build: the manifest has both build: and science: (line 3): it either builds its science image (build:) or names an existing one (science:)"],
    );
    problems(
        &[
            ("graft.yaml", GRAFT_YAML),
            ("manifests/m.yaml", "name: m\nversion: 1\ncompat: c\n"),
            ("layers/c/layer.yaml", "{}\n"),
        ],
        &[
            "manifests/m.yaml:1:1: (root): the manifest has neither science: (an existing image) nor build: (graft builds it from a Dockerfile)",
            "manifests/m.yaml:1:1: science: required field is missing",
        ],
    );
}

#[test]
fn git_commit_unknown_keys_and_versions() {
    problems(
        &[
            ("graft.yaml", GRAFT_YAML),
            ("Dockerfile", "FROM scratch\n"),
            (
                "manifests/m.yaml",
                "name: m\nversion: 1\ngit:\n  repo: https://example.org/x\n  commit: 12345\nbuild:\n  dockerfle: D\n",
            ),
        ],
        &[
            "manifests/m.yaml:5:11: git.commit: \"12345\" must be a full commit hash (40 or 64 lowercase hex digits)",
            "manifests/m.yaml:7:3: build.dockerfle: unknown field; did you mean \"dockerfile\"?",
        ],
    );
    // A quoted commit with upper case: the schema's message.
    problems(
        &[
            ("graft.yaml", GRAFT_YAML),
            ("Dockerfile", "FROM scratch\n"),
            (
                "manifests/m.yaml",
                "name: m\nversion: 1\ngit: {repo: r, commit: 'ABCDEF7890123456789012345678901234567890'}\nbuild: {}\n",
            ),
        ],
        &["manifests/m.yaml:3:24: git.commit: \"ABCDEF7890123456789012345678901234567890\" must be a full commit hash (40 or 64 lowercase hex digits)"],
    );
    // No version and no build.tags; a templated first tag cannot be the version; tags: without
    // compat; a path leaving the source.
    problems(
        &[
            ("graft.yaml", GRAFT_YAML),
            ("Dockerfile", "FROM scratch\n"),
            ("manifests/a.yaml", "name: a\nbuild: {}\n"),
            ("manifests/b.yaml", "name: b\nbuild:\n  tags: ['{build}']\n"),
            (
                "manifests/c.yaml",
                "name: c\nversion: 1\nbuild: {context: ../up}\ntags: ['{version}']\n",
            ),
        ],
        &[
            "manifests/a.yaml:1:1: version: required field is missing: with build:, give version or build.tags (whose first entry is the version)",
            "manifests/b.yaml:3:10: build.tags[0]: \"{build}\" stands for {version} (no version is given), so it must be a plain tag without placeholders; or set version",
            "manifests/c.yaml:3:18: build.context: \"../up\" leads outside the source through '..'; build paths stay inside it",
            "manifests/c.yaml:4:7: tags: with build: and no compat the built image is the final image, tagged with build.tags: move these tags there, or add compat",
        ],
    );
}

#[test]
fn with_compat_the_build_must_write_the_version_tag() {
    problems(
        &[
            ("graft.yaml", GRAFT_YAML),
            ("Dockerfile", "FROM scratch\n"),
            ("layers/c/layer.yaml", "{}\n"),
            (
                "manifests/k.yaml",
                "name: k\nversion: 2.4\nbuild: {tags: ['{version}-cuda']}\ncompat: c\n",
            ),
        ],
        &["manifests/k.yaml:3:15: build.tags: with compat, the refresh reads the built image as docker://reg.example:5000/lib/sci/k:2.4: build.tags must include \"{version}\""],
    );
}

const BASE_DOCKERFILE: &str = "FROM scratch\nCOPY rootfs/ /\n";
const CHILD_DOCKERFILE: &str = "\
# syntax=docker/dockerfile:1
ARG REGISTRY=docker.io
FROM ${REGISTRY}/lib/sci/base:${BASE_TAG:-1.0}
RUN echo child > /etc/child
";

fn two_images() -> Vec<(&'static str, &'static str)> {
    vec![
        ("graft.yaml", GRAFT_YAML),
        ("layers/compat/layer.yaml", "{}\n"),
        // child sorts first but builds FROM base's science image.
        (
            "manifests/child.yaml",
            "name: child\nversion: 1.0\nbuild:\n  path: images/child\n  args: {REGISTRY: 'reg.example:5000'}\n",
        ),
        ("images/child/Dockerfile", CHILD_DOCKERFILE),
        (
            "manifests/base.yaml",
            "name: base\nversion: 1.0\ndescription: the base\nmaintainers: [{name: A B, email: a@example.org}, {name: C}]\nbuild: {path: images/base, tags: ['{version}', latest]}\ncompat: compat\n",
        ),
        ("images/base/Dockerfile", BASE_DOCKERFILE),
    ]
}

#[test]
fn plan_shows_build_order_and_bases() {
    let lib = library(&two_images());
    let run = run_in(lib.path(), &["validate"]).ok();
    assert_eq!(run.stdout, "OK: 2 manifests, 1 layer\n");
    let run = run_in(
        lib.path(),
        &["plan", "--branch", "main", "--build", "1", "--commit", "c"],
    )
    .ok();
    let text = run.stdout;
    let order = text.split("build order").nth(1).expect(&text);
    assert!(
        order.contains(
            "  1. base 1.0 (manifests/base.yaml) -> docker://reg.example:5000/lib/sci/base:1.0\n     dockerfile images/base/Dockerfile\n     FROM scratch\n  2. child 1.0 (manifests/child.yaml) -> docker://reg.example:5000/lib/child:1.0\n     dockerfile images/child/Dockerfile\n     FROM ${REGISTRY}/lib/sci/base:${BASE_TAG:-1.0} = reg.example:5000/lib/sci/base:1.0 (built here: manifests/base.yaml)\n"
        ),
        "{text}"
    );
    let run = run_in(lib.path(), &["plan", "-o", "json", "--branch", "main"]).ok();
    let plan = run.json();
    let builds = plan["builds"].as_array().unwrap();
    assert_eq!(builds[0]["name"], "base");
    assert_eq!(builds[1]["name"], "child");
    assert_eq!(
        builds[1]["after"],
        serde_json::json!(["manifests/base.yaml"])
    );
    assert_eq!(builds[1]["bases"][0]["line"], 3);
    assert_eq!(builds[1]["bases"][0]["library"], "manifests/base.yaml");
    let base = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "base")
        .unwrap();
    assert_eq!(
        base["annotations"]["org.opencontainers.image.authors"],
        "A B <a@example.org>, C"
    );
    assert_eq!(
        base["labels"]["org.opencontainers.image.description"],
        "the base"
    );
    assert_eq!(
        base["science"]["image"],
        "docker://reg.example:5000/lib/sci/base:1.0"
    );

    // A shard keeps the builds of its own images (one shard: all of them).
    let sharded = run_in(
        lib.path(),
        &["plan", "-o", "json", "--branch", "main", "--shard", "1/1"],
    )
    .ok();
    assert_eq!(sharded.json()["builds"], plan["builds"]);
}

#[test]
fn platform_args_pick_the_base_per_platform() {
    // BuildKit's automatic ARGs need no declaration; the order reads the Dockerfile once per
    // platform (build.platforms here, graft.yaml's for the other manifest).
    let lib = library(&[
        (
            "graft.yaml",
            "repo: docker://reg.example:5000/lib\nplatforms: [linux/arm64]\n",
        ),
        (
            "manifests/a.yaml",
            "name: a\nversion: 1\nbuild: {path: a, platforms: [linux/amd64, linux/arm64]}\n",
        ),
        (
            "a/Dockerfile",
            "FROM debian:12 AS build-amd64\nFROM debian:13 AS build-arm64\nFROM build-${TARGETARCH}\nFROM python:3.12-$TARGETARCH\n",
        ),
        ("manifests/b.yaml", "name: b\nversion: 1\nbuild: {path: b}\n"),
        ("b/Dockerfile", "FROM python:3.12-${TARGETARCH}\n"),
    ]);
    let run = run_in(lib.path(), &["plan", "-o", "json", "--branch", "main"]).ok();
    let plan = run.json();
    let expanded = |i: usize| -> Vec<String> {
        plan["builds"][i]["bases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["expanded"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        expanded(0),
        [
            "debian:12",
            "debian:13",
            "python:3.12-amd64",
            "python:3.12-arm64"
        ]
    );
    assert_eq!(expanded(1), ["python:3.12-arm64"]);
}

#[test]
fn cycles_missing_dockerfiles_and_bad_from_lines_name_the_file() {
    let mut files = two_images();
    files.retain(|(p, _)| *p != "images/base/Dockerfile");
    files.push((
        "images/base/Dockerfile",
        "FROM reg.example:5000/lib/child:1.0\n",
    ));
    problems(
        &files,
        &["manifests/base.yaml:5:8: build: FROM cycle: manifests/base.yaml (images/base/Dockerfile:1) -> manifests/child.yaml (images/child/Dockerfile:3) -> manifests/base.yaml (images/base/Dockerfile:1): each builds FROM the next, so none can be built first"],
    );
    let mut files = two_images();
    files.retain(|(p, _)| *p != "images/base/Dockerfile");
    problems(
        &files,
        &["manifests/base.yaml:5:8: build.dockerfile: the Dockerfile images/base/Dockerfile does not exist in the library (build.path + build.dockerfile, relative to the library root when there is no git:)"],
    );
    let mut files = two_images();
    files.retain(|(p, _)| *p != "images/base/Dockerfile");
    files.push((
        "images/base/Dockerfile",
        "FROM scratch\nCOPY a /\nFROM $NOPE\n",
    ));
    problems(
        &files,
        &["images/base/Dockerfile:3:1: (root): $NOPE is not declared: a FROM line sees only ARGs declared before the first FROM (add ARG NOPE=… at the top) (the Dockerfile of manifests/base.yaml)"],
    );
}

#[test]
fn refresh_refuses_a_build_manifest_until_graft_build_exists() {
    let lib = library(&two_images());
    let out = tempfile::tempdir().unwrap();
    let repo = format!("oci:{}", out.path().display());
    let run = run_in(
        lib.path(),
        &[
            "refresh",
            "--dry-run",
            "--repo",
            &repo,
            "--build",
            "1",
            "--commit",
            "c",
            "base",
        ],
    )
    .fails(2);
    assert!(
        run.stderr.contains("manifests/base.yaml builds its science image from a Dockerfile (build:): `graft build base` builds it and then runs its refresh"),
        "{}",
        run.all()
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
