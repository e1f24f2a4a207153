//! `graft factory record REPORT…`: builds into the state. Sharded CI jobs write no state:
//! each emits its `graft refresh -o json` or `graft build -o json` report, and one job after
//! them merges the reports here (the only writer besides `sync` and `check`). An image of a
//! report belongs to the enrolled image whose `registry/repository` one of its references
//! names; its build goes first in `buildHistory` (at most [`HISTORY_LIMIT`] kept), and
//! `currentDigest`, `currentVersion` and `lastBuilt` follow it. Recording the same digest
//! twice adds nothing.
//!
//! The two reports are told apart by shape ([`parse_report`]): a build report has `order`.
//! What is recorded of a built image: the final digest (the compat refresh's when the
//! manifest has compat, else the index built), its version, every reference written (the
//! built and the refreshed ones), and the library bases it was pinned to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::reference::DockerRef;
use crate::timestamp::Timestamp;

use super::names::repo_url;
use super::state::{status, Build, RebuildState, StateDir, HISTORY_LIMIT};

/// The parts of a refresh report record reads (`graft refresh -o json`).
#[derive(Debug, Clone, Deserialize)]
pub struct RefreshReportIn {
    /// A dry run wrote nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The refreshed images.
    #[serde(default)]
    pub images: Vec<RefreshImageIn>,
}

/// One image of a refresh report.
#[derive(Debug, Clone, Deserialize)]
pub struct RefreshImageIn {
    /// The manifest's image name.
    #[serde(default)]
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: Option<String>,
    /// The digest written.
    pub digest: String,
    /// Every reference written.
    #[serde(default)]
    pub references: Vec<String>,
    /// The science (base) image as named.
    #[serde(default)]
    pub science: Option<String>,
    /// The science digest it was built on.
    #[serde(default)]
    pub science_digest: Option<String>,
}

/// The parts of a build report record reads (`graft build -o json`).
#[derive(Debug, Clone, Deserialize)]
pub struct BuildReportIn {
    /// A dry run built nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The build order (its presence tells a build report from a refresh report).
    pub order: serde_json::Value,
    /// The built images.
    #[serde(default)]
    pub images: Vec<BuiltImageIn>,
}

/// One image of a build report.
#[derive(Debug, Clone, Deserialize)]
pub struct BuiltImageIn {
    /// The manifest's image name.
    #[serde(default)]
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: Option<String>,
    /// The index written (absent on a dry run).
    #[serde(default)]
    pub digest: Option<String>,
    /// Where the built image was written.
    #[serde(default)]
    pub references: Vec<String>,
    /// The library bases it was pinned to.
    #[serde(default)]
    pub bases: Vec<UsedBaseIn>,
    /// The compat refresh of the built image (manifests with compat): the final image.
    #[serde(default)]
    pub refresh: Option<RefreshImageIn>,
}

/// A base of a build, as pinned.
#[derive(Debug, Clone, Deserialize)]
pub struct UsedBaseIn {
    /// The FROM reference.
    pub reference: String,
    /// The digest it was pinned to.
    pub digest: String,
}

/// A report as record reads it: refresh and build reports alike.
#[derive(Debug, Clone, Default)]
pub struct ReportIn {
    /// The images the report says were written.
    pub images: Vec<WrittenIn>,
}

/// One image a report says was written.
#[derive(Debug, Clone)]
pub struct WrittenIn {
    /// The manifest's image name.
    pub name: String,
    /// Its version.
    pub version: Option<String>,
    /// The final digest (a build with compat: the refreshed image's).
    pub digest: String,
    /// Every reference written.
    pub references: Vec<String>,
    /// The base images it was built on: (reference, digest).
    pub bases: Vec<(String, String)>,
}

impl From<RefreshReportIn> for ReportIn {
    fn from(r: RefreshReportIn) -> ReportIn {
        ReportIn {
            images: r
                .images
                .into_iter()
                .map(|i| WrittenIn {
                    bases: match (i.science, i.science_digest) {
                        (Some(s), Some(d)) => vec![(s, d)],
                        _ => Vec::new(),
                    },
                    name: i.name,
                    version: i.version,
                    digest: i.digest,
                    references: i.references,
                })
                .collect(),
        }
    }
}

impl BuildReportIn {
    /// The images built; `file` names the report in errors.
    pub fn into_report(self, file: &str) -> Result<ReportIn> {
        let mut images = Vec::new();
        for i in self.images {
            let built = i.digest.ok_or_else(|| Error::Input {
                what: format!("report {file}"),
                reason: format!("image {:?} has no digest: nothing was built", i.name),
            })?;
            let mut references = i.references;
            let digest = match i.refresh {
                Some(r) => {
                    references.extend(r.references);
                    r.digest
                }
                None => built,
            };
            images.push(WrittenIn {
                name: i.name,
                version: i.version,
                digest,
                references,
                bases: i
                    .bases
                    .into_iter()
                    .map(|b| (b.reference, b.digest))
                    .collect(),
            });
        }
        Ok(ReportIn { images })
    }
}

/// Read a `graft refresh -o json` or `graft build -o json` report (`file` names it in
/// errors): a build report has `order`. A dry run's report is refused: it wrote nothing.
pub fn parse_report(file: &str, bytes: &[u8]) -> Result<ReportIn> {
    let bad = |reason: String| Error::Input {
        what: format!("report {file}"),
        reason,
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if !v.is_object() {
        return Err(bad(
            "not a report of `graft refresh -o json` or `graft build -o json` (not a JSON object)"
                .into(),
        ));
    }
    let dry_run = || bad("a dry run's report (--dry-run): nothing was written".into());
    if v.get("order").is_some() {
        let r: BuildReportIn = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        if r.dry_run {
            return Err(dry_run());
        }
        r.into_report(file)
    } else {
        let r: RefreshReportIn = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        if r.dry_run {
            return Err(dry_run());
        }
        Ok(r.into())
    }
}

/// How to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The build time.
    pub now: Timestamp,
    /// The commit built (`--commit`).
    pub commit: Option<String>,
    /// What caused the builds (`--trigger`, default `manual`).
    pub trigger: String,
}

/// One recorded build.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// The enrolled image.
    pub name: String,
    /// The digest.
    pub digest: String,
    /// False when this digest was already the newest build.
    pub added: bool,
}

/// What record did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordReport {
    /// Builds matched to enrolled images.
    pub recorded: Vec<Recorded>,
    /// References of report images that match no enrolled image.
    pub unmatched: Vec<String>,
}

/// Merge `reports` (each `(file name, parsed report)`) into the state.
pub fn record(
    dir: &StateDir,
    reports: &[(String, ReportIn)],
    opts: &RecordOptions,
) -> Result<RecordReport> {
    let _lock = dir.lock()?;
    record_locked(dir, reports, opts)
}

/// [`record`] with the state directory already locked by the caller (`check --refresh`).
pub(crate) fn record_locked(
    dir: &StateDir,
    reports: &[(String, ReportIn)],
    opts: &RecordOptions,
) -> Result<RecordReport> {
    let old = dir.load()?;
    let mut state = old.clone();
    // registry/repository → enrolled name.
    let mut by_repo: BTreeMap<String, String> = BTreeMap::new();
    for (name, s) in &old.images {
        if s.removed_at.is_some() || s.discovery_status == status::EXTERNAL {
            continue;
        }
        let reg = s
            .enrollment
            .get("registry")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let repo = s
            .enrollment
            .get("repository")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if let Ok(r) = DockerRef::parse(&format!("{reg}/{repo}")) {
            by_repo.insert(repo_url(&r), name.clone());
        }
    }
    let mut out = RecordReport {
        recorded: Vec::new(),
        unmatched: Vec::new(),
    };
    let now = opts.now.rfc3339();
    for (file, report) in reports {
        for img in &report.images {
            img.digest
                .parse::<crate::oci::Digest>()
                .map_err(|e| Error::Input {
                    what: format!("report {file}"),
                    reason: format!("image {:?}: digest: {e}", img.name),
                })?;
            let name = img.references.iter().find_map(|r| {
                let r = r.strip_prefix("docker://").unwrap_or(r);
                DockerRef::parse(r)
                    .ok()
                    .and_then(|d| by_repo.get(&repo_url(&d)))
            });
            let Some(name) = name else {
                out.unmatched.extend(img.references.iter().cloned());
                if img.references.is_empty() {
                    out.unmatched.push(img.name.clone());
                }
                continue;
            };
            let Some(s) = state.images.get_mut(name) else {
                continue;
            };
            if s.build_history
                .first()
                .is_some_and(|b| b.digest == img.digest)
            {
                out.recorded.push(Recorded {
                    name: name.clone(),
                    digest: img.digest.clone(),
                    added: false,
                });
                continue;
            }
            // The bases the report names, keyed by the base's state name when it is one of
            // the image's bases; then every other base at its digest as last checked.
            let mut base_digests = BTreeMap::new();
            for (reference, d) in &img.bases {
                let full =
                    DockerRef::parse(reference.strip_prefix("docker://").unwrap_or(reference))
                        .ok()
                        .map(|r| super::names::full_image(&r));
                let key = full
                    .and_then(|full| {
                        s.base_images
                            .iter()
                            .find(|b| old.bases.get(*b).is_some_and(|bs| bs.full_image == full))
                            .cloned()
                    })
                    .or_else(|| {
                        (img.bases.len() == 1 && s.base_images.len() == 1)
                            .then(|| s.base_images[0].clone())
                    })
                    .unwrap_or_else(|| reference.clone());
                base_digests.insert(key, d.clone());
            }
            for b in &s.base_images {
                if base_digests.contains_key(b) {
                    continue;
                }
                if let Some(d) = old.bases.get(b).and_then(|bs| bs.current_digest.clone()) {
                    base_digests.insert(b.clone(), d);
                }
            }
            s.build_history.insert(
                0,
                Build {
                    digest: img.digest.clone(),
                    time: now.clone(),
                    commit: opts.commit.clone(),
                    trigger: Some(opts.trigger.clone()),
                    base_digests,
                },
            );
            s.build_history.truncate(HISTORY_LIMIT);
            s.current_digest = Some(img.digest.clone());
            if let Some(v) = &img.version {
                s.current_version = Some(v.clone());
            }
            s.last_built = Some(now.clone());
            s.rebuild_state = Some(RebuildState {
                status: "monitoring".into(),
                ..RebuildState::default()
            });
            out.recorded.push(Recorded {
                name: name.clone(),
                digest: img.digest.clone(),
                added: true,
            });
        }
    }
    dir.write_changed(&old, &state)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    #[test]
    fn refresh_and_build_reports_are_told_apart_by_shape() {
        let refresh = format!(
            r#"{{"dry_run":false,"images":[{{"name":"a","version":"1","digest":"{D1}","references":["docker://r.io/lib/a:1"],"science":"r.io/sci/x:1","science_digest":"{D2}"}}]}}"#
        );
        let r = parse_report("r.json", refresh.as_bytes()).unwrap();
        assert_eq!(r.images[0].digest, D1);
        assert_eq!(r.images[0].bases, [("r.io/sci/x:1".into(), D2.into())]);
        // A build with compat: the final digest is the refresh's; both references count.
        let build = format!(
            r#"{{"dry_run":false,"order":[],"images":[{{"name":"b","version":"2","manifest":"manifests/b.yaml","digest":"{D1}","references":["docker://r.io/lib/sci/b:2"],"bases":[{{"reference":"r.io/lib/base:1","library":"manifests/base.yaml","digest":"{D3}","built_now":false}}],"refresh":{{"name":"b","digest":"{D2}","references":["docker://r.io/lib/b:2"]}}}}]}}"#
        );
        let r = parse_report("b.json", build.as_bytes()).unwrap();
        let b = &r.images[0];
        assert_eq!(b.digest, D2);
        assert_eq!(b.version.as_deref(), Some("2"));
        assert_eq!(
            b.references,
            ["docker://r.io/lib/sci/b:2", "docker://r.io/lib/b:2"]
        );
        assert_eq!(b.bases, [("r.io/lib/base:1".into(), D3.into())]);
        // Without compat: the index built.
        let plain = build.replace(&format!(r#","refresh":{{"name":"b","digest":"{D2}","references":["docker://r.io/lib/b:2"]}}"#), "");
        assert_eq!(
            parse_report("b.json", plain.as_bytes()).unwrap().images[0].digest,
            D1
        );
    }

    #[test]
    fn dry_runs_and_other_json_are_refused() {
        let dry =
            r#"{"dry_run":true,"order":[],"images":[{"name":"b","version":"2","references":[]}]}"#;
        let e = parse_report("b.json", dry.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.json"), "{e}");
        let dry = r#"{"dry_run":true,"images":[]}"#;
        let e = parse_report("r.json", dry.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dry run"), "{e}");
        let e = parse_report("x.json", b"[1]").unwrap_err().to_string();
        assert!(e.contains("not a report"), "{e}");
    }
}
