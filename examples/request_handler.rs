//! A script request handler called from Rust a million times (in release; fewer in
//! the test run), with the store's heap figures printed along the way to show memory
//! staying flat: each call's garbage is collected, nothing accumulates.

use std::collections::HashMap;
use std::time::Instant;

use kiln::{Engine, Store};

const HANDLER: &str = r#"
let routes = {"/users": "user list", "/health": "ok"}

fn handle(method, path, query) {
  let body = routes.get(path, "not found")
  let parts = path.split("/")
  let limit = query.get("limit", 10)
  "${method} ${path} -> ${body} (${len(parts)} parts, limit ${limit})"
}
"#;

fn main() -> Result<(), kiln::Error> {
    let calls: usize = if cfg!(debug_assertions) {
        20_000
    } else {
        1_000_000
    };
    let mut store = Store::new(&Engine::new());
    let app = store.load("handler.kn", HANDLER)?;
    let handle = store.func::<(&str, &str, HashMap<String, i64>), String>(app, "handle")?;

    let mut query = HashMap::new();
    query.insert("limit".to_string(), 5);
    let reply = handle.call(&mut store, ("GET", "/users", query.clone()))?;
    assert_eq!(reply, "GET /users -> user list (2 parts, limit 5)");
    store.collect_garbage();
    let live_before = store.heap_stats().heap_bytes;

    let start = Instant::now();
    let mut samples = Vec::new();
    for i in 0..calls {
        let path = if i % 2 == 0 { "/health" } else { "/missing" };
        let reply = handle.call(&mut store, ("POST", path, HashMap::new()))?;
        assert!(reply.starts_with("POST /"));
        if (i + 1) % (calls / 10) == 0 {
            let stats = store.heap_stats();
            println!(
                "{:>8} calls: heap {:>7} bytes, {:>5} objects, {} collections",
                i + 1,
                stats.heap_bytes,
                stats.objects,
                stats.collections
            );
            samples.push(stats.heap_bytes);
        }
    }
    let per_call = start.elapsed().as_nanos() as f64 / calls as f64;
    println!("{calls} calls, {per_call:.0} ns per call");
    // Flat: what is live after all the calls is what was live after the first (the
    // handler keeps nothing), and the garbage between collections stays bounded.
    store.collect_garbage();
    let live_after = store.heap_stats().heap_bytes;
    println!("live heap: {live_before} bytes before, {live_after} bytes after");
    assert!(live_after <= live_before + 4096, "live data grew");
    let peak = samples.iter().copied().max().unwrap_or(0);
    assert!(peak < 4 << 20, "garbage grew: {samples:?}");
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().unwrap();
}
