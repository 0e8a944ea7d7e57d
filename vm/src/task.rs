//! Tasks: green threads, each a [`Vm`] (heap, register stack, frames) with a shared
//! [`Task`] record that handles, waiters and the scheduler hold.
//!
//! A task that must wait (a channel, a join, a timer) registers a [`Waiter`] and returns
//! [`Fault::Suspend`] from the native; the interpreter leaves every frame in place and
//! the worker parks the `Vm` in the task record. Whoever completes the wait claims the
//! waiter — a claim succeeds once, so a task waiting on several things (select, a
//! timeout) is woken exactly once — and hands the task a [`Wake`]: the operation's
//! result, built in the woken task's heap when it resumes. A native's result goes to
//! register A of the calling instruction (`Call` and `CallMethod` both return there);
//! `for v in ch` instead runs its instruction again, which picks the value up from
//! `Vm::pending`.
//!
//! State of a task: `Runnable` (in a run queue) → `Running` (on a worker) → `Waiting`
//! (parked `Vm`) or `Finished`. A wake that arrives while the task is still `Running`
//! (between registering and returning `Suspend`) is kept, and the worker requeues the
//! task at once instead of parking it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::bytecode::opc;
use crate::copy::{export, export_call, import, import_call, Call, Portable};
use crate::error::{Fault, KilnError};
use crate::fault;
use crate::program::{ModuleId, Program};
use crate::sched::Shared;
use crate::value::{TaskRef, Value};
use crate::vm::Vm;

/// What a task runs when it first gets a worker, and the program it belongs to (the
/// task's machine is made then; the scheduler itself holds no program, so a host can
/// go on adding modules to its program while no task is alive).
// Unboxed on purpose: a start lives inside its task's record, and boxing the call would
// bring back the cross-thread allocation `copy::Call::Plain` avoids.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Start {
    /// The program: the prelude, then this module's top level.
    Main(Arc<Program>, ModuleId),
    /// `spawn`: the callee and its arguments.
    Call(Arc<Program>, Call),
}

impl Start {
    pub(crate) fn program(&self) -> &Arc<Program> {
        match self {
            Start::Main(p, _) | Start::Call(p, _) => p,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Runnable,
    Running,
    Waiting,
    Finished,
}

/// How a task ended; kept for `join` (which may run any number of times). Cheap to
/// clone, and allocates nothing for an immediate or string result.
#[derive(Clone)]
pub(crate) enum Outcome {
    Returned(Portable),
    /// The error value it threw, and the report a host shows if nobody joins.
    Failed(Portable, Arc<KilnError>),
    Cancelled,
}

/// What a waiting task is given when it is woken.
pub(crate) enum Wake {
    /// Go on where it stopped (a time slice ended): nothing to deliver.
    Continue,
    /// `yield()` returns nil (queued behind the other runnable tasks, like `Continue`).
    Yield,
    /// The result of the operation it waited in.
    Value(Portable),
    /// `select`'s result: which channel, and its message (nil when closed).
    Selected(usize, Portable),
    /// The operation failed with this error message (a closed channel, cancellation).
    Fail(String),
    /// `join` of a task that has ended.
    Joined(Outcome),
}

/// What a [`Waiter`] wakes: a task (in the loom models, a recorder).
pub(crate) trait WakeTarget: Send + Sync {
    fn wake(self: Arc<Self>, wake: Wake);
}

/// One wait of one task. Whoever claims it first wakes the task; later claims fail.
pub(crate) struct Waiter {
    target: Arc<dyn WakeTarget>,
    claimed: crate::sync::AtomicBool,
}

impl Waiter {
    pub(crate) fn new(target: Arc<dyn WakeTarget>) -> Waiter {
        Waiter {
            target,
            claimed: crate::sync::AtomicBool::new(false),
        }
    }

    /// Takes the right to wake the task. True only for the first caller.
    pub(crate) fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_claimed(&self) -> bool {
        self.claimed.load(Ordering::Acquire)
    }

    /// Wakes the task with `wake` if this is the first claim.
    pub(crate) fn wake(&self, wake: Wake) -> bool {
        let first = self.claim();
        if first {
            self.target.clone().wake(wake);
        }
        first
    }

    /// Wakes the task; the caller has already claimed the waiter.
    pub(crate) fn wake_claimed(&self, wake: Wake) {
        self.target.clone().wake(wake);
    }
}

/// The shared record of a task.
pub struct Task {
    pub id: u64,
    pub(crate) sched: Arc<Shared>,
    cancelled: AtomicBool,
    /// The host's tag for the tasks started under one of its calls (0: none);
    /// inherited by the tasks this one spawns, for `cancel_owner`.
    owner: AtomicU64,
    /// The stand-in task of a host's machine (see `Shared::host_task`): it runs only
    /// inside host calls, so it never waits or gives its thread up.
    host: bool,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    /// The machine, while the task is not running (created at its first run).
    vm: Option<Box<Vm>>,
    start: Option<Start>,
    wake: Option<Wake>,
    /// The current wait, for `cancel`.
    waiting_on: Option<Arc<Waiter>>,
    joiners: Vec<Arc<Waiter>>,
    outcome: Option<Outcome>,
    /// Whether anyone joined (or waits to join): failures of joined tasks are the
    /// joiner's to report.
    joined: bool,
}

impl Task {
    pub(crate) fn new(id: u64, sched: Arc<Shared>, start: Option<Start>, owner: u64) -> Task {
        Task {
            id,
            sched,
            cancelled: AtomicBool::new(false),
            owner: AtomicU64::new(owner),
            host: start.is_none(),
            inner: Mutex::new(Inner {
                state: State::Runnable,
                vm: None,
                start,
                wake: None,
                waiting_on: None,
                joiners: Vec::new(),
                outcome: None,
                joined: false,
            }),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// The owner tag (0: none).
    pub fn owner(&self) -> u64 {
        self.owner.load(Ordering::Relaxed)
    }

    /// Sets the owner tag the tasks spawned from now on inherit.
    pub fn set_owner(&self, owner: u64) {
        self.owner.store(owner, Ordering::Relaxed);
    }

    /// Cancels the task: its current wait fails, and so do its next waits and time
    /// slices, with `task cancelled` (which runs its `defer`s).
    pub(crate) fn cancel(self: &Arc<Task>) {
        self.cancelled.store(true, Ordering::Release);
        let waiter = self.inner.lock().waiting_on.take();
        if let Some(w) = waiter {
            w.wake(Wake::Fail(CANCELLED.into()));
        }
    }

    /// Called by a worker: the task is now running. Returns its machine (none at the
    /// first run) and what to resume it with.
    pub(crate) fn begin_run(&self) -> (Option<Box<Vm>>, Option<Start>, Wake) {
        let mut inner = self.inner.lock();
        inner.state = State::Running;
        let wake = inner.wake.take().unwrap_or(Wake::Continue);
        (inner.vm.take(), inner.start.take(), wake)
    }

    /// Called by a worker when the task returned `Suspend`: park it, or requeue it if
    /// it was woken meanwhile.
    pub(crate) fn park(self: &Arc<Task>, vm: Box<Vm>) {
        let mut inner = self.inner.lock();
        inner.vm = Some(vm);
        if let Some(wake) = &inner.wake {
            let gave_up = matches!(wake, Wake::Continue | Wake::Yield);
            inner.state = State::Runnable;
            drop(inner);
            if gave_up {
                self.sched.push_back(self.clone());
            } else {
                self.sched.push(self.clone());
            }
        } else {
            inner.state = State::Waiting;
            self.sched.became_idle();
        }
    }

    /// Records how the task ended and wakes its joiners. Returns whether a failure is
    /// still unobserved (nobody joined).
    pub(crate) fn finish(&self, outcome: Outcome) -> bool {
        let failed = matches!(outcome, Outcome::Failed(..));
        let joiners = {
            let mut inner = self.inner.lock();
            inner.state = State::Finished;
            inner.outcome = Some(outcome.clone());
            inner.waiting_on = None;
            inner.wake = None;
            std::mem::take(&mut inner.joiners)
        };
        for j in &joiners {
            j.wake(Wake::Joined(outcome.clone()));
        }
        failed && joiners.is_empty() && !self.was_joined()
    }

    /// Drops the machine of a task that will never run again (the program ended),
    /// which breaks the reference cycles through its heap.
    pub(crate) fn discard(&self) {
        let mut inner = self.inner.lock();
        inner.vm = None;
        inner.start = None;
        inner.waiting_on = None;
        inner.joiners.clear();
    }

    /// Gives a task that has not run yet its machine (a REPL's, which keeps its state
    /// across lines), instead of a new one at its first run.
    pub(crate) fn set_machine(&self, vm: Box<Vm>) {
        self.inner.lock().vm = Some(vm);
    }

    /// Ends a waiting task from outside (a REPL line that would wait for ever) and gives
    /// its machine back. Its wait is claimed first, so no message or wake goes to it.
    pub(crate) fn abandon(&self) -> Option<Box<Vm>> {
        let mut inner = self.inner.lock();
        if let Some(w) = inner.waiting_on.take() {
            w.claim();
        }
        inner.state = State::Finished;
        inner.outcome = Some(Outcome::Cancelled);
        inner.vm.take()
    }

    /// Points a task that is not running at `program` (a grown version of its own, or a
    /// stand-in while the REPL grows it: see `HostTasks::lend_program`).
    pub(crate) fn set_program(&self, program: &Arc<Program>) {
        let mut inner = self.inner.lock();
        if let Some(vm) = inner.vm.as_mut() {
            vm.set_program(program.clone());
        }
        if let Some(Start::Main(p, _) | Start::Call(p, _)) = inner.start.as_mut() {
            *p = program.clone();
        }
    }

    pub(crate) fn was_joined(&self) -> bool {
        self.inner.lock().joined
    }

    /// Where a waiting task stopped (for the deadlock report).
    pub(crate) fn blocked_at(&self) -> Option<crate::value::TraceEntry> {
        let inner = self.inner.lock();
        match inner.state {
            State::Waiting => inner.vm.as_ref()?.capture_trace().first().cloned(),
            _ => None,
        }
    }

    pub(crate) fn outcome(&self) -> Option<Outcome> {
        self.inner.lock().outcome.clone()
    }
}

impl WakeTarget for Task {
    /// Makes the task runnable with `wake`, or leaves the wake for its worker if it is
    /// still running.
    fn wake(self: Arc<Task>, wake: Wake) {
        let mut inner = self.inner.lock();
        if inner.state == State::Finished {
            return;
        }
        inner.wake = Some(wake);
        inner.waiting_on = None;
        if inner.state == State::Waiting {
            inner.state = State::Runnable;
            self.sched.became_active();
            drop(inner);
            let sched = self.sched.clone();
            sched.push(self);
        }
    }
}

pub(crate) const CANCELLED: &str = "task cancelled";

impl Vm {
    /// The running task, or the error for a wait outside the scheduler.
    pub(crate) fn current_task(&self) -> Result<&Arc<Task>, Fault> {
        match &self.task {
            Some(me) => Ok(me),
            None => Err(fault!(
                "tasks need the scheduler: run the script with `kiln`"
            )),
        }
    }

    /// Starts a wait of the running task: fails with `task cancelled` if it was
    /// cancelled, else returns the waiter to register.
    pub(crate) fn begin_wait(&self) -> Result<Arc<Waiter>, Fault> {
        let me = self.current_task()?;
        if me.host {
            return Err(fault!(
                "a call from the host cannot wait: spawn a task to wait in"
            ));
        }
        if me.is_cancelled() {
            return Err(Fault::Error(CANCELLED.into()));
        }
        let w = Arc::new(Waiter::new(me.clone()));
        me.inner.lock().waiting_on = Some(w.clone());
        Ok(w)
    }

    /// The end of a time slice (from `refuel`): give the worker to others if any wait.
    pub(crate) fn preempt(&mut self) -> Result<(), Fault> {
        let Some(me) = self.task.as_ref().filter(|t| !t.host) else {
            return Ok(());
        };
        if me.is_cancelled() {
            return Err(Fault::Error(CANCELLED.into()));
        }
        if !me.sched.others_waiting() {
            return Ok(());
        }
        me.inner.lock().wake = Some(Wake::Continue);
        Err(Fault::Suspend)
    }

    /// `yield()`: let other tasks run first.
    pub(crate) fn yield_now(&mut self) -> Result<Value, Fault> {
        let w = self.begin_wait()?;
        w.wake(Wake::Yield);
        Err(Fault::Suspend)
    }

    /// `spawn`: the callee at `stack[slot]`, `nargs` arguments after it.
    pub(crate) fn spawn(&mut self, slot: usize, nargs: usize) -> Result<Value, Fault> {
        let me = self.current_task()?.clone();
        if me.is_cancelled() {
            return Err(Fault::Error(CANCELLED.into()));
        }
        let callee = self.stack[slot];
        match callee {
            Value::Func(c) => {
                let p = self.program.proto(c.get(&self.heap).proto);
                if nargs < p.nrequired as usize || (nargs > p.nparams as usize && !p.has_rest) {
                    return Err(Fault::Error(crate::interp::arity_message(p, nargs)));
                }
            }
            Value::Native(_) => {}
            other => {
                return Err(fault!(
                    "cannot spawn {}: spawn expects a function call",
                    other.type_name(&self.heap)
                ))
            }
        }
        let call = export_call(self, &self.stack[slot..=slot + nargs]);
        let start = Start::Call(self.program.clone(), call);
        let task = me
            .sched
            .spawn(start, me.owner(), self.settings.limits.max_tasks)?;
        Ok(Value::Task(self.alloc(TaskRef { task })?))
    }

    /// The first run of a task.
    pub(crate) fn start(&mut self, start: Start) -> Result<Value, Fault> {
        match start {
            Start::Main(_, main) => {
                if let Some(p) = self.program.prelude {
                    self.run_module(p)?;
                }
                self.run_module(main)
            }
            Start::Call(_, call) => {
                let nargs = import_call(self, &call)?;
                if self.call_value(0, nargs, 0)? {
                    self.execute(0)
                } else {
                    Ok(self.stack[0])
                }
            }
        }
    }

    /// Resumes a suspended task with what it was woken with.
    pub(crate) fn resume(&mut self, wake: Wake) -> Result<Value, Fault> {
        let delivered = match wake {
            Wake::Continue => None,
            Wake::Yield => Some(Ok(Value::Nil)),
            Wake::Value(p) => Some(import(self, &p)),
            Wake::Selected(i, p) => Some(import(self, &p).and_then(|v| {
                self.with_roots(|vm| {
                    vm.push_root(v);
                    vm.new_array(vec![Value::Int(i as i64), v])
                })
            })),
            Wake::Fail(msg) => Some(Err(Fault::Error(msg))),
            Wake::Joined(outcome) => Some(self.join_result(&outcome)),
        };
        if let Some(v) = delivered {
            let v = match v {
                Ok(v) => v,
                Err(f) => return self.raise(f),
            };
            let Some(f) = self.frames.last_mut() else {
                // A spawned native that waited: its result is the task's.
                return Ok(v);
            };
            let ins = self.program.proto(f.proto).code[f.pc - 1];
            if matches!(ins.op_byte(), opc::IterNext1 | opc::IterNext2) {
                f.pc -= 1;
                self.pending = Some(v);
            } else {
                let slot = f.base + ins.a();
                self.stack[slot] = v;
            }
        }
        self.execute(0)
    }

    /// Drops the frames of a task abandoned where it waited (a REPL line stopped by a
    /// deadlock), so the machine can run again. Its `defer`s do not run: it never resumes.
    pub(crate) fn drop_frames(&mut self) {
        self.frames.clear();
        self.handlers.clear();
        self.pending = None;
    }

    /// Raises `fault` at the instruction the task stopped in.
    fn raise(&mut self, fault: Fault) -> Result<Value, Fault> {
        if self.frames.is_empty() {
            return Err(fault);
        }
        self.catch(fault, 0)?;
        self.execute(0)
    }

    /// `join`'s result for an ended task: its value, or its error thrown again.
    pub(crate) fn join_result(&mut self, outcome: &Outcome) -> Result<Value, Fault> {
        match outcome {
            Outcome::Returned(p) => import(self, p),
            Outcome::Failed(p, _) => Err(Fault::Throw(import(self, p)?)),
            Outcome::Cancelled => Err(Fault::Error(CANCELLED.into())),
        }
    }

    /// Turns how the task's code ended into its outcome (using this heap while it
    /// still exists).
    pub(crate) fn outcome_of(&mut self, result: Result<Value, Fault>) -> Outcome {
        let cancelled = self.task.as_ref().is_some_and(|t| t.is_cancelled());
        match result {
            _ if cancelled => Outcome::Cancelled,
            Ok(v) => Outcome::Returned(export(self, v)),
            Err(fault) => {
                let thrown = match &fault {
                    Fault::Throw(v) => Some(*v),
                    _ => None,
                };
                let report = self.report(fault);
                // `report` unwound every frame, so a heap that was full is garbage now
                // and the error value fits; should it not, joiners see nil.
                let value = match thrown {
                    Some(v) => v,
                    None => self.make_error(report.message()).unwrap_or(Value::Nil),
                };
                Outcome::Failed(export(self, value), Arc::new(report))
            }
        }
    }
}

// ----- natives: task handle methods -------------------------------------------------

fn task_of(vm: &Vm, v: Value) -> Arc<Task> {
    match v {
        Value::Task(t) => t.get(&vm.heap).task.clone(),
        _ => unreachable!("task methods are looked up on tasks"),
    }
}

/// `t.join()`: the task's result, waiting for it to end.
pub(crate) fn join(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    crate::builtins::Args::new("join", &args[1..], 0, 0)?;
    let t = task_of(vm, args[0]);
    if let Some(o) = t.outcome() {
        t.inner.lock().joined = true;
        return vm.join_result(&o);
    }
    let w = vm.begin_wait()?;
    let outcome = {
        let mut inner = t.inner.lock();
        inner.joined = true;
        if inner.outcome.is_none() {
            inner.joiners.push(w.clone());
        }
        inner.outcome.clone()
    };
    match outcome {
        // It ended between the two looks.
        Some(o) => {
            w.claim();
            vm.join_result(&o)
        }
        None => Err(Fault::Suspend),
    }
}

/// `t.done()`: whether the task has ended.
pub(crate) fn done(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    crate::builtins::Args::new("done", &args[1..], 0, 0)?;
    Ok(Value::Bool(task_of(vm, args[0]).outcome().is_some()))
}

/// `t.cancel()`: stop the task at its next wait or time slice (its `defer`s run).
pub(crate) fn cancel(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    crate::builtins::Args::new("cancel", &args[1..], 0, 0)?;
    task_of(vm, args[0]).cancel();
    Ok(Value::Nil)
}
