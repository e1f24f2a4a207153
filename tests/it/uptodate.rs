//! "Up to date means no write" and `graft status`, on a git copy of the sample library whose
//! science images are in a real registry behind a counting proxy: a second refresh on a new,
//! unrelated commit writes nothing (no PUT/POST/PATCH) and adds no tag; `--force` writes; a
//! layer's `config:` change alone is written; a moved science tag makes `status` and
//! `plan --status` say stale (old -> new) and refresh writes it; `status` lists missing images
//! and orphaned tags (attachments and promotions are not orphans); the JSON shapes.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::support::git::{commit_at, git_at};
use crate::support::proxy::Proxy;
use crate::support::registry::Registry;
use crate::support::tools::{copy_dir, write_file};

const JUPYTER_INDEX: &str =
    "sha256:f2aaf80f9cbdafbb471999c57af2b7e9ecd67bed98db14dfe6dcabc56e1f69ed";
const ASTRO_INDEX: &str = "sha256:d214be40b7757cc1dc8f6516985ea7c9f43e0ffe690b93a1e9ddbb1d8831d19c";

/// The CI variables graft reads for a detached HEAD, and SOURCE_DATE_EPOCH: removed from
/// every run so the machine running the tests does not choose them.
const ENV_OUT: [&str; 8] = [
    "GITHUB_HEAD_REF",
    "GITHUB_REF_NAME",
    "GITHUB_REF_TYPE",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
    "CI_COMMIT_REF_NAME",
    "BRANCH_NAME",
    "GIT_BRANCH",
    "SOURCE_DATE_EPOCH",
];

/// One test's world: a registry, a counting proxy in front of it (every graft request goes
/// through it), and the sample library in git with its science images in the registry
/// (`sci/jupyter:2.4`, `sci/astro:1.0`), final images under `rel/`.
struct World {
    _tmp: tempfile::TempDir,
    reg: Registry,
    proxy: Proxy,
    lib: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::plain();
        reg.seed("jupyter-sci", "sci/jupyter:2.4");
        reg.seed("astro-base", "sci/astro:1.0");
        let proxy = Proxy::start(reg.addr());
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let lib = tmp.path().join("library");
        for sub in ["manifests", "layers"] {
            copy_dir(&root.join(sub), &lib.join(sub));
        }
        let settings = std::fs::read_to_string(root.join("graft.yaml")).unwrap();
        assert!(settings.contains("\ndefault_branch: main\n"));
        // Final images in the registry, through the proxy (`plan` has no --repo).
        assert!(settings.contains("\nrepo: oci:out/library\n"));
        let settings = settings.replace(
            "\nrepo: oci:out/library\n",
            &format!("\nrepo: docker://{}/rel\n", proxy.addr()),
        );
        write_file(&lib, "graft.yaml", &settings);
        write_file(&lib, "README.md", "# library\n");
        for (file, from, to) in [
            (
                "manifests/sci-notebook.yaml",
                "oci:testdata/science/jupyter-sci:2.4",
                "sci/jupyter:2.4",
            ),
            (
                "manifests/astro-notebook.yaml",
                "oci:testdata/science/astro-base:1.0",
                "sci/astro:1.0",
            ),
        ] {
            let p = lib.join(file);
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.contains(from), "{file} names {from}");
            let to = format!("docker://{}", proxy.image_ref(to));
            std::fs::write(&p, text.replace(from, &to)).unwrap();
        }
        git_at(&lib, 1000, &["init", "-q", "-b", "main"]);
        commit_at(&lib, 1000, "library");
        World {
            _tmp: tmp,
            reg,
            proxy,
            lib,
        }
    }

    /// graft in the library with `--tls-verify=false`, HOME isolated, `env` set.
    fn graft(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = command(home.path());
        cmd.current_dir(&self.lib);
        for k in ENV_OUT {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["-q", "--tls-verify=false"]).args(args);
        capture(&mut cmd)
    }

    /// graft.yaml's `repo`: the final images (through the proxy).
    fn repo(&self) -> String {
        format!("docker://{}/rel", self.proxy.addr())
    }

    /// `graft refresh -o json EXTRA…`, which must succeed.
    fn refresh(&self, env: &[(&str, &str)], extra: &[&str]) -> Value {
        let mut args = vec!["-o", "json", "refresh"];
        args.extend_from_slice(extra);
        self.graft(env, &args).ok().json()
    }

    /// `graft status -o json EXTRA…`, which must succeed.
    fn status(&self, extra: &[&str]) -> Value {
        let mut args = vec!["-o", "json", "status"];
        args.extend_from_slice(extra);
        self.graft(&[], &args).ok().json()
    }

    /// Tags of `rel/NAME`, sorted, read by graft directly from the registry (not counted).
    fn tags(&self, name: &str) -> Vec<String> {
        let home = tempfile::tempdir().unwrap();
        let run = capture(command(home.path()).args([
            "-q",
            "--tls-verify=false",
            "ls",
            &format!("docker://{}/rel/{name}", self.reg.addr()),
        ]))
        .ok();
        let mut tags: Vec<String> = run.stdout.lines().map(str::to_string).collect();
        tags.sort();
        tags
    }

    /// The requests that write (PUT, POST, PATCH, DELETE) the proxy has seen.
    fn writes(&self) -> Vec<(String, String)> {
        self.proxy
            .requests()
            .into_iter()
            .filter(|(m, _)| matches!(m.as_str(), "PUT" | "POST" | "PATCH" | "DELETE"))
            .collect()
    }
}

fn short_head(lib: &Path) -> String {
    git_at(lib, 0, &["rev-parse", "--short", "HEAD"])
}

/// The image of `report` named `name`.
fn image<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images: {report}"))
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(name: &str, status: &str) -> (String, String) {
    (name.to_string(), status.to_string())
}

#[test]
fn a_second_refresh_on_an_unrelated_commit_writes_nothing_and_force_writes() {
    let w = World::new();
    let first = w.refresh(&[], &[]);
    let c1 = short_head(&w.lib);
    assert_eq!(
        statuses(&first),
        [
            pair("astro-notebook", "written"),
            pair("sci-notebook", "written")
        ]
    );
    let tags_before = w.tags("sci-notebook");
    assert_eq!(tags_before, ["2.4".to_string(), format!("2.4-1-{c1}")]);
    let digest = image(&first, "sci-notebook")["digest"].clone();
    // The input digest is on the root written.
    let root: Value = serde_json::from_slice(&w.reg.raw("rel/sci-notebook:2.4")).unwrap();
    assert_eq!(
        root["annotations"]["org.graft.inputs"],
        image(&first, "sci-notebook")["inputs"],
        "{root}"
    );

    // A new commit that touches nothing of the images: a new build number and commit.
    write_file(&w.lib, "README.md", "# library\n\nMore words.\n");
    commit_at(&w.lib, 2000, "docs");
    let c2 = short_head(&w.lib);
    w.proxy.clear();
    let second = w.refresh(&[], &[]);
    assert_eq!(
        statuses(&second),
        [
            pair("astro-notebook", "up-to-date"),
            pair("sci-notebook", "up-to-date")
        ]
    );
    assert_eq!(image(&second, "sci-notebook")["digest"], digest);
    assert_eq!(
        image(&second, "sci-notebook")["inputs"],
        image(&first, "sci-notebook")["inputs"]
    );
    assert!(w.writes().is_empty(), "{:?}", w.writes());
    // Two manifest reads per image: its science root and its {version} tag; nothing else
    // but the registry's version check, once per run.
    let mut requests = w.proxy.requests();
    requests.sort();
    assert_eq!(
        requests,
        [
            ("GET", "/v2/"),
            ("GET", "/v2/rel/astro-notebook/manifests/1.0"),
            ("GET", "/v2/rel/sci-notebook/manifests/2.4"),
            ("GET", "/v2/sci/astro/manifests/1.0"),
            ("GET", "/v2/sci/jupyter/manifests/2.4"),
        ]
        .map(|(m, p)| (m.to_string(), p.to_string())),
        "requests of a no-change refresh"
    );
    assert_eq!(w.tags("sci-notebook"), tags_before, "no new build tag");

    // Text says so; a dry run says it would skip.
    let text = w.graft(&[], &["refresh"]).ok();
    assert!(
        text.stdout.contains("sci-notebook 2.4 ") && text.stdout.contains(" up to date"),
        "{}",
        text.stdout
    );
    let dry = w.graft(&[], &["refresh", "--dry-run"]).ok();
    assert!(dry.stdout.contains("would skip"), "{}", dry.stdout);
    assert!(w.writes().is_empty(), "{:?}", w.writes());

    // --force writes, with the new build tag.
    let forced = w.refresh(&[], &["--force", "sci-notebook"]);
    assert_eq!(statuses(&forced), [pair("sci-notebook", "written")]);
    assert!(!w.writes().is_empty());
    assert_eq!(
        w.tags("sci-notebook"),
        [
            "2.4".to_string(),
            format!("2.4-1-{c1}"),
            format!("2.4-2-{c2}")
        ]
    );
}

#[test]
fn a_layer_config_change_alone_is_written() {
    let w = World::new();
    // A fixed time: the layer's bytes stay the same, only its config: changes.
    let epoch = [("SOURCE_DATE_EPOCH", "0")];
    let first = w.refresh(&epoch, &[]);
    let layer = image(&first, "sci-notebook")["compat_layer"]["digest"].clone();
    let p = w.lib.join("layers/jupyter-compat/layer.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("JUPYTER_PORT: 8888"));
    std::fs::write(&p, text.replace("JUPYTER_PORT: 8888", "JUPYTER_PORT: 9999")).unwrap();
    commit_at(&w.lib, 2000, "port");
    w.proxy.clear();
    let second = w.refresh(&epoch, &[]);
    assert_eq!(
        statuses(&second),
        [
            pair("astro-notebook", "up-to-date"),
            pair("sci-notebook", "written")
        ]
    );
    assert_eq!(
        image(&second, "sci-notebook")["compat_layer"]["digest"],
        layer,
        "the layer's bytes did not change"
    );
    assert_ne!(
        image(&second, "sci-notebook")["inputs"],
        image(&first, "sci-notebook")["inputs"]
    );
    // Only sci-notebook's repository was written to.
    let writes = w.writes();
    assert!(!writes.is_empty());
    assert!(
        writes
            .iter()
            .all(|(_, p)| p.starts_with("/v2/rel/sci-notebook/")),
        "{writes:?}"
    );
}

#[test]
fn a_moved_science_tag_is_stale_in_status_and_plan_and_refresh_writes_it() {
    let w = World::new();
    w.refresh(&[], &[]);
    let st = w.status(&[]);
    assert_eq!(image(&st, "sci-notebook")["state"], "up-to-date", "{st}");
    assert_eq!(image(&st, "astro-notebook")["state"], "up-to-date", "{st}");

    // The science tag moves (another image pushed under it); git shows no change.
    w.reg.seed("astro-base", "sci/jupyter:2.4");
    let st = w.status(&[]);
    let sci = image(&st, "sci-notebook");
    assert_eq!(sci["state"], "stale", "{st}");
    assert_eq!(sci["science_digest"], ASTRO_INDEX);
    assert_eq!(
        sci["reasons"],
        serde_json::json!([{
            "kind": "science-moved",
            "message": format!(
                "science docker://{}/sci/jupyter:2.4 moved: {JUPYTER_INDEX} -> {ASTRO_INDEX}",
                w.proxy.addr()
            ),
            "from": JUPYTER_INDEX,
            "to": ASTRO_INDEX,
        }]),
        "only the science moved, the compat inputs did not"
    );
    assert_eq!(image(&st, "astro-notebook")["state"], "up-to-date");
    let text = w.graft(&[], &["status"]).ok();
    assert!(
        text.stdout.contains("sci-notebook 2.4 stale")
            && text
                .stdout
                .contains(&format!("moved: {JUPYTER_INDEX} -> {ASTRO_INDEX}")),
        "{}",
        text.stdout
    );

    // plan --status says so too, in JSON and in text.
    let plan = w
        .graft(&[], &["-o", "json", "plan", "--status"])
        .ok()
        .json();
    assert_eq!(image(&plan, "sci-notebook")["status"]["state"], "stale");
    assert_eq!(
        image(&plan, "sci-notebook")["status"]["reasons"][0]["kind"],
        "science-moved"
    );
    assert_eq!(
        image(&plan, "astro-notebook")["status"]["state"],
        "up-to-date"
    );
    let plan_text = w.graft(&[], &["plan", "--status"]).ok();
    assert!(
        plan_text.stdout.contains("status     stale"),
        "{}",
        plan_text.stdout
    );

    // refresh writes the stale image only; then everything is up to date.
    w.proxy.clear();
    let r = w.refresh(&[], &[]);
    assert_eq!(
        statuses(&r),
        [
            pair("astro-notebook", "up-to-date"),
            pair("sci-notebook", "written")
        ]
    );
    assert_eq!(image(&r, "sci-notebook")["science_digest"], ASTRO_INDEX);
    let st = w.status(&[]);
    assert_eq!(image(&st, "sci-notebook")["state"], "up-to-date", "{st}");
}

#[test]
fn status_lists_missing_images_and_orphaned_tags() {
    let w = World::new();
    w.refresh(&[], &[]);
    let c1 = short_head(&w.lib);
    let repo = w.repo();
    // A promotion of the current astro image, and a signature-like digest tag: neither is an
    // orphan.
    let astro = format!("{repo}/astro-notebook:1.0");
    let sig = format!("sha256-{}.sig", "a".repeat(64));
    w.graft(&[], &["tag", &astro, "stable", &sig]).ok();

    // A version bump: the old version's tags are produced by no manifest any more.
    let p = w.lib.join("manifests/sci-notebook.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("\nversion: 2.4\n", "\nversion: 2.5\n")).unwrap();
    commit_at(&w.lib, 2000, "2.5");

    let st = w.status(&[]);
    let sci = image(&st, "sci-notebook");
    assert_eq!(sci["state"], "missing", "{st}");
    assert_eq!(sci["version"], "2.5");
    assert_eq!(
        sci["tags"],
        serde_json::json!([{"reference": format!("{repo}/sci-notebook:2.5"), "root": null}])
    );
    assert_eq!(sci["digest"], Value::Null);
    assert!(sci["inputs"].as_str().unwrap().starts_with("sha256:"));
    let astro_state = image(&st, "astro-notebook");
    assert_eq!(astro_state["state"], "up-to-date");
    assert_eq!(
        astro_state["tags"][0]["root"]["inputs"],
        astro_state["inputs"]
    );
    assert_eq!(astro_state["tags"][0]["root"]["science"], ASTRO_INDEX);
    let old = w.tags("sci-notebook");
    let orphans: Vec<(String, String)> = st["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert!(o["digest"].as_str().unwrap().starts_with("sha256:"), "{o}");
            (
                o["repository"].as_str().unwrap().to_string(),
                o["tag"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let sci_repo = format!("{repo}/sci-notebook");
    assert_eq!(
        orphans,
        [
            (sci_repo.clone(), "2.4".to_string()),
            (sci_repo.clone(), format!("2.4-1-{c1}"))
        ],
        "tags: {old:?}"
    );
    // The text report.
    let text = w.graft(&[], &["status"]).ok();
    assert!(
        text.stdout.contains("sci-notebook 2.5 missing")
            && text
                .stdout
                .contains(&format!("orphaned {sci_repo}:2.4 -> "))
            && text.stdout.contains(
                "status: 2 image(s): 1 up to date, 0 stale, 1 missing; 2 orphaned tag(s)"
            ),
        "{}",
        text.stdout
    );
    // Names select images (and the repositories looked at for orphans).
    let only = w.status(&["astro-notebook"]);
    assert_eq!(only["images"].as_array().unwrap().len(), 1);
    assert_eq!(only["orphans"], serde_json::json!([]));

    // A registry that cannot be reached is a failure (exit 1), not bad usage.
    let dead = format!("docker://127.0.0.1:{}/rel", closed_port());
    w.graft(&[], &["--retries", "0", "status", "--repo", &dead])
        .fails(1);
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn with_only_per_build_tags_nothing_is_compared_and_every_run_writes() {
    let w = World::new();
    // Branches under ci/ write only a per-build tag.
    let settings = std::fs::read_to_string(w.lib.join("graft.yaml")).unwrap();
    write_file(
        &w.lib,
        "graft.yaml",
        &format!(
            "{settings}branches:\n  - branch: \"ci/**\"\n    tags: [\"{{version}}-{{build}}-{{commit}}\"]\n"
        ),
    );
    commit_at(&w.lib, 1500, "ci tags");
    git_at(&w.lib, 1500, &["checkout", "-q", "-b", "ci/x"]);
    let first = w.refresh(&[], &["sci-notebook"]);
    assert_eq!(statuses(&first), [pair("sci-notebook", "written")]);
    let st = w.status(&["sci-notebook"]);
    assert_eq!(image(&st, "sci-notebook")["state"], "untracked", "{st}");
    assert_eq!(image(&st, "sci-notebook")["tags"], serde_json::json!([]));
    // The build tags are the manifest's own: not orphans.
    assert_eq!(st["orphans"], serde_json::json!([]), "{st}");
    w.proxy.clear();
    let second = w.refresh(&[], &["sci-notebook"]);
    assert_eq!(statuses(&second), [pair("sci-notebook", "written")]);
}
