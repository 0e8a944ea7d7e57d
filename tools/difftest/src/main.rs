//! `kiln-difftest`: runs generated programs through every tier of a `kiln` binary and
//! reports (and optionally saves as corpus regression tests) the programs on which the
//! tiers disagree. See `docs/testing.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use kiln_difftest::{run, tree, Campaign};

#[derive(Parser)]
#[command(name = "kiln-difftest", about = "Differential testing of Kiln's tiers")]
struct Cli {
    /// The `kiln` binary to test (a release build runs about ten times as many programs).
    #[arg(long, default_value = "target/release/kiln")]
    kiln: PathBuf,
    /// The first seed; programs use consecutive seeds from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How many programs to run (default: until --time runs out, or 1000).
    #[arg(long)]
    count: Option<u64>,
    /// Stop starting new programs after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    time: Option<u64>,
    /// Programs run at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// The time limit of one run of one program, in seconds.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    /// Write each minimised divergence as a regression test into this directory
    /// (`tests/corpus/regression`).
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// Print the program of --seed and exit.
    #[arg(long)]
    print: bool,
    /// Stop at the first divergence.
    #[arg(long)]
    stop_early: bool,
    /// Report divergences as found, without minimising them (for counting in long runs).
    #[arg(long)]
    no_minimise: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print {
        print!("{}", tree::render(&kiln_difftest::program(cli.seed)));
        return ExitCode::SUCCESS;
    }
    let count = cli
        .count
        .or(if cli.time.is_none() { Some(1000) } else { None });
    let campaign = Campaign {
        kiln: cli.kiln.clone(),
        first_seed: cli.seed,
        count,
        deadline: cli.time.map(|s| Instant::now() + Duration::from_secs(s)),
        jobs: cli.jobs,
        timeout: Duration::from_secs(cli.timeout),
        modes: run::default_modes,
        stop_early: cli.stop_early,
        progress_every: Some(500),
        minimise: !cli.no_minimise,
    };
    let started = Instant::now();
    let report = match campaign.run(&|f| {
        eprintln!(
            "seed {}: divergence{}\n{}\nprogram:\n{}",
            f.seed,
            if f.reproduced {
                ""
            } else {
                " (did not reproduce on a second run)"
            },
            f.divergence,
            f.minimised
        );
    }) {
        Ok(report) => report,
        Err(e) => {
            eprintln!(
                "kiln-difftest: {e} (is --kiln {} built?)",
                cli.kiln.display()
            );
            return ExitCode::from(2);
        }
    };
    println!(
        "{} programs from seed {} in {:.0?}: {} divergences",
        report.programs,
        cli.seed,
        started.elapsed(),
        report.findings.len()
    );
    for f in &report.findings {
        println!(
            "  seed {}: {} vs {}",
            f.seed, f.divergence.reference.name, f.divergence.mode.name
        );
        if let Some(dir) = &cli.save {
            let saved = run::Runner::new(&cli.kiln, "save", campaign.timeout)
                .and_then(|r| kiln_difftest::write_regression(&r, dir, f));
            match saved {
                Ok(path) => println!("    saved as {}", path.display()),
                Err(e) => println!("    not saved: {e}"),
            }
        }
    }
    if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
