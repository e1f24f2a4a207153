//! Use cases: what a command does, over the layers below (the copy engine, images, signing,
//! the library). Each is one call returning a report that the CLI renders; none prints.
//!
//! - [`append`]: new layers over a base image (`graft append`);
//! - [`bake`]: BuildKit through a bake file, and the continuation from buildx's metadata;
//! - [`build`]: the library's `build:` images built with buildah, tested, written, refreshed;
//! - [`build_sign`]: signatures and SLSA provenance of what `graft build` writes;
//! - [`factory`]: the image factory: images.yaml, state files, the base watch, Kargo Warehouses;
//! - [`plan`]: what a refresh would write (`graft plan`);
//! - [`refresh`]: the compat refresh of a library's images (assemble, write, sign);
//! - [`mirror`]: copying many images (and what is attached to them), for air gaps;
//! - [`attachments`]: finding and copying signatures, attestations and referrers;
//! - [`sign`]: signing, attesting and verifying images as CI steps;
//! - [`inspect`]: an image's root, config or breadcrumbs (`graft inspect`);
//! - [`copy`]: one image copy, with its attachments when asked (used by `copy` and `mirror`);
//! - [`test`](mod@test): commands run inside any image through buildah (`graft test`);
//! - [`tag`]: tags inside one repository, registry-cheap (`graft tag`, `delete`, `ls`);
//! - [`promote`]: the library's images tagged `stable` or as a release (`graft promote`);
//! - [`inputs`]: the input digest that says an image is up to date (`refresh`, `status`);
//! - [`status`]: the registry against the library: up to date, stale, missing, orphaned;
//! - [`select`]: Kargo's image selection strategies (SemVer, Lexical, NewestBuild, Digest),
//!   for `factory check` and `mirror`;
//! - [`rebase`]: new base layers under an image's own, without a rebuild (`graft rebase`);
//! - [`prune`]: branch tags of gone branches deleted, never taking another tag (`graft prune`);
//! - [`layer`]: one layer tarball with refresh's bytes (`graft layer build`);
//! - [`shard`]: a deterministic 1/N of a library's images, for N CI jobs (`--shard I/N`);
//! - [`verify_provenance`]: an image rebuilt from the library commit its provenance records
//!   (`graft verify-provenance`).

pub mod append;
pub mod attachments;
pub mod bake;
pub mod build;
pub mod build_sign;
pub mod copy;
pub mod diff;
pub mod factory;
pub mod inputs;
pub mod inspect;
pub mod layer;
pub mod memo;
pub mod mirror;
pub mod plan;
pub mod promote;
pub mod prune;
pub mod rebase;
pub mod refresh;
pub mod select;
pub mod shard;
pub mod sign;
pub mod status;
pub mod tag;
pub mod test;
pub mod verify_provenance;
