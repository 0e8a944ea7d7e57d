//! `root`: the process-wide store for values that must outlive a task.
//!
//! Keys are strings; values are copied in (as [`Portable`]s) and copied out into the
//! reading task's heap, so no two tasks ever share a mutable object through it. One
//! mutex guards the map: every operation, `add` included, is atomic.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use crate::builtins::Args;
use crate::copy::{export, import, Portable};
use crate::error::Fault;
use crate::fault;
use crate::stdlib::Member;
use crate::value::Value;
use crate::vm::Vm;

static STORE: LazyLock<Mutex<HashMap<Arc<str>, Portable>>> = LazyLock::new(Default::default);

/// `root`'s members.
pub(crate) const MEMBERS: &[(&str, Member)] = &[
    ("set", Member::Fn(set)),
    ("get", Member::Fn(get)),
    ("remove", Member::Fn(remove)),
    ("keys", Member::Fn(keys)),
    ("add", Member::Fn(add)),
];

fn key(vm: &Vm, a: &Args) -> Result<Arc<str>, Fault> {
    Ok(Arc::from(a.str(&vm.heap, 0)?))
}

/// `root.set(k, v)`: stores a copy of `v` (nil removes the key).
fn set(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("set", args, 2, 2)?;
    let k = key(vm, &a)?;
    let v = a.get(1);
    if matches!(v, Value::Nil) {
        STORE.lock().remove(&k);
    } else {
        let p = export(vm, v);
        STORE.lock().insert(k, p);
    }
    Ok(Value::Nil)
}

/// `root.get(k)`: a copy of the stored value, or nil.
fn get(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("get", args, 1, 1)?;
    let k = key(vm, &a)?;
    let p = STORE.lock().get(&k).cloned();
    p.map_or(Ok(Value::Nil), |p| import(vm, &p))
}

/// `root.remove(k)`: removes the key; returns the value it held, or nil.
fn remove(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("remove", args, 1, 1)?;
    let k = key(vm, &a)?;
    let p = STORE.lock().remove(&k);
    p.map_or(Ok(Value::Nil), |p| import(vm, &p))
}

/// `root.keys(prefix?)`: the keys starting with `prefix`, sorted.
fn keys(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("keys", args, 0, 1)?;
    let prefix = match args.first() {
        Some(_) => a.str(&vm.heap, 0)?.to_string(),
        None => String::new(),
    };
    let mut found: Vec<Arc<str>> = STORE
        .lock()
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    found.sort();
    vm.with_roots(|vm| {
        let mut items = Vec::with_capacity(found.len());
        for k in found {
            let v = vm.new_arc_str(k)?;
            vm.push_root(v);
            items.push(v);
        }
        vm.new_array(items)
    })
}

/// `root.add(k, n)`: adds the int `n` to the int under `k` (a missing key counts as
/// 0) in one atomic step; returns the new value.
fn add(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("add", args, 2, 2)?;
    let k = key(vm, &a)?;
    let n = a.int(&vm.heap, 1)?;
    let mut store = STORE.lock();
    let old = match store.get(&k) {
        None => 0,
        Some(p) => p
            .as_int()
            .ok_or_else(|| fault!("root.add: the value under `{k}` is not an int"))?,
    };
    let new = old.wrapping_add(n);
    store.insert(k, Portable::int(new));
    Ok(Value::Int(new))
}
