//! Deep copies of values between task heaps.
//!
//! A heap belongs to one task, so a value crossing tasks (a `spawn`'s callee and
//! arguments, a channel message, a task's result, a `root` entry) travels as a
//! [`Portable`]: a description that holds no heap handle. [`export`] reads a value's
//! whole object graph out of one heap; [`import`] rebuilds it in another, as often as
//! needed (joining a task twice imports its result twice). Sharing and cycles survive:
//! an object reached twice is described once. Strings keep their `Arc<str>` bytes, and
//! channels and task handles their `Arc` state, so those are shared, not copied.
//!
//! A module reached through a closure is copied in part: only the module variables that
//! the closure's code (and the functions those variables hold, and so on) names, so a
//! spawn does not copy every variable of the script. A module reached as a value is
//! copied whole.
//!
//! Both directions walk the graph with explicit work lists, so a value of any depth is
//! safe to copy.

use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use kiln_gc::{Gc, Heap};

use crate::bytecode::opc;
use crate::channel::Channel;
use crate::error::Fault;
use crate::fault;
use crate::program::{ModuleId, Program, ProtoId, TypeAnn};
use crate::task::Task;
use crate::value::*;
use crate::vm::Vm;

/// A value detached from every heap. Cloning shares the description.
#[derive(Clone)]
pub struct Portable(Repr);

#[derive(Clone)]
enum Repr {
    /// Nil, bools, numbers: no object at all (the common message).
    Imm(Value),
    Str(Arc<str>, u64),
    Graph(Arc<Graph>),
}

/// Objects numbered from 0; the value is `nodes[0]`.
struct Graph {
    nodes: Vec<Node>,
}

/// A field of a described object: an immediate, or the number of another node.
#[derive(Clone, Copy)]
enum Slot {
    Imm(Value),
    Ref(u32),
}

enum Node {
    /// Reserved while the exporter has not yet described the object.
    Pending,
    Str(Arc<str>, u64),
    Array(Vec<Slot>),
    Map(Vec<(Key, Slot, Slot)>),
    Func {
        proto: ProtoId,
        upvals: Vec<u32>,
        module: u32,
    },
    Cell(Slot),
    Native(Native),
    Host(crate::host::HostRef),
    Struct {
        ty: u32,
        fields: Vec<Slot>,
    },
    Type {
        name: Arc<str>,
        fields: Box<[Arc<str>]>,
        has_default: Box<[bool]>,
        field_types: Box<[Option<TypeAnn>]>,
        init: Option<u32>,
        methods: Vec<(Arc<str>, Slot)>,
        key: u64,
    },
    Range {
        start: i64,
        end: i64,
        step: i64,
        inclusive: bool,
    },
    Error {
        message: Arc<str>,
        trace: Arc<[TraceEntry]>,
        suppressed: Vec<Slot>,
    },
    Weak(Slot),
    Module {
        shell: ModuleShell,
        vars: Vec<Slot>,
    },
    Chan(Arc<Channel>),
    Task(Arc<Task>),
}

impl Portable {
    pub const NIL: Portable = Portable(Repr::Imm(Value::Nil));

    pub fn int(i: i64) -> Portable {
        Portable(Repr::Imm(Value::Int(i)))
    }

    /// The integer this describes, if it is one (`root.add`).
    pub fn as_int(&self) -> Option<i64> {
        match self.0 {
            Repr::Imm(Value::Int(i)) => Some(i),
            _ => None,
        }
    }
}

fn is_immediate(v: Value) -> bool {
    matches!(
        v,
        Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Undef
    )
}

/// Describes `v` and everything it reaches in `vm`'s heap.
pub fn export(vm: &Vm, v: Value) -> Portable {
    export_flat(vm, v).unwrap_or_else(|| {
        Portable(Exporter::new(vm).finish(|e| {
            e.slot(v);
        }))
    })
}

/// Describes `v` without a graph, if it is an immediate or a string.
fn export_flat(vm: &Vm, v: Value) -> Option<Portable> {
    match v {
        _ if is_immediate(v) => Some(Portable(Repr::Imm(v))),
        Value::Str(s) => {
            let s = s.get(&vm.heap);
            Some(Portable(Repr::Str(s.text.clone(), s.hash)))
        }
        _ => None,
    }
}

/// Arguments a [`Call::Plain`] holds without allocating.
const PLAIN_ARGS: usize = 4;

/// A `spawn`'s callee and arguments on their way to the new task.
pub(crate) enum Call {
    /// `[callee, args...]` as one graph, so sharing between them survives.
    Graph(Portable),
    /// A function that captures nothing and names no module variable, called with
    /// immediates and strings (nothing they could share): most spawns. Described
    /// without allocating, which matters beyond the allocation itself: the worker that
    /// runs the task frees the description, and memory freed by a thread that did not
    /// allocate it costs the allocator a contended lock.
    Plain {
        proto: ProtoId,
        module: ModuleShell,
        args: SmallVec<[Portable; PLAIN_ARGS]>,
    },
}

/// Describes the callee `values[0]` and its arguments `values[1..]` for `spawn`.
pub(crate) fn export_call(vm: &Vm, values: &[Value]) -> Call {
    plain_call(vm, values).unwrap_or_else(|| {
        Call::Graph(Portable(Exporter::new(vm).finish(|e| {
            e.nodes.push(Node::Pending);
            e.nodes[0] = Node::Array(e.slots(values));
        })))
    })
}

fn plain_call(vm: &Vm, values: &[Value]) -> Option<Call> {
    let (Value::Func(c), args) = values.split_first()? else {
        return None;
    };
    let c = c.get(&vm.heap);
    if !c.upvals.is_empty() || !used_vars(&vm.program, c.proto).is_some_and(|u| u.is_empty()) {
        return None;
    }
    Some(Call::Plain {
        proto: c.proto,
        module: ModuleShell::of(c.module.get(&vm.heap)),
        args: args
            .iter()
            .map(|&v| export_flat(vm, v))
            .collect::<Option<_>>()?,
    })
}

/// Makes the callee and arguments `call` describes in `vm`'s heap and leaves them in
/// registers `0..=nargs` of its (frameless) stack. Returns `nargs`.
pub(crate) fn import_call(vm: &mut Vm, call: &Call) -> Result<usize, Fault> {
    vm.stack.clear();
    match call {
        Call::Graph(p) => {
            let Value::Array(a) = import(vm, p)? else {
                return Err(fault!("internal error: a spawned call is not an array"));
            };
            let items = &a.get(&vm.heap).items;
            vm.stack.extend_from_slice(items);
        }
        Call::Plain {
            proto,
            module,
            args,
        } => {
            // Each value goes on the stack as it is made: a frameless stack is a root.
            vm.stack.push(Value::Nil);
            for a in args {
                let v = import(vm, a)?;
                vm.stack.push(v);
            }
            let m = module.make(vm)?;
            vm.stack[0] = Value::Module(m);
            let vars = vec![Value::Undef; module.vars];
            vm.heap.account((vars.len() * 16) as isize);
            m.get_mut(&mut vm.heap).vars = vars;
            register_module(vm, m);
            vm.stack[0] = Value::Func(vm.new_closure(*proto, Box::new([]), m)?);
        }
    }
    Ok(vm.stack.len().saturating_sub(1))
}

/// A module as copied into another task, without its variables.
pub(crate) struct ModuleShell {
    name: Arc<str>,
    names: Arc<[Arc<str>]>,
    /// How many variables it has.
    vars: usize,
    id: Option<ModuleId>,
    started: bool,
}

impl ModuleShell {
    fn of(m: &ModuleObj) -> ModuleShell {
        ModuleShell {
            name: m.name.clone(),
            names: m.names.clone(),
            vars: m.vars.len(),
            id: m.id,
            started: m.started,
        }
    }

    /// The module object, with no variables yet.
    fn make(&self, vm: &mut Vm) -> Result<Gc<ModuleObj>, Fault> {
        Ok(vm.alloc(ModuleObj {
            name: self.name.clone(),
            names: self.names.clone(),
            vars: Vec::new(),
            id: self.id,
            started: self.started,
        })?)
    }
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

struct Exporter<'h> {
    heap: &'h Heap,
    program: &'h Program,
    /// Object address → node number: what makes sharing and cycles survive.
    memo: Memo,
    nodes: Vec<Node>,
    /// Objects numbered but not yet described.
    todo: Vec<(Value, u32)>,
}

/// Objects a [`Memo`] searches in place before it builds a hash table.
const SMALL_MEMO: usize = 8;

/// Object address → node number. Most graphs (a spawn's callee and arguments, a message)
/// have a handful of objects, which a search of a small array finds faster than building
/// and hashing into a table; past [`SMALL_MEMO`] objects it becomes one.
enum Memo {
    Small(usize, [(usize, u32); SMALL_MEMO]),
    Large(FastMap<usize, u32>),
}

impl Memo {
    /// The node of the object at `addr`, numbering it with `make` when first met.
    fn node(&mut self, addr: usize, make: impl FnOnce() -> u32) -> u32 {
        match self {
            Memo::Small(len, known) => {
                if let Some(&(_, i)) = known[..*len].iter().find(|(a, _)| *a == addr) {
                    return i;
                }
                let i = make();
                if *len < SMALL_MEMO {
                    known[*len] = (addr, i);
                    *len += 1;
                } else {
                    let mut map: FastMap<usize, u32> = known.iter().copied().collect();
                    map.insert(addr, i);
                    *self = Memo::Large(map);
                }
                i
            }
            Memo::Large(map) => *map.entry(addr).or_insert_with(make),
        }
    }
}

/// The module variables `proto` and the functions nested in it read or write (sorted,
/// each once), or `None` when the code takes its module as a value (then all).
fn used_vars(program: &Program, proto: ProtoId) -> Option<&[usize]> {
    let cached = program.proto(proto).module_vars.get_or_init(|| {
        let mut used = Vec::new();
        let mut protos = vec![proto];
        while let Some(p) = protos.pop() {
            let p = program.proto(p);
            for ins in &p.code {
                match ins.op_byte() {
                    opc::GetModule | opc::SetModule => used.push(ins.bx()),
                    opc::GetModuleObj => return None,
                    _ => {}
                }
            }
            protos.extend_from_slice(&p.protos);
        }
        used.sort_unstable();
        used.dedup();
        Some(used.into_boxed_slice())
    });
    cached.as_deref()
}

impl<'h> Exporter<'h> {
    fn new(vm: &'h Vm) -> Self {
        Exporter {
            heap: &vm.heap,
            program: &vm.program,
            memo: Memo::Small(0, [(0, 0); SMALL_MEMO]),
            nodes: Vec::new(),
            todo: Vec::new(),
        }
    }

    /// The node of module `m`, described at once with no variables copied yet (all
    /// `Undef`, the value of a variable not yet initialised).
    fn module_node(&mut self, m: Gc<ModuleObj>) -> u32 {
        let (heap, nodes) = (self.heap, &mut self.nodes);
        self.memo.node(m.addr(), || {
            let obj = m.get(heap);
            nodes.push(Node::Module {
                shell: ModuleShell::of(obj),
                vars: vec![Slot::Imm(Value::Undef); obj.vars.len()],
            });
            nodes.len() as u32 - 1
        })
    }

    /// Copies the variables `which` of module `m` (node `node`) not copied yet. A slot
    /// still `Undef` is not copied yet (copying an uninitialised variable again costs
    /// nothing: it is no object).
    fn copy_vars(&mut self, node: u32, m: Gc<ModuleObj>, which: Option<&[usize]>) {
        let vars = &m.get(self.heap).vars;
        let all: Vec<usize>;
        let which = match which {
            Some(v) => v,
            None => {
                all = (0..vars.len()).collect();
                &all
            }
        };
        for &i in which {
            let Node::Module { vars: copied, .. } = &mut self.nodes[node as usize] else {
                unreachable!("module nodes stay modules")
            };
            if !matches!(copied.get(i), Some(Slot::Imm(Value::Undef))) {
                continue;
            }
            // Taken before the copy, so a module its own variable reaches does not
            // copy that variable again.
            copied[i] = Slot::Imm(Value::Nil);
            let slot = self.slot(vars[i]);
            if let Node::Module { vars, .. } = &mut self.nodes[node as usize] {
                vars[i] = slot;
            }
        }
    }

    /// Runs `root` (which numbers node 0) and describes everything it reached.
    fn finish(mut self, root: impl FnOnce(&mut Self)) -> Repr {
        root(&mut self);
        while let Some((v, i)) = self.todo.pop() {
            self.nodes[i as usize] = self.describe(v);
        }
        Repr::Graph(Arc::new(Graph { nodes: self.nodes }))
    }

    fn slot(&mut self, v: Value) -> Slot {
        if let Value::Module(m) = v {
            let node = self.module_node(m);
            self.copy_vars(node, m, None);
            return Slot::Ref(node);
        }
        let Some(addr) = v.heap_addr() else {
            return Slot::Imm(v);
        };
        let (nodes, todo) = (&mut self.nodes, &mut self.todo);
        Slot::Ref(self.memo.node(addr, || {
            let i = nodes.len() as u32;
            nodes.push(Node::Pending);
            todo.push((v, i));
            i
        }))
    }

    fn node_of(&mut self, v: Value) -> u32 {
        match self.slot(v) {
            Slot::Ref(i) => i,
            Slot::Imm(_) => unreachable!("heap values always get a node"),
        }
    }

    fn slots(&mut self, values: &[Value]) -> Vec<Slot> {
        values.iter().map(|v| self.slot(*v)).collect()
    }

    fn describe(&mut self, v: Value) -> Node {
        let heap = self.heap;
        match v {
            Value::Str(s) => {
                let s = s.get(heap);
                Node::Str(s.text.clone(), s.hash)
            }
            Value::Array(a) => Node::Array(self.slots(&a.get(heap).items)),
            Value::Map(m) => Node::Map(
                m.get(heap)
                    .entries
                    .iter()
                    .map(|(k, (kv, vv))| (k.clone(), self.slot(*kv), self.slot(*vv)))
                    .collect(),
            ),
            Value::Func(c) => {
                let c = c.get(heap);
                Node::Func {
                    proto: c.proto,
                    upvals: c
                        .upvals
                        .iter()
                        .map(|u| self.node_of(Value::Cell(*u)))
                        .collect(),
                    module: {
                        let node = self.module_node(c.module);
                        let used = used_vars(self.program, c.proto);
                        self.copy_vars(node, c.module, used);
                        node
                    },
                }
            }
            Value::Cell(c) => Node::Cell(self.slot(c.get(heap).value)),
            Value::Native(n) => Node::Native(n.get(heap).clone()),
            Value::Struct(s) => {
                let s = s.get(heap);
                Node::Struct {
                    ty: self.node_of(Value::Type(s.ty)),
                    fields: self.slots(&s.fields),
                }
            }
            Value::Type(t) => {
                let t = t.get(heap);
                Node::Type {
                    name: t.name.clone(),
                    fields: t.fields.clone(),
                    has_default: t.has_default.clone(),
                    field_types: t.field_types.clone(),
                    init: t.init.map(|c| self.node_of(Value::Func(c))),
                    methods: t
                        .methods
                        .iter()
                        .map(|(n, m)| (n.clone(), self.slot(*m)))
                        .collect(),
                    key: t.key,
                }
            }
            Value::Range(r) => {
                let r = r.get(heap);
                Node::Range {
                    start: r.start,
                    end: r.end,
                    step: r.step,
                    inclusive: r.inclusive,
                }
            }
            Value::Error(e) => {
                let e = e.get(heap);
                Node::Error {
                    message: e.message.clone(),
                    trace: e.trace.clone(),
                    suppressed: self.slots(&e.suppressed),
                }
            }
            Value::Weak(w) => Node::Weak(self.slot(w.get(heap).target)),
            Value::Module(_) => unreachable!("modules are described when first met"),
            Value::Chan(c) => Node::Chan(c.get(heap).chan.clone()),
            Value::Task(t) => Node::Task(t.get(heap).task.clone()),
            Value::Host(h) => Node::Host(h.get(heap).clone()),
            Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Undef => {
                unreachable!("immediates are never described as nodes")
            }
        }
    }
}

/// Builds the value `p` describes in `vm`'s heap.
pub fn import(vm: &mut Vm, p: &Portable) -> Result<Value, Fault> {
    Ok(match &p.0 {
        Repr::Imm(v) => *v,
        Repr::Str(text, hash) => Value::Str(vm.alloc(Str {
            text: text.clone(),
            hash: *hash,
        })?),
        Repr::Graph(g) => import_graph(vm, g)?,
    })
}

/// Three passes, because closures and instances need their cells, module and type to
/// exist when they are made: first every other object (containers empty), then closures
/// and instances, then the containers' contents. Every new object stays on the handle
/// stack until the end, so collections meanwhile keep them.
fn import_graph(vm: &mut Vm, g: &Graph) -> Result<Value, Fault> {
    vm.with_roots(|vm| {
        let mut made: Vec<Value> = Vec::with_capacity(g.nodes.len());
        for node in &g.nodes {
            let v = make_shell(vm, node)?;
            vm.push_root(v);
            made.push(v);
        }
        for (i, node) in g.nodes.iter().enumerate() {
            let v = match node {
                Node::Func {
                    proto,
                    upvals,
                    module,
                } => {
                    let cells = upvals.iter().map(|&u| cell_of(made[u as usize])).collect();
                    let Value::Module(m) = made[*module as usize] else {
                        unreachable!("a closure's module node is a module")
                    };
                    Value::Func(vm.new_closure(*proto, cells, m)?)
                }
                Node::Struct { ty, fields } => {
                    let Value::Type(ty) = made[*ty as usize] else {
                        unreachable!("an instance's type node is a struct type")
                    };
                    let fields = vec![Value::Nil; fields.len()].into_boxed_slice();
                    Value::Struct(vm.alloc(Instance::new(&vm.heap, ty, fields))?)
                }
                Node::Module { .. } => {
                    if let Value::Module(m) = made[i] {
                        register_module(vm, m);
                    }
                    continue;
                }
                _ => continue,
            };
            vm.push_root(v);
            made[i] = v;
        }
        for (node, &v) in g.nodes.iter().zip(&made) {
            fill(vm, node, v, &made);
        }
        Ok(made[0])
    })
}

fn cell_of(v: Value) -> Gc<Cell> {
    match v {
        Value::Cell(c) => c,
        _ => unreachable!("a closure's upvalue nodes are cells"),
    }
}

/// The object for `node` with empty contents; `Undef` for closures and instances,
/// which the second pass makes.
fn make_shell(vm: &mut Vm, node: &Node) -> Result<Value, Fault> {
    Ok(match node {
        Node::Pending => unreachable!("every node is described before import"),
        Node::Str(text, hash) => Value::Str(vm.alloc(Str {
            text: text.clone(),
            hash: *hash,
        })?),
        Node::Array(_) => vm.new_array(Vec::new())?,
        Node::Map(_) => vm.new_map(Map::default())?,
        Node::Func { .. } | Node::Struct { .. } => Value::Undef,
        Node::Cell(_) => Value::Cell(vm.alloc(Cell { value: Value::Nil })?),
        Node::Native(n) => Value::Native(vm.alloc(n.clone())?),
        Node::Type {
            name,
            fields,
            has_default,
            field_types,
            key,
            ..
        } => Value::Type(vm.alloc(StructType {
            name: name.clone(),
            fields: fields.clone(),
            has_default: has_default.clone(),
            field_types: field_types.clone(),
            init: None,
            methods: Vec::new(),
            key: *key,
        })?),
        Node::Range {
            start,
            end,
            step,
            inclusive,
        } => Value::Range(vm.alloc(Range {
            start: *start,
            end: *end,
            step: *step,
            inclusive: *inclusive,
        })?),
        Node::Error { message, trace, .. } => Value::Error(vm.alloc(ErrorObj {
            message: message.clone(),
            trace: trace.clone(),
            suppressed: Vec::new(),
            stack_overflow: false,
        })?),
        Node::Weak(_) => Value::Weak(vm.alloc(WeakRef { target: Value::Nil })?),
        Node::Module { shell, .. } => Value::Module(shell.make(vm)?),
        Node::Chan(c) => Value::Chan(vm.alloc(ChanRef { chan: c.clone() })?),
        Node::Task(t) => Value::Task(vm.alloc(TaskRef { task: t.clone() })?),
        Node::Host(h) => Value::Host(vm.alloc(h.clone())?),
    })
}

/// Fills the contents of the object `v` made for `node`. Allocates nothing.
fn fill(vm: &mut Vm, node: &Node, v: Value, made: &[Value]) {
    let get = |s: &Slot| match *s {
        Slot::Imm(v) => v,
        Slot::Ref(i) => made[i as usize],
    };
    let all = |slots: &[Slot]| slots.iter().map(get).collect::<Vec<_>>();
    let heap = &mut vm.heap;
    let grown = match (node, v) {
        (Node::Array(items), Value::Array(a)) => {
            let items = all(items);
            let bytes = items.capacity() * 16;
            a.get_mut(heap).items = items;
            bytes
        }
        (Node::Map(entries), Value::Map(m)) => {
            let map = &mut m.get_mut(heap).entries;
            map.reserve(entries.len());
            for (k, kv, vv) in entries {
                map.insert(k.clone(), (get(kv), get(vv)));
            }
            map.capacity() * ENTRY_BYTES
        }
        (Node::Cell(s), Value::Cell(c)) => {
            c.get_mut(heap).value = get(s);
            0
        }
        (Node::Struct { fields, .. }, Value::Struct(s)) => {
            s.get_mut(heap).fields = all(fields).into_boxed_slice();
            0
        }
        (Node::Type { init, methods, .. }, Value::Type(t)) => {
            let t = t.get_mut(heap);
            t.init = init.map(|i| match made[i as usize] {
                Value::Func(c) => c,
                _ => unreachable!("a struct initialiser node is a closure"),
            });
            t.methods = methods.iter().map(|(n, m)| (n.clone(), get(m))).collect();
            t.methods.capacity() * 32
        }
        (Node::Error { suppressed, .. }, Value::Error(e)) => {
            e.get_mut(heap).suppressed = all(suppressed);
            suppressed.len() * 16
        }
        (Node::Weak(s), Value::Weak(w)) => {
            w.get_mut(heap).target = get(s);
            0
        }
        (Node::Module { vars, .. }, Value::Module(m)) => {
            m.get_mut(heap).vars = all(vars);
            vars.len() * 16
        }
        _ => 0,
    };
    heap.account(grown as isize);
}

/// A file module copied into a task becomes that task's instance of the module, so
/// `import` inside the task finds it (module top levels run once per program).
fn register_module(vm: &mut Vm, m: Gc<ModuleObj>) {
    let Some(id) = m.get(&vm.heap).id else {
        return;
    };
    let i = id.0 as usize;
    if vm.modules.len() <= i {
        vm.modules.resize(i + 1, None);
    }
    if vm.modules[i].is_none() {
        vm.modules[i] = Some(m);
    }
}
