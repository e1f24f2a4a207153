//! Command-line interface: argument types and one module per command.

pub mod append;
pub mod attest;
pub mod build;
pub mod copy;
pub mod delete;
pub mod diff;
pub mod factory;
pub mod generate_key_pair;
pub mod inspect;
pub mod layer;
pub mod ls;
pub mod mirror;
pub mod output;
pub mod plan;
pub mod progress;
pub mod promote;
pub mod provenance;
pub mod prune;
pub mod rebase;
pub mod refresh;
pub mod sign;
pub mod status;
pub mod tag;
pub mod test;
pub mod validate;
pub mod verify;
pub mod verify_attestation;
pub mod verify_provenance;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use graft::store::open::Endpoint;
use graft::store::registry::credentials::{Credential, CredentialConfig};
use graft::store::registry::RegistryConfig;

/// graft: a daemonless OCI image assembler. Copy, inspect, refresh, sign and mirror images
/// between registries and OCI layouts with registry HTTP calls only.
#[derive(Debug, Parser)]
#[command(name = "graft", version, about, max_term_width = 100)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Output format for results on stdout.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Log every registry request to stderr (credentials are never shown). Repeat for more.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress bars.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Registry TLS and credential options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How to reach registries (apply to every command that talks to one).
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// Verify registry TLS certificates. `--tls-verify=false` skips verification and also
    /// allows plain HTTP.
    #[arg(long, global = true, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Directory with extra CA certificates (`*.crt`, e.g. `ca.crt`) to trust.
    #[arg(long, global = true, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Credentials `USER:PASSWORD` for every registry this command talks to.
    #[arg(
        long,
        global = true,
        value_name = "USER:PASSWORD",
        env = "GRAFT_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// Auth file (Docker config.json or containers auth.json format). Default:
    /// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json,
    /// ~/.docker/config.json.
    #[arg(long, global = true, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Retries of a failed request (5xx, 429, dropped connections).
    #[arg(long, global = true, default_value_t = 5)]
    pub retries: u32,
    /// Fail a registry request (and retry it) after this many seconds without a byte; the
    /// answer to an upload's last request may take ten times as long (at least ten minutes).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Upload blobs in chunks of this many bytes (default: one streamed PUT per blob).
    #[arg(long, global = true, value_name = "BYTES")]
    pub chunk_size: Option<u64>,
}

impl RegistryArgs {
    /// The endpoint for one side, with `creds` overriding `--creds`.
    pub fn endpoint(&self, creds: Option<&str>) -> anyhow::Result<Endpoint> {
        let explicit = match creds.or(self.creds.as_deref()) {
            Some(c) => Some(Credential::from_user_pass(c)?),
            None => None,
        };
        Ok(Endpoint::new(RegistryConfig {
            tls_verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
            credentials: CredentialConfig {
                explicit,
                authfile: self.authfile.clone(),
            },
            retries: self.retries,
            timeout: std::time::Duration::from_secs(self.timeout),
            chunk_size: self.chunk_size,
            ..RegistryConfig::default()
        }))
    }
}

/// graft's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy an image (all platforms, or one) between registries, OCI layouts and archives,
    /// keeping every digest.
    Copy(copy::CopyArgs),
    /// Show an image's index, manifest or config.
    Inspect(inspect::InspectArgs),
    /// List the tags of a registry repository or an OCI layout.
    Ls(ls::LsArgs),
    /// Append layers to every platform of an image and write the new image.
    Append(append::AppendArgs),
    /// Mirror the images a sync file selects into a registry, layout or archive.
    Mirror(mirror::MirrorArgs),
    /// Refresh the library's images: append each compat layer to every platform of its
    /// science image, with breadcrumbs, and write every tag.
    Refresh(refresh::RefreshArgs),
    /// Build the library's `build:` images with buildah, bases first; test them inside the
    /// image; write index and tags; refresh those with a compat layer.
    Build(build::BuildCmdArgs),
    /// Run commands inside any image (registry, layout or archive) with buildah, no daemon:
    /// `sh -c` each, on this machine's platform; exit 3 when one fails.
    Test(test::TestArgs),
    /// Show what changed in a `build:` manifest's git source between a commit and its git.commit.
    Diff(diff::DiffArgs),
    /// Check a library (graft.yaml, manifests/, layers/): every problem, with file, line,
    /// column and field.
    Validate(validate::ValidateArgs),
    /// Show what a refresh of the library would produce: final references, science images,
    /// compat layers and their digests, platforms. No registry access unless --resolve.
    Plan(plan::PlanArgs),
    /// Build deterministic layer tarballs.
    Layer(layer::LayerArgs),
    /// Write a cosign-compatible key pair (PREFIX.key encrypted with COSIGN_PASSWORD, PREFIX.pub).
    GenerateKeyPair(generate_key_pair::GenerateKeyPairArgs),
    /// Sign images (cosign `.sig` tag scheme, or a sigstore bundle referrer).
    Sign(sign::SignArgs),
    /// Verify that images carry a valid signature from a key.
    Verify(verify::VerifyArgs),
    /// Attach a signed in-toto attestation (DSSE) to images.
    Attest(attest::AttestArgs),
    /// Verify the attestations attached to an image.
    VerifyAttestation(verify_attestation::VerifyAttestationArgs),
    /// Print the SLSA provenance attached to an image.
    Provenance(provenance::ProvenanceArgs),
    /// Rebuild an image from the library commit its provenance records and confirm every
    /// digest the statement names.
    VerifyProvenance(verify_provenance::VerifyProvenanceArgs),
    /// Add tags to an image inside its repository: one manifest GET, one PUT per tag.
    Tag(tag::TagArgs),
    /// Tag the library's final images (their `{version}` digest) as stable or as a release.
    Promote(promote::PromoteArgs),
    /// Compare the library's final images with the registry: up to date, stale (and why),
    /// missing, and tags no manifest produces any more.
    Status(status::StatusArgs),
    /// Delete manifests from a registry or an OCI layout directory, refusing when another tag
    /// points at one of them.
    Delete(delete::DeleteArgs),
    /// Swap the base layers of every platform of an image for a new base's, without a rebuild.
    Rebase(rebase::RebaseArgs),
    /// Delete the library's branch tags whose git branch is gone, never taking another tag
    /// with them.
    Prune(prune::PruneArgs),
    /// The image factory: images.yaml, state files, base watch, rebuilds, Kargo Warehouses.
    Factory(factory::FactoryArgs),
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    output::outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// The time stamped into configs and history: `SOURCE_DATE_EPOCH` if set, else now. The only
/// clock read in graft, at the edge.
pub fn created_time() -> anyhow::Result<graft::timestamp::Timestamp> {
    if let Some(t) = graft::timestamp::Timestamp::from_env()? {
        return Ok(t);
    }
    Ok(wall_clock())
}

/// The wall clock, in whole seconds: the one place graft reads it.
pub fn wall_clock() -> graft::timestamp::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    graft::timestamp::Timestamp(now)
}

/// `{build}`, `{commit}` and `{branch}` for tags and breadcrumbs.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// Build number for `{build}` (default: `git rev-list --count HEAD` in the library).
    #[arg(long, value_name = "N")]
    pub build: Option<String>,
    /// Commit for `{commit}` (default: `git rev-parse --short HEAD` in the library).
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// The branch the run is on: it decides the tags (graft.yaml's branch policy) and fills
    /// `{branch}`. Default: the library's current git branch; on a detached HEAD, the CI's
    /// variables (GITHUB_HEAD_REF, GITHUB_REF_NAME, CI_MERGE_REQUEST_SOURCE_BRANCH_NAME,
    /// CI_COMMIT_REF_NAME, BRANCH_NAME, GIT_BRANCH).
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
}

impl BuildArgs {
    /// The flags' values; what they leave out comes from git
    /// ([`graft::ops::plan::revision`]).
    pub fn flags(&self) -> graft::library::BuildInfo {
        graft::library::BuildInfo {
            build: self.build.clone(),
            commit: self.commit.clone(),
            branch: self.branch.clone(),
        }
    }

    /// The branch the CI's variables name (for a detached HEAD): the environment is read
    /// here, at the edge.
    pub fn ci_branch(&self) -> Option<String> {
        graft::library::git::ci_branch(&|k: &str| std::env::var(k).ok())
    }
}
