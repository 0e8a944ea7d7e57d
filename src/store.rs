//! `Store`: one run's state — its heap, loaded modules, output, fuel and interrupt
//! flag — in the spirit of wasmtime's `Store`. Everything a store hands out
//! ([`Module`], [`TypedFunc`]) names the store it came from and is refused by another.
//!
//! A store is used by one thread at a time (`&mut self`), but it is `Send`, and its
//! [`InterruptHandle`] may be raised from any thread. A limit or an error ends only the
//! call it happened in: the store is ready for the next call at once.
//!
//! Tasks that scripts `spawn` belong to the store and outlive the call that started
//! them: they run when the host calls [`Store::run_tasks`] (once a frame, say), on the
//! host's thread, and sleeping ones wake once the engine's clock passes their deadline.
//! Tasks started while an owner tag is set ([`Store::set_owner`]) carry it, as do the
//! tasks they start; [`Store::cancel_owner`] ends them all (their `defer`s run).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use kiln_gc::HeapStats;
use kiln_vm::sched::HostTasks;
use kiln_vm::{ModuleId, Output, Vm};
use parking_lot::Mutex;

use crate::convert::{mismatch, FromValue, IntoArgs, IntoValue};
use crate::{Engine, Error};

/// Numbers stores, so a handle from one store is refused by another.
static NEXT_STORE: AtomicU64 = AtomicU64::new(1);

/// The state of one run: see the module docs.
pub struct Store {
    vm: Vm,
    tasks: HostTasks,
    id: u64,
    interrupt: Arc<AtomicBool>,
    captured: Option<Captured>,
    /// Set when a call panicked (see [`Store::guarded`]).
    poisoned: bool,
}

/// A module loaded into a store.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    id: ModuleId,
    store: u64,
}

/// A script function looked up once and called many times with typed arguments `A`
/// (a tuple) and result `R`. Holds no borrow: pass the store to each call.
pub struct TypedFunc<A, R> {
    slot: usize,
    store: u64,
    _sig: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for TypedFunc<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for TypedFunc<A, R> {}

impl<A, R> std::fmt::Debug for TypedFunc<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TypedFunc({}:{})", self.store, self.slot)
    }
}

/// Raises a store's interrupt from any thread: the running call stops with
/// `ErrorKind::Limit(Limit::Interrupted)` within about a millisecond.
#[derive(Clone, Debug)]
pub struct InterruptHandle {
    flag: Arc<AtomicBool>,
}

impl InterruptHandle {
    /// Stops the call running now (or the next one, if none is).
    pub fn interrupt(&self) {
        self.flag.store(true, Ordering::Release);
    }
}

/// Output of a store without stdio, kept for the host to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Store {
    /// A new store of `engine`, with an empty heap.
    pub fn new(engine: &Engine) -> Store {
        let interrupt = Arc::new(AtomicBool::new(false));
        let mut settings = engine.settings();
        settings.interrupt = Some(interrupt.clone());
        let captured = (!engine.has_stdio()).then(Captured::default);
        let output = || match &captured {
            Some(c) => Output {
                out: Box::new(c.clone()),
                err: Box::new(c.clone()),
            },
            None => Output::stdio(),
        };
        let reporter = Arc::new(
            |id: u64, err: &kiln_vm::KilnError, out: &mut dyn std::io::Write| {
                let _ = writeln!(out, "error in task {id}: {err}");
            },
        );
        let tasks = HostTasks::new(settings.clone(), output(), reporter);
        let program = Arc::new(kiln_vm::Program::default());
        let mut vm = Vm::new(program, settings, output());
        tasks.attach(&mut vm);
        Store {
            vm,
            tasks,
            id: NEXT_STORE.fetch_add(1, Ordering::Relaxed),
            interrupt,
            captured,
            poisoned: false,
        }
    }

    /// Compiles and runs `source`; returns the value of its final expression
    /// statement converted to `T` (nil when it ends with a statement).
    pub fn eval<T: FromValue>(&mut self, source: &str) -> Result<T, Error> {
        self.guarded(|store| {
            let v = store.vm.eval("<eval>", source)?;
            store.convert(v)
        })
    }

    /// Runs `call`, which runs script code. A panic in it (a bug in Kiln or in a host
    /// function) becomes an [`ErrorKind::Internal`](kiln_vm::ErrorKind::Internal) error
    /// and poisons the store: its machine may be half-way through an update, so every
    /// later call fails too (tasks are different: a task's panic loses only its own
    /// heap, see [`Store::run_tasks`]).
    fn guarded<R>(
        &mut self,
        call: impl FnOnce(&mut Store) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if self.poisoned {
            return Err(Error::host(
                "this store is unusable: an earlier call ended with an internal error",
            ));
        }
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(self))).unwrap_or_else(
            |panic| {
                self.poisoned = true;
                Err(kiln_vm::KilnError::internal(panic.as_ref()).into())
            },
        )
    }

    /// Compiles `source` as module `name` (its name in messages and traces) and runs
    /// its top level.
    pub fn load(&mut self, name: &str, source: &str) -> Result<Module, Error> {
        let id = self.guarded(|store| Ok(store.vm.load_module(name, source)?))?;
        Ok(Module { id, store: self.id })
    }

    /// Reads the file at `path` (the host's own access, not a script's) and loads it
    /// as a module named by its path. Its file imports need
    /// [`Engine::with_fs`](crate::Engine::with_fs).
    pub fn load_file(&mut self, path: impl AsRef<std::path::Path>) -> Result<Module, Error> {
        let path = path.as_ref();
        let name = path.to_string_lossy().into_owned();
        let bytes =
            std::fs::read(path).map_err(|e| Error::host(format!("cannot read \"{name}\": {e}")))?;
        let text = kiln_vm::loader::decode_source(&name, bytes)
            .map_err(|d| Error::from(kiln_vm::KilnError::compile(vec![d])))?;
        self.load(&name, &text)
    }

    /// Function `name` of `module` as a typed handle, checked once here: it must be a
    /// function that accepts `A::COUNT` arguments.
    pub fn func<A: IntoArgs, R: FromValue>(
        &mut self,
        module: Module,
        name: &str,
    ) -> Result<TypedFunc<A, R>, Error> {
        let f = self.var_value(module, name)?;
        if let Some(msg) = self.vm.arity_mismatch(f, A::COUNT) {
            return Err(Error::host(format!("{name}: {msg}")));
        }
        Ok(TypedFunc {
            slot: self.vm.pin(f),
            store: self.id,
            _sig: PhantomData,
        })
    }

    /// Module variable `name`, converted to `T`.
    pub fn get<T: FromValue>(&mut self, module: Module, name: &str) -> Result<T, Error> {
        let v = self.var_value(module, name)?;
        self.convert(v)
    }

    /// Sets module variable `name` (declared by the module; `const`s may have been
    /// folded into its code, so set only `let` variables).
    pub fn set<T: IntoValue>(&mut self, module: Module, name: &str, value: T) -> Result<(), Error> {
        self.check(module.store)?;
        let v = value
            .into_value(&mut self.vm)
            .map_err(|f| Error::host(fault_text(f)))?;
        if self.vm.set_module_var(module.id, name, v) {
            Ok(())
        } else {
            Err(Error::host(format!("module has no variable `{name}`")))
        }
    }

    fn var_value(&mut self, module: Module, name: &str) -> Result<kiln_vm::Value, Error> {
        self.check(module.store)?;
        match self.vm.module_var(module.id, name) {
            Some(kiln_vm::Value::Undef) => {
                Err(Error::host(format!("`{name}` used before initialization")))
            }
            Some(v) => Ok(v),
            None => Err(Error::host(format!("module has no variable `{name}`"))),
        }
    }

    fn convert<T: FromValue>(&self, v: kiln_vm::Value) -> Result<T, Error> {
        T::from_value(v, &self.vm).map_err(|want| Error::host(mismatch(&want, v, &self.vm)))
    }

    fn check(&self, store: u64) -> Result<(), Error> {
        if store == self.id {
            Ok(())
        } else {
            Err(Error::host("this handle belongs to another store"))
        }
    }

    /// Sets the fuel of each following call from the host (`None`: unbounded). Tasks
    /// keep the engine's fuel, counted over each task's life.
    pub fn set_fuel(&mut self, steps: Option<u64>) {
        self.vm.settings.fuel = steps;
    }

    /// Fuel the last call spent.
    pub fn fuel_spent(&self) -> u64 {
        self.vm.fuel_spent()
    }

    /// A handle that stops this store's running call from another thread.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        InterruptHandle {
            flag: self.interrupt.clone(),
        }
    }

    /// What scripts printed since the last call (stores without stdio capture it).
    pub fn take_output(&mut self) -> String {
        self.vm.flush();
        match &self.captured {
            Some(c) => String::from_utf8_lossy(&std::mem::take(&mut *c.0.lock())).into_owned(),
            None => String::new(),
        }
    }

    /// Runs the tasks scripts spawned until none is ready: those just started or woken,
    /// and sleeping ones whose deadline has passed on the engine's clock. A task that
    /// fails while no script holds its handle is reported on the store's error output
    /// (one whose handle is still held, when the store is dropped, unless joined).
    /// Errors when a task ended the whole run (`os.exit`); the other tasks stay.
    pub fn run_tasks(&mut self) -> Result<(), Error> {
        self.guarded(|store| Ok(store.tasks.run_ready()?))
    }

    /// Tags the tasks spawned by the following calls (and the tasks they spawn) with
    /// `owner`, a number of the host's choosing (an entity id); 0 for none.
    pub fn set_owner(&mut self, owner: u64) {
        self.tasks.set_owner(owner);
    }

    /// Cancels every task tagged `owner` and runs them to their end (their `defer`s
    /// run; a task that catches `task cancelled` and goes on waiting is cancelled again
    /// at its next wait). Returns how many were cancelled.
    pub fn cancel_owner(&mut self, owner: u64) -> Result<usize, Error> {
        let n = self.tasks.cancel_owner(owner);
        self.run_tasks()?;
        Ok(n)
    }

    /// Tasks alive (started and not ended).
    pub fn live_tasks(&self) -> usize {
        self.tasks.live()
    }

    /// The heap's figures: live bytes, objects, collections.
    pub fn heap_stats(&self) -> HeapStats {
        self.vm.heap.stats()
    }

    /// A full garbage collection now.
    pub fn collect_garbage(&mut self) {
        self.vm.collect_garbage();
    }
}

/// The message of a fault raised while converting a host value.
fn fault_text(f: kiln_vm::Fault) -> String {
    match f {
        kiln_vm::Fault::Error(msg) => msg,
        other => format!("{other:?}"),
    }
}

impl<A: IntoArgs, R: FromValue> TypedFunc<A, R> {
    /// Calls the function in `store` (the one it was looked up in) with `args`.
    #[inline]
    pub fn call(&self, store: &mut Store, args: A) -> Result<R, Error> {
        store.check(self.store)?;
        store.guarded(|store| {
            let vm = &mut store.vm;
            let f = vm.pinned(self.slot);
            vm.begin_host_call(f, A::COUNT)?;
            args.write(vm).map_err(|f| Error::host(fault_text(f)))?;
            let v = vm.finish_host_call(A::COUNT)?;
            store.convert(v)
        })
    }
}
