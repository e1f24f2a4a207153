//! graft: a daemonless OCI image assembler.
//!
//! The library is organised around one transfer engine ([`copy`]) that moves images between
//! [`store::Source`]s and [`store::Sink`]s: registries, OCI layout directories and archives.

pub mod builder;
pub mod copy;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod layer;
pub mod library;
pub mod oci;
pub mod ops;
pub mod progress;
pub mod reference;
pub mod sign;
pub mod store;
pub mod timestamp;

pub use error::{Error, Result};
