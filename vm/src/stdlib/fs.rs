//! `fs`: whole-file reads and writes. Paths are relative to the process's working
//! directory, or to the host's root directory when it confined file access to one
//! (`Capabilities::fs_root`; a path that leaves it is an error). Failures are catchable
//! errors naming the operation, the path and the operating system's reason.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

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
/// at most one byte past the string cap, so an endless file (`/dev/zero`) is an error
/// rather than all of memory.
fn read_text(vm: &Vm, op: &str, path: &str) -> Result<String, Fault> {
    let max = vm.settings.limits.max_string_bytes;
    let fail = |reason: &dyn std::fmt::Display| fault!("fs.{op}: cannot read \"{path}\": {reason}");
    let mut text = String::new();
    File::open(resolve(vm, op, path)?)
        .and_then(|f| f.take(max as u64 + 1).read_to_string(&mut text))
        .map_err(|e| fail(&e))?;
    if text.len() > max {
        return Err(fail(&format_args!("larger than {max} bytes")));
    }
    Ok(text)
}

fn read(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("fs.read", args, 1, 1)?;
    let text = read_text(vm, "read", a.str(&vm.heap, 0)?)?;
    vm.room_for_string(text.len())?;
    vm.new_string(text)
}

/// The file's lines, without their `\n` or `\r\n` endings.
fn lines(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("fs.lines", args, 1, 1)?;
    let text = read_text(vm, "lines", a.str(&vm.heap, 0)?)?;
    str_array(vm, text.lines())
}

fn write(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("fs.write", args, 2, 2)?;
    let (path, text) = (a.str(&vm.heap, 0)?, a.str(&vm.heap, 1)?);
    std::fs::write(resolve(vm, "write", path)?, text)
        .map_err(|e| fault!("fs.write: cannot write \"{path}\": {e}"))?;
    Ok(Value::Nil)
}

fn exists(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("fs.exists", args, 1, 1)?;
    Ok(Value::Bool(
        resolve(vm, "exists", a.str(&vm.heap, 0)?)?.exists(),
    ))
}

/// Where `path` leads: itself, or under the host's root directory, which it must not
/// leave (neither by `..` nor through a symbolic link).
fn resolve(vm: &Vm, op: &str, path: &str) -> Result<PathBuf, Fault> {
    let Some(root) = &vm.settings.capabilities.fs_root else {
        return Ok(PathBuf::from(path));
    };
    let escape = || fault!("fs.{op}: \"{path}\" is outside the directory the host allows");
    let root = root.canonicalize().map_err(|e| fault!("fs.{op}: {e}"))?;
    let mut full = root.clone();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => full.push(part),
            Component::CurDir => {}
            Component::ParentDir if full != root => {
                full.pop();
            }
            _ => return Err(escape()),
        }
    }
    // Symbolic links are followed by the OS: the deepest existing ancestor must still
    // be inside once they are resolved.
    let existing = full.ancestors().find_map(|a| a.canonicalize().ok());
    match existing {
        Some(real) if confined(&root, &real).is_ok() => Ok(full),
        _ => Err(escape()),
    }
}

/// Checks that the canonical path `real` lies under directory `root`.
pub(crate) fn confined(root: &Path, real: &Path) -> Result<(), String> {
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    if real.starts_with(&root) {
        Ok(())
    } else {
        Err("outside the directory the host allows".into())
    }
}
