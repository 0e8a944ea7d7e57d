//! kiln-jit: tier 2. Hot protos are compiled to machine code with Cranelift on a
//! background thread; the interpreter enters the code at calls and loop headers.
//!
//! - [`infer`]: control flow, liveness and register types of a proto.
//! - [`translate`]: bytecode to Cranelift IR, with guards and side exits.
//! - [`abi`]: the signature, context and layouts shared with generated code.
//! - [`params`]: every tuning number.
//!
//! **Invariant:** the JIT never changes a program's result. Anything it does not handle
//! is a side exit to the interpreter, and a compile failure just leaves the proto to
//! the interpreter. **Invariant:** generated code never allocates and never calls back
//! into script code, so no collection can run while it runs.

pub mod abi;
mod bounds;
mod code;
pub mod infer;
mod inline;
pub mod params;
pub mod stress;
pub mod translate;

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{
    AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Arc;
use std::time::Instant;

use cranelift_codegen::ir::types::{F64, I32, I64};
use cranelift_codegen::ir::{AbiParam, FuncRef, Signature, Type, UserFuncName};
use cranelift_codegen::isa::CallConv;
use cranelift_codegen::settings::Configurable;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use crossbeam_channel::{Receiver, Sender};
use kiln_vm::program::{Program, ProtoId};
use kiln_vm::tier::{CompiledCode, JitMode, Materialize, Tier, TierExit};
use kiln_vm::value::Value;
use kiln_vm::vm::Vm;
use parking_lot::Mutex;

use crate::abi::{JitCtx, Shadow, EXITED, RETURNED};
use crate::code::CodeUnit;

/// What the tier prints and keeps.
#[derive(Clone, Debug, Default)]
pub struct JitOptions {
    /// One line per compile, refusal and blacklisting on stderr.
    pub verbose: bool,
    /// Print the Cranelift IR or the machine code of every compiled proto on stderr.
    pub dump: Option<Dump>,
    /// Make compiled code take side exits at type guards that pass (a test mode, see
    /// [`stress`]).
    pub exit_every: Option<stress::ExitEvery>,
}

/// What `--jit-dump` prints for every compiled proto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dump {
    /// The Cranelift IR, before optimisation.
    Clif,
    /// The machine code, as Cranelift's final instruction listing.
    Asm,
}

/// Per-program tables compiled calls read (entry point, simple arity, register
/// count), and what the tier learns from side exits, per proto.
struct Tables {
    code: Box<[AtomicU64]>,
    arity: Box<[AtomicU8]>,
    max_regs: Box<[AtomicU16]>,
    /// Left to the interpreter: neither entered nor called any more.
    disabled: Box<[AtomicBool]>,
    feedback: Mutex<HashMap<u32, Feedback>>,
    /// Where recompilation requests go.
    requests: Sender<Msg>,
}

impl Tables {
    fn new(requests: Sender<Msg>) -> Tables {
        let n = params::MAX_PROTOS;
        Tables {
            code: (0..n).map(|_| AtomicU64::new(0)).collect(),
            arity: (0..n).map(|_| AtomicU8::new(u8::MAX)).collect(),
            max_regs: (0..n).map(|_| AtomicU16::new(0)).collect(),
            disabled: (0..n).map(|_| AtomicBool::new(false)).collect(),
            feedback: Mutex::new(HashMap::new()),
            requests,
        }
    }
}

/// Side exits of one proto's current code, and the types its failed guards saw.
#[derive(Default)]
struct Feedback {
    sites: Vec<infer::Site>,
    /// Failed guards that taught nothing new, and exits at instructions not compiled.
    exits: u32,
    expected_exits: u32,
    recompiles: u32,
    /// A recompilation is queued: sites keep accumulating until it runs.
    recompiling: bool,
}

#[derive(Default)]
struct Counters {
    compiled: AtomicU32,
    /// Of those, compiles with loop entries (hot loops entered on the stack).
    loops: AtomicU32,
    recompiled: AtomicU32,
    refused: AtomicU32,
    compile_us: AtomicU64,
    exits: AtomicU64,
    blacklisted: AtomicU32,
}

struct Request {
    program: Arc<Program>,
    proto: ProtoId,
    params: Vec<u8>,
    done: Option<Sender<()>>,
}

/// What the compile thread is asked to do.
enum Msg {
    Compile(Request),
    /// Compile `proto` again with the feedback gathered since its last compile; in
    /// eager mode the asker waits (until the sender is dropped) for it and its
    /// direct callers, so that a run does the same work whatever the timing.
    Recompile(Arc<Program>, ProtoId, Option<Sender<()>>),
    /// Compile `proto` again because a callee's direct variant changed (see
    /// `Jit::direct_callers`).
    Refresh(Arc<Program>, ProtoId),
    /// `proto` was left to the interpreter: free its code when nothing can run it.
    Retire(ProtoId),
    Stop,
}

/// The Cranelift tier.
pub struct CraneliftTier {
    queue: Mutex<Option<Sender<Msg>>>,
    /// Set when the program ends: queued compiles are dropped, not done.
    closing: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl CraneliftTier {
    pub fn new(options: JitOptions) -> CraneliftTier {
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let closing = Arc::new(AtomicBool::new(false));
        let stop = closing.clone();
        let requests = tx.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-jit".into())
            .spawn(move || compile_loop(rx, requests, options, c, stop))
            .ok();
        CraneliftTier {
            queue: Mutex::new(thread.as_ref().map(|_| tx)),
            closing,
            thread: Mutex::new(thread),
            counters,
        }
    }
}

impl Drop for CraneliftTier {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        // Compiled code holds senders too (for recompilation): say stop explicitly.
        if let Some(q) = self.queue.lock().take() {
            let _ = q.send(Msg::Stop);
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        code::collect();
    }
}

impl Tier for CraneliftTier {
    fn request(&self, program: &Arc<Program>, proto: ProtoId, params: &[u8], wait: bool) {
        let Some(queue) = self.queue.lock().clone() else {
            return;
        };
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let req = Request {
            program: program.clone(),
            proto,
            params: params.to_vec(),
            done: wait.then_some(done_tx),
        };
        if queue.send(Msg::Compile(req)).is_ok() && wait {
            let _ = done_rx.recv();
        }
    }

    fn stats(&self) -> String {
        // Replaced code whose threads have moved on counts as freed.
        code::collect();
        let c = &self.counters;
        format!(
            "jit: {} compiled ({} with loop entries, {} recompiles) in {} µs, {} refused, \
             {} left to the interpreter, {} side exits; code modules: {} mapped, {} freed",
            c.compiled.load(Ordering::Relaxed),
            c.loops.load(Ordering::Relaxed),
            c.recompiled.load(Ordering::Relaxed),
            c.compile_us.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
            c.blacklisted.load(Ordering::Relaxed),
            c.exits.load(Ordering::Relaxed),
            code_modules_live(),
            code_modules_freed(),
        )
    }
}

/// The compiler thread: makes every code module (see [`code`]) and the tables.
fn compile_loop(
    rx: Receiver<Msg>,
    requests: Sender<Msg>,
    options: JitOptions,
    counters: Arc<Counters>,
    closing: Arc<AtomicBool>,
) {
    let mut jit = Jit::new(options, counters, requests);
    for msg in rx {
        // Without a JIT on this host everything stays with the interpreter.
        let (Some(jit), false) = (jit.as_mut(), closing.load(Ordering::Relaxed)) else {
            if matches!(msg, Msg::Stop) {
                return;
            }
            continue;
        };
        match msg {
            Msg::Compile(req) => {
                // A proto compiled early, as the callee of another, is not compiled again.
                if !jit.compiled.contains_key(&req.proto.0) {
                    jit.compile(&req.program, req.proto, &req.params);
                }
                drop(req.done);
            }
            Msg::Recompile(program, proto, done) => {
                let params = jit.params_of(proto);
                jit.compile(&program, proto, &params);
                jit.refresh_callers(&program, proto, done.is_some());
            }
            Msg::Refresh(program, proto) => {
                let params = jit.params_of(proto);
                jit.compile(&program, proto, &params);
            }
            Msg::Retire(proto) => jit.retire(proto),
            Msg::Stop => return,
        }
    }
}

/// How many code modules (one per compile, see [`code`]) have been freed in this
/// process.
pub fn code_modules_freed() -> u64 {
    code::units_freed()
}

/// How many code modules are mapped now in this process.
pub fn code_modules_live() -> u64 {
    code::units_made() - code::units_freed()
}

/// Frees the code modules retired so far that no thread can still be running.
pub fn collect_code() {
    code::collect()
}

/// A direct variant (see `translate::Variant`) compiled and in place.
struct Direct {
    /// Its symbol: later compiles import it by this name.
    name: String,
    addr: usize,
    unit: Arc<CodeUnit>,
    params: Vec<infer::Ty>,
    /// The type it returns, if only one.
    ret: Option<infer::Ty>,
}

/// The direct variant of the compile in progress, declared in its module.
struct Pending {
    proto: u32,
    fid: FuncId,
    name: String,
    params: Vec<infer::Ty>,
}

struct Jit {
    isa: cranelift_codegen::isa::OwnedTargetIsa,
    fctx: FunctionBuilderContext,
    options: JitOptions,
    counters: Arc<Counters>,
    tables: Arc<Tables>,
    /// The program the tables describe (compiled calls only reach its protos).
    program: Option<*const Program>,
    proto_sig: Signature,
    /// The helpers' ids, the same in every module (they are declared first, in one
    /// order), which inlined bodies rely on.
    imports: Imports,
    /// The forced-exit counter compiled code asks, in side-exit stress mode.
    exit_stress: Option<&'static stress::ExitStress>,
    /// See `abi::instance_fields`.
    fields_at: i32,
    /// See `abi::array_items`.
    array: abi::ArrayLayout,
    /// Code compiled so far, by proto index, with the parameter tags of its first
    /// compile (recompiles keep them).
    compiled: HashMap<u32, (Arc<JitCode>, Vec<u8>)>,
    /// The current direct variant of each proto that has one.
    direct: HashMap<u32, Direct>,
    /// The direct variant of the compile in progress, until its module is finalized.
    pending: Option<Pending>,
    /// The units whose direct variants the compile in progress calls.
    uses: Vec<Arc<CodeUnit>>,
    /// Per proto: the other protos whose code calls its direct variant, recompiled
    /// when it is (so they call the new one).
    direct_callers: HashMap<u32, HashSet<u32>>,
    /// Functions defined so far (their names are unique, for imports between modules).
    defined: u64,
    /// The direct variants callers inline rather than call.
    inlined: inline::Bodies,
    /// Compiles in progress that compile their callees first.
    nesting: u32,
}

/// Rust functions generated code calls.
struct Imports {
    module_vars: FuncId,
    float_mod: FuncId,
    field_cache_fill: FuncId,
    math: [FuncId; 4],
    exit_stress: FuncId,
}

impl Imports {
    /// Registers every helper's address with a module's builder.
    fn register(builder: &mut JITBuilder) {
        let syms: [(&str, *const u8); 8] = [
            ("kiln_module_vars", abi::module_vars as *const u8),
            ("kiln_float_mod", abi::float_mod as *const u8),
            ("kiln_field_cache_fill", abi::field_cache_fill as *const u8),
            ("kiln_sin", abi::sin as *const u8),
            ("kiln_cos", abi::cos as *const u8),
            ("kiln_exp", abi::exp as *const u8),
            ("kiln_log", abi::ln as *const u8),
            ("kiln_exit_stress", stress::exit_stress as *const u8),
        ];
        for (name, ptr) in syms {
            builder.symbol(name, ptr);
        }
    }

    /// Declares every helper to a new module (before anything else, so the ids are the
    /// same in every module).
    fn declare(module: &mut JITModule) -> Option<Imports> {
        let cc = module.isa().default_call_conv();
        let sig = |params: &[Type], ret: Type| {
            let mut s = Signature::new(cc);
            s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
            s.returns.push(AbiParam::new(ret));
            s
        };
        let mut declare =
            |name: &str, s: Signature| module.declare_function(name, Linkage::Import, &s).ok();
        Some(Imports {
            module_vars: declare("kiln_module_vars", sig(&[I64], I64))?,
            float_mod: declare("kiln_float_mod", sig(&[F64, F64], F64))?,
            field_cache_fill: declare(
                "kiln_field_cache_fill",
                sig(&[I64, I64, I64, I64, I32], I64),
            )?,
            math: [
                declare("kiln_sin", sig(&[F64], F64))?,
                declare("kiln_cos", sig(&[F64], F64))?,
                declare("kiln_exp", sig(&[F64], F64))?,
                declare("kiln_log", sig(&[F64], F64))?,
            ],
            exit_stress: declare("kiln_exit_stress", sig(&[I64], I32))?,
        })
    }

    /// The helpers as seen from one function being built.
    fn refs(
        &self,
        module: &mut JITModule,
        func: &mut cranelift_codegen::ir::Function,
    ) -> [FuncRef; 8] {
        self.ids().map(|id| module.declare_func_in_func(id, func))
    }

    fn ids(&self) -> [FuncId; 8] {
        [
            self.module_vars,
            self.float_mod,
            self.field_cache_fill,
            self.math[0],
            self.math[1],
            self.math[2],
            self.math[3],
            self.exit_stress,
        ]
    }
}

impl Jit {
    fn new(options: JitOptions, counters: Arc<Counters>, requests: Sender<Msg>) -> Option<Jit> {
        let mut flags = cranelift_codegen::settings::builder();
        flags.set("opt_level", "speed").ok()?;
        flags.set("unwind_info", "false").ok()?;
        // The IR verifier costs about a third of compile time; debug builds (and so the
        // test suite's unit tests) keep it.
        let verify = if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        };
        flags.set("enable_verifier", verify).ok()?;
        let isa = cranelift_native::builder()
            .ok()?
            .finish(cranelift_codegen::settings::Flags::new(flags))
            .ok()?;
        let proto_sig = proto_signature(isa.default_call_conv());
        // An empty module maps nothing: dropping it leaks nothing.
        let (_, imports) = Self::module_with(&isa, &HashMap::new())?;
        // A Rust whose boxed slices or vectors the probes do not understand gets no JIT.
        let fields_at = abi::instance_fields()?;
        let array = abi::array_items()?;
        Some(Jit {
            isa,
            fctx: FunctionBuilderContext::new(),
            exit_stress: options.exit_every.map(stress::ExitStress::leak),
            options,
            counters,
            tables: Arc::new(Tables::new(requests)),
            program: None,
            proto_sig,
            imports,
            fields_at,
            array,
            compiled: HashMap::new(),
            direct: HashMap::new(),
            pending: None,
            uses: Vec::new(),
            direct_callers: HashMap::new(),
            defined: 0,
            inlined: inline::Bodies::default(),
            nesting: 0,
        })
    }

    /// A new module for one compile: the helpers declared, and the direct variants
    /// compiled so far resolvable by name.
    fn module_with(
        isa: &cranelift_codegen::isa::OwnedTargetIsa,
        direct: &HashMap<u32, Direct>,
    ) -> Option<(JITModule, Imports)> {
        let mut builder = JITBuilder::with_isa(isa.clone(), default_libcall_names());
        Imports::register(&mut builder);
        for d in direct.values() {
            builder.symbol(d.name.clone(), d.addr as *const u8);
        }
        let mut module = JITModule::new(builder);
        let imports = Imports::declare(&mut module)?;
        Some((module, imports))
    }

    fn params_of(&self, id: ProtoId) -> Vec<u8> {
        self.compiled
            .get(&id.0)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    /// The feedback for the next compile of `id`.
    fn sites(&self, id: ProtoId) -> (Vec<infer::Site>, u32) {
        let mut fb = self.tables.feedback.lock();
        let f = fb.entry(id.0).or_default();
        (f.sites.clone(), f.recompiles)
    }

    /// New code for `id` is in place: its exits start counting afresh.
    fn installed(&self, program: &Program, id: ProtoId) {
        let mut fb = self.tables.feedback.lock();
        let f = fb.entry(id.0).or_default();
        f.recompiling = false;
        f.exits = 0;
        f.expected_exits = 0;
        self.tables.disabled[id.0 as usize].store(false, Ordering::Relaxed);
        program.proto(id).jit.set_dormant(false);
    }

    fn refuse(&self, program: &Program, id: ProtoId, why: &str) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        // A refused recompile leaves the old code, whose exits count again.
        if let Some(f) = self.tables.feedback.lock().get_mut(&id.0) {
            f.recompiling = false;
        }
        if self.options.verbose {
            let p = program.proto(id);
            let (line, _) = p.source.line_col(p.span.start);
            eprintln!("jit: refused {} ({}:{line}): {why}", p.name, p.source.name);
        }
    }

    fn compile(&mut self, program: &Arc<Program>, id: ProtoId, params: &[u8]) {
        let proto = program.proto(id);
        if id.0 as usize >= params::MAX_PROTOS {
            return self.refuse(program, id, "too many protos in the program");
        }
        if proto.code.len() > params::MAX_BYTECODE {
            return self.refuse(program, id, "bytecode too long");
        }
        // The tables serve one program; a second program (an embedder's) gets its own
        // tier.
        let this = Arc::as_ptr(program);
        match self.program {
            None => self.program = Some(this),
            Some(p) if p == this => {}
            Some(_) => return self.refuse(program, id, "the tier already serves another program"),
        }
        let mut started = Instant::now();
        let math = program
            .module(proto.module)
            .std_imports
            .iter()
            .filter(|(_, m)| &**m == "math")
            .map(|(slot, _)| *slot)
            .collect();
        let (sites, recompiles) = self.sites(id);
        let mut facts = infer::Facts {
            hints: infer::hints_from_tags(params),
            math_slots: math,
            ..Default::default()
        }
        .with_sites(sites);
        let an = infer::analyse(proto, &facts, &infer::window_params(proto));
        if an.types[0].is_none() {
            return self.refuse(program, id, "no code");
        }
        let before_callees = started.elapsed();
        self.compile_callees_first(program, id, &an);
        // Callees compiled first report their own time.
        started = Instant::now() - before_callees;
        // Only loop-free protos get a direct variant: a call costs them about as much as
        // their body, while a proto with loops pays for its entry many times over and
        // would only double its compile time.
        let direct = an
            .headers
            .is_empty()
            .then(|| infer::direct_params(proto, &facts));
        let direct = direct.flatten().map(|ps| {
            let (dan, own) = self.analyse_direct(program, id, &an, &mut facts, &ps);
            (ps, dan, own)
        });
        let own = direct.as_ref().and_then(|d| d.2);
        facts.results = self.call_results(program, id, &an, own);
        let an = infer::analyse(proto, &facts, &infer::window_params(proto));
        let fresh = Self::module_with(&self.isa, &self.direct)
            .filter(|(_, imports)| imports.ids() == self.imports.ids());
        let Some((mut module, _)) = fresh else {
            return self.refuse(program, id, "no code module");
        };
        let built = self.build(&mut module, program, id, &an, direct);
        let callees = std::mem::take(&mut self.uses);
        let pending = self.pending.take();
        let (entry, caches, direct_addr) = match built {
            Ok(b) => b,
            Err(e) => {
                // Nothing can reach a failed build's code: its unit is freed at once.
                drop(CodeUnit::new(module, callees, Vec::new()));
                if let Some(p) = &pending {
                    self.inlined.forget(&p.name);
                }
                return self.refuse(program, id, &e);
            }
        };
        let unit = CodeUnit::new(module, callees, caches);
        if let (Some(p), Some(addr)) = (pending, direct_addr) {
            let d = Direct {
                name: p.name,
                addr,
                unit: unit.clone(),
                params: p.params,
                ret: own,
            };
            if let Some(old) = self.direct.insert(id.0, d) {
                self.inlined.forget(&old.name);
            }
        }
        let i = id.0 as usize;
        let simple = proto.nrequired == proto.nparams && !proto.has_rest;
        self.tables.arity[i].store(
            if simple { proto.nparams } else { u8::MAX },
            Ordering::Relaxed,
        );
        self.tables.max_regs[i].store(proto.max_regs, Ordering::Relaxed);
        let us = started.elapsed().as_micros() as u64;
        let c = &self.counters;
        c.compiled.fetch_add(1, Ordering::Relaxed);
        c.loops
            .fetch_add(!an.headers.is_empty() as u32, Ordering::Relaxed);
        c.recompiled
            .fetch_add((recompiles > 0) as u32, Ordering::Relaxed);
        c.compile_us.fetch_add(us, Ordering::Relaxed);
        let name = format!(
            "{} ({}:{})",
            proto.name,
            proto.source.name,
            proto.source.line_col(proto.span.start).0
        );
        if self.options.verbose {
            let again = if recompiles > 0 {
                format!(
                    " (recompile {recompiles}, {} feedback sites)",
                    an.facts.sites.len()
                )
            } else {
                String::new()
            };
            eprintln!(
                "jit: compiled {name} {} ops in {us} µs, {} loop entries{again}",
                proto.code.len(),
                an.headers.len(),
            );
        }
        match self.compiled.get(&id.0) {
            // Recompiled: callers and entries switch to the new code; the old code is
            // freed once no thread can be running it.
            Some((code, _)) => {
                // A loop the new code cannot run (its every iteration now exits) is
                // entered no more; the old code has every entry the new one has.
                for h in &code.headers {
                    let live = h.pc == 0 || an.headers.contains(&(h.pc as usize));
                    h.live.store(live, Ordering::Relaxed);
                }
                code.install(entry, Some(unit));
            }
            None => {
                let header = |pc: usize| Header {
                    pc: pc as u32,
                    charge: an.charge[pc],
                    live: AtomicBool::new(true),
                };
                let mut headers: Vec<Header> = an.headers.iter().map(|&h| header(h)).collect();
                headers.push(header(0));
                let code = Arc::new(JitCode {
                    entry: AtomicUsize::new(entry),
                    index: i,
                    headers,
                    tables: self.tables.clone(),
                    unit: Mutex::new(Some(unit)),
                    counters: self.counters.clone(),
                    verbose: self.options.verbose,
                    name,
                });
                self.tables.code[i].store(entry as u64, Ordering::Release);
                proto.jit.set(code.clone());
                self.compiled.insert(id.0, (code, params.to_vec()));
            }
        }
        self.installed(program, id);
    }

    /// `id` was left to the interpreter: its code is made unreachable and retired,
    /// and later compiles no longer call its direct variant.
    fn retire(&mut self, id: ProtoId) {
        if let Some(d) = self.direct.remove(&id.0) {
            self.inlined.forget(&d.name);
        }
        if let Some((code, _)) = self.compiled.get(&id.0) {
            code.install(0, None);
        }
    }

    /// Defines the variants of `id` in `module` (the direct one first, when `direct`
    /// gives its parameters, analysis and return type: both variants' recursive calls
    /// use it) and finalizes it. Returns the generic entry, the inline caches, and the
    /// direct variant's address.
    #[allow(clippy::type_complexity)]
    fn build(
        &mut self,
        module: &mut JITModule,
        program: &Program,
        id: ProtoId,
        an: &infer::Analysis,
        direct: Option<(Vec<infer::Ty>, infer::Analysis, Option<infer::Ty>)>,
    ) -> Result<(usize, Vec<translate::Caches>, Option<usize>), String> {
        self.uses.clear();
        self.pending = None;
        let cc = module.isa().default_call_conv();
        let mut caches = Vec::new();
        if let Some((ps, dan, _)) = direct {
            let sig = translate::direct_signature(cc, &ps);
            let name = format!("kiln_direct_{}_{}", id.0, self.defined);
            let fid = module
                .declare_function(&name, Linkage::Export, &sig)
                .map_err(|e| format!("declare: {e}"))?;
            self.pending = Some(Pending {
                proto: id.0,
                fid,
                name,
                params: ps.clone(),
            });
            let variant = translate::Variant::Direct(ps);
            caches.push(self.define_guarded(module, program, id, &dan, &variant, fid, sig)?);
        }
        let name = format!("kiln_proto_{}_{}", id.0, self.defined);
        self.defined += 1;
        let sig = self.proto_sig.clone();
        let fid = module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(|e| format!("declare: {e}"))?;
        let generic = translate::Variant::Generic;
        caches.push(self.define_guarded(module, program, id, an, &generic, fid, sig)?);
        module
            .finalize_definitions()
            .map_err(|e| format!("finalize: {e}"))?;
        let entry = module.get_finalized_function(fid) as usize;
        let direct = self
            .pending
            .as_ref()
            .map(|p| module.get_finalized_function(p.fid) as usize);
        Ok((entry, caches, direct))
    }

    /// The analysis of the direct variant of `id` taking `params`, and the type it
    /// returns if one. A recursive proto's own calls are assumed to return the type its
    /// other returns give, if the analysis under that assumption agrees. `facts` get
    /// the result types of calls (of other protos) the variant relies on.
    fn analyse_direct(
        &self,
        program: &Program,
        id: ProtoId,
        an: &infer::Analysis,
        facts: &mut infer::Facts,
        params: &[infer::Ty],
    ) -> (infer::Analysis, Option<infer::Ty>) {
        let proto = program.proto(id);
        facts.results = self.call_results(program, id, an, None);
        let dan = infer::analyse(proto, facts, params);
        let Some(t) = infer::return_type(proto, &dan) else {
            return (dan, None);
        };
        let mut assumed = facts.clone();
        assumed.results = self.call_results(program, id, an, Some(t));
        if assumed.results.len() == facts.results.len() {
            return (dan, Some(t));
        }
        let again = infer::analyse(proto, &assumed, params);
        if infer::return_type(proto, &again) == Some(t) {
            *facts = assumed;
            (again, Some(t))
        } else {
            (dan, Some(t))
        }
    }

    /// The calls of `id` (by pc) whose known callee's direct variant returns one type;
    /// `own` is the type `id` itself returns, for its recursive calls.
    fn call_results(
        &self,
        program: &Program,
        id: ProtoId,
        an: &infer::Analysis,
        own: Option<infer::Ty>,
    ) -> Vec<(u32, infer::Ty)> {
        known_callees(program, id, an)
            .iter()
            .enumerate()
            .filter_map(|(pc, k)| {
                let k = k.as_ref()?;
                let t = if k.proto == id.0 {
                    own?
                } else {
                    self.direct.get(&k.proto)?.ret?
                };
                Some((pc as u32, t))
            })
            .collect()
    }

    /// Compiles the known callees of `id` that are not compiled yet, so its calls find
    /// their code (and direct variants) ready instead of leaving for the interpreter at
    /// every call. Each is compiled for the argument types the call site has.
    fn compile_callees_first(&mut self, program: &Arc<Program>, id: ProtoId, an: &infer::Analysis) {
        if self.nesting >= params::MAX_CALLEE_NESTING {
            return;
        }
        let proto = program.proto(id);
        for (pc, k) in known_callees(program, id, an).iter().enumerate() {
            let (Some(k), Some(st)) = (k, &an.types[pc]) else {
                continue;
            };
            if k.proto == id.0 || self.compiled.contains_key(&k.proto) {
                continue;
            }
            let a = proto.code[pc].a();
            let tags: Vec<u8> = (0..k.nparams as usize)
                .map(|i| infer::tag_of_ty(st[a + 1 + i]))
                .collect();
            let callee = ProtoId(k.proto);
            program.proto(callee).jit.claim();
            self.nesting += 1;
            self.compile(program, callee, &tags);
            self.nesting -= 1;
        }
    }

    /// `id` was recompiled: the protos calling its direct variant are compiled again to
    /// call the new one, now if `now`, else queued behind other work.
    fn refresh_callers(&mut self, program: &Arc<Program>, id: ProtoId, now: bool) {
        let callers: Vec<u32> = self
            .direct_callers
            .get(&id.0)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for caller in callers.into_iter().map(ProtoId) {
            if now {
                let params = self.params_of(caller);
                self.compile(program, caller, &params);
            } else {
                let _ = self
                    .tables
                    .requests
                    .send(Msg::Refresh(program.clone(), caller));
            }
        }
    }

    /// [`Jit::define`], with a panic inside it (in Cranelift or in the translator: a
    /// bug) turned into an error, so the proto is refused and stays interpreted rather
    /// than the compile thread dying. The panic's message is not printed (see
    /// [`quiet_compile_panics`]); `--jit-verbose` shows it as the refusal's reason.
    #[allow(clippy::too_many_arguments)]
    fn define_guarded(
        &mut self,
        module: &mut JITModule,
        program: &Program,
        id: ProtoId,
        an: &infer::Analysis,
        variant: &translate::Variant,
        fid: FuncId,
        sig: Signature,
    ) -> Result<translate::Caches, String> {
        quiet_compile_panics();
        let run = AssertUnwindSafe(|| self.define(module, program, id, an, variant, fid, sig));
        COMPILING.with(|c| c.set(true));
        let result = std::panic::catch_unwind(run);
        COMPILING.with(|c| c.set(false));
        result.unwrap_or_else(|panic| {
            // The builder's scratch state may be half-used.
            self.fctx = FunctionBuilderContext::new();
            let why = kiln_vm::error::panic_message(panic.as_ref());
            Err(format!("internal error in the compiler: {why}"))
        })
    }

    /// Translates one variant of proto `id` and defines it as function `fid`; returns
    /// the inline-cache words its code uses.
    #[allow(clippy::too_many_arguments)]
    fn define(
        &mut self,
        module: &mut JITModule,
        program: &Program,
        id: ProtoId,
        an: &infer::Analysis,
        variant: &translate::Variant,
        fid: FuncId,
        sig: Signature,
    ) -> Result<translate::Caches, String> {
        let proto = program.proto(id);
        let mut ctx = module.make_context();
        ctx.func.signature = sig;
        // The direct variants this code calls, by their ids in `module`.
        let mut linked = HashMap::new();
        ctx.func.name = UserFuncName::user(0, id.0);
        let caches = {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut self.fctx);
            let [module_vars, float_mod, field_cache_fill, sin, cos, exp, log, exit_stress] =
                self.imports.refs(module, b.func);
            let proto_sig = b.import_signature(self.proto_sig.clone());
            let helpers = translate::Helpers {
                module_vars,
                float_mod,
                field_cache_fill,
                math: [sin, cos, exp, log],
                proto_sig,
                exit_stress: self
                    .exit_stress
                    .map(|s| (exit_stress, s as *const stress::ExitStress as i64)),
            };
            let fields = infer::field_slots(program);
            let functions = functions_of(program, id);
            let mut callees = known_callees(program, id, an);
            let mut refs = HashMap::new();
            for k in callees.iter_mut().flatten() {
                let Some((callee_fid, params, name)) = direct_in(
                    &self.direct,
                    self.pending.as_ref(),
                    &mut self.uses,
                    module,
                    k.proto,
                ) else {
                    continue;
                };
                let func = *refs
                    .entry(k.proto)
                    .or_insert_with(|| module.declare_func_in_func(callee_fid, b.func));
                let inlined = self.inlined.has(&name);
                linked.insert(callee_fid.as_u32(), name);
                k.direct = Some(translate::DirectCallee {
                    func,
                    params,
                    inlined,
                    // Direct variants are loop-free.
                    charges: infer::may_charge(program.proto(ProtoId(k.proto)), &[]),
                });
                if k.proto != id.0 {
                    self.direct_callers.entry(k.proto).or_default().insert(id.0);
                }
            }
            let tables = translate::TableAddrs {
                code: self.tables.code.as_ptr() as i64,
                arity: self.tables.arity.as_ptr() as i64,
                max_regs: self.tables.max_regs.as_ptr() as i64,
            };
            let layout = translate::Layout {
                fields_at: self.fields_at,
                array: self.array,
                tables,
            };
            let around = translate::Around {
                callees,
                fields: &fields,
                functions: &functions,
                id: id.0,
            };
            let (b, c) = translate::Translator::new(b, proto, an, helpers, layout, around, variant)
                .translate();
            b.finalize(module.target_config());
            c
        };
        if let (translate::Variant::Direct(_), Some(p)) = (variant, &self.pending) {
            let helpers = self.imports.ids().map(|f| f.as_u32());
            self.inlined
                .offer(&p.name, fid, &ctx.func, |f| helpers.contains(&f));
        }
        // After the offer: a recursive body inlines itself, one level deep.
        self.inlined.inline_into(&mut ctx, &linked)?;
        let which = match variant {
            translate::Variant::Generic => "",
            translate::Variant::Direct(_) => " (direct)",
        };
        if self.options.dump == Some(Dump::Clif) {
            eprintln!("jit: IR of {}{which}:\n{}", proto.name, ctx.func.display());
        }
        ctx.set_disasm(self.options.dump == Some(Dump::Asm));
        module
            .define_function(fid, &mut ctx)
            .map_err(|e| format!("cranelift: {e:?}"))?;
        if let Some(asm) = ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
            eprintln!("jit: machine code of {}{which}:\n{asm}", proto.name);
        }
        module.clear_context(&mut ctx);
        Ok(caches)
    }
}

/// The direct variant of `proto` as a function of `module`: this compile's own
/// (`pending`), or one compiled before, declared as an import (`uses` then gets its
/// unit, which this compile's unit keeps mapped). With its parameter types and name.
fn direct_in(
    direct: &HashMap<u32, Direct>,
    pending: Option<&Pending>,
    uses: &mut Vec<Arc<CodeUnit>>,
    module: &mut JITModule,
    proto: u32,
) -> Option<(FuncId, Vec<infer::Ty>, String)> {
    if let Some(p) = pending.filter(|p| p.proto == proto) {
        return Some((p.fid, p.params.clone(), p.name.clone()));
    }
    let d = direct.get(&proto)?;
    let sig = translate::direct_signature(module.isa().default_call_conv(), &d.params);
    let fid = module
        .declare_function(&d.name, Linkage::Import, &sig)
        .ok()?;
    if !uses.iter().any(|u| Arc::ptr_eq(u, &d.unit)) {
        uses.push(d.unit.clone());
    }
    Some((fid, d.params.clone(), d.name.clone()))
}

/// What each call site of `proto` can know about its callee before running.
/// The constant function slots of `id`'s module (see `infer::module_functions`).
fn functions_of(program: &Program, id: ProtoId) -> Vec<(u16, u32)> {
    let module = program.module(program.proto(id).module);
    infer::module_functions(program.proto(module.main), &module.consts)
}

fn known_callees(
    program: &Program,
    id: ProtoId,
    an: &infer::Analysis,
) -> Vec<Option<translate::Callee>> {
    let proto = program.proto(id);
    let this = id.0;
    infer::known_callees(proto, &an.leaders, &functions_of(program, id))
        .into_iter()
        .map(|id| {
            let p = program.proto(ProtoId(id?));
            // Only protos the tables cover can be compiled (and looked up by offset).
            let simple =
                p.nrequired == p.nparams && !p.has_rest && (id? as usize) < params::MAX_PROTOS;
            simple.then_some(translate::Callee {
                proto: id?,
                nparams: p.nparams,
                max_regs: p.max_regs,
                direct: None,
                recursive: id? == this,
            })
        })
        .collect()
}

thread_local! {
    /// Set while the compile thread runs [`Jit::define`].
    static COMPILING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs, once per process, a panic hook that stays silent for panics inside a
/// compile (they become refusals, see [`Jit::define_guarded`]) and passes every other
/// panic to the hook that was there before.
fn quiet_compile_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !COMPILING.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
}

/// The signature every compiled proto has (see [`abi`]).
fn proto_signature(cc: CallConv) -> Signature {
    let mut sig = Signature::new(cc);
    for _ in 0..5 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.params.push(AbiParam::new(I64));
    sig.returns.push(AbiParam::new(I32));
    sig
}

/// Compiled code of one proto.
struct JitCode {
    /// The current code (recompilation replaces it; 0 once left to the interpreter).
    entry: AtomicUsize,
    /// The proto's index in the tables.
    index: usize,
    /// Where the code can be entered (those of the first compile; a recompile may
    /// turn some off).
    headers: Vec<Header>,
    tables: Arc<Tables>,
    /// The unit `entry` is in: mapped while this code can be entered.
    unit: Mutex<Option<Arc<CodeUnit>>>,
    counters: Arc<Counters>,
    verbose: bool,
    name: String,
}

impl JitCode {
    /// Makes `entry` (in `unit`; 0 and none: nothing) the code of this proto, for the
    /// interpreter and for compiled callers, and retires the code it replaces.
    fn install(&self, entry: usize, unit: Option<Arc<CodeUnit>>) {
        let old = std::mem::replace(&mut *self.unit.lock(), unit);
        self.entry.store(entry, Ordering::Release);
        self.tables.code[self.index].store(entry as u64, Ordering::Release);
        if let Some(old) = old {
            code::retire(old);
        }
    }
}

/// A pc compiled code can be entered at: the function start or a loop header.
struct Header {
    pc: u32,
    /// The fuel entering charges at once (a loop header charges an iteration on entry,
    /// before any work).
    charge: u32,
    /// The current code has this entry.
    live: AtomicBool,
}

type Entry = unsafe extern "C" fn(*mut JitCtx, *mut Value, u64, u64, *mut Value, u64) -> u32;

thread_local! {
    /// The shadow stack of compiled calls, reused across entries on this thread.
    static SHADOW: std::cell::RefCell<Vec<Shadow>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl CompiledCode for JitCode {
    fn has_entry(&self, pc: u32) -> bool {
        !self.tables.disabled[self.index].load(Ordering::Relaxed)
            && self
                .headers
                .iter()
                .any(|h| h.pc == pc && h.live.load(Ordering::Relaxed))
    }

    fn run(&self, vm: &mut Vm, pc: u32) -> TierExit {
        let wait = vm.settings.tier.mode == JitMode::Eager;
        let st = vm.tier_state();
        let (closure, module) = match (st.closure, st.module) {
            (Value::Func(c), Value::Module(m)) => (c.addr() as u64, m.addr() as u64),
            _ => {
                return TierExit::Resume {
                    pc,
                    frames: Vec::new(),
                }
            }
        };
        let base = st.base;
        SHADOW.with(|shadow| {
            let mut shadow = shadow.borrow_mut();
            shadow.clear();
            let depth_left = st.depth_left.min(params::MAX_NATIVE_DEPTH);
            shadow.reserve(depth_left + 1);
            let stack = st.stack.as_mut_ptr();
            let len = st.stack.len();
            let mut ctx = JitCtx {
                // SAFETY: `len` is the stack's length, so this is one past its end.
                stack_end: unsafe { stack.add(len) },
                fuel: *st.fuel,
                builtins: st.builtins,
                exit_pc: 0,
                shadow: shadow.as_mut_ptr(),
                shadow_len: 0,
            };
            // Code retired from now on stays mapped until this thread unpins (see `code`).
            let pinned = crossbeam_epoch::pin();
            let entry = self.entry.load(Ordering::Acquire);
            if entry == 0 {
                return TierExit::Resume {
                    pc,
                    frames: Vec::new(),
                };
            }
            // SAFETY: `entry` was produced by Cranelift for a function of type `Entry`
            // and stays mapped while this thread is pinned (it was this code's entry
            // after the pin, so it is retired, if ever, after the pin too).
            let f: Entry = unsafe { std::mem::transmute::<usize, Entry>(entry) };
            // SAFETY: the frame's window `stack[base..base + max_regs]` is in bounds (the
            // interpreter sized the stack when it pushed the frame), and generated code
            // stays below `stack_end` for callee windows. `closure` and `module` are live
            // (the frame holds them); the shadow buffer has room for `depth_left + 1`
            // entries and compiled calls push at most `depth_left`. No Rust reference to
            // the stack or heap objects is held across the call.
            let status = unsafe {
                f(
                    &mut ctx,
                    stack.add(base),
                    closure,
                    module,
                    st.module_vars,
                    (depth_left as u64) << 32 | pc as u64,
                )
            };
            drop(pinned);
            // Work done in compiled code, not counting the charge for entering a loop.
            let entry_charge = self
                .headers
                .iter()
                .find(|h| h.pc == pc)
                .map_or(0, |h| h.charge);
            let steps = (*st.fuel - ctx.fuel - entry_charge as i64).max(0) as u64;
            *st.fuel = ctx.fuel;
            if status == RETURNED {
                return TierExit::Returned(st.stack[base - 1]);
            }
            debug_assert_eq!(status, EXITED);
            // SAFETY: generated code wrote `shadow_len` initialised entries (each a
            // resume pc, a window pointer into the stack and a copy of a live closure
            // value), within the reserved capacity.
            unsafe { shadow.set_len(ctx.shadow_len as usize) };
            shadow.reverse();
            let exit_pc = ctx.exit_pc as u32;
            let base_of =
                |s: &Shadow| (s.regs as usize - stack as usize) / std::mem::size_of::<Value>();
            let (proto, inner_base) = shadow
                .last()
                .map_or((self.index as u32, base), |s| (s.proto as u32, base_of(s)));
            let exit = Exit::decode(ctx.exit_pc, |r| st.stack[inner_base + r].tag());
            self.note_exit(st.program, proto, exit_pc, exit, steps, wait);
            let resume = |i: usize| shadow.get(i).map_or(exit_pc, |s| s.resume_pc as u32);
            let frames = shadow
                .iter()
                .enumerate()
                .map(|(i, s)| Materialize {
                    closure: s.closure,
                    base: base_of(s),
                    pc: resume(i + 1),
                })
                .collect();
            TierExit::Resume {
                pc: resume(0),
                frames,
            }
        })
    }
}

/// Why compiled code stopped, from the exit word it left in the context.
#[derive(Clone, Copy, Debug)]
enum Exit {
    /// The fuel grant ran out: nothing to learn.
    Fuel,
    /// An instruction compiled code does not handle.
    Expected,
    /// A failed guard on register `reg`, which held a value of tag `tag`.
    Type { reg: u16, tag: u8 },
    /// Another failed check (a zero divisor, an index out of range, ...).
    Other,
}

impl Exit {
    fn decode(word: u64, tag_of: impl Fn(usize) -> u8) -> Exit {
        let reg = (word >> abi::EXIT_REG_SHIFT) as u16;
        if word & abi::FUEL_EXIT as u64 != 0 {
            Exit::Fuel
        } else if word & abi::EXPECTED_EXIT as u64 != 0 {
            Exit::Expected
        } else if reg > 0 {
            Exit::Type {
                reg: reg - 1,
                tag: tag_of(reg as usize - 1),
            }
        } else {
            Exit::Other
        }
    }
}

impl JitCode {
    /// Learns from an exit of proto `index`'s code at `pc`, after `steps` of work in
    /// compiled code. A failed type guard that saw a new type is feedback: the proto is
    /// recompiled with it (a few times at most). Other exits count toward leaving the
    /// proto to the interpreter, unless the entry did enough work to pay for itself.
    fn note_exit(
        &self,
        program: &Arc<Program>,
        index: u32,
        pc: u32,
        exit: Exit,
        steps: u64,
        wait: bool,
    ) {
        if matches!(exit, Exit::Fuel) {
            return;
        }
        self.counters.exits.fetch_add(1, Ordering::Relaxed);
        let mut fb = self.tables.feedback.lock();
        let f = fb.entry(index).or_default();
        if f.recompiling {
            // Exits of code already being replaced say nothing about the new code.
            return;
        }
        if let Exit::Type { reg, tag } = exit {
            let site = infer::Site {
                pc,
                reg,
                ty: infer::ty_of_tag(tag),
            };
            if !f.sites.contains(&site) && f.recompiles < params::MAX_RECOMPILES {
                f.sites.retain(|s| (s.pc, s.reg) != (pc, reg));
                f.sites.push(site);
                if !f.recompiling {
                    f.recompiling = true;
                    f.recompiles += 1;
                    drop(fb);
                    return self.recompile(program, index, wait);
                }
                return;
            }
        }
        if steps >= params::STEPS_PER_EXIT {
            return;
        }
        let expected = matches!(exit, Exit::Expected);
        let (count, limit) = if expected {
            (&mut f.expected_exits, params::MAX_EXPECTED_EXITS)
        } else {
            (&mut f.exits, params::MAX_EXITS)
        };
        *count += 1;
        if *count != limit {
            return;
        }
        let n = *count;
        drop(fb);
        // Neither the interpreter nor compiled callers enter it any more.
        let i = index as usize;
        self.tables.disabled[i].store(true, Ordering::Relaxed);
        self.tables.code[i].store(0, Ordering::Release);
        let _ = self.tables.requests.send(Msg::Retire(ProtoId(index)));
        program.proto(ProtoId(index)).jit.set_dormant(true);
        self.counters.blacklisted.fetch_add(1, Ordering::Relaxed);
        if self.verbose {
            let why = if expected {
                "instructions it does not compile"
            } else {
                "failed guards"
            };
            let whose = if i == self.index {
                self.name.clone()
            } else {
                format!("proto {i} (called from {})", self.name)
            };
            eprintln!(
                "jit: left {whose} to the interpreter after {n} exits at {why} (last at pc {pc})"
            );
        }
    }

    /// Asks for a recompile. The program comes from the running machine rather than
    /// from this code: code the program owns must not keep a (weak) reference to it,
    /// or an embedder could never add modules to it again.
    fn recompile(&self, program: &Arc<Program>, index: u32, wait: bool) {
        let (done, finished) = crossbeam_channel::bounded(1);
        let msg = Msg::Recompile(program.clone(), ProtoId(index), wait.then_some(done));
        if self.tables.requests.send(msg).is_ok() && wait {
            let _ = finished.recv();
        }
    }
}
