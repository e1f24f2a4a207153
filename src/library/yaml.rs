//! A YAML tree that remembers where every node is, so problems can name a line and column.
//!
//! Parsed with `yaml-rust2`'s event parser (YAML 1.2 core schema for plain scalars). Scalars
//! keep their source text: a field that wants a string (a version, a tag, an octal mode) takes
//! the text as written, so `version: 1.10` stays `"1.10"` and `0755` stays octal.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Pos {
    /// The start of a file.
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn from_marker(m: Marker) -> Pos {
        Pos {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it holds.
    pub kind: Kind,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar, as written.
    Scalar {
        /// The text (after unquoting and folding).
        text: String,
        /// Whether it was a plain (unquoted, non-block) scalar: only those resolve to
        /// null, booleans and numbers.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order. Keys are scalars' text (other keys are rejected).
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key's text.
    pub text: String,
    /// Where the key starts.
    pub pos: Pos,
}

/// A YAML syntax problem (or a construct graft does not accept, like a duplicate key).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Render a field path the way problems show it: `science.image`, `tags[1]`,
/// `labels["org.opencontainers.image.title"]`; the document itself is `(root)`.
pub fn display_path(path: &[Seg]) -> String {
    if path.is_empty() {
        return "(root)".to_string();
    }
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                let simple = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if simple {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                } else {
                    out.push_str(&format!("[{}]", serde_json::Value::String(k.clone())));
                }
            }
        }
    }
    out
}

impl Node {
    /// Parse one YAML document. An empty file is an empty mapping's worth of nothing: `Null`.
    /// Duplicate keys, non-scalar keys and extra documents are errors; all of them are
    /// returned (a scanner error stops parsing, so it comes alone).
    pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut builder, true) {
            return Err(vec![SyntaxError {
                pos: Pos::from_marker(*e.marker()),
                message: e.info().to_string(),
            }]);
        }
        let mut errors = builder.errors;
        if builder.docs.len() > 1 {
            errors.push(SyntaxError {
                pos: builder.docs[1].pos,
                message: "more than one YAML document; graft reads exactly one per file".into(),
            });
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.pos);
            return Err(errors);
        }
        Ok(builder.docs.into_iter().next().unwrap_or(Node {
            pos: Pos::START,
            kind: Kind::Scalar {
                text: String::new(),
                plain: true,
            },
        }))
    }

    /// Whether this is a null (`~`, `null`, empty plain scalar).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A scalar's text, whatever it resolves to (`None` for null and collections).
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// The value under `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries().find(|(k, _)| k.text == key).map(|(_, v)| v)
    }

    /// The key node of `key`, if this is a mapping that has it.
    pub fn key(&self, key: &str) -> Option<&Key> {
        self.entries().find(|(k, _)| k.text == key).map(|(k, _)| k)
    }

    /// Mapping entries in source order (empty for anything else).
    pub fn entries(&self) -> impl Iterator<Item = (&Key, &Node)> {
        let slice: &[(Key, Node)] = match &self.kind {
            Kind::Map(m) => m,
            _ => &[],
        };
        slice.iter().map(|(k, v)| (k, v))
    }

    /// Sequence items (empty for anything else).
    pub fn items(&self) -> &[Node] {
        match &self.kind {
            Kind::Seq(s) => s,
            _ => &[],
        }
    }

    /// The node at `path`, if it exists.
    pub fn at(&self, path: &[Seg]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match seg {
                Seg::Key(k) => node.get(k)?,
                Seg::Index(i) => node.items().get(*i)?,
            };
        }
        Some(node)
    }

    /// Where the node at `path` is, or the deepest existing ancestor's position.
    pub fn locate(&self, path: &[Seg]) -> Pos {
        let mut node = self;
        for seg in path {
            match seg {
                Seg::Key(k) => match node.get(k) {
                    Some(n) => node = n,
                    None => return node.pos,
                },
                Seg::Index(i) => match node.items().get(*i) {
                    Some(n) => node = n,
                    None => return node.pos,
                },
            }
        }
        node.pos
    }

    /// The position of the key `key` in the mapping at `path` (for unknown-field problems).
    pub fn locate_key(&self, path: &[Seg], key: &str) -> Pos {
        match self.at(path).and_then(|n| n.key(key)) {
            Some(k) => k.pos,
            None => self.locate(path),
        }
    }

    /// The JSON value the schema sees: plain scalars resolved with the YAML 1.2 core schema
    /// (null, booleans, integers, floats), everything else a string.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar { text, plain } => {
                if !plain {
                    return Value::String(text.clone());
                }
                match yaml_rust2::Yaml::from_str(text) {
                    yaml_rust2::Yaml::Null => Value::Null,
                    yaml_rust2::Yaml::Boolean(b) => Value::Bool(b),
                    yaml_rust2::Yaml::Integer(i) => Value::from(i),
                    yaml_rust2::Yaml::Real(r) => parse_float(&r)
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(r)),
                    _ => Value::String(text.clone()),
                }
            }
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => None,
        "-.inf" | "-.Inf" | "-.INF" => None,
        ".nan" | ".NaN" | ".NAN" => None,
        _ => s.parse().ok(),
    }
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Key, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    errors: Vec<SyntaxError>,
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    let text = match &key.kind {
                        Kind::Scalar { text, .. } => text.clone(),
                        _ => {
                            self.errors.push(SyntaxError {
                                pos: key.pos,
                                message: "mapping keys must be plain text, not lists or mappings"
                                    .into(),
                            });
                            String::new()
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.text == text) {
                        self.errors.push(SyntaxError {
                            pos: key.pos,
                            message: format!(
                                "duplicate key {:?} (first defined at line {})",
                                text, first.pos.line
                            ),
                        });
                        return;
                    }
                    entries.push((Key { text, pos: key.pos }, node));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                // An explicit `!!str` makes a plain scalar a string.
                let is_str_tag = tag
                    .as_ref()
                    .is_some_and(|t| t.suffix == "str" || t.suffix.ends_with(":str"));
                let plain = matches!(style, TScalarStyle::Plain) && !is_str_tag;
                self.push(
                    Node {
                        pos,
                        kind: Kind::Scalar { text, plain },
                    },
                    anchor,
                );
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    pos,
                    kind: Kind::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                });
                self.push(Node { pos, ..node }, 0);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(pos, anchor, Vec::new(), None))
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(p, anchor, items)) => self.push(
                    Node {
                        pos: p,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                ),
                Some(Frame::Map(p, anchor, entries, _)) => {
                    // The parser marks an implicit block mapping after its first key; the
                    // first key is where such a mapping really starts.
                    let p = entries.first().map_or(p, |(k, _)| p.min(k.pos));
                    self.push(
                        Node {
                            pos: p,
                            kind: Kind::Map(entries),
                        },
                        anchor,
                    )
                }
                None => {}
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = Node::parse("a: 1\nb:\n  - x\n  - {c: d}\n").unwrap();
        assert_eq!(n.pos, Pos { line: 1, column: 1 });
        assert_eq!(n.get("a").unwrap().pos, Pos { line: 1, column: 4 });
        assert_eq!(n.key("b").unwrap().pos, Pos { line: 2, column: 1 });
        let b = n.get("b").unwrap();
        assert_eq!(b.items()[0].pos, Pos { line: 3, column: 5 });
        let c = n.at(&[Seg::Key("b".into()), Seg::Index(1), Seg::Key("c".into())]);
        assert_eq!(c.unwrap().pos, Pos { line: 4, column: 9 });
    }

    #[test]
    fn scalars_keep_their_text() {
        let n = Node::parse("v: 1.10\nm: 0755\nq: '2.4'\nt: true\nz: ~\n").unwrap();
        assert_eq!(n.get("v").unwrap().text(), Some("1.10"));
        assert_eq!(n.get("m").unwrap().text(), Some("0755"));
        assert_eq!(n.get("z").unwrap().text(), None);
        assert_eq!(
            n.to_json(),
            serde_json::json!({"v": 1.1, "m": 755, "q": "2.4", "t": true, "z": null})
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = Node::parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].pos.line >= 2, "{e:?}");
        let e = Node::parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(
            e,
            vec![SyntaxError {
                pos: Pos { line: 3, column: 1 },
                message: "duplicate key \"a\" (first defined at line 1)".into()
            }]
        );
        let e = Node::parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e[0].pos.line, 3);
    }

    #[test]
    fn aliases_and_paths() {
        let n = Node::parse("x: &a {k: v}\ny: *a\n").unwrap();
        assert_eq!(n.get("y").unwrap().get("k").unwrap().text(), Some("v"));
        let p = [Seg::Key("labels".into()), Seg::Key("org.example.x".into())];
        assert_eq!(display_path(&p), "labels[\"org.example.x\"]");
        assert_eq!(
            display_path(&[Seg::Key("tags".into()), Seg::Index(2)]),
            "tags[2]"
        );
        assert_eq!(display_path(&[]), "(root)");
    }
}
