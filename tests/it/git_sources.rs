//! `build:` manifests whose source is a `git.repo` at a pinned `git.commit`: a bare repository
//! made here (two commits) is cloned into the source cache, the pinned commit is checked out
//! and built with real buildah into a real registry; a later commit of the repository does not
//! move the build; an unknown commit is refused before anything is written; `graft diff` shows
//! the change between the commits; credentials in a repository URL are never printed.

use std::path::Path;

use crate::graft::{run_in, Run};
use crate::support::git::git;
use crate::support::peers::Peer;
use crate::support::registry::Registry;

/// A bare repository `src.git` and a work tree that pushes to it; `commit` adds one commit.
struct Source {
    dir: tempfile::TempDir,
}

impl Source {
    fn new() -> Source {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "--quiet", "--bare", "src.git"]);
        git(dir.path(), &["init", "--quiet", "-b", "main", "work"]);
        Source { dir }
    }

    fn bare(&self) -> String {
        self.dir
            .path()
            .join("src.git")
            .to_str()
            .unwrap()
            .to_string()
    }

    fn commit(&self, files: &[(&str, &str)]) -> String {
        let work = self.dir.path().join("work");
        for (p, c) in files {
            let p = work.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", "change"]);
        git(&work, &["push", "--quiet", &self.bare(), "main"]);
        git(&work, &["rev-parse", "HEAD"])
    }
}

const DOCKERFILE_1: &str = "FROM scratch\nCOPY hello /hello\n";
const DOCKERFILE_2: &str = "FROM scratch\nCOPY hello /hello\nCOPY extra /extra\n";

fn first_two(src: &Source) -> (String, String) {
    let c1 = src.commit(&[
        ("images/app/Dockerfile", DOCKERFILE_1),
        ("images/app/hello", "content-one\n"),
        ("README", "outside the context\n"),
    ]);
    let c2 = src.commit(&[
        ("images/app/Dockerfile", DOCKERFILE_2),
        ("images/app/hello", "content-two\n"),
        ("images/app/extra", "extra\n"),
        ("README", "changed outside the context\n"),
    ]);
    (c1, c2)
}

fn library(reg: &Registry, repo: &str, commit: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(
        dir.path().join("graft.yaml"),
        format!("repo: docker://{}/lib\ndefault_branch: main\n", reg.addr()),
    )
    .unwrap();
    write_manifest(dir.path(), repo, commit);
    dir
}

fn write_manifest(lib: &Path, repo: &str, commit: &str) {
    std::fs::write(
        lib.join("manifests/app.yaml"),
        format!(
            "name: app\nversion: 1.0\ngit:\n  repo: {repo}\n  fetch: refs/heads/main\n  commit: {commit}\nbuild:\n  path: images/app\n  platforms: [linux/amd64]\n"
        ),
    )
    .unwrap();
}

fn build(lib: &Path, cache: &Path) -> Run {
    let storage = lib.join(".storage");
    run_in(
        lib,
        &[
            "build",
            "--library",
            ".",
            "--tls-verify=false",
            "--storage",
            storage.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--build",
            "1",
            "-o",
            "json",
        ],
    )
}

/// The image's filesystem as crane exports it (one tar).
fn exported(peer: &Peer, reference: &str) -> String {
    let out = peer.crane(["export", reference, "-"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_pinned_commit_builds_from_its_own_dockerfile_and_stays_pinned() {
    let reg = Registry::plain();
    let src = Source::new();
    let c1 = src.commit(&[
        ("images/app/Dockerfile", DOCKERFILE_1),
        ("images/app/hello", "content-one\n"),
    ]);
    let lib = library(&reg, &src.bare(), &c1);
    let cache = tempfile::tempdir().unwrap();
    let run = build(lib.path(), cache.path()).ok();
    assert_eq!(run.json()["images"][0]["name"], "app", "{}", run.all());
    let peer = Peer::new().plain_http(reg.addr());
    let reference = format!("{}/lib/app:1.0", reg.addr());
    let fs = exported(&peer, &reference);
    assert!(fs.contains("content-one"), "{fs}");
    // The checkout is of exactly that commit.
    let checkouts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        checkouts.iter().any(|n| n.ends_with(&format!("-{c1}"))),
        "{checkouts:?}"
    );
    // The repository moves on; the pinned build does not (the clone is even fetched again
    // when the cache is new).
    src.commit(&[
        ("images/app/Dockerfile", DOCKERFILE_2),
        ("images/app/hello", "content-two\n"),
        ("images/app/extra", "extra\n"),
    ]);
    for cache in [cache.path(), tempfile::tempdir().unwrap().path()] {
        build(lib.path(), cache).ok();
        let fs = exported(&peer, &reference);
        assert!(
            fs.contains("content-one") && !fs.contains("content-two"),
            "{fs}"
        );
    }
}

#[test]
fn an_unknown_commit_is_refused_before_anything_is_written() {
    let reg = Registry::plain();
    let src = Source::new();
    first_two(&src);
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let lib = library(&reg, &src.bare(), unknown);
    let cache = tempfile::tempdir().unwrap();
    let run = build(lib.path(), cache.path()).fails(2);
    assert!(run.stderr.contains("manifests/app.yaml"), "{}", run.all());
    assert!(run.stderr.contains(unknown), "{}", run.all());
    assert!(run.stderr.contains(&src.bare()), "{}", run.all());
    let peer = Peer::new().plain_http(reg.addr());
    let out = peer.try_run("crane", ["ls", &format!("{}/lib/app", reg.addr())]);
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    // A path out of the checkout through a symbolic link the repository holds is refused
    // (`..` in build.path is refused by validation already).
    let work = src.dir.path().join("work");
    std::os::unix::fs::symlink("../../..", work.join("images/out")).unwrap();
    let c3 = src.commit(&[]);
    write_manifest(lib.path(), &src.bare(), &c3);
    let m = lib.path().join("manifests/app.yaml");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("path: images/app", "path: images/out");
    std::fs::write(&m, text).unwrap();
    let run = build(lib.path(), cache.path()).fails(2);
    assert!(
        run.stderr
            .contains("symbolic link out of the source checkout"),
        "{}",
        run.all()
    );
    let out = peer.try_run("crane", ["ls", &format!("{}/lib/app", reg.addr())]);
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[test]
fn diff_shows_the_change_between_two_commits() {
    let reg = Registry::plain();
    let src = Source::new();
    let (c1, c2) = first_two(&src);
    let lib = library(&reg, &src.bare(), &c2);
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let run = run_in(lib.path(), &["diff", "app", "--from", &c1, "--cache", c]).ok();
    assert!(run.stdout.contains("+COPY extra /extra"), "{}", run.all());
    assert!(run.stdout.contains("images/app/hello"), "{}", run.all());
    assert!(!run.stdout.contains("README"), "{}", run.all());
    let run = run_in(
        lib.path(),
        &["diff", "app", "--from", &c1, "--cache", c, "-o", "json"],
    )
    .ok();
    let j = run.json();
    let mut files: Vec<&str> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "images/app/Dockerfile",
            "images/app/extra",
            "images/app/hello"
        ]
    );
    assert_eq!(j["from"], c1.as_str());
    assert_eq!(j["to"], c2.as_str());
}

#[test]
fn credentials_in_the_repository_url_are_never_printed() {
    let reg = Registry::plain();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    // Nothing listens on port 9: the clone fails at once.
    let url = "http://bob:s3cret-token@127.0.0.1:9/src.git";
    let lib = library(&reg, url, commit);
    let cache = tempfile::tempdir().unwrap();
    let run = build(lib.path(), cache.path());
    assert_ne!(run.code, 0);
    assert!(
        run.all().contains("http://127.0.0.1:9/src.git"),
        "{}",
        run.all()
    );
    assert!(!run.all().contains("s3cret"), "{}", run.all());
    assert!(!run.all().contains("bob"), "{}", run.all());
    let c = cache.path().to_str().unwrap();
    let run = run_in(lib.path(), &["diff", "app", "--from", commit, "--cache", c]);
    assert_ne!(run.code, 0);
    assert!(!run.all().contains("s3cret"), "{}", run.all());
}
