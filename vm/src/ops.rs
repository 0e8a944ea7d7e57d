//! The semantics of operators and object access: numeric rules, equality and ordering,
//! indexing, fields, method dispatch, iteration. The interpreter inlines the common
//! int/float cases and calls these for everything else.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use kiln_gc::{Gc, Heap};

use crate::bytecode::{opc, Instr};
use crate::error::Fault;
use crate::fault;
use crate::interp::check_type;
use crate::methods::{self, Method};
use crate::program::{Constant, Proto};
use crate::value::*;
use crate::vm::Vm;

/// Arithmetic operators with a shared slow path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    IDiv,
    Mod,
    Pow,
}

impl Arith {
    pub fn from_op(op: u8) -> Arith {
        match op {
            opc::Add | opc::AddK => Arith::Add,
            opc::Sub | opc::SubK => Arith::Sub,
            opc::Mul | opc::MulK => Arith::Mul,
            opc::Div | opc::DivK => Arith::Div,
            opc::IDiv | opc::IDivK => Arith::IDiv,
            opc::Mod | opc::ModK => Arith::Mod,
            _ => Arith::Pow,
        }
    }

    fn describe(self, a: &str, b: &str) -> String {
        match self {
            Arith::Add => format!("cannot add {a} and {b}"),
            Arith::Sub => format!("cannot subtract {a} and {b}"),
            Arith::Mul => format!("cannot multiply {a} and {b}"),
            Arith::Div => format!("cannot divide {a} and {b}"),
            Arith::IDiv => format!("cannot apply `~/` to {a} and {b}"),
            Arith::Mod => format!("cannot apply `%` to {a} and {b}"),
            Arith::Pow => format!("cannot apply `**` to {a} and {b}"),
        }
    }
}

fn as_f64(v: Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(i as f64),
        Value::Float(f) => Some(f),
        _ => None,
    }
}

/// Floor division of ints (`~/`), wrapping on `MIN ~/ -1`.
#[inline]
pub fn int_floor_div(a: i64, b: i64) -> Result<i64, Fault> {
    if b == 0 {
        return Err(fault!("division by zero"));
    }
    let q = a.wrapping_div(b);
    Ok(if (a.wrapping_rem(b) != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    })
}

/// Floored modulo of ints: the result has the divisor's sign.
#[inline]
pub fn int_mod(a: i64, b: i64) -> Result<i64, Fault> {
    if b == 0 {
        return Err(fault!("division by zero"));
    }
    let r = a.wrapping_rem(b);
    Ok(if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    })
}

pub fn float_mod(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
        r + b
    } else {
        r
    }
}

/// Wrapping integer power by squaring (exponent >= 0).
pub fn int_pow(mut base: i64, mut exp: i64) -> i64 {
    let mut acc: i64 = 1;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        exp >>= 1;
    }
    acc
}

/// The full arithmetic semantics (numbers, string `+`, array `+`).
pub fn arith(vm: &mut Vm, op: Arith, a: Value, b: Value) -> Result<Value, Fault> {
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        return Ok(match op {
            Arith::Add => Value::Int(x.wrapping_add(y)),
            Arith::Sub => Value::Int(x.wrapping_sub(y)),
            Arith::Mul => Value::Int(x.wrapping_mul(y)),
            Arith::Div => Value::Float(x as f64 / y as f64),
            Arith::IDiv => Value::Int(int_floor_div(x, y)?),
            Arith::Mod => Value::Int(int_mod(x, y)?),
            Arith::Pow if y >= 0 => Value::Int(int_pow(x, y)),
            Arith::Pow => Value::Float((x as f64).powf(y as f64)),
        });
    }
    if let (Some(x), Some(y)) = (as_f64(a), as_f64(b)) {
        return Ok(Value::Float(match op {
            Arith::Add => x + y,
            Arith::Sub => x - y,
            Arith::Mul => x * y,
            Arith::Div => x / y,
            Arith::IDiv => (x / y).floor(),
            Arith::Mod => float_mod(x, y),
            Arith::Pow => x.powf(y),
        }));
    }
    if op == Arith::Add {
        match (a, b) {
            (Value::Str(_), _) | (_, Value::Str(_)) => return concat(vm, &[a, b]),
            (Value::Array(x), Value::Array(y)) => {
                let mut items = x.get(&vm.heap).items.clone();
                items.extend_from_slice(&y.get(&vm.heap).items);
                return vm.new_array(items);
            }
            _ => {}
        }
    }
    Err(Fault::Error(
        op.describe(a.type_name(&vm.heap), b.type_name(&vm.heap)),
    ))
}

/// The display forms of `parts` joined into a new string (`x + y` with a string side,
/// interpolation, `str`). The strings among the parts are measured against the cap
/// before anything is copied, and the result against the cap and the heap before it
/// is allocated, so runaway doubling stops at its limit instead of exhausting memory.
/// The text is built in the machine's scratch buffer, so the result is the one
/// allocation.
pub fn concat(vm: &mut Vm, parts: &[Value]) -> Result<Value, Fault> {
    let strings = parts
        .iter()
        .map(|v| v.as_str(&vm.heap).map_or(0, str::len))
        .fold(0, usize::saturating_add);
    vm.room_for_string(strings)?;
    let mut text = vm.take_scratch();
    text.try_reserve(strings)
        .map_err(|_| crate::limits::out_of_memory())?;
    for &v in parts {
        crate::display::display_into(vm, v, &mut text);
    }
    let result = vm
        .room_for_string(text.len())
        .and_then(|()| vm.new_str(&text));
    vm.put_scratch(text);
    result
}

/// `& | ^ << >>` on ints.
pub fn bitwise(vm: &Vm, op: u8, a: Value, b: Value) -> Result<Value, Fault> {
    let (Value::Int(x), Value::Int(y)) = (a, b) else {
        let sym = match op {
            opc::BAnd => "&",
            opc::BOr => "|",
            opc::BXor => "^",
            opc::Shl => "<<",
            _ => ">>",
        };
        return Err(fault!(
            "cannot apply `{sym}` to {} and {}",
            a.type_name(&vm.heap),
            b.type_name(&vm.heap)
        ));
    };
    let shift = (y & 63) as u32;
    Ok(Value::Int(match op {
        opc::BAnd => x & y,
        opc::BOr => x | y,
        opc::BXor => x ^ y,
        opc::Shl => x.wrapping_shl(shift),
        _ => x.wrapping_shr(shift),
    }))
}

/// Exact comparison of an int with a float (no rounding of large ints).
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // 2^63: the first float above every i64.
    if f >= 9_223_372_036_854_775_808.0 {
        return Some(Ordering::Less);
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    match i.cmp(&(t as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)),
        o => Some(o),
    }
}

/// `==`: numbers by value, strings by content, everything else by identity.
pub fn equal(heap: &Heap, a: Value, b: Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => {
            cmp_int_float(i, f) == Some(Ordering::Equal)
        }
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => {
            if x == y {
                return true;
            }
            let (x, y) = (x.get(heap), y.get(heap));
            x.hash == y.hash && x.text == y.text
        }
        // Copies of one channel or task in different heaps are the same channel or task.
        (Value::Chan(x), Value::Chan(y)) => Arc::ptr_eq(&x.get(heap).chan, &y.get(heap).chan),
        (Value::Task(x), Value::Task(y)) => Arc::ptr_eq(&x.get(heap).task, &y.get(heap).task),
        (Value::Host(x), Value::Host(y)) => Arc::ptr_eq(&x.get(heap).cell, &y.get(heap).cell),
        _ => match (a.heap_addr(), b.heap_addr()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// Ordering of numbers and of strings; `None` for NaN; an error for other types.
pub fn compare(heap: &Heap, a: Value, b: Value) -> Result<Option<Ordering>, Fault> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(&y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(&y),
        (Value::Int(i), Value::Float(f)) => cmp_int_float(i, f),
        (Value::Float(f), Value::Int(i)) => cmp_int_float(i, f).map(Ordering::reverse),
        (Value::Str(x), Value::Str(y)) => {
            Some(x.get(heap).text.as_bytes().cmp(y.get(heap).text.as_bytes()))
        }
        _ => {
            return Err(fault!(
                "cannot compare {} and {}",
                a.type_name(heap),
                b.type_name(heap)
            ))
        }
    })
}

pub fn less(heap: &Heap, a: Value, b: Value) -> Result<bool, Fault> {
    Ok(compare(heap, a, b)? == Some(Ordering::Less))
}

pub fn less_eq(heap: &Heap, a: Value, b: Value) -> Result<bool, Fault> {
    Ok(matches!(
        compare(heap, a, b)?,
        Some(Ordering::Less | Ordering::Equal)
    ))
}

pub fn greater(heap: &Heap, a: Value, b: Value) -> Result<bool, Fault> {
    Ok(compare(heap, a, b)? == Some(Ordering::Greater))
}

pub fn greater_eq(heap: &Heap, a: Value, b: Value) -> Result<bool, Fault> {
    Ok(matches!(
        compare(heap, a, b)?,
        Some(Ordering::Greater | Ordering::Equal)
    ))
}

/// Range bounds and step as ints.
pub fn range_ints(heap: &Heap, s: Value, e: Value, step: Value) -> Result<(i64, i64, i64), Fault> {
    match (s, e, step) {
        (Value::Int(s), Value::Int(e), Value::Int(st)) => {
            if st == 0 {
                Err(fault!("range step cannot be 0"))
            } else {
                Ok((s, e, st))
            }
        }
        _ => {
            let bad = [s, e, step]
                .into_iter()
                .find(|v| !matches!(v, Value::Int(_)))
                .unwrap_or(Value::Nil);
            Err(fault!(
                "range bounds must be ints, got {}",
                bad.type_name(heap)
            ))
        }
    }
}

/// Whether a numeric loop at `i` (stepping by `step`, never 0) has not passed `end`.
#[inline]
pub fn in_range(i: i64, end: i64, step: i64, inclusive: bool) -> bool {
    match (step > 0, inclusive) {
        (true, false) => i < end,
        (true, true) => i <= end,
        (false, false) => i > end,
        (false, true) => i >= end,
    }
}

/// Position of index `i` (negative counts from the end) in a sequence of `len`.
#[inline]
pub fn array_slot(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { i.checked_add(len as i64)? } else { i };
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

pub fn index_error(i: i64, len: usize) -> Fault {
    fault!("index {i} out of range for array of length {len}")
}

pub fn check_iterable(heap: &Heap, v: Value) -> Result<(), Fault> {
    match v {
        Value::Array(_) | Value::Map(_) | Value::Str(_) | Value::Range(_) | Value::Chan(_) => {
            Ok(())
        }
        other => Err(fault!("cannot iterate over {}", other.type_name(heap))),
    }
}

/// Advances the iterator at `stack[slot]` (cursor in `slot + 1`), writing the loop
/// variables to `slot + 2` (and `slot + 3` when `two`). False when exhausted.
pub fn iter_next(vm: &mut Vm, slot: usize, two: bool) -> Result<bool, Fault> {
    let Value::Int(cursor) = vm.stack[slot + 1] else {
        return Err(fault!("internal error: iterator cursor"));
    };
    let (first, second) = match vm.stack[slot] {
        Value::Array(a) => {
            let items = &a.get(&vm.heap).items;
            let Some(&v) = items.get(cursor as usize) else {
                return Ok(false);
            };
            (Value::Int(cursor), v)
        }
        Value::Map(m) => {
            let Some((_, (k, v))) = m.get(&vm.heap).entries.get_index(cursor as usize) else {
                return Ok(false);
            };
            (*k, *v)
        }
        Value::Range(r) => {
            let r = r.get(&vm.heap);
            if cursor as u64 >= r.len() {
                return Ok(false);
            }
            (Value::Int(cursor), Value::Int(r.nth(cursor as u64)))
        }
        Value::Str(s) => {
            // The cursor packs the character index (high half) and byte offset (low).
            let (chars, off) = ((cursor >> 32) as usize, (cursor & 0xFFFF_FFFF) as usize);
            let text = &s.get(&vm.heap).text;
            let Some(c) = text.get(off..).and_then(|t| t.chars().next()) else {
                return Ok(false);
            };
            let next = ((chars as i64 + 1) << 32) | (off + c.len_utf8()) as i64;
            vm.stack[slot + 1] = Value::Int(next);
            let cs = vm.char_string(c)?;
            (Value::Int(chars as i64), cs)
        }
        Value::Chan(c) => {
            // A message delivered while the loop waited, or a receive that may wait;
            // nil means closed and drained.
            let v = match vm.pending.take() {
                Some(v) => v,
                None => {
                    let chan = c.get(&vm.heap).chan.clone();
                    crate::channel::receive(vm, &chan)?
                }
            };
            if matches!(v, Value::Nil) {
                return Ok(false);
            }
            (Value::Int(cursor), v)
        }
        other => return Err(fault!("cannot iterate over {}", other.type_name(&vm.heap))),
    };
    if !matches!(vm.stack[slot], Value::Str(_)) {
        vm.stack[slot + 1] = Value::Int(cursor + 1);
    }
    let maps = matches!(vm.stack[slot], Value::Map(_));
    if two {
        vm.stack[slot + 2] = first;
        vm.stack[slot + 3] = second;
    } else {
        vm.stack[slot + 2] = if maps { first } else { second };
    }
    Ok(true)
}

fn struct_name(vm: &Vm, inst: &Instance) -> Arc<str> {
    inst.ty.get(&vm.heap).name.clone()
}

pub fn get_index(vm: &mut Vm, o: Value, i: Value) -> Result<Value, Fault> {
    match o {
        Value::Array(a) => match i {
            Value::Int(i) => {
                let items = &a.get(&vm.heap).items;
                array_slot(items.len(), i)
                    .map(|s| items[s])
                    .ok_or_else(|| index_error(i, items.len()))
            }
            other => Err(fault!(
                "array index must be int, got {}",
                other.type_name(&vm.heap)
            )),
        },
        Value::Map(m) => {
            let key = to_key(i, &vm.heap)?;
            Ok(m.get(&vm.heap)
                .entries
                .get(&key)
                .map_or(Value::Nil, |(_, v)| *v))
        }
        other => Err(fault!("cannot index {}", other.type_name(&vm.heap))),
    }
}

pub fn set_index(vm: &mut Vm, o: Value, i: Value, v: Value) -> Result<(), Fault> {
    match o {
        Value::Array(a) => match i {
            Value::Int(i) => {
                let items = &mut a.get_mut(&mut vm.heap).items;
                let len = items.len();
                let s = array_slot(len, i).ok_or_else(|| index_error(i, len))?;
                items[s] = v;
                Ok(())
            }
            other => Err(fault!(
                "array index must be int, got {}",
                other.type_name(&vm.heap)
            )),
        },
        Value::Map(m) => {
            let key = to_key(i, &vm.heap)?;
            let entries = &m.get(&vm.heap).entries;
            // Only a new key in a full map (or one at its cap) needs room: the lookup is
            // paid on that path alone.
            let full = entries.len() >= entries.capacity()
                || entries.len() >= vm.settings.limits.max_map_len;
            if full && !entries.contains_key(&key) {
                vm.grow_map(m, 1)?;
            }
            // An existing entry keeps the key as first written (`m[1.0] = x` after
            // `m[1] = y` updates the entry of `1`).
            let entries = &mut m.get_mut(&mut vm.heap).entries;
            entries.entry(key).and_modify(|e| e.1 = v).or_insert((i, v));
            Ok(())
        }
        other => Err(fault!("cannot index {}", other.type_name(&vm.heap))),
    }
}

// A member cache word (`Proto::field_cache`) is `key << 16 | METHOD? | ANNOTATED? |
// index`: the struct declaration's key (never 0 in a word), whether the index is into
// the type's methods rather than its fields, whether the field has a type annotation
// (its writes are checked), and the index (below 2^14).
const METHOD: u64 = 1 << 15;
const ANNOTATED: u64 = 1 << 14;
const INDEX: u64 = ANNOTATED - 1;

/// The slot of the field named by constant `k` of `proto` in instances of the struct
/// declaration `key`, if the constant's cache word last saw that declaration.
#[inline(always)]
pub fn field_hit(proto: &Proto, k: usize, key: u64) -> Option<usize> {
    member_hit(proto, k, key, METHOD)
}

/// Like [`field_hit`], for a write: only a field without an annotation.
#[inline(always)]
pub fn plain_field_hit(proto: &Proto, k: usize, key: u64) -> Option<usize> {
    member_hit(proto, k, key, METHOD | ANNOTATED)
}

/// The index in constant `k`'s cache word if it holds declaration `key` with none of
/// the `excluded` bits.
#[inline(always)]
fn member_hit(proto: &Proto, k: usize, key: u64, excluded: u64) -> Option<usize> {
    let word = proto.field_cache.get(k)?.load(Relaxed);
    let hit = word >> 16 == key && word & excluded == 0 && word != 0;
    hit.then_some((word & INDEX) as usize)
}

/// The slot of the field named by constant `k` of `proto` in instances of `ty`, from
/// the constant's cache word or else by name (which refills the cache); `None` when
/// `ty` has no such field.
#[inline(always)]
pub fn cached_field_slot(proto: &Proto, k: usize, ty: &StructType) -> Option<usize> {
    field_hit(proto, k, ty.key).or_else(|| field_slot_by_name(proto, k, ty))
}

/// The slot of the field named by constant `k` of `proto` in instances of `ty` after
/// a cache miss, by name (refilling the cache); `None` when `ty` has no such field, or
/// for a `write` when the field is annotated (its writes are checked).
#[inline(never)]
pub fn field_miss(
    heap: &Heap,
    proto: &Proto,
    k: usize,
    ty: Gc<StructType>,
    write: bool,
) -> Option<usize> {
    let ty = ty.get(heap);
    let slot = cached_field_slot(proto, k, ty)?;
    let annotated = matches!(ty.field_types.get(slot), Some(Some(_)));
    (!(write && annotated)).then_some(slot)
}

#[inline(never)]
fn field_slot_by_name(proto: &Proto, k: usize, ty: &StructType) -> Option<usize> {
    let slot = ty.field_index(const_str(proto, k)?)?;
    let annotated = match ty.field_types.get(slot) {
        Some(Some(_)) => ANNOTATED,
        _ => 0,
    };
    fill_member_cache(proto.field_cache.get(k)?, ty, slot as u64 | annotated)?;
    Some(slot)
}

/// The method named by constant `k` of `proto` of `ty`, like [`cached_field_slot`].
/// Methods are only ever appended to a type, so an index stays valid; a hit is still
/// confirmed by the name (methods of one declaration added in another order).
#[inline(always)]
pub fn cached_method(proto: &Proto, k: usize, ty: &StructType) -> Option<Value> {
    let cache = proto.field_cache.get(k)?;
    let name = const_str(proto, k)?;
    let word = cache.load(Relaxed);
    if word >> 16 == ty.key && word & METHOD != 0 && word != 0 {
        if let Some((n, m)) = ty.methods.get((word & INDEX) as usize) {
            if Arc::ptr_eq(n, name) {
                return Some(*m);
            }
        }
    }
    let i = find_name(ty.methods.iter().map(|(n, _)| &**n), name)?;
    let m = ty.methods[i].1;
    fill_member_cache(cache, ty, METHOD | i as u64);
    Some(m)
}

fn const_str(proto: &Proto, k: usize) -> Option<&Arc<str>> {
    match proto.consts.get(k)? {
        Constant::Str(name) => Some(name),
        _ => None,
    }
}

/// Stores a member's index for `ty` (nothing for uncacheable types or huge indexes);
/// `Some` either way, so callers can chain it.
fn fill_member_cache(cache: &AtomicU64, ty: &StructType, index: u64) -> Option<()> {
    if ty.key != 0 && index & !(METHOD | ANNOTATED) <= INDEX {
        cache.store(ty.key << 16 | index, Relaxed);
    }
    Some(())
}

pub fn get_field(vm: &mut Vm, o: Value, n: &Arc<str>) -> Result<Value, Fault> {
    match o {
        Value::Struct(s) => {
            let inst = s.get(&vm.heap);
            let ty = inst.ty.get(&vm.heap);
            if let Some(i) = ty.field_index(n) {
                return Ok(inst.fields[i]);
            }
            if let Some(m) = ty.method(n) {
                return Ok(m);
            }
            Err(fault!(
                "unknown field `{n}` for struct {}",
                struct_name(vm, inst)
            ))
        }
        Value::Map(m) => {
            let key = Key::Str(n.clone(), hash_str(n));
            Ok(m.get(&vm.heap)
                .entries
                .get(&key)
                .map_or(Value::Nil, |(_, v)| *v))
        }
        Value::Module(m) => {
            let module = m.get(&vm.heap);
            match module.member(n) {
                Some(Value::Undef) => Err(fault!("`{n}` used before initialization")),
                Some(v) => Ok(v),
                None => Err(fault!("module {} has no member `{n}`", module.name)),
            }
        }
        Value::Type(t) => {
            let ty = t.get(&vm.heap);
            ty.method(n)
                .ok_or_else(|| fault!("unknown method `{n}` for struct {}", ty.name))
        }
        Value::Error(e) => error_field(vm, e, n),
        Value::Host(_) => crate::host::get_field(vm, o, n),
        other => Err(fault!(
            "cannot read field `{n}` of {}",
            other.type_name(&vm.heap)
        )),
    }
}

fn error_field(vm: &mut Vm, e: kiln_gc::Gc<ErrorObj>, n: &str) -> Result<Value, Fault> {
    let err = e.get(&vm.heap);
    match n {
        "message" => {
            let m = err.message.clone();
            vm.new_arc_str(m)
        }
        "trace" => {
            let lines: Vec<String> = err.trace.iter().map(|t| t.to_string()).collect();
            crate::builtins::str_array(vm, lines.iter().map(String::as_str))
        }
        "suppressed" => {
            let items = err.suppressed.clone();
            vm.new_array(items)
        }
        _ => Err(fault!("unknown field `{n}` for error")),
    }
}

pub fn set_field(vm: &mut Vm, o: Value, n: &Arc<str>, v: Value) -> Result<(), Fault> {
    match o {
        Value::Struct(s) => {
            let inst = s.get(&vm.heap);
            let ty = inst.ty.get(&vm.heap);
            let Some(i) = ty.field_index(n) else {
                return Err(fault!("unknown field `{n}` for struct {}", ty.name));
            };
            let v = match &ty.field_types[i] {
                Some(ann) => check_type(&vm.heap, &ann.kind, ann.nilable, v).ok_or_else(|| {
                    fault!(
                        "{}: field {n} expected {}, got {}",
                        ty.name,
                        ann.describe(),
                        v.type_name(&vm.heap)
                    )
                })?,
                None => v,
            };
            s.get_mut(&mut vm.heap).fields[i] = v;
            Ok(())
        }
        Value::Map(_) => {
            let key = vm.new_arc_str(n.clone())?;
            // Growing the map may collect: the new key string must survive it.
            vm.with_roots(|vm| {
                vm.push_root(key);
                set_index(vm, o, key, v)
            })
        }
        Value::Host(_) => crate::host::set_field(vm, o, n, v),
        other => Err(fault!(
            "cannot set field `{n}` of {}",
            other.type_name(&vm.heap)
        )),
    }
}

/// `NewStruct`: builds the instance and, if the type has defaults, calls its
/// initialiser (returns true: a frame was pushed).
pub fn new_struct(vm: &mut Vm, a: usize, b: usize, shape: &[Arc<str>]) -> Result<bool, Fault> {
    let Value::Type(ty) = vm.stack[b] else {
        let t = vm.stack[b].type_name(&vm.heap).to_string();
        return Err(fault!("cannot build a struct literal from {t}"));
    };
    let t = ty.get(&vm.heap);
    // The usual literal: every field, in declaration order, none annotated.
    let plain = shape.len() == t.fields.len()
        && shape.iter().zip(&t.fields).all(|(s, f)| Arc::ptr_eq(s, f))
        && t.field_types.iter().all(Option::is_none);
    if plain {
        let fields: Box<[Value]> = vm.stack[b + 1..b + 1 + shape.len()].into();
        return finish_struct(vm, a, b, ty, fields);
    }
    let mut fields: Vec<Value> = t
        .has_default
        .iter()
        .map(|&d| if d { Value::Undef } else { Value::Nil })
        .collect();
    for (j, fname) in shape.iter().enumerate() {
        // Literals usually list the fields in declaration order.
        let i = match t.fields.get(j) {
            Some(f) if Arc::ptr_eq(f, fname) => j,
            _ => match t.field_index(fname) {
                Some(i) => i,
                None => return Err(fault!("unknown field `{fname}` for struct {}", t.name)),
            },
        };
        let v = vm.stack[b + 1 + j];
        fields[i] = match &t.field_types[i] {
            Some(ann) => check_type(&vm.heap, &ann.kind, ann.nilable, v).ok_or_else(|| {
                fault!(
                    "{}: field {fname} expected {}, got {}",
                    t.name,
                    ann.describe(),
                    v.type_name(&vm.heap)
                )
            })?,
            None => v,
        };
    }
    finish_struct(vm, a, b, ty, fields.into_boxed_slice())
}

/// Allocates the instance of `ty` with `fields` and runs its initialiser, if any (see
/// [`new_struct`]).
fn finish_struct(
    vm: &mut Vm,
    a: usize,
    b: usize,
    ty: Gc<StructType>,
    fields: Box<[Value]>,
) -> Result<bool, Fault> {
    let init = ty.get(&vm.heap).init;
    let inst = vm.alloc(Instance::new(&vm.heap, ty, fields))?;
    match init {
        Some(init) => {
            vm.stack[b] = Value::Func(init);
            vm.stack[b + 1] = Value::Struct(inst);
            vm.push_frame(init, b, 1, a)?;
            Ok(true)
        }
        None => {
            vm.stack[a] = Value::Struct(inst);
            Ok(false)
        }
    }
}

/// `NewMap` / `MapExtend`: C key/value pairs from R[B]...
pub fn map_literal(vm: &mut Vm, ins: Instr, base: usize) -> Result<Value, Fault> {
    let start = base + ins.b();
    let mut pairs = Vec::with_capacity(ins.c());
    for p in 0..ins.c() {
        let (k, v) = (vm.stack[start + 2 * p], vm.stack[start + 2 * p + 1]);
        pairs.push((to_key(k, &vm.heap)?, (k, v)));
    }
    let more = pairs.len();
    // A repeated key keeps its first spelling and position, like an assignment.
    let insert_all = |map: &mut Map| {
        for (key, (k, v)) in pairs {
            map.entries
                .entry(key)
                .and_modify(|e| e.1 = v)
                .or_insert((k, v));
        }
    };
    if ins.op_byte() == opc::NewMap {
        let mut map = Map::default();
        insert_all(&mut map);
        vm.new_map(map)
    } else {
        if let Value::Map(m) = vm.stack[base + ins.a()] {
            vm.grow_map(m, more)?;
            insert_all(m.get_mut(&mut vm.heap));
        }
        Ok(Value::Nil)
    }
}

/// `CallMethod`: `stack[a+1]` is the receiver, `nargs` arguments follow it, the result
/// goes to `stack[a]`. Returns true when a script frame was pushed.
pub fn call_method(vm: &mut Vm, a: usize, nargs: usize, name: &str) -> Result<bool, Fault> {
    let recv = vm.stack[a + 1];
    match recv {
        Value::Struct(s) => {
            let ty = s.get(&vm.heap).ty.get(&vm.heap);
            if let Some(m) = ty.method(name) {
                return call_found(vm, m, a, nargs);
            }
            if let Some(i) = ty.field_index(name) {
                let f = s.get(&vm.heap).fields[i];
                return call_without_self(vm, f, a, nargs);
            }
            Err(fault!("unknown method `{name}` for struct {}", ty.name))
        }
        Value::Type(t) => {
            let ty = t.get(&vm.heap);
            match ty.method(name) {
                Some(m) => call_without_self(vm, m, a, nargs),
                None => Err(fault!("unknown method `{name}` for struct {}", ty.name)),
            }
        }
        Value::Module(m) => {
            let module = m.get(&vm.heap);
            match module.member(name) {
                Some(Value::Undef) => Err(fault!("`{name}` used before initialization")),
                Some(f) => call_without_self(vm, f, a, nargs),
                None => Err(fault!("module {} has no member `{name}`", module.name)),
            }
        }
        Value::Host(_) => {
            let m = crate::host::method(vm, recv, name)?;
            let v = vm.call_native(&*m.func, a + 1, nargs + 1)?;
            vm.stack[a] = v;
            Ok(false)
        }
        _ => match methods::lookup(&vm.heap, recv, name) {
            Some(Method::Native(f)) => {
                let v = vm.call_native(&f, a + 1, nargs + 1)?;
                vm.stack[a] = v;
                Ok(false)
            }
            Some(Method::Prelude(fname)) => {
                let f = vm.prelude_fn(fname)?;
                // Check the count here so the message names the method the caller
                // wrote and not the prelude function (whose first parameter is the
                // receiver).
                if let Value::Func(c) = f {
                    let p = vm.program.proto(c.get(&vm.heap).proto);
                    let (req, np) = (p.nrequired as usize - 1, p.nparams as usize - 1);
                    if nargs < req || (nargs > np && !p.has_rest) {
                        let msg = crate::interp::expects(name, req, np, p.has_rest, nargs);
                        return Err(Fault::Error(msg));
                    }
                }
                vm.stack[a] = f;
                vm.call_value(a, nargs + 1, a)
            }
            None => {
                if let Value::Map(m) = recv {
                    let key = Key::Str(name.into(), hash_str(name));
                    return match m.get(&vm.heap).entries.get(&key) {
                        Some(&(_, f)) => call_without_self(vm, f, a, nargs),
                        None => Err(fault!("cannot call nil: map has no method or key `{name}`")),
                    };
                }
                Err(fault!(
                    "{} has no method `{name}`",
                    recv.type_name(&vm.heap)
                ))
            }
        },
    }
}

/// A struct method: with the receiver as `self` if it declares one.
fn call_found(vm: &mut Vm, m: Value, a: usize, nargs: usize) -> Result<bool, Fault> {
    let has_self = match m {
        Value::Func(c) => vm.program.proto(c.get(&vm.heap).proto).has_self,
        _ => false,
    };
    if has_self {
        vm.stack[a] = m;
        vm.call_value(a, nargs + 1, a)
    } else {
        call_without_self(vm, m, a, nargs)
    }
}

fn call_without_self(vm: &mut Vm, f: Value, a: usize, nargs: usize) -> Result<bool, Fault> {
    vm.stack[a + 1] = f;
    vm.call_value(a + 1, nargs, a)
}
