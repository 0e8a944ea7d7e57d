//! `math`: constants, float functions, int-returning rounding, type-preserving
//! `abs`/`min`/`max`, and a seedable generator for `random`.
//!
//! Float functions accept ints. `floor`, `ceil` and `round` return ints (`round` halves
//! away from zero) and refuse nan, inf and floats outside the int range. `random` is
//! xorshift64* over `vm.rng`; `seed(n)` resets that state through splitmix64, so equal
//! seeds give equal sequences.

use std::cmp::Ordering;

use crate::builtins::{float_to_int, Args};
use crate::error::Fault;
use crate::fault;
use crate::ops::compare;
use crate::stdlib::Member;
use crate::value::Value;
use crate::vm::Vm;

pub(super) const MEMBERS: &[(&str, Member)] = &[
    ("pi", Member::Float(std::f64::consts::PI)),
    ("e", Member::Float(std::f64::consts::E)),
    ("inf", Member::Float(f64::INFINITY)),
    ("nan", Member::Float(f64::NAN)),
    ("sqrt", Member::Fn(sqrt)),
    ("sin", Member::Fn(sin)),
    ("cos", Member::Fn(cos)),
    ("tan", Member::Fn(tan)),
    ("atan2", Member::Fn(atan2)),
    ("exp", Member::Fn(exp)),
    ("log", Member::Fn(log)),
    ("floor", Member::Fn(floor)),
    ("ceil", Member::Fn(ceil)),
    ("round", Member::Fn(round)),
    ("abs", Member::Fn(abs)),
    ("min", Member::Fn(min)),
    ("max", Member::Fn(max)),
    ("random", Member::Fn(random)),
    ("seed", Member::Fn(seed)),
];

/// A one-argument float function.
fn unary(vm: &Vm, name: &'static str, args: &[Value], f: fn(f64) -> f64) -> Result<Value, Fault> {
    let a = Args::new(name, args, 1, 1)?;
    Ok(Value::Float(f(a.num(&vm.heap, 0)?)))
}

fn sqrt(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    unary(vm, "math.sqrt", args, f64::sqrt)
}

fn sin(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    unary(vm, "math.sin", args, f64::sin)
}

fn cos(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    unary(vm, "math.cos", args, f64::cos)
}

fn tan(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    unary(vm, "math.tan", args, f64::tan)
}

fn exp(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    unary(vm, "math.exp", args, f64::exp)
}

fn atan2(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("math.atan2", args, 2, 2)?;
    Ok(Value::Float(a.num(&vm.heap, 0)?.atan2(a.num(&vm.heap, 1)?)))
}

/// `log(x)` is the natural logarithm; `log(x, base)` divides by `ln(base)`, as Python does.
fn log(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("math.log", args, 1, 2)?;
    let x = a.num(&vm.heap, 0)?.ln();
    Ok(Value::Float(match a.opt(1) {
        Some(_) => x / a.num(&vm.heap, 1)?.ln(),
        None => x,
    }))
}

/// A rounding function returning an int; ints pass through unchanged.
fn to_int(vm: &Vm, name: &'static str, args: &[Value], f: fn(f64) -> f64) -> Result<Value, Fault> {
    let a = Args::new(name, args, 1, 1)?;
    match a.get(0) {
        v @ Value::Int(_) => Ok(v),
        Value::Float(x) => Ok(Value::Int(float_to_int(f(x))?)),
        _ => Err(a.wrong(&vm.heap, 0, "float")),
    }
}

fn floor(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    to_int(vm, "math.floor", args, f64::floor)
}

fn ceil(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    to_int(vm, "math.ceil", args, f64::ceil)
}

fn round(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    // `f64::round` halves away from zero.
    to_int(vm, "math.round", args, f64::round)
}

fn abs(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("math.abs", args, 1, 1)?;
    match a.get(0) {
        // Ints wrap, like every int operation: abs of the most negative int is itself.
        Value::Int(i) => Ok(Value::Int(i.wrapping_abs())),
        Value::Float(f) => Ok(Value::Float(f.abs())),
        _ => Err(a.wrong(&vm.heap, 0, "float")),
    }
}

fn min(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    extreme(vm, "math.min", args, Ordering::Less)
}

fn max(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    extreme(vm, "math.max", args, Ordering::Greater)
}

/// The first of the candidates (the arguments, or the items of a single array argument)
/// that no later one beats in the direction `wins`; values keep their type.
fn extreme(vm: &Vm, name: &'static str, args: &[Value], wins: Ordering) -> Result<Value, Fault> {
    let a = Args::new(name, args, 1, usize::MAX)?;
    let heap = &vm.heap;
    let candidates: &[Value] = match (a.len(), a.get(0)) {
        (1, Value::Array(arr)) => &arr.get(heap).items,
        _ => args,
    };
    let (&first, rest) = candidates
        .split_first()
        .ok_or_else(|| fault!("{name} expects at least one value, got an empty array"))?;
    let mut best = first;
    for &v in rest {
        if compare(heap, v, best)? == Some(wins) {
            best = v;
        }
    }
    Ok(best)
}

/// The next xorshift64* output.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn random(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("math.random", args, 0, 0)?;
    // The top 53 bits, scaled into [0, 1).
    let bits = next_random(&mut vm.rng) >> 11;
    Ok(Value::Float(bits as f64 / (1u64 << 53) as f64))
}

/// splitmix64 of `n`: spreads any seed (0 included) over the state space.
fn seed_state(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // xorshift must never hold 0.
    if z == 0 {
        0x853c_49e6_748f_ea9b
    } else {
        z
    }
}

fn seed(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("math.seed", args, 1, 1)?;
    vm.rng = seed_state(a.int(&vm.heap, 0)? as u64);
    Ok(Value::Nil)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generator_is_deterministic_and_nonzero() {
        let (mut a, mut b) = (seed_state(7), seed_state(7));
        for _ in 0..100 {
            assert_eq!(next_random(&mut a), next_random(&mut b));
            assert_ne!(a, 0);
        }
        assert_ne!(seed_state(0), 0);
        assert_ne!(seed_state(1), seed_state(2));
    }
}
