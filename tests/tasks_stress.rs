//! Stress tests of tasks and channels, run in-process through `kiln::run_source`.
//!
//! The default sizes keep a debug-mode `cargo test` quick; `KILN_STRESS_FULL=1` runs the
//! sizes the scheduler is specified against (8 producers × 8 consumers × 10^6 messages,
//! 10^6 spawned tasks), best in release:
//! `KILN_STRESS_FULL=1 cargo test --release --test tasks_stress -- --nocapture`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kiln::{KilnError, Output, Settings};

fn full() -> bool {
    std::env::var("KILN_STRESS_FULL").is_ok_and(|v| v == "1")
}

/// Everything a script wrote to stdout.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

fn run(script: &str) -> (Result<(), KilnError>, String, String) {
    let (out, err) = (Capture::default(), Capture::default());
    let output = Output {
        out: Box::new(out.clone()),
        err: Box::new(err.clone()),
    };
    let start = Instant::now();
    let result = kiln::run_source("stress.kn", script, Settings::default(), output);
    eprintln!("  ran in {:.2?}", start.elapsed());
    (result, out.text(), err.text())
}

fn run_ok(script: &str) -> String {
    let (result, out, err) = run(script);
    if let Err(e) = result {
        panic!("script failed: {e}\nstderr: {err}");
    }
    out
}

/// Producers send distinct ints; consumers count them and sum them and their squares.
/// Any lost or duplicated message changes one of the three totals.
fn many_to_many(capacity: &str) {
    let per_producer: i64 = if full() { 1_000_000 / 8 * 8 } else { 2_000 };
    let script = format!(
        r#"
        let ch = channel({capacity})
        let results = channel()
        fn produce(ch, id, n) {{
          for k in 0..n {{ ch.send(id * n + k + 1) }}
        }}
        fn consume(ch, results) {{
          let count = 0
          let sum = 0
          let squares = 0
          for v in ch {{ count += 1; sum += v; squares += v * v }}
          results.send([count, sum, squares])
        }}
        let producers = []
        for id in 0..8 {{ producers.push(spawn produce(ch, id, {per_producer})) }}
        for _ in 0..8 {{ spawn consume(ch, results) }}
        for p in producers {{ p.join() }}
        ch.close()
        let totals = [0, 0, 0]
        for _ in 0..8 {{
          let r = results.recv()
          for i in 0..3 {{ totals[i] += r[i] }}
        }}
        print(totals)
        "#
    );
    let n = 8 * per_producer;
    let expected_sum = n * (n + 1) / 2;
    let expected_squares = (1..=n).fold(0i64, |acc, v| acc.wrapping_add(v.wrapping_mul(v)));
    let out = run_ok(&script);
    assert_eq!(
        out.trim(),
        format!("[{n}, {expected_sum}, {expected_squares}]")
    );
}

#[test]
fn eight_by_eight_unbounded_loses_and_duplicates_nothing() {
    many_to_many("");
}

#[test]
fn eight_by_eight_bounded_loses_and_duplicates_nothing() {
    many_to_many("16");
}

#[test]
fn eight_by_eight_rendezvous_loses_and_duplicates_nothing() {
    many_to_many("0");
}

#[test]
fn spawns_and_joins_many_tasks() {
    let n: i64 = if full() { 1_000_000 } else { 20_000 };
    let script = format!(
        r#"
        fn work(i) {{ return i * 2 }}
        let sum = 0
        let batch = []
        for i in 0..{n} {{
          batch.push(spawn work(i))
          if batch.len() == 1000 {{
            for t in batch {{ sum += t.join() }}
            batch.clear()
          }}
        }}
        for t in batch {{ sum += t.join() }}
        print(sum)
        "#
    );
    assert_eq!(run_ok(&script).trim(), (n * (n - 1)).to_string());
}

#[test]
fn select_serves_every_ready_channel() {
    let out = run_ok(
        r#"
        let a = channel()
        let b = channel()
        for i in 0..2000 { a.send(i); b.send(i) }
        let counts = [0, 0]
        for _ in 0..2000 { counts[select([a, b])[0]] += 1 }
        print(counts)
        "#,
    );
    let counts: Vec<i64> = out
        .trim()
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|n| n.parse().expect("a count"))
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 2000);
    assert!(
        counts.iter().all(|&c| c >= 600),
        "unfair select: {counts:?}"
    );
}

#[test]
fn cancelling_blocked_tasks_runs_their_defers() {
    let out = run_ok(
        r#"
        let log = channel()
        let never = channel()
        let full = channel(1)
        full.send(0)
        fn on_recv(log, ch) { defer log.send("recv"); ch.recv() }
        fn on_send(log, ch) { defer log.send("send"); ch.send(1) }
        fn on_select(log, ch) { defer log.send("select"); select([ch]) }
        fn on_sleep(log) { defer log.send("sleep"); sleep(100000) }
        fn on_join(log, other) { defer log.send("join"); other.join() }
        let blocker = spawn on_recv(log, never)
        let tasks = [blocker, spawn on_send(log, full), spawn on_select(log, never),
                     spawn on_sleep(log), spawn on_join(log, blocker)]
        sleep(50)
        let cancelled = 0
        for t in tasks {
          t.cancel()
          try { t.join() } catch e { if e.message == "task cancelled" { cancelled += 1 } }
        }
        let seen = []
        for _ in 0..5 { seen.push(log.recv()) }
        seen.sort()
        print(cancelled, seen)
        "#,
    );
    assert_eq!(
        out.trim(),
        r#"5 ["join", "recv", "select", "send", "sleep"]"#
    );
}

#[test]
fn deadlock_is_reported_with_every_blocked_task() {
    let (result, out, _) = run(
        "fn wait(c) { return c.recv() }\nlet c = channel()\nlet t = spawn wait(c)\nprint(\"start\")\nt.join()\n",
    );
    assert_eq!(out, "start\n");
    let err = result.expect_err("a deadlock");
    assert_eq!(err.message(), "deadlock: all tasks are blocked");
    let places: Vec<String> = err.trace.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        places,
        ["<main> (stress.kn:5:3)", "wait (stress.kn:1:23)"],
        "{places:?}"
    );
}

/// A `select` served by its channel leaves a timer behind that can wake nobody: the
/// deadlock after it must be reported at once, not when that timer would have expired.
#[test]
fn served_select_timers_do_not_delay_the_deadlock_report() {
    let start = Instant::now();
    let (result, out, _) = run(concat!(
        "fn later(c) { yield()\n c.send(1) }\n",
        "let c = channel()\nspawn later(c)\n",
        "print(select([c], 60000))\n",
        "c.recv()\n",
    ));
    assert_eq!(out, "[0, 1]\n");
    let err = result.expect_err("a deadlock");
    assert_eq!(err.message(), "deadlock: all tasks are blocked");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "the report waited for the served select's 60 s timer: {:?}",
        start.elapsed()
    );
}
