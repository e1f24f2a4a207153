//! `graft copy SRC DST`.

use clap::Args;

use graft::attachments::{copy_attachments, discover};
use graft::copy::{copy_image, resolve_root, CopyOptions, CopyReport};
use graft::oci::Platform;
use graft::reference::ImageRef;
use graft::sign::Repo;
use graft::store::open::{destination_tags, open_sink, open_source, Endpoint};

use super::output::outln;
use super::progress::Bars;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source: docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub src: String,
    /// Destination, in the same forms. The destination tag defaults to `latest` for
    /// docker:// and to an untagged entry for layouts.
    pub dst: String,
    /// Copy only this platform (os/arch[/variant]) out of an index. Default: all platforms.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Concurrent blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Credentials USER:PASSWORD for the source registry (overrides --creds).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub src_creds: Option<String>,
    /// Credentials USER:PASSWORD for the destination registry (overrides --creds).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub dest_creds: Option<String>,
    /// Also copy everything attached to the image and to each of its children: cosign
    /// `.sig`/`.att`/`.sbom` tags and OCI referrers, recursively.
    #[arg(long)]
    pub with_attachments: bool,
}

/// Run `graft copy`.
pub async fn run(args: CopyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let src_ref: ImageRef = args.src.parse()?;
    let dst_ref: ImageRef = args.dst.parse()?;
    let src_ep = global.registry.endpoint(args.src_creds.as_deref())?;
    let mut dst_ep = global.registry.endpoint(args.dest_creds.as_deref())?;
    if args.src_creds == args.dest_creds {
        // Same credentials on both sides: share clients so tokens and connections are reused.
        dst_ep = Endpoint {
            pool: src_ep.pool.clone(),
            ..dst_ep
        };
    } else {
        dst_ep.key = "dest".into();
    }
    let src = open_source(&src_ref, &src_ep).await?;
    let dst = open_sink(&dst_ref, &dst_ep).await?;
    let opts = CopyOptions {
        platform: args.platform.clone(),
        jobs: args.jobs.max(1),
        tags: destination_tags(&dst_ref),
        commit: false,
        ..CopyOptions::default()
    };
    let reporter = Bars::reporter(global.quiet);
    let report = copy_image(src.as_ref(), dst.as_ref(), &opts, &reporter).await?;
    let attachments = if args.with_attachments {
        let repo = Repo::open_read(&src_ref, &src_ep).await?;
        let root = resolve_root(src.as_ref(), opts.platform.as_ref()).await?;
        let found = discover(&repo, &root).await?;
        // The destination, for merging into its own signatures and referrers indexes.
        let merge_repo = Repo::open_destination(&dst_ref, &dst_ep).await?;
        Some(
            copy_attachments(
                &repo,
                dst.as_ref(),
                &dst_ref,
                &found,
                Some(&merge_repo),
                &opts,
                &reporter,
            )
            .await?,
        )
    } else {
        None
    };
    dst.commit().await?;
    if let graft::reference::ImageRef::Docker(d) = &dst_ref {
        if let Some(want) = &d.digest {
            anyhow::ensure!(
                *want == report.digest,
                "the destination names digest {want} but the copied image is {}",
                report.digest
            );
        }
    }
    match global.output {
        Output::Json => print_json(&serde_json::json!({
            "source": src.name(),
            "destination": dst.name(),
            "report": report,
            "attachments": attachments,
        }))?,
        Output::Text => {
            if !global.quiet {
                eprintln!("{}", summary(&report, &src.name(), &dst.name()));
                if let Some(a) = &attachments {
                    eprintln!(
                        "Attachments: {} found, {} copied, {} already present, {} merged into fallback indexes",
                        a.found, a.copied, a.present, a.merged
                    );
                }
            }
            outln!("{}", report.digest)?;
        }
    }
    Ok(())
}

fn summary(r: &CopyReport, src: &str, dst: &str) -> String {
    format!(
        "Copied {src} to {dst}: {} blob(s) uploaded ({} bytes), {} mounted ({} bytes), {} already present; {} manifest(s) written, {} already present",
        r.uploaded.count, r.uploaded.bytes, r.mounted.count, r.mounted.bytes, r.present.count,
        r.manifests_written, r.manifests_present
    )
}
