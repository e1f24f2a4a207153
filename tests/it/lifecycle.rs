//! The library lifecycle in git: compat layer digests that depend on their chain's content
//! and history only, and `--changed-since REV` (which images a diff affects, and why), on git
//! repositories the tests make from the sample library (fixed commit dates).

use crate::support::git::{commit_at, git_at};
use crate::support::tools::{copy_dir, write_file};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::graft::{capture, command, Run};

/// A third image whose layer includes nothing: a change to `platform-base` must not touch it.
const SOLO_MANIFEST: &str = "name: solo\nversion: 3.0\nscience:\n  image: oci:testdata/science/astro-base:1.0\ncompat: solo-compat\n";

/// The sample library plus the `solo` image, a README and docs, in `dir/library` (no git).
fn sample_copy(dir: &Path, graft_yaml_extra: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = dir.join("library");
    for sub in ["manifests", "layers", "schema", "testdata/science"] {
        copy_dir(&root.join(sub), &lib.join(sub));
    }
    let settings = std::fs::read_to_string(root.join("graft.yaml")).unwrap();
    write_file(&lib, "graft.yaml", &format!("{settings}{graft_yaml_extra}"));
    write_file(&lib, "manifests/solo.yaml", SOLO_MANIFEST);
    write_file(&lib, "layers/solo-compat/layer.yaml", "{}\n");
    write_file(&lib, "layers/solo-compat/files/etc/solo", "solo\n");
    write_file(&lib, "README.md", "# library\n");
    write_file(&lib, "docs/guide.md", "guide\n");
    write_file(&lib, "scripts/build.sh", "#!/bin/sh\n");
    lib
}

/// The sample library as a git repository: one commit at t=1000.
fn sample_repo(dir: &Path, graft_yaml_extra: &str) -> PathBuf {
    let lib = sample_copy(dir, graft_yaml_extra);
    git_at(&lib, 1000, &["init", "-q", "-b", "main"]);
    commit_at(&lib, 1000, "library");
    lib
}

/// graft in `dir`, HOME isolated, `SOURCE_DATE_EPOCH` unset unless `env` sets it.
fn graft_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(home.path());
    cmd.current_dir(dir).env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    capture(cmd.args(args))
}

/// `graft plan -o json` (every image) with fixed build values.
fn plan(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "-o", "json", "--build", "1", "--commit", "c0ffee0"];
    args.extend_from_slice(extra);
    graft_in(dir, &[], &args).ok().json()
}

/// Layer name → built digest.
fn layer_digests(plan: &Value) -> Vec<(String, String)> {
    plan["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn names(plan: &Value) -> Vec<String> {
    plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_docs_only_commit_changes_no_layer_and_selects_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = sample_repo(tmp.path(), "");
    let before = plan(&lib, &[]);
    write_file(&lib, "README.md", "# library\n\nMore words.\n");
    write_file(&lib, "docs/guide.md", "a better guide\n");
    // Beside layer.yaml, but not part of the layer: neither its bytes nor its time.
    write_file(
        &lib,
        "layers/jupyter-compat/README.md",
        "about this layer\n",
    );
    commit_at(&lib, 2000, "docs");

    let after = plan(&lib, &[]);
    assert_eq!(layer_digests(&after), layer_digests(&before));
    assert_eq!(layer_digests(&after).len(), 4);
    // The mtime is the chain's last commit (t=1000), not HEAD's (t=2000).
    let at_1000 = graft_in(
        &lib,
        &[("SOURCE_DATE_EPOCH", "1000")],
        &["plan", "-o", "json", "--build", "1", "--commit", "c0ffee0"],
    )
    .ok()
    .json();
    assert_eq!(layer_digests(&after), layer_digests(&at_1000));

    let changed = plan(&lib, &["--changed-since", "HEAD~1"]);
    assert_eq!(changed["images"], serde_json::json!([]), "{changed:#}");
    assert_eq!(
        changed["changes"]["files"],
        serde_json::json!([
            "README.md",
            "docs/guide.md",
            "layers/jupyter-compat/README.md"
        ])
    );
    assert_eq!(changed["changes"]["images"], serde_json::json!([]));
    // A refresh selects nothing and writes nothing.
    let run = graft_in(
        &lib,
        &[],
        &["-o", "json", "refresh", "--changed-since", "HEAD~1"],
    )
    .ok();
    assert_eq!(run.json()["images"], serde_json::json!([]));
    assert!(
        run.stderr
            .contains("changed since HEAD~1: 0 of 3 image(s) affected"),
        "{}",
        run.stderr
    );
    assert!(!lib.join("out").exists());
    let text = graft_in(
        &lib,
        &[],
        &[
            "plan",
            "--build",
            "1",
            "--commit",
            "c",
            "--changed-since",
            "HEAD~1",
        ],
    )
    .ok();
    assert!(
        text.stdout
            .contains("files, 0 ignored; 0 images affected\nplan: 0 final images, 0 references, 0 compat layers to build"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_shared_layer_change_selects_exactly_its_two_images() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = sample_repo(tmp.path(), "");
    let before = plan(&lib, &[]);
    write_file(
        &lib,
        "layers/platform-base/files/etc/graft/platform.conf",
        "changed = yes\n",
    );
    commit_at(&lib, 3000, "platform-base");

    let changed = plan(&lib, &["--changed-since", "HEAD~1"]);
    assert_eq!(names(&changed), ["astro-notebook", "sci-notebook"]);
    for (img, compat) in changed["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["astro-compat", "jupyter-compat"])
    {
        assert_eq!(
            img["reasons"],
            serde_json::json!([{
                "kind": "layer-changed",
                "layer": "platform-base",
                "files": ["layers/platform-base/files/etc/graft/platform.conf"],
                "message": format!("layer platform-base in its chain ({compat}) changed"),
            }])
        );
    }
    let text = graft_in(
        &lib,
        &[],
        &[
            "plan",
            "--build",
            "1",
            "--commit",
            "c",
            "--changed-since",
            "HEAD~1",
        ],
    )
    .ok();
    assert!(
        text.stdout
            .contains("  changed    layer platform-base in its chain (jupyter-compat) changed\n"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("solo"), "{}", text.stdout);

    // Only the two chains' digests moved; solo's stayed.
    let after = plan(&lib, &[]);
    let (b, a) = (layer_digests(&before), layer_digests(&after));
    for ((name, was), (_, now)) in b.iter().zip(&a) {
        match name.as_str() {
            "solo-compat" => assert_eq!(was, now, "{name}"),
            "platform-base" => {} // used by no manifest directly: not built
            _ => assert_ne!(was, now, "{name}"),
        }
    }

    // The two chains carry platform-base's new time (t=3000), solo keeps its own (t=1000).
    let at = |t: &str| {
        let v = graft_in(
            &lib,
            &[("SOURCE_DATE_EPOCH", t)],
            &["plan", "-o", "json", "--build", "1", "--commit", "c0ffee0"],
        )
        .ok()
        .json();
        layer_digests(&v)
    };
    let (at_1000, at_3000) = (at("1000"), at("3000"));
    assert_eq!(a[0], at_3000[0]);
    assert_eq!(a[1], at_3000[1]);
    assert_eq!(a[3], at_1000[3]);
    assert_ne!(at_1000[3], at_3000[3]);

    // refresh takes the same selection (a dry run: the science images are local layouts).
    let run = graft_in(
        &lib,
        &[],
        &[
            "-o",
            "json",
            "refresh",
            "--dry-run",
            "--build",
            "2",
            "--commit",
            "c",
            "--changed-since",
            "HEAD~1",
        ],
    )
    .ok();
    assert_eq!(names(&run.json()), ["astro-notebook", "sci-notebook"]);
    assert!(
        run.stderr
            .contains("changed since HEAD~1: 2 of 3 image(s) affected"),
        "{}",
        run.stderr
    );
    assert!(!lib.join("out").exists());
}

#[test]
fn change_ignore_rebuild_all_and_science_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = sample_repo(
        tmp.path(),
        "change_ignore:\n  - docs/**\n  - layers/*/NOTES.md\nrebuild_all:\n  - scripts/**\n",
    );
    // Ignored, even inside a layer directory.
    write_file(&lib, "layers/solo-compat/NOTES.md", "notes\n");
    write_file(&lib, "docs/guide.md", "v2\n");
    commit_at(&lib, 2000, "ignored");
    let v = plan(&lib, &["--changed-since", "HEAD~1"]);
    assert_eq!(v["images"], serde_json::json!([]));
    assert_eq!(
        v["changes"]["ignored"],
        serde_json::json!(["docs/guide.md", "layers/solo-compat/NOTES.md"])
    );

    // A shared script rebuilds everything.
    write_file(&lib, "scripts/build.sh", "#!/bin/sh\necho 2\n");
    commit_at(&lib, 3000, "script");
    let v = plan(&lib, &["--changed-since", "HEAD~1"]);
    assert_eq!(names(&v), ["astro-notebook", "sci-notebook", "solo"]);
    assert_eq!(v["images"][2]["reasons"][0]["kind"], "rebuild-all");
    assert_eq!(
        v["images"][2]["reasons"][0]["files"],
        serde_json::json!(["scripts/build.sh"])
    );

    // A new science reference is named as such; a description edit is a manifest change.
    write_file(
        &lib,
        "manifests/solo.yaml",
        &SOLO_MANIFEST.replace("astro-base:1.0", "jupyter-sci:2.4"),
    );
    let sci = std::fs::read_to_string(lib.join("manifests/sci-notebook.yaml")).unwrap();
    write_file(
        &lib,
        "manifests/sci-notebook.yaml",
        &sci.replace("description: Jupyter", "description: The Jupyter"),
    );
    commit_at(&lib, 4000, "manifests");
    let v = plan(&lib, &["--changed-since", "HEAD~1"]);
    assert_eq!(names(&v), ["sci-notebook", "solo"]);
    assert_eq!(v["images"][0]["reasons"][0]["kind"], "manifest-changed");
    assert_eq!(
        v["images"][1]["reasons"][0]["message"],
        "science reference changed: oci:testdata/science/astro-base:1.0 -> oci:testdata/science/jupyter-sci:2.4"
    );
    // Over several commits: everything since the first.
    let v = plan(&lib, &["--changed-since", "HEAD~3"]);
    assert_eq!(names(&v), ["astro-notebook", "sci-notebook", "solo"]);

    // A bad glob is a validation error at its line.
    let bad = tempfile::tempdir().unwrap();
    let bad_lib = sample_copy(bad.path(), "change_ignore:\n  - /docs\n");
    let run = graft_in(&bad_lib, &[], &["validate"]).fails(1);
    assert!(
        run.stdout.contains(
            "graft.yaml:16:5: change_ignore[0]: \"/docs\" is absolute; patterns are relative to the library root, e.g. docs/**"
        ),
        "{}",
        run.stdout
    );
    let bad2 = tempfile::tempdir().unwrap();
    let bad_lib = sample_copy(bad2.path(), "rebuild_all: [\"\"]\n");
    let run = graft_in(&bad_lib, &[], &["validate"]).fails(1);
    assert!(
        run.stdout.contains("graft.yaml:15:15: rebuild_all[0]:"),
        "{}",
        run.stdout
    );
}

#[test]
fn unknown_revisions_and_no_git_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = sample_repo(tmp.path(), "");
    for rev in ["no-such-branch", "HEAD~5", "--all"] {
        let flag = format!("--changed-since={rev}");
        let run = graft_in(&lib, &[], &["plan", "--build", "1", "--commit", "c", &flag]).fails(2);
        assert!(
            run.stderr.contains(&format!(
                "error: unknown revision {rev:?} in the git repository of"
            )),
            "{rev}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "");
        let run = graft_in(
            &lib,
            &[],
            &["refresh", "--build", "1", "--commit", "c", &flag],
        )
        .fails(2);
        assert!(run.stderr.contains("unknown revision"), "{}", run.stderr);
        assert!(!lib.join("out").exists());
    }
    let plain = tempfile::tempdir().unwrap();
    let lib = sample_copy(plain.path(), "");
    let run = graft_in(
        &lib,
        &[],
        &[
            "plan",
            "--build",
            "1",
            "--commit",
            "c",
            "--changed-since",
            "HEAD~1",
        ],
    )
    .fails(2);
    assert!(
        run.stderr.contains("is not in a git repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_shallow_clone_names_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = sample_repo(tmp.path(), "");
    write_file(&lib, "README.md", "two\n");
    commit_at(&lib, 2000, "two");
    let url = format!("file://{}", lib.display());
    let shallow = tmp.path().join("shallow");
    git_at(
        tmp.path(),
        0,
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &url,
            shallow.to_str().unwrap(),
        ],
    );
    let run = graft_in(&shallow, &[], &["plan", "--commit", "c"]).fails(2);
    assert!(
        run.stderr
            .contains("is a shallow git clone: its build number")
            && run.stderr.contains("fetch-depth: 0")
            && run.stderr.contains("or pass --build"),
        "{}",
        run.stderr
    );
    let run = graft_in(&shallow, &[], &["refresh", "--dry-run", "--build", "7"]).fails(2);
    assert!(
        run.stderr.contains(
            "is a shallow git clone: each compat layer's time (its last commit) would be wrong"
        ) && run.stderr.contains("git fetch --unshallow")
            && run.stderr.contains("or set SOURCE_DATE_EPOCH"),
        "{}",
        run.stderr
    );
    // With both values given, nothing comes from the cut history.
    graft_in(
        &shallow,
        &[("SOURCE_DATE_EPOCH", "1000")],
        &["plan", "--build", "7"],
    )
    .ok();
}

#[test]
fn outside_git_without_build_values_refresh_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = sample_copy(tmp.path(), "");
    let run = graft_in(&lib, &[], &["refresh", "--dry-run"]).fails(2);
    assert!(
        run.stderr.contains("error: no value for {build}, {commit} (needed by tag template \"{version}-{build}-{commit}\" of manifests/astro-notebook.yaml): the library")
            && run.stderr.contains("is not in a git repository; pass --build --commit"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    // Tags without {build}: the breadcrumbs still need the values.
    let settings = std::fs::read_to_string(lib.join("graft.yaml")).unwrap();
    write_file(
        &lib,
        "graft.yaml",
        &settings.replace("  - \"{version}-{build}-{commit}\"\n", ""),
    );
    let run = graft_in(&lib, &[], &["refresh", "--dry-run", "--build", "3"]).fails(2);
    assert!(
        run.stderr.contains("no value for {commit} (needed by the breadcrumb label P.compat.version (label_prefix in graft.yaml))"),
        "{}",
        run.stderr
    );
    // With the values, no placeholder anywhere.
    let run = graft_in(
        &lib,
        &[],
        &[
            "-o",
            "json",
            "refresh",
            "--dry-run",
            "--build",
            "3",
            "--commit",
            "abc",
        ],
    )
    .ok();
    assert!(!run.stdout.contains("{build}") && !run.stdout.contains("{commit}"));
    let v = plan(&lib, &[]);
    assert_eq!(
        v["images"][0]["labels"]["org.graft.compat.version"],
        "astro-compat:1.0-1-c0ffee0"
    );
    assert!(!lib.join("out").exists());
    // plan previews, and says refresh would refuse.
    let run = graft_in(&lib, &[], &["plan"]).ok();
    assert!(
        run.stderr
            .contains("warning: no value for {build}, {commit}"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_library_in_a_subdirectory_sees_only_its_own_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = sample_copy(tmp.path(), "");
    let top = tmp.path();
    write_file(top, "other/app.txt", "one\n");
    git_at(top, 1000, &["init", "-q", "-b", "main"]);
    commit_at(top, 1000, "all");
    // A change outside the library: nothing selected, no digest moves.
    let before = plan(&lib, &[]);
    write_file(top, "other/app.txt", "two\n");
    commit_at(top, 2000, "other");
    let v = plan(&lib, &["--changed-since", "HEAD~1"]);
    assert_eq!(v["changes"]["files"], serde_json::json!([]));
    assert_eq!(v["images"], serde_json::json!([]));
    assert_eq!(layer_digests(&plan(&lib, &[])), layer_digests(&before));
    // A change inside: paths relative to the library, the right image, the commit's time.
    write_file(&lib, "layers/solo-compat/files/etc/solo", "solo 2\n");
    commit_at(top, 3000, "solo");
    let v = plan(&lib, &["--changed-since", "HEAD~1"]);
    assert_eq!(
        v["changes"]["files"],
        serde_json::json!(["layers/solo-compat/files/etc/solo"])
    );
    assert_eq!(names(&v), ["solo"]);
    let at_3000 = graft_in(
        &lib,
        &[("SOURCE_DATE_EPOCH", "3000")],
        &["plan", "-o", "json", "--build", "1", "--commit", "c0ffee0"],
    )
    .ok()
    .json();
    let now = layer_digests(&plan(&lib, &[]));
    assert_eq!(now[3], layer_digests(&at_3000)[3]);
    assert_eq!(now[0], layer_digests(&before)[0]);
}
