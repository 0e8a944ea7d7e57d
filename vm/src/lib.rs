//! kiln-vm: the Kiln language — front end, register bytecode compiler, interpreter,
//! built-ins and standard modules.
//!
//! Pipeline: [`parser::parse`] → [`compiler`] (via [`Loader`]) → [`Program`] →
//! [`Vm::run_main`]. See ARCHITECTURE.md at the repository root for the map.

#![deny(unsafe_code)]

pub mod ast;
pub mod builtins;
pub mod bytecode;
mod captures;
pub mod channel;
mod compile_expr;
mod compiler;
pub mod copy;
pub mod disasm;
pub mod display;
pub mod error;
pub mod fuel;
pub mod host;
mod idle;
mod interp;
pub mod lexer;
pub mod limits;
pub mod loader;
#[cfg(all(test, loom))]
mod loom_models;
pub mod methods;
pub mod ops;
pub mod parser;
pub mod program;
pub mod repl;
mod root;
pub mod sched;
pub mod source;
pub mod stdlib;
mod sync;
pub mod task;
pub mod tier;
pub mod value;
pub mod vm;

use std::sync::Arc;

pub use error::{Collection, Diagnostic, ErrorKind, Fault, KilnError, Limit};
pub use limits::{Clock, Limits, SharedClock};
pub use loader::Loader;
pub use program::{ModuleId, Program};
pub use value::Value;
pub use vm::{Capabilities, Output, Settings, Vm};

/// Compiles an entry script (and everything it imports) into a new program.
pub fn compile(
    name: &str,
    text: &str,
    caps: &Capabilities,
) -> Result<(Program, ModuleId), KilnError> {
    let mut program = Program::default();
    let main = Loader::new(&mut program, caps.clone())
        .compile_main(name, text)
        .map_err(KilnError::compile)?;
    Ok((program, main))
}

impl Vm {
    /// Runs module `main` (after the prelude) to completion.
    pub fn run_main(&mut self, main: ModuleId) -> Result<Value, KilnError> {
        let result = match self.program.prelude {
            Some(p) => self.run_module(p).and_then(|_| self.run_module(main)),
            None => self.run_module(main),
        };
        self.finish_main(result)
    }

    /// Flushes the output after the main module ran and reports how it ended.
    pub(crate) fn finish_main(&mut self, result: Result<Value, Fault>) -> Result<Value, KilnError> {
        // Output lost at the end (a full disk, a closed pipe) is an error, not success.
        let flushed = std::io::Write::flush(&mut self.output.out)
            .map_err(|e| Fault::Error(format!("cannot write to stdout: {e}")));
        self.flush();
        result
            .and_then(|v| flushed.map(|_| v))
            .map_err(|f| self.report(f))
    }

    /// Runs a module's top level if it has not run yet; returns its module object.
    pub(crate) fn run_module(&mut self, id: ModuleId) -> Result<Value, Fault> {
        let m = self.module_obj(id)?;
        if m.get(&self.heap).started {
            return Ok(Value::Module(m));
        }
        let main = self.program.module(id).main;
        let c = self.new_closure(main, Box::new([]), m)?;
        m.get_mut(&mut self.heap).started = true;
        let slot = match self.frames.last() {
            Some(f) => f.base + self.program.proto(f.proto).max_regs as usize,
            None => 0,
        };
        if self.stack.len() <= slot {
            self.stack.resize(slot + 1, Value::Nil);
        }
        self.stack[slot] = Value::Func(c);
        let depth = self.frames.len();
        self.push_frame(c, slot, 0, slot)?;
        let result = self.execute(depth);
        if result.is_err() && Some(id) == self.program.prelude {
            // Only a failed allocation can stop the prelude (it only declares functions):
            // it runs again at its next use instead of leaving built-in methods missing.
            m.get_mut(&mut self.heap).started = false;
        }
        result
    }

    /// A prelude function by name (script-level built-in methods).
    pub(crate) fn prelude_fn(&mut self, name: &str) -> Result<Value, Fault> {
        let id = self
            .program
            .prelude
            .ok_or_else(|| fault!("internal error: no prelude"))?;
        // A spawned task runs the prelude (function declarations only: no call, no
        // loop, so it cannot suspend) the first time it needs it.
        self.run_module(id)?;
        let m = self.module_obj(id)?;
        match m.get(&self.heap).member(name) {
            Some(v) if !matches!(v, Value::Undef) => Ok(v),
            _ => Err(fault!("internal error: prelude has no `{name}`")),
        }
    }

    /// Turns an uncaught fault into the error a host sees.
    pub(crate) fn report(&mut self, fault: Fault) -> KilnError {
        let kind = match &fault {
            Fault::Limit(limit) => ErrorKind::Limit(*limit),
            Fault::Error(msg) if msg == crate::interp::STACK_OVERFLOW => ErrorKind::StackOverflow,
            Fault::Throw(Value::Error(e)) if e.get(&self.heap).stack_overflow => {
                ErrorKind::StackOverflow
            }
            _ => ErrorKind::Runtime,
        };
        let (message, trace): (String, Arc<[value::TraceEntry]>) = match fault {
            Fault::Exit(code) => {
                return KilnError {
                    kind: ErrorKind::Exit(code),
                    diagnostics: Vec::new(),
                    trace: Vec::new(),
                }
            }
            Fault::Error(msg) => (msg, self.capture_trace()),
            Fault::Throw(Value::Error(e)) => {
                let e = e.get(&self.heap);
                (e.message.to_string(), e.trace.clone())
            }
            Fault::Limit(limit) => (
                limit.message().to_string(),
                self.throw_trace
                    .take()
                    .unwrap_or_else(|| self.capture_trace()),
            ),
            Fault::Suspend => (
                "internal error: a task stopped outside the scheduler".to_string(),
                self.capture_trace(),
            ),
            Fault::Throw(v) => (
                self.display(v),
                self.throw_trace
                    .take()
                    .unwrap_or_else(|| self.capture_trace()),
            ),
        };
        // Point at the user's code, not inside the prelude's `map`/`sort_by`.
        let location = trace
            .iter()
            .find(|t| t.source.name != crate::loader::PRELUDE_NAME)
            .or(trace.first())
            .map(|t| (t.source.clone(), t.span));
        self.frames.clear();
        self.handlers.clear();
        KilnError {
            kind,
            diagnostics: vec![Diagnostic::new(message, location)],
            trace: trace.to_vec(),
        }
    }
}
