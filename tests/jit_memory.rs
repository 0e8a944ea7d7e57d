//! Compiled code is freed when nothing can run it any more: code a recompile replaced
//! or that was left to the interpreter while its program still runs, and everything
//! once the program and its tier are gone.
#![cfg(feature = "jit")]

use kiln::{Engine, JitMode, JitSettings, Output, Settings, Store};
use parking_lot::Mutex;

/// The counters are per process: the tests here take turns.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn machine_code_is_freed_with_its_program() {
    let _turn = SERIAL.lock();
    let live = kiln_jit::code_modules_live();
    let freed = kiln_jit::code_modules_freed();
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
    // Each run compiled `sq` and the top level.
    assert!(kiln_jit::code_modules_freed() >= freed + 6);
    assert_eq!(kiln_jit::code_modules_live(), live);
}

#[test]
fn replaced_code_is_freed_while_its_program_runs() {
    let _turn = SERIAL.lock();
    let engine = Engine::new().with_jit(JitMode::Eager);
    let mut store = Store::new(&engine);
    let src = "fn twice(x) { return x + x }\n\
               fn sum(n) { let s = 0\n for i in 0..n { s += twice(i) }\n return s }\n\
               fn mix() { return [twice(1.5), twice(\"ab\")] }";
    let m = store.load("twice.kn", src).unwrap();
    let sum = store.func::<(i64,), i64>(m, "sum").unwrap();
    let mix = store.func::<(), kiln::Value>(m, "mix").unwrap();
    assert_eq!(sum.call(&mut store, (10,)).unwrap(), 90);
    let made = || kiln_jit::code_modules_live() + kiln_jit::code_modules_freed();
    let (made_before, freed) = (made(), kiln_jit::code_modules_freed());
    // Each new argument type fails a guard of `twice`'s code and brings a recompile
    // of it and of `sum`, which calls it directly; the code they replace is
    // unreachable from then on.
    mix.call(&mut store, ()).unwrap();
    assert!(made() > made_before, "nothing was recompiled");
    kiln_jit::collect_code();
    assert!(
        kiln_jit::code_modules_freed() > freed,
        "no replaced code was freed"
    );
    // The program still runs, compiled.
    assert_eq!(sum.call(&mut store, (100,)).unwrap(), 9900);
}
