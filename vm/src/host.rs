//! Host extensions: the functions, modules and object types an embedding host adds to
//! the language (the root crate's `kiln::Engine` builds them).
//!
//! A [`HostRegistry`] travels in [`crate::Capabilities`], because what a host registers
//! is exactly what it lets a script touch. The compiler resolves a host global after the
//! built-ins (its `LoadBuiltin` index follows theirs, so compiled code reads it from the
//! same table) and `import name` of a host module after the standard modules (its
//! `ImportStd` index follows theirs). Host objects are [`Value::Host`] handles to a
//! shared [`HostCell`]: a script heap holds a reference, the host may hold another, and
//! the Rust value inside is dropped when the last reference goes or the host destroys
//! it, after which any use from a script is a clean error.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use kiln_gc::{Trace, Tracer};
use parking_lot::Mutex;

use crate::error::{Fault, KilnError};
use crate::fault;
use crate::program::{ModuleId, Program};
use crate::value::{find_name, Native, Value};
use crate::vm::Vm;

/// Any native's code, a built-in's or a host's: called with the machine and the
/// arguments (a method's receiver first); errors are script errors at the call site.
pub type NativeCall = dyn Fn(&mut Vm, &[Value]) -> Result<Value, Fault> + Send + Sync;

/// A host function.
pub type HostFn = Arc<NativeCall>;

/// A named host function.
pub struct HostFunc {
    pub name: Arc<str>,
    pub func: HostFn,
}

/// A module of host functions, imported with `import name`.
pub struct HostModule {
    pub name: Arc<str>,
    pub members: Vec<Arc<HostFunc>>,
}

/// A field of a host type: its getter (called with the object) and setter (called with
/// the object and the new value); a missing one makes the field read- or write-only.
pub struct HostField {
    pub name: Arc<str>,
    pub get: Option<HostFn>,
    pub set: Option<HostFn>,
}

/// A host type as scripts see it: fields and methods, like a struct.
pub struct HostType {
    pub name: Arc<str>,
    pub fields: Vec<HostField>,
    pub methods: Vec<Arc<HostFunc>>,
}

impl HostType {
    fn field(&self, name: &str) -> Option<&HostField> {
        find_name(self.fields.iter().map(|f| &*f.name), name).map(|i| &self.fields[i])
    }

    fn method(&self, name: &str) -> Option<&Arc<HostFunc>> {
        find_name(self.methods.iter().map(|m| &*m.name), name).map(|i| &self.methods[i])
    }
}

/// Everything a host registered.
#[derive(Clone, Default)]
pub struct HostRegistry {
    /// Functions callable by name from every script.
    pub globals: Vec<Arc<HostFunc>>,
    pub modules: Vec<Arc<HostModule>>,
    /// Host types by the Rust type they wrap.
    pub types: Vec<(std::any::TypeId, Arc<HostType>)>,
}

impl HostRegistry {
    /// The index of host global `name`.
    pub fn global(&self, name: &str) -> Option<usize> {
        self.globals.iter().position(|g| &*g.name == name)
    }

    /// The host type registered for Rust type `id`.
    pub fn host_type(&self, id: std::any::TypeId) -> Option<&Arc<HostType>> {
        self.types.iter().find(|(t, _)| *t == id).map(|(_, ty)| ty)
    }

    /// The index of host module `name`.
    pub fn module(&self, name: &str) -> Option<usize> {
        self.modules.iter().position(|m| &*m.name == name)
    }
}

impl fmt::Debug for HostRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostRegistry")
            .field("globals", &self.globals.len())
            .field("modules", &self.modules.len())
            .finish()
    }
}

/// The Rust value of a host object, `None` once the host destroyed it. A lock, because
/// copies of the handle may live in tasks on other workers.
pub type HostCell = Mutex<Option<Box<dyn Any + Send>>>;

/// A host object as one heap sees it.
#[derive(Clone)]
pub struct HostRef {
    pub ty: Arc<HostType>,
    pub cell: Arc<HostCell>,
}

impl Trace for HostRef {
    fn trace(&self, _: &mut Tracer) {}
}

impl HostRef {
    /// Runs `f` on the object's value as a `T`. Errors (script errors) when the host
    /// destroyed it, when it is already in use further up (a method given its own
    /// receiver) or when it is not a `T`.
    pub fn with<T: Any, R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, Fault> {
        let name = &self.ty.name;
        let mut guard = self
            .cell
            .try_lock()
            .ok_or_else(|| fault!("{name} is already in use"))?;
        let value = guard
            .as_mut()
            .ok_or_else(|| fault!("{name} was destroyed by the host"))?;
        let value = value
            .downcast_mut::<T>()
            .ok_or_else(|| fault!("internal error: {name} holds another Rust type"))?;
        Ok(f(value))
    }
}

fn host_ref(vm: &Vm, v: Value) -> Option<&HostRef> {
    match v {
        Value::Host(h) => Some(h.get(&vm.heap)),
        _ => None,
    }
}

/// `obj.name` on a host object: its getter, or a method as a function value.
pub(crate) fn get_field(vm: &mut Vm, obj: Value, name: &str) -> Result<Value, Fault> {
    let Some(h) = host_ref(vm, obj) else {
        return Err(fault!("internal error: not a host object"));
    };
    let ty = h.ty.clone();
    if let Some(field) = ty.field(name) {
        let get = field
            .get
            .as_ref()
            .ok_or_else(|| fault!("field `{name}` of {} cannot be read", ty.name))?;
        return get(vm, &[obj]);
    }
    match ty.method(name) {
        Some(m) => Ok(Value::Native(vm.alloc(Native::Host(m.clone()))?)),
        None => Err(fault!("unknown field `{name}` for {}", ty.name)),
    }
}

/// `obj.name = v` on a host object.
pub(crate) fn set_field(vm: &mut Vm, obj: Value, name: &str, v: Value) -> Result<(), Fault> {
    let Some(h) = host_ref(vm, obj) else {
        return Err(fault!("internal error: not a host object"));
    };
    let ty = h.ty.clone();
    let set = ty
        .field(name)
        .ok_or_else(|| fault!("unknown field `{name}` for {}", ty.name))?
        .set
        .as_ref()
        .ok_or_else(|| fault!("field `{name}` of {} cannot be assigned", ty.name))?;
    set(vm, &[obj, v]).map(|_| ())
}

/// The method `name` of a host object.
pub(crate) fn method(vm: &Vm, obj: Value, name: &str) -> Result<Arc<HostFunc>, Fault> {
    let Some(h) = host_ref(vm, obj) else {
        return Err(fault!("internal error: not a host object"));
    };
    h.ty.method(name)
        .cloned()
        .ok_or_else(|| fault!("{} has no method `{name}`", h.ty.name))
}

/// How long loading a module waits for the compile thread to let go of the program
/// (it holds it only while compiling one function).
const PROGRAM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Calls from the host into a machine that is between runs (the embedding API's
/// store): load modules, read and write their variables, call functions.
impl Vm {
    /// Compiles `text` (named `name` in messages) into this machine's program and runs
    /// its top level (after the prelude, the first time).
    pub fn load_module(&mut self, name: &str, text: &str) -> Result<ModuleId, KilnError> {
        let id = self.compile_with(|l| l.compile_main(name, text))?;
        self.reset_fuel();
        self.run_main(id)?;
        self.stack.clear();
        Ok(id)
    }

    /// Compiles and runs `text` as a module of its own; returns the value of its final
    /// expression statement (nil if it ends otherwise), unrooted: the register stack is
    /// emptied, so convert it before allocating again.
    pub fn eval(&mut self, name: &str, text: &str) -> Result<Value, KilnError> {
        let id = self.compile_with(|l| l.compile_eval(name, text))?;
        self.reset_fuel();
        let v = self.run_main(id);
        self.stack.clear();
        match v? {
            Value::Module(_) => Ok(Value::Nil),
            v => Ok(v),
        }
    }

    fn compile_with(
        &mut self,
        compile: impl FnOnce(&mut crate::Loader) -> Result<ModuleId, Vec<crate::Diagnostic>>,
    ) -> Result<ModuleId, KilnError> {
        let caps = self.settings.capabilities.clone();
        let program = self.program_mut()?;
        compile(&mut crate::Loader::new(program, caps)).map_err(KilnError::compile)
    }

    /// The program, to grow it. The compile thread holds a reference only while it
    /// compiles, so this waits for it briefly rather than failing at once.
    pub(crate) fn program_mut(&mut self) -> Result<&mut Program, KilnError> {
        // Live tasks hold the program for as long as they live: no use waiting.
        if self.task.as_ref().is_some_and(|t| t.sched.live_tasks() > 0) {
            return Err(KilnError::runtime(
                "cannot load a module while tasks of this store are alive",
            ));
        }
        let deadline = std::time::Instant::now() + PROGRAM_WAIT;
        while Arc::get_mut(&mut self.program).is_none() {
            if std::time::Instant::now() > deadline {
                return Err(KilnError::runtime(
                    "cannot load a module: the program is in use by another thread",
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Arc::get_mut(&mut self.program)
            .ok_or_else(|| KilnError::runtime("cannot load a module: the program is shared"))
    }

    /// Variable `name` of module `id` (`None` if it has none; `Undef` before its
    /// initialisation ran).
    pub fn module_var(&mut self, id: ModuleId, name: &str) -> Option<Value> {
        self.module_obj(id).ok()?.get(&self.heap).member(name)
    }

    /// Sets variable `name` of module `id`; false if it has none.
    pub fn set_module_var(&mut self, id: ModuleId, name: &str, v: Value) -> bool {
        let Ok(m) = self.module_obj(id) else {
            return false;
        };
        let m = m.get_mut(&mut self.heap);
        match find_name(m.names.iter().map(|n| &**n), name) {
            Some(i) => {
                m.vars[i] = v;
                true
            }
            None => false,
        }
    }

    /// Why `f` cannot be called with `nargs` arguments, if it cannot.
    pub fn arity_mismatch(&self, f: Value, nargs: usize) -> Option<String> {
        match f {
            Value::Func(c) => {
                let p = self.program.proto(c.get(&self.heap).proto);
                let fits =
                    nargs >= p.nrequired as usize && (nargs <= p.nparams as usize || p.has_rest);
                (!fits).then(|| crate::interp::arity_message(p, nargs))
            }
            Value::Native(_) => None,
            other => Some(format!("not a function (got {})", self.type_name(other))),
        }
    }

    /// Keeps `v` alive for the machine's lifetime; returns its index for [`Vm::pinned`].
    /// For values the host refers to across runs (function handles); pinning a value
    /// again reuses its index, so repeated lookups do not grow the table.
    pub fn pin(&mut self, v: Value) -> usize {
        let same = |p: &Value| p.heap_addr().is_some() && p.heap_addr() == v.heap_addr();
        if let Some(i) = self.pinned.iter().position(same) {
            return i;
        }
        self.pinned.push(v);
        self.pinned.len() - 1
    }

    /// Pinned value `i` (nil if there is none).
    pub fn pinned(&self, i: usize) -> Value {
        self.pinned.get(i).copied().unwrap_or(Value::Nil)
    }

    /// Starts a host call of `f` with `nargs` arguments: `f` goes to the bottom of the
    /// register stack with `nargs` nil slots after it, where [`Vm::set_host_arg`] puts
    /// the arguments (the stack is a root, so converting one argument may allocate
    /// without losing the others). Errors if a run is in progress.
    pub fn begin_host_call(&mut self, f: Value, nargs: usize) -> Result<(), KilnError> {
        if !self.frames.is_empty() {
            return Err(KilnError::runtime(
                "cannot call into a script that is running",
            ));
        }
        self.stack.clear();
        self.stack.resize(nargs + 1, Value::Nil);
        self.stack[0] = f;
        Ok(())
    }

    /// Argument `i` of the host call being prepared.
    pub fn set_host_arg(&mut self, i: usize, v: Value) {
        if let Some(slot) = self.stack.get_mut(i + 1) {
            *slot = v;
        }
    }

    /// Runs the host call prepared with [`Vm::begin_host_call`], with a fresh fuel grant.
    ///
    /// The register stack is emptied afterwards, so values of this call stay alive
    /// only if something else refers to them. The result is not rooted either: convert
    /// it before allocating again (as for [`Vm::eval`]).
    pub fn finish_host_call(&mut self, nargs: usize) -> Result<Value, KilnError> {
        self.reset_fuel();
        let result = match self.call_value(0, nargs, 0) {
            Ok(true) => self.execute(0),
            Ok(false) => Ok(self.stack[0]),
            Err(f) => Err(f),
        };
        let result = result.map_err(|f| self.report(f));
        self.stack.clear();
        result
    }
}
