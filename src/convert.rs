//! Conversions between Rust values and script values: [`IntoValue`] and [`FromValue`]
//! for the types natives and typed calls use, [`IntoArgs`] for argument tuples, and
//! [`Value`], a script value detached from any heap that a host may keep.
//!
//! Conversions go straight between Rust and the running machine's heap, with no
//! intermediate form, so a typed call with numbers allocates nothing. A value that does
//! not fit is reported by what was expected (`"int"`, `"array of str"`); the caller
//! turns that into a positioned script error or a host [`crate::Error`].

use std::collections::HashMap;
use std::hash::BuildHasher;

use kiln_vm::value::{to_key, Map, Value as Raw};
use kiln_vm::{Fault, Vm};

/// A Rust value a script can receive: a native's result, a typed call's argument, a
/// module variable's new value.
pub trait IntoValue {
    /// Builds the script value in `vm`'s heap.
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault>;
}

/// A Rust value made from a script value: a native's argument, a typed call's result.
pub trait FromValue: Sized {
    /// Reads `v` (a value of `vm`'s heap); on a mismatch, returns what was expected.
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String>;
}

/// The message for a value that is not what was expected.
pub(crate) fn mismatch(want: &str, got: Raw, vm: &Vm) -> String {
    format!("expected {want}, got {}", vm.type_name(got))
}

macro_rules! int_conversions {
    ($($t:ty),*) => {$(
        impl IntoValue for $t {
            fn into_value(self, _: &mut Vm) -> Result<Raw, Fault> {
                i64::try_from(self)
                    .map(Raw::Int)
                    .map_err(|_| Fault::Error(format!("{self} does not fit in an int")))
            }
        }
        impl FromValue for $t {
            fn from_value(v: Raw, _: &Vm) -> Result<Self, String> {
                match v {
                    Raw::Int(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{} (got {i})", stringify!($t))),
                    _ => Err("int".into()),
                }
            }
        }
    )*};
}

int_conversions!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl IntoValue for f64 {
    fn into_value(self, _: &mut Vm) -> Result<Raw, Fault> {
        Ok(Raw::Float(self))
    }
}

impl FromValue for f64 {
    /// Ints are accepted too, as scripts mix them freely.
    fn from_value(v: Raw, _: &Vm) -> Result<Self, String> {
        match v {
            Raw::Float(f) => Ok(f),
            Raw::Int(i) => Ok(i as f64),
            _ => Err("float".into()),
        }
    }
}

impl IntoValue for f32 {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        f64::from(self).into_value(vm)
    }
}

impl FromValue for f32 {
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
        f64::from_value(v, vm).map(|f| f as f32)
    }
}

impl IntoValue for bool {
    fn into_value(self, _: &mut Vm) -> Result<Raw, Fault> {
        Ok(Raw::Bool(self))
    }
}

impl FromValue for bool {
    fn from_value(v: Raw, _: &Vm) -> Result<Self, String> {
        match v {
            Raw::Bool(b) => Ok(b),
            _ => Err("bool".into()),
        }
    }
}

impl IntoValue for () {
    fn into_value(self, _: &mut Vm) -> Result<Raw, Fault> {
        Ok(Raw::Nil)
    }
}

impl FromValue for () {
    /// Any result may be ignored.
    fn from_value(_: Raw, _: &Vm) -> Result<Self, String> {
        Ok(())
    }
}

impl IntoValue for &str {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        check_len(self.len(), vm.settings.limits.max_string_bytes, "string")?;
        vm.new_str(self)
    }
}

impl IntoValue for String {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        check_len(self.len(), vm.settings.limits.max_string_bytes, "string")?;
        vm.new_string(self)
    }
}

impl FromValue for String {
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
        vm.str_of(v).map(str::to_owned).ok_or_else(|| "str".into())
    }
}

/// Values from the host obey the same size caps as values scripts build.
fn check_len(len: usize, max: usize, what: &str) -> Result<(), Fault> {
    if len > max {
        return Err(Fault::Error(format!(
            "{what} of {len} elements is over the limit of {max}"
        )));
    }
    Ok(())
}

impl<T: IntoValue> IntoValue for Option<T> {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        match self {
            Some(v) => v.into_value(vm),
            None => Ok(Raw::Nil),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
        match v {
            Raw::Nil => Ok(None),
            v => T::from_value(v, vm)
                .map(Some)
                .map_err(|w| format!("{w} or nil")),
        }
    }
}

/// An `Err` becomes a script error at the native's call site (catchable with `try`).
impl<T: IntoValue, E: std::fmt::Display> IntoValue for Result<T, E> {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        match self {
            Ok(v) => v.into_value(vm),
            Err(e) => Err(Fault::Error(e.to_string())),
        }
    }
}

/// Builds an array from `items`, keeping the elements made so far rooted (in the array
/// itself) while the next one is converted.
fn array_of<T: IntoValue>(
    vm: &mut Vm,
    items: impl ExactSizeIterator<Item = T>,
) -> Result<Raw, Fault> {
    check_len(items.len(), vm.settings.limits.max_array_len, "array")?;
    let arr = vm.new_array(Vec::with_capacity(items.len()))?;
    let mark = vm.roots_mark();
    vm.push_root(arr);
    let result = items.into_iter().try_for_each(|item| {
        let v = item.into_value(vm)?;
        push_item(vm, arr, v);
        Ok(())
    });
    vm.pop_roots(mark);
    result.map(|_| arr)
}

fn push_item(vm: &mut Vm, arr: Raw, v: Raw) {
    if let Raw::Array(a) = arr {
        a.get_mut(&mut vm.heap).items.push(v);
    }
}

impl<T: IntoValue> IntoValue for Vec<T> {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        array_of(vm, self.into_iter())
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
        let Raw::Array(a) = v else {
            return Err(format!("array of {}", element_name::<T>(vm)));
        };
        a.get(&vm.heap)
            .items
            .iter()
            .map(|&item| T::from_value(item, vm).map_err(|w| format!("array of {w}")))
            .collect()
    }
}

/// What an element of type `T` is called in messages (found by converting nil, which
/// every type but `Option` and `Value` refuses with its name).
fn element_name<T: FromValue>(vm: &Vm) -> String {
    T::from_value(Raw::Nil, vm)
        .err()
        .unwrap_or_else(|| "any".into())
}

/// Builds a map, keeping it and each key rooted while values are converted.
fn map_of<K: IntoValue, T: IntoValue>(
    vm: &mut Vm,
    entries: impl ExactSizeIterator<Item = (K, T)>,
) -> Result<Raw, Fault> {
    check_len(entries.len(), vm.settings.limits.max_map_len, "map")?;
    let map = vm.new_map(Map::default())?;
    let mark = vm.roots_mark();
    vm.push_root(map);
    let result = entries.into_iter().try_for_each(|(k, item)| {
        let key = k.into_value(vm)?;
        vm.push_root(key);
        let v = item.into_value(vm)?;
        let k = to_key(key, &vm.heap).map_err(Fault::Error)?;
        if let Raw::Map(m) = map {
            m.get_mut(&mut vm.heap).entries.insert(k, (key, v));
        }
        Ok(())
    });
    vm.pop_roots(mark);
    result.map(|_| map)
}

impl<T: IntoValue, S: BuildHasher> IntoValue for HashMap<String, T, S> {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        map_of(vm, self.into_iter())
    }
}

impl<T: FromValue, S: BuildHasher + Default> FromValue for HashMap<String, T, S> {
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
        let want = || format!("map of str to {}", element_name::<T>(vm));
        let Raw::Map(m) = v else {
            return Err(want());
        };
        m.get(&vm.heap)
            .entries
            .values()
            .map(|&(k, v)| {
                let key = vm.str_of(k).ok_or_else(want)?;
                Ok((key.to_owned(), T::from_value(v, vm).map_err(|_| want())?))
            })
            .collect()
    }
}

macro_rules! tuple_conversions {
    ($n:literal: $($t:ident $i:tt),*) => {
        /// A tuple is an array of its elements.
        impl<$($t: IntoValue),*> IntoValue for ($($t,)*) {
            fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
                let arr = vm.new_array(Vec::with_capacity($n))?;
                let mark = vm.roots_mark();
                vm.push_root(arr);
                let result = (|| {
                    $(
                        let v = self.$i.into_value(vm)?;
                        push_item(vm, arr, v);
                    )*
                    Ok(arr)
                })();
                vm.pop_roots(mark);
                result
            }
        }

        impl<$($t: FromValue),*> FromValue for ($($t,)*) {
            fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
                let want = || format!("array of {} elements", $n);
                let Raw::Array(a) = v else { return Err(want()) };
                let items = &a.get(&vm.heap).items;
                if items.len() != $n {
                    return Err(want());
                }
                Ok(($($t::from_value(items[$i], vm)?,)*))
            }
        }

        impl<$($t: IntoValue),*> IntoArgs for ($($t,)*) {
            const COUNT: usize = $n;
            fn write(self, vm: &mut Vm) -> Result<(), Fault> {
                $(
                    let v = self.$i.into_value(vm)?;
                    vm.set_host_arg($i, v);
                )*
                Ok(())
            }
        }
    };
}

/// The arguments of a typed call: `()`, or a tuple of [`IntoValue`] types.
pub trait IntoArgs {
    /// How many arguments.
    const COUNT: usize;
    /// Converts each argument into its slot of the call being prepared.
    fn write(self, vm: &mut Vm) -> Result<(), Fault>;
}

impl IntoArgs for () {
    const COUNT: usize = 0;
    fn write(self, _: &mut Vm) -> Result<(), Fault> {
        Ok(())
    }
}

tuple_conversions!(1: A 0);
tuple_conversions!(2: A 0, B 1);
tuple_conversions!(3: A 0, B 1, C 2);
tuple_conversions!(4: A 0, B 1, C 2, D 3);
tuple_conversions!(5: A 0, B 1, C 2, D 3, E 4);
tuple_conversions!(6: A 0, B 1, C 2, D 3, E 4, F 5);

/// A script value detached from any heap: what a host keeps, compares and inspects.
/// Structs come out as maps of their fields; values with no plain-data form
/// (functions, channels, host objects) as [`Value::Opaque`] with their type name.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `nil`.
    Nil,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Value>),
    /// A map (or a struct's fields), in insertion order.
    Map(Vec<(Value, Value)>),
    /// A value with no plain-data form, by its type name; it cannot go back into a
    /// script.
    Opaque(String),
}

/// Deep enough for any data a script builds by hand; deeper means a cycle.
const MAX_DEPTH: usize = 512;

fn detach(v: Raw, vm: &Vm, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("acyclic data (nested too deep)".into());
    }
    let heap = &vm.heap;
    Ok(match v {
        Raw::Nil | Raw::Undef => Value::Nil,
        Raw::Bool(b) => Value::Bool(b),
        Raw::Int(i) => Value::Int(i),
        Raw::Float(f) => Value::Float(f),
        Raw::Str(_) => Value::Str(vm.str_of(v).unwrap_or_default().to_owned()),
        Raw::Array(a) => Value::Array(
            a.get(heap)
                .items
                .iter()
                .map(|&x| detach(x, vm, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Raw::Map(m) => Value::Map(
            m.get(heap)
                .entries
                .values()
                .map(|&(k, x)| Ok((detach(k, vm, depth + 1)?, detach(x, vm, depth + 1)?)))
                .collect::<Result<_, String>>()?,
        ),
        Raw::Struct(s) => {
            let inst = s.get(heap);
            let names = &inst.ty.get(heap).fields;
            Value::Map(
                names
                    .iter()
                    .zip(inst.fields.iter())
                    .map(|(n, &x)| Ok((Value::Str(n.to_string()), detach(x, vm, depth + 1)?)))
                    .collect::<Result<_, String>>()?,
            )
        }
        other => Value::Opaque(vm.type_name(other).to_owned()),
    })
}

impl FromValue for Value {
    fn from_value(v: Raw, vm: &Vm) -> Result<Self, String> {
        detach(v, vm, 0)
    }
}

impl IntoValue for Value {
    fn into_value(self, vm: &mut Vm) -> Result<Raw, Fault> {
        Ok(match self {
            Value::Nil => Raw::Nil,
            Value::Bool(b) => Raw::Bool(b),
            Value::Int(i) => Raw::Int(i),
            Value::Float(f) => Raw::Float(f),
            Value::Str(s) => s.into_value(vm)?,
            Value::Array(items) => items.into_value(vm)?,
            Value::Map(entries) => map_of(vm, entries.into_iter())?,
            Value::Opaque(ty) => {
                return Err(Fault::Error(format!(
                    "a detached {ty} cannot be passed back to a script"
                )))
            }
        })
    }
}
