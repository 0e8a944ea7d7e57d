//! The per-task machine state: heap, register stack, call frames, error handlers and
//! the roots that keep heap objects alive.
//!
//! Rooting invariant: a collection can start only inside [`Vm::alloc`] or
//! [`Vm::reserve`], and at that moment every value the program can still use is in one
//! of the roots traced by
//! [`Vm::collect_garbage_with`] — the live part of the register stack, the frames, the
//! handle stack (`push_root`), module objects, per-proto constant tables, built-ins —
//! or inside the object being allocated. Native code that holds a fresh value in a
//! Rust local across another allocation must `push_root` it first; GC stress mode
//! (`HeapConfig::stress`) collects at every allocation to catch any miss.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use kiln_gc::{Gc, Heap, HeapConfig, HeapStats, Refused, Trace, Tracer};

use crate::error::{Collection, Fault};
use crate::program::{ModuleId, Program, ProtoId};
use crate::value::*;

/// Where output goes. The CLI passes real stdout/stderr; embedders may capture.
pub struct Output {
    pub out: Box<dyn Write + Send>,
    pub err: Box<dyn Write + Send>,
}

impl Output {
    pub fn stdio() -> Output {
        Output {
            out: Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
            err: Box::new(std::io::stderr()),
        }
    }
}

/// What a script may touch beyond pure computation.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    pub stdio: bool,
    /// The `fs` module and importing script files.
    pub fs: bool,
    pub os: bool,
    /// The `time` module and the clock behind `clock()`.
    pub time: bool,
    /// With `fs`: the directory file access is confined to (paths that leave it are
    /// errors); `None` for the whole file system.
    pub fs_root: Option<std::path::PathBuf>,
    /// The functions, modules and types the host added.
    pub host: Option<Arc<crate::host::HostRegistry>>,
}

impl Capabilities {
    pub fn all() -> Capabilities {
        Capabilities {
            stdio: true,
            fs: true,
            os: true,
            time: true,
            fs_root: None,
            host: None,
        }
    }
}

/// Run settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub heap: HeapConfig,
    pub max_depth: usize,
    pub capabilities: Capabilities,
    /// What `os.args()` returns.
    pub args: Vec<String>,
    /// Compiled code: when to ask for it and who compiles it.
    pub tier: crate::tier::TierConfig,
    /// Steps (see [`crate::fuel`]) a run may take before it stops with
    /// `instruction limit exceeded`; `None` for no limit.
    pub fuel: Option<u64>,
    /// A flag another thread may raise to stop the run (`interrupted by the host`). The
    /// VM lowers it again when it stops.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Worker threads for tasks (`--threads`); 0 for one per CPU.
    pub threads: usize,
    /// Memory, size and task bounds.
    pub limits: crate::limits::Limits,
    /// The time scripts see; `None` for the wall clock.
    pub clock: Option<crate::limits::SharedClock>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            heap: HeapConfig::default(),
            max_depth: 10_000,
            capabilities: Capabilities::all(),
            args: Vec::new(),
            tier: Default::default(),
            fuel: None,
            interrupt: None,
            threads: 0,
            limits: Default::default(),
            clock: None,
        }
    }
}

impl Settings {
    /// The configuration of each task's heap: `heap`, bounded by `limits.heap_bytes`.
    pub fn heap_config(&self) -> HeapConfig {
        HeapConfig {
            max_bytes: self.limits.heap_bytes,
            ..self.heap.clone()
        }
    }
}

/// A call frame. Registers are `stack[base..base + proto.max_regs]`; the callee value
/// sits at `stack[base - 1]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub closure: Gc<Closure>,
    pub proto: ProtoId,
    pub consts: Gc<Consts>,
    pub module: Gc<ModuleObj>,
    /// The next instruction to run (so the current one, for positions, is `pc - 1`).
    pub pc: usize,
    pub base: usize,
    /// Absolute stack slot that receives the return value.
    pub ret: usize,
}

/// An active `try`/`defer` handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Handler {
    /// Index into `frames` of the frame that pushed it.
    pub frame: usize,
    pub pc: usize,
    pub reg: u8,
}

/// One task's machine.
pub struct Vm {
    pub heap: Heap,
    pub(crate) program: Arc<Program>,
    pub(crate) stack: Vec<Value>,
    pub(crate) frames: Vec<Frame>,
    pub(crate) handlers: Vec<Handler>,
    /// Values native code keeps alive across allocations.
    handles: Vec<Value>,
    /// Values the host keeps alive across runs (see `Vm::pin`).
    pub(crate) pinned: Vec<Value>,
    /// While a native runs: the end of its arguments. Registers above it are dead
    /// temporaries of the caller, which must not keep garbage alive.
    pub(crate) native_top: Option<usize>,
    pub(crate) modules: Vec<Option<Gc<ModuleObj>>>,
    pub(crate) consts: Vec<Option<Gc<Consts>>>,
    pub(crate) builtins: Vec<Value>,
    pub(crate) std_modules: Vec<Option<Gc<ModuleObj>>>,
    pub settings: Settings,
    pub output: Output,
    /// The trace where a non-Error value was thrown (Error values carry their own).
    pub(crate) throw_trace: Option<Arc<[TraceEntry]>>,
    /// Calls plus back-edges per proto, for tier-up.
    pub(crate) hotness: Vec<u32>,
    /// Steps left in the current grant (see [`crate::fuel`]); compiled code charges
    /// it too.
    pub(crate) fuel: i64,
    pub(crate) fuel_granted: i64,
    /// Steps of earlier grants.
    pub(crate) fuel_spent: u64,
    /// State of `math.random`.
    pub rng: u64,
    /// Start of the process clock (`clock()`, `time.monotonic()`).
    pub epoch: std::time::Instant,
    /// The task this machine runs, when it runs under the scheduler.
    pub(crate) task: Option<Arc<crate::task::Task>>,
    /// A value delivered to a suspended instruction that runs again to pick it up
    /// (`for v in ch`, see [`crate::task`]). A root.
    pub(crate) pending: Option<Value>,
    /// The one-character strings of ASCII characters that `for c in s` handed out, by
    /// byte, so iterating a string allocates once per distinct character. Emptied at
    /// every collection (it keeps nothing alive) and empty until first used.
    ascii_chars: Vec<Option<Gc<Str>>>,
    /// Where string concatenations build their text (see [`crate::ops::concat`]).
    scratch: String,
}

impl Vm {
    pub fn new(program: Arc<Program>, settings: Settings, output: Output) -> Vm {
        let heap = Heap::new(settings.heap_config());
        let mut vm = Vm {
            heap,
            program,
            stack: Vec::with_capacity(64),
            frames: Vec::new(),
            handlers: Vec::new(),
            handles: Vec::new(),
            pinned: Vec::new(),
            native_top: None,
            modules: Vec::new(),
            consts: Vec::new(),
            builtins: Vec::new(),
            std_modules: Vec::new(),
            settings,
            output,
            throw_trace: None,
            hotness: Vec::new(),
            fuel: 0,
            fuel_granted: 0,
            fuel_spent: 0,
            rng: 0,
            epoch: std::time::Instant::now(),
            task: None,
            pending: None,
            ascii_chars: Vec::new(),
            scratch: String::new(),
        };
        vm.start_afresh();
        vm
    }

    /// Empties the machine for another task of the same program, settings and output: a
    /// new heap (the old one and all its objects are dropped), empty stacks and tables,
    /// but their allocations kept. A worker reuses its machines this way, so a short task
    /// does not pay for allocating and freeing them.
    pub(crate) fn recycle(&mut self) {
        self.heap = Heap::new(self.settings.heap_config());
        self.stack.clear();
        self.frames.clear();
        self.handlers.clear();
        self.handles.clear();
        self.pinned.clear();
        self.native_top = None;
        self.modules.clear();
        self.consts.clear();
        self.std_modules.clear();
        self.throw_trace = None;
        self.hotness.clear();
        self.task = None;
        self.pending = None;
        self.ascii_chars.clear();
        self.start_afresh();
    }

    /// Ends the machine and returns its heap's final accounting ([`Heap::release`]): all
    /// zero unless objects or bytes leaked from the heap's view.
    pub fn release(mut self) -> HeapStats {
        std::mem::replace(&mut self.heap, Heap::new(HeapConfig::default())).release()
    }

    /// The state every run starts from that `new` and `recycle` do not otherwise set.
    fn start_afresh(&mut self) {
        self.rng = 0x853c_49e6_748f_ea9b;
        self.epoch = std::time::Instant::now();
        crate::builtins::install(self);
        self.reset_fuel();
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Replaces the program with a grown version of itself (the REPL compiles each line
    /// into the same program). Only valid between runs.
    pub fn set_program(&mut self, program: Arc<Program>) {
        self.program = program;
    }

    // ----- allocation and rooting --------------------------------------------------

    /// Allocates `obj`, collecting first if the heap asks for it. `obj`'s own contents
    /// are traced as roots during that collection, so values moved into it are safe.
    /// Fails with `out of memory` (catchable) when the allocator refuses, and with
    /// [`crate::Limit::HeapBytes`] when the heap limit would be passed even after a collection
    /// (the small [`Refused`] becomes that [`Fault`] at the caller's `?`, so the result
    /// stays two registers wide on this hot path).
    #[inline(always)]
    pub fn alloc<T: Trace>(&mut self, obj: T) -> Result<Gc<T>, Refused> {
        let cost = Heap::cost_of(&obj);
        if self.heap.should_collect_for(cost) {
            self.make_room(&obj, cost)?;
        }
        self.heap.try_alloc(obj)
    }

    /// Makes sure `bytes` more (a buffer about to be built, or an object's storage about
    /// to grow) may be added to the heap: the same checks, and the same safe point, as
    /// [`Vm::alloc`]. The caller reports the growth with `heap.account` (or allocates the
    /// object that owns the buffer) afterwards.
    #[inline]
    pub fn reserve(&mut self, bytes: usize) -> Result<(), Refused> {
        if self.heap.should_collect_for(bytes) {
            self.make_room(&Value::Nil, bytes)?;
        }
        Ok(())
    }

    /// The slow path of allocation: the failure hook, a collection if one is due, and
    /// the heap limit.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, extra: &dyn TraceRoot, bytes: usize) -> Result<(), Refused> {
        self.heap.admit()?;
        if self.heap.collection_due(bytes) {
            self.collect_garbage_with(extra);
        }
        if self.heap.fits(bytes) {
            Ok(())
        } else {
            Err(Refused::OverLimit)
        }
    }

    #[inline]
    pub fn new_str(&mut self, s: &str) -> Result<Value, Fault> {
        self.new_arc_str(Arc::from(s))
    }

    #[inline]
    pub fn new_string(&mut self, s: String) -> Result<Value, Fault> {
        self.new_arc_str(Arc::from(s))
    }

    #[inline]
    pub fn new_arc_str(&mut self, s: Arc<str>) -> Result<Value, Fault> {
        self.check_size(Collection::String, s.len())?;
        Ok(Value::Str(self.alloc(Str::new(s))?))
    }

    /// The scratch buffer, empty.
    pub(crate) fn take_scratch(&mut self) -> String {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        s
    }

    /// Gives the scratch buffer back, unless a long string grew it: a machine keeps
    /// no more than this much of it between uses.
    pub(crate) fn put_scratch(&mut self, s: String) {
        const KEEP: usize = 64 << 10;
        if s.capacity() <= KEEP {
            self.scratch = s;
        }
    }

    /// The string of the single character `c`: shared for ASCII characters.
    pub(crate) fn char_string(&mut self, c: char) -> Result<Value, Fault> {
        if !c.is_ascii() {
            return self.new_string(c.to_string());
        }
        let i = c as usize;
        if let Some(Some(s)) = self.ascii_chars.get(i) {
            return Ok(Value::Str(*s));
        }
        let v = self.new_string(c.to_string())?;
        if let Value::Str(s) = v {
            // After the allocation: a collection it started has emptied the table.
            if self.ascii_chars.len() <= i {
                self.ascii_chars.resize(128, None);
            }
            self.ascii_chars[i] = Some(s);
        }
        Ok(v)
    }

    #[inline]
    pub fn new_array(&mut self, items: Vec<Value>) -> Result<Value, Fault> {
        self.check_size(Collection::Array, items.len())?;
        Ok(Value::Array(self.alloc(Array { items })?))
    }

    #[inline]
    pub fn new_map(&mut self, map: Map) -> Result<Value, Fault> {
        self.check_size(Collection::Map, map.entries.len())?;
        Ok(Value::Map(self.alloc(map)?))
    }

    /// Keeps `v` alive until `pop_roots` truncates below it.
    pub fn push_root(&mut self, v: Value) {
        self.handles.push(v);
    }

    /// The handle stack height, to restore with `pop_roots`.
    pub fn roots_mark(&self) -> usize {
        self.handles.len()
    }

    pub fn pop_roots(&mut self, mark: usize) {
        self.handles.truncate(mark);
    }

    /// Runs `f`, then drops the roots it pushed, also when it failed part way (an
    /// allocation refused by the heap limit must not leave roots behind).
    pub fn with_roots<R>(
        &mut self,
        f: impl FnOnce(&mut Vm) -> Result<R, Fault>,
    ) -> Result<R, Fault> {
        let mark = self.roots_mark();
        let r = f(self);
        self.pop_roots(mark);
        r
    }

    /// `gc()`: a full collection now.
    pub fn collect_garbage(&mut self) {
        self.collect_garbage_with(&Value::Nil);
    }

    /// The end of the live part of the register stack: the current frame's window,
    /// or only up to a running native's arguments.
    fn stack_top(&self) -> usize {
        let frame_top = match self.frames.last() {
            Some(f) => f.base + self.program.proto(f.proto).max_regs as usize,
            None => self.stack.len(),
        };
        frame_top
            .min(self.native_top.unwrap_or(usize::MAX))
            .min(self.stack.len())
    }

    fn collect_garbage_with(&mut self, extra: &dyn TraceRoot) {
        self.ascii_chars.clear();
        let top = self.stack_top();
        // Registers above the live top may hold stale handles; they are never read
        // before being written, but clear them so they cannot keep garbage alive.
        for v in &mut self.stack[top..] {
            *v = Value::Nil;
        }
        let Vm {
            heap,
            stack,
            frames,
            handles,
            pinned,
            modules,
            consts,
            builtins,
            std_modules,
            pending,
            ..
        } = self;
        heap.collect(&mut |t: &mut Tracer| {
            for v in stack[..top].iter() {
                v.trace(t);
            }
            for f in frames.iter() {
                t.mark(f.closure);
                t.mark(f.consts);
                t.mark(f.module);
            }
            for v in handles.iter().chain(pinned.iter()).chain(builtins.iter()) {
                v.trace(t);
            }
            for m in modules.iter().chain(std_modules.iter()).flatten() {
                t.mark(*m);
            }
            for c in consts.iter().flatten() {
                t.mark(*c);
            }
            if let Some(v) = pending {
                v.trace(t);
            }
            extra.trace_root(t);
        });
    }

    // ----- per-task materialisation of shared code ----------------------------------

    /// The constants of `proto` as values of this heap.
    pub(crate) fn consts_for(&mut self, proto: ProtoId) -> Result<Gc<Consts>, Fault> {
        let i = proto.0 as usize;
        if let Some(Some(c)) = self.consts.get(i) {
            return Ok(*c);
        }
        let program = self.program.clone();
        let table = self.with_roots(|vm| {
            let mut values = Vec::with_capacity(program.proto(proto).consts.len());
            for c in &program.proto(proto).consts {
                let v = match c {
                    crate::program::Constant::Int(i) => Value::Int(*i),
                    crate::program::Constant::Float(f) => Value::Float(*f),
                    // Part of the program, not built by the script: no size cap.
                    crate::program::Constant::Str(s) => {
                        let v = Value::Str(vm.alloc(Str::new(s.clone()))?);
                        vm.push_root(v);
                        v
                    }
                };
                values.push(v);
            }
            Ok(vm.alloc(Consts {
                values: values.into_boxed_slice(),
            })?)
        })?;
        if self.consts.len() <= i {
            self.consts.resize(i + 1, None);
        }
        self.consts[i] = Some(table);
        Ok(table)
    }

    /// The module object of `id`, created (not yet run) on first use.
    pub(crate) fn module_obj(&mut self, id: ModuleId) -> Result<Gc<ModuleObj>, Fault> {
        let i = id.0 as usize;
        if let Some(Some(m)) = self.modules.get(i) {
            return Ok(*m);
        }
        let info = self.program.module(id);
        let obj = ModuleObj {
            name: info.name.clone(),
            names: info.vars.clone(),
            vars: vec![Value::Undef; info.vars.len()],
            id: Some(id),
            started: false,
        };
        let m = self.alloc(obj)?;
        if self.modules.len() <= i {
            self.modules.resize(i + 1, None);
        }
        self.modules[i] = Some(m);
        Ok(m)
    }

    /// Makes a closure of `proto` with the given captured cells in `module`.
    pub(crate) fn new_closure(
        &mut self,
        proto: ProtoId,
        upvals: Box<[Gc<Cell>]>,
        module: Gc<ModuleObj>,
    ) -> Result<Gc<Closure>, Fault> {
        // `consts_for` may collect: keep the cells and module alive meanwhile.
        self.with_roots(|vm| {
            for u in upvals.iter() {
                vm.push_root(Value::Cell(*u));
            }
            vm.push_root(Value::Module(module));
            let consts = vm.consts_for(proto)?;
            Ok(vm.alloc(Closure {
                proto,
                upvals,
                module,
                consts,
            })?)
        })
    }

    // ----- errors ------------------------------------------------------------------

    /// The script stack trace right now, innermost frame first.
    pub fn capture_trace(&self) -> Arc<[TraceEntry]> {
        self.frames
            .iter()
            .rev()
            .map(|f| {
                let p = self.program.proto(f.proto);
                let pc = f.pc.saturating_sub(1);
                TraceEntry {
                    func: p.name.clone(),
                    source: p.source.clone(),
                    span: p.span_at(pc),
                }
            })
            .collect()
    }

    /// An Error value with `message` and the current trace.
    pub fn make_error(&mut self, message: &str) -> Result<Value, Fault> {
        let trace = self.capture_trace();
        Ok(Value::Error(self.alloc(ErrorObj {
            message: message.into(),
            trace,
            suppressed: Vec::new(),
            stack_overflow: false,
        })?))
    }

    // ----- small helpers for natives ------------------------------------------------

    pub fn type_name(&self, v: Value) -> &str {
        v.type_name(&self.heap)
    }

    pub fn str_of(&self, v: Value) -> Option<&str> {
        v.as_str(&self.heap)
    }

    /// The display form (`print`, `str`, interpolation).
    pub fn display(&self, v: Value) -> String {
        crate::display::display(self, v)
    }

    pub fn write_out(&mut self, s: &str) -> Result<(), Fault> {
        self.output
            .out
            .write_all(s.as_bytes())
            .map_err(|e| Fault::Error(format!("cannot write to stdout: {e}")))
    }

    pub fn write_err(&mut self, s: &str) -> Result<(), Fault> {
        let _ = self.output.out.flush();
        self.output
            .err
            .write_all(s.as_bytes())
            .map_err(|e| Fault::Error(format!("cannot write to stderr: {e}")))
    }

    /// The time scripts see (`clock()`, `time.monotonic()`): the host's clock, else the
    /// time since this machine started if the host granted the clock at all.
    pub fn now(&self) -> Result<std::time::Duration, Fault> {
        match &self.settings.clock {
            Some(clock) => Ok(clock.now()),
            None if self.settings.capabilities.time => Ok(self.epoch.elapsed()),
            None => Err(Fault::Error(
                "the clock is not available: the host did not grant it".into(),
            )),
        }
    }

    pub fn flush(&mut self) {
        let _ = self.output.out.flush();
        let _ = self.output.err.flush();
    }
}

/// Something traced as an extra root during the collection `alloc` may run.
trait TraceRoot {
    fn trace_root(&self, t: &mut Tracer);
}

impl<T: Trace> TraceRoot for T {
    fn trace_root(&self, t: &mut Tracer) {
        self.trace(t);
    }
}

impl Trace for Value {
    fn trace(&self, t: &mut Tracer) {
        Value::trace(*self, t);
    }
}
