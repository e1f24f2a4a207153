//! Housekeeping (issue 13): `graft prune --branch-tags` against a real registry with deletes
//! enabled and a bare git repository as the library's remote, both made by the tests; `graft
//! delete` in an OCI layout; and two loose ends: `graft layer build` gives refresh's layer
//! digest in a git checkout, and `refresh -o json` carries its `--changed-since` reasons.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::support::git::{git, git_at};
use crate::support::peers::{stdout_ok, Peer};
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{copy_dir, science_layout, skopeo, write_file};

/// The CI variables graft reads for a detached HEAD, and SOURCE_DATE_EPOCH: removed from
/// every run so the machine running the tests does not choose the branch or the time.
const ENV_REMOVED: [&str; 8] = [
    "GITHUB_HEAD_REF",
    "GITHUB_REF_NAME",
    "GITHUB_REF_TYPE",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
    "CI_COMMIT_REF_NAME",
    "BRANCH_NAME",
    "GIT_BRANCH",
    "SOURCE_DATE_EPOCH",
];

/// The sample library in `dir/library` as a git repository on `main` (one commit at time
/// 1000), its own graft.yaml (`default_branch: main`).
fn library(dir: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = dir.join("library");
    for sub in ["manifests", "layers", "testdata/science"] {
        copy_dir(&root.join(sub), &lib.join(sub));
    }
    std::fs::copy(root.join("graft.yaml"), lib.join("graft.yaml")).unwrap();
    git(&lib, &["init", "-q", "-b", "main"]);
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "library"]);
    lib
}

/// The library of [`library`] with a bare repository `dir/remote.git` as its `origin`, `main`
/// pushed there.
fn library_with_remote(dir: &Path) -> (PathBuf, PathBuf) {
    let lib = library(dir);
    let remote = dir.join("remote.git");
    git(dir, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(&lib, &["remote", "add", "origin", remote.to_str().unwrap()]);
    git(&lib, &["push", "-q", "origin", "main"]);
    (lib, remote)
}

/// Create (`Some`) or delete (`None`) `branch` in the remote, at the library's HEAD.
fn remote_branch(lib: &Path, branch: &str, create: bool) {
    let spec = match create {
        true => format!("HEAD:refs/heads/{branch}"),
        false => format!(":refs/heads/{branch}"),
    };
    git(lib, &["push", "-q", "origin", &spec]);
}

/// graft in `dir` with HOME isolated and none of [`ENV_REMOVED`] unless `env` sets it.
fn graft_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(home.path());
    cmd.current_dir(dir);
    for k in ENV_REMOVED {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    capture(cmd.args(args))
}

/// `graft refresh sci-notebook` into `repo`, on `branch` (`--branch`).
fn refresh(lib: &Path, repo: &str, branch: &str) -> Value {
    graft_in(
        lib,
        &[],
        &[
            "-q",
            "-o",
            "json",
            "--tls-verify=false",
            "refresh",
            "--repo",
            repo,
            "--branch",
            branch,
            "sci-notebook",
        ],
    )
    .ok()
    .json()
}

/// `graft prune --branch-tags` of the library into `repo`, with `extra` arguments.
fn prune(lib: &Path, repo: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "-o",
        "json",
        "--tls-verify=false",
        "prune",
        "--branch-tags",
        "--repo",
        repo,
    ];
    args.extend_from_slice(extra);
    graft_in(lib, &[], &args)
}

/// Tags of `repo` (`host/repo`) as crane lists them, sorted.
fn crane_tags(peer: &Peer, repo: &str) -> Vec<String> {
    let out = peer.try_run("crane", ["ls", repo]);
    let mut tags: Vec<String> = stdout_ok(&out, &format!("crane ls {repo}"))
        .lines()
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

fn regctl_digest(peer: &Peer, image: &str) -> String {
    String::from_utf8(peer.regctl(["image", "digest", image]).stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// The digest each `(repository, tag)` of a prune report's `pruned` list names, as
/// `tag → digest` pairs, sorted.
fn pruned_tags(report: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in report["repositories"].as_array().unwrap() {
        for p in r["pruned"].as_array().unwrap() {
            for t in p["tags"].as_array().unwrap() {
                out.push((
                    t.as_str().unwrap().to_string(),
                    p["digest"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The kept tags of a prune report: `(tag, branch, reason, kept_by)`, sorted.
fn kept_tags(report: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    for r in report["repositories"].as_array().unwrap() {
        for k in r["kept"].as_array().unwrap() {
            let by = k["kept_by"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            out.push((
                k["tag"].as_str().unwrap().to_string(),
                k["branch"].as_str().unwrap().to_string(),
                k["reason"].as_str().unwrap().to_string(),
                by,
            ));
        }
    }
    out.sort();
    out
}

fn kept(
    tag: &str,
    branch: &str,
    reason: &str,
    by: &[&str],
) -> (String, String, String, Vec<String>) {
    (
        tag.into(),
        branch.into(),
        reason.into(),
        by.iter().map(|s| s.to_string()).collect(),
    )
}

#[test]
fn prune_deletes_only_the_tags_of_gone_branches_and_keeps_shared_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let peer = Peer::new().plain_http(reg.addr());
    let (lib, _remote) = library_with_remote(tmp.path());
    let repo = format!("docker://{}/rel", reg.addr());
    let image = format!("{}/rel/sci-notebook", reg.addr());
    let commit = git(&lib, &["rev-parse", "--short", "HEAD"]);

    // The default branch, then one run per feature branch, each branch pushed first.
    refresh(&lib, &repo, "main");
    for b in ["gone/one", "keep/me", "shared", "feat/a", "feat+a"] {
        remote_branch(&lib, b, true);
        refresh(&lib, &repo, b);
    }
    // `stable` shares the digest of the `shared` branch's tag.
    graft_in(
        &lib,
        &[],
        &[
            "-q",
            "--tls-verify=false",
            "tag",
            &format!("docker://{image}:2.4-shared"),
            "stable",
        ],
    )
    .ok();
    let all = {
        let mut t = vec![
            "2.4".to_string(),
            format!("2.4-1-{commit}"),
            "2.4-feat-a".into(),
            "2.4-gone-one".into(),
            "2.4-keep-me".into(),
            "2.4-shared".into(),
            "stable".into(),
        ];
        t.sort();
        t
    };
    assert_eq!(crane_tags(&peer, &image), all);
    let digest = |tag: &str| regctl_digest(&peer, &format!("{image}:{tag}"));
    let production = digest("2.4");
    let gone_digest = digest("2.4-gone-one");

    // Two branches wrote `2.4-feat-a`; the last run (feat+a) made what it points at. With
    // feat/a gone but feat+a alive, the tag stays: the annotation, not the tag, decides.
    remote_branch(&lib, "gone/one", false);
    remote_branch(&lib, "shared", false);
    remote_branch(&lib, "feat/a", false);
    let dry = prune(&lib, &repo, &["--dry-run"]).ok().json();
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["default_branch"], "main", "{dry}");
    assert_eq!(
        pruned_tags(&dry),
        vec![("2.4-gone-one".to_string(), gone_digest.clone())],
        "{dry}"
    );
    assert_eq!(
        kept_tags(&dry),
        vec![
            kept("2.4", "main", "default-branch", &[]),
            kept(&format!("2.4-1-{commit}"), "main", "default-branch", &[]),
            kept("2.4-feat-a", "feat+a", "branch-exists", &[]),
            kept("2.4-keep-me", "keep/me", "branch-exists", &[]),
            kept("2.4-shared", "shared", "shared-digest", &["stable"]),
            // Promoted from the branch's image, so it carries its annotation, but it is not
            // a tag the branch writes.
            kept("stable", "shared", "not-a-branch-tag", &[]),
        ],
        "{dry}"
    );
    // The astro image was never refreshed: its repository does not exist, nothing to do.
    let astro = &dry["repositories"][0];
    assert_eq!(astro["exists"], false, "{dry}");
    // A dry run deletes nothing.
    assert_eq!(crane_tags(&peer, &image), all);

    // Now feat+a goes and feat/a comes back: `2.4-feat-a` was made by feat+a, so it goes,
    // though a live branch (feat/a) sanitises to the same tag.
    remote_branch(&lib, "feat/a", true);
    remote_branch(&lib, "feat+a", false);
    let feat_digest = digest("2.4-feat-a");
    let text = graft_in(
        &lib,
        &[],
        &[
            "--tls-verify=false",
            "prune",
            "--branch-tags",
            "--dry-run",
            "--repo",
            &repo,
        ],
    )
    .ok();
    for line in [
        format!(
            "would prune docker://{image}@{gone_digest} (tags 2.4-gone-one; branch gone/one is gone)"
        ),
        format!(
            "would prune docker://{image}@{feat_digest} (tags 2.4-feat-a; branch feat+a is gone)"
        ),
        format!(
            "kept docker://{image}:2.4-shared (branch shared is gone, but {} is also tagged \
             stable (a delete would take it))",
            digest("stable")
        ),
    ] {
        assert!(text.stdout.contains(&line), "{line}\n{}", text.stdout);
    }

    // The prune itself, through a counting proxy: one tag listing per repository, one
    // manifest GET per tag, one DELETE per pruned digest, nothing below a root.
    let proxy = Proxy::start(reg.addr());
    let via = format!("docker://{}/rel", proxy.image_ref("").trim_end_matches('/'));
    let done = prune(&lib, &via, &[]).ok().json();
    assert_eq!(done["dry_run"], false, "{done}");
    let mut expected = vec![
        ("2.4-feat-a".to_string(), feat_digest.clone()),
        ("2.4-gone-one".to_string(), gone_digest.clone()),
    ];
    expected.sort();
    assert_eq!(pruned_tags(&done), expected, "{done}");
    let requests = proxy.requests();
    let count = |method: &str, part: &str| {
        requests
            .iter()
            .filter(|(m, p)| m == method && p.contains(part))
            .count()
    };
    assert_eq!(count("GET", "/tags/list"), 2, "{requests:?}");
    assert_eq!(count("GET", "/manifests/"), all.len(), "{requests:?}");
    assert_eq!(count("DELETE", "/manifests/sha256:"), 2, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|(m, p)| !p.contains("/blobs/") && matches!(m.as_str(), "GET" | "DELETE")),
        "{requests:?}"
    );
    let mut left = all.clone();
    left.retain(|t| t != "2.4-gone-one" && t != "2.4-feat-a");
    assert_eq!(crane_tags(&peer, &image), left);
    assert_eq!(digest("2.4"), production, "the production tag moved");
    assert_eq!(digest("stable"), digest("2.4-shared"));

    // Nothing left to prune: a second run deletes nothing and says what it keeps.
    let again = prune(&lib, &repo, &[]).ok().json();
    assert!(pruned_tags(&again).is_empty(), "{again}");
    assert_eq!(crane_tags(&peer, &image), left);
}

#[test]
fn prune_fails_clearly_on_a_bad_remote_and_a_registry_that_refuses_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain().without_delete());
    let peer = Peer::new().plain_http(reg.addr());
    let repo = format!("docker://{}/rel", reg.addr());
    let image = format!("{}/rel/sci-notebook", reg.addr());

    // No `origin` remote: usage, naming the fix.
    let lonely = library(&tmp.path().join("lonely"));
    let out = prune(&lonely, &repo, &[]).fails(2);
    assert!(
        out.stderr.contains("no remote named \"origin\"") && out.stderr.contains("--remote"),
        "{}",
        out.stderr
    );
    // A remote that is not there: the operation fails, naming it.
    let missing = tmp.path().join("nowhere.git");
    let out = prune(&lonely, &repo, &["--remote", missing.to_str().unwrap()]).fails(1);
    assert!(
        out.stderr.contains("git ls-remote") && out.stderr.contains("nowhere.git"),
        "{}",
        out.stderr
    );

    // A registry without deletes: exit 1, naming the setting; nothing changed.
    let (lib, _remote) = library_with_remote(tmp.path());
    refresh(&lib, &repo, "main");
    remote_branch(&lib, "old", true);
    refresh(&lib, &repo, "old");
    remote_branch(&lib, "old", false);
    let before = crane_tags(&peer, &image);
    assert!(before.contains(&"2.4-old".to_string()), "{before:?}");
    let out = prune(&lib, &repo, &[]).fails(1);
    assert!(
        out.stderr.contains("storage.delete.enabled") && out.stderr.contains("2.4-old"),
        "{}",
        out.stderr
    );
    assert_eq!(crane_tags(&peer, &image), before);

    // A remote without the default branch is not the library's: nothing is pruned.
    let other = tmp.path().join("other.git");
    git(
        tmp.path(),
        &["init", "-q", "--bare", "-b", "trunk", "other.git"],
    );
    git(
        &lib,
        &[
            "push",
            "-q",
            other.to_str().unwrap(),
            "HEAD:refs/heads/trunk",
        ],
    );
    let out = prune(&lib, &repo, &["--remote", other.to_str().unwrap()]).fails(1);
    assert!(
        out.stderr.contains("has no branch \"main\""),
        "{}",
        out.stderr
    );
}

/// index.json of the layout `dir`, parsed.
fn index(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

/// `(ref.name, digest)` of every entry of the layout `dir`.
fn entries(dir: &Path) -> Vec<(Option<String>, String)> {
    index(dir)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .map(str::to_string),
                e["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn blob_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count()
}

#[test]
fn delete_in_an_oci_layout_removes_the_entries_of_the_digest_and_keeps_blobs() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("layout");
    copy_dir(&science_layout("jupyter-sci"), &dir);
    let layout = |t: &str| format!("oci:{}:{t}", dir.display());
    let run = |args: &[&str]| graft_in(home.path(), &[], args);
    run(&["-q", "tag", &layout("2.4"), "stable"]).ok();
    run(&[
        "-q",
        "copy",
        &format!("oci:{}:1.0", science_layout("astro-base").display()),
        &layout("astro"),
    ])
    .ok();
    // An untagged entry of the same digest (as oras leaves them) and a field graft does not
    // know: the delete removes the first and keeps the second.
    let mut doc = index(&dir);
    let jupyter = entries(&dir)[0].1.clone();
    let mut untagged = doc["manifests"][0].clone();
    untagged.as_object_mut().unwrap().remove("annotations");
    doc["manifests"].as_array_mut().unwrap().push(untagged);
    doc["x-kept"] = Value::from("yes");
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let blobs = blob_count(&dir);
    let original = std::fs::read(dir.join("index.json")).unwrap();

    // `stable` alone would take 2.4 with it: refused, nothing changed.
    let refused = run(&["delete", &layout("stable")]).fails(1);
    assert!(
        refused.stderr.contains("also tagged 2.4")
            && refused.stderr.contains("nothing was deleted"),
        "{}",
        refused.stderr
    );
    // A dry run says what would go and changes nothing.
    let dry = run(&[
        "-o",
        "json",
        "delete",
        "--dry-run",
        &layout("stable"),
        &layout("2.4"),
    ])
    .ok()
    .json();
    assert_eq!(dry["deleted"][0]["digest"], jupyter.as_str(), "{dry}");
    assert_eq!(std::fs::read(dir.join("index.json")).unwrap(), original);

    let out = run(&["-o", "json", "delete", &layout("stable"), &layout("2.4")]).ok();
    let report = out.json();
    let mut tags: Vec<&str> = report["deleted"][0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["2.4", "stable"], "{report}");
    assert!(
        out.stderr.contains("blobs stay in blobs/"),
        "{}",
        out.stderr
    );
    // Only the astro entry is left (the untagged jupyter entry went too); blobs stay; the
    // unknown field is kept; the layout still reads.
    let left = entries(&dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0.as_deref(), Some("astro"));
    assert_eq!(index(&dir)["x-kept"], "yes");
    assert_eq!(blob_count(&dir), blobs);
    skopeo(["inspect", "--raw", &layout("astro")]);
    let listed = run(&["ls", &format!("oci:{}", dir.display())]).ok().stdout;
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["astro"]);
    // The tag is gone: a second delete fails, naming it.
    let gone = run(&["delete", &layout("2.4")]).fails(1);
    assert!(gone.stderr.contains("2.4"), "{}", gone.stderr);
}

#[test]
fn delete_in_a_multi_image_layout_keeps_other_repositories_and_archives_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("mirror");
    copy_dir(&science_layout("jupyter-sci"), &dir);
    // Two repositories of a mirror layout on one digest.
    let mut doc = index(&dir);
    let mut a = doc["manifests"][0].clone();
    let mut b = a.clone();
    a["annotations"]["org.opencontainers.image.ref.name"] = Value::from("reg.io/a:1");
    b["annotations"]["org.opencontainers.image.ref.name"] = Value::from("reg.io/b:1");
    doc["manifests"] = Value::Array(vec![a, b]);
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let run = |args: &[&str]| graft_in(home.path(), &[], args);
    run(&["-q", "delete", &format!("oci:{}:reg.io/a:1", dir.display())]).ok();
    let left = entries(&dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0.as_deref(), Some("reg.io/b:1"));

    // An archive is not edited: usage, with what to do instead; nothing changed.
    let archive = home.path().join("sci.tar");
    run(&[
        "-q",
        "copy",
        &format!("oci:{}:2.4", science_layout("jupyter-sci").display()),
        &format!("oci-archive:{}:2.4", archive.display()),
    ])
    .ok();
    let before = std::fs::read(&archive).unwrap();
    let out = run(&["delete", &format!("oci-archive:{}:2.4", archive.display())]).fails(2);
    assert!(
        out.stderr
            .contains("deleting from an OCI archive is not supported"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&archive).unwrap(), before);
}

#[test]
fn layer_build_gives_the_refresh_digest_in_a_git_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    // A later commit that touches no layer: HEAD's time (2000) is not the layers' (1000).
    write_file(&lib, "README.md", "docs\n");
    git_at(&lib, 2000, &["add", "-A"]);
    git_at(&lib, 2000, &["commit", "-q", "-m", "docs"]);

    let refreshed = |env: &[(&str, &str)]| {
        let v = graft_in(
            &lib,
            env,
            &["-q", "-o", "json", "refresh", "--dry-run", "sci-notebook"],
        )
        .ok()
        .json();
        v["images"][0]["compat_layer"]["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no compat layer digest: {v}"))
            .to_string()
    };
    let built = |env: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["-o", "json", "layer", "build"];
        all.extend_from_slice(args);
        graft_in(&lib, env, &all).ok().json()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let from_git = refreshed(&[]);
    assert_eq!(built(&[], &["jupyter-compat"]), from_git);
    let layer_dir = lib.join("layers/jupyter-compat");
    assert_eq!(built(&[], &[layer_dir.to_str().unwrap()]), from_git);
    // The time really comes from git: SOURCE_DATE_EPOCH=0 gives another digest, and both
    // commands agree on that one too.
    let epoch = [("SOURCE_DATE_EPOCH", "0")];
    let from_epoch = refreshed(&epoch);
    assert_ne!(from_epoch, from_git);
    assert_eq!(built(&epoch, &["jupyter-compat"]), from_epoch);
}

#[test]
fn refresh_json_carries_the_changed_since_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    write_file(&lib, "layers/jupyter-compat/files/etc/changed", "x\n");
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "layer"]);
    let v = graft_in(
        &lib,
        &[],
        &[
            "-q",
            "-o",
            "json",
            "refresh",
            "--dry-run",
            "--changed-since",
            "HEAD~1",
        ],
    )
    .ok()
    .json();
    let images = v["changes"]["images"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(images.len(), 1, "{v}");
    assert_eq!(images[0]["manifest"], "manifests/sci-notebook.yaml", "{v}");
    assert_eq!(images[0]["reasons"][0]["kind"], "layer-changed", "{v}");
    assert_eq!(images[0]["reasons"][0]["layer"], "jupyter-compat", "{v}");
    assert_eq!(v["images"].as_array().unwrap().len(), 1, "{v}");
}
