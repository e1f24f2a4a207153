//! `graft append --base SRC --layer L… DST`: append layers to every platform of an image.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use graft::copy::{copy_image, CopyOptions};
use graft::image::append::{append, AppendRequest, LocalBlob, NewLayer};
use graft::image::config::RuntimeConfig;
use graft::image::tarball::inspect_tarball;
use graft::oci::Platform;
use graft::reference::ImageRef;
use graft::store::open::{destination_tags, open_sink, open_source};

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
    let base_ref: ImageRef = args.base.parse()?;
    let dst_ref: ImageRef = args.dst.parse()?;
    let created = super::created_time()?;
    let mut layers = Vec::new();
    for path in &args.layers {
        if !path.is_file() {
            anyhow::bail!(
                "--layer {}: not a file; give a layer tarball (tar, tar.gz or tar.zst)",
                path.display()
            );
        }
        let (desc, diff_id) = inspect_tarball(path)?;
        layers.push(NewLayer {
            desc,
            diff_id,
            blob: LocalBlob::File(path.clone()),
            created_by: format!(
                "graft append {}",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        });
    }
    let ep = global.registry.endpoint(None)?;
    let base: Arc<dyn graft::store::Source> = Arc::from(open_source(&base_ref, &ep).await?);
    let req = AppendRequest {
        layers,
        runtime: RuntimeConfig::default(),
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        platform_labels: None,
        annotations: args.annotations.iter().cloned().collect(),
        inherit_annotations: true,
        base_name: Some(graft::image::append::base_name(&base_ref)),
        platforms: (!args.platforms.is_empty()).then(|| args.platforms.clone()),
        created,
    };
    let assembled = append(base, &req).await?;
    for d in &assembled.dropped {
        if !global.quiet {
            eprintln!("note: left out {}: {}", d.digest, d.reason);
        }
    }
    let sink = open_sink(&dst_ref, &ep).await?;
    let opts = CopyOptions {
        jobs: args.jobs.max(1),
        tags: destination_tags(&dst_ref),
        ..CopyOptions::default()
    };
    let reporter = Bars::reporter(global.quiet);
    let report = copy_image(&assembled.source, sink.as_ref(), &opts, &reporter).await?;
    match global.output {
        Output::Json => print_json(&json!({
            "destination": sink.name(),
            "digest": report.digest,
            "base": assembled.base_root,
            "platforms": assembled.platforms,
            "dropped": assembled.dropped,
            "report": report,
        }))?,
        Output::Text => {
            if !global.quiet {
                for p in &assembled.platforms {
                    eprintln!(
                        "{}: {} -> {}",
                        p.platform.as_deref().unwrap_or("image"),
                        p.base,
                        p.digest
                    );
                }
            }
            println!("{}", report.digest);
        }
    }
    Ok(())
}
