//! The instruction set: encoding, every opcode's meaning, and the disassembler.
//!
//! Kiln's interpreter is a register machine in the style of Lua 5.4. Every instruction is
//! one 32-bit word; the low byte is the opcode and the rest are operands in one of four
//! formats:
//!
//! ```text
//!   31        24 23        16 15         8 7          0
//!  +------------+------------+------------+------------+
//!  |     C      |     B      |     A      |   opcode   |   ABC   three 8-bit operands
//!  +------------+------------+------------+------------+
//!  |          Bx (u16)       |     A      |   opcode   |   ABx   unsigned 16-bit operand
//!  +-------------------------+------------+------------+
//!  |         sBx (i16)       |     A      |   opcode   |   AsBx  signed 16-bit operand
//!  +-------------------------+------------+------------+
//!  |               sJ (i24)               |   opcode   |   sJ    signed 24-bit jump
//!  +--------------------------------------+------------+
//! ```
//!
//! `R[x]` is register `x` of the current frame's window (`stack[base + x]`), `K[x]` the
//! proto's constant `x`, `U[x]` the closure's captured cell `x`, `M[x]` the module
//! variable `x`, `P[x]` the nested proto `x`. Jump offsets are relative to the *next*
//! instruction. `k` is a 0/1 flag operand.
//!
//! Conditional tests (`Test*`) are always followed by a `Jmp`: when the condition holds
//! the interpreter takes that jump at once, otherwise it skips it (Lua's `OP_LT` + `OP_JMP`
//! pairing). The compiler therefore never emits a test without its jump.
//!
//! The register window is the interface between the tiers: compiled code (issue 4) reads
//! and writes the same `[Value]` window and resumes the interpreter at a bytecode pc.

use std::fmt;

/// One encoded instruction.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct Instr(pub u32);

const _: () = assert!(std::mem::size_of::<Instr>() == 4);

/// The operand layout of an opcode, used by the disassembler and the encoder's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    ABC,
    ABx,
    AsBx,
    SJ,
}

macro_rules! opcodes {
    ($( $name:ident $fmt:ident $doc:literal ),* $(,)?) => {
        /// Every opcode, with its format and meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Op { $( #[doc = $doc] $name ),* }

        impl Op {
            /// All opcodes in encoding order.
            pub const ALL: &'static [Op] = &[$(Op::$name),*];

            pub fn format(self) -> Format {
                match self { $(Op::$name => Format::$fmt),* }
            }

            pub fn name(self) -> &'static str {
                match self { $(Op::$name => stringify!($name)),* }
            }

            pub fn doc(self) -> &'static str {
                match self { $(Op::$name => $doc),* }
            }
        }

        /// Opcode bytes as constants, so the interpreter can `match` on the raw byte.
        #[allow(non_upper_case_globals)]
        pub mod opc {
            $( pub const $name: u8 = super::Op::$name as u8; )*
        }
    };
}

opcodes! {
    // Loads and moves.
    Move        ABC  "R[A] := R[B]",
    LoadK       ABx  "R[A] := K[Bx]",
    LoadI       AsBx "R[A] := sBx (an int)",
    LoadNil     ABC  "R[A] ..= R[A+B] := nil",
    LoadTrue    ABC  "R[A] := true",
    LoadFalse   ABC  "R[A] := false",
    LoadBuiltin ABx  "R[A] := builtin global Bx (print, len, ...)",
    // Variables.
    GetModule   ABx  "R[A] := M[Bx]; error if M[Bx] was never initialised",
    SetModule   ABx  "M[Bx] := R[A]",
    GetUpval    ABC  "R[A] := U[B].value",
    SetUpval    ABC  "U[B].value := R[A]",
    NewCell     ABC  "R[A] := new cell holding R[A] (a captured local moves into a cell)",
    GetCell     ABC  "R[A] := R[B].value (R[B] is a cell)",
    SetCell     ABC  "R[A].value := R[B] (R[A] is a cell)",
    // Arithmetic; the K forms take the right operand from K[C].
    Add         ABC  "R[A] := R[B] + R[C]",
    Sub         ABC  "R[A] := R[B] - R[C]",
    Mul         ABC  "R[A] := R[B] * R[C]",
    Div         ABC  "R[A] := R[B] / R[C] (always a float)",
    IDiv        ABC  "R[A] := R[B] ~/ R[C] (floor division)",
    Mod         ABC  "R[A] := R[B] % R[C] (floored modulo)",
    Pow         ABC  "R[A] := R[B] ** R[C]",
    AddK        ABC  "R[A] := R[B] + K[C]",
    SubK        ABC  "R[A] := R[B] - K[C]",
    MulK        ABC  "R[A] := R[B] * K[C]",
    DivK        ABC  "R[A] := R[B] / K[C]",
    IDivK       ABC  "R[A] := R[B] ~/ K[C]",
    ModK        ABC  "R[A] := R[B] % K[C]",
    PowK        ABC  "R[A] := R[B] ** K[C]",
    BAnd        ABC  "R[A] := R[B] & R[C]",
    BOr         ABC  "R[A] := R[B] | R[C]",
    BXor        ABC  "R[A] := R[B] ^ R[C]",
    Shl         ABC  "R[A] := R[B] << R[C] (count mod 64)",
    Shr         ABC  "R[A] := R[B] >> R[C] (arithmetic, count mod 64)",
    Unm         ABC  "R[A] := -R[B]",
    Not         ABC  "R[A] := !R[B]",
    BNot        ABC  "R[A] := ~R[B]",
    // Comparisons producing a bool. `>` and `>=` have their own opcodes (rather than
    // swapped operands) so that type errors name the operands in source order.
    Eq          ABC  "R[A] := R[B] == R[C]",
    Ne          ABC  "R[A] := R[B] != R[C]",
    Lt          ABC  "R[A] := R[B] < R[C]",
    Le          ABC  "R[A] := R[B] <= R[C]",
    Gt          ABC  "R[A] := R[B] > R[C]",
    Ge          ABC  "R[A] := R[B] >= R[C]",
    // Branches.
    Jmp         SJ   "pc += sJ",
    Test        ABC  "if truthy(R[A]) == k(C) then take the next Jmp else skip it",
    TestEq      ABC  "if (R[A] == R[B]) == k(C) then take the next Jmp else skip it",
    TestLt      ABC  "if (R[A] < R[B]) == k(C) then take the next Jmp else skip it",
    TestLe      ABC  "if (R[A] <= R[B]) == k(C) then take the next Jmp else skip it",
    TestGt      ABC  "if (R[A] > R[B]) == k(C) then take the next Jmp else skip it",
    TestGe      ABC  "if (R[A] >= R[B]) == k(C) then take the next Jmp else skip it",
    // The K forms compare with a number constant K[B] (a literal right operand).
    TestEqK     ABC  "if (R[A] == K[B]) == k(C) then take the next Jmp else skip it",
    TestLtK     ABC  "if (R[A] < K[B]) == k(C) then take the next Jmp else skip it",
    TestLeK     ABC  "if (R[A] <= K[B]) == k(C) then take the next Jmp else skip it",
    TestGtK     ABC  "if (R[A] > K[B]) == k(C) then take the next Jmp else skip it",
    TestGeK     ABC  "if (R[A] >= K[B]) == k(C) then take the next Jmp else skip it",
    // Loops.
    ForPrep     AsBx "R[A], R[A+1], R[A+2] = start, end, step (ints; end exclusive); if the loop runs zero times pc += sBx else R[A+3] := R[A]",
    ForLoop     AsBx "R[A] += R[A+2]; if R[A] has not passed R[A+1]: R[A+3] := R[A], pc += sBx",
    ForPrepIncl AsBx "ForPrep with an inclusive end (`a..=b`, so `b` may be the largest int)",
    ForLoopIncl AsBx "ForLoop with an inclusive end",
    IterPrep    ABC  "R[A] := iterable R[A] (array, map, str, range); R[A+1] := 0 (the cursor); error if not iterable",
    IterNext1   AsBx "advance the iterator in R[A], R[A+1]; when exhausted pc += sBx, else R[A+2] := element (map: key)",
    IterNext2   AsBx "like IterNext1 but R[A+2] := index (map: key), R[A+3] := element (map: value)",
    DefaultArg  AsBx "if R[A] holds an argument (is not the missing marker) pc += sBx",
    CheckType   ABx  "check R[A] against type check Bx of the proto (int converts to float for `float`)",
    // Calls.
    Call        ABC  "R[A] := R[A](R[A+1], ..., R[A+B])",
    CallMethod  ABC  "R[A] := R[A+1].K[C](R[A+2], ..., R[A+1+B]) (receiver R[A+1], B arguments)",
    Return      ABC  "return R[A] (B = 1) or nil (B = 0)",
    Closure     ABx  "R[A] := closure of P[Bx], capturing cells as P[Bx]'s upvalue list says",
    // Collections and objects.
    NewArray    ABC  "R[A] := [R[B], ..., R[B+C-1]]",
    ArrayExtend ABC  "push R[B], ..., R[B+C-1] onto the array R[A]",
    NewMap      ABC  "R[A] := {R[B]: R[B+1], ...} with C pairs",
    MapExtend   ABC  "insert C pairs from R[B] ... into the map R[A]",
    NewRange    ABC  "R[A] := R[B]..R[C] (C > 0 is the register; inclusive when opcode is NewRangeIncl)",
    NewRangeIncl ABC "R[A] := R[B]..=R[C]",
    GetIndex    ABC  "R[A] := R[B][R[C]]",
    SetIndex    ABC  "R[A][R[B]] := R[C]",
    GetField    ABC  "R[A] := R[B].K[C]",
    SetField    ABC  "R[A].K[B] := R[C]",
    NewStruct   ABC  "R[A] := instance of struct R[B] with fields named by K[C] from R[B+1] ...; then runs its default initialiser",
    NewStructType ABx "R[A] := struct type described by struct declaration Bx of the proto",
    AddMethod   ABC  "add closure R[B] as method K[C] of struct type R[A]",
    Concat      ABC  "R[A] := str(R[B]) + ... + str(R[B+C-1])",
    // Errors.
    Throw       ABC  "throw R[A]",
    PushHandler AsBx "push an error handler: on error, unwind to this frame, R[A] := error, pc := here + sBx",
    PopHandler  ABC  "pop the innermost error handler of this frame",
    AddSuppressed ABC "append R[B] to the suppressed list of the error R[A] (if R[A] is an Error)",
    // Modules.
    ImportModule ABx "R[A] := module Bx of the program, running its top level first if it has not run",
    ImportStd   ABx  "R[A] := standard module Bx (math, json, ...)",
    GetModuleObj ABC "R[A] := the current module's object",
    Spawn       ABC  "R[A] := spawn R[A](R[A+1], ..., R[A+B]) as a task",
}

impl Op {
    pub fn from_u8(b: u8) -> Option<Op> {
        Op::ALL.get(b as usize).copied()
    }
}

const MAX_SBX: i32 = i16::MAX as i32;
const MIN_SBX: i32 = i16::MIN as i32;
const MAX_SJ: i32 = (1 << 23) - 1;
const MIN_SJ: i32 = -(1 << 23);

impl Instr {
    pub fn abc(op: Op, a: u8, b: u8, c: u8) -> Instr {
        debug_assert_eq!(op.format(), Format::ABC, "{op:?}");
        Instr(op as u32 | (a as u32) << 8 | (b as u32) << 16 | (c as u32) << 24)
    }

    pub fn abx(op: Op, a: u8, bx: u16) -> Instr {
        debug_assert_eq!(op.format(), Format::ABx, "{op:?}");
        Instr(op as u32 | (a as u32) << 8 | (bx as u32) << 16)
    }

    /// Returns `None` when the offset does not fit 16 bits.
    pub fn asbx(op: Op, a: u8, sbx: i32) -> Option<Instr> {
        debug_assert_eq!(op.format(), Format::AsBx, "{op:?}");
        (MIN_SBX..=MAX_SBX).contains(&sbx).then_some(Instr(
            op as u32 | (a as u32) << 8 | ((sbx as i16 as u16) as u32) << 16,
        ))
    }

    /// Returns `None` when the offset does not fit 24 bits.
    pub fn jump(op: Op, sj: i32) -> Option<Instr> {
        debug_assert_eq!(op.format(), Format::SJ, "{op:?}");
        (MIN_SJ..=MAX_SJ)
            .contains(&sj)
            .then_some(Instr(op as u32 | ((sj as u32) & 0xFF_FFFF) << 8))
    }

    #[inline(always)]
    pub fn op_byte(self) -> u8 {
        self.0 as u8
    }

    pub fn op(self) -> Option<Op> {
        Op::from_u8(self.op_byte())
    }

    #[inline(always)]
    pub fn a(self) -> usize {
        (self.0 >> 8) as u8 as usize
    }

    #[inline(always)]
    pub fn b(self) -> usize {
        (self.0 >> 16) as u8 as usize
    }

    #[inline(always)]
    pub fn c(self) -> usize {
        (self.0 >> 24) as usize
    }

    #[inline(always)]
    pub fn bx(self) -> usize {
        (self.0 >> 16) as usize
    }

    #[inline(always)]
    pub fn sbx(self) -> isize {
        (self.0 >> 16) as u16 as i16 as isize
    }

    #[inline(always)]
    pub fn sj(self) -> isize {
        (self.0 as i32 >> 8) as isize
    }
}

impl fmt::Debug for Instr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(op) = self.op() else {
            return write!(f, "<bad {:#010x}>", self.0);
        };
        let name = op.name();
        match op.format() {
            Format::ABC => write!(f, "{name:<13} {} {} {}", self.a(), self.b(), self.c()),
            Format::ABx => write!(f, "{name:<13} {} {}", self.a(), self.bx()),
            Format::AsBx => write!(f, "{name:<13} {} {}", self.a(), self.sbx()),
            Format::SJ => write!(f, "{name:<13} {}", self.sj()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_round_trip() {
        let i = Instr::abc(Op::Add, 1, 2, 255);
        assert_eq!((i.op(), i.a(), i.b(), i.c()), (Some(Op::Add), 1, 2, 255));
        let i = Instr::abx(Op::LoadK, 7, 65535);
        assert_eq!((i.op(), i.a(), i.bx()), (Some(Op::LoadK), 7, 65535));
        let i = Instr::asbx(Op::ForLoop, 3, -32768).unwrap();
        assert_eq!((i.a(), i.sbx()), (3, -32768));
        let i = Instr::jump(Op::Jmp, -(1 << 23)).unwrap();
        assert_eq!(i.sj(), -(1 << 23));
        let i = Instr::jump(Op::Jmp, (1 << 23) - 1).unwrap();
        assert_eq!(i.sj(), (1 << 23) - 1);
    }

    #[test]
    fn out_of_range_offsets_are_refused() {
        assert!(Instr::asbx(Op::ForLoop, 0, 40_000).is_none());
        assert!(Instr::jump(Op::Jmp, 1 << 23).is_none());
    }

    #[test]
    fn opcode_numbering_is_dense() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
            assert_eq!(Op::from_u8(i as u8), Some(*op));
        }
        assert!(Op::ALL.len() < 256);
    }
}
