//! Verifying signatures and attestations in both storage forms (cosign's `.sig`/`.att` tags
//! and sigstore bundle referrers, found through the referrers API or its fallback tag).
//!
//! A digest passes when at least one signature (attestation) verifies with the given key and
//! names that digest. Otherwise the failure says why, most telling reason first: a valid
//! signature over another digest, a tampered payload (content that no longer matches its
//! digest, or a signature that names this key but does not match its payload), a signature
//! by another key, a malformed signature, or no signature at all.
//!
//! Keyless signatures ([`Verifier::Keyless`]) are checked by [`crate::sign::keyless`]: the
//! certificate and Rekor entry carried with each one (layer annotations, or the bundle's
//! verification material) against a trusted root, and the identity and issuer asked for.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, RawManifest};
use crate::sign::attach::{
    attestation_tag, signature_tag, COSIGN_SIGN_PREDICATE, DSSE_MEDIA_TYPE, KEY_HINT_ANNOTATION,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
};
use crate::sign::bundle::{Bundle, BundleContent};
use crate::sign::dsse::{Envelope, Statement, IN_TOTO_PAYLOAD_TYPE};
use crate::sign::keyless::{Check, Content, Keyless, KeylessError, KeylessVerified, Material};
use crate::sign::keys::PublicKey;
use crate::sign::payload::SimpleSigning;
use crate::sign::repo::Repo;
use crate::store::MAX_REFERRERS;

/// Why verification failed, in increasing order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Nothing that could be a signature (attestation) was found.
    NoSignature,
    /// Something was found but is not a well-formed signature.
    Malformed,
    /// Signatures exist but were made with other keys.
    WrongKey,
    /// Keyless signatures exist but do not verify against the trusted root (certificate
    /// chain, validity at signing time, SCT, or transparency-log entry).
    Untrusted,
    /// Keyless signatures verify but were made by another identity or OIDC issuer.
    WrongIdentity,
    /// Content was altered after signing.
    Tampered,
    /// A valid signature by this key, but over another digest.
    OtherDigest,
}

/// One candidate that did not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The reason.
    pub kind: FailureKind,
    /// Where and what, for the message.
    pub detail: String,
}

impl Problem {
    fn new(kind: FailureKind, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            detail: detail.into(),
        }
    }

    fn at(mut self, location: &str) -> Problem {
        self.detail = format!("{location}: {}", self.detail);
        self
    }
}

/// Verification of one digest failed.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyFailure {
    /// `registry/repo@digest`.
    pub subject: String,
    /// `signature` or `attestation`.
    pub what: &'static str,
    /// The most telling reason.
    pub kind: FailureKind,
    /// Every candidate's problem.
    pub problems: Vec<Problem>,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let details: Vec<&str> = self.problems.iter().map(|p| p.detail.as_str()).collect();
        let details = details.join("; ");
        let (w, s) = (self.what, &self.subject);
        match self.kind {
            FailureKind::NoSignature if details.is_empty() => write!(f, "no {w}s found for {s}"),
            FailureKind::NoSignature => write!(f, "no {w}s found for {s} ({details})"),
            FailureKind::Malformed => write!(f, "the {w}s of {s} are malformed: {details}"),
            FailureKind::WrongKey => {
                write!(f, "no {w} of {s} verifies with the given key: {details}")
            }
            FailureKind::Untrusted => {
                write!(
                    f,
                    "no {w} of {s} verifies against the trusted root: {details}"
                )
            }
            FailureKind::WrongIdentity => {
                write!(
                    f,
                    "no {w} of {s} was made by the expected identity: {details}"
                )
            }
            FailureKind::Tampered => write!(f, "a {w} of {s} was tampered with: {details}"),
            FailureKind::OtherDigest => {
                write!(
                    f,
                    "the {w}s found for {s} are valid but sign another image: {details}"
                )
            }
        }
    }
}

impl std::error::Error for VerifyFailure {}

fn failure(subject: String, what: &'static str, problems: Vec<Problem>) -> Error {
    let kind = problems
        .iter()
        .map(|p| p.kind)
        .max()
        .unwrap_or(FailureKind::NoSignature);
    Error::Verify(Box::new(VerifyFailure {
        subject,
        what,
        kind,
        problems,
    }))
}

/// How signatures are checked.
#[derive(Debug, Clone, Copy)]
pub enum Verifier<'a> {
    /// With a public key.
    Key(&'a PublicKey),
    /// Keyless: certificate, transparency log, identity and issuer against a trusted root.
    Keyless(&'a Keyless),
}

impl Problem {
    /// The problem a failed keyless check is, located.
    fn keyless(e: KeylessError) -> Problem {
        let kind = match e.check {
            Check::Malformed => FailureKind::Malformed,
            Check::Signature => FailureKind::Tampered,
            Check::Tlog | Check::Body | Check::Chain | Check::Expired | Check::Sct => {
                FailureKind::Untrusted
            }
            Check::Identity | Check::Issuer => FailureKind::WrongIdentity,
        };
        Problem::new(kind, e.to_string())
    }

    fn not_keyless() -> Problem {
        Problem::new(
            FailureKind::WrongKey,
            "signed with a key, not keyless (no certificate)",
        )
    }
}

/// The keyless material of a cosign `.sig`/`.att` layer, or the problem reading it.
fn layer_material(layer: &Descriptor) -> std::result::Result<Material, Problem> {
    match Material::from_annotations(|k| layer.annotation(k)) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Problem::not_keyless()),
        Err(e) => Err(Problem::keyless(e)),
    }
}

/// The keyless material of a bundle, or the problem reading it.
fn bundle_material(raw: &[u8]) -> std::result::Result<Material, Problem> {
    match Material::from_bundle(raw) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Problem::not_keyless()),
        Err(e) => Err(Problem::keyless(e)),
    }
}

/// A DSSE envelope verified keylessly: the first of its signatures that passes.
fn keyless_envelope(
    keyless: &Keyless,
    material: &Material,
    env: &Envelope,
) -> std::result::Result<KeylessVerified, Problem> {
    let payload = env
        .payload_bytes()
        .map_err(|e| Problem::new(FailureKind::Malformed, e))?;
    let mut first = None;
    for s in &env.signatures {
        let Ok(sig) = B64.decode(&s.sig) else {
            continue;
        };
        let content = Content::Dsse {
            payload_type: &env.payload_type,
            payload: &payload,
        };
        match keyless.verify(material, content, &sig) {
            Ok(v) => return Ok(v),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(match first {
        Some(e) => Problem::keyless(e),
        None => Problem::new(
            FailureKind::Malformed,
            "the envelope has no base64 signature",
        ),
    })
}

/// The `dev.cosignproject.cosign/signature` annotation, decoded.
fn decode_signature(signature_b64: &str) -> std::result::Result<Vec<u8>, Problem> {
    B64.decode(signature_b64).map_err(|e| {
        Problem::new(
            FailureKind::Malformed,
            format!("the signature annotation is not base64: {e}"),
        )
    })
}

/// A verified simple-signing payload, parsed, and checked to sign `expected`.
fn signed_payload(
    payload: &[u8],
    expected: &Digest,
) -> std::result::Result<SimpleSigning, Problem> {
    let parsed = SimpleSigning::parse(payload).map_err(|e| {
        Problem::new(
            FailureKind::Malformed,
            format!("the signature verifies but its payload is not a cosign simple-signing payload: {e}"),
        )
    })?;
    if parsed.digest != *expected {
        return Err(Problem::new(
            FailureKind::OtherDigest,
            format!(
                "the signature verifies but signs {}, not {expected}",
                parsed.digest
            ),
        ));
    }
    Ok(parsed)
}

/// The keyless verification core for one simple-signing layer: `payload` bytes, the base64
/// signature annotation and the layer's certificate, chain and Rekor annotations.
pub fn check_simple_signing_keyless(
    payload: &[u8],
    signature_b64: &str,
    material: &Material,
    keyless: &Keyless,
    expected: &Digest,
) -> std::result::Result<(SimpleSigning, KeylessVerified), Problem> {
    let sig = decode_signature(signature_b64)?;
    let verified = keyless
        .verify(material, Content::Payload(payload), &sig)
        .map_err(Problem::keyless)?;
    let parsed = signed_payload(payload, expected)?;
    Ok((parsed, verified))
}

/// A signature that verified.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedSignature {
    /// The signed digest.
    pub digest: Digest,
    /// `simple` (`.sig` tag) or `bundle` (referrer).
    pub form: &'static str,
    /// Where it was found.
    pub location: String,
    /// The `docker-reference` the signer named.
    pub docker_reference: String,
    /// The verified payload, in cosign's `verify` output shape.
    pub payload: Value,
    /// For a keyless signature: who signed, and when the log recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyless: Option<KeylessVerified>,
}

/// An attestation that verified (or, from [`read_attestations`], was merely found).
#[derive(Debug, Clone, Serialize)]
pub struct FoundAttestation {
    /// The subject digest asked about.
    pub digest: Digest,
    /// `simple` (`.att` tag) or `bundle` (referrer).
    pub form: &'static str,
    /// Where it was found.
    pub location: String,
    /// The statement's `predicateType`.
    pub predicate_type: String,
    /// The statement.
    pub statement: Value,
    /// For a keyless attestation that verified: who signed, and when the log recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyless: Option<KeylessVerified>,
    #[serde(skip)]
    envelope: Envelope,
    #[serde(skip)]
    hint: Option<String>,
    /// Certificate and log entries, or why they could not be read (keyless only).
    #[serde(skip)]
    material: Option<std::result::Result<Material, Problem>>,
}

/// Classify a signature that does not verify, using the (unsigned) key hint.
fn bad_signature(hint: Option<&str>, key: &PublicKey) -> Problem {
    match hint {
        Some(h) if h == key.hint() => Problem::new(
            FailureKind::Tampered,
            "the signature names this key but does not match the signed content: it was \
             altered after signing",
        ),
        Some(h) => Problem::new(
            FailureKind::WrongKey,
            format!("signed by another key (key hint {h})"),
        ),
        None => Problem::new(
            FailureKind::WrongKey,
            "the signature does not verify with this key (made with another key, or altered \
             after signing)",
        ),
    }
}

/// The verification core for one simple-signing signature: `payload` bytes, the base64
/// `signature` annotation, an optional key hint, checked against `key` and `expected`.
pub fn check_simple_signing(
    payload: &[u8],
    signature_b64: &str,
    hint: Option<&str>,
    key: &PublicKey,
    expected: &Digest,
) -> std::result::Result<SimpleSigning, Problem> {
    let sig = decode_signature(signature_b64)?;
    if !key.verify(payload, &sig) {
        return Err(bad_signature(hint, key));
    }
    let parsed = signed_payload(payload, expected)?;
    Ok(parsed)
}

/// cosign's `verify` output for a payload.
fn payload_json(reference: &str, digest: &Digest, kind: &str, optional: Value) -> Value {
    json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": kind,
        },
        "optional": optional,
    })
}

/// Read a blob; a digest mismatch is a tampering problem, a missing blob a malformed one.
async fn fetch(
    repo: &Repo,
    desc: &Descriptor,
    what: &str,
) -> Result<std::result::Result<bytes::Bytes, Problem>> {
    match repo.blob(desc).await {
        Ok(b) => Ok(Ok(b)),
        Err(e) => match e.root() {
            Error::DigestMismatch { found, .. } => Ok(Err(Problem::new(
                FailureKind::Tampered,
                format!(
                    "the {what} {} was altered in storage (its content hashes to {found})",
                    desc.digest
                ),
            ))),
            Error::SizeMismatch { found, .. } => Ok(Err(Problem::new(
                FailureKind::Tampered,
                format!(
                    "the {what} {} was altered in storage ({found} bytes)",
                    desc.digest
                ),
            ))),
            Error::NotFound { .. } => Ok(Err(Problem::new(
                FailureKind::Malformed,
                format!("the {what} {} is missing", desc.digest),
            ))),
            _ => Err(e),
        },
    }
}

/// A manifest fetched by digest; a mismatch is tampering.
async fn fetch_manifest(
    repo: &Repo,
    desc: &Descriptor,
) -> Result<std::result::Result<RawManifest, Problem>> {
    match repo.manifest(desc).await {
        Ok(m) => Ok(Ok(m)),
        Err(e) => match e.root() {
            Error::DigestMismatch { .. } => Ok(Err(Problem::new(
                FailureKind::Tampered,
                format!(
                    "the referrer manifest {} was altered in storage",
                    desc.digest
                ),
            ))),
            Error::NotFound { .. } => Ok(Err(Problem::new(
                FailureKind::Malformed,
                format!(
                    "the referrer manifest {} is listed but missing",
                    desc.digest
                ),
            ))),
            _ => Err(e),
        },
    }
}

/// Every referrer listed for `digest`: the referrers API, else the fallback tag and, in
/// layouts, the untagged `index.json` entries with that subject; at most
/// [`MAX_REFERRERS`], else an error naming the digest (each one may cost a request).
async fn referrer_list(repo: &Repo, digest: &Digest) -> Result<Vec<Descriptor>> {
    let all = match repo.referrers_api(digest).await? {
        Some(list) => list,
        None => repo.referrers_without_api(digest).await?.1,
    };
    if all.len() > MAX_REFERRERS {
        return Err(Error::Invalid {
            what: format!("the referrers of {}", repo.describe(digest)),
            reason: format!(
                "{} are listed, more than {MAX_REFERRERS}; graft stops there rather than read \
                 every one of a list a registry may have padded",
                all.len()
            ),
        });
    }
    Ok(all)
}

fn is_bundle_type(t: &str) -> bool {
    t.starts_with("application/vnd.dev.sigstore.bundle")
}

/// What a listed referrer is, its manifest read at most once.
enum Listed {
    /// Not a sigstore bundle.
    Other,
    /// A bundle, with its manifest when reading it was how that was found out.
    Bundle(Option<Box<RawManifest>>),
    /// A manifest that could not be read (tampered or missing).
    Unreadable(Problem),
}

async fn classify(repo: &Repo, d: &Descriptor) -> Result<Listed> {
    match d.artifact_type.as_deref() {
        Some(t) if is_bundle_type(t) => Ok(Listed::Bundle(None)),
        // go-containerregistry lists a referrer under its config media type, not its
        // `artifactType`: cosign v2's fallback index and ggcr's registry name cosign's
        // bundles `application/vnd.oci.empty.v1+json`. Such an entry (or one without a
        // type) is a bundle when its manifest says so; that manifest is kept for the caller,
        // so it is fetched once.
        None | Some(crate::oci::media_types::OCI_EMPTY) => {
            Ok(match fetch_manifest(repo, d).await? {
                Ok(m) => {
                    let v = m.view();
                    match v.artifact_type.as_deref().is_some_and(is_bundle_type)
                        || v.layers.iter().any(|l| is_bundle_type(&l.media_type))
                    {
                        true => Listed::Bundle(Some(Box::new(m))),
                        false => Listed::Other,
                    }
                }
                Err(p) => Listed::Unreadable(p),
            })
        }
        Some(_) => Ok(Listed::Other),
    }
}

/// A bundle found as a referrer of `digest`, with its location and its raw bytes (for the
/// keyless material), handed to the caller one at a time.
struct FoundBundle<'a> {
    location: String,
    bundle: Bundle,
    raw: &'a [u8],
}

/// Call `each` with every bundle referrer of `digest`, one at a time: only one bundle's
/// bytes are held at once, and each referrer manifest is fetched once. Referrers that are
/// not usable bundles become `problems`.
async fn for_each_bundle(
    repo: &Repo,
    digest: &Digest,
    problems: &mut Vec<Problem>,
    mut each: impl FnMut(FoundBundle<'_>, &mut Vec<Problem>),
) -> Result<()> {
    for desc in referrer_list(repo, digest).await? {
        let location = format!("referrer {}", desc.digest);
        let m = match classify(repo, &desc).await? {
            Listed::Other => continue,
            Listed::Unreadable(p) => {
                problems.push(p.at(&location));
                continue;
            }
            Listed::Bundle(Some(m)) => *m,
            Listed::Bundle(None) => match fetch_manifest(repo, &desc).await? {
                Ok(m) => m,
                Err(p) => {
                    problems.push(p.at(&location));
                    continue;
                }
            },
        };
        match &m.view().subject {
            Some(s) if s.digest == *digest => {}
            Some(s) => {
                problems.push(Problem::new(
                    FailureKind::OtherDigest,
                    format!("{location}: its subject is {}, not {digest}", s.digest),
                ));
                continue;
            }
            None => {
                problems.push(Problem::new(
                    FailureKind::Malformed,
                    format!("{location}: no subject"),
                ));
                continue;
            }
        }
        let Some(layer) = m
            .view()
            .layers
            .iter()
            .find(|l| is_bundle_type(&l.media_type))
        else {
            problems.push(Problem::new(
                FailureKind::Malformed,
                format!("{location}: no bundle layer"),
            ));
            continue;
        };
        let bytes = match fetch(repo, layer, "bundle").await? {
            Ok(b) => b,
            Err(p) => {
                problems.push(p.at(&location));
                continue;
            }
        };
        match Bundle::parse(&bytes) {
            Ok(bundle) => each(
                FoundBundle {
                    location,
                    bundle,
                    raw: &bytes,
                },
                problems,
            ),
            Err(e) => problems.push(Problem::new(
                FailureKind::Malformed,
                format!("{location}: {e}"),
            )),
        }
    }
    Ok(())
}

/// The layers of the cosign manifest at `tag`, if the tag exists.
async fn tag_layers(repo: &Repo, tag: &str) -> Result<Option<Vec<Descriptor>>> {
    Ok(repo.tagged(tag).await?.map(|m| m.view().layers.clone()))
}

/// Verify that `digest` carries at least one signature by `key`, in either storage form.
/// Returns every signature that verified; fails with a [`VerifyFailure`] otherwise.
pub async fn verify_signatures(
    repo: &Repo,
    digest: &Digest,
    key: &PublicKey,
) -> Result<Vec<VerifiedSignature>> {
    verify_signatures_with(repo, digest, Verifier::Key(key)).await
}

/// Verify that `digest` carries at least one signature that `verifier` accepts (by a key, or
/// keyless), in either storage form. Returns every signature that verified; fails with a
/// [`VerifyFailure`] otherwise.
pub async fn verify_signatures_with(
    repo: &Repo,
    digest: &Digest,
    verifier: Verifier<'_>,
) -> Result<Vec<VerifiedSignature>> {
    let mut verified = Vec::new();
    let mut problems = Vec::new();
    let tag = signature_tag(digest);
    if let Some(layers) = tag_layers(repo, &tag).await? {
        for (i, layer) in layers.iter().enumerate() {
            let location = format!("tag {tag} layer {i}");
            if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                problems.push(Problem::new(
                    FailureKind::NoSignature,
                    format!("{location} is not a signature ({})", layer.media_type),
                ));
                continue;
            }
            let Some(sig) = layer.annotation(SIGNATURE_ANNOTATION) else {
                problems.push(Problem::new(
                    FailureKind::Malformed,
                    format!("{location} has no {SIGNATURE_ANNOTATION} annotation"),
                ));
                continue;
            };
            let payload = match fetch(repo, layer, "signature payload").await? {
                Ok(p) => p,
                Err(p) => {
                    problems.push(p.at(&location));
                    continue;
                }
            };
            let outcome = match verifier {
                Verifier::Key(key) => check_simple_signing(
                    &payload,
                    sig,
                    layer.annotation(KEY_HINT_ANNOTATION),
                    key,
                    digest,
                )
                .map(|p| (p, None)),
                Verifier::Keyless(k) => layer_material(layer).and_then(|m| {
                    check_simple_signing_keyless(&payload, sig, &m, k, digest)
                        .map(|(p, v)| (p, Some(v)))
                }),
            };
            match outcome {
                Ok((p, keyless)) => verified.push(VerifiedSignature {
                    digest: digest.clone(),
                    form: "simple",
                    location,
                    docker_reference: p.docker_reference,
                    payload: serde_json::from_slice(&payload).unwrap_or(Value::Null),
                    keyless,
                }),
                Err(p) => problems.push(p.at(&location)),
            }
        }
    }
    for_each_bundle(repo, digest, &mut problems, |found, problems| {
        let location = found.location;
        let hint = found.bundle.hint.as_deref();
        match &found.bundle.content {
            BundleContent::Dsse(env) => {
                let statement = match env.payload_bytes().and_then(|b| Statement::parse(&b)) {
                    Ok(s) => s,
                    Err(e) => {
                        problems.push(Problem::new(
                            FailureKind::Malformed,
                            format!("{location}: {e}"),
                        ));
                        return;
                    }
                };
                if statement.predicate_type() != COSIGN_SIGN_PREDICATE {
                    return; // an attestation, not a signature
                }
                let keyless = match verifier {
                    Verifier::Key(key) => match env.verify(key) {
                        Ok(true) => None,
                        Ok(false) => {
                            problems.push(bad_signature(hint, key).at(&location));
                            return;
                        }
                        Err(e) => {
                            problems.push(Problem::new(
                                FailureKind::Malformed,
                                format!("{location}: {e}"),
                            ));
                            return;
                        }
                    },
                    Verifier::Keyless(k) => {
                        match bundle_material(found.raw).and_then(|m| keyless_envelope(k, &m, env))
                        {
                            Ok(v) => Some(v),
                            Err(p) => {
                                problems.push(p.at(&location));
                                return;
                            }
                        }
                    }
                };
                if !statement.has_subject(digest) {
                    problems.push(Problem::new(
                        FailureKind::OtherDigest,
                        format!(
                            "{location}: the signature verifies but its statement is about {:?}, not {digest}",
                            statement.subject_digests()
                        ),
                    ));
                    return;
                }
                let subject = &statement.value["subject"][0];
                let reference = subject["name"].as_str().unwrap_or("").to_string();
                let optional = subject.get("annotations").cloned().unwrap_or(json!({}));
                verified.push(VerifiedSignature {
                    digest: digest.clone(),
                    form: "bundle",
                    location,
                    payload: payload_json(&reference, digest, COSIGN_SIGN_PREDICATE, optional),
                    docker_reference: reference,
                    keyless,
                });
            }
            BundleContent::MessageSignature {
                digest: signed,
                signature,
            } => {
                let keyless = match verifier {
                    Verifier::Key(key) => {
                        if !key.verify_prehash(signed, signature) {
                            problems.push(bad_signature(hint, key).at(&location));
                            return;
                        }
                        None
                    }
                    Verifier::Keyless(k) => match bundle_material(found.raw).and_then(|m| {
                        k.verify(&m, Content::Digest(signed), signature)
                            .map_err(Problem::keyless)
                    }) {
                        Ok(v) => Some(v),
                        Err(p) => {
                            problems.push(p.at(&location));
                            return;
                        }
                    },
                };
                if hex::encode(signed) != digest.hex() {
                    problems.push(Problem::new(
                        FailureKind::OtherDigest,
                        format!(
                            "{location}: the signature verifies but signs sha256:{}, not {digest}",
                            hex::encode(signed)
                        ),
                    ));
                    return;
                }
                verified.push(VerifiedSignature {
                    digest: digest.clone(),
                    form: "bundle",
                    location,
                    docker_reference: String::new(),
                    payload: payload_json("", digest, "message-signature", Value::Null),
                    keyless,
                });
            }
        }
    })
    .await?;
    if verified.is_empty() {
        return Err(failure(repo.describe(digest), "signature", problems));
    }
    Ok(verified)
}

/// Every attestation attached to `digest` (`.att` layers and DSSE bundle referrers other than
/// cosign v3 signatures), unverified, plus the problems met while reading them.
pub async fn read_attestations(
    repo: &Repo,
    digest: &Digest,
) -> Result<(Vec<FoundAttestation>, Vec<Problem>)> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let tag = attestation_tag(digest);
    if let Some(layers) = tag_layers(repo, &tag).await? {
        for (i, layer) in layers.iter().enumerate() {
            let location = format!("tag {tag} layer {i}");
            if layer.media_type != DSSE_MEDIA_TYPE {
                problems.push(Problem::new(
                    FailureKind::NoSignature,
                    format!("{location} is not a DSSE envelope ({})", layer.media_type),
                ));
                continue;
            }
            let bytes = match fetch(repo, layer, "attestation envelope").await? {
                Ok(b) => b,
                Err(p) => {
                    problems.push(p.at(&location));
                    continue;
                }
            };
            let envelope: Envelope = match serde_json::from_slice(&bytes) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(Problem::new(
                        FailureKind::Malformed,
                        format!("{location}: not a DSSE envelope: {e}"),
                    ));
                    continue;
                }
            };
            let hint = layer.annotation(KEY_HINT_ANNOTATION).map(str::to_string);
            push_found(
                &mut found,
                &mut problems,
                digest,
                ("simple", location),
                envelope,
                hint,
                layer_material(layer),
            );
        }
    }
    for_each_bundle(repo, digest, &mut problems, |b, problems| {
        if let BundleContent::Dsse(env) = b.bundle.content {
            push_found(
                &mut found,
                problems,
                digest,
                ("bundle", b.location),
                env,
                b.bundle.hint,
                bundle_material(b.raw),
            );
        }
    })
    .await?;
    Ok((found, problems))
}

fn push_found(
    found: &mut Vec<FoundAttestation>,
    problems: &mut Vec<Problem>,
    digest: &Digest,
    (form, location): (&'static str, String),
    envelope: Envelope,
    hint: Option<String>,
    material: std::result::Result<Material, Problem>,
) {
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        problems.push(Problem::new(
            FailureKind::Malformed,
            format!(
                "{location}: payloadType {:?} is not an in-toto statement",
                envelope.payload_type
            ),
        ));
        return;
    }
    match envelope.payload_bytes().and_then(|b| Statement::parse(&b)) {
        Ok(st) if st.predicate_type() == COSIGN_SIGN_PREDICATE => {}
        Ok(st) => found.push(FoundAttestation {
            digest: digest.clone(),
            form,
            location,
            predicate_type: st.predicate_type().to_string(),
            statement: st.value,
            keyless: None,
            envelope,
            hint,
            material: Some(material),
        }),
        Err(e) => problems.push(Problem::new(
            FailureKind::Malformed,
            format!("{location}: {e}"),
        )),
    }
}

/// Verify that `digest` carries at least one attestation by `key` (of `predicate_type`, when
/// given) whose statement names `digest`. Returns the ones that verified.
pub async fn verify_attestations(
    repo: &Repo,
    digest: &Digest,
    key: &PublicKey,
    predicate_type: Option<&str>,
) -> Result<Vec<FoundAttestation>> {
    verify_attestations_with(repo, digest, Verifier::Key(key), predicate_type).await
}

/// Verify that `digest` carries at least one attestation that `verifier` accepts (of
/// `predicate_type`, when given) whose statement names `digest`. Returns the ones that
/// verified.
pub async fn verify_attestations_with(
    repo: &Repo,
    digest: &Digest,
    verifier: Verifier<'_>,
    predicate_type: Option<&str>,
) -> Result<Vec<FoundAttestation>> {
    let (found, mut problems) = read_attestations(repo, digest).await?;
    let mut verified = Vec::new();
    let mut other_types = Vec::new();
    for mut a in found {
        if predicate_type.is_some_and(|t| t != a.predicate_type) {
            other_types.push(a.predicate_type.clone());
            continue;
        }
        match verifier {
            Verifier::Key(key) => match a.envelope.verify(key) {
                Ok(true) => {}
                Ok(false) => {
                    problems.push(bad_signature(a.hint.as_deref(), key).at(&a.location));
                    continue;
                }
                Err(e) => {
                    problems.push(Problem::new(
                        FailureKind::Malformed,
                        format!("{}: {e}", a.location),
                    ));
                    continue;
                }
            },
            Verifier::Keyless(k) => {
                let outcome = match a.material.take() {
                    Some(Ok(m)) => keyless_envelope(k, &m, &a.envelope),
                    Some(Err(p)) => Err(p),
                    None => Err(Problem::not_keyless()),
                };
                match outcome {
                    Ok(v) => a.keyless = Some(v),
                    Err(p) => {
                        problems.push(p.at(&a.location));
                        continue;
                    }
                }
            }
        }
        let st = Statement {
            bytes: Vec::new(),
            value: a.statement.clone(),
        };
        if !st.has_subject(digest) {
            problems.push(Problem::new(
                FailureKind::OtherDigest,
                format!(
                    "{}: the attestation verifies but its subject is {:?}, not {digest}",
                    a.location,
                    st.subject_digests()
                ),
            ));
            continue;
        }
        verified.push(a);
    }
    if verified.is_empty() {
        if let (Some(t), false) = (predicate_type, other_types.is_empty()) {
            other_types.sort();
            other_types.dedup();
            problems.push(Problem::new(
                FailureKind::NoSignature,
                format!("none of type {t} (found {})", other_types.join(", ")),
            ));
        }
        return Err(failure(repo.describe(digest), "attestation", problems));
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::keys::SigningKey;
    use std::collections::BTreeMap;

    #[test]
    fn core_distinguishes_failures() {
        let k = SigningKey::generate();
        let pk = k.public_key();
        let d = Digest::sha256(b"image");
        let payload = SimpleSigning::new("r", &d, &BTreeMap::new()).to_bytes();
        let sig = B64.encode(k.sign(&payload));
        assert!(check_simple_signing(&payload, &sig, None, &pk, &d).is_ok());
        let other = Digest::sha256(b"other");
        assert_eq!(
            check_simple_signing(&payload, &sig, None, &pk, &other)
                .unwrap_err()
                .kind,
            FailureKind::OtherDigest
        );
        let tampered = SimpleSigning::new("r", &other, &BTreeMap::new()).to_bytes();
        assert_eq!(
            check_simple_signing(&tampered, &sig, Some(&pk.hint()), &pk, &d)
                .unwrap_err()
                .kind,
            FailureKind::Tampered
        );
        let stranger = SigningKey::generate().public_key();
        assert_eq!(
            check_simple_signing(&payload, &sig, Some(&pk.hint()), &stranger, &d)
                .unwrap_err()
                .kind,
            FailureKind::WrongKey
        );
        assert_eq!(
            check_simple_signing(&payload, "%%%", None, &pk, &d)
                .unwrap_err()
                .kind,
            FailureKind::Malformed
        );
    }
}
