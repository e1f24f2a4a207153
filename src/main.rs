//! The `graft` binary: parse arguments, run the command, render errors, set the exit code.
//!
//! Exit codes: 0 success (also when stdout's reader stopped early), 1 the operation failed,
//! 2 bad usage or input, 3 a test inside an image failed (`graft test`, `graft build`),
//! 130 interrupted (SIGINT), 143 terminated (SIGTERM): the tests inside images running then
//! are killed first.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            cli::output::print_error(
                &anyhow::Error::new(e).context("cannot start the async runtime"),
            );
            return ExitCode::from(1);
        }
    };
    let work = async {
        match cli.command {
            Command::Copy(a) => cli::copy::run(a, &cli.global).await,
            Command::Inspect(a) => cli::inspect::run(a, &cli.global).await,
            Command::Ls(a) => cli::ls::run(a, &cli.global).await,
            Command::Append(a) => cli::append::run(a, &cli.global).await,
            Command::Rebase(a) => cli::rebase::run(a, &cli.global).await,
            Command::Mirror(a) => cli::mirror::run_mirror(a, &cli.global).await,
            Command::Refresh(a) => cli::refresh::run(a, &cli.global).await,
            Command::Build(a) => cli::build::run(a, &cli.global).await,
            Command::Test(a) => cli::test::run(a, &cli.global).await,
            Command::Diff(a) => cli::diff::run(a, &cli.global),
            Command::Validate(a) => cli::validate::run(a, &cli.global).await,
            Command::Plan(a) => cli::plan::run(a, &cli.global).await,
            Command::Layer(a) => cli::layer::run(a, &cli.global).await,
            Command::GenerateKeyPair(a) => cli::generate_key_pair::run(a, &cli.global).await,
            Command::Sign(a) => cli::sign::run(a, &cli.global).await,
            Command::Verify(a) => cli::verify::run(a, &cli.global).await,
            Command::Attest(a) => cli::attest::run(a, &cli.global).await,
            Command::VerifyAttestation(a) => cli::verify_attestation::run(a, &cli.global).await,
            Command::Provenance(a) => cli::provenance::run(a, &cli.global).await,
            Command::VerifyProvenance(a) => cli::verify_provenance::run(a, &cli.global).await,
            Command::Tag(a) => cli::tag::run(a, &cli.global).await,
            Command::Promote(a) => cli::promote::run(a, &cli.global).await,
            Command::Status(a) => cli::status::run(a, &cli.global).await,
            Command::Delete(a) => cli::delete::run(a, &cli.global).await,
            Command::Prune(a) => cli::prune::run(a, &cli.global).await,
            Command::Factory(a) => cli::factory::run(a, &cli.global).await,
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = work => Ok(r),
            code = interrupted() => Err(code),
        }
    });
    let result = match result {
        Ok(r) => r,
        Err(code) => {
            // Tests inside images run in their own process groups, which the terminal's or
            // CI's signal does not reach: stopped here, before graft ends.
            graft::builder::stop_running();
            eprintln!("graft: interrupted");
            // A blocking read or write of the stopped operation is not waited for.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            return ExitCode::from(code);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if cli::output::stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            cli::output::print_error(&e);
            ExitCode::from(cli::output::exit_code(&e))
        }
    }
}

/// The exit code for the first SIGINT (130) or SIGTERM (143) graft receives; never, when the
/// handlers cannot be installed.
async fn interrupted() -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        },
        _ => std::future::pending().await,
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "warn,graft=debug",
        _ => "warn,graft=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRAFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}
