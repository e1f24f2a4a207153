//! Rekor entries: the signed entry timestamp (SET), the RFC 6962 inclusion proof with its
//! signed checkpoint, and the entry body's agreement with what was signed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::crypto;
use super::trust::TrustedRoot;
use super::{Check, KeylessError};

/// An inclusion proof with its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The leaf index in the tree the proof is for.
    pub log_index: u64,
    /// The tree's root hash.
    pub root_hash: Vec<u8>,
    /// The tree's size.
    pub tree_size: u64,
    /// The sibling hashes, leaf to root.
    pub hashes: Vec<Vec<u8>>,
    /// The signed note naming the root hash and size.
    pub checkpoint: String,
}

/// One transparency-log entry as carried with a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogEntry {
    /// The canonicalized entry body (JSON).
    pub body: Vec<u8>,
    /// When the log integrated the entry, Unix seconds.
    pub integrated_time: i64,
    /// The entry's global index.
    pub log_index: i64,
    /// The log's ID (SHA-256 of its key).
    pub log_id: Vec<u8>,
    /// The signed entry timestamp, DER.
    pub set: Option<Vec<u8>>,
    /// The inclusion proof.
    pub proof: Option<InclusionProof>,
}

fn bad(detail: impl Into<String>) -> KeylessError {
    KeylessError::new(Check::Malformed, detail)
}

/// A JSON integer that protobuf-JSON may write as a string.
fn int(v: Option<&Value>, at: &str) -> Result<i64, KeylessError> {
    match v {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(format!("{at} is missing or not an integer")))
}

fn b64(v: Option<&Value>, at: &str) -> Result<Vec<u8>, KeylessError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{at} is missing")))?;
    B64.decode(s)
        .map_err(|e| bad(format!("{at} is not base64: {e}")))
}

impl TlogEntry {
    /// cosign's `dev.sigstore.cosign/bundle` annotation:
    /// `{"SignedEntryTimestamp", "Payload": {"body", "integratedTime", "logIndex", "logID"}}`.
    pub fn from_cosign_bundle(text: &str) -> Result<TlogEntry, KeylessError> {
        let at = "the dev.sigstore.cosign/bundle annotation";
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("{at} is not JSON: {e}")))?;
        let p = v
            .get("Payload")
            .ok_or_else(|| bad(format!("{at} has no Payload")))?;
        let log_id = p
            .get("logID")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{at}: Payload.logID is missing")))?;
        Ok(TlogEntry {
            body: b64(p.get("body"), &format!("{at}: Payload.body"))?,
            integrated_time: int(
                p.get("integratedTime"),
                &format!("{at}: Payload.integratedTime"),
            )?,
            log_index: int(p.get("logIndex"), &format!("{at}: Payload.logIndex"))?,
            log_id: hex::decode(log_id)
                .map_err(|e| bad(format!("{at}: Payload.logID is not hex: {e}")))?,
            set: Some(b64(
                v.get("SignedEntryTimestamp"),
                &format!("{at}: SignedEntryTimestamp"),
            )?),
            proof: None,
        })
    }

    /// One `verificationMaterial.tlogEntries[i]` of a sigstore bundle.
    pub fn from_bundle_entry(v: &Value, at: &str) -> Result<TlogEntry, KeylessError> {
        let proof = match v.get("inclusionProof") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let pat = format!("{at}.inclusionProof");
                let hashes = p
                    .get("hashes")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad(format!("{pat}.hashes is missing")))?
                    .iter()
                    .enumerate()
                    .map(|(i, h)| b64(Some(h), &format!("{pat}.hashes[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                let checkpoint = p
                    .pointer("/checkpoint/envelope")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{pat}.checkpoint.envelope is missing")))?;
                let nonneg = |n: i64, f: &str| {
                    u64::try_from(n).map_err(|_| bad(format!("{pat}.{f} is negative")))
                };
                Some(InclusionProof {
                    log_index: nonneg(
                        int(p.get("logIndex"), &format!("{pat}.logIndex"))?,
                        "logIndex",
                    )?,
                    root_hash: b64(p.get("rootHash"), &format!("{pat}.rootHash"))?,
                    tree_size: nonneg(
                        int(p.get("treeSize"), &format!("{pat}.treeSize"))?,
                        "treeSize",
                    )?,
                    hashes,
                    checkpoint: checkpoint.to_string(),
                })
            }
        };
        let set = match v.pointer("/inclusionPromise/signedEntryTimestamp") {
            None | Some(Value::Null) => None,
            s => Some(b64(
                s,
                &format!("{at}.inclusionPromise.signedEntryTimestamp"),
            )?),
        };
        Ok(TlogEntry {
            body: b64(
                v.get("canonicalizedBody"),
                &format!("{at}.canonicalizedBody"),
            )?,
            integrated_time: int(v.get("integratedTime"), &format!("{at}.integratedTime"))?,
            log_index: int(v.get("logIndex"), &format!("{at}.logIndex"))?,
            log_id: b64(v.pointer("/logId/keyId"), &format!("{at}.logId.keyId"))?,
            set,
            proof,
        })
    }

    /// The entry's SET and/or inclusion proof verify with a log key of `root`. A verified SET
    /// is required: it is what makes `integrated_time` a signed time (graft reads no RFC 3161
    /// timestamps), so an entry with only an inclusion proof is refused.
    pub fn verify(&self, root: &TrustedRoot) -> Result<(), KeylessError> {
        let fail = |d: String| KeylessError::new(Check::Tlog, d);
        let log = root.tlog(&self.log_id).ok_or_else(|| {
            fail(format!(
                "the entry's log {} is not a transparency log of the trusted root",
                hex::encode(&self.log_id)
            ))
        })?;
        if !log.valid.contains(self.integrated_time) {
            return Err(fail(format!(
                "the log key of {} is not valid at the entry's integrated time {}",
                log.url,
                super::cert::fmt_time(self.integrated_time)
            )));
        }
        let Some(set) = &self.set else {
            return Err(fail(
                "the entry has no signed entry timestamp (inclusionPromise), so its integrated \
                 time is not signed"
                    .into(),
            ));
        };
        // Canonical JSON: keys sorted, no spaces; base64 and hex need no escaping.
        let canonical = format!(
            r#"{{"body":"{}","integratedTime":{},"logID":"{}","logIndex":{}}}"#,
            B64.encode(&self.body),
            self.integrated_time,
            hex::encode(&self.log_id),
            self.log_index
        );
        crypto::verify(&log.spki, canonical.as_bytes(), set).map_err(|_| {
            fail(format!(
                "the signed entry timestamp of log entry {} does not verify with the key of {}",
                self.log_index, log.url
            ))
        })?;
        if let Some(p) = &self.proof {
            let leaf = leaf_hash(&self.body);
            if !verify_inclusion(p.log_index, p.tree_size, &leaf, &p.hashes, &p.root_hash) {
                return Err(fail(format!(
                    "the inclusion proof of log entry {} does not lead to root hash {}",
                    self.log_index,
                    hex::encode(&p.root_hash)
                )));
            }
            verify_checkpoint(
                &p.checkpoint,
                &log.spki,
                &log.key_id,
                p.tree_size,
                &p.root_hash,
            )
            .map_err(|e| {
                fail(format!(
                    "the checkpoint of log entry {}: {e}",
                    self.log_index
                ))
            })?;
        }
        Ok(())
    }
}

/// RFC 6962 leaf hash.
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

fn node_hash(l: &[u8], r: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// RFC 9162 section 2.1.3.2: whether `proof` leads from leaf `index` of a tree of `size`
/// leaves to `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8; 32],
    proof: &[Vec<u8>],
    root: &[u8],
) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r.as_slice() == root
}

/// A signed note (checkpoint): its first lines name the tree size and root hash, and a
/// signature line by the log (`— NAME base64(keyhint[4] || signature)`) verifies over the
/// text before the blank line.
pub fn verify_checkpoint(
    note: &str,
    spki: &[u8],
    key_id: &[u8],
    size: u64,
    root: &[u8],
) -> Result<(), String> {
    let (text, sigs) = note
        .split_once("\n\n")
        .ok_or("it is not a signed note (no blank line)")?;
    let text = format!("{text}\n");
    let mut lines = text.lines();
    let _origin = lines.next().ok_or("no origin line")?;
    let n: u64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("no tree size line")?;
    let hash = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .ok_or("no root hash line")?;
    if n != size || hash != root {
        return Err(format!(
            "it names tree size {n} and root {}, the proof {size} and {}",
            hex::encode(&hash),
            hex::encode(root)
        ));
    }
    let hint = key_id.get(..4).ok_or("the log ID is too short")?;
    for line in sigs.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            continue;
        };
        let Some((_name, sig)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(sig) = B64.decode(sig) else { continue };
        if sig.len() > 4
            && &sig[..4] == hint
            && crypto::verify(spki, text.as_bytes(), &sig[4..]).is_ok()
        {
            return Ok(());
        }
    }
    Err("no signature by the log's key".into())
}

/// What the signature signed, as the Rekor entry body must describe it.
pub enum Signed<'a> {
    /// A blob signature (cosign `.sig` payload, or a bundle's message signature) over content
    /// with this SHA-256.
    Blob {
        /// SHA-256 of the signed bytes.
        sha256: [u8; 32],
        /// The signature, DER.
        signature: &'a [u8],
    },
    /// A DSSE envelope's signature.
    Dsse {
        /// The envelope's decoded payload.
        payload: &'a [u8],
        /// The signature, DER.
        signature: &'a [u8],
    },
}

fn pem_der(text: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(text).ok()?;
    let body: String = s
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    B64.decode(body.trim()).ok()
}

/// The key material an entry names (a base64 PEM certificate or public key) is `leaf`'s.
fn names_key(b64_pem: Option<&Value>, cert_der: &[u8], spki: &[u8]) -> bool {
    let Some(der) = b64_pem
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .and_then(|pem| pem_der(&pem))
    else {
        return false;
    };
    der == cert_der || der == spki
}

fn hash_matches(h: Option<&Value>, sha256: &[u8]) -> bool {
    h.is_some_and(|h| {
        h.get("algorithm").and_then(Value::as_str) == Some("sha256")
            && h.get("value").and_then(Value::as_str) == Some(hex::encode(sha256).as_str())
    })
}

/// The entry body describes `signed`, signed by the key of certificate `cert_der`
/// (SubjectPublicKeyInfo `spki`). Reads `hashedrekord` 0.0.1, `intoto` 0.0.2 and `dsse` 0.0.1.
pub fn check_body(
    body: &[u8],
    signed: &Signed<'_>,
    cert_der: &[u8],
    spki: &[u8],
) -> Result<(), KeylessError> {
    let fail = |d: String| KeylessError::new(Check::Body, d);
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| fail(format!("the log entry body is not JSON: {e}")))?;
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let spec = v.get("spec").unwrap_or(&Value::Null);
    match (kind, version, signed) {
        ("hashedrekord", "0.0.1", Signed::Blob { sha256, signature }) => {
            let sig = spec
                .pointer("/signature/content")
                .and_then(Value::as_str)
                .and_then(|s| B64.decode(s).ok());
            if sig.as_deref() != Some(*signature) {
                return Err(fail("the log entry records another signature".into()));
            }
            if !names_key(spec.pointer("/signature/publicKey/content"), cert_der, spki) {
                return Err(fail("the log entry records another certificate".into()));
            }
            if !hash_matches(spec.pointer("/data/hash"), sha256) {
                return Err(fail(format!(
                    "the log entry records another digest than the signed content's sha256:{}",
                    hex::encode(sha256)
                )));
            }
            Ok(())
        }
        ("intoto", "0.0.2", Signed::Dsse { payload, signature }) => {
            let content = spec.get("content").unwrap_or(&Value::Null);
            // Required, as in the dsse kind: without it nothing ties the entry to this
            // payload but the signature.
            if !hash_matches(content.get("payloadHash"), &Sha256::digest(payload)) {
                return Err(fail(
                    "the log entry records another payload (or no spec.content.payloadHash)".into(),
                ));
            }
            let sigs = content
                .pointer("/envelope/signatures")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            // intoto 0.0.2 keeps each signature base64-encoded twice.
            let found = sigs.iter().any(|s| {
                let sig = s
                    .get("sig")
                    .and_then(Value::as_str)
                    .and_then(|x| B64.decode(x).ok())
                    .and_then(|x| B64.decode(x).ok());
                sig.as_deref() == Some(*signature) && names_key(s.get("publicKey"), cert_der, spki)
            });
            if !found {
                return Err(fail(
                    "the log entry records another signature or certificate".into(),
                ));
            }
            Ok(())
        }
        ("dsse", "0.0.1", Signed::Dsse { payload, signature }) => {
            if !hash_matches(spec.get("payloadHash"), &Sha256::digest(payload)) {
                return Err(fail("the log entry records another payload".into()));
            }
            let found = spec
                .get("signatures")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|s| {
                    let sig = s
                        .get("signature")
                        .and_then(Value::as_str)
                        .and_then(|x| B64.decode(x).ok());
                    sig.as_deref() == Some(*signature)
                        && names_key(s.get("verifier"), cert_der, spki)
                });
            if !found {
                return Err(fail(
                    "the log entry records another signature or certificate".into(),
                ));
            }
            Ok(())
        }
        _ => Err(fail(format!(
            "a log entry of kind {kind:?} version {version:?} does not describe this kind of \
             signature"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusion_proofs_of_a_small_tree() {
        // Seven leaves; check every index against proofs built by brute force.
        let leaves: Vec<[u8; 32]> = (0u8..7).map(|i| leaf_hash(&[i])).collect();
        fn root(l: &[[u8; 32]]) -> [u8; 32] {
            if l.len() == 1 {
                return l[0];
            }
            let k = l.len().next_power_of_two() / 2;
            node_hash(&root(&l[..k]), &root(&l[k..]))
        }
        fn path(i: usize, l: &[[u8; 32]]) -> Vec<Vec<u8>> {
            if l.len() == 1 {
                return vec![];
            }
            let k = l.len().next_power_of_two() / 2;
            if i < k {
                let mut p = path(i, &l[..k]);
                p.push(root(&l[k..]).to_vec());
                p
            } else {
                let mut p = path(i - k, &l[k..]);
                p.push(root(&l[..k]).to_vec());
                p
            }
        }
        let r = root(&leaves);
        for i in 0..7 {
            let p = path(i, &leaves);
            assert!(verify_inclusion(i as u64, 7, &leaves[i], &p, &r), "{i}");
            for j in 0..p.len() {
                let mut q = p.clone();
                q[j][0] ^= 1;
                assert!(
                    !verify_inclusion(i as u64, 7, &leaves[i], &q, &r),
                    "{i} {j}"
                );
            }
            let other = (i + 1) % 7;
            assert!(
                !verify_inclusion(other as u64, 7, &leaves[i], &p, &r),
                "{i}"
            );
            assert!(
                !verify_inclusion(i as u64, 7, &leaves[other], &p, &r),
                "{i}"
            );
            assert!(
                !verify_inclusion(i as u64, 7, &leaves[i], &p[1..], &r),
                "{i}"
            );
        }
        assert!(!verify_inclusion(7, 7, &leaves[0], &[], &r));
    }

    #[test]
    fn an_intoto_entry_without_payload_hash_is_refused() {
        let (payload, signature, cert) = (b"statement".as_slice(), b"sig".as_slice(), b"cert");
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            B64.encode(cert)
        );
        let body = |payload_hash: Option<&[u8]>| {
            let mut content = serde_json::json!({"envelope": {
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"sig": B64.encode(B64.encode(signature)),
                    "publicKey": B64.encode(&pem)}]}});
            if let Some(p) = payload_hash {
                content["payloadHash"] = serde_json::json!({"algorithm": "sha256", "value": hex::encode(Sha256::digest(p))});
            }
            serde_json::to_vec(&serde_json::json!({"apiVersion": "0.0.2", "kind": "intoto",
                "spec": {"content": content}}))
            .unwrap()
        };
        let signed = Signed::Dsse { payload, signature };
        check_body(&body(Some(payload)), &signed, cert, b"spki").unwrap();
        let e = check_body(&body(Some(b"other")), &signed, cert, b"spki").unwrap_err();
        assert_eq!(e.check, Check::Body);
        let e = check_body(&body(None), &signed, cert, b"spki").unwrap_err();
        assert_eq!(e.check, Check::Body);
        assert!(e.detail.contains("payloadHash"), "{e}");
    }
}
