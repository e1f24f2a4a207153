//! `graft promote [NAME…] --library DIR --to TAG | --release TAG`: new tags on the digest each
//! final image's `{version}` tag has now.

use std::path::PathBuf;

use clap::Args;

use graft::library::Library;
use graft::ops::promote::{promote, PromoteReport, PromoteRequest};

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Promote only the manifests with these image names (default: all).
    pub names: Vec<String>,
    /// The library directory (with graft.yaml, manifests/ and layers/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub library: PathBuf,
    /// Destination prefix replacing graft.yaml's `repo` (as for `graft refresh --repo`).
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
    /// A tag to add (repeatable); `{version}` is the manifest's version, e.g. `stable` or
    /// `{version}-stable`.
    #[arg(long = "to", value_name = "TAG")]
    pub to: Vec<String>,
    /// A release: adds the tag TAG and `stable` (the Fornax release workflow).
    #[arg(long, value_name = "TAG")]
    pub release: Option<String>,
    /// Refuse (exit 1, nothing tagged) unless every image's digest carries a signature by
    /// this cosign public key (a path or env://VAR).
    #[arg(long, value_name = "PUB")]
    pub verify_key: Option<String>,
    /// Read (and verify) every image and show the tags; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Run `graft promote`.
pub async fn run(args: PromoteArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut lib = Library::open(&args.library)?;
    if let Some(repo) = &args.repo {
        lib = lib.with_repo(repo);
    }
    let mut tags = Vec::new();
    if let Some(r) = &args.release {
        tags.extend([r.clone(), "stable".to_string()]);
    }
    tags.extend(args.to.iter().cloned());
    let req = PromoteRequest {
        names: args.names.clone(),
        tags,
        verify_key: args
            .verify_key
            .as_deref()
            .map(graft::sign::PublicKey::load)
            .transpose()?,
        dry_run: args.dry_run,
    };
    let ep = global.registry.endpoint(None)?;
    let report = promote(&lib, &req, &ep).await?;
    match global.output {
        Output::Json => print_json(&report)?,
        Output::Text => print_text(&report)?,
    }
    Ok(())
}

fn print_text(report: &PromoteReport) -> anyhow::Result<()> {
    for p in &report.images {
        let verified = if p.verified {
            " (signature verified)"
        } else {
            ""
        };
        outln!("{} {} {}{verified}", p.name, p.version, p.digest)?;
        let repo = p
            .source
            .strip_suffix(&format!(":{}", p.version))
            .unwrap_or(&p.source);
        for t in &p.tags {
            outln!("  -> {repo}:{t}")?;
        }
    }
    let n = report.images.len();
    let verb = if report.dry_run {
        "would promote"
    } else {
        "promoted"
    };
    outln!("{verb} {n} image{}", if n == 1 { "" } else { "s" })?;
    Ok(())
}
