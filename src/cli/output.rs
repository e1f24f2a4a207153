//! Where the binary writes. Data goes to stdout only through [`outln!`] and [`write_raw`], which
//! return errors instead of panicking as `println!` does, so that a reader that stops early
//! (`graft ls REPO | head -1`) ends the command quietly with exit 0 (see [`stdout_closed`]).
//! Errors go to stderr only through [`print_error`], the one renderer of an error chain.

use std::fmt;
use std::io::Write;

use graft::library::InvalidLibrary;

/// Writing to stdout failed. A closed pipe is not reported (see [`stdout_closed`]); anything
/// else (a full disk under `>file`) is an error like any other.
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout failed")]
pub struct StdoutError(#[source] pub std::io::Error);

/// Write one line to stdout; `outln!` calls this.
pub fn write_line(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(StdoutError)
}

/// Write `bytes` to stdout as they are (a raw document), and flush: stdout buffers up to a
/// newline, and a failed flush at exit would go unseen.
pub fn write_raw(bytes: &[u8]) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// `println!` that returns a [`StdoutError`] instead of panicking when stdout fails.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Whether `e` is only that stdout was closed by its reader: the command ends quietly with
/// exit 0, as a Unix filter does (the data nobody reads is not an error).
pub fn stdout_closed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<StdoutError>()
        .is_some_and(|s| s.0.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Print `e` on stderr: `error: …`, the problems of an invalid library one per line, then
/// `  caused by: …` for each cause, then a `hint: …` when the fix is known.
pub fn print_error(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    // Nothing useful can be done when stderr itself is gone.
    let _ = render(&mut err, e);
}

fn render(w: &mut impl Write, e: &anyhow::Error) -> std::io::Result<()> {
    writeln!(w, "error: {e}")?;
    if let Some(graft::Error::Library(inner)) = e.downcast_ref::<graft::Error>().map(|g| g.root()) {
        if let Some(lib) = inner.downcast_ref::<InvalidLibrary>() {
            for p in &lib.problems {
                writeln!(w, "  {}", p.under(&lib.root))?;
            }
        }
    }
    for cause in graft::error::causes(e.as_ref()) {
        writeln!(w, "  caused by: {cause}")?;
    }
    if let Some(h) = hint(e) {
        writeln!(w, "hint: {h}")?;
    }
    Ok(())
}

/// The exit code for a failed command: 2 for bad usage or input, 3 for a test inside an
/// image that failed, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<graft::Error>() {
        Some(g) if g.is_usage() => 2,
        Some(g) if g.is_test_failure() => 3,
        _ => 1,
    }
}

fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let g = e.downcast_ref::<graft::Error>()?;
    match g.root() {
        graft::Error::Http { source, .. }
            if format!("{source:?}").to_ascii_lowercase().contains("certificate") =>
        {
            Some("pass --cert-dir DIR with the registry's ca.crt, or --tls-verify=false to skip verification")
        }
        graft::Error::Auth { .. } => Some("check --creds, --authfile or your docker login"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(e: anyhow::Error) -> String {
        let mut out = Vec::new();
        render(&mut out, &e).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_chain_is_rendered_with_its_causes_and_hint() {
        let e = graft::Error::Auth {
            registry: "r.example".into(),
            reason: "denied".into(),
        }
        .context("pushing r.example/a:1");
        assert_eq!(
            rendered(e.into()),
            "error: pushing r.example/a:1\n  caused by: authentication to r.example failed: denied\nhint: check --creds, --authfile or your docker login\n"
        );
    }

    #[test]
    fn an_invalid_library_lists_its_problems_under_the_root() {
        let problem = graft::library::Problem {
            file: "layers/c/layer.yaml".into(),
            line: 1,
            column: 10,
            path: "remove[0]".into(),
            message: "\"x\" is not an absolute path".into(),
            severity: graft::library::Severity::Error,
            code: "schema",
        };
        let e = graft::Error::Library(Box::new(InvalidLibrary {
            root: "lib".into(),
            problems: vec![problem],
        }));
        assert_eq!(
            rendered(e.into()),
            "error: the library in lib has 1 problem: run graft validate\n  lib/layers/c/layer.yaml:1:10: remove[0]: \"x\" is not an absolute path\n"
        );
    }

    #[test]
    fn only_a_broken_pipe_on_stdout_is_quiet() {
        let closed = StdoutError(std::io::ErrorKind::BrokenPipe.into());
        assert!(stdout_closed(
            &anyhow::Error::new(closed).context("listing")
        ));
        let full = StdoutError(std::io::Error::other("no space left"));
        assert!(!stdout_closed(&full.into()));
        let elsewhere = graft::Error::io("writing", "/x", std::io::ErrorKind::BrokenPipe.into());
        assert!(!stdout_closed(&elsewhere.into()));
    }

    #[test]
    fn internal_failures_exit_1() {
        let e = graft::Error::internal("the task failed", "it panicked");
        assert_eq!(exit_code(&e.into()), 1);
        let e = graft::Error::Unsupported("no".into());
        assert_eq!(exit_code(&e.into()), 2);
    }
}
