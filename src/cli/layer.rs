//! `graft layer build DIR`: build a deterministic layer tarball and print its digests.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use graft::layer::{self, Compression, LayerDigests, LayerSpec};
use graft::library;
use graft::timestamp::Timestamp;

use super::output::outln;
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
    /// The layer: its NAME under the library's layers/ (see --library), a layer directory
    /// with a layer.yaml (includes resolved from its sibling directories), or any other
    /// directory, placed at `/` as it is.
    #[arg(value_name = "NAME|DIR")]
    pub source: PathBuf,
    /// The library whose layers/ holds NAME (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
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
    let spec = source_spec(&args)?;
    let digests = build_spec(&spec, args.compression, args.file.as_deref())?;
    print_digests(&digests, args.file.as_deref(), global.output)
}

/// The spec for `graft layer build`'s NAME|DIR argument.
fn source_spec(args: &BuildArgs) -> anyhow::Result<LayerSpec> {
    let mtime = mtime()?;
    let src = &args.source;
    if args.library.is_none() && src.is_dir() {
        if !src.join("layer.yaml").is_file() {
            return Ok(LayerSpec::tree(src, mtime));
        }
        let dir = std::path::absolute(src)?;
        let (Some(name), Some(layers)) = (dir.file_name(), dir.parent()) else {
            return Err(graft::Error::Input {
                what: format!("layer directory {}", src.display()),
                reason: "it has no name and parent directory".into(),
            }
            .into());
        };
        let compat = library::compat_from_layers(layers, &name.to_string_lossy())?;
        return Ok(compat.spec(mtime));
    }
    let lib = args.library.clone().unwrap_or_else(|| PathBuf::from("."));
    let name = src.to_string_lossy();
    if name.contains('/') {
        // A mistyped argument: bad input (exit 2).
        return Err(graft::Error::Input {
            what: format!("layer {name:?}"),
            reason: format!(
                "not a directory, and a layer NAME has no '/': pass the NAME of a directory \
                 under {}",
                lib.join("layers").display()
            ),
        }
        .into());
    }
    let compat = library::compat_from_layers(&lib.join("layers"), &name)?;
    Ok(compat.spec(mtime))
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
            outln!("Digest:     {}", d.digest)?;
            outln!("DiffID:     {}", d.diff_id)?;
            outln!("Size:       {}", d.size)?;
            outln!("MediaType:  {}", d.media_type)?;
            if let Some(f) = file {
                outln!("File:       {}", f.display())?;
            }
            Ok(())
        }
    }
}
