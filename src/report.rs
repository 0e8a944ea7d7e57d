//! Rendering of compile and runtime errors: the message, the source line with a caret
//! (through ariadne), and the script stack trace.

use std::io::Write;

use ariadne::{CharSet, Color, Config, Label, Report, ReportKind, Source};
use kiln_vm::{ErrorKind, KilnError};

/// Whether to colour output: only on a terminal, and never with `NO_COLOR` set.
pub fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Writes `err` to `out` the way the CLI shows it.
pub fn render(err: &KilnError, out: &mut dyn Write, color: bool) {
    render_as(err, "error", out, color);
}

/// [`render`] with another heading than `error` (`error in task 3`).
pub fn render_as(err: &KilnError, heading: &str, out: &mut dyn Write, color: bool) {
    for d in &err.diagnostics {
        match &d.location {
            Some((file, span)) => {
                let name = file.name.as_str();
                let (line, col) = file.line_col(span.start);
                // ariadne counts in characters; spans are bytes.
                let start = file.text[..span.start as usize].chars().count();
                let len = file
                    .text
                    .get(span.start as usize..span.end as usize)
                    .map_or(1, |s| s.chars().count().max(1));
                let report = Report::build(
                    ReportKind::Custom(heading, Color::Red),
                    (name, start..start + len),
                )
                .with_config(Config::default().with_color(color).with_char_set(if color {
                    CharSet::Unicode
                } else {
                    CharSet::Ascii
                }))
                .with_message(&d.message)
                .with_label(
                    Label::new((name, start..start + len))
                        .with_message("here")
                        .with_color(Color::Red),
                )
                .finish();
                let mut buf = Vec::new();
                if report
                    .write((name, Source::from(&file.text)), &mut buf)
                    .is_err()
                {
                    let _ = writeln!(out, "{heading}: {} ({name}:{line}:{col})", d.message);
                    continue;
                }
                if !color {
                    // ariadne colours a custom report kind even when told not to.
                    buf = strip_ansi(&buf);
                }
                let _ = out.write_all(&buf);
            }
            None => {
                let _ = writeln!(out, "{heading}: {}", d.message);
            }
        }
    }
    // A runaway recursion has thousands of identical frames: show both ends.
    const SHOWN: usize = 12;
    let n = err.trace.len();
    for (i, t) in err.trace.iter().enumerate() {
        if n > 2 * SHOWN && i == SHOWN {
            let _ = writeln!(out, "  ... {} more frames ...", n - 2 * SHOWN);
        }
        if n <= 2 * SHOWN || i < SHOWN || i >= n - SHOWN {
            let _ = writeln!(out, "  at {t}");
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < bytes.len() && !bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The status of an internal error: `EX_SOFTWARE` of BSD's sysexits.
pub const INTERNAL_ERROR: i32 = 70;

/// The CLI's exit status for an error.
pub fn exit_code(err: &KilnError) -> i32 {
    match err.kind {
        ErrorKind::Compile | ErrorKind::Io => 2,
        ErrorKind::Runtime | ErrorKind::Limit(_) | ErrorKind::StackOverflow => 1,
        ErrorKind::Exit(code) => code,
        ErrorKind::Internal => INTERNAL_ERROR,
    }
}
