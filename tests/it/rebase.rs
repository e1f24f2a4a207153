//! `graft rebase` against the real registry: a two-platform image built on base v1 (by
//! `graft append`, which writes the base annotations) is rebased onto base v2 without
//! `--old-base`; each platform is v2's layers + the image's own, umoci unpacks v2's file and
//! the image's and not v1's, the config keeps everything but rootfs and history, and regctl's
//! `image mod --rebase-ref` of the same inputs gives the same layers and diff_ids. Refusals
//! write nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::graft::{capture, command, Run};
use crate::support::peers::Peer;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{run_ok, skopeo, umoci};

const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64/v8"];

/// A gzip layer holding `files` (path, text), made with GNU tar.
fn layer(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    for (path, text) in files {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let out = dir.join(format!("{name}.tar.gz"));
    run_ok(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-czf",
            ])
            .arg(&out)
            .arg("-C")
            .arg(&tree)
            .arg("."),
    );
    out
}

fn graft_run(home: &Path, args: &[&str]) -> Run {
    capture(
        command(home)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["-q", "--tls-verify=false"])
            .args(args),
    )
}

fn append(home: &Path, base: &str, layers: &[&Path], extra: &[&str], dst: &str) {
    let mut args = vec!["append".to_string(), "--base".into(), base.into()];
    for l in layers {
        args.push("--layer".into());
        args.push(l.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(dst.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    graft_run(home, &args).ok();
}

/// The registry after: astro-base (two platforms) at sci/astro:1.0, base v1 = astro + one
/// layer, base v2 = astro + two other layers, the image app:1 = v1 + its own layer.
struct Setup {
    reg: Registry,
    home: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::start(RegistryOpts::plain());
        reg.seed("astro-base", "sci/astro:1.0");
        let h = home.path();
        let v1 = layer(h, "v1", &[("usr/share/base/v1", "base v1\n")]);
        let v2a = layer(h, "v2a", &[("usr/share/base/v2", "base v2\n")]);
        let v2b = layer(h, "v2b", &[("etc/base-release", "2\n")]);
        let app = layer(h, "app", &[("opt/app/run.sh", "#!/bin/sh\necho app\n")]);
        let astro = reg.docker_ref("sci/astro:1.0");
        append(h, &astro, &[&v1], &[], &reg.docker_ref("base:v1"));
        append(h, &astro, &[&v2a, &v2b], &[], &reg.docker_ref("base:v2"));
        append(
            h,
            &reg.docker_ref("base:v1"),
            &[&app],
            &["--label", "org.example.app=1"],
            &reg.docker_ref("app:1"),
        );
        Setup { reg, home }
    }

    fn host(&self) -> String {
        self.reg.addr().to_string()
    }

    fn json(&self, repo_ref: &str) -> Value {
        serde_json::from_slice(&self.reg.raw(repo_ref)).unwrap()
    }

    /// `(manifest, config)` of `platform` of `repo:tag`.
    fn platform(&self, repo_tag: &str, platform: &str) -> (Value, Value) {
        let index = self.json(repo_tag);
        let repo = repo_tag.split(':').next().unwrap();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                let p = &m["platform"];
                let mut s = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                );
                if let Some(v) = p["variant"].as_str() {
                    s.push('/');
                    s.push_str(v);
                }
                s == platform
            })
            .unwrap_or_else(|| panic!("{platform} not in {index}"));
        let manifest = self.json(&format!("{repo}@{}", entry["digest"].as_str().unwrap()));
        let run = graft_run(
            self.home.path(),
            &[
                "inspect",
                "--config",
                "--raw",
                "--platform",
                platform,
                &self.reg.docker_ref(repo_tag),
            ],
        )
        .ok();
        (manifest, serde_json::from_str(&run.stdout).unwrap())
    }

    /// Every file of the registry's storage (what a refusal must leave as it was).
    fn storage(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            let Ok(rd) = std::fs::read_dir(d) else { return };
            for e in rd {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push(e.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.reg.storage_dir(), &mut out);
        out.sort();
        out
    }

    fn tags(&self, repo: &str) -> Vec<String> {
        let out = skopeo([
            "list-tags",
            "--tls-verify=false",
            &self.reg.docker_ref(repo),
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut t: Vec<String> = v["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    }

    /// umoci's rootfs of `platform` of `repo_tag`.
    fn unpack(&self, repo_tag: &str, platform: &str) -> PathBuf {
        let dir = self.home.path().join(format!(
            "unpack-{}-{}",
            repo_tag.replace(':', "-"),
            platform.replace('/', "-")
        ));
        let layout = dir.join("layout");
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec!["copy".to_string(), "--src-tls-verify=false".into()];
        let parts: Vec<&str> = platform.split('/').collect();
        args.extend(["--override-arch".into(), parts[1].into()]);
        if let Some(v) = parts.get(2) {
            args.extend(["--override-variant".into(), v.to_string()]);
        }
        args.push(self.reg.docker_ref(repo_tag));
        args.push(format!("oci:{}:x", layout.display()));
        skopeo(&args);
        let bundle = dir.join("bundle");
        umoci([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:x", layout.display()),
            bundle.to_str().unwrap(),
        ]);
        bundle.join("rootfs")
    }
}

fn digests(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            if key.is_empty() {
                l.as_str().unwrap().to_string()
            } else {
                l[key].as_str().unwrap().to_string()
            }
        })
        .collect()
}

fn non_empty_history(config: &Value) -> usize {
    config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .count()
}

#[test]
fn rebase_swaps_the_base_of_every_platform_like_regctl() {
    let s = Setup::new();
    let h = s.home.path();
    let host = s.host();
    let before: Vec<(Value, Value)> = PLATFORMS.iter().map(|p| s.platform("app:1", p)).collect();

    // Before: v1's file is there (so the check below that it is gone can fail).
    let rootfs = s.unpack("app:1", "linux/amd64");
    assert!(rootfs.join("usr/share/base/v1").exists());
    assert!(!rootfs.join("usr/share/base/v2").exists());

    // regctl on the same inputs first (app:1 is rewritten by graft's in-place rebase below).
    let peer = Peer::new().plain_http(&host);
    peer.regctl([
        "image",
        "mod",
        &format!("{host}/app:1"),
        "--rebase-ref",
        &format!("{host}/base:v1,{host}/base:v2"),
        "--create",
        &format!("{host}/app:regctl"),
    ]);

    // No --old-base: the base annotations append wrote name base:v1 at its digest.
    let run = graft_run(
        h,
        &[
            "-o",
            "json",
            "rebase",
            &s.reg.docker_ref("app:1"),
            "--onto",
            &s.reg.docker_ref("base:v2"),
            "-t",
            &s.reg.docker_ref("app:rebased"),
        ],
    )
    .ok();
    let report = run.json();
    assert_eq!(report["platforms"].as_array().unwrap().len(), 2, "{report}");
    // Base layers are mounted or present, never uploaded: only the two configs are new.
    let copy = &report["reports"][0];
    assert_eq!(copy["uploaded"]["count"], 2, "{copy}");

    let index = s.json("app:rebased");
    let v2_index = s.json("base:v2");
    let v2_digest = format!(
        "sha256:{}",
        crate::support::tools::sha256_hex(&s.reg.raw("base:v2"))
    );
    let ann = &index["annotations"];
    assert_eq!(
        ann["org.opencontainers.image.base.name"],
        format!("{host}/base:v2")
    );
    assert_eq!(
        ann["org.opencontainers.image.base.digest"],
        v2_digest.as_str()
    );
    assert_eq!(v2_index["manifests"].as_array().unwrap().len(), 2);

    for (i, p) in PLATFORMS.iter().enumerate() {
        let (old_m, old_c) = &before[i];
        let (v1_m, _) = s.platform("base:v1", p);
        let (v2_m, v2_c) = s.platform("base:v2", p);
        let (m, c) = s.platform("app:rebased", p);
        let own = &digests(&old_m["layers"], "digest")[v1_m["layers"].as_array().unwrap().len()..];
        let mut want = digests(&v2_m["layers"], "digest");
        want.extend(own.iter().cloned());
        assert_eq!(digests(&m["layers"], "digest"), want, "{p}: layers");
        let own_ids =
            &digests(&old_c["rootfs"]["diff_ids"], "")[v1_m["layers"].as_array().unwrap().len()..];
        let mut want_ids = digests(&v2_c["rootfs"]["diff_ids"], "");
        want_ids.extend(own_ids.iter().cloned());
        assert_eq!(
            digests(&c["rootfs"]["diff_ids"], ""),
            want_ids,
            "{p}: diff_ids"
        );
        // Everything but rootfs and history is the image's, created included (no clock).
        for k in ["config", "created", "architecture", "os", "author"] {
            assert_eq!(c[k], old_c[k], "{p}: {k}");
        }
        assert_eq!(c["config"]["Labels"]["org.example.app"], "1");
        assert!(c["config"]["Env"].as_array().unwrap().len() >= 3);
        // History: v2's entries, then the image's own; one non-empty entry per layer.
        assert_eq!(non_empty_history(&c), want.len(), "{p}: history");
        let hist = c["history"].as_array().unwrap();
        let v2_hist = v2_c["history"].as_array().unwrap();
        assert_eq!(
            &hist[..v2_hist.len()],
            &v2_hist[..],
            "{p}: new base's history in front"
        );
        assert_eq!(
            hist.last(),
            old_c["history"].as_array().unwrap().last(),
            "{p}"
        );
        let mann = &m["annotations"];
        assert_eq!(
            mann["org.opencontainers.image.base.name"],
            format!("{host}/base:v2")
        );
        let v2_entry = v2_index["manifests"].as_array().unwrap()[i]["digest"].clone();
        assert_eq!(
            mann["org.opencontainers.image.base.digest"], v2_entry,
            "{p}"
        );

        // regctl's rebase of the same inputs: same layers, same diff_ids.
        let (rm, rc) = s.platform("app:regctl", p);
        assert_eq!(
            digests(&rm["layers"], "digest"),
            want,
            "{p}: regctl's layers"
        );
        assert_eq!(
            digests(&rc["rootfs"]["diff_ids"], ""),
            want_ids,
            "{p}: regctl's diff_ids"
        );
        assert_eq!(rc["history"], c["history"], "{p}: regctl's history");
        // The same config as a JSON value (history handled alike: the old base's entries,
        // empty_layer ones included, replaced by the new base's), but not the same bytes, so
        // not the same digest: regctl decodes the config into Go structs and encodes it again
        // (Labels sorted by key, Healthcheck moved after ArgsEscaped, the struct's order);
        // graft edits it as ordered JSON and keeps the image's own key order.
        assert_eq!(rc, c, "{p}: regctl's config");
        assert_ne!(rm["config"]["digest"], m["config"]["digest"], "{p}");
        assert_eq!(
            serde_json::to_string(&c["config"]).unwrap(),
            serde_json::to_string(&old_c["config"]).unwrap(),
            "{p}: graft keeps the image's key order"
        );
        // regctl leaves the base annotations as they were (naming base:v1 at v1's digest,
        // now wrong); graft names the new base. So the manifests differ in those two values
        // and in the config descriptor, nothing else.
        assert_eq!(
            rm["annotations"]["org.opencontainers.image.base.name"],
            format!("{host}/base:v1")
        );
        let mut same = rm.clone();
        same["config"] = m["config"].clone();
        same["annotations"] = m["annotations"].clone();
        assert_eq!(
            same, m,
            "{p}: regctl's manifest apart from config and base annotations"
        );
    }

    // umoci: v2's files and the image's, not v1's.
    for p in PLATFORMS {
        let rootfs = s.unpack("app:rebased", p);
        assert!(rootfs.join("usr/share/base/v2").exists(), "{p}");
        assert!(rootfs.join("etc/base-release").exists(), "{p}");
        assert!(rootfs.join("opt/app/run.sh").exists(), "{p}");
        assert!(
            !rootfs.join("usr/share/base/v1").exists(),
            "{p}: v1's file survived"
        );
        assert!(rootfs.join("opt/astro").exists(), "{p}: astro's files");
    }

    // Default destination: the image's own tag, and the same digest (deterministic).
    let run = graft_run(
        h,
        &[
            "rebase",
            &s.reg.docker_ref("app:1"),
            "--onto",
            &s.reg.docker_ref("base:v2"),
        ],
    )
    .ok();
    let rebased = s.reg.raw("app:rebased");
    assert_eq!(s.reg.raw("app:1"), rebased);
    assert_eq!(
        run.stdout.trim(),
        format!("sha256:{}", crate::support::tools::sha256_hex(&rebased))
    );
}

#[test]
fn refusals_write_nothing_and_a_moved_base_tag_is_found_by_digest() {
    let s = Setup::new();
    let h = s.home.path();
    let r = |t: &str| s.reg.docker_ref(t);
    // sci/astro:1.0, seeded by skopeo, has no base annotations.
    let before = s.storage();
    let tags = s.tags("app");

    // 1. No annotations and no --old-base: exit 2, naming the flag.
    let run = graft_run(
        h,
        &[
            "rebase",
            &r("sci/astro:1.0"),
            "--onto",
            &r("base:v2"),
            "-t",
            &r("app:x"),
        ],
    )
    .fails(2);
    assert!(run.stderr.contains("--old-base"), "{}", run.stderr);
    assert!(
        run.stderr.contains("org.opencontainers.image.base.name"),
        "{}",
        run.stderr
    );

    // 2. OLD not a prefix: base:v2 is not under app:1. Exit 2, platform and position named.
    let run = graft_run(
        h,
        &[
            "rebase",
            &r("app:1"),
            "--old-base",
            &r("base:v2"),
            "--onto",
            &r("base:v1"),
            "-t",
            &r("app:x"),
        ],
    )
    .fails(2);
    assert!(run.stderr.contains("not a prefix"), "{}", run.stderr);
    assert!(
        run.stderr.contains("platform linux/amd64"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("layer 3 of 4"), "{}", run.stderr);

    unchanged(&before, &s.storage());

    // 3. A platform the new base lacks: a one-platform new base.
    skopeo([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--override-arch",
        "amd64",
        &r("base:v2"),
        &r("base:amd64-only"),
    ]);
    let before = s.storage();
    let run = graft_run(h, &["rebase", &r("app:1"), "--onto", &r("base:amd64-only")]).fails(2);
    assert!(run.stderr.contains("linux/arm64/v8"), "{}", run.stderr);
    assert!(!run.stderr.contains("linux/amd64,"), "{}", run.stderr);

    // 4. --dry-run computes, writes nothing.
    let run = graft_run(
        h,
        &[
            "-o",
            "json",
            "rebase",
            &r("app:1"),
            "--onto",
            &r("base:v2"),
            "--dry-run",
        ],
    )
    .ok();
    assert_eq!(run.json()["dry_run"], true);
    assert_eq!(run.json()["reports"].as_array().unwrap().len(), 0);

    assert_eq!(s.tags("app"), tags);
    unchanged(&before, &s.storage());

    // The usual case: the base's tag has moved (base:v1 now holds v2). The annotations pin
    // the old base to the digest the image was built on, so the rebase still finds v1's layers.
    let v1_digest = format!(
        "sha256:{}",
        crate::support::tools::sha256_hex(&s.reg.raw("base:v1"))
    );
    graft_run(h, &["copy", &r("base:v2"), &r("base:v1")]).ok();
    let run = graft_run(
        h,
        &[
            "-o",
            "json",
            "rebase",
            &r("app:1"),
            "--onto",
            &r("base:v1"),
            "-t",
            &r("app:moved"),
        ],
    )
    .ok();
    let report = run.json();
    assert_eq!(
        report["old_bases"][0]["digest"],
        v1_digest.as_str(),
        "{report}"
    );
    for p in report["platforms"].as_array().unwrap() {
        assert_eq!(
            (&p["removed_layers"], &p["base_layers"], &p["own_layers"]),
            (&3.into(), &4.into(), &1.into()),
            "{p}"
        );
    }
}

/// Asserts the registry's storage holds the same files (a refusal wrote nothing).
fn unchanged(before: &[PathBuf], after: &[PathBuf]) {
    let new: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    let gone: Vec<&PathBuf> = before.iter().filter(|p| !after.contains(p)).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "written: {new:?}, removed: {gone:?}"
    );
}

/// The same rebase in an OCI layout (old base found from the annotations `graft append` wrote
/// there: `oci:DIR:v1` at its digest) written to an OCI archive: the same configs, byte for
/// byte, as the registry's rebase of the same inputs.
#[test]
fn rebase_in_a_layout_into_an_archive_matches_the_registry() {
    let s = Setup::new();
    let h = s.home.path();
    let dir = h.join("layout");
    let l = |t: &str| format!("oci:{}:{t}", dir.display());
    for t in ["v1", "v2"] {
        graft_run(h, &["copy", &s.reg.docker_ref(&format!("base:{t}")), &l(t)]).ok();
    }
    let app = h.join("app.tar.gz");
    append(
        h,
        &l("v1"),
        &[&app],
        &["--label", "org.example.app=1"],
        &l("app"),
    );
    graft_run(
        h,
        &[
            "rebase",
            &s.reg.docker_ref("app:1"),
            "--onto",
            &s.reg.docker_ref("base:v2"),
            "-t",
            &s.reg.docker_ref("app:rebased"),
        ],
    )
    .ok();
    let archive = h.join("rebased.tar");
    let dst = format!("oci-archive:{}:app", archive.display());
    let run = graft_run(
        h,
        &[
            "-o",
            "json",
            "rebase",
            &l("app"),
            "--onto",
            &l("v2"),
            "-t",
            &dst,
        ],
    )
    .ok();
    assert_eq!(
        run.json()["old_bases"][0]["name"],
        l("v1"),
        "the old base came from the layout's annotations"
    );
    for p in PLATFORMS {
        let config = |r: &str| {
            graft_run(h, &["inspect", "--config", "--raw", "--platform", p, r])
                .ok()
                .stdout
        };
        assert_eq!(
            config(&dst),
            config(&s.reg.docker_ref("app:rebased")),
            "{p}"
        );
    }

    // Back onto v1, in place inside the archive: the image append made, to the byte (configs,
    // manifests with their base annotations, index).
    let run = graft_run(
        h,
        &["rebase", &dst, "--old-base", &l("v2"), "--onto", &l("v1")],
    )
    .ok();
    let original = graft_run(h, &["inspect", "--raw", &l("app")]).ok().stdout;
    let round_trip = graft_run(h, &["inspect", "--raw", &dst]).ok().stdout;
    assert_eq!(round_trip, original);
    assert_eq!(
        run.stdout.trim(),
        format!(
            "sha256:{}",
            crate::support::tools::sha256_hex(original.as_bytes())
        )
    );
}
