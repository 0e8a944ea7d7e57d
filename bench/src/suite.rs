//! Running the suite. For each benchmark every runtime first runs `warmup` untimed rounds,
//! then `runs` timed rounds interleaved across runtimes (A B C A B C …) so that drift in the
//! machine's speed hits every column alike. Every run, warm-up included, must print exactly
//! the manifest's expected output; a runtime that fails once is reported loudly, marked
//! failed for that benchmark and not run again on it.

use crate::manifest::{Benchmark, Case};
use crate::measure::{sample, Outcome, Sample};
use crate::results::{BenchResult, Cell};
use crate::runtimes::{Paths, Runtime};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// How the suite runs.
pub struct Settings {
    /// Use the quick sizes.
    pub quick: bool,
    /// Timed rounds.
    pub runs: usize,
    /// Untimed rounds before them.
    pub warmup: usize,
    /// Limit for one run; a run over it is killed and fails its cell.
    pub timeout: Duration,
}

impl Settings {
    fn rounds(&self) -> usize {
        self.warmup + self.runs
    }
}

/// Runs `benches` under `runtimes`, showing a progress bar on a terminal.
pub fn run(
    benches: &[&Benchmark],
    runtimes: &[Runtime],
    paths: &Paths,
    settings: &Settings,
) -> Vec<BenchResult> {
    let samples = benches.len() * runtimes.len() * settings.rounds();
    let progress = ProgressBar::new(samples as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed}] {wide_bar} {pos}/{len} {msg}")
    {
        progress.set_style(style);
    }
    progress.enable_steady_tick(Duration::from_millis(200));
    let results = benches
        .iter()
        .map(|bench| {
            let case = if settings.quick {
                &bench.quick
            } else {
                &bench.full
            };
            let job = Job {
                bench,
                case,
                paths,
                settings,
                progress: &progress,
            };
            job.run(runtimes)
        })
        .collect();
    progress.finish_and_clear();
    results
}

/// One benchmark at one size, and where to report progress.
struct Job<'a> {
    bench: &'a Benchmark,
    case: &'a Case,
    paths: &'a Paths,
    settings: &'a Settings,
    progress: &'a ProgressBar,
}

impl Job<'_> {
    fn run(&self, runtimes: &[Runtime]) -> BenchResult {
        let rounds = self.settings.rounds();
        let mut cells: Vec<Cell> = runtimes.iter().map(|rt| Cell::new(rt.name)).collect();
        for (rt, cell) in runtimes.iter().zip(&mut cells) {
            self.progress
                .set_message(format!("{}: preparing {}", self.bench.name, rt.name));
            if let Err(reason) = rt.prepare(&self.paths.programs, self.bench) {
                self.fail(cell, reason, rounds);
            }
        }
        for round in 0..rounds {
            for (rt, cell) in runtimes.iter().zip(&mut cells) {
                if cell.error.is_some() {
                    continue;
                }
                let what = format!(
                    "{} under {} (round {}/{rounds})",
                    self.bench.name,
                    rt.name,
                    round + 1
                );
                self.progress.set_message(what);
                self.run_once(rt, cell, round >= self.settings.warmup, rounds - round - 1);
            }
        }
        let mut result = BenchResult {
            name: self.bench.name.to_owned(),
            size: self.case.size,
            cells,
        };
        result.compute_stats();
        result
    }

    /// Runs once under `rt` and records the run in `cell` (its time only when `timed`);
    /// `left` is how many rounds would follow, skipped if this run fails.
    fn run_once(&self, rt: &Runtime, cell: &mut Cell, timed: bool, left: usize) {
        let argv = rt.argv(&self.paths.programs, self.bench, self.case.size);
        let timeout = self.settings.timeout;
        let checked = sample(&argv, &self.paths.programs, timeout)
            .and_then(|s| verify(s, self.case, timeout));
        self.progress.inc(1);
        match checked {
            Ok(run) => {
                cell.peak_rss_kb = cell.peak_rss_kb.max(run.max_rss_kb);
                if timed {
                    cell.times_s.push(run.wall.as_secs_f64());
                }
            }
            Err(reason) => self.fail(cell, reason, left),
        }
    }

    /// Marks `cell` failed, says so loudly on stderr, and advances the progress bar past the
    /// `skipped` runs it will no longer do.
    fn fail(&self, cell: &mut Cell, reason: String, skipped: usize) {
        self.progress.suspend(|| {
            eprintln!(
                "FAIL: {} under {}: {}",
                self.bench.name,
                cell.runtime,
                reason.trim_end()
            );
        });
        self.progress.inc(skipped as u64);
        cell.error = Some(reason);
    }
}

/// Accepts a run only if it exited with status 0 and printed exactly the expected output.
/// The first line of an error is a short summary (the table shows it); details follow.
fn verify(run: Sample, case: &Case, timeout: Duration) -> Result<Sample, String> {
    let stderr = indented_tail(&run.stderr);
    match run.outcome {
        Outcome::Timeout => Err(format!("timed out after {} s", timeout.as_secs())),
        Outcome::Signal(signal) => Err(format!("killed by signal {signal}{stderr}")),
        Outcome::Exit(0) => {
            let expected = case.expected_stdout();
            if run.stdout == expected {
                Ok(run)
            } else {
                Err(format!(
                    "wrong output\n{}{stderr}",
                    first_difference(&expected, &run.stdout)
                ))
            }
        }
        Outcome::Exit(code) => Err(format!("exit status {code}{stderr}")),
    }
}

/// The last lines of a command's stderr, indented under the summary line.
fn indented_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    tail.iter()
        .map(|line| format!("\n    stderr: {line}"))
        .collect()
}

/// Describes where `actual` first departs from `expected`, quoting lines so tabs show.
fn first_difference(expected: &str, actual: &str) -> String {
    let mut want = expected.lines();
    let mut got = actual.lines();
    for number in 1.. {
        match (want.next(), got.next()) {
            (Some(w), Some(g)) if w == g => continue,
            (None, None) => break,
            (w, g) => {
                let show =
                    |line: Option<&str>| line.map_or("(no line)".to_owned(), |l| format!("{l:?}"));
                return format!(
                    "    line {number}: expected {}\n    line {number}:      got {}",
                    show(w),
                    show(g)
                );
            }
        }
    }
    "    the lines match, but the output does not end in exactly one newline".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_located() {
        let message = first_difference("a\nb\n", "a\nc\n");
        assert!(message.contains("line 2: expected \"b\""), "{message}");
        assert!(message.contains("got \"c\""), "{message}");
        assert!(first_difference("a\n", "a\nextra\n").contains("expected (no line)"));
        assert!(first_difference("a\n", "a").contains("one newline"));
    }

    #[test]
    fn verification_checks_status_and_output() {
        let case = Case {
            size: 1,
            lines: &["42"],
        };
        let run = |stdout: &str, outcome| Sample {
            wall: Duration::ZERO,
            max_rss_kb: 1,
            outcome,
            stdout: stdout.to_owned(),
            stderr: "boom\n".to_owned(),
        };
        let timeout = Duration::from_secs(9);
        assert!(verify(run("42\n", Outcome::Exit(0)), &case, timeout).is_ok());
        let wrong = verify(run("41\n", Outcome::Exit(0)), &case, timeout).unwrap_err();
        assert!(wrong.starts_with("wrong output\n"), "{wrong}");
        let crashed = verify(run("42\n", Outcome::Exit(1)), &case, timeout).unwrap_err();
        assert_eq!(crashed, "exit status 1\n    stderr: boom");
        let slow = verify(run("", Outcome::Timeout), &case, timeout).unwrap_err();
        assert_eq!(slow, "timed out after 9 s");
    }
}
