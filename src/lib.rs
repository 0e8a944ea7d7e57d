//! Kiln: a tiered scripting runtime. This crate is the entry point for hosts and for
//! the `kiln` command.
//!
//! Hosts embed Kiln through [`Engine`] (capabilities, natives, host types, limits; shared
//! and cheap to clone) and [`Store`] (one run's heap and modules): evaluate code, load
//! modules, look functions up once as [`TypedFunc`]s and call them with Rust values.
//! See `docs/embedding.md` for the guide. The CLI uses [`run_source`] and [`report`].
//!
//! ```
//! let engine = kiln::Engine::new();
//! let mut store = kiln::Store::new(&engine);
//! let module = store.load("calc", "fn area(w, h) { w * h }").unwrap();
//! let area = store.func::<(f64, f64), f64>(module, "area").unwrap();
//! assert_eq!(area.call(&mut store, (3.0, 4.0)).unwrap(), 12.0);
//! ```

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod convert;
mod engine;
mod error;
mod host;
mod native;
pub mod report;
#[cfg(feature = "serde")]
mod serde;
mod store;

pub use convert::{FromValue, IntoArgs, IntoValue, Value};
pub use engine::Engine;
pub use error::{Error, Location, StackFrame};
pub use host::{Handle, IntoMethod, Script, TypeBuilder};
pub use kiln_vm as vm;
pub use kiln_vm::tier::{JitMode, TierConfig};
pub use kiln_vm::{
    Capabilities, Clock, ErrorKind, KilnError, Limit, Limits, Output, Settings, SharedClock, Vm,
};
pub use native::{IntoNative, NativeModule};
#[cfg(feature = "serde")]
pub use serde::Serde;
pub use store::{InterruptHandle, Module, Store, TypedFunc};

use std::sync::Arc;

/// Compiles and runs `text` (named `name` in messages) as a program.
pub fn run_source(
    name: &str,
    text: &str,
    settings: Settings,
    output: Output,
) -> Result<(), KilnError> {
    // Tasks catch their own panics (see `kiln_vm::sched`); this catches the compiler's.
    // Nothing is used after a panic but the panic itself.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (program, main) = kiln_vm::compile(name, text, &settings.capabilities)?;
        kiln_vm::sched::run_program(
            Arc::new(program),
            main,
            settings,
            output,
            Arc::new(report_task_error),
        )
    }))
    .unwrap_or_else(|panic| Err(KilnError::internal(panic.as_ref())))
}

/// How the CLI reports a task that failed with nobody joining it: like a top-level
/// error, headed by the task (`error in task 3: boom`).
fn report_task_error(id: u64, err: &KilnError, out: &mut dyn std::io::Write) {
    report::render_as(
        err,
        &format!("error in task {id}"),
        out,
        report::use_color(),
    );
}

/// Whether this build has the Cranelift tier.
pub const HAS_JIT: bool = cfg!(feature = "jit");

/// How hot code is compiled, as the CLI and hosts choose it.
#[derive(Clone, Debug)]
pub struct JitSettings {
    /// Test mode: a threshold per function drawn from this seed, in place of `threshold`
    /// (`--jit-threshold random:SEED`).
    pub threshold_seed: Option<u64>,
    /// Test mode: forced side exits (`--jit-exit-every`).
    pub exit_every: Option<kiln_vm::tier::ExitEvery>,
    /// Off, on at a threshold, or eager.
    pub mode: JitMode,
    /// Calls plus loop back-edges before a function is compiled (`JitMode::On`).
    pub threshold: Option<u32>,
    /// One line per compile, refusal and blacklisting on stderr.
    pub verbose: bool,
    /// Print the Cranelift IR (`clif`) or machine code (`asm`) of compiled functions on
    /// stderr.
    pub dump: Option<JitDump>,
}

/// What `--jit-dump` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitDump {
    /// Cranelift's intermediate representation.
    Clif,
    /// The generated machine code.
    Asm,
}

/// The tier configuration for `settings`: the Cranelift tier when the build has it and
/// the mode is not `Off`, the interpreter alone otherwise.
pub fn tier_config(settings: &JitSettings) -> TierConfig {
    let mut config = TierConfig {
        mode: settings.mode,
        ..TierConfig::default()
    };
    #[cfg(feature = "jit")]
    {
        config.threshold = settings
            .threshold
            .unwrap_or(kiln_jit::params::DEFAULT_THRESHOLD);
        config.threshold_seed = settings.threshold_seed;
        if settings.mode != JitMode::Off {
            let options = kiln_jit::JitOptions {
                verbose: settings.verbose,
                dump: settings.dump.map(|d| match d {
                    JitDump::Clif => kiln_jit::Dump::Clif,
                    JitDump::Asm => kiln_jit::Dump::Asm,
                }),
                exit_every: settings.exit_every,
            };
            config.tier = Some(std::sync::Arc::new(kiln_jit::CraneliftTier::new(options)));
        }
    }
    if config.tier.is_none() {
        config.mode = JitMode::Off;
    }
    config
}
