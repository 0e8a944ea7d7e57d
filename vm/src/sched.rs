//! The scheduler: runs a program's tasks on a pool of OS worker threads.
//!
//! Work stealing with `crossbeam-deque`: a global injector, and per worker a FIFO deque
//! (stealable) plus a one-task LIFO slot (not stealable) for the task it just woke, so a
//! ping-pong pair of tasks stays on one worker without a thread switch. A worker looks
//! for work in its slot, its deque, the injector (first, every [`INJECTOR_EVERY`] ticks,
//! so injected tasks are never starved), then its peers' deques (half of one at a time).
//!
//! A worker that finds nothing *searches* for up to [`SEARCH_FOR`] (looking again and
//! yielding its CPU in between) before it parks on a condition variable (with a timeout
//! to the next timer). A task that spawns or wakes tasks one after another (a loop of
//! `spawn`s) then feeds a worker that is still awake instead of paying a thread wake-up
//! per task, which costs more than a short task itself. A push wakes a parked worker
//! only when none is searching (the searcher will take the work); a searcher that finds
//! work wakes a parked peer if more is queued, so a burst still reaches every worker.
//!
//! Deadlock: the scheduler counts *active* tasks (runnable or running). Only an active
//! task or a timer can wake a waiting task, so when no task is active, no timer is
//! pending and some task still lives, nothing will ever run again: the program stops
//! with `deadlock: all tasks are blocked` and where each task waits.
//!
//! The program ends when its main task ends: the other tasks are cancelled (their
//! `defer`s run; one that keeps catching `task cancelled` is abandoned after
//! [`CANCEL_GRACE`]), failures nobody joined are reported, and the workers stop.
//!
//! Timers are deadlines on the run's clock (`Settings::clock`, the wall clock when the
//! host gives none); a worker parked under a host's clock looks at them every
//! millisecond, since that clock moves on its own. [`HostTasks`] is the same scheduler
//! without workers, which an embedding host drives from its own thread.

use std::cell::RefCell;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use parking_lot::{Condvar, Mutex};

use crate::error::{Diagnostic, ErrorKind, Fault, KilnError, Limit};
use crate::idle::Idle;
use crate::program::{ModuleId, Program};
use crate::task::{Outcome, Start, Task, Waiter, Wake};
use crate::value::Value;
use crate::vm::{Output, Settings, Vm};

/// A worker takes from the injector before its own queues every this many ticks
/// (Go's and Tokio's figure), so tasks pushed from outside are never starved.
const INJECTOR_EVERY: u32 = 61;

/// Consecutive runs from a worker's LIFO slot before it looks at its deque again, so a
/// ping-pong pair cannot starve the tasks queued behind it.
const LIFO_RUNS: u32 = 32;

/// How long a worker with nothing to do keeps looking before it parks: longer than the
/// gap between two `spawn`s of a spawning loop, far shorter than a thread wake-up
/// costs in lost work when the machine is busy.
const SEARCH_FOR: Duration = Duration::from_micros(50);

/// How long the end of the program waits for cancelled tasks to finish.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// The main task's id (tasks are numbered from it in spawn order).
pub const MAIN_TASK: u64 = 1;

/// Reports a failed task nobody joined: its id and the error, written to the program's
/// error stream.
pub type TaskErrorReporter = Arc<dyn Fn(u64, &KilnError, &mut dyn Write) + Send + Sync>;

/// How the program ended.
enum End {
    Main(Result<(), KilnError>),
    Exit(i32),
    Deadlock(KilnError),
}

impl End {
    /// The run's result as a host sees it: an error unless the main task ended well.
    fn into_result(self) -> Result<(), KilnError> {
        match self {
            End::Main(result) => result,
            End::Exit(code) => Err(KilnError {
                kind: ErrorKind::Exit(code),
                diagnostics: Vec::new(),
                trace: Vec::new(),
            }),
            End::Deadlock(e) => Err(e),
        }
    }
}

/// A wait with a deadline (`sleep`, `select` with a timeout), on the scheduler's clock
/// (see [`Shared::now`]).
struct Timer {
    at: Duration,
    seq: u64,
    waiter: Arc<Waiter>,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Timer) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Timer) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest deadline must come first.
    fn cmp(&self, other: &Timer) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The pending timers, earliest first.
struct Timers {
    heap: BinaryHeap<Timer>,
    /// Length at which [`Timers::add`] next sweeps out timers that can wake nobody.
    sweep_at: usize,
}

impl Timers {
    /// The earliest deadline that can still wake a task. A timer whose wait was served
    /// otherwise (a `select` that got a message, a cancelled `sleep`) can wake nobody: it
    /// is dropped here, so it delays neither the deadlock report nor a parked worker.
    fn next(&mut self) -> Option<Duration> {
        while self.heap.peek().is_some_and(|t| t.waiter.is_claimed()) {
            self.heap.pop();
        }
        self.heap.peek().map(|t| t.at)
    }

    /// Adds `timer`. Served timers are swept out whenever the heap has doubled since the
    /// last sweep, so `select`s with long timeouts in a loop do not pile them up, at a
    /// constant cost per timer.
    fn add(&mut self, timer: Timer) {
        if self.heap.len() >= self.sweep_at {
            self.heap.retain(|t| !t.waiter.is_claimed());
            self.sweep_at = (2 * self.heap.len()).max(64);
        }
        self.heap.push(timer);
    }
}

/// Machines of ended tasks a worker keeps for its next tasks (see `Vm::recycle`): enough
/// for a worker that starts tasks in bursts, few enough to cost nothing when idle.
const KEPT_MACHINES: usize = 4;

/// A machine whose register stack grew past this many slots (deep recursion) is not kept,
/// so a kept machine never holds on to a large stack.
const KEPT_STACK_MAX: usize = 1024;

/// One worker's own queues, reachable from the code it runs (to push woken tasks), and
/// its kept machines.
struct Local {
    sched: *const Shared,
    deque: Worker<Arc<Task>>,
    slot: Option<Arc<Task>>,
    /// Boxed as tasks hold them, so keeping and reusing one moves a pointer, not a `Vm`.
    #[allow(clippy::vec_box)]
    machines: Vec<Box<Vm>>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// The state every worker and task of one program shares.
pub struct Shared {
    injector: Injector<Arc<Task>>,
    stealers: OnceLock<Vec<Stealer<Arc<Task>>>>,
    /// Parked and searching workers.
    idle: Idle,
    timers: Mutex<Timers>,
    /// The origin of timer deadlines on the wall clock.
    origin: Instant,
    timer_count: AtomicUsize,
    timer_seq: AtomicU64,
    /// Tasks runnable or running.
    active: AtomicUsize,
    /// By id. Task ids are not chosen by scripts, so a fast unkeyed hash is safe here.
    live: Mutex<HashMap<u64, Arc<Task>, foldhash::fast::FixedState>>,
    next_id: AtomicU64,
    /// Failed tasks nobody had joined when they ended, reported at the end unless joined.
    unjoined: Mutex<Vec<Arc<Task>>>,
    end: Mutex<Option<End>>,
    end_cond: Condvar,
    shutdown: AtomicBool,
    settings: Settings,
    out: SharedWriter,
    err: SharedWriter,
    reporter: TaskErrorReporter,
}

impl Shared {
    /// Queues a runnable task: into the current worker's LIFO slot when a worker of
    /// this scheduler is pushing, else into the injector.
    pub(crate) fn push(&self, task: Arc<Task>) {
        let spilled = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            match l.as_mut() {
                Some(local) if std::ptr::eq(local.sched, self) => {
                    if let Some(old) = local.slot.replace(task) {
                        local.deque.push(old);
                        return true;
                    }
                    false
                }
                _ => {
                    self.injector.push(task);
                    true
                }
            }
        });
        if spilled {
            self.notify_one();
        }
    }

    /// Queues a task that gave its worker up (yield, end of slice) behind the others.
    pub(crate) fn push_back(&self, task: Arc<Task>) {
        LOCAL.with(|l| match l.borrow().as_ref() {
            Some(local) if std::ptr::eq(local.sched, self) => local.deque.push(task),
            _ => self.injector.push(task),
        });
        self.notify_one();
    }

    fn notify_one(&self) {
        self.idle.notify_one();
    }

    /// Starts a task tagged `owner`, unless `max` tasks already live (checked under the
    /// lock that adds it, so racing spawns cannot pass the bound together).
    pub(crate) fn spawn(
        self: &Arc<Self>,
        start: Start,
        owner: u64,
        max: Option<usize>,
    ) -> Result<Arc<Task>, Fault> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let task = Arc::new(Task::new(id, self.clone(), Some(start), owner));
        {
            let mut live = self.live.lock();
            if max.is_some_and(|max| live.len() >= max) {
                return Err(Fault::Limit(Limit::Tasks));
            }
            live.insert(id, task.clone());
        }
        self.became_active();
        self.push(task.clone());
        Ok(task)
    }

    /// Tasks alive (started and not ended).
    pub(crate) fn live_tasks(&self) -> usize {
        self.live.lock().len()
    }

    pub(crate) fn became_active(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn became_idle(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether a running task should give its worker up at the end of its slice.
    pub(crate) fn others_waiting(&self) -> bool {
        let slot = LOCAL.with(|l| l.borrow().as_ref().is_some_and(|l| l.slot.is_some()));
        slot || self.queued_work() || self.timer_due()
    }

    fn queued_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers().iter().any(|s| !s.is_empty())
    }

    fn stealers(&self) -> &[Stealer<Arc<Task>>] {
        self.stealers.get().map_or(&[], |s| s.as_slice())
    }

    /// The time timers follow: the host's clock if it gave one, else the wall clock.
    fn now(&self) -> Duration {
        match &self.settings.clock {
            Some(clock) => clock.now(),
            None => self.origin.elapsed(),
        }
    }

    /// Wakes `waiter` with nil after `after`.
    pub(crate) fn add_timer(&self, after: Duration, waiter: Arc<Waiter>) {
        let at = self.now().saturating_add(after);
        let seq = self.timer_seq.fetch_add(1, Ordering::Relaxed);
        let mut timers = self.timers.lock();
        timers.add(Timer { at, seq, waiter });
        self.timer_count.store(timers.heap.len(), Ordering::SeqCst);
        drop(timers);
        // A parked worker may be sleeping until a later deadline.
        self.idle.wake_one();
    }

    fn timer_due(&self) -> bool {
        self.timer_count.load(Ordering::Acquire) > 0
            && self
                .timers
                .lock()
                .heap
                .peek()
                .is_some_and(|t| t.at <= self.now())
    }

    /// Wakes the tasks whose deadlines have passed. The wakes happen under the timer
    /// lock, so the deadlock check (which reads the timers under it too) never sees a
    /// timer gone and its task not yet active.
    fn fire_timers(&self) {
        if self.timer_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let now = self.now();
        let mut timers = self.timers.lock();
        while timers.heap.peek().is_some_and(|t| t.at <= now) {
            if let Some(t) = timers.heap.pop() {
                t.waiter.wake(Wake::Value(crate::copy::Portable::NIL));
            }
        }
        self.timer_count.store(timers.heap.len(), Ordering::SeqCst);
    }

    fn find_task(&self, tick: u32, lifo_runs: &mut u32) -> Option<Arc<Task>> {
        LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let local = l.as_mut()?;
            if tick.is_multiple_of(INJECTOR_EVERY) {
                if let Some(t) = steal(|| self.injector.steal_batch_and_pop(&local.deque)) {
                    return Some(t);
                }
            }
            if *lifo_runs < LIFO_RUNS {
                if let Some(t) = local.slot.take() {
                    *lifo_runs += 1;
                    return Some(t);
                }
            }
            *lifo_runs = 0;
            if let Some(t) = local.deque.pop().or_else(|| local.slot.take()) {
                return Some(t);
            }
            steal(|| self.injector.steal_batch_and_pop(&local.deque)).or_else(|| {
                self.stealers()
                    .iter()
                    .find_map(|s| steal(|| s.steal_batch_and_pop(&local.deque)))
            })
        })
    }

    /// Looks for work for up to [`SEARCH_FOR`] before the worker parks. A searcher that
    /// finds work wakes a parked peer if more is queued, since pushes did not while it
    /// searched.
    fn search(&self, tick: u32, lifo_runs: &mut u32) -> Option<Arc<Task>> {
        self.idle.begin_search();
        let until = Instant::now() + SEARCH_FOR;
        let found = loop {
            std::thread::yield_now();
            if let Some(t) = self.find_task(tick, lifo_runs) {
                break Some(t);
            }
            if self.shutdown.load(Ordering::Acquire) || Instant::now() >= until {
                break None;
            }
        };
        self.idle.end_search();
        if found.is_some() && self.queued_work() {
            self.notify_one();
        }
        found
    }

    /// Parks the worker until work arrives or the next timer is due; declares a
    /// deadlock when nothing can ever run again.
    fn park(&self) {
        // Read under the timer lock: timers wake their tasks under it, so no task can
        // be between a fired timer and being active.
        let next = {
            let mut timers = self.timers.lock();
            let next = timers.next();
            self.timer_count.store(timers.heap.len(), Ordering::SeqCst);
            if next.is_none() && self.active.load(Ordering::SeqCst) == 0 {
                self.deadlock();
            }
            next
        };
        self.idle.park(
            || self.queued_work() || self.shutdown.load(Ordering::SeqCst),
            next.map(|at| self.wake_time(at)),
        );
    }

    /// When a parked worker must look at the timers again for a deadline `at`. A host's
    /// clock moves on its own, so it is looked at every millisecond.
    fn wake_time(&self, at: Duration) -> Instant {
        const HOST_CLOCK_POLL: Duration = Duration::from_millis(1);
        let far = || Instant::now() + Duration::from_secs(86_400);
        match self.settings.clock {
            Some(_) => Instant::now() + HOST_CLOCK_POLL,
            None => self.origin.checked_add(at).unwrap_or_else(far),
        }
    }

    fn deadlock(&self) {
        if !self.live.lock().is_empty() {
            self.end(End::Deadlock(self.deadlock_error()));
        }
    }

    /// The deadlock report: where each live task waits, in spawn order.
    fn deadlock_error(&self) -> KilnError {
        let mut tasks: Vec<Arc<Task>> = self.live.lock().values().cloned().collect();
        tasks.sort_by_key(|t| t.id);
        let trace = tasks.iter().filter_map(|t| t.blocked_at()).collect();
        KilnError {
            kind: ErrorKind::Runtime,
            diagnostics: vec![Diagnostic::new("deadlock: all tasks are blocked", None)],
            trace,
        }
    }

    fn end(&self, end: End) {
        let mut g = self.end.lock();
        if g.is_none() {
            *g = Some(end);
        }
        self.end_cond.notify_all();
    }

    /// A machine for `task`'s first run: one this worker kept, else a new one.
    fn new_vm(&self, task: &Arc<Task>, program: &Arc<Program>) -> Box<Vm> {
        let kept = self.with_local(|local| local.machines.pop()).flatten();
        let mut vm = kept.unwrap_or_else(|| {
            let output = Output {
                out: Box::new(self.out.clone()),
                err: Box::new(self.err.clone()),
            };
            Box::new(Vm::new(program.clone(), self.settings.clone(), output))
        });
        if !Arc::ptr_eq(vm.program(), program) {
            vm.set_program(program.clone());
        }
        vm.task = Some(task.clone());
        vm.reset_fuel();
        vm
    }

    /// Empties the machine of an ended task (dropping its heap) and keeps it for the next
    /// task this worker starts, if there is room.
    fn keep_vm(&self, mut vm: Box<Vm>) {
        vm.recycle();
        if vm.stack.capacity() <= KEPT_STACK_MAX {
            self.with_local(|local| {
                if local.machines.len() < KEPT_MACHINES {
                    local.machines.push(vm);
                }
            });
        }
    }

    /// Runs `f` on the current worker's own state, if this thread is one of our workers.
    fn with_local<R>(&self, f: impl FnOnce(&mut Local) -> R) -> Option<R> {
        LOCAL.with(|l| match l.borrow_mut().as_mut() {
            Some(local) if std::ptr::eq(local.sched, self) => Some(f(local)),
            _ => None,
        })
    }

    /// Runs `task` until it suspends (then parks it) or its code ends: then returns its
    /// machine and how the code ended.
    fn step(&self, task: &Arc<Task>) -> Option<(Box<Vm>, Result<Value, Fault>)> {
        let (vm, start, wake) = task.begin_run();
        let mut vm = match (vm, &start) {
            (Some(vm), _) => vm,
            (None, Some(start)) => self.new_vm(task, start.program()),
            // A REPL line abandoned while it was queued (see `HostTasks::abandon`).
            (None, None) => return None,
        };
        let result = match start {
            Some(start) => vm.start(start),
            None => vm.resume(wake),
        };
        if let Err(Fault::Suspend) = result {
            task.park(vm);
            return None;
        }
        Some((vm, result))
    }

    /// Runs `task` until it suspends or ends. A panic while it runs (a bug in Kiln or
    /// in a host function) ends the whole run with an internal error instead of
    /// killing the worker thread, which would leave the program waiting for ever.
    fn run(&self, task: Arc<Task>) {
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step(&task)));
        let Some((mut vm, result)) = stepped.unwrap_or_else(|panic| {
            // The machine went down with the panic; nothing of the task can run again.
            task.finish(Outcome::Cancelled);
            self.end(End::Main(Err(KilnError::internal(panic.as_ref()))));
            self.ended(&task);
            None
        }) else {
            return;
        };
        match result {
            Err(Fault::Exit(code)) => {
                task.finish(Outcome::Cancelled);
                self.end(End::Exit(code));
            }
            // A limit stops the whole run, whichever task reached it: were it only that
            // task's failure, a joiner could catch it.
            Err(limit @ Fault::Limit(_)) => {
                task.finish(Outcome::Cancelled);
                self.end(End::Main(Err(vm.report(limit))));
            }
            result if task.id == MAIN_TASK => {
                task.finish(Outcome::Returned(crate::copy::Portable::NIL));
                let result = result.map(|_| ()).map_err(|f| vm.report(f));
                self.end(End::Main(result));
            }
            result => {
                let outcome = vm.outcome_of(result);
                let unobserved = task.finish(outcome);
                self.keep_vm(vm);
                if unobserved {
                    self.failed_unjoined(&task);
                }
            }
        }
        self.ended(&task);
    }

    /// A failed task nobody has joined: reported now if no handle to it is left (only
    /// the registry's and this worker's), else at the end of the program unless joined.
    fn failed_unjoined(&self, task: &Arc<Task>) {
        if Arc::strong_count(task) <= 2 {
            self.report_failure(task);
        } else {
            self.unjoined.lock().push(task.clone());
        }
    }

    fn report_failure(&self, task: &Task) {
        if let Some(Outcome::Failed(_, report)) = task.outcome() {
            let _ = self.out.clone().flush();
            (self.reporter)(task.id, &report, &mut self.err.clone());
        }
    }

    fn ended(&self, task: &Task) {
        let mut live = self.live.lock();
        live.remove(&task.id);
        self.became_idle();
        if live.is_empty() {
            drop(live);
            let _g = self.end.lock();
            self.end_cond.notify_all();
        }
    }

    fn worker(self: Arc<Self>, deque: Worker<Arc<Task>>) {
        LOCAL.with(|l| {
            *l.borrow_mut() = Some(Local {
                sched: Arc::as_ptr(&self),
                deque,
                slot: None,
                machines: Vec::new(),
            })
        });
        let (mut tick, mut lifo_runs) = (0u32, 0u32);
        while !self.shutdown.load(Ordering::Acquire) {
            self.fire_timers();
            let found = self
                .find_task(tick, &mut lifo_runs)
                .or_else(|| self.search(tick, &mut lifo_runs));
            match found {
                Some(t) => self.run(t),
                None => self.park(),
            }
            tick = tick.wrapping_add(1);
        }
        // Tasks left queued here hold their machines; drop them with the scheduler.
        LOCAL.with(|l| l.borrow_mut().take());
    }
}

fn steal(mut f: impl FnMut() -> Steal<Arc<Task>>) -> Option<Arc<Task>> {
    loop {
        match f() {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => {}
        }
    }
}

/// One output stream shared by every task, so their lines interleave whole and in
/// the order they were written.
#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.lock().write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().flush()
    }
}

/// The number of worker threads: `settings.threads`, else the CPU count.
pub fn worker_count(settings: &Settings) -> usize {
    match settings.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Runs module `main` of `program` as the main task on a new worker pool, until the
/// main task ends (see the module docs). Failures of tasks nobody joined go to
/// `reporter`.
pub fn run_program(
    program: Arc<Program>,
    main: ModuleId,
    settings: Settings,
    output: Output,
    reporter: TaskErrorReporter,
) -> Result<(), KilnError> {
    let threads = worker_count(&settings);
    let shared = Shared::new(settings, output, reporter);
    let deques: Vec<Worker<Arc<Task>>> = (0..threads).map(|_| Worker::new_fifo()).collect();
    let _ = shared
        .stealers
        .set(deques.iter().map(|d| d.stealer()).collect());
    // The main task is not counted against `max_tasks` when it starts: the bound is on
    // what the script spawns, and a run always has its main task.
    let _ = shared.spawn(Start::Main(program, main), 0, None);
    let workers: Vec<_> = deques
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("kiln-worker-{i}"))
                .spawn(move || s.worker(d))
        })
        .collect();
    let result = match workers.iter().find_map(|w| w.as_ref().err()) {
        Some(e) => Err(KilnError {
            kind: ErrorKind::Runtime,
            diagnostics: vec![Diagnostic::new(
                format!("cannot start a worker thread: {e}"),
                None,
            )],
            trace: Vec::new(),
        }),
        None => shared.wait_for_end(),
    };
    shared.shutdown.store(true, Ordering::SeqCst);
    shared.idle.wake_all();
    for w in workers.into_iter().flatten() {
        let _ = w.join();
    }
    shared.finish()?;
    result
}

impl Shared {
    fn new(settings: Settings, output: Output, reporter: TaskErrorReporter) -> Arc<Shared> {
        Arc::new(Shared {
            injector: Injector::new(),
            stealers: OnceLock::new(),
            idle: Idle::new(),
            timers: Mutex::new(Timers {
                heap: BinaryHeap::new(),
                sweep_at: 64,
            }),
            origin: Instant::now(),
            timer_count: AtomicUsize::new(0),
            timer_seq: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            live: Mutex::new(HashMap::default()),
            next_id: AtomicU64::new(MAIN_TASK),
            unjoined: Mutex::new(Vec::new()),
            end: Mutex::new(None),
            end_cond: Condvar::new(),
            shutdown: AtomicBool::new(false),
            settings,
            out: SharedWriter(Arc::new(Mutex::new(output.out))),
            err: SharedWriter(Arc::new(Mutex::new(output.err))),
            reporter,
        })
    }

    /// Waits for the end of the program; after the main task, cancels the others and
    /// gives them [`CANCEL_GRACE`] to run their `defer`s.
    fn wait_for_end(&self) -> Result<(), KilnError> {
        let mut end = self.end.lock();
        while end.is_none() {
            self.end_cond.wait(&mut end);
        }
        let result = match end.take() {
            Some(End::Main(result)) => result,
            Some(End::Exit(code)) => {
                return Err(KilnError {
                    kind: ErrorKind::Exit(code),
                    diagnostics: Vec::new(),
                    trace: Vec::new(),
                })
            }
            Some(End::Deadlock(e)) => return Err(e),
            None => unreachable!("the loop above waits for an end"),
        };
        drop(end);
        let others: Vec<Arc<Task>> = self.live.lock().values().cloned().collect();
        for t in &others {
            t.cancel();
        }
        let deadline = Instant::now() + CANCEL_GRACE;
        let mut end = self.end.lock();
        while !self.live.lock().is_empty() && Instant::now() < deadline {
            self.end_cond.wait_until(&mut end, deadline);
        }
        result
    }

    /// After the workers stopped: reports failures nobody joined, breaks the reference
    /// cycles between tasks and the scheduler, and flushes the output.
    fn finish(&self) -> Result<(), KilnError> {
        let unjoined = std::mem::take(&mut *self.unjoined.lock());
        for t in unjoined.iter().filter(|t| !t.was_joined()) {
            self.report_failure(t);
        }
        for t in std::mem::take(&mut *self.live.lock()).values() {
            t.discard();
        }
        self.timers.lock().heap.clear();
        while let Steal::Success(_) | Steal::Retry = self.injector.steal() {}
        self.out.clone().flush().map_err(|e| KilnError {
            kind: ErrorKind::Runtime,
            diagnostics: vec![Diagnostic::new(
                format!("cannot write to stdout: {e}"),
                None,
            )],
            trace: Vec::new(),
        })?;
        let _ = self.err.clone().flush();
        Ok(())
    }
}

/// Tasks driven by a host from its own thread (the embedding API's store): no worker
/// threads. The host's machine runs its calls as a stand-in task, so scripts can
/// `spawn` from them; the spawned tasks run when the host calls [`HostTasks::run_ready`]
/// (each frame of a game, say), and sleeping ones wake at later calls once their
/// timers are due on the scheduler's clock. Tasks outlive the calls that started them.
pub struct HostTasks {
    shared: Arc<Shared>,
    host: Arc<Task>,
}

impl HostTasks {
    /// A scheduler for machines with `settings`; task output goes to `output`, failures
    /// nobody joined to `reporter`.
    pub fn new(settings: Settings, output: Output, reporter: TaskErrorReporter) -> HostTasks {
        let shared = Shared::new(settings, output, reporter);
        // The stand-in takes the main task's id; spawned tasks are numbered after it.
        shared.next_id.store(MAIN_TASK + 1, Ordering::Relaxed);
        let host = Arc::new(Task::new(MAIN_TASK, shared.clone(), None, 0));
        HostTasks { shared, host }
    }

    /// Makes `vm` (the host's machine) run as the stand-in task.
    pub fn attach(&self, vm: &mut Vm) {
        vm.task = Some(self.host.clone());
    }

    /// Tags the tasks that the host's next calls spawn (and those they spawn) with
    /// `owner`, for [`HostTasks::cancel_owner`]; 0 for no tag.
    pub fn set_owner(&self, owner: u64) {
        self.host.set_owner(owner);
    }

    /// Runs every task that is ready (including those whose timers are due now and
    /// those woken meanwhile) until none is. Errors when a task ended the whole run
    /// (`os.exit`), with what a program would have ended with.
    pub fn run_ready(&self) -> Result<(), KilnError> {
        loop {
            self.shared.fire_timers();
            match self.shared.injector.steal() {
                Steal::Success(task) => self.shared.run(task),
                Steal::Retry => {}
                Steal::Empty => return Ok(()),
            }
            if let Some(end) = self.shared.end.lock().take() {
                return end.into_result();
            }
        }
    }

    /// Cancels every live task tagged `owner` (their `defer`s run at their next
    /// [`HostTasks::run_ready`]); returns how many.
    pub fn cancel_owner(&self, owner: u64) -> usize {
        let tagged: Vec<Arc<Task>> = self
            .shared
            .live
            .lock()
            .values()
            .filter(|t| t.owner() == owner)
            .cloned()
            .collect();
        for t in &tagged {
            t.cancel();
        }
        tagged.len()
    }

    /// Tasks alive (started and not ended).
    pub fn live(&self) -> usize {
        self.shared.live_tasks()
    }

    /// Writers to the output streams the tasks share, for a machine that runs among
    /// them (a REPL's), so its lines and theirs interleave whole.
    pub(crate) fn output(&self) -> Output {
        Output {
            out: Box::new(self.shared.out.clone()),
            err: Box::new(self.shared.err.clone()),
        }
    }

    /// Runs module `main` on `vm` (a REPL's machine, which keeps its state across lines)
    /// as the main task, on the calling thread together with every other ready task,
    /// until it has ended and no task is ready; sleeps meanwhile until timers are due.
    /// Gives the machine back with how the module's code ended, or with the error that
    /// stopped the line: a deadlock (the line would wait for ever: it is abandoned, its
    /// frames left for the caller to clear) or an end of the run (`os.exit` or a limit
    /// in another task). Tasks still waiting go on at later lines.
    pub(crate) fn run_line(&self, mut vm: Box<Vm>, main: ModuleId) -> (Box<Vm>, LineEnd) {
        let start = Start::Main(vm.program().clone(), main);
        let line = Arc::new(Task::new(MAIN_TASK, self.shared.clone(), Some(start), 0));
        vm.task = Some(line.clone());
        line.set_machine(vm);
        self.shared.live.lock().insert(MAIN_TASK, line.clone());
        self.shared.became_active();
        self.shared.push(line.clone());
        let mut ended = None;
        loop {
            self.shared.fire_timers();
            match self.shared.injector.steal() {
                Steal::Success(t) if Arc::ptr_eq(&t, &line) => {
                    if let Some((vm, result)) = self.shared.step(&t) {
                        line.finish(Outcome::Returned(crate::copy::Portable::NIL));
                        self.shared.ended(&line);
                        ended = Some((vm, LineEnd::Code(result)));
                    }
                }
                Steal::Success(t) => self.shared.run(t),
                Steal::Retry => {}
                Steal::Empty => {
                    if let Some((mut vm, end)) = ended.take() {
                        vm.task = None;
                        return (vm, end);
                    }
                    if !self.sleep_to_next_timer() {
                        let deadlock = self.shared.deadlock_error();
                        return self.abandon(&line, deadlock);
                    }
                }
            }
            let end = self.shared.end.lock().take();
            // Only `os.exit` and limits end a REPL's run (its lines never end it well).
            if let Some(Err(error)) = end.map(End::into_result) {
                if let Some((mut vm, _)) = ended.take() {
                    vm.task = None;
                    return (vm, LineEnd::Stopped(error));
                }
                return self.abandon(&line, error);
            }
        }
    }

    /// Sleeps until the next timer that can wake a task is due; false if there is none.
    fn sleep_to_next_timer(&self) -> bool {
        let next = self.shared.timers.lock().next();
        match next {
            Some(at) => {
                let wake = self.shared.wake_time(at);
                std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                true
            }
            None => false,
        }
    }

    /// Ends the waiting REPL line `line` with `error` and gives its machine back.
    fn abandon(&self, line: &Arc<Task>, error: KilnError) -> (Box<Vm>, LineEnd) {
        self.shared.live.lock().remove(&line.id);
        let mut vm = line
            .abandon()
            .expect("a line that is not running has its machine parked");
        vm.task = None;
        (vm, LineEnd::Stopped(error))
    }

    /// Leaves `vm`'s program (a REPL's) unshared while `grow` extends it: the tasks alive
    /// (none runs between lines) hold a stand-in meanwhile, then the grown program.
    pub(crate) fn lend_program<R>(&self, vm: &mut Vm, grow: impl FnOnce(&mut Vm) -> R) -> R {
        let tasks: Vec<Arc<Task>> = self.shared.live.lock().values().cloned().collect();
        let stand_in = Arc::new(Program::default());
        for t in &tasks {
            t.set_program(&stand_in);
        }
        let result = grow(vm);
        for t in &tasks {
            t.set_program(vm.program());
        }
        result
    }
}

/// How a REPL line run by [`HostTasks::run_line`] ended.
pub(crate) enum LineEnd {
    /// Its code ended: with its value or its error.
    Code(Result<Value, Fault>),
    /// The scheduler stopped it: a deadlock, or the end of the run by another task.
    Stopped(KilnError),
}

impl Drop for HostTasks {
    /// Breaks the cycles between tasks and the scheduler (see [`Shared::finish`]).
    fn drop(&mut self) {
        let _ = self.shared.finish();
    }
}
