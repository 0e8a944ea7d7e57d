//! `json`: `parse` (JSON text to values) and `stringify` (values to JSON text).
//!
//! `parse` is strict RFC 8259: objects become maps in document order (a repeated key
//! keeps its first position and its last value), numbers without fraction or exponent
//! that fit an int become ints and all others floats, and errors say what was wrong
//! and where (`json.parse: expected ':' at line 1 column 6`). It parses into a plain
//! Rust tree first and only then allocates, so no heap value is live while the text is
//! still being checked.
//!
//! `stringify` writes compact JSON (`{"a":1,"b":[1,2]}`, like Python's
//! `json.dumps(v, separators=(",", ":"))`) or, given an indent, one item per line. Map
//! keys that are ints, floats or bools become their display text; struct instances
//! become objects. nan, inf, cycles and values with no JSON form (functions, ranges...)
//! are errors. Both directions refuse nesting deeper than [`MAX_DEPTH`], so neither can
//! exhaust the Rust stack.

use std::sync::Arc;

use indexmap::IndexMap;
use kiln_gc::Heap;

use crate::builtins::Args;
use crate::display::format_float;
use crate::error::{Collection, Fault, Limit};
use crate::fault;
use crate::stdlib::Member;
use crate::value::{hash_str, Key, Map, PassThrough, Value};
use crate::vm::Vm;

pub(super) const MEMBERS: &[(&str, Member)] = &[
    ("parse", Member::Fn(parse)),
    ("stringify", Member::Fn(stringify)),
];

/// Deepest nesting of arrays and objects either direction accepts.
const MAX_DEPTH: usize = 512;

/// The widest `stringify` indent.
const MAX_INDENT: i64 = 100;

fn parse(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("json.parse", args, 1, 1)?;
    let tree = Parser::new(a.str(&vm.heap, 0)?).document()?;
    build(vm, &tree)
}

fn stringify(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("json.stringify", args, 1, 2)?;
    let indent = match a.opt(1) {
        None => None,
        Some(_) => match a.int(&vm.heap, 1)? {
            n @ 0..=MAX_INDENT => Some(n as usize),
            _ => {
                return Err(fault!(
                    "json.stringify: indent must be from 0 to {MAX_INDENT}"
                ))
            }
        },
    };
    let limit = vm.settings.limits.max_string_bytes;
    let text = encode(&vm.heap, a.get(0), indent, limit)?;
    vm.new_string(text)
}

// ----- parsing --------------------------------------------------------------------

/// A parsed JSON document, before it becomes heap values.
#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// One value with only whitespace around it.
    fn document(mut self) -> Result<Json, Fault> {
        let v = self.value()?;
        self.skip_ws();
        match self.peek() {
            None => Ok(v),
            Some(_) => Err(self.fail("extra data after the value")),
        }
    }

    /// `json.parse: <what> at line L column C`, at the current position.
    fn fail(&self, what: &str) -> Fault {
        let before = &self.text.as_bytes()[..self.pos];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = self.text[line_start..self.pos].chars().count() + 1;
        fault!("json.parse: {what} at line {line} column {column}")
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Consumes `b` if it is next.
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.pos += hit as usize;
        hit
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Json, Fault> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.fail("expected a value, got the end of the text")),
            Some(b'{') => self.nested(Parser::object),
            Some(b'[') => self.nested(Parser::array),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.unexpected()),
        }
    }

    fn unexpected(&self) -> Fault {
        match self.text[self.pos..].chars().next() {
            Some(c) => self.fail(&format!("unexpected character {c:?}")),
            None => self.fail("unexpected end of the text"),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, Fault> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.unexpected())
        }
    }

    /// Parses an array or object one level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(&mut self, f: fn(&mut Parser<'a>) -> Result<Json, Fault>) -> Result<Json, Fault> {
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(&format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn array(&mut self) -> Result<Json, Fault> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat(b']') {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            if self.eat(b']') {
                return Ok(Json::Array(items));
            }
            if !self.eat(b',') {
                return Err(self.fail("expected ',' or ']'"));
            }
        }
    }

    fn object(&mut self) -> Result<Json, Fault> {
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.eat(b'}') {
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.fail("expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(b':') {
                return Err(self.fail("expected ':'"));
            }
            members.push((key, self.value()?));
            self.skip_ws();
            if self.eat(b'}') {
                return Ok(Json::Object(members));
            }
            if !self.eat(b',') {
                return Err(self.fail("expected ',' or '}'"));
            }
        }
    }

    fn number(&mut self) -> Result<Json, Fault> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.fail("invalid number")),
        }
        let mut is_float = false;
        if self.eat(b'.') {
            is_float = true;
            self.required_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_float = true;
            self.pos += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.required_digits()?;
        }
        let text = &self.text[start..self.pos];
        if !is_float {
            // Integers beyond the int range fall back to floats, as in JavaScript.
            if let Ok(i) = text.parse() {
                return Ok(Json::Int(i));
            }
        }
        text.parse()
            .map(Json::Float)
            .map_err(|_| self.fail("invalid number"))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), Fault> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return Err(self.fail("invalid number"));
        }
        Ok(())
    }

    /// A string literal, the opening quote next.
    fn string(&mut self) -> Result<String, Fault> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Quotes, backslashes and control bytes are ASCII, so they never fall inside
            // a multi-byte character: the slice below is on character boundaries.
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                None => return Err(self.fail("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                Some(_) => return Err(self.fail("control character in string")),
            }
        }
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> Result<char, Fault> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.unicode_escape();
            }
            _ => return Err(self.fail("invalid escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// `\uXXXX`, or a surrogate pair `\uD83D\uDE00`; a lone surrogate is an error (a
    /// Kiln string is UTF-8 and cannot hold one).
    fn unicode_escape(&mut self) -> Result<char, Fault> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) && self.text[self.pos..].starts_with("\\u") {
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.fail("lone surrogate in \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.fail("lone surrogate in \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, Fault> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.fail("invalid \\u escape"))?;
        let v = u32::from_str_radix(digits, 16).map_err(|_| self.fail("invalid \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }
}

/// The heap value of a parsed document. Each container is allocated before its
/// children and rooted while they are made.
fn build(vm: &mut Vm, j: &Json) -> Result<Value, Fault> {
    Ok(match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Int(i) => Value::Int(*i),
        Json::Float(f) => Value::Float(*f),
        Json::Str(s) => vm.new_str(s)?,
        Json::Array(items) => {
            vm.check_size(Collection::Array, items.len())?;
            let arr = vm.new_array(Vec::with_capacity(items.len()))?;
            vm.with_roots(|vm| {
                vm.push_root(arr);
                for item in items {
                    let v = build(vm, item)?;
                    if let Value::Array(a) = arr {
                        a.get_mut(&mut vm.heap).items.push(v);
                    }
                }
                Ok(arr)
            })?
        }
        Json::Object(members) => {
            vm.check_size(Collection::Map, members.len())?;
            let entries = IndexMap::with_capacity_and_hasher(members.len(), PassThrough);
            let map = vm.new_map(Map { entries })?;
            vm.with_roots(|vm| {
                vm.push_root(map);
                for (k, item) in members {
                    let v = build(vm, item)?;
                    vm.push_root(v);
                    let text: Arc<str> = Arc::from(k.as_str());
                    let kv = vm.new_arc_str(text.clone())?;
                    let key = Key::Str(text.clone(), hash_str(&text));
                    if let Value::Map(m) = map {
                        m.get_mut(&mut vm.heap).entries.insert(key, (kv, v));
                    }
                }
                Ok(map)
            })?
        }
    })
}

// ----- encoding -------------------------------------------------------------------

/// `v` as JSON text; `indent` spaces per level, one item per line, when given.
fn encode(heap: &Heap, v: Value, indent: Option<usize>, limit: usize) -> Result<String, Fault> {
    let mut e = Encoder {
        heap,
        indent,
        limit,
        path: Vec::new(),
        out: String::new(),
    };
    e.value(v)?;
    Ok(e.out)
}

struct Encoder<'h> {
    heap: &'h Heap,
    indent: Option<usize>,
    /// The string cap: the output may not grow past it.
    limit: usize,
    /// The containers being written, for cycle detection and the depth limit.
    path: Vec<usize>,
    out: String,
}

impl<'h> Encoder<'h> {
    fn value(&mut self, v: Value) -> Result<(), Fault> {
        let heap = self.heap;
        match v {
            Value::Nil => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if b { "true" } else { "false" }),
            Value::Int(i) => self.out.push_str(&i.to_string()),
            Value::Float(f) if f.is_finite() => self.out.push_str(&format_float(f)),
            Value::Float(f) => {
                return Err(fault!("json.stringify: cannot encode {}", format_float(f)))
            }
            Value::Str(s) => self.string(&s.get(heap).text)?,
            Value::Array(a) => {
                let items = &a.get(heap).items;
                self.container(v, ('[', ']'), items.len(), |e, i| e.value(items[i]))?;
            }
            Value::Map(m) => {
                let entries = &m.get(heap).entries;
                self.container(v, ('{', '}'), entries.len(), |e, i| {
                    match entries.get_index(i) {
                        Some((_, &(k, item))) => e.member(&key_text(heap, k), item),
                        None => Ok(()),
                    }
                })?;
            }
            Value::Struct(s) => {
                let inst = s.get(heap);
                let names = &inst.ty.get(heap).fields;
                self.container(v, ('{', '}'), inst.fields.len(), |e, i| {
                    e.member(&names[i], inst.fields[i])
                })?;
            }
            other => {
                return Err(fault!(
                    "json.stringify: cannot encode {}",
                    other.type_name(heap)
                ));
            }
        }
        Ok(())
    }

    /// A quoted string, refused once the output passes the string cap (escapes can make
    /// it several times as long as the text).
    fn string(&mut self, text: &str) -> Result<(), Fault> {
        if quote_json(&mut self.out, text, self.limit) {
            Ok(())
        } else {
            Err(too_large())
        }
    }

    /// An object member: its quoted name, a colon, its value.
    fn member(&mut self, name: &str, v: Value) -> Result<(), Fault> {
        self.string(name)?;
        self.out
            .push_str(if self.indent.is_some() { ": " } else { ":" });
        self.value(v)
    }

    /// Writes `open`, the `n` items `item` writes, separated and (with an indent) each on
    /// its own line, then `close`.
    fn container(
        &mut self,
        v: Value,
        (open, close): (char, char),
        n: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), Fault>,
    ) -> Result<(), Fault> {
        let addr = v.heap_addr().unwrap_or(0);
        if self.path.contains(&addr) {
            return Err(fault!("json.stringify: cycle"));
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(fault!(
                "json.stringify: nesting deeper than {MAX_DEPTH} levels"
            ));
        }
        self.path.push(addr);
        self.out.push(open);
        for i in 0..n {
            if self.out.len() > self.limit {
                return Err(too_large());
            }
            if i > 0 {
                self.out.push(',');
            }
            self.newline();
            item(self, i)?;
        }
        self.path.pop();
        if n > 0 {
            self.newline();
        }
        self.out.push(close);
        Ok(())
    }

    /// With an indent: a line break and the current level's indentation.
    fn newline(&mut self) {
        if let Some(width) = self.indent {
            self.out.push('\n');
            self.out
                .extend(std::iter::repeat_n(' ', width * self.path.len()));
        }
    }
}

/// An object key's text: strings as they are, other keys as their display text.
fn key_text(heap: &Heap, k: Value) -> String {
    match k {
        Value::Str(s) => s.get(heap).text.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(f),
        Value::Bool(b) => b.to_string(),
        other => other.type_name(heap).to_string(),
    }
}

fn too_large() -> Fault {
    Fault::Limit(Limit::Size(Collection::String))
}

/// Appends `s` as a JSON string literal. Non-ASCII characters stay as they are (UTF-8
/// output); control characters are escaped. Stops (false) once `out` is longer than
/// `limit`.
fn quote_json(out: &mut String, s: &str, limit: usize) -> bool {
    out.push('"');
    for c in s.chars() {
        if out.len() > limit {
            return false;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::{call, error as fails, text, vm};

    fn parsed(text: &str) -> Json {
        match Parser::new(text).document() {
            Ok(j) => j,
            Err(e) => panic!("{text:?} did not parse: {e:?}"),
        }
    }

    fn error(text: &str) -> String {
        match Parser::new(text).document() {
            Err(Fault::Error(m)) => m,
            other => panic!("{text:?} should fail, got {other:?}"),
        }
    }

    #[test]
    fn parses_scalars_and_containers() {
        assert_eq!(parsed(" 42 "), Json::Int(42));
        assert_eq!(parsed("-1.5"), Json::Float(-1.5));
        assert_eq!(parsed("1e2"), Json::Float(100.0));
        assert_eq!(parsed("99999999999999999999"), Json::Float(1e20));
        assert_eq!(parsed("null"), Json::Null);
        assert_eq!(
            parsed(r#"{"a": [true, false], "b": {}}"#),
            Json::Object(vec![
                (
                    "a".into(),
                    Json::Array(vec![Json::Bool(true), Json::Bool(false)])
                ),
                ("b".into(), Json::Object(vec![])),
            ])
        );
    }

    #[test]
    fn parses_escapes() {
        assert_eq!(parsed(r#""\u00e9\t\"\\\/""#), Json::Str("é\t\"\\/".into()));
        assert_eq!(parsed(r#""\ud83d\ude00""#), Json::Str("😀".into()));
        assert_eq!(parsed("\"héllo 😀\""), Json::Str("héllo 😀".into()));
    }

    #[test]
    fn reports_errors_with_positions() {
        assert_eq!(
            error("{oops}"),
            "json.parse: expected a string key at line 1 column 2"
        );
        assert_eq!(
            error("[1,\n 2"),
            "json.parse: expected ',' or ']' at line 2 column 3"
        );
        assert_eq!(
            error(r#"{"a" 1}"#),
            "json.parse: expected ':' at line 1 column 6"
        );
        assert_eq!(
            error(""),
            "json.parse: expected a value, got the end of the text at line 1 column 1"
        );
        assert_eq!(
            error("nul"),
            "json.parse: unexpected character 'n' at line 1 column 1"
        );
        assert_eq!(
            error("[1,]"),
            "json.parse: unexpected character ']' at line 1 column 4"
        );
        assert_eq!(
            error("01x"),
            "json.parse: extra data after the value at line 1 column 2"
        );
        assert_eq!(
            error("\"é\\x\""),
            "json.parse: invalid escape at line 1 column 4"
        );
        assert!(error(r#""\ud83d""#).contains("lone surrogate"));
        assert!(error("\"a\nb\"").contains("control character"));
        assert!(error("\"abc").contains("unterminated string"));
        assert!(error("-").contains("invalid number"));
        assert!(error("1.").contains("invalid number"));
        assert!(error("1e+").contains("invalid number"));
    }

    #[test]
    fn nesting_is_limited() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(Parser::new(&ok).document().is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(error(&deep).contains("nesting deeper than 512 levels"));
        let hostile = "[".repeat(1_000_000);
        assert!(error(&hostile).contains("nesting"));
    }

    #[test]
    fn quotes_like_json() {
        let mut out = String::new();
        assert!(quote_json(&mut out, "a\"b\\c\nd\u{1}é😀\u{8}", usize::MAX));
        assert_eq!(out, r#""a\"b\\c\nd\u0001é😀\b""#);
        assert_eq!(parsed(&out), Json::Str("a\"b\\c\nd\u{1}é😀\u{8}".into()));
        // Each control character takes six bytes: the limit stops the growth early.
        let mut out = String::new();
        assert!(!quote_json(&mut out, &"\u{1}".repeat(1000), 100));
        assert!(out.len() <= 106, "{}", out.len());
    }

    /// `src` parsed into heap values and written back compactly.
    fn roundtrip(src: &str) -> String {
        let mut vm = vm();
        let s = text(&mut vm, src);
        let v = call(&mut vm, parse, &[s]).ok();
        let out = call(&mut vm, stringify, &[v.unwrap_or(Value::Nil)]).ok();
        vm.display(out.unwrap_or(Value::Nil))
    }

    #[test]
    fn values_round_trip() {
        for doc in [
            r#"{"a":1,"b":[1,2.5,"x",null,true,false],"c":{}}"#,
            "[]",
            "{}",
            r#""é\n\"😀""#,
            "[1e+20,0.1,-0.0,1.0,-7,9223372036854775807]",
            r#"{"z":1,"a":{"m":[[[]]]}}"#,
        ] {
            assert_eq!(roundtrip(doc), doc);
        }
        // A repeated key keeps its first position and its last value.
        assert_eq!(roundtrip(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn pretty_prints_with_an_indent() {
        let mut vm = vm();
        let s = text(&mut vm, r#"{"a":[1,2],"b":{},"c":[]}"#);
        let v = call(&mut vm, parse, &[s]).unwrap_or(Value::Nil);
        let out = call(&mut vm, stringify, &[v, Value::Int(2)]).unwrap_or(Value::Nil);
        let want = "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": []\n}";
        assert_eq!(vm.display(out), want);
        assert!(fails(call(&mut vm, stringify, &[v, Value::Int(-1)])).contains("indent"));
    }

    #[test]
    fn refuses_what_json_cannot_hold() {
        let mut vm = vm();
        let arr = vm.new_array(Vec::new()).unwrap();
        vm.push_root(arr);
        if let Value::Array(a) = arr {
            a.get_mut(&mut vm.heap).items.push(arr);
        }
        assert_eq!(
            fails(call(&mut vm, stringify, &[arr])),
            "json.stringify: cycle"
        );
        assert_eq!(
            fails(call(&mut vm, stringify, &[Value::Float(f64::NAN)])),
            "json.stringify: cannot encode nan"
        );
        let f = crate::builtins::native(&mut vm, "f", parse).unwrap();
        assert_eq!(
            fails(call(&mut vm, stringify, &[f])),
            "json.stringify: cannot encode fn"
        );
        let mut deep = Value::Nil;
        for _ in 0..MAX_DEPTH + 1 {
            deep = vm.new_array(vec![deep]).unwrap();
            vm.push_root(deep);
        }
        assert!(fails(call(&mut vm, stringify, &[deep])).contains("nesting"));
    }

    #[test]
    fn non_string_keys_become_text() {
        let mut vm = vm();
        let mut map = Map::default();
        map.entries
            .insert(Key::Int(1), (Value::Int(1), Value::Bool(true)));
        map.entries
            .insert(Key::Bool(false), (Value::Bool(false), Value::Float(0.5)));
        let m = vm.new_map(map).unwrap();
        vm.push_root(m);
        let out = call(&mut vm, stringify, &[m]).unwrap_or(Value::Nil);
        assert_eq!(vm.display(out), r#"{"1":true,"false":0.5}"#);
        let shared = vm.new_array(Vec::<Value>::new()).unwrap();
        vm.push_root(shared);
        let twice = vm.new_array(vec![shared, shared]).unwrap();
        vm.push_root(twice);
        let out = call(&mut vm, stringify, &[twice]).unwrap_or(Value::Nil);
        assert_eq!(vm.display(out), "[[],[]]");
    }
}
