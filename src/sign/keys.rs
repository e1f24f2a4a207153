//! Cosign key files.
//!
//! Private keys are ECDSA P-256, stored as cosign stores them: a PEM block labelled
//! `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign: `ENCRYPTED COSIGN PRIVATE KEY`) whose body is
//! the JSON document
//! `{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":B64},"cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}`;
//! the ciphertext is NaCl secretbox (XSalsa20-Poly1305, tag first) of the PKCS#8 DER key under
//! `scrypt(password, salt, N, r, p, 32)`. Public keys are PEM `PUBLIC KEY` (SPKI DER).
//!
//! `--key` values are a file path or `env://VAR` (the variable holds the PEM text). Errors name
//! where the key came from and never contain key material or the password.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key as BoxKey, Nonce, XSalsa20Poly1305};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey as EcSigningKey, VerifyingKey};
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// PEM label of the private keys cosign writes today (and graft writes).
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label of private keys written by older cosign releases.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// PEM label of public keys (SPKI DER).
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// scrypt cost cosign uses for new keys: N = 2^16.
pub const SCRYPT_LOG_N: u8 = 16;
/// scrypt block size.
pub const SCRYPT_R: u32 = 8;
/// scrypt parallelism.
pub const SCRYPT_P: u32 = 1;

const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";

/// An ECDSA P-256 signing key. Its `Debug` output shows only the public key's hint.
#[derive(Clone)]
pub struct SigningKey {
    inner: EcSigningKey,
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public key {})", self.public_key().hint())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.hint())
    }
}

#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn key_error(what: &str, reason: impl Into<String>) -> Error {
    Error::Key {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// Read key text from a `--key` value: a file path, or `env://VAR` for the PEM text in an
/// environment variable. Returns the text and a name for messages.
pub fn read_key_text(spec: &str) -> Result<(String, String)> {
    if let Some(var) = spec.strip_prefix("env://") {
        if var.is_empty() {
            return Err(key_error(
                spec,
                "env:// needs a variable name, e.g. env://COSIGN_KEY",
            ));
        }
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok((v, spec.to_string())),
            Ok(_) => Err(key_error(
                spec,
                format!("the environment variable {var} is empty"),
            )),
            Err(std::env::VarError::NotPresent) => Err(key_error(
                spec,
                format!("the environment variable {var} is not set"),
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(key_error(
                spec,
                format!("the environment variable {var} is not valid UTF-8"),
            )),
        };
    }
    // A key file that is missing or unreadable is a wrong argument (exit 2), like a bad one.
    let cannot = |e: std::io::Error| key_error(spec, format!("cannot read the key file: {e}"));
    // Read with a limit (a device or a huge file must not fill memory); a pipe is fine,
    // e.g. `--key <(pass show cosign)`.
    let mut bytes = Vec::new();
    std::fs::File::open(spec)
        .and_then(|f| {
            use std::io::Read;
            f.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes)
        })
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(key_error(
            spec,
            format!(
                "the file is larger than {} KiB; a PEM key file is a few hundred bytes",
                MAX_KEY_FILE_BYTES >> 10
            ),
        ));
    }
    String::from_utf8(bytes)
        .map(|t| (t, spec.to_string()))
        .map_err(|_| key_error(spec, "not a PEM text file (invalid UTF-8)"))
}

/// Largest key file read: PEM keys are a few hundred bytes.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// Split the first PEM block of `text` into its label and decoded body.
pub fn pem_decode(text: &str, what: &str) -> Result<(String, Vec<u8>)> {
    let mut lines = text.lines().map(str::trim);
    let label = loop {
        match lines.next() {
            Some(l) => {
                if let Some(rest) = l.strip_prefix("-----BEGIN ") {
                    break rest.trim_end_matches('-').to_string();
                }
            }
            None => return Err(key_error(what, "no PEM block (-----BEGIN …-----) found")),
        }
    };
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut ended = false;
    for l in lines {
        if l == end {
            ended = true;
            break;
        }
        if l.contains(':') {
            return Err(key_error(what, "PEM headers are not supported"));
        }
        body.push_str(l);
    }
    if !ended {
        return Err(key_error(what, format!("the PEM block has no {end} line")));
    }
    let der = B64
        .decode(body.as_bytes())
        .map_err(|e| key_error(what, format!("the PEM body is not valid base64: {e}")))?;
    Ok((label, der))
}

/// Encode `der` as a PEM block with `label`, 64 columns, `\n` line ends (as Go's `pem.Encode`).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn scrypt_key(
    password: &[u8],
    salt: &[u8],
    n: u64,
    r: u32,
    p: u32,
    what: &str,
) -> Result<Zeroizing<[u8; 32]>> {
    if n < 2 || !n.is_power_of_two() {
        return Err(key_error(
            what,
            format!("scrypt N = {n} is not a power of two"),
        ));
    }
    let log_n = n.trailing_zeros() as u8;
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|e| {
        key_error(
            what,
            format!("unsupported scrypt parameters N={n} r={r} p={p}: {e}"),
        )
    })?;
    let mut out = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, out.as_mut())
        .map_err(|e| key_error(what, format!("scrypt failed: {e}")))?;
    Ok(out)
}

impl SigningKey {
    /// A new random key (from the operating system's generator).
    pub fn generate() -> SigningKey {
        SigningKey {
            inner: EcSigningKey::random(&mut OsRng),
        }
    }

    /// Load a private key from a `--key` value (path or `env://VAR`), decrypting it with
    /// `password` when it is a cosign encrypted key.
    pub fn load(spec: &str, password: &[u8]) -> Result<SigningKey> {
        let (text, what) = read_key_text(spec)?;
        SigningKey::from_pem(&text, password, &what)
    }

    /// Parse a private key PEM: cosign's encrypted forms (both labels) or an unencrypted
    /// PKCS#8 `PRIVATE KEY`. `what` names the source in errors.
    pub fn from_pem(text: &str, password: &[u8], what: &str) -> Result<SigningKey> {
        let (label, body) = pem_decode(text, what)?;
        match label.as_str() {
            SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL => {
                let der = decrypt(&body, password, what)?;
                SigningKey::from_pkcs8(&der, what)
            }
            "PRIVATE KEY" => SigningKey::from_pkcs8(&Zeroizing::new(body), what),
            PUBLIC_KEY_LABEL => Err(key_error(
                what,
                "this is a public key; signing needs the private key (the .key file)",
            )),
            other => Err(key_error(
                what,
                format!(
                    "unsupported PEM block {other:?}; expected {SIGSTORE_PRIVATE_KEY_LABEL:?} \
                     (cosign generate-key-pair / graft generate-key-pair)"
                ),
            )),
        }
    }

    fn from_pkcs8(der: &[u8], what: &str) -> Result<SigningKey> {
        check_pkcs8_type(der, what)?;
        EcSigningKey::from_pkcs8_der(der)
            .map(|inner| SigningKey { inner })
            .map_err(|e| key_error(what, format!("not a valid PKCS#8 P-256 private key: {e}")))
    }

    /// The cosign encrypted PEM of this key, with a fresh random salt and nonce.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String> {
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        self.to_encrypted_pem_with(password, &salt, &nonce)
    }

    /// The cosign encrypted PEM with a given salt and nonce (deterministic; for tests).
    pub fn to_encrypted_pem_with(
        &self,
        password: &[u8],
        salt: &[u8; 32],
        nonce: &[u8; 24],
    ) -> Result<String> {
        let what = "new key";
        let der = self
            .inner
            .to_pkcs8_der()
            .map_err(|e| key_error(what, format!("PKCS#8 encoding failed: {e}")))?;
        let key = scrypt_key(password, salt, 1 << SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, what)?;
        let ciphertext = XSalsa20Poly1305::new(&BoxKey::from(*key))
            .encrypt(&Nonce::from(*nonce), der.as_bytes())
            .map_err(|_| key_error(what, "secretbox encryption failed"))?;
        let doc = EncryptedKey {
            kdf: Kdf {
                name: "scrypt".into(),
                params: ScryptParams {
                    n: 1 << SCRYPT_LOG_N,
                    r: SCRYPT_R,
                    p: SCRYPT_P,
                },
                salt: B64.encode(salt),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: B64.encode(nonce),
            },
            ciphertext: B64.encode(ciphertext),
        };
        let json = serde_json::to_vec(&doc).map_err(|e| Error::Json {
            what: "encrypted key document".into(),
            source: e,
        })?;
        Ok(pem_encode(SIGSTORE_PRIVATE_KEY_LABEL, &json))
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            inner: *self.inner.verifying_key(),
        }
    }

    /// ECDSA P-256 over SHA-256 of `message`, ASN.1 DER encoded. Deterministic (RFC 6979):
    /// signing the same message twice gives the same bytes.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.inner.sign(message);
        sig.to_der().as_bytes().to_vec()
    }
}

fn decrypt(body: &[u8], password: &[u8], what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let doc: EncryptedKey = serde_json::from_slice(body).map_err(|e| {
        key_error(
            what,
            format!("the encrypted key document is not valid JSON: {e}"),
        )
    })?;
    if doc.kdf.name != "scrypt" {
        return Err(key_error(
            what,
            format!(
                "unsupported key derivation {:?} (expected scrypt)",
                doc.kdf.name
            ),
        ));
    }
    if doc.cipher.name != "nacl/secretbox" {
        return Err(key_error(
            what,
            format!(
                "unsupported cipher {:?} (expected nacl/secretbox)",
                doc.cipher.name
            ),
        ));
    }
    let b64 = |field: &str, v: &str| {
        B64.decode(v)
            .map_err(|e| key_error(what, format!("{field} is not valid base64: {e}")))
    };
    let salt = b64("kdf.salt", &doc.kdf.salt)?;
    let nonce = b64("cipher.nonce", &doc.cipher.nonce)?;
    let ciphertext = b64("ciphertext", &doc.ciphertext)?;
    let nonce: [u8; 24] = nonce.as_slice().try_into().map_err(|_| {
        key_error(
            what,
            format!("cipher.nonce has {} bytes, expected 24", nonce.len()),
        )
    })?;
    let p = &doc.kdf.params;
    check_scrypt_params(p, what)?;
    let key = scrypt_key(password, &salt, p.n, p.r, p.p, what)?;
    XSalsa20Poly1305::new(&BoxKey::from(*key))
        .decrypt(&Nonce::from(nonce), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| {
            key_error(
                what,
                "cannot decrypt: wrong password (set COSIGN_PASSWORD to the key's password)",
            )
        })
}

/// Largest scrypt cost accepted from a key file: N = 2^17 (cosign writes 2^15 or 2^16).
/// The file chooses its own parameters, so a hostile one could otherwise ask for gigabytes
/// of memory (N = 2^30) or hours of work (p = 2^20) before the password is even checked.
pub const MAX_SCRYPT_LOG_N: u32 = 17;

/// Refuse scrypt parameters outside what cosign writes.
fn check_scrypt_params(p: &ScryptParams, what: &str) -> Result<()> {
    let n_ok = p.n >= 2 && p.n.is_power_of_two() && p.n <= 1 << MAX_SCRYPT_LOG_N;
    if n_ok && p.r == SCRYPT_R && p.p == SCRYPT_P {
        return Ok(());
    }
    Err(key_error(
        what,
        format!(
            "unsupported scrypt parameters N={} r={} p={}: graft accepts N a power of two up to \
             2^{MAX_SCRYPT_LOG_N}, r={SCRYPT_R} and p={SCRYPT_P} (cosign writes N=32768 or 65536)",
            p.n, p.r, p.p
        ),
    ))
}

/// The message for a key that is not ECDSA P-256; `algorithm` and `curve` are the OIDs of
/// its algorithm identifier (`curve` for EC keys only).
fn unsupported_type(what: &str, algorithm: &str, curve: Option<&str>) -> Error {
    let kind = match (algorithm, curve) {
        (EC_PUBLIC_KEY_OID, Some("1.3.132.0.34")) => "ECDSA P-384".to_string(),
        (EC_PUBLIC_KEY_OID, Some("1.3.132.0.35")) => "ECDSA P-521".to_string(),
        (EC_PUBLIC_KEY_OID, Some("1.3.132.0.10")) => "ECDSA secp256k1".to_string(),
        (EC_PUBLIC_KEY_OID, Some(c)) => format!("ECDSA on curve {c}"),
        (EC_PUBLIC_KEY_OID, None) => "ECDSA without a named curve".to_string(),
        ("1.3.101.112", _) => "Ed25519".to_string(),
        ("1.3.101.113", _) => "Ed448".to_string(),
        ("1.2.840.113549.1.1.1", _) => "RSA".to_string(),
        ("1.2.840.113549.1.1.10", _) => "RSA-PSS".to_string(),
        ("1.2.840.10040.4.1", _) => "DSA".to_string(),
        (o, _) => format!("with algorithm {o}"),
    };
    key_error(
        what,
        format!("unsupported key type {kind}: graft supports ECDSA P-256 keys (cosign's default)"),
    )
}

/// Refuse non-P-256 keys with a message naming the type.
fn check_pkcs8_type(der: &[u8], what: &str) -> Result<()> {
    let info = p256::pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| key_error(what, format!("the decrypted key is not PKCS#8: {e}")))?;
    check_algorithm(&info.algorithm, what)
}

/// Refuse an algorithm identifier other than ECDSA P-256, naming what it is.
fn check_algorithm(alg: &p256::pkcs8::AlgorithmIdentifierRef<'_>, what: &str) -> Result<()> {
    let oid = alg.oid.to_string();
    let curve = alg.parameters_oid().ok().map(|o| o.to_string());
    if oid == EC_PUBLIC_KEY_OID && curve.as_deref() == Some(P256_OID) {
        return Ok(());
    }
    Err(unsupported_type(what, &oid, curve.as_deref()))
}

impl PublicKey {
    /// Load a public key from a `--key` value (path or `env://VAR`).
    pub fn load(spec: &str) -> Result<PublicKey> {
        let (text, what) = read_key_text(spec)?;
        PublicKey::from_pem(&text, &what)
    }

    /// Parse a PEM `PUBLIC KEY` (SPKI). `what` names the source in errors.
    pub fn from_pem(text: &str, what: &str) -> Result<PublicKey> {
        let (label, der) = pem_decode(text, what)?;
        match label.as_str() {
            PUBLIC_KEY_LABEL => PublicKey::from_der(&der, what),
            l if l.contains("PRIVATE KEY") => Err(key_error(
                what,
                "this is a private key; verification needs the public key (the .pub file)",
            )),
            other => Err(key_error(
                what,
                format!("unsupported PEM block {other:?}; expected \"PUBLIC KEY\""),
            )),
        }
    }

    /// Parse SPKI DER.
    pub fn from_der(der: &[u8], what: &str) -> Result<PublicKey> {
        // The algorithm first, so another key type is named as what it is.
        let spki = p256::pkcs8::SubjectPublicKeyInfoRef::try_from(der).map_err(|e| {
            key_error(
                what,
                format!("not a public key (SubjectPublicKeyInfo DER): {e}"),
            )
        })?;
        check_algorithm(&spki.algorithm, what)?;
        VerifyingKey::from_public_key_der(der)
            .map(|inner| PublicKey { inner })
            .map_err(|e| key_error(what, format!("not an ECDSA P-256 public key: {e}")))
    }

    /// SPKI DER.
    pub fn to_der(&self) -> Vec<u8> {
        self.inner
            .to_public_key_der()
            .expect("a P-256 key always encodes")
            .as_bytes()
            .to_vec()
    }

    /// PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        pem_encode(PUBLIC_KEY_LABEL, &self.to_der())
    }

    /// The key's hint, as sigstore clients compute it: base64 of SHA-256 of the SPKI DER.
    /// Public; used to tell "signed by another key" from "altered after signing".
    pub fn hint(&self) -> String {
        B64.encode(Sha256::digest(self.to_der()))
    }

    /// Whether `signature` (ASN.1 DER, or raw `r||s`) is a valid ECDSA P-256 / SHA-256
    /// signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match parse_signature(signature) {
            Some(sig) => self.inner.verify(message, &sig).is_ok(),
            None => false,
        }
    }

    /// Like [`PublicKey::verify`] for a message known only by its SHA-256 `digest`.
    pub fn verify_prehash(&self, digest: &[u8], signature: &[u8]) -> bool {
        match parse_signature(signature) {
            Some(sig) => self.inner.verify_prehash(digest, &sig).is_ok(),
            None => false,
        }
    }
}

fn parse_signature(bytes: &[u8]) -> Option<Signature> {
    Signature::from_der(bytes)
        .ok()
        .or_else(|| Signature::from_slice(bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let pem = pem_encode("PUBLIC KEY", &[1u8; 100]);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let (label, der) = pem_decode(&pem, "x").unwrap();
        assert_eq!(label, "PUBLIC KEY");
        assert_eq!(der, vec![1u8; 100]);
    }

    #[test]
    fn encrypted_key_round_trip_and_wrong_password() {
        let k = SigningKey::generate();
        let pem = k
            .to_encrypted_pem_with(b"hunter2", &[7; 32], &[9; 24])
            .unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let (_, body) = pem_decode(&pem, "k").unwrap();
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.starts_with(
                r#"{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":""#
            ),
            "{body}"
        );
        assert!(body.contains(r#""cipher":{"name":"nacl/secretbox","nonce":""#));
        let back = SigningKey::from_pem(&pem, b"hunter2", "k").unwrap();
        assert_eq!(back.public_key(), k.public_key());
        let err = SigningKey::from_pem(&pem, b"hunter3", "k.key")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("k.key") && err.contains("wrong password"),
            "{err}"
        );
        assert!(!err.contains("hunter"), "{err}");
    }

    #[test]
    fn signatures_are_deterministic_and_verify() {
        let k = SigningKey::generate();
        let a = k.sign(b"payload");
        assert_eq!(a, k.sign(b"payload"));
        let pubk = k.public_key();
        assert!(pubk.verify(b"payload", &a));
        assert!(!pubk.verify(b"payload!", &a));
        let digest = Sha256::digest(b"payload");
        assert!(pubk.verify_prehash(&digest, &a));
        let other = SigningKey::generate().public_key();
        assert!(!other.verify(b"payload", &a));
        let pem = pubk.to_pem();
        assert_eq!(PublicKey::from_pem(&pem, "p").unwrap(), pubk);
        assert_eq!(pubk.hint().len(), 44);
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = SigningKey::generate();
        let d = format!("{k:?}");
        assert!(d.starts_with("SigningKey(public key "), "{d}");
    }

    #[test]
    fn scrypt_costs_are_bounded() {
        let params = |n, r, p| ScryptParams { n, r, p };
        for (n, r, p) in [(1 << 15, 8, 1), (1 << 16, 8, 1), (1 << 17, 8, 1)] {
            assert!(check_scrypt_params(&params(n, r, p), "k").is_ok());
        }
        for (n, r, p) in [
            (1 << 18, 8, 1),
            (1 << 30, 8, 1),
            (u64::MAX, 8, 1),
            (0, 8, 1),
            (65535, 8, 1),
            (1 << 16, 8, 1 << 20),
            (1 << 16, 9, 1),
        ] {
            let e = check_scrypt_params(&params(n, r, p), "k.key").unwrap_err();
            assert!(
                e.to_string().starts_with(&format!(
                    "key k.key: unsupported scrypt parameters N={n} r={r} p={p}: "
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn other_public_key_types_are_named() {
        // SubjectPublicKeyInfo DER by hand: only the algorithm identifier is read.
        fn spki(alg: &[u8], key_len: usize) -> Vec<u8> {
            let mut bits = vec![0x03, key_len as u8 + 1, 0x00];
            bits.extend(std::iter::repeat(4u8).take(key_len));
            let mut body = vec![0x30, alg.len() as u8];
            body.extend_from_slice(alg);
            body.extend(bits);
            let mut out = vec![0x30, body.len() as u8];
            out.extend(body);
            out
        }
        let ec = |curve: &[u8]| {
            let mut alg = vec![0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
            alg.extend_from_slice(curve);
            alg
        };
        for (der, kind) in [
            (spki(&[0x06, 0x03, 0x2b, 0x65, 0x70], 32), "Ed25519"),
            (
                spki(&ec(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]), 97),
                "ECDSA P-384",
            ),
            (
                spki(&ec(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]), 65),
                "ECDSA secp256k1",
            ),
            (
                spki(
                    &[
                        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
                        0x00,
                    ],
                    100,
                ),
                "RSA",
            ),
        ] {
            let e = PublicKey::from_der(&der, "k.pub").unwrap_err().to_string();
            assert_eq!(
                e,
                format!("key k.pub: unsupported key type {kind}: graft supports ECDSA P-256 keys (cosign's default)")
            );
        }
        let ok = SigningKey::generate().public_key();
        assert_eq!(PublicKey::from_der(&ok.to_der(), "k").unwrap(), ok);
    }

    #[test]
    fn missing_key_files_are_bad_input() {
        let e = PublicKey::load("/nonexistent/k.pub").unwrap_err();
        assert!(e.is_usage(), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("key /nonexistent/k.pub: cannot read the key file: "),
            "{e}"
        );
    }
}
