//! The syntax tree the parser produces and the compiler consumes.
//!
//! Every node carries a [`Span`] (byte offsets into its file's source) so that compile
//! errors, runtime errors and stack traces can point at the exact text. Names are not
//! resolved here: the compiler's resolver decides whether a [`Name`] is a local, an
//! upvalue, a module variable or a built-in.

use crate::source::Span;

/// An identifier occurrence with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// A whole source file: its top-level statements in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub stmts: Vec<Stmt>,
}

/// A `{ ... }` block. `tail` is a final expression statement that was not followed by
/// `;`: it is the block's value (as in Rust). A block without a tail has the value `nil`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub tail: Option<Box<Expr>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    /// `let x`, `let x: int = e`, `const X = e`.
    Let {
        name: Name,
        ty: Option<TypeAnn>,
        init: Option<Expr>,
        is_const: bool,
    },
    /// `fn name(params) -> T { body }` (named declaration; hoisted at top level).
    Fn(Box<FnDecl>),
    Struct(StructDecl),
    Impl(ImplDecl),
    Import(Import),
    /// An expression used as a statement (a call, an `if`, a block ...).
    Expr(Expr),
    /// `target = value` or `target op= value`; `target` is a `Name`, `Index` or `Field`.
    Assign {
        target: Expr,
        op: Option<BinOp>,
        value: Expr,
    },
    Return(Option<Expr>),
    Break,
    Continue,
    While {
        cond: Expr,
        body: Block,
    },
    Loop {
        body: Block,
    },
    /// `for a in iter { }` or `for a, b in iter { }` (index/key first, then value).
    For {
        first: Name,
        second: Option<Name>,
        iter: Expr,
        body: Block,
    },
    Throw(Expr),
    /// `defer stmt` / `errdefer stmt` (`err_only`).
    Defer {
        stmt: Box<Stmt>,
        err_only: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string literal without interpolation, escapes already decoded.
    Str(String),
    /// `"a ${x} b"`: literal pieces and embedded expressions, in order.
    Interp(Vec<InterpPart>),
    Name(Name),
    /// `self` inside a method (the receiver parameter).
    SelfRef,
    Array(Vec<Expr>),
    Map(Vec<(MapKey, Expr)>),
    /// `Vec2 { x: 1, y }` (`y` is shorthand for `y: y`, stored as `None`).
    StructLit {
        name: Name,
        fields: Vec<(Name, Option<Expr>)>,
    },
    Unary {
        op: UnOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `a && b` / `a || b`: short-circuit, yields an operand.
    Logical {
        and: bool,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `a..b` / `a..=b`.
    Range {
        start: Box<Expr>,
        end: Box<Expr>,
        inclusive: bool,
    },
    Call {
        callee: Box<Expr>,
        args: Vec<Expr>,
    },
    /// `recv.name(args)`: a method call (built-in method, struct method, or a map's
    /// function-valued key).
    MethodCall {
        recv: Box<Expr>,
        method: Name,
        args: Vec<Expr>,
    },
    Index {
        target: Box<Expr>,
        index: Box<Expr>,
    },
    Field {
        target: Box<Expr>,
        name: Name,
    },
    /// `fn (x) { }`, `|x| x + 1`, `|| e`.
    Fn(Box<FnDecl>),
    If {
        cond: Box<Expr>,
        then: Block,
        /// Either a `Block` expression or another `If`.
        else_: Option<Box<Expr>>,
    },
    Block(Block),
    /// `try { } catch e { }`; the value is the body's or the handler's.
    Try {
        body: Block,
        catch_name: Option<Name>,
        handler: Block,
    },
    /// `spawn f(args)`: `call` is always an `ExprKind::Call` or `MethodCall`.
    Spawn(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum InterpPart {
    Lit(String),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum MapKey {
    /// `name: v` — the identifier's text is the string key.
    Name(Name),
    /// `"two words": v`
    Str(String, Span),
    /// `[expr]: v`
    Expr(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Not,
    BitNot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    IntDiv,
    Mod,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    BitAnd,
    BitOr,
    BitXor,
    Shl,
    Shr,
}

/// A function declaration or literal.
#[derive(Debug, Clone, PartialEq)]
pub struct FnDecl {
    /// `None` for anonymous functions and lambdas.
    pub name: Option<Name>,
    /// For methods, `self` is the first parameter (named "self", `is_self` true).
    pub params: Vec<Param>,
    /// `...parts`: collects extra arguments into an array.
    pub rest: Option<Name>,
    pub ret: Option<TypeAnn>,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Name,
    pub ty: Option<TypeAnn>,
    pub default: Option<Expr>,
    pub is_self: bool,
}

/// `int`, `float?`, `Vec2` ...
#[derive(Debug, Clone, PartialEq)]
pub struct TypeAnn {
    pub name: Name,
    pub nilable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StructDecl {
    pub name: Name,
    pub fields: Vec<FieldDecl>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    pub name: Name,
    pub ty: Option<TypeAnn>,
    pub default: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImplDecl {
    pub name: Name,
    pub methods: Vec<FnDecl>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub kind: ImportKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImportKind {
    /// `import math`, `import math as m`, `import geo from "./geo.kn"`.
    /// `path` is `None` for a standard module (named by `binding`'s original name,
    /// kept in `module`).
    Module {
        module: Name,
        binding: Name,
        path: Option<String>,
    },
    /// `import { area, Vec2 as V } from "./geo.kn"` (or from a standard module name:
    /// `import { sqrt } from math`, `path` is then `None` and `module` names it).
    Names {
        names: Vec<(Name, Name)>,
        module: Option<Name>,
        path: Option<String>,
    },
}
