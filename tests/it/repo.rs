//! The store's repository handle (`graft::store::repo`) against a real registry behind a
//! counting proxy, and over OCI layouts: tags, HEAD-only resolve, tag-only PUT, delete,
//! namespaces of multi-image layouts.

use bytes::Bytes;

use graft::oci::{media_types, Descriptor, Digest, RawManifest};
use graft::reference::ImageRef;
use graft::store::open::{open_repository, Endpoint};
use graft::store::registry::RegistryConfig;

use crate::support::proxy::Proxy;
use crate::support::registry::Registry;

fn endpoint() -> Endpoint {
    Endpoint::new(RegistryConfig {
        tls_verify: false,
        ..RegistryConfig::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Requests that touch blobs or read manifests (GET).
fn reads_and_blob_requests(proxy: &Proxy) -> Vec<(String, String)> {
    proxy
        .requests()
        .into_iter()
        .filter(|(m, p)| p.contains("/blobs/") || (m == "GET" && p.contains("/manifests/")))
        .collect()
}

#[test]
fn registry_repository_lists_resolves_retags_and_deletes_with_minimal_requests() {
    let reg = Registry::plain();
    reg.seed("jupyter-sci", "science/jupyter:2.4");
    let proxy = Proxy::start(reg.addr());
    let image: ImageRef = format!("docker://{}", proxy.image_ref("science/jupyter:2.4"))
        .parse()
        .unwrap();
    let ep = endpoint();
    let rt = runtime();
    rt.block_on(async {
        let repo = open_repository(&image, &ep, true).unwrap();
        assert_eq!(
            repo.name(),
            format!("docker://{}", proxy.image_ref("science/jupyter"))
        );
        let caps = repo.capabilities();
        assert!(caps.delete && caps.mount);

        // HEAD-only resolve: one request, no body read.
        proxy.clear();
        let digest = repo.resolve("2.4").await.unwrap().expect("tag exists");
        let sent: Vec<_> = proxy
            .requests()
            .into_iter()
            .filter(|(_, p)| p != "/v2/")
            .collect();
        assert_eq!(
            sent,
            vec![(
                "HEAD".to_string(),
                "/v2/science/jupyter/manifests/2.4".to_string()
            )]
        );
        assert_eq!(repo.resolve("nope").await.unwrap(), None);

        // Tag-only PUT: one manifest GET to have the bytes, one PUT; no blob, no child.
        let m = repo.tagged("2.4").await.unwrap().expect("tag exists");
        assert_eq!(*m.digest(), digest);
        proxy.clear();
        repo.put_tag(&m, "stable").await.unwrap();
        assert_eq!(proxy.count("PUT", "/manifests/stable"), 1);
        assert!(
            reads_and_blob_requests(&proxy).is_empty(),
            "{:?}",
            proxy.requests()
        );
        let mut tags = repo.list_tags().await.unwrap();
        tags.sort();
        assert_eq!(tags, vec!["2.4", "stable"]);
        assert_eq!(repo.resolve("stable").await.unwrap(), Some(digest.clone()));

        // Delete by digest takes every tag on it.
        repo.delete_manifest(&digest).await.unwrap();
        assert_eq!(repo.resolve("2.4").await.unwrap(), None);
        assert_eq!(repo.resolve("stable").await.unwrap(), None);
        let again = repo.delete_manifest(&digest).await.unwrap_err();
        assert!(again.to_string().contains("not found"), "{again}");

        // Registries without the referrers API answer None (distribution 2.8).
        assert_eq!(repo.referrers(&digest).await.unwrap(), None);
    });
}

#[test]
fn a_repository_opened_read_only_refuses_writes_and_unknown_repositories_fail_clearly() {
    let reg = Registry::plain();
    let image: ImageRef = format!("docker://{}", reg.image_ref("nothing/here"))
        .parse()
        .unwrap();
    let rt = runtime();
    rt.block_on(async {
        let repo = open_repository(&image, &endpoint(), false).unwrap();
        let e = repo.list_tags().await.unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
    });
    let dir = tempfile::tempdir().unwrap();
    let missing: ImageRef = format!("oci:{}", dir.path().join("none").display())
        .parse()
        .unwrap();
    let e = open_repository(&missing, &endpoint(), false)
        .err()
        .expect("no layout there");
    assert!(e.to_string().contains("no such directory"), "{e}");
}

/// A small image manifest over one config blob, written into `repo` under `tag`.
async fn put_small_image(
    repo: &dyn graft::store::repo::Repository,
    tag: &str,
    seed: &str,
) -> Digest {
    let config = Bytes::from(format!("{{\"seed\":\"{seed}\"}}"));
    let config_desc = Descriptor::new(
        media_types::OCI_CONFIG,
        Digest::sha256(&config),
        config.len() as u64,
    );
    repo.put_blob(&config_desc, config, true).await.unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {
            "mediaType": media_types::OCI_CONFIG,
            "digest": config_desc.digest.to_string(),
            "size": config_desc.size,
        },
        "layers": [],
    });
    let m = RawManifest::from_bytes(
        Bytes::from(serde_json::to_vec(&manifest).unwrap()),
        Some(media_types::OCI_MANIFEST),
    )
    .unwrap();
    repo.put_tag(&m, tag).await.unwrap();
    m.digest().clone()
}

#[test]
fn layout_repositories_keep_mirrored_repositories_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export");
    let ep = endpoint();
    let rt = runtime();
    rt.block_on(async {
        let a: ImageRef = format!("oci:{}:reg.example/team/a:1.0", path.display())
            .parse()
            .unwrap();
        let b: ImageRef = format!("oci:{}:reg.example/team/b:1.0", path.display())
            .parse()
            .unwrap();
        let repo_a = open_repository(&a, &ep, true).unwrap();
        let repo_b = open_repository(&b, &ep, true).unwrap();
        let da = put_small_image(repo_a.as_ref(), "1.0", "a").await;
        let db = put_small_image(repo_b.as_ref(), "1.0", "b").await;
        put_small_image(repo_a.as_ref(), "2.0", "a2").await;
        assert_eq!(repo_a.list_tags().await.unwrap(), vec!["1.0", "2.0"]);
        assert_eq!(repo_b.list_tags().await.unwrap(), vec!["1.0"]);
        assert_eq!(repo_a.resolve("1.0").await.unwrap(), Some(da));
        assert_eq!(repo_b.resolve("1.0").await.unwrap(), Some(db.clone()));
        assert_eq!(
            repo_b.reference(Some("sha256-x.sig")).to_string(),
            format!("oci:{}:reg.example/team/b:sha256-x.sig", path.display())
        );
        // The whole layout, opened without a name, lists every entry as written.
        let whole: ImageRef = format!("oci:{}", path.display()).parse().unwrap();
        let all = open_repository(&whole, &ep, false).unwrap();
        assert_eq!(
            all.list_tags().await.unwrap(),
            vec![
                "reg.example/team/a:1.0",
                "reg.example/team/b:1.0",
                "reg.example/team/a:2.0"
            ]
        );
        // Layout directories delete (their index.json entries: tests/it/prune.rs).
        assert!(all.capabilities().delete);
        // Read-only: no writes.
        let m = all.tagged("reg.example/team/b:1.0").await.unwrap().unwrap();
        let e = all.put_tag(&m, "x").await.unwrap_err();
        assert!(e.to_string().contains("reading only"), "{e}");
    });
}
