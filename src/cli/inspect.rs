//! `graft inspect REF`: index, manifest or config, as text, JSON or exact bytes.

use clap::Args;
use serde_json::json;

use graft::oci::{Platform, RawManifest};
use graft::ops::inspect::{inspect, Inspected, Part, PlatformCrumb};
use graft::reference::ImageRef;

use super::output::{outln, write_raw};
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub reference: String,
    /// Print the manifest (or, with --config, the config) exactly as stored.
    #[arg(long)]
    pub raw: bool,
    /// Show the image config instead of the manifest (of --platform, or the host's platform,
    /// when REF is an index).
    #[arg(long)]
    pub config: bool,
    /// Pick this platform out of an index.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Show the breadcrumb labels (which science and compat versions make up the image) of
    /// every platform, as a table (or JSON).
    #[arg(long, conflicts_with_all = ["raw", "config"])]
    pub breadcrumbs: bool,
}

fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        ..Platform::default()
    }
}

/// Run `graft inspect`.
pub async fn run(args: InspectArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let r: ImageRef = args.reference.parse()?;
    let mut platform = args.platform.clone();
    if args.config && platform.is_none() {
        platform = Some(host_platform());
    }
    let part = match (args.breadcrumbs, args.config) {
        (true, _) => Part::Breadcrumbs,
        (false, true) => Part::Config,
        (false, false) => Part::Root,
    };
    let ep = global.registry.endpoint(None)?;
    let (name, found) = inspect(&r, platform.as_ref(), part, &ep).await?;
    match found {
        Inspected::Root(m) if args.raw => write_raw(m.bytes())?,
        Inspected::Root(m) => match global.output {
            Output::Json => print_json(&describe(&name, &m)?)?,
            Output::Text => print_text(&name, &m)?,
        },
        Inspected::Config(bytes) if args.raw => write_raw(&bytes)?,
        Inspected::Config(bytes) => {
            let value: serde_json::Value = serde_json::from_slice(&bytes)?;
            match global.output {
                Output::Json => print_json(&value)?,
                Output::Text => outln!("{}", serde_json::to_string_pretty(&value)?)?,
            }
        }
        Inspected::Breadcrumbs(rows) => print_breadcrumbs(&name, &rows, global)?,
    }
    Ok(())
}

fn describe(name: &str, m: &RawManifest) -> anyhow::Result<serde_json::Value> {
    let parsed: serde_json::Value = serde_json::from_slice(m.bytes())?;
    Ok(json!({
        "name": name,
        "digest": m.digest(),
        "mediaType": m.media_type(),
        "size": m.bytes().len(),
        "manifest": parsed,
    }))
}

fn print_text(name: &str, m: &RawManifest) -> anyhow::Result<()> {
    let v = m.view();
    outln!("Name:       {name}")?;
    outln!("Digest:     {}", m.digest())?;
    outln!("MediaType:  {}", m.media_type())?;
    if m.is_index() {
        outln!("Manifests:")?;
        for d in &v.manifests {
            let p = d
                .platform
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into());
            outln!("  {:<20} {}  {:>8}  {}", p, d.digest, d.size, d.media_type)?;
        }
    } else {
        if let Some(c) = &v.config {
            outln!("Config:     {} ({} bytes)", c.digest, c.size)?;
        }
        let total: u64 = v.layers.iter().map(|l| l.size).sum();
        outln!("Layers:     {} ({} bytes)", v.layers.len(), total)?;
        for l in &v.layers {
            outln!("  {}  {:>10}  {}", l.digest, l.size, l.media_type)?;
        }
    }
    if let Some(a) = &v.annotations {
        outln!("Annotations:")?;
        for (k, val) in a {
            outln!("  {k}={val}")?;
        }
    }
    Ok(())
}

fn print_breadcrumbs(
    name: &str,
    rows: &[PlatformCrumb],
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    match global.output {
        Output::Json => print_json(&rows)?,
        Output::Text => {
            if rows.is_empty() {
                eprintln!("no breadcrumb labels in {name}");
                return Ok(());
            }
            outln!(
                "{:<16} {:<28} {:<40} BUILDTIME",
                "PLATFORM",
                "COMPONENT",
                "VERSION"
            )?;
            for r in rows {
                outln!(
                    "{:<16} {:<28} {:<40} {}",
                    r.platform,
                    r.crumb.component,
                    r.crumb.version.as_deref().unwrap_or("-"),
                    r.crumb.buildtime.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    Ok(())
}
