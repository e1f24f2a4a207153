//! `graft copy SRC DST`.

use clap::Args;

use graft::copy::CopyReport;
use graft::oci::Platform;
use graft::ops::attachments::ReferrersAt;
use graft::ops::copy::{copy, CopyRequest};
use graft::store::open::Endpoint;

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
    /// Refuse the copy (exit 1, nothing written) unless the image carries a signature by
    /// this cosign public key (a path or env://VAR). The image checked is the image copied.
    #[arg(long, value_name = "PUB")]
    pub verify_key: Option<String>,
}

/// Run `graft copy`.
pub async fn run(args: CopyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let req = CopyRequest {
        source: args.src.parse()?,
        destination: args.dst.parse()?,
        platform: args.platform.clone(),
        jobs: args.jobs,
        with_attachments: args.with_attachments,
        verify_key: args
            .verify_key
            .as_deref()
            .map(graft::sign::PublicKey::load)
            .transpose()?,
    };
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
    // One operation: the local stores both sides open share their state.
    dst_ep.local = src_ep.local.clone();
    let reporter = Bars::reporter(global.quiet);
    let outcome = copy(&req, &src_ep, &dst_ep, &reporter).await?;
    match global.output {
        Output::Json => print_json(&outcome)?,
        Output::Text => {
            if !global.quiet {
                eprintln!(
                    "{}",
                    summary(&outcome.report, &outcome.source, &outcome.destination)
                );
                if let Some(a) = &outcome.attachments {
                    eprintln!(
                        "Attachments: {} found, {} copied, {} already present, {} merged into fallback indexes",
                        a.found, a.copied, a.present, a.merged
                    );
                    match a.referrers_at {
                        Some(ReferrersAt::Api) => eprintln!(
                            "Referrers: listed by the destination's referrers API ({} source fallback index(es) not written)",
                            a.fallback_skipped
                        ),
                        Some(ReferrersAt::FallbackTag) => eprintln!(
                            "Referrers: listed in sha256-<hex> fallback indexes (the destination has no referrers API)"
                        ),
                        Some(ReferrersAt::Layout) => eprintln!(
                            "Referrers: untagged index.json entries, also listed in the fallback index"
                        ),
                        None => {}
                    }
                    for s in &a.skipped {
                        eprintln!("Skipped: {s}");
                    }
                }
            }
            outln!("{}", outcome.report.digest)?;
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
