//! How idle workers park and are woken without losing a wake-up (see `sched`'s docs for
//! the policy: searchers, sleepers, a push wakes a sleeper only when none searches).
//!
//! The protocol is a Dekker pair of SeqCst fences. A pusher queues its work, fences,
//! then reads the sleeper count; a parking worker counts itself a sleeper, fences, then
//! looks at the queues. One of the two sees the other's write: either the pusher sees
//! the sleeper and notifies (and the notify, taken under the idle lock the sleeper
//! holds until it waits, cannot come before the wait), or the sleeper sees the work
//! and does not wait. A searcher stops counting as one before it parks, so work a
//! pusher left to a searcher is seen by that searcher's last look. The loom models
//! (`loom_models`) check this.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

use crate::sync::{fence, AtomicUsize, Condvar, Mutex};

pub(crate) struct Idle {
    /// Workers parked or about to park.
    sleepers: AtomicUsize,
    /// Workers looking for work before they park.
    searching: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Idle {
    pub(crate) fn new() -> Idle {
        Idle {
            sleepers: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    /// After queueing work: wakes a parked worker, if any, unless a searching worker
    /// will find the work.
    pub(crate) fn notify_one(&self) {
        fence(SeqCst);
        if self.searching.load(SeqCst) == 0 && self.sleepers.load(SeqCst) > 0 {
            self.wake_one();
        }
    }

    /// Wakes a parked worker whatever the searchers do (a new timer may be earlier
    /// than the deadline it sleeps to).
    pub(crate) fn wake_one(&self) {
        let _g = self.lock.lock();
        self.cond.notify_one();
    }

    /// Wakes every parked worker (the program ends).
    pub(crate) fn wake_all(&self) {
        let _g = self.lock.lock();
        self.cond.notify_all();
    }

    pub(crate) fn begin_search(&self) {
        self.searching.fetch_add(1, SeqCst);
    }

    pub(crate) fn end_search(&self) {
        self.searching.fetch_sub(1, SeqCst);
    }

    /// Parks the calling worker until it is woken or `deadline` passes, unless
    /// `has_work()` — asked after the worker counts as a sleeper — says there is work
    /// (or the program ends).
    pub(crate) fn park(&self, has_work: impl Fn() -> bool, deadline: Option<Instant>) {
        let mut g = self.lock.lock();
        self.sleepers.fetch_add(1, SeqCst);
        fence(SeqCst);
        if !has_work() {
            match deadline {
                Some(at) => {
                    self.cond.wait_until(&mut g, at);
                }
                None => self.cond.wait(&mut g),
            }
        }
        self.sleepers.fetch_sub(1, SeqCst);
    }
}
