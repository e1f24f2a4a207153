//! graft's integration tests: real registries (Debian's docker-registry, and refreg with the
//! referrers API), real clients (skopeo, umoci, openssl, cosign, crane, oras, regctl), and the
//! graft binary.

mod append;
mod bake;
mod branch_policy;
mod build;
mod build_sign;
mod ci_scale;
mod copy;
mod cosign;
mod crane_regctl;
mod factory;
mod git_sources;
mod graft;
mod harness;
mod hostile_files;
mod hostile_input;
mod hostile_registry;
mod hostile_verify;
mod image_test;
mod keyless;
mod layer;
mod layout;
mod library;
mod lifecycle;
mod mirror;
mod oras;
mod peers;
mod pipe;
mod promote;
mod provenance_repro;
mod prune;
mod rebase;
mod refresh;
mod repo;
mod science_manifest;
mod scratch;
mod select;
mod selfimage;
mod sign;
mod support;
mod uptodate;
