//! The hostile-input suite: scripts built to hang, exhaust memory, overflow stacks or abuse
//! the runtime, each of which must end with its expected clean error (or bounded result)
//! under the limits it names, in the interpreter and in compiled code.
//!
//! A case is a `tests/hostile/*.kn` file whose header comments say how to run it and what
//! must happen: `// flags: ...` (options before the script, such as `--fuel N` or
//! `--heap-limit 32M`), `// exit: N`, one `// stdout: LINE` per line stdout must hold
//! exactly, and `// stderr: TEXT` substrings that must occur in stderr in order. Cases
//! whose source is too big to keep in a file (nesting 20,000 deep, huge literals) are
//! generated here ([`generated`]). Every run has [`TIMEOUT`]: a hang fails the case.

use std::path::Path;
use std::time::Duration;

use kiln_difftest::run::{Mode, Runner};
use libtest_mimic::{Arguments, Failed, Trial};

/// Far above what any case needs in a debug build; reaching it means a hang.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What a case expects.
struct Case {
    name: String,
    source: String,
    flags: Vec<String>,
    exit: i32,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("hostile");
    let mut cases: Vec<Case> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "kn"))
            .map(|p| from_file(&p))
            .collect(),
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    cases.extend(generated());
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    let modes = [
        Mode::new("interp", &["--jit=off"]),
        Mode::new("jit-eager", &["--jit=eager"]),
    ];
    let trials = cases
        .into_iter()
        .map(std::sync::Arc::new)
        .flat_map(|case| {
            // A compile error happens before any tier runs: one mode is enough.
            let modes = if case.exit == 2 {
                &modes[..1]
            } else {
                &modes[..]
            };
            modes.iter().cloned().map(move |mode| {
                let case = case.clone();
                Trial::test(format!("{}::{}", case.name, mode.name), move || {
                    check(&case, &mode)
                })
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Reads a case's header comments.
fn from_file(path: &Path) -> Case {
    let source = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut case = Case {
        name: path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        source: String::new(),
        flags: Vec::new(),
        exit: 0,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    for line in source.lines().map_while(|l| l.strip_prefix("// ")) {
        if let Some(flags) = line.strip_prefix("flags: ") {
            case.flags = flags.split_whitespace().map(String::from).collect();
        } else if let Some(n) = line.strip_prefix("exit: ") {
            case.exit = n
                .parse()
                .unwrap_or_else(|_| panic!("{}: bad exit line", case.name));
        } else if let Some(text) = line.strip_prefix("stdout: ") {
            case.stdout.push(text.to_owned());
        } else if let Some(text) = line.strip_prefix("stderr: ") {
            case.stderr.push(text.to_owned());
        }
    }
    case.source = source;
    case
}

/// A generated case that must fail to compile with `message`.
fn compile_error(name: &str, source: String, message: &str) -> Case {
    Case {
        name: name.into(),
        source,
        flags: Vec::new(),
        exit: 2,
        stdout: Vec::new(),
        stderr: vec![format!("error: {message}")],
    }
}

/// Cases too large to keep as files: the parser's nesting and chain limits, and literals.
fn generated() -> Vec<Case> {
    // Far past every limit (200 levels of nesting, 2000 links in a chain), yet quick to
    // reject in a debug build.
    const DEEP: usize = 20_000;
    let nest = |open: &str, inner: &str, close: &str| {
        format!("{}{inner}{}", open.repeat(DEEP), close.repeat(DEEP))
    };
    let too_deep = "nesting too deep";
    let too_long = "expression too long";
    // (name, source, the compile error it must give): one case a line.
    #[rustfmt::skip]
    let errors = [
        ("nested_parens", format!("print({})", nest("(", "1", ")")), too_deep),
        ("nested_brackets", format!("print({})", nest("[", "", "]")), too_deep),
        ("nested_blocks", nest("{", "", "}"), too_deep),
        ("nested_ifs", nest("if true {", "", "}"), too_deep),
        ("nested_maps", format!("print({})", nest("{a: ", "1", "}")), too_deep),
        ("nested_lambdas", format!("let f = {}", nest("|x| ", "1", "")), too_deep),
        ("nested_functions", format!("let f = {}", nest("fn() { return ", "1", " }")), too_deep),
        ("nested_interpolation", format!("print(\"{}\")", nest("${\"", "x", "\"}")), too_deep),
        ("prefix_operators", format!("print({}1)", "-".repeat(DEEP)), too_deep),
        ("power_chain", format!("print(1{})", " ** 2".repeat(DEEP)), too_deep),
        ("operator_chain", format!("let x = 1{}", " + 1".repeat(DEEP)), too_long),
        ("field_chain", format!("let a = 1\nprint(a{})", ".b".repeat(DEEP)), too_long),
        ("huge_int_literal", format!("print({})", "9".repeat(DEEP)), "integer literal too large"),
        ("unclosed_brackets", "print(".repeat(DEEP), too_deep),
    ];
    let mut cases: Vec<Case> = errors
        .into_iter()
        .map(|(name, source, message)| compile_error(name, source, message))
        .collect();
    let ok = |name: &str, source: String, out: &str| Case {
        name: name.into(),
        source,
        flags: Vec::new(),
        exit: 0,
        stdout: vec![out.into()],
        stderr: Vec::new(),
    };
    cases.push(ok(
        "huge_float_literal",
        format!("print({}.5)", "9".repeat(DEEP)),
        "inf",
    ));
    cases.push(ok(
        "huge_string_literal",
        format!("print(len(\"{}\"))", "a".repeat(2 << 20)),
        "2097152",
    ));
    cases.push(ok(
        "huge_array_literal",
        format!("print(len([{}]))", "1,".repeat(DEEP)),
        "20000",
    ));
    cases
}

fn check(case: &Case, mode: &Mode) -> Result<(), Failed> {
    let tag = format!("hostile-{}-{}", case.name, mode.name);
    let runner = Runner::new(Path::new(env!("CARGO_BIN_EXE_kiln")), &tag, TIMEOUT)
        .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let mut flags = mode.flags.clone();
    flags.extend(case.flags.iter().cloned());
    let run = Mode {
        name: mode.name.clone(),
        flags,
        slowdown: 1,
    };
    let out = runner
        .run(&case.source, &run)
        .map_err(|e| format!("cannot run kiln: {e}"))?;
    let mut problems = Vec::new();
    if out.timed_out {
        problems.push(format!("still running after {TIMEOUT:?}"));
    } else if out.status != Some(case.exit) {
        problems.push(format!(
            "exit status {:?}, expected {}",
            out.status, case.exit
        ));
    }
    let lines: Vec<&str> = out.stdout.lines().collect();
    if lines != case.stdout {
        problems.push(format!("stdout differs; expected {:?}", case.stdout));
    }
    let mut rest = out.stderr.as_str();
    for needle in &case.stderr {
        match rest.find(needle.as_str()) {
            Some(at) => rest = &rest[at + needle.len()..],
            None => problems.push(format!("stderr lacks {needle:?} (in order)")),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let quote = |s: &str| s.chars().take(2000).collect::<String>();
    Err(format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        problems.join("\n"),
        quote(&out.stdout),
        quote(&out.stderr)
    )
    .into())
}
