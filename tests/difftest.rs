//! The differential test in the test command: generated programs (kiln-difftest's
//! generator, seeds from 0) run through the debug `kiln` binary in every mode of
//! `kiln_difftest::run::default_modes` — the interpreter, eager and tiered compilation, GC
//! stress with heap verification, forced side exits, random thresholds — and must agree on
//! stdout, stderr and exit status.
//!
//! The budget is a fixed number of programs, so a run is reproducible and takes about a
//! minute on two cores in a debug build: `KILN_DIFFTEST_PROGRAMS` (default
//! [`DEFAULT_PROGRAMS`]) and `KILN_DIFFTEST_SEED` (default 0) change it. The long runs use
//! the `kiln-difftest` binary on a release build (`docs/testing.md`).

use std::time::Duration;

use kiln_difftest::{run, Campaign};

/// Programs the test command runs: about 70 s of CPU (35 s on two idle cores) in a debug
/// build.
const DEFAULT_PROGRAMS: u64 = 60;

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn generated_programs_agree_in_every_mode() {
    let campaign = Campaign {
        kiln: env!("CARGO_BIN_EXE_kiln").into(),
        first_seed: env_number("KILN_DIFFTEST_SEED").unwrap_or(0),
        count: Some(env_number("KILN_DIFFTEST_PROGRAMS").unwrap_or(DEFAULT_PROGRAMS)),
        deadline: None,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        // A debug build under GC stress is slow; a hang is still caught.
        timeout: Duration::from_secs(60),
        modes: run::default_modes,
        stop_early: true,
        progress_every: None,
        minimise: true,
    };
    let report = campaign.run(&|_| {}).expect("kiln runs");
    let failures: Vec<String> = report
        .findings
        .iter()
        .map(|f| {
            format!(
                "seed {}{}:\n{}\nminimised program:\n{}",
                f.seed,
                if f.reproduced {
                    ""
                } else {
                    " (did not reproduce)"
                },
                f.divergence,
                f.minimised
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} programs diverged (save them with `kiln-difftest --seed S --count 1 --save tests/corpus/regression`):\n{}",
        failures.len(),
        report.programs,
        failures.join("\n")
    );
}
