//! Immutable image values and mutations: config edits, derived manifests and indexes, and
//! appending layers to every platform of an image.

pub mod append;
pub mod breadcrumbs;
pub mod config;
pub mod manifest;
pub mod rebase;
pub mod tarball;
