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

/// Tasks work at the prompt: a task spawned at one input is joined at a later one, a
/// producer still waiting on a full channel when its input ends goes on when a later
/// input receives (after that input grew the program), `sleep` and `select` wait, and an
/// input that would wait for ever reports the deadlock and leaves the session usable.
#[test]
fn tasks_channels_and_timers_work_across_inputs() {
    let input = "fn square(x) { return x * x }\n\
                 let t = spawn square(7)\n\
                 t.join()\n\
                 fn produce(ch) { for i in 0..5 { ch.send(i) } ch.close() }\n\
                 let ch = channel(1)\n\
                 spawn produce(ch)\n\
                 fn total(ch) { let s = 0; for v in ch { s += v }; return s }\n\
                 total(ch)\n\
                 sleep(5)\n\
                 select([channel()], 5)\n\
                 let quiet = channel()\n\
                 quiet.recv()\n\
                 fn later(c) { c.send(\"late\") }\n\
                 spawn later(quiet)\n\
                 quiet.recv()\n";
    for mode in ["off", "eager"] {
        let (out, err, ok) = repl(mode, input);
        assert!(ok, "{mode}: {err}");
        assert!(!err.contains("panicked"), "{mode}: {err}");
        let values: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(
            values,
            ["49", "<task 3>", "10", "<task 4>", "\"late\""],
            "{mode}: {out}\n{err}"
        );
        assert!(
            err.contains("deadlock: all tasks are blocked"),
            "{mode}: {err}"
        );
        assert_eq!(err.matches("error").count(), 1, "{mode}: {err}");
    }
}

/// A function redefined at the prompt is what its old closure's recursive calls reach:
/// compiled code trusts a constant function slot only while no input redefines it.
#[test]
fn a_redefined_function_is_what_old_closures_call() {
    let input = "fn f(n) { if n < 2 { return n }\n return f(n - 1) + f(n - 2) }\n\
                 let old = f\n\
                 f(20)\n\
                 fn f(n) { return 1000 }\n\
                 old(5)\n\
                 fn h(n) { return old(n) + old(n + 1) }\n\
                 h(6)\n";
    for mode in ["off", "on", "eager"] {
        let (out, err, ok) = repl(mode, input);
        assert!(ok, "{mode}: {err}");
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(lines, ["6765", "2000", "4000"], "{mode}: {out}\n{err}");
    }
}
