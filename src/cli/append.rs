//! `graft append --base SRC|scratch --layer L… DST`: append layers to every platform of an
//! image, or make a new image from layers alone (`--base scratch --platform P[,P…]`).

use std::path::PathBuf;

use clap::Args;

use graft::image::config::RuntimeConfig;
use graft::oci::Platform;
use graft::ops::append::{append_image, AppendImage};

use super::output::outln;
use super::progress::Bars;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The base image (an index or a single manifest), on any transport; `scratch` for none:
    /// the layers alone make the image, for the platforms --platform gives (one: an image
    /// manifest; several: an index).
    #[arg(long)]
    pub base: String,
    /// A layer to append: a tarball (tar, tar.gz or tar.zst). Repeat for more, in order.
    #[arg(long = "layer", required = true)]
    pub layers: Vec<PathBuf>,
    /// An environment variable `KEY=VALUE` set on every platform (replacing one of the same
    /// name). Repeatable.
    #[arg(long = "env", value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// The entrypoint, as a JSON array (`'["/graft"]'`) or one word; it clears an inherited
    /// Cmd unless --cmd is given, as in a Dockerfile.
    #[arg(long, value_parser = parse_argv)]
    pub entrypoint: Option<Argv>,
    /// The command (arguments to the entrypoint), as a JSON array or one word.
    #[arg(long, value_parser = parse_argv)]
    pub cmd: Option<Argv>,
    /// The user (`NAME`, `UID` or `UID:GID`).
    #[arg(long)]
    pub user: Option<String>,
    /// The working directory.
    #[arg(long)]
    pub workdir: Option<String>,
    /// A config label `KEY=VALUE` set on every platform. Repeatable.
    #[arg(long = "label", value_parser = parse_kv)]
    pub labels: Vec<(String, String)>,
    /// An annotation `KEY=VALUE` set on the index and every manifest. Repeatable.
    #[arg(long = "annotation", value_parser = parse_kv)]
    pub annotations: Vec<(String, String)>,
    /// Append only to this platform (repeatable or comma-separated); the others are left out
    /// of the result. With --base scratch: the platforms to make (required).
    #[arg(long = "platform", value_delimiter = ',')]
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

/// An exec-form command line (one value of `--entrypoint`/`--cmd`; a newtype so that clap
/// takes it as one value, not many).
#[derive(Debug, Clone)]
pub struct Argv(pub Vec<String>);

/// Parse an exec-form command line: a JSON array of strings, or a single word taken as a
/// one-element array (`/graft` is `["/graft"]`).
fn parse_argv(s: &str) -> Result<Argv, String> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s)
            .map(Argv)
            .map_err(|e| format!("expected a JSON array of strings: {e}"))
    } else {
        Ok(Argv(vec![s.to_string()]))
    }
}

/// Run `graft append`.
pub async fn run(args: AppendArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let req = AppendImage {
        base: args.base.parse()?,
        destination: args.dst.parse()?,
        layers: args.layers.clone(),
        runtime: RuntimeConfig {
            env: args.env.clone(),
            entrypoint: args.entrypoint.clone().map(|a| a.0),
            cmd: args.cmd.clone().map(|a| a.0),
            user: args.user.clone(),
            workdir: args.workdir.clone(),
            ..RuntimeConfig::default()
        },
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
                    let base = match out.base {
                        Some(_) => p.base.to_string(),
                        None => "scratch".to_string(),
                    };
                    eprintln!(
                        "{}: {base} -> {}",
                        p.platform.as_deref().unwrap_or("image"),
                        p.digest
                    );
                }
            }
            outln!("{}", out.digest)?;
        }
    }
    Ok(())
}
