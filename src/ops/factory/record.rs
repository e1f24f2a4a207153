//! `graft factory record REPORT…`: builds into the state. Sharded CI jobs write no state:
//! each emits its `graft refresh -o json` report, and one job after them merges the reports
//! here (the only writer besides `sync` and `check`). An image of a report belongs to the
//! enrolled image whose `registry/repository` one of its references names; its build goes
//! first in `buildHistory` (at most [`HISTORY_LIMIT`] kept), and `currentDigest`,
//! `currentVersion` and `lastBuilt` follow it. Recording the same digest twice adds nothing.

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
    reports: &[(String, RefreshReportIn)],
    opts: &RecordOptions,
) -> Result<RecordReport> {
    let _lock = dir.lock()?;
    record_locked(dir, reports, opts)
}

/// [`record`] with the state directory already locked by the caller (`check --refresh`).
pub(crate) fn record_locked(
    dir: &StateDir,
    reports: &[(String, RefreshReportIn)],
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
            let mut base_digests = BTreeMap::new();
            if let (Some(sci), Some(d)) = (&img.science, &img.science_digest) {
                // Keyed by the base's state name when the science image is one of its bases.
                let key = DockerRef::parse(sci.strip_prefix("docker://").unwrap_or(sci))
                    .ok()
                    .and_then(|r| {
                        let full = super::names::full_image(&r);
                        s.base_images
                            .iter()
                            .find(|b| old.bases.get(*b).is_some_and(|bs| bs.full_image == full))
                            .cloned()
                    })
                    .or_else(|| (s.base_images.len() == 1).then(|| s.base_images[0].clone()))
                    .unwrap_or_else(|| sci.clone());
                base_digests.insert(key, d.clone());
            } else {
                // Built from a Dockerfile elsewhere: the bases' digests as last checked.
                for b in &s.base_images {
                    if let Some(d) = old.bases.get(b).and_then(|bs| bs.current_digest.clone()) {
                        base_digests.insert(b.clone(), d);
                    }
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
