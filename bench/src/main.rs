//! `kiln-bench`: runs the benchmark suite (`bench/programs`) under Kiln's tiers and its peers —
//! lua5.4, luajit, python3 and the native Rust twins — after checking that every one prints the
//! expected output, and reports median wall time, spread, peak memory and ratios to lua5.4 and
//! to native as a terminal table, Markdown (`--markdown`), JSON (`--json`) and an SVG chart
//! (`--plot`). `bench/README.md` says how to run it and read it.

#![deny(unsafe_code)]

mod manifest;
mod measure;
mod plot;
mod report;
mod results;
mod runtimes;
mod suite;

use clap::builder::PossibleValuesParser;
use clap::Parser;
use manifest::{Benchmark, BENCHMARKS};
use results::{Machine, Report, RuntimeInfo};
use runtimes::Paths;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Compare Kiln's tiers with lua5.4, luajit, python3 and native Rust on the benchmark suite.
#[derive(Parser)]
#[command(name = "kiln-bench", version)]
struct Cli {
    /// Use the small sizes: a smoke check that still verifies every twin's output.
    #[arg(long)]
    quick: bool,
    /// Timed runs per benchmark and runtime (interleaved across runtimes).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Untimed runs before the timed ones (their output is checked too).
    #[arg(long, default_value_t = 1)]
    warmup: u16,
    /// Only the benchmarks whose name contains SUBSTR.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,
    /// Only this runtime; repeat for several (default: every one found).
    #[arg(long = "runtime", value_name = "NAME", value_parser = PossibleValuesParser::new(runtimes::NAMES))]
    runtimes: Vec<String>,
    /// The Kiln binary [default: target/release/kiln, built with cargo if missing].
    #[arg(long, value_name = "PATH")]
    kiln: Option<PathBuf>,
    /// Kill a run after this many seconds and mark its cell failed.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    /// Also write every result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Print Markdown tables (for bench/README.md) instead of the terminal table.
    #[arg(long)]
    markdown: bool,
    /// Also draw a grouped bar chart of time ratios to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Internal: run the command after `--` once and report its wall time and peak RSS.
    #[arg(long, hide = true)]
    measure: bool,
    /// The command for `--measure`.
    #[arg(last = true, hide = true)]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let timeout = Duration::from_secs(cli.timeout);
    if cli.measure {
        return measure::wrapper(&cli.command, timeout);
    }
    match harness(&cli, timeout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("kiln-bench: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs the suite and writes every requested output; `Ok(false)` when anything failed.
fn harness(cli: &Cli, timeout: Duration) -> Result<bool, String> {
    let benches = select(cli.filter.as_deref())?;
    let paths = Paths::detect();
    let found = runtimes::discover(&paths, &cli.runtimes, cli.kiln.as_deref());
    found
        .notes
        .iter()
        .for_each(|note| eprintln!("kiln-bench: {note}"));
    found
        .errors
        .iter()
        .for_each(|error| eprintln!("kiln-bench: ERROR: {error}"));
    if found.runtimes.is_empty() {
        return Err("no runtime can run".to_owned());
    }
    let settings = suite::Settings {
        quick: cli.quick,
        runs: cli.runs.into(),
        warmup: cli.warmup.into(),
        timeout,
    };
    let benchmarks = suite::run(&benches, &found.runtimes, &paths, &settings);
    let runtimes: Vec<RuntimeInfo> = found
        .runtimes
        .iter()
        .map(|rt| RuntimeInfo {
            name: rt.name.to_owned(),
            version: rt.version.clone(),
        })
        .collect();
    let report = Report {
        quick: cli.quick,
        runs: settings.runs,
        warmup: settings.warmup,
        machine: Machine::detect(),
        geomean: results::geomeans(&benchmarks, &runtimes),
        runtimes,
        notes: found.notes,
        benchmarks,
    };
    let written = write_outputs(cli, &report);
    let failed = report_failures(&report);
    Ok(written && !failed && found.errors.is_empty())
}

/// The benchmarks whose name contains `filter` (all without one); none is an error.
fn select(filter: Option<&str>) -> Result<Vec<&'static Benchmark>, String> {
    let chosen: Vec<&Benchmark> = BENCHMARKS
        .iter()
        .filter(|b| filter.is_none_or(|f| b.name.contains(f)))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
        return Err(format!(
            "no benchmark matches the filter (benchmarks: {})",
            names.join(", ")
        ));
    }
    Ok(chosen)
}

/// Prints the table and writes the files asked for; false if a file could not be written.
fn write_outputs(cli: &Cli, report: &Report) -> bool {
    print!(
        "{}",
        if cli.markdown {
            report::markdown(report)
        } else {
            report::terminal(report)
        }
    );
    let mut ok = true;
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string());
        if let Err(e) =
            json.and_then(|text| std::fs::write(path, text + "\n").map_err(|e| e.to_string()))
        {
            eprintln!("kiln-bench: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    if let Some(path) = &cli.plot {
        if let Err(e) = plot::svg(report, path) {
            eprintln!("kiln-bench: {e}");
            ok = false;
        }
    }
    ok
}

/// Repeats every failure's summary after the table, so none scrolls away; true if any.
fn report_failures(report: &Report) -> bool {
    let failures: Vec<String> = report
        .benchmarks
        .iter()
        .flat_map(|b| b.cells.iter().map(move |c| (b, c)))
        .filter_map(|(b, c)| {
            let error = c.error.as_deref()?;
            Some(format!(
                "  {} under {}: {}",
                b.name,
                c.runtime,
                error.lines().next().unwrap_or("")
            ))
        })
        .collect();
    if !failures.is_empty() {
        eprintln!(
            "kiln-bench: {} FAILED (details in the FAIL lines above):",
            failures.len()
        );
        failures.iter().for_each(|f| eprintln!("{f}"));
    }
    !failures.is_empty()
}
