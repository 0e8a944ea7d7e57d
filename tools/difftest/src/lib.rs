//! Kiln's differential tester: a seeded generator of valid, terminating Kiln programs
//! ([`gen`]), a runner that executes each through the real `kiln` binary in several modes
//! (the interpreter, eager and tiered compilation, GC stress, forced side exits, random
//! thresholds) and compares stdout, stderr and exit status ([`run`]), and a minimiser that
//! shrinks a diverging program to a corpus regression test ([`minimise`]).
//!
//! A stand-alone crate (not a corner of `fuzz/`) so that the `kiln-difftest` binary and
//! the test command can use it on stable Rust without cargo-fuzz; the fuzz target
//! `differential` reuses the same generator with the fuzzer's bytes as its choices.

pub mod gen;
pub mod minimise;
pub mod rng;
pub mod run;
pub mod tree;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use run::{Divergence, Mode, Runner};
use tree::Node;

/// The program for `seed`.
pub fn program(seed: u64) -> Vec<Node> {
    let mut text = vec![Node::Line(format!("// kiln-difftest seed {seed}"))];
    text.extend(gen::generate(&mut rng::SplitMix::new(seed)));
    text
}

/// FNV-1a: a stable hash for deriving per-mode seeds (std's hasher may change).
pub fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A program on which two modes disagreed, with its minimised form.
#[derive(Clone, Debug)]
pub struct Finding {
    pub seed: u64,
    pub divergence: Divergence,
    /// The smallest program found that still diverges between the same two modes
    /// (the original if the divergence did not reproduce).
    pub minimised: String,
    /// The divergence reproduced when the program was run again.
    pub reproduced: bool,
}

/// Runs before a divergence that did not show again counts as not reproducible. Background
/// compiles (mode `tiered`) finish at different points in different runs, so some
/// divergences show only in some runs.
const REPRODUCE_TRIES: u32 = 20;

/// Minimises `program`, which diverged as `divergence` says, re-running only the two modes
/// involved. A candidate counts only if it fails the same way ([`Divergence::kind`]: so
/// the minimiser cannot drift into a program that hangs everywhere, or from a wrong
/// output to a compiler panic). A divergence that shows only in some runs is tried as
/// often as it took to reproduce it, twice over.
pub fn minimise_divergence(
    runner: &Runner,
    program: Vec<Node>,
    divergence: &Divergence,
) -> (String, bool) {
    let reference_crashed = divergence.mode == divergence.reference;
    let modes: Vec<Mode> = if reference_crashed {
        vec![divergence.reference.clone()]
    } else {
        vec![divergence.reference.clone(), divergence.mode.clone()]
    };
    let fails_once = |t: &[Node]| match run::compare(runner, &tree::render(t), &modes) {
        Ok(Some(d)) => d.kind() == divergence.kind(),
        _ => false,
    };
    let Some(tries) = (1..=REPRODUCE_TRIES).find(|_| fails_once(&program)) else {
        return (tree::render(&program), false);
    };
    let mut fails = |t: &[Node]| (0..2 * tries).any(|_| fails_once(t));
    (tree::render(&minimise::minimise(program, &mut fails)), true)
}

/// A run over many seeds.
pub struct Campaign {
    pub kiln: PathBuf,
    pub first_seed: u64,
    /// Programs to run; `None` until the deadline.
    pub count: Option<u64>,
    pub deadline: Option<Instant>,
    pub jobs: usize,
    /// The time limit of one run of one program.
    pub timeout: Duration,
    /// The modes for a seed (the reference first).
    pub modes: fn(u64) -> Vec<Mode>,
    /// Stop at the first finding.
    pub stop_early: bool,
    /// Report on stderr after every this many programs.
    pub progress_every: Option<u64>,
    /// Minimise what diverges (slow: hundreds of runs per finding).
    pub minimise: bool,
}

/// What a campaign did.
#[derive(Debug, Default)]
pub struct Report {
    pub programs: u64,
    pub findings: Vec<Finding>,
}

impl Campaign {
    /// Runs the campaign on `jobs` threads; `progress` is told about every finding as it
    /// is made.
    pub fn run(&self, progress: &(dyn Fn(&Finding) + Sync)) -> io::Result<Report> {
        let next = AtomicU64::new(self.first_seed);
        let done = AtomicU64::new(0);
        let findings = Mutex::new(Vec::new());
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..self.jobs.max(1))
                .map(|w| {
                    let (next, done, findings, stop) = (&next, &done, &findings, &stop);
                    s.spawn(move || -> io::Result<()> {
                        let runner = Runner::new(&self.kiln, &w.to_string(), self.timeout)?;
                        while !stop.load(Ordering::Relaxed)
                            && self.deadline.is_none_or(|d| Instant::now() < d)
                        {
                            let seed = next.fetch_add(1, Ordering::Relaxed);
                            if self.count.is_some_and(|n| seed >= self.first_seed + n) {
                                break;
                            }
                            if let Some(f) = self.check(&runner, seed)? {
                                progress(&f);
                                findings
                                    .lock()
                                    .expect("no worker panics holding it")
                                    .push(f);
                                if self.stop_early {
                                    stop.store(true, Ordering::Relaxed);
                                }
                            }
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if self.progress_every.is_some_and(|every| n % every == 0) {
                                eprintln!("kiln-difftest: {n} programs run");
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().expect("difftest worker panicked"))
        })?;
        let mut findings = findings.into_inner().expect("workers are done");
        findings.sort_by_key(|f| f.seed);
        Ok(Report {
            programs: done.into_inner(),
            findings,
        })
    }

    /// Runs the program of `seed` in every mode; minimises it if they disagree.
    pub fn check(&self, runner: &Runner, seed: u64) -> io::Result<Option<Finding>> {
        let program = program(seed);
        let modes = (self.modes)(seed);
        let Some(divergence) = run::compare(runner, &tree::render(&program), &modes)? else {
            return Ok(None);
        };
        let (minimised, reproduced) = if self.minimise {
            minimise_divergence(runner, program, &divergence)
        } else {
            (tree::render(&program), true)
        };
        Ok(Some(Finding {
            seed,
            divergence,
            minimised,
            reproduced,
        }))
    }
}

/// Writes `finding` as the next numbered regression test in `dir`
/// (`tests/corpus/regression`): the minimised program with a header saying what diverged,
/// and what the reference mode prints for it as the expectation (`.out`, plus `.err` with
/// the exit status and error line when the reference run fails). Returns the script's path.
pub fn write_regression(runner: &Runner, dir: &Path, finding: &Finding) -> io::Result<PathBuf> {
    let number = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.get(..3)?.parse::<u32>().ok())
        .max()
        .map_or(1, |n| n + 1);
    let stem = format!("{number:03}_difftest_seed_{}", finding.seed);
    let d = &finding.divergence;
    let text = format!(
        "// Found by kiln-difftest (seed {}): `{}` and `{}` ({}) disagreed.\n{}",
        finding.seed,
        d.reference.name,
        d.mode.name,
        d.mode.flags.join(" "),
        finding.minimised
    );
    let expected = runner.run(&text, &d.reference)?;
    let script = dir.join(format!("{stem}.kn"));
    std::fs::write(&script, &text)?;
    std::fs::write(dir.join(format!("{stem}.out")), &expected.stdout)?;
    if expected.status != Some(0) {
        let error = expected
            .stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("");
        let status = expected.status.unwrap_or(-1);
        std::fs::write(
            dir.join(format!("{stem}.err")),
            format!("exit {status}\n{error}\n"),
        )?;
    }
    Ok(script)
}
