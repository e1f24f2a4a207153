//! Problems found in a library: each names a file, a line and column, a field path and what
//! is wrong, e.g. `manifests/astro.yaml:7:10: science.image: ...`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::yaml::Pos;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The library cannot be used as it is: `graft validate` fails.
    Error,
    /// Worth a look (e.g. a layer nobody uses); `graft validate` still succeeds.
    Warning,
}

/// One problem in a library file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Problem {
    /// The file, relative to the library root (`manifests/astro.yaml`).
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// The field path (`science.image`, `tags[1]`, `(root)` for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
    /// A stable code for machines: `syntax`, `schema`, `reference`, `missing-layer`,
    /// `include-cycle`, `duplicate-reference`, `unused-layer`, …
    pub code: &'static str,
}

impl Problem {
    /// An error.
    pub fn error(
        file: &str,
        pos: Pos,
        path: impl Into<String>,
        message: impl Into<String>,
        code: &'static str,
    ) -> Problem {
        Problem {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            path: path.into(),
            message: message.into(),
            severity: Severity::Error,
            code,
        }
    }

    /// A warning.
    pub fn warning(
        file: &str,
        pos: Pos,
        path: impl Into<String>,
        message: impl Into<String>,
        code: &'static str,
    ) -> Problem {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, pos, path, message, code)
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The same problem with the file shown under `root` (as the user named the library
    /// directory), for messages printed from elsewhere than the library root.
    pub fn under(&self, root: &Path) -> Problem {
        if root.as_os_str().is_empty() || root == Path::new(".") {
            return self.clone();
        }
        Problem {
            file: root.join(&self.file).display().to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: ",
            self.file, self.line, self.column, self.path
        )?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A library that cannot be used: its error problems. Carried inside `Error::Library`; the
/// binary prints each problem under the root after the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLibrary {
    /// The library directory, as the user named it.
    pub root: PathBuf,
    /// The problems (errors only).
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the library in {} has {n} problem{}: run graft validate",
            self.root.display(),
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for InvalidLibrary {}
