//! The `kiln` command: run scripts, evaluate code, explore in a REPL, list bytecode.
//!
//! Exit status: 0 success, 1 runtime error, 2 compile error, 64 usage error (and
//! whatever a script passes to `os.exit`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kiln::report::{exit_code, render, use_color};
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
    /// Collect garbage at every allocation (a debugging aid; also KILN_GC_STRESS=1).
    #[arg(long, global = true)]
    gc_stress: bool,
    /// Compile hot code: off, on (the default) or eager (at first call; the test mode).
    /// Also KILN_JIT.
    #[arg(long, global = true, value_name = "MODE", value_parser = ["off", "on", "eager"])]
    jit: Option<String>,
    /// Calls plus loop iterations before a function is compiled (also KILN_JIT_THRESHOLD).
    #[arg(long, global = true, value_name = "N")]
    jit_threshold: Option<u32>,
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

impl RunOpts {
    fn settings(&self, args: Vec<String>) -> Settings {
        let mut s = Settings::default();
        s.heap.stress = self.gc_stress || env_flag("KILN_GC_STRESS");
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
        let threshold = self.jit_threshold.or_else(|| {
            std::env::var("KILN_JIT_THRESHOLD")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        s.tier = kiln::tier_config(&kiln::JitSettings {
            mode: match mode.as_str() {
                "off" => JitMode::Off,
                "eager" => JitMode::Eager,
                _ => JitMode::On,
            },
            threshold,
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
                    Err(e) => render(&e, &mut std::io::stderr(), use_color()),
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
