//! `graft validate [--library DIR]`: every problem of a library, one per line.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use graft::library;

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The library directory (with graft.yaml, manifests/ and layers/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub library: PathBuf,
}

/// Run `graft validate`: problems on stdout as `FILE:LINE:COLUMN: FIELD: message`, exit 1
/// if any is an error.
pub async fn run(args: ValidateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let v = library::validate(&args.library)?;
    let problems: Vec<library::Problem> =
        v.problems.iter().map(|p| p.under(&args.library)).collect();
    let errors = problems.iter().filter(|p| p.is_error()).count();
    let warnings = problems.len() - errors;
    match global.output {
        Output::Json => print_json(&json!({
            "library": args.library.display().to_string(),
            "ok": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "problems": problems,
        }))?,
        Output::Text => {
            for p in &problems {
                outln!("{p}")?;
            }
            if errors == 0 {
                let lib = &v.library;
                outln!(
                    "OK: {} manifest{}, {} layer{}{}",
                    lib.manifests().len(),
                    plural(lib.manifests().len()),
                    lib.layers().len(),
                    plural(lib.layers().len()),
                    if warnings > 0 {
                        format!(", {warnings} warning{}", plural(warnings))
                    } else {
                        String::new()
                    }
                )?;
            }
        }
    }
    if errors > 0 {
        anyhow::bail!(
            "{errors} error{} in the library {}",
            plural(errors),
            args.library.display()
        );
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
