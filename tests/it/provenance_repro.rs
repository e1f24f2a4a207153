//! Provenance that is the same on every machine, and that a rebuild checks (issue 13): the
//! sample library as a git repository the tests make (fixed commit dates, a remote URL with
//! credentials that must never be recorded), refreshed with `--sign-key --provenance`, then
//! `graft verify-provenance` rebuilding the image from the recorded commit.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::sign::{intoto_python, keypair, PW, VALIDATE_PY};
use crate::support::git::{commit_at, git_at};
use crate::support::registry::Registry;
use crate::support::tools::{copy_dir, write_file};

/// The remote the checkouts name: credentials in it must never reach a statement.
const REMOTE: &str = "https://ci-bot:s3cret-token@git.example/sci/library.git";
/// What the statement records instead.
const PUBLIC_REMOTE: &str = "git+https://git.example/sci/library.git@refs/heads/main";

/// The sample library (science images as layouts inside it) committed at t=1000, and a bare
/// `origin.git` made from it; returns the bare repository.
fn origin(dir: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let src = dir.join("src");
    for sub in ["manifests", "layers", "schema", "testdata/science"] {
        copy_dir(&root.join(sub), &src.join(sub));
    }
    std::fs::copy(root.join("graft.yaml"), src.join("graft.yaml")).unwrap();
    write_file(&src, ".gitignore", "out/\n");
    git_at(&src, 1000, &["init", "-q", "-b", "main"]);
    commit_at(&src, 1000, "library");
    let bare = dir.join("origin.git");
    git_at(
        dir,
        1000,
        &["clone", "-q", "--bare", "src", bare.to_str().unwrap()],
    );
    bare
}

/// A clone of `origin` at `dest` whose remote URL is [`REMOTE`].
fn checkout(origin: &Path, dest: &Path) -> PathBuf {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    git_at(
        dest.parent().unwrap(),
        1000,
        &[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
    git_at(dest, 1000, &["remote", "set-url", "origin", REMOTE]);
    dest.to_path_buf()
}

/// graft in `dir` with the key's password, `SOURCE_DATE_EPOCH` as given (else unset).
fn graft_in(dir: &Path, epoch: Option<&str>, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(home.path());
    cmd.current_dir(dir)
        .env("COSIGN_PASSWORD", PW)
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    capture(cmd.args(args))
}

/// The exact statement bytes of the provenance attached to the image in the OCI layout
/// `layout` (tag `tag`): read from the `.att` manifest's DSSE envelope.
fn layout_statement(layout: &Path, tag: &str) -> Vec<u8> {
    let json =
        |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = json(layout.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    let name = |e: &Value| {
        e["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let image = entries.iter().find(|e| name(e) == tag).expect("the tag");
    let att = format!(
        "sha256-{}.att",
        image["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    );
    let att = entries.iter().find(|e| name(e) == att).expect("a .att tag");
    let manifest = json(blob(att["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one attestation: {manifest}");
    let envelope = json(blob(layers[0]["digest"].as_str().unwrap()));
    B64.decode(envelope["payload"].as_str().unwrap()).unwrap()
}

#[test]
fn the_same_refresh_from_two_checkouts_attests_byte_for_byte_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = origin(tmp.path());
    let a = checkout(&bare, &tmp.path().join("a/library"));
    let b = checkout(&bare, &tmp.path().join("b/somewhere/else/lib"));
    let (key, public) = keypair(tmp.path(), tmp.path(), "ci");
    let key = key.to_str().unwrap().to_string();
    let mut statements = Vec::new();
    for dir in [&a, &b] {
        // graft.yaml's own `repo: oci:out/library`: each checkout writes its own layout.
        graft_in(
            dir,
            Some("1700000000"),
            &[
                "-q",
                "refresh",
                "--sign-key",
                &key,
                "--provenance",
                "--builder-id",
                "https://ci.example/runner/1",
                "sci-notebook",
            ],
        )
        .ok();
        statements.push(layout_statement(
            &dir.join("out/library/sci-notebook"),
            "2.4",
        ));
    }
    assert_eq!(
        String::from_utf8_lossy(&statements[0]),
        String::from_utf8_lossy(&statements[1]),
        "two checkouts, one statement"
    );
    let text = String::from_utf8(statements[0].clone()).unwrap();
    let tmp_text = tmp.path().to_str().unwrap();
    assert!(!text.contains(tmp_text), "a local path: {text}");
    assert!(
        !text.contains("s3cret") && !text.contains("ci-bot"),
        "{text}"
    );
    let st: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(st["subject"][0]["name"], "oci:out/library/sci-notebook:2.4");
    let bd = &st["predicate"]["buildDefinition"];
    assert_eq!(bd["buildType"], "https://graft.dev/buildtypes/refresh/v2");
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    let dep = |name: &str| deps.iter().find(|d| d["name"] == name).unwrap().clone();
    let head = git_at(&a, 1000, &["rev-parse", "HEAD"]);
    assert_eq!(dep("library")["uri"], PUBLIC_REMOTE);
    assert_eq!(dep("library")["digest"]["gitCommit"], head.as_str());
    assert_eq!(
        dep("science-index")["uri"],
        "oci:testdata/science/jupyter-sci:2.4",
        "as the manifest writes it"
    );
    let ext = &bd["externalParameters"];
    assert_eq!(ext["manifest"]["path"], "manifests/sci-notebook.yaml");
    assert_eq!(ext["library"]["path"], ".");
    assert_eq!(ext["library"]["commit"], head.as_str());
    assert_eq!(ext["build"]["build"], "1");
    assert_eq!(ext["build"]["commit"], &head[..7]);
    assert_eq!(ext["build"]["branch"], "main");
    assert_eq!(ext["sourceDateEpoch"], 1_700_000_000);
    assert_eq!(bd["internalParameters"]["created"], "2023-11-14T22:13:20Z");
    // The in-toto-attestation package validates it.
    let file = tmp.path().join("statement.json");
    std::fs::write(&file, &statements[0]).unwrap();
    let v = Command::new(intoto_python())
        .args(["-c", VALIDATE_PY])
        .arg(&file)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // And a rebuild from the other checkout confirms the layout image.
    let image = format!("oci:{}", a.join("out/library/sci-notebook:2.4").display());
    let out = graft_in(
        &b,
        None,
        &[
            "-o",
            "json",
            "verify-provenance",
            "--key",
            public.to_str().unwrap(),
            "--library",
            ".",
            &image,
        ],
    )
    .ok()
    .json();
    assert_eq!(out["ok"], true, "{out}");
}

/// A refreshed, signed, attested image in a real registry, and the library it came from.
struct Refreshed {
    tmp: tempfile::TempDir,
    reg: Registry,
    bare: PathBuf,
    library: PathBuf,
    key: String,
    public: String,
}

impl Refreshed {
    /// `sci-notebook` of a checkout refreshed into `docker://REG/rel`, times from git (no
    /// `SOURCE_DATE_EPOCH`: the rebuild takes each layer's time from the same history).
    fn new() -> Refreshed {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::plain();
        let bare = origin(tmp.path());
        let library = checkout(&bare, &tmp.path().join("work/library"));
        let (key, public) = keypair(tmp.path(), tmp.path(), "ci");
        let r = Refreshed {
            key: key.to_str().unwrap().to_string(),
            public: public.to_str().unwrap().to_string(),
            tmp,
            reg,
            bare,
            library,
        };
        r.refresh(&r.library, "rel");
        r
    }

    fn refresh(&self, library: &Path, repo: &str) -> Value {
        graft_in(
            library,
            None,
            &[
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "refresh",
                "--repo",
                &format!("docker://{}/{repo}", self.reg.addr()),
                "--sign-key",
                &self.key,
                "--provenance",
                "sci-notebook",
            ],
        )
        .ok()
        .json()
    }

    fn image(&self, repo: &str) -> String {
        format!("docker://{}/{repo}/sci-notebook:2.4", self.reg.addr())
    }

    /// `graft verify-provenance IMAGE --library DIR --key PUB -o json` run in `DIR`.
    fn verify(&self, library: &Path, image: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "-o",
            "json",
            "--tls-verify=false",
            "verify-provenance",
            "--library",
            ".",
            "--key",
            &self.public,
        ];
        args.extend_from_slice(extra);
        args.push(image);
        graft_in(library, None, &args)
    }
}

fn check<'a>(report: &'a Value, what: &str) -> &'a Value {
    report["statements"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == what)
        .unwrap_or_else(|| panic!("no check {what}: {report}"))
}

#[test]
fn verify_provenance_rebuilds_the_image_from_the_recorded_commit() {
    let r = Refreshed::new();
    let image = r.image("rel");
    let head = git_at(&r.library, 1000, &["rev-parse", "HEAD"]);
    // The library moves on (a layer changes) and the user has uncommitted work: the rebuild
    // still uses the recorded commit, and leaves the checkout as it was.
    write_file(
        &r.library,
        "layers/jupyter-compat/files/etc/jupyter/later.txt",
        "later\n",
    );
    commit_at(&r.library, 2000, "a later layer change");
    write_file(&r.library, "README.md", "work in progress\n");
    let status_before = git_at(&r.library, 2000, &["status", "--porcelain"]);
    let out = r.verify(&r.library, &image, &[]).ok();
    let report = out.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["signature_verified"], true);
    assert_eq!(report["statements"][0]["commit"], head.as_str());
    for what in [
        "library",
        "manifest",
        "science-index",
        "science-linux/amd64",
        "science-linux/arm64/v8",
        "compat-layer",
        "subject",
    ] {
        assert_eq!(check(&report, what)["ok"], true, "{what}: {report}");
    }
    assert_eq!(
        git_at(&r.library, 2000, &["status", "--porcelain"]),
        status_before
    );
    assert_eq!(
        git_at(&r.library, 2000, &["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        1
    );
    // Text output: one line per digest.
    let text = graft_in(
        &r.library,
        None,
        &[
            "--tls-verify=false",
            "verify-provenance",
            "--key",
            &r.public,
            &image,
        ],
    )
    .ok();
    assert!(
        text.stdout.contains("ok       compat-layer"),
        "{}",
        text.stdout
    );
    assert_eq!(
        text.stdout.lines().filter(|l| l.contains(" ok ")).count(),
        7
    );
    // Another clone of the library, elsewhere, verifies it too.
    let other = checkout(&r.bare, &r.tmp.path().join("elsewhere/clone"));
    r.verify(&other, &image, &[]).ok();
}

#[test]
fn an_image_built_from_a_layer_its_commit_does_not_have_is_a_mismatch_naming_it() {
    let r = Refreshed::new();
    // Built from a work tree with an uncommitted layer change: the statement names HEAD, whose
    // layer differs from what went into the image.
    write_file(
        &r.library,
        "layers/jupyter-compat/files/etc/jupyter/uncommitted.txt",
        "not in any commit\n",
    );
    r.refresh(&r.library, "dirty");
    let run = r.verify(&r.library, &r.image("dirty"), &[]).fails(1);
    let report = run.json();
    assert_eq!(report["ok"], false);
    assert_eq!(check(&report, "compat-layer")["ok"], false, "{report}");
    assert_eq!(check(&report, "subject")["ok"], false);
    assert_eq!(check(&report, "science-index")["ok"], true);
    assert_eq!(check(&report, "manifest")["ok"], true);
    assert!(
        run.stderr
            .contains("does not match its rebuild: compat-layer, subject"),
        "{}",
        run.stderr
    );
    // The clean image still verifies.
    r.verify(&r.library, &r.image("rel"), &[]).ok();
}

#[test]
fn an_image_changed_after_its_refresh_fails() {
    let r = Refreshed::new();
    let image = r.image("rel");
    let home = r.tmp.path();
    // The original predicate, to re-attest the changed image with.
    let prov = graft_in(
        home,
        None,
        &["-o", "json", "--tls-verify=false", "provenance", &image],
    )
    .ok()
    .json();
    let predicate = home.join("predicate.json");
    std::fs::write(
        &predicate,
        serde_json::to_vec(&prov["provenance"][0]["statement"]["predicate"]).unwrap(),
    )
    .unwrap();
    // Another layer appended over the refreshed image, pushed under its tag.
    let files = home.join("extra");
    write_file(&files, "etc/extra", "changed after the refresh\n");
    let tar = home.join("extra.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&files)
        .arg("-cf")
        .arg(&tar)
        .arg("etc")
        .status()
        .unwrap();
    assert!(ok.success());
    graft_in(
        home,
        Some("1700000000"),
        &[
            "-q",
            "--tls-verify=false",
            "append",
            "--base",
            &image,
            "--layer",
            tar.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    // Its provenance was on the old digest: none on this one (bad input, exit 2).
    let none = r.verify(&r.library, &image, &[]).fails(2);
    assert!(none.stderr.contains("no provenance"), "{}", none.stderr);
    // Re-attested with the original predicate (a valid signature on a false claim): the
    // rebuild names the subject.
    graft_in(
        home,
        None,
        &[
            "-q",
            "--tls-verify=false",
            "attest",
            "--key",
            &r.key,
            "--type",
            "slsaprovenance1",
            "--predicate",
            predicate.to_str().unwrap(),
            &image,
        ],
    )
    .ok();
    let run = r.verify(&r.library, &image, &[]).fails(1);
    let report = run.json();
    assert_eq!(check(&report, "subject")["ok"], false, "{report}");
    assert_eq!(check(&report, "compat-layer")["ok"], true);
    assert!(run.stderr.contains("subject"), "{}", run.stderr);
}

#[test]
fn verify_provenance_bad_input_exits_2_and_a_wrong_key_exits_1() {
    let r = Refreshed::new();
    let image = r.image("rel");
    // A repository without the recorded commit.
    let stranger = r.tmp.path().join("stranger");
    write_file(&stranger, "graft.yaml", "repo: oci:out\n");
    git_at(&stranger, 1000, &["init", "-q", "-b", "main"]);
    commit_at(&stranger, 1000, "unrelated");
    let run = r.verify(&stranger, &image, &[]).fails(2);
    let head = git_at(&r.library, 1000, &["rev-parse", "HEAD"]);
    assert!(
        run.stderr.contains(&format!("has no commit {head}")),
        "{}",
        run.stderr
    );
    // Not a git repository.
    let plain = r.tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let run = r.verify(&plain, &image, &[]).fails(2);
    assert!(
        run.stderr.contains("not in a git repository"),
        "{}",
        run.stderr
    );
    // An image without provenance (signed only).
    graft_in(
        &r.library,
        None,
        &[
            "-q",
            "--tls-verify=false",
            "refresh",
            "--repo",
            &format!("docker://{}/unattested", r.reg.addr()),
            "--sign-key",
            &r.key,
            "sci-notebook",
        ],
    )
    .ok();
    let run = r.verify(&r.library, &r.image("unattested"), &[]).fails(2);
    assert!(run.stderr.contains("no provenance"), "{}", run.stderr);
    // Provenance of another builder (or of graft's v1, which recorded no build values).
    let foreign = r.tmp.path().join("foreign.json");
    std::fs::write(
        &foreign,
        br#"{"buildDefinition":{"buildType":"https://graft.dev/buildtypes/refresh/v1","externalParameters":{}},"runDetails":{"builder":{"id":"https://ci.example/b"}}}"#,
    )
    .unwrap();
    graft_in(
        &r.library,
        None,
        &[
            "-q",
            "--tls-verify=false",
            "attest",
            "--key",
            &r.key,
            "--type",
            "slsaprovenance1",
            "--predicate",
            foreign.to_str().unwrap(),
            &r.image("unattested"),
        ],
    )
    .ok();
    let run = r.verify(&r.library, &r.image("unattested"), &[]).fails(2);
    assert!(run.stderr.contains("refresh/v1"), "{}", run.stderr);
    // A signature by another key: the verification fails (exit 1), nothing is rebuilt.
    let (_, other_pub) = keypair(r.tmp.path(), r.tmp.path(), "other");
    let run = graft_in(
        &r.library,
        None,
        &[
            "--tls-verify=false",
            "verify-provenance",
            "--key",
            other_pub.to_str().unwrap(),
            &image,
        ],
    )
    .fails(1);
    assert!(!run.stderr.contains("MISMATCH"), "{}", run.stderr);
}

#[test]
fn a_library_in_a_subdirectory_records_its_path_and_verifies_from_the_top() {
    let tmp = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let top = tmp.path().join("monorepo");
    let lib = top.join("images/library");
    for sub in ["manifests", "layers", "schema", "testdata/science"] {
        copy_dir(&root.join(sub), &lib.join(sub));
    }
    std::fs::copy(root.join("graft.yaml"), lib.join("graft.yaml")).unwrap();
    write_file(&top, ".gitignore", "out/\n");
    write_file(&top, "README.md", "other things live here too\n");
    git_at(&top, 1000, &["init", "-q", "-b", "main"]);
    commit_at(&top, 1000, "monorepo");
    let (key, public) = keypair(tmp.path(), tmp.path(), "ci");
    graft_in(
        &lib,
        Some("1700000000"),
        &[
            "-q",
            "refresh",
            "--sign-key",
            key.to_str().unwrap(),
            "--provenance",
            "astro-notebook",
        ],
    )
    .ok();
    let statement: Value = serde_json::from_slice(&layout_statement(
        &lib.join("out/library/astro-notebook"),
        "1.0",
    ))
    .unwrap();
    let library = &statement["predicate"]["buildDefinition"]["externalParameters"]["library"];
    assert_eq!(library["path"], "images/library");
    // No remote: the commit is recorded, no URL (never a local path).
    assert_eq!(library.get("repository"), None, "{library}");
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert_eq!(deps[0]["name"], "library");
    assert_eq!(deps[0].get("uri"), None);
    // Verified from the repository's top directory.
    let image = format!(
        "oci:{}",
        lib.join("out/library/astro-notebook:1.0").display()
    );
    let out = graft_in(
        &top,
        None,
        &[
            "-o",
            "json",
            "verify-provenance",
            "--key",
            public.to_str().unwrap(),
            &image,
        ],
    )
    .ok()
    .json();
    assert_eq!(out["ok"], true, "{out}");
}
