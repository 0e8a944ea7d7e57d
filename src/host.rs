//! Host types: Rust types scripts use like structs (`e.x`, `e.x = 1`, `e.move(1, 2)`).
//!
//! A type is described once with a [`TypeBuilder`] and registered on the engine. Its
//! values reach scripts two ways:
//! - [`Handle<T>`]: owned by the host. The host keeps the handle, reads and changes the
//!   value through it, and ends its life with [`Handle::destroy`]; a script still
//!   holding it then gets the error `Entity was destroyed by the host`.
//! - [`Script<T>`]: given to the script. The value lives as long as script values refer
//!   to it and is dropped when the garbage collector frees the last one.
//!
//! Both are one shared cell under a lock (copies may sit in tasks on other workers);
//! a method that is given its own receiver again finds the lock taken and fails cleanly
//! instead of deadlocking.

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;

use kiln_vm::host::{HostField, HostFn, HostFunc, HostRef, HostType};
use kiln_vm::value::Value as Raw;
use kiln_vm::{fault, Fault, Vm};
use parking_lot::Mutex;

use crate::convert::{FromValue, IntoValue};
use crate::native::{arg, check_arity};

/// Describes a host type: its fields and methods. See
/// [`Engine::register_type`](crate::Engine::register_type).
pub struct TypeBuilder<T> {
    name: Arc<str>,
    fields: Vec<HostField>,
    methods: Vec<Arc<HostFunc>>,
    _type: PhantomData<fn() -> T>,
}

/// A method of a host type: a `Fn(&mut T, args...) -> R` with up to five
/// [`FromValue`] arguments. `Marker` only tells the impls apart.
pub trait IntoMethod<T, Marker>: Send + Sync + 'static {
    /// Wraps the method for the VM under `name` (used in error messages).
    fn into_host_fn(self, name: Arc<str>) -> HostFn;
}

/// The receiver of a host method call: the host object in `args[0]`.
fn receiver(vm: &Vm, args: &[Raw]) -> Result<HostRef, Fault> {
    match args.first() {
        Some(Raw::Host(h)) => Ok(h.get(&vm.heap).clone()),
        _ => Err(fault!("a method needs its object")),
    }
}

macro_rules! methods {
    ($n:literal: $($a:ident $i:tt),*) => {
        impl<T, Func, R, $($a),*> IntoMethod<T, ($($a,)* R,)> for Func
        where
            T: Any,
            Func: Fn(&mut T, $($a),*) -> R + Send + Sync + 'static,
            R: IntoValue,
            $($a: FromValue,)*
        {
            #[allow(unused_variables)]
            fn into_host_fn(self, name: Arc<str>) -> HostFn {
                Arc::new(move |vm: &mut Vm, args: &[Raw]| {
                    let obj = receiver(vm, args)?;
                    let rest = &args[1..];
                    check_arity(&name, $n, rest.len())?;
                    // Converted before the receiver is locked, so an argument that is
                    // the receiver itself (`e.near(e)`) converts without the lock.
                    let converted = ($(arg::<$a>(&name, vm, rest, $i)?,)*);
                    let result = obj.with(|t: &mut T| self(t, $(converted.$i),*))?;
                    result.into_value(vm)
                })
            }
        }
    };
}

methods!(0:);
methods!(1: A 0);
methods!(2: A 0, B 1);
methods!(3: A 0, B 1, C 2);
methods!(4: A 0, B 1, C 2, D 3);
methods!(5: A 0, B 1, C 2, D 3, E 4);

impl<T: Any + Send> TypeBuilder<T> {
    /// A type scripts see as `name` (its `type()` and the name in messages).
    pub fn new(name: &str) -> TypeBuilder<T> {
        TypeBuilder {
            name: Arc::from(name),
            fields: Vec::new(),
            methods: Vec::new(),
            _type: PhantomData,
        }
    }

    /// A field scripts read with `obj.name` and assign with `obj.name = v`.
    pub fn field<V, G, S>(self, name: &str, get: G, set: S) -> TypeBuilder<T>
    where
        V: IntoValue + FromValue,
        G: Fn(&T) -> V + Send + Sync + 'static,
        S: Fn(&mut T, V) + Send + Sync + 'static,
    {
        let setter = self.setter(name, set);
        self.with_field(name, Some(Self::getter(get)), Some(setter))
    }

    /// A field scripts can read but not assign.
    pub fn read_only<V, G>(self, name: &str, get: G) -> TypeBuilder<T>
    where
        V: IntoValue,
        G: Fn(&T) -> V + Send + Sync + 'static,
    {
        self.with_field(name, Some(Self::getter(get)), None)
    }

    /// A method scripts call as `obj.name(args...)`.
    pub fn method<M>(mut self, name: &str, f: impl IntoMethod<T, M>) -> TypeBuilder<T> {
        let full: Arc<str> = Arc::from(format!("{}.{name}", self.name));
        self.methods.retain(|m| &*m.name != name);
        self.methods.push(Arc::new(HostFunc {
            name: Arc::from(name),
            func: f.into_host_fn(full),
        }));
        self
    }

    fn with_field(mut self, name: &str, get: Option<HostFn>, set: Option<HostFn>) -> Self {
        self.fields.retain(|f| &*f.name != name);
        self.fields.push(HostField {
            name: Arc::from(name),
            get,
            set,
        });
        self
    }

    fn getter<V: IntoValue>(get: impl Fn(&T) -> V + Send + Sync + 'static) -> HostFn {
        Arc::new(move |vm: &mut Vm, args: &[Raw]| {
            receiver(vm, args)?.with(|t: &mut T| get(t))?.into_value(vm)
        })
    }

    fn setter<V: FromValue>(
        &self,
        name: &str,
        set: impl Fn(&mut T, V) + Send + Sync + 'static,
    ) -> HostFn {
        let what: Arc<str> = Arc::from(format!("{}.{name}", self.name));
        Arc::new(move |vm: &mut Vm, args: &[Raw]| {
            let obj = receiver(vm, args)?;
            let v = args.get(1).copied().unwrap_or(Raw::Nil);
            let value = V::from_value(v, vm)
                .map_err(|want| fault!("{what} expects {want}, got {}", vm.type_name(v)))?;
            obj.with(|t: &mut T| set(t, value))?;
            Ok(Raw::Nil)
        })
    }

    pub(crate) fn build(self) -> (TypeId, Arc<HostType>) {
        let ty = HostType {
            name: self.name,
            fields: self.fields,
            methods: self.methods,
        };
        (TypeId::of::<T>(), Arc::new(ty))
    }
}

/// A host-owned object: the host decides when it dies ([`Handle::destroy`]); scripts
/// that still hold it get a clean error from then on. Cheap to clone (all clones are
/// the same object). Made with [`Engine::handle`](crate::Engine::handle).
pub struct Handle<T> {
    obj: HostRef,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Handle<T> {
        Handle {
            obj: self.obj.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Any + Send> Handle<T> {
    pub(crate) fn new(ty: Arc<HostType>, value: T) -> Handle<T> {
        Handle {
            obj: HostRef {
                ty,
                cell: Arc::new(Mutex::new(Some(Box::new(value)))),
            },
            _type: PhantomData,
        }
    }

    /// Runs `f` on the value; `None` once destroyed, or while it is in use (inside
    /// one of its own methods, which may be given the object again).
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut guard = self.obj.cell.try_lock()?;
        guard.as_mut()?.downcast_mut::<T>().map(f)
    }

    /// Ends the object's life: returns its value; scripts holding it get an error when
    /// they use it.
    pub fn destroy(&self) -> Option<T> {
        let value = self.obj.cell.lock().take()?;
        value.downcast::<T>().ok().map(|b| *b)
    }

    /// Whether the object has not been destroyed.
    pub fn is_alive(&self) -> bool {
        self.obj.cell.lock().is_some()
    }

    /// Whether two handles are the same object.
    pub fn same(&self, other: &Handle<T>) -> bool {
        Arc::ptr_eq(&self.obj.cell, &other.obj.cell)
    }
}

impl<T> IntoValue for Handle<T> {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        Ok(Raw::Host(vm.alloc(self.obj)?))
    }
}

impl<T> IntoValue for &Handle<T> {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        self.clone().into_value(vm)
    }
}

impl<T: Any> FromValue for Handle<T> {
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
        let registered = registered::<T>(vm);
        match (v, registered) {
            (Raw::Host(h), Some(ty)) if Arc::ptr_eq(&h.get(&vm.heap).ty, ty) => Ok(Handle {
                obj: h.get(&vm.heap).clone(),
                _type: PhantomData,
            }),
            (_, Some(ty)) => Err(ty.name.to_string()),
            (_, None) => Err(format!("{} (not registered)", std::any::type_name::<T>())),
        }
    }
}

/// The host type registered for `T` on the machine's engine.
fn registered<T: Any>(vm: &Vm) -> Option<&Arc<HostType>> {
    let host = vm.settings.capabilities.host.as_ref()?;
    host.host_type(TypeId::of::<T>())
}

/// A value handed to the script to own: it is dropped when the script's last
/// reference to it is collected. Its type must be registered on the engine.
pub struct Script<T>(pub T);

impl<T: Any + Send> IntoValue for Script<T> {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        let ty = registered::<T>(vm).cloned().ok_or_else(|| {
            fault!(
                "type {} is not registered with the engine",
                std::any::type_name::<T>()
            )
        })?;
        Handle::new(ty, self.0).into_value(vm)
    }
}
