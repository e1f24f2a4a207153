//! `graft inspect REF`: index, manifest or config, as text, JSON or exact bytes.

use clap::Args;
use serde_json::json;

use graft::copy::resolve_root;
use graft::oci::{Platform, RawManifest};
use graft::reference::ImageRef;
use graft::store::open::open_source;
use graft::store::{read_blob, Source};

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

const CONFIG_LIMIT: u64 = 64 << 20;

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
    let ep = global.registry.endpoint(None)?;
    let src = open_source(&r, &ep).await?;
    let mut platform = args.platform.clone();
    if args.config && platform.is_none() {
        platform = Some(host_platform());
    }
    let m = resolve_root(src.as_ref(), platform.as_ref()).await?;
    if args.breadcrumbs {
        return breadcrumbs(src.as_ref(), &m, global).await;
    }
    if args.config {
        let config = m.view().config.clone().ok_or_else(|| {
            anyhow::anyhow!("{} is an index, not an image: it has no config", src.name())
        })?;
        let bytes = read_blob(src.as_ref(), &config, CONFIG_LIMIT).await?;
        if args.raw {
            write_raw(&bytes)?;
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        match global.output {
            Output::Json => print_json(&value)?,
            Output::Text => outln!("{}", serde_json::to_string_pretty(&value)?)?,
        }
        return Ok(());
    }
    if args.raw {
        write_raw(m.bytes())?;
        return Ok(());
    }
    match global.output {
        Output::Json => print_json(&describe(src.as_ref(), &m)?)?,
        Output::Text => print_text(src.as_ref(), &m)?,
    }
    Ok(())
}

fn describe(src: &dyn Source, m: &RawManifest) -> anyhow::Result<serde_json::Value> {
    let parsed: serde_json::Value = serde_json::from_slice(m.bytes())?;
    Ok(json!({
        "name": src.name(),
        "digest": m.digest(),
        "mediaType": m.media_type(),
        "size": m.bytes().len(),
        "manifest": parsed,
    }))
}

fn print_text(src: &dyn Source, m: &RawManifest) -> anyhow::Result<()> {
    let v = m.view();
    outln!("Name:       {}", src.name())?;
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

async fn breadcrumbs(src: &dyn Source, m: &RawManifest, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut images = Vec::new();
    if m.is_index() {
        for d in &m.view().manifests {
            match &d.platform {
                Some(p) if !p.is_unknown() => images.push((p.to_string(), src.manifest(d).await?)),
                _ => {}
            }
        }
    } else {
        images.push(("-".to_string(), m.clone()));
    }
    let mut rows = Vec::new();
    for (platform, image) in images {
        let Some(config) = image.view().config.clone() else {
            continue;
        };
        let bytes = read_blob(src, &config, CONFIG_LIMIT).await?;
        for c in graft::image::breadcrumbs::read(&graft::image::config::config_labels(&bytes)?) {
            rows.push((platform.clone(), c));
        }
    }
    match global.output {
        Output::Json => print_json(
            &rows
                .iter()
                .map(|(p, c)| json!({"platform": p, "prefix": c.prefix, "component": c.component, "version": c.version, "buildtime": c.buildtime}))
                .collect::<Vec<_>>(),
        )?,
        Output::Text => {
            if rows.is_empty() {
                eprintln!("no breadcrumb labels in {}", src.name());
                return Ok(());
            }
            outln!("{:<16} {:<28} {:<40} BUILDTIME", "PLATFORM", "COMPONENT", "VERSION")?;
            for (p, c) in rows {
                outln!(
                    "{:<16} {:<28} {:<40} {}",
                    p,
                    c.component,
                    c.version.as_deref().unwrap_or("-"),
                    c.buildtime.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    Ok(())
}
