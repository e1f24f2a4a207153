//! The library's JSON Schemas (draft 2020-12, shipped in `schema/` for editors too) and the
//! translation of schema errors into [`Problem`]s with a line, a column and a field path.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use serde_json::Value;

use super::problem::Problem;
use super::yaml::{display_path, Node, Seg};

/// `schema/graft.schema.json`.
pub const GRAFT_SCHEMA: &str = include_str!("../../schema/graft.schema.json");
/// `schema/manifest.schema.json`.
pub const MANIFEST_SCHEMA: &str = include_str!("../../schema/manifest.schema.json");
/// `schema/layer.schema.json`.
pub const LAYER_SCHEMA: &str = include_str!("../../schema/layer.schema.json");

/// Which kind of library file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `graft.yaml`.
    Settings,
    /// `manifests/*.yaml`.
    Manifest,
    /// `layers/*/layer.yaml`.
    Layer,
}

struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

fn compiled(kind: FileKind) -> &'static Compiled {
    static CELLS: [OnceLock<Compiled>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (i, text) = match kind {
        FileKind::Settings => (0, GRAFT_SCHEMA),
        FileKind::Manifest => (1, MANIFEST_SCHEMA),
        FileKind::Layer => (2, LAYER_SCHEMA),
    };
    CELLS[i].get_or_init(|| {
        // The schemas are part of graft's source and tested: failing here is a build bug.
        let schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("embedded schema compiles");
        Compiled { schema, validator }
    })
}

/// The problems of `node` (the parsed file `rel`) against its schema, each at the line and
/// column of the offending node.
pub fn check(kind: FileKind, rel: &str, node: &Node) -> Vec<Problem> {
    let c = compiled(kind);
    let instance = node.to_json();
    let mut out = Vec::new();
    for e in c.validator.iter_errors(&instance) {
        if out.len() >= MAX_PROBLEMS {
            break;
        }
        let path: Vec<Seg> = e
            .instance_path()
            .iter()
            .map(|s| match s {
                LocationSegment::Property(p) => Seg::Key(p.to_string()),
                LocationSegment::Index(i) => Seg::Index(i),
            })
            .collect();
        let keyword_schema = keyword_parent(&c.schema, &e);
        let instance_value = e.instance().as_ref();
        let mut problem = |path: Vec<Seg>, pos, message: String| {
            out.push(Problem::error(
                rel,
                pos,
                display_path(&path),
                message,
                "schema",
            ));
        };
        match e.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default().to_string();
                let pos = node.locate(&path);
                let mut p = path.clone();
                p.push(Seg::Key(name));
                problem(p, pos, "required field is missing".into());
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known: Vec<String> = keyword_schema
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                for key in unexpected.iter().take(MAX_PROBLEMS) {
                    let pos = node.locate_key(&path, key);
                    let mut p = path.clone();
                    p.push(Seg::Key(key.clone()));
                    problem(p, pos, unknown_field(key, &known));
                }
            }
            ValidationErrorKind::PropertyNames { error } => {
                let key = error.instance().as_str().unwrap_or_default().to_string();
                let pos = node.locate_key(&path, &key);
                let hint = keyword_schema
                    .and_then(|s| {
                        s.get("x-message")
                            .or_else(|| s.get("propertyNames").and_then(|p| p.get("x-message")))
                    })
                    .and_then(Value::as_str)
                    .unwrap_or("is not allowed here");
                let mut p = path.clone();
                p.push(Seg::Key(key.clone()));
                problem(p, pos, format!("key {} {hint}", short(&Value::String(key))));
            }
            kind => {
                let pos = node.locate(&path);
                // The validator's own message may quote the whole value: cut it short.
                let message = message(kind, instance_value, keyword_schema)
                    .unwrap_or_else(|| cut(&e.to_string(), 200));
                problem(path, pos, message);
            }
        }
    }
    if out.len() >= MAX_PROBLEMS {
        out.truncate(MAX_PROBLEMS);
        out.push(Problem::error(
            rel,
            super::yaml::Pos::START,
            "(root)",
            format!(
                "more than {MAX_PROBLEMS} problems against the schema; the rest are not listed"
            ),
            "schema",
        ));
    }
    out
}

/// Most schema problems listed for one file: a file with 100,000 unknown fields gets a
/// readable answer, quickly (each problem looks up its node).
const MAX_PROBLEMS: usize = 100;

/// `text`, at most `max` characters (an ellipsis marks a cut).
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

/// The schema object holding the failed keyword (where `x-message` and `properties` live).
fn keyword_parent<'s>(schema: &'s Value, e: &jsonschema::ValidationError<'_>) -> Option<&'s Value> {
    let uri = e.absolute_keyword_location();
    let pointer = match uri {
        Some(u) => u
            .fragment()
            .map(|f| f.as_str().to_string())
            .unwrap_or_default(),
        None => e.schema_path().as_str().to_string(),
    };
    let pointer = pointer.replace("%24", "$");
    let parent = match pointer.rfind('/') {
        Some(i) => &pointer[..i],
        None => "",
    };
    schema.pointer(parent)
}

fn message(kind: &ValidationErrorKind, instance: &Value, schema: Option<&Value>) -> Option<String> {
    let hint = || {
        schema
            .and_then(|s| s.get("x-message"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some(match kind {
        ValidationErrorKind::Type { kind } => {
            let expected: Vec<&str> = match kind {
                TypeKind::Single(t) => vec![type_name(t.as_str())],
                TypeKind::Multiple(set) => set.iter().map(|t| type_name(t.as_str())).collect(),
            };
            format!(
                "expected {}, found {}",
                expected.join(" or "),
                describe(instance)
            )
        }
        ValidationErrorKind::Pattern { pattern } => match hint() {
            Some(h) => format!("{} {h}", short(instance)),
            None => format!("{} does not match {pattern}", short(instance)),
        },
        ValidationErrorKind::Format { format } if format == "email" => {
            format!("{} is not an e-mail address", short(instance))
        }
        ValidationErrorKind::MinLength { limit: 1 } => "must not be empty".into(),
        ValidationErrorKind::MinItems { limit: 1 } => "must not be empty".into(),
        ValidationErrorKind::MinItems { limit } => format!("needs at least {limit} items"),
        ValidationErrorKind::UniqueItems => "lists the same item more than once".into(),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::Enum { options } => format!(
            "{} is not one of {}",
            short(instance),
            options
                .as_array()
                .map(|a| a.iter().map(short).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ),
        _ => return None,
    })
}

fn type_name(t: &str) -> &'static str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        _ => "null",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => format!("the string {}", short(v)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

fn unknown_field(key: &str, known: &[String]) -> String {
    let close = known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    match close {
        Some((_, k)) => format!("unknown field; did you mean {k:?}?"),
        None if known.is_empty() => "unknown field".into(),
        None => format!("unknown field; expected one of: {}", known.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(kind: FileKind, yaml: &str) -> Vec<String> {
        let node = Node::parse(yaml).unwrap();
        let mut p: Vec<String> = check(kind, "f.yaml", &node)
            .iter()
            .map(|p| p.to_string())
            .collect();
        p.sort();
        p
    }

    #[test]
    fn schemas_compile_and_accept_minimal_files() {
        assert!(problems(FileKind::Settings, "repo: oci:out\n").is_empty());
        assert!(problems(
            FileKind::Manifest,
            "name: a\nversion: 1.0\nscience: {image: 'oci:x:1'}\ncompat: c\n"
        )
        .is_empty());
        assert!(problems(FileKind::Layer, "{}\n").is_empty());
    }

    #[test]
    fn messages_point_at_nodes() {
        assert_eq!(
            problems(FileKind::Manifest, "name: A\nversion: [1]\nsciense: {}\ncompat: c\n"),
            vec![
                "f.yaml:1:1: science: required field is missing",
                "f.yaml:1:7: name: \"A\" must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
                "f.yaml:2:10: version: expected a number or a string, found a list",
                "f.yaml:3:1: sciense: unknown field; did you mean \"science\"?",
            ]
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("sciense", "science"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
