//! What `oras attach` made travels with `graft copy --with-attachments` and `graft mirror`, and
//! `oras discover` at the destination lists the same referrers (digests and artifact types) as
//! at the source: between registries with the referrers API (refreg), without it (Debian's
//! docker-registry, distribution 2.8: the `sha256-<hex>` fallback tag), and `oci:` layouts
//! (where oras keeps referrers as untagged `index.json` entries). See docs/interop/oras.md.

use crate::support::tools::copy_dir;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::graft::{capture, command, graft, Run};
use crate::support::peers::{stdout_ok, Peer, RefRegistry};
use crate::support::registry::Registry;
use crate::support::tools::{science_layout, science_oci_ref, sha256_digest, skopeo, testdata_dir};

const SBOM: &str = "application/vnd.graft.test.sbom";
const SIGNATURE: &str = "application/vnd.graft.test.signature";
const NOTE: &str = "application/vnd.graft.test.note";

/// Where oras reads and writes: a plain-HTTP registry, or an OCI layout directory.
#[derive(Clone, Copy)]
enum Place<'a> {
    Registry(&'a str),
    Layout(&'a Path),
}

impl Place<'_> {
    /// The oras flag for this kind of place.
    fn flag(&self) -> &'static str {
        match self {
            Place::Registry(_) => "--plain-http",
            Place::Layout(_) => "--oci-layout",
        }
    }

    /// An oras target: `HOST/REPO` + `at` (`:tag` or `@digest`), or `DIR` + `at`.
    fn oras(&self, repo: &str, at: &str) -> String {
        match self {
            Place::Registry(host) => format!("{host}/{repo}{at}"),
            Place::Layout(dir) => format!("{}{at}", dir.display()),
        }
    }

    /// The graft reference of `REPO:TAG` here.
    fn graft(&self, repo: &str, tag: &str) -> String {
        match self {
            Place::Registry(host) => format!("docker://{host}/{repo}:{tag}"),
            Place::Layout(dir) => format!("oci:{}:{tag}", dir.display()),
        }
    }
}

/// `oras manifest fetch` of `at` in `repo`: the exact bytes.
fn fetch(peer: &Peer, place: Place, repo: &str, at: &str) -> Vec<u8> {
    peer.oras(["manifest", "fetch", place.flag(), &place.oras(repo, at)])
        .stdout
}

/// The root digest of `repo:1.0` and the digests of its children (subjects of attachments).
fn subjects(peer: &Peer, place: Place, repo: &str, tag: &str) -> Vec<String> {
    let bytes = fetch(peer, place, repo, &format!(":{tag}"));
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    let mut out = vec![sha256_digest(&bytes)];
    for m in index["manifests"].as_array().into_iter().flatten() {
        out.push(m["digest"].as_str().unwrap().to_string());
    }
    out
}

/// `oras attach --artifact-type TYPE TARGET FILE` (FILE in the peer's home); the referrer's
/// digest.
fn attach(
    peer: &Peer,
    place: Place,
    repo: &str,
    at: &str,
    artifact_type: &str,
    file: &str,
) -> String {
    let target = place.oras(repo, at);
    let out = peer.oras([
        "attach",
        place.flag(),
        "--artifact-type",
        artifact_type,
        "--format",
        "json",
        &target,
        file,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["digest"].as_str().unwrap().to_string()
}

/// What oras attaches in these tests, to `repo:1.0` (a two-platform index): an SBOM and a
/// signature on the index, a signature of the SBOM (an attachment of an attachment) and a
/// note on the first platform manifest. Returns the subjects (root first).
fn attach_all(peer: &Peer, place: Place, repo: &str) -> Vec<String> {
    for (f, body) in [
        ("sbom.json", "{\"sbom\":true}\n"),
        ("sig.txt", "a signature\n"),
        ("note.txt", "a note\n"),
    ] {
        std::fs::write(peer.home().join(f), body).unwrap();
    }
    let subjects = subjects(peer, place, repo, "1.0");
    assert_eq!(subjects.len(), 3, "astro-base is a two-platform index");
    let sbom = attach(peer, place, repo, ":1.0", SBOM, "sbom.json");
    attach(peer, place, repo, ":1.0", SIGNATURE, "sig.txt");
    attach(peer, place, repo, &format!("@{sbom}"), SIGNATURE, "sig.txt");
    attach(
        peer,
        place,
        repo,
        &format!("@{}", subjects[1]),
        NOTE,
        "note.txt",
    );
    subjects
}

/// One referrer as oras discover lists it: (subject, digest, artifact type).
type Listed = BTreeSet<(String, String, String)>;

/// `oras discover` of every subject, the whole tree, flattened. The artifact type is the one
/// the OCI spec says a listing carries (the manifest's `artifactType`, else its config's media
/// type): go-containerregistry's registry (refreg) lists the config's media type even when the
/// manifest has an `artifactType`, so that one case is read from the manifest itself.
fn listing(peer: &Peer, place: Place, repo: &str, subjects: &[String]) -> Listed {
    let mut out = Listed::new();
    for s in subjects {
        let at = format!("@{s}");
        let args = [
            "discover",
            place.flag(),
            "--format",
            "json",
            &place.oras(repo, &at),
        ];
        let run = peer.try_run("oras", args);
        match place {
            // oras cannot name a manifest by digest in a layout unless index.json lists it
            // ("is not a manifest": a platform manifest of an index): read index.json as
            // oras's own store does, every entry whose manifest has that subject.
            Place::Layout(dir)
                if !run.status.success()
                    && String::from_utf8_lossy(&run.stderr).contains("is not a manifest") =>
            {
                layout_referrers(dir, s, &mut out)
            }
            _ => {
                let text = stdout_ok(&run, "oras discover");
                let v: Value = serde_json::from_str(&text).unwrap();
                flatten(peer, place, repo, &v, s, &mut out);
            }
        }
    }
    out
}

fn flatten(peer: &Peer, place: Place, repo: &str, node: &Value, subject: &str, out: &mut Listed) {
    for r in node["referrers"].as_array().into_iter().flatten() {
        let digest = r["digest"].as_str().unwrap().to_string();
        let mut t = r["artifactType"].as_str().unwrap_or_default().to_string();
        let m: Value =
            serde_json::from_slice(&fetch(peer, place, repo, &format!("@{digest}"))).unwrap();
        if let Some(own) = m["artifactType"].as_str() {
            if m["config"]["mediaType"].as_str() == Some(t.as_str()) {
                t = own.to_string();
            }
        }
        out.insert((subject.to_string(), digest.clone(), t));
        flatten(peer, place, repo, r, &digest, out);
    }
}

/// The referrers of `subject` in the layout `dir` as oras's layout store finds them: every
/// manifest reachable from `index.json` (through index entries and subjects, as oras-go indexes
/// a layout when it opens it) whose `subject` is `subject`, recursively.
fn layout_referrers(dir: &Path, subject: &str, out: &mut Listed) {
    let mut reachable: Vec<(String, Value)> = Vec::new();
    let mut queue: Vec<String> = entries(dir).into_iter().map(|(_, d)| d).collect();
    let mut seen = BTreeSet::new();
    while let Some(d) = queue.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let Ok(bytes) = std::fs::read(dir.join("blobs/sha256").join(&d[7..])) else {
            continue;
        };
        let m: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        for c in m["manifests"].as_array().into_iter().flatten() {
            queue.extend(c["digest"].as_str().map(str::to_string));
        }
        queue.extend(m["subject"]["digest"].as_str().map(str::to_string));
        reachable.push((d, m));
    }
    let mut pending = vec![subject.to_string()];
    while let Some(s) = pending.pop() {
        for (digest, m) in &reachable {
            if m["subject"]["digest"].as_str() != Some(s.as_str()) {
                continue;
            }
            let t = m["artifactType"]
                .as_str()
                .or(m["config"]["mediaType"].as_str())
                .unwrap_or_default();
            if out.insert((s.clone(), digest.clone(), t.to_string())) {
                pending.push(digest.clone());
            }
        }
    }
}

/// `oras repo tags` of a registry repository.
fn tags(peer: &Peer, host: &str, repo: &str) -> Vec<String> {
    let out = peer.oras(["repo", "tags", "--plain-http", &format!("{host}/{repo}")]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn fallback_tags(tags: &[String]) -> Vec<&String> {
    tags.iter().filter(|t| t.starts_with("sha256-")).collect()
}

/// The astro-base science image (a two-platform index) pushed to `host` as `sci/astro:1.0`.
fn seed(host: &str) {
    skopeo([
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &science_oci_ref("astro-base"),
        &format!("docker://{host}/sci/astro:1.0"),
    ]);
}

fn copy(home: &Path, src: &str, dst: &str) -> Value {
    graft(
        home,
        &[
            "-q",
            "-o",
            "json",
            "--tls-verify=false",
            "copy",
            "--with-attachments",
            src,
            dst,
        ],
    )
    .ok()
    .json()
}

fn mirror(home: &Path, config: &str) -> Run {
    let cfg = home.join("mirror.yaml");
    std::fs::write(&cfg, config).unwrap();
    capture(
        command(home)
            .args([
                "-q",
                "-o",
                "json",
                "--tls-verify=false",
                "mirror",
                "--config",
            ])
            .arg(&cfg),
    )
}

/// The `index.json` entries of a layout: (ref name, digest).
fn entries(dir: &Path) -> Vec<(Option<String>, String)> {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    v["manifests"]
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

fn referrer_digests(listed: &Listed) -> BTreeSet<String> {
    listed.iter().map(|(_, d, _)| d.clone()).collect()
}

#[test]
fn copy_between_referrers_api_registries_uses_the_api() {
    let home = tempfile::tempdir().unwrap();
    let (a, b) = (RefRegistry::start(), RefRegistry::start());
    let peer = Peer::new();
    seed(a.host());
    let subjects = attach_all(&peer, Place::Registry(a.host()), "sci/astro");
    let want = listing(&peer, Place::Registry(a.host()), "sci/astro", &subjects);
    assert_eq!(want.len(), 4, "{want:?}");
    assert!(want.iter().any(|(_, _, t)| t == SBOM), "{want:?}");
    // oras decides by the `OCI-Subject` header of its manifest PUT, which refreg never sends:
    // it writes the fallback tags as well (and reads the API). graft does not copy them.
    let t = tags(&peer, a.host(), "sci/astro");
    assert_eq!(fallback_tags(&t).len(), 3, "{t:?}");

    let out = copy(
        home.path(),
        &a.docker_ref("sci/astro:1.0"),
        &b.docker_ref("sci/astro:1.0"),
    );
    assert_eq!(out["attachments"]["referrers_at"], "api", "{out}");
    assert_eq!(out["attachments"]["copied"], 4, "{out}");
    let got = listing(&peer, Place::Registry(b.host()), "sci/astro", &subjects);
    assert_eq!(got, want);
    // The API lists them: no fallback tag is written.
    let t = tags(&peer, b.host(), "sci/astro");
    assert!(fallback_tags(&t).is_empty(), "{t:?}");

    // Again: everything is there.
    let out = copy(
        home.path(),
        &a.docker_ref("sci/astro:1.0"),
        &b.docker_ref("sci/astro:1.0"),
    );
    assert_eq!(out["attachments"]["present"], 4, "{out}");
    assert_eq!(out["attachments"]["copied"], 0, "{out}");

    // The text report says where the referrers went (stderr; stdout is the digest).
    let run = graft(
        home.path(),
        &[
            "--tls-verify=false",
            "copy",
            "--with-attachments",
            &a.docker_ref("sci/astro:1.0"),
            &b.docker_ref("sci/astro:1.0"),
        ],
    )
    .ok();
    assert!(
        run.stderr
            .contains("Referrers: listed by the destination's referrers API"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.trim().starts_with("sha256:"), "{}", run.stdout);
}

#[test]
fn mirror_to_a_registry_without_the_api_writes_fallback_tags_and_back_drops_them() {
    let home = tempfile::tempdir().unwrap();
    let a = RefRegistry::start();
    let dist = Registry::plain();
    let peer = Peer::new();
    seed(a.host());
    let subjects = attach_all(&peer, Place::Registry(a.host()), "sci/astro");
    let want = listing(&peer, Place::Registry(a.host()), "sci/astro", &subjects);

    // refreg → distribution 2.8 (no referrers API), with graft mirror.
    let out = mirror(
        home.path(),
        &format!(
            "destination: docker://{}\nwith_attachments: true\nsources:\n  - repository: docker://{}\n    tags: ['1.0']\n",
            dist.addr(),
            a.plain_ref("sci/astro"),
        ),
    )
    .ok()
    .json();
    assert_eq!(out["copied"], 1, "{out}");
    assert_eq!(
        out["images"][0]["attachments"]["referrers_at"], "fallback-tag",
        "{out}"
    );
    let got = listing(&peer, Place::Registry(dist.addr()), "sci/astro", &subjects);
    assert_eq!(got, want);
    // One fallback index per subject with referrers: the index, the SBOM, a platform.
    let t = tags(&peer, dist.addr(), "sci/astro");
    assert_eq!(fallback_tags(&t).len(), 3, "{t:?}");

    // distribution → another refreg: the fallback indexes are not written, the API lists.
    let c = RefRegistry::start();
    let out = copy(
        home.path(),
        &format!("docker://{}", dist.image_ref("sci/astro:1.0")),
        &c.docker_ref("sci/astro:1.0"),
    );
    assert_eq!(out["attachments"]["referrers_at"], "api", "{out}");
    assert_eq!(out["attachments"]["fallback_skipped"], 3, "{out}");
    let got = listing(&peer, Place::Registry(c.host()), "sci/astro", &subjects);
    assert_eq!(got, want);
    let t = tags(&peer, c.host(), "sci/astro");
    assert!(fallback_tags(&t).is_empty(), "{t:?}");
}

#[test]
fn what_oras_attached_on_distribution_reaches_a_referrers_api_registry() {
    let home = tempfile::tempdir().unwrap();
    let dist = Registry::plain();
    dist.seed("astro-base", "sci/astro:1.0");
    let peer = Peer::new();
    // oras writes the fallback tag on distribution 2.8.
    let subjects = attach_all(&peer, Place::Registry(dist.addr()), "sci/astro");
    let t = tags(&peer, dist.addr(), "sci/astro");
    assert_eq!(fallback_tags(&t).len(), 3, "{t:?}");
    let want = listing(&peer, Place::Registry(dist.addr()), "sci/astro", &subjects);
    assert_eq!(want.len(), 4, "{want:?}");

    let b = RefRegistry::start();
    let out = copy(
        home.path(),
        &format!("docker://{}", dist.image_ref("sci/astro:1.0")),
        &b.docker_ref("sci/astro:1.0"),
    );
    assert_eq!(out["attachments"]["fallback_skipped"], 3, "{out}");
    let got = listing(&peer, Place::Registry(b.host()), "sci/astro", &subjects);
    assert_eq!(got, want);
    let t = tags(&peer, b.host(), "sci/astro");
    assert!(fallback_tags(&t).is_empty(), "{t:?}");
}

#[test]
fn oras_layout_referrers_travel_to_a_registry_and_back_into_a_layout() {
    let home = tempfile::tempdir().unwrap();
    let peer = Peer::new();
    let src = home.path().join("src");
    copy_dir(&science_layout("astro-base"), &src);
    let subjects = attach_all(&peer, Place::Layout(&src), "");
    // oras keeps them as untagged entries, no fallback tag.
    let untagged = entries(&src).iter().filter(|(n, _)| n.is_none()).count();
    assert_eq!(untagged, 4, "{:?}", entries(&src));
    assert!(entries(&src)
        .iter()
        .all(|(n, _)| !n.as_deref().unwrap_or("").starts_with("sha256-")));
    let want = listing(&peer, Place::Layout(&src), "", &subjects);
    assert_eq!(want.len(), 4, "{want:?}");

    // layout → registry with the API.
    let b = RefRegistry::start();
    let out = copy(
        home.path(),
        &Place::Layout(&src).graft("", "1.0"),
        &b.docker_ref("sci/astro:1.0"),
    );
    assert_eq!(out["attachments"]["found"], 4, "{out}");
    let got = listing(&peer, Place::Registry(b.host()), "sci/astro", &subjects);
    assert_eq!(got, want);

    // registry → a new layout: oras discover sees them there.
    let back = home.path().join("back");
    let out = copy(
        home.path(),
        &b.docker_ref("sci/astro:1.0"),
        &Place::Layout(&back).graft("", "1.0"),
    );
    assert_eq!(out["attachments"]["referrers_at"], "layout", "{out}");
    let got = listing(&peer, Place::Layout(&back), "", &subjects);
    assert_eq!(got, want);
    // Each referrer is an untagged entry (as oras writes), and listed by a fallback index too.
    let e = entries(&back);
    let unnamed: BTreeSet<String> = e
        .iter()
        .filter(|(n, _)| n.is_none())
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(unnamed, referrer_digests(&want), "{e:?}");
    let fallback = e
        .iter()
        .filter(|(n, _)| n.as_deref().is_some_and(|n| n.starts_with("sha256-")))
        .count();
    assert_eq!(fallback, 3, "{e:?}");
    // regctl reads only the fallback index in a layout (it sees none of what oras wrote in
    // `src`): with both forms it lists the same referrers too.
    for (dir, want_n) in [(&src, 0), (&back, 2)] {
        let out = peer.regctl([
            "artifact",
            "list",
            &format!("ocidir://{}:1.0", dir.display()),
            "--format",
            "{{json .}}",
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed: BTreeSet<&str> = v["descriptors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["digest"].as_str().unwrap())
            .collect();
        assert_eq!(listed.len(), want_n, "{}: {v}", dir.display());
        let root: BTreeSet<&str> = want
            .iter()
            .filter(|(s, _, _)| *s == subjects[0])
            .map(|(_, d, _)| d.as_str())
            .collect();
        assert!(want_n == 0 || listed == root, "{v}");
    }

    // graft mirror: registry → a multi-image layout (entries named `host/repo:tag`) → another
    // registry with the API.
    let export = home.path().join("export");
    let out = mirror(
        home.path(),
        &format!(
            "destination: oci:{}\nwith_attachments: true\nsources:\n  - repository: docker://{}\n    tags: ['1.0']\n",
            export.display(),
            b.plain_ref("sci/astro"),
        ),
    )
    .ok()
    .json();
    assert_eq!(
        out["images"][0]["attachments"]["referrers_at"], "layout",
        "{out}"
    );
    let got = listing(&peer, Place::Layout(&export), "", &subjects);
    assert_eq!(got, want);
    let c = RefRegistry::start();
    let out = mirror(
        home.path(),
        &format!(
            "destination: docker://{}/imported\nwith_attachments: true\nsources:\n  - repository: oci:{}\n",
            c.host(),
            export.display(),
        ),
    )
    .ok()
    .json();
    assert_eq!(out["copied"], 1, "{out}");
    // The fallback indexes graft wrote into the layout are not written where the API is.
    assert_eq!(
        out["images"][0]["attachments"]["fallback_skipped"], 3,
        "{out}"
    );
    let dst = out["images"][0]["destination"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = dst
        .strip_prefix(&format!("docker://{}/", c.host()))
        .and_then(|r| r.rsplit_once(':'))
        .map(|(r, _)| r.to_string())
        .unwrap_or_else(|| panic!("{dst}"));
    let got = listing(&peer, Place::Registry(c.host()), &repo, &subjects);
    assert_eq!(got, want);
}

/// A writable copy of a vendored layout (oras may touch what it opens).
fn vendored(home: &Path, name: &str) -> PathBuf {
    let dir = home.join(name.replace('/', "-"));
    copy_dir(&testdata_dir().join("interop/oci-layouts").join(name), &dir);
    dir
}

#[test]
fn referrers_in_vendored_oras_and_regclient_layouts_travel() {
    let home = tempfile::tempdir().unwrap();
    let peer = Peer::new();
    let b = RefRegistry::start();
    // oras's e2e layout: untagged referrers of the `multi` index, of a referrer of it, and of
    // its platforms (one is an index itself). regclient's: a fallback index whose referrers
    // are tagged too, and untagged referrers of `v3` with no fallback index.
    for (name, tag, at_least) in [
        ("oras-e2e/artifacts", "multi", 3),
        ("regclient/testrepo", "v2", 2),
        ("regclient/testrepo", "v3", 2),
    ] {
        let dir = vendored(home.path(), name);
        let src = Place::Layout(&dir);
        let subjects = subjects(&peer, src, "", tag);
        let want = listing(&peer, src, "", &subjects);
        assert!(want.len() >= at_least, "{name}: {want:?}");
        let repo = format!("vendored/{}", name.replace('/', "-"));
        copy(
            home.path(),
            &src.graft("", tag),
            &b.docker_ref(&format!("{repo}:{tag}")),
        );
        let got = listing(&peer, Place::Registry(b.host()), &repo, &subjects);
        assert_eq!(got, want, "{name}:{tag}");

        // And into a fresh layout: oras discover there lists the same.
        let out_dir = home
            .path()
            .join(format!("out-{}-{tag}", name.replace('/', "-")));
        copy(
            home.path(),
            &src.graft("", tag),
            &Place::Layout(&out_dir).graft("", tag),
        );
        let got = listing(&peer, Place::Layout(&out_dir), "", &subjects);
        assert_eq!(got, want, "{name}:{tag} into a layout");
    }
}

/// A layout whose image has `n` referrers, each naming the previous one as its subject when
/// `chain`, else all naming the image: written by hand, as a hostile or careless tool could.
fn layout_with_referrers(dir: &Path, n: usize, chain: bool) {
    layout_with_typed_referrers(dir, n, chain, Some(NOTE));
}

/// [`layout_with_referrers`], the referrers of type `artifact_type` (none: no `artifactType`,
/// so a reader must fetch each manifest to learn what it is).
fn layout_with_typed_referrers(dir: &Path, n: usize, chain: bool, artifact_type: Option<&str>) {
    copy_dir(&science_layout("astro-base"), dir);
    let empty = b"{}";
    let empty_digest = sha256_digest(empty);
    let blobs = dir.join("blobs/sha256");
    std::fs::write(blobs.join(&empty_digest[7..]), empty).unwrap();
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let root = index["manifests"][0].clone();
    let mut subject = serde_json::json!({
        "mediaType": root["mediaType"], "digest": root["digest"], "size": root["size"],
    });
    let list = index["manifests"].as_array_mut().unwrap();
    for i in 0..n {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2}],
            "subject": subject,
            "annotations": {"n": i.to_string()},
        });
        if let Some(t) = artifact_type {
            m["artifactType"] = t.into();
        }
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = sha256_digest(&bytes);
        std::fs::write(blobs.join(&d[7..]), &bytes).unwrap();
        let desc = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": bytes.len(),
        });
        list.push(desc.clone());
        if chain {
            subject = desc;
        }
    }
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn layout_referrers_discovery_is_bounded() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out");
    // Within the limits: 8 deep, and 1000 in all, are copied.
    let deep = home.path().join("deep");
    layout_with_referrers(&deep, 8, true);
    let r = copy(
        home.path(),
        &format!("oci:{}:1.0", deep.display()),
        &format!("oci:{}:deep", out.display()),
    );
    assert_eq!(r["attachments"]["found"], 8, "{r}");
    // Too deep: refused, nothing written.
    let deeper = home.path().join("deeper");
    layout_with_referrers(&deeper, 10, true);
    let run = graft(
        home.path(),
        &[
            "copy",
            "--with-attachments",
            &format!("oci:{}:1.0", deeper.display()),
            &format!("oci:{}:deeper", out.display()),
        ],
    )
    .fails(1);
    assert!(run.stderr.contains("deep"), "{}", run.stderr);
    // Too many: refused.
    let many = home.path().join("many");
    layout_with_referrers(&many, 1001, false);
    let run = graft(
        home.path(),
        &[
            "copy",
            "--with-attachments",
            &format!("oci:{}:1.0", many.display()),
            &format!("oci:{}:many", out.display()),
        ],
    )
    .fails(1);
    assert!(run.stderr.contains("more than 1000"), "{}", run.stderr);
    assert!(
        entries(&out)
            .iter()
            .all(|(n, _)| n.as_deref() != Some("deeper") && n.as_deref() != Some("many")),
        "{:?}",
        entries(&out)
    );
}

/// `graft verify` reads at most 1000 referrers of a digest: a layout listing 1001 without an
/// artifact type (each would cost a manifest read) is refused, naming the digest, in bounded
/// time.
#[test]
fn verify_refuses_more_referrers_than_the_limit() {
    let home = tempfile::tempdir().unwrap();
    let (_, public) = crate::sign::keypair(home.path(), home.path(), "signer");
    let public = public.to_str().unwrap();
    let at_limit = home.path().join("at-limit");
    layout_with_typed_referrers(&at_limit, 1000, false, None);
    let run = graft(
        home.path(),
        &[
            "verify",
            "--key",
            public,
            &format!("oci:{}:1.0", at_limit.display()),
        ],
    )
    .fails(1);
    assert!(run.stderr.contains("no signatures found"), "{}", run.stderr);
    let many = home.path().join("many");
    layout_with_typed_referrers(&many, 1001, false, None);
    let start = std::time::Instant::now();
    let run = graft(
        home.path(),
        &[
            "verify",
            "--key",
            public,
            &format!("oci:{}:1.0", many.display()),
        ],
    )
    .fails(1);
    let digest = entries(&many)[0].1.clone();
    assert!(run.stderr.contains("more than 1000"), "{}", run.stderr);
    assert!(run.stderr.contains(&digest), "{}", run.stderr);
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
}

/// A fallback index that lists, besides a true referrer, a manifest whose own `subject` is
/// another digest: `copy --with-attachments` copies the true one, skips the stray (and the
/// index, which would list it), says so in its JSON, and the destination lists only the
/// true referrer.
#[test]
fn copy_skips_a_listed_referrer_whose_subject_is_another_digest() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("src");
    layout_with_referrers(&dir, 1, false);
    let blobs = dir.join("blobs/sha256");
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let root = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let good = index["manifests"][1].clone();
    let empty_digest = sha256_digest(b"{}");
    let stray = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": NOTE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": empty_digest, "size": 2},
    });
    let stray = serde_json::to_vec(&stray).unwrap();
    let stray_digest = sha256_digest(&stray);
    std::fs::write(blobs.join(&stray_digest[7..]), &stray).unwrap();
    let stray_desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": stray_digest,
        "size": stray.len(), "artifactType": NOTE,
    });
    let fallback = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [good, stray_desc],
    });
    let fallback = serde_json::to_vec(&fallback).unwrap();
    let fallback_digest = sha256_digest(&fallback);
    std::fs::write(blobs.join(&fallback_digest[7..]), &fallback).unwrap();
    let tag = format!("sha256-{}", &root[7..]);
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": fallback_digest,
            "size": fallback.len(), "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let out = home.path().join("out");
    let r = copy(
        home.path(),
        &format!("oci:{}:1.0", dir.display()),
        &format!("oci:{}:1.0", out.display()),
    );
    let skipped = r["attachments"]["skipped"].as_array().expect("skipped");
    assert!(
        skipped
            .iter()
            .any(|s| s.as_str().unwrap().contains(&stray_digest)),
        "{r}"
    );
    assert!(!out.join("blobs/sha256").join(&stray_digest[7..]).exists());
    let listed: Vec<String> = entries(&out).into_iter().map(|(_, d)| d).collect();
    assert!(
        listed.contains(&good["digest"].as_str().unwrap().to_string()),
        "{listed:?}"
    );
    assert!(!listed.contains(&stray_digest), "{listed:?}");
    // The destination's fallback index, if any, lists the true referrer only.
    for (t, d) in entries(&out) {
        if t.as_deref() == Some(tag.as_str()) {
            let idx = std::fs::read(out.join("blobs/sha256").join(&d[7..])).unwrap();
            let idx = String::from_utf8_lossy(&idx);
            assert!(!idx.contains(&stray_digest), "{idx}");
            assert!(idx.contains(good["digest"].as_str().unwrap()), "{idx}");
        }
    }
}

#[test]
fn a_referrers_answer_that_is_not_an_index_is_an_error_not_an_empty_api() {
    // distribution 2.8 behind a peer whose referrers endpoint answers 200 with a JSON object
    // that is no index: taken for "the API, no referrers", the fallback tag would be dropped.
    let home = tempfile::tempdir().unwrap();
    let dist = Registry::plain();
    dist.seed("astro-base", "sci/astro:1.0");
    let peer = Peer::new();
    attach_all(&peer, Place::Registry(dist.addr()), "sci/astro");
    let upstream = dist.addr().to_string();
    let front = crate::support::hostile::Hostile::start(move |seen| {
        match seen.path().contains("/referrers/") {
            true => crate::support::hostile::Reply::json(200, serde_json::json!({"errors": []})),
            false => crate::support::hostile::Reply::forward(&upstream),
        }
    });
    let b = RefRegistry::start();
    let run = graft(
        home.path(),
        &[
            "--tls-verify=false",
            "copy",
            "--with-attachments",
            &format!("docker://{}/sci/astro:1.0", front.addr()),
            &b.docker_ref("sci/astro:1.0"),
        ],
    )
    .fails(1);
    assert!(run.stderr.contains("referrers index"), "{}", run.stderr);
    // Nothing was written.
    let t = peer.try_run(
        "oras",
        ["repo", "tags", "--plain-http", &b.plain_ref("sci/astro")],
    );
    assert!(String::from_utf8_lossy(&t.stdout).trim().is_empty());
}

#[test]
fn referrers_travel_through_an_oci_archive() {
    let home = tempfile::tempdir().unwrap();
    let (a, b) = (RefRegistry::start(), RefRegistry::start());
    let peer = Peer::new();
    seed(a.host());
    let subjects = attach_all(&peer, Place::Registry(a.host()), "sci/astro");
    let want = listing(&peer, Place::Registry(a.host()), "sci/astro", &subjects);
    let archive = home.path().join("astro.tar");
    let out = copy(
        home.path(),
        &a.docker_ref("sci/astro:1.0"),
        &format!("oci-archive:{}:1.0", archive.display()),
    );
    assert_eq!(out["attachments"]["referrers_at"], "layout", "{out}");
    // Unpacked, it is a layout oras reads.
    let unpacked = home.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let got = listing(&peer, Place::Layout(&unpacked), "", &subjects);
    assert_eq!(got, want);
    // And back to a registry with the API.
    copy(
        home.path(),
        &format!("oci-archive:{}:1.0", archive.display()),
        &b.docker_ref("sci/astro:1.0"),
    );
    let got = listing(&peer, Place::Registry(b.host()), "sci/astro", &subjects);
    assert_eq!(got, want);
    let t = tags(&peer, b.host(), "sci/astro");
    assert!(fallback_tags(&t).is_empty(), "{t:?}");
}

/// A sigstore bundle kept in a layout only as an untagged `index.json` entry with a `subject`
/// (as oras and cosign v3 keep referrers there; no fallback tag) is found by `graft verify`.
#[test]
fn verify_finds_a_bundle_listed_only_as_an_untagged_layout_entry() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("img");
    copy_dir(&science_layout("astro-base"), &dir);
    let with_pw =
        |args: &[&str]| capture(command(home.path()).env("COSIGN_PASSWORD", "pw").args(args));
    let prefix = home.path().join("k");
    with_pw(&[
        "generate-key-pair",
        "--output-key-prefix",
        prefix.to_str().unwrap(),
    ])
    .ok();
    let image = format!("oci:{}:1.0", dir.display());
    let key = format!("{}.key", prefix.display());
    let public = format!("{}.pub", prefix.display());
    with_pw(&["-q", "sign", "--key", &key, "--format", "bundle", &image]).ok();

    // Rewrite index.json: the fallback index's entries become untagged entries of their own,
    // and the fallback tag goes.
    let index_path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap().clone();
    let (fallback, mut kept): (Vec<Value>, Vec<Value>) = manifests.into_iter().partition(|e| {
        e["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .is_some_and(|t| t.starts_with("sha256-"))
    });
    assert_eq!(fallback.len(), 1, "one fallback tag: {index}");
    let hex = fallback[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let fallback_index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    let referrers = fallback_index["manifests"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{fallback_index}");
    for r in referrers {
        if !kept.iter().any(|e| e["digest"] == r["digest"]) {
            kept.push(r.clone());
        }
    }
    index["manifests"] = Value::Array(kept);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    assert!(entries(&dir)
        .iter()
        .all(|(tag, _)| !tag.as_deref().is_some_and(|t| t.starts_with("sha256-"))));

    let run = graft(
        home.path(),
        &["-o", "json", "verify", "--key", &public, &image],
    )
    .ok();
    assert!(run.stdout.contains("bundle"), "{}", run.stdout);
}
