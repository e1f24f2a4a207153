//! The Fulcio leaf certificate: its identity and issuer, its chain to a CA of the trusted root
//! (rustls-webpki path validation at an explicit time), and its embedded SCTs.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest as _, Sha256};
use x509_cert::der::asn1::{ObjectIdentifier, OctetString, Utf8StringRef};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::Certificate;

use super::crypto;
use super::trust::TrustedRoot;
use super::{Check, KeylessError};

const SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// DER contents of the code-signing EKU OID, for webpki.
const CODE_SIGNING_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// Fulcio's username SAN otherName type (a UTF8String identity).
pub const FULCIO_USERNAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.7");
/// Fulcio's OIDC issuer, legacy form: the raw string as the extension value.
pub const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio's OIDC issuer, current form: a DER UTF8String.
pub const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// The embedded SCT list (RFC 6962 section 3.3).
pub const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

/// The parts of a leaf certificate the checks use.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    /// SAN email addresses, URIs and Fulcio username other names (UTF-8), in order.
    pub identities: Vec<String>,
    /// The OIDC issuer from extension 1.3.6.1.4.1.57264.1.8, else .1.1.
    pub issuer: Option<String>,
    cert: Certificate,
}

fn malformed(detail: impl Into<String>) -> KeylessError {
    KeylessError::new(Check::Malformed, detail)
}

impl Leaf {
    /// Parse a leaf certificate (DER).
    pub fn parse(der: &[u8]) -> Result<Leaf, KeylessError> {
        let cert = Certificate::from_der(der)
            .map_err(|e| malformed(format!("the certificate is not X.509 DER: {e}")))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| malformed(format!("the certificate's public key: {e}")))?;
        let mut identities = Vec::new();
        let (mut v1, mut v2) = (None, None);
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == SAN {
                let san = SubjectAltName::from_der(value)
                    .map_err(|e| malformed(format!("the certificate's SAN: {e}")))?;
                for name in san.0 {
                    match name {
                        GeneralName::Rfc822Name(s) => identities.push(s.to_string()),
                        GeneralName::UniformResourceIdentifier(s) => identities.push(s.to_string()),
                        // Only Fulcio's username otherName is an identity, as cosign reads
                        // it; another type's UTF-8 value is not.
                        GeneralName::OtherName(o) if o.type_id == FULCIO_USERNAME => {
                            if let Ok(s) = o.value.decode_as::<String>() {
                                identities.push(s);
                            }
                        }
                        _ => {}
                    }
                }
            } else if ext.extn_id == ISSUER_V2 {
                let s = Utf8StringRef::from_der(value).map_err(|e| {
                    malformed(format!(
                        "the certificate's issuer extension {ISSUER_V2}: {e}"
                    ))
                })?;
                v2 = Some(s.as_str().to_string());
            } else if ext.extn_id == ISSUER_V1 {
                v1 = Some(String::from_utf8_lossy(value).into_owned());
            }
        }
        Ok(Leaf {
            der: der.to_vec(),
            spki,
            identities,
            issuer: v2.or(v1),
            cert,
        })
    }

    /// Whether the certificate's extended key usage includes code signing.
    pub fn has_code_signing(&self) -> bool {
        self.cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == EKU)
            .any(|e| {
                ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
                    .is_ok_and(|k| k.0.contains(&CODE_SIGNING))
            })
    }

    /// The certificate chains to a CA entry of `root` valid at `time` (Unix seconds), every
    /// certificate of the path is valid at `time`, and the leaf is for code signing.
    ///
    /// Each CA entry is tried on its own: its last certificate the only anchor, its other
    /// certificates the only intermediates. Certificates carried with the signature (cosign's
    /// chain annotation, a bundle's `x509CertificateChain`) are not path candidates: one
    /// byte-equal to a certificate of the entry adds nothing, and any other would let a
    /// signature bring back an intermediate whose entry's `validFor` has ended, or mix the
    /// certificates of two entries. webpki does not check the anchor's dates, so an entry
    /// whose root certificate is not valid at `time` is skipped here.
    /// Returns the DER of the CA certificates of the entry that may have issued the leaf.
    pub fn verify_chain(
        &self,
        root: &TrustedRoot,
        time: i64,
    ) -> Result<Vec<Vec<u8>>, KeylessError> {
        if !self.has_code_signing() {
            return Err(KeylessError::new(
                Check::Chain,
                "the certificate's extended key usage does not include code signing",
            ));
        }
        let cas: Vec<_> = root.cas.iter().filter(|c| c.valid.contains(time)).collect();
        if cas.is_empty() {
            return Err(KeylessError::new(
                Check::Chain,
                format!(
                    "no certificate authority of the trusted root is valid at the log's \
                     integrated time {}",
                    fmt_time(time)
                ),
            ));
        }
        let leaf = CertificateDer::from(self.der.clone());
        let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| {
            malformed(format!(
                "the certificate is not a valid end-entity certificate: {e}"
            ))
        })?;
        let at = UnixTime::since_unix_epoch(Duration::from_secs(time.max(0) as u64));
        let algs = [
            webpki::ring::ECDSA_P256_SHA256,
            webpki::ring::ECDSA_P256_SHA384,
            webpki::ring::ECDSA_P384_SHA256,
            webpki::ring::ECDSA_P384_SHA384,
            webpki::ring::ED25519,
            webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            webpki::ring::RSA_PKCS1_2048_8192_SHA384,
            webpki::ring::RSA_PKCS1_2048_8192_SHA512,
        ];
        // The leaf's code-signing EKU is checked above; CAs may omit the extension.
        let usage = webpki::KeyUsage::required_if_present(CODE_SIGNING_DER);
        // The most telling failure is reported: a leaf not valid at the time, then a problem
        // with an entry that knew the leaf's issuer, then an entry's root out of its dates,
        // then an unknown issuer (ranks 3 to 0; the first of a rank wins).
        let mut failure: Option<(u8, KeylessError)> = None;
        let mut note = |rank: u8, e: KeylessError| {
            if failure.as_ref().map_or(true, |(r, _)| rank > *r) {
                failure = Some((rank, e));
            }
        };
        for ca in cas {
            let Some(anchor_der) = ca.chain.last() else {
                continue;
            };
            let name = if ca.uri.is_empty() {
                "(no uri)"
            } else {
                ca.uri.as_str()
            };
            match Certificate::from_der(anchor_der) {
                Ok(c) if cert_valid_at(&c, time) => {}
                Ok(c) => {
                    let (nb, na) = cert_validity(&c);
                    note(
                        1,
                        KeylessError::new(
                            Check::Chain,
                            format!(
                                "the root certificate of certificate authority {name} is valid \
                                 from {} to {}, not at the log's integrated time {}",
                                fmt_time(nb),
                                fmt_time(na),
                                fmt_time(time)
                            ),
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    note(
                        1,
                        KeylessError::new(
                            Check::Chain,
                            format!(
                            "the root certificate of certificate authority {name} is not X.509 \
                             DER: {e}"
                            ),
                        ),
                    );
                    continue;
                }
            }
            let anchor_cert = CertificateDer::from(anchor_der.clone());
            let anchors: Vec<TrustAnchor<'_>> = webpki::anchor_from_trusted_cert(&anchor_cert)
                .into_iter()
                .collect();
            let intermediates: Vec<CertificateDer<'static>> = ca.chain[..ca.chain.len() - 1]
                .iter()
                .map(|d| CertificateDer::from(d.clone()))
                .collect();
            match ee.verify_for_usage(&algs, &anchors, &intermediates, at, usage, None, None) {
                Ok(_) => {
                    // The leaf's possible issuers: this entry's certificates whose subject
                    // is its issuer.
                    let issuer = &self.cert.tbs_certificate.issuer;
                    return Ok(ca
                        .chain
                        .iter()
                        .filter(|d| {
                            Certificate::from_der(d)
                                .is_ok_and(|c| c.tbs_certificate.subject == *issuer)
                        })
                        .cloned()
                        .collect());
                }
                Err(e) => {
                    let (nb, na) = cert_validity(&self.cert);
                    match e {
                        webpki::Error::CertExpired { .. }
                        | webpki::Error::CertNotValidYet { .. } => {
                            note(
                                3,
                                KeylessError::new(
                                    Check::Expired,
                                    format!(
                                        "a certificate of the chain was not valid at the log's \
                                         integrated time {} (the leaf is valid from {} to {}): {e}",
                                        fmt_time(time),
                                        fmt_time(nb),
                                        fmt_time(na)
                                    ),
                                ),
                            );
                        }
                        webpki::Error::InvalidSignatureForPublicKey => note(
                            2,
                            KeylessError::new(
                                Check::Chain,
                                format!(
                                    "the certificate does not chain to a certificate authority \
                                     of the trusted root valid at {} (a CA of its issuer's name \
                                     is there, but did not sign it)",
                                    fmt_time(time)
                                ),
                            ),
                        ),
                        webpki::Error::UnknownIssuer => note(
                            0,
                            KeylessError::new(
                                Check::Chain,
                                format!(
                                    "the certificate does not chain to a certificate authority \
                                     of the trusted root valid at {}",
                                    fmt_time(time)
                                ),
                            ),
                        ),
                        other => note(
                            2,
                            KeylessError::new(
                                Check::Chain,
                                format!("the certificate chain is not valid: {other}"),
                            ),
                        ),
                    }
                }
            }
        }
        Err(failure.map(|(_, e)| e).unwrap_or_else(|| {
            KeylessError::new(
                Check::Chain,
                "no certificate authority to check the chain against",
            )
        }))
    }

    /// At least one embedded SCT verifies with a CT log key of `root` valid at its timestamp,
    /// over the precertificate (the TBS without the SCT list) issued by one of `issuers`.
    pub fn verify_sct(&self, root: &TrustedRoot, issuers: &[Vec<u8>]) -> Result<(), KeylessError> {
        let fail = |d: String| KeylessError::new(Check::Sct, d);
        let ext = self
            .cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == SCT_LIST)
            .ok_or_else(|| fail("the certificate carries no embedded SCT".into()))?;
        let list = OctetString::from_der(ext.extn_value.as_bytes()).map_err(|e| {
            fail(format!(
                "the SCT list extension is not an OCTET STRING: {e}"
            ))
        })?;
        let scts = parse_sct_list(list.as_bytes()).map_err(fail)?;
        let mut tbs = self.cert.tbs_certificate.clone();
        if let Some(exts) = tbs.extensions.as_mut() {
            exts.retain(|e| e.extn_id != SCT_LIST);
        }
        let tbs = tbs
            .to_der()
            .map_err(|e| fail(format!("re-encoding the precertificate: {e}")))?;
        let issuer_hashes: Vec<[u8; 32]> = issuers
            .iter()
            .filter_map(|d| Certificate::from_der(d).ok())
            .filter_map(|c| c.tbs_certificate.subject_public_key_info.to_der().ok())
            .map(|spki| Sha256::digest(spki).into())
            .collect();
        let mut problems = Vec::new();
        for sct in &scts {
            let Some(log) = root.ctlog(&sct.log_id) else {
                problems.push(format!(
                    "SCT from CT log {} that the trusted root does not list",
                    hex::encode(&sct.log_id)
                ));
                continue;
            };
            let secs = (sct.timestamp / 1000) as i64;
            if !log.valid.contains(secs) {
                problems.push(format!(
                    "SCT from CT log {} at {}, outside the key's validity",
                    log.url,
                    fmt_time(secs)
                ));
                continue;
            }
            let ok = issuer_hashes.iter().any(|h| {
                let signed = sct.signed_data(h, &tbs);
                crypto::verify(&log.spki, &signed, &sct.signature).is_ok()
            });
            if ok {
                return Ok(());
            }
            problems.push(format!(
                "the SCT from CT log {} does not verify over this certificate",
                log.url
            ));
        }
        Err(fail(if problems.is_empty() {
            "the SCT list is empty".into()
        } else {
            problems.join("; ")
        }))
    }
}

/// One signed certificate timestamp (RFC 6962 section 3.2), v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sct {
    /// SHA-256 of the log's key.
    pub log_id: Vec<u8>,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
    /// `CtExtensions`.
    pub extensions: Vec<u8>,
    /// The DER signature (the hash and signature algorithm bytes are not needed: the log's
    /// key decides).
    pub signature: Vec<u8>,
}

impl Sct {
    /// The bytes the log signed for a precertificate entry.
    fn signed_data(&self, issuer_key_hash: &[u8; 32], tbs: &[u8]) -> Vec<u8> {
        let mut d = Vec::with_capacity(tbs.len() + 64);
        d.push(0); // v1
        d.push(0); // certificate_timestamp
        d.extend_from_slice(&self.timestamp.to_be_bytes());
        d.extend_from_slice(&1u16.to_be_bytes()); // precert_entry
        d.extend_from_slice(issuer_key_hash);
        let n = tbs.len() as u32;
        d.extend_from_slice(&n.to_be_bytes()[1..]);
        d.extend_from_slice(tbs);
        d.extend_from_slice(&(self.extensions.len() as u16).to_be_bytes());
        d.extend_from_slice(&self.extensions);
        d
    }
}

/// A reader of TLS-encoded fields that fails instead of panicking.
struct Tls<'a>(&'a [u8]);

impl<'a> Tls<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the SCT list is truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn vec16(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Parse a TLS `SignedCertificateTimestampList`; SCTs of versions other than v1 are skipped.
pub fn parse_sct_list(bytes: &[u8]) -> Result<Vec<Sct>, String> {
    let mut outer = Tls(bytes);
    let mut list = Tls(outer.vec16()?);
    if !outer.0.is_empty() {
        return Err("trailing bytes after the SCT list".into());
    }
    let mut out = Vec::new();
    while !list.0.is_empty() {
        let mut s = Tls(list.vec16()?);
        let version = s.take(1)?[0];
        if version != 0 {
            continue;
        }
        let log_id = s.take(32)?.to_vec();
        let ts = s.take(8)?;
        let timestamp = u64::from_be_bytes(ts.try_into().map_err(|_| "bad timestamp")?);
        let extensions = s.vec16()?.to_vec();
        s.take(2)?; // hash and signature algorithms
        let signature = s.vec16()?.to_vec();
        out.push(Sct {
            log_id,
            timestamp,
            extensions,
            signature,
        });
    }
    Ok(out)
}

/// `notBefore`/`notAfter` of `c`, Unix seconds.
fn cert_validity(c: &Certificate) -> (i64, i64) {
    let v = &c.tbs_certificate.validity;
    let secs =
        |t: &x509_cert::time::Time| t.to_unix_duration().as_secs().min(i64::MAX as u64) as i64;
    (secs(&v.not_before), secs(&v.not_after))
}

/// Whether `c` is valid at `time` (Unix seconds), both ends inclusive as RFC 5280 says.
fn cert_valid_at(c: &Certificate, time: i64) -> bool {
    let (nb, na) = cert_validity(c);
    nb <= time && time <= na
}

/// Unix seconds as RFC 3339, for messages.
pub fn fmt_time(t: i64) -> String {
    crate::timestamp::Timestamp(t).rfc3339()
}
