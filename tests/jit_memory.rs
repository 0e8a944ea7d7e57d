//! Compiled code is freed when nothing can run it any more: after a run, its program
//! and its tier are gone, and so is the machine code.
#![cfg(feature = "jit")]

use kiln::{JitMode, JitSettings, Output, Settings};

#[test]
fn machine_code_is_freed_with_its_program() {
    let before = kiln_jit::code_modules_freed();
    for _ in 0..3 {
        let settings = Settings {
            tier: kiln::tier_config(&JitSettings {
                mode: JitMode::Eager,
                threshold: None,
                verbose: false,
                dump: None,
                threshold_seed: None,
                exit_every: None,
            }),
            ..Settings::default()
        };
        let out = Output {
            out: Box::new(std::io::sink()),
            err: Box::new(std::io::sink()),
        };
        let src = "fn sq(x) { return x * x }\nlet s = 0\nfor i in 0..100 { s += sq(i) }\nassert(s == 328350)";
        kiln::run_source("free.kn", src, settings, out).unwrap();
    }
    assert_eq!(kiln_jit::code_modules_freed(), before + 3);
}
