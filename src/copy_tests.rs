//! Unit tests of the copy engine against [`MemoryStore`]: the order of writes, each digest
//! written once (also across concurrent copies), nothing rewritten, no tag after a failure,
//! platform filtering, and an appended image copied without reading the base's layers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::image::append::{append, AppendRequest, LocalBlob, NewLayer};
use crate::oci::media_types as mt;
use crate::progress::NoProgress;
use crate::store::memory::{Event, MemoryStore};
use crate::timestamp::Timestamp;

fn reporter() -> Arc<dyn Reporter> {
    Arc::new(NoProgress)
}

fn manifest_of(doc: serde_json::Value) -> RawManifest {
    RawManifest::from_bytes(Bytes::from(serde_json::to_vec(&doc).unwrap()), None).unwrap()
}

/// A config whose `rootfs.diff_ids` match `layers` (the uncompressed bytes are the stored
/// bytes here: the engine never looks inside).
fn config_for(platform: &Platform, layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    serde_json::to_vec(&json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Seed an image manifest for `platform` with these layer contents; returns it.
fn seed_image(store: &MemoryStore, platform: &Platform, layers: &[&[u8]]) -> RawManifest {
    let layers: Vec<Descriptor> = layers
        .iter()
        .map(|b| store.insert_blob(mt::OCI_LAYER_TAR, b.to_vec()))
        .collect();
    let config = store.insert_blob(mt::OCI_CONFIG, config_for(platform, &layers));
    let m = manifest_of(json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }));
    store.insert_manifest(&m);
    m
}

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

fn arm64() -> Platform {
    "linux/arm64".parse().unwrap()
}

/// Seed a two-platform index tagged `tag`: both platforms share the layer `b"shared"`, and
/// each has one layer of its own (`own` + the architecture).
fn seed_index(store: &MemoryStore, tag: &str, own: &str) -> RawManifest {
    let mut entries = Vec::new();
    for p in [amd64(), arm64()] {
        let mine = format!("{own} {}", p.architecture);
        let m = seed_image(store, &p, &[b"shared", mine.as_bytes()]);
        let mut d = m.descriptor();
        d.platform = Some(p);
        entries.push(d);
    }
    let index = manifest_of(json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": entries,
    }));
    store.insert_manifest(&index);
    store.insert_tag(tag, index.digest());
    index
}

fn opts(tags: &[&str]) -> CopyOptions {
    CopyOptions {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..CopyOptions::default()
    }
}

/// How many times each blob was uploaded.
fn uploads(events: &[Event]) -> HashMap<Digest, usize> {
    let mut n = HashMap::new();
    for e in events {
        if let Event::PutBlob(d) = e {
            *n.entry(d.clone()).or_default() += 1;
        }
    }
    n
}

/// Position of the first event that matches.
fn position(events: &[Event], want: &Event) -> usize {
    events
        .iter()
        .position(|e| e == want)
        .unwrap_or_else(|| panic!("{want:?} not in {events:?}"))
}

#[tokio::test]
async fn blobs_come_before_their_manifest_children_before_the_index_and_tags_last() {
    let src = MemoryStore::new("src");
    let index = seed_index(&src, "1.0", "own");
    let dst = MemoryStore::new("dst");
    let report = copy_image(&src.at("1.0"), &dst, &opts(&["1.0", "latest"]), &reporter())
        .await
        .unwrap();
    assert_eq!(report.digest, *index.digest());
    assert_eq!(report.tags, ["1.0", "latest"]);
    let events = dst.events();
    let n = events.len();
    // Both tags at the end, in order; the root is written by them (not before).
    assert_eq!(
        events[n - 2..],
        [
            Event::Tag("1.0".into(), index.digest().clone()),
            Event::Tag("latest".into(), index.digest().clone()),
        ]
    );
    assert!(!events.contains(&Event::PutManifest(index.digest().clone())));
    for entry in &index.view().manifests {
        let child = src.manifest(entry).await.unwrap();
        let at = position(&events, &Event::PutManifest(child.digest().clone()));
        for b in child.blobs() {
            assert!(position(&events, &Event::PutBlob(b.digest.clone())) < at);
        }
        assert!(at < n - 2, "child {} after a tag", child.digest());
    }
    // (The memory sink refuses a manifest whose blobs or children are missing, so the copy
    // succeeding already says the same; the positions say it about the log too.)
    assert_eq!(dst.tags().len(), 2);
}

#[tokio::test]
async fn a_layer_shared_by_two_platforms_is_uploaded_once() {
    let src = MemoryStore::new("src");
    let index = seed_index(&src, "1.0", "own");
    let dst = MemoryStore::new("dst");
    let report = copy_image(&src.at("1.0"), &dst, &opts(&["1.0"]), &reporter())
        .await
        .unwrap();
    let n = uploads(&dst.events());
    // 1 shared layer + 2 own layers + 2 configs.
    assert_eq!(n.len(), 5, "{n:?}");
    assert!(n.values().all(|&c| c == 1), "{n:?}");
    assert_eq!(report.uploaded.count, 5);
    let shared = Digest::sha256(b"shared");
    assert_eq!(n[&shared], 1);
    assert!(dst.contains_manifest(index.digest()));
}

#[tokio::test]
async fn two_copies_at_once_with_one_dedupe_write_each_digest_once() {
    // Two images sharing a layer, copied at the same time into one repository.
    let src = MemoryStore::new("src");
    let a = seed_index(&src, "a", "image a");
    let b = seed_index(&src, "b", "image b");
    let dst = MemoryStore::new("dst");
    let dedupe = Arc::new(Dedupe::default());
    let with = |tag: &str| CopyOptions {
        dedupe: Some(dedupe.clone()),
        ..opts(&[tag])
    };
    let (oa, ob) = (with("a"), with("b"));
    let (sa, sb, rep) = (src.at("a"), src.at("b"), reporter());
    let (ra, rb) = tokio::join!(
        copy_image(&sa, &dst, &oa, &rep),
        copy_image(&sb, &dst, &ob, &rep),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let events = dst.events();
    let n = uploads(&events);
    // shared + 2 own per image + 2 configs per image (configs differ: different diff_ids).
    assert_eq!(n.len(), 9, "{n:?}");
    assert!(n.values().all(|&c| c == 1), "{n:?}");
    // Only the copy that moved the bytes counts them.
    assert_eq!(ra.uploaded.count + rb.uploaded.count, 9);
    let mut manifests = HashMap::new();
    for e in &events {
        if let Event::PutManifest(d) = e {
            *manifests.entry(d.clone()).or_insert(0) += 1;
        }
    }
    assert_eq!(manifests.len(), 4, "{manifests:?}");
    assert!(manifests.values().all(|&c| c == 1), "{manifests:?}");
    assert_eq!(dst.tags()["a"], *a.digest());
    assert_eq!(dst.tags()["b"], *b.digest());
}

#[tokio::test]
async fn two_copies_at_once_without_dedupe_do_upload_twice() {
    // The control for the test above: the memory sink yields on every request, so the two
    // copies really interleave, and without a shared `Dedupe` both upload the shared layer.
    let src = MemoryStore::new("src");
    seed_index(&src, "a", "image a");
    seed_index(&src, "b", "image b");
    let dst = MemoryStore::new("dst");
    let (oa, ob) = (opts(&["a"]), opts(&["b"]));
    let (sa, sb, rep) = (src.at("a"), src.at("b"), reporter());
    let (ra, rb) = tokio::join!(
        copy_image(&sa, &dst, &oa, &rep),
        copy_image(&sb, &dst, &ob, &rep),
    );
    ra.unwrap();
    rb.unwrap();
    let n = uploads(&dst.events());
    assert_eq!(n[&Digest::sha256(b"shared")], 2, "{n:?}");
}

#[tokio::test]
async fn a_second_copy_writes_nothing() {
    let src = MemoryStore::new("src");
    seed_index(&src, "1.0", "own");
    let dst = MemoryStore::new("dst");
    copy_image(&src.at("1.0"), &dst, &opts(&["1.0"]), &reporter())
        .await
        .unwrap();
    dst.clear_events();
    let again = copy_image(&src.at("1.0"), &dst, &opts(&["1.0"]), &reporter())
        .await
        .unwrap();
    assert_eq!(dst.events(), []);
    assert_eq!(again.uploaded.count, 0);
    assert_eq!(again.present.count, 5);
    assert_eq!(again.manifests_written, 0);
    // Two children and the tag already pointing at the root.
    assert_eq!(again.manifests_present, 3);
}

#[tokio::test]
async fn blobs_already_at_the_destination_are_not_uploaded() {
    let src = MemoryStore::new("src");
    seed_index(&src, "1.0", "own");
    let dst = MemoryStore::new("dst");
    dst.insert_blob(mt::OCI_LAYER_TAR, &b"shared"[..]);
    let report = copy_image(&src.at("1.0"), &dst, &opts(&["1.0"]), &reporter())
        .await
        .unwrap();
    let n = uploads(&dst.events());
    assert!(!n.contains_key(&Digest::sha256(b"shared")), "{n:?}");
    assert_eq!((report.present.count, report.uploaded.count), (1, 4));
    // Nothing already present was read from the source either.
    assert!(!src
        .events()
        .contains(&Event::ReadBlob(Digest::sha256(b"shared"))));
}

#[tokio::test]
async fn a_failed_blob_write_leaves_no_tag() {
    let src = MemoryStore::new("src");
    let index = seed_index(&src, "1.0", "own");
    let dst = MemoryStore::new("dst");
    dst.fail_writes_of(&Digest::sha256(b"own arm64"));
    let e = copy_image(&src.at("1.0"), &dst, &opts(&["1.0"]), &reporter())
        .await
        .unwrap_err();
    assert!(e.root().to_string().contains("injected"), "{e}");
    assert!(dst.tags().is_empty());
    assert!(!dst.contains_manifest(index.digest()));
    // No manifest at all: blobs all come first, and one of them failed.
    assert!(
        !dst.events()
            .iter()
            .any(|e| matches!(e, Event::PutManifest(_) | Event::Tag(..))),
        "{:?}",
        dst.events()
    );
}

#[tokio::test]
async fn a_failed_child_manifest_write_leaves_no_tag() {
    let src = MemoryStore::new("src");
    let index = seed_index(&src, "1.0", "own");
    let dst = MemoryStore::new("dst");
    dst.fail_writes_of(&index.view().manifests[1].digest);
    copy_image(&src.at("1.0"), &dst, &opts(&["1.0", "latest"]), &reporter())
        .await
        .unwrap_err();
    assert!(dst.tags().is_empty());
    assert!(!dst.contains_manifest(index.digest()));
}

#[tokio::test]
async fn a_platform_filter_copies_only_that_platform() {
    let src = MemoryStore::new("src");
    let index = seed_index(&src, "1.0", "own");
    let arm = src.manifest(&index.view().manifests[1]).await.unwrap();
    let amd = src.manifest(&index.view().manifests[0]).await.unwrap();
    let dst = MemoryStore::new("dst");
    let o = CopyOptions {
        platform: Some(arm64()),
        ..opts(&["1.0"])
    };
    let report = copy_image(&src.at("1.0"), &dst, &o, &reporter())
        .await
        .unwrap();
    // The tag points at the arm64 manifest itself, not at an index.
    assert_eq!(report.digest, *arm.digest());
    assert_eq!(dst.tags()["1.0"], *arm.digest());
    assert!(!dst.contains_manifest(index.digest()));
    assert!(!dst.contains_manifest(amd.digest()));
    for b in arm.blobs() {
        assert!(dst.contains_blob(&b.digest));
    }
    assert!(!dst.contains_blob(&Digest::sha256(b"own amd64")));
    assert!(!dst.contains_blob(&amd.view().config.as_ref().unwrap().digest));
    assert_eq!(uploads(&dst.events()).len(), 3);
}

#[tokio::test]
async fn an_unknown_platform_is_an_error_and_writes_nothing() {
    let src = MemoryStore::new("src");
    seed_index(&src, "1.0", "own");
    let dst = MemoryStore::new("dst");
    let o = CopyOptions {
        platform: Some("linux/s390x".parse().unwrap()),
        ..opts(&["1.0"])
    };
    let e = copy_image(&src.at("1.0"), &dst, &o, &reporter())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert_eq!(dst.events(), []);
}

fn append_request(layer: &Bytes) -> AppendRequest<'static> {
    AppendRequest {
        layers: vec![NewLayer {
            desc: Descriptor::new(mt::OCI_LAYER_TAR, Digest::sha256(layer), layer.len() as u64),
            diff_id: Digest::sha256(layer),
            blob: LocalBlob::Bytes(layer.clone()),
            created_by: "compat".into(),
        }],
        runtime: Default::default(),
        labels: BTreeMap::new(),
        platform_labels: None,
        annotations: BTreeMap::new(),
        inherit_annotations: false,
        base_name: None,
        platforms: None,
        created: Timestamp(0),
    }
}

/// The base layers of the two-platform image [`seed_index`] writes.
fn base_layers() -> [Digest; 3] {
    [
        Digest::sha256(b"shared"),
        Digest::sha256(b"own amd64"),
        Digest::sha256(b"own arm64"),
    ]
}

fn layer_reads(store: &MemoryStore) -> Vec<Digest> {
    let layers = base_layers();
    store
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::ReadBlob(d) if layers.contains(&d) => Some(d),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_appended_image_is_copied_without_reading_the_base_layers() {
    // The destination already has the base image (a refresh into the registry it came from):
    // only the new layer, configs and manifests move; the base store is asked for no layer.
    let base = MemoryStore::new("base");
    let base_index = seed_index(&base, "1.0", "own");
    let dst = MemoryStore::new("dst");
    copy_image(&base.at("1.0"), &dst, &opts(&["1.0"]), &reporter())
        .await
        .unwrap();
    base.clear_events();
    dst.clear_events();

    let layer = Bytes::from_static(b"the compat layer");
    let assembled = append(Arc::new(base.at("1.0")), &append_request(&layer))
        .await
        .unwrap();
    assert_eq!(assembled.base_root, *base_index.digest());
    assert_eq!(assembled.platforms.len(), 2);
    // Planning read the base's manifests and configs, never a layer.
    assert_eq!(layer_reads(&base), []);
    let report = copy_image(&assembled.source, &dst, &opts(&["2.0"]), &reporter())
        .await
        .unwrap();
    assert_eq!(report.digest, assembled.root.digest);
    assert_eq!(layer_reads(&base), []);
    // The new layer once (both platforms list it) and one new config per platform.
    let n = uploads(&dst.events());
    assert_eq!(n.len(), 3, "{n:?}");
    assert_eq!(n[&Digest::sha256(&layer)], 1);
    assert_eq!(report.present.count, 3);
    assert_eq!(dst.tags()["2.0"], assembled.root.digest);
    // The tag goes last, after the new index.
    let events = dst.events();
    assert_eq!(
        events.last(),
        Some(&Event::Tag("2.0".into(), assembled.root.digest.clone()))
    );
}

#[tokio::test]
async fn an_appended_image_into_an_empty_sink_reads_each_base_layer_once() {
    // The counterpart: with nothing at the destination the base layers do come from the base
    // store, each once although two platforms share one of them.
    let base = MemoryStore::new("base");
    seed_index(&base, "1.0", "own");
    let layer = Bytes::from_static(b"the compat layer");
    let assembled = append(Arc::new(base.at("1.0")), &append_request(&layer))
        .await
        .unwrap();
    let dst = MemoryStore::new("dst");
    copy_image(&assembled.source, &dst, &opts(&["2.0"]), &reporter())
        .await
        .unwrap();
    let mut reads = layer_reads(&base);
    reads.sort();
    let mut want = base_layers().to_vec();
    want.sort();
    assert_eq!(reads, want);
}

/// An index listing `entries` (seeded in `store`).
fn seed_index_of(store: &MemoryStore, entries: Vec<Descriptor>) -> RawManifest {
    let index = manifest_of(json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": entries,
    }));
    store.insert_manifest(&index);
    index
}

#[tokio::test]
async fn nested_indexes_are_walked_without_recursion_up_to_the_limit() {
    let src = MemoryStore::new("src");
    let image = seed_image(&src, &amd64(), &[b"deep"]);
    // MAX_INDEX_DEPTH + 1 indexes: the outermost (the root) at depth 0, the innermost at
    // MAX_INDEX_DEPTH - 1 ... is fine; one more level is refused.
    let mut chain = vec![image.clone()];
    for _ in 0..MAX_INDEX_DEPTH {
        let inner = chain.last().unwrap().descriptor();
        chain.push(seed_index_of(&src, vec![inner]));
    }
    let root = chain.last().unwrap().clone();
    let graph = Graph::walk(&src, root.clone(), 4).await.unwrap();
    // Children before parents: the image first, then each index outwards, the root last.
    let order: Vec<&Digest> = graph.manifests.iter().map(|m| m.digest()).collect();
    let expected: Vec<&Digest> = chain.iter().map(|m| m.digest()).collect();
    assert_eq!(order, expected);
    assert_eq!(graph.layers.len(), 1);
    assert_eq!(graph.configs.len(), 1);

    let deeper = seed_index_of(&src, vec![root.descriptor()]);
    let err = Graph::walk(&src, deeper, 4).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(
        text.contains(&format!("index {} in memory:src", chain[1].digest()))
            && text.contains("more than 16 levels"),
        "{text}"
    );
}

#[tokio::test]
async fn a_chain_of_thousands_of_indexes_fails_cleanly() {
    // Deep enough to overflow the stack of a recursive walk.
    let src = MemoryStore::new("src");
    let mut top = seed_image(&src, &amd64(), &[b"x"]);
    for _ in 0..5000 {
        top = seed_index_of(&src, vec![top.descriptor()]);
    }
    let err = Graph::walk(&src, top, 4).await.unwrap_err();
    assert!(err.to_string().contains("levels deep"), "{err}");
}

#[tokio::test]
async fn graphs_of_more_than_the_limit_of_manifests_are_refused_before_fetching() {
    let src = MemoryStore::new("src");
    let image = seed_image(&src, &amd64(), &[b"one"]);
    // Entries that exist nowhere: the walk must refuse before asking for any.
    let entries: Vec<Descriptor> = (0..MAX_GRAPH_MANIFESTS)
        .map(|i| {
            let mut d = image.descriptor();
            d.digest = Digest::sha256(format!("missing {i}").as_bytes());
            d
        })
        .collect();
    let root = seed_index_of(&src, entries);
    let err = Graph::walk(&src, root.clone(), 4).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("index {} in memory:src", root.digest()))
            && err.to_string().contains("more than 10000 manifests"),
        "{err}"
    );

    // Spread over two levels: counted across the whole graph. Real leaves (one image,
    // told apart by an annotation), so the walk gets as far as `b`.
    let half = MAX_GRAPH_MANIFESTS / 2;
    let config = image.view().config.clone().unwrap();
    let leaves = |from: usize| -> Vec<Descriptor> {
        (from..from + half)
            .map(|i| {
                src.insert_manifest(&manifest_of(json!({
                    "schemaVersion": 2,
                    "mediaType": mt::OCI_MANIFEST,
                    "config": config,
                    "layers": [],
                    "annotations": {"n": i.to_string()},
                })))
            })
            .collect()
    };
    let a = seed_index_of(&src, leaves(0));
    let b = seed_index_of(&src, leaves(half));
    let root = seed_index_of(&src, vec![a.descriptor(), b.descriptor()]);
    let err = Graph::walk(&src, root, 4).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("index {} in memory:src", b.digest()))
            && err.to_string().contains("more than 10000 manifests"),
        "{err}"
    );
}
