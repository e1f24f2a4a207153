//! Hostile local stores (issue 11): crafted layouts and archives must be refused with a clear
//! error, in bounded time and memory, and nothing may be written at the destination. Each
//! graft run here is killed after [`TIME_LIMIT`] and has [`MEMORY_LIMIT_KIB`] of address
//! space: a hang or an unbounded allocation fails the test instead of the machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use graft::oci::{media_types as mt, Digest};

use crate::graft::{capture, Run};
use crate::support::tools::{run_ok, science_layout};

/// How long one graft run may take (killed after it).
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Address space of one graft run: far below the 6 GiB a hostile archive claims, enough for
/// graft's threads and buffers.
const MEMORY_LIMIT_KIB: u64 = 2 << 20;

/// Run graft with `args` under the time and memory limits (HOME = `home`, no credentials).
fn bounded(home: &Path, args: &[&str]) -> Run {
    let started = Instant::now();
    let run = capture(
        Command::new("timeout")
            .args(["-s", "KILL"])
            .arg(TIME_LIMIT.as_secs().to_string())
            .args(["sh", "-c"])
            .arg(format!("ulimit -v {MEMORY_LIMIT_KIB} && exec \"$@\""))
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_graft"))
            .args(args)
            .env("HOME", home)
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("GRAFT_CREDS")
            .env_remove("GRAFT_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null()),
    );
    let took = started.elapsed();
    assert!(
        took < TIME_LIMIT,
        "graft {args:?} was killed after {took:?}:\n{}",
        run.all()
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("overflow"),
        "graft {args:?}:\n{}",
        run.all()
    );
    run
}

/// A copy of the sample layout `astro-base` (tag `1.0`: an index of two platforms) in `dir`.
fn astro_copy(dir: &Path) -> PathBuf {
    let layout = dir.join("src");
    run_ok(
        Command::new("cp")
            .arg("-r")
            .arg(science_layout("astro-base"))
            .arg(&layout),
    );
    layout
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The digests of astro-base: (its index, its amd64 manifest, that manifest's first layer).
fn astro_digests(layout: &Path) -> (String, String, String) {
    let top = read_json(&layout.join("index.json"))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let index = read_json(&blob_path(layout, &top));
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m = read_json(&blob_path(layout, &manifest));
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    (top, manifest, layer)
}

/// Nothing was written at `dest`. Unless blobs may have moved before the failure
/// (`blobs_allowed`: then it may be a layout with blobs but no images), it does not exist: a
/// destination layout is created by the first write, not when the copy starts.
fn assert_nothing_written(dest: &Path, blobs_allowed: bool) {
    if !blobs_allowed {
        assert!(!dest.exists(), "{} was created", dest.display());
        return;
    }
    if !dest.exists() {
        return;
    }
    let index = read_json(&dest.join("index.json"));
    assert_eq!(index["manifests"], json!([]), "{}", dest.display());
}

fn oci(path: &Path, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("oci:{}:{t}", path.display()),
        None => format!("oci:{}", path.display()),
    }
}

fn mkfifo(path: &Path) {
    run_ok(Command::new("mkfifo").arg(path));
}

#[test]
fn an_archive_whose_index_json_claims_6_gib_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    // A tar by hand: `oci-layout`, then an `index.json` whose header says 6 GiB. The file is
    // made that long sparsely (no disk used), so the archive is well formed and only the
    // claimed size is hostile.
    let claimed: u64 = 6 << 30;
    let archive = tmp.path().join("huge.tar");
    let mut file = std::fs::File::create(&archive).unwrap();
    let marker = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let header = |name: &str, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        h
    };
    file.write_all(header("oci-layout", marker.len() as u64).as_bytes())
        .unwrap();
    file.write_all(marker).unwrap();
    file.write_all(&[0; 512][..512 - marker.len()]).unwrap();
    file.write_all(header("index.json", claimed).as_bytes())
        .unwrap();
    file.set_len(3 * 512 + claimed + 1024).unwrap();
    drop(file);

    let dest = tmp.path().join("dest");
    for args in [
        vec![
            "inspect".to_string(),
            format!("oci-archive:{}", archive.display()),
        ],
        vec![
            "copy".to_string(),
            format!("oci-archive:{}", archive.display()),
            oci(&dest, Some("t")),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = bounded(home, &args).fails(1);
        assert!(
            run.stderr.contains(&format!(
                "invalid index.json in OCI archive {}: 6442450944 bytes is more than the \
                 67108864 bytes (64 MiB)",
                archive.display()
            )),
            "{}",
            run.stderr
        );
    }
    assert_nothing_written(&dest, false);
}

#[test]
fn index_json_or_a_manifest_linked_to_dev_zero_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let src = astro_copy(tmp.path());
    let real = std::fs::canonicalize(&src).unwrap();
    let dest = tmp.path().join("dest");
    let index = src.join("index.json");
    let saved = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &index).unwrap();
    for args in [
        vec!["inspect".to_string(), oci(&src, None)],
        vec!["copy".to_string(), oci(&src, Some("1.0")), oci(&dest, None)],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = bounded(home, &args).fails(1);
        assert!(
            run.stderr.contains(&format!(
                "invalid {}: it resolves to /dev/zero, outside {}",
                index.display(),
                real.display()
            )),
            "{}",
            run.stderr
        );
    }
    assert_nothing_written(&dest, false);

    // The index back, the amd64 manifest linked to /dev/zero instead.
    std::fs::remove_file(&index).unwrap();
    std::fs::write(&index, saved).unwrap();
    let (_, manifest, _) = astro_digests(&src);
    let path = blob_path(&src, &manifest);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let run = bounded(
        home,
        &["copy", &oci(&src, Some("1.0")), &oci(&dest, Some("t"))],
    )
    .fails(1);
    assert!(
        run.stderr.contains(&format!(
            "invalid {}: it resolves to /dev/zero, outside",
            path.display()
        )),
        "{}",
        run.stderr
    );
    assert_nothing_written(&dest, false);
}

#[test]
fn a_fifo_as_index_json_or_blob_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let src = astro_copy(tmp.path());
    let dest = tmp.path().join("dest");
    let (_, _, layer) = astro_digests(&src);

    // index.json a FIFO: nothing would ever write to it.
    let index = src.join("index.json");
    let saved = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    mkfifo(&index);
    for args in [
        vec!["inspect".to_string(), oci(&src, None)],
        vec!["copy".to_string(), oci(&src, Some("1.0")), oci(&dest, None)],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = bounded(home, &args).fails(1);
        assert!(
            run.stderr.contains(&format!(
                "invalid {}: a FIFO, not a regular file",
                index.display()
            )),
            "{}",
            run.stderr
        );
    }
    assert_nothing_written(&dest, false);

    // A layer blob a FIFO (and, for good measure, a directory).
    std::fs::remove_file(&index).unwrap();
    std::fs::write(&index, saved).unwrap();
    let path = blob_path(&src, &layer);
    for (kind, make) in [
        ("a FIFO", mkfifo as fn(&Path)),
        ("a directory", |p: &Path| std::fs::create_dir(p).unwrap()),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(_) => std::fs::remove_dir(&path).unwrap(),
        }
        make(&path);
        let run = bounded(
            home,
            &[
                "copy",
                "--jobs",
                "1",
                &oci(&src, Some("1.0")),
                &oci(&dest, Some("t")),
            ],
        )
        .fails(1);
        assert!(
            run.stderr.contains(&format!(
                "invalid {}: {kind}, not a regular file",
                path.display()
            )),
            "{}",
            run.stderr
        );
        // Other blobs may have moved before this one failed; no image is there.
        assert_nothing_written(&dest, true);
    }
}

#[test]
fn a_blob_linked_out_of_the_layout_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let src = astro_copy(tmp.path());
    let real = std::fs::canonicalize(&src).unwrap();
    let dest = tmp.path().join("dest");
    let (_, _, layer) = astro_digests(&src);
    // The right bytes, but outside the layout: graft reads no file outside it.
    let path = blob_path(&src, &layer);
    let outside = tmp.path().join("outside-blob");
    std::fs::rename(&path, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &path).unwrap();
    let run = bounded(
        home,
        &[
            "copy",
            "--jobs",
            "1",
            &oci(&src, Some("1.0")),
            &oci(&dest, Some("t")),
        ],
    )
    .fails(1);
    assert!(
        run.stderr.contains(&format!(
            "invalid {}: it resolves to {}, outside {}",
            path.display(),
            std::fs::canonicalize(&outside).unwrap().display(),
            real.display()
        )),
        "{}",
        run.stderr
    );
    assert_nothing_written(&dest, true);
    assert!(
        !dest.join("blobs/sha256").join(&layer[7..]).exists(),
        "the outside file was copied"
    );

    // A link that stays inside the layout is fine.
    let inside = src.join("blobs/moved");
    std::fs::rename(&outside, &inside).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("../moved", &path).unwrap();
    bounded(
        home,
        &["copy", &oci(&src, Some("1.0")), &oci(&dest, Some("t"))],
    )
    .ok();
}

/// Write `bytes` as a blob of the layout at `dir`; its digest.
fn put_blob(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::sha256(bytes);
    std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    d
}

#[test]
fn five_thousand_nested_indexes_are_refused_by_copy_and_shown_by_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let src = tmp.path().join("deep");
    std::fs::create_dir_all(src.join("blobs/sha256")).unwrap();
    std::fs::write(src.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer = b"not really a tar";
    let layer_d = put_blob(&src, layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_d.to_string()]},
    }))
    .unwrap();
    let config_d = put_blob(&src, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": {"mediaType": mt::OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": mt::OCI_LAYER_TAR, "digest": layer_d, "size": layer.len()}],
    }))
    .unwrap();
    let mut child = (mt::OCI_MANIFEST, put_blob(&src, &manifest), manifest.len());
    for _ in 0..5000 {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": mt::OCI_INDEX,
            "manifests": [{"mediaType": child.0, "digest": child.1, "size": child.2}],
        }))
        .unwrap();
        child = (mt::OCI_INDEX, put_blob(&src, &index), index.len());
    }
    let root = child.1.clone();
    std::fs::write(
        src.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": mt::OCI_INDEX, "digest": root, "size": child.2,
                           "annotations": {"org.opencontainers.image.ref.name": "deep"}}],
        }))
        .unwrap(),
    )
    .unwrap();

    let dest = tmp.path().join("dest");
    let run = bounded(
        home,
        &["copy", &oci(&src, Some("deep")), &oci(&dest, Some("t"))],
    )
    .fails(1);
    assert!(
        run.stderr
            .contains("indexes nest more than 16 levels deep here; graft refuses deeper nesting"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("in oci:{}:deep", src.display())),
        "{}",
        run.stderr
    );
    assert_nothing_written(&dest, false);

    // inspect shows the root only: no walk.
    let run = bounded(home, &["inspect", "-o", "json", &oci(&src, Some("deep"))]).ok();
    assert_eq!(run.json()["digest"], root.to_string());
}

#[test]
fn a_bad_digest_in_index_json_is_a_bad_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let src = astro_copy(tmp.path());
    let index = src.join("index.json");
    let mut doc = read_json(&index);
    doc["manifests"][0]["digest"] = json!("sha256:xyz");
    std::fs::write(&index, serde_json::to_vec(&doc).unwrap()).unwrap();
    let dest = tmp.path().join("dest");
    for args in [
        vec!["inspect".to_string(), oci(&src, Some("1.0"))],
        vec!["copy".to_string(), oci(&src, Some("1.0")), oci(&dest, None)],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = bounded(home, &args).fails(2);
        assert!(!run.stderr.contains("invalid JSON"), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "reading entry 0 (tag \"1.0\") of the manifests in {}",
                index.display()
            )),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("invalid digest \"sha256:xyz\": sha256 needs 64 hex characters"),
            "{}",
            run.stderr
        );
    }
    assert_nothing_written(&dest, false);
}

#[test]
fn a_copy_or_mirror_refused_during_the_walk_creates_no_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let src = astro_copy(tmp.path());
    // Named as graft mirror names its entries, so that the layout is also a mirror source.
    let index = src.join("index.json");
    let mut doc = read_json(&index);
    doc["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] =
        json!("example.org/astro/base:1.0");
    std::fs::write(&index, serde_json::to_vec(&doc).unwrap()).unwrap();
    // The amd64 manifest a FIFO: refused while the source's graph is walked, before any blob.
    let (_, manifest, _) = astro_digests(&src);
    let path = blob_path(&src, &manifest);
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let refused = format!("invalid {}: a FIFO, not a regular file", path.display());
    let source = oci(&src, Some("example.org/astro/base:1.0"));

    let layout = tmp.path().join("new-layout");
    let archive = tmp.path().join("new.tar");
    let partial = tmp.path().join("new.tar.graft-partial");
    for dest in [
        oci(&layout, Some("t")),
        oci(&layout, None),
        format!("oci-archive:{}:t", archive.display()),
    ] {
        let run = bounded(home, &["copy", &source, &dest]).fails(1);
        assert!(run.stderr.contains(&refused), "{dest}: {}", run.stderr);
        for p in [&layout, &archive, &partial] {
            assert!(!p.exists(), "copy to {dest} created {}", p.display());
        }
    }

    for (dest, attachments) in [
        (format!("oci:{}", layout.display()), false),
        (format!("oci:{}", layout.display()), true),
        (format!("oci-archive:{}", archive.display()), false),
        (format!("oci-archive:{}", archive.display()), true),
    ] {
        let config = tmp.path().join("sync.yaml");
        std::fs::write(
            &config,
            format!(
                "destination: {dest}\nwith_attachments: {attachments}\nsources:\n  - repository: oci:{}\n",
                src.display()
            ),
        )
        .unwrap();
        let run = bounded(home, &["mirror", "--config", config.to_str().unwrap()]).fails(1);
        assert!(run.all().contains(&refused), "{dest}: {}", run.all());
        for p in [&layout, &archive, &partial] {
            assert!(!p.exists(), "mirror to {dest} created {}", p.display());
        }
    }

    // The source repaired, the same copy creates the layout.
    let restore = |path: &Path, digest: &str| {
        std::fs::remove_file(path).unwrap();
        run_ok(
            Command::new("cp")
                .arg(blob_path(&science_layout("astro-base"), digest))
                .arg(path),
        );
    };
    restore(&path, &manifest);
    bounded(home, &["copy", &source, &oci(&layout, Some("t"))]).ok();

    // Refused after some blobs moved (the config a FIFO, copied after the layers): a new
    // archive listing no image is not made; the blobs wait in the partial file, and the
    // next run, the source repaired, resumes from it.
    let m = read_json(&blob_path(&src, &manifest));
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    let config_path = blob_path(&src, &config);
    std::fs::remove_file(&config_path).unwrap();
    mkfifo(&config_path);
    let config_file = tmp.path().join("sync.yaml");
    std::fs::write(
        &config_file,
        format!(
            "destination: oci-archive:{}\njobs: 1\nsources:\n  - repository: oci:{}\n",
            archive.display(),
            src.display()
        ),
    )
    .unwrap();
    let mirror = ["mirror", "--config", config_file.to_str().unwrap()];
    let run = bounded(home, &mirror).fails(1);
    assert!(
        run.all().contains(&format!(
            "invalid {}: a FIFO, not a regular file",
            config_path.display()
        )),
        "{}",
        run.all()
    );
    assert!(!archive.exists(), "an archive without images was made");
    restore(&config_path, &config);
    bounded(home, &mirror).ok();
    assert!(archive.exists() && !partial.exists());
    assert_eq!(
        read_json(&layout.join("index.json"))["manifests"][0]["annotations"]
            ["org.opencontainers.image.ref.name"],
        "t"
    );
}
