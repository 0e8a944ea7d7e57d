//! What the run targets share: settings with fuel, heap and depth limits, no capabilities,
//! a clock that races ahead (so `sleep` cannot stall the fuzzer), and capture of what a
//! run prints.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::vm::limits::{Clock, Limits};
use kiln::vm::Capabilities;
use kiln::{ErrorKind, JitMode, JitSettings, KilnError, Output, Settings};

/// Steps a run may take: enough for real loops, few enough for thousands of runs a second.
pub const FUEL: u64 = 200_000;
/// Bytes a task's heap may hold.
pub const HEAP: usize = 16 << 20;

/// A clock that moves an hour every time it is read: timers fire almost at once.
#[derive(Debug, Default)]
struct RacingClock(AtomicU64);

impl Clock for RacingClock {
    fn now(&self) -> Duration {
        Duration::from_secs(self.0.fetch_add(3600, Ordering::Relaxed))
    }
}

pub fn settings(jit: JitMode) -> Settings {
    let mut s = Settings {
        fuel: Some(FUEL),
        max_depth: 500,
        threads: 1,
        // print and eprint go to the captured output; no files, no os, no time module.
        capabilities: Capabilities {
            stdio: true,
            ..Capabilities::default()
        },
        clock: Some(Arc::new(RacingClock::default())),
        limits: Limits {
            heap_bytes: Some(HEAP),
            max_tasks: Some(16),
            ..Limits::default()
        },
        ..Settings::default()
    };
    s.tier = kiln::tier_config(&JitSettings {
        mode: jit,
        threshold: Some(2),
        verbose: false,
        dump: None,
        threshold_seed: None,
        exit_every: None,
    });
    s
}

/// A `Write` into a shared buffer.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `text` and returns everything it printed, then how it ended.
pub fn run(text: &str, jit: JitMode) -> String {
    let (out, err) = (Capture::default(), Capture::default());
    let output = Output {
        out: Box::new(out.clone()),
        err: Box::new(err.clone()),
    };
    let result = kiln::run_source("fuzz.kn", text, settings(jit), output);
    let mut text = String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
    text.push_str(&String::from_utf8_lossy(&err.0.lock().unwrap()));
    if let Err(e) = result {
        // A panic Kiln caught at a boundary is still a bug (libFuzzer's panic hook
        // usually aborts before it is caught).
        assert_ne!(e.kind, ErrorKind::Internal, "{e}");
        text.push_str(&describe(&e));
    }
    text
}

fn describe(e: &KilnError) -> String {
    let mut report = Vec::new();
    kiln::report::render(e, &mut report, false);
    String::from_utf8_lossy(&report).into_owned()
}
