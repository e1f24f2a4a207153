//! graft: a daemonless OCI image assembler.
//!
//! The library is organised around one transfer engine ([`copy`]) that moves images between
//! [`store::Source`]s and [`store::Sink`]s: registries, OCI layout directories and archives.

pub mod error;
pub mod oci;
pub mod reference;
pub mod store;

pub use error::{Error, Result};
pub mod copy;
pub mod layer;
pub mod progress;
pub mod sign;
pub mod timestamp;
