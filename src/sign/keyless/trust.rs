//! The sigstore trusted root (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`):
//! the Fulcio CAs, the Rekor logs and the CT logs a keyless signature is checked against.
//!
//! graft never fetches one: the file is given (`--trusted-root`), read once, and every key and
//! certificate in it is kept as DER with the time range it is valid for.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Media type prefix of a trusted root.
pub const TRUSTED_ROOT_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.trustedroot+json";

/// A time range in Unix seconds: `start` inclusive, `end` (if any) inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First second of validity.
    pub start: i64,
    /// Last second of validity; `None`: still valid.
    pub end: Option<i64>,
}

impl Validity {
    /// Whether `t` (Unix seconds) lies in the range.
    pub fn contains(&self, t: i64) -> bool {
        t >= self.start && self.end.map_or(true, |e| t <= e)
    }
}

/// A certificate authority (Fulcio): its chain, leaf-most first, root last.
#[derive(Debug, Clone)]
pub struct CertificateAuthority {
    /// DER certificates; the last one is the trust anchor.
    pub chain: Vec<Vec<u8>>,
    /// When it issues certificates.
    pub valid: Validity,
    /// Its `uri`, for messages.
    pub uri: String,
}

/// A log key (Rekor or CT log).
#[derive(Debug, Clone)]
pub struct LogKey {
    /// The log ID: SHA-256 of the key's SubjectPublicKeyInfo DER (as given, else computed).
    pub key_id: Vec<u8>,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// When the key signs.
    pub valid: Validity,
    /// Its `baseUrl`, for messages.
    pub url: String,
}

/// A parsed trusted root.
#[derive(Debug, Clone, Default)]
pub struct TrustedRoot {
    /// Fulcio CAs.
    pub cas: Vec<CertificateAuthority>,
    /// Rekor logs.
    pub tlogs: Vec<LogKey>,
    /// Certificate-transparency logs.
    pub ctlogs: Vec<LogKey>,
}

/// Parse an RFC 3339 UTC time (`2021-03-07T03:20:29.000Z`, fraction optional) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00") {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec)
}

fn validity(v: Option<&Value>, at: &str) -> Result<Validity, String> {
    let Some(v) = v else {
        return Err(format!("{at}.validFor is missing"));
    };
    let time = |k: &str| -> Result<Option<i64>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_rfc3339(s)
                .map(Some)
                .ok_or_else(|| format!("{at}.validFor.{k} {s:?} is not an RFC 3339 UTC time")),
            Some(_) => Err(format!("{at}.validFor.{k} is not a string")),
        }
    };
    Ok(Validity {
        start: time("start")?.ok_or_else(|| format!("{at}.validFor.start is missing"))?,
        end: time("end")?,
    })
}

fn b64_field(v: &Value, field: &str, at: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}.{field} is missing"))?;
    B64.decode(s)
        .map_err(|e| format!("{at}.{field} is not base64: {e}"))
}

fn log_keys(doc: &Value, field: &str) -> Result<Vec<LogKey>, String> {
    let mut out = Vec::new();
    let Some(list) = doc.get(field) else {
        return Ok(out);
    };
    let list = list
        .as_array()
        .ok_or_else(|| format!("{field} is not a list"))?;
    for (i, log) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let pk = log
            .get("publicKey")
            .ok_or_else(|| format!("{at}.publicKey is missing"))?;
        let spki = b64_field(pk, "rawBytes", &format!("{at}.publicKey"))?;
        let valid = validity(pk.get("validFor"), &format!("{at}.publicKey"))?;
        let key_id = match log.get("logId") {
            Some(id) => b64_field(id, "keyId", &format!("{at}.logId"))?,
            None => Sha256::digest(&spki).to_vec(),
        };
        out.push(LogKey {
            key_id,
            spki,
            valid,
            url: log
                .get("baseUrl")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    Ok(out)
}

impl TrustedRoot {
    /// Parse a trusted root; the error names the bad field.
    pub fn parse(bytes: &[u8]) -> Result<TrustedRoot, String> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let mt = doc.get("mediaType").and_then(Value::as_str).unwrap_or("");
        if !mt.starts_with(TRUSTED_ROOT_MEDIA_TYPE) {
            return Err(format!(
                "mediaType {mt:?} is not a sigstore trusted root ({TRUSTED_ROOT_MEDIA_TYPE};version=0.1)"
            ));
        }
        let mut cas = Vec::new();
        if let Some(list) = doc.get("certificateAuthorities") {
            let list = list
                .as_array()
                .ok_or("certificateAuthorities is not a list")?;
            for (i, ca) in list.iter().enumerate() {
                let at = format!("certificateAuthorities[{i}]");
                let certs = ca
                    .pointer("/certChain/certificates")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("{at}.certChain.certificates is missing"))?;
                let chain = certs
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        b64_field(c, "rawBytes", &format!("{at}.certChain.certificates[{j}]"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if chain.is_empty() {
                    return Err(format!("{at}.certChain.certificates is empty"));
                }
                cas.push(CertificateAuthority {
                    chain,
                    valid: validity(ca.get("validFor"), &at)?,
                    uri: ca
                        .get("uri")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
        }
        let root = TrustedRoot {
            cas,
            tlogs: log_keys(&doc, "tlogs")?,
            ctlogs: log_keys(&doc, "ctlogs")?,
        };
        if root.cas.is_empty() {
            return Err("no certificateAuthorities: nothing to check certificates against".into());
        }
        if root.tlogs.is_empty() {
            return Err("no tlogs: nothing to check transparency-log entries against".into());
        }
        Ok(root)
    }

    /// Read and parse the trusted root in file `path` (at most 4 MiB). Every problem is a
    /// usage error naming the file: graft never fetches a trusted root.
    pub fn load(path: &std::path::Path) -> crate::Result<TrustedRoot> {
        use std::io::Read as _;
        const LIMIT: u64 = 4 << 20;
        let name = path.display();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(LIMIT + 1).read_to_end(&mut bytes))
            .map_err(|e| {
                crate::Error::Unsupported(format!("--trusted-root {name}: cannot read it: {e}"))
            })?;
        if bytes.len() as u64 > LIMIT {
            return Err(crate::Error::Unsupported(format!(
                "--trusted-root {name}: larger than {LIMIT} bytes, not a trusted root"
            )));
        }
        TrustedRoot::parse(&bytes)
            .map_err(|e| crate::Error::Unsupported(format!("--trusted-root {name}: {e}")))
    }

    /// The Rekor key with log ID `id`.
    pub fn tlog(&self, id: &[u8]) -> Option<&LogKey> {
        self.tlogs.iter().find(|l| l.key_id == id)
    }

    /// The CT log key with log ID `id`.
    pub fn ctlog(&self, id: &[u8]) -> Option<&LogKey> {
        self.ctlogs.iter().find(|l| l.key_id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2021-03-07T03:20:29.000Z"), Some(1615087229));
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Some(951825600));
        assert_eq!(parse_rfc3339("2021-03-07 03:20:29Z"), None);
        assert_eq!(parse_rfc3339("2021-03-07T03:20:29+02:00"), None);
        assert_eq!(parse_rfc3339("2021-03-07T03:20:29.Z"), None);
    }

    #[test]
    fn public_good_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/interop/attestations/sigstore-go/public-good.json"
        );
        let root = TrustedRoot::parse(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(root.cas.len(), 2);
        assert_eq!(root.tlogs.len(), 1);
        assert_eq!(root.ctlogs.len(), 2);
        assert_eq!(root.cas[0].valid.end, Some(1672531199));
        // The log IDs are the SHA-256 of the keys.
        for l in root.tlogs.iter().chain(&root.ctlogs) {
            assert_eq!(l.key_id, Sha256::digest(&l.spki).to_vec(), "{}", l.url);
        }
        assert!(TrustedRoot::parse(b"{}").unwrap_err().contains("mediaType"));
    }
}
