//! `Engine`: what every run of a host shares — the capabilities granted to scripts, the
//! registered natives, modules and types, the limits, the clock and the JIT.
//!
//! An engine is configured once and then cloned freely (it is an `Arc`); it is
//! `Send + Sync`, so one engine serves stores on many threads. `Engine::new()` is a
//! sandbox: scripts can compute, and nothing else — no stdio, files, environment,
//! process or clock — until a `with_*` grant says otherwise.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_vm::host::{HostModule, HostRegistry};
use kiln_vm::tier::JitMode;
use kiln_vm::{Capabilities, Limits, Settings, SharedClock};

use crate::host::{Handle, TypeBuilder};
use crate::native::{host_func, IntoNative, NativeModule};
use crate::{Error, JitSettings};

/// The shared configuration of runs: see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    caps: Capabilities,
    host: HostRegistry,
    fuel: Option<u64>,
    max_depth: usize,
    limits: Limits,
    clock: Option<SharedClock>,
    jit: JitMode,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new()
    }
}

impl Engine {
    /// A sandboxed engine: no stdio (output is captured, see
    /// [`Store::take_output`](crate::Store::take_output)), no `fs`, `os` or `time`
    /// module, no clock, no file imports; the JIT on.
    pub fn new() -> Engine {
        Engine {
            config: Arc::new(Config {
                caps: Capabilities::default(),
                host: HostRegistry::default(),
                fuel: None,
                max_depth: Settings::default().max_depth,
                limits: Limits::default(),
                clock: None,
                jit: JitMode::On,
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Scripts' `print` and `eprint` write to the process's stdout and stderr.
    pub fn with_stdio(mut self) -> Engine {
        self.config().caps.stdio = true;
        self
    }

    /// The `fs` module and file imports, confined to `root`: a path that leaves it (by
    /// `..`, an absolute path or a symbolic link) is a script error.
    pub fn with_fs(mut self, root: impl Into<PathBuf>) -> Engine {
        let caps = &mut self.config().caps;
        caps.fs = true;
        caps.fs_root = Some(root.into());
        self
    }

    /// The `os` module: arguments, environment variables, `os.exit`.
    pub fn with_os(mut self) -> Engine {
        self.config().caps.os = true;
        self
    }

    /// The `time` module and `clock()`, on the wall clock.
    pub fn with_clock(mut self) -> Engine {
        self.config().caps.time = true;
        self
    }

    /// The `time` module and `clock()`, on the host's clock: `sleep`, `select`
    /// timeouts and the time builtins follow it (for deterministic playback).
    pub fn with_host_clock(mut self, clock: SharedClock) -> Engine {
        let config = self.config();
        config.caps.time = true;
        config.clock = Some(clock);
        self
    }

    /// Steps (calls plus loop iterations weighted by length, see `kiln_vm::fuel`) each
    /// call into a store may take before it stops with `ErrorKind::Limit(Limit::Fuel)`.
    pub fn with_fuel(mut self, steps: u64) -> Engine {
        self.config().fuel = Some(steps);
        self
    }

    /// Script call depth before `stack overflow`.
    pub fn with_max_depth(mut self, depth: usize) -> Engine {
        self.config().max_depth = depth;
        self
    }

    /// Memory, size and task bounds (see [`Limits`]).
    pub fn with_limits(mut self, limits: Limits) -> Engine {
        self.config().limits = limits;
        self
    }

    /// When hot code is compiled: `JitMode::Off` for the interpreter alone,
    /// `JitMode::Eager` to compile every function at its first call. Each store has
    /// its own compiler (a thread, started with the store) because compiled code
    /// belongs to one program.
    pub fn with_jit(mut self, mode: JitMode) -> Engine {
        self.config().jit = mode;
        self
    }

    /// Makes `f` callable from every script as `name(...)` (see
    /// [`IntoNative`] for the functions accepted).
    pub fn register_fn<M>(&mut self, name: &str, f: impl IntoNative<M>) -> &mut Engine {
        let globals = &mut self.config().host.globals;
        globals.retain(|g| &*g.name != name);
        globals.push(host_func(name, f));
        self
    }

    /// Makes `module` importable as `name` (`import game`, `import { spawn } from game`).
    pub fn register_module(&mut self, name: &str, module: NativeModule) -> &mut Engine {
        let modules = &mut self.config().host.modules;
        modules.retain(|m| &*m.name != name);
        modules.push(Arc::new(HostModule {
            name: Arc::from(name),
            members: module.members,
        }));
        self
    }

    /// Registers host type `T` as `ty` describes it.
    pub fn register_type<T: Any + Send>(&mut self, ty: TypeBuilder<T>) -> &mut Engine {
        let (id, ty) = ty.build();
        let types = &mut self.config().host.types;
        types.retain(|(t, _)| *t != id);
        types.push((id, ty));
        self
    }

    /// A host-owned object of registered type `T` (see [`Handle`]).
    pub fn handle<T: Any + Send>(&self, value: T) -> Result<Handle<T>, Error> {
        let ty = self
            .config
            .host
            .host_type(std::any::TypeId::of::<T>())
            .ok_or_else(|| {
                Error::host(format!(
                    "type {} is not registered with the engine",
                    std::any::type_name::<T>()
                ))
            })?;
        Ok(Handle::new(ty.clone(), value))
    }

    /// Whether scripts' output goes to the process's stdio.
    pub(crate) fn has_stdio(&self) -> bool {
        self.config.caps.stdio
    }

    /// A read-eval-print session with this engine's capabilities, limits and host
    /// functions, as `kiln repl` runs one: an in-game console, a debugging prompt. Its
    /// scripts print to `output`.
    pub fn repl(&self, output: kiln_vm::Output) -> kiln_vm::repl::Repl {
        kiln_vm::repl::Repl::new(self.settings(), output)
    }

    /// The VM settings of a new store.
    pub(crate) fn settings(&self) -> Settings {
        let c = &self.config;
        Settings {
            max_depth: c.max_depth,
            capabilities: Capabilities {
                host: Some(Arc::new(c.host.clone())),
                ..c.caps.clone()
            },
            tier: crate::tier_config(&JitSettings {
                mode: c.jit,
                threshold: None,
                verbose: false,
                dump: None,
                threshold_seed: None,
                exit_every: None,
            }),
            fuel: c.fuel,
            threads: 1,
            limits: c.limits.clone(),
            clock: c.clock.clone(),
            ..Settings::default()
        }
    }
}
