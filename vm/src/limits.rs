//! What a host may bound besides fuel: memory, sizes, tasks, and the clock scripts see.
//!
//! These are the knobs of the embedding API (`kiln::Engine`), kept here because the VM,
//! the heap and the scheduler enforce them. Every limit, once reached, stops the run
//! with its own uncatchable [`crate::Limit`]; a script cannot catch its way past one.
//! The defaults are the CLI's: no heap or task bound, and size caps far above what a
//! sane script builds but below what would abort the process.

use std::sync::Arc;
use std::time::Duration;

/// Resource limits of one run (each task of the run gets the same ones).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes a task's heap may hold (live plus not yet collected garbage, after a
    /// collection has had its chance); `None` for no bound.
    pub heap_bytes: Option<usize>,
    /// Tasks alive at once, the main one included; `None` for no bound.
    pub max_tasks: Option<usize>,
    /// Longest string, in bytes, that any operation may build.
    pub max_string_bytes: usize,
    /// Most elements an array may hold.
    pub max_array_len: usize,
    /// Most entries a map may hold.
    pub max_map_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            heap_bytes: None,
            max_tasks: None,
            max_string_bytes: 1 << 30,
            max_array_len: 1 << 27,
            max_map_len: 1 << 27,
        }
    }
}

/// The time source behind `sleep`, `select` timeouts and `time.now`-style builtins: the
/// wall clock by default, or a host's tick counter so a game can replay a run exactly.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since an arbitrary fixed origin; never decreases.
    fn now(&self) -> Duration;
}

/// A shared clock handle, as [`crate::Settings`] holds it.
pub type SharedClock = Arc<dyn Clock>;
