//! Compiled code: protos (one per function body), modules, and the program that holds
//! them.
//!
//! A `Program` is immutable while it runs: the interpreter borrows instruction slices
//! straight out of it, so switching frames costs no reference counting. Everything in
//! it is free of heap handles (constants are plain Rust data), so one program can be
//! shared by every task; each task materialises the constants it needs in its own heap.

use std::sync::Arc;

use crate::bytecode::Instr;
use crate::source::{SourceFile, Span};

/// Index of a proto in `Program::protos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtoId(pub u32);

/// Index of a module in `Program::modules`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleId(pub u32);

/// A compile-time constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Constant {
    Int(i64),
    Float(f64),
    Str(Arc<str>),
}

/// Where a closure's captured cell comes from when the closure is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpvalSource {
    /// The enclosing function's register (which holds a cell).
    Register(u8),
    /// The enclosing function's own captured cell.
    Upval(u8),
}

/// A type annotation after resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeAnn {
    pub kind: TypeKind,
    pub nilable: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeKind {
    Int,
    Float,
    Bool,
    Str,
    Array,
    Map,
    Fn,
    Any,
    /// A struct, by name (the struct may live in another module).
    Struct(Arc<str>),
}

impl TypeAnn {
    /// The annotation as the user wrote it, for messages.
    pub fn describe(&self) -> String {
        let base = match &self.kind {
            TypeKind::Int => "int",
            TypeKind::Float => "float",
            TypeKind::Bool => "bool",
            TypeKind::Str => "str",
            TypeKind::Array => "array",
            TypeKind::Map => "map",
            TypeKind::Fn => "fn",
            TypeKind::Any => "any",
            TypeKind::Struct(n) => n,
        };
        if self.nilable {
            format!("{base}?")
        } else {
            base.to_string()
        }
    }
}

/// A `CheckType` site: the annotation and what the message calls the checked value
/// (`fib: argument n`, `` `x` ``, `area: return value`).
#[derive(Clone, Debug)]
pub struct TypeCheck {
    pub ann: TypeAnn,
    pub what: Arc<str>,
}

/// A struct declaration, instantiated at run time by `NewStructType`.
#[derive(Clone, Debug)]
pub struct StructDesc {
    pub name: Arc<str>,
    pub fields: Vec<Arc<str>>,
    pub has_default: Vec<bool>,
    pub field_types: Vec<Option<TypeAnn>>,
    /// Index (into the declaring proto's nested protos) of the defaults initialiser.
    pub init: Option<u16>,
}

/// One compiled function body.
#[derive(Debug)]
pub struct Proto {
    /// The name traces show: `fib`, `Vec2.len`, `<anonymous>`, `<main>`.
    pub name: Arc<str>,
    pub code: Vec<Instr>,
    /// Source span of each instruction, for error positions and traces.
    pub spans: Vec<Span>,
    pub consts: Vec<Constant>,
    /// Nested protos, referenced by `Closure` and struct initialisers.
    pub protos: Vec<ProtoId>,
    pub upvals: Vec<UpvalSource>,
    /// Declared parameters (including `self` and those with defaults, not the rest one).
    pub nparams: u8,
    /// Parameters without a default.
    pub nrequired: u8,
    pub has_rest: bool,
    /// A method whose first parameter is `self`.
    pub has_self: bool,
    /// Registers the frame needs.
    pub max_regs: u16,
    pub type_checks: Vec<TypeCheck>,
    pub structs: Vec<StructDesc>,
    /// Field-name lists of struct literals (`NewStruct`'s C operand indexes this).
    pub shapes: Vec<Arc<[Arc<str>]>>,
    pub module: ModuleId,
    pub source: Arc<SourceFile>,
    pub span: Span,
    /// Compiled code, once a tier has produced it (shared by every task).
    pub jit: crate::tier::CodeSlot,
    /// The interpreter's field caches, one word per constant (see
    /// `ops::cached_field_slot`): field reads and writes name their field by a
    /// constant, so the constant's word remembers which slot that name had in the
    /// struct type seen last. Atomic because every task shares the program.
    pub field_cache: Box<[std::sync::atomic::AtomicU64]>,
    /// The module variables this proto's code and its nested functions name (`None`:
    /// the module itself is taken as a value, so all of them), worked out when a
    /// closure of it is first copied to another task (see `copy`).
    pub(crate) module_vars: std::sync::OnceLock<Option<Box<[usize]>>>,
}

impl Proto {
    /// Line and column of instruction `pc`.
    pub fn position(&self, pc: usize) -> (u32, u32) {
        self.source.line_col(self.span_at(pc).start)
    }

    /// Source span of instruction `pc`.
    pub fn span_at(&self, pc: usize) -> Span {
        self.spans.get(pc).copied().unwrap_or(self.span)
    }
}

/// What a module is: a source file compiled to a top-level proto, or a standard one.
#[derive(Debug)]
pub struct ModuleInfo {
    pub name: Arc<str>,
    /// Names of its module variables, in slot order.
    pub vars: Arc<[Arc<str>]>,
    /// Which of `vars` are `const` (functions, structs, imports and `const`s).
    pub consts: Vec<bool>,
    /// Module variables bound to a standard module by `import` (slot, module name).
    pub std_imports: Vec<(u16, Arc<str>)>,
    pub main: ProtoId,
}

/// All the code of one run: every proto of every module.
#[derive(Debug, Default)]
pub struct Program {
    pub protos: Vec<Proto>,
    pub modules: Vec<ModuleInfo>,
    /// The module holding script-level built-in methods (compiled first).
    pub prelude: Option<ModuleId>,
    /// Every string constant, interned: equal names share one allocation, so field
    /// and method lookups usually match on pointer equality.
    names: std::collections::HashSet<Arc<str>>,
}

impl Program {
    /// The shared copy of `s`.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.names.insert(a.clone());
        a
    }

    #[inline]
    pub fn proto(&self, id: ProtoId) -> &Proto {
        &self.protos[id.0 as usize]
    }

    pub fn module(&self, id: ModuleId) -> &ModuleInfo {
        &self.modules[id.0 as usize]
    }
}
