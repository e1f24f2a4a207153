//! OCI layout directories and archives against the real tools: what graft writes, skopeo and
//! umoci read; what skopeo, umoci, crane, oras and regclient wrote, graft reads.

use crate::support::tools::copy_dir;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use graft::error::Error;
use graft::oci::{media_types as mt, Descriptor, Digest, RawManifest};
use graft::reference::LayoutRef;
use graft::store::archive::{ArchiveSink, ArchiveSource};
use graft::store::index_json::REF_NAME;
use graft::store::layout::{Layout, LayoutSink, LayoutSource};
use graft::store::local::LocalStores;
use graft::store::{BlobStream, Sink, Source};

use crate::support::tools::{science_layout, skopeo, skopeo_inspect_raw, testdata_dir, umoci};

/// Read-only layouts written by other tools (crane, oras, regclient, cosign, docker), vendored
/// under `testdata/interop/` (sources in `testdata/SOURCES.md`).
fn interop_layouts() -> PathBuf {
    testdata_dir().join("interop/oci-layouts")
}

fn lref(path: &Path, tag: Option<&str>) -> LayoutRef {
    LayoutRef {
        path: path.to_path_buf(),
        tag: tag.map(str::to_string),
    }
}

fn oci(path: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", path.display())
}

fn oci_archive(path: &Path, tag: &str) -> String {
    format!("oci-archive:{}:{tag}", path.display())
}

fn one_chunk(bytes: Bytes) -> BlobStream {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}

async fn read_all(mut s: BlobStream) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// A small but real image: an uncompressed tar layer holding one file, a config with the
/// matching diff_id, and an OCI manifest.
struct Sample {
    blobs: Vec<(Descriptor, Bytes)>,
    manifest: RawManifest,
}

fn sample(content: &str) -> Sample {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "hello.txt", content.as_bytes())
        .unwrap();
    let layer = Bytes::from(tar.into_inner().unwrap());
    let layer_desc = Descriptor::new(
        mt::OCI_LAYER_TAR,
        Digest::sha256(&layer),
        layer.len() as u64,
    );
    let config = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"sample": content}},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc.digest.to_string()]},
        }))
        .unwrap(),
    );
    let config_desc = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(&config), config.len() as u64);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    }))
    .unwrap();
    Sample {
        blobs: vec![(layer_desc, layer), (config_desc, config)],
        manifest: RawManifest::from_bytes(Bytes::from(manifest), None).unwrap(),
    }
}

async fn put_sample(sink: &dyn Sink, s: &Sample, tag: Option<&str>) {
    for (d, b) in &s.blobs {
        sink.put_blob(d, one_chunk(b.clone())).await.unwrap();
    }
    match tag {
        Some(t) => sink.put_tag(&s.manifest, t).await.unwrap(),
        None => {
            sink.put_root(&s.manifest).await.unwrap();
        }
    }
}

/// Copy `root` and everything below it from `src` to `dst` (blobs, children, root, tag).
async fn copy_tree(src: &dyn Source, dst: &dyn Sink, root: &RawManifest, tag: &str) {
    let mut stack = vec![root.clone()];
    let mut order = Vec::new();
    while let Some(m) = stack.pop() {
        for b in m.blobs() {
            if !dst.has_blob(b).await.unwrap() {
                dst.put_blob(b, src.blob(b).await.unwrap()).await.unwrap();
            }
        }
        for child in &m.view().manifests {
            stack.push(src.manifest(child).await.unwrap());
        }
        order.push(m);
    }
    for m in order.iter().skip(1).rev() {
        dst.put_manifest(m).await.unwrap();
    }
    dst.put_tag(root, tag).await.unwrap();
    dst.commit().await.unwrap();
}

/// Read `root` and everything it references through `src`, verifying every byte. Returns the
/// number of blobs read.
async fn read_tree(src: &dyn Source, root: &RawManifest) -> usize {
    let mut n = 0;
    let mut stack = vec![root.clone()];
    while let Some(m) = stack.pop() {
        for b in m.blobs() {
            let bytes = read_all(src.blob(b).await.unwrap()).await.unwrap();
            assert_eq!(bytes.len() as u64, b.size);
            n += 1;
        }
        for child in &m.view().manifests {
            stack.push(src.manifest(child).await.unwrap());
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn graft_layout_is_read_by_skopeo() {
    let local = LocalStores::default();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("graft-layout");
    let s = sample("from graft");
    let sink = LayoutSink::open(lref(&dir, Some("v1")), &local).unwrap();
    put_sample(&sink, &s, Some("v1")).await;

    assert_eq!(
        skopeo_inspect_raw(&oci(&dir, "v1"), &[] as &[&str]),
        *s.manifest.bytes()
    );
    let inspect: Value =
        serde_json::from_slice(&skopeo(["inspect", &oci(&dir, "v1")]).stdout).unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Labels"]["sample"], "from graft");

    let other = tmp.path().join("skopeo-copy");
    skopeo([
        "copy",
        "--preserve-digests",
        &oci(&dir, "v1"),
        &oci(&other, "v1"),
    ]);
    let copied = LayoutSource::open(lref(&other, Some("v1"))).unwrap();
    let m = copied.resolve().await.unwrap();
    assert_eq!(
        m.digest(),
        s.manifest.digest(),
        "skopeo kept the manifest bytes"
    );
    assert_eq!(read_tree(&copied, &m).await, 2);

    // A multi-platform index (the science sample) copied by graft, then by skopeo --all.
    let science = LayoutSource::open(lref(&science_layout("astro-base"), Some("1.0"))).unwrap();
    let root = science.resolve().await.unwrap();
    assert!(root.is_index());
    let out = tmp.path().join("graft-index");
    copy_tree(
        &science,
        &LayoutSink::open(lref(&out, Some("1.0")), &local).unwrap(),
        &root,
        "1.0",
    )
    .await;
    assert_eq!(
        skopeo_inspect_raw(&oci(&out, "1.0"), &[] as &[&str]),
        *root.bytes()
    );
    let again = tmp.path().join("skopeo-index");
    skopeo([
        "copy",
        "--preserve-digests",
        "--all",
        &oci(&out, "1.0"),
        &oci(&again, "1.0"),
    ]);
    let m = LayoutSource::open(lref(&again, Some("1.0")))
        .unwrap()
        .resolve()
        .await
        .unwrap();
    assert_eq!(m.digest(), root.digest());

    // An untagged destination (`oci:DIR`): one untagged entry, which skopeo finds without a tag.
    let untagged = tmp.path().join("untagged");
    let sink = LayoutSink::open(lref(&untagged, None), &local).unwrap();
    put_sample(&sink, &s, None).await;
    put_sample(&sink, &s, None).await;
    let entries = Layout::open(&untagged).unwrap().entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].annotation(REF_NAME), None);
    assert_eq!(
        skopeo_inspect_raw(&format!("oci:{}", untagged.display()), &[] as &[&str]),
        *s.manifest.bytes()
    );
}

#[tokio::test]
async fn graft_archive_is_read_by_skopeo() {
    let local = LocalStores::default();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("images.tar");
    let (a, b) = (sample("archive a"), sample("archive b"));
    let sink = ArchiveSink::open(lref(&file, Some("a")), &local).unwrap();
    put_sample(&sink, &a, Some("a")).await;
    sink.commit().await.unwrap();
    // A second run adds an image and keeps the first.
    let sink = ArchiveSink::open(lref(&file, Some("b")), &local).unwrap();
    put_sample(&sink, &b, Some("b")).await;
    sink.commit().await.unwrap();
    assert!(!ArchiveSink::partial_path(&file).unwrap().exists());

    for (tag, s) in [("a", &a), ("b", &b)] {
        let inspect: Value =
            serde_json::from_slice(&skopeo(["inspect", &oci_archive(&file, tag)]).stdout).unwrap();
        assert_eq!(inspect["Digest"], s.manifest.digest().to_string());
        assert_eq!(inspect["Labels"]["sample"], format!("archive {tag}"));
        assert_eq!(
            skopeo_inspect_raw(&oci_archive(&file, tag), &[] as &[&str]),
            *s.manifest.bytes()
        );
    }
    let out = tmp.path().join("from-archive");
    skopeo([
        "copy",
        "--preserve-digests",
        &oci_archive(&file, "b"),
        &oci(&out, "b"),
    ]);
    let m = LayoutSource::open(lref(&out, Some("b")))
        .unwrap()
        .resolve()
        .await
        .unwrap();
    assert_eq!(m.digest(), b.manifest.digest());
}

#[tokio::test]
async fn archive_with_an_abandoned_blob_is_read_by_tar_python_and_skopeo() {
    let local = LocalStores::default();
    // A transfer that fails in the middle of the archive (later blobs already written) and is
    // never retried leaves filler headers where its member would have been: every reader
    // skips them and sees no trace of the blob.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("holes.tar");
    let s = sample("with a hole");
    let sink = ArchiveSink::open(lref(&file, Some("h")), &local).unwrap();
    let abandoned: Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let abandoned_desc = Descriptor::new(
        mt::OCI_LAYER_TAR,
        Digest::sha256(&abandoned),
        abandoned.len() as u64,
    );
    let half = abandoned.slice(..1_500_000);
    // The order is made, not hoped for: the other transfer starts only once the sink has taken
    // this blob's first half (its place in the archive is reserved), and this blob fails only
    // after the other one is written behind it. Yielding a few times instead failed under load.
    let reserved = std::sync::Arc::new(tokio::sync::Notify::new());
    let written = std::sync::Arc::new(tokio::sync::Notify::new());
    let (r, w) = (reserved.clone(), written.clone());
    let failing: BlobStream = Box::pin(futures::stream::unfold(0, move |step| {
        let (r, w, half) = (r.clone(), w.clone(), half.clone());
        async move {
            match step {
                0 => Some((Ok(half), 1)),
                1 => {
                    r.notify_one();
                    tokio::time::timeout(std::time::Duration::from_secs(30), w.notified())
                        .await
                        .expect("the other transfer finished");
                    Some((Err(Error::Unsupported("connection dropped".into())), 2))
                }
                _ => None,
            }
        }
    }));
    let (first, _) = &s.blobs[0];
    let rest = async {
        reserved.notified().await;
        put_sample(&sink, &s, Some("h")).await;
        written.notify_one();
    };
    let (failed, ()) = tokio::join!(sink.put_blob(&abandoned_desc, failing), rest);
    assert!(failed.is_err());
    sink.commit().await.unwrap();
    let hex = abandoned_desc.digest.hex().to_string();
    // The hole is there, covered by filler headers (3 MB in pieces of at most 512 KiB).
    let mut ar = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let fillers = ar
        .entries()
        .unwrap()
        .filter(|e| e.as_ref().unwrap().header().entry_type() == tar::EntryType::XGlobalHeader)
        .count();
    assert!(fillers >= 6, "{fillers}");

    let tar = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&file)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{tar:?}");
    assert!(
        tar.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let listing = String::from_utf8(tar.stdout).unwrap();
    assert!(!listing.contains(&hex), "{listing}");
    assert!(listing.contains(first.digest.hex()), "{listing}");
    let extracted = tmp.path().join("x");
    std::fs::create_dir(&extracted).unwrap();
    let x = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(&extracted)
        .output()
        .unwrap();
    assert!(x.status.success() && x.stderr.is_empty(), "{x:?}");
    let mut names: Vec<String> = std::fs::read_dir(extracted.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = s
        .blobs
        .iter()
        .map(|(d, _)| d.digest.hex().to_string())
        .chain([s.manifest.digest().hex().to_string()])
        .collect();
    expected.sort();
    assert_eq!(names, expected);

    let py = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, tarfile\n\
             t = tarfile.open(sys.argv[1])\n\
             print('\\n'.join(m.name for m in t.getmembers()))",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(py.status.success(), "{py:?}");
    let names = String::from_utf8(py.stdout).unwrap();
    assert!(
        !names.contains(&hex) && names.contains("index.json"),
        "{names}"
    );

    assert_eq!(
        skopeo_inspect_raw(&oci_archive(&file, "h"), &[] as &[&str]),
        *s.manifest.bytes()
    );
    let out = tmp.path().join("copied");
    skopeo([
        "copy",
        "--preserve-digests",
        &oci_archive(&file, "h"),
        &oci(&out, "h"),
    ]);
    let src = ArchiveSource::open(lref(&file, Some("h")), &local).unwrap();
    assert!(!src.has_blob(&abandoned_desc));
    assert_eq!(read_tree(&src, &src.resolve().await.unwrap()).await, 2);
}

#[tokio::test]
async fn skopeo_layouts_and_archives_are_read_by_graft() {
    let local = LocalStores::default();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let s = sample("for skopeo");
    put_sample(
        &LayoutSink::open(lref(&a, Some("t")), &local).unwrap(),
        &s,
        Some("t"),
    )
    .await;

    let b = tmp.path().join("b");
    skopeo([
        "copy",
        "--preserve-digests",
        "--all",
        &oci(&a, "t"),
        &oci(&b, "t"),
    ]);
    let src = LayoutSource::open(lref(&b, Some("t"))).unwrap();
    let m = src.resolve().await.unwrap();
    assert_eq!(m.media_type(), mt::OCI_MANIFEST);
    assert_eq!(read_tree(&src, &m).await, 2);

    // The science index, copied by skopeo --all.
    let sci = tmp.path().join("science");
    skopeo([
        "copy",
        "--all",
        &oci(&science_layout("jupyter-sci"), "2.4"),
        &oci(&sci, "2.4"),
    ]);
    let src = LayoutSource::open(lref(&sci, Some("2.4"))).unwrap();
    let m = src.resolve().await.unwrap();
    assert!(m.is_index());
    assert!(read_tree(&src, &m).await > 4);

    // An archive written by skopeo, read without extracting; then graft adds an image to it
    // and skopeo still reads both.
    let file = tmp.path().join("skopeo.tar");
    skopeo([
        "copy",
        "--preserve-digests",
        &oci(&a, "t"),
        &oci_archive(&file, "t"),
    ]);
    let src = ArchiveSource::open(lref(&file, Some("t")), &local).unwrap();
    let m = src.resolve().await.unwrap();
    assert_eq!(m.digest(), s.manifest.digest());
    assert_eq!(read_tree(&src, &m).await, 2);
    let more = sample("added by graft");
    let sink = ArchiveSink::open(lref(&file, Some("more")), &local).unwrap();
    put_sample(&sink, &more, Some("more")).await;
    sink.commit().await.unwrap();
    assert_eq!(
        skopeo_inspect_raw(&oci_archive(&file, "t"), &[] as &[&str]),
        *s.manifest.bytes()
    );
    assert_eq!(
        skopeo_inspect_raw(&oci_archive(&file, "more"), &[] as &[&str]),
        *more.manifest.bytes()
    );
}

#[tokio::test]
async fn umoci_layout_is_read_by_graft() {
    let local = LocalStores::default();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("umoci");
    let d = dir.to_str().unwrap();
    umoci(["init", "--layout", d]);
    umoci(["new", "--image", &format!("{d}:t")]);

    let src = LayoutSource::open(lref(&dir, Some("t"))).unwrap();
    let m = src.resolve().await.unwrap();
    let raw: Value = serde_json::from_slice(m.bytes()).unwrap();
    assert!(
        raw.get("mediaType").is_none(),
        "umoci omits mediaType: {raw}"
    );
    assert_eq!(
        m.media_type(),
        mt::OCI_MANIFEST,
        "taken from the index entry"
    );
    assert_eq!(read_tree(&src, &m).await, 1, "just the config");

    // graft adds a tag to umoci's layout; umoci lists both.
    let s = sample("next to umoci");
    put_sample(
        &LayoutSink::open(lref(&dir, Some("g")), &local).unwrap(),
        &s,
        Some("g"),
    )
    .await;
    let ls = String::from_utf8(umoci(["ls", "--layout", d]).stdout).unwrap();
    let mut tags: Vec<&str> = ls.lines().collect();
    tags.sort();
    assert_eq!(tags, ["g", "t"]);
}

/// Every manifest and blob reachable from the layout's entries: verified when present,
/// `NotFound` when missing (some of the interop layouts are partial on purpose). Returns
/// (blobs read, blobs missing).
async fn walk_layout(layout: &Layout) -> (usize, usize) {
    let (mut read, mut missing) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<Descriptor> = layout.entries().unwrap();
    while let Some(desc) = stack.pop() {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        if !layout.has_blob(&desc).unwrap() {
            let err = layout.read_blob(&desc).await.err().expect("a missing blob");
            assert!(matches!(err, Error::NotFound { .. }), "{err}");
            missing += 1;
            continue;
        }
        let bytes = read_all(layout.read_blob(&desc).await.unwrap())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", layout.path().display()));
        read += 1;
        let is_manifest = mt::is_any_manifest(&desc.media_type)
            || desc.media_type == "application/vnd.oci.artifact.manifest.v1+json";
        if !is_manifest {
            continue;
        }
        let m = layout.read_manifest(&desc).await.unwrap();
        assert_eq!(&m.bytes()[..], &bytes[..]);
        let doc: Value = serde_json::from_slice(m.bytes()).unwrap();
        for key in ["manifests", "layers", "blobs"] {
            for d in doc[key].as_array().into_iter().flatten() {
                stack.push(serde_json::from_value(d.clone()).unwrap());
            }
        }
        if let Some(c) = doc.get("config") {
            stack.push(serde_json::from_value(c.clone()).unwrap());
        }
    }
    (read, missing)
}

fn find_layouts(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.join("oci-layout").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            find_layouts(&e.path(), out);
        }
    }
}

#[tokio::test]
async fn interop_layouts_are_read_by_graft() {
    let root = &interop_layouts();
    assert!(root.is_dir(), "{} is missing", root.display());
    let mut layouts = Vec::new();
    find_layouts(root, &mut layouts);
    layouts.sort();
    assert_eq!(layouts.len(), 9, "{layouts:?}");
    let tmp = tempfile::tempdir().unwrap();
    // Layouts known to be complete: every reachable blob must be there.
    let complete = [
        "oras-e2e/images",
        "oras-e2e/artifacts",
        "regclient/testrepo",
    ];
    for original in &layouts {
        let rel = original.strip_prefix(root).unwrap();
        let dir = tmp.path().join(rel);
        copy_dir(original, &dir);
        let layout = Layout::open(&dir).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        let entries = layout.entries().unwrap();
        assert!(!entries.is_empty(), "{}", rel.display());
        // Every tagged entry resolves by its tag, through the Source API.
        for e in entries.iter().filter(|e| e.annotation(REF_NAME).is_some()) {
            let tag = e.annotation(REF_NAME).unwrap();
            let resolved = layout.resolve(Some(tag)).unwrap();
            if layout.has_blob(&resolved).unwrap() {
                let src = LayoutSource::open(lref(&dir, Some(tag))).unwrap();
                let m = src.resolve().await.unwrap();
                assert_eq!(*m.digest(), resolved.digest, "{}:{tag}", rel.display());
            }
        }
        let (read, missing) = walk_layout(&layout).await;
        eprintln!(
            "{}: {read} blobs verified, {missing} missing",
            rel.display()
        );
        assert!(read > 0, "{}", rel.display());
        if complete.iter().any(|c| rel == Path::new(c)) {
            assert_eq!(missing, 0, "{}", rel.display());
        }
        if rel == Path::new("zarf/docker-containerd-image-store") {
            assert!(missing > 0, "this one is partial on purpose");
        }
    }
}
