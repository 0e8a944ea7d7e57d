//! Every tuning number of the compiler, each with the reason for its value (LuaJIT's
//! `JIT_PARAMDEF` is the model).

/// Calls plus loop back-edges before a proto is compiled in `--jit=on` mode. LuaJIT
/// compiles loops after 56 iterations; a method JIT pays more per compile (≈1 ms for a
/// small function, see RESEARCH.md), so it waits longer.
pub const DEFAULT_THRESHOLD: u32 = 1000;

/// Side exits a compiled proto may take before it is left to the interpreter. A few
/// exits are normal (a loop's last iteration, a rare type); hundreds mean the
/// speculation is wrong for this program.
pub const MAX_EXITS: u32 = 200;

/// Exits at instructions compiled code does not handle (a native call, an allocation)
/// a proto may take, each soon after it was entered, before it is left to the
/// interpreter. Exits after real work (`STEPS_PER_EXIT`) do not count, so what reaches
/// this limit is code that enters and leaves at once: each round trip costs more than
/// interpreting the loop iteration would.
pub const MAX_EXPECTED_EXITS: u32 = 500;

/// Compiled calls nested within one entry from the interpreter. Each is a machine frame
/// on the native stack (up to a few KB for a function with many live values); past
/// this depth the call exits, the interpreter makes it, and compiled code is entered
/// again on a fresh native stack. So native stack use stays bounded whatever the
/// script's frame limit.
pub const MAX_NATIVE_DEPTH: usize = 500;

/// Protos are compiled only when their bytecode is at most this long: compile time
/// grows linearly and a huge top level rarely has one hot path worth it.
pub const MAX_BYTECODE: usize = 20_000;

/// Capacity of the per-program tables compiled calls read (code pointer, arity,
/// register count per proto). Protos beyond it are never compiled.
pub const MAX_PROTOS: usize = 1 << 16;

/// Recompilations of one proto with side-exit feedback. Each failed type guard that
/// saw a new type (a float where an int was guessed) teaches one site; most protos
/// settle after one or two. Past this the remaining exits count toward `MAX_EXITS`.
pub const MAX_RECOMPILES: u32 = 6;

/// Steps of work (loop iterations weighted by length, calls; see `kiln_vm::fuel`) an
/// entry into compiled code must do before an exit no longer counts against it. A
/// function that runs its loops compiled and leaves for an instruction at the end pays
/// for its entry and exit many times over; one that leaves before doing anything does
/// not.
pub const STEPS_PER_EXIT: u64 = 64;

/// Parameters a direct variant (see `translate::Variant`) takes at most. With the five
/// fixed arguments, six typed parameters still travel in registers on x86-64 (floats
/// have their own eight); beyond that the generic entry is as good.
pub const MAX_DIRECT_PARAMS: usize = 6;

/// How deep compiling a proto compiles its callees first (callees of callees, ...).
/// Hot code's callees are hot too; deeper ones are left to their own counters.
pub const MAX_CALLEE_NESTING: u32 = 3;

/// A direct variant is inlined into its callers only if its IR has at most this many
/// instructions (`inline`). Spectral-norm's `a(i, j)` is about 40 and fib about 270,
/// most of it cold exit paths; bigger bodies make the call small next to the work, and
/// callers would only grow and compile longer.
pub const MAX_INLINED_INSTS: usize = 400;
