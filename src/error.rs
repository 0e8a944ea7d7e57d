//! `kiln::Error`: the one error type of the embedding API, for compile errors, script
//! errors (including those a native raised, which keep the script frames of the call
//! site), limits, and conversions of results the host asked for.

use std::fmt;

use kiln_vm::{ErrorKind, KilnError};

/// What went wrong in a call into Kiln: see [`Error::kind`].
#[derive(Clone, Debug)]
pub struct Error {
    inner: KilnError,
}

/// A place in a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The name the source was loaded under.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// Byte offsets into the source text.
    pub span: std::ops::Range<usize>,
}

/// One frame of a script stack trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackFrame {
    /// The function's name (`<main>` for a module's top level).
    pub function: String,
    /// Where in it the call or the error happened.
    pub location: Location,
}

impl Error {
    /// Compile, runtime, limit (with which limit) or exit.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message, without position (the first one, for several compile errors).
    pub fn message(&self) -> &str {
        self.inner.message()
    }

    /// Where the error happened, if it has a position.
    pub fn location(&self) -> Option<Location> {
        let d = self.inner.diagnostics.first()?;
        let (file, span) = d.location.as_ref()?;
        Some(location(file, *span))
    }

    /// The script stack trace, innermost frame first (empty for compile errors).
    pub fn trace(&self) -> Vec<StackFrame> {
        self.inner
            .trace
            .iter()
            .map(|t| StackFrame {
                function: t.func.to_string(),
                location: location(&t.source, t.span),
            })
            .collect()
    }

    /// The error rendered the way the `kiln` command shows it: message, source line
    /// with a caret, trace.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        crate::report::render(&self.inner, &mut out, false);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The VM's form of the error (every diagnostic of a compile error).
    pub fn as_kiln_error(&self) -> &KilnError {
        &self.inner
    }

    /// An error the host side raised (a misuse, or a result of the wrong type).
    pub(crate) fn host(message: impl Into<String>) -> Error {
        Error {
            inner: KilnError::runtime(message),
        }
    }
}

fn location(file: &kiln_vm::source::SourceFile, span: kiln_vm::source::Span) -> Location {
    let (line, column) = file.line_col(span.start);
    Location {
        file: file.name.clone(),
        line,
        column,
        span: span.start as usize..span.end as usize,
    }
}

impl From<KilnError> for Error {
    fn from(inner: KilnError) -> Error {
        Error { inner }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl std::error::Error for Error {}
