//! The engine behind `kiln repl`: each input is compiled as a continuation of one
//! persistent module, so variables, functions and structs from earlier lines stay
//! visible and keep their values.

use std::sync::Arc;

use kiln_gc::Gc;

use crate::compiler::ReplScope;
use crate::error::KilnError;
use crate::loader::Loader;
use crate::program::Program;
use crate::value::{ModuleObj, Value};
use crate::vm::{Output, Settings, Vm};

/// A REPL session.
pub struct Repl {
    vm: Vm,
    scope: ReplScope,
    module: Option<Gc<ModuleObj>>,
}

impl Repl {
    pub fn new(settings: Settings, output: Output) -> Repl {
        let mut program = Program::default();
        Loader::new(&mut program, settings.capabilities.clone());
        Repl {
            vm: Vm::new(Arc::new(program), settings, output),
            scope: ReplScope::default(),
            module: None,
        }
    }

    /// Compiles and runs one input; returns the display of its value, if it has one.
    pub fn eval(&mut self, text: &str) -> Result<Option<String>, KilnError> {
        let caps = self.vm.settings.capabilities.clone();
        // The compile thread may still hold the program for a compile the last input
        // asked for: this waits for it, briefly.
        let program = self.vm.program_mut()?;
        let id = Loader::new(program, caps)
            .compile_repl_line(text, &self.scope)
            .map_err(KilnError::compile)?;
        let info = self.vm.program.module(id);
        let (names, consts) = (info.vars.clone(), info.consts.clone());
        let obj = match self.module {
            Some(m) => m,
            None => self.vm.module_obj(id).map_err(|f| self.vm.report(f))?,
        };
        {
            let m = obj.get_mut(&mut self.vm.heap);
            m.names = names.clone();
            m.vars.resize(names.len(), Value::Undef);
            m.started = false;
            m.id = Some(id);
        }
        let i = id.0 as usize;
        if self.vm.modules.len() <= i {
            self.vm.modules.resize(i + 1, None);
        }
        self.vm.modules[i] = Some(obj);
        self.module = Some(obj);
        self.scope.vars = names.iter().cloned().zip(consts).collect();
        let v = self.vm.run_main(id)?;
        Ok(match v {
            Value::Nil | Value::Module(_) => None,
            v => Some(crate::display::repr(&self.vm, v)),
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
