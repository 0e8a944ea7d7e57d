//! kiln-difftest's generator driven by the fuzzer's bytes: the program must print the same
//! and end the same way in the interpreter and with eager compilation (in process, so a
//! panic in either tier is a crash the fuzzer reports).
#![no_main]

#[path = "common.rs"]
mod common;

use arbitrary::Unstructured;
use kiln::JitMode;
use kiln_difftest::{gen, tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let program = tree::render(&gen::generate(&mut Unstructured::new(bytes)));
    let interp = common::run(&program, JitMode::Off);
    let eager = common::run(&program, JitMode::Eager);
    assert_eq!(interp, eager, "the tiers disagree on:\n{program}");
});
