//! Upper bounds of non-negative int registers.
//!
//! Floored division and modulo by a positive constant cost a sign correction after the
//! truncating machine operation, and the signed multiply-by-reciprocal Cranelift uses
//! for a constant divisor needs its own sign fix-up. For a dividend known to be
//! non-negative, truncating and flooring agree and the unsigned forms give the same
//! answer with neither. `i % 1000003` on a counter of `for i in 0..n`, and `x * x % 7`
//! after it, are the typical cases.
//!
//! A fact is about the register's value *if it is an int*: `Some(h)` says an int there
//! is in `0..=h`. Facts follow from the bytecode's meaning alone, so they hold whichever
//! tier ran the instructions before: a loop entered from the interpreter has values the
//! same instructions made. Types are the other analysis's business; the translator
//! consults a fact only where that analysis proved the operand an int.

use kiln_vm::bytecode::{opc, Instr};
use kiln_vm::program::{Constant, Proto};

use crate::infer::{successors, writes, Flow};

/// What is known about one register: `Some(h)` when an int there is in `0..=h`.
pub type Bound = Option<u64>;

const UNBOUNDED: u64 = i64::MAX as u64;

/// Per pc: the bound of operand B of the instruction there (`Some(h)`: if an int, it
/// is in `0..=h`). `flows` and `reached` come from the type analysis: where control goes,
/// and which pcs it reaches (from the entry, or from a loop header the interpreter
/// enters).
pub fn operand_bounds(proto: &Proto, flows: &[Flow], reached: &[bool]) -> Vec<Bound> {
    let n = proto.code.len();
    if !proto
        .code
        .iter()
        .any(|&ins| divides_by_positive(proto, ins))
    {
        return vec![None; n];
    }
    let regs = proto.max_regs as usize;
    let mut states: Vec<Option<Vec<Bound>>> = vec![None; n];
    // Every pc the types reach but this pass has not is a start with nothing known:
    // the entry first, then loops only the interpreter can enter.
    while let Some(start) = (0..n).find(|&pc| reached[pc] && states[pc].is_none()) {
        states[start] = Some(vec![None; regs]);
        fixpoint(proto, flows, &mut states, start);
    }
    (0..n)
        .map(|pc| {
            let b = proto.code[pc].b();
            states[pc]
                .as_ref()
                .and_then(|st| st.get(b).copied().flatten())
        })
        .collect()
}

fn fixpoint(proto: &Proto, flows: &[Flow], states: &mut [Option<Vec<Bound>>], start: usize) {
    let n = proto.code.len();
    let mut work = vec![start];
    while let Some(pc) = work.pop() {
        let mut st = states[pc].clone().expect("queued pcs have a state");
        let ins = proto.code[pc];
        transfer(proto, pc, &mut st);
        for s in successors(pc, flows[pc]) {
            if s >= n {
                continue;
            }
            let mut out = st.clone();
            on_edge(pc, ins, s, &mut out);
            if join_into(&mut states[s], out) {
                work.push(s);
            }
        }
    }
}

/// Joins `new` into a successor's state; true if it changed. A bound that grows
/// widens at once to "non-negative", and from there to nothing known, so a loop
/// adding to a register settles in two rounds instead of counting up.
fn join_into(old: &mut Option<Vec<Bound>>, new: Vec<Bound>) -> bool {
    let Some(old) = old else {
        *old = Some(new);
        return true;
    };
    let mut changed = false;
    for (o, n) in old.iter_mut().zip(new) {
        let j = match (*o, n) {
            (Some(x), Some(y)) if y <= x => Some(x),
            (Some(_), Some(_)) => Some(UNBOUNDED),
            _ => None,
        };
        changed |= j != *o;
        *o = j;
    }
    changed
}

/// Whether `ins` divides (or takes a remainder) by a positive int constant: the only
/// instructions the bounds serve.
fn divides_by_positive(proto: &Proto, ins: Instr) -> bool {
    matches!(ins.op_byte(), opc::ModK | opc::IDivK)
        && matches!(proto.consts.get(ins.c()), Some(Constant::Int(1..)))
}

/// The bound of an int constant, if it is a non-negative int.
fn const_bound(proto: &Proto, k: usize) -> Bound {
    match proto.consts.get(k)? {
        Constant::Int(v) if *v >= 0 => Some(*v as u64),
        _ => None,
    }
}

fn bounded(v: Option<u64>) -> Bound {
    v.filter(|&h| h <= UNBOUNDED)
}

fn transfer(proto: &Proto, pc: usize, st: &mut [Bound]) {
    let ins = proto.code[pc];
    let (a, b, c) = (ins.a(), ins.b(), ins.c());
    let get = |r: usize| st.get(r).copied().flatten();
    let bound = match ins.op_byte() {
        opc::Move => get(b),
        opc::LoadI => u64::try_from(ins.sbx()).ok(),
        opc::LoadK => const_bound(proto, ins.bx()),
        // Floored modulo by a positive k is in `0..k` whatever the dividend.
        opc::ModK => match proto.consts.get(c) {
            Some(Constant::Int(k @ 1..)) => Some(*k as u64 - 1),
            _ => None,
        },
        opc::IDivK => match proto.consts.get(c) {
            Some(Constant::Int(k @ 1..)) => get(b).map(|h| h / *k as u64),
            _ => None,
        },
        opc::AddK => bounded(get(b).zip(const_bound(proto, c)).map(|(x, y)| x + y)),
        opc::MulK => bounded(
            get(b)
                .zip(const_bound(proto, c))
                .and_then(|(x, y)| x.checked_mul(y)),
        ),
        opc::Add => bounded(get(b).zip(get(c)).map(|(x, y)| x + y)),
        opc::Mul => bounded(get(b).zip(get(c)).and_then(|(x, y)| x.checked_mul(y))),
        // And with a non-negative int keeps its bound.
        opc::BAnd => match (get(b), get(c)) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        },
        // Counting up from a non-negative start stays non-negative (the edge to the
        // loop's exit forgets it: a step past the largest int wraps there).
        opc::ForLoop | opc::ForLoopIncl => match (get(a), literal_step(proto, a, pc)) {
            (Some(_), Some(1..)) => Some(UNBOUNDED),
            _ => None,
        },
        // Everything else forgets what it writes (`ForPrep`'s R[A+3] included: that
        // is set on the edge into the body, see `on_edge`).
        _ => {
            for r in writes(ins, st.len()) {
                st[r] = None;
            }
            return;
        }
    };
    st[a] = bound;
}

/// What an instruction writes only on one of its edges.
fn on_edge(pc: usize, ins: Instr, to: usize, st: &mut [Bound]) {
    let a = ins.a();
    match ins.op_byte() {
        opc::ForPrep | opc::ForPrepIncl if to == pc + 1 => st[a + 3] = st[a],
        opc::ForLoop | opc::ForLoopIncl => {
            if to == pc + 1 {
                st[a] = None;
            } else {
                st[a + 3] = st[a];
            }
        }
        _ => {}
    }
}

/// The step of the counted loop whose `ForLoop` (or `ForPrep`) at `pc` uses registers
/// from `a`, when it is a literal: the compiler loads it just before `ForPrep`, into a
/// register no script code can assign, so it holds for the whole loop.
pub fn literal_step(proto: &Proto, a: usize, pc: usize) -> Option<i64> {
    let ins = *proto.code.get(pc)?;
    let prep = match ins.op_byte() {
        opc::ForPrep | opc::ForPrepIncl => pc,
        opc::ForLoop | opc::ForLoopIncl => (pc as isize + 1 + ins.sbx()).checked_sub(1)? as usize,
        _ => return None,
    };
    let p = *proto.code.get(prep)?;
    let load = *proto.code.get(prep.checked_sub(1)?)?;
    let prepares = matches!(p.op_byte(), opc::ForPrep | opc::ForPrepIncl) && p.a() == a;
    let literal = load.op_byte() == opc::LoadI && load.a() == a + 2 && load.sbx() != 0;
    (prepares && literal).then(|| load.sbx() as i64)
}

/// Division of `x` in `0..=n` by a constant `d > 1` that is not a power of two, as
/// `(umulhi(x, m) >> s)`: the smallest `s` whose rounded-up reciprocal `m =
/// ceil(2^(64+s) / d)` fits 64 bits and errs by less than one step over `0..=n`
/// (Granlund and Montgomery's condition for a bounded dividend). None when no `s`
/// fits; then the general sequence is used.
pub fn reciprocal(d: u64, n: u64) -> Option<(u64, u32)> {
    (0..64).find_map(|s| {
        let p = 1u128 << (64 + s);
        let m = p.div_ceil(d as u128);
        let fits = m < 1u128 << 64;
        let exact = (m * d as u128 - p) * (n as u128) < p;
        (fits && exact).then_some((m as u64, s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reciprocals_divide_exactly_over_their_bound() {
        let divisors = [
            3u64,
            5,
            7,
            10,
            97,
            641,
            1000,
            1_000_003,
            (1 << 40) + 1,
            u64::MAX / 3,
        ];
        let bounds = [10u64, 1 << 20, 1 << 40, UNBOUNDED];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for d in divisors {
            for n in bounds {
                let Some((m, s)) = reciprocal(d, n) else {
                    continue;
                };
                let quotient = |x: u64| (((x as u128 * m as u128) >> 64) as u64) >> s;
                let mut xs = vec![0, 1, n, n - 1, n / 2];
                for k in [1, 2, n / d.max(1)] {
                    let q = k.saturating_mul(d);
                    xs.extend([q.saturating_sub(1), q, q.saturating_add(1)]);
                }
                for _ in 0..2000 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    xs.push(seed % (n + 1));
                }
                for x in xs.into_iter().filter(|&x| x <= n) {
                    assert_eq!(quotient(x), x / d, "{x} / {d} with bound {n}");
                }
            }
        }
        // The loop benchmark's divisors need no fix-up for any non-negative dividend.
        assert!(reciprocal(1_000_003, UNBOUNDED).is_some());
        assert!(reciprocal(7, UNBOUNDED).is_some());
    }

    fn bounds_of(src: &str) -> (Vec<Bound>, Vec<u8>) {
        let (program, _) =
            kiln_vm::compile("t.kn", src, &kiln_vm::Capabilities::all()).expect("compiles");
        let proto = program
            .protos
            .iter()
            .find(|p| &*p.name == "f")
            .expect("the proto exists");
        let an = crate::infer::analyse(
            proto,
            &crate::infer::Facts::default(),
            &crate::infer::window_params(proto),
        );
        (an.bounds, proto.code.iter().map(|i| i.op_byte()).collect())
    }

    /// The bounds at the `ModK`s of `f`, in order.
    fn mod_bounds(src: &str) -> Vec<Bound> {
        let (bounds, ops) = bounds_of(src);
        ops.iter()
            .zip(bounds)
            .filter(|(op, _)| **op == opc::ModK)
            .map(|(_, b)| b)
            .collect()
    }

    #[test]
    fn counters_and_remainders_are_bounded() {
        let b = mod_bounds(
            "fn f(n) { let s = 0\n for i in 0..n { let x = i % 1000 \n s += x * x % 7 } return s }",
        );
        assert_eq!(b, vec![Some(UNBOUNDED), Some(999 * 999)]);
    }

    #[test]
    fn unknown_or_negative_values_are_not() {
        // A parameter, a loop from a parameter, a reassigned counter, a count down.
        let b = mod_bounds(
            "fn f(n) { let s = n % 3\n for i in n..10 { s += i % 3 }\n \
             for i in 0..n { i = 0 - i\n s += i % 3 }\n \
             for i in range(10, 0, -1) { s += i % 3 } return s }",
        );
        assert_eq!(b, vec![None, None, None, None]);
    }
}
