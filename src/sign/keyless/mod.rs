//! Keyless (Fulcio + Rekor) signature verification, offline, against a given trusted root.
//!
//! A keyless signature is accepted when all of these hold (in this order; the first that fails
//! is the error, and [`KeylessError::check`] names it):
//! 1. the signature verifies with the public key of the leaf certificate carried with it;
//! 2. a transparency-log entry carried with it verifies: its log is a `tlogs` entry of the
//!    trusted root whose key is valid at the entry's integrated time, its signed entry timestamp
//!    (SET) verifies over the canonical `{body, integratedTime, logID, logIndex}`, and its
//!    inclusion proof (when present) leads to the root hash of a checkpoint signed by that log;
//! 3. the entry's body records this signature, this certificate and this content's digest;
//! 4. the certificate chains (rustls-webpki) to a Fulcio CA of the trusted root that is valid at
//!    the integrated time (each entry on its own, its root certificate valid at that time too;
//!    certificates carried with the signature play no part), every certificate of the path is valid at that time (not at the wall
//!    clock: this code reads no clock), and the leaf's extended key usage is code signing;
//! 5. an embedded SCT verifies with a `ctlogs` key of the trusted root (unless the caller
//!    asked to skip it, as cosign's `--insecure-ignore-sct`);
//! 6. a SAN (email, URI or Fulcio username other name) matches the identity, and the OIDC issuer
//!    extension (1.3.6.1.4.1.57264.1.8, else the legacy .1.1) matches the issuer.

pub mod cert;
mod crypto;
pub mod tlog;
pub mod trust;

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub use cert::Leaf;
pub use tlog::{Signed, TlogEntry};
pub use trust::TrustedRoot;

/// Annotation holding the Fulcio leaf certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation holding the certificate chain (PEM, leaf-most first).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Annotation holding the Rekor entry with its SET.
pub const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The signature's material could not be read.
    Malformed,
    /// The signature does not verify with the certificate's key.
    Signature,
    /// No transparency-log entry verifies with the trusted root's log keys.
    Tlog,
    /// The log entry does not record this signature, certificate or content.
    Body,
    /// The certificate does not chain to a CA of the trusted root.
    Chain,
    /// A certificate of the chain was not valid at the log's integrated time.
    Expired,
    /// No embedded SCT verifies with the trusted root's CT log keys.
    Sct,
    /// No identity of the certificate matches.
    Identity,
    /// The certificate's OIDC issuer does not match.
    Issuer,
}

impl Check {
    fn label(self) -> &'static str {
        match self {
            Check::Malformed => "malformed keyless signature",
            Check::Signature => "signature check failed",
            Check::Tlog => "transparency-log check failed",
            Check::Body => "transparency-log entry mismatch",
            Check::Chain => "certificate chain check failed",
            Check::Expired => "certificate expired",
            Check::Sct => "SCT check failed",
            Check::Identity => "identity mismatch",
            Check::Issuer => "OIDC issuer mismatch",
        }
    }
}

/// A keyless check that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylessError {
    /// The check.
    pub check: Check,
    /// What was found.
    pub detail: String,
}

impl KeylessError {
    /// A failure of `check`.
    pub fn new(check: Check, detail: impl Into<String>) -> KeylessError {
        KeylessError {
            check,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for KeylessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check.label(), self.detail)
    }
}

impl std::error::Error for KeylessError {}

/// An exact value or a regular expression (unanchored, as cosign's `-regexp` flags).
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal to this string.
    Exact(String),
    /// Matched by this expression somewhere, over the UTF-8 bytes. Build it with
    /// [`Matcher::regex`]: cosign's expressions are Go RE2, whose `\d`, `\w`, `\s` and `\b`
    /// are ASCII, where the `regex` crate's are Unicode unless Unicode is turned off.
    Regex(regex::bytes::Regex),
}

impl Matcher {
    /// A [`Matcher::Regex`] of `pattern` with ASCII classes, as Go's RE2 reads it. Unicode
    /// mode is off, so `.` and negated classes match a byte: the same strings match as in
    /// RE2 except where a count applies to non-ASCII characters (and `(?i)` folds ASCII
    /// only).
    pub fn regex(pattern: &str) -> Result<Matcher, regex::Error> {
        regex::bytes::RegexBuilder::new(pattern)
            .unicode(false)
            .build()
            .map(Matcher::Regex)
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Exact(e) => e == s,
            Matcher::Regex(r) => r.is_match(s.as_bytes()),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Exact(e) => write!(f, "{e:?}"),
            Matcher::Regex(r) => write!(f, "/{}/", r.as_str()),
        }
    }
}

/// What a keyless signature must satisfy, and what it is checked against.
#[derive(Debug, Clone)]
pub struct Keyless {
    /// Fulcio CAs, Rekor and CT log keys.
    pub root: TrustedRoot,
    /// The certificate identity (SAN).
    pub identity: Matcher,
    /// The OIDC issuer.
    pub issuer: Matcher,
    /// Skip the SCT check (cosign's `--insecure-ignore-sct`), for a private Fulcio without a
    /// CT log.
    pub ignore_sct: bool,
}

/// The certificate, chain and log entries carried with a keyless signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// The leaf certificate, DER.
    pub certificate: Vec<u8>,
    /// Further certificates, DER. Not used for trust: a chain is built from one CA entry of
    /// the trusted root alone.
    pub chain: Vec<Vec<u8>>,
    /// Transparency-log entries.
    pub entries: Vec<TlogEntry>,
}

/// The DER blocks of a PEM text, in order.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            body = Some(String::new());
        } else if line.starts_with("-----END ") {
            let b = body.take().ok_or("an END line without BEGIN")?;
            out.push(
                B64.decode(b)
                    .map_err(|e| format!("bad base64 in PEM: {e}"))?,
            );
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    if body.is_some() {
        return Err("a PEM block without END".into());
    }
    Ok(out)
}

impl Material {
    /// From the annotations of a cosign `.sig`/`.att` layer; `None` when there is no
    /// certificate annotation (a key-signed layer).
    pub fn from_annotations<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<Material>, KeylessError> {
        let Some(cert) = get(CERTIFICATE_ANNOTATION) else {
            return Ok(None);
        };
        let bad = |d: String| KeylessError::new(Check::Malformed, d);
        let certificate = pem_certificates(cert)
            .map_err(|e| bad(format!("the {CERTIFICATE_ANNOTATION} annotation: {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                bad(format!(
                    "the {CERTIFICATE_ANNOTATION} annotation holds no certificate"
                ))
            })?;
        let chain = match get(CHAIN_ANNOTATION) {
            Some(c) => pem_certificates(c)
                .map_err(|e| bad(format!("the {CHAIN_ANNOTATION} annotation: {e}")))?,
            None => Vec::new(),
        };
        let entries = match get(REKOR_BUNDLE_ANNOTATION) {
            Some(b) => vec![TlogEntry::from_cosign_bundle(b)?],
            None => Vec::new(),
        };
        Ok(Some(Material {
            certificate,
            chain,
            entries,
        }))
    }

    /// From a sigstore bundle (v0.1 to v0.3): `verificationMaterial.certificate` or
    /// `x509CertificateChain`, and `tlogEntries`. `None` when the bundle names a public key.
    pub fn from_bundle(bytes: &[u8]) -> Result<Option<Material>, KeylessError> {
        let bad = |d: String| KeylessError::new(Check::Malformed, d);
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("the bundle is not JSON: {e}")))?;
        let vm = v
            .get("verificationMaterial")
            .ok_or_else(|| bad("the bundle has no verificationMaterial".into()))?;
        let rawbytes = |c: &Value, at: &str| -> Result<Vec<u8>, KeylessError> {
            let s = c
                .get("rawBytes")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{at}.rawBytes is missing")))?;
            B64.decode(s)
                .map_err(|e| bad(format!("{at}.rawBytes is not base64: {e}")))
        };
        let mut certs = if let Some(c) = vm.get("certificate") {
            vec![rawbytes(c, "verificationMaterial.certificate")?]
        } else if let Some(chain) = vm.pointer("/x509CertificateChain/certificates") {
            let list = chain.as_array().ok_or_else(|| {
                bad("verificationMaterial.x509CertificateChain.certificates is not a list".into())
            })?;
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    rawbytes(
                        c,
                        &format!("verificationMaterial.x509CertificateChain.certificates[{i}]"),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            return Ok(None);
        };
        if certs.is_empty() {
            return Err(bad("the bundle's certificate chain is empty".into()));
        }
        let certificate = certs.remove(0);
        let entries = match vm.get("tlogEntries") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => list
                .as_array()
                .ok_or_else(|| bad("verificationMaterial.tlogEntries is not a list".into()))?
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    TlogEntry::from_bundle_entry(
                        e,
                        &format!("verificationMaterial.tlogEntries[{i}]"),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Some(Material {
            certificate,
            chain: certs,
            entries,
        }))
    }
}

/// What a keyless signature is over.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// Bytes signed as they are (a cosign simple-signing payload).
    Payload(&'a [u8]),
    /// An artifact known by its SHA-256 (a bundle's message signature).
    Digest(&'a [u8]),
    /// A DSSE envelope's payload (signed as its PAE).
    Dsse {
        /// `payloadType`.
        payload_type: &'a str,
        /// The decoded payload.
        payload: &'a [u8],
    },
}

/// What a verified keyless signature tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeylessVerified {
    /// The certificate identity that matched.
    pub identity: String,
    /// The certificate's OIDC issuer.
    pub issuer: String,
    /// When the log integrated the entry (Unix seconds): the signing time.
    pub integrated_time: i64,
    /// The entry's log index.
    pub log_index: i64,
}

impl Keyless {
    /// Verify `signature` over `content` with the certificate and log entries of `material`.
    pub fn verify(
        &self,
        material: &Material,
        content: Content<'_>,
        signature: &[u8],
    ) -> Result<KeylessVerified, KeylessError> {
        let leaf = Leaf::parse(&material.certificate)?;
        // 1. The signature, with the certificate's key.
        let (sig_ok, digest) = match content {
            Content::Payload(p) => (
                crypto::verify(&leaf.spki, p, signature).is_ok(),
                Sha256::digest(p).into(),
            ),
            Content::Digest(d) => {
                let d: [u8; 32] = d.try_into().map_err(|_| {
                    KeylessError::new(Check::Malformed, "the message digest is not SHA-256")
                })?;
                (prehash_verify(&leaf.spki, &d, signature), d)
            }
            Content::Dsse {
                payload_type,
                payload,
            } => (
                crypto::verify(
                    &leaf.spki,
                    &crate::sign::dsse::pae(payload_type, payload),
                    signature,
                )
                .is_ok(),
                [0; 32],
            ),
        };
        if !sig_ok {
            return Err(KeylessError::new(
                Check::Signature,
                "the signature does not verify with the certificate's key: the signed content \
                 was altered after signing (or the signature belongs to another certificate)",
            ));
        }
        let signed = match content {
            Content::Dsse { payload, .. } => Signed::Dsse { payload, signature },
            _ => Signed::Blob {
                sha256: digest,
                signature,
            },
        };
        // 2 and 3. A log entry that verifies and records this signature.
        if material.entries.is_empty() {
            return Err(KeylessError::new(
                Check::Tlog,
                "no transparency-log entry comes with the signature",
            ));
        }
        let mut first_err = None;
        let mut entry = None;
        for e in &material.entries {
            match e
                .verify(&self.root)
                .and_then(|()| tlog::check_body(&e.body, &signed, &leaf.der, &leaf.spki))
            {
                Ok(()) => {
                    entry = Some(e);
                    break;
                }
                Err(err) => {
                    first_err.get_or_insert(err);
                }
            }
        }
        let Some(entry) = entry else {
            return Err(first_err.unwrap_or_else(|| KeylessError::new(Check::Tlog, "no entry")));
        };
        let time = entry.integrated_time;
        // 4. The chain at the integrated time.
        let issuers = leaf.verify_chain(&self.root, time)?;
        // 5. The SCT.
        if !self.ignore_sct {
            leaf.verify_sct(&self.root, &issuers)?;
        }
        // 6. Identity and issuer.
        let Some(identity) = leaf.identities.iter().find(|i| self.identity.matches(i)) else {
            return Err(KeylessError::new(
                Check::Identity,
                format!(
                    "the certificate is for {:?}, not {}",
                    leaf.identities, self.identity
                ),
            ));
        };
        let issuer = leaf.issuer.clone().unwrap_or_default();
        if leaf.issuer.is_none() || !self.issuer.matches(&issuer) {
            return Err(KeylessError::new(
                Check::Issuer,
                match &leaf.issuer {
                    Some(i) => format!(
                        "the certificate's OIDC issuer is {i:?}, not {}",
                        self.issuer
                    ),
                    None => format!(
                        "the certificate names no OIDC issuer (extension {} or {}), expected {}",
                        cert::ISSUER_V2,
                        cert::ISSUER_V1,
                        self.issuer
                    ),
                },
            ));
        }
        Ok(KeylessVerified {
            identity: identity.clone(),
            issuer,
            integrated_time: time,
            log_index: entry.log_index,
        })
    }
}

/// ECDSA P-256 over a SHA-256 digest (a message signature); other curves are not read here.
fn prehash_verify(spki: &[u8], digest: &[u8; 32], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use p256::pkcs8::DecodePublicKey as _;
    let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(spki) else {
        return false;
    };
    let Ok(sig) = p256::ecdsa::Signature::from_der(signature) else {
        return false;
    };
    key.verify_prehash(digest, &sig).is_ok()
}

#[cfg(test)]
mod tests;
