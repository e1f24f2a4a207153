//! CI at scale: `--shard I/N` splits a library into N disjoint parts that cover it, and
//! `graft plan --matrix github|gitlab` lists the selected images as a CI job matrix, on a
//! copy of the sample library grown to 12 image names (one of them with two manifests).

use crate::support::git::{commit, git};
use crate::support::tools::{copy_dir, write_file};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::graft::{capture, command, Run};

/// The sample library (astro-notebook, sci-notebook) plus image-00 … image-09 (image-05 and
/// image-07 on their own layer, extra-compat) and a second version of image-03: 12 names,
/// 13 manifests, in `dir/library`.
fn library(dir: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = dir.join("library");
    for sub in ["manifests", "layers", "schema", "testdata/science"] {
        copy_dir(&root.join(sub), &lib.join(sub));
    }
    std::fs::copy(root.join("graft.yaml"), lib.join("graft.yaml")).unwrap();
    for i in 0..10 {
        let compat = if i == 5 || i == 7 {
            "extra-compat"
        } else {
            "astro-compat"
        };
        write_file(
            &lib,
            &format!("manifests/image-{i:02}.yaml"),
            &format!("name: image-{i:02}\nversion: 1.0\nscience:\n  image: oci:testdata/science/astro-base:1.0\ncompat: {compat}\n"),
        );
    }
    write_file(
        &lib,
        "manifests/image-03-v2.yaml",
        "name: image-03\nversion: 2.0\nscience:\n  image: oci:testdata/science/astro-base:1.0\ncompat: astro-compat\n",
    );
    write_file(&lib, "layers/extra-compat/layer.yaml", "{}\n");
    write_file(&lib, "layers/extra-compat/files/etc/extra", "extra\n");
    write_file(&lib, "README.md", "# library\n");
    lib
}

/// graft in `dir` with an isolated HOME and `SOURCE_DATE_EPOCH` unset.
fn graft_in(dir: &Path, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(home.path());
    cmd.current_dir(dir).env_remove("SOURCE_DATE_EPOCH");
    capture(cmd.args(args))
}

/// `graft plan -o json` with fixed build values and `extra`: the image names, in order.
fn plan_names(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["-o", "json", "plan", "--build", "1", "--commit", "c0ffee0"];
    args.extend_from_slice(extra);
    names(&graft_in(dir, &args).ok().json()["images"])
}

fn names(images: &Value) -> Vec<String> {
    images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

/// Each name once, in order.
fn unique(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

#[test]
fn shards_are_disjoint_and_cover_the_library_in_plan_and_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let all = plan_names(&lib, &[]);
    assert_eq!(all.len(), 13, "{all:?}");
    let every: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(every.len(), 12);

    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut shards = Vec::new();
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let planned = plan_names(&lib, &["--shard", &shard]);
        assert!(!planned.is_empty(), "shard {shard} is empty");
        // A name is never split: both manifests of image-03 are in one shard.
        let n03 = planned.iter().filter(|n| *n == "image-03").count();
        assert!(n03 == 0 || n03 == 2, "{shard}: {planned:?}");
        for n in unique(&planned) {
            assert!(seen.insert(n.clone()), "{n} is in two shards");
        }
        // refresh takes the same selection (a dry run: the science images are layouts).
        let run = graft_in(
            &lib,
            &[
                "-o",
                "json",
                "refresh",
                "--dry-run",
                "--build",
                "1",
                "--commit",
                "c",
                "--shard",
                &shard,
            ],
        )
        .ok();
        assert_eq!(names(&run.json()["images"]), planned, "shard {shard}");
        assert!(
            run.stderr
                .contains(&format!("shard {shard}: {} of 13 image(s)", planned.len())),
            "{}",
            run.stderr
        );
        shards.push(planned);
    }
    assert_eq!(seen, every);
    // The assignment is SHA-256 of the name (the unit tests' golden values).
    assert!(shards[1].contains(&"image-00".to_string()), "{shards:?}");
    assert!(shards[2].contains(&"image-04".to_string()), "{shards:?}");
    assert!(shards[0].contains(&"image-05".to_string()), "{shards:?}");
    assert!(!lib.join("out").exists());

    // Names narrow a shard; a name of another shard is simply not in it.
    let run = graft_in(
        &lib,
        &[
            "-o",
            "json",
            "refresh",
            "--dry-run",
            "--build",
            "1",
            "--commit",
            "c",
            "--shard",
            "2/3",
            "image-00",
            "image-04",
        ],
    )
    .ok();
    assert_eq!(names(&run.json()["images"]), ["image-00"]);
}

#[test]
fn the_matrix_lists_the_plans_images_for_github_and_gitlab() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let base = ["plan", "--build", "1", "--commit", "c"];
    for shard in [None, Some("2/3")] {
        let mut extra: Vec<&str> = Vec::new();
        if let Some(s) = shard {
            extra.extend(["--shard", s]);
        }
        let want = unique(&plan_names(&lib, &extra));

        // GitHub: one line of JSON, in both output formats.
        let mut args: Vec<&str> = base.to_vec();
        args.extend(&extra);
        args.extend(["--matrix", "github"]);
        let run = graft_in(&lib, &args).ok();
        assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
        let github = run.json();
        assert_eq!(names(&github["include"]), want, "{shard:?}");
        let json_args: Vec<&str> = ["-o", "json"].iter().chain(&args).copied().collect();
        assert_eq!(graft_in(&lib, &json_args).ok().json(), github);

        // GitLab: a YAML list of variable maps; with -o json the same list as JSON.
        let mut args: Vec<&str> = base.to_vec();
        args.extend(&extra);
        args.extend(["--matrix", "gitlab"]);
        let yaml = graft_in(&lib, &args).ok().stdout;
        let gitlab: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let images: Vec<String> = gitlab
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["IMAGE"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(images, want, "{yaml}");
        let json_args: Vec<&str> = ["-o", "json"].iter().chain(&args).copied().collect();
        assert_eq!(graft_in(&lib, &json_args).ok().json(), gitlab);

        // Every value is a string (GitLab variables); one job per name, with its versions.
        for job in gitlab.as_array().unwrap() {
            for v in job.as_object().unwrap().values() {
                assert!(v.is_string(), "{job}");
            }
        }
        if want.contains(&"image-03".to_string()) {
            let job = github["include"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["name"] == "image-03")
                .unwrap()
                .clone();
            assert_eq!(job["versions"], "2.0 1.0");
            assert_eq!(
                job["manifests"],
                "manifests/image-03-v2.yaml manifests/image-03.yaml"
            );
        }
    }
}

#[test]
fn with_changed_since_the_matrix_has_only_the_changed_images_or_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    git(&lib, &["init", "-q", "-b", "main"]);
    commit(&lib, "library");
    write_file(&lib, "layers/extra-compat/files/etc/extra", "changed\n");
    commit(&lib, "extra-compat");
    write_file(&lib, "README.md", "# docs only\n");
    commit(&lib, "docs");

    let matrix = |since: &str, ci: &str| {
        graft_in(&lib, &["plan", "--changed-since", since, "--matrix", ci]).ok()
    };
    let github = matrix("HEAD~2", "github").json();
    assert_eq!(names(&github["include"]), ["image-05", "image-07"]);
    let gitlab: Value = serde_yaml_ng::from_str(&matrix("HEAD~2", "gitlab").stdout).unwrap();
    assert_eq!(
        gitlab,
        serde_json::json!([
            {"IMAGE": "image-05", "VERSIONS": "1.0", "MANIFESTS": "manifests/image-05.yaml"},
            {"IMAGE": "image-07", "VERSIONS": "1.0", "MANIFESTS": "manifests/image-07.yaml"},
        ])
    );

    // Nothing changed: valid empty documents, byte for byte what docs/ci.md compares with.
    let run = matrix("HEAD~1", "github");
    assert_eq!(run.stdout, "{\"include\":[]}\n");
    assert!(
        run.stderr.contains("matrix: 0 jobs for 0 images"),
        "{}",
        run.stderr
    );
    assert_eq!(matrix("HEAD~1", "gitlab").stdout, "[]\n");

    // A shard of a change set: its share of the changed images only.
    let mut union = Vec::new();
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let run = graft_in(
            &lib,
            &[
                "plan",
                "--changed-since",
                "HEAD~2",
                "--shard",
                &shard,
                "--matrix",
                "github",
            ],
        )
        .ok();
        union.extend(names(&run.json()["include"]));
    }
    union.sort();
    assert_eq!(union, ["image-05", "image-07"]);
}

#[test]
fn a_bad_shard_is_a_usage_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    for bad in ["0/3", "4/3", "1/0", "x/3", "3", "1/3/3", "-1/3", "+1/3", ""] {
        // `--shard=V`: the value reaches graft's parser even when it starts with `-`.
        let flag = format!("--shard={bad}");
        let run = graft_in(&lib, &["plan", &flag]).fails(2);
        assert!(run.stderr.contains("I/N"), "{bad:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{bad:?}: {}", run.stdout);
        let run = graft_in(&lib, &["refresh", "--build", "1", "--commit", "c", &flag]).fails(2);
        assert!(
            run.stderr.contains("invalid shard"),
            "{bad:?}: {}",
            run.stderr
        );
    }
    let run = graft_in(&lib, &["plan", "--matrix", "jenkins"]).fails(2);
    assert!(run.stderr.contains("github"), "{}", run.stderr);
    assert!(!lib.join("out").exists());
}
