//! `os`: the script's command-line arguments, environment variables, and exiting.

use crate::builtins::{str_array, Args};
use crate::error::Fault;
use crate::fault;
use crate::stdlib::Member;
use crate::value::Value;
use crate::vm::Vm;

pub(super) const MEMBERS: &[(&str, Member)] = &[
    ("args", Member::Fn(args)),
    ("env", Member::Fn(env)),
    ("exit", Member::Fn(exit)),
];

/// The arguments after the script name (`vm.settings.args`).
fn args(vm: &mut Vm, vals: &[Value]) -> Result<Value, Fault> {
    Args::new("os.args", vals, 0, 0)?;
    let list = vm.settings.args.clone();
    str_array(vm, list.iter().map(String::as_str))
}

/// The variable's value, or `nil` when it is unset or not valid UTF-8.
fn env(vm: &mut Vm, vals: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("os.env", vals, 1, 1)?;
    let name = a.str(&vm.heap, 0)?;
    // Names the platform cannot hold are simply unset (and must not reach `env::var`).
    if name.is_empty() || name.contains(['=', '\0']) {
        return Ok(Value::Nil);
    }
    match std::env::var(name) {
        Ok(v) => vm.new_string(v),
        Err(_) => Ok(Value::Nil),
    }
}

/// Ends the program with `code` (default 0); no handlers or defers run.
fn exit(vm: &mut Vm, vals: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("os.exit", vals, 0, 1)?;
    let code = match a.opt(0) {
        Some(_) => a.int(&vm.heap, 0)?,
        None => 0,
    };
    let code =
        i32::try_from(code).map_err(|_| fault!("os.exit: exit code {code} is out of range"))?;
    Err(Fault::Exit(code))
}
