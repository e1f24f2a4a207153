//! Deterministic layer tarballs: the same sources give the same bytes on any machine.
//!
//! CONTRACT (agreed between the library, refresh and layer work; the implementation fills it):
//!
//! ```ignore
//! pub enum Compression { Gzip, Zstd, None }            // + media_type(), FromStr ("gzip"|"zstd"|"none")
//! pub struct LayerSpec {
//!     pub trees: Vec<PathBuf>,             // `files/` directories overlaid in order; later files win
//!     pub remove: Vec<String>,             // absolute image paths deleted from lower layers (whiteouts)
//!     pub owner: Option<(u32, u32)>,       // uid, gid of every entry (default 0:0)
//!     pub modes: BTreeMap<String, u32>,    // absolute image path -> mode (overrides normalisation)
//!     pub mtime: crate::timestamp::Timestamp,
//! }
//! pub struct LayerDigests { pub digest: Digest, pub diff_id: Digest, pub size: u64, pub media_type: String }
//! pub fn build<W: std::io::Write>(spec: &LayerSpec, compression: Compression, out: W) -> Result<LayerDigests>;
//! pub fn build_to_file(spec: &LayerSpec, compression: Compression, path: &Path) -> Result<LayerDigests>;
//! ```
