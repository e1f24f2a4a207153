//! `graft verify-provenance`: the proof that an image is what its library says. Read the SLSA
//! provenance a refresh attached to an image (its signature checked when a key is given),
//! check the recorded library commit out of the user's repository into a throw-away clone,
//! rebuild the compat layer and every platform config, manifest and the index with the
//! recorded build values, time and science digest (refresh's own assembly, writing nothing),
//! and compare every digest the statement names with the rebuilt one.
//!
//! Bad input (no provenance, a statement of another builder, a commit the repository does not
//! have, a manifest the commit does not have) is an error; a digest that differs is not: it is
//! a [`DigestCheck`] that failed, so the report names every difference, not just the first.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::library::git::Repo;
use crate::library::{BuildInfo, Library};
use crate::oci::Digest;
use crate::ops::plan::{revision, Missing};
use crate::ops::refresh::{prepare, LayerCache, RefreshOptions, RefreshResult};
use crate::ops::sign::provenance;
use crate::reference::ImageRef;
use crate::sign::provenance::REFRESH_BUILD_TYPE;
use crate::sign::{FailureKind, PublicKey, RefreshProvenance, VerifyFailure};
use crate::store::open::Endpoint;

/// What to verify, and where.
pub struct VerifyProvenanceRequest<'a> {
    /// The image whose provenance is checked.
    pub reference: ImageRef,
    /// A directory in the library's git repository (the recorded commit is taken from it).
    pub library: PathBuf,
    /// Verify the statements' signatures with this key; `None` reads them unverified.
    pub key: Option<&'a PublicKey>,
    /// Concurrent blob reads of the science image.
    pub jobs: usize,
    /// An empty directory the caller owns (and removes): the checkout and built layers go here.
    pub work_dir: PathBuf,
}

/// One digest the statement names, against the rebuilt one.
#[derive(Debug, Clone, Serialize)]
pub struct DigestCheck {
    /// What it is the digest of: `subject`, `manifest`, `library`, `compat-layer`,
    /// `science-index`, `science-linux/amd64`, …
    pub what: String,
    /// As the statement records it.
    pub expected: String,
    /// As rebuilt (`None` when the rebuild has no such thing, e.g. a platform it did not make).
    pub found: Option<String>,
    /// Whether they are the same.
    pub ok: bool,
}

impl DigestCheck {
    fn new(what: impl Into<String>, expected: impl ToString, found: Option<String>) -> Self {
        let expected = expected.to_string();
        DigestCheck {
            what: what.into(),
            ok: found.as_deref() == Some(expected.as_str()),
            expected,
            found,
        }
    }
}

/// One provenance statement, rebuilt and compared.
#[derive(Debug, Clone, Serialize)]
pub struct StatementCheck {
    /// The statement's subject name (the reference the refresh wrote).
    pub subject: String,
    /// The library commit it records.
    pub commit: String,
    /// The manifest file it records (relative to the library).
    pub manifest: String,
    /// Every digest it names, checked.
    pub checks: Vec<DigestCheck>,
}

/// What `graft verify-provenance` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyProvenanceReport {
    /// The image, as given.
    pub reference: String,
    /// Its digest.
    pub digest: Digest,
    /// Whether the statements' signatures were verified with a key.
    pub signature_verified: bool,
    /// Each graft refresh statement attached to the image (identical ones once).
    pub statements: Vec<StatementCheck>,
    /// Every digest matched.
    pub ok: bool,
}

impl VerifyProvenanceReport {
    /// The names of the digests that did not match (empty when all did).
    pub fn mismatches(&self) -> Vec<String> {
        self.statements
            .iter()
            .flat_map(|s| s.checks.iter().filter(|c| !c.ok))
            .map(|c| c.what.clone())
            .collect()
    }
}

/// Read the provenance of `req.reference`, rebuild the image from the recorded commit of the
/// library in `req.library`, and compare every digest the statement names.
pub async fn verify_provenance(
    req: &VerifyProvenanceRequest<'_>,
    ep: &Endpoint,
) -> Result<VerifyProvenanceReport> {
    let reference = req.reference.to_string();
    let repo = Repo::discover(&req.library).ok_or_else(|| Error::Input {
        what: format!("--library {}", req.library.display()),
        reason: "is not in a git repository: the recorded library commit is checked out of it"
            .into(),
    })?;
    let image = crate::sign::Repo::open_read(&req.reference, ep).await?;
    let digest = image.resolve().await?.digest().clone();
    let found = match provenance(&req.reference, None, req.key, ep).await {
        Ok(found) => found,
        Err(Error::NotFound { what, detail }) => {
            return Err(Error::Input {
                what: reference,
                reason: format!(
                    "has no provenance to verify ({what} not found{})",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
            })
        }
        // Nothing attached to verify: bad input too, not a failed verification.
        Err(Error::Verify(f))
            if f.downcast_ref::<VerifyFailure>()
                .is_some_and(|f| f.kind == FailureKind::NoSignature) =>
        {
            return Err(Error::Input {
                what: reference,
                reason: format!("has no provenance to verify ({f})"),
            })
        }
        Err(e) => return Err(e),
    };
    // The same statement attached twice (two identical refreshes) is checked once.
    let mut statements: Vec<&Value> = Vec::new();
    for a in &found.provenance {
        if !statements.contains(&&a.statement) {
            statements.push(&a.statement);
        }
    }
    let ours: Vec<&Value> = statements
        .iter()
        .copied()
        .filter(|s| s["predicate"]["buildDefinition"]["buildType"] == REFRESH_BUILD_TYPE)
        .collect();
    if ours.is_empty() {
        // Says which buildType it found instead.
        let what = format!("the provenance of {reference}");
        let first = statements.first().map_or(&Value::Null, |s| &s["predicate"]);
        RefreshProvenance::from_predicate(first, &what)?;
        return Err(Error::Input {
            what,
            reason: "holds no statement of a graft refresh".into(),
        });
    }
    let mut out = VerifyProvenanceReport {
        reference: reference.clone(),
        digest: digest.clone(),
        signature_verified: found.verified,
        statements: Vec::new(),
        ok: true,
    };
    for (n, statement) in ours.into_iter().enumerate() {
        let what = format!("the provenance of {reference}");
        let recorded = RefreshProvenance::from_predicate(&statement["predicate"], &what)?;
        let subject = statement["subject"][0]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let about = subject_digests(statement);
        if !about.contains(&digest) {
            return Err(Error::Input {
                what,
                reason: format!("is about {about:?}, not {digest}"),
            });
        }
        let checks = rebuild(&recorded, &digest, &repo, req, n, ep).await?;
        out.statements.push(StatementCheck {
            subject,
            commit: recorded.library.map(|l| l.commit).unwrap_or_default(),
            manifest: recorded.manifest_path,
            checks,
        });
    }
    out.ok = out.mismatches().is_empty();
    Ok(out)
}

fn subject_digests(statement: &Value) -> Vec<Digest> {
    let Some(subjects) = statement["subject"].as_array() else {
        return Vec::new();
    };
    subjects
        .iter()
        .filter_map(|s| s["digest"].as_object())
        .flat_map(|m| m.iter())
        .filter_map(|(alg, hex)| format!("{alg}:{}", hex.as_str()?).parse().ok())
        .collect()
}

/// The recorded library directory inside a checkout: relative, no `..`, and after resolving
/// symbolic links still inside the checkout (the statement and the commit are input: a
/// committed `lib -> /home/u/other` must not point the rebuild outside the checkout).
fn library_root(checkout: &Path, path: &str, what: &str) -> Result<PathBuf> {
    let rel = Path::new(path);
    let safe = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !safe {
        return Err(Error::Input {
            what: what.to_string(),
            reason: format!("externalParameters.library.path {path:?} is not a relative path inside the repository"),
        });
    }
    let joined = checkout.join(rel);
    let resolved = match joined.canonicalize() {
        Ok(p) => p,
        // Nothing there: loading it fails and says so; nothing outside is read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(joined),
        Err(e) => return Err(Error::io("resolving", &joined, e)),
    };
    let top = checkout
        .canonicalize()
        .map_err(|e| Error::io("resolving", checkout, e))?;
    if !resolved.starts_with(&top) {
        return Err(Error::Input {
            what: what.to_string(),
            reason: format!(
                "externalParameters.library.path {path:?} leads outside the repository (to {}) through a symbolic link",
                resolved.display()
            ),
        });
    }
    Ok(resolved)
}

/// Check out the recorded commit, rebuild, and compare.
async fn rebuild(
    recorded: &RefreshProvenance,
    digest: &Digest,
    repo: &Repo,
    req: &VerifyProvenanceRequest<'_>,
    n: usize,
    ep: &Endpoint,
) -> Result<Vec<DigestCheck>> {
    let what = format!("the provenance of {}", req.reference);
    let source = recorded.library.as_ref().ok_or_else(|| Error::Input {
        what: what.clone(),
        reason: "records no library commit (the library was not in git when it was refreshed): there is nothing to rebuild from".into(),
    })?;
    let commit = repo.resolve(&source.commit).map_err(|e| Error::Input {
        what: format!("--library {}", req.library.display()),
        reason: format!(
            "has no commit {} (the library commit the provenance records; fetch {}): {e}",
            source.commit,
            source.url.as_deref().map_or_else(
                || source.git_ref.clone(),
                |u| format!("{} from {u}", source.git_ref)
            )
        ),
    })?;
    let checkout = req.work_dir.join(format!("checkout-{n}"));
    repo.checkout_at(&commit, &checkout)?;
    let root = library_root(&checkout, &source.path, &what)?;
    let mut lib = Library::open(&root).map_err(|e| {
        e.context(format!(
            "loading the library at commit {commit} (externalParameters.library.path {:?})",
            source.path
        ))
    })?;
    if let Some(r) = &recorded.repo_override {
        lib = lib.with_repo(r);
    }
    let build = BuildInfo {
        build: recorded.build.build.clone(),
        commit: recorded.build.commit.clone(),
        branch: recorded.build.branch.clone(),
    };
    // The layers' times: SOURCE_DATE_EPOCH when the refresh had it, else the same history
    // walk the refresh made (the clone has the whole history).
    let rev = revision(
        lib,
        &build,
        None,
        recorded.source_date_epoch,
        Missing::Preview,
    )?;
    let lib = rev.library;
    let mut checks = vec![DigestCheck::new(
        "library",
        &source.commit,
        Some(commit.clone()),
    )];
    let Some(m) = lib
        .manifests()
        .iter()
        .find(|m| m.rel == recorded.manifest_path)
    else {
        return Err(Error::Input {
            what,
            reason: format!(
                "names the manifest {}, which the library at commit {commit} does not have",
                recorded.manifest_path
            ),
        });
    };
    let file = std::fs::read(&m.file).map_err(|e| Error::io("reading", &m.file, e))?;
    checks.push(DigestCheck::new(
        "manifest",
        &recorded.manifest_digest,
        Some(Digest::sha256(&file).to_string()),
    ));
    // The science image as it was: by the recorded digest, wherever its tag is now.
    let science = recorded
        .science_index
        .clone()
        .or_else(|| match &recorded.science_platforms[..] {
            [(_, d)] => Some(d.clone()),
            _ => None,
        })
        .ok_or_else(|| Error::Input {
            what: what.clone(),
            reason: "records no science index and not exactly one science manifest".into(),
        })?;
    let mut m = m.clone();
    m.science.digest = Some(science.clone());
    let work = req.work_dir.join(format!("layers-{n}"));
    std::fs::create_dir_all(&work).map_err(|e| Error::io("creating", &work, e))?;
    let opts = RefreshOptions {
        build,
        created: recorded.created,
        dry_run: true,
        jobs: req.jobs.max(1),
        work_dir: work,
    };
    let rebuilt = match prepare(&lib, &m, &opts, ep, &LayerCache::default()).await {
        Ok(p) => p.result,
        // A science layout whose tag now names other content: the recorded digest is gone.
        Err(e) => match e.root() {
            Error::DigestMismatch {
                what: w,
                expected,
                found,
            } if w.starts_with("science image") && *expected == science => {
                checks.push(DigestCheck::new(
                    "science",
                    expected,
                    Some(found.to_string()),
                ));
                return Ok(checks);
            }
            _ => return Err(e.context(format!("rebuilding {} at commit {commit}", m.rel))),
        },
    };
    compare(recorded, digest, &rebuilt, &mut checks);
    Ok(checks)
}

/// Every digest of `recorded` against `rebuilt`; `digest` is the image's (the subject).
fn compare(
    recorded: &RefreshProvenance,
    digest: &Digest,
    rebuilt: &RefreshResult,
    checks: &mut Vec<DigestCheck>,
) {
    if let Some(d) = &recorded.science_index {
        checks.push(DigestCheck::new(
            "science-index",
            d,
            Some(rebuilt.science_digest.to_string()),
        ));
    }
    for (platform, d) in &recorded.science_platforms {
        let found = rebuilt
            .platforms
            .iter()
            .find(|p| p.platform.as_deref().unwrap_or("image") == platform)
            .map(|p| p.base.to_string());
        checks.push(DigestCheck::new(format!("science-{platform}"), d, found));
    }
    if let Some(d) = &recorded.compat_layer {
        checks.push(DigestCheck::new(
            "compat-layer",
            d,
            Some(rebuilt.compat_layer.digest.to_string()),
        ));
    }
    // The subject is the index, or (provenance of one platform's manifest) one of its
    // platforms: the rebuilt digest it should be.
    let found = if rebuilt.digest == *digest {
        &rebuilt.digest
    } else {
        rebuilt
            .platforms
            .iter()
            .map(|p| &p.digest)
            .find(|d| *d == digest)
            .unwrap_or(&rebuilt.digest)
    };
    checks.push(DigestCheck::new("subject", digest, Some(found.to_string())));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_library_path_stays_inside_the_checkout() {
        let c = Path::new("/work/checkout");
        assert_eq!(library_root(c, ".", "s").unwrap(), c.join("."));
        assert_eq!(
            library_root(c, "images/lib", "s").unwrap(),
            c.join("images/lib")
        );
        for bad in ["../elsewhere", "/etc", "images/../../x"] {
            let e = library_root(c, bad, "s").unwrap_err();
            assert!(e.is_usage() && e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn a_symbolic_link_out_of_the_checkout_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let checkout = tmp.path().join("checkout");
        let other = tmp.path().join("other");
        std::fs::create_dir_all(checkout.join("images/lib")).unwrap();
        std::fs::create_dir_all(other.join("sub")).unwrap();
        std::os::unix::fs::symlink(&other, checkout.join("lib")).unwrap();
        std::os::unix::fs::symlink("images/lib", checkout.join("inside")).unwrap();
        let e = library_root(&checkout, "lib", "s").unwrap_err();
        assert!(
            e.is_usage() && e.to_string().contains("leads outside the repository"),
            "{e}"
        );
        let e = library_root(&checkout, "lib/sub", "s").unwrap_err();
        assert!(e.is_usage(), "{e}");
        // A link that stays inside is the directory it names.
        let top = checkout.canonicalize().unwrap();
        assert_eq!(
            library_root(&checkout, "inside", "s").unwrap(),
            top.join("images/lib")
        );
    }

    #[test]
    fn a_check_is_ok_only_when_both_digests_are_there_and_equal() {
        let d = Digest::sha256(b"x");
        assert!(DigestCheck::new("a", &d, Some(d.to_string())).ok);
        assert!(!DigestCheck::new("a", &d, Some(Digest::sha256(b"y").to_string())).ok);
        assert!(!DigestCheck::new("a", &d, None).ok);
    }
}
