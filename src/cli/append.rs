//! `graft append --base SRC --layer L… DST`: append layers to every platform of an image.

use std::path::PathBuf;

use clap::Args;

use graft::oci::Platform;
use graft::ops::append::{append_image, AppendImage};

use super::output::outln;
use super::progress::Bars;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The base image (an index or a single manifest), on any transport.
    #[arg(long)]
    pub base: String,
    /// A layer to append: a tarball (tar, tar.gz or tar.zst). Repeat for more, in order.
    #[arg(long = "layer", required = true)]
    pub layers: Vec<PathBuf>,
    /// A config label `KEY=VALUE` set on every platform. Repeatable.
    #[arg(long = "label", value_parser = parse_kv)]
    pub labels: Vec<(String, String)>,
    /// An annotation `KEY=VALUE` set on the index and every manifest. Repeatable.
    #[arg(long = "annotation", value_parser = parse_kv)]
    pub annotations: Vec<(String, String)>,
    /// Append only to this platform (repeatable); the others are left out of the result.
    #[arg(long = "platform")]
    pub platforms: Vec<Platform>,
    /// Concurrent blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Where to write the result (its tag, if any, is written last).
    pub dst: String,
}

/// Parse `KEY=VALUE` (a non-empty key; the value may be empty or hold `=`): the one parser of
/// the `--label` and `--annotation` options of every command.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Run `graft append`.
pub async fn run(args: AppendArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let req = AppendImage {
        base: args.base.parse()?,
        destination: args.dst.parse()?,
        layers: args.layers.clone(),
        labels: args.labels.iter().cloned().collect(),
        annotations: args.annotations.iter().cloned().collect(),
        platforms: args.platforms.clone(),
        jobs: args.jobs,
        created: super::created_time()?,
    };
    let ep = global.registry.endpoint(None)?;
    let reporter = Bars::reporter(global.quiet);
    let out = append_image(&req, &ep, &reporter).await?;
    if !global.quiet {
        for d in &out.dropped {
            eprintln!("note: left out {}: {}", d.digest, d.reason);
        }
    }
    match global.output {
        Output::Json => print_json(&out)?,
        Output::Text => {
            if !global.quiet {
                for p in &out.platforms {
                    eprintln!(
                        "{}: {} -> {}",
                        p.platform.as_deref().unwrap_or("image"),
                        p.base,
                        p.digest
                    );
                }
            }
            outln!("{}", out.digest)?;
        }
    }
    Ok(())
}
