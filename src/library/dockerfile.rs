//! The FROM lines of a Dockerfile: which stages it has and what each starts from. graft does
//! not interpret Dockerfiles (a builder does); it reads only what ordering builds needs: each
//! stage's base (an external image, an earlier stage, or `scratch`), with ARG substitution as
//! the builders do it. One parser, for the library's build order and for the factory.
//!
//! What is understood, as in BuildKit's and buildah's front ends:
//! - parser directives at the very top (`# escape=\``, `# syntax=…`; others are comments);
//! - comments, blank lines, line continuations (the escape character at the end of a line,
//!   trailing blanks allowed; comment lines inside a continuation are dropped);
//! - heredocs of `RUN`/`COPY`/`ADD` (`<<EOF`, `<<-EOF`, quoted words), skipped: a `FROM`
//!   inside one is text, not an instruction;
//! - instructions in any case (`from`, `Arg`);
//! - `ARG NAME[=default]…` before the first `FROM` (the only ARGs a FROM line may use); a
//!   build argument overrides the default of an ARG that declares it, as `--build-arg` does;
//! - `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}` (words may
//!   nest) and the escaped `\$`;
//! - `FROM [--platform=P] IMAGE [AS NAME]`: the platform kept as written (it is resolved by the
//!   builder per target platform), stage names case-insensitive, `scratch`, digests.
//!
//! Not looked at: `COPY --from=IMAGE` and `RUN --mount=from=IMAGE` (images used besides the
//! base; the order ignores them), `ONBUILD`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::oci::Platform;

/// The base of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Base {
    /// An image from a registry.
    Image {
        /// The reference as written on the FROM line (variables not expanded).
        written: String,
        /// After ARG substitution: what the builder pulls.
        expanded: String,
    },
    /// An earlier stage of the same Dockerfile.
    Stage {
        /// The stage's index (from 0).
        index: usize,
        /// Its name, lowercase.
        name: String,
    },
    /// `FROM scratch`: no base.
    Scratch,
}

/// One build stage: a FROM line and what follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Position among the stages, from 0.
    pub index: usize,
    /// The line of its FROM instruction (from 1).
    pub line: usize,
    /// `AS NAME`, lowercase (stage names are case-insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `--platform=…` as written (e.g. `$BUILDPLATFORM`): the builder resolves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// What the stage starts from.
    pub base: Base,
    /// Whether the stage has a `RUN` instruction: a RUN executes the stage's own binaries,
    /// which for a foreign platform needs an emulator (QEMU binfmt); COPY-only stages do not.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub has_run: bool,
}

/// A parsed Dockerfile: its stages, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// Every stage; never empty.
    pub stages: Vec<Stage>,
    /// The ARGs declared before the first FROM with the values FROM lines saw (a build
    /// argument, else the default; `None`: declared without a value).
    pub args: BTreeMap<String, Option<String>>,
}

/// Why a Dockerfile could not be read: the line (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line the instruction starts on.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// How deep `${A:-${B:-…}}` may nest: deeper is not a real Dockerfile.
const MAX_NESTING: usize = 16;

/// Most stages one Dockerfile may have.
pub const MAX_STAGES: usize = 1000;

impl Dockerfile {
    /// Parse `text`. `build_args` are the build arguments (`build.args` of a manifest): they
    /// replace the defaults of the ARGs declared before the first FROM.
    /// BuildKit's automatic platform ARGs are not known here: a FROM line or ARG default
    /// using one is an error that says to give the platforms (see [`Dockerfile::parse_for`]).
    pub fn parse(
        text: &str,
        build_args: &BTreeMap<String, String>,
    ) -> Result<Dockerfile, ParseError> {
        Dockerfile::parse_for(text, build_args, None)
    }

    /// One parse per target platform (`platforms`; empty: one parse without a platform), in
    /// the order given: a FROM line may pick its base by `$TARGETARCH` and the like, so each
    /// platform can have other bases. The first error is returned.
    pub fn parse_each(
        text: &str,
        build_args: &BTreeMap<String, String>,
        platforms: &[Platform],
    ) -> Result<Vec<Dockerfile>, ParseError> {
        if platforms.is_empty() {
            return Ok(vec![Dockerfile::parse_for(text, build_args, None)?]);
        }
        platforms
            .iter()
            .map(|p| Dockerfile::parse_for(text, build_args, Some(p)))
            .collect()
    }

    /// [`Dockerfile::parse`] for the target `platform`: BuildKit's automatic ARGs
    /// (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` and the `BUILD…` ones) are
    /// in scope without a declaration, as in BuildKit. The `BUILD…` ones are the target
    /// platform too: graft builds each platform on (or emulating) that platform.
    pub fn parse_for(
        text: &str,
        build_args: &BTreeMap<String, String>,
        platform: Option<&Platform>,
    ) -> Result<Dockerfile, ParseError> {
        // A byte order mark is not part of the first line (editors on Windows write one).
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut escape = '\\';
        let mut stages: Vec<Stage> = Vec::new();
        let mut args: BTreeMap<String, Option<String>> = BTreeMap::new();
        // What FROM lines and ARG defaults see: the automatic ARGs, then the declared ones.
        let mut scope = automatic_args(platform);
        for ins in Instructions::new(text, &mut escape)? {
            let ins = ins?;
            let err = |message: String| ParseError {
                line: ins.line,
                message,
            };
            match ins.keyword.as_str() {
                "arg" if stages.is_empty() => {
                    // Defaults are expanded with the ARGs declared before them, as BuildKit
                    // does; a build argument replaces a default and is taken literally.
                    for (name, default) in arg_words(&ins.rest, ins.escape).map_err(err)? {
                        let value = match (build_args.get(&name), default) {
                            (Some(v), _) => Some(v.clone()),
                            (None, Some(d)) => {
                                Some(shell_words(&d, ins.escape, &scope).map_err(err)?.concat())
                            }
                            // `ARG TARGETARCH` without a value keeps the automatic value.
                            (None, None) => scope.get(&name).cloned().flatten(),
                        };
                        scope.insert(name.clone(), value.clone());
                        args.insert(name, value);
                    }
                }
                "from" => {
                    if stages.len() >= MAX_STAGES {
                        return Err(err(format!("more than {MAX_STAGES} stages")));
                    }
                    let stage = from_line(&ins.rest, ins.escape, &scope, &stages)
                        .map_err(err)?
                        .at(stages.len(), ins.line);
                    if let Some(n) = &stage.name {
                        if let Some(first) = stages.iter().find(|s| s.name.as_ref() == Some(n)) {
                            return Err(err(format!(
                                "stage name {n:?} is used twice (first on line {})",
                                first.line
                            )));
                        }
                    }
                    stages.push(stage);
                }
                "run" if !stages.is_empty() => {
                    if let Some(s) = stages.last_mut() {
                        s.has_run = true;
                    }
                }
                _ if stages.is_empty() => {
                    return Err(err(format!(
                        "{} before the first FROM: only ARG and parser directives may come first",
                        ins.keyword.to_uppercase()
                    )))
                }
                _ => {}
            }
        }
        if stages.is_empty() {
            return Err(ParseError {
                line: text.lines().count().max(1),
                message: "no FROM instruction: a Dockerfile starts a stage with FROM".into(),
            });
        }
        Ok(Dockerfile { stages, args })
    }

    /// The stage `target` names (`build.target`, as `--target`), else the last one.
    pub fn final_stage(&self, target: Option<&str>) -> Option<&Stage> {
        match target {
            Some(t) => {
                let t = t.to_lowercase();
                self.stages.iter().find(|s| s.name.as_deref() == Some(&t))
            }
            None => self.stages.last(),
        }
    }

    /// The stages the build of `target` (else the last stage) runs: every stage up to and
    /// including it (builders may build earlier ones even when unused).
    pub fn built_stages(&self, target: Option<&str>) -> &[Stage] {
        let last = self.final_stage(target).map_or(0, |s| s.index);
        &self.stages[..=last.min(self.stages.len().saturating_sub(1))]
    }

    /// The external images the build of `target` (else the last stage) may pull: the bases
    /// of every stage up to and including it, in order, each once. Stages after the target are
    /// not built; stages before it are counted even when nothing uses them (some builders
    /// build them), so the order never misses a dependency.
    pub fn external_bases(&self, target: Option<&str>) -> Vec<&Stage> {
        let last = self.final_stage(target).map_or(0, |s| s.index);
        let mut out: Vec<&Stage> = Vec::new();
        for s in &self.stages[..=last.min(self.stages.len() - 1)] {
            if let Base::Image { expanded, .. } = &s.base {
                let seen = out
                    .iter()
                    .any(|o| matches!(&o.base, Base::Image { expanded: e, .. } if e == expanded));
                if !seen {
                    out.push(s);
                }
            }
        }
        out
    }
}

/// A stage without its position yet.
struct Parsed {
    name: Option<String>,
    platform: Option<String>,
    base: Base,
}

impl Parsed {
    fn at(self, index: usize, line: usize) -> Stage {
        Stage {
            index,
            line,
            name: self.name,
            platform: self.platform,
            base: self.base,
            has_run: false,
        }
    }
}

/// `FROM [--flag=value…] IMAGE [AS NAME]`.
fn from_line(
    rest: &str,
    escape: char,
    args: &BTreeMap<String, Option<String>>,
    stages: &[Stage],
) -> Result<Parsed, String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let mut platform = None;
    let mut i = 0;
    while let Some(w) = words.get(i).filter(|w| w.starts_with("--")) {
        match w.split_once('=') {
            Some(("--platform", v)) if !v.is_empty() => platform = Some(v.to_string()),
            Some(("--platform", _)) | None
                if *w == "--platform" || w.starts_with("--platform=") =>
            {
                return Err("--platform needs a value: --platform=linux/amd64".into())
            }
            _ => {
                let flag = w.split('=').next().unwrap_or(w);
                return Err(format!(
                    "unknown flag {flag} on FROM (only --platform is allowed)"
                ));
            }
        }
        i += 1;
    }
    let Some(image) = words.get(i) else {
        return Err("FROM names no image: FROM IMAGE [AS NAME]".into());
    };
    let name = match &words[i + 1..] {
        [] => None,
        [as_, name] if as_.eq_ignore_ascii_case("as") => {
            let n = name.to_lowercase();
            if !is_stage_name(&n) {
                return Err(format!(
                    "stage name {name:?} must start with a letter and hold only letters, digits, '.', '_' and '-'"
                ));
            }
            Some(n)
        }
        _ => {
            return Err(format!(
                "unexpected words after the image {image:?}: FROM IMAGE [AS NAME]"
            ))
        }
    };
    let expanded = expand(image, escape, args, 0)?;
    if expanded.is_empty() {
        return Err(format!(
            "the image {image:?} expands to nothing: give its ARG a default or a build argument"
        ));
    }
    if expanded.chars().any(char::is_whitespace) {
        return Err(format!(
            "the image {image:?} expands to {expanded:?}, which holds blanks"
        ));
    }
    let lower = expanded.to_lowercase();
    let base = if lower == "scratch" {
        Base::Scratch
    } else if let Some(s) = stages.iter().find(|s| s.name.as_deref() == Some(&lower)) {
        Base::Stage {
            index: s.index,
            name: lower,
        }
    } else {
        Base::Image {
            written: image.to_string(),
            expanded,
        }
    };
    Ok(Parsed {
        name,
        platform,
        base,
    })
}

fn is_stage_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The `NAME[=default]` words of an ARG line, each default as written (quotes and
/// variables in it are for [`shell_words`], with the ARGs declared before it).
fn arg_words(rest: &str, escape: char) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for word in raw_words(rest, escape)? {
        let (name, default) = match word.split_once('=') {
            Some((n, d)) => (n.to_string(), Some(d.to_string())),
            None => (word, None),
        };
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("ARG {name:?} is not a valid variable name"));
        }
        out.push((name, default));
    }
    if out.is_empty() {
        return Err("ARG names no variable: ARG NAME[=default]".into());
    }
    Ok(out)
}

/// Split on blanks outside quotes; quotes removed, the escape character escapes one character
/// (outside single quotes), and `$…` outside single quotes is expanded from `scope`.
fn shell_words(
    s: &str,
    escape: char,
    scope: &BTreeMap<String, Option<String>>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let all: Vec<char> = s.chars().collect();
    let mut chars = all.iter().copied().enumerate();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '$') => {
                // The reference: `${…}` up to its matching brace, or `$NAME`.
                let end = reference_end(&all, i);
                let text: String = all[i..end].iter().collect();
                cur.push_str(&expand(&text, escape, scope, 0)?);
                in_word = true;
                for _ in i + 1..end {
                    chars.next();
                }
            }
            (Some('"') | None, c) if c == escape => {
                in_word = true;
                match chars.next().map(|(_, n)| n) {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                in_word = true;
                quote = Some(c);
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Split on blanks outside quotes, keeping quotes and escapes as written.
fn raw_words(s: &str, escape: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if quote.is_none() && c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        cur.push(c);
        match quote {
            Some(q) if c == q => quote = None,
            Some('\'') => {}
            _ if c == escape => cur.extend(chars.next()),
            None if c == '"' || c == '\'' => quote = Some(c),
            _ => {}
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote"));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Where the variable reference starting with the `$` at `at` ends (exclusive): after the
/// brace matching `${`, after the name of `$NAME`, else after the lone `$`.
fn reference_end(chars: &[char], at: usize) -> usize {
    match chars.get(at + 1) {
        Some('{') => {
            let mut level = 0;
            for (j, c) in chars.iter().enumerate().skip(at + 1) {
                match c {
                    '{' => level += 1,
                    '}' => {
                        level -= 1;
                        if level == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
            }
            chars.len()
        }
        _ => {
            let name = chars[at + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            at + 1 + name
        }
    }
}

/// Expand `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}` in `word` from
/// `args` (declared ARGs; `None` = declared without a value). An undeclared plain reference
/// is an error: a FROM line sees only ARGs declared before the first FROM.
fn expand(
    word: &str,
    escape: char,
    args: &BTreeMap<String, Option<String>>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_NESTING {
        return Err(format!("variables nested more than {MAX_NESTING} deep"));
    }
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let lookup = |name: &str| -> Result<Option<&Option<String>>, String> {
        if name.is_empty() {
            return Err("empty variable name after '$'".into());
        }
        Ok(args.get(name))
    };
    while i < chars.len() {
        let c = chars[i];
        if c == escape && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('{') => {
                // Find the matching brace (words may nest `${…}`).
                let mut level = 1;
                let mut j = i + 2;
                while j < chars.len() {
                    match chars[j] {
                        '{' => level += 1,
                        '}' => {
                            level -= 1;
                            if level == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(format!("unclosed '${{' in {word:?}"));
                }
                let inner: String = chars[i + 2..j].iter().collect();
                let name_len = inner
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(inner.len());
                let (name, op) = inner.split_at(name_len);
                let value = lookup(name)?;
                let set = value.and_then(|v| v.as_deref());
                let (colon, op) = match op.strip_prefix(':') {
                    Some(rest) => (true, rest),
                    None => (false, op),
                };
                // `:-`/`:+` treat an empty value as unset; `-`/`+` only an unset one.
                let present = match colon {
                    true => set.is_some_and(|v| !v.is_empty()),
                    false => set.is_some(),
                };
                let sub = |w: &str| expand(w, escape, args, depth + 1);
                match (op.chars().next(), colon) {
                    (None, false) => match value {
                        Some(v) => out.push_str(v.as_deref().unwrap_or_default()),
                        None => return Err(undeclared(name)),
                    },
                    (Some('-'), _) => match present {
                        true => out.push_str(set.unwrap_or_default()),
                        false => out.push_str(&sub(&op[1..])?),
                    },
                    (Some('+'), _) => {
                        if present {
                            out.push_str(&sub(&op[1..])?);
                        }
                    }
                    _ => {
                        return Err(format!(
                            "unsupported substitution ${{{inner}}}: use ${{VAR}}, ${{VAR:-default}} or ${{VAR:+word}}"
                        ))
                    }
                }
                i = j + 1;
            }
            Some(n) if n.is_ascii_alphanumeric() || *n == '_' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                match lookup(&name)? {
                    Some(v) => out.push_str(v.as_deref().unwrap_or_default()),
                    None => return Err(undeclared(&name)),
                }
                i = j;
            }
            // A lone `$` is kept, as the builders do.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// BuildKit's automatic platform ARGs for `platform` (none without one).
fn automatic_args(platform: Option<&Platform>) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let Some(p) = platform else {
        return out;
    };
    let (os, arch, variant) = p.normalized();
    let full = match variant.is_empty() {
        true => format!("{os}/{arch}"),
        false => format!("{os}/{arch}/{variant}"),
    };
    for side in ["TARGET", "BUILD"] {
        out.insert(format!("{side}PLATFORM"), Some(full.clone()));
        out.insert(format!("{side}OS"), Some(os.clone()));
        out.insert(format!("{side}ARCH"), Some(arch.clone()));
        out.insert(format!("{side}VARIANT"), Some(variant.clone()));
    }
    out
}

/// The automatic platform ARGs BuildKit defines for every build.
const AUTOMATIC_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

fn undeclared(name: &str) -> String {
    if AUTOMATIC_ARGS.contains(&name) {
        return format!("${name} is set by the builder for each target platform: give the platforms (build.platforms, the manifest's or graft.yaml's platforms) so graft can resolve it");
    }
    format!("${name} is not declared: a FROM line sees only ARGs declared before the first FROM (add ARG {name}=… at the top)")
}

/// One logical instruction: continuations joined, its keyword lowercased.
struct Instruction {
    line: usize,
    keyword: String,
    rest: String,
    escape: char,
}

/// The instructions of a Dockerfile, one logical line each.
struct Instructions<'a> {
    lines: std::iter::Peekable<std::iter::Enumerate<std::str::Lines<'a>>>,
    escape: char,
}

impl<'a> Instructions<'a> {
    /// Reads the parser directives (setting `escape`) and returns the iterator.
    fn new(text: &'a str, escape: &mut char) -> Result<Instructions<'a>, ParseError> {
        let mut lines = text.lines().enumerate().peekable();
        let mut seen: Vec<String> = Vec::new();
        while let Some((n, line)) = lines.peek() {
            let Some((key, value)) = directive(line) else {
                break;
            };
            if seen.contains(&key) {
                return Err(ParseError {
                    line: n + 1,
                    message: format!("parser directive {key:?} is given twice"),
                });
            }
            if key == "escape" {
                *escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError {
                            line: n + 1,
                            message: format!("invalid escape character {value:?}: use \\ or `"),
                        })
                    }
                };
            }
            seen.push(key);
            lines.next();
        }
        Ok(Instructions {
            lines,
            escape: *escape,
        })
    }
}

/// `# key=value` at the top of the file; `None` ends the directives.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((key.to_lowercase(), value.trim().to_string()))
}

/// Whether a physical line ends with the escape character (trailing blanks allowed): the
/// line continues; the text before it.
fn continued(line: &str, escape: char) -> Option<&str> {
    line.trim_end_matches([' ', '\t']).strip_suffix(escape)
}

impl Iterator for Instructions<'_> {
    type Item = Result<Instruction, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Skip blank lines and comments.
        let (n, first) = loop {
            let (n, line) = self.lines.next()?;
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            break (n, t);
        };
        let mut logical = String::new();
        let mut cur = first;
        loop {
            match continued(cur, self.escape) {
                Some(head) => {
                    logical.push_str(head);
                    // The next line that is not a comment or blank continues this one.
                    let next = loop {
                        match self.lines.next() {
                            None => break None,
                            Some((_, l)) => {
                                let t = l.trim_start();
                                if t.starts_with('#') || t.is_empty() {
                                    continue;
                                }
                                break Some(l);
                            }
                        }
                    };
                    match next {
                        Some(l) => cur = l,
                        None => break,
                    }
                }
                None => {
                    logical.push_str(cur);
                    break;
                }
            }
        }
        let (keyword, rest) = match logical.split_once(|c: char| c.is_whitespace()) {
            Some((k, r)) => (k, r.trim()),
            None => (logical.as_str(), ""),
        };
        let keyword = keyword.to_lowercase();
        if !keyword.chars().all(|c| c.is_ascii_alphabetic()) {
            return Some(Err(ParseError {
                line: n + 1,
                message: format!(
                    "{:?} is not an instruction",
                    keyword.chars().take(40).collect::<String>()
                ),
            }));
        }
        // Heredocs: their bodies are text, not instructions.
        if matches!(keyword.as_str(), "run" | "copy" | "add") {
            for (word, strip_tabs) in heredocs(rest, self.escape) {
                let mut closed = false;
                for (_, l) in self.lines.by_ref() {
                    let l = if strip_tabs {
                        l.trim_start_matches('\t')
                    } else {
                        l
                    };
                    if l == word {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Some(Err(ParseError {
                        line: n + 1,
                        message: format!("heredoc <<{word} is never closed"),
                    }));
                }
            }
        }
        Some(Ok(Instruction {
            line: n + 1,
            keyword,
            rest: rest.to_string(),
            escape: self.escape,
        }))
    }
}

/// The heredoc words an instruction opens (`<<EOF`, `<<-EOF`, `<<"EOF"`), in order, with
/// whether leading tabs are stripped from their lines. As in BuildKit, only a shell word that
/// starts with `<<` outside quotes opens one: `echo "a<<b"` and `cout<<endl` do not.
fn heredocs(rest: &str, escape: char) -> Vec<(String, bool)> {
    let chars: Vec<char> = rest.chars().collect();
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut word_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else if q == '"' && c == escape {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            word_start = true;
            i += 1;
            continue;
        }
        if word_start && c == '<' && chars.get(i + 1) == Some(&'<') {
            let mut j = i + 2;
            let strip = chars.get(j) == Some(&'-');
            if strip {
                j += 1;
            }
            if matches!(chars.get(j), Some('"' | '\'')) {
                j += 1;
            }
            let word: String = chars[j.min(chars.len())..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            if word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                out.push((word, strip));
            }
            // The rest of this word (a closing quote, `>file`) is not looked at.
            while j < chars.len() && !chars[j].is_whitespace() {
                j += 1;
            }
            i = j;
            continue;
        }
        word_start = false;
        if c == '"' || c == '\'' {
            quote = Some(c);
        } else if c == escape {
            i += 1;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Dockerfile {
        Dockerfile::parse(text, &BTreeMap::new()).unwrap()
    }

    fn parse_with(text: &str, args: &[(&str, &str)]) -> Result<Dockerfile, ParseError> {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Dockerfile::parse(text, &args)
    }

    fn image(s: &Stage) -> (&str, &str) {
        match &s.base {
            Base::Image { written, expanded } => (written, expanded),
            other => panic!("not an image: {other:?}"),
        }
    }

    fn err(text: &str) -> ParseError {
        Dockerfile::parse(text, &BTreeMap::new()).unwrap_err()
    }

    #[test]
    fn stages_with_run() {
        let d = parse(
            "FROM --platform=$BUILDPLATFORM a AS b\nrun make\nFROM scratch\nCOPY --from=b /x /x\n",
        );
        assert!(d.stages[0].has_run);
        assert!(!d.stages[1].has_run);
        assert_eq!(d.built_stages(Some("b")).len(), 1);
        assert_eq!(d.built_stages(None).len(), 2);
        // RUN inside a heredoc body is text.
        let d = parse("FROM a\nCOPY <<EOF /f\nRUN x\nEOF\n");
        assert!(!d.stages[0].has_run);
    }

    #[test]
    fn one_stage() {
        let d = parse("FROM debian:12\nRUN true\n");
        assert_eq!(d.stages.len(), 1);
        assert_eq!(image(&d.stages[0]), ("debian:12", "debian:12"));
        assert_eq!(d.stages[0].line, 1);
        assert_eq!(d.final_stage(None).unwrap().index, 0);
    }

    #[test]
    fn args_build_args_first_then_defaults() {
        let text = "ARG REG=docker.io\nARG BASE=base TAG\nFROM ${REG}/$BASE:${TAG:-1.0}\n";
        let d = parse(text);
        assert_eq!(
            image(&d.stages[0]),
            ("${REG}/$BASE:${TAG:-1.0}", "docker.io/base:1.0")
        );
        let d = parse_with(text, &[("TAG", "2.0"), ("BASE", "child")]).unwrap();
        assert_eq!(image(&d.stages[0]).1, "docker.io/child:2.0");
        assert_eq!(d.args["TAG"].as_deref(), Some("2.0"));
        // A build argument no ARG declares is not seen by FROM (as in docker build).
        let e = parse_with("FROM $X\n", &[("X", "a")]).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("$X is not declared"), "{e}");
        // Declared without a value and no build argument: nothing.
        let e = err("ARG X\nFROM $X\n");
        assert!(e.message.contains("expands to nothing"), "{e}");
        // :+ and the colon-less forms.
        let d = parse("ARG A=\nARG B=b\nFROM x${A:+-a}${B:+-b}${A-unset}${C:-c}\n");
        assert_eq!(image(&d.stages[0]).1, "x-bc");
        // Nested defaults.
        let d = parse("ARG R=r\nFROM ${U:-${R}/img}:1\n");
        assert_eq!(image(&d.stages[0]).1, "r/img:1");
        // Escaped $.
        assert_eq!(image(&parse("ARG b=x\nFROM a\\$b$b\n").stages[0]).1, "a$bx");
        // ARGs after the first FROM do not reach later FROM lines.
        let e = err("FROM a\nARG X=1\nFROM $X\n");
        assert_eq!(e.line, 3);
        // Quoted defaults.
        let d = parse("ARG A=\"reg.example/x\" B='y'\nFROM $A:$B\n");
        assert_eq!(image(&d.stages[0]).1, "reg.example/x:y");
    }

    #[test]
    fn stages_scratch_digests_platform() {
        let text = "\
# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.22 AS Build
RUN go build
from scratch as out
FROM build AS test
FROM registry.example.org/sci/base@sha256:0123456789012345678901234567890123456789012345678901234567890123
COPY --from=build /x /x
";
        let d = parse(text);
        assert_eq!(d.stages.len(), 4);
        assert_eq!(d.stages[0].platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(d.stages[0].name.as_deref(), Some("build"));
        assert_eq!(d.stages[0].line, 2);
        assert_eq!(d.stages[1].base, Base::Scratch);
        assert_eq!(
            d.stages[2].base,
            Base::Stage {
                index: 0,
                name: "build".into()
            }
        );
        assert!(image(&d.stages[3])
            .1
            .ends_with("@sha256:0123456789012345678901234567890123456789012345678901234567890123"));
        let bases: Vec<&str> = d.external_bases(None).iter().map(|s| image(s).1).collect();
        assert_eq!(bases.len(), 2);
        assert_eq!(bases[0], "golang:1.22");
        // --target stops at that stage.
        let bases = d.external_bases(Some("OUT"));
        assert_eq!(bases.len(), 1);
        assert_eq!(d.final_stage(Some("test")).unwrap().index, 2);
        assert!(d.final_stage(Some("nope")).is_none());
        // A FROM naming a later stage is an image.
        let d = parse("FROM later\nFROM x AS later\n");
        assert_eq!(image(&d.stages[0]).1, "later");
    }

    #[test]
    fn continuations_comments_and_directives() {
        let text = "\
# escape=`

# a comment
ARG `
  BASE=debian
FROM `
# comment inside
   ${BASE}:12 `
   AS one
RUN echo \\
";
        let d = parse(text);
        assert_eq!(image(&d.stages[0]).1, "debian:12");
        assert_eq!(d.stages[0].name.as_deref(), Some("one"));
        assert_eq!(d.stages[0].line, 6);
        // A byte order mark and CRLF line ends are read as the builders read them.
        let d = parse("\u{feff}# escape=`\r\nFROM a `\r\n  AS b\r\n");
        assert_eq!(d.stages[0].name.as_deref(), Some("b"));
        // Trailing blanks after the backslash still continue the line.
        let d = parse("FROM \\  \n  alpine:3\n");
        assert_eq!(image(&d.stages[0]).1, "alpine:3");
        // A directive after a comment is a comment.
        let d = parse("# hello\n# escape=`\nFROM a \\\n AS b\n");
        assert_eq!(d.stages[0].name.as_deref(), Some("b"));
        assert!(err("# escape=x\nFROM a\n")
            .message
            .contains("invalid escape"));
    }

    #[test]
    fn heredocs_are_not_instructions() {
        let text =
            "FROM a\nRUN <<EOF\nFROM evil\nEOF\nCOPY <<-\"X\" /f\n\tFROM evil2\n\tX\nFROM b\n";
        let d = parse(text);
        assert_eq!(d.stages.len(), 2);
        assert_eq!(image(&d.stages[1]).1, "b");
        assert_eq!(d.stages[1].line, 8);
        assert_eq!(
            err("FROM a\nRUN <<EOF\nx\n").message,
            "heredoc <<EOF is never closed"
        );
    }

    #[test]
    fn arg_defaults_see_earlier_args() {
        let text = "ARG V=3.12\nARG BASE=images.canfar.net/library/python:${V}\nFROM ${BASE}\n";
        let d = parse(text);
        assert_eq!(
            image(&d.stages[0]).1,
            "images.canfar.net/library/python:3.12"
        );
        assert_eq!(
            d.args["BASE"].as_deref(),
            Some("images.canfar.net/library/python:3.12")
        );
        // A build argument overrides by name; the later default sees it.
        let d = parse_with(text, &[("V", "3.13")]).unwrap();
        assert_eq!(
            image(&d.stages[0]).1,
            "images.canfar.net/library/python:3.13"
        );
        // A build argument's value is literal.
        let d = parse_with(text, &[("BASE", "r/x:${V}")]).unwrap();
        assert_eq!(d.args["BASE"].as_deref(), Some("r/x:${V}"));
        // Single quotes, the escape and defaults in one line, left to right.
        let d = parse("ARG A=a B='$A' C=\\$A D=\"${A}d\" E=$D-e\nFROM x\n");
        assert_eq!(d.args["B"].as_deref(), Some("$A"));
        assert_eq!(d.args["C"].as_deref(), Some("$A"));
        assert_eq!(d.args["D"].as_deref(), Some("ad"));
        assert_eq!(d.args["E"].as_deref(), Some("ad-e"));
        // An undeclared name in a default is named at the ARG's line.
        let e = err("ARG A=1\nARG B=${NOPE}\nFROM $B\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("$NOPE is not declared"), "{e}");
    }

    #[test]
    fn automatic_platform_args() {
        let text = "FROM debian:12 AS build-amd64\nFROM debian:13 AS build-arm64\nFROM build-${TARGETARCH}\n";
        let p = |s: &str| s.parse::<Platform>().unwrap();
        let d = Dockerfile::parse_for(text, &BTreeMap::new(), Some(&p("linux/arm64"))).unwrap();
        assert_eq!(
            d.stages[2].base,
            Base::Stage {
                index: 1,
                name: "build-arm64".into()
            }
        );
        let ds = Dockerfile::parse_each(
            "ARG REG=r\nARG TAG=$TARGETOS-${TARGETARCH}${TARGETVARIANT:+-}$TARGETVARIANT\nFROM $REG/x:$TAG\nFROM y-$BUILDPLATFORM\n",
            &BTreeMap::new(),
            &[p("linux/amd64"), p("linux/arm/v7"), p("linux/arm64/v8")],
        )
        .unwrap();
        let got: Vec<(&str, &str)> = ds
            .iter()
            .map(|d| (image(&d.stages[0]).1, image(&d.stages[1]).1))
            .collect();
        assert_eq!(
            got,
            [
                ("r/x:linux-amd64", "y-linux/amd64"),
                ("r/x:linux-arm-v7", "y-linux/arm/v7"),
                ("r/x:linux-arm64", "y-linux/arm64"),
            ]
        );
        // Declared without a value, the automatic value stays; a default replaces it.
        let d = Dockerfile::parse_for(
            "ARG TARGETARCH\nARG TARGETOS=plan9\nFROM $TARGETOS-$TARGETARCH\n",
            &BTreeMap::new(),
            Some(&p("linux/amd64")),
        )
        .unwrap();
        assert_eq!(image(&d.stages[0]).1, "plan9-amd64");
        // Without a platform, the error says what to give.
        let e = err(text);
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("$TARGETARCH is set by the builder"),
            "{e}"
        );
        assert!(e.message.contains("build.platforms"), "{e}");
        // No platforms at all: one parse, as `parse`.
        let ds = Dockerfile::parse_each("FROM a\n", &BTreeMap::new(), &[]).unwrap();
        assert_eq!(ds.len(), 1);
    }

    #[test]
    fn shift_operators_are_not_heredocs() {
        let d = parse(concat!(
            "FROM a\n",
            "RUN echo \"std::cout<<endl;\" > a.cpp\n",
            "RUN echo 'x <<EOF' && echo $((1<<4)) && cat a<<b\n",
            "COPY --chmod=644 <<EOF /f\nFROM in-heredoc\nEOF\n",
            "RUN cat <<-'X' >/g && echo \"<<Y\"\n\tFROM also-in-heredoc\n\tX\n",
            "FROM b\n",
        ));
        let bases: Vec<&str> = d.stages.iter().map(|s| image(s).1).collect();
        assert_eq!(bases, ["a", "b"]);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("", 1, "no FROM"),
            ("RUN x\nFROM a\n", 1, "RUN before the first FROM"),
            ("FROM\n", 1, "names no image"),
            ("\n\nFROM a AS\n", 3, "unexpected words"),
            ("FROM a AS b c\n", 1, "unexpected words"),
            ("FROM --pull a\n", 1, "unknown flag --pull"),
            ("FROM --platform a\n", 1, "--platform needs a value"),
            (
                "FROM a AS x\nFROM b AS X\n",
                2,
                "used twice (first on line 1)",
            ),
            ("FROM a AS 1x\n", 1, "stage name"),
            ("FROM ${A\n", 1, "unclosed"),
            ("ARG A=1\nFROM ${A/x/y}\n", 2, "unsupported substitution"),
            ("ARG =x\nFROM a\n", 1, "not a valid variable name"),
            ("ARG A=\"x\nFROM a\n", 1, "unterminated"),
            ("FROM a\n!!x\n", 2, "not an instruction"),
            ("# escape=\\\n# escape=`\nFROM a\n", 2, "given twice"),
            ("ARG A=\"x y\"\nFROM $A\n", 2, "blanks"),
        ];
        for (text, line, msg) in cases {
            let e = err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
        }
        let deep = format!("FROM {}x{}\n", "${A:-".repeat(40), "}".repeat(40));
        assert!(err(&deep).message.contains("nested"));
    }

    #[test]
    fn never_panics() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let pieces = prop_oneof![
            Just("FROM ".to_string()),
            Just("from --platform=$X ".to_string()),
            Just("ARG A=".to_string()),
            Just(" AS s".to_string()),
            Just("${A:-".to_string()),
            Just("}".to_string()),
            Just("$".to_string()),
            Just("\\\n".to_string()),
            Just("`\n".to_string()),
            Just("\n".to_string()),
            Just("# escape=`\n".to_string()),
            Just("<<EOF\n".to_string()),
            Just("EOF\n".to_string()),
            Just("RUN ".to_string()),
            Just("\"".to_string()),
            Just("scratch".to_string()),
            "[a-z0-9:/@.é\t ]{0,8}".prop_map(|s| s),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(pieces, 0..40), |parts| {
                let text = parts.concat();
                if let Ok(d) = Dockerfile::parse(&text, &BTreeMap::new()) {
                    prop_assert!(!d.stages.is_empty());
                    let _ = d.external_bases(Some("s"));
                    let _ = d.external_bases(None);
                }
                Ok(())
            })
            .unwrap();
        runner
            .run(&any::<String>(), |text| {
                let _ = Dockerfile::parse(&text, &BTreeMap::new());
                Ok(())
            })
            .unwrap();
    }
}
