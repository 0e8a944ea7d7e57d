//! Expression compilation: values into registers, and conditions into jumps.
//!
//! `expr_to(e, dst)` leaves the value of `e` in `dst`; `expr_reg(e)` returns a register
//! holding it (a plain local's own register, or a fresh temporary). Conditions compile
//! straight to test-and-jump pairs (`cond_jump`) without materialising booleans.

use std::sync::Arc;

use crate::ast::*;
use crate::bytecode::{Instr, Op};
use crate::compiler::{CResult, Compiler};
use crate::program::Constant;
use crate::source::Span;

/// Most elements a single NewArray/NewMap/Concat takes; longer literals extend in chunks.
const CHUNK: usize = 64;

impl<'l, 'p> Compiler<'l, 'p> {
    /// A register holding the value of `e`.
    pub(crate) fn expr_reg(&mut self, e: &'l Expr) -> CResult<u8> {
        if let Some(r) = self.local_reg(e) {
            return Ok(r);
        }
        let r = self.alloc_reg(e.span)?;
        self.expr_to(e, r)?;
        Ok(r)
    }

    /// A register holding `e`, computed into `dst` when `dst` is a temporary. Chains
    /// (`a - b - c ...`, `x.f().g()...`) then reuse one register instead of one per link.
    fn first_operand(&mut self, e: &'l Expr, dst: u8) -> CResult<u8> {
        if let Some(r) = self.local_reg(e) {
            return Ok(r);
        }
        if self.is_temp(dst) {
            self.expr_to(e, dst)?;
            return Ok(dst);
        }
        self.expr_reg(e)
    }

    /// Assigns to a plain local register. Expressions whose only write to `dst` is their
    /// final instruction go straight in; the rest (short-circuit operators, calls, blocks
    /// ...) may write `dst` before reading the old value, so they go through a temporary.
    pub(crate) fn expr_to_local(&mut self, e: &'l Expr, dst: u8) -> CResult<()> {
        let direct = matches!(
            e.kind,
            ExprKind::Nil
                | ExprKind::Bool(_)
                | ExprKind::Int(_)
                | ExprKind::Float(_)
                | ExprKind::Str(_)
                | ExprKind::Name(_)
                | ExprKind::SelfRef
                | ExprKind::Binary { .. }
                | ExprKind::Unary { .. }
                | ExprKind::Index { .. }
                | ExprKind::Field { .. }
        );
        if direct {
            return self.expr_to(e, dst);
        }
        let base = self.free_reg();
        let t = self.alloc_reg(e.span)?;
        self.expr_to(e, t)?;
        self.abc(Op::Move, dst, t, 0, e.span);
        self.free_to(base);
        Ok(())
    }

    /// Compiles `e` so that its value ends up in `dst`.
    pub(crate) fn expr_to(&mut self, e: &'l Expr, dst: u8) -> CResult<()> {
        let base = self.free_reg();
        let r = self.expr_inner(e, dst);
        if self.free_reg() > base {
            self.free_to(base);
        }
        r
    }

    fn expr_inner(&mut self, e: &'l Expr, dst: u8) -> CResult<()> {
        let span = e.span;
        match &e.kind {
            ExprKind::Nil => {
                self.abc(Op::LoadNil, dst, 0, 0, span);
            }
            ExprKind::Bool(true) => {
                self.abc(Op::LoadTrue, dst, 0, 0, span);
            }
            ExprKind::Bool(false) => {
                self.abc(Op::LoadFalse, dst, 0, 0, span);
            }
            ExprKind::Int(i) => self.load_int(*i, dst, span)?,
            ExprKind::Float(f) => {
                let k = self.constant(Constant::Float(*f), span)?;
                self.abx(Op::LoadK, dst, k, span);
            }
            ExprKind::Str(s) => {
                let k = self.str_const(s, span)?;
                self.abx(Op::LoadK, dst, k, span);
            }
            ExprKind::Interp(parts) => self.interpolation(parts, dst, span)?,
            ExprKind::Name(n) => self.load_name(n, dst)?,
            ExprKind::SelfRef => {
                let n = Name {
                    text: "self".into(),
                    span,
                };
                if self.load_name(&n, dst).is_err() {
                    // Replace the generic message with a clearer one.
                    self.pop_last_error();
                    return self.fail_at(span, "`self` is only available in methods");
                }
            }
            ExprKind::Array(items) => {
                self.sequence(items, dst, Op::NewArray, Op::ArrayExtend, span)?
            }
            ExprKind::Map(entries) => self.map_literal(entries, dst, span)?,
            ExprKind::StructLit { name, fields } => self.struct_literal(name, fields, dst, span)?,
            ExprKind::Unary { op, expr } => self.unary(*op, expr, dst, span)?,
            ExprKind::Binary { op, lhs, rhs } => self.binary_to(*op, lhs, rhs, dst, span)?,
            ExprKind::Logical { and, lhs, rhs } => {
                self.expr_to(lhs, dst)?;
                self.abc(Op::Test, dst, 0, !*and as u8, span);
                let end = self.jump(span);
                self.expr_to(rhs, dst)?;
                self.patch_here(end);
            }
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => {
                let b = self.expr_reg(start)?;
                let c = self.expr_reg(end)?;
                let op = if *inclusive {
                    Op::NewRangeIncl
                } else {
                    Op::NewRange
                };
                self.abc(op, dst, b, c, span);
            }
            ExprKind::Call { callee, args } => self.call(callee, args, dst, span)?,
            ExprKind::MethodCall { recv, method, args } => {
                self.method_call(recv, method, args, dst, span)?
            }
            ExprKind::Index { target, index } => {
                let o = self.first_operand(target, dst)?;
                let i = self.expr_reg(index)?;
                self.abc(Op::GetIndex, dst, o, i, span);
            }
            ExprKind::Field { target, name } => {
                let o = self.first_operand(target, dst)?;
                let k = self.name_const(&name.text, name.span)?;
                self.abc(Op::GetField, dst, o, k, name.span);
            }
            ExprKind::Fn(fd) => {
                let name: Arc<str> = match &fd.name {
                    Some(n) => n.text.as_str().into(),
                    None => "<anonymous>".into(),
                };
                self.function(fd, name, dst)?;
            }
            ExprKind::If { cond, then, else_ } => {
                let to_else = self.cond_jump(cond, false)?;
                self.block_to(then, dst)?;
                let to_end = self.jump(span);
                self.patch_all_here(to_else);
                match else_ {
                    Some(e) => self.expr_to(e, dst)?,
                    None => {
                        self.abc(Op::LoadNil, dst, 0, 0, span);
                    }
                }
                self.patch_here(to_end);
            }
            ExprKind::Block(b) => self.block_to(b, dst)?,
            ExprKind::Try {
                body,
                catch_name,
                handler,
            } => self.try_expr(body, catch_name.as_ref(), handler, dst, span)?,
            ExprKind::Spawn(call) => {
                let ExprKind::Call { callee, args } = &call.kind else {
                    return self.fail_at(call.span, "spawn expects a function call");
                };
                let a = self.call_args(callee, args, span)?;
                self.abc(Op::Spawn, a, args.len() as u8, 0, span);
                if a != dst {
                    self.abc(Op::Move, dst, a, 0, span);
                }
            }
        }
        Ok(())
    }

    fn pop_last_error(&mut self) {
        self.errors_mut().pop();
    }

    pub(crate) fn fail_at<T>(&mut self, span: Span, msg: &str) -> CResult<T> {
        self.error(span, msg);
        Err(())
    }

    fn load_int(&mut self, i: i64, dst: u8, span: Span) -> CResult<()> {
        match Instr::asbx(
            Op::LoadI,
            dst,
            i.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
        ) {
            Some(ins) if i16::try_from(i).is_ok() => {
                self.emit(ins, span);
            }
            _ => {
                let k = self.constant(Constant::Int(i), span)?;
                self.abx(Op::LoadK, dst, k, span);
            }
        }
        Ok(())
    }

    /// Array literals (and anything built from consecutive registers in chunks).
    fn sequence(
        &mut self,
        items: &'l [Expr],
        dst: u8,
        new: Op,
        extend: Op,
        span: Span,
    ) -> CResult<()> {
        let mut first = true;
        let chunks: Vec<&'l [Expr]> = if items.is_empty() {
            vec![&[]]
        } else {
            items.chunks(CHUNK).collect()
        };
        // Build into a temporary so elements that read `dst` see its old value.
        let base = self.free_reg();
        let target = self.alloc_reg(span)?;
        for chunk in chunks {
            let start = self.free_reg();
            for item in chunk {
                let r = self.alloc_reg(item.span)?;
                self.expr_to(item, r)?;
            }
            let op = if first { new } else { extend };
            self.abc(op, target, start, chunk.len() as u8, span);
            self.free_to(start);
            first = false;
        }
        self.abc(Op::Move, dst, target, 0, span);
        self.free_to(base);
        Ok(())
    }

    fn map_literal(&mut self, entries: &'l [(MapKey, Expr)], dst: u8, span: Span) -> CResult<()> {
        let base = self.free_reg();
        let target = self.alloc_reg(span)?;
        let chunks: Vec<&'l [(MapKey, Expr)]> = if entries.is_empty() {
            vec![&[]]
        } else {
            entries.chunks(CHUNK / 2).collect()
        };
        let mut first = true;
        for chunk in chunks {
            let start = self.free_reg();
            for (k, v) in chunk {
                let kr = self.alloc_reg(v.span)?;
                match k {
                    MapKey::Name(n) => {
                        let c = self.str_const(&n.text, n.span)?;
                        self.abx(Op::LoadK, kr, c, n.span);
                    }
                    MapKey::Str(s, sp) => {
                        let c = self.str_const(s, *sp)?;
                        self.abx(Op::LoadK, kr, c, *sp);
                    }
                    MapKey::Expr(e) => self.expr_to(e, kr)?,
                }
                let vr = self.alloc_reg(v.span)?;
                self.expr_to(v, vr)?;
            }
            let op = if first { Op::NewMap } else { Op::MapExtend };
            self.abc(op, target, start, chunk.len() as u8, span);
            self.free_to(start);
            first = false;
        }
        self.abc(Op::Move, dst, target, 0, span);
        self.free_to(base);
        Ok(())
    }

    fn interpolation(&mut self, parts: &'l [InterpPart], dst: u8, span: Span) -> CResult<()> {
        if parts.len() > 200 {
            return self.fail_at(span, "string interpolation has too many parts");
        }
        let start = self.free_reg();
        for p in parts {
            let r = self.alloc_reg(span)?;
            match p {
                InterpPart::Lit(s) => {
                    let k = self.str_const(s, span)?;
                    self.abx(Op::LoadK, r, k, span);
                }
                InterpPart::Expr(e) => self.expr_to(e, r)?,
            }
        }
        self.abc(Op::Concat, dst, start, parts.len() as u8, span);
        Ok(())
    }

    fn struct_literal(
        &mut self,
        name: &'l Name,
        fields: &'l [(Name, Option<Expr>)],
        dst: u8,
        span: Span,
    ) -> CResult<()> {
        if fields.len() > 200 {
            return self.fail_at(span, "struct literal has too many fields");
        }
        let t = self.alloc_reg(name.span)?;
        self.load_name(name, t)?;
        for (fname, value) in fields {
            let r = self.alloc_reg(fname.span)?;
            match value {
                Some(v) => self.expr_to(v, r)?,
                None => self.load_name(fname, r)?,
            }
        }
        // The default initialiser is called with the instance in R[t+1].
        self.touch_reg(t as usize + 1);
        let mut seen = std::collections::HashSet::new();
        for (f, _) in fields {
            if !seen.insert(f.text.as_str()) {
                return self.fail_at(f.span, &format!("field `{}` given twice", f.text));
            }
        }
        let shape: Arc<[Arc<str>]> = fields.iter().map(|(n, _)| self.intern(&n.text)).collect();
        let f = self.f();
        let idx = f.shapes.len();
        f.shapes.push(shape);
        if idx > u8::MAX as usize {
            return self.fail_at(span, "function too large: more than 256 struct literals");
        }
        self.abc(Op::NewStruct, dst, t, idx as u8, span);
        Ok(())
    }

    fn unary(&mut self, op: UnOp, e: &'l Expr, dst: u8, span: Span) -> CResult<()> {
        // Fold negative literals so `-5` and `-9223372036854775808`-style constants are
        // plain loads.
        if op == UnOp::Neg {
            match e.kind {
                ExprKind::Int(i) => return self.load_int(i.wrapping_neg(), dst, span),
                ExprKind::Float(f) => {
                    let k = self.constant(Constant::Float(-f), span)?;
                    self.abx(Op::LoadK, dst, k, span);
                    return Ok(());
                }
                _ => {}
            }
        }
        let r = self.expr_reg(e)?;
        let op = match op {
            UnOp::Neg => Op::Unm,
            UnOp::Not => Op::Not,
            UnOp::BitNot => Op::BNot,
        };
        self.abc(op, dst, r, 0, span);
        Ok(())
    }

    /// `dst := lhs op rhs`.
    pub(crate) fn binary_to(
        &mut self,
        op: BinOp,
        lhs: &'l Expr,
        rhs: &'l Expr,
        dst: u8,
        span: Span,
    ) -> CResult<()> {
        use BinOp::*;
        match op {
            Eq | Ne | Lt | Le | Gt | Ge => {
                let b = self.first_operand(lhs, dst)?;
                let c = self.expr_reg(rhs)?;
                let op = match op {
                    Eq => Op::Eq,
                    Ne => Op::Ne,
                    Lt => Op::Lt,
                    Le => Op::Le,
                    Gt => Op::Gt,
                    _ => Op::Ge,
                };
                self.abc(op, dst, b, c, span);
            }
            _ => {
                let b = self.first_operand(lhs, dst)?;
                if let Some(kop) = k_form(op) {
                    if let Some(k) = self.number_const(rhs)? {
                        self.abc(kop, dst, b, k, span);
                        return Ok(());
                    }
                }
                let c = self.expr_reg(rhs)?;
                self.arith(op, dst, b, c, span);
            }
        }
        Ok(())
    }

    /// The constant index of `e` if it is a number literal with an index that fits an
    /// 8-bit operand (the K forms of operators and tests take it).
    fn number_const(&mut self, e: &Expr) -> CResult<Option<u8>> {
        let k = match e.kind {
            ExprKind::Int(i) => Constant::Int(i),
            ExprKind::Float(f) => Constant::Float(f),
            _ => return Ok(None),
        };
        let idx = self.constant(k, e.span)?;
        Ok(u8::try_from(idx).ok())
    }

    /// Emits the register-register form of an arithmetic or bitwise operator.
    pub(crate) fn arith(&mut self, op: BinOp, dst: u8, b: u8, c: u8, span: Span) {
        use BinOp::*;
        let op = match op {
            Add => Op::Add,
            Sub => Op::Sub,
            Mul => Op::Mul,
            Div => Op::Div,
            IntDiv => Op::IDiv,
            Mod => Op::Mod,
            Pow => Op::Pow,
            BitAnd => Op::BAnd,
            BitOr => Op::BOr,
            BitXor => Op::BXor,
            Shl => Op::Shl,
            Shr => Op::Shr,
            Eq => Op::Eq,
            Ne => Op::Ne,
            Lt => Op::Lt,
            Le => Op::Le,
            Gt => Op::Gt,
            Ge => Op::Ge,
        };
        self.abc(op, dst, b, c, span);
    }

    /// Compiles a condition; the returned jumps are taken when its truthiness equals
    /// `jump_if`, and fall through otherwise.
    pub(crate) fn cond_jump(&mut self, e: &'l Expr, jump_if: bool) -> CResult<Vec<usize>> {
        let base = self.free_reg();
        let r = self.cond_inner(e, jump_if);
        self.free_to(base);
        r
    }

    fn cond_inner(&mut self, e: &'l Expr, jump_if: bool) -> CResult<Vec<usize>> {
        let span = e.span;
        match &e.kind {
            ExprKind::Logical { and, lhs, rhs } => {
                // `a && b` is false as soon as `a` is; `a || b` true as soon as `a` is.
                if *and != jump_if {
                    let mut j = self.cond_jump(lhs, jump_if)?;
                    j.extend(self.cond_jump(rhs, jump_if)?);
                    Ok(j)
                } else {
                    let skip = self.cond_jump(lhs, !jump_if)?;
                    let j = self.cond_jump(rhs, jump_if)?;
                    self.patch_all_here(skip);
                    Ok(j)
                }
            }
            ExprKind::Unary {
                op: UnOp::Not,
                expr,
            } => self.cond_jump(expr, !jump_if),
            ExprKind::Bool(b) => Ok(if *b == jump_if {
                vec![self.jump(span)]
            } else {
                Vec::new()
            }),
            ExprKind::Binary { op, lhs, rhs }
                if matches!(
                    op,
                    BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
                ) =>
            {
                let a = self.expr_reg(lhs)?;
                let (test, test_k, want) = match op {
                    BinOp::Eq => (Op::TestEq, Op::TestEqK, jump_if),
                    BinOp::Ne => (Op::TestEq, Op::TestEqK, !jump_if),
                    BinOp::Lt => (Op::TestLt, Op::TestLtK, jump_if),
                    BinOp::Le => (Op::TestLe, Op::TestLeK, jump_if),
                    BinOp::Gt => (Op::TestGt, Op::TestGtK, jump_if),
                    _ => (Op::TestGe, Op::TestGeK, jump_if),
                };
                match self.number_const(rhs)? {
                    Some(k) => {
                        self.abc(test_k, a, k, want as u8, span);
                    }
                    None => {
                        let b = self.expr_reg(rhs)?;
                        self.abc(test, a, b, want as u8, span);
                    }
                }
                Ok(vec![self.jump(span)])
            }
            ExprKind::Nil => Ok(if !jump_if {
                vec![self.jump(span)]
            } else {
                Vec::new()
            }),
            _ => {
                let r = self.expr_reg(e)?;
                self.abc(Op::Test, r, 0, jump_if as u8, span);
                Ok(vec![self.jump(span)])
            }
        }
    }

    /// Lays out `callee(args)` in fresh consecutive registers; returns the callee's.
    fn call_args(&mut self, callee: &'l Expr, args: &'l [Expr], span: Span) -> CResult<u8> {
        if args.len() > 200 {
            return self.fail_at(span, "too many arguments in one call");
        }
        let a = self.alloc_reg(span)?;
        self.expr_to(callee, a)?;
        self.call_rest(a, args)
    }

    /// The arguments after a callee already in `a`.
    fn call_rest(&mut self, a: u8, args: &'l [Expr]) -> CResult<u8> {
        for arg in args {
            let r = self.alloc_reg(arg.span)?;
            self.expr_to(arg, r)?;
        }
        Ok(a)
    }

    fn call(&mut self, callee: &'l Expr, args: &'l [Expr], dst: u8, span: Span) -> CResult<()> {
        let a = if self.is_top_temp(dst) {
            self.expr_to(callee, dst)?;
            self.call_rest(dst, args)?
        } else if is_chain_link(callee) && self.is_temp(dst) {
            self.expr_to(callee, dst)?;
            let a = self.alloc_reg(span)?;
            self.abc(Op::Move, a, dst, 0, span);
            self.call_rest(a, args)?
        } else {
            self.call_args(callee, args, span)?
        };
        self.abc(Op::Call, a, args.len() as u8, 0, span);
        if a != dst {
            self.abc(Op::Move, dst, a, 0, span);
        }
        Ok(())
    }

    /// Whether `dst` is a temporary at the top of the registers: everything above it is
    /// free, so a call can be made right there and its result needs no move.
    fn is_top_temp(&self, dst: u8) -> bool {
        self.is_temp(dst) && self.free_reg() as usize == dst as usize + 1
    }

    fn method_call(
        &mut self,
        recv: &'l Expr,
        method: &'l Name,
        args: &'l [Expr],
        dst: u8,
        span: Span,
    ) -> CResult<()> {
        if args.len() > 200 {
            return self.fail_at(span, "too many arguments in one call");
        }
        let chained = is_chain_link(recv) && self.is_temp(dst);
        if chained {
            self.expr_to(recv, dst)?;
        }
        let a = if self.is_top_temp(dst) {
            dst
        } else {
            self.alloc_reg(span)?
        };
        let r = self.alloc_reg(recv.span)?;
        if chained {
            self.abc(Op::Move, r, dst, 0, recv.span);
        } else {
            self.expr_to(recv, r)?;
        }
        self.call_rest(r, args)?;
        let k = self.name_const(&method.text, method.span)?;
        self.abc(Op::CallMethod, a, args.len() as u8, k, method.span);
        if a != dst {
            self.abc(Op::Move, dst, a, 0, span);
        }
        Ok(())
    }

    fn try_expr(
        &mut self,
        body: &'l Block,
        catch_name: Option<&'l Name>,
        handler: &'l Block,
        dst: u8,
        span: Span,
    ) -> CResult<()> {
        let e = self.alloc_reg(span)?;
        let push = self.emit_asbx(Op::PushHandler, e, span);
        self.push_try_cleanup();
        let r = self.block_to(body, dst);
        self.pop_try_cleanup();
        self.abc(Op::PopHandler, 0, 0, 0, span);
        let over = self.jump(span);
        self.patch_here(push);
        self.begin_scope();
        if let Some(n) = catch_name {
            self.bind_local(n, e, false, None);
            self.box_if_captured(n, e);
        }
        let r2 = self.block_to(handler, dst);
        let r3 = self.end_scope(span);
        self.patch_here(over);
        r.and(r2).and(r3)
    }
}

/// The constant-operand form of an arithmetic operator, if it has one.
fn k_form(op: BinOp) -> Option<Op> {
    Some(match op {
        BinOp::Add => Op::AddK,
        BinOp::Sub => Op::SubK,
        BinOp::Mul => Op::MulK,
        BinOp::Div => Op::DivK,
        BinOp::IntDiv => Op::IDivK,
        BinOp::Mod => Op::ModK,
        BinOp::Pow => Op::PowK,
        _ => return None,
    })
}

/// Whether `e` is itself a call, method call, index or field access: a link of a chain.
fn is_chain_link(e: &Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Call { .. }
            | ExprKind::MethodCall { .. }
            | ExprKind::Index { .. }
            | ExprKind::Field { .. }
    )
}
