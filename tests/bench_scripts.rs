//! Runs every benchmark script, `bench/programs/<name>.kn`, at its quick size and checks that it
//! prints the output the suite's manifest expects, so the Kiln programs never rot and a change
//! that miscomputes one of them fails here. One trial per benchmark, named after it
//! (`cargo test --test bench_scripts nbody`). The sizes and outputs come from the same table
//! the harness (`cargo run --release -p kiln-bench`) uses.

use libtest_mimic::{Arguments, Failed, Trial};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// Shared with the harness, which also uses the full sizes this test leaves unread.
#[allow(dead_code)]
#[path = "../bench/src/manifest.rs"]
mod manifest;

/// A script still running after this long counts as hung: it is killed and the trial fails.
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let args = Arguments::from_args();
    let trials = manifest::BENCHMARKS
        .iter()
        .map(|bench| Trial::test(bench.name, move || check(bench)))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn check(bench: &manifest::Benchmark) -> Result<(), Failed> {
    let programs = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join("programs");
    let script = programs.join(format!("{}.kn", bench.name));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("run")
        .arg(&script)
        .arg(bench.quick.size.to_string())
        .current_dir(&programs)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run kiln: {e}"))?;
    // Drain both pipes while waiting, so a chatty script cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_with_timeout(&mut child)?;
    let (stdout, stderr) = (join(stdout), join(stderr));
    let expected = bench.quick.expected_stdout();
    if status.success() && stdout == expected {
        return Ok(());
    }
    Err(format!(
        "`kiln run {}.kn {}` exited with {status}\n--- expected stdout\n{expected}--- actual stdout\n{stdout}--- stderr\n{stderr}",
        bench.name, bench.quick.size
    )
    .into())
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error leaves what was read so far, which the failure message then shows.
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn join(reader: JoinHandle<String>) -> String {
    reader
        .join()
        .unwrap_or_else(|_| "<reader thread panicked>".to_owned())
}

fn wait_with_timeout(child: &mut Child) -> Result<std::process::ExitStatus, Failed> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for kiln: {e}"))?
        {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            // Killing may race with a natural exit; either way the trial fails as hung.
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {} s", TIMEOUT.as_secs()).into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
