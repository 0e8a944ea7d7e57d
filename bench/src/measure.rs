//! One measured run of a command: wall time, peak resident memory, exit outcome and output.
//!
//! Peak RSS of a child comes from `getrusage(RUSAGE_CHILDREN)`, which covers every child a
//! process has ever waited for. The harness runs many children, so each sample re-executes the
//! harness itself as a tiny wrapper (`kiln-bench --measure --timeout S -- CMD ARGS`) whose only
//! child is the command: the wrapper's `RUSAGE_CHILDREN` is exactly that command's. The wrapper
//! times spawn..exit, lets the command write straight into the harness's pipes, and appends one
//! line starting with [`MARK`] to stderr, which [`sample`] parses and strips again.
//! Peak RSS has a floor of about 1.5 MB (see [`measure_child`]).

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::{getuid, Pid};
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Starts the wrapper's report line; chosen so no benchmark's own stderr can start with it.
const MARK: &str = "kiln-bench-measure:";

/// How a measured command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this status code.
    Exit(i32),
    /// It was killed by this signal (not by the harness).
    Signal(i32),
    /// The harness killed it when the time limit ran out.
    Timeout,
}

/// Everything one run produced.
#[derive(Debug)]
pub struct Sample {
    /// Wall time from spawn to exit, measured by the wrapper.
    pub wall: Duration,
    /// Peak resident set size of the command, in KiB (Linux reports `ru_maxrss` in KiB).
    pub max_rss_kb: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error, without the wrapper's report line.
    pub stderr: String,
}

/// Runs `argv` once under the measuring wrapper, in directory `cwd`.
pub fn sample(argv: &[OsString], cwd: &Path, timeout: Duration) -> Result<Sample, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find the harness binary: {e}"))?;
    let output = Command::new(me)
        .arg("--measure")
        .arg(format!("--timeout={}", timeout.as_secs()))
        .arg("--")
        .args(argv)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the measuring wrapper: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (report, rest) = split_report(&stderr)
        .ok_or_else(|| format!("the measuring wrapper failed: {}", stderr.trim()))?;
    let (wall, max_rss_kb, outcome) = parse_report(report)?;
    Ok(Sample {
        wall,
        max_rss_kb,
        outcome,
        stdout,
        stderr: rest,
    })
}

/// Separates the wrapper's report line (the last line starting with [`MARK`]) from the
/// command's own stderr.
fn split_report(stderr: &str) -> Option<(&str, String)> {
    let at = stderr.rfind(MARK)?;
    let (before, report) = stderr.split_at(at);
    let report = report.lines().next()?;
    let after = &stderr[at + report.len()..];
    Some((
        report,
        format!("{before}{}", after.trim_start_matches('\n')),
    ))
}

/// Parses `MARK wall_ns=N max_rss_kb=N outcome=exit:0|signal:9|timeout`.
fn parse_report(line: &str) -> Result<(Duration, u64, Outcome), String> {
    let bad = || format!("unreadable measurement line: {line}");
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(bad)
    };
    let wall_ns: u64 = field("wall_ns")?.parse().map_err(|_| bad())?;
    let max_rss_kb: u64 = field("max_rss_kb")?.parse().map_err(|_| bad())?;
    let outcome = match field("outcome")?.split_once(':') {
        None => Outcome::Timeout,
        Some(("exit", code)) => Outcome::Exit(code.parse().map_err(|_| bad())?),
        Some(("signal", sig)) => Outcome::Signal(sig.parse().map_err(|_| bad())?),
        Some(_) => return Err(bad()),
    };
    Ok((Duration::from_nanos(wall_ns), max_rss_kb, outcome))
}

/// Where the watchdog and the waiting thread agree on who finished first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Race {
    Running,
    Exited,
    TimedOut,
}

/// The wrapper's body (`kiln-bench --measure -- CMD ARGS`): runs the command, then prints the
/// report line. Its exit status is 0 whenever it could measure, whatever the command did.
pub fn wrapper(command: &[OsString], timeout: Duration) -> ExitCode {
    match measure_child(command, timeout) {
        Ok(report) => {
            eprintln!("{MARK} {report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("kiln-bench --measure: {message}");
            ExitCode::from(2)
        }
    }
}

fn measure_child(command: &[OsString], timeout: Duration) -> Result<String, String> {
    let (program, args) = command
        .split_first()
        .ok_or("a command is needed after `--`")?;
    let name = program.to_string_lossy();
    let start = Instant::now();
    // Linux folds the high-water RSS of the image a process replaces at exec into its
    // `ru_maxrss`. std spawns with posix_spawn (vfork), so that image is this whole wrapper
    // (about 3 MB, more than some benchmarks use). Setting a uid — our own, so nothing
    // changes — makes std use a real fork, whose copy holds only the wrapper's anonymous
    // pages: the floor drops to about 1.5 MB, close to GNU time's.
    let mut child = Command::new(program)
        .args(args)
        .uid(getuid().as_raw())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|_| "pid out of range")?);
    let race = Arc::new(Mutex::new(Race::Running));
    arm_watchdog(pid, timeout, Arc::clone(&race));
    // WNOWAIT leaves the exited child unreaped, so its pid cannot be reused while the
    // watchdog might still signal it.
    waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        .map_err(|e| format!("waiting for {name}: {e}"))?;
    let wall = start.elapsed();
    let timed_out = {
        let mut state = race.lock().unwrap_or_else(PoisonError::into_inner);
        let timed_out = *state == Race::TimedOut;
        *state = Race::Exited;
        timed_out
    };
    let status = child.wait().map_err(|e| format!("reaping {name}: {e}"))?;
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| format!("getrusage: {e}"))?;
    Ok(format!(
        "wall_ns={} max_rss_kb={} outcome={}",
        wall.as_nanos(),
        usage.max_rss().max(0),
        outcome_text(status, timed_out)
    ))
}

/// Kills the command with SIGKILL if it is still running when `timeout` has passed.
fn arm_watchdog(pid: Pid, timeout: Duration, race: Arc<Mutex<Race>>) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        let mut state = race.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == Race::Running {
            *state = Race::TimedOut;
            // The child is not reaped yet (see WNOWAIT above), so `pid` is still ours; if it
            // exited meanwhile the signal is simply ignored.
            let _ = kill(pid, Signal::SIGKILL);
        }
    });
}

fn outcome_text(status: ExitStatus, timed_out: bool) -> String {
    match (timed_out, status.code(), status.signal()) {
        (true, _, _) => "timeout".to_owned(),
        (false, Some(code), _) => format!("exit:{code}"),
        (false, None, signal) => format!("signal:{}", signal.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_is_split_from_the_commands_stderr() {
        let stderr = "warning\nkiln-bench-measure: wall_ns=5 max_rss_kb=7 outcome=exit:3\n";
        let (report, rest) = split_report(stderr).unwrap();
        assert_eq!(rest, "warning\n");
        let parsed = parse_report(report).unwrap();
        assert_eq!(parsed, (Duration::from_nanos(5), 7, Outcome::Exit(3)));
    }

    #[test]
    fn outcomes_parse() {
        let line = |o: &str| format!("{MARK} wall_ns=1 max_rss_kb=1 outcome={o}");
        assert_eq!(parse_report(&line("timeout")).unwrap().2, Outcome::Timeout);
        assert_eq!(
            parse_report(&line("signal:11")).unwrap().2,
            Outcome::Signal(11)
        );
        assert!(parse_report(&line("exit:x")).is_err());
        assert!(parse_report("wall_ns=1").is_err());
    }
}
