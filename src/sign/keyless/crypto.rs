//! Signature checks with a key given as SubjectPublicKeyInfo DER (Fulcio leaves, Rekor and CT
//! log keys), through *ring*.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::Decode as _;
use x509_cert::spki::SubjectPublicKeyInfoRef;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Verify `sig` over `msg` with the key in `spki` (DER). ECDSA P-256 uses SHA-256; P-384 is
/// tried with SHA-384 and then SHA-256 (cosign hashes with SHA-256 whatever the curve, other
/// sigstore clients with the curve's hash); Ed25519 and RSA PKCS#1 v1.5 SHA-256 are read too.
pub fn verify(spki: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), String> {
    let info = SubjectPublicKeyInfoRef::from_der(spki)
        .map_err(|e| format!("the public key is not a SubjectPublicKeyInfo: {e}"))?;
    let key = info.subject_public_key.raw_bytes();
    let algs: &[&dyn VerificationAlgorithm] = match info.algorithm.oid {
        EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            match curve {
                Some(P256) => &[&signature::ECDSA_P256_SHA256_ASN1],
                Some(P384) => &[
                    &signature::ECDSA_P384_SHA384_ASN1,
                    &signature::ECDSA_P384_SHA256_ASN1,
                ],
                other => return Err(format!("unsupported elliptic curve {other:?}")),
            }
        }
        ED25519 => &[&signature::ED25519],
        RSA => &[
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &signature::RSA_PSS_2048_8192_SHA256,
        ],
        other => return Err(format!("unsupported public key algorithm {other}")),
    };
    if algs
        .iter()
        .any(|alg| UnparsedPublicKey::new(*alg, key).verify(msg, sig).is_ok())
    {
        Ok(())
    } else {
        Err("the signature does not verify".into())
    }
}
