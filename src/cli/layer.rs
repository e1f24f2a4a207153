//! `graft layer build DIR`: build a deterministic layer tarball and print its digests.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use graft::layer::{self, Compression, LayerDigests, LayerSpec};
use graft::timestamp::Timestamp;

use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft layer`.
#[derive(Debug, Args)]
pub struct LayerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LayerCommand,
}

/// `graft layer` subcommands.
#[derive(Debug, Subcommand)]
pub enum LayerCommand {
    /// Build a layer tarball (same sources, same bytes) and print its digest, diff_id, size
    /// and media type. Entry mtimes come from SOURCE_DATE_EPOCH (default 0).
    Build(BuildArgs),
}

/// Arguments of `graft layer build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The directory placed at `/` in the layer.
    pub source: PathBuf,
    /// Write the layer to FILE (replaced atomically). Without it the layer is only hashed:
    /// nothing is written to disk. (`-o` is the global --output format.)
    #[arg(long, short = 'f', visible_alias = "out", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// gzip, zstd or none.
    #[arg(long, default_value_t = Compression::Gzip)]
    pub compression: Compression,
}

/// Run `graft layer`.
pub async fn run(args: LayerArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        LayerCommand::Build(b) => build(b, global),
    }
}

fn build(args: BuildArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let spec = LayerSpec::tree(&args.source, mtime()?);
    let digests = build_spec(&spec, args.compression, args.file.as_deref())?;
    print_digests(&digests, args.file.as_deref(), global.output)
}

/// The time every entry gets: `SOURCE_DATE_EPOCH`, else the epoch.
pub fn mtime() -> anyhow::Result<Timestamp> {
    Ok(Timestamp::from_env()?.unwrap_or(Timestamp::EPOCH))
}

/// Build `spec` into `file`, or only hash it when there is no file.
pub fn build_spec(
    spec: &LayerSpec,
    compression: Compression,
    file: Option<&Path>,
) -> graft::Result<LayerDigests> {
    match file {
        Some(path) => layer::build_to_file(spec, compression, path),
        None => layer::build(spec, compression, std::io::sink()),
    }
}

/// Print what identifies a layer (and where it was written).
pub fn print_digests(d: &LayerDigests, file: Option<&Path>, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            let mut v = serde_json::to_value(d)?;
            if let Some(f) = file {
                v["file"] = serde_json::Value::String(f.display().to_string());
            }
            print_json(&v)
        }
        Output::Text => {
            println!("Digest:     {}", d.digest);
            println!("DiffID:     {}", d.diff_id);
            println!("Size:       {}", d.size);
            println!("MediaType:  {}", d.media_type);
            if let Some(f) = file {
                println!("File:       {}", f.display());
            }
            Ok(())
        }
    }
}
