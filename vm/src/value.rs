//! Script values and the heap object types they point to.
//!
//! `Value` is a 16-byte `Copy` tagged union (tag in the first byte, payload at offset 8),
//! so compiled code can load, guard and write back a value with plain loads and stores.
//! Numbers, booleans and nil are immediate; everything else is a `Gc` handle into the
//! running task's heap. Strings keep their bytes in an `Arc<str>` so they can later be
//! shared between task heaps without copying.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use indexmap::IndexMap;
use kiln_gc::{Gc, Heap, Liveness, Trace, Tracer};

use crate::program::{ModuleId, ProtoId};

/// The tag byte of each [`Value`] variant (offset 0; the payload is at offset 8).
/// Compiled code reads and writes values with these.
pub mod tag {
    pub const NIL: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const INT: u8 = 2;
    pub const FLOAT: u8 = 3;
    pub const ARRAY: u8 = 5;
    pub const FUNC: u8 = 7;
    pub const STRUCT: u8 = 9;
    pub const MODULE: u8 = 14;
    pub const UNDEF: u8 = 16;
    pub const CHANNEL: u8 = 17;
    pub const TASK: u8 = 18;
    pub const HOST: u8 = 19;
}

/// A script value.
#[derive(Clone, Copy, Debug)]
#[repr(C, u8)]
pub enum Value {
    Nil = tag::NIL,
    Bool(bool) = tag::BOOL,
    Int(i64) = tag::INT,
    Float(f64) = tag::FLOAT,
    Str(Gc<Str>) = 4,
    Array(Gc<Array>) = tag::ARRAY,
    Map(Gc<Map>) = 6,
    Func(Gc<Closure>) = tag::FUNC,
    Native(Gc<Native>) = 8,
    Struct(Gc<Instance>) = tag::STRUCT,
    Type(Gc<StructType>) = 10,
    Range(Gc<Range>) = 11,
    Error(Gc<ErrorObj>) = 12,
    Weak(Gc<WeakRef>) = 13,
    Module(Gc<ModuleObj>) = tag::MODULE,
    /// Internal: a captured variable's box. Never visible to scripts.
    Cell(Gc<Cell>) = 15,
    /// Internal: "no value yet" — an uninitialised module variable, a missing argument
    /// that has a default, a struct field awaiting its default. Never visible to scripts.
    Undef = tag::UNDEF,
    /// A channel: a handle to state shared by every task that holds it.
    Chan(Gc<ChanRef>) = tag::CHANNEL,
    /// A task handle (`spawn`'s result), shared like a channel.
    Task(Gc<TaskRef>) = tag::TASK,
    /// An object of a type the host registered (see [`crate::host`]), shared like a
    /// channel: every copy refers to the same Rust value.
    Host(Gc<crate::host::HostRef>) = tag::HOST,
}

const _: () = assert!(std::mem::size_of::<Value>() == 16);

impl Value {
    /// The tag byte of immediate values and functions (compiled code's view); 255 for
    /// the other kinds, which compiled code does not distinguish.
    pub fn tag(self) -> u8 {
        match self {
            Value::Nil => tag::NIL,
            Value::Bool(_) => tag::BOOL,
            Value::Int(_) => tag::INT,
            Value::Float(_) => tag::FLOAT,
            Value::Func(_) => tag::FUNC,
            Value::Undef => tag::UNDEF,
            _ => u8::MAX,
        }
    }

    #[inline]
    pub fn truthy(self) -> bool {
        !matches!(self, Value::Nil | Value::Bool(false))
    }

    /// The name `type()` returns.
    pub fn type_name(self, heap: &Heap) -> &str {
        match self {
            Value::Nil | Value::Undef => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Func(_) | Value::Native(_) => "fn",
            Value::Struct(s) => &s.get(heap).ty.get(heap).name,
            Value::Type(_) => "struct",
            Value::Range(_) => "range",
            Value::Error(_) => "error",
            Value::Weak(_) => "weak",
            Value::Module(_) => "module",
            Value::Cell(_) => "cell",
            Value::Chan(_) => "channel",
            Value::Task(_) => "task",
            Value::Host(h) => &h.get(heap).ty.name,
        }
    }

    pub fn as_str(self, heap: &Heap) -> Option<&str> {
        match self {
            Value::Str(s) => Some(&s.get(heap).text),
            _ => None,
        }
    }

    pub fn trace(self, t: &mut Tracer) {
        match self {
            Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Undef => {}
            Value::Str(g) => t.mark(g),
            Value::Array(g) => t.mark(g),
            Value::Map(g) => t.mark(g),
            Value::Func(g) => t.mark(g),
            Value::Native(g) => t.mark(g),
            Value::Struct(g) => t.mark(g),
            Value::Type(g) => t.mark(g),
            Value::Range(g) => t.mark(g),
            Value::Error(g) => t.mark(g),
            Value::Weak(g) => t.mark(g),
            Value::Module(g) => t.mark(g),
            Value::Cell(g) => t.mark(g),
            Value::Chan(g) => t.mark(g),
            Value::Task(g) => t.mark(g),
            Value::Host(g) => t.mark(g),
        }
    }

    /// Identity of a heap value, for cycle detection and identity equality.
    pub fn heap_addr(self) -> Option<usize> {
        Some(match self {
            Value::Str(g) => g.addr(),
            Value::Array(g) => g.addr(),
            Value::Map(g) => g.addr(),
            Value::Func(g) => g.addr(),
            Value::Native(g) => g.addr(),
            Value::Struct(g) => g.addr(),
            Value::Type(g) => g.addr(),
            Value::Range(g) => g.addr(),
            Value::Error(g) => g.addr(),
            Value::Weak(g) => g.addr(),
            Value::Module(g) => g.addr(),
            Value::Cell(g) => g.addr(),
            Value::Chan(g) => g.addr(),
            Value::Task(g) => g.addr(),
            Value::Host(g) => g.addr(),
            _ => return None,
        })
    }
}

fn trace_all(values: &[Value], t: &mut Tracer) {
    for v in values {
        v.trace(t);
    }
}

fn values_bytes(v: &Vec<Value>) -> usize {
    v.capacity() * std::mem::size_of::<Value>()
}

/// An immutable string. The hash is computed once, at creation, with the process-wide
/// seeded hasher so that map lookups never rehash.
pub struct Str {
    pub text: Arc<str>,
    pub hash: u64,
}

impl Str {
    pub fn new(text: Arc<str>) -> Str {
        let hash = hash_str(&text);
        Str { text, hash }
    }
}

impl Trace for Str {
    fn trace(&self, _: &mut Tracer) {}
    fn external_bytes(&self) -> usize {
        // The Arc may be shared with other tasks later; counting it here keeps pacing honest.
        self.text.len() + 16
    }
}

/// A growable array of values.
#[derive(Default)]
pub struct Array {
    pub items: Vec<Value>,
}

impl Trace for Array {
    fn trace(&self, t: &mut Tracer) {
        trace_all(&self.items, t);
    }
    fn external_bytes(&self) -> usize {
        values_bytes(&self.items)
    }
}

/// The process-wide seed for script-visible hashing. Random per process, so a hostile
/// script cannot precompute colliding keys.
fn hash_state() -> &'static foldhash::fast::RandomState {
    static STATE: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    STATE.get_or_init(foldhash::fast::RandomState::default)
}

pub fn hash_str(s: &str) -> u64 {
    hash_state().hash_one(s)
}

fn hash_int(i: i64) -> u64 {
    hash_state().hash_one(i)
}

/// A map key: strings, ints (floats with an integral value become ints), non-integral
/// floats (by bits, with -0.0 folded into 0) and booleans. Each carries its hash.
#[derive(Clone, Debug)]
pub enum Key {
    Str(Arc<str>, u64),
    Int(i64),
    Float(u64),
    Bool(bool),
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        match (self, other) {
            (Key::Str(a, ha), Key::Str(b, hb)) => ha == hb && a == b,
            (Key::Int(a), Key::Int(b)) => a == b,
            (Key::Float(a), Key::Float(b)) => a == b,
            (Key::Bool(a), Key::Bool(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(match *self {
            Key::Str(_, h) => h,
            Key::Int(i) => hash_int(i),
            Key::Float(bits) => hash_int(bits as i64 ^ 0x5bd1_e995),
            Key::Bool(b) => hash_int(b as i64 ^ 0x2545_f491),
        });
    }
}

/// Keys already carry a seeded hash; the table only needs to pass it through.
#[derive(Clone, Copy, Default)]
pub struct PassThrough;

/// The hasher behind [`PassThrough`]: returns the one `u64` a [`Key`] writes.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// An insertion-ordered map. Each entry keeps the key as the script gave it (so `keys()`
/// and `for k in m` return it without allocating) next to its value.
#[derive(Default)]
pub struct Map {
    pub entries: IndexMap<Key, (Value, Value), PassThrough>,
}

/// Bytes one map entry takes: the entry, plus its slot in the hash index.
pub(crate) const ENTRY_BYTES: usize = std::mem::size_of::<(Key, (Value, Value))>() + 8;

impl Trace for Map {
    fn trace(&self, t: &mut Tracer) {
        for (k, v) in self.entries.values() {
            k.trace(t);
            v.trace(t);
        }
    }
    fn external_bytes(&self) -> usize {
        self.entries.capacity() * ENTRY_BYTES
    }
}

/// A script function value: a proto, its captured cells and its module.
pub struct Closure {
    pub proto: ProtoId,
    pub upvals: Box<[Gc<Cell>]>,
    pub module: Gc<ModuleObj>,
    /// The proto's constants materialised in this heap (strings become `Str` objects).
    pub consts: Gc<Consts>,
}

impl Trace for Closure {
    fn trace(&self, t: &mut Tracer) {
        for u in self.upvals.iter() {
            t.mark(*u);
        }
        t.mark(self.module);
        t.mark(self.consts);
    }
    fn external_bytes(&self) -> usize {
        self.upvals.len() * 8
    }
}

/// A proto's constant table in one heap.
pub struct Consts {
    pub values: Box<[Value]>,
}

impl Trace for Consts {
    fn trace(&self, t: &mut Tracer) {
        trace_all(&self.values, t);
    }
    fn external_bytes(&self) -> usize {
        self.values.len() * 16
    }
}

/// The box a captured variable lives in, shared by the closures that capture it.
pub struct Cell {
    pub value: Value,
}

impl Trace for Cell {
    fn trace(&self, t: &mut Tracer) {
        self.value.trace(t);
    }
}

/// The signature of a function implemented in Rust. Arguments arrive as a slice (for a
/// method, the receiver is `args[0]`); they stay rooted in the caller's registers.
pub type NativeFn = fn(&mut crate::vm::Vm, &[Value]) -> Result<Value, crate::error::Fault>;

/// A function implemented in Rust: a built-in, or a function the host registered.
#[derive(Clone)]
pub enum Native {
    Builtin { name: &'static str, func: NativeFn },
    Host(Arc<crate::host::HostFunc>),
}

impl Native {
    pub fn name(&self) -> &str {
        match self {
            Native::Builtin { name, .. } => name,
            Native::Host(h) => &h.name,
        }
    }
}

impl Trace for Native {
    fn trace(&self, _: &mut Tracer) {}
}

/// A struct declaration at run time: field layout, defaults initialiser and methods.
pub struct StructType {
    pub name: Arc<str>,
    pub fields: Box<[Arc<str>]>,
    /// `Some` for fields with a default expression; NewStruct leaves those `Undef` and the
    /// initialiser fills them.
    pub has_default: Box<[bool]>,
    /// Annotation of each field (checked on construction and assignment).
    pub field_types: Box<[Option<crate::program::TypeAnn>]>,
    pub init: Option<Gc<Closure>>,
    pub methods: Vec<(Arc<str>, Value)>,
    /// Which declaration of the program this type comes from (non-zero, the same in
    /// every task and every copy), or 0 for types made outside a program. Compiled
    /// code caches field slots by it; a cell address would not do, since cells are
    /// reused.
    pub key: u64,
}

impl StructType {
    /// The key of struct declaration `index` of proto `proto`: below 2^47 so a cache
    /// word can hold it with a field slot, or 0 (not cached) past that.
    pub fn key_of(proto: u32, index: usize) -> u64 {
        if proto >= 1 << 26 || index >= 1 << 20 {
            return 0;
        }
        ((proto as u64 + 1) << 20) | index as u64
    }
}

/// Finds `name` among `names`. Names from one program are interned, so a pointer
/// comparison pass almost always finds it; the content pass covers names made at run
/// time.
#[inline]
pub fn find_name<'a>(
    mut names: impl Iterator<Item = &'a str> + Clone,
    name: &str,
) -> Option<usize> {
    names
        .clone()
        .position(|n| std::ptr::eq(n, name))
        .or_else(|| names.position(|n| n == name))
}

impl StructType {
    pub fn field_index(&self, name: &str) -> Option<usize> {
        find_name(self.fields.iter().map(|f| &**f), name)
    }

    pub fn method(&self, name: &str) -> Option<Value> {
        find_name(self.methods.iter().map(|(n, _)| &**n), name).map(|i| self.methods[i].1)
    }
}

impl Trace for StructType {
    fn trace(&self, t: &mut Tracer) {
        if let Some(i) = self.init {
            t.mark(i);
        }
        for (_, m) in &self.methods {
            m.trace(t);
        }
    }
    fn external_bytes(&self) -> usize {
        self.fields.len() * 24 + self.methods.capacity() * 32
    }
}

/// A struct instance: its type and one slot per field.
pub struct Instance {
    pub ty: Gc<StructType>,
    /// `ty`'s declaration key, kept here so a field access checks its cache without
    /// reading the type (in the interpreter and in compiled code). The cell's size
    /// class is the same with it.
    pub key: u64,
    pub fields: Box<[Value]>,
}

impl Instance {
    pub fn new(heap: &Heap, ty: Gc<StructType>, fields: Box<[Value]>) -> Instance {
        let key = ty.get(heap).key;
        Instance { ty, key, fields }
    }
}

impl Trace for Instance {
    fn trace(&self, t: &mut Tracer) {
        t.mark(self.ty);
        trace_all(&self.fields, t);
    }
    fn external_bytes(&self) -> usize {
        self.fields.len() * 16
    }
}

/// `a..b`, `a..=b` or `range(a, b, step)`.
pub struct Range {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub inclusive: bool,
}

impl Range {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of values the range yields.
    pub fn len(&self) -> u64 {
        u64::try_from(self.exact_len()).unwrap_or(u64::MAX)
    }

    /// The exact count (`min..=max` has 2^64 values, one more than a u64 holds).
    pub fn exact_len(&self) -> u128 {
        let (s, e, st) = (self.start as i128, self.end as i128, self.step as i128);
        let e = if self.inclusive { e + st.signum() } else { e };
        let n = if st > 0 {
            (e - s + st - 1).div_euclid(st)
        } else {
            (s - e - st - 1).div_euclid(-st)
        };
        n.max(0) as u128
    }

    pub fn nth(&self, i: u64) -> i64 {
        self.start.wrapping_add((i as i64).wrapping_mul(self.step))
    }
}

impl Trace for Range {
    fn trace(&self, _: &mut Tracer) {}
}

/// One line of a stack trace: a function and the place in its source being executed.
#[derive(Clone, Debug)]
pub struct TraceEntry {
    pub func: Arc<str>,
    pub source: Arc<crate::source::SourceFile>,
    pub span: crate::source::Span,
}

impl TraceEntry {
    pub fn line_col(&self) -> (u32, u32) {
        self.source.line_col(self.span.start)
    }
}

impl std::fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (line, col) = self.line_col();
        write!(f, "{} ({}:{line}:{col})", self.func, self.source.name)
    }
}

/// An Error value: what `error(msg)` makes and what runtime errors are.
pub struct ErrorObj {
    pub message: Arc<str>,
    pub trace: Arc<[TraceEntry]>,
    pub suppressed: Vec<Value>,
    /// Raised by the frame limit (`stack overflow`), not by a script: so a host can tell
    /// the two apart ([`crate::ErrorKind::StackOverflow`]) when nothing caught it.
    pub stack_overflow: bool,
}

impl Trace for ErrorObj {
    fn trace(&self, t: &mut Tracer) {
        trace_all(&self.suppressed, t);
    }
    fn external_bytes(&self) -> usize {
        self.message.len() + self.trace.len() * 48 + values_bytes(&self.suppressed)
    }
}

/// `weak(v)`: does not keep `v` alive; cleared when `v` is collected.
pub struct WeakRef {
    pub target: Value,
}

impl Trace for WeakRef {
    fn trace(&self, _: &mut Tracer) {}
    const HAS_WEAK: bool = true;
    fn update_weak(&mut self, liveness: &Liveness) {
        let live = match self.target {
            Value::Str(g) => liveness.is_live(g),
            Value::Array(g) => liveness.is_live(g),
            Value::Map(g) => liveness.is_live(g),
            Value::Func(g) => liveness.is_live(g),
            Value::Native(g) => liveness.is_live(g),
            Value::Struct(g) => liveness.is_live(g),
            Value::Type(g) => liveness.is_live(g),
            Value::Range(g) => liveness.is_live(g),
            Value::Error(g) => liveness.is_live(g),
            Value::Weak(g) => liveness.is_live(g),
            Value::Module(g) => liveness.is_live(g),
            Value::Cell(g) => liveness.is_live(g),
            Value::Chan(g) => liveness.is_live(g),
            Value::Task(g) => liveness.is_live(g),
            Value::Host(g) => liveness.is_live(g),
            _ => true,
        };
        if !live {
            self.target = Value::Nil;
        }
    }
}

/// A module's variables (its top-level `let`, `const`, `fn`, `struct`, imports), or a
/// standard module's members.
pub struct ModuleObj {
    pub name: Arc<str>,
    pub names: Arc<[Arc<str>]>,
    pub vars: Vec<Value>,
    /// The module's top level, `None` for standard modules.
    pub id: Option<ModuleId>,
    /// Whether its top level has started running (imports run each module once).
    pub started: bool,
}

impl ModuleObj {
    pub fn member(&self, name: &str) -> Option<Value> {
        find_name(self.names.iter().map(|n| &**n), name).map(|i| self.vars[i])
    }
}

impl Trace for ModuleObj {
    fn trace(&self, t: &mut Tracer) {
        trace_all(&self.vars, t);
    }
    fn external_bytes(&self) -> usize {
        values_bytes(&self.vars)
    }
}

/// A channel as one heap sees it: every copy of a channel value, in any task, holds the
/// same shared [`Channel`](crate::channel::Channel).
pub struct ChanRef {
    pub chan: Arc<crate::channel::Channel>,
}

impl Trace for ChanRef {
    fn trace(&self, _: &mut Tracer) {}
}

/// A task handle as one heap sees it (see [`ChanRef`]).
pub struct TaskRef {
    pub task: Arc<crate::task::Task>,
}

impl Trace for TaskRef {
    fn trace(&self, _: &mut Tracer) {}
}

/// Converts a value to a map key, or says why it cannot be one.
pub fn to_key(v: Value, heap: &Heap) -> Result<Key, String> {
    match v {
        Value::Str(s) => {
            let s = s.get(heap);
            Ok(Key::Str(s.text.clone(), s.hash))
        }
        Value::Int(i) => Ok(Key::Int(i)),
        Value::Bool(b) => Ok(Key::Bool(b)),
        Value::Float(f) => {
            if f.is_nan() {
                Err("map key cannot be nan".into())
            } else if f.fract() == 0.0
                && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
            {
                Ok(Key::Int(f as i64))
            } else {
                Ok(Key::Float(f.to_bits()))
            }
        }
        other => Err(format!(
            "map key must be str, int, float or bool, got {}",
            other.type_name(heap)
        )),
    }
}
