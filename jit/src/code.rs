//! Machine code memory: one Cranelift module per compile, freed when nothing can run it.
//!
//! Cranelift frees code only a whole module at a time, so each compile (a proto's
//! generic entry and its direct variant) gets a module of its own, a [`CodeUnit`].
//! A unit stays mapped while anything can reach it:
//!
//! - the [`crate::JitCode`] whose current code it is, and the per-program tables;
//! - every unit whose code calls (or inlined a call of) a direct variant in it, through
//!   that unit's `callees` list;
//! - every thread that is running it. Native code runs only inside
//!   `JitCode::run`, which is pinned to a `crossbeam-epoch` epoch while it runs. Code
//!   that is replaced (a recompile) or left to the interpreter is first made unreachable
//!   (entry and table slots switched), then [`retire`]d: the last reference is dropped
//!   only after every thread pinned at that moment has unpinned.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cranelift_jit::JITModule;
use parking_lot::Mutex;

use crate::translate::Caches;

/// The machine code of one compile.
pub struct CodeUnit {
    module: Mutex<Option<JITModule>>,
    /// Units holding direct variants this unit's code calls: mapped while it is.
    _callees: Vec<Arc<CodeUnit>>,
    /// The inline-cache words its code embeds the addresses of.
    _caches: Vec<Caches>,
}

// SAFETY: the module is used by the compile thread alone (under the mutex) until the
// unit is built; afterwards the only operation left is freeing it, from whichever thread
// drops the last reference. Nothing in it is tied to the thread that made it.
unsafe impl Send for CodeUnit {}
// SAFETY: every access goes through the mutex.
unsafe impl Sync for CodeUnit {}

static MADE: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

impl CodeUnit {
    /// Wraps a module whose code calls direct variants in `callees` and uses the
    /// inline caches `caches`.
    pub fn new(
        module: JITModule,
        callees: Vec<Arc<CodeUnit>>,
        caches: Vec<Caches>,
    ) -> Arc<CodeUnit> {
        MADE.fetch_add(1, Ordering::Relaxed);
        Arc::new(CodeUnit {
            module: Mutex::new(Some(module)),
            _callees: callees,
            _caches: caches,
        })
    }
}

impl Drop for CodeUnit {
    fn drop(&mut self) {
        if let Some(module) = self.module.get_mut().take() {
            FREED.fetch_add(1, Ordering::Relaxed);
            // SAFETY: no code of this unit can run any more. It is entered only through
            // a `JitCode` or the tables, which held a reference until the code was
            // unreachable from them and then handed it to `retire`, which drops it only
            // once every thread that could have entered before has left native code
            // (see the module comment); compiled calls of its direct variants come from
            // units that hold a reference to this one.
            unsafe { module.free_memory() };
        }
    }
}

/// Drops `unit` once no thread can be running its code: call it after making the code
/// unreachable (its entries replaced or cleared).
pub fn retire(unit: Arc<CodeUnit>) {
    let guard = crossbeam_epoch::pin();
    guard.defer(move || drop(unit));
    // Into the global queue: the compile thread, which retires most code, may never
    // fill its own bag, and other threads collect only from the global queue.
    guard.flush();
}

/// Runs what [`retire`] deferred, as far as the threads still in native code allow.
/// Collection also happens on its own as threads enter code; this is for the end of a
/// tier and for tests.
pub fn collect() {
    for _ in 0..4 {
        crossbeam_epoch::pin().flush();
    }
}

/// Code modules made so far in this process.
pub fn units_made() -> u64 {
    MADE.load(Ordering::Relaxed)
}

/// Code modules freed so far in this process.
pub fn units_freed() -> u64 {
    FREED.load(Ordering::Relaxed)
}
