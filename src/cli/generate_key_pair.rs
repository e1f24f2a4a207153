//! `graft generate-key-pair`: a cosign-compatible ECDSA P-256 key pair.

use std::path::PathBuf;

use clap::Args;

use graft::fsutil::{write_atomic, Durability};
use graft::sign::SigningKey;

use super::sign::{password, PasswordUse};
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft generate-key-pair`.
#[derive(Debug, Args)]
pub struct GenerateKeyPairArgs {
    /// Write PREFIX.key (encrypted private key) and PREFIX.pub.
    #[arg(long, default_value = "cosign", value_name = "PREFIX")]
    pub output_key_prefix: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Run `graft generate-key-pair`. The password comes from `COSIGN_PASSWORD`, else is asked
/// twice on the terminal.
pub async fn run(args: GenerateKeyPairArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let key_path = PathBuf::from(format!("{}.key", args.output_key_prefix));
    let pub_path = PathBuf::from(format!("{}.pub", args.output_key_prefix));
    if !args.force {
        for p in [&key_path, &pub_path] {
            if p.exists() {
                return Err(graft::Error::Unsupported(format!(
                    "{} already exists; pass --force to overwrite it",
                    p.display()
                ))
                .into());
            }
        }
    }
    let pw = password(PasswordUse::New)?;
    let key = SigningKey::generate();
    let pem = key.to_encrypted_pem(pw.as_bytes())?;
    write_file(&key_path, pem.as_bytes(), true)?;
    let public = key.public_key();
    write_file(&pub_path, public.to_pem().as_bytes(), false)?;
    match global.output {
        Output::Json => print_json(&serde_json::json!({
            "private_key": key_path,
            "public_key": pub_path,
            "key_hint": public.hint(),
        }))?,
        Output::Text => {
            eprintln!("Private key written to {}", key_path.display());
            eprintln!("Public key written to {}", pub_path.display());
        }
    }
    Ok(())
}

/// Write `bytes` to `path` (mode 0600 when `private`, else 0644), replacing it atomically.
fn write_file(path: &std::path::Path, bytes: &[u8], private: bool) -> graft::Result<()> {
    let mode = if private { 0o600 } else { 0o644 };
    write_atomic(path, bytes, mode, Durability::Synced)
}
