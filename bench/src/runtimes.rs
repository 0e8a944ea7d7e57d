//! The runtimes a benchmark runs under, found on this machine: Kiln's tiers, the peers
//! (`lua5.4`, `luajit`, `python3`) and the native Rust twins compiled with `rustc -O`.
//!
//! A peer that is not installed is skipped with a note; Kiln is what the suite is for, so a
//! Kiln that cannot be found or built is an error. Kiln's JIT tiers are columns only when
//! `kiln --version` reports a line `jit: cranelift`.

use crate::manifest::Benchmark;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The runtime every time is compared with first (ratios `×lua5.4`).
pub const LUA: &str = "lua5.4";
/// The native twin, the physical-limit reference (ratios `×rust`).
pub const NATIVE: &str = "rust";
/// Every runtime name, in report order (the values `--runtime` accepts).
pub const NAMES: &[&str] = &[
    "kiln-interp",
    "kiln",
    "kiln-eager",
    LUA,
    "luajit",
    "python3",
    NATIVE,
];

/// Kiln's columns when it is built with the JIT: interpreter only, default tiering, eager JIT.
const KILN_TIERS: &[(&str, Option<&str>)] = &[
    ("kiln-interp", Some("--jit=off")),
    ("kiln", None),
    ("kiln-eager", Some("--jit=eager")),
];

/// Script interpreters: name (also the executable), version flag, twin extension, install hint.
const PEERS: &[(&str, &str, &str, &str)] = &[
    (LUA, "-v", "lua", "apt-get install lua5.4"),
    ("luajit", "-v", "lua", "apt-get install luajit"),
    ("python3", "--version", "py", "apt-get install python3"),
];

/// Where the harness finds programs and puts build products.
pub struct Paths {
    /// The workspace root, where `cargo build -p kiln` runs.
    pub root: PathBuf,
    /// `bench/programs`.
    pub programs: PathBuf,
    /// Cargo's target directory (`CARGO_TARGET_DIR` or `<root>/target`).
    pub target: PathBuf,
}

impl Paths {
    /// The paths of this checkout.
    pub fn detect() -> Paths {
        let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = bench.parent().unwrap_or(bench).to_path_buf();
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        Paths {
            root,
            programs: bench.join("programs"),
            target,
        }
    }
}

/// How a runtime starts a benchmark.
enum Launcher {
    /// `kiln [flag] run <name>.kn <size>`.
    Kiln {
        exe: PathBuf,
        flag: Option<&'static str>,
    },
    /// `<exe> <name>.<ext> <size>`.
    Script {
        exe: &'static str,
        ext: &'static str,
    },
    /// `<dir>/<name> <size>`, compiled from `<name>.rs` by [`Runtime::prepare`].
    Native { dir: PathBuf },
}

/// A runtime found on this machine.
pub struct Runtime {
    /// Its column name (one of [`NAMES`]).
    pub name: &'static str,
    /// What its `--version` says, for the report header.
    pub version: String,
    launcher: Launcher,
}

impl Runtime {
    /// Makes the program of `bench` runnable: compiles the native twin when its binary is
    /// missing or older than its source; nothing for interpreters.
    pub fn prepare(&self, programs: &Path, bench: &Benchmark) -> Result<(), String> {
        let Launcher::Native { dir } = &self.launcher else {
            return Ok(());
        };
        let source = programs.join(format!("{}.rs", bench.name));
        let binary = dir.join(bench.name);
        if is_newer(&binary, &source) {
            return Ok(());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let output = Command::new("rustc")
            .args(["-O", "--edition", "2021", "-o"])
            .arg(&binary)
            .arg(&source)
            .output()
            .map_err(|e| format!("cannot run rustc: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "rustc failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The command line that runs `bench` at `size`.
    pub fn argv(&self, programs: &Path, bench: &Benchmark, size: u64) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        match &self.launcher {
            Launcher::Kiln { exe, flag } => {
                argv.push(exe.into());
                argv.extend(flag.map(OsString::from));
                argv.push("run".into());
                argv.push(programs.join(format!("{}.kn", bench.name)).into());
            }
            Launcher::Script { exe, ext } => {
                argv.push(exe.into());
                argv.push(programs.join(format!("{}.{ext}", bench.name)).into());
            }
            Launcher::Native { dir } => argv.push(dir.join(bench.name).into()),
        }
        argv.push(size.to_string().into());
        argv
    }
}

fn is_newer(binary: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(binary), modified(source)), (Some(b), Some(s)) if b >= s)
}

/// What discovery found: the runtimes to run, notes about skipped ones, and errors (things
/// asked for that cannot run, which make the harness exit non-zero).
#[derive(Default)]
pub struct Discovery {
    /// Runtimes to run, in report order.
    pub runtimes: Vec<Runtime>,
    /// Skipped runtimes and why.
    pub notes: Vec<String>,
    /// Requested runtimes that cannot run.
    pub errors: Vec<String>,
}

/// Finds the runtimes in `wanted` (all when empty). `kiln` overrides the Kiln binary's path.
pub fn discover(paths: &Paths, wanted: &[String], kiln: Option<&Path>) -> Discovery {
    let wants = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let mut found = Discovery::default();
    if KILN_TIERS.iter().any(|(name, _)| wants(name)) {
        discover_kiln(paths, kiln, wanted, &mut found);
    }
    for &(name, flag, ext, install) in PEERS.iter().filter(|peer| wants(peer.0)) {
        match version_text(name.as_ref(), flag) {
            Some(text) => found.runtimes.push(Runtime {
                name,
                version: short_version(&text),
                launcher: Launcher::Script { exe: name, ext },
            }),
            None => found
                .notes
                .push(format!("{name}: not installed ({install}), skipped")),
        }
    }
    if wants(NATIVE) {
        match version_text("rustc".as_ref(), "--version") {
            Some(text) => found.runtimes.push(Runtime {
                name: NATIVE,
                version: format!("{} -O", short_version(&text)),
                launcher: Launcher::Native {
                    dir: paths.target.join("bench-native"),
                },
            }),
            None => found
                .notes
                .push(format!("{NATIVE}: rustc not found, skipped")),
        }
    }
    found
}

/// Adds Kiln's columns: all three tiers with the JIT, else the single `kiln` column. Tiers
/// named explicitly in `wanted` that this build lacks are errors; by default they are a note.
fn discover_kiln(paths: &Paths, given: Option<&Path>, wanted: &[String], found: &mut Discovery) {
    let exe = match kiln_binary(paths, given) {
        Ok(exe) => exe,
        Err(message) => return found.errors.push(format!("kiln: {message}")),
    };
    let Some(text) = version_text(exe.as_os_str(), "--version") else {
        let error = format!("kiln: `{} --version` failed", exe.display());
        return found.errors.push(error);
    };
    let has_jit = text.lines().any(|line| line.trim() == "jit: cranelift");
    if !has_jit && wanted.is_empty() {
        found.notes.push(
            "kiln: built without the JIT (`kiln --version` has no `jit: cranelift` line): \
             one `kiln` column, kiln-interp and kiln-eager skipped"
                .to_owned(),
        );
    }
    for &(name, flag) in KILN_TIERS {
        let requested = wanted.iter().any(|w| w == name);
        if !wanted.is_empty() && !requested {
            continue;
        }
        if has_jit || name == "kiln" {
            let launcher = Launcher::Kiln {
                exe: exe.clone(),
                flag,
            };
            let version = short_version(&text);
            found.runtimes.push(Runtime {
                name,
                version,
                launcher,
            });
        } else if requested {
            found
                .errors
                .push(format!("{name}: this kiln is built without the JIT"));
        }
    }
}

/// The Kiln binary: `given`, else `<target>/release/kiln`, built first if it is missing.
fn kiln_binary(paths: &Paths, given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(exe) = given {
        return Ok(exe.to_path_buf());
    }
    let exe = paths.target.join("release").join("kiln");
    if exe.exists() {
        return Ok(exe);
    }
    eprintln!(
        "kiln-bench: {} is missing: running `cargo build --release -p kiln`",
        exe.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "kiln"])
        .current_dir(&paths.root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() && exe.exists() {
        Ok(exe)
    } else {
        Err(format!(
            "{} missing and `cargo build --release -p kiln` failed",
            exe.display()
        ))
    }
}

/// What `exe flag` prints (stdout then stderr), or `None` if it cannot run or fails.
fn version_text(exe: &OsStr, flag: &str) -> Option<String> {
    let output = Command::new(exe)
        .arg(flag)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    output
        .status
        .success()
        .then(|| text(&output.stdout) + &text(&output.stderr))
}

/// The first non-empty line, without the copyright notice `lua5.4 -v` and `luajit -v` append.
fn short_version(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("?");
    let end = [" -- ", "  "].iter().filter_map(|sep| line.find(sep)).min();
    line[..end.unwrap_or(line.len())].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::BENCHMARKS;

    #[test]
    fn every_benchmark_has_all_four_programs() {
        let programs = Paths::detect().programs;
        for bench in BENCHMARKS {
            for ext in ["kn", "lua", "py", "rs"] {
                let file = programs.join(format!("{}.{ext}", bench.name));
                assert!(file.is_file(), "missing {}", file.display());
            }
        }
    }

    #[test]
    fn versions_are_shortened() {
        let lua = "Lua 5.4.4  Copyright (C) 1994-2022 Lua.org, PUC-Rio\n";
        assert_eq!(short_version(lua), "Lua 5.4.4");
        let luajit = "LuaJIT 2.1.0-beta3 -- Copyright (C) 2005-2022 Mike Pall.\n";
        assert_eq!(short_version(luajit), "LuaJIT 2.1.0-beta3");
        assert_eq!(
            short_version("\nkiln 0.1.0\njit: cranelift\n"),
            "kiln 0.1.0"
        );
    }
}
