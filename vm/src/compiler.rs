//! The compiler: resolved AST to register bytecode, one module at a time.
//!
//! One pass over the AST per function body. Names are resolved as code is generated —
//! a local register, a captured cell (upvalue), a module variable slot or a built-in —
//! so an undefined name or an assignment to a `const` is a compile error. Which locals
//! live in cells comes from the [`crate::captures`] pre-pass.
//!
//! Registers are allocated as a stack: locals take the next free register when declared
//! and temporaries sit above them; leaving a scope frees everything it allocated.
//!
//! `defer`, `errdefer` and `try` share one mechanism. Each pushes a runtime error handler;
//! every normal way out of the scope (falling off the end, `break`, `continue`, `return`)
//! pops the handler and runs the deferred statement inline, and the handler's own code
//! (emitted after the scope) runs it on the error path and rethrows. So the statically
//! known exits cost no runtime bookkeeping beyond the handler push and pop.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::ast::{
    BinOp, Block, Expr, ExprKind, FnDecl, ImplDecl, Import, ImportKind, Module, Name, Stmt,
    StmtKind, StructDecl,
};
use crate::builtins::GLOBALS;
use crate::bytecode::{Instr, Op};
use crate::error::Diagnostic;
use crate::loader::Loader;
use crate::program::{
    Constant, ModuleId, ModuleInfo, Proto, ProtoId, StructDesc, TypeAnn, TypeCheck, TypeKind,
    UpvalSource,
};
use crate::source::{SourceFile, Span};

/// What a REPL line continues: the module variables earlier lines declared.
#[derive(Clone, Debug, Default)]
pub struct ReplScope {
    pub vars: Vec<(Arc<str>, bool)>,
}

/// Compiles one parsed module into `loader.program` and returns its id. With `repl`,
/// the module starts with the variables of earlier lines and returns the value of a
/// final expression statement instead of its module object.
pub(crate) fn compile_module(
    loader: &mut Loader,
    module: &Module,
    source: Arc<SourceFile>,
    display_name: &str,
    repl: Option<&ReplScope>,
) -> Result<ModuleId, Vec<Diagnostic>> {
    let id = ModuleId(loader.program.modules.len() as u32);
    let mut c = Compiler {
        loader,
        source: source.clone(),
        module: id,
        mod_vars: HashMap::new(),
        mod_var_names: Vec::new(),
        captured: crate::captures::captured_locals(module),
        funcs: Vec::new(),
        errors: Vec::new(),
        repl: repl.is_some(),
        declared: HashSet::new(),
        std_imports: Vec::new(),
    };
    for (name, is_const) in repl.map_or(&[][..], |r| &r.vars[..]) {
        let slot = c.mod_var_names.len() as u16;
        c.mod_var_names.push(name.clone());
        c.mod_vars.insert(
            name.to_string(),
            ModVar {
                slot,
                is_const: *is_const,
                ty: None,
            },
        );
    }
    c.declare_module_vars(module);
    // Reserve the module's slot so imports of this module from below see it (cycles are
    // caught by the loader before that could matter).
    c.loader.program.modules.push(ModuleInfo {
        name: display_name.into(),
        vars: c.mod_var_names.clone().into(),
        consts: Vec::new(),
        std_imports: Vec::new(),
        main: ProtoId(u32::MAX),
    });
    let main = c.compile_main(module, display_name);
    if !c.errors.is_empty() {
        // A deferred statement is compiled once per exit path: report each problem once.
        let mut seen = HashSet::new();
        c.errors.retain(|d| {
            let at = d.location.as_ref().map(|(_, s)| (s.start, s.end));
            seen.insert((d.message.clone(), at))
        });
        // Like the parser, report a bounded number: the rest are usually the same
        // mistake again, and rendering each one re-reads the source.
        const MAX_ERRORS: usize = 100;
        if c.errors.len() > MAX_ERRORS {
            let more = c.errors.len() - MAX_ERRORS;
            c.errors.truncate(MAX_ERRORS);
            c.errors.push(Diagnostic::new(
                format!("{more} more errors not shown"),
                None,
            ));
        }
        return Err(c.errors);
    }
    let consts = c
        .mod_var_names
        .iter()
        .map(|n| c.mod_vars[&**n].is_const)
        .collect();
    let info = &mut c.loader.program.modules[id.0 as usize];
    info.main = main;
    info.vars = c.mod_var_names.into();
    info.consts = consts;
    info.std_imports = c.std_imports;
    Ok(id)
}

struct ModVar {
    slot: u16,
    is_const: bool,
    ty: Option<TypeAnn>,
}

pub(crate) struct Compiler<'l, 'p> {
    loader: &'l mut Loader<'p>,
    source: Arc<SourceFile>,
    module: ModuleId,
    mod_vars: HashMap<String, ModVar>,
    mod_var_names: Vec<Arc<str>>,
    captured: HashSet<u32>,
    funcs: Vec<Func<'l>>,
    errors: Vec<Diagnostic>,
    /// Compiling a REPL line: a final expression statement is the result.
    repl: bool,
    /// Names this module itself declares (a REPL line may shadow earlier lines' names).
    declared: HashSet<String>,
    /// Module variables bound to standard modules by `import`.
    std_imports: Vec<(u16, Arc<str>)>,
}

/// Where a name lives.
#[derive(Clone, Debug)]
enum Resolved {
    Local { reg: u8, cell: bool },
    Upval(u8),
    Module(u16),
    Builtin(u16),
}

struct Local {
    name: String,
    reg: u8,
    is_const: bool,
    cell: bool,
    ty: Option<TypeAnn>,
}

struct Upval {
    name: String,
    source: UpvalSource,
    is_const: bool,
    ty: Option<TypeAnn>,
}

struct Scope {
    nlocals: usize,
    free_reg: u8,
    ncleanups: usize,
}

/// Something every normal exit from a scope must undo or run.
enum Cleanup<'a> {
    /// A `try` body's handler.
    Try,
    /// A `defer`/`errdefer`: its statement, the register the error lands in, where its
    /// `PushHandler` is (to patch), and how many locals were visible at the `defer`.
    Defer {
        stmt: &'a Stmt,
        err_only: bool,
        err_reg: u8,
        push_at: usize,
        nlocals: usize,
    },
}

struct LoopCtx {
    /// Cleanups registered before the loop body: `break`/`continue` run the rest.
    ncleanups: usize,
    breaks: Vec<usize>,
    continues: Vec<usize>,
}

pub(crate) struct Func<'a> {
    name: Arc<str>,
    code: Vec<Instr>,
    spans: Vec<Span>,
    consts: Vec<Constant>,
    const_index: HashMap<ConstKey, u16>,
    protos: Vec<ProtoId>,
    upvals: Vec<Upval>,
    locals: Vec<Local>,
    scopes: Vec<Scope>,
    cleanups: Vec<Cleanup<'a>>,
    loops: Vec<LoopCtx>,
    free_reg: u8,
    max_regs: u16,
    type_checks: Vec<TypeCheck>,
    structs: Vec<StructDesc>,
    pub(crate) shapes: Vec<Arc<[Arc<str>]>>,
    nparams: u8,
    nrequired: u8,
    has_rest: bool,
    has_self: bool,
    ret_type: Option<TypeAnn>,
    /// Locals (by index) hidden from name lookup: those declared after a `defer`
    /// while its statement is compiled at a later exit, and a parameter's own and
    /// later parameters while its default is compiled. Locals the hidden code declares
    /// itself come after the range and stay visible.
    hidden_locals: Option<std::ops::Range<usize>>,
    /// Inside a deferred statement `return`/`break`/`continue` are refused.
    in_defer: bool,
    /// The highest pc a jump targets so far: code up to it may be reached from
    /// elsewhere, so it cannot be dropped or merged with what comes before.
    last_target: usize,
    span: Span,
}

#[derive(Hash, PartialEq, Eq)]
enum ConstKey {
    Int(i64),
    Float(u64),
    Str(Arc<str>),
}

/// The register limit: operands are 8 bits and the call sequence needs headroom.
const MAX_REGS: u16 = 250;

pub(crate) type CResult<T> = Result<T, ()>;

impl<'a> Func<'a> {
    fn new(name: Arc<str>, span: Span) -> Func<'a> {
        Func {
            name,
            code: Vec::new(),
            spans: Vec::new(),
            consts: Vec::new(),
            const_index: HashMap::new(),
            protos: Vec::new(),
            upvals: Vec::new(),
            locals: Vec::new(),
            scopes: Vec::new(),
            cleanups: Vec::new(),
            loops: Vec::new(),
            free_reg: 0,
            max_regs: 0,
            type_checks: Vec::new(),
            structs: Vec::new(),
            shapes: Vec::new(),
            nparams: 0,
            nrequired: 0,
            has_rest: false,
            has_self: false,
            ret_type: None,
            hidden_locals: None,
            in_defer: false,
            last_target: 0,
            span,
        }
    }
}

impl<'l, 'p> Compiler<'l, 'p> {
    // ----- diagnostics -------------------------------------------------------------

    pub(crate) fn error(&mut self, span: Span, message: impl Into<String>) {
        self.errors
            .push(Diagnostic::new(message, Some((self.source.clone(), span))));
    }

    fn fail<T>(&mut self, span: Span, message: impl Into<String>) -> CResult<T> {
        self.error(span, message);
        Err(())
    }

    pub(crate) fn errors_mut(&mut self) -> &mut Vec<Diagnostic> {
        &mut self.errors
    }

    pub(crate) fn push_try_cleanup(&mut self) {
        self.f().cleanups.push(Cleanup::Try);
    }

    pub(crate) fn pop_try_cleanup(&mut self) {
        self.f().cleanups.pop();
    }

    // ----- emission ----------------------------------------------------------------

    pub(crate) fn f(&mut self) -> &mut Func<'l> {
        self.funcs
            .last_mut()
            .expect("function stack is never empty while compiling")
    }

    fn fr(&self) -> &Func<'l> {
        self.funcs
            .last()
            .expect("function stack is never empty while compiling")
    }

    pub(crate) fn emit(&mut self, i: Instr, span: Span) -> usize {
        let f = self.f();
        f.code.push(i);
        f.spans.push(span);
        f.code.len() - 1
    }

    pub(crate) fn abc(&mut self, op: Op, a: u8, b: u8, c: u8, span: Span) -> usize {
        self.emit(Instr::abc(op, a, b, c), span)
    }

    pub(crate) fn abx(&mut self, op: Op, a: u8, bx: u16, span: Span) -> usize {
        self.emit(Instr::abx(op, a, bx), span)
    }

    pub(crate) fn here(&self) -> usize {
        self.fr().code.len()
    }

    /// Emits a forward jump to be patched later.
    pub(crate) fn jump(&mut self, span: Span) -> usize {
        self.emit(Instr(Op::Jmp as u32), span)
    }

    /// Emits an AsBx instruction whose offset is patched later.
    pub(crate) fn emit_asbx(&mut self, op: Op, a: u8, span: Span) -> usize {
        self.emit(Instr(op as u32 | (a as u32) << 8), span)
    }

    /// Points the jump (or AsBx instruction) at `at` to `target`.
    pub(crate) fn patch_to(&mut self, at: usize, target: usize) {
        self.f().last_target = self.fr().last_target.max(target);
        let offset = target as i32 - (at as i32 + 1);
        let old = self.fr().code[at];
        let op = old.op().expect("patching a valid instruction");
        let new = if op == Op::Jmp {
            Instr::jump(op, offset)
        } else {
            Instr::asbx(op, old.a() as u8, offset)
        };
        match new {
            Some(i) => self.f().code[at] = i,
            None => {
                let span = self.fr().span;
                self.error(span, "function too large: a jump does not fit its encoding");
            }
        }
    }

    pub(crate) fn patch_here(&mut self, at: usize) {
        let h = self.here();
        self.patch_to(at, h);
    }

    pub(crate) fn patch_all_here(&mut self, list: Vec<usize>) {
        for at in list {
            self.patch_here(at);
        }
    }

    /// Emits a backward jump to `target`.
    pub(crate) fn jump_back(&mut self, target: usize, span: Span) {
        let at = self.jump(span);
        self.patch_to(at, target);
    }

    // ----- constants ---------------------------------------------------------------

    pub(crate) fn constant(&mut self, c: Constant, span: Span) -> CResult<u16> {
        let key = match &c {
            Constant::Int(i) => ConstKey::Int(*i),
            Constant::Float(f) => ConstKey::Float(f.to_bits()),
            Constant::Str(s) => ConstKey::Str(s.clone()),
        };
        if let Some(&i) = self.fr().const_index.get(&key) {
            return Ok(i);
        }
        let f = self.f();
        let i = f.consts.len();
        if i > u16::MAX as usize {
            return self.fail(span, "function too large: more than 65536 constants");
        }
        f.consts.push(c);
        f.const_index.insert(key, i as u16);
        Ok(i as u16)
    }

    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        self.loader.program.intern(s)
    }

    pub(crate) fn str_const(&mut self, s: &str, span: Span) -> CResult<u16> {
        let s = self.loader.program.intern(s);
        self.constant(Constant::Str(s), span)
    }

    /// A name constant for an 8-bit operand (field and method names).
    pub(crate) fn name_const(&mut self, s: &str, span: Span) -> CResult<u8> {
        let k = self.str_const(s, span)?;
        match u8::try_from(k) {
            Ok(k) => Ok(k),
            Err(_) => self.fail(
                span,
                "function too large: more than 256 constants before this field or method name",
            ),
        }
    }

    // ----- registers ---------------------------------------------------------------

    pub(crate) fn alloc_reg(&mut self, span: Span) -> CResult<u8> {
        let f = self.f();
        let r = f.free_reg;
        if r as u16 >= MAX_REGS {
            return self.fail(
                span,
                "expression too complex: a function may use at most 250 registers",
            );
        }
        f.free_reg += 1;
        f.max_regs = f.max_regs.max(f.free_reg as u16);
        Ok(r)
    }

    /// Reserves `n` consecutive registers and returns the first.
    pub(crate) fn alloc_regs(&mut self, n: usize, span: Span) -> CResult<u8> {
        let first = self.fr().free_reg;
        for _ in 0..n {
            self.alloc_reg(span)?;
        }
        Ok(first)
    }

    pub(crate) fn free_reg(&self) -> u8 {
        self.fr().free_reg
    }

    pub(crate) fn free_to(&mut self, r: u8) {
        self.f().free_reg = r;
    }

    /// Makes sure registers up to `r` exist in the frame (call sequences write past
    /// the allocated ones).
    pub(crate) fn touch_reg(&mut self, r: usize) {
        let f = self.f();
        f.max_regs = f.max_regs.max(r as u16 + 1);
    }

    // ----- scopes and names --------------------------------------------------------

    pub(crate) fn begin_scope(&mut self) {
        let f = self.f();
        let s = Scope {
            nlocals: f.locals.len(),
            free_reg: f.free_reg,
            ncleanups: f.cleanups.len(),
        };
        f.scopes.push(s);
    }

    /// Ends a scope: normal-exit cleanups, then the error-path code of its defers.
    pub(crate) fn end_scope(&mut self, span: Span) -> CResult<()> {
        let scope = self.f().scopes.pop().expect("scope stack");
        let cleanups: Vec<Cleanup<'l>> = self.f().cleanups.drain(scope.ncleanups..).collect();
        let mut result = Ok(());
        for c in cleanups.iter().rev() {
            if self.exit_cleanup(c, span).is_err() {
                result = Err(());
            }
        }
        if cleanups.iter().any(|c| matches!(c, Cleanup::Defer { .. })) {
            let over = self.jump(span);
            for c in &cleanups {
                if let Cleanup::Defer { .. } = c {
                    if self.defer_error_path(c, span).is_err() {
                        result = Err(());
                    }
                }
            }
            self.patch_here(over);
        }
        let f = self.f();
        f.locals.truncate(scope.nlocals);
        f.free_reg = scope.free_reg;
        result
    }

    /// Emits what leaving a cleanup's region normally requires.
    fn exit_cleanup(&mut self, c: &Cleanup<'l>, span: Span) -> CResult<()> {
        self.abc(Op::PopHandler, 0, 0, 0, span);
        match c {
            Cleanup::Try => Ok(()),
            Cleanup::Defer { err_only: true, .. } => Ok(()),
            Cleanup::Defer { stmt, nlocals, .. } => self.deferred_stmt(stmt, *nlocals),
        }
    }

    /// The handler code of a defer: run the statement, collect its error as suppressed,
    /// rethrow the original error.
    fn defer_error_path(&mut self, c: &Cleanup<'l>, span: Span) -> CResult<()> {
        let Cleanup::Defer {
            stmt,
            err_reg,
            push_at,
            nlocals,
            ..
        } = c
        else {
            return Ok(());
        };
        self.patch_here(*push_at);
        let base = self.free_reg();
        let e2 = self.alloc_reg(span)?;
        let push = self.emit_asbx(Op::PushHandler, e2, span);
        let r = self.deferred_stmt(stmt, *nlocals);
        self.abc(Op::PopHandler, 0, 0, 0, span);
        let to_throw = self.jump(span);
        self.patch_here(push);
        self.abc(Op::AddSuppressed, *err_reg, e2, 0, span);
        self.patch_here(to_throw);
        self.abc(Op::Throw, *err_reg, 0, 0, span);
        self.free_to(base);
        r
    }

    fn deferred_stmt(&mut self, stmt: &'l Stmt, nlocals: usize) -> CResult<()> {
        let f = self.f();
        let saved = (f.hidden_locals.clone(), f.in_defer);
        f.hidden_locals = Some(nlocals..f.locals.len());
        f.in_defer = true;
        let r = self.stmt(stmt);
        let f = self.f();
        (f.hidden_locals, f.in_defer) = saved;
        r
    }

    /// Runs the normal-exit code of every cleanup above `depth` without popping them
    /// (for `break`, `continue` and `return`, which leave several scopes at once).
    fn unwind_cleanups_to(&mut self, depth: usize, span: Span) -> CResult<()> {
        let n = self.fr().cleanups.len();
        for i in (depth..n).rev() {
            // Take the cleanup out while compiling it: its statement may itself declare
            // scopes that push and pop cleanups.
            let c = self.f().cleanups.remove(i);
            let r = self.exit_cleanup(&c, span);
            self.f().cleanups.insert(i, c);
            r?;
        }
        Ok(())
    }

    /// Declares a local in the next free register.
    pub(crate) fn declare_local(
        &mut self,
        name: &Name,
        is_const: bool,
        ty: Option<TypeAnn>,
    ) -> CResult<u8> {
        let reg = self.alloc_reg(name.span)?;
        self.bind_local(name, reg, is_const, ty);
        Ok(reg)
    }

    /// Binds a name to an already allocated register.
    pub(crate) fn bind_local(&mut self, name: &Name, reg: u8, is_const: bool, ty: Option<TypeAnn>) {
        let cell = self.captured.contains(&name.span.start);
        self.f().locals.push(Local {
            name: name.text.clone(),
            reg,
            is_const,
            cell,
            ty,
        });
    }

    /// If the local just bound at `reg` is captured, boxes its current value.
    pub(crate) fn box_if_captured(&mut self, name: &Name, reg: u8) {
        if self.captured.contains(&name.span.start) {
            self.abc(Op::NewCell, reg, 0, 0, name.span);
        }
    }

    fn find_local(func: &Func, name: &str) -> Option<usize> {
        let hidden = func.hidden_locals.clone().unwrap_or(0..0);
        func.locals
            .iter()
            .enumerate()
            .rev()
            .find(|(i, l)| l.name == name && !hidden.contains(i))
            .map(|(i, _)| i)
    }

    /// Finds or creates the upvalue for `name` in function `fi`.
    fn find_upval(&mut self, fi: usize, name: &str) -> Option<u8> {
        if let Some(i) = self.funcs[fi].upvals.iter().position(|u| u.name == name) {
            return Some(i as u8);
        }
        if fi == 0 {
            return None;
        }
        let parent = fi - 1;
        let (source, is_const, ty) = if let Some(li) = Self::find_local(&self.funcs[parent], name) {
            let l = &self.funcs[parent].locals[li];
            debug_assert!(l.cell, "captured local `{name}` was not boxed");
            (UpvalSource::Register(l.reg), l.is_const, l.ty.clone())
        } else {
            let ui = self.find_upval(parent, name)?;
            let u = &self.funcs[parent].upvals[ui as usize];
            (UpvalSource::Upval(ui), u.is_const, u.ty.clone())
        };
        let f = &mut self.funcs[fi];
        if f.upvals.len() >= 255 {
            return None;
        }
        f.upvals.push(Upval {
            name: name.to_string(),
            source,
            is_const,
            ty,
        });
        Some((f.upvals.len() - 1) as u8)
    }

    fn resolve(&mut self, name: &str) -> Option<(Resolved, bool, Option<TypeAnn>)> {
        let fi = self.funcs.len() - 1;
        if let Some(li) = Self::find_local(&self.funcs[fi], name) {
            let l = &self.funcs[fi].locals[li];
            return Some((
                Resolved::Local {
                    reg: l.reg,
                    cell: l.cell,
                },
                l.is_const,
                l.ty.clone(),
            ));
        }
        if let Some(ui) = self.find_upval(fi, name) {
            let u = &self.funcs[fi].upvals[ui as usize];
            return Some((Resolved::Upval(ui), u.is_const, u.ty.clone()));
        }
        if let Some(m) = self.mod_vars.get(name) {
            return Some((Resolved::Module(m.slot), m.is_const, m.ty.clone()));
        }
        GLOBALS
            .iter()
            .position(|g| *g == name)
            .or_else(|| {
                let i = self.loader.host()?.global(name)?;
                Some(crate::builtins::host_global_index(i))
            })
            .and_then(|i| u16::try_from(i).ok())
            .map(|i| (Resolved::Builtin(i), true, None))
    }

    /// Whether `name` currently means the built-in of that name.
    pub(crate) fn is_builtin(&mut self, name: &str) -> bool {
        matches!(self.resolve(name), Some((Resolved::Builtin(_), ..)))
    }

    /// Loads a variable into `dst`.
    pub(crate) fn load_name(&mut self, name: &Name, dst: u8) -> CResult<()> {
        match self.resolve(&name.text) {
            Some((r, ..)) => {
                self.load_resolved(&r, dst, name.span);
                Ok(())
            }
            None => self.fail(name.span, format!("undefined variable `{}`", name.text)),
        }
    }

    fn load_resolved(&mut self, r: &Resolved, dst: u8, span: Span) {
        match *r {
            Resolved::Local { reg, cell: false } => {
                if reg != dst {
                    self.abc(Op::Move, dst, reg, 0, span);
                }
            }
            Resolved::Local { reg, cell: true } => {
                self.abc(Op::GetCell, dst, reg, 0, span);
            }
            Resolved::Upval(u) => {
                self.abc(Op::GetUpval, dst, u, 0, span);
            }
            Resolved::Module(slot) => {
                self.abx(Op::GetModule, dst, slot, span);
            }
            Resolved::Builtin(i) => {
                self.abx(Op::LoadBuiltin, dst, i, span);
            }
        }
    }

    /// Whether `r` holds no local of the current function (so an expression may use it
    /// as scratch before writing its result there).
    pub(crate) fn is_temp(&self, r: u8) -> bool {
        !self.fr().locals.iter().any(|l| l.reg == r)
    }

    /// The register a plain (non-cell) local lives in, if `e` is one.
    pub(crate) fn local_reg(&mut self, e: &Expr) -> Option<u8> {
        let name = match &e.kind {
            ExprKind::Name(n) => n.text.as_str(),
            ExprKind::SelfRef => "self",
            _ => return None,
        };
        let f = self.fr();
        let li = Self::find_local(f, name)?;
        let l = &f.locals[li];
        (!l.cell).then_some(l.reg)
    }

    /// Stores `src` into the variable `name`, checking const-ness and annotations.
    pub(crate) fn store_name(&mut self, name: &Name, src: u8) -> CResult<()> {
        let Some((r, is_const, ty)) = self.resolve(&name.text) else {
            return self.fail(name.span, format!("undefined variable `{}`", name.text));
        };
        if is_const {
            let msg = if matches!(r, Resolved::Builtin(_)) {
                format!("cannot assign to built-in `{}`", name.text)
            } else {
                format!("cannot assign to const `{}`", name.text)
            };
            return self.fail(name.span, msg);
        }
        if let Some(ty) = ty {
            self.type_check(src, ty, format!("`{}`", name.text), name.span)?;
        }
        match r {
            Resolved::Local { reg, cell: false } => {
                if reg != src {
                    self.abc(Op::Move, reg, src, 0, name.span);
                }
            }
            Resolved::Local { reg, cell: true } => {
                self.abc(Op::SetCell, reg, src, 0, name.span);
            }
            Resolved::Upval(u) => {
                self.abc(Op::SetUpval, src, u, 0, name.span);
            }
            Resolved::Module(slot) => {
                self.abx(Op::SetModule, src, slot, name.span);
            }
            Resolved::Builtin(_) => unreachable!("built-ins are const"),
        }
        Ok(())
    }

    pub(crate) fn type_check(
        &mut self,
        reg: u8,
        ann: TypeAnn,
        what: String,
        span: Span,
    ) -> CResult<()> {
        if ann.kind == TypeKind::Any {
            return Ok(());
        }
        let f = self.f();
        let idx = f.type_checks.len();
        f.type_checks.push(TypeCheck {
            ann,
            what: what.into(),
        });
        if idx > u16::MAX as usize {
            return self.fail(span, "function too large: too many type checks");
        }
        self.abx(Op::CheckType, reg, idx as u16, span);
        Ok(())
    }

    pub(crate) fn resolve_type(&mut self, t: &crate::ast::TypeAnn) -> TypeAnn {
        let kind = match t.name.text.as_str() {
            "int" => TypeKind::Int,
            "float" => TypeKind::Float,
            "bool" => TypeKind::Bool,
            "str" => TypeKind::Str,
            "array" => TypeKind::Array,
            "map" => TypeKind::Map,
            "fn" => TypeKind::Fn,
            "any" => TypeKind::Any,
            other => {
                // A struct type is a value: its name must resolve like any variable.
                // (Module-level declarations are collected before any function exists;
                // their annotations are checked again when the statement compiles.)
                if !self.funcs.is_empty() && self.resolve(other).is_none() {
                    self.error(t.name.span, format!("unknown type `{other}`"));
                }
                TypeKind::Struct(other.into())
            }
        };
        TypeAnn {
            kind,
            nilable: t.nilable || matches!(t.name.text.as_str(), "any"),
        }
    }

    // ----- module level ------------------------------------------------------------

    fn add_mod_var(&mut self, name: &Name, is_const: bool, ty: Option<TypeAnn>) {
        if self.repl
            && self.mod_vars.contains_key(&name.text)
            && !self.declared.contains(&name.text)
        {
            // A REPL line may redefine what an earlier line declared: same slot.
            self.declared.insert(name.text.clone());
            let v = self.mod_vars.get_mut(&name.text).expect("checked");
            v.is_const = is_const;
            v.ty = ty;
            return;
        }
        self.declared.insert(name.text.clone());
        if self.mod_vars.contains_key(&name.text) {
            self.error(
                name.span,
                format!("`{}` is already declared in this module", name.text),
            );
            return;
        }
        let slot = self.mod_var_names.len() as u16;
        self.mod_var_names.push(name.text.as_str().into());
        self.mod_vars
            .insert(name.text.clone(), ModVar { slot, is_const, ty });
    }

    /// Every top-level declaration is a module variable, visible in the whole module.
    fn declare_module_vars(&mut self, module: &Module) {
        for s in &module.stmts {
            match &s.kind {
                StmtKind::Let {
                    name, is_const, ty, ..
                } => {
                    let ty = ty.as_ref().map(|t| self.resolve_type(t));
                    self.add_mod_var(name, *is_const, ty);
                }
                StmtKind::Fn(f) => {
                    if let Some(n) = &f.name {
                        self.add_mod_var(n, true, None);
                    }
                }
                StmtKind::Struct(sd) => self.add_mod_var(&sd.name, true, None),
                StmtKind::Import(imp) => match &imp.kind {
                    ImportKind::Module { binding, .. } => self.add_mod_var(binding, true, None),
                    ImportKind::Names { names, .. } => {
                        for (_, alias) in names {
                            self.add_mod_var(alias, true, None);
                        }
                    }
                },
                _ => {}
            }
        }
    }

    fn compile_main(&mut self, module: &'l Module, display_name: &str) -> ProtoId {
        let name: Arc<str> = if display_name == "<main>" {
            "<main>".into()
        } else {
            format!("<module {display_name}>").into()
        };
        self.funcs.push(Func::new(name, Span::default()));
        self.begin_scope();
        // Hoisting: struct types, then their methods, then functions exist before any
        // top-level statement runs.
        for s in &module.stmts {
            if let StmtKind::Struct(sd) = &s.kind {
                let _ = self.struct_decl(sd);
            }
        }
        for s in &module.stmts {
            match &s.kind {
                StmtKind::Impl(imp) => {
                    let _ = self.impl_decl(imp);
                }
                StmtKind::Fn(fd) => {
                    let _ = self.top_fn(fd);
                }
                _ => {}
            }
        }
        let result = self.alloc_reg(Span::default()).unwrap_or(0);
        let end = Span::new(self.source.text.len(), self.source.text.len());
        self.abc(Op::GetModuleObj, result, 0, 0, end);
        let last = module.stmts.len().wrapping_sub(1);
        for (i, s) in module.stmts.iter().enumerate() {
            match &s.kind {
                StmtKind::Expr(e) if self.repl && i == last => {
                    let _ = self.expr_to(e, result);
                }
                _ => {
                    let _ = self.top_stmt(s);
                }
            }
        }
        let _ = self.end_scope(Span::default());
        self.abc(Op::Return, result, 1, 0, end);
        self.finish_func()
    }

    fn top_fn(&mut self, fd: &'l FnDecl) -> CResult<()> {
        let name = fd.name.as_ref().expect("declarations are named");
        let r = self.alloc_reg(fd.span)?;
        self.function(fd, name.text.as_str().into(), r)?;
        let slot = self.mod_vars[&name.text].slot;
        self.abx(Op::SetModule, r, slot, fd.span);
        self.free_to(r);
        Ok(())
    }

    fn top_stmt(&mut self, s: &'l Stmt) -> CResult<()> {
        match &s.kind {
            StmtKind::Fn(_) | StmtKind::Struct(_) | StmtKind::Impl(_) => Ok(()),
            StmtKind::Let { name, init, ty, .. } => {
                let base = self.free_reg();
                let r = self.alloc_reg(s.span)?;
                match init {
                    Some(e) => self.expr_to(e, r)?,
                    None => {
                        self.abc(Op::LoadNil, r, 0, 0, s.span);
                    }
                }
                if let Some(t) = ty {
                    let t = self.resolve_type(t);
                    self.type_check(r, t, format!("`{}`", name.text), name.span)?;
                }
                let slot = self.mod_vars[&name.text].slot;
                self.abx(Op::SetModule, r, slot, name.span);
                self.free_to(base);
                Ok(())
            }
            StmtKind::Import(imp) => self.import(imp),
            _ => self.stmt(s),
        }
    }

    fn import(&mut self, imp: &Import) -> CResult<()> {
        let base = self.free_reg();
        let r = self.alloc_reg(imp.span)?;
        // Each binding: the member it takes (`None`: the module itself) and its name here.
        type Bindings<'n> = Vec<(Option<&'n Name>, &'n Name)>;
        let (module_name, path, bindings): (&Name, &Option<String>, Bindings) = match &imp.kind {
            ImportKind::Module {
                module,
                binding,
                path,
            } => (module, path, vec![(None, binding)]),
            ImportKind::Names {
                names,
                module,
                path,
            } => {
                let m = module.as_ref().unwrap_or(&names[0].0);
                (m, path, names.iter().map(|(n, a)| (Some(n), a)).collect())
            }
        };
        let exports: Vec<Arc<str>> = match path {
            Some(p) => {
                let id = match self.loader.import_file(&self.source, p) {
                    Ok(id) => id,
                    Err(diags) => {
                        // Problems inside the imported file keep their own position;
                        // the import itself failing (missing file, cycle) points here.
                        for d in diags {
                            match d.location {
                                Some(_) => self.errors.push(d),
                                None => self.error(imp.span, d.message),
                            }
                        }
                        return Err(());
                    }
                };
                if id.0 > u16::MAX as u32 {
                    return self.fail(imp.span, "too many modules");
                }
                self.abx(Op::ImportModule, r, id.0 as u16, imp.span);
                self.loader.program.module(id).vars.to_vec()
            }
            None => {
                let Some((idx, members)) = self.loader.std_module(&module_name.text) else {
                    let msg = self.loader.std_refusal(&module_name.text);
                    return self.fail(module_name.span, msg);
                };
                self.abx(Op::ImportStd, r, idx, imp.span);
                members
            }
        };
        for (member, binding) in bindings {
            let src = match member {
                None => r,
                Some(m) => {
                    if !exports.iter().any(|e| **e == *m.text) {
                        let what = path.as_deref().unwrap_or(&module_name.text).to_string();
                        self.error(m.span, format!("module {what} has no export `{}`", m.text));
                        continue;
                    }
                    let t = self.alloc_reg(m.span)?;
                    let k = self.name_const(&m.text, m.span)?;
                    self.abc(Op::GetField, t, r, k, m.span);
                    t
                }
            };
            let slot = self.mod_vars[&binding.text].slot;
            self.abx(Op::SetModule, src, slot, binding.span);
            // A module variable bound once to a standard module lets compiled code
            // treat `math.sqrt(x)` as an intrinsic. (REPL lines may rebind names.)
            if member.is_none() && path.is_none() && !self.repl {
                self.std_imports
                    .push((slot, module_name.text.as_str().into()));
            }
        }
        self.free_to(base);
        Ok(())
    }

    fn struct_decl(&mut self, sd: &'l StructDecl) -> CResult<()> {
        let base = self.free_reg();
        let r = self.alloc_reg(sd.name.span)?;
        let mut seen = HashSet::new();
        for f in &sd.fields {
            if !seen.insert(f.name.text.as_str()) {
                self.error(f.name.span, format!("duplicate field `{}`", f.name.text));
            }
        }
        let init = if sd.fields.iter().any(|f| f.default.is_some()) {
            Some(self.struct_init(sd)?)
        } else {
            None
        };
        let field_types = sd
            .fields
            .iter()
            .map(|f| f.ty.as_ref().map(|t| self.resolve_type(t)))
            .collect();
        let desc = StructDesc {
            name: sd.name.text.as_str().into(),
            fields: sd
                .fields
                .iter()
                .map(|f| self.loader.program.intern(&f.name.text))
                .collect(),
            has_default: sd.fields.iter().map(|f| f.default.is_some()).collect(),
            field_types,
            init,
        };
        let f = self.f();
        let idx = f.structs.len() as u16;
        f.structs.push(desc);
        self.abx(Op::NewStructType, r, idx, sd.name.span);
        let slot = self.mod_vars[&sd.name.text].slot;
        self.abx(Op::SetModule, r, slot, sd.name.span);
        self.free_to(base);
        Ok(())
    }

    /// Compiles a struct's default initialiser: `fn(self)` that fills every field still
    /// `Undef` with its default expression, evaluated afresh for each instance.
    fn struct_init(&mut self, sd: &'l StructDecl) -> CResult<u16> {
        let name: Arc<str> = format!("{}.<defaults>", sd.name.text).into();
        self.funcs.push(Func::new(name, sd.name.span));
        self.begin_scope();
        let this = Name {
            text: "self".into(),
            span: sd.name.span,
        };
        self.f().nparams = 1;
        self.f().nrequired = 1;
        let recv = self.declare_local(&this, true, None)?;
        let mut ok = Ok(());
        for f in &sd.fields {
            let Some(default) = &f.default else { continue };
            let base = self.free_reg();
            let cur = self.alloc_reg(f.name.span)?;
            let k = self.name_const(&f.name.text, f.name.span)?;
            self.abc(Op::GetField, cur, recv, k, f.name.span);
            let skip = self.emit_asbx(Op::DefaultArg, cur, f.name.span);
            if self.expr_to(default, cur).is_err() {
                ok = Err(());
            }
            self.abc(Op::SetField, recv, k, cur, f.name.span);
            self.patch_here(skip);
            self.free_to(base);
        }
        self.abc(Op::Return, recv, 1, 0, sd.name.span);
        self.f().scopes.pop();
        let id = self.finish_func();
        ok?;
        let f = self.f();
        f.protos.push(id);
        Ok((f.protos.len() - 1) as u16)
    }

    fn impl_decl(&mut self, imp: &'l ImplDecl) -> CResult<()> {
        let Some(m) = self.mod_vars.get(&imp.name.text) else {
            return self.fail(
                imp.name.span,
                format!("undefined struct `{}` in impl", imp.name.text),
            );
        };
        let slot = m.slot;
        let base = self.free_reg();
        let t = self.alloc_reg(imp.name.span)?;
        self.abx(Op::GetModule, t, slot, imp.name.span);
        for m in &imp.methods {
            let Some(mname) = &m.name else { continue };
            let r = self.alloc_reg(m.span)?;
            let display: Arc<str> = format!("{}.{}", imp.name.text, mname.text).into();
            self.function(m, display, r)?;
            let k = self.name_const(&mname.text, mname.span)?;
            self.abc(Op::AddMethod, t, r, k, mname.span);
            self.free_to(r);
        }
        self.free_to(base);
        Ok(())
    }

    // ----- functions ---------------------------------------------------------------

    /// Compiles a function literal or declaration and leaves the closure in `dst`.
    pub(crate) fn function(&mut self, fd: &'l FnDecl, name: Arc<str>, dst: u8) -> CResult<()> {
        self.funcs.push(Func::new(name.clone(), fd.span));
        let r = self.function_body(fd, &name);
        let id = self.finish_func();
        r?;
        let f = self.f();
        f.protos.push(id);
        let idx = f.protos.len() - 1;
        if idx > u16::MAX as usize {
            return self.fail(fd.span, "function too large: too many nested functions");
        }
        self.abx(Op::Closure, dst, idx as u16, fd.span);
        Ok(())
    }

    fn function_body(&mut self, fd: &'l FnDecl, name: &str) -> CResult<()> {
        self.begin_scope();
        if fd.params.len() > 200 {
            return self.fail(fd.span, "too many parameters");
        }
        let mut nrequired = 0;
        for p in &fd.params {
            if p.default.is_none() {
                nrequired += 1;
            }
            let ty = p.ty.as_ref().map(|t| self.resolve_type(t));
            self.declare_local(&p.name, false, ty)?;
        }
        if let Some(rest) = &fd.rest {
            self.declare_local(rest, false, None)?;
        }
        {
            let f = self.f();
            f.nparams = fd.params.len() as u8;
            f.nrequired = nrequired;
            f.has_rest = fd.rest.is_some();
            f.has_self = fd.params.first().is_some_and(|p| p.is_self);
        }
        // Prologue: defaults, annotation checks, boxing of captured parameters. Later
        // parameters' defaults may read earlier ones, so do one parameter at a time.
        for (i, p) in fd.params.iter().enumerate() {
            let reg = i as u8;
            if let Some(d) = &p.default {
                let skip = self.emit_asbx(Op::DefaultArg, reg, p.name.span);
                // Hide this and later parameters while computing the default.
                let params = self.fr().locals.len();
                let saved = self.f().hidden_locals.replace(i..params);
                let r = self.expr_to(d, reg);
                self.f().hidden_locals = saved;
                r?;
                self.patch_here(skip);
            }
            if let Some(t) = &p.ty {
                let t = self.resolve_type(t);
                self.type_check(
                    reg,
                    t,
                    format!("{name}: argument {}", p.name.text),
                    p.name.span,
                )?;
            }
        }
        for (i, p) in fd.params.iter().enumerate() {
            self.box_if_captured(&p.name, i as u8);
        }
        if let Some(rest) = &fd.rest {
            self.box_if_captured(rest, fd.params.len() as u8);
        }
        self.f().ret_type = fd.ret.as_ref().map(|t| self.resolve_type(t));
        let dst = self.alloc_reg(fd.body.span)?;
        let r = self.block_to(&fd.body, dst);
        let end = Span::new(
            fd.body.span.end.saturating_sub(1) as usize,
            fd.body.span.end as usize,
        );
        let r2 = self.end_scope(end);
        if !self.return_nil_in_place(dst, end) {
            self.emit_return(dst, end)?;
        }
        r.and(r2)
    }

    /// A body that ends by loading nil into its result register for a function with no
    /// declared result type returns nil with that instruction instead (`Return` with
    /// B = 0), unless a jump lands after it. Saves a dispatch per call of every
    /// function whose body ends in a statement.
    fn return_nil_in_place(&mut self, dst: u8, span: Span) -> bool {
        let f = self.fr();
        let Some(&last) = f.code.last() else {
            return false;
        };
        let nil_into_dst =
            last.op() == Some(Op::LoadNil) && last.a() == dst as usize && last.b() == 0;
        if !nil_into_dst || f.ret_type.is_some() || f.last_target >= f.code.len() {
            return false;
        }
        let at = f.code.len() - 1;
        self.f().code[at] = Instr::abc(Op::Return, dst, 0, 0);
        self.f().spans[at] = span;
        true
    }

    /// `Return`, with the declared result type checked first.
    fn emit_return(&mut self, reg: u8, span: Span) -> CResult<()> {
        if let Some(t) = self.fr().ret_type.clone() {
            let what = format!("{}: return value", self.fr().name);
            self.type_check(reg, t, what, span)?;
        }
        self.abc(Op::Return, reg, 1, 0, span);
        Ok(())
    }

    /// Pops the current function and adds its proto to the program.
    fn finish_func(&mut self) -> ProtoId {
        let f = self.funcs.pop().expect("function stack");
        let field_cache = f.consts.iter().map(|_| Default::default()).collect();
        let proto = Proto {
            name: f.name,
            code: f.code,
            spans: f.spans,
            consts: f.consts,
            protos: f.protos,
            upvals: f.upvals.into_iter().map(|u| u.source).collect(),
            nparams: f.nparams,
            nrequired: f.nrequired,
            has_rest: f.has_rest,
            has_self: f.has_self,
            max_regs: f.max_regs.max(1),
            type_checks: f.type_checks,
            structs: f.structs,
            shapes: f.shapes,
            module: self.module,
            source: self.source.clone(),
            span: f.span,
            jit: Default::default(),
            field_cache,
            module_vars: Default::default(),
        };
        let program = &mut self.loader.program;
        program.protos.push(proto);
        ProtoId(program.protos.len() as u32 - 1)
    }

    // ----- statements --------------------------------------------------------------

    pub(crate) fn stmt(&mut self, s: &'l Stmt) -> CResult<()> {
        let base = self.free_reg();
        let r = self.stmt_inner(s);
        // Statements leave no temporaries behind (locals were declared in a scope that
        // outlives them; `let` raises the floor itself).
        if !matches!(
            s.kind,
            StmtKind::Let { .. } | StmtKind::Fn(_) | StmtKind::Defer { .. }
        ) {
            self.free_to(base);
        }
        r
    }

    fn stmt_inner(&mut self, s: &'l Stmt) -> CResult<()> {
        match &s.kind {
            StmtKind::Let {
                name,
                ty,
                init,
                is_const,
            } => {
                // The new local is not visible in its own initialiser.
                let r = self.alloc_reg(name.span)?;
                match init {
                    Some(e) => self.expr_to(e, r)?,
                    None => {
                        self.abc(Op::LoadNil, r, 0, 0, s.span);
                    }
                }
                let ty = ty.as_ref().map(|t| self.resolve_type(t));
                if let Some(t) = ty.clone() {
                    self.type_check(r, t, format!("`{}`", name.text), name.span)?;
                }
                self.bind_local(name, r, *is_const, ty);
                self.box_if_captured(name, r);
                Ok(())
            }
            StmtKind::Fn(fd) => {
                let name = fd.name.as_ref().expect("declarations are named");
                let r = self.alloc_reg(name.span)?;
                // Visible inside its own body, so it can recurse.
                self.bind_local(name, r, true, None);
                if self.captured.contains(&name.span.start) {
                    self.abc(Op::LoadNil, r, 0, 0, name.span);
                    self.abc(Op::NewCell, r, 0, 0, name.span);
                    let t = self.alloc_reg(name.span)?;
                    self.function(fd, name.text.as_str().into(), t)?;
                    self.abc(Op::SetCell, r, t, 0, name.span);
                    self.free_to(r + 1);
                } else {
                    self.function(fd, name.text.as_str().into(), r)?;
                }
                Ok(())
            }
            StmtKind::Struct(sd) => self.fail(
                sd.name.span,
                "struct declarations must be at the top level of a module",
            ),
            StmtKind::Impl(i) => self.fail(
                i.name.span,
                "impl blocks must be at the top level of a module",
            ),
            StmtKind::Import(i) => {
                self.fail(i.span, "imports must be at the top level of a module")
            }
            StmtKind::Expr(e) => match &e.kind {
                ExprKind::If { cond, then, else_ } => self.if_stmt(cond, then, else_.as_deref()),
                _ => {
                    let r = self.alloc_reg(e.span)?;
                    self.expr_to(e, r)
                }
            },
            StmtKind::Assign { target, op, value } => self.assign(target, *op, value, s.span),
            StmtKind::Return(e) => {
                if self.fr().in_defer {
                    return self.fail(s.span, "`return` is not allowed in a deferred statement");
                }
                if self.funcs.len() == 1 {
                    return self.fail(s.span, "`return` outside of a function");
                }
                // A local is returned from its own register, unless cleanups run first
                // (a deferred statement may assign it after the value is taken).
                let local = e.as_ref().and_then(|e| self.local_reg(e));
                if let Some(r) = local.filter(|_| self.fr().cleanups.is_empty()) {
                    return self.emit_return(r, s.span);
                }
                let r = self.alloc_reg(s.span)?;
                match e {
                    Some(e) => self.expr_to(e, r)?,
                    None => {
                        self.abc(Op::LoadNil, r, 0, 0, s.span);
                    }
                }
                self.unwind_cleanups_to(0, s.span)?;
                self.emit_return(r, s.span)
            }
            StmtKind::Break | StmtKind::Continue => self.break_continue(s),
            StmtKind::While { cond, body } => {
                let top = self.here();
                let exits = self.cond_jump(cond, false)?;
                self.loop_body(body, top, exits, s.span)
            }
            StmtKind::Loop { body } => {
                let top = self.here();
                self.loop_body(body, top, Vec::new(), s.span)
            }
            StmtKind::For {
                first,
                second,
                iter,
                body,
            } => self.for_loop(first, second.as_ref(), iter, body, s.span),
            StmtKind::Throw(e) => {
                let r = self.alloc_reg(e.span)?;
                self.expr_to(e, r)?;
                self.abc(Op::Throw, r, 0, 0, s.span);
                Ok(())
            }
            StmtKind::Defer { stmt, err_only } => {
                if self.fr().in_defer {
                    return self.fail(s.span, "`defer` is not allowed inside a deferred statement");
                }
                let err_reg = self.alloc_reg(s.span)?;
                let push_at = self.emit_asbx(Op::PushHandler, err_reg, s.span);
                let nlocals = self.fr().locals.len();
                self.f().cleanups.push(Cleanup::Defer {
                    stmt,
                    err_only: *err_only,
                    err_reg,
                    push_at,
                    nlocals,
                });
                Ok(())
            }
        }
    }

    fn break_continue(&mut self, s: &Stmt) -> CResult<()> {
        let is_break = matches!(s.kind, StmtKind::Break);
        let word = if is_break { "break" } else { "continue" };
        if self.fr().in_defer {
            return self.fail(
                s.span,
                format!("`{word}` is not allowed in a deferred statement"),
            );
        }
        let Some(depth) = self.fr().loops.last().map(|l| l.ncleanups) else {
            return self.fail(s.span, format!("`{word}` outside of a loop"));
        };
        self.unwind_cleanups_to(depth, s.span)?;
        let j = self.jump(s.span);
        let l = self.f().loops.last_mut().expect("checked above");
        if is_break {
            l.breaks.push(j);
        } else {
            l.continues.push(j);
        }
        Ok(())
    }

    /// Compiles a loop body with its `break`/`continue` context; returns the jumps
    /// for the caller to patch.
    fn loop_block(&mut self, body: &'l Block) -> (CResult<()>, LoopCtx) {
        let ncleanups = self.fr().cleanups.len();
        self.f().loops.push(LoopCtx {
            ncleanups,
            breaks: Vec::new(),
            continues: Vec::new(),
        });
        let r = self.block_stmt(body);
        (r, self.f().loops.pop().expect("loop stack"))
    }

    /// A loop whose `continue` goes back to `top`; `exits` jump past the loop.
    fn loop_body(
        &mut self,
        body: &'l Block,
        top: usize,
        exits: Vec<usize>,
        span: Span,
    ) -> CResult<()> {
        let (r, l) = self.loop_block(body);
        for c in l.continues {
            self.patch_to(c, top);
        }
        self.jump_back(top, span);
        self.patch_all_here(exits);
        self.patch_all_here(l.breaks);
        r
    }

    /// A block used as a statement (its value is discarded).
    pub(crate) fn block_stmt(&mut self, b: &'l Block) -> CResult<()> {
        self.block_into(b, None)
    }

    /// A block whose value goes to `dst`.
    pub(crate) fn block_to(&mut self, b: &'l Block, dst: u8) -> CResult<()> {
        self.block_into(b, Some(dst))
    }

    /// A block; its value goes to `dst`, or is discarded when there is none.
    /// An `if` whose value is not used: no register for it, and no `nil` for a missing
    /// `else`.
    fn if_stmt(&mut self, cond: &'l Expr, then: &'l Block, else_: Option<&'l Expr>) -> CResult<()> {
        let to_else = self.cond_jump(cond, false)?;
        self.block_into(then, None)?;
        let Some(e) = else_ else {
            self.patch_all_here(to_else);
            return Ok(());
        };
        let to_end = self.jump(e.span);
        self.patch_all_here(to_else);
        match &e.kind {
            ExprKind::If { cond, then, else_ } => self.if_stmt(cond, then, else_.as_deref())?,
            ExprKind::Block(b) => self.block_into(b, None)?,
            _ => {
                let base = self.free_reg();
                let r = self.alloc_reg(e.span).and_then(|r| self.expr_to(e, r));
                self.free_to(base);
                r?
            }
        }
        self.patch_here(to_end);
        Ok(())
    }

    fn block_into(&mut self, b: &'l Block, dst: Option<u8>) -> CResult<()> {
        self.begin_scope();
        let mut ok = Ok(());
        for s in &b.stmts {
            if self.stmt(s).is_err() {
                ok = Err(());
            }
        }
        let tail = match (&b.tail, dst) {
            (Some(t), Some(dst)) => self.expr_to(t, dst),
            (Some(t), None) => {
                let base = self.free_reg();
                let r = self.alloc_reg(t.span).and_then(|r| self.expr_to(t, r));
                self.free_to(base);
                r
            }
            (None, Some(dst)) => {
                self.abc(Op::LoadNil, dst, 0, 0, b.span);
                Ok(())
            }
            (None, None) => Ok(()),
        };
        let end = Span::new(b.span.end.saturating_sub(1) as usize, b.span.end as usize);
        let r = self.end_scope(end);
        ok.and(tail).and(r)
    }

    fn for_loop(
        &mut self,
        first: &'l Name,
        second: Option<&'l Name>,
        iter: &'l Expr,
        body: &'l Block,
        span: Span,
    ) -> CResult<()> {
        self.begin_scope();
        let numeric = self.numeric_range(iter).filter(|_| second.is_none());
        let r = if let Some((start, end, step, inclusive)) = numeric {
            self.numeric_for(first, start, end, step, inclusive, body, span)
        } else {
            self.iter_for(first, second, iter, body, span)
        };
        let r2 = self.end_scope(span);
        r.and(r2)
    }

    /// Recognises `a..b`, `a..=b` and `range(a, b[, step])` (the built-in) so the loop
    /// needs no range object.
    fn numeric_range(
        &mut self,
        iter: &'l Expr,
    ) -> Option<(&'l Expr, &'l Expr, Option<&'l Expr>, bool)> {
        match &iter.kind {
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => Some((start, end, None, *inclusive)),
            ExprKind::Call { callee, args }
                if (2..=3).contains(&args.len())
                    && matches!(&callee.kind, ExprKind::Name(n) if n.text == "range")
                    && self.is_builtin("range") =>
            {
                Some((&args[0], &args[1], args.get(2), false))
            }
            _ => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn numeric_for(
        &mut self,
        first: &'l Name,
        start: &'l Expr,
        end: &'l Expr,
        step: Option<&'l Expr>,
        inclusive: bool,
        body: &'l Block,
        span: Span,
    ) -> CResult<()> {
        let a = self.alloc_regs(4, span)?;
        self.expr_to(start, a)?;
        self.expr_to(end, a + 1)?;
        match step {
            Some(st) => self.expr_to(st, a + 2)?,
            None => {
                self.emit(Instr::asbx(Op::LoadI, a + 2, 1).expect("1 fits"), span);
            }
        }
        let (prep_op, loop_op) = if inclusive {
            (Op::ForPrepIncl, Op::ForLoopIncl)
        } else {
            (Op::ForPrep, Op::ForLoop)
        };
        let prep = self.emit_asbx(prep_op, a, span);
        let body_top = self.here();
        self.bind_local(first, a + 3, false, None);
        self.box_if_captured(first, a + 3);
        let (r, l) = self.loop_block(body);
        self.patch_all_here(l.continues);
        let back = self.emit_asbx(loop_op, a, span);
        self.patch_to(back, body_top);
        self.patch_here(prep);
        self.patch_all_here(l.breaks);
        r
    }

    fn iter_for(
        &mut self,
        first: &'l Name,
        second: Option<&'l Name>,
        iter: &'l Expr,
        body: &'l Block,
        span: Span,
    ) -> CResult<()> {
        let a = self.alloc_regs(4, span)?;
        self.expr_to(iter, a)?;
        self.abc(Op::IterPrep, a, 0, 0, iter.span);
        let top = self.here();
        let op = if second.is_some() {
            Op::IterNext2
        } else {
            Op::IterNext1
        };
        let next = self.emit_asbx(op, a, span);
        self.bind_local(first, a + 2, false, None);
        self.box_if_captured(first, a + 2);
        if let Some(s) = second {
            self.bind_local(s, a + 3, false, None);
            self.box_if_captured(s, a + 3);
        }
        self.loop_body(body, top, vec![next], span)
    }

    /// `obj[i] op= value` / `obj.f op= value` (or plain `=`): `read` and `write` build
    /// the access instructions for the value register they are given.
    fn store_through(
        &mut self,
        op: Option<BinOp>,
        value: &'l Expr,
        read: impl Fn(u8) -> Instr,
        write: impl Fn(u8) -> Instr,
        at: Span,
        span: Span,
    ) -> CResult<()> {
        let v = self.alloc_reg(span)?;
        match op {
            Some(op) => {
                self.emit(read(v), at);
                let rhs = self.expr_reg(value)?;
                self.arith(op, v, v, rhs, span);
            }
            None => self.expr_to(value, v)?,
        }
        self.emit(write(v), at);
        Ok(())
    }

    fn assign(
        &mut self,
        target: &'l Expr,
        op: Option<BinOp>,
        value: &'l Expr,
        span: Span,
    ) -> CResult<()> {
        match &target.kind {
            ExprKind::Name(n) => {
                // Fast path: a plain local is computed in place when that is safe.
                if let Some(reg) = self.local_reg(target) {
                    let (_, is_const, ty) = self.resolve(&n.text).expect("local resolves");
                    if !is_const && ty.is_none() {
                        return match op {
                            Some(op) => self.binary_to(op, target, value, reg, span),
                            None => self.expr_to_local(value, reg),
                        };
                    }
                }
                let r = self.alloc_reg(span)?;
                match op {
                    Some(op) => self.binary_to(op, target, value, r, span)?,
                    None => self.expr_to(value, r)?,
                }
                self.store_name(n, r)
            }
            ExprKind::SelfRef => self.fail(target.span, "cannot assign to `self`"),
            ExprKind::Index { target: obj, index } => {
                let o = self.expr_reg(obj)?;
                let i = self.expr_reg(index)?;
                let read = move |v| Instr::abc(Op::GetIndex, v, o, i);
                let write = move |v| Instr::abc(Op::SetIndex, o, i, v);
                self.store_through(op, value, read, write, target.span, span)
            }
            ExprKind::Field { target: obj, name } => {
                let o = self.expr_reg(obj)?;
                let k = self.name_const(&name.text, name.span)?;
                let read = move |v| Instr::abc(Op::GetField, v, o, k);
                let write = move |v| Instr::abc(Op::SetField, o, k, v);
                self.store_through(op, value, read, write, name.span, span)
            }
            _ => self.fail(target.span, "invalid assignment target"),
        }
    }
}
