//! graft's own library as managed images (`graft factory sync --library DIR`): each manifest
//! is enrolled under its image name, in the registry and repository of its target reference
//! (graft.yaml's `target` expanded), with its bases from its science image (`science:`) or
//! from the FROM lines of its `build:` Dockerfile. graft.yaml's `factory:` section gives
//! their `rebuildDelay` (`rebuild_delay`), `autoRebuild` (`auto_rebuild`) and the Warehouses'
//! namespace.

use crate::error::{Error, Result};
use crate::library::{Library, Manifest};
use crate::reference::{DockerRef, ImageRef};

use super::config::{Enrolled, LibraryBases, LibraryImage};
use super::names::{display_registry, is_dns_label};
use super::Delay;

/// Every manifest of `lib` as a managed image. Errors (bad input): a target that is not in
/// a registry (`oci:` layouts are not watched), a manifest name that is not a DNS-1123 label,
/// a `factory.rebuild_delay` that is not a duration.
pub fn enroll(lib: &Library) -> Result<Vec<Enrolled>> {
    let settings = lib.settings();
    let rebuild_delay = match &settings.factory_rebuild_delay {
        None => Delay::zero(),
        Some(t) => Delay::parse(t).map_err(|reason| Error::Input {
            what: format!("{}: factory.rebuild_delay", settings.file.display()),
            reason,
        })?,
    };
    let auto_rebuild = settings.factory_auto_rebuild.unwrap_or(false);
    lib.manifests()
        .iter()
        .map(|m| {
            Ok(Enrolled {
                name: checked_name(lib, m)?,
                registry: String::new(),
                repository: String::new(),
                source: None,
                library: Some(LibraryImage {
                    manifest: m.rel.clone(),
                    version: m.version.clone(),
                    bases: bases(lib, m),
                }),
                rebuild_delay: rebuild_delay.clone(),
                auto_rebuild,
                allow_tags: None,
                image_selection_strategy: None,
                line: 0,
            })
            .and_then(|e| with_target(lib, m, e))
        })
        .collect()
}

fn checked_name(lib: &Library, m: &Manifest) -> Result<String> {
    if is_dns_label(&m.name) {
        Ok(m.name.clone())
    } else {
        Err(Error::Input {
            what: format!("{}: name", lib.root().join(&m.rel).display()),
            reason: format!(
                "{:?} is not a valid state name for graft factory (a DNS-1123 label: lowercase letters, digits and '-', at most 63)",
                m.name
            ),
        })
    }
}

/// Registry and repository from the manifest's target reference.
fn with_target(lib: &Library, m: &Manifest, mut e: Enrolled) -> Result<Enrolled> {
    let text = lib.target_text(m);
    let not_registry = || {
        Error::Input {
        what: format!("the target of {} ({text})", m.rel),
        reason: "graft factory watches images in a registry; graft.yaml's repo/target must be docker://…".into(),
    }
    };
    let r = match text.parse::<ImageRef>() {
        Ok(ImageRef::Docker(d)) => d,
        _ => return Err(not_registry()),
    };
    e.registry = display_registry(&r.registry).to_string();
    e.repository = r.repository;
    Ok(e)
}

fn bases(lib: &Library, m: &Manifest) -> LibraryBases {
    match &m.build {
        Some(b) => LibraryBases::Dockerfile {
            path: lib.root().join(b.dockerfile_path()),
            shown: b.dockerfile_path(),
            args: b.args.clone(),
            target: b.target.clone(),
        },
        None => LibraryBases::Science(m.science.image.text.clone()),
    }
}

/// The reference a science image names, when it is in a registry.
pub fn science_ref(text: &str) -> std::result::Result<DockerRef, String> {
    match text.parse::<ImageRef>() {
        Ok(ImageRef::Docker(d)) => Ok(d),
        Ok(_) => Err(format!(
            "the science image {text} is not in a registry: graft factory watches registry images only"
        )),
        Err(e) => Err(format!("the science image {text}: {e}")),
    }
}
