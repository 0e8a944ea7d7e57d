//! The display form of values: what `print`, `str()` and string interpolation produce.
//!
//! Strings are raw at the top level ([`display`]) and quoted with escapes everywhere else
//! ([`repr`]). Floats print like Python's `repr` ([`format_float`]). Containers print
//! their elements in repr form; a container met again while it is still being printed
//! (a cycle) prints as `[...]`, `{...}` or `Name {...}`. Only the current path counts, so
//! a child shared by two parents prints fully both times. Output is bounded twice over:
//! nesting deeper than [`MAX_DEPTH`] prints `...` (the printer recurses, and must not
//! overflow the Rust stack), and output past the run's string cap
//! (`Limits::max_string_bytes`) is cut off with `...` (a small graph with much sharing
//! can otherwise expand exponentially); whoever keeps the text checks the cap.

use std::fmt::Write;

use crate::value::{Range, Value};
use crate::vm::Vm;

/// Containers nested deeper than this print as `...`.
const MAX_DEPTH: usize = 200;

/// The display form: strings raw, everything else as [`repr`].
pub fn display(vm: &Vm, v: Value) -> String {
    let mut out = String::new();
    display_into(vm, v, &mut out);
    out
}

/// Appends the display form of `v` to `out`: strings and ints (the common parts of
/// concatenations) without a temporary.
pub fn display_into(vm: &Vm, v: Value, out: &mut String) {
    match v {
        Value::Str(s) => out.push_str(&s.get(&vm.heap).text),
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
        _ => out.push_str(&repr(vm, v)),
    }
}

/// The form a value takes inside a container: strings quoted with escapes.
pub fn repr(vm: &Vm, v: Value) -> String {
    let mut p = Printer {
        vm,
        limit: vm.settings.limits.max_string_bytes,
        path: Vec::new(),
        out: String::new(),
        cut: false,
    };
    p.value(v);
    p.out
}

/// A float as Python's `repr` writes it: the shortest digits that read back to the same
/// float, in positional notation when the decimal exponent is in `-4..16` and in
/// scientific notation (`1e+16`, `1.5e-07`) otherwise.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = shortest_scientific(f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let body = if (-4..16).contains(&exp) {
        positional(&digits, exp)
    } else {
        scientific(&digits, exp)
    };
    format!("{sign}{body}")
}

/// `f` (positive and finite) as `d.ddde-7` with the fewest digits that read back as `f`.
/// Rust's `{:e}` finds how many digits that takes, but when the exact value lies halfway
/// between two such candidates it takes the upper one, where Python takes the even one
/// (`2.9802322387695312e-08` for 2^-25). Rounding the exact value to that many digits
/// (`{:.N$e}` rounds half to even) gives Python's choice, unless that candidate does not
/// read back (next to a power of two the neighbours are unevenly spaced). Two candidates
/// can both read back only when 16 or more digits are needed.
fn shortest_scientific(f: f64) -> String {
    let shortest = format!("{f:e}");
    let mantissa = shortest.split('e').next().unwrap_or("");
    let digits = mantissa.chars().filter(char::is_ascii_digit).count();
    if digits < 16 {
        return shortest;
    }
    let even = format!("{f:.*e}", digits - 1);
    if even.parse::<f64>() == Ok(f) {
        even
    } else {
        shortest
    }
}

/// `digits` (first digit in the units place times 10^exp) written out positionally.
fn positional(digits: &str, exp: i32) -> String {
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        let zeros = "0".repeat(int_len - digits.len());
        format!("{digits}{zeros}.0")
    } else {
        format!("{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

/// `d.ddde+XX`, with the exponent signed and at least two digits wide.
fn scientific(digits: &str, exp: i32) -> String {
    let (first, rest) = digits.split_at(1);
    let point = if rest.is_empty() { "" } else { "." };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{first}{point}{rest}e{sign}{:02}", exp.unsigned_abs())
}

/// Appends `s` quoted, with the escapes a Kiln string literal understands. Stops (false,
/// without the closing quote) once `out` is longer than `limit`: escapes can make the
/// quoted form several times as long as `s`.
fn quote_into(out: &mut String, s: &str, limit: usize) -> bool {
    out.push('"');
    for c in s.chars() {
        if out.len() > limit {
            return false;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    true
}

/// `0..10`, `0..=10`, or `range(0, 10, 2)` when the step is not 1.
fn range_text(r: &Range) -> String {
    match (r.step, r.inclusive) {
        (1, false) => format!("{}..{}", r.start, r.end),
        (1, true) => format!("{}..={}", r.start, r.end),
        _ => format!("range({}, {}, {})", r.start, r.end, r.step),
    }
}

/// The recursive printer: output so far and the containers on the current path.
struct Printer<'a> {
    vm: &'a Vm,
    path: Vec<usize>,
    out: String,
    /// Output stops growing (and ends in `...`) once it passes this many bytes.
    limit: usize,
    /// The output was cut off at `limit`; only closing brackets follow.
    cut: bool,
}

impl Printer<'_> {
    fn value(&mut self, v: Value) {
        let heap = &self.vm.heap;
        // Writing to a String cannot fail.
        let _ = match v {
            Value::Nil | Value::Undef => self.out.write_str("nil"),
            Value::Bool(b) => write!(self.out, "{b}"),
            Value::Int(i) => self.out.write_str(itoa::Buffer::new().format(i)),
            Value::Float(f) => self.out.write_str(&format_float(f)),
            Value::Str(s) => {
                if !quote_into(&mut self.out, &s.get(heap).text, self.limit) {
                    self.room();
                }
                Ok(())
            }
            Value::Array(_) | Value::Map(_) | Value::Struct(_) => {
                self.container(v);
                Ok(())
            }
            Value::Func(c) => match &*self.vm.program().proto(c.get(heap).proto).name {
                "<anonymous>" => self.out.write_str("<fn>"),
                name => write!(self.out, "<fn {name}>"),
            },
            Value::Native(n) => write!(self.out, "<fn {}>", n.get(heap).name()),
            Value::Range(r) => self.out.write_str(&range_text(r.get(heap))),
            Value::Error(e) => write!(self.out, "error: {}", e.get(heap).message),
            Value::Type(t) => write!(self.out, "<struct {}>", t.get(heap).name),
            Value::Module(m) => write!(self.out, "<module {}>", m.get(heap).name),
            Value::Weak(_) => self.out.write_str("<weak>"),
            Value::Cell(_) => self.out.write_str("<cell>"),
            Value::Chan(_) => self.out.write_str("<channel>"),
            Value::Task(t) => write!(self.out, "<task {}>", t.get(heap).task.id),
            Value::Host(h) => write!(self.out, "<{}>", h.get(heap).ty.name),
        };
    }

    /// Arrays, maps and struct instances: the ones that can nest and form cycles.
    fn container(&mut self, v: Value) {
        let addr = v.heap_addr().unwrap_or(0);
        let cycle = self.path.contains(&addr);
        if !cycle && self.path.len() >= MAX_DEPTH {
            self.out.push_str("...");
            return;
        }
        let close = self.open(v);
        if cycle {
            self.out.push_str("...");
        } else {
            self.path.push(addr);
            self.contents(v);
            self.path.pop();
        }
        self.out.push(close);
    }

    /// Writes the opening of a container (`[`, `{`, `Vec2 {`); returns its closing.
    fn open(&mut self, v: Value) -> char {
        match v {
            Value::Array(_) => {
                self.out.push('[');
                ']'
            }
            Value::Struct(s) => {
                let ty = s.get(&self.vm.heap).ty.get(&self.vm.heap);
                self.out.push_str(&ty.name);
                self.out.push_str(" {");
                '}'
            }
            _ => {
                self.out.push('{');
                '}'
            }
        }
    }

    fn contents(&mut self, v: Value) {
        let heap = &self.vm.heap;
        match v {
            Value::Array(a) => {
                for (i, &item) in a.get(heap).items.iter().enumerate() {
                    if !self.separator(i, ", ") {
                        break;
                    }
                    self.value(item);
                }
            }
            Value::Map(m) => {
                for (i, &(k, item)) in m.get(heap).entries.values().enumerate() {
                    if !self.separator(i, ", ") {
                        break;
                    }
                    self.value(k);
                    self.out.push_str(": ");
                    self.value(item);
                }
            }
            Value::Struct(s) => {
                let inst = s.get(heap);
                let ty = inst.ty.get(heap);
                for (i, (name, &field)) in ty.fields.iter().zip(inst.fields.iter()).enumerate() {
                    if !self.separator(i, ", ") {
                        break;
                    }
                    if i == 0 {
                        self.out.push(' ');
                    }
                    self.out.push_str(name);
                    self.out.push_str(": ");
                    self.value(field);
                }
                if !inst.fields.is_empty() && !self.cut {
                    self.out.push(' ');
                }
            }
            _ => {}
        }
    }

    /// Writes the separator before element `i`; false once the output is too long to
    /// continue.
    fn separator(&mut self, i: usize, sep: &str) -> bool {
        if self.cut {
            return false;
        }
        if i > 0 {
            self.out.push_str(sep);
        }
        self.room()
    }

    /// Whether the output may grow; past `limit` it is cut off, marked by `...`.
    fn room(&mut self) -> bool {
        if !self.cut && self.out.len() > self.limit {
            self.out.push_str("...");
            self.cut = true;
        }
        !self.cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::{text, vm};
    use crate::value::{Instance, StructType};

    /// A new rooted array of `items`.
    fn array(vm: &mut Vm, items: Vec<Value>) -> Value {
        let v = vm.new_array(items).unwrap();
        vm.push_root(v);
        v
    }

    fn push(vm: &mut Vm, arr: Value, v: Value) {
        if let Value::Array(a) = arr {
            a.get_mut(&mut vm.heap).items.push(v);
        }
    }

    #[test]
    fn containers_quote_strings_and_mark_cycles() {
        let mut vm = vm();
        let s = text(&mut vm, "a\"b\n\u{1}é");
        assert_eq!(display(&vm, s), "a\"b\n\u{1}é");
        let a = array(
            &mut vm,
            vec![Value::Int(1), s, Value::Nil, Value::Float(1e20)],
        );
        assert_eq!(display(&vm, a), "[1, \"a\\\"b\\n\\u{1}é\", nil, 1e+20]");
        let cyc = array(&mut vm, vec![Value::Int(1)]);
        push(&mut vm, cyc, cyc);
        assert_eq!(display(&vm, cyc), "[1, [...]]");
        let shared = array(&mut vm, vec![Value::Int(1)]);
        let twice = array(&mut vm, vec![shared, shared]);
        assert_eq!(display(&vm, twice), "[[1], [1]]");
    }

    #[test]
    fn quoting_stops_at_the_limit() {
        let mut out = String::new();
        assert!(quote_into(&mut out, "a\n", 10));
        assert_eq!(out, "\"a\\n\"");
        // `\u{1}` is six bytes for one: the limit is checked as the output grows.
        let mut out = String::new();
        assert!(!quote_into(&mut out, &"\u{1}".repeat(1000), 100));
        assert!(out.len() <= 106, "{}", out.len());
    }

    #[test]
    fn deep_nesting_is_cut_off() {
        let mut vm = vm();
        let mut v = Value::Nil;
        for _ in 0..1000 {
            v = array(&mut vm, vec![v]);
        }
        let out = display(&vm, v);
        assert!(out.starts_with("[[[[") && out.contains("..."));
        assert!(out.len() < 1000);
    }

    #[test]
    fn structs_and_ranges() {
        let mut vm = vm();
        let ty = vm
            .alloc(StructType {
                name: "Vec2".into(),
                fields: Box::new(["x".into(), "y".into()]),
                has_default: Box::new([false, false]),
                field_types: Box::new([None, None]),
                init: None,
                methods: Vec::new(),
                key: 0,
            })
            .unwrap();
        vm.push_root(Value::Type(ty));
        let inst = vm
            .alloc(Instance::new(
                &vm.heap,
                ty,
                Box::new([Value::Float(3.0), Value::Nil]),
            ))
            .unwrap();
        let v = Value::Struct(inst);
        vm.push_root(v);
        inst.get_mut(&mut vm.heap).fields[1] = v;
        assert_eq!(display(&vm, v), "Vec2 { x: 3.0, y: Vec2 {...} }");
        assert_eq!(display(&vm, Value::Type(ty)), "<struct Vec2>");
        let empty_ty = vm
            .alloc(StructType {
                name: "E".into(),
                fields: Box::new([]),
                has_default: Box::new([]),
                field_types: Box::new([]),
                init: None,
                methods: Vec::new(),
                key: 0,
            })
            .unwrap();
        vm.push_root(Value::Type(empty_ty));
        let e = vm
            .alloc(Instance::new(&vm.heap, empty_ty, Box::new([])))
            .unwrap();
        assert_eq!(display(&vm, Value::Struct(e)), "E {}");
        for (start, end, step, inclusive, want) in [
            (0, 10, 1, false, "0..10"),
            (0, 10, 1, true, "0..=10"),
            (0, 10, 2, false, "range(0, 10, 2)"),
        ] {
            let r = vm
                .alloc(Range {
                    start,
                    end,
                    step,
                    inclusive,
                })
                .unwrap();
            assert_eq!(display(&vm, Value::Range(r)), want);
        }
    }

    #[test]
    // The tie cases below are exact binary values written out in full on purpose:
    // rounding them shorter would change what they test.
    #[allow(clippy::excessive_precision)]
    fn floats_match_python_repr() {
        // Expected strings are Python 3's repr() of the same floats.
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e20, "1e+20"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345.0, "123456789012345.0"),
            (1234567890123456.0, "1234567890123456.0"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (123.456, "123.456"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (-1.5, "-1.5"),
            (100.0, "100.0"),
            (1.0 / 3.0, "0.3333333333333333"),
            (2.0 / 3.0, "0.6666666666666666"),
            (1e-10, "1e-10"),
            (12345678901234567890.0, "1.2345678901234567e+19"),
            (9007199254740992.0, "9007199254740992.0"),
            (1e100, "1e+100"),
            (2.5e-300, "2.5e-300"),
            (-1e22, "-1e+22"),
            // Ties between two shortest candidates go to the even digit, as in Python.
            (2.9802322387695312e-08, "2.9802322387695312e-08"),
            (900719925474099.25, "900719925474099.2"),
            (86747450022881.625, "86747450022881.62"),
            (0.5, "0.5"),
            (std::f64::consts::PI, "3.141592653589793"),
            (1e-4, "0.0001"),
            (9999999999999998.0, "9999999999999998.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for &(f, want) in cases {
            assert_eq!(format_float(f), want, "format_float({f:e})");
        }
    }
}
