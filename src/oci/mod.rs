//! OCI building blocks: digests, descriptors, media types, platforms, raw documents and the
//! tar headers of layers and archives.

pub mod descriptor;
pub mod digest;
pub mod media_types;
pub mod platform;
pub mod raw;
pub mod tar;

pub use descriptor::Descriptor;
pub use digest::{Algorithm, Digest, Digester};
pub use platform::Platform;
pub use raw::{ManifestView, RawManifest};
