//! `kiln repl` fed from a pipe: inputs that make the JIT compile in the background must
//! not stop the next input from extending the program (it used to panic).

use std::io::Write;
use std::process::{Command, Stdio};

fn repl(mode: &str, input: &str) -> (String, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([&format!("--jit={mode}"), "repl"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("input written");
    let out = child.wait_with_output().expect("kiln finishes");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn inputs_after_compiled_code_extend_the_program_in_every_mode() {
    let input = "fn f(n) { let s = 0; for i in 0..n { s += i }; s }\n\
                 f(100000)\n\
                 let x = f(10)\n\
                 x + 1\n";
    for mode in ["off", "on", "eager"] {
        let (out, err, ok) = repl(mode, input);
        assert!(ok, "{mode}: {err}");
        assert!(!err.contains("panicked"), "{mode}: {err}");
        assert!(out.contains("4999950000"), "{mode}: {out}");
        assert!(out.contains("46"), "{mode}: {out}");
    }
}
