//! The tier-up interface: how the interpreter asks for compiled code and runs it.
//!
//! The VM never names Cranelift. A [`Tier`] (the root crate plugs in `kiln-jit`) compiles
//! hot protos; finished code lands in the proto's [`CodeSlot`], shared by every task that
//! runs the proto. The interpreter counts calls and loop back-edges per proto, requests
//! compilation when a count crosses the threshold, and enters compiled code at the next
//! call (pc 0) or back-edge (a loop header, on-stack replacement).
//!
//! Compiled code runs on the frame's register window, the same `[Value]` the interpreter
//! uses. When it cannot go on (a failed type guard, an instruction it does not compile, a
//! call it cannot make) it writes every value it holds back to the window and reports
//! the pc to resume at; frames of compiled callees that were running are described in
//! [`TierExit::Resume`] so the interpreter can rebuild them. Results never differ between
//! tiers because every compiled path has its interpreted twin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::program::{Program, ProtoId};
use crate::value::Value;
use crate::vm::Vm;

/// When the interpreter asks for compiled code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitMode {
    /// Never: the interpreter runs everything.
    Off,
    /// When a proto's call and back-edge count reaches the threshold.
    On,
    /// At a proto's first call, synchronously (the test mode).
    Eager,
}

/// A test mode of the compiled tier (`--jit-exit-every`): compiled code takes a side exit
/// at type guards that pass, so resuming the interpreter mid-function is exercised
/// everywhere, not only where a speculation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitEvery {
    /// At every `n`-th type guard reached.
    Nth(std::num::NonZeroU32),
    /// After a pseudo-random number of guards drawn from this seed.
    Random(u64),
}

/// Why compiled code handed control back.
#[derive(Debug)]
pub enum TierExit {
    /// The entered function returned this value.
    Returned(Value),
    /// Continue in the interpreter: the entered frame resumes at `pc`, and `frames`
    /// (outermost first) are compiled callees that were running above it, each to be
    /// rebuilt as an interpreter frame resuming at its own pc.
    Resume { pc: u32, frames: Vec<Materialize> },
}

/// A compiled frame to rebuild as an interpreter frame.
#[derive(Clone, Copy, Debug)]
pub struct Materialize {
    /// The callee (a `Value::Func`).
    pub closure: Value,
    /// Absolute stack index of its first register.
    pub base: usize,
    pub pc: u32,
}

/// Code for one proto, produced by a [`Tier`].
pub trait CompiledCode: Send + Sync {
    /// Whether the code can be entered at `pc` (0, or a loop header).
    fn has_entry(&self, pc: u32) -> bool;
    /// Runs the code for the VM's top frame, entering at `pc`.
    fn run(&self, vm: &mut Vm, pc: u32) -> TierExit;
}

/// A compiler for hot protos.
pub trait Tier: Send + Sync {
    /// `proto` of `program` is hot. Compile it, in the background (`wait` false) or
    /// before returning (`wait` true), and store the result in its [`CodeSlot`].
    /// `params` are the tags ([`Value::tag`]) of the parameters of the frame that made
    /// it hot: type feedback for the compiler's guesses.
    fn request(&self, program: &Arc<Program>, proto: ProtoId, params: &[u8], wait: bool);
    /// One-line summary for `--stats` at exit.
    fn stats(&self) -> String;
}

/// Where a proto's compiled code lands. Written once by the tier; read by every task.
#[derive(Default)]
pub struct CodeSlot {
    code: OnceLock<Arc<dyn CompiledCode>>,
    /// Requested already (or refused): don't ask again.
    requested: AtomicBool,
    /// The tier gave up on this proto (refused or left it to the interpreter): counting
    /// its calls and back-edges is pointless, and the interpreter checks only this.
    dormant: AtomicBool,
}

impl std::fmt::Debug for CodeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CodeSlot(compiled: {})", self.code.get().is_some())
    }
}

impl CodeSlot {
    #[inline]
    pub fn get(&self) -> Option<&Arc<dyn CompiledCode>> {
        self.code.get()
    }

    /// Installs compiled code (the first installation wins).
    pub fn set(&self, code: Arc<dyn CompiledCode>) {
        let _ = self.code.set(code);
    }

    /// Marks the slot requested; true the first time.
    pub fn claim(&self) -> bool {
        !self.requested.swap(true, Ordering::AcqRel)
    }

    /// Says whether the tier has given up on this proto (see [`CodeSlot::is_dormant`]);
    /// a recompilation that installs new code wakes it again.
    pub fn set_dormant(&self, dormant: bool) {
        self.dormant.store(dormant, Ordering::Relaxed);
    }

    #[inline]
    pub fn is_dormant(&self) -> bool {
        self.dormant.load(Ordering::Relaxed)
    }
}

/// The tier configuration of a VM.
#[derive(Clone)]
pub struct TierConfig {
    pub mode: JitMode,
    /// Calls plus loop back-edges before a proto is compiled (mode `On`).
    pub threshold: u32,
    /// A test mode (`--jit-threshold random:SEED`): each proto gets its own threshold, drawn
    /// from this seed and its id, in place of `threshold`.
    pub threshold_seed: Option<u64>,
    pub tier: Option<Arc<dyn Tier>>,
}

impl TierConfig {
    /// The threshold of `proto`: `threshold`, or with a seed one from 1 to 4096, spread
    /// evenly over the powers of two so that protos tier up at very different times (a
    /// caller compiled long before its callee, or the other way round).
    fn threshold_of(&self, proto: ProtoId) -> u32 {
        let Some(seed) = self.threshold_seed else {
            return self.threshold;
        };
        // SplitMix64's finaliser: nearby seeds and ids give unrelated thresholds.
        let mut z = seed ^ u64::from(proto.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let bits = (z % 13) as u32;
        1 + ((z >> 8) as u32 & ((1 << bits) - 1))
    }
}

impl std::fmt::Debug for TierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TierConfig({:?}, threshold {}, tier: {})",
            self.mode,
            self.threshold,
            self.tier.is_some()
        )
    }
}

impl Default for TierConfig {
    fn default() -> TierConfig {
        TierConfig {
            mode: JitMode::Off,
            threshold: 1000,
            threshold_seed: None,
            tier: None,
        }
    }
}

impl Vm {
    /// Counts one call or back-edge of `proto`; requests compilation when it is hot.
    #[inline]
    /// Returns the compiled code only if it can be entered at `pc`.
    pub(crate) fn tier_hot(
        &mut self,
        proto: ProtoId,
        pc: usize,
        weight: u32,
    ) -> Option<Arc<dyn CompiledCode>> {
        let slot = &self.program.proto(proto).jit;
        if slot.is_dormant() {
            return None;
        }
        if let Some(code) = slot.get() {
            // Cloning the Arc costs two atomic operations: only when entering.
            return code.has_entry(pc as u32).then(|| code.clone());
        }
        if slot.requested.load(Ordering::Relaxed) {
            // Being compiled: nothing to count or ask for.
            return None;
        }
        let i = proto.0 as usize;
        if self.hotness.len() <= i {
            self.hotness.resize(i + 1, 0);
        }
        self.hotness[i] = self.hotness[i].saturating_add(weight);
        let eager = self.settings.tier.mode == JitMode::Eager;
        if (eager || self.hotness[i] >= self.settings.tier.threshold_of(proto)) && slot.claim() {
            if let Some(tier) = self.settings.tier.tier.clone() {
                let p = self.program.proto(proto);
                let n = p.nparams as usize + p.has_rest as usize;
                let base = self.frames.last().map_or(0, |f| f.base);
                let params: Vec<u8> = self.stack[base..base + n].iter().map(|v| v.tag()).collect();
                tier.request(&self.program, proto, &params, eager);
            }
        }
        slot.get().filter(|c| c.has_entry(pc as u32)).cloned()
    }

    /// A view of the state compiled code runs on: the register stack, the top frame's
    /// base and closure, and how many more frames may be pushed.
    pub fn tier_state(&mut self) -> TierState<'_> {
        let f = *self.frames.last().expect("compiled code runs for a frame");
        let module_vars = f.module.get_mut(&mut self.heap).vars.as_mut_ptr();
        TierState {
            depth_left: self.settings.max_depth.saturating_sub(self.frames.len()),
            base: f.base,
            closure: Value::Func(f.closure),
            module: Value::Module(f.module),
            module_vars,
            builtins: self.builtins.as_ptr(),
            fuel: &mut self.fuel,
            stack: &mut self.stack,
            program: &self.program,
        }
    }
}

/// What compiled code sees of the VM while it runs.
pub struct TierState<'a> {
    pub stack: &'a mut Vec<Value>,
    pub base: usize,
    pub closure: Value,
    /// The frame's module and where its variables are (stable while code runs).
    pub module: Value,
    pub module_vars: *mut Value,
    /// The built-in values (`crate::builtins::GLOBALS` order; fixed while code runs;
    /// `Undef` for one not made yet).
    pub builtins: *const Value,
    /// Frames compiled calls may still add before `stack overflow`.
    pub depth_left: usize,
    /// Steps left in the grant (see [`crate::fuel`]). Compiled code charges calls and
    /// loop iterations as the interpreter does and leaves at a loop header or call when
    /// it reaches zero; the interpreter then refuels at its next charge.
    pub fuel: &'a mut i64,
    pub program: &'a Arc<Program>,
}
