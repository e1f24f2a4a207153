//! Writing signatures and attestations next to an image.
//!
//! Two storage forms, as cosign uses them:
//! - the **tag scheme**: `sha256-<hex>.sig` (simple-signing layers) and `sha256-<hex>.att`
//!   (DSSE layers) in the image's repository, each an OCI manifest whose layers accumulate:
//!   graft reads the manifest, keeps every existing layer descriptor exactly as it was, appends
//!   its own, writes a new manifest of its own (with cosign's small config listing the layer
//!   digests) and reads the tag back to confirm;
//! - **OCI 1.1 referrers**: a sigstore bundle blob in a manifest with `artifactType` and
//!   `subject`, pushed by digest, then listed in the `sha256-<hex>` referrers fallback index
//!   when the registry has no referrers API (read, merge, write, confirm).
//!
//! Registries without conditional writes cannot make a read-modify-write of a tag atomic: a
//! writer that read the tag before another's write and writes after it drops that entry. graft
//! narrows the window (it re-checks the tag digest just before writing), detects the loss
//! afterwards (it re-reads and retries when its entry is gone) and settles once more when it
//! saw contention; an overwrite that lands after both checks still goes unnoticed
//! (docs/decisions.md).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::oci::{media_types as mt, Descriptor, Digest, RawManifest};
use crate::sign::bundle::{Bundle, BUNDLE_V03_MEDIA_TYPE};
use crate::sign::dsse::{Envelope, Statement, IN_TOTO_PAYLOAD_TYPE};
use crate::sign::keys::{PublicKey, SigningKey};
use crate::sign::payload::SimpleSigning;
use crate::sign::repo::Repo;
pub use crate::store::update::Written;
use crate::store::update::{update_tag, Built, TagMerge};

/// Layer media type of a cosign simple-signing signature.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer media type of a DSSE envelope (cosign `.att` layers).
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Layer annotation holding the base64 signature of a simple-signing layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// Layer annotation with the signer's public-key hint (base64 SHA-256 of the SPKI DER). Not
/// signed and never trusted: it only lets verification tell "signed by another key" from
/// "altered after signing". Other tools ignore it.
pub const KEY_HINT_ANNOTATION: &str = "dev.graft/key-hint";
/// Predicate type of a cosign v3 image signature (a DSSE statement in a bundle).
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Predicate type of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Referrer manifest annotation: what the bundle holds.
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Referrer manifest annotation: the predicate type of a DSSE bundle.
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// Layer annotation: a file name for the bundle.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The config cosign writes into signature manifests has zero timestamps.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// The OCI empty descriptor's content.
const EMPTY_JSON: &[u8] = b"{}";

/// `sha256-<hex>.sig`: where cosign keeps the signatures of `digest`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}.sig", digest.tag_form())
}

/// `sha256-<hex>.att`: where cosign keeps the attestations of `digest`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("{}.att", digest.tag_form())
}

/// `sha256-<hex>`: the referrers tag-schema fallback index of `digest`.
pub fn referrers_tag(digest: &Digest) -> String {
    digest.tag_form()
}

/// Which storage form(s) to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// cosign's tag scheme (`.sig` / `.att`), read by every cosign and by containers/image.
    #[default]
    Simple,
    /// A sigstore bundle v0.3 as an OCI 1.1 referrer, as cosign v3 writes.
    Bundle,
    /// Both.
    Both,
}

impl Format {
    fn simple(self) -> bool {
        matches!(self, Format::Simple | Format::Both)
    }
    fn bundle(self) -> bool {
        matches!(self, Format::Bundle | Format::Both)
    }
}

/// How to sign.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// Storage form(s).
    pub format: Format,
    /// `-a key=value` annotations: `optional` of the simple-signing payload, subject
    /// annotations of the bundle's statement.
    pub annotations: BTreeMap<String, String>,
    /// The `docker-reference` to sign; default [`Repo::identity`].
    pub identity: Option<String>,
    /// Read-merge-write attempts per tag before giving up.
    pub max_attempts: u32,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            format: Format::Simple,
            annotations: BTreeMap::new(),
            identity: None,
            max_attempts: 10,
        }
    }
}

/// What [`sign`] or [`attest`] wrote for one digest.
#[derive(Debug, Clone, Serialize)]
pub struct AttachReport {
    /// The signed image digest.
    pub digest: Digest,
    /// The `.sig`/`.att` tag update (tag scheme).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<Written>,
    /// The bundle referrer manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Written>,
    /// The referrers fallback index update (registries without the referrers API, layouts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers_index: Option<Written>,
}

impl AttachReport {
    /// Whether anything new was written.
    pub fn added(&self) -> bool {
        [&self.tag, &self.referrer, &self.referrers_index]
            .iter()
            .any(|w| w.as_ref().is_some_and(|w| w.added))
    }

    /// Lost races over all writes.
    pub fn lost_races(&self) -> u32 {
        [&self.tag, &self.referrer, &self.referrers_index]
            .iter()
            .filter_map(|w| w.as_ref().map(|w| w.lost_races))
            .sum()
    }
}

fn check_annotations(a: &BTreeMap<String, String>) -> Result<()> {
    if a.contains_key("timestamp") {
        return Err(Error::Unsupported(
            "annotation \"timestamp\" is reserved: containers/image requires optional.timestamp \
             to be an integer and would reject the signature; use another key"
                .into(),
        ));
    }
    if let Some(k) = a.keys().find(|k| k.is_empty()) {
        return Err(Error::Unsupported(format!("empty annotation key {k:?}")));
    }
    Ok(())
}

/// Sign `subject` (a manifest or index in `repo`) with `key`.
pub async fn sign(
    repo: &Repo,
    subject: &Descriptor,
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<AttachReport> {
    check_annotations(&opts.annotations)?;
    let identity = opts.identity.clone().unwrap_or_else(|| repo.identity());
    let public = key.public_key();
    let mut report = AttachReport {
        digest: subject.digest.clone(),
        tag: None,
        referrer: None,
        referrers_index: None,
    };
    if opts.format.simple() {
        let payload = Bytes::from(
            SimpleSigning::new(&identity, &subject.digest, &opts.annotations).to_bytes(),
        );
        let sig = B64.encode(key.sign(&payload));
        let mut annotations = BTreeMap::new();
        annotations.insert(SIGNATURE_ANNOTATION.to_string(), sig.clone());
        annotations.insert(KEY_HINT_ANNOTATION.to_string(), public.hint());
        let payload_digest = Digest::sha256(&payload);
        let is_ours =
            |layer: &Value| same_simple_signature(layer, &payload_digest, &sig, &payload, &public);
        report.tag = Some(
            append_layer(
                repo,
                &signature_tag(&subject.digest),
                SIMPLE_SIGNING_MEDIA_TYPE,
                payload.clone(),
                annotations,
                &is_ours,
                opts.max_attempts,
            )
            .await
            .map_err(|e| e.context(format!("signing {}", repo.describe(&subject.digest))))?,
        );
    }
    if opts.format.bundle() {
        let statement = Statement::with_subject_annotations(
            &identity,
            &subject.digest,
            Some(&opts.annotations),
            COSIGN_SIGN_PREDICATE,
            json!({}),
        );
        let (referrer, index) =
            push_bundle(repo, subject, key, &statement, opts.max_attempts).await?;
        report.referrer = Some(referrer);
        report.referrers_index = index;
    }
    Ok(report)
}

/// A layer equivalent to ours: same payload, and our signature or any other valid signature
/// by the same key over it.
fn same_simple_signature(
    layer: &Value,
    payload_digest: &Digest,
    sig: &str,
    payload: &[u8],
    key: &PublicKey,
) -> bool {
    if layer.get("digest").and_then(Value::as_str) != Some(&payload_digest.to_string()) {
        return false;
    }
    let theirs = layer
        .pointer("/annotations/dev.cosignproject.cosign~1signature")
        .and_then(Value::as_str)
        .unwrap_or("");
    theirs == sig
        || B64
            .decode(theirs)
            .map(|s| key.verify(payload, &s))
            .unwrap_or(false)
}

/// How to attest.
#[derive(Debug, Clone)]
pub struct AttestOptions {
    /// Storage form(s).
    pub format: Format,
    /// Read-merge-write attempts per tag before giving up.
    pub max_attempts: u32,
}

impl Default for AttestOptions {
    fn default() -> Self {
        AttestOptions {
            format: Format::Simple,
            max_attempts: 10,
        }
    }
}

/// The statement `graft attest` signs for `subject` in `repo`: subject name = the repository
/// (as cosign), digest = the image digest.
pub fn attestation_statement(
    repo: &Repo,
    subject: &Digest,
    predicate_type: &str,
    predicate: Value,
) -> Statement {
    Statement::new(&repo.identity(), subject, predicate_type, predicate)
}

/// Attach `statement` (whose subject must be `subject`) to `subject`, signed with `key` in a
/// DSSE envelope.
pub async fn attest(
    repo: &Repo,
    subject: &Descriptor,
    key: &SigningKey,
    statement: &Statement,
    opts: &AttestOptions,
) -> Result<AttachReport> {
    if !statement.has_subject(&subject.digest) {
        return Err(Error::Invalid {
            what: "attestation statement".into(),
            reason: format!("no subject carries {}", subject.digest),
        });
    }
    let mut report = AttachReport {
        digest: subject.digest.clone(),
        tag: None,
        referrer: None,
        referrers_index: None,
    };
    if opts.format.simple() {
        let envelope =
            Bytes::from(Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement.bytes, key).to_bytes());
        let mut annotations = BTreeMap::new();
        annotations.insert(SIGNATURE_ANNOTATION.to_string(), String::new());
        annotations.insert(
            PREDICATE_TYPE_ANNOTATION.to_string(),
            statement.predicate_type().to_string(),
        );
        annotations.insert(KEY_HINT_ANNOTATION.to_string(), key.public_key().hint());
        let env_digest = Digest::sha256(&envelope).to_string();
        let is_ours =
            |layer: &Value| layer.get("digest").and_then(Value::as_str) == Some(&env_digest);
        report.tag = Some(
            append_layer(
                repo,
                &attestation_tag(&subject.digest),
                DSSE_MEDIA_TYPE,
                envelope,
                annotations,
                &is_ours,
                opts.max_attempts,
            )
            .await
            .map_err(|e| e.context(format!("attesting {}", repo.describe(&subject.digest))))?,
        );
    }
    if opts.format.bundle() {
        let (referrer, index) =
            push_bundle(repo, subject, key, statement, opts.max_attempts).await?;
        report.referrer = Some(referrer);
        report.referrers_index = index;
    }
    Ok(report)
}

/// The config cosign writes for a signature/attestation manifest: zero times, one history
/// entry and one diff_id (the layer digest) per layer.
pub fn cosign_config(layer_digests: &[String]) -> Vec<u8> {
    let history: Vec<Value> = layer_digests
        .iter()
        .map(|_| json!({ "created": ZERO_TIME }))
        .collect();
    serde_json::to_vec(&json!({
        "architecture": "",
        "created": ZERO_TIME,
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
        "config": {},
    }))
    .expect("serialising a config cannot fail")
}

/// A descriptor value in cosign's key order (`mediaType`, `size`, `digest`, `annotations`).
fn descriptor_value(
    media_type: &str,
    bytes: &[u8],
    annotations: Option<&BTreeMap<String, String>>,
) -> Value {
    let mut m = Map::new();
    m.insert("mediaType".into(), json!(media_type));
    m.insert("size".into(), json!(bytes.len()));
    m.insert("digest".into(), json!(Digest::sha256(bytes).to_string()));
    if let Some(a) = annotations.filter(|a| !a.is_empty()) {
        m.insert("annotations".into(), json!(a));
    }
    Value::Object(m)
}

fn manifest_from_value(v: &Value, media_type: &str) -> Result<RawManifest> {
    let bytes = serde_json::to_vec(v).map_err(|e| Error::Json {
        what: "signature manifest".into(),
        source: e,
    })?;
    RawManifest::from_bytes(Bytes::from(bytes), Some(media_type))
}

/// The cosign signature manifest for `layers` (old ones verbatim, then ours), and its config.
fn cosign_manifest(layers: Vec<Value>) -> Result<Built> {
    let mut digests = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let d = l
            .get("digest")
            .and_then(Value::as_str)
            .filter(|d| d.parse::<Digest>().is_ok())
            .ok_or_else(|| Error::Invalid {
                what: "signature manifest".into(),
                reason: format!("layer {i} has no valid digest; refusing to rewrite it"),
            })?;
        digests.push(d.to_string());
    }
    let config = Bytes::from(cosign_config(&digests));
    let config_desc = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(&config), config.len() as u64);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": descriptor_value(mt::OCI_CONFIG, &config, None),
        "layers": layers,
    });
    Ok((
        manifest_from_value(&manifest, mt::OCI_MANIFEST)?,
        vec![(config_desc, config)],
    ))
}

/// The entries (`layers` or `manifests`) of the document at a shared tag, exactly as stored.
fn entries_of(m: &RawManifest, field: &str, tag: &str) -> Result<Vec<Value>> {
    let refuse = |reason: String| Error::Invalid {
        what: format!("{tag} ({})", m.digest()),
        reason: format!("{reason}; refusing to overwrite it"),
    };
    let v: Value = serde_json::from_slice(m.bytes()).map_err(|e| Error::Json {
        what: format!("{tag} ({})", m.digest()),
        source: e,
    })?;
    let want_index = field == "manifests";
    if want_index != m.is_index() {
        return Err(refuse(format!(
            "it is {} {}, not {}",
            if m.is_index() {
                "an index"
            } else {
                "a manifest"
            },
            m.media_type(),
            if want_index {
                "an index"
            } else {
                "an image manifest"
            }
        )));
    }
    match v.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.clone()),
        Some(_) => Err(refuse(format!("its {field:?} is not a list"))),
    }
}

/// One shared-tag update: the document at `tag` lists entries in `field`; ours is `ours`
/// (equivalent ones are recognised by `is_ours`); `build` makes the document for a list, after
/// `extra_blobs` are stored.
struct Merge<'a> {
    tag: &'a str,
    field: &'a str,
    ours: &'a Value,
    is_ours: &'a (dyn Fn(&Value) -> bool + Sync),
    build: &'a (dyn Fn(Vec<Value>) -> Result<Built> + Sync),
    extra_blobs: &'a [(Descriptor, Bytes)],
}

impl TagMerge for Merge<'_> {
    fn contains(&self, doc: &RawManifest) -> Result<bool> {
        Ok(entries_of(doc, self.field, self.tag)?
            .iter()
            .any(self.is_ours))
    }

    fn blobs(&self, current: Option<&RawManifest>) -> Result<Vec<(Descriptor, Bytes)>> {
        // Blobs the document already lists exist.
        let entries = match current {
            Some(m) => entries_of(m, self.field, self.tag)?,
            None => Vec::new(),
        };
        let listed: std::collections::HashSet<&str> = entries
            .iter()
            .filter_map(|e| e.get("digest").and_then(Value::as_str))
            .collect();
        Ok(self
            .extra_blobs
            .iter()
            .filter(|(d, _)| !listed.contains(d.digest.to_string().as_str()))
            .cloned()
            .collect())
    }

    fn merge(&self, current: Option<&RawManifest>) -> Result<Built> {
        let mut entries = match current {
            Some(m) => entries_of(m, self.field, self.tag)?,
            None => Vec::new(),
        };
        entries.push(self.ours.clone());
        (self.build)(entries)
    }
}

/// Read-merge-write-confirm of the document at `m.tag` ([`update_tag`]): keep its entries
/// (`m.field`) verbatim, add `m.ours` unless `m.is_ours` finds an equivalent entry, write what
/// `m.build` makes of the list, then read the tag back until our entry is confirmed there.
async fn merge_into_tag(repo: &Repo, m: Merge<'_>, max_attempts: u32) -> Result<Written> {
    update_tag(repo.store(), m.tag, &m, max_attempts).await
}

/// Append one layer (blob + descriptor) to the cosign manifest at `tag`.
async fn append_layer(
    repo: &Repo,
    tag: &str,
    media_type: &str,
    blob: Bytes,
    annotations: BTreeMap<String, String>,
    is_ours: &(dyn Fn(&Value) -> bool + Sync),
    max_attempts: u32,
) -> Result<Written> {
    let desc = Descriptor::new(media_type, Digest::sha256(&blob), blob.len() as u64);
    let layer = descriptor_value(media_type, &blob, Some(&annotations));
    let blobs = [(desc, blob)];
    let merge = Merge {
        tag,
        field: "layers",
        ours: &layer,
        is_ours,
        build: &cosign_manifest,
        extra_blobs: &blobs,
    };
    merge_into_tag(repo, merge, max_attempts).await
}

/// Push a DSSE bundle of `statement` as a referrer of `subject`, and list it in the fallback
/// index unless the registry has the referrers API.
async fn push_bundle(
    repo: &Repo,
    subject: &Descriptor,
    key: &SigningKey,
    statement: &Statement,
    max_attempts: u32,
) -> Result<(Written, Option<Written>)> {
    let ctx = || {
        format!(
            "storing a sigstore bundle for {}",
            repo.describe(&subject.digest)
        )
    };
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement.bytes, key);
    let bundle = Bytes::from(Bundle::dsse(envelope, &key.public_key()).to_bytes());
    let bundle_digest = Digest::sha256(&bundle);
    let empty = Descriptor::new(
        mt::OCI_EMPTY,
        Digest::sha256(EMPTY_JSON),
        EMPTY_JSON.len() as u64,
    );
    let mut layer_annotations = BTreeMap::new();
    layer_annotations.insert(
        TITLE_ANNOTATION.to_string(),
        format!("{}.sigstore.json", bundle_digest.tag_form()),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        BUNDLE_CONTENT_ANNOTATION.to_string(),
        "dsse-envelope".to_string(),
    );
    annotations.insert(
        BUNDLE_PREDICATE_ANNOTATION.to_string(),
        statement.predicate_type().to_string(),
    );
    let mut subject_value = Map::new();
    subject_value.insert("mediaType".into(), json!(subject.media_type));
    subject_value.insert("digest".into(), json!(subject.digest.to_string()));
    subject_value.insert("size".into(), json!(subject.size));
    let manifest = manifest_from_value(
        &json!({
            "schemaVersion": 2,
            "mediaType": mt::OCI_MANIFEST,
            "artifactType": BUNDLE_V03_MEDIA_TYPE,
            "config": {"mediaType": mt::OCI_EMPTY, "digest": empty.digest.to_string(), "size": 2},
            "layers": [descriptor_value(BUNDLE_V03_MEDIA_TYPE, &bundle, Some(&layer_annotations))],
            "subject": Value::Object(subject_value),
            "annotations": annotations,
        }),
        mt::OCI_MANIFEST,
    )?;
    // Signing twice makes the same manifest (deterministic ECDSA): nothing to upload then.
    let added = !repo
        .has_manifest(&manifest.descriptor())
        .await
        .map_err(|e| e.context(ctx()))?;
    if added {
        repo.put_blob(&empty, Bytes::from_static(EMPTY_JSON))
            .await
            .map_err(|e| e.context(ctx()))?;
        let bundle_desc = Descriptor::new(
            BUNDLE_V03_MEDIA_TYPE,
            bundle_digest.clone(),
            bundle.len() as u64,
        );
        repo.upload_blob(&bundle_desc, bundle.clone())
            .await
            .map_err(|e| e.context(ctx()))?;
        repo.put_manifest(&manifest)
            .await
            .map_err(|e| e.context(ctx()))?;
    }
    let referrer = Written {
        location: "referrer".into(),
        manifest: manifest.digest().clone(),
        added,
        attempts: 1,
        lost_races: 0,
    };
    if repo
        .has_referrers_api(&subject.digest)
        .await
        .map_err(|e| e.context(ctx()))?
    {
        // The registry indexes the subject itself.
        return Ok((referrer, None));
    }
    let mut entry = Map::new();
    entry.insert("mediaType".into(), json!(mt::OCI_MANIFEST));
    entry.insert("digest".into(), json!(manifest.digest().to_string()));
    entry.insert("size".into(), json!(manifest.bytes().len()));
    entry.insert("artifactType".into(), json!(BUNDLE_V03_MEDIA_TYPE));
    entry.insert("annotations".into(), json!(annotations));
    let entry = Value::Object(entry);
    let mine = manifest.digest().to_string();
    let is_ours = |e: &Value| e.get("digest").and_then(Value::as_str) == Some(mine.as_str());
    let build = |manifests: Vec<Value>| -> Result<Built> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": mt::OCI_INDEX,
            "manifests": manifests,
        });
        Ok((manifest_from_value(&index, mt::OCI_INDEX)?, Vec::new()))
    };
    let tag = referrers_tag(&subject.digest);
    let merge = Merge {
        tag: &tag,
        field: "manifests",
        ours: &entry,
        is_ours: &is_ours,
        build: &build,
        extra_blobs: &[],
    };
    let index = merge_into_tag(repo, merge, max_attempts)
        .await
        .map_err(|e| e.context(ctx()))?;
    Ok((referrer, Some(index)))
}

/// Add `layer` (a descriptor value from another cosign signature or attestation manifest, kept
/// verbatim; its blob already stored) to the cosign manifest at `tag` in `repo`, keeping every
/// layer there: how `graft copy --with-attachments` joins a destination's own `.sig`/`.att`.
pub async fn merge_cosign_layer(repo: &Repo, tag: &str, layer: &Value) -> Result<Written> {
    let mine = layer
        .get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let is_ours = |e: &Value| e.get("digest").and_then(Value::as_str) == Some(mine.as_str());
    let merge = Merge {
        tag,
        field: "layers",
        ours: layer,
        is_ours: &is_ours,
        build: &cosign_manifest,
        extra_blobs: &[],
    };
    merge_into_tag(repo, merge, 5).await
}

/// List `entry` (a descriptor value, kept verbatim) in the referrers fallback index of
/// `subject` in `repo`: read, merge (others' entries kept exactly), write, confirm. Used by
/// `graft copy --with-attachments` when the destination already has its own fallback index.
pub async fn merge_referrer_entry(repo: &Repo, subject: &Digest, entry: &Value) -> Result<Written> {
    let mine = entry
        .get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let is_ours = |e: &Value| e.get("digest").and_then(Value::as_str) == Some(mine.as_str());
    let build = |manifests: Vec<Value>| -> Result<Built> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": mt::OCI_INDEX,
            "manifests": manifests,
        });
        Ok((manifest_from_value(&index, mt::OCI_INDEX)?, Vec::new()))
    };
    let tag = referrers_tag(subject);
    let merge = Merge {
        tag: &tag,
        field: "manifests",
        ours: entry,
        is_ours: &is_ours,
        build: &build,
        extra_blobs: &[],
    };
    merge_into_tag(repo, merge, 5).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_config_matches_cosign_bytes() {
        // The config blob of a real cosign `.att` manifest (slsa-verifier cosign-save layout).
        let want = r#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:e163b472f2e5d66e5a2a45e26e020c51a0d2da7dc8b567b31fc2ebfd33dbc33a"]},"config":{}}"#;
        let got = cosign_config(&[
            "sha256:e163b472f2e5d66e5a2a45e26e020c51a0d2da7dc8b567b31fc2ebfd33dbc33a".into(),
        ]);
        assert_eq!(String::from_utf8(got).unwrap(), want);
        assert_eq!(
            Digest::sha256(want.as_bytes()).to_string(),
            "sha256:994025264a85542118ab73a59d30e51516ea596238c1fb4adeb674294519de57"
        );
    }

    #[test]
    fn appended_manifest_keeps_old_layers_verbatim() {
        let old = json!({"mediaType": "x/y", "size": 3, "digest": Digest::sha256(b"abc").to_string(),
                         "annotations": {"z": "1", "a": "2"}, "unknown": true});
        let ours = descriptor_value(SIMPLE_SIGNING_MEDIA_TYPE, b"p", None);
        let (m, blobs) = cosign_manifest(vec![old.clone(), ours]).unwrap();
        let v: Value = serde_json::from_slice(m.bytes()).unwrap();
        assert_eq!(v["layers"][0], old);
        assert_eq!(
            serde_json::to_string(&v["layers"][0]).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        assert_eq!(blobs.len(), 1);
        assert!(String::from_utf8(m.bytes().to_vec())
            .unwrap()
            .starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":"#));
    }
}
