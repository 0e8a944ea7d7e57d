//! The script corpus runner: every `tests/corpus/**/<name>.kn` that has a `<name>.out` or
//! `<name>.err` beside it becomes one test per execution mode, run through the real `kiln`
//! binary and compared against those files.
//!
//! A `.out` file is the exact expected stdout. A `.err` file starts with `exit N` and lists,
//! one per line, substrings that must occur in stderr in that order. A `.kn` with neither is
//! a helper module for other scripts. Trials are named `<folder>::<name>::<mode>` so that
//! `cargo test --test corpus closures` runs one folder. With `UPDATE_EXPECT=1` the runner
//! rewrites `.out` files from what the binary printed (see `tests/corpus/README.md`).

use libtest_mimic::{Arguments, Failed, Trial};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One way of running every script: its trial-name suffix and the CLI flags placed before
/// `run`. Adding a tier to the differential testing is adding a row here.
struct Mode {
    name: &'static str,
    flags: &'static [&'static str],
}

/// The first mode is the reference one: bless mode writes `.out` files from its runs only,
/// so that two modes never race to rewrite the same file.
const MODES: &[Mode] = &[
    // The default tiering (the JIT on, at its threshold).
    Mode {
        name: "normal",
        flags: &[],
    },
    Mode {
        name: "interp",
        flags: &["--jit=off"],
    },
    // Compile every function at its first call: the JIT's differential test.
    Mode {
        name: "jit-eager",
        flags: &["--jit=eager"],
    },
    // A collection at every allocation: rooting mistakes.
    Mode {
        name: "gc-stress",
        flags: &["--gc-stress", "--jit=off"],
    },
    Mode {
        name: "gc-stress-jit",
        flags: &["--gc-stress", "--jit=eager"],
    },
    // A collection at every 16th allocation (garbage piles up in between, so sweeping and
    // cell reuse are exercised) and the whole heap verified after each. Verifying walks
    // the heap, so at every allocation it would make long scripts quadratic.
    Mode {
        name: "gc-verify",
        flags: &["--gc-stress=16", "--gc-verify", "--jit=eager"],
    },
    // Compiled code leaves for the interpreter at every type guard, or after a random
    // number of them: every side exit's register stores and resumption are exercised.
    Mode {
        name: "exit-every",
        flags: &["--jit=eager", "--jit-exit-every", "1"],
    },
    Mode {
        name: "exit-random",
        flags: &["--jit=eager", "--jit-exit-every", "random:7"],
    },
    // Each function tiers up after its own number of calls and iterations (1 to 4096),
    // so callers and callees switch tiers at unrelated times.
    Mode {
        name: "threshold-random",
        flags: &["--jit-threshold", "random:7"],
    },
];

/// A script that runs longer than this is killed and reported as a failure, so a hang in
/// the runtime fails one test instead of stalling the whole run.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a long stdout/stderr a failure message quotes.
const QUOTE_LIMIT: usize = 4000;

/// Lines of context shown around the first differing line of stdout.
const DIFF_CONTEXT: usize = 4;

/// A runnable script and the expectation files found next to it.
struct Case {
    script: PathBuf,
    out: Option<PathBuf>,
    err: Option<PathBuf>,
    /// `folder::name`, the trial name without its mode.
    id: String,
}

/// The parsed contents of a `.err` file.
struct ErrSpec {
    exit: i32,
    needles: Vec<String>,
}

/// What one run of the binary produced.
struct RunOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus");
    let cases = match discover(&root) {
        Ok(cases) => cases,
        Err(e) => {
            eprintln!("corpus: cannot read {}: {e}", root.display());
            std::process::exit(101);
        }
    };
    let trials = cases
        .into_iter()
        .flat_map(|case| {
            let case = Arc::new(case);
            MODES.iter().enumerate().map(move |(index, mode)| {
                let case = case.clone();
                let name = format!("{}::{}", case.id, mode.name);
                Trial::test(name, move || run_case(&case, mode, index == 0))
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Walks `root` in sorted order and returns every script with an expectation file.
fn discover(root: &Path) -> io::Result<Vec<Case>> {
    let mut cases = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries = fs::read_dir(&dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "kn") {
                cases.extend(case_for(root, path));
            }
        }
    }
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(cases)
}

/// The case for one script, or `None` for a helper module (no expectation file).
fn case_for(root: &Path, script: PathBuf) -> Option<Case> {
    let existing = |ext: &str| Some(script.with_extension(ext)).filter(|p| p.is_file());
    let out = existing("out");
    let err = existing("err");
    if out.is_none() && err.is_none() {
        return None;
    }
    let relative = script
        .strip_prefix(root)
        .unwrap_or(&script)
        .with_extension("");
    let id = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("::");
    Some(Case {
        script,
        out,
        err,
        id,
    })
}

/// Runs one script in one mode and checks everything its expectation files say.
fn run_case(case: &Case, mode: &Mode, may_bless: bool) -> Result<(), Failed> {
    let err_spec = case.err.as_deref().map(read_err_spec).transpose()?;
    let expected_exit = err_spec.as_ref().map_or(0, |spec| spec.exit);
    let output = run_script(&case.script, mode)?;

    let mut problems = Vec::new();
    if output.status.code() != Some(expected_exit) {
        problems.push(format!(
            "exit status: expected {expected_exit}, got {}",
            output.status
        ));
    }
    if let Some(out_path) = &case.out {
        let bless = may_bless && bless_requested() && err_spec.is_none();
        if bless && output.status.success() {
            write_atomically(out_path, &output.stdout)?;
        } else {
            problems.extend(check_stdout(out_path, &output.stdout)?);
        }
    }
    if let Some(spec) = &err_spec {
        problems.extend(check_stderr(spec, &output.stderr));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(failure_report(case, mode, &problems, &output).into())
}

fn bless_requested() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1")
}

fn read_err_spec(path: &Path) -> Result<ErrSpec, Failed> {
    let text = read_text(path)?;
    parse_err_spec(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn parse_err_spec(text: &str) -> Result<ErrSpec, String> {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let exit = first
        .trim()
        .strip_prefix("exit ")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("first line must be `exit N`, found {first:?}"))?;
    let needles = lines
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .map(String::from)
        .collect();
    Ok(ErrSpec { exit, needles })
}

fn read_text(path: &Path) -> Result<String, Failed> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// Replaces the file in one step, so a concurrent reader in another mode never sees half of it.
fn write_atomically(path: &Path, text: &str) -> Result<(), Failed> {
    let temp = path.with_extension("out.blessing");
    fs::write(&temp, text)
        .and_then(|()| fs::rename(&temp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// A scratch file name, unique per script and mode, that a script may write through `fs`
/// (it reads the name from `KILN_TEST_TMP`). It lives in the script's own directory and the
/// runner deletes it after the run.
fn scratch_name(script: &Path, mode: &Mode) -> String {
    let stem = script.file_stem().unwrap_or_default().to_string_lossy();
    format!("{stem}.{}.tmp", mode.name)
}

fn run_script(script: &Path, mode: &Mode) -> Result<RunOutput, Failed> {
    let dir = script.parent().unwrap_or(Path::new("."));
    let file_name = script.file_name().unwrap_or_default();
    let scratch = dir.join(scratch_name(script, mode));
    remove_if_present(&scratch);
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(mode.flags)
        .arg("run")
        .arg(file_name)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("KILN_TEST_TMP", scratch_name(script, mode))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start kiln: {e}"))?;
    let result = wait_with_timeout(child);
    remove_if_present(&scratch);
    result
}

fn remove_if_present(path: &Path) {
    // A missing file is the normal case; any other failure shows up as a test failure of the
    // script that depends on the file, which explains it better than an error here would.
    let _ = fs::remove_file(path);
}

/// Waits for the child, killing it at the deadline. Both pipes are drained on their own
/// threads so that a script printing a lot cannot block on a full pipe.
fn wait_with_timeout(mut child: Child) -> Result<RunOutput, Failed> {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + TIMEOUT;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("cannot wait for kiln: {e}").into()),
        }
    };
    let stdout = join_text(stdout);
    let stderr = join_text(stderr);
    match status {
        Some(status) => Ok(RunOutput {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "timed out after {}s (killed)\n{}{}",
            TIMEOUT.as_secs(),
            quoted_section("stdout (partial)", &stdout),
            quoted_section("stderr (partial)", &stderr)
        )
        .into()),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the capture; what was read so far is still worth showing.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

fn join_text(reader: JoinHandle<Vec<u8>>) -> String {
    let bytes = reader.join().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compares stdout with the `.out` file; `None` when they are equal.
fn check_stdout(out_path: &Path, actual: &str) -> Result<Option<String>, Failed> {
    let expected = read_text(out_path)?;
    if expected == actual {
        return Ok(None);
    }
    Ok(Some(describe_diff(&expected, actual)))
}

/// A readable account of where stdout first departs from the expectation: the line number,
/// both versions of that line, and a few lines of context from each side.
fn describe_diff(expected: &str, actual: &str) -> String {
    let expected_lines: Vec<&str> = expected.split('\n').collect();
    let actual_lines: Vec<&str> = actual.split('\n').collect();
    let first = expected_lines
        .iter()
        .zip(&actual_lines)
        .position(|(e, a)| e != a)
        .unwrap_or(expected_lines.len().min(actual_lines.len()));
    let shown = |lines: &[&str]| {
        lines
            .get(first)
            .map_or("<no line>".to_string(), |l| format!("{l:?}"))
    };
    let mut text = format!(
        "stdout differs at line {}:\n  expected: {}\n  actual:   {}\n",
        first + 1,
        shown(&expected_lines),
        shown(&actual_lines)
    );
    for (title, lines) in [("expected", &expected_lines), ("actual", &actual_lines)] {
        let _ = writeln!(text, "--- {title} (around line {})", first + 1);
        text.push_str(&excerpt(lines, first));
    }
    text
}

/// Numbered lines around `focus`, the focus line marked with `>`.
fn excerpt(lines: &[&str], focus: usize) -> String {
    let start = focus.saturating_sub(DIFF_CONTEXT);
    let end = (focus + DIFF_CONTEXT + 1).min(lines.len());
    let mut text = String::new();
    for (index, line) in lines.iter().enumerate().take(end).skip(start) {
        let marker = if index == focus { '>' } else { ' ' };
        let _ = writeln!(text, "{marker}{:4} | {line}", index + 1);
    }
    text
}

/// Checks that every expected substring occurs in stderr, each after the previous one.
fn check_stderr(spec: &ErrSpec, stderr: &str) -> Option<String> {
    let mut rest = stderr;
    for needle in &spec.needles {
        match rest.find(needle.as_str()) {
            Some(at) => rest = &rest[at + needle.len()..],
            None => {
                return Some(format!(
                    "stderr does not contain {needle:?} (after the previously expected text)"
                ))
            }
        }
    }
    None
}

fn failure_report(case: &Case, mode: &Mode, problems: &[String], output: &RunOutput) -> String {
    let flags = mode
        .flags
        .iter()
        .map(|f| format!("{f} "))
        .collect::<String>();
    let mut text = format!(
        "{} (ran `kiln {flags}run {}` in {})\n",
        case.id,
        case.script
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        case.script.parent().unwrap_or(Path::new(".")).display()
    );
    for problem in problems {
        let _ = writeln!(text, "{problem}");
    }
    text.push_str(&quoted_section("stderr", &output.stderr));
    text
}

/// A titled block quoting `text`, or a one-line note when it is empty.
fn quoted_section(title: &str, text: &str) -> String {
    if text.is_empty() {
        return format!("--- {title}: (empty)\n");
    }
    format!("--- {title}\n{}\n", quote(text.trim_end_matches('\n')))
}

/// At most `QUOTE_LIMIT` bytes of `text` (cut on a character boundary), marked when cut.
fn quote(text: &str) -> String {
    if text.len() <= QUOTE_LIMIT {
        return text.to_string();
    }
    let mut end = QUOTE_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[... {} more bytes]", &text[..end], text.len() - end)
}
