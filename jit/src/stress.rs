//! Side-exit stress (`--jit-exit-every`, V8's `--deopt-every-n-times` is the model): compiled
//! code asks [`exit_stress`] at every type guard whether to leave anyway, so the paths that
//! store registers back and resume the interpreter mid-function run all the time instead of
//! only when a speculation fails. A forced exit is flagged like a fuel exit: it teaches the
//! JIT nothing and never counts toward leaving a proto to the interpreter, so the compiled
//! code stays in use and keeps being stressed.
//!
//! Only type guards force exits: they test a tag before their instruction does anything,
//! so resuming the interpreter at the instruction is always valid there (a guard after a
//! helper that already wrote its result is not).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub use kiln_vm::tier::ExitEvery;

/// The longest gap between two forced exits in [`ExitEvery::Random`] mode.
pub const MAX_RANDOM_GAP: u32 = 16;

/// The counter compiled code shares with [`exit_stress`]. One per compiler, shared by every
/// task's code: tasks racing on it only change which guard exits next, which is the point.
#[derive(Debug)]
pub struct ExitStress {
    /// Guards left before the next forced exit.
    left: AtomicU32,
    every: ExitEvery,
    /// The xorshift state of [`ExitEvery::Random`].
    rng: AtomicU64,
}

impl ExitStress {
    /// A counter that lives as long as the process: compiled code holds its address, and
    /// code may outlive the compiler that made it. One small leak per compiler created in
    /// this debug mode.
    pub fn leak(every: ExitEvery) -> &'static ExitStress {
        let seed = match every {
            ExitEvery::Random(seed) => seed | 1,
            ExitEvery::Nth(_) => 1,
        };
        let s = Box::leak(Box::new(ExitStress {
            left: AtomicU32::new(0),
            every,
            rng: AtomicU64::new(seed),
        }));
        s.left.store(s.gap(), Ordering::Relaxed);
        s
    }

    fn gap(&self) -> u32 {
        match self.every {
            ExitEvery::Nth(n) => n.get(),
            ExitEvery::Random(_) => {
                let mut x = self.rng.load(Ordering::Relaxed);
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.rng.store(x, Ordering::Relaxed);
                1 + (x % u64::from(MAX_RANDOM_GAP)) as u32
            }
        }
    }
}

/// Called by compiled code at a type guard: 0 to exit there, 1 to go on.
///
/// # Safety
/// `stress` must come from [`ExitStress::leak`].
pub unsafe extern "C" fn exit_stress(stress: *const ExitStress) -> u32 {
    // SAFETY: by the contract, `stress` is a leaked `ExitStress`: never freed, and only
    // accessed through atomics, so a shared reference is sound from any thread.
    let s = unsafe { &*stress };
    if s.left.fetch_sub(1, Ordering::Relaxed) > 1 {
        return 1;
    }
    s.left.store(s.gap(), Ordering::Relaxed);
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn pattern(every: ExitEvery, n: usize) -> Vec<u32> {
        let s = ExitStress::leak(every);
        // SAFETY: `s` comes from `ExitStress::leak`.
        (0..n).map(|_| unsafe { exit_stress(s) }).collect()
    }

    #[test]
    fn nth_exits_at_every_nth_guard() {
        assert_eq!(pattern(ExitEvery::Nth(NonZeroU32::MIN), 3), [0, 0, 0]);
        let third = ExitEvery::Nth(NonZeroU32::new(3).unwrap());
        assert_eq!(pattern(third, 6), [1, 1, 0, 1, 1, 0]);
    }

    #[test]
    fn random_gaps_are_seeded_and_bounded() {
        let a = pattern(ExitEvery::Random(7), 200);
        assert_eq!(a, pattern(ExitEvery::Random(7), 200));
        assert_ne!(a, pattern(ExitEvery::Random(8), 200));
        let exits: Vec<usize> = (0..a.len()).filter(|&i| a[i] == 0).collect();
        assert!(exits.len() > 200 / MAX_RANDOM_GAP as usize);
        assert!(exits
            .windows(2)
            .all(|w| w[1] - w[0] <= MAX_RANDOM_GAP as usize));
    }
}
