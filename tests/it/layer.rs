//! Deterministic layers against the real tools: GNU tar lists them, umoci unpacks images made
//! of them (whiteouts included), and `graft layer build` prints what it built.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;

use graft::layer::{self, Compression, LayerDigests, LayerSpec};
use graft::oci::{media_types as mt, Descriptor, Digest};
use graft::store::layout::Layout;
use graft::timestamp::Timestamp;

use crate::graft::{capture, command, graft};
use crate::support::runtime;
use crate::support::tools::{run_ok, sha256_digest, umoci};

const EPOCH: &str = "1700000000";

fn write(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

/// A tree with one of everything a layer can hold.
fn sample_tree(root: &Path) -> String {
    write(root, "etc/motd", b"hello\n", 0o600);
    write(root, "opt/tool/bin/run", b"#!/bin/sh\necho run\n", 0o700);
    fs::hard_link(
        root.join("opt/tool/bin/run"),
        root.join("opt/tool/bin/alias"),
    )
    .unwrap();
    link(root, "usr/local/bin/run", "/opt/tool/bin/run");
    link(root, "opt/tool/current", "bin");
    let long = format!("opt/tool/share/{}/{}", "l".repeat(80), "m".repeat(60));
    write(root, &long, b"long name\n", 0o644);
    write(root, "opt/tool/share/données.txt", "é\n".as_bytes(), 0o644);
    fs::create_dir_all(root.join("srv/empty")).unwrap();
    fs::set_permissions(root.join("srv/empty"), fs::Permissions::from_mode(0o700)).unwrap();
    long
}

fn tar_listing(args: &[&str], file: &Path) -> (String, String) {
    let out = run_ok(
        Command::new("tar")
            .env("TZ", "UTC")
            .env("LC_ALL", "C.UTF-8")
            .args(args)
            .arg(file),
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn gnu_tar_lists_the_gzip_layer_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    let long = sample_tree(&tree);
    let file = work.path().join("layer.tar.gz");
    let run = capture(
        command(work.path())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["-o", "json", "layer", "build"])
            .arg(&tree)
            .arg("-f")
            .arg(&file),
    )
    .ok();
    let v = run.json();
    let bytes = fs::read(&file).unwrap();
    assert_eq!(v["digest"], sha256_digest(&bytes));
    assert_eq!(v["size"], bytes.len() as u64);
    assert_eq!(v["media_type"], mt::OCI_LAYER_GZIP);
    assert_eq!(v["file"], file.display().to_string());

    let (stdout, stderr) = tar_listing(&["-tvzf"], &file);
    assert_eq!(stderr, "", "GNU tar complained");
    let d = "0/0               0 2023-11-14 22:13";
    let expected = [
        format!("drwxr-xr-x {d} etc/"),
        "-rw-r--r-- 0/0               6 2023-11-14 22:13 etc/motd".to_string(),
        format!("drwxr-xr-x {d} opt/"),
        format!("drwxr-xr-x {d} opt/tool/"),
        format!("drwxr-xr-x {d} opt/tool/bin/"),
        "-rwxr-xr-x 0/0              19 2023-11-14 22:13 opt/tool/bin/alias".to_string(),
        format!("hrwxr-xr-x {d} opt/tool/bin/run link to opt/tool/bin/alias"),
        format!("lrwxrwxrwx {d} opt/tool/current -> bin"),
        format!("drwxr-xr-x {d} opt/tool/share/"),
        "-rw-r--r-- 0/0               3 2023-11-14 22:13 opt/tool/share/données.txt".to_string(),
        format!("drwxr-xr-x {d} opt/tool/share/{}/", "l".repeat(80)),
        format!("-rw-r--r-- 0/0              10 2023-11-14 22:13 {long}"),
        format!("drwxr-xr-x {d} srv/"),
        format!("drwxr-xr-x {d} srv/empty/"),
        format!("drwxr-xr-x {d} usr/"),
        format!("drwxr-xr-x {d} usr/local/"),
        format!("drwxr-xr-x {d} usr/local/bin/"),
        format!("lrwxrwxrwx {d} usr/local/bin/run -> /opt/tool/bin/run"),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expected);

    // The same listing from the zstd and uncompressed layers, whose tar is the same.
    for (c, flags) in [("zstd", "--zstd"), ("none", "")] {
        let f = work.path().join(format!("layer.{c}"));
        graft(
            work.path(),
            &[
                "layer".as_ref(),
                "build".as_ref(),
                tree.as_os_str(),
                "--compression".as_ref(),
                c.as_ref(),
                "-f".as_ref(),
                f.as_os_str(),
            ],
        )
        .ok();
        let mut args = vec!["-tvf"];
        if !flags.is_empty() {
            args.insert(0, flags);
        }
        let (other, stderr) = tar_listing(&args, &f);
        assert_eq!(stderr, "");
        // Without SOURCE_DATE_EPOCH the mtime is the epoch.
        assert_eq!(
            other,
            stdout.replace("2023-11-14 22:13", "1970-01-01 00:00")
        );
    }
}

#[test]
fn cli_text_output_and_hash_only_mode() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    sample_tree(&tree);
    let hashed = capture(
        command(work.path())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["layer", "build"])
            .arg(&tree),
    )
    .ok();
    // Nothing but the tree was written.
    let listing: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listing, ["tree"]);
    let spec = LayerSpec::tree(&tree, Timestamp(1_700_000_000));
    let d = layer::build(&spec, Compression::Gzip, std::io::sink()).unwrap();
    assert_eq!(
        hashed.stdout,
        format!(
            "Digest:     {}\nDiffID:     {}\nSize:       {}\nMediaType:  {}\n",
            d.digest,
            d.diff_id,
            d.size,
            mt::OCI_LAYER_GZIP
        )
    );
    let file = work.path().join("out.tar.gz");
    let written = capture(
        command(work.path())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["layer", "build", "--out"])
            .arg(&file)
            .arg(&tree),
    )
    .ok();
    assert_eq!(
        written.stdout,
        format!("{}File:       {}\n", hashed.stdout, file.display())
    );

    let bad = capture(
        command(work.path())
            .env("SOURCE_DATE_EPOCH", "yesterday")
            .args(["layer", "build"])
            .arg(&tree),
    )
    .fails(1);
    assert!(
        bad.stderr.contains(
            "error: invalid SOURCE_DATE_EPOCH: \"yesterday\" is not a whole number of seconds"
        ),
        "{}",
        bad.stderr
    );
    let bad = graft(work.path(), &["layer", "build", ".", "--compression", "xz"]).fails(2);
    assert!(
        bad.stderr.contains("unknown compression \"xz\""),
        "{}",
        bad.stderr
    );
}

#[test]
fn cli_errors_name_the_path() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write(&tree, "ok", b"fine", 0o644);
    let fifo = tree.join("pipe");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let out = graft(
        work.path(),
        &["layer".as_ref(), "build".as_ref(), tree.as_os_str()],
    )
    .fails(2);
    assert_eq!(
        out.stderr,
        format!(
            "error: {}: is a fifo; a layer tree may hold only files, directories and symlinks\n",
            fifo.display()
        )
    );
    fs::remove_file(&fifo).unwrap();

    // Unreadable: root reads everything, so run graft as nobody.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    write(&tree, "secret", b"no", 0o600);
    let out = capture(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_graft"))
            .args(["layer", "build"])
            .arg(&tree)
            .env("HOME", work.path()),
    )
    .fails(1);
    assert_eq!(
        out.stderr,
        format!(
            "error: reading layer file {}\n  caused by: Permission denied (os error 13)\n",
            tree.join("secret").display()
        )
    );
}

fn put(layout: &Layout, desc: &Descriptor, bytes: Bytes) {
    runtime().block_on(layout.write_bytes(desc, bytes)).unwrap();
}

/// Put `layers` (files) into a one-platform OCI image tagged `tag` in the layout at `dir`.
fn image(dir: &Path, tag: &str, layers: &[(PathBuf, LayerDigests)]) {
    let layout = Layout::open_or_create(dir).unwrap();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (path, d) in layers {
        let desc = Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size);
        let bytes = Bytes::from(fs::read(path).unwrap());
        put(&layout, &desc, bytes);
        descriptors.push(serde_json::to_value(&desc).unwrap());
        diff_ids.push(d.diff_id.to_string());
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Bytes::from(serde_json::to_vec(&config).unwrap());
    let config_desc = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(&config), config.len() as u64);
    put(&layout, &config_desc, config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config_desc,
        "layers": descriptors,
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let desc = Descriptor::new(
        mt::OCI_MANIFEST,
        Digest::sha256(&manifest),
        manifest.len() as u64,
    );
    put(&layout, &desc, manifest);
    layout.set_tag(&desc, Some(tag)).unwrap();
}

#[test]
fn umoci_unpacks_stacked_layers_with_whiteouts() {
    let work = tempfile::tempdir().unwrap();
    let lower = work.path().join("lower");
    write(&lower, "etc/motd", b"lower motd\n", 0o644);
    write(&lower, "opt/conda/pkgs/cache.tar", b"big", 0o644);
    write(&lower, "opt/conda/bin/python", b"py", 0o755);
    write(&lower, "opt/app/old", b"old app", 0o644);
    write(&lower, "var/log/keep", b"keep", 0o644);

    let upper = work.path().join("upper");
    write(&upper, "etc/motd", b"compat motd\n", 0o600);
    write(&upper, "opt/app/new", b"new app", 0o644);
    write(&upper, "usr/local/bin/tool", b"#!/bin/sh\n", 0o700);
    fs::hard_link(
        upper.join("usr/local/bin/tool"),
        upper.join("usr/local/bin/tool2"),
    )
    .unwrap();
    link(&upper, "usr/local/bin/python", "/opt/conda/bin/python");
    let overlay = work.path().join("overlay");
    write(&overlay, "etc/motd", b"overlaid motd\n", 0o644);

    // The lower layer through the CLI, the upper one through the library (with `remove`,
    // `modes` and a second tree).
    let lower_file = work.path().join("lower.tar.gz");
    let v = capture(
        command(work.path())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["-o", "json", "layer", "build", "-f"])
            .arg(&lower_file)
            .arg(&lower),
    )
    .ok()
    .json();
    let lower_digests = LayerDigests {
        digest: v["digest"].as_str().unwrap().parse().unwrap(),
        diff_id: v["diff_id"].as_str().unwrap().parse().unwrap(),
        size: v["size"].as_u64().unwrap(),
        media_type: v["media_type"].as_str().unwrap().to_string(),
    };
    let spec = LayerSpec {
        trees: vec![upper.clone(), overlay.clone()],
        remove: vec!["/opt/conda/pkgs".into(), "/opt/app".into()],
        owner: None,
        modes: BTreeMap::from([("/usr/local/bin/tool".to_string(), 0o750)]),
        mtime: Timestamp(1_700_000_000),
    };
    let upper_file = work.path().join("upper.tar.gz");
    let upper_digests = layer::build_to_file(&spec, Compression::Gzip, &upper_file).unwrap();

    let layout = work.path().join("image");
    image(
        &layout,
        "v1",
        &[(lower_file, lower_digests), (upper_file, upper_digests)],
    );
    let bundle = work.path().join("bundle");
    umoci([
        "unpack".as_ref(),
        "--image".as_ref(),
        format!("{}:v1", layout.display()).as_ref(),
        bundle.as_os_str(),
    ]);
    let rootfs = bundle.join("rootfs");
    let read = |p: &str| fs::read_to_string(rootfs.join(p)).unwrap();
    assert_eq!(read("etc/motd"), "overlaid motd\n");
    assert_eq!(read("opt/conda/bin/python"), "py");
    assert_eq!(read("var/log/keep"), "keep");
    assert!(!rootfs.join("opt/conda/pkgs").exists(), "whiteout applied");
    assert!(rootfs.join("opt/conda").is_dir());
    assert!(
        !rootfs.join("opt/app/old").exists(),
        "whiteout of the lower dir"
    );
    assert_eq!(read("opt/app/new"), "new app");
    let mode = |p: &str| fs::symlink_metadata(rootfs.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("etc/motd"), 0o644);
    assert_eq!(mode("usr/local/bin/tool"), 0o750);
    assert_eq!(mode("usr/local/bin"), 0o755);
    assert_eq!(
        fs::read_link(rootfs.join("usr/local/bin/python")).unwrap(),
        Path::new("/opt/conda/bin/python")
    );
    let ino = |p: &str| fs::metadata(rootfs.join(p)).unwrap().ino();
    assert_eq!(ino("usr/local/bin/tool"), ino("usr/local/bin/tool2"));
    let meta = fs::metadata(rootfs.join("opt/app/new")).unwrap();
    assert_eq!(meta.mtime(), 1_700_000_000);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    // No whiteout file itself lands in the rootfs.
    assert!(!rootfs.join("opt/conda/.wh.pkgs").exists());
}
