//! Arbitrary source, run under fuel, heap, depth and task limits with no capabilities, in
//! the interpreter or with eager compilation (the first byte chooses): whatever happens
//! must be a clean error, never a panic, an abort or a hang.
#![no_main]

#[path = "common.rs"]
mod common;

use kiln::JitMode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&first, rest)) = bytes.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let jit = if first & 1 == 0 { JitMode::Off } else { JitMode::Eager };
    common::run(text, jit);
});
