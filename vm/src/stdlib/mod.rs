//! The standard modules (`math`, `json`, `time`, `fs`, `os`): their member tables, and
//! the module objects made from them.
//!
//! The compiler checks `import { x } from math` against [`members`] and emits `ImportStd`
//! with the module's index in [`STD_MODULES`]; at run time [`std_module`] makes the
//! module object the first time a VM imports it and caches it in `vm.std_modules`.
//! Whether `fs`, `os` and `time` may be imported at all is the loader's decision (the
//! host's capabilities), taken at compile time.

use std::sync::Arc;

use kiln_gc::Gc;

use crate::error::Fault;
use crate::fault;
use crate::value::{ModuleObj, NativeFn, Value};
use crate::vm::Vm;

pub(crate) mod fs;
mod json;
mod math;
mod os;
mod time;

/// The standard modules, by the index the compiler uses.
pub const STD_MODULES: &[&str] = &["math", "json", "time", "fs", "os"];

/// A module member: a native function or a constant.
pub(crate) enum Member {
    Fn(NativeFn),
    Float(f64),
}

/// The member table of the module at `idx` in [`STD_MODULES`].
fn table(idx: usize) -> &'static [(&'static str, Member)] {
    match idx {
        0 => math::MEMBERS,
        1 => json::MEMBERS,
        2 => time::MEMBERS,
        3 => fs::MEMBERS,
        4 => os::MEMBERS,
        _ => &[],
    }
}

/// The member names of the module at `idx` in [`STD_MODULES`].
pub fn members(idx: usize) -> Vec<Arc<str>> {
    table(idx)
        .iter()
        .map(|(name, _)| Arc::from(*name))
        .collect()
}

/// The module object of the standard module at `idx`, made on first use.
pub fn std_module(vm: &mut Vm, idx: usize) -> Result<Gc<ModuleObj>, Fault> {
    if let Some(Some(m)) = vm.std_modules.get(idx) {
        return Ok(*m);
    }
    let m = match STD_MODULES.get(idx) {
        Some(name) => make_module(vm, name, table(idx))?,
        None => host_module(vm, idx - STD_MODULES.len())?,
    };
    if vm.std_modules.len() <= idx {
        vm.std_modules.resize(idx + 1, None);
    }
    vm.std_modules[idx] = Some(m);
    Ok(m)
}

/// The module object of host module `i`.
fn host_module(vm: &mut Vm, i: usize) -> Result<Gc<ModuleObj>, Fault> {
    let host = vm.settings.capabilities.host.clone();
    let module = host
        .as_ref()
        .and_then(|h| h.modules.get(i))
        .ok_or_else(|| fault!("internal error: no host module {i}"))?;
    let mark = vm.roots_mark();
    let mut vars = Vec::with_capacity(module.members.len());
    for f in &module.members {
        let v = Value::Native(vm.alloc(crate::value::Native::Host(f.clone()))?);
        vm.push_root(v);
        vars.push(v);
    }
    let m = vm.alloc(ModuleObj {
        name: module.name.clone(),
        names: module.members.iter().map(|f| f.name.clone()).collect(),
        vars,
        id: None,
        started: true,
    })?;
    vm.pop_roots(mark);
    Ok(m)
}

/// A module object holding `members` (natives named by their member names).
pub(crate) fn make_module(
    vm: &mut Vm,
    name: &str,
    members: &'static [(&'static str, Member)],
) -> Result<Gc<ModuleObj>, Fault> {
    vm.with_roots(|vm| {
        let mut vars = Vec::with_capacity(members.len());
        for (member, m) in members {
            let v = match m {
                Member::Fn(f) => crate::builtins::native(vm, member, *f)?,
                Member::Float(x) => Value::Float(*x),
            };
            vm.push_root(v);
            vars.push(v);
        }
        let names: Arc<[Arc<str>]> = members.iter().map(|(n, _)| Arc::from(*n)).collect();
        Ok(vm.alloc(ModuleObj {
            name: name.into(),
            names,
            vars,
            id: None,
            started: true,
        })?)
    })
}
