//! `time`: wall-clock time, a monotonic clock, and sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::builtins::{sleep, Args};
use crate::error::Fault;
use crate::stdlib::Member;
use crate::value::Value;
use crate::vm::Vm;

pub(super) const MEMBERS: &[(&str, Member)] = &[
    ("now", Member::Fn(now)),
    ("monotonic", Member::Fn(monotonic)),
    ("sleep", Member::Fn(sleep)),
];

/// Seconds since the Unix epoch, as a float (negative if the clock is set before it);
/// under a host clock, the host's time, so a replayed run sees the same times.
fn now(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("time.now", args, 0, 0)?;
    if let Some(clock) = &vm.settings.clock {
        return Ok(Value::Float(clock.now().as_secs_f64()));
    }
    let secs = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    Ok(Value::Float(secs))
}

/// Seconds since the VM started, from a clock that never goes backwards.
fn monotonic(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("time.monotonic", args, 0, 0)?;
    Ok(Value::Float(vm.now()?.as_secs_f64()))
}
