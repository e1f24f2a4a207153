//! Signing and provenance of what `graft build` (and `graft build --from-metadata`) writes,
//! once an image is completely written, tags included (decisions §30).
//!
//! - The built image (its index and every platform manifest) gets a cosign simple signature
//!   and, with provenance, a SLSA v1 statement of [`BUILD_BUILD_TYPE`]
//!   ([`BuildProvenance`]): manifest, Dockerfile (path and sha256 of its bytes), context,
//!   target, platforms, build args, tags; the source (`git.repo` at `git.commit`, or the
//!   library's own commit) and every base (`name@digest` when pinned, else as written).
//! - With compat, that image is the science image (`science_target`); the final image the
//!   refresh wrote is signed by [`sign_result`] with the refresh's statement (its science is
//!   the image just built).
//!
//! Nothing here reads a clock: the time a statement is finished comes from a [`Clock`] the
//! binary hands in.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::library::order::{BuildStep, SourceState};
use crate::library::{Library, Manifest};
use crate::oci::Digest;
use crate::ops::build::BuiltImage;
use crate::ops::refresh::{sign_result, ProvenanceContext, Signed, Signing};
use crate::reference::ImageRef;
use crate::sign::provenance::{public_git_url, BuildBase, BuildProvenance, BuildSource};
use crate::sign::{attest, sign, AttestOptions, SignOptions};
use crate::store::open::Endpoint;
use crate::timestamp::Timestamp;

pub use crate::sign::provenance::BUILD_BUILD_TYPE;

/// The time, as the binary reads it (`SOURCE_DATE_EPOCH` when set, else the wall clock):
/// provenance's `finishedOn`. Library code reads no clock of its own.
#[derive(Clone)]
pub struct Clock(pub Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// A clock that always says `t`.
    pub fn fixed(t: Timestamp) -> Clock {
        Clock(Arc::new(move || t))
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The builder that built an image, as the statement records it.
#[derive(Debug, Clone)]
pub struct Driver {
    /// Versions besides graft's (`buildah` → `1.39.3`); empty when unknown (buildx: its
    /// metadata file does not say).
    pub versions: Vec<(String, String)>,
    /// `buildah` or `buildx` (`internalParameters.builder`).
    pub name: &'static str,
}

/// What one built image is, for its statement.
pub(crate) struct BuiltFacts<'a> {
    /// The manifest.
    pub manifest: &'a Manifest,
    /// Its build step (Dockerfile, context, source, bases).
    pub step: &'a BuildStep,
    /// The sha256 of the Dockerfile's bytes as read before the build (its path is not
    /// recorded): a file edited since is not what was built.
    pub dockerfile_digest: &'a Digest,
    /// Where the built image was written (first reference).
    pub written: &'a ImageRef,
    /// Platforms built.
    pub platforms: Vec<String>,
    /// Library bases pinned to a digest: FROM reference (expanded) → digest.
    pub pinned: Vec<(String, Digest)>,
    /// Who built it.
    pub driver: &'a Driver,
}

/// Sign the image `report` describes (completely written, tags included) and attach its
/// build statement; with compat, sign the final image too (refresh's statement). What was
/// signed goes into `report.signing` and `report.refresh.signing`.
pub(crate) async fn sign_built(
    lib: &Library,
    facts: &BuiltFacts<'_>,
    report: &mut BuiltImage,
    signing: &Signing,
    clock: &Clock,
    ep: &Endpoint,
) -> Result<()> {
    let m = facts.manifest;
    let digest = report.digest.clone().ok_or_else(|| Error::Invalid {
        what: m.rel.clone(),
        reason: "nothing was written to sign".into(),
    })?;
    let finished = clock.now();
    let statement = match &signing.provenance {
        Some(ctx) => Some(build_provenance(lib, facts, report, ctx, finished)?),
        None => None,
    };
    let subject_name = report.references.first().cloned().unwrap_or_default();
    report.signing = Some(
        sign_image(
            facts.written,
            &digest,
            &signing.key,
            statement.as_ref(),
            &subject_name,
            ep,
        )
        .await
        .map_err(|e| e.context(format!("{}: signing the built image", m.rel)))?,
    );
    if let Some(r) = report.refresh.as_mut() {
        let mut s = signing.clone();
        if let Some(p) = &mut s.provenance {
            p.finished_on = finished;
        }
        r.signing = Some(
            sign_result(m, r, &s, ep)
                .await
                .map_err(|e| e.context(format!("{}: signing the final image", m.rel)))?,
        );
    }
    Ok(())
}

/// Sign `reference` (which must hold `digest`) and every manifest its index lists; with a
/// statement, attest each of them with it.
async fn sign_image(
    reference: &ImageRef,
    digest: &Digest,
    key: &crate::sign::SigningKey,
    statement: Option<&BuildProvenance>,
    subject_name: &str,
    ep: &Endpoint,
) -> Result<Signed> {
    let (repo, subjects) = crate::ops::sign::targets(reference, ep, true, true).await?;
    if let Some(root) = subjects.first() {
        if root.digest != *digest {
            return Err(Error::DigestMismatch {
                what: format!("{reference} just before signing (another writer moved the tag)"),
                expected: digest.clone(),
                found: root.digest.clone(),
            });
        }
    }
    let mut out = Signed {
        signed: Vec::new(),
        attested: Vec::new(),
    };
    for s in &subjects {
        sign(&repo, s, key, &SignOptions::default())
            .await
            .map_err(|e| e.context(format!("signing {}", s.digest)))?;
        out.signed.push(s.digest.clone());
    }
    if let Some(p) = statement {
        let provenance = p.provenance();
        for s in &subjects {
            attest(
                &repo,
                s,
                key,
                &provenance.statement(subject_name, &s.digest),
                &AttestOptions::default(),
            )
            .await
            .map_err(|e| e.context(format!("attaching provenance to {}", s.digest)))?;
            out.attested.push(s.digest.clone());
        }
    }
    Ok(out)
}

/// The build statement of one image.
fn build_provenance(
    _lib: &Library,
    f: &BuiltFacts<'_>,
    report: &BuiltImage,
    ctx: &ProvenanceContext,
    finished: Timestamp,
) -> Result<BuildProvenance> {
    let m = f.manifest;
    let b = m
        .build
        .as_ref()
        .ok_or_else(|| Error::Unsupported(format!("{} has no build:", m.rel)))?;
    let source = match (&m.git, f.step.source) {
        (Some(git), SourceState::Git) => git.commit.as_ref().map(|c| BuildSource {
            url: public_git_url(&git.repo),
            commit: c.clone(),
        }),
        _ => None,
    };
    let mut bases: Vec<BuildBase> = Vec::new();
    for base in &f.step.bases {
        if bases.iter().any(|x| x.reference == base.expanded) {
            continue;
        }
        let pinned = f
            .pinned
            .iter()
            .find(|(r, _)| *r == base.expanded)
            .map(|(_, d)| d.clone());
        let written = base
            .expanded
            .rsplit_once('@')
            .and_then(|(_, d)| d.parse::<Digest>().ok());
        bases.push(BuildBase {
            reference: base.expanded.clone(),
            digest: pinned.or(written),
        });
    }
    let mut internal_versions = f.driver.versions.clone();
    internal_versions.sort();
    Ok(BuildProvenance {
        manifest_path: m.rel.clone(),
        manifest_digest: m.file_digest.clone(),
        dockerfile: f.step.dockerfile.clone(),
        dockerfile_digest: f.dockerfile_digest.clone(),
        context: f.step.context.clone(),
        target: b.target.clone(),
        platforms: f.platforms.clone(),
        args: b.args.clone(),
        tags: report.references.clone(),
        source,
        library: ctx.library.clone(),
        bases,
        build: ctx.build.clone(),
        created: ctx.created,
        source_date_epoch: ctx.source_date_epoch,
        repo_override: ctx.repo_override.clone(),
        builder: ctx.builder.clone(),
        builder_versions: internal_versions,
        driver: f.driver.name.to_string(),
        graft_version: env!("CARGO_PKG_VERSION").to_string(),
        started_on: ctx.started_on,
        finished_on: finished,
    })
}
