//! Capture analysis: which local variables are captured by a nested function.
//!
//! Kiln keeps captured variables in heap cells from the moment they are declared (the
//! Python/Scheme "boxed variable" scheme) instead of Lua's open upvalues: closures share
//! the cell, the declaring function reads it through `GetCell`, and each loop iteration
//! gets a fresh cell for free. That needs one fact before code generation — is this
//! declaration captured? — which this pass computes by resolving every name use with the
//! same scope rules as the compiler. Declarations are identified by the byte offset of
//! their name, which is unique per declaration.

use std::collections::HashSet;

use crate::ast::*;

/// Offsets of the names of every captured local declaration in a module.
pub fn captured_locals(module: &Module) -> HashSet<u32> {
    let mut a = Analysis {
        funcs: vec![vec![Vec::new()]],
        captured: HashSet::new(),
    };
    // Top-level statements declare module variables, not locals; blocks below them do.
    for s in &module.stmts {
        a.top_stmt(s);
    }
    a.captured
}

struct Analysis {
    /// Per function (outermost first): its scopes, each a list of (name, declaration key).
    funcs: Vec<Vec<Vec<(String, u32)>>>,
    captured: HashSet<u32>,
}

impl Analysis {
    fn declare(&mut self, name: &Name) {
        let scopes = self.funcs.last_mut().expect("function stack");
        scopes
            .last_mut()
            .expect("scope stack")
            .push((name.text.clone(), name.span.start));
    }

    fn use_name(&mut self, name: &str) {
        let depth = self.funcs.len();
        for (fi, scopes) in self.funcs.iter().enumerate().rev() {
            for scope in scopes.iter().rev() {
                if let Some((_, key)) = scope.iter().rev().find(|(n, _)| n == name) {
                    if fi + 1 != depth {
                        self.captured.insert(*key);
                    }
                    return;
                }
            }
        }
    }

    fn scoped(&mut self, f: impl FnOnce(&mut Self)) {
        self.funcs
            .last_mut()
            .expect("function stack")
            .push(Vec::new());
        f(self);
        self.funcs.last_mut().expect("function stack").pop();
    }

    fn top_stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Let { init, .. } => self.opt_expr(init.as_ref()),
            StmtKind::Fn(f) => self.func(f),
            StmtKind::Impl(i) => i.methods.iter().for_each(|m| self.func(m)),
            StmtKind::Struct(sd) => sd
                .fields
                .iter()
                .for_each(|f| self.opt_expr(f.default.as_ref())),
            _ => self.stmt(s),
        }
    }

    fn func(&mut self, f: &FnDecl) {
        self.funcs.push(vec![Vec::new()]);
        for p in &f.params {
            self.opt_expr(p.default.as_ref());
            self.declare(&p.name);
        }
        if let Some(r) = &f.rest {
            self.declare(r);
        }
        self.block(&f.body);
        self.funcs.pop();
    }

    fn block(&mut self, b: &Block) {
        self.scoped(|a| {
            for s in &b.stmts {
                a.stmt(s);
            }
            if let Some(t) = &b.tail {
                a.expr(t);
            }
        });
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Let { name, init, .. } => {
                self.opt_expr(init.as_ref());
                self.declare(name);
            }
            StmtKind::Fn(f) => {
                if let Some(n) = &f.name {
                    self.declare(n);
                }
                self.func(f);
            }
            StmtKind::Struct(_) | StmtKind::Impl(_) | StmtKind::Import(_) => {}
            StmtKind::Expr(e) | StmtKind::Throw(e) => self.expr(e),
            StmtKind::Assign { target, value, .. } => {
                self.expr(target);
                self.expr(value);
            }
            StmtKind::Return(e) => self.opt_expr(e.as_ref()),
            StmtKind::Break | StmtKind::Continue => {}
            StmtKind::While { cond, body } => {
                self.expr(cond);
                self.block(body);
            }
            StmtKind::Loop { body } => self.block(body),
            StmtKind::For {
                first,
                second,
                iter,
                body,
            } => {
                self.expr(iter);
                self.scoped(|a| {
                    a.declare(first);
                    if let Some(s) = second {
                        a.declare(s);
                    }
                    a.block(body);
                });
            }
            StmtKind::Defer { stmt, .. } => self.stmt(stmt),
        }
    }

    fn opt_expr(&mut self, e: Option<&Expr>) {
        if let Some(e) = e {
            self.expr(e);
        }
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Nil
            | ExprKind::Bool(_)
            | ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Str(_) => {}
            ExprKind::Interp(parts) => {
                for p in parts {
                    if let InterpPart::Expr(e) = p {
                        self.expr(e);
                    }
                }
            }
            ExprKind::Name(n) => self.use_name(&n.text),
            ExprKind::SelfRef => self.use_name("self"),
            ExprKind::Array(items) => items.iter().for_each(|i| self.expr(i)),
            ExprKind::Map(entries) => {
                for (k, v) in entries {
                    if let MapKey::Expr(k) = k {
                        self.expr(k);
                    }
                    self.expr(v);
                }
            }
            ExprKind::StructLit { name, fields } => {
                self.use_name(&name.text);
                for (n, v) in fields {
                    match v {
                        Some(v) => self.expr(v),
                        None => self.use_name(&n.text),
                    }
                }
            }
            ExprKind::Unary { expr, .. } => self.expr(expr),
            ExprKind::Binary { lhs, rhs, .. } | ExprKind::Logical { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::Range { start, end, .. } => {
                self.expr(start);
                self.expr(end);
            }
            ExprKind::Call { callee, args } => {
                self.expr(callee);
                args.iter().for_each(|a| self.expr(a));
            }
            ExprKind::MethodCall { recv, args, .. } => {
                self.expr(recv);
                args.iter().for_each(|a| self.expr(a));
            }
            ExprKind::Index { target, index } => {
                self.expr(target);
                self.expr(index);
            }
            ExprKind::Field { target, .. } => self.expr(target),
            ExprKind::Fn(f) => self.func(f),
            ExprKind::If { cond, then, else_ } => {
                self.expr(cond);
                self.block(then);
                self.opt_expr(else_.as_deref());
            }
            ExprKind::Block(b) => self.block(b),
            ExprKind::Try {
                body,
                catch_name,
                handler,
            } => {
                self.block(body);
                self.scoped(|a| {
                    if let Some(n) = catch_name {
                        a.declare(n);
                    }
                    a.block(handler);
                });
            }
            ExprKind::Spawn(call) => self.expr(call),
        }
    }
}
