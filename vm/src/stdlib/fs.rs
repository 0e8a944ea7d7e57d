//! `fs`: whole-file reads and writes. Paths are relative to the process's working
//! directory. Failures are catchable errors naming the operation, the path and the
//! operating system's reason.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::builtins::{str_array, Args};
use crate::error::Fault;
use crate::fault;
use crate::stdlib::Member;
use crate::value::Value;
use crate::vm::Vm;

pub(super) const MEMBERS: &[(&str, Member)] = &[
    ("read", Member::Fn(read)),
    ("write", Member::Fn(write)),
    ("lines", Member::Fn(lines)),
    ("exists", Member::Fn(exists)),
];

/// The file at `path` as text, or the `fs.<op>: cannot read "path": reason` error. Reads
/// at most one byte past the string cap `max`, so an endless file (`/dev/zero`) is an
/// error rather than all of memory.
fn read_text(op: &str, path: &str, max: usize) -> Result<String, Fault> {
    let fail = |reason: &dyn std::fmt::Display| fault!("fs.{op}: cannot read \"{path}\": {reason}");
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_string(&mut text))
        .map_err(|e| fail(&e))?;
    if text.len() > max {
        return Err(fail(&format_args!("larger than {max} bytes")));
    }
    Ok(text)
}

fn read(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("fs.read", args, 1, 1)?;
    let max = vm.settings.limits.max_string_bytes;
    let text = read_text("read", a.str(&vm.heap, 0)?, max)?;
    vm.room_for_string(text.len())?;
    vm.new_string(text)
}

/// The file's lines, without their `\n` or `\r\n` endings.
fn lines(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("fs.lines", args, 1, 1)?;
    let max = vm.settings.limits.max_string_bytes;
    let text = read_text("lines", a.str(&vm.heap, 0)?, max)?;
    str_array(vm, text.lines())
}

fn write(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("fs.write", args, 2, 2)?;
    let (path, text) = (a.str(&vm.heap, 0)?, a.str(&vm.heap, 1)?);
    std::fs::write(path, text).map_err(|e| fault!("fs.write: cannot write \"{path}\": {e}"))?;
    Ok(Value::Nil)
}

fn exists(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("fs.exists", args, 1, 1)?;
    Ok(Value::Bool(Path::new(a.str(&vm.heap, 0)?).exists()))
}
