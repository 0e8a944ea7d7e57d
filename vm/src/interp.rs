//! The interpreter: one dispatch loop over register bytecode.
//!
//! Script-to-script calls push a [`Frame`] and continue in the same loop, so the Rust
//! stack does not grow with script recursion and a task can stop at any instruction.
//! The hot state (`pc`, `base`, the instruction slice) lives in locals; it is written
//! back to the frame whenever something may need it (a call, an error, a trace).
//!
//! Errors leave `dispatch` as a [`Fault`]; [`Vm::execute`] turns the fault into a value,
//! finds the innermost handler (`try`, `defer`) and re-enters the loop there.

use kiln_gc::Gc;
use smallvec::SmallVec;

use crate::bytecode::{opc, Instr};
use crate::error::Fault;
use crate::ops;
use crate::program::{Constant, Program, Proto, ProtoId, TypeKind};
use crate::tier::{JitMode, Materialize, TierExit};
use crate::value::*;
use crate::vm::{Frame, Handler, Vm};

/// The error of a call past `Settings::max_depth` (catchable).
pub(crate) const STACK_OVERFLOW: &str = "stack overflow";

impl Vm {
    /// Runs frames until the frame count drops back to `stop`; returns the value the
    /// frame at depth `stop` returned.
    pub(crate) fn execute(&mut self, stop: usize) -> Result<Value, Fault> {
        loop {
            match self.dispatch(stop) {
                Ok(v) => return Ok(v),
                Err(fault) => self.catch(fault, stop)?,
            }
        }
    }

    /// Delivers a fault to the innermost handler of this execution, or gives it back.
    pub(crate) fn catch(&mut self, fault: Fault, stop: usize) -> Result<(), Fault> {
        let value = match fault {
            // The task resumes later exactly here: nothing unwinds.
            Fault::Suspend => return Err(fault),
            Fault::Exit(_) | Fault::Limit(_) => return Err(self.unwind(fault, stop)),
            Fault::Error(msg) => match self.make_error(&msg) {
                Ok(v) => {
                    if let (Value::Error(e), true) = (v, msg == STACK_OVERFLOW) {
                        e.get_mut(&mut self.heap).stack_overflow = true;
                    }
                    v
                }
                Err(limit @ Fault::Limit(_)) => return Err(self.unwind(limit, stop)),
                // No memory even for the error value: no handler can be given one, so
                // the error leaves this execution as it is.
                Err(_) => return Err(self.unwind(Fault::Error(msg), stop)),
            },
            Fault::Throw(v) => {
                if !matches!(v, Value::Error(_)) {
                    self.throw_trace = Some(self.capture_trace());
                }
                v
            }
        };
        match self.handlers.last().copied() {
            Some(h) if h.frame >= stop => {
                self.handlers.pop();
                self.frames.truncate(h.frame + 1);
                let f = self.frames.last_mut().expect("handler frame exists");
                f.pc = h.pc;
                let slot = f.base + h.reg as usize;
                self.stack[slot] = value;
                Ok(())
            }
            _ => {
                self.frames.truncate(stop);
                self.handlers.retain(|h| h.frame < stop);
                Err(Fault::Throw(value))
            }
        }
    }

    /// Drops the frames and handlers of this execution for a fault no handler may see;
    /// a limit keeps the trace of where it struck.
    fn unwind(&mut self, fault: Fault, stop: usize) -> Fault {
        if matches!(fault, Fault::Limit(_)) && self.throw_trace.is_none() {
            self.throw_trace = Some(self.capture_trace());
        }
        self.frames.truncate(stop);
        self.handlers.retain(|h| h.frame < stop);
        fault
    }

    /// Pushes a frame for `closure` whose callee slot is `callee` (absolute) with
    /// `nargs` arguments after it; the result will go to `ret`.
    ///
    /// The common call (exactly the declared arguments, no rest parameter, room on
    /// the stack) is inlined into its callers; everything else is `prepare_frame`.
    #[inline(always)]
    pub(crate) fn push_frame(
        &mut self,
        closure: Gc<Closure>,
        callee: usize,
        nargs: usize,
        ret: usize,
    ) -> Result<Frame, Fault> {
        let c = closure.get(&self.heap);
        let (pid, consts, module) = (c.proto, c.consts, c.module);
        let p = self.program.proto(pid);
        let base = callee + 1;
        let common = nargs == p.nparams as usize
            && !p.has_rest
            && self.frames.len() < self.settings.max_depth
            && base + (p.max_regs as usize) < self.stack.len();
        if !common {
            self.prepare_frame(pid, base, nargs)?;
        }
        let frame = Frame {
            closure,
            proto: pid,
            consts,
            module,
            pc: 0,
            base,
            ret,
        };
        self.frames.push(frame);
        Ok(frame)
    }

    /// Everything a call may need before its frame is pushed: the arity and depth
    /// checks, stack room, the missing-argument markers and the rest array.
    #[inline(never)]
    fn prepare_frame(&mut self, pid: ProtoId, base: usize, nargs: usize) -> Result<(), Fault> {
        let p = self.program.proto(pid);
        let (np, nreq, has_rest) = (p.nparams as usize, p.nrequired as usize, p.has_rest);
        let max_regs = p.max_regs as usize;
        if nargs < nreq || (nargs > np && !has_rest) {
            return Err(Fault::Error(arity_message(p, nargs)));
        }
        if self.frames.len() >= self.settings.max_depth {
            return Err(Fault::Error(STACK_OVERFLOW.into()));
        }
        let need = base + max_regs + 1;
        if self.stack.len() < need {
            self.stack
                .resize(need.max(self.stack.len() * 2), Value::Nil);
        }
        for slot in &mut self.stack[base + nargs.min(np)..base + np] {
            *slot = Value::Undef;
        }
        if has_rest {
            let extra = if nargs > np {
                self.stack[base + np..base + nargs].to_vec()
            } else {
                Vec::new()
            };
            let arr = self.new_array(extra)?;
            self.stack[base + np] = arr;
        }
        Ok(())
    }

    /// Calls the value in `stack[callee]` with the `nargs` values after it; the result
    /// goes to `ret`. Script functions get a frame (run by the loop); natives run now.
    /// Returns true when a frame was pushed.
    pub(crate) fn call_value(
        &mut self,
        callee: usize,
        nargs: usize,
        ret: usize,
    ) -> Result<bool, Fault> {
        match self.stack[callee] {
            Value::Func(c) => {
                self.push_frame(c, callee, nargs, ret)?;
                Ok(true)
            }
            Value::Native(n) => {
                let v = match n.get(&self.heap) {
                    Native::Builtin { func, .. } => {
                        let f = *func;
                        self.call_native(&f, callee + 1, nargs)?
                    }
                    Native::Host(h) => {
                        let h = h.clone();
                        self.call_native(&*h.func, callee + 1, nargs)?
                    }
                };
                self.stack[ret] = v;
                Ok(false)
            }
            other => Err(Fault::Error(format!(
                "cannot call {}",
                other.type_name(&self.heap)
            ))),
        }
    }

    pub(crate) fn call_native(
        &mut self,
        f: &crate::host::NativeCall,
        first: usize,
        nargs: usize,
    ) -> Result<Value, Fault> {
        let saved = self.native_top.replace(first + nargs);
        let mut buf = [Value::Nil; 8];
        let r = if nargs <= buf.len() {
            buf[..nargs].copy_from_slice(&self.stack[first..first + nargs]);
            f(self, &buf[..nargs])
        } else {
            let args = self.stack[first..first + nargs].to_vec();
            f(self, &args)
        };
        self.native_top = saved;
        r
    }

    /// The main loop. Returns when the frame at depth `stop` returns, or on a fault
    /// (with the current frame's `pc` saved so positions and traces are right).
    fn dispatch(&mut self, stop: usize) -> Result<Value, Fault> {
        let program = self.program.clone();
        let program: &Program = &program;
        // Only what every instruction needs lives in locals (fewer values for the
        // register allocator to juggle); the rest of the frame is read when needed.
        let top = *self.frames.last().expect("dispatch needs a frame");
        let mut proto: &Proto = program.proto(top.proto);
        let mut code: &[Instr] = &proto.code;
        let mut pc = top.pc;
        let mut base = top.base;
        // The current frame's registers. A local slice keeps the stack's address and
        // length in machine registers instead of reloading them from `self` at every
        // access; anything that needs the whole `Vm` goes through `vm!`, which takes the
        // window again afterwards (the stack may have grown and moved).
        let mut win: &mut [Value] = &mut self.stack[base..];

        macro_rules! r {
            ($i:expr) => {
                win[$i]
            };
        }
        macro_rules! rewin {
            () => {
                win = &mut self.stack[base..]
            };
        }
        macro_rules! save_pc {
            () => {
                self.frames.last_mut().expect("frame").pc = pc
            };
        }
        macro_rules! throw {
            ($e:expr) => {{
                save_pc!();
                return Err($e);
            }};
        }
        macro_rules! check {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => throw!(e.into()),
                }
            };
        }
        // A fallible operation that needs the whole `Vm`.
        macro_rules! vm {
            ($e:expr) => {{
                let v = check!($e);
                rewin!();
                v
            }};
        }
        macro_rules! frame {
            () => {
                self.frames.last().expect("frame")
            };
        }
        macro_rules! reload {
            () => {{
                let f = frame!();
                proto = program.proto(f.proto);
                code = &proto.code;
                pc = f.pc;
                base = f.base;
                rewin!();
            }};
        }
        // Makes the frame `f`, just pushed, the current one: what `reload!` does,
        // without reading it back.
        macro_rules! enter {
            ($f:expr) => {{
                let f: Frame = $f;
                proto = program.proto(f.proto);
                code = &proto.code;
                pc = 0;
                base = f.base;
                rewin!();
            }};
        }
        // Counts a call or back-edge of the top frame and runs its compiled code if it
        // has an entry at the frame's pc.
        macro_rules! tier_enter {
            ($weight:expr) => {{
                match check!(self.tier_enter($weight)) {
                    Entered::No => rewin!(),
                    Entered::Returned(v, ret) => {
                        if self.frames.len() <= stop {
                            return Ok(v);
                        }
                        self.stack[ret] = v;
                        reload!();
                    }
                    Entered::Resumed => reload!(),
                }
            }};
        }
        // Charges steps for a call or a loop iteration; stops or refills when the grant
        // is spent (see `crate::fuel`). Runs after the jump or call, so the frame's pc is
        // where the run continues.
        macro_rules! charge {
            ($steps:expr) => {{
                self.fuel -= $steps as i64;
                if self.fuel <= 0 {
                    save_pc!();
                    if let Err(stop) = self.refuel() {
                        // Errors point at the instruction before the saved pc; a limit
                        // stops *at* this one. A suspension must resume here, not after.
                        if matches!(stop, Fault::Limit(_)) {
                            pc += 1;
                        }
                        throw!(stop);
                    }
                    rewin!();
                }
            }};
        }
        let tiering = self.settings.tier.mode != JitMode::Off;
        macro_rules! konst {
            ($i:expr) => {
                match proto.consts[$i] {
                    Constant::Int(i) => Value::Int(i),
                    Constant::Float(f) => Value::Float(f),
                    Constant::Str(_) => frame!().consts.get(&self.heap).values[$i],
                }
            };
        }
        // One compare of the highest of some registers with the window's length, which
        // lets LLVM drop each register's own bounds check after it.
        macro_rules! in_window {
            ($first:expr $(, $r:expr)*) => {
                if $first $(.max($r))* >= win.len() {
                    throw!(Fault::Error("internal error: register out of range".into()));
                }
            };
        }
        // `$int` returns `Some(value)` or `None` to defer to the full semantics (which
        // also produce the errors, e.g. integer division by zero). Each fast path stores
        // its own result, so the store is a tag byte and a payload, not a merged value.
        // The operands are matched in place, not copied out, and the slow path reads
        // them again, so no whole `Value` lives across the fast paths (it would be
        // kept in memory).
        macro_rules! arith {
            ($ins:expr, reg, $int:expr, $float:expr, $op:expr) => {
                arith!(@ $ins, $ins.c(), r!($ins.c()), r!($ins.c()), Value, $int, $float, $op, false)
            };
            ($ins:expr, konst, $int:expr, $float:expr, $op:expr) => {
                arith!(@ $ins, 0, proto.consts[$ins.c()], konst!($ins.c()), Constant, $int, $float, $op, false)
            };
            ($ins:expr, reg, mixed, $int:expr, $float:expr, $op:expr) => {
                arith!(@ $ins, $ins.c(), r!($ins.c()), r!($ins.c()), Value, $int, $float, $op, true)
            };
            ($ins:expr, konst, mixed, $int:expr, $float:expr, $op:expr) => {
                arith!(@ $ins, 0, proto.consts[$ins.c()], konst!($ins.c()), Constant, $int, $float, $op, true)
            };
            // `$rhs` is the right operand's place (a register or a `Constant`, whose
            // `Int` and `Float` variants `$kind` names), `$value` its `Value`, `$reg`
            // the register it is in (0 for a constant). One compare of the highest
            // register with the window's length stands for every register's bounds
            // check.
            (@ $ins:expr, $reg:expr, $rhs:expr, $value:expr, $kind:ident, $int:expr, $float:expr, $op:expr, $mixed:expr) => {{
                let a = $ins.a();
                in_window!(a, $ins.b(), $reg);
                let done = match (&r!($ins.b()), &$rhs) {
                    (Value::Int(p), $kind::Int(q)) => match $int(*p, *q) {
                        Some(v) => {
                            r!(a) = v;
                            true
                        }
                        None => false,
                    },
                    (Value::Float(p), $kind::Float(q)) => {
                        r!(a) = Value::Float($float(*p, *q));
                        true
                    }
                    // An int with a float is a float operation (see `ops::arith`). Only
                    // division takes this inline: `1.0 / n` is common, and the arms
                    // cost the other operators 1-2% in layout (mandelbrot, nbody).
                    (Value::Float(p), $kind::Int(q)) if $mixed => {
                        r!(a) = Value::Float($float(*p, *q as f64));
                        true
                    }
                    (Value::Int(p), $kind::Float(q)) if $mixed => {
                        r!(a) = Value::Float($float(*p as f64, *q));
                        true
                    }
                    _ => false,
                };
                if !done {
                    let (x, y) = (r!($ins.b()), $value);
                    let v = vm!(ops::arith(self, $op, x, y));
                    r!(a) = v;
                }
            }};
        }
        macro_rules! jump_if {
            ($cond:expr) => {{
                if $cond {
                    let j = code[pc];
                    pc = (pc as isize + 1 + j.sj()) as usize;
                } else {
                    pc += 1;
                }
            }};
        }

        // `if (R[A] op rhs) == k(C)` take the next jump: ints and floats inline,
        // anything else through `$slow` (which also raises the type errors).
        macro_rules! order_test {
            ($ins:expr, $rhs:expr, $op:tt, $slow:path) => {{
                let rhs = $rhs;
                let holds = match (&r!($ins.a()), &rhs) {
                    (Value::Int(a), Value::Int(b)) => a $op b,
                    (Value::Float(a), Value::Float(b)) => a $op b,
                    (&a, &b) => check!($slow(&self.heap, a, b)),
                };
                jump_if!(holds == ($ins.c() != 0))
            }};
        }

        loop {
            let ins = code[pc];
            pc += 1;
            match ins.op_byte() {
                opc::Move => r!(ins.a()) = r!(ins.b()),
                opc::LoadK => r!(ins.a()) = konst!(ins.bx()),
                opc::LoadI => r!(ins.a()) = Value::Int(ins.sbx() as i64),
                opc::LoadNil => {
                    for i in 0..=ins.b() {
                        r!(ins.a() + i) = Value::Nil;
                    }
                }
                opc::LoadTrue => r!(ins.a()) = Value::Bool(true),
                opc::LoadFalse => r!(ins.a()) = Value::Bool(false),
                opc::LoadBuiltin => {
                    let v = vm!(self.builtin(ins.bx()));
                    r!(ins.a()) = v;
                }
                opc::GetModule => {
                    let module = frame!().module.get(&self.heap);
                    let v = module.vars[ins.bx()];
                    if let Value::Undef = v {
                        throw!(uninitialized(module, ins.bx()));
                    }
                    r!(ins.a()) = v;
                }
                opc::SetModule => {
                    let v = r!(ins.a());
                    let module = frame!().module;
                    module.get_mut(&mut self.heap).vars[ins.bx()] = v;
                }
                opc::GetUpval => {
                    let cell = frame!().closure.get(&self.heap).upvals[ins.b()];
                    r!(ins.a()) = cell.get(&self.heap).value;
                }
                opc::SetUpval => {
                    let cell = frame!().closure.get(&self.heap).upvals[ins.b()];
                    let v = r!(ins.a());
                    cell.get_mut(&mut self.heap).value = v;
                }
                opc::NewCell => {
                    let v = r!(ins.a());
                    let c = vm!(self.alloc(Cell { value: v }));
                    r!(ins.a()) = Value::Cell(c);
                }
                opc::GetCell => {
                    let Value::Cell(c) = r!(ins.b()) else {
                        throw!(Fault::Error("internal error: expected a cell".into()))
                    };
                    r!(ins.a()) = c.get(&self.heap).value;
                }
                opc::SetCell => {
                    let Value::Cell(c) = r!(ins.a()) else {
                        throw!(Fault::Error("internal error: expected a cell".into()))
                    };
                    let v = r!(ins.b());
                    c.get_mut(&mut self.heap).value = v;
                }
                opc::Add => arith!(
                    ins,
                    reg,
                    |a: i64, b| Some(Value::Int(a.wrapping_add(b))),
                    |a, b| a + b,
                    ops::Arith::Add
                ),
                opc::Sub => arith!(
                    ins,
                    reg,
                    |a: i64, b| Some(Value::Int(a.wrapping_sub(b))),
                    |a, b| a - b,
                    ops::Arith::Sub
                ),
                opc::Mul => arith!(
                    ins,
                    reg,
                    |a: i64, b| Some(Value::Int(a.wrapping_mul(b))),
                    |a, b| a * b,
                    ops::Arith::Mul
                ),
                opc::AddK => arith!(
                    ins,
                    konst,
                    |a: i64, b| Some(Value::Int(a.wrapping_add(b))),
                    |a, b| a + b,
                    ops::Arith::Add
                ),
                opc::SubK => arith!(
                    ins,
                    konst,
                    |a: i64, b| Some(Value::Int(a.wrapping_sub(b))),
                    |a, b| a - b,
                    ops::Arith::Sub
                ),
                opc::MulK => arith!(
                    ins,
                    konst,
                    |a: i64, b| Some(Value::Int(a.wrapping_mul(b))),
                    |a, b| a * b,
                    ops::Arith::Mul
                ),
                opc::Div => arith!(ins, reg, mixed, float_div, |a, b| a / b, ops::Arith::Div),
                opc::DivK => arith!(ins, konst, mixed, float_div, |a, b| a / b, ops::Arith::Div),
                opc::Mod => arith!(
                    ins,
                    reg,
                    |a, b| ops::int_mod(a, b).ok().map(Value::Int),
                    ops::float_mod,
                    ops::Arith::Mod
                ),
                opc::ModK => arith!(
                    ins,
                    konst,
                    |a, b| ops::int_mod(a, b).ok().map(Value::Int),
                    ops::float_mod,
                    ops::Arith::Mod
                ),
                opc::IDiv => arith!(
                    ins,
                    reg,
                    |a, b| ops::int_floor_div(a, b).ok().map(Value::Int),
                    |a: f64, b: f64| (a / b).floor(),
                    ops::Arith::IDiv
                ),
                opc::IDivK => arith!(
                    ins,
                    konst,
                    |a, b| ops::int_floor_div(a, b).ok().map(Value::Int),
                    |a: f64, b: f64| (a / b).floor(),
                    ops::Arith::IDiv
                ),
                opc::Pow | opc::PowK => {
                    let y = if ins.op_byte() == opc::Pow {
                        r!(ins.c())
                    } else {
                        konst!(ins.c())
                    };
                    let x = r!(ins.b());
                    let v = vm!(ops::arith(self, ops::Arith::Pow, x, y));
                    r!(ins.a()) = v;
                }
                opc::BAnd | opc::BOr | opc::BXor | opc::Shl | opc::Shr => {
                    let (x, y) = (r!(ins.b()), r!(ins.c()));
                    let v = vm!(ops::bitwise(self, ins.op_byte(), x, y));
                    r!(ins.a()) = v;
                }
                opc::Unm => {
                    r!(ins.a()) = match r!(ins.b()) {
                        Value::Int(i) => Value::Int(i.wrapping_neg()),
                        Value::Float(f) => Value::Float(-f),
                        other => throw!(type_error(&self.heap, "cannot negate", other)),
                    }
                }
                opc::Not => r!(ins.a()) = Value::Bool(!r!(ins.b()).truthy()),
                opc::BNot => {
                    r!(ins.a()) = match r!(ins.b()) {
                        Value::Int(i) => Value::Int(!i),
                        other => throw!(type_error(&self.heap, "cannot apply `~` to", other)),
                    }
                }
                opc::Eq => r!(ins.a()) = Value::Bool(equal(&self.heap, &r!(ins.b()), &r!(ins.c()))),
                opc::Ne => {
                    r!(ins.a()) = Value::Bool(!equal(&self.heap, &r!(ins.b()), &r!(ins.c())))
                }
                opc::Lt => {
                    let b = check!(ops::less(&self.heap, r!(ins.b()), r!(ins.c())));
                    r!(ins.a()) = Value::Bool(b);
                }
                opc::Le => {
                    let b = check!(ops::less_eq(&self.heap, r!(ins.b()), r!(ins.c())));
                    r!(ins.a()) = Value::Bool(b);
                }
                opc::Gt => {
                    let b = check!(ops::greater(&self.heap, r!(ins.b()), r!(ins.c())));
                    r!(ins.a()) = Value::Bool(b);
                }
                opc::Ge => {
                    let b = check!(ops::greater_eq(&self.heap, r!(ins.b()), r!(ins.c())));
                    r!(ins.a()) = Value::Bool(b);
                }
                opc::Jmp => {
                    pc = (pc as isize + ins.sj()) as usize;
                    if ins.sj() < 0 {
                        charge!(-ins.sj());
                        if tiering && !proto.jit.is_dormant() {
                            save_pc!();
                            tier_enter!(1);
                        }
                    }
                }
                opc::Test => jump_if!(r!(ins.a()).truthy() == (ins.c() != 0)),
                opc::TestEq => {
                    let eq = equal(&self.heap, &r!(ins.a()), &r!(ins.b()));
                    jump_if!(eq == (ins.c() != 0))
                }
                // The register forms are spelled out rather than written with
                // `order_test!`: with the macro, rustc lays out the dispatch loop so that
                // loop, nbody and spectral-norm run 4-5% more instructions (callgrind).
                opc::TestLt => {
                    let lt = match (&r!(ins.a()), &r!(ins.b())) {
                        (Value::Int(a), Value::Int(b)) => a < b,
                        (Value::Float(a), Value::Float(b)) => a < b,
                        (&a, &b) => check!(ops::less(&self.heap, a, b)),
                    };
                    jump_if!(lt == (ins.c() != 0))
                }
                opc::TestLe => {
                    let le = match (&r!(ins.a()), &r!(ins.b())) {
                        (Value::Int(a), Value::Int(b)) => a <= b,
                        (Value::Float(a), Value::Float(b)) => a <= b,
                        (&a, &b) => check!(ops::less_eq(&self.heap, a, b)),
                    };
                    jump_if!(le == (ins.c() != 0))
                }
                opc::TestGt => {
                    let gt = match (&r!(ins.a()), &r!(ins.b())) {
                        (Value::Int(a), Value::Int(b)) => a > b,
                        (Value::Float(a), Value::Float(b)) => a > b,
                        (&a, &b) => check!(ops::greater(&self.heap, a, b)),
                    };
                    jump_if!(gt == (ins.c() != 0))
                }
                opc::TestGe => {
                    let ge = match (&r!(ins.a()), &r!(ins.b())) {
                        (Value::Int(a), Value::Int(b)) => a >= b,
                        (Value::Float(a), Value::Float(b)) => a >= b,
                        (&a, &b) => check!(ops::greater_eq(&self.heap, a, b)),
                    };
                    jump_if!(ge == (ins.c() != 0))
                }
                opc::TestEqK => {
                    let eq = equal(&self.heap, &r!(ins.a()), &konst!(ins.b()));
                    jump_if!(eq == (ins.c() != 0))
                }
                opc::TestLtK => order_test!(ins, konst!(ins.b()), <, ops::less),
                opc::TestLeK => order_test!(ins, konst!(ins.b()), <=, ops::less_eq),
                opc::TestGtK => order_test!(ins, konst!(ins.b()), >, ops::greater),
                opc::TestGeK => order_test!(ins, konst!(ins.b()), >=, ops::greater_eq),
                opc::ForPrep | opc::ForPrepIncl => {
                    let a = ins.a();
                    let (start, end, step) =
                        check!(ops::range_ints(&self.heap, r!(a), r!(a + 1), r!(a + 2)));
                    r!(a + 2) = Value::Int(step);
                    let incl = ins.op_byte() == opc::ForPrepIncl;
                    if !ops::in_range(start, end, step, incl) {
                        pc = (pc as isize + ins.sbx()) as usize;
                    } else {
                        r!(a) = Value::Int(start);
                        r!(a + 1) = Value::Int(end);
                        r!(a + 3) = Value::Int(start);
                    }
                }
                opc::ForLoop | opc::ForLoopIncl => {
                    // The four loop registers as one array: one bounds check.
                    let Some(regs) = win.get_mut(ins.a()..ins.a() + 4) else {
                        throw!(Fault::Error("internal error: loop registers".into()))
                    };
                    if let (Value::Int(i), Value::Int(end), Value::Int(step)) =
                        (regs[0], regs[1], regs[2])
                    {
                        let incl = ins.op_byte() == opc::ForLoopIncl;
                        if let Some(next) = i.checked_add(step) {
                            if ops::in_range(next, end, step, incl) {
                                regs[0] = Value::Int(next);
                                regs[3] = Value::Int(next);
                                pc = (pc as isize + ins.sbx()) as usize;
                                charge!(-ins.sbx());
                                if tiering && !proto.jit.is_dormant() {
                                    save_pc!();
                                    tier_enter!(1);
                                }
                            }
                        }
                    }
                }
                opc::IterPrep => {
                    let v = r!(ins.a());
                    check!(ops::check_iterable(&self.heap, v));
                    r!(ins.a() + 1) = Value::Int(0);
                }
                opc::IterNext1 | opc::IterNext2 => {
                    let a = ins.a();
                    let two = ins.op_byte() == opc::IterNext2;
                    if !vm!(ops::iter_next(self, base + a, two)) {
                        pc = (pc as isize + ins.sbx()) as usize;
                    }
                }
                opc::DefaultArg => {
                    if !matches!(r!(ins.a()), Value::Undef) {
                        pc = (pc as isize + ins.sbx()) as usize;
                    }
                }
                opc::CheckType => {
                    let check = &proto.type_checks[ins.bx()];
                    let v = r!(ins.a());
                    match check_type(&self.heap, &check.ann.kind, check.ann.nilable, v) {
                        Some(v) => r!(ins.a()) = v,
                        None => throw!(annotation_error(&self.heap, check, v)),
                    }
                }
                opc::Call => {
                    save_pc!();
                    let a = base + ins.a();
                    if let Value::Func(c) = r!(ins.a()) {
                        enter!(check!(self.push_frame(c, a, ins.b(), a)));
                    } else if vm!(self.call_value(a, ins.b(), a)) {
                        reload!();
                    } else {
                        continue;
                    }
                    charge!(1);
                    if tiering && !proto.jit.is_dormant() {
                        tier_enter!(1);
                    }
                }
                opc::CallMethod => {
                    save_pc!();
                    // A struct's own method taking `self`: the receiver is already in
                    // place as its first argument.
                    if let Value::Struct(s) = r!(ins.a() + 1) {
                        let ty = s.get(&self.heap).ty.get(&self.heap);
                        if let Some(Value::Func(c)) = ops::cached_method(proto, ins.c(), ty) {
                            if program.proto(c.get(&self.heap).proto).has_self {
                                r!(ins.a()) = Value::Func(c);
                                let a = base + ins.a();
                                enter!(check!(self.push_frame(c, a, ins.b() + 1, a)));
                                charge!(1);
                                continue;
                            }
                        }
                    }
                    let name = check!(const_name(proto, ins.c()));
                    if vm!(ops::call_method(self, base + ins.a(), ins.b(), name)) {
                        reload!();
                        charge!(1);
                    }
                }
                opc::Return => {
                    let v = if ins.b() == 1 {
                        r!(ins.a())
                    } else {
                        Value::Nil
                    };
                    let ret = self.frames.pop().expect("frame").ret;
                    if self.frames.len() <= stop {
                        return Ok(v);
                    }
                    self.stack[ret] = v;
                    reload!();
                }
                opc::Closure => {
                    save_pc!();
                    let child = proto.protos[ins.bx()];
                    let f = *frame!();
                    let c = vm!(self.make_closure(&f, base, child));
                    r!(ins.a()) = Value::Func(c);
                }
                opc::NewArray => {
                    let (b, n) = (base + ins.b(), ins.c());
                    let items = self.stack[b..b + n].to_vec();
                    let v = vm!(self.new_array(items));
                    r!(ins.a()) = v;
                }
                opc::ArrayExtend => {
                    let (b, n) = (ins.b(), ins.c());
                    let Value::Array(arr) = r!(ins.a()) else {
                        throw!(Fault::Error("internal error: expected an array".into()))
                    };
                    vm!(self.grow_array(arr, n));
                    let items = &win[b..b + n];
                    arr.get_mut(&mut self.heap).items.extend_from_slice(items);
                }
                opc::NewMap | opc::MapExtend => {
                    save_pc!();
                    let v = vm!(ops::map_literal(self, ins, base));
                    if ins.op_byte() == opc::NewMap {
                        r!(ins.a()) = v;
                    }
                }
                opc::NewRange | opc::NewRangeIncl => {
                    save_pc!();
                    let (s, e) = (r!(ins.b()), r!(ins.c()));
                    let (start, end, _) = check!(ops::range_ints(&self.heap, s, e, Value::Int(1)));
                    let g = vm!(self.alloc(Range {
                        start,
                        end,
                        step: 1,
                        inclusive: ins.op_byte() == opc::NewRangeIncl,
                    }));
                    r!(ins.a()) = Value::Range(g);
                }
                opc::GetIndex => {
                    let (o, i) = (r!(ins.b()), r!(ins.c()));
                    r!(ins.a()) = match (o, i) {
                        (Value::Array(arr), Value::Int(i)) => {
                            let items = &arr.get(&self.heap).items;
                            match ops::array_slot(items.len(), i) {
                                Some(i) => items[i],
                                None => throw!(ops::index_error(i, items.len())),
                            }
                        }
                        _ => {
                            save_pc!();
                            vm!(ops::get_index(self, o, i))
                        }
                    };
                }
                opc::SetIndex => {
                    let (o, i, v) = (r!(ins.a()), r!(ins.b()), r!(ins.c()));
                    match (o, i) {
                        (Value::Array(arr), Value::Int(i)) => {
                            let items = &mut arr.get_mut(&mut self.heap).items;
                            match ops::array_slot(items.len(), i) {
                                Some(i) => items[i] = v,
                                None => {
                                    let len = items.len();
                                    throw!(ops::index_error(i, len))
                                }
                            }
                        }
                        _ => {
                            save_pc!();
                            vm!(ops::set_index(self, o, i, v))
                        }
                    }
                }
                opc::GetField => {
                    let o = r!(ins.b());
                    if let Value::Struct(s) = o {
                        let inst = s.get(&self.heap);
                        let slot = ops::field_hit(proto, ins.c(), inst.key).or_else(|| {
                            ops::field_miss(&self.heap, proto, ins.c(), inst.ty, false)
                        });
                        if let Some(&v) = slot.and_then(|i| inst.fields.get(i)) {
                            r!(ins.a()) = v;
                            continue;
                        }
                    }
                    save_pc!();
                    let name = check!(const_name(proto, ins.c()));
                    let v = vm!(ops::get_field(self, o, name));
                    r!(ins.a()) = v;
                }
                opc::SetField => {
                    let (o, v) = (r!(ins.a()), r!(ins.c()));
                    if let Value::Struct(s) = o {
                        // Annotated fields take the checked path.
                        let inst = s.get(&self.heap);
                        let slot = ops::plain_field_hit(proto, ins.b(), inst.key)
                            .or_else(|| ops::field_miss(&self.heap, proto, ins.b(), inst.ty, true));
                        if let Some(slot) = slot {
                            if let Some(f) = s.get_mut(&mut self.heap).fields.get_mut(slot) {
                                *f = v;
                                continue;
                            }
                        }
                    }
                    save_pc!();
                    let name = check!(const_name(proto, ins.b()));
                    vm!(ops::set_field(self, o, name, v));
                }
                opc::NewStruct => {
                    save_pc!();
                    let (a, b) = (base + ins.a(), base + ins.b());
                    if vm!(ops::new_struct(self, a, b, &proto.shapes[ins.c()])) {
                        reload!();
                    }
                }
                opc::NewStructType => {
                    save_pc!();
                    let f = *frame!();
                    let t = vm!(self.make_struct_type(&f, proto, ins.bx()));
                    r!(ins.a()) = Value::Type(t);
                }
                opc::AddMethod => {
                    if let Value::Type(t) = r!(ins.a()) {
                        let m = r!(ins.b());
                        let name = check!(const_name(proto, ins.c())).clone();
                        t.get_mut(&mut self.heap).methods.push((name, m));
                    }
                }
                opc::Concat => {
                    save_pc!();
                    let parts: SmallVec<[Value; 8]> = win[ins.b()..ins.b() + ins.c()].into();
                    let v = vm!(ops::concat(self, &parts));
                    r!(ins.a()) = v;
                }
                opc::Throw => throw!(Fault::Throw(r!(ins.a()))),
                opc::PushHandler => {
                    let target = (pc as isize + ins.sbx()) as usize;
                    self.handlers.push(Handler {
                        frame: self.frames.len() - 1,
                        pc: target,
                        reg: ins.a() as u8,
                    });
                }
                opc::PopHandler => {
                    self.handlers.pop();
                }
                opc::AddSuppressed => {
                    if let Value::Error(e) = r!(ins.a()) {
                        let v = r!(ins.b());
                        e.get_mut(&mut self.heap).suppressed.push(v);
                    }
                }
                opc::ImportModule => {
                    save_pc!();
                    let m = vm!(self.module_obj(crate::program::ModuleId(ins.bx() as u32)));
                    let a = base + ins.a();
                    if m.get(&self.heap).started {
                        r!(ins.a()) = Value::Module(m);
                    } else {
                        let id = m.get(&self.heap).id.expect("file module");
                        let main = program.module(id).main;
                        let c = check!(self.new_closure(main, Box::new([]), m));
                        m.get_mut(&mut self.heap).started = true;
                        self.stack[a] = Value::Func(c);
                        check!(self.push_frame(c, a, 0, a));
                        reload!();
                    }
                }
                opc::ImportStd => {
                    save_pc!();
                    let m = vm!(crate::stdlib::std_module(self, ins.bx()));
                    r!(ins.a()) = Value::Module(m);
                }
                opc::GetModuleObj => r!(ins.a()) = Value::Module(frame!().module),
                opc::Spawn => {
                    save_pc!();
                    let v = vm!(self.spawn(base + ins.a(), ins.b()));
                    r!(ins.a()) = v;
                }
                other => throw!(Fault::Error(format!("internal error: bad opcode {other}"))),
            }
        }
    }

    /// Counts a call or back-edge of the top frame (`weight`) and, if its proto has
    /// compiled code with an entry at the frame's pc, runs it. Returns the value and
    /// return slot when the frame returned from compiled code.
    fn tier_enter(&mut self, weight: u32) -> Result<Entered, Fault> {
        let (proto, pc) = self
            .frames
            .last()
            .map(|f| (f.proto, f.pc))
            .expect("a frame");
        let Some(code) = self.tier_hot(proto, pc, weight) else {
            return Ok(Entered::No);
        };
        match code.run(self, pc as u32) {
            TierExit::Returned(v) => {
                let done = self.frames.pop().expect("the entered frame");
                Ok(Entered::Returned(v, done.ret))
            }
            TierExit::Resume { pc, frames } => {
                self.frames.last_mut().expect("the entered frame").pc = pc as usize;
                for m in frames {
                    self.push_materialized(m)?;
                }
                Ok(Entered::Resumed)
            }
        }
    }

    /// Rebuilds an interpreter frame for a compiled callee that stopped.
    fn push_materialized(&mut self, m: Materialize) -> Result<(), Fault> {
        let Value::Func(closure) = m.closure else {
            return Err(Fault::Error(
                "internal error: compiled frame without a closure".into(),
            ));
        };
        let c = closure.get(&self.heap);
        let (proto, consts, module) = (c.proto, c.consts, c.module);
        let need = m.base + self.program.proto(proto).max_regs as usize + 1;
        if self.stack.len() < need {
            self.stack.resize(need, Value::Nil);
        }
        self.frames.push(Frame {
            closure,
            proto,
            consts,
            module,
            pc: m.pc as usize,
            base: m.base,
            ret: m.base - 1,
        });
        Ok(())
    }

    fn make_closure(
        &mut self,
        frame: &Frame,
        base: usize,
        child: ProtoId,
    ) -> Result<Gc<Closure>, Fault> {
        let program = self.program.clone();
        let sources = &program.proto(child).upvals;
        let mut cells = Vec::with_capacity(sources.len());
        for s in sources {
            let cell = match *s {
                crate::program::UpvalSource::Register(r) => match self.stack[base + r as usize] {
                    Value::Cell(c) => c,
                    _ => {
                        return Err(Fault::Error(
                            "internal error: captured variable is not boxed".into(),
                        ))
                    }
                },
                crate::program::UpvalSource::Upval(i) => {
                    frame.closure.get(&self.heap).upvals[i as usize]
                }
            };
            cells.push(cell);
        }
        self.new_closure(child, cells.into_boxed_slice(), frame.module)
    }

    fn make_struct_type(
        &mut self,
        frame: &Frame,
        proto: &Proto,
        idx: usize,
    ) -> Result<Gc<StructType>, Fault> {
        let desc = &proto.structs[idx];
        let init = desc
            .init
            .map(|i| self.new_closure(proto.protos[i as usize], Box::new([]), frame.module))
            .transpose()?;
        let ty = StructType {
            name: desc.name.clone(),
            fields: desc.fields.clone().into_boxed_slice(),
            has_default: desc.has_default.clone().into_boxed_slice(),
            field_types: desc.field_types.clone().into_boxed_slice(),
            init,
            methods: Vec::new(),
            key: StructType::key_of(frame.proto.0, idx),
        };
        Ok(self.alloc(ty)?)
    }
}

/// What happened when the interpreter offered a frame to the compiled tier.
enum Entered {
    /// Nothing ran: the interpreter's state is untouched.
    No,
    /// The frame returned this value into this slot.
    Returned(Value, usize),
    /// Compiled code stopped; frames were updated and maybe added.
    Resumed,
}

/// Checks `v` against an annotation; returns the (possibly converted) value.
pub(crate) fn check_type(
    heap: &kiln_gc::Heap,
    kind: &TypeKind,
    nilable: bool,
    v: Value,
) -> Option<Value> {
    if nilable && matches!(v, Value::Nil) {
        return Some(v);
    }
    let ok = match (kind, v) {
        (TypeKind::Any, _) => true,
        (TypeKind::Int, Value::Int(_)) => true,
        (TypeKind::Float, Value::Float(_)) => true,
        (TypeKind::Float, Value::Int(i)) => return Some(Value::Float(i as f64)),
        (TypeKind::Bool, Value::Bool(_)) => true,
        (TypeKind::Str, Value::Str(_)) => true,
        (TypeKind::Array, Value::Array(_)) => true,
        (TypeKind::Map, Value::Map(_)) => true,
        (TypeKind::Fn, Value::Func(_) | Value::Native(_)) => true,
        (TypeKind::Struct(name), Value::Struct(s)) => *s.get(heap).ty.get(heap).name == **name,
        _ => false,
    };
    ok.then_some(v)
}

pub(crate) fn arity_message(p: &Proto, nargs: usize) -> String {
    if p.has_self && nargs == 0 {
        return format!("{} is a method: call it on an instance", p.name);
    }
    // `self` is not an argument the caller wrote.
    let skip = p.has_self as usize;
    expects(
        &p.name,
        p.nrequired as usize - skip,
        p.nparams as usize - skip,
        p.has_rest,
        nargs - skip,
    )
}

/// `f expects 2 arguments, got 3` (or `1 to 2 arguments`, `at least 1 argument`).
pub(crate) fn expects(
    name: &str,
    required: usize,
    params: usize,
    rest: bool,
    got: usize,
) -> String {
    let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
    let expected = if rest {
        format!("at least {required} {}", plural(required))
    } else if params == required {
        format!("{params} {}", plural(params))
    } else {
        format!("{required} to {params} arguments")
    };
    format!("{name} expects {expected}, got {got}")
}

/// `==`, with the comparisons with nil (`node.left == nil`) and of ints decided inline.
#[inline(always)]
fn equal(heap: &kiln_gc::Heap, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        _ => ops::equal(heap, *a, *b),
    }
}

/// `cannot negate str` and the like, out of the dispatch loop's way.
#[cold]
#[inline(never)]
fn type_error(heap: &kiln_gc::Heap, what: &str, v: Value) -> Fault {
    Fault::Error(format!("{what} {}", v.type_name(heap)))
}

/// A value that does not match its annotation.
#[cold]
#[inline(never)]
fn annotation_error(heap: &kiln_gc::Heap, check: &crate::program::TypeCheck, v: Value) -> Fault {
    let (what, want) = (&check.what, check.ann.describe());
    Fault::Error(format!("{what} expected {want}, got {}", v.type_name(heap)))
}

/// A module variable read before its `let` ran.
#[cold]
#[inline(never)]
fn uninitialized(module: &ModuleObj, var: usize) -> Fault {
    Fault::Error(format!(
        "`{}` used before initialization",
        module.names[var]
    ))
}

/// Int-by-int `/`: always a float.
#[inline(always)]
fn float_div(a: i64, b: i64) -> Option<Value> {
    Some(Value::Float(a as f64 / b as f64))
}

/// The name constant `i` of `proto` (field and method operands are always strings).
#[inline]
fn const_name(proto: &Proto, i: usize) -> Result<&std::sync::Arc<str>, Fault> {
    match &proto.consts[i] {
        Constant::Str(s) => Ok(s),
        _ => Err(Fault::Error(
            "internal error: a name operand is not a string".into(),
        )),
    }
}
