//! The global built-in functions (`print`, `str`, `len`, `range`, `gc`, ...), and the
//! argument checking every native shares.
//!
//! The compiler resolves a global built-in to its index in [`GLOBALS`]; [`install`] puts
//! the matching values in `vm.builtins` in the same order. Natives never panic on script
//! input: every argument goes through [`Args`], which reports a wrong count or type as
//! `f expects 2 arguments, got 3` or `f expects int for argument 1, got str`.

use std::sync::Arc;
use std::time::Duration;

use kiln_gc::Heap;

use crate::display::format_float;
use crate::error::Fault;
use crate::fault;
use crate::stdlib::make_module;
use crate::value::{to_key, Map, Native, NativeFn, Range, Value, WeakRef};
use crate::vm::Vm;

/// What a global name is bound to.
enum Global {
    Fn(NativeFn),
    /// The `root` store, a module of natives.
    Root,
}

/// Every global built-in, in the order the compiler numbers them.
const ENTRIES: [(&str, Global); 19] = [
    ("print", Global::Fn(print)),
    ("eprint", Global::Fn(eprint)),
    ("str", Global::Fn(str_)),
    ("int", Global::Fn(int)),
    ("float", Global::Fn(float)),
    ("type", Global::Fn(type_)),
    ("len", Global::Fn(len)),
    ("assert", Global::Fn(assert)),
    ("error", Global::Fn(error)),
    ("range", Global::Fn(range)),
    ("clock", Global::Fn(clock)),
    ("weak", Global::Fn(weak)),
    ("channel", Global::Fn(crate::channel::new_channel)),
    ("sleep", Global::Fn(sleep)),
    ("yield", Global::Fn(yield_)),
    ("root", Global::Root),
    ("gc", Global::Fn(gc)),
    ("gc_stats", Global::Fn(gc_stats)),
    ("select", Global::Fn(crate::channel::select)),
];

/// The names of the global built-ins; a built-in's index here is its slot in
/// `vm.builtins`.
pub const GLOBALS: &[&str] = &global_names();

const fn global_names() -> [&'static str; ENTRIES.len()] {
    let mut names = [""; ENTRIES.len()];
    let mut i = 0;
    while i < ENTRIES.len() {
        names[i] = ENTRIES[i].0;
        i += 1;
    }
    names
}

/// Sizes `vm.builtins`, one slot per name of [`GLOBALS`], in order. Each value is made
/// at its first use ([`Vm::builtin`]): most tasks use few built-ins, and a task that
/// made all of them would pay two dozen allocations before running a line.
pub fn install(vm: &mut Vm) {
    let host = vm.settings.capabilities.host.as_ref();
    let n = ENTRIES.len() + host.map_or(0, |h| h.globals.len());
    vm.builtins.clear();
    vm.builtins.resize(n, Value::Undef);
}

/// The `LoadBuiltin` index of host global number `i` (after the built-ins).
pub fn host_global_index(i: usize) -> usize {
    ENTRIES.len() + i
}

impl Vm {
    /// Built-in number `i` (an index into [`GLOBALS`]).
    #[inline]
    pub(crate) fn builtin(&mut self, i: usize) -> Result<Value, Fault> {
        match self.builtins[i] {
            Value::Undef => self.make_builtin(i),
            v => Ok(v),
        }
    }

    #[cold]
    fn make_builtin(&mut self, i: usize) -> Result<Value, Fault> {
        let Some((name, global)) = ENTRIES.get(i) else {
            return self.make_host_global(i - ENTRIES.len());
        };
        let v = match global {
            Global::Fn(func) => native(self, name, *func)?,
            Global::Root => Value::Module(make_module(self, "root", crate::root::MEMBERS)?),
        };
        // `vm.builtins` is a root.
        self.builtins[i] = v;
        Ok(v)
    }
}

impl Vm {
    fn make_host_global(&mut self, i: usize) -> Result<Value, Fault> {
        let host = self.settings.capabilities.host.clone();
        let v = match host.as_ref().and_then(|h| h.globals.get(i)) {
            Some(f) => Value::Native(self.alloc(Native::Host(f.clone()))?),
            None => Value::Nil,
        };
        self.builtins[ENTRIES.len() + i] = v;
        Ok(v)
    }
}

/// A native function value.
pub(crate) fn native(vm: &mut Vm, name: &'static str, func: NativeFn) -> Result<Value, Fault> {
    Ok(Value::Native(vm.alloc(Native::Builtin { name, func })?))
}

// ----- argument checking ----------------------------------------------------------

/// A native call's arguments (a method's receiver excluded), with the name its
/// messages use.
pub(crate) struct Args<'a> {
    name: &'static str,
    vals: &'a [Value],
}

impl<'a> Args<'a> {
    /// The arguments of function `name`, checked to number from `min` to `max`
    /// (`usize::MAX`: no limit).
    pub fn new(
        name: &'static str,
        vals: &'a [Value],
        min: usize,
        max: usize,
    ) -> Result<Args<'a>, Fault> {
        if vals.len() < min || vals.len() > max {
            return Err(fault!(
                "{name} expects {}, got {}",
                count_text(min, max),
                vals.len()
            ));
        }
        Ok(Args { name, vals })
    }

    /// A method's receiver and its checked arguments.
    pub fn method(
        name: &'static str,
        vals: &'a [Value],
        min: usize,
        max: usize,
    ) -> Result<(Value, Args<'a>), Fault> {
        let (&recv, rest) = vals
            .split_first()
            .ok_or_else(|| fault!("internal error: method {name} called without a receiver"))?;
        Ok((recv, Args::new(name, rest, min, max)?))
    }

    pub fn len(&self) -> usize {
        self.vals.len()
    }

    /// Argument `i` (from 0), `nil` when it was not given.
    pub fn get(&self, i: usize) -> Value {
        self.vals.get(i).copied().unwrap_or(Value::Nil)
    }

    /// Argument `i`, `None` when not given or `nil` (optional arguments).
    pub fn opt(&self, i: usize) -> Option<Value> {
        self.vals
            .get(i)
            .copied()
            .filter(|v| !matches!(v, Value::Nil))
    }

    /// The error for argument `i` not being a `want`.
    pub fn wrong(&self, heap: &Heap, i: usize, want: &str) -> Fault {
        fault!(
            "{} expects {want} for argument {}, got {}",
            self.name,
            i + 1,
            self.get(i).type_name(heap)
        )
    }

    pub fn int(&self, heap: &Heap, i: usize) -> Result<i64, Fault> {
        match self.get(i) {
            Value::Int(n) => Ok(n),
            _ => Err(self.wrong(heap, i, "int")),
        }
    }

    /// A number as a float (ints are accepted where floats are expected).
    pub fn num(&self, heap: &Heap, i: usize) -> Result<f64, Fault> {
        match self.get(i) {
            Value::Int(n) => Ok(n as f64),
            Value::Float(f) => Ok(f),
            _ => Err(self.wrong(heap, i, "float")),
        }
    }

    pub fn str<'h>(&self, heap: &'h Heap, i: usize) -> Result<&'h str, Fault> {
        self.get(i)
            .as_str(heap)
            .ok_or_else(|| self.wrong(heap, i, "str"))
    }
}

/// `1 argument`, `2 arguments`, `1 to 2 arguments`, `at least 1 argument`.
fn count_text(min: usize, max: usize) -> String {
    let noun = |n: usize| if n == 1 { "argument" } else { "arguments" };
    if max == usize::MAX {
        format!("at least {min} {}", noun(min))
    } else if min == max {
        format!("{min} {}", noun(min))
    } else {
        format!("{min} to {max} arguments")
    }
}

// ----- helpers shared with methods and modules ---------------------------------------

/// 2^63: the first float above `i64::MAX` (and `-2^63` is exactly `i64::MIN`).
const TWO_POW_63: f64 = (1u64 << 63) as f64;

/// A float truncated to an int, or the `cannot convert nan to int` error when it is not
/// finite or out of range. Callers round first as they need.
pub(crate) fn float_to_int(f: f64) -> Result<i64, Fault> {
    if (-TWO_POW_63..TWO_POW_63).contains(&f) {
        Ok(f as i64)
    } else {
        Err(fault!("cannot convert {} to int", format_float(f)))
    }
}

/// Decimal integer text with optional sign and surrounding whitespace.
pub(crate) fn parse_int_text(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

/// Float text (`1.5`, `1e3`, `inf`, `nan`) with optional surrounding whitespace.
pub(crate) fn parse_float_text(s: &str) -> Option<f64> {
    s.trim().parse().ok()
}

/// A new array of new strings, one per piece. The array is built first and rooted, so
/// each string is reachable as soon as it exists.
pub(crate) fn str_array<'s>(
    vm: &mut Vm,
    pieces: impl Iterator<Item = &'s str>,
) -> Result<Value, Fault> {
    let arr = vm.new_array(Vec::new())?;
    vm.with_roots(|vm| {
        vm.push_root(arr);
        if let Value::Array(a) = arr {
            for p in pieces {
                vm.grow_array(a, 1)?;
                let s = vm.new_str(p)?;
                a.get_mut(&mut vm.heap).items.push(s);
            }
        }
        Ok(arr)
    })
}

/// A new map with string keys, for records such as `gc_stats()`. The values must be
/// immediates or already rooted.
pub(crate) fn record(vm: &mut Vm, fields: &[(&str, Value)]) -> Result<Value, Fault> {
    let map = vm.new_map(Map::default())?;
    vm.with_roots(|vm| {
        vm.push_root(map);
        for &(name, v) in fields {
            let k = vm.new_str(name)?;
            let key = to_key(k, &vm.heap)?;
            if let Value::Map(m) = map {
                m.get_mut(&mut vm.heap).entries.insert(key, (k, v));
            }
        }
        Ok(map)
    })
}

/// The display forms of `args`, separated by spaces, then a newline.
fn print_line(vm: &Vm, args: &[Value]) -> String {
    let mut line = String::new();
    for (i, &v) in args.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        match v.as_str(&vm.heap) {
            Some(s) => line.push_str(s),
            None => line.push_str(&vm.display(v)),
        }
    }
    line.push('\n');
    line
}

// ----- the built-ins --------------------------------------------------------------

fn print(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let line = print_line(vm, args);
    vm.write_out(&line)?;
    Ok(Value::Nil)
}

fn eprint(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let line = print_line(vm, args);
    vm.write_err(&line)?;
    Ok(Value::Nil)
}

fn str_(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("str", args, 1, 1)?;
    match a.get(0) {
        v @ Value::Str(_) => Ok(v),
        v => crate::ops::concat(vm, &[v]),
    }
}

fn int(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("int", args, 1, 1)?;
    match a.get(0) {
        v @ Value::Int(_) => Ok(v),
        Value::Float(f) => Ok(Value::Int(float_to_int(f)?)),
        Value::Str(s) => {
            let text = &s.get(&vm.heap).text;
            parse_int_text(text).map(Value::Int).ok_or_else(|| {
                fault!(
                    "cannot convert {} to int",
                    crate::display::repr(vm, a.get(0))
                )
            })
        }
        v => Err(fault!("cannot convert {} to int", vm.type_name(v))),
    }
}

fn float(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("float", args, 1, 1)?;
    match a.get(0) {
        Value::Int(i) => Ok(Value::Float(i as f64)),
        v @ Value::Float(_) => Ok(v),
        Value::Str(s) => parse_float_text(&s.get(&vm.heap).text)
            .map(Value::Float)
            .ok_or_else(|| {
                fault!(
                    "cannot convert {} to float",
                    crate::display::repr(vm, a.get(0))
                )
            }),
        v => Err(fault!("cannot convert {} to float", vm.type_name(v))),
    }
}

fn type_(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("type", args, 1, 1)?;
    let name: Arc<str> = vm.type_name(a.get(0)).into();
    vm.new_arc_str(name)
}

fn len(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("len", args, 1, 1)?;
    let heap = &vm.heap;
    let n = match a.get(0) {
        Value::Str(s) => s.get(heap).text.len(),
        Value::Array(arr) => arr.get(heap).items.len(),
        Value::Map(m) => m.get(heap).entries.len(),
        Value::Range(r) => usize::try_from(r.get(heap).len()).unwrap_or(usize::MAX),
        v => {
            let got = v.type_name(heap);
            return Err(fault!("len expects str, array, map or range, got {got}"));
        }
    };
    Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

fn assert(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("assert", args, 1, 2)?;
    if a.get(0).truthy() {
        return Ok(Value::Nil);
    }
    Err(match a.opt(1) {
        Some(msg) => fault!("assertion failed: {}", vm.display(msg)),
        None => fault!("assertion failed"),
    })
}

fn error(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("error", args, 1, 1)?;
    let message = vm.display(a.get(0));
    vm.make_error(&message)
}

fn range(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("range", args, 1, 3)?;
    let heap = &vm.heap;
    let (start, end) = match a.len() {
        1 => (0, a.int(heap, 0)?),
        _ => (a.int(heap, 0)?, a.int(heap, 1)?),
    };
    let step = if a.len() == 3 { a.int(heap, 2)? } else { 1 };
    if step == 0 {
        return Err(fault!("range step cannot be 0"));
    }
    let r = vm.alloc(Range {
        start,
        end,
        step,
        inclusive: false,
    })?;
    Ok(Value::Range(r))
}

fn clock(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("clock", args, 0, 0)?;
    Ok(Value::Float(vm.now()?.as_secs_f64()))
}

fn weak(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("weak", args, 1, 1)?;
    Ok(Value::Weak(vm.alloc(WeakRef { target: a.get(0) })?))
}

/// A duration in milliseconds as a script gives it: negative or nan is zero.
pub(crate) fn duration_ms(ms: f64) -> Duration {
    if ms > 0.0 {
        Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

/// `sleep(ms)`, also `time.sleep`: a negative or nan duration does not sleep. A task
/// waits on a timer (its worker runs other tasks); outside the scheduler the thread
/// sleeps.
pub(crate) fn sleep(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("sleep", args, 1, 1)?;
    let d = duration_ms(a.num(&vm.heap, 0)?);
    if d.is_zero() {
        return Ok(Value::Nil);
    }
    if vm.task.is_none() {
        std::thread::sleep(d);
        return Ok(Value::Nil);
    }
    let w = vm.begin_wait()?;
    vm.current_task()?.sched.add_timer(d, w);
    Err(Fault::Suspend)
}

/// `yield()`: lets the other runnable tasks run first.
fn yield_(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("yield", args, 0, 0)?;
    if vm.task.is_none() {
        return Ok(Value::Nil);
    }
    vm.yield_now()
}

fn gc(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("gc", args, 0, 0)?;
    vm.collect_garbage();
    Ok(Value::Nil)
}

fn gc_stats(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("gc_stats", args, 0, 0)?;
    let s = vm.heap.stats();
    let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    record(
        vm,
        &[
            ("heap_bytes", int(s.heap_bytes as u64)),
            ("objects", int(s.objects as u64)),
            ("collections", int(s.collections)),
            ("last_pause_us", int(s.last_pause_us)),
            ("max_pause_us", int(s.max_pause_us)),
            ("p99_pause_us", int(s.p99_pause_us)),
        ],
    )
}

/// Helpers for unit tests of natives.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use crate::error::Fault;
    use crate::program::Program;
    use crate::value::{NativeFn, Value};
    use crate::vm::{Output, Settings, Vm};

    /// A VM without a program, in GC stress mode (every allocation collects, so a value
    /// a native forgot to root shows up as a "stale or mistyped Gc handle" panic).
    pub fn vm() -> Vm {
        let mut settings = Settings::default();
        settings.heap.stress = std::num::NonZeroU32::new(1);
        let output = Output {
            out: Box::new(std::io::sink()),
            err: Box::new(std::io::sink()),
        };
        Vm::new(Arc::new(Program::default()), settings, output)
    }

    /// A new string, rooted for the rest of the test.
    pub fn text(vm: &mut Vm, s: &str) -> Value {
        let v = vm.new_str(s).unwrap();
        vm.push_root(v);
        v
    }

    /// Calls a native as the interpreter would (arguments rooted); the result stays
    /// rooted for the rest of the test.
    pub fn call(vm: &mut Vm, f: NativeFn, args: &[Value]) -> Result<Value, Fault> {
        for &a in args {
            vm.push_root(a);
        }
        let r = f(vm, args);
        if let Ok(v) = r {
            vm.push_root(v);
        }
        r
    }

    /// The message of a native's error.
    pub fn error(r: Result<Value, Fault>) -> String {
        match r {
            Err(Fault::Error(m)) => m,
            Err(other) => panic!("expected an error message, got {other:?}"),
            Ok(_) => panic!("expected an error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{call, error, text, vm};
    use super::*;

    #[test]
    fn conversions() {
        let mut vm = vm();
        let s = text(&mut vm, " 42 ");
        assert!(matches!(call(&mut vm, int, &[s]), Ok(Value::Int(42))));
        let s = text(&mut vm, "abc");
        assert_eq!(
            error(call(&mut vm, int, &[s])),
            "cannot convert \"abc\" to int"
        );
        assert_eq!(
            error(call(&mut vm, float, &[s])),
            "cannot convert \"abc\" to float"
        );
        assert_eq!(
            error(call(&mut vm, int, &[Value::Float(f64::NAN)])),
            "cannot convert nan to int"
        );
        assert_eq!(
            error(call(&mut vm, int, &[Value::Float(1e19)])),
            "cannot convert 1e+19 to int"
        );
        assert_eq!(
            error(call(&mut vm, int, &[])),
            "int expects 1 argument, got 0"
        );
        assert_eq!(
            error(call(&mut vm, len, &[Value::Int(5)])),
            "len expects str, array, map or range, got int"
        );
        assert_eq!(
            error(call(
                &mut vm,
                range,
                &[Value::Int(0), Value::Int(5), Value::Int(0)]
            )),
            "range step cannot be 0"
        );
        assert_eq!(
            error(call(&mut vm, range, &[Value::Int(0), Value::Float(5.0)])),
            "range expects int for argument 2, got float"
        );
        let msg = text(&mut vm, "values differ");
        assert_eq!(
            error(call(&mut vm, assert, &[Value::Bool(false), msg])),
            "assertion failed: values differ"
        );
        assert_eq!(
            error(call(&mut vm, assert, &[Value::Nil])),
            "assertion failed"
        );
    }

    #[test]
    fn gc_stats_is_a_record_in_order() {
        let mut vm = vm();
        let stats = call(&mut vm, gc_stats, &[]).ok();
        let Some(Value::Map(m)) = stats else {
            panic!("gc_stats returned {stats:?}")
        };
        let keys: Vec<String> = m
            .get(&vm.heap)
            .entries
            .values()
            .map(|&(k, _)| vm.display(k))
            .collect();
        assert_eq!(
            keys,
            [
                "heap_bytes",
                "objects",
                "collections",
                "last_pause_us",
                "max_pause_us",
                "p99_pause_us"
            ]
        );
        assert_eq!(vm.display(Value::Map(m)).matches(": ").count(), 6);
    }

    #[test]
    fn channels_wait_only_inside_tasks() {
        let mut vm = vm();
        let root = vm
            .builtin(GLOBALS.iter().position(|&n| n == "root").unwrap_or(0))
            .unwrap();
        assert_eq!(vm.display(root), "<module root>");
        let ch = call(&mut vm, crate::channel::new_channel, &[]).expect("a channel");
        assert_eq!(vm.display(ch), "<channel>");
        assert!(error(call(
            &mut vm,
            crate::channel::new_channel,
            &[Value::Int(-1)]
        ))
        .contains("capacity"));
    }

    #[test]
    fn globals_are_in_the_compilers_order() {
        let want = [
            "print", "eprint", "str", "int", "float", "type", "len", "assert", "error", "range",
            "clock", "weak", "channel", "sleep", "yield", "root", "gc", "gc_stats", "select",
        ];
        assert_eq!(GLOBALS, want);
    }

    #[test]
    fn number_text() {
        assert_eq!(parse_int_text(" 42 "), Some(42));
        assert_eq!(parse_int_text("-8"), Some(-8));
        assert_eq!(parse_int_text("+8"), Some(8));
        assert_eq!(parse_int_text("3.5"), None);
        assert_eq!(parse_int_text("0x1f"), None);
        assert_eq!(parse_int_text(""), None);
        assert_eq!(parse_int_text("99999999999999999999"), None);
        assert_eq!(parse_float_text("1e3"), Some(1000.0));
        assert_eq!(parse_float_text(" 2.5"), Some(2.5));
        assert_eq!(parse_float_text("inf"), Some(f64::INFINITY));
        assert!(parse_float_text("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_float_text("abc"), None);
    }

    #[test]
    fn float_conversion_bounds() {
        assert_eq!(float_to_int(3.7).ok(), Some(3));
        assert_eq!(float_to_int(-3.7).ok(), Some(-3));
        assert_eq!(float_to_int(-TWO_POW_63).ok(), Some(i64::MIN));
        assert!(float_to_int(TWO_POW_63).is_err());
        assert!(float_to_int(f64::NAN).is_err());
        assert!(float_to_int(f64::INFINITY).is_err());
    }

    #[test]
    fn argument_counts() {
        assert_eq!(count_text(1, 1), "1 argument");
        assert_eq!(count_text(2, 2), "2 arguments");
        assert_eq!(count_text(1, 2), "1 to 2 arguments");
        assert_eq!(count_text(1, usize::MAX), "at least 1 argument");
    }
}
