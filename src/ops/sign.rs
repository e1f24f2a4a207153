//! Signing, attesting and verifying images as CI steps (`graft sign`, `attest`, `verify`,
//! `verify-attestation`): the subjects of each reference (the manifest or index it names, and
//! with `recursive` every manifest an index lists), signed a few at a time, or verified.
//!
//! Each reference is resolved once (one manifest read); what is signed or verified is exactly
//! that digest and the children that document lists.

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::error::Result;
use crate::oci::Descriptor;
use crate::reference::ImageRef;
use crate::sign::attach::{self, AttachReport};
use crate::sign::verify::{FoundAttestation, VerifiedSignature};
use crate::sign::{
    verify_attestations, verify_attestations_with, verify_signatures_with, AttestOptions, Keyless,
    Matcher, PublicKey, Repo, SignOptions, SigningKey, TrustedRoot, Verifier,
};
use crate::store::open::Endpoint;

/// The repository of `reference` (read-write to sign, else read-only, which also reads
/// `oci-archive:` files) and the digests to act on: the manifest or index it names, and with
/// `recursive` every manifest an index lists.
pub async fn targets(
    reference: &ImageRef,
    ep: &Endpoint,
    recursive: bool,
    writable: bool,
) -> Result<(Repo, Vec<Descriptor>)> {
    let repo = if writable {
        Repo::open(reference, ep).await?
    } else {
        Repo::open_read(reference, ep).await?
    };
    let root = repo.resolve().await?;
    let mut subjects = vec![root.descriptor()];
    if recursive && root.is_index() {
        for d in &root.view().manifests {
            let mut d = d.clone();
            d.annotations = None;
            d.platform = None;
            subjects.push(d);
        }
    }
    Ok((repo, subjects))
}

/// What to attach to every subject.
#[derive(Debug, Clone)]
pub enum Attachment {
    /// A cosign signature.
    Signature(SignOptions),
    /// An in-toto attestation of `predicate` (a JSON object) of type `predicate_type`.
    Attestation {
        /// The predicate type URI.
        predicate_type: String,
        /// The predicate.
        predicate: Value,
        /// Format and merge options.
        options: AttestOptions,
    },
}

/// Sign or attest every subject of every reference with `key`, `jobs` at a time. Every
/// reference is opened and resolved before anything is written. Results are named
/// `registry/repo@digest`, in order.
pub async fn attach_all(
    references: &[ImageRef],
    recursive: bool,
    jobs: usize,
    key: &SigningKey,
    what: &Attachment,
    ep: &Endpoint,
) -> Result<Vec<(String, AttachReport)>> {
    let mut work = Vec::new();
    for r in references {
        work.push(targets(r, ep, recursive, true).await?);
    }
    let subjects: Vec<(&Repo, &Descriptor)> = work
        .iter()
        .flat_map(|(repo, subjects)| subjects.iter().map(move |s| (repo, s)))
        .collect();
    futures::stream::iter(subjects)
        .map(|(repo, subject)| async move {
            let report = match what {
                Attachment::Signature(opts) => attach::sign(repo, subject, key, opts).await?,
                Attachment::Attestation {
                    predicate_type,
                    predicate,
                    options,
                } => {
                    let statement = attach::attestation_statement(
                        repo,
                        &subject.digest,
                        predicate_type,
                        predicate.clone(),
                    );
                    attach::attest(repo, subject, key, &statement, options).await?
                }
            };
            Ok::<_, crate::Error>((repo.describe(&subject.digest), report))
        })
        .buffered(jobs.max(1))
        .try_collect()
        .await
}

/// How `verify` and `verify-attestation` check: the flags as given.
#[derive(Debug, Clone, Default)]
pub struct VerifyBy {
    /// `--key`: a public key file or `env://VAR`.
    pub key: Option<String>,
    /// `--certificate-identity`.
    pub identity: Option<String>,
    /// `--certificate-identity-regexp`.
    pub identity_regexp: Option<String>,
    /// `--certificate-oidc-issuer`.
    pub issuer: Option<String>,
    /// `--certificate-oidc-issuer-regexp`.
    pub issuer_regexp: Option<String>,
    /// `--trusted-root`: the sigstore trusted-root JSON file.
    pub trusted_root: Option<std::path::PathBuf>,
    /// `--insecure-ignore-sct`.
    pub ignore_sct: bool,
}

/// What [`VerifyBy`] loads to: a key, or a keyless policy with its trusted root.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// A public key.
    Key(PublicKey),
    /// Keyless.
    Keyless(Box<Keyless>),
}

impl Loaded {
    /// The verifier to pass down.
    pub fn verifier(&self) -> Verifier<'_> {
        match self {
            Loaded::Key(k) => Verifier::Key(k),
            Loaded::Keyless(k) => Verifier::Keyless(k),
        }
    }

    /// How it verifies, for messages: `key PATH` or `identity … issued by …`.
    pub fn describe(&self, by: &VerifyBy) -> String {
        match self {
            Loaded::Key(_) => format!("key {}", by.key.as_deref().unwrap_or("")),
            Loaded::Keyless(k) => format!("identity {} from issuer {}", k.identity, k.issuer),
        }
    }
}

fn usage(msg: impl Into<String>) -> crate::Error {
    crate::Error::Unsupported(msg.into())
}

fn matcher(exact: &Option<String>, re: &Option<String>, flag: &str) -> Result<Matcher> {
    match (exact, re) {
        (Some(_), Some(_)) => Err(usage(format!(
            "--{flag} and --{flag}-regexp are alternatives: give one"
        ))),
        (Some(e), None) => Ok(Matcher::Exact(e.clone())),
        (None, Some(r)) => Matcher::regex(r).map_err(|e| {
            usage(format!(
                "--{flag}-regexp {r:?} is not a regular expression: {e}"
            ))
        }),
        (None, None) => Err(usage(format!(
            "keyless verification needs --{flag} or --{flag}-regexp"
        ))),
    }
}

/// Check the flags (a key, or keyless flags with a trusted root: exactly one way) and load
/// the key or the trusted root. Every problem is a usage error.
pub fn load_verifier(by: &VerifyBy) -> Result<Loaded> {
    let keyless = by.identity.is_some()
        || by.identity_regexp.is_some()
        || by.issuer.is_some()
        || by.issuer_regexp.is_some()
        || by.trusted_root.is_some()
        || by.ignore_sct;
    match (&by.key, keyless) {
        (Some(_), true) => Err(usage(
            "--key and the keyless flags (--certificate-identity, --certificate-oidc-issuer, \
             --trusted-root) are alternatives: give one way to verify",
        )),
        (None, false) => Err(usage(
            "give --key PUB, or --certificate-identity[-regexp] with \
             --certificate-oidc-issuer[-regexp] and --trusted-root FILE for keyless signatures",
        )),
        (Some(k), false) => Ok(Loaded::Key(PublicKey::load(k)?)),
        (None, true) => {
            let identity = matcher(&by.identity, &by.identity_regexp, "certificate-identity")?;
            let issuer = matcher(&by.issuer, &by.issuer_regexp, "certificate-oidc-issuer")?;
            let Some(path) = &by.trusted_root else {
                return Err(usage(
                    "keyless verification needs --trusted-root FILE (the sigstore trusted_root \
                     JSON, e.g. from `cosign trusted-root create` or the TUF repository): graft \
                     never fetches trust roots",
                ));
            };
            Ok(Loaded::Keyless(Box::new(Keyless {
                root: TrustedRoot::load(path)?,
                identity,
                issuer,
                ignore_sct: by.ignore_sct,
            })))
        }
    }
}

/// The signatures on every subject of `reference` that `verifier` accepts: one outcome per
/// subject (a subject without a valid signature is an `Err` naming what was found).
pub async fn verify_all(
    reference: &ImageRef,
    recursive: bool,
    verifier: Verifier<'_>,
    ep: &Endpoint,
) -> Result<Vec<Result<Vec<VerifiedSignature>>>> {
    let (repo, subjects) = targets(reference, ep, recursive, false).await?;
    let mut outcomes = Vec::new();
    for s in &subjects {
        outcomes.push(verify_signatures_with(&repo, &s.digest, verifier).await);
    }
    Ok(outcomes)
}

/// The attestations that `verifier` accepts (of `predicate_type`, when given) on every
/// subject of `reference`: one outcome per subject.
pub async fn verify_attestations_all(
    reference: &ImageRef,
    recursive: bool,
    verifier: Verifier<'_>,
    predicate_type: Option<&str>,
    ep: &Endpoint,
) -> Result<Vec<Result<Vec<FoundAttestation>>>> {
    let (repo, subjects) = targets(reference, ep, recursive, false).await?;
    let mut outcomes = Vec::new();
    for s in &subjects {
        outcomes.push(verify_attestations_with(&repo, &s.digest, verifier, predicate_type).await);
    }
    Ok(outcomes)
}

/// The SLSA provenance attached to an image (one platform of an index, or the root).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProvenanceFound {
    /// `registry/repo@digest` of the subject.
    pub subject: String,
    /// Whether the statements' signatures were verified with a key.
    pub verified: bool,
    /// The SLSA provenance statements.
    pub provenance: Vec<FoundAttestation>,
}

/// The SLSA provenance statements attached to `reference` (its `platform`'s manifest when it
/// is an index), verified with `key` when one is given; an error when there is none.
pub async fn provenance(
    reference: &ImageRef,
    platform: Option<&crate::oci::Platform>,
    key: Option<&PublicKey>,
    ep: &Endpoint,
) -> Result<ProvenanceFound> {
    let repo = Repo::open_read(reference, ep).await?;
    let root = repo.resolve().await?;
    let subject = match platform {
        Some(p) if root.is_index() => root
            .view()
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|q| q.matches(p)))
            .map(|d| d.digest.clone())
            .ok_or_else(|| crate::Error::NotFound {
                what: format!("platform {p} in {reference}"),
                detail: None,
            })?,
        _ => root.digest().clone(),
    };
    let found = match key {
        Some(key) => verify_attestations(&repo, &subject, key, None).await?,
        None => {
            crate::sign::verify::read_attestations(&repo, &subject)
                .await?
                .0
        }
    };
    let total = found.len();
    let slsa: Vec<FoundAttestation> = found
        .into_iter()
        .filter(|a| a.predicate_type.starts_with("https://slsa.dev/provenance/"))
        .collect();
    if slsa.is_empty() {
        return Err(crate::Error::NotFound {
            what: format!("SLSA provenance for {}", repo.describe(&subject)),
            detail: Some(format!("{total} other attestation(s) attached")),
        });
    }
    Ok(ProvenanceFound {
        subject: repo.describe(&subject),
        verified: key.is_some(),
        provenance: slsa,
    })
}
