//! The library: `graft validate` (every problem, exact messages), `graft plan` (no registry,
//! stable JSON with golden layer digests) and `graft layer build NAME|DIR`, on the shipped
//! sample library and on small libraries written by each test.

use std::path::PathBuf;

use crate::graft::{capture, command, run_in};
use crate::support::tools::files_dir;

/// The repository root: the sample library.
fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Golden digests of the sample library's compat layers (gzip, SOURCE_DATE_EPOCH unset).
/// A change means the layer bytes changed: sources, the builder, or a compression dependency.
const ASTRO_COMPAT: &str =
    "sha256:683f3df370cdac1f00799a9ad36184db4172539cfc6f438b9e036d50944dab26";
const JUPYTER_COMPAT: &str =
    "sha256:548f01325d30009c7430cacc3d2ebfbd5db72f8a4c342e2e31719914f9555f91";
const JUPYTER_COMPAT_DIFF_ID: &str =
    "sha256:05ca670e2d5a85fceef57076fd96dc9caa662c6a5d01399f5d395dec203c5875";

/// A library made of `files` (path, content) in a temp dir.
fn library(files: &[(&str, &str)]) -> tempfile::TempDir {
    files_dir(files)
}

const GRAFT_YAML: &str = "repo: oci:out\n";
const MANIFEST: &str = "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: c\n";

/// A valid library with `changes` applied (same path replaces, new path adds).
fn variant(changes: &[(&'static str, &'static str)]) -> tempfile::TempDir {
    let mut files: Vec<(&str, &str)> = vec![
        ("graft.yaml", GRAFT_YAML),
        ("manifests/m.yaml", MANIFEST),
        ("layers/c/layer.yaml", "{}\n"),
    ];
    for (path, content) in changes {
        files.retain(|(p, _)| p != path);
        files.push((path, content));
    }
    library(&files)
}

/// The problem lines `graft validate` prints for a library that has errors.
fn problems(changes: &[(&'static str, &'static str)]) -> Vec<String> {
    let lib = variant(changes);
    let run = run_in(lib.path(), &["validate"]).fails(1);
    assert!(run.stderr.contains("in the library"), "{}", run.stderr);
    run.stdout.lines().map(str::to_string).collect()
}

/// Assert the library with `changes` has exactly the one problem `expected`.
fn one_problem(changes: &[(&'static str, &'static str)], expected: &str) {
    assert_eq!(problems(changes), vec![expected.to_string()]);
}

#[test]
fn minimal_library_is_valid() {
    let lib = variant(&[]);
    let run = run_in(lib.path(), &["validate"]).ok();
    assert_eq!(run.stdout, "OK: 1 manifest, 1 layer\n");
}

#[test]
fn yaml_syntax_error() {
    one_problem(
        &[("manifests/m.yaml", "name: [m\nversion: 1\n")],
        "manifests/m.yaml:2:8: (root): illegal placement of ':' indicator",
    );
}

#[test]
fn duplicate_key() {
    one_problem(
        &[(
            "manifests/m.yaml",
            "name: m\nversion: 1.0\nscience: {image: 'oci:sci:1'}\ncompat: c\nname: n\n",
        )],
        "manifests/m.yaml:5:1: (root): duplicate key \"name\" (first defined at line 1)",
    );
}

#[test]
fn required_field_missing() {
    one_problem(
        &[(
            "manifests/m.yaml",
            "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\n",
        )],
        "manifests/m.yaml:1:1: compat: required field is missing",
    );
    one_problem(
        &[(
            "manifests/m.yaml",
            "name: m\nversion: 1.0\nscience:\n  target: s\ncompat: c\n",
        )],
        "manifests/m.yaml:4:3: science.image: required field is missing",
    );
}

#[test]
fn unknown_fields() {
    one_problem(
        &[(
            "manifests/m.yaml",
            "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: c\nmaintainer: []\n",
        )],
        "manifests/m.yaml:6:1: maintainer: unknown field; did you mean \"maintainers\"?",
    );
    one_problem(
        &[("graft.yaml", "repo: oci:out\nfoo: 1\n")],
        "graft.yaml:2:1: foo: unknown field; expected one of: repo, target, science_target, label_prefix, platforms, tags, change_ignore, rebuild_all, default_branch, branches, factory",
    );
}

#[test]
fn wrong_types() {
    one_problem(
        &[(
            "manifests/m.yaml",
            "name: m\nversion: [1]\nscience:\n  image: oci:sci:1.0\ncompat: c\n",
        )],
        "manifests/m.yaml:2:10: version: expected a number or a string, found a list",
    );
    one_problem(
        &[("layers/c/layer.yaml", "config:\n  entrypoint: /start.sh\n")],
        "layers/c/layer.yaml:2:15: config.entrypoint: expected a list, found the string \"/start.sh\"",
    );
}

#[test]
fn patterns_and_formats() {
    one_problem(
        &[("manifests/m.yaml", "name: Astro\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: c\n")],
        "manifests/m.yaml:1:7: name: \"Astro\" must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
    );
    one_problem(
        &[("manifests/m.yaml", "name: m\nversion: 1.0\nmaintainers:\n  - name: A\n    email: nobody\nscience:\n  image: oci:sci:1.0\ncompat: c\n")],
        "manifests/m.yaml:5:12: maintainers[0].email: \"nobody\" is not an e-mail address",
    );
    one_problem(
        &[("graft.yaml", "repo: oci:out\nplatforms: [linux]\n")],
        "graft.yaml:2:13: platforms[0]: \"linux\" must be OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8",
    );
    one_problem(
        &[("manifests/m.yaml", "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\n  digest: sha256:abc\ncompat: c\n")],
        "manifests/m.yaml:5:11: science.digest: \"sha256:abc\" must be a digest like sha256:<64 hex digits>",
    );
}

#[test]
fn references_must_parse_and_name_a_version() {
    one_problem(
        &[("manifests/m.yaml", "name: m\nversion: 1.0\nscience:\n  image: astro:1.0\ncompat: c\n")],
        "manifests/m.yaml:4:10: science.image: invalid reference \"astro:1.0\": missing transport; use docker://HOST/REPO[:TAG], oci:DIR[:TAG] or oci-archive:FILE[:TAG]",
    );
    one_problem(
        &[("manifests/m.yaml", "name: m\nversion: 1.0\nscience:\n  image: docker://registry.example.org/sci/astro\ncompat: c\n")],
        "manifests/m.yaml:4:10: science.image: \"docker://registry.example.org/sci/astro\" names no tag or digest; say which image, e.g. docker://registry.example.org/sci/astro:1.0",
    );
    one_problem(
        &[("graft.yaml", "repo: registry.example.org/images\n")],
        "graft.yaml:1:7: repo: invalid reference \"registry.example.org/images\": missing transport; use docker://HOST/REPO[:TAG], oci:DIR[:TAG] or oci-archive:FILE[:TAG]",
    );
    one_problem(
        &[("graft.yaml", "repo: docker://registry.example.org/Images\n")],
        "graft.yaml:1:7: repo: invalid reference \"registry.example.org/Images\": repository \"Images\" must be lowercase",
    );
}

#[test]
fn compat_and_includes_must_exist() {
    one_problem(
        &[(
            "manifests/m.yaml",
            "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: jupyter\n",
        )],
        "manifests/m.yaml:5:9: compat: no layer \"jupyter\" under layers/ (layers: c)",
    );
    one_problem(
        &[("layers/c/layer.yaml", "includes:\n  - base\n")],
        "layers/c/layer.yaml:2:5: includes[0]: no layer \"base\" under layers/ (layers: c)",
    );
}

#[test]
fn include_cycles_are_named_once() {
    assert_eq!(
        problems(&[
            ("layers/c/layer.yaml", "includes: [b]\n"),
            ("layers/b/layer.yaml", "includes: [a]\n"),
            ("layers/a/layer.yaml", "includes: [c]\n"),
        ]),
        vec!["layers/a/layer.yaml:1:12: includes[0]: include cycle: a -> c -> b -> a"]
    );
    one_problem(
        &[("layers/c/layer.yaml", "includes: [c]\n")],
        "layers/c/layer.yaml:1:12: includes[0]: include cycle: c -> c",
    );
}

#[test]
fn duplicate_final_references_across_manifests() {
    // Same name and version: both default tags collide, for every build and commit.
    assert_eq!(
        problems(&[("manifests/n.yaml", MANIFEST)]),
        vec![
            "manifests/n.yaml:1:7: name: final reference oci:out/m:1.0 is also produced by manifests/m.yaml:1:7 (tag template \"{version}\")",
            "manifests/n.yaml:1:7: name: final reference oci:out/m:1.0-{build}-{commit} is also produced by manifests/m.yaml:1:7 (tag template \"{version}-{build}-{commit}\")",
        ]
    );
    // Different versions do not collide, unless a literal tag does.
    assert_eq!(
        problems(&[(
            "manifests/n.yaml",
            "name: m\nversion: 2.0\nscience:\n  image: oci:sci:2.0\ncompat: c\ntags: [\"{version}\", \"1.0\"]\n"
        )]),
        vec!["manifests/n.yaml:6:21: tags[1]: final reference oci:out/m:1.0 is also produced by manifests/m.yaml:1:7 (tag template \"{version}\")"]
    );
    one_problem(
        &[("manifests/m.yaml", "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: c\ntags: [\"{version}\", \"1.0\"]\n")],
        "manifests/m.yaml:6:21: tags[1]: final reference oci:out/m:1.0 is produced twice by this manifest (tags \"{version}\" and \"1.0\")",
    );
}

#[test]
fn tag_templates() {
    one_problem(
        &[("manifests/m.yaml", "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: c\ntags: [\"{version}-{sha}\"]\n")],
        "manifests/m.yaml:6:8: tags[0]: unknown placeholder {sha} in \"{version}-{sha}\"; use {version}, {build}, {commit}, {branch}",
    );
    one_problem(
        &[("manifests/m.yaml", "name: m\nversion: 1.0 beta\nscience:\n  image: oci:sci:1.0\ncompat: c\n")],
        "manifests/m.yaml:2:10: version: tag template \"{version}\" gives \"1.0 beta\" for version \"1.0 beta\", which is not a valid tag: tag \"1.0 beta\" contains ' '; allowed are letters, digits, '_', '.', '-'",
    );
    one_problem(
        &[("graft.yaml", "repo: oci:out\ntarget: \"{repo}/{image}\"\n")],
        "graft.yaml:2:9: target: unknown placeholder {image} in \"{repo}/{image}\"; use {repo}, {name}",
    );
}

#[test]
fn layer_paths_modes_owner_config() {
    one_problem(
        &[("layers/c/layer.yaml", "remove:\n  - opt/conda/share/obsolete\n")],
        "layers/c/layer.yaml:2:5: remove[0]: \"opt/conda/share/obsolete\" is not an absolute path; write it as it is in the image, e.g. /opt/conda/share/obsolete",
    );
    one_problem(
        &[("layers/c/layer.yaml", "remove: [/opt/../etc]\n")],
        "layers/c/layer.yaml:1:10: remove[0]: \"/opt/../etc\" must not contain '.' or '..' components",
    );
    one_problem(
        &[
            ("layers/c/layer.yaml", "modes:\n  /start.sh: 0855\n"),
            ("layers/c/files/start.sh", "#!/bin/sh\n"),
        ],
        "layers/c/layer.yaml:2:14: modes[\"/start.sh\"]: \"0855\" is not an octal mode like 0755 or 0644",
    );
    one_problem(
        &[("layers/c/layer.yaml", "modes:\n  start.sh: 0755\n")],
        "layers/c/layer.yaml:2:3: modes[\"start.sh\"]: \"start.sh\" is not an absolute path; write it as it is in the image, e.g. /start.sh",
    );
    one_problem(
        &[("layers/c/layer.yaml", "modes:\n  /usr/local/bin/start.sh: 0755\n")],
        "layers/c/layer.yaml:2:28: modes[\"/usr/local/bin/start.sh\"]: /usr/local/bin/start.sh is not in layers/c/files/",
    );
    one_problem(
        &[("layers/c/layer.yaml", "owner: jovyan\n")],
        "layers/c/layer.yaml:1:8: owner: \"jovyan\" must be numeric UID:GID, e.g. 1000:100",
    );
    one_problem(
        &[("layers/c/layer.yaml", "config:\n  env:\n    1PATH: /x\n")],
        "layers/c/layer.yaml:3:5: config.env.1PATH: key \"1PATH\" must be an environment variable name (letters, digits, '_', not starting with a digit)",
    );
    one_problem(
        &[("layers/c/layer.yaml", "config:\n  workdir: home\n")],
        "layers/c/layer.yaml:2:12: config.workdir: \"home\" must be an absolute path",
    );
}

#[test]
fn modes_may_name_files_of_includes() {
    let lib = variant(&[
        (
            "layers/c/layer.yaml",
            "includes: [base]\nmodes:\n  /bin/tool: 0700\n",
        ),
        ("layers/base/layer.yaml", ""),
        ("layers/base/files/bin/tool", "x"),
    ]);
    run_in(lib.path(), &["validate"]).ok();
}

#[test]
fn missing_files() {
    one_problem(
        &[("layers/stray/README", "not a layer\n")],
        "layers/stray/layer.yaml:1:1: (root): file is missing; every directory under layers/ is a layer: add layers/stray/layer.yaml (it may be empty) or move the directory out of layers/",
    );
    let lib = library(&[("manifests/m.yaml", MANIFEST), ("layers/c/layer.yaml", "")]);
    let run = run_in(lib.path(), &["validate"]).fails(1);
    assert_eq!(
        run.stdout,
        "graft.yaml:1:1: (root): file is missing; a library needs a graft.yaml with at least `repo:` (the destination, e.g. docker://registry.example.org/images or oci:out/library)\n"
    );
    let lib = library(&[("graft.yaml", GRAFT_YAML)]);
    let run = run_in(lib.path(), &["validate"]).fails(1);
    assert_eq!(
        run.stdout,
        "manifests:1:1: (root): no manifests: add manifests/NAME.yaml, one per final image\n"
    );
}

#[test]
fn unused_layer_is_a_warning() {
    let lib = variant(&[("layers/extra/layer.yaml", "")]);
    let run = run_in(lib.path(), &["validate"]).ok();
    assert_eq!(
        run.stdout,
        "layers/extra/layer.yaml:1:1: (root): warning: layer \"extra\" is not used: no manifest's compat is it or includes it\nOK: 1 manifest, 2 layers, 1 warning\n"
    );
}

#[test]
fn every_problem_is_listed_with_json_output() {
    let lib = variant(&[
        ("graft.yaml", "repo: oci:out\ntags: [\"{v}\"]\n"),
        (
            "manifests/m.yaml",
            "name: M\nversion: 1.0\nscience:\n  image: sci\ncompat: nope\n",
        ),
        ("layers/c/layer.yaml", "remove: [x]\n"),
    ]);
    let run = run_in(lib.path(), &["validate", "-o", "json"]).fails(1);
    let v = run.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"], 5, "{v:#}");
    let first = &v["problems"][0];
    assert_eq!(first["file"], "graft.yaml");
    assert_eq!(first["line"], 2);
    assert_eq!(first["column"], 8);
    assert_eq!(first["path"], "tags[0]");
    assert_eq!(first["code"], "template");
    assert_eq!(first["severity"], "error");
    let codes: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["template", "path", "schema", "reference", "missing-layer"]
    );
    assert_eq!(v["warnings"], 0);
}

#[test]
fn library_flag_prefixes_file_names() {
    let lib = variant(&[("layers/c/layer.yaml", "remove: [x]\n")]);
    let home = tempfile::tempdir().unwrap();
    let dir = lib.path().to_str().unwrap();
    let run = crate::graft::graft(home.path(), &["validate", "--library", dir]).fails(1);
    assert_eq!(
        run.stdout,
        format!("{dir}/layers/c/layer.yaml:1:10: remove[0]: \"x\" is not an absolute path; write it as it is in the image, e.g. /x\n")
    );
}

#[test]
fn sample_library_validates_clean() {
    let run = run_in(&sample(), &["validate"]).ok();
    assert_eq!(run.stdout, "OK: 2 manifests, 3 layers\n");
    assert_eq!(run.stderr, "");
}

#[test]
fn sample_plan_json_is_stable() {
    let run = run_in(
        &sample(),
        &[
            "plan", "-o", "json", "--build", "42", "--commit", "abc1234", "--branch", "main",
        ],
    )
    .ok();
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/sample-plan.json")).unwrap();
    assert_eq!(run.json(), golden, "{}", run.stdout);
    // Run again from elsewhere with --library: the same plan.
    let home = tempfile::tempdir().unwrap();
    let again = capture(
        command(home.path())
            .env("SOURCE_DATE_EPOCH", "0")
            .current_dir(home.path())
            .args([
                "plan",
                "-o",
                "json",
                "--build",
                "42",
                "--commit",
                "abc1234",
                "--branch",
                "main",
                "--library",
            ])
            .arg(sample()),
    )
    .ok();
    assert_eq!(again.stdout, run.stdout);
    let images = golden["images"].as_array().unwrap();
    assert_eq!(images[0]["layer_digest"], ASTRO_COMPAT);
    assert_eq!(images[1]["layer_digest"], JUPYTER_COMPAT);
}

#[test]
fn sample_plan_text_and_verbose() {
    let run = run_in(
        &sample(),
        // The checkout's own branch would decide the tags: the sample's default branch.
        &[
            "plan", "--build", "42", "--commit", "abc1234", "--branch", "main", "-v",
        ],
    )
    .ok();
    for line in [
        "sci-notebook 2.4 (manifests/sci-notebook.yaml)",
        "  science    oci:testdata/science/jupyter-sci:2.4 [jupyter-sci]",
        &format!("  compat     jupyter-compat (platform-base + jupyter-compat) {JUPYTER_COMPAT}"),
        "  platforms  linux/amd64, linux/arm64",
        "  -> oci:out/library/sci-notebook:2.4",
        "  -> oci:out/library/sci-notebook:2.4-42-abc1234",
        &format!("  diff_id    {JUPYTER_COMPAT_DIFF_ID}"),
        "  media type application/vnd.oci.image.layer.v1.tar+gzip",
        "  entries    15 (4 files, 1 removed)",
        "plan: 2 final images, 4 references, 2 compat layers to build",
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            run.stdout
        );
    }
}

#[test]
fn plan_without_git_or_flags_keeps_placeholders() {
    let lib = variant(&[]);
    let run = run_in(lib.path(), &["plan", "-o", "json"]).ok();
    let v = run.json();
    assert_eq!(
        v["build"],
        serde_json::json!({"build": null, "commit": null, "branch": null})
    );
    assert_eq!(
        v["images"][0]["references"],
        serde_json::json!(["oci:out/m:1.0", "oci:out/m:1.0-{build}-{commit}"])
    );
}

#[test]
fn plan_takes_build_values_from_git() {
    let lib = variant(&[]);
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .current_dir(lib.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "feature/x"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "one"]);
    git(&["commit", "-q", "--allow-empty", "-m", "two"]);
    let head = std::process::Command::new("git")
        .current_dir(lib.path())
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
    std::fs::write(
        lib.path().join("manifests/m.yaml"),
        format!("{MANIFEST}tags: [\"{{version}}-{{build}}-{{commit}}\", \"{{branch}}\"]\n"),
    )
    .unwrap();
    let v = run_in(lib.path(), &["plan", "-o", "json"]).ok().json();
    assert_eq!(
        v["images"][0]["references"],
        serde_json::json!([format!("oci:out/m:1.0-2-{head}"), "oci:out/m:feature-x"])
    );
    assert_eq!(v["build"]["branch"], "feature/x");
}

#[test]
fn plan_needs_no_registry_unless_resolving() {
    // Port 9 on loopback: nothing listens; any registry access would fail.
    let lib = variant(&[(
        "manifests/m.yaml",
        "name: m\nversion: 1.0\nscience:\n  image: docker://127.0.0.1:9/sci/astro:1.0\ncompat: c\n",
    )]);
    let run = run_in(
        lib.path(),
        &["plan", "-o", "json", "--build", "1", "--commit", "c"],
    )
    .ok();
    assert_eq!(
        run.json()["images"][0]["science"]["resolved"],
        serde_json::Value::Null
    );
    let run = run_in(lib.path(), &["plan", "--resolve", "--retries", "0"]).fails(1);
    assert!(run.stderr.contains("127.0.0.1:9"), "{}", run.stderr);
}

#[test]
fn plan_resolves_layouts_and_checks_pins() {
    let run = run_in(
        &sample(),
        &[
            "plan",
            "-o",
            "json",
            "--resolve",
            "--build",
            "1",
            "--commit",
            "c",
        ],
    )
    .ok();
    let v = run.json();
    assert_eq!(
        v["images"][0]["science"]["resolved"],
        "sha256:d214be40b7757cc1dc8f6516985ea7c9f43e0ffe690b93a1e9ddbb1d8831d19c"
    );
    // A pin that does not match is a conflict.
    let lib = variant(&[(
        "manifests/m.yaml",
        "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\n  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\ncompat: c\n",
    )]);
    let status = std::process::Command::new("cp")
        .args(["-r"])
        .arg(sample().join("testdata/science/astro-base"))
        .arg(lib.path().join("sci"))
        .status()
        .unwrap();
    assert!(status.success());
    let run = run_in(
        lib.path(),
        &["plan", "--resolve", "--build", "1", "--commit", "c"],
    )
    .fails(1);
    assert!(
        run.stderr.contains("error: pin-mismatch: manifests/m.yaml: science image oci:sci:1.0 resolves to sha256:d214be40b7757cc1dc8f6516985ea7c9f43e0ffe690b93a1e9ddbb1d8831d19c, but science.digest pins sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        "{}",
        run.stderr
    );
}

#[test]
fn plan_refuses_an_invalid_library_and_lists_why() {
    let lib = variant(&[("layers/c/layer.yaml", "remove: [x]\n")]);
    let run = run_in(lib.path(), &["plan"]).fails(2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .contains("error: the library in . has 1 problem: run graft validate"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("  layers/c/layer.yaml:1:10: remove[0]: \"x\" is not an absolute path"),
        "{}",
        run.stderr
    );
}

#[test]
fn layer_build_by_name_or_directory_resolves_includes() {
    let by_name = run_in(
        &sample(),
        &["layer", "build", "jupyter-compat", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(by_name["digest"], JUPYTER_COMPAT);
    assert_eq!(by_name["diff_id"], JUPYTER_COMPAT_DIFF_ID);
    let home = tempfile::tempdir().unwrap();
    let elsewhere = capture(
        command(home.path())
            .env("SOURCE_DATE_EPOCH", "0")
            .current_dir(home.path())
            .args(["layer", "build", "astro-compat", "-o", "json", "--library"])
            .arg(sample()),
    )
    .ok()
    .json();
    assert_eq!(elsewhere["digest"], ASTRO_COMPAT);
    let by_dir = run_in(
        &sample(),
        &["layer", "build", "layers/jupyter-compat", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(by_dir, by_name);
    // A plain directory (no layer.yaml) is a tree placed at /: no includes, no whiteouts.
    let files_only = run_in(
        &sample(),
        &[
            "layer",
            "build",
            "layers/jupyter-compat/files",
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    assert_ne!(files_only["digest"], JUPYTER_COMPAT);
}

#[test]
fn layer_build_reports_problems_of_its_chain_only() {
    let lib = variant(&[
        ("layers/c/layer.yaml", "includes: [base]\n"),
        ("layers/base/layer.yaml", "remove: [etc]\n"),
        ("layers/other/layer.yaml", "remove: [x]\n"),
        ("layers/ok/layer.yaml", ""),
        ("layers/ok/files/hello", "hi\n"),
    ]);
    run_in(lib.path(), &["layer", "build", "ok"]).ok();
    let run = run_in(lib.path(), &["layer", "build", "c"]).fails(2);
    assert!(
        run.stderr
            .contains("layers/base/layer.yaml:1:10: remove[0]: \"etc\" is not an absolute path"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("layers/other"), "{}", run.stderr);
    // An unknown layer name is bad input.
    let run = run_in(lib.path(), &["layer", "build", "nope"]).fails(2);
    assert!(
        run.stderr
            .contains("invalid layer name \"nope\": there is no "),
        "{}",
        run.stderr
    );
}
