//! Running one program through the real `kiln` binary in several modes and comparing what
//! each run printed and how it ended.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One way of running a program: a name for reports and the flags placed before the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mode {
    pub name: String,
    pub flags: Vec<String>,
    /// How many times the runner's time limit a run in this mode gets: collecting at
    /// every allocation makes a program that allocates much with a large live heap
    /// quadratic (a 0.1 s program took 28 s), which is slow, not a divergence.
    pub slowdown: u32,
}

impl Mode {
    pub fn new(name: &str, flags: &[&str]) -> Mode {
        Mode {
            name: name.into(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            slowdown: 1,
        }
    }

    /// This mode with `factor` times the time limit (see `slowdown`).
    pub fn slow(self, factor: u32) -> Mode {
        Mode {
            slowdown: factor,
            ..self
        }
    }
}

/// The modes a campaign compares, the reference first. `seed` varies the randomised ones
/// per program, so a campaign covers many thresholds and exit patterns.
pub fn default_modes(seed: u64) -> Vec<Mode> {
    let random = |what: &str| format!("random:{}", seed ^ crate::hash(what));
    vec![
        Mode::new("interp", &["--jit=off"]),
        Mode::new("eager", &["--jit=eager"]),
        // The default tiering, with background compiles that finish at unpredictable
        // points of the run; a low threshold so that most functions get there.
        Mode::new("tiered", &["--jit-threshold", "7"]),
        Mode::new("gc-stress", &["--jit=eager", "--gc-stress"]).slow(10),
        // Verifying the heap after every collection costs a walk of the whole heap: at
        // every 8th allocation it stays affordable. Combined with forced side exits, so
        // collections also happen between the exits' register stores and the interpreter.
        Mode::new(
            "exit-every-1",
            &[
                "--jit=eager",
                "--jit-exit-every",
                "1",
                "--gc-stress=8",
                "--gc-verify",
            ],
        )
        .slow(4),
        Mode {
            name: "exit-random".into(),
            flags: vec![
                "--jit=eager".into(),
                "--jit-exit-every".into(),
                random("exit"),
            ],
            slowdown: 1,
        },
        Mode {
            name: "threshold-random".into(),
            flags: vec!["--jit-threshold".into(), random("threshold")],
            slowdown: 1,
        },
    ]
}

/// How one run ended and what it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The exit status, or `None` if the process was killed (a signal, or the time limit).
    pub status: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// A run that did not end the way a Kiln program can end: a signal, a panic (Rust's
    /// status 101, or Kiln's internal error, 70), a hang. Kiln itself exits 0, 1, 2, 64
    /// or what `os.exit` says, and generated programs never call `os.exit`.
    pub fn crashed(&self) -> bool {
        self.timed_out || !matches!(self.status, Some(0..=2))
    }

    /// A short description for reports.
    pub fn summary(&self) -> String {
        let how = match (self.timed_out, self.status) {
            (true, _) => "timed out".to_owned(),
            (false, Some(s)) => format!("exit {s}"),
            (false, None) => "killed by a signal".to_owned(),
        };
        let first_error = self
            .stderr
            .lines()
            .find(|l| l.starts_with("error") || l.contains("panicked"))
            .unwrap_or("");
        format!(
            "{how}, {} bytes of stdout, {first_error}",
            self.stdout.len()
        )
    }
}

/// Where a program is run: the `kiln` binary, a scratch directory of its own (one per
/// worker thread), and the time limit of one run.
pub struct Runner {
    pub kiln: PathBuf,
    pub dir: PathBuf,
    pub timeout: Duration,
}

/// The file name programs get in the scratch directory (and so in error reports).
pub const SCRIPT: &str = "prog.kn";

impl Runner {
    /// A runner with a fresh scratch directory named after `tag` in the system temp dir.
    pub fn new(kiln: &Path, tag: &str, timeout: Duration) -> io::Result<Runner> {
        let dir = std::env::temp_dir().join(format!("kiln-difftest-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // The child runs inside `dir`, so a relative `--kiln` path must be resolved here.
        let kiln = std::fs::canonicalize(kiln)?;
        Ok(Runner { kiln, dir, timeout })
    }

    /// Runs `text` in `mode`.
    pub fn run(&self, text: &str, mode: &Mode) -> io::Result<Outcome> {
        std::fs::write(self.dir.join(SCRIPT), text)?;
        let out_path = self.dir.join("stdout");
        let err_path = self.dir.join("stderr");
        let mut child = Command::new(&self.kiln)
            .args(&mode.flags)
            .arg(SCRIPT)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env_remove("KILN_JIT")
            .env_remove("KILN_JIT_THRESHOLD")
            .env_remove("KILN_GC_STRESS")
            .env_remove("KILN_GC_VERIFY")
            .env_remove("KILN_JIT_EXIT_EVERY")
            .stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .spawn()?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        let (status, timed_out) = loop {
            if let Some(status) = child.try_wait()? {
                break (status.code(), false);
            }
            if start.elapsed() > self.timeout * mode.slowdown {
                // Ignore failures: the child may have exited just now.
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        };
        Ok(Outcome {
            status,
            timed_out,
            stdout: read_lossy(&out_path)?,
            stderr: read_lossy(&err_path)?,
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_lossy(path: &Path) -> io::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Two modes that disagree on a program (or a mode whose run crashed).
#[derive(Clone, Debug)]
pub struct Divergence {
    pub reference: Mode,
    pub expected: Outcome,
    pub mode: Mode,
    pub actual: Outcome,
}

impl Divergence {
    /// What differs first: `crash` (the reference itself crashed), `status`, `stdout` or
    /// `stderr`. The minimiser keeps this the same, so that it cannot trade the bug it was
    /// given for another one that happens to be easier to reach.
    pub fn kind(&self) -> &'static str {
        if self.expected.crashed() {
            "crash"
        } else if (self.expected.status, self.expected.timed_out)
            != (self.actual.status, self.actual.timed_out)
        {
            "status"
        } else if self.expected.stdout != self.actual.stdout {
            "stdout"
        } else {
            "stderr"
        }
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({}):",
            self.reference.name,
            self.reference.flags.join(" ")
        )?;
        writeln!(f, "  {}", self.expected.summary())?;
        writeln!(f, "{} ({}):", self.mode.name, self.mode.flags.join(" "))?;
        writeln!(f, "  {}", self.actual.summary())?;
        write!(f, "{}", first_difference(&self.expected, &self.actual))
    }
}

/// The first differing line of stdout, else of stderr, as two quoted lines.
fn first_difference(a: &Outcome, b: &Outcome) -> String {
    for (what, x, y) in [
        ("stdout", &a.stdout, &b.stdout),
        ("stderr", &a.stderr, &b.stderr),
    ] {
        let (mut xs, mut ys) = (x.lines(), y.lines());
        for n in 1.. {
            match (xs.next(), ys.next()) {
                (None, None) => break,
                (l, r) if l == r => continue,
                (l, r) => {
                    return format!(
                        "first difference, {what} line {n}:\n  - {}\n  + {}\n",
                        l.unwrap_or("<end>"),
                        r.unwrap_or("<end>")
                    )
                }
            }
        }
    }
    String::new()
}

/// Runs `text` in every mode (the first is the reference) and returns the first mode
/// that disagrees with the reference, or the reference itself when it crashed.
pub fn compare(runner: &Runner, text: &str, modes: &[Mode]) -> io::Result<Option<Divergence>> {
    let (reference, rest) = modes.split_first().expect("at least one mode");
    let expected = runner.run(text, reference)?;
    if expected.crashed() {
        return Ok(Some(Divergence {
            reference: reference.clone(),
            expected: expected.clone(),
            mode: reference.clone(),
            actual: expected,
        }));
    }
    for mode in rest {
        let actual = runner.run(text, mode)?;
        if actual != expected {
            return Ok(Some(Divergence {
                reference: reference.clone(),
                expected,
                mode: mode.clone(),
                actual,
            }));
        }
    }
    Ok(None)
}
