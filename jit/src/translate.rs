//! Bytecode to Cranelift IR, one instruction at a time, following [`infer::transfer`].
//!
//! Each VM register has two Cranelift variables (an `i64` for ints and bools, an `f64`
//! for floats); the analysis says which one holds the register's value at each pc, or
//! that it lives in the window. Basic blocks start at the analysis' leaders. Every
//! branch goes through an edge block that stores registers which are typed here but in
//! memory at the target. Side exits are cold blocks that store every typed register and
//! return the pc to resume at.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F64, I16, I32, I64, I8};
use cranelift_codegen::ir::{self, Block, FuncRef, InstBuilder, MemFlagsData, SigRef};
use cranelift_codegen::isa;
use cranelift_frontend::{FunctionBuilder, Switch, Variable};
use kiln_vm::bytecode::opc;
use kiln_vm::program::{Constant, Proto};

use crate::abi::*;
use crate::bounds;
use crate::infer::{self, Analysis, FieldSlot, Flow, Ty};

/// Imported helpers the generated code calls.
pub struct Helpers {
    pub module_vars: FuncRef,
    pub float_mod: FuncRef,
    pub field_cache_fill: FuncRef,
    /// `math` functions that are calls to libm: sin, cos, exp, log.
    pub math: [FuncRef; 4],
    /// The signature of compiled functions, for calls through the code table.
    pub proto_sig: SigRef,
    /// In side-exit stress mode, `stress::exit_stress` and the address of its counter.
    pub exit_stress: Option<(FuncRef, i64)>,
}

/// A block waiting to be filled once the current branch is emitted.
enum Pending {
    /// Store `spills` then jump to the block of `target`.
    Edge {
        block: Block,
        spills: Vec<(usize, Ty)>,
        target: usize,
    },
    /// Store every typed register of `state` and leave, resuming at `pc`; `flag`
    /// ([`EXPECTED_EXIT`], [`FUEL_EXIT`] or 0 for a failed guard) says why.
    Exit {
        block: Block,
        state: Vec<Ty>,
        /// Registers whose window slot is stale, with the words to store.
        unstored: Vec<(usize, (ir::Value, ir::Value))>,
        pc: usize,
        flag: i64,
    },
}

pub struct Translator<'a, 'f> {
    b: FunctionBuilder<'f>,
    proto: &'a Proto,
    an: &'a Analysis,
    h: Helpers,
    ctx: ir::Value,
    regs: ir::Value,
    module: ir::Value,
    mvars: ir::Value,
    vi: Vec<Variable>,
    vf: Vec<Variable>,
    blocks: Vec<Option<Block>>,
    st: Vec<Ty>,
    /// The types after the current instruction, as the analysis decided them.
    after: Vec<Ty>,
    pending: Vec<Pending>,
    /// The current block has been terminated.
    done: bool,
    caches: Caches,
    layout: Layout,
    /// Compiled calls that may still nest below a callee of this frame, in units of
    /// `DEPTH_ONE` (the high half of the `entry` argument, less one): negative when
    /// this frame may not call.
    depth: ir::Value,
    /// The fuel left (`JitCtx::fuel`), in a variable so loops count it in a machine
    /// register; stored to `ctx` around calls and wherever the code leaves.
    fuel: Variable,
    /// Whether this code spends fuel at all (`infer::may_charge`); if not, `fuel` is
    /// never defined and `ctx` keeps the count.
    charges: bool,
    /// Per pc: the callee a `Call` was compiled for, if known.
    callees: Vec<Option<Callee>>,
    /// This is a direct variant (see [`Variant`]).
    direct: bool,
    /// The proto pushes error handlers (see `read_after_exit`).
    has_handlers: bool,
    /// Per register: its window slot's tag (`i8`) and payload (`i64`) as SSA values,
    /// when this code just stored or loaded them there, so reading the slot back needs
    /// no load. Cleared when the register is written and at every block leader.
    mirror: Vec<Option<(ir::Value, ir::Value)>>,
    /// Mirrors the current instruction made, valid once its writes are cleared.
    fresh: Vec<(usize, (ir::Value, ir::Value))>,
    /// Per register: the two words of a value this code put in the register without
    /// storing them to its window slot, which is stale (`mirror` holds the value
    /// too). They are stored before anything else could read the slot: a call, a side
    /// exit, a jump to a block that reads the register, a helper given the slot.
    /// Field and element reads, and moves of them, skip the store this way.
    unstored: Vec<Option<(ir::Value, ir::Value)>>,
    /// Unstored values the current instruction made, valid once its writes are cleared.
    fresh_unstored: Vec<(usize, (ir::Value, ir::Value))>,
    /// `function_of` entries the current instruction made.
    fresh_functions: Vec<(usize, u16)>,
    /// Where fields live when one struct declaration has them (`infer::field_slots`).
    fields: &'a HashMap<Arc<str>, Option<FieldSlot>>,
    /// Per register: the declaration key this code checked its instance has, and the
    /// instance's field array (which never moves). Cleared like `mirror`.
    objects: Vec<Option<(u64, ir::Value)>>,
    /// The field names whose values may change while this code runs
    /// (`infer::stored_fields`; `None`: all). Reads of the others are pure to
    /// Cranelift, which merges repeated ones and hoists them out of loops.
    stored_fields: Option<HashSet<Arc<str>>>,
    /// The module's constant function slots, with the proto each is bound to.
    functions: HashMap<u16, u32>,
    /// Constant function slots checked to hold their proto's closure: for the whole
    /// code (`Some(ok)`, checked at entry, for protos with loops) or since the block's
    /// start (`None`). A constant slot changes only between runs (a REPL
    /// redefinition), never while code runs.
    checked_functions: HashMap<u16, Option<ir::Value>>,
    /// In a direct variant, the proto's own constant slot, which holds its closure
    /// for as long as the code runs (see `Translator::new`).
    own_slot: Option<u16>,
    /// Per register: the constant function slot it was read from, unstored (a call
    /// through it leaves the window slot stale; unwinding copies the module slot).
    /// Cleared like `mirror`.
    function_of: Vec<Option<u16>>,
}

/// The callee's proto id as a call's unwinding records it.
#[derive(Clone, Copy)]
enum CalleeProto {
    /// Checked to be this one before the call.
    Known(u32),
    /// Loaded from the closure.
    Loaded(ir::Value),
}

/// The two entries a proto can have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Entered by the interpreter at pc 0 or a loop header, with the arguments in the
    /// window; the value is returned in `regs[-1]` (signature in `abi`).
    Generic,
    /// Entered only by compiled callers that know the callee, at pc 0. Parameters of
    /// the listed types travel as machine arguments (`Mem` ones in the window), and the
    /// value comes back in registers: see [`direct_signature`].
    Direct(Vec<Ty>),
}

/// The signature of a direct variant taking `params`:
/// `(ctx, regs, module, module_vars, depth, typed params...) -> (status | tag << 8,
/// payload)`, where `depth` is in units of `DEPTH_ONE`.
pub fn direct_signature(cc: isa::CallConv, params: &[Ty]) -> ir::Signature {
    let mut sig = ir::Signature::new(cc);
    sig.params.extend((0..5).map(|_| ir::AbiParam::new(I64)));
    for t in params.iter().filter(|t| t.is_typed()) {
        let ty = if *t == Ty::Float { F64 } else { I64 };
        sig.params.push(ir::AbiParam::new(ty));
    }
    sig.returns.push(ir::AbiParam::new(I64));
    sig.returns.push(ir::AbiParam::new(I64));
    sig
}

/// What the compiler knows about the program around the proto it translates.
pub struct Around<'a> {
    /// Per pc: the callee a `Call` was compiled for, if known.
    pub callees: Vec<Option<Callee>>,
    /// Where fields live when one declaration has them (`infer::field_slots`).
    pub fields: &'a HashMap<Arc<str>, Option<FieldSlot>>,
    /// The module's constant function slots and the proto each is bound to
    /// (`infer::module_functions`).
    pub functions: &'a [(u16, u32)],
    /// The proto being compiled.
    pub id: u32,
}

/// A callee's direct variant, as a call site sees it.
#[derive(Clone, Debug)]
pub struct DirectCallee {
    pub func: FuncRef,
    pub params: Vec<Ty>,
    /// Its body is copied into the caller (see `inline`), so its code need not exist.
    pub inlined: bool,
    /// It may spend fuel (`infer::may_charge`), so it reads and writes `JitCtx::fuel`.
    pub charges: bool,
}

/// Addresses and offsets baked into the code as constants.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Where an instance's field array pointer is (see `abi::instance_fields`).
    pub fields_at: i32,
    pub array: ArrayLayout,
    pub tables: TableAddrs,
}

/// The per-proto tables compiled calls read (they live as long as the tier).
#[derive(Clone, Copy, Debug)]
pub struct TableAddrs {
    /// Entry points (`u64`, 0 when not compiled).
    pub code: i64,
    /// Parameter counts of protos simple to call (`u8`, 255 otherwise).
    pub arity: i64,
    /// Register counts (`u16`).
    pub max_regs: i64,
}

/// What a call site knows about its callee ahead of time (see `infer::known_callees`).
#[derive(Clone, Debug)]
pub struct Callee {
    pub proto: u32,
    /// Its parameter count, when calls with that many arguments need no interpreter
    /// help (no defaults or rest parameter).
    pub nparams: u8,
    pub max_regs: u16,
    /// Its direct variant, when one was compiled before this code.
    pub direct: Option<DirectCallee>,
    /// The call is of the proto being compiled.
    pub recursive: bool,
}

/// The inline-cache words of one compiled version: one per field access, initially
/// empty. They must live as long as the code that embeds their addresses.
pub struct Caches {
    words: Box<[AtomicU64]>,
    used: usize,
}

impl Caches {
    /// Room for every field access of `proto`.
    pub fn for_proto(proto: &Proto) -> Caches {
        let n = proto
            .code
            .iter()
            .filter(|i| matches!(i.op_byte(), opc::GetField | opc::SetField))
            .count();
        Caches {
            words: (0..n).map(|_| AtomicU64::new(EMPTY_CACHE)).collect(),
            used: 0,
        }
    }

    fn next(&mut self) -> *const AtomicU64 {
        let w = &self.words[self.used];
        self.used += 1;
        w
    }
}

fn mem() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Memory no store changes while compiled code runs (see the invariants in
/// ARCHITECTURE.md's JIT section): Cranelift may merge, hoist out of loops or drop
/// such loads.
fn fixed() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
}

/// The comparison a test opcode (`TestLt`, `TestLtK`, ...) makes, as the opcode that
/// produces it as a value (`Lt`).
fn relation(test: u8) -> u8 {
    match test {
        opc::TestEq | opc::TestEqK => opc::Eq,
        opc::TestLt | opc::TestLtK => opc::Lt,
        opc::TestLe | opc::TestLeK => opc::Le,
        opc::TestGt | opc::TestGtK => opc::Gt,
        _ => opc::Ge,
    }
}

/// For an arithmetic opcode with a constant operand (`AddK`), its two-register twin.
fn register_form(op: u8) -> Option<u8> {
    Some(match op {
        opc::AddK => opc::Add,
        opc::SubK => opc::Sub,
        opc::MulK => opc::Mul,
        opc::DivK => opc::Div,
        opc::IDivK => opc::IDiv,
        opc::ModK => opc::Mod,
        _ => return None,
    })
}

fn off(r: usize) -> i32 {
    r as i32 * VALUE_SIZE
}

fn tag_of(t: Ty) -> i64 {
    match t {
        Ty::Nil => TAG_NIL,
        Ty::Bool => TAG_BOOL,
        Ty::Int => TAG_INT,
        Ty::Float => TAG_FLOAT,
        Ty::Unset | Ty::Mem | Ty::Math | Ty::Len => {
            unreachable!("only typed registers have a tag")
        }
    }
}

impl<'a, 'f> Translator<'a, 'f> {
    pub fn new(
        mut b: FunctionBuilder<'f>,
        proto: &'a Proto,
        an: &'a Analysis,
        h: Helpers,
        layout: Layout,
        around: Around<'a>,
        variant: &Variant,
    ) -> Self {
        let Around {
            callees,
            fields,
            functions,
            id,
        } = around;
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let n = proto.max_regs as usize;
        let vi = (0..n).map(|_| b.declare_var(I64)).collect();
        let vf = (0..n).map(|_| b.declare_var(F64)).collect();
        let direct = matches!(variant, Variant::Direct(_));
        // Generic: (ctx, regs, closure, module, mvars, depth | entry pc); direct: (ctx,
        // regs, module, mvars, depth, params...).
        let (module, mvars, depth) = if direct {
            (p[2], p[3], p[4])
        } else {
            let depth = b.ins().band_imm_s(p[5], !0xFFFF_FFFF);
            (p[3], p[4], depth)
        };
        let depth = b.ins().iadd_imm_s(depth, -DEPTH_ONE);
        let fuel = b.declare_var(I64);
        let charges = infer::may_charge(proto, &an.headers);
        if charges {
            let left = b.ins().load(I64, mem(), p[0], CTX_FUEL);
            b.def_var(fuel, left);
        }
        let blocks = (0..proto.code.len())
            .map(|pc| (an.leaders[pc] && an.types[pc].is_some()).then(|| b.create_block()))
            .collect();
        let mut t = Translator {
            b,
            proto,
            an,
            h,
            ctx: p[0],
            regs: p[1],
            module,
            mvars,
            vi,
            vf,
            blocks,
            st: Vec::new(),
            after: Vec::new(),
            pending: Vec::new(),
            done: false,
            caches: Caches::for_proto(proto),
            layout,
            depth,
            fuel,
            charges,
            callees,
            direct,
            has_handlers: proto.code.iter().any(|i| i.op_byte() == opc::PushHandler),
            mirror: vec![None; n],
            fresh: Vec::new(),
            unstored: vec![None; n],
            fresh_unstored: Vec::new(),
            fresh_functions: Vec::new(),
            fields,
            objects: vec![None; n],
            stored_fields: infer::stored_fields(proto, an),
            functions: functions.iter().copied().collect(),
            checked_functions: HashMap::new(),
            // Every direct call is made through the callee's own constant slot, checked
            // by the caller (`known_callees`), and slots do not change while code
            // runs: a direct variant's reads of its own slot need no check.
            own_slot: functions
                .iter()
                .find(|&&(_, p)| direct && p == id)
                .map(|&(slot, _)| slot),
            function_of: vec![None; n],
        };
        if !direct && !t.an.headers.is_empty() {
            t.check_functions_at_entry();
        }
        match variant {
            Variant::Generic => {
                let entry_pc = t.b.ins().ireduce(I32, p[5]);
                t.with_entry_switch(entry_pc)
            }
            Variant::Direct(params) => t.with_params(params, &p[5..]),
        }
    }

    /// The direct entry: typed parameters arrive as machine arguments.
    fn with_params(mut self, params: &[Ty], args: &[ir::Value]) -> Self {
        self.st = vec![Ty::Unset; self.proto.max_regs as usize];
        self.st[..params.len()].copy_from_slice(params);
        let typed = params.iter().enumerate().filter(|(_, t)| t.is_typed());
        for ((r, &t), &v) in typed.zip(args) {
            self.def(r, t, v);
        }
        self.jump_to(0);
        self
    }

    /// The entry: pc 0, or one of the loop headers (on-stack replacement).
    fn with_entry_switch(mut self, entry_pc: ir::Value) -> Self {
        let mut switch = Switch::new();
        let start = self.b.create_block();
        switch.set_entry(0, start);
        let mut osr = Vec::new();
        for &h in &self.an.headers {
            if h != 0 && self.blocks[h].is_some() {
                let blk = self.b.create_block();
                switch.set_entry(h as u128, blk);
                osr.push((h, blk));
            }
        }
        let refuse = self.b.create_block();
        switch.emit(&mut self.b, entry_pc, refuse);
        // Function start: parameters are in the window, everything else unset.
        self.b.switch_to_block(start);
        self.st = self.an.types[0].clone().unwrap_or_default();
        let entry_state: Vec<Ty> = self
            .st
            .iter()
            .map(|t| if *t == Ty::Mem { Ty::Mem } else { Ty::Unset })
            .collect();
        self.st = entry_state;
        self.jump_to(0);
        for (h, blk) in osr {
            self.b.switch_to_block(blk);
            self.osr_entry(h);
        }
        // An entry pc without a block: resume the interpreter right there.
        self.b.switch_to_block(refuse);
        let pc = self.b.ins().uextend(I64, entry_pc);
        self.b.ins().store(mem(), pc, self.ctx, CTX_EXIT_PC);
        let s = self.b.ins().iconst(I32, EXITED as i64);
        self.leave(s);
        self
    }

    /// Loads the live typed registers of loop header `h` from the window, checking
    /// their tags, then enters the loop.
    fn osr_entry(&mut self, h: usize) {
        let types = self.an.types[h].clone().expect("headers are reachable");
        self.st = vec![Ty::Mem; types.len()];
        for (r, &t) in types.iter().enumerate() {
            if t.is_typed() && self.an.live[h][r] {
                let tag = self.load_tag(r);
                let ok = self.b.ins().icmp_imm_s(IntCC::Equal, tag, tag_of(t));
                self.guard_type(ok, h, r);
                self.load_payload(r, t);
                self.st[r] = t;
            } else if !t.is_typed() {
                self.st[r] = t;
            } else {
                // Typed at the header but dead there: nothing to load.
                self.st[r] = Ty::Unset;
            }
        }
        self.jump_to(h);
    }

    /// Translates the whole proto and returns the builder to finalize, with the cache
    /// words the code uses.
    pub fn translate(mut self) -> (FunctionBuilder<'f>, Caches) {
        for pc in 0..self.proto.code.len() {
            let Some(state) = &self.an.types[pc] else {
                continue;
            };
            if let Some(blk) = self.blocks[pc] {
                if !self.done {
                    self.jump_to(pc);
                }
                self.b.switch_to_block(blk);
                self.st = state.clone();
                self.mirror.fill(None);
                self.objects.fill(None);
                self.unstored.fill(None);
                self.function_of.fill(None);
                self.checked_functions.retain(|_, ok| ok.is_some());
                self.done = false;
                let steps = self.an.charge[pc];
                if steps > 0 {
                    self.charge(steps as i64, pc);
                }
            }
            if !self.done {
                self.instr(pc);
            }
        }
        self.b.seal_all_blocks();
        (self.b, self.caches)
    }

    // ----- registers -------------------------------------------------------------

    fn load_tag(&mut self, r: usize) -> ir::Value {
        match self.mirror[r] {
            Some((tag, _)) => tag,
            None => self.b.ins().load(I8, mem(), self.regs, off(r)),
        }
    }

    /// The 8 payload bytes of register `r`'s window slot.
    fn load_word(&mut self, r: usize) -> ir::Value {
        match self.mirror[r] {
            Some((_, word)) => word,
            None => self.b.ins().load(I64, mem(), self.regs, off(r) + PAYLOAD),
        }
    }

    fn load_payload(&mut self, r: usize, t: Ty) {
        match t {
            Ty::Int => {
                let v = self.load_word(r);
                self.b.def_var(self.vi[r], v);
            }
            Ty::Bool => {
                let v = self.load_word(r);
                let v = self.b.ins().band_imm_s(v, 0xFF);
                self.b.def_var(self.vi[r], v);
            }
            Ty::Float => {
                let v = self.load_word(r);
                let v = self.b.ins().bitcast(F64, MemFlagsData::new(), v);
                self.b.def_var(self.vf[r], v);
            }
            _ => {}
        }
    }

    /// Stores typed register `r` into the window (at `base`, `slot`).
    fn store_value(&mut self, base: ir::Value, disp: i32, r: usize, t: Ty) {
        let tag = self.b.ins().iconst(I8, tag_of(t));
        self.b.ins().store(mem(), tag, base, disp);
        match t {
            Ty::Int => {
                let v = self.b.use_var(self.vi[r]);
                self.b.ins().store(mem(), v, base, disp + PAYLOAD);
            }
            Ty::Bool => {
                let v = self.b.use_var(self.vi[r]);
                let v = self.b.ins().ireduce(I8, v);
                self.b.ins().store(mem(), v, base, disp + PAYLOAD);
            }
            Ty::Float => {
                let v = self.b.use_var(self.vf[r]);
                self.b.ins().store(mem(), v, base, disp + PAYLOAD);
            }
            _ => {}
        }
    }

    fn spill(&mut self, r: usize, t: Ty) {
        let regs = self.regs;
        self.store_value(regs, off(r), r, t);
    }

    /// Copies a whole `Value` (16 bytes) between two places; returns its two words.
    fn copy_value(
        &mut self,
        from: ir::Value,
        from_off: i32,
        to: ir::Value,
        to_off: i32,
    ) -> (ir::Value, ir::Value) {
        let (lo, hi) = self.load_words(from, from_off);
        self.store_words(lo, hi, to, to_off);
        (lo, hi)
    }

    /// Loads a whole `Value` as its two words.
    fn load_words(&mut self, from: ir::Value, from_off: i32) -> (ir::Value, ir::Value) {
        let lo = self.b.ins().load(I64, mem(), from, from_off);
        let hi = self.b.ins().load(I64, mem(), from, from_off + 8);
        (lo, hi)
    }

    /// Stores a whole `Value` given as its two words.
    fn store_words(&mut self, lo: ir::Value, hi: ir::Value, to: ir::Value, to_off: i32) {
        self.b.ins().store(mem(), lo, to, to_off);
        self.b.ins().store(mem(), hi, to, to_off + 8);
    }

    /// Register `r` holds the value whose words are `lo` and `hi`, not stored to its
    /// window slot (see `unstored`).
    fn def_unstored(&mut self, r: usize, lo: ir::Value, hi: ir::Value) {
        let tag = self.b.ins().ireduce(I8, lo);
        self.fresh.push((r, (tag, hi)));
        self.fresh_unstored.push((r, (lo, hi)));
        self.st[r] = Ty::Mem;
    }

    /// Copies memory register `r`'s whole value to `to + to_off`.
    fn copy_reg(&mut self, r: usize, to: ir::Value, to_off: i32) {
        match self.unstored[r] {
            Some((lo, hi)) => {
                self.store_words(lo, hi, to, to_off);
            }
            None => {
                let regs = self.regs;
                self.copy_value(regs, off(r), to, to_off);
            }
        }
    }

    /// Stores register `r`'s unstored value to its window slot, leaving it marked
    /// unstored (this may be one arm of a branch; a second store is harmless).
    fn write_back(&mut self, r: usize) {
        if let Some((lo, hi)) = self.unstored[r] {
            let regs = self.regs;
            self.store_words(lo, hi, regs, off(r));
        }
    }

    /// Before a call through `R[a]`: stores every unstored register (the callee reads
    /// its arguments from the window, an exit inside it makes the interpreter read
    /// this frame's, and the collector may run and must see them), except a callee
    /// read from a constant function slot, which only the exits before the call read
    /// from the window (unwinding copies the module slot): see `called`.
    fn write_back_for_call(&mut self, a: usize) {
        for r in 0..self.unstored.len() {
            if r == a && self.function_of[a].is_some() {
                continue;
            }
            self.write_back(r);
            self.unstored[r] = None;
        }
    }

    /// After the call instruction through `R[a]`: the callee's words are no longer
    /// this frame's to store (`R[a]` receives the result).
    fn called(&mut self, a: usize) {
        self.unstored[a] = None;
    }

    /// Before leaving the block for `targets`: stores the unstored registers they
    /// may read.
    fn write_back_for(&mut self, targets: &[usize]) {
        for r in 0..self.unstored.len() {
            if targets.iter().any(|&t| self.an.live[t][r]) {
                self.write_back(r);
            }
        }
    }

    /// Register `r` as type `want` (int or float). A memory register is first checked
    /// to have the type the analysis gave it and loaded; an int is converted if a float
    /// is wanted.
    fn num(&mut self, r: usize, want: Ty, pc: usize) -> ir::Value {
        let t = self.after[r];
        self.num_as(r, t, want, pc)
    }

    /// Register `r` as `want`, a memory register being checked to be `t` first.
    fn num_as(&mut self, r: usize, t: Ty, want: Ty, pc: usize) -> ir::Value {
        if self.st[r].unknown() {
            let tag = self.load_tag(r);
            let ok = self.b.ins().icmp_imm_s(IntCC::Equal, tag, tag_of(t));
            self.guard_type(ok, pc, r);
            self.load_payload(r, t);
            self.st[r] = t;
        }
        match (self.st[r], want) {
            (Ty::Int, Ty::Float) => {
                let v = self.b.use_var(self.vi[r]);
                self.b.ins().fcvt_from_sint(F64, v)
            }
            (Ty::Float, _) => self.b.use_var(self.vf[r]),
            _ => self.b.use_var(self.vi[r]),
        }
    }

    fn konst(&mut self, i: usize, want: Ty) -> ir::Value {
        match (&self.proto.consts[i], want) {
            (Constant::Int(v), Ty::Float) => self.b.ins().f64const(*v as f64),
            (Constant::Int(v), _) => self.b.ins().iconst(I64, *v),
            (Constant::Float(v), _) => self.b.ins().f64const(*v),
            (Constant::Str(_), _) => unreachable!("infer refuses string operands"),
        }
    }

    fn def(&mut self, r: usize, t: Ty, v: ir::Value) {
        match t {
            Ty::Float => self.b.def_var(self.vf[r], v),
            _ => self.b.def_var(self.vi[r], v),
        }
        self.st[r] = t;
    }

    /// Truthiness of register `r` as an `i8` condition.
    fn truthy(&mut self, r: usize) -> ir::Value {
        match self.st[r] {
            Ty::Nil => self.b.ins().iconst(I8, 0),
            Ty::Bool => {
                let v = self.b.use_var(self.vi[r]);
                self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0)
            }
            Ty::Int | Ty::Float | Ty::Math | Ty::Len => self.b.ins().iconst(I8, 1),
            Ty::Mem | Ty::Unset => {
                let tag = self.load_tag(r);
                let is_nil = self.b.ins().icmp_imm_s(IntCC::Equal, tag, TAG_NIL);
                let is_bool = self.b.ins().icmp_imm_s(IntCC::Equal, tag, TAG_BOOL);
                let word = self.load_word(r);
                let byte = self.b.ins().ireduce(I8, word);
                let is_false = self.b.ins().icmp_imm_s(IntCC::Equal, byte, 0);
                let false_bool = self.b.ins().band(is_bool, is_false);
                let falsy = self.b.ins().bor(is_nil, false_bool);
                self.b.ins().bxor_imm_s(falsy, 1)
            }
        }
    }

    // ----- control ---------------------------------------------------------------

    /// The registers to store when going from the current state to `target`'s: typed
    /// here, in memory there, and live there (a dead register's slot keeps an older
    /// value, which nothing reads and which the collector already treats as a root).
    fn spills_to(&self, target: usize) -> Vec<(usize, Ty)> {
        let to = self.an.types[target]
            .as_ref()
            .expect("targets are reachable");
        let live = &self.an.live[target];
        self.st
            .iter()
            .zip(to)
            .enumerate()
            .filter(|(r, (from, to))| from.is_typed() && to.in_memory() && live[*r])
            .map(|(r, (from, _))| (r, *from))
            .collect()
    }

    /// A block that leads to `target` (storing what must be stored on the way).
    fn edge(&mut self, target: usize) -> Block {
        let spills = self.spills_to(target);
        let target_block = self.blocks[target].expect("targets are leaders");
        if spills.is_empty() {
            return target_block;
        }
        let block = self.b.create_block();
        self.pending.push(Pending::Edge {
            block,
            spills,
            target,
        });
        block
    }

    fn jump_to(&mut self, target: usize) {
        self.write_back_for(&[target]);
        let blk = self.edge(target);
        self.b.ins().jump(blk, &[]);
        self.fill_pending();
        self.done = true;
    }

    fn branch(&mut self, cond: ir::Value, taken: usize, skip: usize) {
        self.write_back_for(&[taken, skip]);
        let t = self.edge(taken);
        let s = self.edge(skip);
        self.b.ins().brif(cond, t, &[], s, &[]);
        self.fill_pending();
        self.done = true;
    }

    /// Continues only if `ok`; otherwise a side exit resuming at `pc` (the state is
    /// the one before the instruction at `pc`, so the interpreter re-runs it).
    fn guard(&mut self, ok: ir::Value, pc: usize) {
        self.guard_exit(ok, pc, 0);
    }

    /// A guard on the tag of register `r` (read at `pc`): its failure is type
    /// feedback.
    fn guard_type(&mut self, ok: ir::Value, pc: usize, r: usize) {
        if let Some((tick, counter)) = self.h.exit_stress {
            // Side-exit stress (see `crate::stress`): maybe leave here although `ok`.
            let counter = self.b.ins().iconst(I64, counter);
            let call = self.b.ins().call(tick, &[counter]);
            let go_on = self.b.inst_results(call)[0];
            self.guard_exit(go_on, pc, FUEL_EXIT);
        }
        self.guard_exit(ok, pc, (r as i64 + 1) << EXIT_REG_SHIFT);
    }

    /// A guard whose failure is not a wrong speculation (a call the interpreter must
    /// make: a native, a callee not compiled yet): it does not count toward
    /// blacklisting as a failed guard does.
    fn guard_expected(&mut self, ok: ir::Value, pc: usize) {
        self.guard_exit(ok, pc, EXPECTED_EXIT);
    }

    /// Charges `steps` of fuel; when the grant is spent, leaves at `pc` (a loop header
    /// or a call, so the interpreter refuels at its next charge).
    fn charge(&mut self, steps: i64, pc: usize) {
        let fuel = self.b.use_var(self.fuel);
        let left = self.b.ins().iadd_imm_s(fuel, -steps);
        self.b.def_var(self.fuel, left);
        let ok = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, left, 0);
        self.guard_exit(ok, pc, FUEL_EXIT);
    }

    /// Whether the interpreter, resuming at `pc`, may read register `r` before writing
    /// it: a typed register that is not is left unstored at an exit, which keeps
    /// values out of the exit paths (fewer stores, shorter live ranges). Error handlers
    /// are not edges of the analysed flow, so a proto with any keeps every register.
    fn read_after_exit(&self, pc: usize, r: usize) -> bool {
        self.has_handlers || self.an.live[pc][r]
    }

    /// Stores the fuel left (kept in a variable: see `fuel`) for code that reads it in
    /// `ctx`: a callee, or the VM once this code returns.
    fn store_fuel(&mut self) {
        if !self.charges {
            return;
        }
        let fuel = self.b.use_var(self.fuel);
        self.b.ins().store(mem(), fuel, self.ctx, CTX_FUEL);
    }

    /// Takes the fuel a callee left in `ctx`.
    fn load_fuel(&mut self) {
        if !self.charges {
            return;
        }
        let fuel = self.b.ins().load(I64, mem(), self.ctx, CTX_FUEL);
        self.b.def_var(self.fuel, fuel);
    }

    /// Returns `status` (an `i32`, not [`RETURNED`]) in this variant's convention.
    fn leave(&mut self, status: ir::Value) {
        self.store_fuel();
        if self.direct {
            // No payload: the word again, rather than a constant Cranelift would keep
            // in a register across the whole function.
            let word = self.b.ins().uextend(I64, status);
            self.b.ins().return_(&[word, word]);
        } else {
            self.b.ins().return_(&[status]);
        }
    }

    fn guard_exit(&mut self, ok: ir::Value, pc: usize, flag: i64) {
        let exit = self.exit_block(pc, flag);
        let cont = self.b.create_block();
        self.b.ins().brif(ok, cont, &[], exit, &[]);
        self.fill_pending();
        self.b.switch_to_block(cont);
    }

    fn exit_block(&mut self, pc: usize, flag: i64) -> Block {
        let block = self.b.create_block();
        self.b.set_cold_block(block);
        let unstored = (0..self.unstored.len())
            .filter_map(|r| Some((r, self.unstored[r]?)))
            .collect();
        self.pending.push(Pending::Exit {
            block,
            state: self.st.clone(),
            unstored,
            pc,
            flag,
        });
        block
    }

    /// An unconditional side exit at `pc`.
    fn exit_here(&mut self, pc: usize) {
        let blk = self.exit_block(pc, EXPECTED_EXIT);
        self.b.ins().jump(blk, &[]);
        self.fill_pending();
        self.done = true;
    }

    fn fill_pending(&mut self) {
        let saved = std::mem::take(&mut self.st);
        for p in std::mem::take(&mut self.pending) {
            match p {
                Pending::Edge {
                    block,
                    spills,
                    target,
                } => {
                    self.b.switch_to_block(block);
                    for (r, t) in spills {
                        self.spill(r, t);
                    }
                    let tb = self.blocks[target].expect("targets are leaders");
                    self.b.ins().jump(tb, &[]);
                }
                Pending::Exit {
                    block,
                    state,
                    unstored,
                    pc,
                    flag,
                } => {
                    self.b.switch_to_block(block);
                    for (r, t) in state.iter().enumerate() {
                        if t.is_typed() && self.read_after_exit(pc, r) {
                            self.spill(r, *t);
                        }
                    }
                    for (r, (lo, hi)) in unstored {
                        if self.read_after_exit(pc, r) {
                            let regs = self.regs;
                            self.store_words(lo, hi, regs, off(r));
                        }
                    }
                    let pcv = self.b.ins().iconst(I64, pc as i64 | flag);
                    self.b.ins().store(mem(), pcv, self.ctx, CTX_EXIT_PC);
                    let s = self.b.ins().iconst(I32, EXITED as i64);
                    self.leave(s);
                }
            }
        }
        self.st = saved;
    }

    // ----- instructions ----------------------------------------------------------

    fn instr(&mut self, pc: usize) {
        let ins = self.proto.code[pc];
        let (a, b, c) = (ins.a(), ins.b(), ins.c());
        // What the analysis decides for this instruction (operand guards, result types,
        // successors); the code below follows it.
        let mut after = self.st.clone();
        let flow = infer::transfer(self.proto, pc, &mut after, &self.an.facts);
        self.after = after.clone();
        if flow == Flow::Exit {
            self.exit_here(pc);
            return;
        }
        let op = ins.op_byte();
        match op {
            opc::Move => match self.st[b] {
                t @ (Ty::Mem | Ty::Math | Ty::Len) if self.unstored[b].is_some() => {
                    let (lo, hi) = self.unstored[b].expect("checked");
                    self.def_unstored(a, lo, hi);
                    self.st[a] = t;
                }
                t @ (Ty::Mem | Ty::Math | Ty::Len | Ty::Unset) => {
                    let regs = self.regs;
                    self.copy_value(regs, off(b), regs, off(a));
                    self.st[a] = t;
                }
                Ty::Float => {
                    let v = self.b.use_var(self.vf[b]);
                    self.def(a, Ty::Float, v);
                }
                t => {
                    let v = self.b.use_var(self.vi[b]);
                    self.def(a, t, v);
                }
            },
            opc::LoadK => {
                let t = after[a];
                let v = self.konst(ins.bx(), t);
                self.def(a, t, v);
            }
            opc::LoadI => {
                let v = self.b.ins().iconst(I64, ins.sbx() as i64);
                self.def(a, Ty::Int, v);
            }
            opc::LoadNil => {
                for r in a..=a + b {
                    self.st[r] = Ty::Nil;
                }
            }
            opc::LoadTrue | opc::LoadFalse => {
                let v = self.b.ins().iconst(I64, (op == opc::LoadTrue) as i64);
                self.def(a, Ty::Bool, v);
            }
            opc::GetModule if self.functions.contains_key(&(ins.bx() as u16)) => {
                self.get_function(a, ins.bx() as u16, pc);
            }
            opc::GetModule => {
                let disp = off(ins.bx());
                let lo = self.b.ins().load(I64, mem(), self.mvars, disp);
                let tag = self.b.ins().ireduce(I8, lo);
                let ok = self.b.ins().icmp_imm_s(IntCC::NotEqual, tag, TAG_UNDEF);
                self.guard(ok, pc);
                let hi = self.b.ins().load(I64, mem(), self.mvars, disp + 8);
                self.def_unstored(a, lo, hi);
                // The `math` module stays known (its calls are intrinsics).
                self.st[a] = after[a];
            }
            opc::SetModule => {
                let disp = off(ins.bx());
                match self.st[a] {
                    Ty::Mem | Ty::Math | Ty::Len | Ty::Unset => {
                        let mvars = self.mvars;
                        self.copy_reg(a, mvars, disp);
                    }
                    t => {
                        let mvars = self.mvars;
                        self.store_value(mvars, disp, a, t);
                    }
                }
            }
            opc::Add
            | opc::Sub
            | opc::Mul
            | opc::Div
            | opc::IDiv
            | opc::Mod
            | opc::AddK
            | opc::SubK
            | opc::MulK
            | opc::DivK
            | opc::IDivK
            | opc::ModK => {
                let want = if after[a] == Ty::Float {
                    Ty::Float
                } else {
                    Ty::Int
                };
                let x = self.num(b, want, pc);
                let with_const = register_form(op).is_some();
                match (op, want, &self.proto.consts.get(c)) {
                    (opc::ModK | opc::IDivK, Ty::Int, Some(Constant::Int(k @ 1..))) => {
                        let bound = self.an.bounds[pc];
                        let v =
                            Self::div_mod_by_positive(&mut self.b, op == opc::IDivK, x, *k, bound);
                        self.def(a, Ty::Int, v);
                    }
                    _ => {
                        let y = if with_const {
                            self.konst(c, want)
                        } else {
                            self.num(c, want, pc)
                        };
                        self.arith(op, a, want, x, y, pc);
                    }
                }
            }
            opc::BAnd | opc::BOr | opc::BXor | opc::Shl | opc::Shr => {
                let x = self.num(b, Ty::Int, pc);
                let y = self.num(c, Ty::Int, pc);
                let v = match op {
                    opc::BAnd => self.b.ins().band(x, y),
                    opc::BOr => self.b.ins().bor(x, y),
                    opc::BXor => self.b.ins().bxor(x, y),
                    // Cranelift masks shift counts to the width: counts are mod 64.
                    opc::Shl => self.b.ins().ishl(x, y),
                    _ => self.b.ins().sshr(x, y),
                };
                self.def(a, Ty::Int, v);
            }
            opc::Unm => {
                let t = after[a];
                let x = self.num(b, t, pc);
                let v = if t == Ty::Float {
                    self.b.ins().fneg(x)
                } else {
                    self.b.ins().ineg(x)
                };
                self.def(a, t, v);
            }
            opc::BNot => {
                let x = self.num(b, Ty::Int, pc);
                let v = self.b.ins().bnot(x);
                self.def(a, Ty::Int, v);
            }
            opc::Not => {
                let t = self.truthy(b);
                let v = self.b.ins().bxor_imm_s(t, 1);
                let v = self.b.ins().uextend(I64, v);
                self.def(a, Ty::Bool, v);
            }
            opc::Eq | opc::Ne | opc::Lt | opc::Le | opc::Gt | opc::Ge => {
                // The result may overwrite an operand register: the operands' type is
                // then the other one's (`infer::transfer` gives both the same).
                let t = if b != a { after[b] } else { after[c] };
                let cond = self.compare(op, b, c, t, pc);
                let v = self.b.ins().uextend(I64, cond);
                self.def(a, Ty::Bool, v);
            }
            opc::Jmp => {
                if let Flow::Jump(t) = flow {
                    self.jump_to(t);
                }
            }
            opc::Test => {
                let t = self.truthy(a);
                self.branch_flow_when(t, c != 0, flow);
            }
            opc::TestEq | opc::TestLt | opc::TestLe | opc::TestGt | opc::TestGe => {
                let holds = self.compare(relation(op), a, b, after[a], pc);
                self.branch_flow_when(holds, c != 0, flow);
            }
            opc::TestEqK | opc::TestLtK | opc::TestLeK | opc::TestGtK | opc::TestGeK => {
                let t = after[a];
                let x = self.num_as(a, t, t, pc);
                let k = self.konst(b, t);
                let holds = self.compare_values(relation(op), x, k, t);
                self.branch_flow_when(holds, c != 0, flow);
            }
            opc::ForPrep | opc::ForPrepIncl => self.for_prep(a, pc, flow, op == opc::ForPrepIncl),
            opc::ForLoop | opc::ForLoopIncl => self.for_loop(a, pc, flow, op == opc::ForLoopIncl),
            opc::DefaultArg => {
                let missing = match self.st[a] {
                    Ty::Mem | Ty::Unset => {
                        let tag = self.load_tag(a);
                        self.b.ins().icmp_imm_s(IntCC::Equal, tag, TAG_UNDEF)
                    }
                    _ => self.b.ins().iconst(I8, 0),
                };
                // Taken (skip the default) when an argument was given.
                let given = self.b.ins().bxor_imm_s(missing, 1);
                self.branch_flow(given, flow);
            }
            opc::CheckType => {
                let t = after[a];
                if self.st[a].unknown() {
                    self.num_or_bool(a, t, pc);
                }
                self.st[a] = t;
            }
            opc::IterPrep => {
                self.object(a, TAG_ARRAY, pc);
                let zero = self.b.ins().iconst(I64, 0);
                self.def(a + 1, Ty::Int, zero);
            }
            opc::IterNext1 => self.iter_next(a, pc, flow),
            opc::LoadBuiltin => {
                // Built-ins are made on first use: one not made yet is the
                // interpreter's to make.
                let builtins = self.b.ins().load(I64, fixed(), self.ctx, CTX_BUILTINS);
                let tag = self.b.ins().load(I8, mem(), builtins, off(ins.bx()));
                let made = self.b.ins().icmp_imm_s(IntCC::NotEqual, tag, TAG_UNDEF);
                self.guard_expected(made, pc);
                let regs = self.regs;
                self.copy_value(builtins, off(ins.bx()), regs, off(a));
                self.st[a] = after[a];
            }
            opc::Call if infer::is_len_call(ins, &self.st, &self.an.facts, pc) => {
                // `len(array)` (see `infer::is_len_call`).
                let obj = self.object(a + 1, TAG_ARRAY, pc);
                let n = self.b.ins().load(I64, mem(), obj, self.layout.array.len);
                self.def(a, Ty::Int, n);
            }
            opc::Call => self.call(a, b, pc),
            opc::GetIndex => {
                let obj = self.object(b, TAG_ARRAY, pc);
                let idx = self.num(c, Ty::Int, pc);
                let (lo, hi) = self.array_get(obj, idx, pc);
                self.def_unstored(a, lo, hi);
            }
            opc::SetIndex => {
                let obj = self.object(a, TAG_ARRAY, pc);
                let idx = self.num(b, Ty::Int, pc);
                self.array_set(obj, idx, c, pc);
            }
            opc::GetField => {
                let slot = self.field_slot(b, c, None, pc);
                let flags = self.field_flags(c);
                let lo = self.b.ins().load(I64, flags, slot, 0);
                let hi = self.b.ins().load(I64, flags, slot, PAYLOAD);
                self.def_unstored(a, lo, hi);
            }
            opc::SetField => {
                let slot = self.field_slot(a, b, Some(self.st[c]), pc);
                match self.st[c] {
                    t if t.is_typed() => self.store_value(slot, 0, c, t),
                    _ => self.copy_reg(c, slot, 0),
                }
            }
            opc::CallMethod => self.math_call(ins, pc),
            opc::Return if self.direct => {
                let (word, payload) = self.return_value(a, b);
                self.store_fuel();
                self.b.ins().return_(&[word, payload]);
                self.done = true;
            }
            opc::Return => {
                let regs = self.regs;
                if b == 0 {
                    let tag = self.b.ins().iconst(I8, TAG_NIL);
                    self.b.ins().store(mem(), tag, regs, -VALUE_SIZE);
                } else {
                    match self.st[a] {
                        Ty::Mem | Ty::Math | Ty::Len | Ty::Unset => {
                            self.copy_reg(a, regs, -VALUE_SIZE);
                        }
                        t => self.store_value(regs, -VALUE_SIZE, a, t),
                    }
                }
                let s = self.b.ins().iconst(I32, RETURNED as i64);
                self.store_fuel();
                self.b.ins().return_(&[s]);
                self.done = true;
            }
            _ => unreachable!("infer::transfer refuses opcode {op}"),
        }
        if !self.done {
            self.st = after;
        }
        for w in infer::writes(ins, self.mirror.len()) {
            self.mirror[w] = None;
            self.objects[w] = None;
            self.unstored[w] = None;
            self.function_of[w] = None;
        }
        for (r, m) in std::mem::take(&mut self.fresh) {
            self.mirror[r] = Some(m);
        }
        for (r, w) in std::mem::take(&mut self.fresh_unstored) {
            self.unstored[r] = Some(w);
        }
        for (r, slot) in std::mem::take(&mut self.fresh_functions) {
            self.function_of[r] = Some(slot);
        }
    }

    /// The value a direct variant returns for `Return a b`: `(tag << 8, payload)`
    /// ([`RETURNED`] is 0).
    fn return_value(&mut self, a: usize, b: usize) -> (ir::Value, ir::Value) {
        if b == 0 {
            let word = self.b.ins().iconst(I64, TAG_NIL << 8);
            let zero = self.b.ins().iconst(I64, 0);
            return (word, zero);
        }
        let t = self.st[a];
        if !t.is_typed() {
            let tag = self.load_tag(a);
            let tag = self.b.ins().uextend(I64, tag);
            let word = self.b.ins().ishl_imm_s(tag, 8);
            return (word, self.load_word(a));
        }
        let word = self.b.ins().iconst(I64, tag_of(t) << 8);
        let payload = match t {
            Ty::Float => {
                let v = self.b.use_var(self.vf[a]);
                self.b.ins().bitcast(I64, MemFlagsData::new(), v)
            }
            Ty::Nil => self.b.ins().iconst(I64, 0),
            _ => self.b.use_var(self.vi[a]),
        };
        (word, payload)
    }

    /// `for v in array`: the element at the cursor into `R[a+2]` and the cursor moved
    /// on, or (past the end) the jump out of the loop.
    fn iter_next(&mut self, a: usize, pc: usize, flow: Flow) {
        let obj = self.object(a, TAG_ARRAY, pc);
        let cursor = self.num(a + 1, Ty::Int, pc);
        // Past the end, the "element" read is `R[a+2]`'s own slot, so the store below
        // leaves it as it was: no branch before the loop's own.
        self.write_back(a + 2);
        let len = self.b.ins().load(I64, mem(), obj, self.layout.array.len);
        let inside = self.b.ins().icmp(IntCC::UnsignedLessThan, cursor, len);
        let data = self.b.ins().load(I64, mem(), obj, self.layout.array.ptr);
        let bytes = self.b.ins().imul_imm_s(cursor, VALUE_SIZE as i64);
        let element = self.b.ins().iadd(data, bytes);
        let own = self.b.ins().iadd_imm_s(self.regs, off(a + 2) as i64);
        let from = self.b.ins().select(inside, element, own);
        let (lo, hi) = self.load_words(from, 0);
        let regs = self.regs;
        self.store_words(lo, hi, regs, off(a + 2));
        let moved = self.b.ins().iadd_imm_s(cursor, 1);
        let next = self.b.ins().select(inside, moved, cursor);
        self.def(a + 1, Ty::Int, next);
        self.st[a + 2] = Ty::Mem;
        self.branch_flow_when(inside, false, flow);
    }

    /// The address of element `idx` of array `obj`. An index from the start is one
    /// unsigned compare; a negative one (counting from the end) is worked out in a
    /// cold block; any index out of range exits, and the interpreter raises the error.
    /// Neither path calls anything, so no value in a loop around it has to leave the
    /// caller-saved registers.
    fn element(&mut self, obj: ir::Value, idx: ir::Value, pc: usize) -> ir::Value {
        let len = self.b.ins().load(I64, mem(), obj, self.layout.array.len);
        let inside = self.b.ins().icmp(IntCC::UnsignedLessThan, idx, len);
        let (from_end, join) = (self.b.create_block(), self.b.create_block());
        let at = self.b.append_block_param(join, I64);
        self.b.set_cold_block(from_end);
        self.b
            .ins()
            .brif(inside, join, &[idx.into()], from_end, &[]);
        self.b.switch_to_block(from_end);
        // `idx + len` cannot overflow (a length is far below 2^63); an index below
        // `-len`, or one at or past `len`, stays out of range.
        let back = self.b.ins().iadd(idx, len);
        let ok = self.b.ins().icmp(IntCC::UnsignedLessThan, back, len);
        self.guard(ok, pc);
        self.b.ins().jump(join, &[back.into()]);
        self.b.switch_to_block(join);
        let data = self.b.ins().load(I64, mem(), obj, self.layout.array.ptr);
        let bytes = self.b.ins().imul_imm_s(at, VALUE_SIZE as i64);
        self.b.ins().iadd(data, bytes)
    }

    /// `R[a] := obj[idx]`; returns the value's two words, left unstored.
    fn array_get(&mut self, obj: ir::Value, idx: ir::Value, pc: usize) -> (ir::Value, ir::Value) {
        let addr = self.element(obj, idx, pc);
        self.load_words(addr, 0)
    }

    /// `obj[idx] := R[c]`. (No write barrier: the collector stops the task and marks
    /// everything.)
    fn array_set(&mut self, obj: ir::Value, idx: ir::Value, c: usize, pc: usize) {
        let addr = self.element(obj, idx, pc);
        match self.st[c] {
            t if t.is_typed() => self.store_value(addr, 0, c, t),
            _ => self.copy_reg(c, addr, 0),
        }
    }

    /// The payload of memory register `r`, checked to carry `tag`.
    fn object(&mut self, r: usize, tag: i64, pc: usize) -> ir::Value {
        let t = self.load_tag(r);
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, t, tag);
        self.guard_type(ok, pc, r);
        self.load_word(r)
    }

    /// The bytes of name constant `k` (interned by the program, which outlives the code).
    fn name(&mut self, k: usize) -> (ir::Value, ir::Value) {
        let Constant::Str(s) = &self.proto.consts[k] else {
            unreachable!("field operands are names");
        };
        let ptr = self.b.ins().iconst(I64, s.as_ptr() as i64);
        let len = self.b.ins().iconst(I64, s.len() as i64);
        (ptr, len)
    }

    /// The address of field `K[k]` of the instance in register `r`. The instruction's
    /// cache word holds the slot for the last type seen (by declaration key): a hit is
    /// two loads and a compare; a miss asks `field_cache_fill`, which refills the
    /// cache, and an unknown field (or, for a `write`, an annotated one) exits so the
    /// interpreter raises the error or checks the value.
    fn field_slot(&mut self, r: usize, k: usize, write: Option<Ty>, pc: usize) -> ir::Value {
        if let Some(f) = self.known_field(k, write) {
            let fields = self.checked_fields(r, f.key, pc);
            let at = f.slot as i64 * VALUE_SIZE as i64;
            return self.b.ins().iadd_imm_s(fields, at);
        }
        let obj = self.object(r, TAG_STRUCT, pc);
        let key = self.b.ins().load(I64, mem(), obj, INSTANCE_KEY);
        let cache = self.b.ins().iconst(I64, self.caches.next() as i64);
        let word = self.b.ins().load(I64, mem(), cache, 0);
        let cached_key = self.b.ins().ushr_imm_s(word, CACHE_SLOT_BITS);
        let hit = self.b.ins().icmp(IntCC::Equal, cached_key, key);
        let miss = self.b.create_block();
        self.b.set_cold_block(miss);
        let join = self.b.create_block();
        let index = self.b.append_block_param(join, I64);
        let cached_slot = self.b.ins().band_imm_s(word, (1 << CACHE_SLOT_BITS) - 1);
        self.b
            .ins()
            .brif(hit, join, &[cached_slot.into()], miss, &[]);
        self.b.switch_to_block(miss);
        let (name, len) = self.name(k);
        let w = self.b.ins().iconst(I32, write.is_some() as i64);
        let call = self
            .b
            .ins()
            .call(self.h.field_cache_fill, &[obj, name, len, cache, w]);
        let found = self.b.inst_results(call)[0];
        let known = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, found, 0);
        self.guard(known, pc);
        self.b.ins().jump(join, &[found.into()]);
        self.b.switch_to_block(join);
        let fields = self.b.ins().load(I64, mem(), obj, self.layout.fields_at);
        let bytes = self.b.ins().imul_imm_s(index, VALUE_SIZE as i64);
        self.b.ins().iadd(fields, bytes)
    }

    /// Where field `K[k]` lives if one declaration has it. A write (of a value of
    /// the given type) its annotation might refuse is left to the cache path, whose
    /// helper has the interpreter check it.
    fn known_field(&self, k: usize, write: Option<Ty>) -> Option<FieldSlot> {
        let Constant::Str(name) = &self.proto.consts[k] else {
            return None;
        };
        let f = (*self.fields.get(&**name)?)?;
        write.is_none_or(|t| f.takes(t)).then_some(f)
    }

    /// How to read field `K[k]`: as fixed memory if it is at a constant slot (so its
    /// address depends on a checked field array) and nothing stores it while this
    /// code runs.
    fn field_flags(&self, k: usize) -> MemFlagsData {
        let Constant::Str(name) = &self.proto.consts[k] else {
            return mem();
        };
        let stable = self.known_field(k, None).is_some()
            && self
                .stored_fields
                .as_ref()
                .is_some_and(|stored| !stored.contains(name));
        if stable {
            fixed()
        } else {
            mem()
        }
    }

    /// The field array of the instance in register `r`, checked (once until `r` is
    /// written) to be of declaration `key`; otherwise a side exit at `pc`.
    fn checked_fields(&mut self, r: usize, key: u64, pc: usize) -> ir::Value {
        if let Some((k, fields)) = self.objects[r] {
            if k == key {
                return fields;
            }
        }
        // An instance's type and field array never change, and a type's key neither.
        let obj = self.object(r, TAG_STRUCT, pc);
        let never_stored = mem().with_readonly();
        let got = self.b.ins().load(I64, never_stored, obj, INSTANCE_KEY);
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, got, key as i64);
        self.guard(ok, pc);
        let fields = self
            .b
            .ins()
            .load(I64, never_stored, obj, self.layout.fields_at);
        self.objects[r] = Some((key, fields));
        fields
    }

    /// `R[A] := math.f(R[A+2])` for an intrinsic `f`.
    fn math_call(&mut self, ins: kiln_vm::bytecode::Instr, pc: usize) {
        let a = ins.a();
        let Some((arg, result)) = infer::math_call(self.proto, pc, ins, &self.st, &self.an.facts)
        else {
            unreachable!("infer::transfer accepted this call");
        };
        let Constant::Str(name) = &self.proto.consts[ins.c()] else {
            unreachable!("method names are strings");
        };
        let x = self.num_as(a + 2, arg, result, pc);
        let v = match (&**name, result) {
            ("sqrt", _) => self.b.ins().sqrt(x),
            ("abs", Ty::Float) => self.b.ins().fabs(x),
            ("abs", _) => self.b.ins().iabs(x),
            (f, _) => {
                let i = ["sin", "cos", "exp", "log"]
                    .iter()
                    .position(|n| *n == f)
                    .unwrap_or(0);
                let call = self.b.ins().call(self.h.math[i], &[x]);
                self.b.inst_results(call)[0]
            }
        };
        self.def(a, result, v);
    }

    fn branch_flow(&mut self, cond: ir::Value, flow: Flow) {
        self.branch_flow_when(cond, true, flow);
    }

    /// The branch of a test that is taken when `cond` is `expect` (swapping the targets
    /// instead of negating the condition, which Cranelift would keep as an `xor`).
    fn branch_flow_when(&mut self, cond: ir::Value, expect: bool, flow: Flow) {
        if let Flow::Branch { taken, skip } = flow {
            if expect {
                self.branch(cond, taken, skip);
            } else {
                self.branch(cond, skip, taken);
            }
        }
    }

    /// Checks a memory register holds type `t` (int or bool) and loads it.
    fn num_or_bool(&mut self, r: usize, t: Ty, pc: usize) {
        let tag = self.load_tag(r);
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, tag, tag_of(t));
        self.guard_type(ok, pc, r);
        self.load_payload(r, t);
    }

    fn arith(&mut self, op: u8, a: usize, t: Ty, x: ir::Value, y: ir::Value, pc: usize) {
        let base_op = register_form(op).unwrap_or(op);
        let ins = self.b.ins();
        let (v, ty) = match (base_op, t) {
            (opc::Add, Ty::Int) => (ins.iadd(x, y), Ty::Int),
            (opc::Sub, Ty::Int) => (ins.isub(x, y), Ty::Int),
            (opc::Mul, Ty::Int) => (ins.imul(x, y), Ty::Int),
            (opc::Add, _) => (ins.fadd(x, y), Ty::Float),
            (opc::Sub, _) => (ins.fsub(x, y), Ty::Float),
            (opc::Mul, _) => (self.fmul(x, y), Ty::Float),
            (opc::Div, Ty::Int) => {
                let fx = ins.fcvt_from_sint(F64, x);
                let fy = self.b.ins().fcvt_from_sint(F64, y);
                (self.b.ins().fdiv(fx, fy), Ty::Float)
            }
            (opc::Div, _) => (ins.fdiv(x, y), Ty::Float),
            (opc::IDiv, Ty::Float) => {
                let q = ins.fdiv(x, y);
                (self.b.ins().floor(q), Ty::Float)
            }
            (opc::Mod, Ty::Float) => {
                let call = ins.call(self.h.float_mod, &[x, y]);
                (self.b.inst_results(call)[0], Ty::Float)
            }
            (_, _) => (self.int_div_mod(base_op == opc::IDiv, x, y, pc), Ty::Int),
        };
        self.def(a, ty, v);
    }

    /// `x * y` of floats. Doubling is an addition, exactly so in IEEE arithmetic (signed
    /// zeros, infinities and NaNs included), which needs no constant in a register.
    fn fmul(&mut self, x: ir::Value, y: ir::Value) -> ir::Value {
        let two = |v: ir::Value| self.f64_const(v) == Some(2.0);
        match (two(x), two(y)) {
            (_, true) => self.b.ins().fadd(x, x),
            (true, _) => self.b.ins().fadd(y, y),
            _ => self.b.ins().fmul(x, y),
        }
    }

    /// The value of `v` if an `f64const` instruction defines it.
    fn f64_const(&self, v: ir::Value) -> Option<f64> {
        let dfg = &self.b.func.dfg;
        match dfg.insts[dfg.value_def(v).inst()?] {
            ir::InstructionData::UnaryIeee64 {
                opcode: ir::Opcode::F64const,
                imm,
            } => Some(f64::from_bits(imm.bits())),
            _ => None,
        }
    }

    /// Floor division or floored modulo of an int by a positive constant: no zero or
    /// `-1` cases, and flooring is a correction by the remainder's sign bit. Cranelift
    /// turns the division by a constant into a multiplication. A dividend known to be
    /// in `0..=n` (`bound`, see `bounds`) needs no correction, and its multiplication
    /// by the reciprocal needs no fix-up steps when the bound allows.
    fn div_mod_by_positive(
        b: &mut FunctionBuilder<'_>,
        div: bool,
        x: ir::Value,
        k: i64,
        bound: bounds::Bound,
    ) -> ir::Value {
        if let Some(n) = bound {
            return Self::div_mod_bounded(b, div, x, k as u64, n);
        }
        let kv = b.ins().iconst(I64, k);
        let r = b.ins().srem(x, kv);
        // All ones when the truncated remainder is negative, else zero.
        let neg = b.ins().sshr_imm_s(r, 63);
        if div {
            let q = b.ins().sdiv(x, kv);
            b.ins().iadd(q, neg)
        } else {
            let fix = b.ins().band_imm_s(neg, k);
            b.ins().iadd(r, fix)
        }
    }

    /// Division or modulo of `x` in `0..=n` by a constant `k > 0`.
    fn div_mod_bounded(
        b: &mut FunctionBuilder<'_>,
        div: bool,
        x: ir::Value,
        k: u64,
        n: u64,
    ) -> ir::Value {
        let q = if k.is_power_of_two() {
            if !div {
                return b.ins().band_imm_s(x, k as i64 - 1);
            }
            b.ins().ushr_imm_s(x, k.trailing_zeros() as i64)
        } else if let Some((m, s)) = bounds::reciprocal(k, n) {
            let mv = b.ins().iconst(I64, m as i64);
            let hi = b.ins().umulhi(x, mv);
            b.ins().ushr_imm_s(hi, s as i64)
        } else {
            let kv = b.ins().iconst(I64, k as i64);
            b.ins().udiv(x, kv)
        };
        if div {
            return q;
        }
        let qk = b.ins().imul_imm_s(q, k as i64);
        b.ins().isub(x, qk)
    }

    /// Floor division or floored modulo of ints. Division by zero exits (the
    /// interpreter raises the error); `MIN ~/ -1` wraps and `MIN % -1` is 0, as there.
    fn int_div_mod(&mut self, div: bool, x: ir::Value, y: ir::Value, pc: usize) -> ir::Value {
        let nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, y, 0);
        self.guard(nonzero, pc);
        let ins = self.b.ins();
        let minus_one = ins.icmp_imm_s(IntCC::Equal, y, -1);
        let one = self.b.ins().iconst(I64, 1);
        let safe_y = self.b.ins().select(minus_one, one, y);
        let q0 = self.b.ins().sdiv(x, safe_y);
        let r0 = self.b.ins().srem(x, safe_y);
        let neg_x = self.b.ins().ineg(x);
        let zero = self.b.ins().iconst(I64, 0);
        let q = self.b.ins().select(minus_one, neg_x, q0);
        let r = self.b.ins().select(minus_one, zero, r0);
        // Adjust truncation to floor when the remainder and divisor differ in sign.
        let r_nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0);
        let signs = self.b.ins().bxor(r, y);
        let differ = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, signs, 0);
        let adjust = self.b.ins().band(r_nonzero, differ);
        if div {
            let adj = self.b.ins().uextend(I64, adjust);
            self.b.ins().isub(q, adj)
        } else {
            let plus = self.b.ins().iadd(r, y);
            self.b.ins().select(adjust, plus, r)
        }
    }

    /// A numeric comparison of registers `x` and `y`, both of type `t` after guards.
    fn compare(&mut self, rel: u8, x: usize, y: usize, t: Ty, pc: usize) -> ir::Value {
        let a = self.num_as(x, t, t, pc);
        let b = self.num_as(y, t, t, pc);
        self.compare_values(rel, a, b, t)
    }

    /// `a rel b` for two numbers of type `t`.
    fn compare_values(&mut self, rel: u8, a: ir::Value, b: ir::Value, t: Ty) -> ir::Value {
        if t == Ty::Float {
            let cc = match rel {
                opc::Eq => FloatCC::Equal,
                opc::Ne => FloatCC::NotEqual,
                opc::Lt => FloatCC::LessThan,
                opc::Le => FloatCC::LessThanOrEqual,
                opc::Gt => FloatCC::GreaterThan,
                _ => FloatCC::GreaterThanOrEqual,
            };
            self.b.ins().fcmp(cc, a, b)
        } else {
            let cc = match rel {
                opc::Eq => IntCC::Equal,
                opc::Ne => IntCC::NotEqual,
                opc::Lt => IntCC::SignedLessThan,
                opc::Le => IntCC::SignedLessThanOrEqual,
                opc::Gt => IntCC::SignedGreaterThan,
                _ => IntCC::SignedGreaterThanOrEqual,
            };
            self.b.ins().icmp(cc, a, b)
        }
    }

    /// Signed comparisons for "inside the range" going up and going down.
    fn range_ccs(inclusive: bool) -> (IntCC, IntCC) {
        if inclusive {
            (
                IntCC::SignedLessThanOrEqual,
                IntCC::SignedGreaterThanOrEqual,
            )
        } else {
            (IntCC::SignedLessThan, IntCC::SignedGreaterThan)
        }
    }

    fn for_prep(&mut self, a: usize, pc: usize, flow: Flow, inclusive: bool) {
        let start = self.num(a, Ty::Int, pc);
        let end = self.num(a + 1, Ty::Int, pc);
        let step = self.num(a + 2, Ty::Int, pc);
        let (in_up, in_down) = Self::range_ccs(inclusive);
        let inside = match bounds::literal_step(self.proto, a, pc) {
            Some(k) => self
                .b
                .ins()
                .icmp(if k > 0 { in_up } else { in_down }, start, end),
            None => {
                // A zero step is the interpreter's error to raise.
                let nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, step, 0);
                self.guard(nonzero, pc);
                let up = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, step, 0);
                let inside_up = self.b.ins().icmp(in_up, start, end);
                let inside_down = self.b.ins().icmp(in_down, start, end);
                self.b.ins().select(up, inside_up, inside_down)
            }
        };
        let empty = self.b.ins().bxor_imm_s(inside, 1);
        self.def(a, Ty::Int, start);
        self.def(a + 1, Ty::Int, end);
        self.def(a + 2, Ty::Int, step);
        self.def(a + 3, Ty::Int, start);
        self.branch_flow(empty, flow);
    }

    fn for_loop(&mut self, a: usize, pc: usize, flow: Flow, inclusive: bool) {
        let i = self.num(a, Ty::Int, pc);
        let end = self.num(a + 1, Ty::Int, pc);
        let step = self.num(a + 2, Ty::Int, pc);
        let (in_up, in_down) = Self::range_ccs(inclusive);
        let (next, go_on) = match bounds::literal_step(self.proto, a, pc) {
            // Counting up by one cannot overflow while inside the range: `i < end`
            // (inclusive: tested before the step) bounds `i + 1` by `end`.
            Some(1) => {
                let next = self.b.ins().iadd_imm_s(i, 1);
                let go_on = if inclusive {
                    self.b.ins().icmp(IntCC::SignedLessThan, i, end)
                } else {
                    self.b.ins().icmp(IntCC::SignedLessThan, next, end)
                };
                (next, go_on)
            }
            known => {
                let (next, overflow) = self.b.ins().sadd_overflow(i, step);
                let inside = match known {
                    Some(k) => self
                        .b
                        .ins()
                        .icmp(if k > 0 { in_up } else { in_down }, next, end),
                    None => {
                        let up = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, step, 0);
                        let below = self.b.ins().icmp(in_up, next, end);
                        let above = self.b.ins().icmp(in_down, next, end);
                        self.b.ins().select(up, below, above)
                    }
                };
                let no_overflow = self.b.ins().bxor_imm_s(overflow, 1);
                (next, self.b.ins().band(inside, no_overflow))
            }
        };
        self.def(a, Ty::Int, next);
        self.def(a + 3, Ty::Int, next);
        self.branch_flow(go_on, flow);
    }

    /// `R[a] := R[a](R[a+1] .. R[a+b])` for a compiled callee: a direct native call on
    /// the callee's window. Only the arguments are stored first; if the callee stops,
    /// this frame stores its typed registers and records the call in the shadow list on
    /// the way out (see `abi`). Anything else exits before the call and the interpreter
    /// makes it.
    fn call(&mut self, a: usize, nargs: usize, pc: usize) {
        self.write_back_for_call(a);
        let known = self.callees[pc]
            .clone()
            .filter(|k| k.nparams as usize == nargs);
        if let Some(k) = known.clone().filter(|k| self.fits_direct(a, k)) {
            return self.call_direct(a, pc, k);
        }
        for r in a + 1..=a + nargs {
            let t = self.st[r];
            if t.is_typed() {
                self.spill(r, t);
                self.st[r] = Ty::Mem;
            }
        }
        let before = self.st.clone();
        let (proto, code, frame_bytes, module, mvars) = match known.clone() {
            // The callee this call site was compiled for: arity, frame size and module
            // (the caller's: module functions are declared in it) are known.
            Some(k) => {
                let proto = self.known_proto(a, &k, pc);
                let code = self.code_of(&k, pc);
                let bytes = self
                    .b
                    .ins()
                    .iconst(I64, k.max_regs as i64 * VALUE_SIZE as i64);
                (proto, code, bytes, self.module, self.mvars)
            }
            None => self.callee_from_tables(a, nargs, pc),
        };
        let callee_regs = self.enter_frame(a, frame_bytes, pc);
        let callee = self.load_word(a);
        let depth_less = self.depth;
        self.store_fuel();
        let status = self.b.ins().call_indirect(
            self.h.proto_sig,
            code,
            &[self.ctx, callee_regs, callee, module, mvars, depth_less],
        );
        let status = self.b.inst_results(status)[0];
        self.load_fuel();
        self.called(a);
        let proto = match known {
            Some(k) => CalleeProto::Known(k.proto),
            None => CalleeProto::Loaded(proto),
        };
        self.after_call(status, &before, a, pc, proto);
        self.typed_result(a, pc);
    }

    /// After a call returned into `R[a]`: if the analysis expects one type there (see
    /// `Facts::results`), checks it, failing to the instruction after the call, and
    /// unboxes it.
    fn typed_result(&mut self, a: usize, pc: usize) {
        let t = self.after[a];
        if !t.is_typed() {
            return;
        }
        self.st = self.after.clone();
        self.st[a] = Ty::Mem;
        let tag = self.load_tag(a);
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, tag, tag_of(t));
        self.guard_type(ok, pc + 1, a);
        self.load_payload(a, t);
        self.st[a] = t;
    }

    /// Continues if the callee returned (`status` is [`RETURNED`]); otherwise records
    /// the call and leaves with the callee's status.
    fn after_call(
        &mut self,
        status: ir::Value,
        before: &[Ty],
        a: usize,
        pc: usize,
        proto: CalleeProto,
    ) {
        let returned = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, status, RETURNED as i64);
        let cont = self.b.create_block();
        let stop = self.b.create_block();
        self.b.set_cold_block(stop);
        self.b.ins().brif(returned, cont, &[], stop, &[]);
        self.b.switch_to_block(stop);
        self.unwind_call(before, a, pc, proto);
        let status = match self.b.func.dfg.value_type(status) {
            I32 => status,
            _ => self.b.ins().ireduce(I32, status),
        };
        self.leave(status);
        self.b.switch_to_block(cont);
    }

    /// Whether the call at `R[a]` can use `k`'s direct variant: each parameter it takes
    /// typed gets a value of that type (a memory register is checked at the call).
    fn fits_direct(&self, a: usize, k: &Callee) -> bool {
        let Some(d) = &k.direct else { return false };
        d.params.iter().enumerate().all(|(i, &p)| {
            let t = self.st[a + 1 + i];
            !p.is_typed() || t == p || (t.unknown() && matches!(p, Ty::Int | Ty::Float))
        })
    }

    /// A call of the known callee `k` through its direct variant: typed arguments in
    /// machine registers, the value returned in registers (and mirrored into `R[a]`).
    fn call_direct(&mut self, a: usize, pc: usize, k: Callee) {
        let d = k.direct.clone().expect("fits_direct checked it");
        let mut args = Vec::new();
        for (i, &p) in d.params.iter().enumerate() {
            let r = a + 1 + i;
            if p.is_typed() {
                args.push(self.num_as(r, p, p, pc));
            }
        }
        for (i, &p) in d.params.iter().enumerate() {
            let r = a + 1 + i;
            if !p.is_typed() && self.st[r].is_typed() {
                self.spill(r, self.st[r]);
                self.st[r] = Ty::Mem;
            }
        }
        let before = self.st.clone();
        self.known_proto(a, &k, pc);
        self.callee_slot_holds(a, &k, pc);
        // A recursive call needs no check (see `code_of`), so no code pointer either.
        if !d.inlined && !k.recursive {
            self.code_of(&k, pc);
        }
        let bytes = self
            .b
            .ins()
            .iconst(I64, k.max_regs as i64 * VALUE_SIZE as i64);
        let callee_regs = if d.inlined {
            self.callee_window(a, bytes, pc)
        } else {
            self.enter_frame(a, bytes, pc)
        };
        let mut all = vec![self.ctx, callee_regs, self.module, self.mvars, self.depth];
        all.extend(args);
        // A callee that spends no fuel leaves it where it is: here.
        if d.charges {
            self.store_fuel();
        }
        let call = self.b.ins().call(d.func, &all);
        if d.charges {
            self.load_fuel();
        }
        self.called(a);
        let (word, payload) = (self.b.inst_results(call)[0], self.b.inst_results(call)[1]);
        let t = self.after[a];
        // Returned with the expected type: one compare of the whole word. Everything
        // else takes the cold path, which tells a stop from another type.
        let hit = t.is_typed().then(|| {
            let expected = (tag_of(t) << 8) | RETURNED as i64;
            let fast = self.b.ins().icmp_imm_s(IntCC::Equal, word, expected);
            let (hit, miss) = (self.b.create_block(), self.b.create_block());
            self.b.set_cold_block(miss);
            self.b.ins().brif(fast, hit, &[], miss, &[]);
            self.b.switch_to_block(miss);
            hit
        });
        let status = self.b.ins().band_imm_s(word, 0xFF);
        self.after_call(status, &before, a, pc, CalleeProto::Known(k.proto));
        let tag = self.b.ins().ushr_imm_s(word, 8);
        let tag = self.b.ins().ireduce(I8, tag);
        let Some(hit) = hit else {
            self.b.ins().store(mem(), tag, self.regs, off(a));
            self.b
                .ins()
                .store(mem(), payload, self.regs, off(a) + PAYLOAD);
            self.mirror[a] = Some((tag, payload));
            self.fresh.push((a, (tag, payload)));
            return;
        };
        // Another type: boxed into `R[a]` on the way to the interpreter, which resumes
        // after the call. The expected type stays unboxed.
        self.st = self.after.clone();
        self.st[a] = Ty::Mem;
        let exit = self.exit_block(pc + 1, (a as i64 + 1) << EXIT_REG_SHIFT);
        self.b.ins().store(mem(), tag, self.regs, off(a));
        self.b
            .ins()
            .store(mem(), payload, self.regs, off(a) + PAYLOAD);
        self.b.ins().jump(exit, &[]);
        self.fill_pending();
        self.b.switch_to_block(hit);
        let tag = self.b.ins().iconst(I8, tag_of(t));
        self.mirror[a] = Some((tag, payload));
        self.load_payload(a, t);
        self.mirror[a] = None;
        self.st[a] = t;
    }

    /// Checks, once for the whole code, that each constant function slot this proto
    /// reads holds its proto's closure (loops would otherwise check at every
    /// iteration). A slot read before it is bound fails here, and its read exits.
    fn check_functions_at_entry(&mut self) {
        let mut slots: Vec<u16> = self
            .proto
            .code
            .iter()
            .filter(|i| i.op_byte() == opc::GetModule)
            .map(|i| i.bx() as u16)
            .filter(|s| self.functions.contains_key(s))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            let ok = self.holds_function(slot);
            self.checked_functions.insert(slot, Some(ok));
        }
    }

    /// Whether constant slot `slot` holds the closure of the proto it is bound to.
    fn holds_function(&mut self, slot: u16) -> ir::Value {
        let want = self.functions[&slot] as i64;
        let tag = self
            .b
            .ins()
            .load(I8, fixed(), self.mvars, off(slot as usize));
        let is_fn = self.b.ins().icmp_imm_s(IntCC::Equal, tag, TAG_FUNC);
        let (check, join) = (self.b.create_block(), self.b.create_block());
        let ok = self.b.append_block_param(join, I8);
        self.b.ins().brif(is_fn, check, &[], join, &[is_fn.into()]);
        self.b.switch_to_block(check);
        let closure = self
            .b
            .ins()
            .load(I64, fixed(), self.mvars, off(slot as usize) + PAYLOAD);
        // Not `fixed`: only a function's payload may be read as a closure, so this load
        // must not move above the tag check. A closure's proto never changes.
        let proto = self
            .b
            .ins()
            .load(I32, mem().with_readonly(), closure, CLOSURE_PROTO);
        let right = self.b.ins().icmp_imm_s(IntCC::Equal, proto, want);
        self.b.ins().jump(join, &[right.into()]);
        self.b.switch_to_block(join);
        ok
    }

    /// `R[a] := M[slot]` for a constant function slot: the closure is checked once (see
    /// `checked_functions`) and left unstored, and a call through `R[a]` needs no
    /// further check of its callee.
    fn get_function(&mut self, a: usize, slot: u16, pc: usize) {
        match self.checked_functions.get(&slot) {
            _ if self.own_slot == Some(slot) => {}
            Some(Some(ok)) => {
                let ok = *ok;
                self.guard_expected(ok, pc);
            }
            Some(None) => {}
            None => {
                let ok = self.holds_function(slot);
                self.guard_expected(ok, pc);
                self.checked_functions.insert(slot, None);
            }
        }
        // The slot is constant while code runs, so these loads are only kept where used.
        let disp = off(slot as usize);
        let lo = self.b.ins().load(I64, fixed(), self.mvars, disp);
        let hi = self.b.ins().load(I64, fixed(), self.mvars, disp + PAYLOAD);
        self.def_unstored(a, lo, hi);
        self.fresh_functions.push((a, slot));
    }

    /// The proto of the function in `R[a]` (the interpreter makes calls of anything
    /// else).
    fn callee_proto(&mut self, a: usize, pc: usize) -> ir::Value {
        let tag = self.load_tag(a);
        let is_fn = self.b.ins().icmp_imm_s(IntCC::Equal, tag, TAG_FUNC);
        self.guard_expected(is_fn, pc);
        let callee = self.load_word(a);
        let proto = self.b.ins().load(I32, mem(), callee, CLOSURE_PROTO);
        self.b.ins().uextend(I64, proto)
    }

    /// Guards that a code pointer is set (the callee is compiled and not left to the
    /// interpreter).
    fn guard_compiled(&mut self, code: ir::Value, pc: usize) {
        let compiled = self.b.ins().icmp_imm_s(IntCC::NotEqual, code, 0);
        self.guard_expected(compiled, pc);
    }

    /// The proto of the callee in `R[a]`, checked to be `k`'s; otherwise the
    /// interpreter makes the call.
    fn known_proto(&mut self, a: usize, k: &Callee, pc: usize) -> ir::Value {
        let checked = self.function_of[a].is_some_and(|s| self.functions[&s] == k.proto);
        if checked {
            return self.b.ins().iconst(I64, k.proto as i64);
        }
        let proto = self.callee_proto(a, pc);
        let right = self.b.ins().icmp_imm_s(IntCC::Equal, proto, k.proto as i64);
        self.guard_expected(right, pc);
        proto
    }

    /// A direct variant relies on its own constant slot holding its closure (see
    /// `own_slot`). A callee register read from that slot in this block (checked)
    /// proves it; one that only holds a closure of the proto is not enough.
    fn callee_slot_holds(&mut self, a: usize, k: &Callee, pc: usize) {
        if self.function_of[a].is_some_and(|s| self.functions[&s] == k.proto) {
            return;
        }
        let slot = self.functions.iter().find(|&(_, &p)| p == k.proto);
        if let Some((&slot, _)) = slot {
            let ok = self.holds_function(slot);
            self.guard_expected(ok, pc);
        }
    }

    /// The code pointer of known callee `k`, checked to be compiled; otherwise the
    /// interpreter makes the call.
    fn code_of(&mut self, k: &Callee, pc: usize) -> ir::Value {
        let at = self.layout.tables.code + k.proto as i64 * 8;
        let addr = self.b.ins().iconst(I64, at);
        let code = self.b.ins().load(I64, mem(), addr, 0);
        // Code calling itself is running, so it is not left to the interpreter yet.
        if !k.recursive {
            self.guard_compiled(code, pc);
        }
        code
    }

    /// The checks every compiled call makes before it calls (nesting depth, fuel, room
    /// for the callee's `frame_bytes` of registers); returns the callee's window.
    fn enter_frame(&mut self, a: usize, frame_bytes: ir::Value, pc: usize) -> ir::Value {
        let room = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, self.depth, 0);
        self.guard_expected(room, pc);
        self.charge(1, pc);
        self.callee_window(a, frame_bytes, pc)
    }

    /// The callee's window for a call at `R[a]`, checked to have room for `frame_bytes`
    /// of registers. An inlined call checks only this: it nests no machine frame and
    /// runs no loop, and the loop around it charges fuel at its back-edge.
    fn callee_window(&mut self, a: usize, frame_bytes: ir::Value, pc: usize) -> ir::Value {
        let callee_regs = self.b.ins().iadd_imm_s(self.regs, off(a + 1) as i64);
        let end = self.b.ins().iadd(callee_regs, frame_bytes);
        let stack_end = self.b.ins().load(I64, fixed(), self.ctx, CTX_STACK_END);
        let fits = self
            .b
            .ins()
            .icmp(IntCC::UnsignedLessThanOrEqual, end, stack_end);
        self.guard_expected(fits, pc);
        callee_regs
    }

    /// For a callee known only at run time: its proto, code pointer, frame size,
    /// module and module variables, checking that a call with `nargs` arguments needs
    /// no interpreter help.
    fn callee_from_tables(
        &mut self,
        a: usize,
        nargs: usize,
        pc: usize,
    ) -> (ir::Value, ir::Value, ir::Value, ir::Value, ir::Value) {
        let proto = self.callee_proto(a, pc);
        let t = self.layout.tables;
        let slot = self.b.ins().ishl_imm_s(proto, 3);
        let addr = self.b.ins().iadd_imm_s(slot, t.code);
        let code = self.b.ins().load(I64, mem(), addr, 0);
        let addr = self.b.ins().iadd_imm_s(proto, t.arity);
        let arity = self.b.ins().load(I8, mem(), addr, 0);
        let fits = self.b.ins().icmp_imm_s(IntCC::Equal, arity, nargs as i64);
        self.guard_expected(fits, pc);
        self.guard_compiled(code, pc);
        let slot = self.b.ins().ishl_imm_s(proto, 1);
        let addr = self.b.ins().iadd_imm_s(slot, t.max_regs);
        let max_regs = self.b.ins().load(I16, mem(), addr, 0);
        let max_regs = self.b.ins().uextend(I64, max_regs);
        let bytes = self.b.ins().imul_imm_s(max_regs, VALUE_SIZE as i64);
        // The callee's module variables: ours, or looked up.
        let callee = self.load_word(a);
        let module = self.b.ins().load(I64, mem(), callee, CLOSURE_MODULE);
        let same = self.b.ins().icmp(IntCC::Equal, module, self.module);
        let other = self.b.create_block();
        let join = self.b.create_block();
        let mvars = self.b.append_block_param(join, I64);
        self.b
            .ins()
            .brif(same, join, &[self.mvars.into()], other, &[]);
        self.b.switch_to_block(other);
        let call = self.b.ins().call(self.h.module_vars, &[module]);
        let looked_up = self.b.inst_results(call)[0];
        self.b.ins().jump(join, &[looked_up.into()]);
        self.b.switch_to_block(join);
        (proto, code, bytes, module, mvars)
    }

    /// The callee at `R[a]` stopped: store this frame's typed registers (those below
    /// the call, as they were before it) and append the call to the shadow list.
    fn unwind_call(&mut self, before: &[Ty], a: usize, pc: usize, proto: CalleeProto) {
        for (r, t) in before.iter().enumerate().take(a) {
            if t.is_typed() && self.read_after_exit(pc + 1, r) {
                self.spill(r, *t);
            }
        }
        // Recomputed here rather than kept alive across the call.
        let callee_regs = self.b.ins().iadd_imm_s(self.regs, off(a + 1) as i64);
        let proto = match proto {
            CalleeProto::Known(p) => self.b.ins().iconst(I64, p as i64),
            CalleeProto::Loaded(v) => v,
        };
        let len = self.b.ins().load(I64, mem(), self.ctx, CTX_SHADOW_LEN);
        let shadow = self.b.ins().load(I64, mem(), self.ctx, CTX_SHADOW);
        let at = self.b.ins().imul_imm_s(len, SHADOW_SIZE);
        let entry = self.b.ins().iadd(shadow, at);
        let resume = self.b.ins().iconst(I64, pc as i64 + 1);
        self.b.ins().store(mem(), resume, entry, SHADOW_RESUME);
        self.b.ins().store(mem(), callee_regs, entry, SHADOW_REGS);
        let (from, disp) = match self.function_of[a] {
            Some(slot) => (self.mvars, off(slot as usize)),
            None => (self.regs, off(a)),
        };
        self.copy_value(from, disp, entry, SHADOW_CLOSURE);
        self.b.ins().store(mem(), proto, entry, SHADOW_PROTO);
        let len_more = self.b.ins().iadd_imm_s(len, 1);
        self.b
            .ins()
            .store(mem(), len_more, self.ctx, CTX_SHADOW_LEN);
    }
}
