//! The `kiln` command: run scripts, evaluate code, explore in a REPL, list bytecode.
//!
//! Exit status: 0 success, 1 runtime error, 2 compile error, 64 usage error (and
//! whatever a script passes to `os.exit`).

use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kiln::report::{exit_code, render, use_color};
use kiln::vm::tier::ExitEvery;
use kiln::{JitMode, KilnError, Output, Settings};

const USAGE_ERROR: u8 = 64;

/// `kiln --version`: the version, and the tiers this build has (the bench harness reads
/// the `jit:` line).
const VERSION: &str = if kiln::HAS_JIT {
    concat!(env!("CARGO_PKG_VERSION"), "\njit: cranelift")
} else {
    env!("CARGO_PKG_VERSION")
};

#[derive(Parser)]
#[command(name = "kiln", version = VERSION, about = "Kiln: a tiered scripting runtime")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run CODE instead of a file (the remaining arguments go to it).
    #[arg(short = 'e', long = "eval", value_name = "CODE")]
    eval: Option<String>,
    #[command(flatten)]
    opts: RunOpts,
    /// The script to run and its arguments. Everything after the script belongs to the
    /// script, even words that look like kiln's own flags.
    #[arg(value_name = "FILE [ARGS]", trailing_var_arg = true)]
    script: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a script; the arguments after it are the script's (`os.args()`).
    Run {
        #[arg(value_name = "FILE [ARGS]", required = true, trailing_var_arg = true)]
        script: Vec<String>,
    },
    /// An interactive session (also what a bare `kiln` starts on a terminal).
    Repl,
    /// Print the bytecode of a script and the modules it imports.
    Disasm { file: PathBuf },
}

#[derive(Args)]
struct RunOpts {
    /// Collect garbage at every allocation, or with =N at every N-th (a debugging aid; also
    /// KILN_GC_STRESS=1 or =N).
    #[arg(long, global = true, value_name = "N", num_args = 0..=1, require_equals = true,
          default_missing_value = "1")]
    gc_stress: Option<NonZeroU32>,
    /// Check the whole heap after every collection; a broken heap stops the run with an
    /// internal error (also KILN_GC_VERIFY=1).
    #[arg(long, global = true)]
    gc_verify: bool,
    /// Stop the run with `instruction limit exceeded` after N steps (calls and loop
    /// iterations; see docs/cli.md).
    #[arg(long, global = true, value_name = "N")]
    fuel: Option<u64>,
    /// Stop the run with `heap limit exceeded` when a task's heap would pass this many
    /// bytes (suffixes K, M, G).
    #[arg(long, global = true, value_name = "BYTES", value_parser = parse_bytes)]
    heap_limit: Option<usize>,
    /// Compile hot code: off, on (the default) or eager (at first call; the test mode).
    /// Also KILN_JIT.
    #[arg(long, global = true, value_name = "MODE", value_parser = ["off", "on", "eager"])]
    jit: Option<String>,
    /// Calls plus loop iterations before a function is compiled; `random[:SEED]` gives each
    /// function its own, from 1 to 4096 (a test mode). Also KILN_JIT_THRESHOLD.
    #[arg(long, global = true, value_name = "N|random[:SEED]", value_parser = parse_threshold)]
    jit_threshold: Option<Threshold>,
    /// Test mode: compiled code takes a side exit at every N-th type guard, or after a
    /// random number of them (`random[:SEED]`). Also KILN_JIT_EXIT_EVERY.
    #[arg(long, global = true, value_name = "N|random[:SEED]", value_parser = parse_exit_every)]
    jit_exit_every: Option<ExitEvery>,
    /// Print a line for every function compiled, refused or left to the interpreter.
    #[arg(long, global = true)]
    jit_verbose: bool,
    /// Print compiled functions' Cranelift IR (`clif`) or machine code (`asm`) on stderr.
    #[arg(long, global = true, value_name = "WHAT", value_parser = ["clif", "asm"])]
    jit_dump: Option<String>,
    /// Print tier and heap statistics on stderr at exit.
    #[arg(long, global = true)]
    stats: bool,
    /// Worker threads that run tasks (default: one per CPU; also KILN_THREADS).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

/// `--jit-threshold`: a number, or a seed for a random threshold per function.
#[derive(Clone, Copy, Debug)]
enum Threshold {
    Fixed(u32),
    Random(u64),
}

fn parse_threshold(text: &str) -> Result<Threshold, String> {
    match parse_random(text)? {
        Some(seed) => Ok(Threshold::Random(seed)),
        None => text
            .parse()
            .map(Threshold::Fixed)
            .map_err(|_| format!("expected a number or random[:SEED], got `{text}`")),
    }
}

fn parse_exit_every(text: &str) -> Result<ExitEvery, String> {
    match parse_random(text)? {
        Some(seed) => Ok(ExitEvery::Random(seed)),
        None => text
            .parse()
            .map(ExitEvery::Nth)
            .map_err(|_| format!("expected a number from 1 or random[:SEED], got `{text}`")),
    }
}

/// `random` (a seed from the clock) or `random:SEED`; `None` for anything else.
fn parse_random(text: &str) -> Result<Option<u64>, String> {
    let Some(rest) = text.strip_prefix("random") else {
        return Ok(None);
    };
    match rest.strip_prefix(':') {
        Some(seed) => seed
            .parse()
            .map(Some)
            .map_err(|_| format!("expected random:SEED with a number, got `{text}`")),
        None if rest.is_empty() => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            Ok(Some(now ^ u64::from(std::process::id())))
        }
        None => Err(format!("expected random or random:SEED, got `{text}`")),
    }
}

/// A byte count with an optional binary suffix: `65536`, `64K`, `16M`, `1G`.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        _ => (text, 0),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("expected a byte count such as 65536, 64K or 16M, got `{text}`"))
}

/// An environment variable's value, parsed; ignored when unset, empty or malformed (the
/// options are checked strictly, the environment is a convenience).
fn env_parsed<T>(name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| parse(&v).ok())
}

impl RunOpts {
    fn settings(&self, args: Vec<String>) -> Settings {
        let mut s = Settings::default();
        s.heap.stress = self.gc_stress.or_else(|| {
            // KILN_GC_STRESS=1 (or any word but 0) is every allocation, =N every N-th.
            env_flag("KILN_GC_STRESS").then(|| {
                let every = std::env::var("KILN_GC_STRESS").ok()?.parse().ok();
                every.or(NonZeroU32::new(1))
            })?
        });
        s.heap.verify = self.gc_verify || env_flag("KILN_GC_VERIFY");
        s.fuel = self.fuel;
        s.limits.heap_bytes = self.heap_limit;
        s.args = args;
        s.threads = self
            .threads
            .map(usize::from)
            .or_else(|| std::env::var("KILN_THREADS").ok()?.parse().ok())
            .unwrap_or(0);
        let mode = self
            .jit
            .clone()
            .or_else(|| std::env::var("KILN_JIT").ok())
            .unwrap_or_else(|| "on".into());
        let threshold = self
            .jit_threshold
            .or_else(|| env_parsed("KILN_JIT_THRESHOLD", parse_threshold));
        if let (Some(Threshold::Random(seed)), true) = (threshold, self.jit_verbose) {
            eprintln!("jit: random thresholds from seed {seed}");
        }
        s.tier = kiln::tier_config(&kiln::JitSettings {
            mode: match mode.as_str() {
                "off" => JitMode::Off,
                "eager" => JitMode::Eager,
                _ => JitMode::On,
            },
            threshold: match threshold {
                Some(Threshold::Fixed(n)) => Some(n),
                _ => None,
            },
            threshold_seed: match threshold {
                Some(Threshold::Random(seed)) => Some(seed),
                _ => None,
            },
            exit_every: self
                .jit_exit_every
                .or_else(|| env_parsed("KILN_JIT_EXIT_EVERY", parse_exit_every)),
            verbose: self.jit_verbose,
            dump: self.jit_dump.as_deref().map(|d| match d {
                "asm" => kiln::JitDump::Asm,
                _ => kiln::JitDump::Clif,
            }),
        });
        s
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn main() -> ExitCode {
    // Before any worker thread exists: tasks move between workers, and one arena keeps a
    // long-running service's memory flat (see `kiln_gc::share_one_malloc_arena`).
    kiln_gc::share_one_malloc_arena();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(USAGE_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let mut script = cli.script.into_iter();
    match (cli.command, cli.eval, script.next()) {
        (Some(Command::Run { script }), _, _) => {
            let mut script = script.into_iter();
            let file = PathBuf::from(script.next().unwrap_or_default());
            run_file(&file, cli.opts.settings(script.collect()), cli.opts.stats)
        }
        (Some(Command::Repl), _, _) => repl(cli.opts.settings(Vec::new())),
        (Some(Command::Disasm { file }), _, _) => disasm(&file, &cli.opts),
        (None, Some(code), first) => run(
            "<eval>",
            &code,
            cli.opts.settings(first.into_iter().chain(script).collect()),
            cli.opts.stats,
        ),
        (None, None, Some(file)) => run_file(
            &PathBuf::from(file),
            cli.opts.settings(script.collect()),
            cli.opts.stats,
        ),
        (None, None, None) => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                repl(cli.opts.settings(Vec::new()))
            } else {
                // `echo 'print(1)' | kiln` runs standard input as a script.
                let mut code = String::new();
                if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut code) {
                    eprintln!("error: cannot read standard input: {e}");
                    return ExitCode::from(USAGE_ERROR);
                }
                finish(kiln::run_source(
                    "<stdin>",
                    &code,
                    cli.opts.settings(Vec::new()),
                    Output::stdio(),
                ))
            }
        }
    }
}

fn read_script(file: &PathBuf) -> Result<String, ExitCode> {
    let bytes = std::fs::read(file).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", file.display());
        ExitCode::from(USAGE_ERROR)
    })?;
    kiln::vm::loader::decode_source(&file.to_string_lossy(), bytes)
        .map_err(|d| finish(Err(KilnError::compile(vec![d]))))
}

fn run_file(file: &PathBuf, settings: Settings, stats: bool) -> ExitCode {
    match read_script(file) {
        Ok(text) => run(&file.to_string_lossy(), &text, settings, stats),
        Err(code) => code,
    }
}

fn run(name: &str, text: &str, settings: Settings, stats: bool) -> ExitCode {
    let tier = settings.tier.tier.clone();
    let code = finish(kiln::run_source(name, text, settings, Output::stdio()));
    if stats {
        match tier {
            Some(t) => eprintln!("{}", t.stats()),
            None => eprintln!("jit: off"),
        }
    }
    code
}

fn finish(result: Result<(), KilnError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            render(&e, &mut std::io::stderr(), use_color());
            // The OS keeps the low 8 bits of a status (`os.exit(-1)` is 255).
            ExitCode::from(exit_code(&e) as u8)
        }
    }
}

fn disasm(file: &PathBuf, opts: &RunOpts) -> ExitCode {
    let text = match read_script(file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let settings = opts.settings(Vec::new());
    match kiln::vm::compile(&file.to_string_lossy(), &text, &settings.capabilities) {
        Ok((program, _)) => {
            print!("{}", kiln::vm::disasm::disassemble(&program));
            ExitCode::SUCCESS
        }
        Err(e) => finish(Err(e)),
    }
}

fn repl(settings: Settings) -> ExitCode {
    use rustyline::error::ReadlineError;
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the line editor: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kiln_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "Kiln {} — :quit or Ctrl-D to leave",
        env!("CARGO_PKG_VERSION")
    );
    let mut session = kiln::vm::repl::Repl::new(settings, Output::stdio());
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "> " } else { "… " };
        match editor.readline(prompt) {
            Ok(line) => {
                if buffer.is_empty() && matches!(line.trim(), ":quit" | ":q" | ":exit") {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if kiln::vm::repl::Repl::is_incomplete(&buffer) {
                    continue;
                }
                let _ = editor.add_history_entry(buffer.trim_end());
                match session.eval(&buffer) {
                    Ok(Some(shown)) => println!("{shown}"),
                    Ok(None) => {}
                    Err(e) => {
                        render(&e, &mut std::io::stderr(), use_color());
                        if e.kind == kiln::vm::ErrorKind::Internal {
                            eprintln!(
                                "note: the session starts over; earlier definitions are gone"
                            );
                        }
                    }
                }
                buffer.clear();
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    ExitCode::SUCCESS
}
