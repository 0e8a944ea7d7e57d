//! Micro-benchmark of the embedding API's typed call path: 10^6 calls of a trivial
//! script function through a `TypedFunc`, reported in nanoseconds per call for each
//! tier. Run with `cargo bench --bench embed_calls` (`-- N` for another call count).

use std::time::Instant;

use kiln::{Engine, JitMode, Store};

fn main() {
    let calls: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    for mode in [JitMode::Off, JitMode::On] {
        let mut store = Store::new(&Engine::new().with_jit(mode));
        let m = store
            .load("bench.kn", "fn add(a, b) { a + b }")
            .expect("compiles");
        let add = store.func::<(i64, i64), i64>(m, "add").expect("found");
        // Warm up (and let the JIT compile `add` in `On` mode).
        for i in 0..10_000 {
            add.call(&mut store, (i, 1)).expect("runs");
        }
        let start = Instant::now();
        let mut sum = 0i64;
        for i in 0..calls as i64 {
            sum = sum.wrapping_add(add.call(&mut store, (i, 1)).expect("runs"));
        }
        let elapsed = start.elapsed();
        let expected = (0..calls as i64).fold(0i64, |s, i| s.wrapping_add(i + 1));
        assert_eq!(sum, expected);
        println!(
            "typed call, jit {mode:?}: {calls} calls in {elapsed:?}: {:.1} ns/call",
            elapsed.as_nanos() as f64 / calls as f64
        );
    }
}
