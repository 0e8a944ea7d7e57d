//! The engine behind `kiln repl`: each input is compiled as a continuation of one
//! persistent module, so variables, functions and structs from earlier lines stay
//! visible and keep their values.
//!
//! Each input runs as the main task of a scheduler the session keeps (without worker
//! threads: the REPL's own thread runs the tasks), so `spawn`, `join`, channels and
//! `sleep` work as in a script. Tasks an input spawns run while inputs run; one still
//! waiting when an input ends goes on at a later input.

use std::sync::Arc;

use kiln_gc::Gc;

use crate::compiler::ReplScope;
use crate::error::KilnError;
use crate::loader::Loader;
use crate::program::{ModuleId, Program};
use crate::sched::{HostTasks, LineEnd};
use crate::value::{ModuleObj, Value};
use crate::vm::{Output, Settings, Vm};

/// A REPL session.
pub struct Repl {
    /// Out only while an input runs (the running task holds it).
    vm: Option<Box<Vm>>,
    tasks: HostTasks,
    scope: ReplScope,
    module: Option<Gc<ModuleObj>>,
    /// To start the session over after an internal error.
    settings: Settings,
}

impl Repl {
    pub fn new(settings: Settings, output: Output) -> Repl {
        let mut program = Program::default();
        Loader::new(&mut program, settings.capabilities.clone());
        let reporter = Arc::new(|id: u64, err: &KilnError, out: &mut dyn std::io::Write| {
            let _ = writeln!(out, "error in task {id}: {err}");
        });
        let tasks = HostTasks::new(settings.clone(), output, reporter);
        let vm = Vm::new(Arc::new(program), settings.clone(), tasks.output());
        Repl {
            vm: Some(Box::new(vm)),
            tasks,
            scope: ReplScope::default(),
            module: None,
            settings,
        }
    }

    /// Compiles and runs one input; returns the display of its value, if it has one.
    /// After an internal error (a panic in Kiln or a host function, which may leave the
    /// machine half-way through an update) the session starts over, empty.
    pub fn eval(&mut self, text: &str) -> Result<Option<String>, KilnError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.eval_line(text)))
            .unwrap_or_else(|panic| {
                *self = Repl::new(self.settings.clone(), self.tasks.output());
                Err(KilnError::internal(panic.as_ref()))
            })
    }

    fn eval_line(&mut self, text: &str) -> Result<Option<String>, KilnError> {
        let Some(mut vm) = self.vm.take() else {
            return Err(KilnError::runtime("the REPL's machine was lost"));
        };
        let id = match self.prepare(&mut vm, text) {
            Ok(id) => id,
            Err(e) => {
                self.vm = Some(vm);
                return Err(e);
            }
        };
        let (mut vm, end) = self.tasks.run_line(vm, id);
        let result = Self::finish(&mut vm, end);
        self.vm = Some(vm);
        result
    }

    /// Compiles `text` into the session's module and points the module at it.
    fn prepare(&mut self, vm: &mut Vm, text: &str) -> Result<ModuleId, KilnError> {
        let caps = vm.settings.capabilities.clone();
        let scope = &self.scope;
        // Tasks from earlier inputs hold the program too: they lend it while it grows.
        let id = self.tasks.lend_program(vm, |vm| {
            // The compile thread may still hold the program for a compile the last
            // input asked for: this waits for it, briefly.
            Loader::new(vm.program_mut()?, caps)
                .compile_repl_line(text, scope)
                .map_err(KilnError::compile)
        })?;
        let info = vm.program.module(id);
        let (names, consts) = (info.vars.clone(), info.consts.clone());
        let obj = match self.module {
            Some(m) => m,
            None => vm.module_obj(id).map_err(|f| vm.report(f))?,
        };
        {
            let m = obj.get_mut(&mut vm.heap);
            m.names = names.clone();
            m.vars.resize(names.len(), Value::Undef);
            m.started = false;
            m.id = Some(id);
        }
        let i = id.0 as usize;
        if vm.modules.len() <= i {
            vm.modules.resize(i + 1, None);
        }
        vm.modules[i] = Some(obj);
        self.module = Some(obj);
        self.scope.vars = names.iter().cloned().zip(consts).collect();
        Ok(id)
    }

    /// The display of an input's value, or its error (after which the machine is ready
    /// for the next input).
    fn finish(vm: &mut Vm, end: LineEnd) -> Result<Option<String>, KilnError> {
        let v = match end {
            LineEnd::Code(result) => vm.finish_main(result)?,
            LineEnd::Stopped(error) => {
                vm.drop_frames();
                return Err(error);
            }
        };
        Ok(match v {
            Value::Nil | Value::Module(_) => None,
            v => Some(crate::display::repr(vm, v)),
        })
    }

    /// Whether `text` is an unfinished input (an open bracket, string or block) that
    /// should continue on the next line.
    pub fn is_incomplete(text: &str) -> bool {
        match crate::parser::parse(text) {
            Ok(_) => false,
            Err(errs) => errs.iter().any(|e| {
                e.span.start as usize >= text.trim_end().len()
                    || e.message.contains("end of file")
                    || e.message.contains("unterminated")
            }),
        }
    }
}
