//! How long `InterruptHandle::interrupt`, raised from another thread, takes to stop a
//! script spinning in an infinite loop of calls: best, median and worst of N runs
//! (default 20) for each tier. Run with `cargo bench --bench embed_interrupt` (`-- N`
//! for another run count). The target is 10 ms; on an idle machine it is about 1 ms.

use std::time::{Duration, Instant};

use kiln::{Engine, ErrorKind, JitMode, Limit, Store};

const RUNAWAY: &str = "fn g(x) { x + 1 }\nfn spin() { let s = 0\n while true { s = g(s) } }";

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20)
        .max(1);
    for mode in [JitMode::Off, JitMode::Eager] {
        let mut took: Vec<Duration> = (0..runs).map(|_| stop_once(mode)).collect();
        took.sort();
        println!(
            "interrupt, jit {mode:?}: {runs} runs: best {:?}, median {:?}, worst {:?}",
            took[0],
            took[runs / 2],
            took[runs - 1]
        );
    }
}

/// Starts the loop on a thread, raises the interrupt after 30 ms and returns the time
/// from raising it to the call's return.
fn stop_once(mode: JitMode) -> Duration {
    let mut store = Store::new(&Engine::new().with_jit(mode));
    let m = store.load("spin.kn", RUNAWAY).expect("compiles");
    let spin = store.func::<(), ()>(m, "spin").expect("found");
    let handle = store.interrupt_handle();
    let runner = std::thread::spawn(move || {
        let r = spin.call(&mut store, ());
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(30));
    let raised = Instant::now();
    handle.interrupt();
    let (result, stopped) = runner.join().expect("the runner does not panic");
    let kind = result.expect_err("the loop is infinite").kind();
    assert_eq!(kind, ErrorKind::Limit(Limit::Interrupted));
    stopped.duration_since(raised)
}
