//! Tag policy per branch, on git repositories the tests make from the sample library: a
//! branch run writes only its branch tag and the production tag keeps its digest (real
//! registry); a detached HEAD takes its branch from `--branch` or the CI's variables, and with
//! neither it is a usage error; a bad policy is an error at its file and line; `plan` shows the
//! tags of every branch.

use crate::support::tools::{copy_dir, write_file};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::graft::{capture, command, Run};
use crate::support::git::{commit, git};
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::skopeo;

/// The CI variables graft reads for a detached HEAD: removed from every run so the machine
/// running the tests (itself maybe a CI job) does not choose the branch.
const CI_VARS: [&str; 8] = [
    "GITHUB_HEAD_REF",
    "GITHUB_REF_NAME",
    "GITHUB_REF_TYPE",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
    "CI_COMMIT_REF_NAME",
    "BRANCH_NAME",
    "GIT_BRANCH",
    "SOURCE_DATE_EPOCH",
];

/// The sample library in `dir/library` as a git repository on `main` (one commit), with
/// `extra` appended to graft.yaml and, when `science` is given, its science images pointed at
/// that registry prefix (`sci/jupyter:2.4`, `sci/astro:1.0`).
fn library(dir: &Path, extra: &str, science: Option<&str>) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = dir.join("library");
    for sub in ["manifests", "layers", "testdata/science"] {
        copy_dir(&root.join(sub), &lib.join(sub));
    }
    // The sample's own `default_branch: main` is left out: each test says what it needs.
    let settings = std::fs::read_to_string(root.join("graft.yaml")).unwrap();
    assert!(settings.contains("\ndefault_branch: main\n"));
    let settings = settings.replace("\ndefault_branch: main\n", "\n");
    write_file(&lib, "graft.yaml", &format!("{settings}{extra}"));
    if let Some(science) = science {
        for (file, from, to) in [
            (
                "manifests/sci-notebook.yaml",
                "oci:testdata/science/jupyter-sci:2.4",
                format!("{science}/sci/jupyter:2.4"),
            ),
            (
                "manifests/astro-notebook.yaml",
                "oci:testdata/science/astro-base:1.0",
                format!("{science}/sci/astro:1.0"),
            ),
        ] {
            let p = lib.join(file);
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.contains(from), "{file} names {from}");
            std::fs::write(&p, text.replace(from, &to)).unwrap();
        }
    }
    git(&lib, &["init", "-q", "-b", "main"]);
    commit(&lib, "library");
    lib
}

/// graft in `dir` with HOME isolated, no CI variables and no SOURCE_DATE_EPOCH unless `env`
/// sets them.
fn graft_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(home.path());
    cmd.current_dir(dir);
    for k in CI_VARS {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    capture(cmd.args(args))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The references a dry-run refresh of `sci-notebook` would write.
fn would_write(lib: &Path, env: &[(&str, &str)], extra: &[&str]) -> Run {
    let mut args = vec!["-o", "json", "refresh", "--dry-run", "sci-notebook"];
    args.extend_from_slice(extra);
    graft_in(lib, env, &args)
}

/// The raw manifest and digest of `reference` (`docker://…`).
fn raw(reference: &str) -> (Value, String) {
    let out = skopeo(["inspect", "--raw", "--tls-verify=false", reference]);
    let digest = format!("sha256:{:x}", Sha256::digest(&out.stdout));
    (serde_json::from_slice(&out.stdout).unwrap(), digest)
}

fn registry_tags(reg: &Registry, repo: &str) -> Vec<String> {
    let out = skopeo(["list-tags", "--tls-verify=false", &reg.docker_ref(repo)]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags = strings(&v["Tags"]);
    tags.sort();
    tags
}

#[test]
fn a_branch_run_writes_only_its_branch_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "sci/jupyter:2.4");
    let lib = library(tmp.path(), "", Some(&format!("docker://{}", reg.addr())));
    // The default branch as a clone records it: the remote's HEAD.
    git(
        &lib,
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ],
    );
    let repo = format!("docker://{}/rel", reg.addr());
    let refresh = |env: &[(&str, &str)]| {
        graft_in(
            &lib,
            env,
            &[
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "refresh",
                "--repo",
                &repo,
                "sci-notebook",
            ],
        )
        .ok()
        .json()
    };
    let commit_short = git(&lib, &["rev-parse", "--short", "HEAD"]);
    let main = refresh(&[]);
    assert_eq!(
        strings(&main["images"][0]["references"]),
        [
            format!("{repo}/sci-notebook:2.4"),
            format!("{repo}/sci-notebook:2.4-1-{commit_short}")
        ]
    );
    let production = reg.docker_ref("rel/sci-notebook:2.4");
    let (index, digest) = raw(&production);
    assert_eq!(index["annotations"]["org.graft.branch"], "main", "{index}");

    // A feature branch that changes the compat layer: its image differs, and it must not
    // touch the production tags.
    git(&lib, &["checkout", "-q", "-b", "Fix/X"]);
    write_file(&lib, "layers/jupyter-compat/files/etc/fix", "fix\n");
    commit(&lib, "fix");
    let branch = refresh(&[]);
    assert_eq!(
        strings(&branch["images"][0]["references"]),
        [format!("{repo}/sci-notebook:2.4-fix-x")]
    );
    assert_eq!(raw(&production).1, digest, "the production tag moved");
    let (branch_index, branch_digest) = raw(&reg.docker_ref("rel/sci-notebook:2.4-fix-x"));
    assert_ne!(branch_digest, digest);
    // The branch as git names it: two branches can sanitise to one tag.
    assert_eq!(branch_index["annotations"]["org.graft.branch"], "Fix/X");
    assert_eq!(
        registry_tags(&reg, "rel/sci-notebook"),
        ["2.4", &format!("2.4-1-{commit_short}"), "2.4-fix-x"]
    );
}

#[test]
fn a_detached_head_takes_its_branch_from_the_flag_or_the_ci() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path(), "default_branch: main\n", None);
    git(&lib, &["checkout", "-q", "--detach"]);
    let refs = |run: Run| strings(&run.ok().json()["images"][0]["references"]);
    let out = "oci:out/library/sci-notebook";

    let run = would_write(&lib, &[], &[]).fails(2);
    assert!(
        run.stderr.contains("is detached and no branch is known")
            && run.stderr.contains("pass --branch NAME")
            && run.stderr.contains("GITHUB_HEAD_REF"),
        "{}",
        run.stderr
    );
    assert!(!lib.join("out").exists());

    assert_eq!(
        refs(would_write(&lib, &[], &["--branch", "feature/y"])),
        [format!("{out}:2.4-feature-y")]
    );
    // A pull request on GitHub Actions: the source branch, not `7/merge`.
    let github = [
        ("GITHUB_HEAD_REF", "pr/Seven"),
        ("GITHUB_REF_NAME", "7/merge"),
    ];
    assert_eq!(
        refs(would_write(&lib, &github, &[])),
        [format!("{out}:2.4-pr-seven")]
    );
    let gitlab = [("CI_COMMIT_REF_NAME", "dev")];
    assert_eq!(
        refs(would_write(&lib, &gitlab, &[])),
        [format!("{out}:2.4-dev")]
    );
    // The flag wins over the CI; the default branch writes the production tags.
    let commit_short = git(&lib, &["rev-parse", "--short", "HEAD"]);
    assert_eq!(
        refs(would_write(&lib, &github, &["--branch", "main"])),
        [format!("{out}:2.4"), format!("{out}:2.4-1-{commit_short}")]
    );

    // On a branch, with no default_branch and no remote HEAD: graft cannot tell, so it
    // refuses rather than guess (plan previews and warns).
    let lib2 = library(&tmp.path().join("two"), "", None);
    let run = would_write(&lib2, &[], &[]).fails(2);
    assert!(
        run.stderr
            .contains("cannot tell whether branch \"main\" is the library's default branch")
            && run.stderr.contains("set default_branch in"),
        "{}",
        run.stderr
    );
    let run = graft_in(&lib2, &[], &["plan"]).ok();
    assert!(
        run.stderr.contains("warning: cannot tell whether"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_bad_branch_policy_is_an_error_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "default_branch: main\nbranches:\n  - branch: \"release/*\"\n    tags: [\"{version}\", \"{version}-{sha}\"]\n";
    let lib = library(tmp.path(), extra, None);
    let text = std::fs::read_to_string(lib.join("graft.yaml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("{sha}"))
        .expect("the bad line")
        + 1;
    let col = text
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("\"{version}-")
        .unwrap()
        + 1;
    let at = format!("graft.yaml:{line}:{col}: branches[0].tags[1]");
    for args in [
        vec!["plan"],
        vec!["refresh", "--dry-run"],
        vec!["refresh", "--branch", "release/1"],
    ] {
        let run = graft_in(&lib, &[], &args).fails(2);
        assert!(
            run.stderr.contains(&at) && run.stderr.contains("unknown placeholder {sha}"),
            "{args:?}: want {at:?} in\n{}",
            run.stderr
        );
    }
    assert!(!lib.join("out").exists(), "nothing is written");
    let run = graft_in(&lib, &[], &["validate"]).fails(1);
    assert!(
        run.stdout.contains(&at) || run.stderr.contains(&at),
        "{}",
        run.all()
    );
}

#[test]
fn plan_shows_the_tags_of_every_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "default_branch: main\nbranches:\n  - branch: \"release/*\"\n    tags: [\"{version}\", \"{version}-rc{build}\"]\n";
    let lib = library(tmp.path(), extra, None);
    git(&lib, &["checkout", "-q", "-b", "release/2"]);
    let build = ["--build", "5", "--commit", "abc1234"];
    let mut args = vec!["plan", "-o", "json"];
    args.extend_from_slice(&build);
    let v = graft_in(&lib, &[], &args).ok().json();
    assert_eq!(
        v["branch"],
        serde_json::json!({"name": "release/2", "default_branch": "main", "is_default": false})
    );
    let sci = &v["images"][1];
    assert_eq!(sci["name"], "sci-notebook");
    assert_eq!(strings(&sci["tags"]), ["2.4", "2.4-rc5"]);
    assert_eq!(
        sci["branch_tags"],
        serde_json::json!([
            {"branch": "main", "default": true, "tags": ["2.4", "2.4-5-abc1234"], "current": false},
            {"branch": "release/*", "default": false, "tags": ["2.4", "2.4-rc5"], "current": true},
            {"branch": "**", "default": false, "tags": ["2.4-{branch}"], "current": false},
        ])
    );
    let mut args = vec!["plan"];
    args.extend_from_slice(&build);
    let text = graft_in(&lib, &[], &args).ok().stdout;
    for line in [
        "  on main (default): 2.4, 2.4-5-abc1234",
        "  on release/*: 2.4, 2.4-rc5  <- this run",
        "  on **: 2.4-{branch}",
        "  -> oci:out/library/sci-notebook:2.4-rc5",
        "branch release/2 (not the default branch main)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Another branch: the fallback row, `{branch}` filled in.
    git(&lib, &["checkout", "-q", "-b", "feature/z"]);
    let mut args = vec!["plan", "-o", "json"];
    args.extend_from_slice(&build);
    let v = graft_in(&lib, &[], &args).ok().json();
    let rows = &v["images"][1]["branch_tags"];
    assert_eq!(rows[2]["tags"], serde_json::json!(["2.4-feature-z"]));
    assert_eq!(rows[2]["current"], true);
    assert_eq!(
        strings(&v["images"][1]["references"]),
        ["oci:out/library/sci-notebook:2.4-feature-z"]
    );
}
