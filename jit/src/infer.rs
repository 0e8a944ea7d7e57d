//! What the compiler knows before it emits code: the control flow of a proto, which
//! registers are live where, and which type each register has at each instruction.
//!
//! A register is either *typed* (int, float, bool or nil, held unboxed in machine
//! registers) or in *memory* (its `Value` in the frame's window, type unknown). Types
//! come from the instructions that write registers and from guards at the point of use:
//! reading a memory register as a number checks its tag (a failed check is a side exit)
//! and the register is typed from then on. Where paths with different types meet, the
//! register goes to memory. Instructions the compiler does not handle end their path
//! with a side exit, so the interpreter runs them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kiln_vm::bytecode::{opc, Instr};
use kiln_vm::program::{Constant, Program, Proto, TypeAnn, TypeKind};
use kiln_vm::value::StructType;

/// What the compiler knows about one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Not written on any path here (a dead temporary).
    Unset,
    Nil,
    Bool,
    Int,
    Float,
    /// In the window, type unknown.
    Mem,
    /// In the window, known to be the standard `math` module (its functions compile
    /// to intrinsics).
    Math,
    /// In the window, known to be the built-in `len` (a call on an array compiles to
    /// a length read).
    Len,
}

impl Ty {
    pub fn join(self, other: Ty) -> Ty {
        match (self, other) {
            (Ty::Unset, t) | (t, Ty::Unset) => t,
            (a, b) if a == b => a,
            _ => Ty::Mem,
        }
    }

    pub fn is_typed(self) -> bool {
        !matches!(self, Ty::Unset | Ty::Mem | Ty::Math | Ty::Len)
    }

    /// Type unknown, value in the window: memory registers, and registers no path
    /// here has written (at a loop entry they hold whatever the interpreter left).
    pub fn unknown(self) -> bool {
        matches!(self, Ty::Mem | Ty::Unset)
    }

    /// In the window (not unboxed): values the compiler does not hold in registers.
    pub fn in_memory(self) -> bool {
        matches!(self, Ty::Mem | Ty::Math | Ty::Len)
    }

    fn is_number(self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }
}

/// Where control goes after an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Next,
    Jump(usize),
    /// A test: `taken` when the condition holds, else `skip` (past the paired jump).
    Branch {
        taken: usize,
        skip: usize,
    },
    Return,
    /// The compiler does not handle this instruction: a side exit to the interpreter.
    Exit,
}

/// The type of `K[i]` when it is a number.
pub fn const_ty(proto: &Proto, i: usize) -> Option<Ty> {
    match proto.consts.get(i)? {
        Constant::Int(_) => Some(Ty::Int),
        Constant::Float(_) => Some(Ty::Float),
        Constant::Str(_) => None,
    }
}

/// What the analysis knows beyond the bytecode.
#[derive(Clone, Debug)]
pub struct Facts {
    /// Observed types of the first registers (the parameters).
    pub hints: Vec<Ty>,
    /// Module variable slots bound to the standard `math` module.
    pub math_slots: Vec<u16>,
    /// Types seen where earlier code's guards failed (side-exit feedback).
    pub sites: Vec<Site>,
    /// The guess for a number read from memory with nothing else to go on: int, or
    /// float once feedback showed floats in this proto.
    pub default_number: Ty,
    /// Calls (by pc) whose callee is known to return values of one type: their result
    /// is checked and unboxed at the call.
    pub results: Vec<(u32, Ty)>,
}

/// A type observed in register `reg` where the instruction at `pc` read it. `Mem`
/// means "not a number (or not the object kind the code wanted)": that instruction is
/// left to the interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub pc: u32,
    pub reg: u16,
    pub ty: Ty,
}

impl Default for Facts {
    fn default() -> Facts {
        Facts {
            hints: Vec::new(),
            math_slots: Vec::new(),
            sites: Vec::new(),
            default_number: Ty::Int,
            results: Vec::new(),
        }
    }
}

impl Facts {
    /// What feedback says about register `r` at `pc`.
    pub fn site(&self, pc: usize, r: usize) -> Option<Ty> {
        self.sites
            .iter()
            .find(|s| s.pc as usize == pc && s.reg as usize == r)
            .map(|s| s.ty)
    }

    /// The hint for register `r` read at `pc`: site feedback, else the parameter's
    /// observed type.
    pub fn hint(&self, pc: usize, r: usize) -> Ty {
        self.site(pc, r)
            .unwrap_or_else(|| self.hints.get(r).copied().unwrap_or(Ty::Unset))
    }

    /// The type the call at `pc` (into register `a`) is expected to return, unless
    /// feedback saw its result with another type.
    pub fn result(&self, pc: usize, a: usize) -> Option<Ty> {
        let (_, t) = self.results.iter().find(|(p, _)| *p as usize == pc)?;
        self.site(pc + 1, a).is_none().then_some(*t)
    }

    /// Feedback for the next compile of a proto: its sites, and float as the default
    /// guess if floats showed up anywhere.
    pub fn with_sites(mut self, sites: Vec<Site>) -> Facts {
        if sites.iter().any(|s| s.ty == Ty::Float) {
            self.default_number = Ty::Float;
        }
        self.sites = sites;
        self
    }
}

/// The analysis type of a value with tag `t`: numbers, bools and nil, or `Mem`.
pub fn ty_of_tag(t: u8) -> Ty {
    match t {
        kiln_vm::value::tag::INT => Ty::Int,
        kiln_vm::value::tag::FLOAT => Ty::Float,
        kiln_vm::value::tag::BOOL => Ty::Bool,
        kiln_vm::value::tag::NIL => Ty::Nil,
        _ => Ty::Mem,
    }
}

/// The tag of values of a typed `t` (`UNDEF`, no value's tag, for anything else): the
/// inverse of [`ty_of_tag`], to pass types where observed tags are expected.
pub fn tag_of_ty(t: Ty) -> u8 {
    match t {
        Ty::Int => kiln_vm::value::tag::INT,
        Ty::Float => kiln_vm::value::tag::FLOAT,
        Ty::Bool => kiln_vm::value::tag::BOOL,
        Ty::Nil => kiln_vm::value::tag::NIL,
        _ => kiln_vm::value::tag::UNDEF,
    }
}

/// `math` functions compiled inline: name, arguments.
pub const MATH_INTRINSICS: &[(&str, usize)] = &[
    ("sqrt", 1),
    ("abs", 1),
    ("sin", 1),
    ("cos", 1),
    ("exp", 1),
    ("log", 1),
];

/// Observed types of the parameters (from the interpreter's tags) as guesses.
pub fn hints_from_tags(tags: &[u8]) -> Vec<Ty> {
    tags.iter()
        .map(|&t| match ty_of_tag(t) {
            Ty::Mem => Ty::Unset,
            t => t,
        })
        .collect()
}

/// The type a memory register is guessed to have: what was observed for it, else its
/// partner's number type, else the default. A `Mem` hint (a non-number was seen)
/// stays `Mem`: no guess.
fn guess(t: Ty, hint: Ty, partner: Ty, default: Ty) -> Ty {
    match t {
        Ty::Mem | Ty::Unset if hint.is_number() || hint == Ty::Mem => hint,
        Ty::Mem | Ty::Unset if partner.is_number() => partner,
        Ty::Mem | Ty::Unset => default,
        t => t,
    }
}

/// The operand types two numeric operands (registers `ra`, `rb`; `rb` may be a
/// constant, with no hint) take after their guards.
pub fn guess_numbers(a: Ty, b: Ty, ha: Ty, hb: Ty, default: Ty) -> Option<(Ty, Ty)> {
    let ga = guess(a, ha, if b.unknown() { hb } else { b }, default);
    let gb = guess(b, hb, ga, default);
    (ga.is_number() && gb.is_number()).then_some((ga, gb))
}

/// Result type of an arithmetic opcode on guarded operands.
pub fn arith_result(op: u8, a: Ty, b: Ty) -> Ty {
    match op {
        opc::Div | opc::DivK => Ty::Float,
        _ if a == Ty::Int && b == Ty::Int => Ty::Int,
        _ => Ty::Float,
    }
}

/// The annotation kinds `CheckType` is compiled for, as the type a value must have.
pub fn check_ty(kind: &TypeKind) -> Option<Ty> {
    match kind {
        TypeKind::Int => Some(Ty::Int),
        TypeKind::Bool => Some(Ty::Bool),
        _ => None,
    }
}

fn jump_target(pc: usize, offset: isize) -> usize {
    (pc as isize + 1 + offset) as usize
}

/// Applies instruction `pc` to `st` (register types before it; after it on return) and
/// says where control goes. This is the single description of what compiles: the
/// translator follows it exactly.
pub fn transfer(proto: &Proto, pc: usize, st: &mut [Ty], facts: &Facts) -> Flow {
    let ins = proto.code[pc];
    let (a, b, c) = (ins.a(), ins.b(), ins.c());
    let hint = |r: usize| facts.hint(pc, r);
    let dflt = facts.default_number;
    // An object operand whose guard failed here before: leave the access to the
    // interpreter.
    let seen_other = |r: usize| facts.site(pc, r).is_some();
    let index_ok = |r: usize, t: Ty| (t == Ty::Int || t.unknown()) && !seen_other(r);
    match ins.op_byte() {
        opc::Move => st[a] = st[b],
        opc::LoadK => match const_ty(proto, ins.bx()) {
            Some(t) => st[a] = t,
            None => return Flow::Exit,
        },
        opc::LoadI => st[a] = Ty::Int,
        opc::LoadNil => {
            st[a..=a + b].fill(Ty::Nil);
        }
        opc::LoadTrue | opc::LoadFalse => st[a] = Ty::Bool,
        opc::GetModule => {
            st[a] = if facts.math_slots.contains(&(ins.bx() as u16)) {
                Ty::Math
            } else {
                Ty::Mem
            }
        }
        opc::GetIndex => {
            if !st[b].unknown() || seen_other(b) || !index_ok(c, st[c]) {
                return Flow::Exit;
            }
            st[c] = Ty::Int;
            st[a] = Ty::Mem;
        }
        opc::SetIndex => {
            if !st[a].unknown() || seen_other(a) || !index_ok(b, st[b]) {
                return Flow::Exit;
            }
            st[b] = Ty::Int;
        }
        opc::GetField => {
            if !st[b].unknown() || seen_other(b) {
                return Flow::Exit;
            }
            st[a] = Ty::Mem;
        }
        opc::SetField => {
            if !st[a].unknown() || seen_other(a) {
                return Flow::Exit;
            }
        }
        opc::CallMethod => {
            let Some((_, result)) = math_call(proto, pc, ins, st, facts) else {
                return Flow::Exit;
            };
            st[a..].fill(Ty::Unset);
            st[a] = result;
        }
        opc::SetModule => {}
        // `for v in array`: the cursor is an int; other iterables are left to the
        // interpreter (feedback turns a failed array guard into an exit here).
        opc::IterPrep => {
            if !st[a].unknown() || seen_other(a) {
                return Flow::Exit;
            }
            st[a + 1] = Ty::Int;
        }
        opc::IterNext1 => {
            if !st[a].unknown() || seen_other(a) || !(st[a + 1] == Ty::Int || st[a + 1].unknown()) {
                return Flow::Exit;
            }
            st[a + 1] = Ty::Int;
            st[a + 2] = Ty::Mem;
            return Flow::Branch {
                taken: jump_target(pc, ins.sbx()),
                skip: pc + 1,
            };
        }
        opc::LoadBuiltin => {
            let is_len = kiln_vm::builtins::GLOBALS.get(ins.bx()) == Some(&"len");
            st[a] = if is_len { Ty::Len } else { Ty::Mem };
        }
        opc::Add | opc::Sub | opc::Mul | opc::Div | opc::IDiv | opc::Mod => {
            let Some((x, y)) = guess_numbers(st[b], st[c], hint(b), hint(c), dflt) else {
                return Flow::Exit;
            };
            (st[b], st[c]) = (x, y);
            st[a] = arith_result(ins.op_byte(), x, y);
        }
        opc::AddK | opc::SubK | opc::MulK | opc::DivK | opc::IDivK | opc::ModK => {
            let Some(k) = const_ty(proto, c) else {
                return Flow::Exit;
            };
            let Some((x, y)) = guess_numbers(st[b], k, hint(b), Ty::Unset, dflt) else {
                return Flow::Exit;
            };
            st[b] = x;
            st[a] = arith_result(ins.op_byte(), x, y);
        }
        opc::BAnd | opc::BOr | opc::BXor | opc::Shl | opc::Shr => {
            if !(st[b] == Ty::Int || st[b].unknown()) || !(st[c] == Ty::Int || st[c].unknown()) {
                return Flow::Exit;
            }
            (st[b], st[c], st[a]) = (Ty::Int, Ty::Int, Ty::Int);
        }
        opc::Unm => {
            let t = guess(st[b], hint(b), Ty::Unset, dflt);
            if !t.is_number() {
                return Flow::Exit;
            }
            (st[b], st[a]) = (t, t);
        }
        opc::BNot => {
            if !(st[b] == Ty::Int || st[b].unknown()) {
                return Flow::Exit;
            }
            (st[b], st[a]) = (Ty::Int, Ty::Int);
        }
        opc::Not => st[a] = Ty::Bool,
        opc::Eq | opc::Ne | opc::Lt | opc::Le | opc::Gt | opc::Ge => {
            // Int/float comparisons are exact in the interpreter; compiled code only
            // compares numbers of one type.
            // (When the result overwrites both operands, nothing records their type.)
            let Some((x, y)) = guess_numbers(st[b], st[c], hint(b), hint(c), dflt)
                .filter(|(x, y)| x == y && (a != b || a != c))
            else {
                return Flow::Exit;
            };
            (st[b], st[c], st[a]) = (x, y, Ty::Bool);
        }
        opc::Jmp => return Flow::Jump(jump_target(pc, ins.sj())),
        opc::Test => {
            return branch(proto, pc);
        }
        opc::TestEq | opc::TestLt | opc::TestLe | opc::TestGt | opc::TestGe => {
            let Some((x, y)) =
                guess_numbers(st[a], st[b], hint(a), hint(b), dflt).filter(|(x, y)| x == y)
            else {
                return Flow::Exit;
            };
            (st[a], st[b]) = (x, y);
            return branch(proto, pc);
        }
        opc::TestEqK | opc::TestLtK | opc::TestLeK | opc::TestGtK | opc::TestGeK => {
            let Some(k) = const_ty(proto, b) else {
                return Flow::Exit;
            };
            let Some((x, _)) =
                guess_numbers(st[a], k, hint(a), Ty::Unset, dflt).filter(|&(x, _)| x == k)
            else {
                return Flow::Exit;
            };
            st[a] = x;
            return branch(proto, pc);
        }
        // Counters are ints; read from the window (a loop entered from the
        // interpreter) they are checked first.
        opc::ForPrep | opc::ForPrepIncl | opc::ForLoop | opc::ForLoopIncl => {
            if st[a..a + 3].iter().any(|t| !(*t == Ty::Int || t.unknown())) {
                return Flow::Exit;
            }
            st[a..a + 4].fill(Ty::Int);
            return Flow::Branch {
                taken: jump_target(pc, ins.sbx()),
                skip: pc + 1,
            };
        }
        opc::DefaultArg => {
            return Flow::Branch {
                taken: jump_target(pc, ins.sbx()),
                skip: pc + 1,
            };
        }
        opc::CheckType => {
            let check = &proto.type_checks[ins.bx()];
            if check.ann.nilable {
                return Flow::Exit;
            }
            let Some(t) = check_ty(&check.ann.kind) else {
                return Flow::Exit;
            };
            if !st[a].unknown() && st[a] != t {
                return Flow::Exit;
            }
            st[a] = t;
        }
        opc::Call if is_len_call(ins, st, facts, pc) => {
            st[a] = Ty::Int;
            st[a + 1..].fill(Ty::Unset);
        }
        opc::Call => {
            st[a] = facts.result(pc, a).unwrap_or(Ty::Mem);
            for r in st.iter_mut().skip(a + 1) {
                *r = Ty::Unset;
            }
        }
        opc::Return => return Flow::Return,
        _ => return Flow::Exit,
    }
    Flow::Next
}

/// For `math.f(x)` with an intrinsic `f`: the argument's type after its guard and the
/// result's type.
pub fn math_call(
    proto: &Proto,
    pc: usize,
    ins: Instr,
    st: &[Ty],
    facts: &Facts,
) -> Option<(Ty, Ty)> {
    let (a, nargs) = (ins.a(), ins.b());
    if st.get(a + 1) != Some(&Ty::Math) {
        return None;
    }
    let Constant::Str(name) = proto.consts.get(ins.c())? else {
        return None;
    };
    MATH_INTRINSICS
        .iter()
        .find(|(n, arity)| **n == **name && *arity == nargs)?;
    let arg = guess(st[a + 2], facts.hint(pc, a + 2), Ty::Float, Ty::Float);
    if !arg.is_number() {
        return None;
    }
    let result = if &**name == "abs" { arg } else { Ty::Float };
    Some((arg, result))
}

/// Whether `Call` at `pc` is `len(x)` compiled inline: `x` is checked to be an array
/// (where feedback saw something else, the call is left as it is).
pub fn is_len_call(ins: Instr, st: &[Ty], facts: &Facts, pc: usize) -> bool {
    let a = ins.a();
    st[a] == Ty::Len && ins.b() == 1 && st[a + 1].unknown() && facts.site(pc, a + 1).is_none()
}

/// The field names whose values may change while compiled code of `proto` runs: the
/// ones it stores, or every name (`None`) if it calls code that might store any (a
/// call that leaves for the interpreter leaves the code too; helpers store no fields).
pub fn stored_fields(proto: &Proto, an: &Analysis) -> Option<HashSet<Arc<str>>> {
    let mut names = HashSet::new();
    for (pc, (&ins, st)) in proto.code.iter().zip(&an.types).enumerate() {
        let Some(st) = st else { continue };
        match ins.op_byte() {
            opc::Call if !is_len_call(ins, st, &an.facts, pc) => return None,
            opc::SetField => {
                if let Constant::Str(name) = &proto.consts[ins.b()] {
                    names.insert(name.clone());
                }
            }
            _ => {}
        }
    }
    Some(names)
}

/// The one type every `Return` of the analysed code gives, if they agree on a typed
/// one (a function that may return an int or a float has none).
pub fn return_type(proto: &Proto, an: &Analysis) -> Option<Ty> {
    let mut ty = Ty::Unset;
    for (ins, st) in proto.code.iter().zip(&an.types) {
        let Some(st) = st else { continue };
        if ins.op_byte() == opc::Return {
            let t = if ins.b() == 0 { Ty::Nil } else { st[ins.a()] };
            ty = ty.join(t);
        }
    }
    ty.is_typed().then_some(ty)
}

/// Module variables bound by a top-level `fn` declaration (a constant, so the binding
/// never changes), with the proto each holds: `(slot, proto)`.
pub fn module_functions(main: &Proto, consts: &[bool]) -> Vec<(u16, u32)> {
    main.code
        .windows(2)
        .filter_map(|w| {
            let (def, set) = (w[0], w[1]);
            let bound = def.op_byte() == opc::Closure
                && set.op_byte() == opc::SetModule
                && set.a() == def.a()
                && consts.get(set.bx()) == Some(&true);
            bound.then(|| (set.bx() as u16, main.protos[def.bx()].0))
        })
        .collect()
}

/// Where a field lives when a single struct declaration of the program has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSlot {
    /// The declaration's key (`StructType::key`).
    pub key: u64,
    /// The field's index in the instance's field array.
    pub slot: u32,
    /// The type its annotation checks writes against (`None`: no check), with
    /// whether nil passes too.
    pub annotation: Option<(Option<Ty>, bool)>,
}

impl FieldSlot {
    /// Whether a value the compiler knows to be of type `t` passes the field's
    /// annotation without a run-time check.
    pub fn takes(&self, t: Ty) -> bool {
        match self.annotation {
            None => true,
            Some((want, nilable)) => (t.is_typed() && want == Some(t)) || (nilable && t == Ty::Nil),
        }
    }
}

/// The check an annotation makes on writes, as [`FieldSlot::annotation`] holds it.
fn write_check(ann: &TypeAnn) -> Option<(Option<Ty>, bool)> {
    let want = match ann.kind {
        TypeKind::Any => return None,
        TypeKind::Int => Some(Ty::Int),
        TypeKind::Float => Some(Ty::Float),
        TypeKind::Bool => Some(Ty::Bool),
        _ => None,
    };
    Some((want, ann.nilable))
}

/// Per field name, where it lives if exactly one struct declaration of `program` has
/// it (`None` when several do). A field's slot is fixed by its declaration, so
/// compiled code reading a field by such a name checks the instance's declaration key
/// once and then reads at a constant offset; an instance of another type (one made
/// outside this program, or declared by code added later) fails the check and exits.
pub fn field_slots(program: &Program) -> HashMap<Arc<str>, Option<FieldSlot>> {
    let mut slots: HashMap<Arc<str>, Option<FieldSlot>> = HashMap::new();
    for (p, proto) in program.protos.iter().enumerate() {
        for (i, desc) in proto.structs.iter().enumerate() {
            let key = StructType::key_of(p as u32, i);
            for (slot, name) in desc.fields.iter().enumerate() {
                let here = (key != 0).then(|| FieldSlot {
                    key,
                    slot: slot as u32,
                    annotation: desc
                        .field_types
                        .get(slot)
                        .and_then(Option::as_ref)
                        .and_then(write_check),
                });
                slots
                    .entry(name.clone())
                    .and_modify(|s| *s = None)
                    .or_insert(here);
            }
        }
    }
    slots
}

/// Per pc: for a `Call` whose callee register was loaded, in the same block, from a
/// module function slot (see [`module_functions`]), the proto it calls. Compiled code
/// still checks the callee's proto before relying on it.
pub fn known_callees(proto: &Proto, leaders: &[bool], fns: &[(u16, u32)]) -> Vec<Option<u32>> {
    let writes = |ins: Instr, r: usize| match ins.op_byte() {
        opc::Call | opc::CallMethod => ins.a() <= r,
        opc::LoadNil => (ins.a()..=ins.a() + ins.b()).contains(&r),
        opc::SetModule
        | opc::SetIndex
        | opc::SetField
        | opc::SetUpval
        | opc::SetCell
        | opc::Test
        | opc::TestEq
        | opc::TestLt
        | opc::TestLe
        | opc::TestGt
        | opc::TestGe
        | opc::TestEqK
        | opc::TestLtK
        | opc::TestLeK
        | opc::TestGtK
        | opc::TestGeK
        | opc::Jmp
        | opc::Return => false,
        _ => ins.a() == r,
    };
    let mut known = vec![None; proto.code.len()];
    for (pc, ins) in proto.code.iter().enumerate() {
        if ins.op_byte() != opc::Call {
            continue;
        }
        let a = ins.a();
        // The last write of the callee register, if it is in this block.
        let mut p = pc;
        let def = loop {
            if leaders[p] || p == 0 {
                break None;
            }
            p -= 1;
            if writes(proto.code[p], a) {
                break Some(p);
            }
        };
        let Some(d) = def else { continue };
        let load = proto.code[d];
        if load.op_byte() == opc::GetModule && load.a() == a {
            known[pc] = fns
                .iter()
                .find(|(slot, _)| *slot as usize == load.bx())
                .map(|(_, p)| *p);
        }
    }
    known
}

/// A test and its paired jump.
fn branch(proto: &Proto, pc: usize) -> Flow {
    match proto.code.get(pc + 1) {
        Some(j) if j.op_byte() == opc::Jmp => Flow::Branch {
            taken: jump_target(pc + 1, j.sj()),
            skip: pc + 2,
        },
        _ => Flow::Exit,
    }
}

/// Successors of `pc` given its flow.
pub fn successors(pc: usize, flow: Flow) -> Vec<usize> {
    match flow {
        Flow::Next => vec![pc + 1],
        Flow::Jump(t) => vec![t],
        Flow::Branch { taken, skip } => vec![taken, skip],
        Flow::Return | Flow::Exit => Vec::new(),
    }
}

/// The facts about one proto.
pub struct Analysis {
    /// Register types before each instruction (`None`: unreachable).
    pub types: Vec<Option<Vec<Ty>>>,
    /// Registers live before each instruction.
    pub live: Vec<Vec<bool>>,
    /// Instructions that start a basic block.
    pub leaders: Vec<bool>,
    /// Loop headers: targets of backward jumps, where the interpreter may enter.
    pub headers: Vec<usize>,
    /// Per pc: the steps one iteration of the loop starting there charges (the length of
    /// its longest back-edge, as the interpreter charges it), or 0 if no loop starts there.
    pub charge: Vec<u32>,
    /// Per pc: the bound of operand B if it is a non-negative int (see `bounds`).
    pub bounds: Vec<crate::bounds::Bound>,
    /// What the guesses used.
    pub facts: Facts,
}

/// The parameter types of the generic entry: all in the window.
pub fn window_params(proto: &Proto) -> Vec<Ty> {
    vec![Ty::Mem; proto.nparams as usize + proto.has_rest as usize]
}

/// The parameter types of a direct variant (see `translate::Variant`), when `proto`
/// can have one: a fixed parameter count, each parameter typed as observed unless
/// feedback saw it with another type.
pub fn direct_params(proto: &Proto, facts: &Facts) -> Option<Vec<Ty>> {
    let simple = proto.nrequired == proto.nparams && !proto.has_rest;
    let n = proto.nparams as usize;
    (simple && n <= crate::params::MAX_DIRECT_PARAMS).then(|| {
        (0..n)
            .map(|r| {
                let t = facts.hints.get(r).copied().unwrap_or(Ty::Unset);
                let contradicted = facts.sites.iter().any(|s| s.reg as usize == r && s.ty != t);
                if t.is_typed() && t != Ty::Nil && !contradicted {
                    t
                } else {
                    Ty::Mem
                }
            })
            .collect()
    })
}

/// Analyses `proto` entered at pc 0 with parameters of types `params`: types,
/// liveness, blocks and loop headers.
pub fn analyse(proto: &Proto, facts: &Facts, params: &[Ty]) -> Analysis {
    let n = proto.code.len();
    let regs = proto.max_regs as usize;
    let mut types: Vec<Option<Vec<Ty>>> = vec![None; n];
    let mut entry = vec![Ty::Unset; regs];
    entry[..params.len()].copy_from_slice(params);
    types[0] = Some(entry);
    let mut flows = vec![Flow::Exit; n];
    let charge = loop_charges(proto);
    let headers: Vec<usize> = (0..n).filter(|&pc| charge[pc] > 0).collect();
    fixpoint(proto, facts, &mut types, &mut flows, vec![0]);
    // A loop the function start does not reach (an earlier instruction exits) can
    // still be entered from the interpreter: analyse it from "nothing known". Its
    // registers hold whatever the interpreter left there: values in the window,
    // not "unwritten" (`Unset` would let a join with a typed path keep that type).
    for &h in &headers {
        if types[h].is_none() {
            types[h] = Some(vec![Ty::Mem; regs]);
            fixpoint(proto, facts, &mut types, &mut flows, vec![h]);
        }
    }
    let mut leaders = vec![false; n + 1];
    leaders[0] = true;
    for &h in &headers {
        leaders[h] = true;
    }
    for pc in 0..n {
        if types[pc].is_none() {
            continue;
        }
        if !matches!(flows[pc], Flow::Next) {
            leaders[pc + 1] = true;
        }
        for s in successors(pc, flows[pc]) {
            if s != pc + 1 || !matches!(flows[pc], Flow::Next) {
                leaders[s.min(n)] = true;
            }
        }
    }
    // A loop whose header instruction is not compiled (a `for v in array` header), or
    // whose every iteration exits before it gets back to its header, is no entry: the
    // interpreter would enter and leave again on every iteration, paying for both.
    let headers = headers
        .into_iter()
        .filter(|&h| types[h].is_some() && flows[h] != Flow::Exit && comes_back(h, &flows))
        .collect();
    let live = liveness(proto, &types, &flows);
    let reached: Vec<bool> = types.iter().map(Option::is_some).collect();
    let bounds = crate::bounds::operand_bounds(proto, &flows, &reached);
    Analysis {
        types,
        live,
        bounds,
        leaders,
        headers,
        charge,
        facts: facts.clone(),
    }
}

/// Whether compiled code can get from loop header `h` back to it: some path of
/// compiled instructions (an exit has no successors) closes the loop.
fn comes_back(h: usize, flows: &[Flow]) -> bool {
    let mut seen = vec![false; flows.len()];
    let mut work = successors(h, flows[h]);
    while let Some(pc) = work.pop() {
        if pc == h {
            return true;
        }
        if pc < flows.len() && !seen[pc] {
            seen[pc] = true;
            work.extend(successors(pc, flows[pc]));
        }
    }
    false
}

/// Runs the type dataflow from `work` until nothing changes.
fn fixpoint(
    proto: &Proto,
    facts: &Facts,
    types: &mut [Option<Vec<Ty>>],
    flows: &mut [Flow],
    mut work: Vec<usize>,
) {
    let n = proto.code.len();
    while let Some(pc) = work.pop() {
        let mut st = types[pc].clone().expect("queued pcs have a state");
        let flow = transfer(proto, pc, &mut st, facts);
        flows[pc] = flow;
        for s in successors(pc, flow) {
            if s >= n {
                continue;
            }
            let changed = match &mut types[s] {
                Some(old) => {
                    let mut changed = false;
                    for (o, t) in old.iter_mut().zip(&st) {
                        let j = o.join(*t);
                        changed |= j != *o;
                        *o = j;
                    }
                    changed
                }
                None => {
                    types[s] = Some(st.clone());
                    true
                }
            };
            if changed {
                work.push(s);
            }
        }
    }
}

/// Whether compiled code of `proto` may spend fuel: it has loops (`headers`) or
/// calls. Code that may not neither reads nor writes `JitCtx::fuel`.
pub fn may_charge(proto: &Proto, headers: &[usize]) -> bool {
    !headers.is_empty() || proto.code.iter().any(|i| i.op_byte() == opc::Call)
}

/// Targets of backward jumps (where loops start, and where the interpreter may enter)
/// with the steps an iteration charges: per pc, 0 where no loop starts.
fn loop_charges(proto: &Proto) -> Vec<u32> {
    let mut charge = vec![0u32; proto.code.len()];
    for (pc, ins) in proto.code.iter().enumerate() {
        let target = match ins.op_byte() {
            opc::Jmp => pc as isize + 1 + ins.sj(),
            opc::ForLoop | opc::ForLoopIncl => pc as isize + 1 + ins.sbx(),
            _ => continue,
        };
        if target >= 0 && (target as usize) <= pc {
            let c = &mut charge[target as usize];
            *c = (*c).max((pc + 1 - target as usize) as u32);
        }
    }
    charge
}

/// Backward liveness. An exit makes every register live (the interpreter may read any).
fn liveness(proto: &Proto, types: &[Option<Vec<Ty>>], flows: &[Flow]) -> Vec<Vec<bool>> {
    let n = proto.code.len();
    let regs = proto.max_regs as usize;
    let mut live = vec![vec![false; regs]; n];
    let mut changed = true;
    while changed {
        changed = false;
        for pc in (0..n).rev() {
            if types[pc].is_none() {
                continue;
            }
            let mut out = vec![false; regs];
            if flows[pc] == Flow::Exit {
                out = vec![true; regs];
            }
            for s in successors(pc, flows[pc]) {
                if s < n {
                    for (o, l) in out.iter_mut().zip(&live[s]) {
                        *o |= *l;
                    }
                }
            }
            let (reads, writes) = reads_writes(proto.code[pc], regs);
            for w in writes {
                out[w] = false;
            }
            for r in reads {
                out[r] = true;
            }
            if out != live[pc] {
                live[pc] = out;
                changed = true;
            }
        }
    }
    live
}

/// Registers whose window slots an instruction may overwrite.
pub fn writes(ins: Instr, regs: usize) -> Vec<usize> {
    reads_writes(ins, regs).1
}

/// Registers an instruction reads and writes (only for instructions that compile; an
/// exit is handled by its caller).
fn reads_writes(ins: Instr, regs: usize) -> (Vec<usize>, Vec<usize>) {
    let (a, b, c) = (ins.a(), ins.b(), ins.c());
    let all_from = |r: usize| (r..regs).collect::<Vec<_>>();
    match ins.op_byte() {
        opc::Move | opc::Unm | opc::Not | opc::BNot => (vec![b], vec![a]),
        opc::LoadK
        | opc::LoadI
        | opc::LoadTrue
        | opc::LoadFalse
        | opc::GetModule
        | opc::LoadBuiltin => (vec![], vec![a]),
        opc::LoadNil => (vec![], (a..=a + b).collect()),
        opc::SetModule | opc::Test | opc::DefaultArg | opc::Return => (vec![a], vec![]),
        opc::Add
        | opc::Sub
        | opc::Mul
        | opc::Div
        | opc::IDiv
        | opc::Mod
        | opc::BAnd
        | opc::BOr
        | opc::BXor
        | opc::Shl
        | opc::Shr
        | opc::Eq
        | opc::Ne
        | opc::Lt
        | opc::Le
        | opc::Gt
        | opc::Ge => (vec![b, c], vec![a]),
        opc::AddK | opc::SubK | opc::MulK | opc::DivK | opc::IDivK | opc::ModK => {
            (vec![b], vec![a])
        }
        opc::TestEq | opc::TestLt | opc::TestLe | opc::TestGt | opc::TestGe => (vec![a, b], vec![]),
        opc::TestEqK | opc::TestLtK | opc::TestLeK | opc::TestGtK | opc::TestGeK => {
            (vec![a], vec![])
        }
        opc::ForPrep | opc::ForPrepIncl => ((a..a + 3).collect(), vec![a + 3]),
        opc::ForLoop | opc::ForLoopIncl => ((a..a + 3).collect(), vec![a, a + 3]),
        opc::CheckType => (vec![a], vec![a]),
        opc::GetIndex => (vec![b, c], vec![a]),
        opc::SetIndex => (vec![a, b, c], vec![]),
        opc::GetField => (vec![b], vec![a]),
        opc::SetField => (vec![a, c], vec![]),
        opc::CallMethod => ((a + 1..=a + 1 + b).collect(), all_from(a)),
        // The callee and its arguments are read; everything from the call slot up is
        // clobbered by the callee's frame.
        opc::Call => ((a..=a + b).collect(), all_from(a)),
        opc::IterPrep => (vec![a], vec![a + 1]),
        // The cursor is read before it is written.
        opc::IterNext1 => (vec![a, a + 1], vec![a + 2]),
        opc::Jmp => (vec![], vec![]),
        // Anything not listed is assumed to read and write every register: a new opcode
        // can make liveness imprecise, never wrong (reads count after writes).
        _ => (all_from(0), all_from(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_keep_equal_types_and_spill_others() {
        assert_eq!(Ty::Int.join(Ty::Int), Ty::Int);
        assert_eq!(Ty::Int.join(Ty::Unset), Ty::Int);
        assert_eq!(Ty::Int.join(Ty::Float), Ty::Mem);
        assert_eq!(Ty::Mem.join(Ty::Int), Ty::Mem);
    }

    #[test]
    fn sites_override_parameter_hints_and_set_the_default() {
        let facts = Facts {
            hints: vec![Ty::Int],
            ..Default::default()
        }
        .with_sites(vec![Site {
            pc: 3,
            reg: 0,
            ty: Ty::Float,
        }]);
        assert_eq!(facts.hint(3, 0), Ty::Float);
        assert_eq!(facts.hint(4, 0), Ty::Int);
        assert_eq!(facts.default_number, Ty::Float);
        assert_eq!(ty_of_tag(kiln_vm::value::tag::ARRAY), Ty::Mem);
    }

    #[test]
    fn memory_operands_are_guessed_from_their_partner() {
        let u = Ty::Unset;
        assert_eq!(
            guess_numbers(Ty::Mem, Ty::Float, u, u, Ty::Int),
            Some((Ty::Float, Ty::Float))
        );
        assert_eq!(
            guess_numbers(Ty::Mem, Ty::Mem, u, u, Ty::Int),
            Some((Ty::Int, Ty::Int))
        );
        assert_eq!(
            guess_numbers(Ty::Float, Ty::Mem, u, Ty::Int, Ty::Int),
            Some((Ty::Float, Ty::Int))
        );
        assert_eq!(guess_numbers(Ty::Nil, Ty::Int, u, u, Ty::Int), None);
        // Feedback: a float seen makes floats the default; a non-number seen stops the
        // guessing at that site.
        assert_eq!(
            guess_numbers(Ty::Mem, Ty::Mem, u, u, Ty::Float),
            Some((Ty::Float, Ty::Float))
        );
        assert_eq!(guess_numbers(Ty::Mem, Ty::Int, Ty::Mem, u, Ty::Int), None);
        assert_eq!(arith_result(opc::Add, Ty::Int, Ty::Float), Ty::Float);
        assert_eq!(arith_result(opc::Div, Ty::Int, Ty::Int), Ty::Float);
    }
}

#[cfg(test)]
mod loop_tests {
    use super::*;

    fn compile(src: &str) -> kiln_vm::Program {
        kiln_vm::compile("t.kn", src, &kiln_vm::Capabilities::all())
            .expect("compiles")
            .0
    }

    #[test]
    fn loops_have_headers() {
        let p = compile("fn f(n) { let s = 0\n for i in 0..n { s += i }\n let j = 0\n while j < n { j += 1 }\n s }");
        let proto = p.protos.iter().find(|p| &*p.name == "f").unwrap();
        let an = analyse(proto, &Facts::default(), &window_params(proto));
        assert_eq!(an.headers.len(), 2, "{:?}", an.headers);
    }

    #[test]
    fn loops_that_always_exit_are_no_entries() {
        // The first loop calls a method on every iteration (an exit); the second only
        // on some, so compiled code can go round it.
        let p = compile(
            "fn f(xs, n) { for i in 0..n { xs.push(i) }\n \
             let s = 0\n for i in 0..n { if i == 7 { xs.push(i) }\n s += i }\n s }",
        );
        let proto = p.protos.iter().find(|p| &*p.name == "f").unwrap();
        let an = analyse(proto, &Facts::default(), &window_params(proto));
        assert_eq!(an.headers.len(), 1, "{:?}", an.headers);
    }
}
