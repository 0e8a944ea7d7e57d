//! The embedding API's sandbox and limits: what `Engine::new()` refuses, what the
//! grants allow, and fuel and interrupts in the interpreter and in compiled code.

use std::time::{Duration, Instant};

use kiln::{Engine, ErrorKind, JitMode, Limit, Store};

#[test]
fn a_sandboxed_engine_cannot_read_a_file() {
    let mut s = Store::new(&Engine::new());
    let err = s.eval::<()>("import fs").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compile);
    assert!(err.message().contains("not available"), "{err}");
    let err = s
        .eval::<()>("import { x } from \"/etc/passwd\"")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compile);
    assert!(err.message().contains("did not grant file access"), "{err}");
}

#[test]
fn a_sandboxed_engine_cannot_read_the_environment() {
    let mut s = Store::new(&Engine::new());
    let err = s.eval::<()>("import os\nos.env(\"HOME\")").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compile);
    assert!(
        err.message().contains("module `os` is not available"),
        "{err}"
    );
}

#[test]
fn a_sandboxed_engine_cannot_read_the_clock() {
    let mut s = Store::new(&Engine::new());
    let err = s.eval::<f64>("clock()").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Runtime);
    assert!(err.message().contains("clock is not available"), "{err}");
    let err = s.eval::<()>("import time").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compile);
    let mut s = Store::new(&Engine::new().with_clock());
    assert!(s.eval::<f64>("clock()").unwrap() >= 0.0);
}

#[test]
fn a_sandboxed_engine_captures_output() {
    let mut s = Store::new(&Engine::new());
    s.eval::<()>("print(\"hello\")").unwrap();
    assert_eq!(s.take_output(), "hello\n");
    assert_eq!(s.take_output(), "");
}

#[test]
fn file_access_is_confined_to_the_granted_root() {
    let dir = std::env::temp_dir().join(format!("kiln-embed-fs-{}", std::process::id()));
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("data.txt"), "inside").unwrap();
    std::fs::write(root.join("lib.kn"), "fn twice(x) { x * 2 }").unwrap();
    std::fs::write(dir.join("secret.txt"), "outside").unwrap();
    let mut s = Store::new(&Engine::new().with_fs(&root));
    let read =
        |s: &mut Store, path: &str| s.eval::<String>(&format!("import fs\nfs.read(\"{path}\")"));
    assert_eq!(read(&mut s, "data.txt").unwrap(), "inside");
    assert_eq!(read(&mut s, "./sub/../data.txt").unwrap(), "inside");
    for escape in ["../secret.txt", "/etc/passwd", "sub/../../secret.txt"] {
        let err = read(&mut s, escape).unwrap_err();
        assert!(err.message().contains("outside"), "{escape}: {err}");
    }
    let main = root.join("main.kn");
    std::fs::write(
        &main,
        "import { twice } from \"./lib.kn\"\nlet four = twice(2)",
    )
    .unwrap();
    let m = s.load_file(&main).unwrap();
    assert_eq!(s.get::<i64>(m, "four").unwrap(), 4);
    std::fs::write(&main, "import { x } from \"../secret.kn\"").unwrap();
    std::fs::write(dir.join("secret.kn"), "let x = 1").unwrap();
    let err = s.load_file(&main).unwrap_err();
    assert!(err.message().contains("outside"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

const MODES: [JitMode; 2] = [JitMode::Off, JitMode::Eager];

const RUNAWAY: &str = "fn g(x) { x + 1 }\nfn spin() { let s = 0\n while true { s = g(s) } }";

#[test]
fn fuel_stops_a_call_in_every_tier_and_the_store_goes_on() {
    for mode in MODES {
        let engine = Engine::new().with_jit(mode).with_fuel(1_000_000);
        let mut s = Store::new(&engine);
        let m = s.load("spin.kn", RUNAWAY).unwrap();
        let spin = s.func::<(), ()>(m, "spin").unwrap();
        let err = spin.call(&mut s, ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit(Limit::Fuel), "{mode:?}");
        assert!(err.location().is_some(), "{mode:?}");
        // Each call gets the fuel afresh.
        let err = spin.call(&mut s, ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit(Limit::Fuel), "{mode:?}");
        assert_eq!(s.eval::<i64>("g(41)").unwrap_or(42), 42);
        let g = s.func::<(i64,), i64>(m, "g").unwrap();
        assert_eq!(g.call(&mut s, (1,)).unwrap(), 2, "{mode:?}");
        // A script cannot catch its way past the limit.
        let err = s
            .eval::<()>("try { while true {} } catch e { }")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit(Limit::Fuel), "{mode:?}");
    }
}

/// How long the interrupt takes to stop the loop is measured by
/// `cargo bench --bench embed_interrupt`; this test checks that it does, and that the
/// store goes on. The bound only tells a hang from a descheduled thread.
#[test]
fn interrupt_from_another_thread_stops_an_infinite_loop() {
    for mode in MODES {
        let mut s = Store::new(&Engine::new().with_jit(mode));
        let m = s.load("spin.kn", RUNAWAY).unwrap();
        let spin = s.func::<(), ()>(m, "spin").unwrap();
        let handle = s.interrupt_handle();
        let runner = std::thread::spawn(move || {
            let r = spin.call(&mut s, ());
            (r, Instant::now(), s)
        });
        std::thread::sleep(Duration::from_millis(30));
        let raised = Instant::now();
        handle.interrupt();
        let (result, stopped, mut s) = runner.join().unwrap();
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit(Limit::Interrupted), "{mode:?}");
        let took = stopped.duration_since(raised);
        assert!(took < Duration::from_secs(5), "{mode:?}: {took:?}");
        assert_eq!(s.eval::<i64>("1 + 2").unwrap(), 3);
    }
}

#[test]
fn call_depth_is_limited() {
    let mut s = Store::new(&Engine::new().with_max_depth(100));
    let err = s.eval::<i64>("fn f(n) { f(n + 1) }\nf(0)").unwrap_err();
    assert!(err.message().contains("stack overflow"), "{err}");
    assert_eq!(
        s.eval::<i64>("fn g(n) { if n == 0 { 0 } else { g(n - 1) } }\ng(50)")
            .unwrap(),
        0
    );
}
