//! The peer tools are the pinned versions, and the referrers-API registry answers the
//! referrers API (distribution 2.8 does not): what every interop test relies on.

use crate::support::peers::{self, Peer, RefRegistry};
use crate::support::tools::{science_oci_ref, skopeo};

#[test]
fn every_pinned_tool_runs_at_its_pinned_version() {
    let peer = Peer::new();
    let cases: [(&str, &[&str]); 5] = [
        ("cosign", &["version"]),
        ("cosign3", &["version"]),
        ("crane", &["version"]),
        ("oras", &["version"]),
        ("regctl", &["version"]),
    ];
    for (name, args) in cases {
        let out = peer.ok(name, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let want = peers::version(name);
        // oras prints its version without the leading `v`.
        assert!(
            text.contains(want) || text.contains(want.trim_start_matches('v')),
            "{name}: expected version {want} in:\n{text}"
        );
    }
}

#[test]
fn refreg_serves_the_referrers_api_that_oras_uses() {
    let reg = RefRegistry::start();
    let peer = Peer::new().plain_http(reg.host());
    // An image from the sample science layout, pushed by skopeo (not graft: this checks the
    // harness, not graft).
    let image = reg.plain_ref("science/astro:1.0");
    skopeo([
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &science_oci_ref("astro-base"),
        &reg.docker_ref("science/astro:1.0"),
    ]);
    std::fs::write(peer.home().join("note.txt"), b"a note\n").unwrap();
    peer.oras([
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/vnd.graft.test.note",
        &image,
        "note.txt",
    ]);
    let subject = String::from_utf8(peer.crane(["digest", &image]).stdout).unwrap();
    let url = format!(
        "http://{}/v2/science/astro/referrers/{}",
        reg.host(),
        subject.trim()
    );
    let body = crate::support::block_on(async move {
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap()
    });
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let manifests = index["manifests"].as_array().expect("a referrers index");
    assert_eq!(manifests.len(), 1, "{index}");
}
