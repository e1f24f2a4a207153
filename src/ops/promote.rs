//! `graft promote`: give the library's final images new tags (`stable`, a release tag) on the
//! digest their `{version}` tag has now, as Fornax's release workflow does.
//!
//! Each image costs one manifest GET (its `{version}` tag) and one PUT per new tag, through
//! [`crate::ops::tag::put_tags`]: no child manifest, no blob. With a key, the signature on that
//! exact digest is verified (which reads the signature's own small documents); the bytes
//! verified are the bytes tagged, never a second read of the tag. Every image is read, and
//! verified, before the first tag is written: a refused image stops the whole promotion.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::library::load::locate;
use crate::library::template::{self, BuildInfo};
use crate::library::Library;
use crate::oci::{Digest, RawManifest};
use crate::ops::refresh::select;
use crate::ops::tag::put_tags;
use crate::reference::validate_tag;
use crate::sign::verify::verify_signatures;
use crate::sign::{PublicKey, Repo};
use crate::store::open::{open_repository, open_source, Endpoint};

/// What to promote, and how.
#[derive(Debug, Clone, Default)]
pub struct PromoteRequest {
    /// The image names to promote (empty: every manifest of the library).
    pub names: Vec<String>,
    /// The tags to add, as templates: `{version}` is the manifest's version (`stable`,
    /// `v0.1.1`, `{version}-stable`).
    pub tags: Vec<String>,
    /// Refuse an image whose digest carries no valid signature by this key.
    pub verify_key: Option<PublicKey>,
    /// Read and verify, write nothing.
    pub dry_run: bool,
}

/// One promoted image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Promoted {
    /// Final image name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The manifest file, relative to the library root.
    pub manifest: String,
    /// The `{version}` reference read, as the library writes it.
    pub source: String,
    /// The digest it pointed at, which every new tag now points at.
    pub digest: Digest,
    /// The tags written (or, in a dry run, to write).
    pub tags: Vec<String>,
    /// Whether a signature by the key was verified on the digest.
    pub verified: bool,
}

/// What [`promote`] did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PromoteReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// One entry per selected manifest, in file name order.
    pub images: Vec<Promoted>,
}

/// Promote the selected images of `lib` (see the module docs). Bad input (an unknown name, a
/// bad tag, two versions of one image both asking for the same tag) is refused before any
/// request.
pub async fn promote(lib: &Library, req: &PromoteRequest, ep: &Endpoint) -> Result<PromoteReport> {
    if req.tags.is_empty() {
        return Err(Error::Unsupported(
            "nothing to promote to: give --to TAG or --release TAG".into(),
        ));
    }
    for t in &req.tags {
        template::check(t, &["version"]).map_err(|reason| Error::InvalidReference {
            input: t.clone(),
            reason,
        })?;
    }
    let manifests = select(lib, &req.names)?;
    struct Work<'a> {
        m: &'a crate::library::Manifest,
        source: crate::library::model::Located,
        tags: Vec<String>,
    }
    let mut work = Vec::new();
    // (repository, tag) → the manifest that writes it: two versions of one image share a
    // repository, and one `stable` cannot point at both.
    let mut owners: BTreeMap<(String, String), String> = BTreeMap::new();
    for m in manifests {
        validate_tag(&m.version).map_err(|reason| Error::Invalid {
            what: format!("version {:?} of {} as a tag", m.version, m.rel),
            reason,
        })?;
        let source = locate(lib.root(), &lib.reference_text(m, &m.version))?;
        let mut tags = Vec::new();
        for t in &req.tags {
            let tag = template::expand_tag(t, &m.version, &BuildInfo::default());
            validate_tag(&tag).map_err(|reason| Error::InvalidReference {
                input: tag.clone(),
                reason: format!("{reason} (from --to {t:?} for {})", m.rel),
            })?;
            let key = (lib.target_text(m), tag.clone());
            if let Some(first) = owners.get(&key) {
                return Err(Error::Unsupported(format!(
                    "{}:{tag} would be promoted from both {first} and {}: one tag cannot \
                     point at two versions; select one NAME, or use a per-version tag such \
                     as '{{version}}-{tag}'",
                    key.0, m.rel
                )));
            }
            owners.insert(key, m.rel.clone());
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        work.push(Work { m, source, tags });
    }

    // Reads: one GET per image, and its signature when asked.
    let mut roots: Vec<(RawManifest, bool)> = Vec::new();
    for w in &work {
        let image = &w.source.image;
        let root = open_source(image, ep).await?.resolve().await.map_err(|e| {
            e.context(format!(
                "reading {} (the {{version}} tag of {}) to promote it",
                w.source.text, w.m.rel
            ))
        })?;
        let verified = match &req.verify_key {
            Some(key) => {
                let repo = Repo::open_read(image, ep).await?;
                verify_signatures(&repo, root.digest(), key)
                    .await
                    .map_err(|e| {
                        e.context(format!(
                            "refusing to promote {}@{}: no valid signature by the key; nothing \
                             was tagged",
                            w.source.text,
                            root.digest()
                        ))
                    })?;
                true
            }
            None => false,
        };
        roots.push((root, verified));
    }

    let mut report = PromoteReport {
        dry_run: req.dry_run,
        images: Vec::new(),
    };
    for (w, (root, verified)) in work.iter().zip(roots) {
        if !req.dry_run {
            let repo = open_repository(&w.source.image, ep, true)?;
            put_tags(repo.as_ref(), &root, &w.tags).await?;
        }
        report.images.push(Promoted {
            name: w.m.name.clone(),
            version: w.m.version.clone(),
            manifest: w.m.rel.clone(),
            source: w.source.text.clone(),
            digest: root.digest().clone(),
            tags: w.tags.clone(),
            verified,
        });
    }
    Ok(report)
}
