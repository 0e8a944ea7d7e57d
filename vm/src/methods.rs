//! Built-in methods of strings, arrays, maps, numbers, ranges, weak references, channels
//! and tasks.
//!
//! [`lookup`] maps a receiver and a method name to a native (receiver in `args[0]`) or to
//! a function of `prelude.kn` for methods that call back into the script (`map`,
//! `filter`, `reduce`, `sort_by`). Struct instances, struct types and modules are
//! dispatched by the core; `None` lets the core report ``array has no method `foo` ``
//! (or call a function stored in a map under that key).
//!
//! Strings are indexed by byte offsets that must fall on character boundaries; `slice`
//! clamps like JavaScript (negative offsets count from the end). Methods that grow an
//! array's storage report the growth to the heap so collections stay paced.

use std::cmp::Ordering;
use std::sync::Arc;

use kiln_gc::{Gc, Heap};

use crate::builtins::{parse_float_text, parse_int_text, str_array, Args};
use crate::error::{Collection, Fault};
use crate::fault;
use crate::ops::{array_slot, compare, equal, index_error};
use crate::value::{to_key, Array, Map, NativeFn, Value};
use crate::vm::Vm;

/// What a built-in method is implemented by.
#[derive(Clone, Copy, Debug)]
pub enum Method {
    /// A native called with the receiver as `args[0]`.
    Native(NativeFn),
    /// A function of `prelude.kn` (by name) called with the receiver as its first argument.
    Prelude(&'static str),
}

/// The built-in method `name` of `recv`, if it has one.
pub fn lookup(_heap: &Heap, recv: Value, name: &str) -> Option<Method> {
    match recv {
        Value::Str(_) => str_method(name),
        Value::Array(_) => array_method(name),
        Value::Map(_) => map_method(name),
        Value::Int(_) | Value::Float(_) => (name == "to_fixed").then_some(Method::Native(to_fixed)),
        Value::Range(_) => range_method(name),
        Value::Weak(_) => (name == "get").then_some(Method::Native(weak_get)),
        Value::Chan(_) => crate::channel::method(name).map(Method::Native),
        Value::Task(_) => task_method(name).map(Method::Native),
        _ => None,
    }
}

fn task_method(name: &str) -> Option<NativeFn> {
    Some(match name {
        "join" => crate::task::join,
        "done" => crate::task::done,
        "cancel" => crate::task::cancel,
        _ => return None,
    })
}

fn array_method(name: &str) -> Option<Method> {
    use Method::{Native, Prelude};
    Some(match name {
        "len" => Native(array_len),
        "push" => Native(array_push),
        "pop" => Native(array_pop),
        "insert" => Native(array_insert),
        "remove" => Native(array_remove),
        "clear" => Native(array_clear),
        "slice" => Native(array_slice),
        "contains" => Native(array_contains),
        "index_of" => Native(array_index_of),
        "reverse" => Native(array_reverse),
        "sort" => Native(array_sort),
        "join" => Native(array_join),
        "copy" => Native(array_copy),
        "map" => Prelude("array_map"),
        "filter" => Prelude("array_filter"),
        "reduce" => Prelude("array_reduce"),
        "sort_by" => Prelude("array_sort_by"),
        _ => return None,
    })
}

fn map_method(name: &str) -> Option<Method> {
    let f: NativeFn = match name {
        "len" => map_len,
        "keys" => map_keys,
        "values" => map_values,
        "has" => map_has,
        "get" => map_get,
        "remove" => map_remove,
        "clear" => map_clear,
        "copy" => map_copy,
        _ => return None,
    };
    Some(Method::Native(f))
}

fn str_method(name: &str) -> Option<Method> {
    let f: NativeFn = match name {
        "len" => str_len,
        "chars" => str_chars,
        "upper" => str_upper,
        "lower" => str_lower,
        "trim" => str_trim,
        "split" => str_split,
        "contains" => str_contains,
        "starts_with" => str_starts_with,
        "ends_with" => str_ends_with,
        "find" => str_find,
        "replace" => str_replace,
        "slice" => str_slice,
        "repeat" => str_repeat,
        "parse_int" => str_parse_int,
        "parse_float" => str_parse_float,
        _ => return None,
    };
    Some(Method::Native(f))
}

fn range_method(name: &str) -> Option<Method> {
    match name {
        "len" => Some(Method::Native(range_len)),
        "contains" => Some(Method::Native(range_contains)),
        _ => None,
    }
}

// ----- receivers and shared helpers ---------------------------------------------------

/// Lookup dispatches on the receiver's type, so a mismatch here is a VM bug.
fn wrong_receiver(name: &str) -> Fault {
    fault!("internal error: {name} called on the wrong receiver")
}

fn array_args<'a>(
    name: &'static str,
    args: &'a [Value],
    min: usize,
    max: usize,
) -> Result<(Gc<Array>, Args<'a>), Fault> {
    match Args::method(name, args, min, max)? {
        (Value::Array(arr), a) => Ok((arr, a)),
        _ => Err(wrong_receiver(name)),
    }
}

fn map_args<'a>(
    name: &'static str,
    args: &'a [Value],
    min: usize,
    max: usize,
) -> Result<(Gc<Map>, Args<'a>), Fault> {
    match Args::method(name, args, min, max)? {
        (Value::Map(m), a) => Ok((m, a)),
        _ => Err(wrong_receiver(name)),
    }
}

/// A string receiver's text (a cheap shared handle, so the heap stays free to allocate).
fn str_args<'a>(
    vm: &Vm,
    name: &'static str,
    args: &'a [Value],
    min: usize,
    max: usize,
) -> Result<(Arc<str>, Args<'a>), Fault> {
    match Args::method(name, args, min, max)? {
        (Value::Str(s), a) => Ok((s.get(&vm.heap).text.clone(), a)),
        _ => Err(wrong_receiver(name)),
    }
}

fn int_value(n: usize) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Runs `f` on the array's items and reports any growth of their storage to the heap.
fn edit_items<R>(vm: &mut Vm, arr: Gc<Array>, f: impl FnOnce(&mut Vec<Value>) -> R) -> R {
    let items = &mut arr.get_mut(&mut vm.heap).items;
    let before = items.capacity();
    let r = f(items);
    let grown = items.capacity() as isize - before as isize;
    vm.heap
        .account(grown * std::mem::size_of::<Value>() as isize);
    r
}

/// An offset into a sequence of `len`, negative counting from the end, clamped to
/// `0..=len`.
fn clamp_offset(len: usize, i: i64) -> usize {
    let back = usize::try_from(i.unsigned_abs()).unwrap_or(usize::MAX);
    if i < 0 {
        len.saturating_sub(back)
    } else {
        back.min(len)
    }
}

/// The clamped `(start, end)` of `slice(start?, end?)` over `len` items or bytes.
fn slice_bounds(heap: &Heap, a: &Args, len: usize) -> Result<(usize, usize), Fault> {
    let start = match a.opt(0) {
        Some(_) => clamp_offset(len, a.int(heap, 0)?),
        None => 0,
    };
    let end = match a.opt(1) {
        Some(_) => clamp_offset(len, a.int(heap, 1)?),
        None => len,
    };
    Ok((start, end.max(start)))
}

// ----- arrays ---------------------------------------------------------------------

fn array_len(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, _) = array_args("len", args, 0, 0)?;
    Ok(int_value(arr.get(&vm.heap).items.len()))
}

fn array_push(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, a) = array_args("push", args, 1, 1)?;
    vm.grow_array(arr, 1)?;
    arr.get_mut(&mut vm.heap).items.push(a.get(0));
    Ok(Value::Nil)
}

fn array_pop(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, _) = array_args("pop", args, 0, 0)?;
    Ok(edit_items(vm, arr, Vec::pop).unwrap_or(Value::Nil))
}

/// `insert(i, x)`: `i` may equal the length (append); negative counts from the end.
fn array_insert(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, a) = array_args("insert", args, 2, 2)?;
    let i = a.int(&vm.heap, 0)?;
    let len = arr.get(&vm.heap).items.len();
    let pos = if i < 0 {
        i.checked_add(len as i64)
    } else {
        Some(i)
    };
    let pos = pos
        .and_then(|p| usize::try_from(p).ok())
        .filter(|&p| p <= len)
        .ok_or_else(|| index_error(i, len))?;
    vm.grow_array(arr, 1)?;
    arr.get_mut(&mut vm.heap).items.insert(pos, a.get(1));
    Ok(Value::Nil)
}

fn array_remove(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, a) = array_args("remove", args, 1, 1)?;
    let i = a.int(&vm.heap, 0)?;
    let len = arr.get(&vm.heap).items.len();
    let slot = array_slot(len, i).ok_or_else(|| index_error(i, len))?;
    Ok(edit_items(vm, arr, |items| items.remove(slot)))
}

fn array_clear(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, _) = array_args("clear", args, 0, 0)?;
    edit_items(vm, arr, Vec::clear);
    Ok(Value::Nil)
}

fn array_slice(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, a) = array_args("slice", args, 0, 2)?;
    let items = &arr.get(&vm.heap).items;
    let (start, end) = slice_bounds(&vm.heap, &a, items.len())?;
    let part = items[start..end].to_vec();
    vm.new_array(part)
}

fn array_position(heap: &Heap, arr: Gc<Array>, target: Value) -> Option<usize> {
    arr.get(heap)
        .items
        .iter()
        .position(|&x| equal(heap, x, target))
}

fn array_contains(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, a) = array_args("contains", args, 1, 1)?;
    Ok(Value::Bool(
        array_position(&vm.heap, arr, a.get(0)).is_some(),
    ))
}

fn array_index_of(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, a) = array_args("index_of", args, 1, 1)?;
    Ok(array_position(&vm.heap, arr, a.get(0)).map_or(Value::Nil, int_value))
}

fn array_reverse(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, _) = array_args("reverse", args, 0, 0)?;
    edit_items(vm, arr, |items| items.reverse());
    Ok(Value::Nil)
}

/// Sorts numbers (ints and floats together) or strings, stably, in place.
fn array_sort(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, _) = array_args("sort", args, 0, 0)?;
    let mut items = arr.get(&vm.heap).items.clone();
    check_sortable(&vm.heap, &items)?;
    let heap = &vm.heap;
    items.sort_by(|&x, &y| sort_order(heap, x, y));
    edit_items(vm, arr, |old| {
        old.clear();
        old.extend(items);
    });
    Ok(Value::Nil)
}

/// All numbers or all strings; otherwise the error comparing the first item with the
/// first one of another kind (`cannot compare str and int`).
fn check_sortable(heap: &Heap, items: &[Value]) -> Result<(), Fault> {
    let kind = |v: Value| match v {
        Value::Int(_) | Value::Float(_) => Some(0),
        Value::Str(_) => Some(1),
        _ => None,
    };
    let Some((&first, rest)) = items.split_first() else {
        return Ok(());
    };
    for &v in rest {
        if kind(first).is_none() || kind(first) != kind(v) {
            compare(heap, first, v)?;
        }
    }
    Ok(())
}

/// A total order for sortable items: the language's order, with nan after every
/// number (Rust's sort may panic on an inconsistent order).
fn sort_order(heap: &Heap, x: Value, y: Value) -> Ordering {
    let is_nan = |v: Value| matches!(v, Value::Float(f) if f.is_nan());
    match compare(heap, x, y) {
        Ok(Some(o)) => o,
        _ => is_nan(x).cmp(&is_nan(y)),
    }
}

fn array_join(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, a) = array_args("join", args, 1, 1)?;
    let sep = a.str(&vm.heap, 0)?;
    let mut out = String::new();
    for (i, &v) in arr.get(&vm.heap).items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        match v.as_str(&vm.heap) {
            Some(s) => out.push_str(s),
            None => out.push_str(&vm.display(v)),
        }
        vm.check_size(Collection::String, out.len())?;
    }
    vm.new_string(out)
}

fn array_copy(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (arr, _) = array_args("copy", args, 0, 0)?;
    let items = arr.get(&vm.heap).items.clone();
    vm.new_array(items)
}

// ----- maps -----------------------------------------------------------------------

fn map_len(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (m, _) = map_args("len", args, 0, 0)?;
    Ok(int_value(m.get(&vm.heap).entries.len()))
}

fn map_keys(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (m, _) = map_args("keys", args, 0, 0)?;
    let keys = m.get(&vm.heap).entries.values().map(|&(k, _)| k).collect();
    vm.new_array(keys)
}

fn map_values(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (m, _) = map_args("values", args, 0, 0)?;
    let values = m.get(&vm.heap).entries.values().map(|&(_, v)| v).collect();
    vm.new_array(values)
}

/// The value stored under argument 0 of `a`, if any.
fn map_entry(vm: &Vm, m: Gc<Map>, a: &Args) -> Result<Option<Value>, Fault> {
    let key = to_key(a.get(0), &vm.heap)?;
    Ok(m.get(&vm.heap).entries.get(&key).map(|&(_, v)| v))
}

fn map_has(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (m, a) = map_args("has", args, 1, 1)?;
    Ok(Value::Bool(map_entry(vm, m, &a)?.is_some()))
}

/// `get(k, default)`: the default only when the key is absent (a stored nil is kept).
fn map_get(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (m, a) = map_args("get", args, 1, 2)?;
    Ok(map_entry(vm, m, &a)?.unwrap_or(a.get(1)))
}

/// Removes a key, keeping the order of the others; returns its value or nil.
fn map_remove(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (m, a) = map_args("remove", args, 1, 1)?;
    let key = to_key(a.get(0), &vm.heap)?;
    let removed = m.get_mut(&mut vm.heap).entries.shift_remove(&key);
    Ok(removed.map_or(Value::Nil, |(_, v)| v))
}

fn map_clear(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (m, _) = map_args("clear", args, 0, 0)?;
    m.get_mut(&mut vm.heap).entries.clear();
    Ok(Value::Nil)
}

fn map_copy(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (m, _) = map_args("copy", args, 0, 0)?;
    let entries = m.get(&vm.heap).entries.clone();
    vm.new_map(Map { entries })
}

// ----- strings --------------------------------------------------------------------

fn str_len(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, _) = str_args(vm, "len", args, 0, 0)?;
    Ok(int_value(s.len()))
}

/// Each character as its own string.
fn chars_of(s: &str) -> impl Iterator<Item = &str> {
    s.split_inclusive(|_| true)
}

fn str_chars(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, _) = str_args(vm, "chars", args, 0, 0)?;
    str_array(vm, chars_of(&s))
}

fn str_upper(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, _) = str_args(vm, "upper", args, 0, 0)?;
    vm.new_string(s.to_uppercase())
}

fn str_lower(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, _) = str_args(vm, "lower", args, 0, 0)?;
    vm.new_string(s.to_lowercase())
}

fn str_trim(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, _) = str_args(vm, "trim", args, 0, 0)?;
    vm.new_str(s.trim())
}

/// `split(sep)`; `split("")` splits into characters and `split()` on runs of whitespace.
fn str_split(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, a) = str_args(vm, "split", args, 0, 1)?;
    let sep: Option<Arc<str>> = match a.opt(0) {
        Some(_) => Some(a.str(&vm.heap, 0)?.into()),
        None => None,
    };
    match sep.as_deref() {
        None => str_array(vm, s.split_whitespace()),
        Some("") => str_array(vm, chars_of(&s)),
        Some(sep) => str_array(vm, s.split(sep)),
    }
}

/// A string predicate taking one string argument.
fn str_test(
    vm: &Vm,
    name: &'static str,
    args: &[Value],
    f: fn(&str, &str) -> bool,
) -> Result<Value, Fault> {
    let (s, a) = str_args(vm, name, args, 1, 1)?;
    Ok(Value::Bool(f(&s, a.str(&vm.heap, 0)?)))
}

fn str_contains(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    str_test(vm, "contains", args, |s, x| s.contains(x))
}

fn str_starts_with(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    str_test(vm, "starts_with", args, |s, x| s.starts_with(x))
}

fn str_ends_with(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    str_test(vm, "ends_with", args, |s, x| s.ends_with(x))
}

fn str_find(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, a) = str_args(vm, "find", args, 1, 1)?;
    Ok(s.find(a.str(&vm.heap, 0)?).map_or(Value::Nil, int_value))
}

/// Replaces every occurrence (an empty pattern matches between all characters).
fn str_replace(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, a) = str_args(vm, "replace", args, 2, 2)?;
    // Owned, because making room may collect (the arguments themselves stay rooted).
    let (from, to) = (
        a.str(&vm.heap, 0)?.to_owned(),
        a.str(&vm.heap, 1)?.to_owned(),
    );
    let (from, to) = (from.as_str(), to.as_str());
    if to.len() > from.len() {
        let hits = if from.is_empty() {
            s.chars().count() + 1
        } else {
            s.matches(from).count()
        };
        let size = hits
            .checked_mul(to.len() - from.len())
            .and_then(|extra| extra.checked_add(s.len()));
        vm.room_for_string(size.unwrap_or(usize::MAX))?;
    }
    let out = s.replace(from, to);
    vm.new_string(out)
}

/// `slice(start, end?)` by byte offsets, which must fall on character boundaries.
fn str_slice(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, a) = str_args(vm, "slice", args, 0, 2)?;
    let (start, end) = slice_bounds(&vm.heap, &a, s.len())?;
    let bad = [start, end].into_iter().find(|&i| !s.is_char_boundary(i));
    if let Some(i) = bad {
        return Err(fault!("slice index {i} is not on a character boundary"));
    }
    vm.new_str(&s[start..end])
}

fn str_repeat(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, a) = str_args(vm, "repeat", args, 1, 1)?;
    let n = a.int(&vm.heap, 0)?;
    let n = usize::try_from(n).map_err(|_| fault!("repeat count cannot be negative, got {n}"))?;
    vm.room_for_string(s.len().saturating_mul(n))?;
    vm.new_string(s.repeat(n))
}

fn str_parse_int(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, _) = str_args(vm, "parse_int", args, 0, 0)?;
    Ok(parse_int_text(&s).map_or(Value::Nil, Value::Int))
}

fn str_parse_float(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (s, _) = str_args(vm, "parse_float", args, 0, 0)?;
    Ok(parse_float_text(&s).map_or(Value::Nil, Value::Float))
}

// ----- numbers, ranges, weak references ----------------------------------------------

/// The most digits `to_fixed` writes after the point.
const MAX_FIXED_DIGITS: i64 = 100;

/// `x.to_fixed(n)`: `n` digits after the point, rounded as Python's `'%.nf'` does
/// (exactly, halves to even).
fn to_fixed(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (recv, a) = Args::method("to_fixed", args, 1, 1)?;
    let n = a.int(&vm.heap, 0)?;
    if !(0..=MAX_FIXED_DIGITS).contains(&n) {
        return Err(fault!(
            "to_fixed expects 0 to {MAX_FIXED_DIGITS} digits, got {n}"
        ));
    }
    let n = n as usize;
    let text = match recv {
        // Ints are written exactly, even beyond 2^53.
        Value::Int(i) if n == 0 => i.to_string(),
        Value::Int(i) => format!("{i}.{}", "0".repeat(n)),
        Value::Float(f) if f.is_nan() => "nan".to_string(),
        Value::Float(f) => format!("{f:.n$}"),
        _ => return Err(wrong_receiver("to_fixed")),
    };
    vm.new_string(text)
}

fn range_len(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    match Args::method("len", args, 0, 0)? {
        (Value::Range(r), _) => Ok(Value::Int(
            i64::try_from(r.get(&vm.heap).len()).unwrap_or(i64::MAX),
        )),
        _ => Err(wrong_receiver("len")),
    }
}

/// Whether the range yields `x` (a number equal to one of its ints).
fn range_contains(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let (Value::Range(r), a) = Args::method("contains", args, 1, 1)? else {
        return Err(wrong_receiver("contains"));
    };
    let x = match a.get(0) {
        Value::Int(i) => i,
        Value::Float(f) if f.fract() == 0.0 => match crate::builtins::float_to_int(f) {
            Ok(i) => i,
            Err(_) => return Ok(Value::Bool(false)),
        },
        _ => return Ok(Value::Bool(false)),
    };
    let r = r.get(&vm.heap);
    let offset = x as i128 - r.start as i128;
    let step = r.step as i128;
    let hit = offset % step == 0 && (0..r.exact_len() as i128).contains(&(offset / step));
    Ok(Value::Bool(hit))
}

fn weak_get(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    match Args::method("get", args, 0, 0)? {
        (Value::Weak(w), _) => Ok(w.get(&vm.heap).target),
        _ => Err(wrong_receiver("get")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::{call, text, vm};

    /// `recv.method(args)` through [`lookup`], displayed.
    fn run(vm: &mut Vm, recv: Value, name: &str, args: &[Value]) -> Result<String, Fault> {
        let Some(Method::Native(f)) = lookup(&vm.heap, recv, name) else {
            return Err(fault!("no native method {name}"));
        };
        let mut all = vec![recv];
        all.extend_from_slice(args);
        let v = call(vm, f, &all)?;
        Ok(vm.display(v))
    }

    fn shown(r: Result<String, Fault>) -> String {
        r.unwrap_or_else(|e| format!("error: {e:?}"))
    }

    fn fails(r: Result<String, Fault>) -> String {
        match r {
            Err(Fault::Error(m)) => m,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn string_methods() {
        let mut vm = vm();
        let s = text(&mut vm, "h\u{e9}llo w\u{f6}rld");
        let (sp, empty, comma) = (text(&mut vm, " "), text(&mut vm, ""), text(&mut vm, ","));
        assert_eq!(shown(run(&mut vm, s, "len", &[])), "13");
        assert_eq!(
            shown(run(&mut vm, s, "slice", &[Value::Int(1), Value::Int(3)])),
            "\u{e9}"
        );
        assert_eq!(
            shown(run(&mut vm, s, "slice", &[Value::Int(-6)])),
            "w\u{f6}rld"
        );
        assert_eq!(
            shown(run(&mut vm, s, "slice", &[Value::Int(10), Value::Int(2)])),
            ""
        );
        assert_eq!(
            fails(run(&mut vm, s, "slice", &[Value::Int(0), Value::Int(2)])),
            "slice index 2 is not on a character boundary"
        );
        assert_eq!(shown(run(&mut vm, s, "find", &[sp])), "6");
        assert_eq!(
            shown(run(&mut vm, s, "split", &[sp])),
            "[\"h\u{e9}llo\", \"w\u{f6}rld\"]"
        );
        assert_eq!(
            shown(run(&mut vm, s, "split", &[])),
            "[\"h\u{e9}llo\", \"w\u{f6}rld\"]"
        );
        assert_eq!(
            shown(run(&mut vm, comma, "split", &[comma])),
            "[\"\", \"\"]"
        );
        assert_eq!(shown(run(&mut vm, comma, "split", &[empty])), "[\",\"]");
        assert_eq!(shown(run(&mut vm, comma, "replace", &[empty, sp])), " , ");
        assert_eq!(
            shown(run(&mut vm, s, "upper", &[])),
            "H\u{c9}LLO W\u{d6}RLD"
        );
        assert_eq!(shown(run(&mut vm, empty, "chars", &[])), "[]");
        let big = Value::Int(i64::MAX);
        assert!(matches!(
            run(&mut vm, s, "repeat", &[big]),
            Err(Fault::Limit(crate::Limit::Size(Collection::String)))
        ));
        assert!(fails(run(&mut vm, s, "repeat", &[Value::Int(-1)])).contains("negative"));
        assert_eq!(
            fails(run(&mut vm, s, "find", &[Value::Int(1)])),
            "find expects str for argument 1, got int"
        );
        let num = text(&mut vm, " -17 ");
        assert_eq!(shown(run(&mut vm, num, "parse_int", &[])), "-17");
        assert_eq!(shown(run(&mut vm, s, "parse_float", &[])), "nil");
    }

    #[test]
    fn array_methods() {
        let mut vm = vm();
        let items = vec![
            Value::Float(f64::NAN),
            Value::Int(3),
            Value::Float(-0.5),
            Value::Int(1),
        ];
        let arr = vm.new_array(items).unwrap();
        vm.push_root(arr);
        assert_eq!(shown(run(&mut vm, arr, "sort", &[])), "nil");
        assert_eq!(vm.display(arr), "[-0.5, 1, 3, nan]");
        assert_eq!(
            shown(run(&mut vm, arr, "index_of", &[Value::Float(3.0)])),
            "2"
        );
        assert_eq!(
            shown(run(&mut vm, arr, "slice", &[Value::Int(-2)])),
            "[3, nan]"
        );
        assert_eq!(
            fails(run(&mut vm, arr, "remove", &[Value::Int(4)])),
            "index 4 out of range for array of length 4"
        );
        assert_eq!(
            fails(run(&mut vm, arr, "insert", &[Value::Int(5), Value::Nil])),
            "index 5 out of range for array of length 4"
        );
        assert_eq!(
            shown(run(
                &mut vm,
                arr,
                "insert",
                &[Value::Int(-1), Value::Int(9)]
            )),
            "nil"
        );
        assert_eq!(vm.display(arr), "[-0.5, 1, 3, 9, nan]");
        let sep = text(&mut vm, "|");
        assert_eq!(shown(run(&mut vm, arr, "join", &[sep])), "-0.5|1|3|9|nan");
        let s = text(&mut vm, "a");
        let mixed = vm.new_array(vec![Value::Int(1), s]).unwrap();
        vm.push_root(mixed);
        assert_eq!(
            fails(run(&mut vm, mixed, "sort", &[])),
            "cannot compare int and str"
        );
        assert_eq!(shown(run(&mut vm, mixed, "pop", &[])), "a");
        assert!(matches!(
            lookup(&vm.heap, arr, "sort_by"),
            Some(Method::Prelude("array_sort_by"))
        ));
        assert!(lookup(&vm.heap, arr, "nope").is_none());
    }

    #[test]
    fn numbers_ranges_and_maps() {
        let mut vm = vm();
        for (x, n, want) in [
            (Value::Float(10.0 / 3.0), 3, "3.333"),
            (Value::Float(0.125), 2, "0.12"),
            (Value::Float(-1.5), 1, "-1.5"),
            (Value::Float(f64::NAN), 1, "nan"),
            (Value::Float(f64::NEG_INFINITY), 1, "-inf"),
            (Value::Int(5), 2, "5.00"),
            (Value::Int(i64::MAX), 0, "9223372036854775807"),
        ] {
            assert_eq!(shown(run(&mut vm, x, "to_fixed", &[Value::Int(n)])), want);
        }
        let r = vm
            .alloc(crate::value::Range {
                start: 10,
                end: 0,
                step: -3,
                inclusive: false,
            })
            .unwrap();
        let r = Value::Range(r);
        vm.push_root(r);
        assert_eq!(shown(run(&mut vm, r, "len", &[])), "4");
        assert_eq!(shown(run(&mut vm, r, "contains", &[Value::Int(4)])), "true");
        assert_eq!(
            shown(run(&mut vm, r, "contains", &[Value::Float(7.0)])),
            "true"
        );
        assert_eq!(
            shown(run(&mut vm, r, "contains", &[Value::Int(0)])),
            "false"
        );
        let m = vm.new_map(Map::default()).unwrap();
        vm.push_root(m);
        let k = text(&mut vm, "k");
        if let Value::Map(g) = m {
            let key = to_key(k, &vm.heap).unwrap_or(crate::value::Key::Int(0));
            g.get_mut(&mut vm.heap).entries.insert(key, (k, Value::Nil));
        }
        assert_eq!(shown(run(&mut vm, m, "get", &[k, Value::Int(1)])), "nil");
        assert_eq!(
            shown(run(&mut vm, m, "get", &[Value::Int(2), Value::Int(1)])),
            "1"
        );
        assert_eq!(shown(run(&mut vm, m, "has", &[k])), "true");
        assert!(fails(run(&mut vm, m, "has", &[m])).contains("map key"));
        assert_eq!(shown(run(&mut vm, m, "remove", &[k])), "nil");
        assert_eq!(shown(run(&mut vm, m, "len", &[])), "0");
    }

    #[test]
    fn offsets_clamp_like_javascript() {
        assert_eq!(clamp_offset(5, 2), 2);
        assert_eq!(clamp_offset(5, 9), 5);
        assert_eq!(clamp_offset(5, -2), 3);
        assert_eq!(clamp_offset(5, -9), 0);
        assert_eq!(clamp_offset(5, i64::MIN), 0);
        assert_eq!(clamp_offset(5, i64::MAX), 5);
    }

    #[test]
    fn chars_split_on_characters() {
        assert_eq!(chars_of("a😀é").collect::<Vec<_>>(), ["a", "😀", "é"]);
        assert_eq!(chars_of("").count(), 0);
    }
}
