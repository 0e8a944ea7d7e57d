//! Natives: plain Rust functions and closures made callable from scripts, with their
//! arguments and results converted automatically ([`IntoNative`]), and native modules
//! that scripts `import` ([`NativeModule`]).
//!
//! The wrapper checks the argument count, converts each argument with [`FromValue`]
//! and the result with [`IntoValue`]. A wrong count or type, or an `Err` result, is a
//! script error raised at the call site, so it carries the script's position and stack
//! trace and a script may `try` it.

use std::sync::Arc;

use kiln_vm::host::{HostFn, HostFunc};
use kiln_vm::value::Value as Raw;
use kiln_vm::{Fault, Vm};

use crate::convert::{FromValue, IntoValue};

/// A Rust function or closure usable as a native. Implemented for every `Fn` of up to
/// six [`FromValue`] arguments returning an [`IntoValue`] (including `Result<T, E>`,
/// whose error becomes a script error). `Marker` only tells the impls apart.
pub trait IntoNative<Marker>: Send + Sync + 'static {
    /// Wraps the function for the VM under `name` (used in error messages).
    fn into_host_fn(self, name: Arc<str>) -> HostFn;
}

/// `name expects 2 arguments, got 3`, the built-ins' wording.
pub(crate) fn check_arity(name: &str, want: usize, got: usize) -> Result<(), Fault> {
    if want == got {
        return Ok(());
    }
    let s = if want == 1 { "" } else { "s" };
    Err(Fault::Error(format!(
        "{name} expects {want} argument{s}, got {got}"
    )))
}

/// Argument `i` of a native converted to `T`, or the built-ins' type error.
pub(crate) fn arg<T: FromValue>(name: &str, vm: &Vm, args: &[Raw], i: usize) -> Result<T, Fault> {
    let v = args[i];
    T::from_value(v, vm).map_err(|want| {
        Fault::Error(format!(
            "{name} expects {want} for argument {}, got {}",
            i + 1,
            vm.type_name(v)
        ))
    })
}

macro_rules! natives {
    ($n:literal: $($a:ident $i:tt),*) => {
        impl<Func, R, $($a),*> IntoNative<($($a,)* R,)> for Func
        where
            Func: Fn($($a),*) -> R + Send + Sync + 'static,
            R: IntoValue,
            $($a: FromValue,)*
        {
            #[allow(unused_variables)]
            fn into_host_fn(self, name: Arc<str>) -> HostFn {
                Arc::new(move |vm: &mut Vm, args: &[Raw]| {
                    check_arity(&name, $n, args.len())?;
                    let result = self($(arg::<$a>(&name, vm, args, $i)?),*);
                    result.into_value(vm)
                })
            }
        }
    };
}

natives!(0:);
natives!(1: A 0);
natives!(2: A 0, B 1);
natives!(3: A 0, B 1, C 2);
natives!(4: A 0, B 1, C 2, D 3);
natives!(5: A 0, B 1, C 2, D 3, E 4);
natives!(6: A 0, B 1, C 2, D 3, E 4, F 5);

/// A named host function ready for the registry.
pub(crate) fn host_func<M>(name: &str, f: impl IntoNative<M>) -> Arc<HostFunc> {
    let name: Arc<str> = Arc::from(name);
    Arc::new(HostFunc {
        func: f.into_host_fn(name.clone()),
        name,
    })
}

/// A module of natives that scripts import by name (`import game`, or
/// `import { spawn } from game`), registered with
/// [`Engine::register_module`](crate::Engine::register_module).
#[derive(Default)]
pub struct NativeModule {
    pub(crate) members: Vec<Arc<HostFunc>>,
}

impl NativeModule {
    /// An empty module.
    pub fn new() -> NativeModule {
        NativeModule::default()
    }

    /// Adds function `name` (replacing one of that name).
    pub fn function<M>(mut self, name: &str, f: impl IntoNative<M>) -> NativeModule {
        self.members.retain(|m| &*m.name != name);
        self.members.push(host_func(name, f));
        self
    }
}
