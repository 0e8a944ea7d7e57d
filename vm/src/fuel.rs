//! Step accounting: how a run is bounded and interrupted.
//!
//! Every call charges one step and every loop iteration charges the loop's length in
//! instructions (the distance of its back-edge), in the interpreter and in compiled code
//! alike, so fuel approximates instructions run without counting each one. The VM keeps
//! the steps left in the current grant in [`Vm::fuel`]; when it drops to zero the
//! interpreter calls [`Vm::refuel`], which checks the limits and grants more.
//!
//! Under the task scheduler the grant is a time slice: at its end `refuel` suspends the
//! task (`Fault::Suspend`) if other tasks are waiting for a worker.
//!
//! Straight-line code between two charges is at most one function body, so a run stops
//! within a bounded number of instructions after its limit is reached.

use std::sync::atomic::Ordering;

use crate::error::{Fault, Limit};
use crate::vm::Vm;

/// Steps per grant when something must be checked regularly (a limit or an interrupt
/// flag): small enough that an interrupt lands within a millisecond or so.
pub const CHECK_EVERY: i64 = 100_000;

/// Steps a task runs before it offers its worker to other tasks (see `crate::sched`):
/// tens of microseconds of work, so a yield costs well under 1% while a task that
/// never blocks still lets the others run.
pub const TIME_SLICE: i64 = 20_000;

impl Vm {
    /// The steps to grant next: up to the limit, or practically unbounded.
    pub(crate) fn fuel_grant(&self) -> i64 {
        let checked = self.settings.interrupt.is_some() || self.settings.fuel.is_some();
        let slice = if self.task.is_some() {
            TIME_SLICE
        } else if checked {
            CHECK_EVERY
        } else {
            i64::MAX / 4
        };
        match self.settings.fuel {
            Some(limit) => slice.min(limit.saturating_sub(self.fuel_spent) as i64),
            None => slice,
        }
    }

    /// Starts counting afresh (a new run of the VM).
    pub fn reset_fuel(&mut self) {
        self.fuel_spent = 0;
        self.fuel = self.fuel_grant();
        self.fuel_granted = self.fuel;
    }

    /// Steps spent since the last reset.
    pub fn fuel_spent(&self) -> u64 {
        self.fuel_spent + (self.fuel_granted - self.fuel).max(0) as u64
    }

    /// The grant ran out: stop the run if a limit says so, or grant more.
    #[cold]
    pub(crate) fn refuel(&mut self) -> Result<(), Fault> {
        self.fuel_spent = self.fuel_spent();
        self.fuel = 0;
        self.fuel_granted = 0;
        if let Some(flag) = &self.settings.interrupt {
            if flag.swap(false, Ordering::AcqRel) {
                return Err(Fault::Limit(Limit::Interrupted));
            }
        }
        let grant = self.fuel_grant();
        if grant <= 0 {
            return Err(Fault::Limit(Limit::Fuel));
        }
        self.fuel = grant;
        self.fuel_granted = grant;
        self.preempt()
    }
}
