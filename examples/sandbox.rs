//! Running untrusted scripts: no capabilities, and each limit demonstrated — fuel
//! (steps per call), an interrupt from a watchdog thread (a wall-time budget), call
//! depth, and memory. A limit stops the call with its own error kind, a script cannot
//! catch it, and the store goes on serving the next call.

use std::time::{Duration, Instant};

use kiln::{Engine, ErrorKind, Limit, Limits, Store};

const UNTRUSTED: &str = r#"
fn spin() { let i = 0
  while true { i += 1 } }
fn sneaky() { try { spin() } catch e { "caught it" } }
fn deep() { 1 + deep() }
fn hog() { let xs = []
  while true { xs.push("some text to fill memory") } }
fn polite(n) { let s = 0
  for i in 0..n { s += i }
  s }
"#;

fn main() -> Result<(), kiln::Error> {
    let engine = Engine::new() // no stdio, files, environment or clock
        .with_fuel(5_000_000)
        .with_max_depth(200)
        .with_limits(Limits {
            heap_bytes: Some(8 << 20),
            ..Limits::default()
        });
    let mut store = Store::new(&engine);
    let m = store.load("untrusted.kn", UNTRUSTED)?;
    let call = |store: &mut Store, name: &str| -> kiln::Error {
        let f = store.func::<(), ()>(m, name).expect("declared");
        f.call(store, ()).expect_err("stopped by a limit")
    };

    // Fuel: the step budget of one call, which `try` cannot swallow.
    for name in ["spin", "sneaky"] {
        let err = call(&mut store, name);
        println!("{name}: {err}");
        assert_eq!(err.kind(), ErrorKind::Limit(Limit::Fuel));
    }

    // Depth: runaway recursion is an error at the limit, not a crashed host.
    let err = call(&mut store, "deep");
    println!("deep: {}", err.message());
    assert!(err.message().contains("stack overflow"));

    // Time: a watchdog interrupts a call that runs past its wall-time budget.
    store.set_fuel(None);
    let watchdog = store.interrupt_handle();
    let budget = Duration::from_millis(50);
    let timer = std::thread::spawn(move || {
        std::thread::sleep(budget);
        watchdog.interrupt();
    });
    let started = Instant::now();
    let err = call(&mut store, "spin");
    let _ = timer.join();
    println!(
        "spin with a {budget:?} budget: stopped after {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Limit(Limit::Interrupted));

    // Memory: `Limits::heap_bytes` bounds each heap; a script that keeps growing one
    // stops when a collection cannot bring it back under the bound.
    store.set_fuel(None);
    let err = call(&mut store, "hog");
    println!("hog: {}", err.message());
    assert_eq!(err.kind(), ErrorKind::Limit(Limit::HeapBytes));

    // After every limit the store serves the next call.
    let polite = store.func::<(i64,), i64>(m, "polite")?;
    assert_eq!(polite.call(&mut store, (1000,))?, 499_500);
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().unwrap();
}
