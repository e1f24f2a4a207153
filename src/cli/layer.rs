//! `graft layer build NAME|DIR`: build a deterministic layer tarball and print its digests
//! (the digest refresh writes for the same layer: [`graft::ops::layer`]).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use graft::layer::{Compression, LayerDigests};
use graft::ops::layer::{build_layer, LayerBuild, LayerSource};
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
    /// and media type. Entry mtimes are refresh's: SOURCE_DATE_EPOCH, else (a library layer
    /// in git) the last commit that touched its chain, else 0.
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
    let req = LayerBuild {
        source: source(&args)?,
        compression: args.compression,
        file: args.file.clone(),
        // SOURCE_DATE_EPOCH is read here, at the edge; git is read by the op.
        epoch: Timestamp::from_env()?,
    };
    let built = build_layer(&req)?;
    print_digests(&built.digests, args.file.as_deref(), global.output)
}

/// What `graft layer build`'s NAME|DIR argument names.
fn source(args: &BuildArgs) -> anyhow::Result<LayerSource> {
    let src = &args.source;
    if args.library.is_none() && src.is_dir() {
        if !src.join("layer.yaml").is_file() {
            return Ok(LayerSource::Tree(src.clone()));
        }
        let dir = std::path::absolute(src)?;
        let (Some(name), Some(layers)) = (dir.file_name(), dir.parent()) else {
            return Err(graft::Error::Input {
                what: format!("layer directory {}", src.display()),
                reason: "it has no name and parent directory".into(),
            }
            .into());
        };
        return Ok(LayerSource::Library {
            layers_dir: layers.to_path_buf(),
            name: name.to_string_lossy().into_owned(),
        });
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
    Ok(LayerSource::Library {
        layers_dir: lib.join("layers"),
        name: name.into_owned(),
    })
}

/// Print what identifies a layer (and where it was written).
fn print_digests(d: &LayerDigests, file: Option<&Path>, output: Output) -> anyhow::Result<()> {
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
