//! `graft sign --key KEY [--recursive] [-a k=v…] [--format simple|bundle|both] REF…`, and
//! what the other signing commands share (passwords, resolving references to digests).

use std::io::IsTerminal;

use clap::{Args, ValueEnum};

use graft::ops::sign::{attach_all, Attachment};
use graft::reference::ImageRef;
use graft::sign::{attach, Format, SignOptions, SigningKey};

use super::append::parse_kv;
use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Storage form of signatures and attestations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum FormatArg {
    /// cosign's tag scheme: `sha256-<hex>.sig` / `.att` (read by every cosign and by
    /// containers/image).
    #[default]
    Simple,
    /// A sigstore bundle v0.3 stored as an OCI 1.1 referrer (as cosign v3 does).
    Bundle,
    /// Both.
    Both,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Simple => Format::Simple,
            FormatArg::Bundle => Format::Bundle,
            FormatArg::Both => Format::Both,
        }
    }
}

/// Arguments of `graft sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Private key: a cosign key file, or env://VAR holding its PEM. Its password comes from
    /// COSIGN_PASSWORD, else the terminal.
    #[arg(long)]
    pub key: String,
    /// Also sign every manifest listed by an index.
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Annotation KEY=VALUE recorded in the signed payload (repeatable).
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub annotations: Vec<(String, String)>,
    /// Storage form.
    #[arg(long, value_enum, default_value_t = FormatArg::Simple)]
    pub format: FormatArg,
    /// The docker-reference to sign (default: the image's registry/repository; for oci:
    /// layouts, the directory name).
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
    /// Digests signed concurrently.
    #[arg(long, short = 'j', default_value_t = 8)]
    pub jobs: usize,
    /// Images: docker://HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG].
    #[arg(required = true)]
    pub references: Vec<String>,
}

/// What the password is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordUse {
    /// Encrypting a new key (asked twice).
    New,
    /// Decrypting the key named.
    Existing,
}

/// The key password: `COSIGN_PASSWORD` (even empty), else asked on the terminal, else an
/// error. Never printed.
pub fn password(purpose: PasswordUse) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("COSIGN_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(graft::Error::Unsupported(
            "no password: set COSIGN_PASSWORD (it may be empty) or run graft on a terminal".into(),
        )
        .into());
    }
    match purpose {
        PasswordUse::Existing => Ok(rpassword::prompt_password(
            "Enter password for private key: ",
        )?),
        PasswordUse::New => {
            let a = rpassword::prompt_password("Enter password for private key: ")?;
            let b = rpassword::prompt_password("Enter password for private key again: ")?;
            if a != b {
                return Err(graft::Error::Unsupported("the passwords do not match".into()).into());
            }
            Ok(a)
        }
    }
}

/// Load the private key named by `--key`.
pub fn load_signing_key(spec: &str) -> anyhow::Result<SigningKey> {
    let pw = password(PasswordUse::Existing)?;
    Ok(SigningKey::load(spec, pw.as_bytes())?)
}

/// Run `graft sign`.
pub async fn run(args: SignArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let what = Attachment::Signature(SignOptions {
        format: args.format.into(),
        annotations: args.annotations.iter().cloned().collect(),
        identity: args.identity.clone(),
        ..SignOptions::default()
    });
    let references = parse_references(&args.references)?;
    let key = load_signing_key(&args.key)?;
    let ep = global.registry.endpoint(None)?;
    let reports = attach_all(&references, args.recursive, args.jobs, &key, &what, &ep).await?;
    report(&reports, "Signed", global)
}

/// Parse image references given on the command line.
pub fn parse_references(refs: &[String]) -> anyhow::Result<Vec<ImageRef>> {
    Ok(refs
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<ImageRef>, _>>()?)
}

/// Print what was written: one line per digest on stdout, a summary on stderr (text), or the
/// reports (JSON).
pub fn report(
    reports: &[(String, attach::AttachReport)],
    verb: &str,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let added = reports.iter().filter(|(_, r)| r.added()).count();
    let races: u32 = reports.iter().map(|(_, r)| r.lost_races()).sum();
    match global.output {
        Output::Json => print_json(&serde_json::json!({
            "results": reports.iter().map(|(name, r)| serde_json::json!({
                "reference": name,
                "report": r,
            })).collect::<Vec<_>>(),
            "added": added,
            "lost_races": races,
        }))?,
        Output::Text => {
            for (name, r) in reports {
                let state = if r.added() { "" } else { " (already present)" };
                outln!("{name}{state}")?;
            }
            if !global.quiet {
                eprintln!(
                    "{verb} {} digest(s): {added} new, {} already present{}",
                    reports.len(),
                    reports.len() - added,
                    if races > 0 {
                        format!("; {races} concurrent overwrite(s) detected and repaired")
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(())
}

/// `--sign-key`, `--provenance`, `--builder-id`, `--invocation-id`: signing what a command
/// writes (refresh, build, factory check --refresh).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SigningArgs {
    /// Sign the index and every platform manifest written with this cosign key (a path or
    /// env://VAR; its password from COSIGN_PASSWORD).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<String>,
    /// Attach a signed SLSA v1 provenance statement to the index and every platform manifest
    /// (needs --sign-key).
    #[arg(long, requires = "sign_key")]
    pub provenance: bool,
    /// `runDetails.builder.id` (default: from GitHub Actions, GitLab CI or Jenkins variables,
    /// else graft's local builder id).
    #[arg(long, value_name = "URI")]
    pub builder_id: Option<String>,
    /// `runDetails.metadata.invocationId` (default: from the CI variables).
    #[arg(long, value_name = "ID")]
    pub invocation_id: Option<String>,
}

/// The facts of a run that provenance records besides the image.
pub struct RunFacts<'a> {
    /// `{build}`, `{commit}`, `{branch}` as used.
    pub build: &'a graft::library::BuildInfo,
    /// The images' time.
    pub created: graft::timestamp::Timestamp,
    /// The library and its git repository.
    pub revision: &'a graft::ops::plan::Revision,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub epoch: Option<graft::timestamp::Timestamp>,
    /// When the run started.
    pub started: graft::timestamp::Timestamp,
    /// `--repo` as given.
    pub repo_override: Option<&'a str>,
}

impl SigningArgs {
    /// The key of `--sign-key` (its password from COSIGN_PASSWORD), loaded first: a wrong
    /// password must stop the run before anything is pushed.
    pub fn load_key(&self) -> anyhow::Result<Option<SigningKey>> {
        self.sign_key.as_deref().map(load_signing_key).transpose()
    }

    /// Signing with `key` (none without one), with provenance when `--provenance` is given.
    pub fn signing(
        &self,
        key: Option<SigningKey>,
        facts: &RunFacts<'_>,
    ) -> Option<graft::ops::refresh::Signing> {
        Some(graft::ops::refresh::Signing {
            key: key?,
            provenance: self.provenance.then(|| self.provenance_context(facts)),
        })
    }

    /// What the statement records besides the image, gathered here at the edge: only values
    /// that are the same on every machine (a remote URL without credentials, never a local
    /// path).
    pub fn provenance_context(&self, f: &RunFacts<'_>) -> graft::ops::refresh::ProvenanceContext {
        use graft::sign::provenance::public_git_url;
        use graft::sign::{BuildValues, BuilderInfo, LibrarySource};
        let ci = BuilderInfo::from_ci_env(&|k| std::env::var(k).ok());
        let mut builder = ci.unwrap_or_else(BuilderInfo::local);
        if let Some(id) = &self.builder_id {
            builder.id = id.clone();
        }
        if let Some(i) = &self.invocation_id {
            builder.invocation_id = Some(i.clone());
        }
        let library = f.revision.repo.as_ref().and_then(|r| {
            let commit = r.head_commit()?;
            Some(LibrarySource {
                url: r.origin_url().as_deref().and_then(public_git_url),
                git_ref: match &f.build.branch {
                    Some(b) => format!("refs/heads/{b}"),
                    None => commit.clone(),
                },
                path: r.prefix().unwrap_or_else(|| ".".into()),
                commit,
            })
        });
        graft::ops::refresh::ProvenanceContext {
            builder,
            library,
            build: BuildValues {
                build: f.build.build.clone(),
                commit: f.build.commit.clone(),
                branch: f.build.branch.clone(),
            },
            created: f.created,
            source_date_epoch: f.epoch,
            repo_override: f.repo_override.map(str::to_string),
            started_on: f.started,
            // Set by the command when it has written everything.
            finished_on: f.started,
        }
    }
}
