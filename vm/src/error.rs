//! Errors: compile diagnostics, runtime faults in flight, and the error a host sees.

use std::fmt;
use std::sync::Arc;

use crate::source::{SourceFile, Span};
use crate::value::{TraceEntry, Value};

/// A message tied (when possible) to a place in a source file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub message: String,
    pub location: Option<(Arc<SourceFile>, Span)>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, location: Option<(Arc<SourceFile>, Span)>) -> Self {
        Diagnostic {
            message: message.into(),
            location,
        }
    }

    /// `file:line:col` of the location, if any.
    pub fn position(&self) -> Option<String> {
        self.location.as_ref().map(|(f, s)| {
            let (l, c) = f.line_col(s.start);
            format!("{}:{l}:{c}", f.name)
        })
    }
}

/// An error travelling through the interpreter before it is caught or reported.
#[derive(Debug)]
pub enum Fault {
    /// A runtime error raised by the VM or a native function. The interpreter turns it
    /// into an Error value positioned at the current instruction.
    Error(String),
    /// A script value being thrown (`throw v`, a rethrown Error).
    Throw(Value),
    /// `os.exit(code)`: unwinds everything, runs no handlers.
    Exit(i32),
    /// A host-imposed limit stopped the script. Like `Exit`, it unwinds everything and
    /// runs no handlers: a script must not be able to catch its way past a limit.
    Limit(Limit),
    /// Not an error: the task stops here (its time slice is spent, or it waits for a
    /// channel, a task or a timer) and will resume later at the saved pc, on any worker.
    /// It leaves every frame and handler in place.
    Suspend,
}

/// The limits a host can put on a run; each stops it with its own [`ErrorKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The step budget (`Settings::fuel`) is spent.
    Fuel,
    /// The host raised the interrupt flag (`Settings::interrupt`).
    Interrupted,
    /// A task's heap would pass `Limits::heap_bytes` even after a collection.
    HeapBytes,
    /// A string, array or map would pass its size cap (`Limits::max_string_bytes`,
    /// `max_array_len`, `max_map_len`).
    Size(Collection),
    /// A spawn would pass `Limits::max_tasks`.
    Tasks,
}

/// Which size cap a [`Limit::Size`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    String,
    Array,
    Map,
}

impl Limit {
    pub fn message(self) -> &'static str {
        match self {
            Limit::Fuel => "instruction limit exceeded",
            Limit::Interrupted => "interrupted by the host",
            Limit::HeapBytes => "heap limit exceeded",
            Limit::Size(Collection::String) => "string too large",
            Limit::Size(Collection::Array) => "array too large",
            Limit::Size(Collection::Map) => "map too large",
            Limit::Tasks => "too many tasks",
        }
    }
}

/// An allocation the heap refused, as the fault it is.
impl From<kiln_gc::Refused> for Fault {
    fn from(why: kiln_gc::Refused) -> Fault {
        match why {
            kiln_gc::Refused::OutOfMemory => crate::limits::out_of_memory(),
            kiln_gc::Refused::OverLimit => Fault::Limit(Limit::HeapBytes),
        }
    }
}

impl From<String> for Fault {
    fn from(s: String) -> Fault {
        Fault::Error(s)
    }
}

impl From<&str> for Fault {
    fn from(s: &str) -> Fault {
        Fault::Error(s.to_string())
    }
}

/// Shorthand for natives: `Err(fault!("cannot convert {x} to int"))`.
#[macro_export]
macro_rules! fault {
    ($($arg:tt)*) => { $crate::error::Fault::Error(format!($($arg)*)) };
}

/// What kind of failure a [`KilnError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Syntax, name resolution, imports: nothing ran.
    Compile,
    /// An uncaught error while running.
    Runtime,
    /// The script called `os.exit(code)`.
    Exit(i32),
    /// Reading a source file failed.
    Io,
    /// A host-imposed limit stopped the script.
    Limit(Limit),
    /// An uncaught `stack overflow`: calls nested past `Settings::max_depth`. Catchable
    /// by the script, unlike a [`Limit`], but told apart from other runtime errors.
    StackOverflow,
    /// A bug in Kiln or in a host function: Rust code panicked while a script ran. The
    /// message carries the panic's, and asks for a report.
    Internal,
}

/// The error a host or the CLI receives.
#[derive(Clone, Debug)]
pub struct KilnError {
    pub kind: ErrorKind,
    /// Compile errors may be several; runtime errors have one.
    pub diagnostics: Vec<Diagnostic>,
    /// Script stack trace, innermost frame first (runtime errors only).
    pub trace: Vec<TraceEntry>,
}

impl KilnError {
    pub fn compile(diagnostics: Vec<Diagnostic>) -> KilnError {
        KilnError {
            kind: ErrorKind::Compile,
            diagnostics,
            trace: Vec::new(),
        }
    }

    /// A runtime error with no position (a misuse by the host).
    pub fn runtime(message: impl Into<String>) -> KilnError {
        KilnError {
            kind: ErrorKind::Runtime,
            diagnostics: vec![Diagnostic::new(message, None)],
            trace: Vec::new(),
        }
    }

    /// What a panic caught at a boundary (a task's run, a call from the host, the CLI)
    /// becomes, so that a bug ends one run with a message instead of a thread.
    pub fn internal(panic: &(dyn std::any::Any + Send)) -> KilnError {
        let why = panic_message(panic);
        KilnError {
            kind: ErrorKind::Internal,
            diagnostics: vec![Diagnostic::new(
                format!(
                    "internal error: {why} (a bug in Kiln or in a host function; \
                     please report it with the script that caused it)"
                ),
                None,
            )],
            trace: Vec::new(),
        }
    }

    pub fn message(&self) -> &str {
        self.diagnostics.first().map_or("", |d| d.message.as_str())
    }
}

impl fmt::Display for KilnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {}", d.message)?;
            if let Some(p) = d.position() {
                write!(f, " ({p})")?;
            }
        }
        if let ErrorKind::Exit(code) = self.kind {
            write!(f, "exit({code})")?;
        }
        for t in &self.trace {
            write!(f, "\n  at {t}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KilnError {}

/// The message a panic was raised with (`panic!` makes it a `String` or a `&str`).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}
