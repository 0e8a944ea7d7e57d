//! Arbitrary bytes through the front end: decoding, lexing, parsing, compiling and
//! disassembling must never panic, whatever the input (errors are diagnostics).
#![no_main]

use kiln::vm::{compile, disasm, loader, Capabilities};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = loader::decode_source("fuzz.kn", bytes.to_vec()) else {
        return;
    };
    if let Ok((program, _)) = compile("fuzz.kn", &text, &Capabilities {
        stdio: true,
        ..Capabilities::default()
    }) {
        let _ = disasm::disassemble(&program);
    }
});
