//! `graft test REF --cmd '…'`: run commands inside any image with buildah (no daemon), on
//! this machine's platform or `--platform`; exit 3 when one fails.

use clap::Args;

use graft::builder::binfmt::host_platform;
use graft::builder::buildah::TestStatus;
use graft::oci::Platform;
use graft::ops::test::{test, work_dir, TestOptions, TestReport};

use super::build::BuilderArgs;
use super::output::outln;
use super::progress::Bars;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The image: docker://REGISTRY/REPO:TAG (or without docker://), oci:DIR[:TAG],
    /// oci-archive:FILE[:TAG]. Resolved once to a digest: exactly that image is tested.
    pub reference: String,
    /// A command to run inside the image as `sh -c COMMAND` (the image's entrypoint is not
    /// used), each in a new container. Repeat for more; all run, in order.
    #[arg(long = "cmd", value_name = "COMMAND", required = true)]
    pub commands: Vec<String>,
    /// The platform (os/arch[/variant]) to test out of an index. Default: this machine's; another
    /// one needs a QEMU binfmt emulator.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Concurrent blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// The builder (buildah), its storage and time limits (`--test-timeout` for each command).
    #[command(flatten)]
    pub builder: BuilderArgs,
}

/// Run `graft test`: one call to [`test`], rendered; a failed command is then the error.
pub async fn run(args: TestArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let reference = graft::reference::ImageRef::parse_or_registry(&args.reference)?;
    // A path buildah accepts in a layout reference (checked: a TMPDIR it cannot use is named).
    let work = work_dir()?;
    let options = TestOptions {
        commands: args.commands.clone(),
        platform: args.platform.clone(),
        host: host_platform(),
        binfmt_dir: args.builder.binfmt_dir.clone(),
        buildah: args.builder.buildah(work.path(), global)?,
        timeout: args.builder.test_timeout(),
        work_dir: work.path().to_path_buf(),
        jobs: args.jobs.max(1),
    };
    let ep = global.registry.endpoint(None)?;
    let reporter = Bars::reporter(global.quiet);
    let report = test(&reference, &options, &ep, &reporter).await?;
    match global.output {
        Output::Json => print_json(&report)?,
        Output::Text => print_text(&report)?,
    }
    match report.failure() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn print_text(r: &TestReport) -> anyhow::Result<()> {
    outln!("{}@{} ({})", r.reference, r.digest, r.platform)?;
    for t in &r.tests {
        let status = match t.status {
            TestStatus::Passed => "passed",
            TestStatus::Failed => "failed",
            TestStatus::TimedOut => "timed out",
        };
        outln!("  {status:<9} {} ({})", t.command, t.ended)?;
    }
    Ok(())
}
