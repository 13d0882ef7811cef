//! YAML text to a JSON value, with the position of every key and value.
//!
//! Defends: the loader against hostile or broken files — a document larger than
//! [`MAX_BYTES`], alias expansion ("billion laughs") beyond [`MAX_NODES`] nodes in total,
//! nesting deeper than [`MAX_DEPTH`], duplicate keys (which YAML forbids and which would make
//! the effective value depend on the parser), non-scalar keys, several documents in one file.
//!
//! Guarantees: the value is built from parser events on an explicit stack (no recursion), so
//! depth is bounded before anything recursive (serde, drop) sees it; every node counts against
//! the node budget, including each node an alias copies. Plain scalars follow the YAML 1.2
//! core schema (`null`/`~`, `true`/`false`, integers, floats); quoted scalars are strings.
//! [`Spans`] maps the JSON pointer of every key and value to its 1-based line and column.
//!
//! Does not: support merge keys (`<<`), custom tags (other than the core `!!str`, `!!int`,
//! `!!float`, `!!bool`, `!!null`, `!!map`, `!!seq`), or non-string mapping keys.

use std::collections::{BTreeMap, HashMap};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// Largest accepted configuration file (1 MiB).
pub const MAX_BYTES: usize = 1024 * 1024;
/// Largest number of nodes the document may expand to (aliases included).
pub const MAX_NODES: usize = 100_000;
/// Deepest accepted nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 64;

/// A 1-based position in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Positions by JSON pointer: of the key (for mapping members) and of the value.
#[derive(Debug, Default, Clone)]
pub struct Spans {
    keys: BTreeMap<String, Pos>,
    values: BTreeMap<String, Pos>,
    /// Character range of each scalar value as written (quotes included when quoted).
    scalars: BTreeMap<String, (usize, usize)>,
}

impl Spans {
    /// Where the key at `pointer` is written (mapping members only).
    pub fn key(&self, pointer: &str) -> Option<Pos> {
        self.keys.get(pointer).copied()
    }

    /// The character range of the scalar at `pointer`, for in-place edits.
    pub fn scalar_range(&self, pointer: &str) -> Option<(usize, usize)> {
        self.scalars.get(pointer).copied()
    }

    /// Where the value at `pointer` starts; falls back to the nearest enclosing node.
    /// Whether the document itself holds a value at `pointer` (not a default filled in later).
    pub fn holds(&self, pointer: &str) -> bool {
        self.values.contains_key(pointer)
    }

    pub fn value(&self, pointer: &str) -> Option<Pos> {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return Some(*pos);
            }
            let (parent, _) = p.rsplit_once('/')?;
            p = parent;
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl YamlError {
    fn at(span: Span, message: impl Into<String>) -> Self {
        YamlError {
            pos: Some(pos(span)),
            message: message.into(),
        }
    }
}

fn pos(span: Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

pub(crate) fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

enum Frame {
    Map {
        map: Map<String, Value>,
        pointer: String,
        anchor: usize,
        pending_key: Option<(String, Span)>,
    },
    Seq {
        items: Vec<Value>,
        pointer: String,
        anchor: usize,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    spans: Spans,
    nodes: usize,
    root: Option<Value>,
}

/// Number of nodes in `v` (itself included).
fn count(v: &Value) -> usize {
    let mut n = 0;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        n += 1;
        match v {
            Value::Array(a) => todo.extend(a.iter()),
            Value::Object(o) => todo.extend(o.values()),
            _ => {}
        }
    }
    n
}

impl Builder {
    fn charge(&mut self, n: usize, span: Span) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError::at(
                span,
                format!(
                    "the document expands to more than {MAX_NODES} nodes (alias expansion \
                     limit); refusing it"
                ),
            ));
        }
        Ok(())
    }

    /// The pointer the next value will get, or `None` when it is a mapping key.
    fn next_pointer(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Map {
                pending_key: None, ..
            }) => None,
            Some(Frame::Map {
                pointer,
                pending_key: Some((k, _)),
                ..
            }) => Some(format!("{pointer}/{}", escape(k))),
            Some(Frame::Seq { items, pointer, .. }) => Some(format!("{pointer}/{}", items.len())),
        }
    }

    /// Places a finished value into its parent (or as the root).
    fn place(&mut self, value: Value, span: Span) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    return Err(YamlError::at(span, "more than one document in the file"));
                }
                self.root = Some(value);
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                map, pending_key, ..
            }) => match pending_key.take() {
                Some((k, _)) => {
                    map.insert(k, value);
                }
                None => return Err(non_scalar_key(span)),
            },
        }
        Ok(())
    }

    fn key(&mut self, key: String, span: Span) -> Result<(), YamlError> {
        if let Some(Frame::Map {
            map,
            pointer,
            pending_key,
            ..
        }) = self.stack.last_mut()
        {
            if map.contains_key(&key) {
                return Err(YamlError::at(span, format!("duplicate key `{key}`")));
            }
            let p = format!("{pointer}/{}", escape(&key));
            self.spans.keys.insert(p, pos(span));
            *pending_key = Some((key, span));
        }
        Ok(())
    }
}

fn non_scalar_key(span: Span) -> YamlError {
    YamlError::at(
        span,
        "mapping keys must be plain strings, not mappings or sequences",
    )
}

fn core_tag(tag: Option<&saphyr_parser::Tag>) -> Option<String> {
    tag.map(|t| {
        if t.handle == "!!" || t.handle == "tag:yaml.org,2002:" {
            t.suffix.clone()
        } else {
            format!("{}{}", t.handle, t.suffix)
        }
    })
}

fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&str>,
    span: Span,
) -> Result<Value, YamlError> {
    let plain = matches!(style, ScalarStyle::Plain);
    match tag {
        Some("str") => return Ok(Value::String(text.to_owned())),
        Some("null") | Some("bool") | Some("int") | Some("float") | None => {}
        Some(other) => {
            return Err(YamlError::at(
                span,
                format!("unsupported YAML tag `{other}` (only the core schema is accepted)"),
            ));
        }
    }
    if !plain && tag.is_none() {
        return Ok(Value::String(text.to_owned()));
    }
    let resolved = match text {
        "" | "~" | "null" | "Null" | "NULL" => Some(Value::Null),
        "true" | "True" | "TRUE" => Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => Some(Value::Bool(false)),
        _ => number(text),
    };
    match (resolved, tag) {
        (Some(v), None) => Ok(v),
        (Some(v), Some(t)) => {
            let ok = matches!(
                (t, &v),
                ("null", Value::Null)
                    | ("bool", Value::Bool(_))
                    | ("int", Value::Number(_))
                    | ("float", Value::Number(_))
            );
            if ok {
                Ok(v)
            } else {
                Err(YamlError::at(
                    span,
                    format!("`{text}` is not a valid !!{t}"),
                ))
            }
        }
        (None, None) => Ok(Value::String(text.to_owned())),
        (None, Some(t)) => Err(YamlError::at(
            span,
            format!("`{text}` is not a valid !!{t}"),
        )),
    }
}

fn number(text: &str) -> Option<Value> {
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let int = if let Some(h) = digits.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()
    } else if let Some(o) = digits.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i128>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        let i = if neg { -i } else { i };
        if let Ok(u) = u64::try_from(i) {
            return Some(Value::Number(u.into()));
        }
        return i64::try_from(i).ok().map(|v| Value::Number(v.into()));
    }
    let looks_float = !digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_float {
        let f: f64 = text.parse().ok()?;
        return Number::from_f64(f).map(Value::Number);
    }
    None
}

/// Parses `text` into a value and the positions of its nodes.
///
/// # Errors
/// A [`YamlError`] with the position of the problem when there is one.
pub fn parse(text: &str) -> Result<(Value, Spans), YamlError> {
    if text.len() > MAX_BYTES {
        return Err(YamlError {
            pos: None,
            message: format!(
                "the file is {} bytes; the limit is {MAX_BYTES} bytes",
                text.len()
            ),
        });
    }
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        spans: Spans::default(),
        nodes: 0,
        root: None,
    };
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| YamlError {
            pos: Some(Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            }),
            message: e.info().to_owned(),
        })?;
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let Some(pointer) = b.next_pointer() else {
                    b.key(text.into_owned(), span)?;
                    continue;
                };
                b.charge(1, span)?;
                let v = scalar(&text, style, core_tag(tag.as_deref()).as_deref(), span)?;
                b.spans
                    .scalars
                    .insert(pointer.clone(), (span.start.index(), span.end.index()));
                b.spans.values.insert(pointer, pos(span));
                if anchor > 0 {
                    b.anchors.insert(anchor, (v.clone(), 1));
                }
                b.place(v, span)?;
            }
            Event::Alias(id) => {
                let Some(pointer) = b.next_pointer() else {
                    return Err(YamlError::at(span, "an alias cannot be a mapping key"));
                };
                let Some((v, n)) = b.anchors.get(&id).map(|(v, n)| (v.clone(), *n)) else {
                    return Err(YamlError::at(span, "alias to an unknown anchor"));
                };
                b.charge(n, span)?;
                b.spans.values.insert(pointer, pos(span));
                b.place(v, span)?;
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let Some(pointer) = b.next_pointer() else {
                    return Err(non_scalar_key(span));
                };
                if b.stack.len() >= MAX_DEPTH {
                    return Err(YamlError::at(
                        span,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                b.charge(1, span)?;
                b.spans.values.insert(pointer.clone(), pos(span));
                b.stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Map {
                        map: Map::new(),
                        pointer,
                        anchor,
                        pending_key: None,
                    }
                } else {
                    Frame::Seq {
                        items: Vec::new(),
                        pointer,
                        anchor,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (v, anchor) = match b.stack.pop() {
                    Some(Frame::Map { map, anchor, .. }) => (Value::Object(map), anchor),
                    Some(Frame::Seq { items, anchor, .. }) => (Value::Array(items), anchor),
                    None => return Err(YamlError::at(span, "unbalanced YAML structure")),
                };
                if anchor > 0 {
                    let n = count(&v);
                    b.anchors.insert(anchor, (v.clone(), n));
                }
                b.place(v, span)?;
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
        }
    }
    let root = match b.root {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(YamlError {
                pos: Some(Pos { line: 1, col: 1 }),
                message: "the configuration must be a mapping of sections (gateway:, agents:, …)"
                    .into(),
            });
        }
    };
    Ok((root, b.spans))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_follow_the_core_schema() {
        let (v, s) =
            parse("a: 1\nb: \"1\"\nc: true\nd: ~\ne: 1.5\nf: -3\ng: hello\nh: [x, 'y']\n").unwrap();
        assert_eq!(
            v,
            json!({"a":1,"b":"1","c":true,"d":null,"e":1.5,"f":-3,"g":"hello","h":["x","y"]})
        );
        assert_eq!(s.key("/b"), Some(Pos { line: 2, col: 1 }));
        assert_eq!(s.value("/b"), Some(Pos { line: 2, col: 4 }));
        assert_eq!(s.value("/h/1"), Some(Pos { line: 8, col: 8 }));
    }

    #[test]
    fn refuses_duplicates_depth_and_laughs() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("duplicate"), "{e:?}");
        assert_eq!(e.pos.unwrap().line, 2);
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
        let mut lol = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 0..9u8 {
            let (p, n) = ((b'a' + i) as char, (b'b' + i) as char);
            lol.push_str(&format!(
                "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
            ));
        }
        let e = parse(&lol).unwrap_err();
        assert!(e.message.contains("alias expansion"), "{e:?}");
        assert!(parse(&"#".repeat(MAX_BYTES + 1)).is_err());
        assert!(parse("--- {a: 1}\n--- {b: 2}\n").is_err());
        assert!(parse("? [a]\n: 1\n").is_err());
        assert!(parse("- 1\n").is_err());
    }

    #[test]
    fn empty_is_an_empty_mapping() {
        assert_eq!(parse("").unwrap().0, json!({}));
        assert_eq!(parse("# only a comment\n").unwrap().0, json!({}));
    }
}
