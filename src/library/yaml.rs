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
    /// returned (a scanner error stops parsing, so it comes alone). Nesting deeper than
    /// [`MAX_DEPTH`], more than [`MAX_NODES`] nodes, or aliases repeating more than
    /// [`MAX_ALIAS_NODES`] nodes or [`MAX_ALIAS_TEXT`] bytes stop parsing too: a file cannot
    /// make graft build an unbounded tree (an alias bomb) or recurse without end.
    pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // Events are pulled one by one rather than through `Parser::load`, which recurses
        // once per nesting level: the depth limit must stop a deep file before that does.
        loop {
            match parser.next_token() {
                Err(e) => {
                    // The scanner counts flow nesting (`[[[`) itself, up to 255, and may
                    // read that far ahead before the parser reports the 65th level.
                    let message = match e.info() {
                        "recursion limit exceeded" => nested_too_deep(),
                        info => info.to_string(),
                    };
                    return Err(vec![SyntaxError {
                        pos: Pos::from_marker(*e.marker()),
                        message,
                    }]);
                }
                Ok((Event::StreamEnd, _)) => break,
                Ok((ev, mark)) => builder.on_event(ev, mark),
            }
            if let Some(e) = builder.fatal.take() {
                return Err(vec![e]);
            }
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

/// Deepest nesting of lists and mappings a library file may have (graft's own files need 4).
pub const MAX_DEPTH: usize = 64;
/// Most nodes one file may make, every node an alias repeats counted again.
pub const MAX_NODES: usize = 1_000_000;
/// Most nodes the aliases of one file may repeat in all (an alias copies its anchor's tree).
pub const MAX_ALIAS_NODES: usize = 100_000;
/// Most bytes of scalar text the aliases of one file may repeat in all.
pub const MAX_ALIAS_TEXT: usize = 4 << 20;

/// How much a subtree costs: its nodes and the bytes of its scalars and keys.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// A list or mapping being built: where it starts, its anchor, what it holds so far and
/// what that costs.
enum Frame {
    Seq(Pos, usize, Vec<Node>, Size),
    Map(Pos, usize, MapFrame, Size),
}

#[derive(Default)]
struct MapFrame {
    entries: Vec<(Key, Node)>,
    /// The key read, waiting for its value.
    pending: Option<Node>,
    /// Each key's first line: duplicates are found in one lookup, not a scan of the mapping.
    seen: HashMap<String, usize>,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, (Node, Size)>,
    errors: Vec<SyntaxError>,
    /// A problem that stops parsing (a limit was passed).
    fatal: Option<SyntaxError>,
    /// Nodes made so far, aliases counting every node they repeat.
    total: usize,
    /// What aliases repeated so far.
    aliased: Size,
}

impl Builder {
    fn stop(&mut self, pos: Pos, message: String) {
        if self.fatal.is_none() {
            self.fatal = Some(SyntaxError { pos, message });
        }
    }

    /// Count `size` more nodes; false (and parsing stops) past [`MAX_NODES`].
    fn count(&mut self, pos: Pos, size: Size) -> bool {
        self.total = self.total.saturating_add(size.nodes);
        if self.total > MAX_NODES {
            self.stop(
                pos,
                format!("the file has more than {MAX_NODES} nodes (aliases counting every node they repeat); graft reads files of a reasonable size"),
            );
            return false;
        }
        true
    }

    fn push(&mut self, node: Node, anchor: usize, size: Size) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(_, _, items, total)) => {
                items.push(node);
                total.add(size);
            }
            Some(Frame::Map(_, _, map, total)) => {
                total.add(size);
                let Some(key) = map.pending.take() else {
                    map.pending = Some(node);
                    return;
                };
                let text = match key.kind {
                    Kind::Scalar { text, .. } => text,
                    _ => {
                        self.errors.push(SyntaxError {
                            pos: key.pos,
                            message: "mapping keys must be plain text, not lists or mappings"
                                .into(),
                        });
                        String::new()
                    }
                };
                match map.seen.get(&text) {
                    Some(first) => self.errors.push(SyntaxError {
                        pos: key.pos,
                        message: format!(
                            "duplicate key {} (first defined at line {first})",
                            quoted(&text)
                        ),
                    }),
                    None => {
                        map.seen.insert(text.clone(), key.pos.line);
                        map.entries.push((Key { text, pos: key.pos }, node));
                    }
                }
            }
        }
    }
}

fn nested_too_deep() -> String {
    format!("lists and mappings are nested more than {MAX_DEPTH} deep")
}

/// A key for a message: quoted, and cut short so a message never carries much of a file.
fn quoted(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(MAX - 3).collect();
        format!("{cut:?}…")
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
                let size = Size {
                    nodes: 1,
                    bytes: text.len(),
                };
                if !self.count(pos, size) {
                    return;
                }
                self.push(
                    Node {
                        pos,
                        kind: Kind::Scalar { text, plain },
                    },
                    anchor,
                    size,
                );
            }
            Event::Alias(id) => {
                // An alias to an anchor still being built (`&a [*a]`) finds nothing: null.
                let (node, size) = self.anchors.get(&id).cloned().unwrap_or((
                    Node {
                        pos,
                        kind: Kind::Scalar {
                            text: String::new(),
                            plain: true,
                        },
                    },
                    Size { nodes: 1, bytes: 0 },
                ));
                // Checked before the copy is made: an alias bomb never gets built.
                self.aliased.add(size);
                if self.aliased.nodes > MAX_ALIAS_NODES || self.aliased.bytes > MAX_ALIAS_TEXT {
                    self.stop(
                        pos,
                        format!("aliases repeat more than {MAX_ALIAS_NODES} nodes or {} MiB of text in this file (an alias bomb?); write the values out or use fewer aliases", MAX_ALIAS_TEXT >> 20),
                    );
                    return;
                }
                if !self.count(pos, size) {
                    return;
                }
                self.push(Node { pos, ..node }, 0, size);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.stop(pos, nested_too_deep());
                    return;
                }
                if !self.count(pos, Size { nodes: 1, bytes: 0 }) {
                    return;
                }
                let size = Size { nodes: 1, bytes: 0 };
                self.stack.push(match ev {
                    Event::SequenceStart(..) => Frame::Seq(pos, anchor, Vec::new(), size),
                    _ => Frame::Map(pos, anchor, MapFrame::default(), size),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(p, anchor, items, size)) => self.push(
                    Node {
                        pos: p,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                    size,
                ),
                Some(Frame::Map(p, anchor, map, size)) => {
                    let entries = map.entries;
                    // The parser marks an implicit block mapping after its first key; the
                    // first key is where such a mapping really starts.
                    let p = entries.first().map_or(p, |(k, _)| p.min(k.pos));
                    self.push(
                        Node {
                            pos: p,
                            kind: Kind::Map(entries),
                        },
                        anchor,
                        size,
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

    #[test]
    fn alias_bombs_stop_before_they_are_built() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            let refs = vec![format!("*a{p}"); 9].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = Node::parse(&text).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].message
                .starts_with("aliases repeat more than 100000 nodes"),
            "{e:?}"
        );
        // a1..a4 copy 90 + 819 + 7380 + 66429 nodes; a5's first alias passes the limit.
        assert_eq!(e[0].pos.line, 6, "{e:?}");
        // Long text repeated by aliases counts too.
        let big = "x".repeat(1 << 20);
        let text = format!("a: &a {big}\nb: [*a, *a, *a, *a, *a]\n");
        assert!(Node::parse(&text).unwrap_err()[0]
            .message
            .starts_with("aliases repeat"));
        // A few aliases are fine.
        assert!(Node::parse("a: &a {k: [1, 2]}\nb: [*a, *a]\n").is_ok());
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(Node::parse(&ok).is_ok());
        for deep in [
            "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1),
            "- ".repeat(100_000) + "x",
            "{a: ".repeat(100_000),
        ] {
            let e = Node::parse(&deep).unwrap_err();
            assert_eq!(e.len(), 1);
            assert_eq!(
                e[0].message,
                "lists and mappings are nested more than 64 deep"
            );
        }
    }

    #[test]
    fn duplicate_keys_are_found_with_one_lookup_each() {
        // 160,000 keys took 33 s when each key was compared with every earlier one; with a
        // hash per mapping this is linear (well under a second; 10 s is a generous bound
        // for a debug build on a loaded machine, not a benchmark).
        let mut text = String::new();
        for i in 0..160_000 {
            text.push_str(&format!("k{i}: v\n"));
        }
        text.push_str("k159999: again\nk0: again\n");
        let start = std::time::Instant::now();
        let e = Node::parse(&text).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].message,
            "duplicate key \"k159999\" (first defined at line 160000)"
        );
        assert_eq!(
            e[1].pos,
            Pos {
                line: 160_002,
                column: 1
            }
        );
        // A long duplicate key is cut short in the message.
        let long = "k".repeat(500);
        let e = Node::parse(&format!("{long}: 1\n{long}: 2\n")).unwrap_err();
        assert!(e[0].message.len() < 120, "{}", e[0].message);
    }
}
