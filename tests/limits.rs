//! Fuel, interrupts, the heap limit, the size caps and the task bound stop runaway scripts
//! in every tier, each with its own error kind, and scripts cannot catch them; call depth
//! ends in a catchable `stack overflow` hosts can tell apart; a failed allocation is a clean
//! `out of memory` that leaves the heap usable; a dropped machine leaks nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln::vm::{Collection, Limit};
use kiln::{ErrorKind, JitMode, JitSettings, KilnError, Output, Settings};

fn settings(mode: JitMode) -> Settings {
    Settings {
        tier: kiln::tier_config(&JitSettings {
            mode,
            threshold: Some(2),
            verbose: false,
            dump: None,
            threshold_seed: None,
            exit_every: None,
        }),
        ..Settings::default()
    }
}

fn run(src: &str, s: Settings) -> Result<(), KilnError> {
    let out = Output {
        out: Box::new(std::io::sink()),
        err: Box::new(std::io::sink()),
    };
    kiln::run_source("limits.kn", src, s, out)
}

const MODES: [JitMode; 3] = [JitMode::Off, JitMode::On, JitMode::Eager];

/// Each shape of unbounded work: a loop, a counted loop, recursion without a loop, and a
/// loop inside a function compiled code calls. `try` must not swallow the limit.
const RUNAWAYS: [&str; 4] = [
    "let i = 0\nwhile true { i += 1 }",
    "fn f() { let s = 0\n for i in 0..1000000000000 { s += i }\n s }\ntry { f() } catch e { print(e) }",
    "fn f(n) { if n == 0 { return 0 }\n f(n - 1) + f(n - 1) }\nprint(f(200))",
    "fn g(x) { x + 1 }\nfn f() { let s = 0\n loop { s = g(s) } }\ntry { f() } catch e { print(e) }",
];

#[test]
fn fuel_stops_every_runaway_in_every_tier() {
    for mode in MODES {
        for src in RUNAWAYS {
            let mut s = settings(mode);
            s.fuel = Some(2_000_000);
            let err = run(src, s).expect_err(src);
            assert_eq!(err.kind, ErrorKind::Limit(Limit::Fuel), "{mode:?}: {src}");
            assert_eq!(err.message(), "instruction limit exceeded");
            assert!(err.diagnostics[0].position().is_some(), "{err}");
        }
    }
}

#[test]
fn fuel_lets_bounded_work_finish() {
    for mode in MODES {
        let mut s = settings(mode);
        s.fuel = Some(10_000_000);
        run(
            "let s = 0\nfor i in 0..1000 { s += i }\nassert(s == 499500)",
            s,
        )
        .unwrap();
    }
}

#[test]
fn interrupt_from_another_thread_stops_an_infinite_loop() {
    for mode in MODES {
        for src in RUNAWAYS {
            let flag = Arc::new(AtomicBool::new(false));
            let mut s = settings(mode);
            s.interrupt = Some(flag.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            let src = src.to_string();
            let runner = std::thread::spawn(move || {
                let r = run(&src, s);
                tx.send(Instant::now()).unwrap();
                r
            });
            std::thread::sleep(Duration::from_millis(50));
            let raised = Instant::now();
            flag.store(true, Ordering::Release);
            let stopped = rx.recv_timeout(Duration::from_secs(10)).expect("stops");
            let err = runner.join().unwrap().expect_err("interrupted");
            assert_eq!(err.kind, ErrorKind::Limit(Limit::Interrupted), "{mode:?}");
            // The latency is measured by `cargo bench --bench embed_interrupt`; this
            // bound only tells a hang from a descheduled thread on a loaded machine.
            let took = stopped.duration_since(raised);
            assert!(took < Duration::from_secs(5), "{mode:?}: {took:?}");
            assert!(!flag.load(Ordering::Acquire), "the flag is lowered again");
        }
    }
}

/// Bytes of heap the hostile scripts below get: small, so each stops quickly.
const HEAP: usize = 8 << 20;

/// Runs `src` with `limit` set on top of the mode's settings and checks that it stops with
/// `kind` within a few seconds, and that a bounded script then runs under the same settings.
fn stops_with(mode: JitMode, src: &str, limit: impl Fn(&mut Settings), kind: ErrorKind) {
    let mut s = settings(mode);
    limit(&mut s);
    let start = Instant::now();
    let err = run(src, s.clone()).expect_err(src);
    let took = start.elapsed();
    assert_eq!(err.kind, kind, "{mode:?}: {src}: {err}");
    assert!(took < Duration::from_secs(20), "{mode:?}: {src}: {took:?}");
    run("let a = [1, 2, 3]\nassert(a.map(|x| x * 2)[2] == 6)", s).expect("a fresh run works");
}

fn heap_limit(s: &mut Settings) {
    s.limits.heap_bytes = Some(HEAP);
}

/// Each shape of unbounded growth, wrapped in `try` so that a catchable error would let the
/// script go on (and fail the test by ending normally).
const GROWTH: [&str; 7] = [
    // Exponential string doubling, by `+`, interpolation and a native.
    "let s = \"x\"\ntry { loop { s = s + s } } catch e { print(e) }",
    "let s = \"x\"\ntry { loop { s = \"${s}${s}\" } } catch e { print(e) }",
    "let s = \"xy\"\ntry { loop { s = s.repeat(2) } } catch e { print(e) }",
    // Array doubling, and pushing forever.
    "let a = [1]\ntry { loop { a = a + a } } catch e { print(e) }",
    "let a = []\ntry { loop { a.push(a.len()) } } catch e { print(e) }",
    // Map flooding with `m[k] = v` and with fields.
    "let m = {}\nlet i = 0\ntry { loop { m[i] = i; i += 1 } } catch e { print(e) }",
    "let m = {}\nlet i = 0\ntry { loop { m[\"k${i}\"] = [i]; i += 1 } } catch e { print(e) }",
];

#[test]
fn the_heap_limit_stops_every_kind_of_growth_in_every_tier() {
    for mode in MODES {
        for src in GROWTH {
            stops_with(mode, src, heap_limit, ErrorKind::Limit(Limit::HeapBytes));
        }
    }
}

#[test]
fn growth_paths_keep_their_values_rooted_under_gc_stress() {
    // Stress collects at every allocation and every `reserve`, verifying the heap each
    // time: a value held across one of the new safe points without a root would be found.
    for mode in [JitMode::Off, JitMode::Eager] {
        for src in GROWTH {
            let small = |s: &mut Settings| {
                s.limits.heap_bytes = Some(256 << 10);
                s.heap.stress = std::num::NonZeroU32::new(1);
                s.heap.verify = true;
            };
            stops_with(mode, src, small, ErrorKind::Limit(Limit::HeapBytes));
        }
    }
}

#[test]
fn the_heap_limit_message_and_garbage() {
    let err = run(GROWTH[0], {
        let mut s = settings(JitMode::Off);
        heap_limit(&mut s);
        s
    })
    .expect_err("stops");
    assert_eq!(err.message(), "heap limit exceeded");
    assert!(err.diagnostics[0].position().is_some(), "{err}");
    // Garbage does not count: a loop that allocates far more than the limit in total, but
    // keeps little alive, runs to the end.
    let mut s = settings(JitMode::Off);
    heap_limit(&mut s);
    run(
        "let keep = []\nfor i in 0..200000 { let t = [i, \"s${i}\", {k: i}]\n if i % 1000 == 0 { keep.push(t) } }\nassert(keep.len() == 200)",
        s,
    )
    .expect("garbage is collected before the limit is enforced");
}

/// A hostile script, the cap it runs into, and how a host sets that cap.
type Capped = (&'static str, Collection, fn(&mut Settings));

/// The size caps, each with the kind it stops with.
fn caps() -> [Capped; 9] {
    fn string(s: &mut Settings) {
        s.limits.max_string_bytes = 1000;
    }
    fn array(s: &mut Settings) {
        s.limits.max_array_len = 1000;
    }
    fn map(s: &mut Settings) {
        s.limits.max_map_len = 1000;
    }
    [
        (GROWTH[0], Collection::String, string),
        (GROWTH[1], Collection::String, string),
        (GROWTH[2], Collection::String, string),
        ("let s = \"x\"\ntry { loop { s = \"!\" + s + 1 } } catch e { print(e) }", Collection::String, string),
        ("let a = [\"ab\"]\ntry { loop { a.push(a.join(\"-\")) } } catch e { print(e) }", Collection::String, string),
        (GROWTH[3], Collection::Array, array),
        (GROWTH[4], Collection::Array, array),
        (GROWTH[5], Collection::Map, map),
        ("let m = {}\nlet i = 0\ntry { loop { m.x = i; m[\"k${i}\"] = i; i += 1 } } catch e { print(e) }", Collection::Map, map),
    ]
}

#[test]
fn size_caps_stop_every_growth_path_in_every_tier() {
    for mode in MODES {
        for (src, what, cap) in caps() {
            stops_with(mode, src, cap, ErrorKind::Limit(Limit::Size(what)));
        }
    }
}

#[test]
fn size_caps_allow_what_fits() {
    let mut s = settings(JitMode::Off);
    s.limits.max_array_len = 3;
    s.limits.max_map_len = 2;
    s.limits.max_string_bytes = 4;
    run(
        "let a = [1, 2]\na.push(3)\nlet m = {a: 1}\nm.b = 2\nm.a = 3\nm[\"b\"] = 4\nlet s = \"ab\" + \"cd\"\nassert(len(a) == 3 && len(m) == 2 && s == \"abcd\")",
        s,
    )
    .expect("exactly at the caps");
}

#[test]
fn spawn_flooding_stops_at_the_task_limit() {
    let src = "let ch = channel()\nfn wait() { ch.recv() }\ntry { loop { spawn wait() } } catch e { print(e) }";
    for mode in MODES {
        stops_with(
            mode,
            src,
            |s| s.limits.max_tasks = Some(50),
            ErrorKind::Limit(Limit::Tasks),
        );
    }
    // Tasks that have ended do not count.
    let mut s = settings(JitMode::Off);
    s.limits.max_tasks = Some(3);
    run(
        "fn one() { 1 }\nlet n = 0\nfor i in 0..100 { n += (spawn one()).join() }\nassert(n == 100)",
        s,
    )
    .expect("ended tasks free their places");
}

#[test]
fn a_limit_in_another_task_stops_the_run() {
    let src = "fn grow() { let s = \"x\"\n loop { s = s + s } }\nlet t = spawn grow()\ntry { t.join() } catch e { print(e) }";
    for mode in MODES {
        stops_with(mode, src, heap_limit, ErrorKind::Limit(Limit::HeapBytes));
    }
}

#[test]
fn stack_overflow_is_catchable_and_told_apart_in_every_tier() {
    for mode in MODES {
        let mut s = settings(mode);
        s.max_depth = 500;
        let err = run("fn f(n) { f(n + 1) + 1 }\nf(0)", s.clone()).expect_err("overflows");
        assert_eq!(err.kind, ErrorKind::StackOverflow, "{mode:?}: {err}");
        assert_eq!(err.message(), "stack overflow");
        run(
            "fn f(n) { f(n + 1) + 1 }\nlet m = \"\"\ntry { f(0) } catch e { m = e.message }\nassert(m == \"stack overflow\")",
            s.clone(),
        )
        .expect("catchable");
        let err = run("throw error(\"stack overflow\")", s).expect_err("thrown");
        assert_eq!(
            err.kind,
            ErrorKind::Runtime,
            "a script cannot forge the kind"
        );
    }
}

/// A script exercising most allocation paths: constants, closures and cells, strings,
/// arrays, maps, structs, errors, prelude methods.
const REPRESENTATIVE: &str = "
struct P { x, y }
fn mk(n) { let c = 0\n return || { c += n; c } }
let add = mk(2)
let parts = []
for i in 0..40 {
  parts.push(\"${i}:${add()}\")
  let m = {k: i, s: \"v\" + str(i)}
  m[\"p\"] = P { x: i, y: [i, i * 2] }
}
let joined = parts.join(\",\")
let sq = [1, 2, 3].map(|x| x * x).filter(|x| x > 1)
let e = \"\"
try { throw error(\"boom\") } catch err { e = err.message }
print(joined.len(), sq, e, \"a,b\".split(\",\"))
";

#[test]
fn each_failed_allocation_is_a_clean_error_and_the_heap_stays_usable() {
    for mode in [JitMode::Off, JitMode::Eager] {
        let mut k = 1;
        loop {
            let mut s = settings(mode);
            s.heap.fail_allocation = Some(k);
            s.heap.verify = true;
            let mut repl = kiln::vm::repl::Repl::new(
                s,
                Output {
                    out: Box::new(std::io::sink()),
                    err: Box::new(std::io::sink()),
                },
            );
            match repl.eval(REPRESENTATIVE) {
                Ok(_) => break,
                Err(err) => {
                    assert_eq!(err.kind, ErrorKind::Runtime, "{mode:?} k={k}: {err}");
                    assert_eq!(err.message(), "out of memory", "{mode:?} k={k}: {err}");
                }
            }
            // The same machine goes on: a collection verifies the heap, then more work.
            // (Only without the JIT: a compile still running on the background thread
            // holds the program, which a REPL input must extend.)
            if mode == JitMode::Off {
                let v = repl
                    .eval("gc()\nlet t = [1, 2, 3].map(|x| \"${x}\").join(\"\")\nt")
                    .unwrap_or_else(|e| panic!("k={k}: heap unusable: {e}"));
                assert_eq!(v.as_deref(), Some("\"123\""), "k={k}");
            }
            k += 1;
        }
        assert!(k > 100, "{mode:?}: only {k} allocations were tried");
    }
}

#[test]
fn a_released_machine_leaves_nothing_behind() {
    for mode in [JitMode::Off, JitMode::Eager] {
        let (program, main) =
            kiln::vm::compile("leak.kn", REPRESENTATIVE, &Default::default()).expect("compiles");
        let mut vm = kiln::Vm::new(
            std::sync::Arc::new(program),
            settings(mode),
            Output {
                out: Box::new(std::io::sink()),
                err: Box::new(std::io::sink()),
            },
        );
        vm.run_main(main).expect("runs");
        assert!(vm.heap.stats().objects > 100);
        let last = vm.release();
        assert_eq!(last.objects, 0, "{mode:?}: {last:?}");
        assert_eq!(last.heap_bytes, 0, "{mode:?}: {last:?}");
        assert_eq!(last.blocks, 0, "{mode:?}: {last:?}");
    }
}
