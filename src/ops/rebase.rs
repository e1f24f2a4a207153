//! `graft rebase`: swap the old base's layers of every platform of an image for a new base's,
//! without a rebuild (what `crane rebase` and `regctl image mod --rebase-ref` do). The old base
//! comes from `--old-base`, else from the base annotations graft writes on every image it
//! appends to. Every check runs before anything is written: a refusal writes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::copy::{copy_image, CopyOptions, CopyReport};
use crate::error::{Error, Result};
use crate::image::append::{
    base_name, not_runnable, Dropped, BASE_DIGEST, BASE_NAME, CONFIG_LIMIT,
};
use crate::image::manifest::rebuild_index;
use crate::image::rebase::{config_platform, rebase_manifest, Parts, RebasedSource};
use crate::oci::{Descriptor, Digest, Platform, RawManifest};
use crate::ops::memo::Memo;
use crate::progress::Reporter;
use crate::reference::{DockerRef, ImageRef};
use crate::store::open::{destination_tags, open_sink, open_source, Endpoint};
use crate::store::{read_blob, Source};

/// A rebase to run.
#[derive(Debug, Clone)]
pub struct RebaseImage {
    /// The image to rebase (an index or a single manifest).
    pub image: ImageRef,
    /// The new base.
    pub onto: ImageRef,
    /// The old base; `None`: read from the image's base annotations.
    pub old_base: Option<ImageRef>,
    /// Where to write the result (tags last); empty: back to the image's own tag.
    pub destinations: Vec<ImageRef>,
    /// Check and compute everything, write nothing.
    pub dry_run: bool,
    /// Concurrent blob transfers.
    pub jobs: usize,
}

/// A base image, as named in annotations and reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BaseRef {
    /// `org.opencontainers.image.base.name`.
    pub name: String,
    /// The digest it was pinned to (an index or a platform's manifest).
    pub digest: Digest,
}

/// One rebased platform.
#[derive(Debug, Clone, Serialize)]
pub struct RebasedPlatform {
    /// The platform (`None` for a single manifest whose config names none).
    pub platform: Option<String>,
    /// The image's manifest before.
    pub image: Digest,
    /// The new manifest.
    pub digest: Digest,
    /// The old base's manifest for this platform.
    pub old_base: Digest,
    /// The new base's manifest for this platform.
    pub new_base: Digest,
    /// The old base's layers, removed.
    pub removed_layers: usize,
    /// The new base's layers, put in front.
    pub base_layers: usize,
    /// The image's own layers, kept.
    pub own_layers: usize,
}

/// What [`rebase_image`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RebasedImage {
    /// The image, as a name for messages.
    pub image: String,
    /// Its root digest before.
    pub image_digest: Digest,
    /// The new root's digest.
    pub digest: Digest,
    /// The old bases used (one, unless manifests named different ones).
    pub old_bases: Vec<BaseRef>,
    /// The new base (its root digest).
    pub new_base: BaseRef,
    /// Each platform.
    pub platforms: Vec<RebasedPlatform>,
    /// Index entries left out (attestations of the old image, unknown platforms).
    pub dropped: Vec<Dropped>,
    /// Where the result was (or would be) written.
    pub destinations: Vec<String>,
    /// Nothing was written.
    pub dry_run: bool,
    /// One copy report per destination.
    pub reports: Vec<CopyReport>,
}

/// Where an old base is looked for: a reference, pinned to a digest when it came from
/// annotations (its tag may have moved since: that is why one rebases).
#[derive(Debug, Clone)]
struct OldSpec {
    reference: ImageRef,
    name: String,
    pin: Option<Digest>,
}

/// The reference an `org.opencontainers.image.base.name` names: a transport reference
/// (`oci:…`, `docker://…`) or a plain registry name, as [`base_name`] writes them.
fn parse_base_name(name: &str, pin: &Digest) -> Result<ImageRef> {
    let bad = |e: Error| Error::Input {
        what: format!("annotation {BASE_NAME}={name:?}"),
        reason: format!("{e}; give --old-base"),
    };
    let r = if name.starts_with("oci:") || name.starts_with("oci-archive:") || name.contains("://")
    {
        name.parse::<ImageRef>().map_err(bad)?
    } else {
        ImageRef::Docker(DockerRef::parse(name).map_err(bad)?)
    };
    Ok(match r {
        ImageRef::Docker(d) => ImageRef::Docker(DockerRef {
            digest: Some(pin.clone()),
            ..d
        }),
        other => other,
    })
}

/// The old base named by `annotations`, if both base keys are there.
fn spec_from(annotations: Option<&BTreeMap<String, String>>) -> Result<Option<OldSpec>> {
    let Some(a) = annotations else {
        return Ok(None);
    };
    let (Some(name), Some(digest)) = (a.get(BASE_NAME), a.get(BASE_DIGEST)) else {
        return Ok(None);
    };
    let pin: Digest = digest.parse().map_err(|e: Error| Error::Input {
        what: format!("annotation {BASE_DIGEST}"),
        reason: e.to_string(),
    })?;
    Ok(Some(OldSpec {
        reference: parse_base_name(name, &pin)?,
        name: name.clone(),
        pin: Some(pin),
    }))
}

/// An opened base: its source (remembering what it read) and root.
struct Opened {
    source: Arc<Memo>,
    root: RawManifest,
}

async fn open_base(r: &ImageRef, ep: &Endpoint) -> Result<Opened> {
    let source = Arc::new(Memo::new(Arc::from(open_source(r, ep).await?)));
    let root = source.resolve().await?;
    Ok(Opened { source, root })
}

/// The manifest of `base` for `platform` (and its config), or `None` when it has none.
/// With `pin`, the manifest must be the pinned one or listed by the pinned index.
async fn pick(
    base: &Opened,
    platform: Option<&Platform>,
    pin: Option<&Digest>,
    name: &str,
) -> Result<Option<(RawManifest, bytes::Bytes)>> {
    let src = base.source.as_ref();
    let mut root = base.root.clone();
    if let Some(pin) = pin {
        if root.digest() != pin {
            // A layout's tag cannot be pinned: accept the pinned manifest when the index the
            // tag points at lists it, else say the base moved.
            let entry = root
                .is_index()
                .then(|| {
                    root.view()
                        .manifests
                        .iter()
                        .find(|d| &d.digest == pin)
                        .cloned()
                })
                .flatten();
            match entry {
                Some(e) => root = src.manifest(&e).await?,
                None => {
                    return Err(Error::Input {
                        what: format!("old base {name}"),
                        reason: format!(
                            "the base annotations pin it to {pin}, but it now resolves to {}; \
                             give --old-base with the base the image was built on",
                            root.digest()
                        ),
                    })
                }
            }
        }
    }
    let manifest = if root.is_index() {
        let entry = root
            .view()
            .manifests
            .iter()
            .filter(|d| not_runnable(d).is_none())
            .find(|d| match (platform, &d.platform) {
                (Some(p), Some(q)) => p.matches(q),
                _ => false,
            })
            .cloned();
        match entry {
            Some(e) => src.manifest(&e).await?,
            None => return Ok(None),
        }
    } else {
        root
    };
    let config = manifest
        .view()
        .config
        .clone()
        .ok_or_else(|| Error::Invalid {
            what: format!("manifest {} of {name}", manifest.digest()),
            reason: "no config: not an image".into(),
        })?;
    let bytes = read_blob(src, &config, CONFIG_LIMIT)
        .await
        .map_err(|e| e.context(format!("reading the config of {name}")))?;
    if !manifest.is_index() && !base.root.is_index() {
        // A single-manifest base: its config says which platform it is for.
        if let (Some(p), Some(q)) = (platform, config_platform(&bytes)) {
            if !p.matches(&q) {
                return Ok(None);
            }
        }
    }
    Ok(Some((manifest, bytes)))
}

/// One platform of the image, with what it needs.
struct Item {
    entry: Option<Descriptor>,
    platform: Option<Platform>,
    manifest: RawManifest,
    config: bytes::Bytes,
    old: OldSpec,
}

/// Rebase `req.image` onto `req.onto` and write it (unless `req.dry_run`).
pub async fn rebase_image(
    req: &RebaseImage,
    ep: &Endpoint,
    reporter: &Arc<dyn Reporter>,
) -> Result<RebasedImage> {
    let destinations = if req.destinations.is_empty() {
        if destination_tags(&req.image).is_empty() {
            return Err(Error::Unsupported(format!(
                "{} has no tag to write the rebased image back to; give --tag",
                req.image
            )));
        }
        vec![req.image.clone()]
    } else {
        req.destinations.clone()
    };
    let image: Arc<dyn Source> = Arc::from(open_source(&req.image, ep).await?);
    let root = image.resolve().await?;
    let name = image.name();

    let index_spec = match &req.old_base {
        Some(r) => Some(OldSpec {
            reference: r.clone(),
            name: base_name(r),
            pin: None,
        }),
        None => spec_from(root.view().annotations.as_ref())?,
    };
    let no_annotations = |what: String| Error::Input {
        what,
        reason: format!(
            "no base annotations ({BASE_NAME} and {BASE_DIGEST}) say which base it was built \
             on; give --old-base"
        ),
    };

    let mut dropped = Vec::new();
    let mut items = Vec::new();
    let entries: Vec<Option<Descriptor>> = if root.is_index() {
        let mut v = Vec::new();
        for (position, e) in root.view().manifests.iter().enumerate() {
            match not_runnable(e) {
                Some(reason) => dropped.push(Dropped {
                    position,
                    digest: e.digest.clone(),
                    reason,
                }),
                None => v.push(Some(e.clone())),
            }
        }
        if v.is_empty() {
            return Err(Error::Invalid {
                what: format!("index {} of {name}", root.digest()),
                reason: "it has no runnable image manifest to rebase".into(),
            });
        }
        v
    } else {
        vec![None]
    };
    for entry in entries {
        let manifest = match &entry {
            Some(e) => image.manifest(e).await?,
            None => root.clone(),
        };
        let config_desc = manifest.view().config.clone().ok_or_else(|| {
            Error::Unsupported(format!(
                "{name} is an artifact ({}), not an image: it has no layers to rebase",
                manifest.media_type()
            ))
        })?;
        let config = read_blob(image.as_ref(), &config_desc, CONFIG_LIMIT)
            .await
            .map_err(|e| e.context(format!("reading the config of {}", manifest.digest())))?;
        let platform = match &entry {
            Some(e) => e.platform.clone(),
            None => config_platform(&config),
        };
        let old = match &index_spec {
            Some(s) => s.clone(),
            None => spec_from(manifest.view().annotations.as_ref())?.ok_or_else(|| {
                no_annotations(match &platform {
                    Some(p) => format!("{name} (platform {p})"),
                    None => name.clone(),
                })
            })?,
        };
        items.push(Item {
            entry,
            platform,
            manifest,
            config,
            old,
        });
    }

    let new_base = open_base(&req.onto, ep).await?;
    let new_name = base_name(&req.onto);
    let mut olds: HashMap<String, Opened> = HashMap::new();
    let mut missing_new = Vec::new();
    let mut missing_old = Vec::new();
    let mut picked = Vec::new();
    for it in &items {
        let key = it.old.reference.to_string();
        if !olds.contains_key(&key) {
            olds.insert(key.clone(), open_base(&it.old.reference, ep).await?);
        }
        let old_base = &olds[&key];
        let label = || {
            it.platform
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "the image".into())
        };
        let old = pick(
            old_base,
            it.platform.as_ref(),
            it.old.pin.as_ref(),
            &it.old.name,
        )
        .await?;
        let new = pick(&new_base, it.platform.as_ref(), None, &new_name).await?;
        if old.is_none() {
            missing_old.push(label());
        }
        if new.is_none() {
            missing_new.push(label());
        }
        picked.push((old, new));
    }
    if !missing_new.is_empty() {
        return Err(Error::Input {
            what: format!("new base {new_name}"),
            reason: format!(
                "it has no image for {} of {name}; nothing was written",
                missing_new.join(", ")
            ),
        });
    }
    if !missing_old.is_empty() {
        return Err(Error::Input {
            what: format!("old base {}", items[0].old.name),
            reason: format!("it has no image for {} of {name}", missing_old.join(", ")),
        });
    }

    let mut manifests = HashMap::new();
    let mut configs = HashMap::new();
    let mut new_base_blobs = HashSet::new();
    let mut replace = HashMap::new();
    let mut platforms = Vec::new();
    let mut old_bases: Vec<BaseRef> = Vec::new();
    let mut single = None;
    for (it, picked) in items.iter().zip(picked) {
        let (Some((om, oc)), Some((nm, nc))) = picked else {
            return Err(Error::internal("rebasing", "a base was not picked"));
        };
        let what = match &it.platform {
            Some(p) => format!("platform {p} of {name}"),
            None => name.clone(),
        };
        let ann = BTreeMap::from([
            (BASE_NAME.to_string(), new_name.clone()),
            (BASE_DIGEST.to_string(), nm.digest().to_string()),
        ]);
        let r = rebase_manifest(
            Parts {
                manifest: &it.manifest,
                config: &it.config,
            },
            Parts {
                manifest: &om,
                config: &oc,
            },
            Parts {
                manifest: &nm,
                config: &nc,
            },
            &ann,
            &what,
        )?;
        new_base_blobs.extend(nm.view().layers.iter().map(|l| l.digest.clone()));
        configs.insert(r.config_desc.digest.clone(), r.config.clone());
        let old_ref = BaseRef {
            name: it.old.name.clone(),
            digest: match &it.old.pin {
                Some(pin) => pin.clone(),
                None => olds[&it.old.reference.to_string()].root.digest().clone(),
            },
        };
        if !old_bases.contains(&old_ref) {
            old_bases.push(old_ref);
        }
        platforms.push(RebasedPlatform {
            platform: it.platform.as_ref().map(|p| p.to_string()),
            image: it.manifest.digest().clone(),
            digest: r.manifest.digest().clone(),
            old_base: om.digest().clone(),
            new_base: nm.digest().clone(),
            removed_layers: r.old_layers,
            base_layers: r.new_layers,
            own_layers: r.own_layers,
        });
        if let Some(e) = &it.entry {
            replace.insert(e.digest.clone(), r.manifest.descriptor());
        } else {
            single = Some(r.manifest.clone());
        }
        manifests.insert(r.manifest.digest().clone(), r.manifest);
    }
    let new_root = match single {
        Some(m) => m,
        None => {
            let drop: HashSet<usize> = dropped.iter().map(|d| d.position).collect();
            let ann = BTreeMap::from([
                (BASE_NAME.to_string(), new_name.clone()),
                (BASE_DIGEST.to_string(), new_base.root.digest().to_string()),
            ]);
            rebuild_index(&root, &replace, &drop, &ann, true)?
        }
    };
    let digest = new_root.digest().clone();
    let new_base_ref = BaseRef {
        name: new_name,
        digest: new_base.root.digest().clone(),
    };
    let source = RebasedSource::new(
        image,
        new_base.source.clone(),
        new_root,
        manifests,
        configs,
        new_base_blobs,
    );
    let mut reports = Vec::new();
    let mut names = Vec::new();
    for dst in &destinations {
        if req.dry_run {
            names.push(dst.to_string());
            continue;
        }
        let sink = open_sink(dst, ep).await?;
        let opts = CopyOptions {
            jobs: req.jobs.max(1),
            tags: destination_tags(dst),
            ..CopyOptions::default()
        };
        let report = copy_image(&source, sink.as_ref(), &opts, reporter).await?;
        names.push(sink.name());
        reports.push(report);
    }
    Ok(RebasedImage {
        image: name,
        image_digest: root.digest().clone(),
        digest,
        old_bases,
        new_base: new_base_ref,
        platforms,
        dropped,
        destinations: names,
        dry_run: req.dry_run,
        reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_parse_and_pin() {
        let pin = Digest::sha256(b"x");
        match parse_base_name("localhost:5000/base:v1", &pin).unwrap() {
            ImageRef::Docker(d) => {
                assert_eq!(d.tag.as_deref(), Some("v1"));
                assert_eq!(d.digest.as_ref(), Some(&pin));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_base_name("oci:/tmp/l:v1", &pin).unwrap(),
            ImageRef::Layout(_)
        ));
        let e = parse_base_name("Not A Name", &pin).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("--old-base"), "{e}");
    }
}
