//! Kiln: a tiered scripting runtime. This crate is the entry point for hosts and for
//! the `kiln` command: it re-exports the VM and offers the pieces the CLI is built from
//! (running a file with the standard capabilities, rendering errors).

#![deny(unsafe_code)]

pub mod report;

pub use kiln_vm as vm;
pub use kiln_vm::{Capabilities, ErrorKind, KilnError, Output, Settings, Value, Vm};

use std::sync::Arc;

/// Compiles and runs `text` (named `name` in messages) as a program.
pub fn run_source(
    name: &str,
    text: &str,
    settings: Settings,
    output: Output,
) -> Result<(), KilnError> {
    let (program, main) = kiln_vm::compile(name, text, &settings.capabilities)?;
    let mut vm = Vm::new(Arc::new(program), settings, output);
    vm.run_main(main).map(|_| ())
}
