//! Channels between tasks: unbounded, bounded and rendezvous (`channel(0)`), with
//! `select` over several of them.
//!
//! A channel is one `parking_lot` mutex around a buffer of [`Portable`] messages and two
//! queues of waiting tasks: receivers (plain `recv`s and `select`s) and senders (with the
//! message they could not leave). Every hand-off happens under the lock and goes to a
//! waiter only after claiming it, so each message reaches exactly one receiver and each
//! waiting task is woken once. Waiters whose claim fails (a `select` already served
//! elsewhere, a cancelled task) are dropped when met. No operation blocks an OS thread:
//! a task that must wait returns [`Fault::Suspend`] (see `crate::task`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::builtins::Args;
use crate::copy::{export, import, Portable};
use crate::error::Fault;
use crate::fault;
use crate::sync::Mutex;
use crate::task::{Waiter, Wake};
use crate::value::{ChanRef, Value};
use crate::vm::Vm;

/// The shared state of one channel.
pub struct Channel {
    /// `None`: unbounded; `Some(0)`: rendezvous (a send waits for its receiver).
    cap: Option<usize>,
    state: Mutex<State>,
}

struct State {
    buf: VecDeque<Portable>,
    closed: bool,
    /// Waiting receivers, with the channel's index in their `select` (if one).
    receivers: VecDeque<(Arc<Waiter>, Option<usize>)>,
    /// Queue length at which `add_receiver` next sweeps out stale receivers.
    sweep_at: usize,
    /// Waiting senders and the message each is sending.
    senders: VecDeque<(Arc<Waiter>, Portable)>,
}

/// What a receive found.
pub(crate) enum Taken {
    Msg(Portable),
    Closed,
    Empty,
}

/// How a send that may wait went.
pub(crate) enum Sent {
    Done,
    /// Queued with its waiter: the caller suspends until a receiver takes it.
    Waiting,
}

/// What a receive that may wait got.
pub(crate) enum Received {
    Msg(Portable),
    /// Closed and drained.
    Closed,
    /// Queued with its waiter: the caller suspends until a message or the close comes.
    Waiting,
}

/// Makes the current task's waiter, when an operation must wait.
type Wait<'a> = &'a mut dyn FnMut() -> Result<Arc<Waiter>, Fault>;

impl Channel {
    pub(crate) fn new(cap: Option<usize>) -> Channel {
        Channel {
            cap,
            state: Mutex::new(State {
                buf: VecDeque::new(),
                closed: false,
                receivers: VecDeque::new(),
                sweep_at: 16,
                senders: VecDeque::new(),
            }),
        }
    }
    /// Sends `msg`: to a waiting receiver, else into the buffer if it has room, else
    /// it waits, queued with the waiter `wait` makes.
    pub(crate) fn send(&self, msg: Portable, wait: Wait) -> Result<Sent, Fault> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(fault!("send on a closed channel"));
        }
        let Err(msg) = st.hand_off(msg) else {
            return Ok(Sent::Done);
        };
        if self.cap.is_none_or(|cap| st.buf.len() < cap) {
            st.buf.push_back(msg);
            return Ok(Sent::Done);
        }
        st.senders.push_back((wait()?, msg));
        Ok(Sent::Waiting)
    }

    /// Receives the next message, or waits for one with the waiter `wait` makes.
    pub(crate) fn receive(&self, wait: Wait) -> Result<Received, Fault> {
        let mut st = self.state.lock();
        Ok(match st.take() {
            Taken::Msg(m) => Received::Msg(m),
            Taken::Closed => Received::Closed,
            Taken::Empty => {
                st.add_receiver(wait()?, None);
                Received::Waiting
            }
        })
    }

    /// Takes the next message if one is ready; never waits.
    pub(crate) fn take(&self) -> Taken {
        self.state.lock().take()
    }

    /// No more sends: waiting receivers get nil, waiting senders an error.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        for (w, index) in std::mem::take(&mut st.receivers) {
            w.wake(match index {
                Some(i) => Wake::Selected(i, Portable::NIL),
                None => Wake::Value(Portable::NIL),
            });
        }
        for (w, _) in std::mem::take(&mut st.senders) {
            w.wake(Wake::Fail("send on a closed channel".into()));
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Messages buffered.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().buf.len()
    }
}

impl State {
    /// Takes the next message: from the buffer (letting one waiting sender in), or
    /// straight from a waiting sender.
    fn take(&mut self) -> Taken {
        if let Some(m) = self.buf.pop_front() {
            if let Some((w, next)) = self.claim_sender() {
                self.buf.push_back(next);
                w.wake_claimed(Wake::Value(Portable::NIL));
            }
            return Taken::Msg(m);
        }
        if let Some((w, m)) = self.claim_sender() {
            w.wake_claimed(Wake::Value(Portable::NIL));
            return Taken::Msg(m);
        }
        if self.closed {
            Taken::Closed
        } else {
            Taken::Empty
        }
    }

    fn claim_sender(&mut self) -> Option<(Arc<Waiter>, Portable)> {
        while let Some((w, m)) = self.senders.pop_front() {
            if w.claim() {
                return Some((w, m));
            }
        }
        None
    }

    /// Hands `msg` to a waiting receiver; gives it back if none is waiting.
    fn hand_off(&mut self, msg: Portable) -> Result<(), Portable> {
        while let Some((w, index)) = self.receivers.pop_front() {
            if w.claim() {
                w.wake_claimed(match index {
                    Some(i) => Wake::Selected(i, msg),
                    None => Wake::Value(msg),
                });
                return Ok(());
            }
        }
        Err(msg)
    }

    /// Queues a receiver. Receivers already woken elsewhere are forgotten whenever the
    /// queue has doubled since the last sweep, so repeated `select`s on a quiet channel
    /// do not pile them up, at a constant cost per receiver.
    fn add_receiver(&mut self, w: Arc<Waiter>, index: Option<usize>) {
        if self.receivers.len() >= self.sweep_at {
            self.receivers.retain(|(w, _)| !w.is_claimed());
            self.sweep_at = (2 * self.receivers.len()).max(16);
        }
        self.receivers.push_back((w, index));
    }
}

fn chan(vm: &Vm, v: Value) -> Arc<Channel> {
    match v {
        Value::Chan(c) => c.get(&vm.heap).chan.clone(),
        _ => unreachable!("channel methods are looked up on channels"),
    }
}

/// `channel()` unbounded, `channel(n)` holding up to `n` messages (0: rendezvous).
pub(crate) fn new_channel(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("channel", args, 0, 1)?;
    let cap = match args.first() {
        None => None,
        Some(_) => {
            let n = a.int(&vm.heap, 0)?;
            Some(usize::try_from(n).map_err(|_| fault!("channel capacity must be >= 0, got {n}"))?)
        }
    };
    let chan = Arc::new(Channel::new(cap));
    Ok(Value::Chan(vm.alloc(ChanRef { chan })?))
}

/// The method `name` of channels.
pub(crate) fn method(name: &str) -> Option<crate::value::NativeFn> {
    Some(match name {
        "send" => send,
        "recv" => recv,
        "try_recv" => try_recv,
        "close" => close,
        "closed" => closed,
        "len" => len,
        _ => return None,
    })
}

/// `ch.send(v)`: waits while the channel is full (or, for `channel(0)`, until a
/// receiver takes `v`).
fn send(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("send", &args[1..], 1, 1)?;
    let v = a.get(0);
    if matches!(v, Value::Nil) {
        return Err(fault!("cannot send nil"));
    }
    let ch = chan(vm, args[0]);
    let msg = export(vm, v);
    match ch.send(msg, &mut || vm.begin_wait())? {
        Sent::Done => Ok(Value::Nil),
        Sent::Waiting => Err(Fault::Suspend),
    }
}

/// `ch.recv()`: the next message, waiting while there is none; nil once the channel
/// is closed and drained.
fn recv(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("recv", &args[1..], 0, 0)?;
    let ch = chan(vm, args[0]);
    receive(vm, &ch)
}

/// A receive that waits: for `recv` and `for v in ch`.
pub(crate) fn receive(vm: &mut Vm, ch: &Channel) -> Result<Value, Fault> {
    match ch.receive(&mut || vm.begin_wait())? {
        Received::Msg(m) => import(vm, &m),
        Received::Closed => Ok(Value::Nil),
        Received::Waiting => Err(Fault::Suspend),
    }
}

/// `ch.try_recv()`: the next message, or nil if none is ready.
fn try_recv(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("try_recv", &args[1..], 0, 0)?;
    let ch = chan(vm, args[0]);
    match ch.take() {
        Taken::Msg(m) => import(vm, &m),
        Taken::Closed | Taken::Empty => Ok(Value::Nil),
    }
}

/// `ch.close()`: no more sends; waiting receivers get nil, waiting senders an error.
/// Messages already buffered can still be received.
fn close(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("close", &args[1..], 0, 0)?;
    chan(vm, args[0]).close();
    Ok(Value::Nil)
}

fn closed(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("closed", &args[1..], 0, 0)?;
    Ok(Value::Bool(chan(vm, args[0]).is_closed()))
}

fn len(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    Args::new("len", &args[1..], 0, 0)?;
    Ok(Value::Int(chan(vm, args[0]).len() as i64))
}

/// Where `select` starts looking, turned at every call so that no channel of a
/// `select` always wins over the others.
static SELECT_TURN: AtomicUsize = AtomicUsize::new(0);

/// `select([a, b], timeout_ms?)`: `[index, value]` of the first channel with a message
/// (value nil for a closed one), or nil when the timeout passes first.
pub(crate) fn select(vm: &mut Vm, args: &[Value]) -> Result<Value, Fault> {
    let a = Args::new("select", args, 1, 2)?;
    let Value::Array(list) = a.get(0) else {
        return Err(fault!(
            "select expects an array of channels, got {}",
            vm.type_name(a.get(0))
        ));
    };
    let mut chans = Vec::new();
    for v in &list.get(&vm.heap).items {
        match v {
            Value::Chan(c) => chans.push(c.get(&vm.heap).chan.clone()),
            other => {
                return Err(fault!(
                    "select expects an array of channels, got an element of type {}",
                    other.type_name(&vm.heap)
                ))
            }
        }
    }
    let timeout = match args.get(1) {
        None | Some(Value::Nil) => None,
        Some(_) => Some(crate::builtins::duration_ms(a.num(&vm.heap, 1)?)),
    };
    if chans.is_empty() && timeout.is_none() {
        return Err(fault!("select needs a channel or a timeout"));
    }
    let turn = SELECT_TURN.fetch_add(1, Ordering::Relaxed);
    let order: Vec<usize> = (0..chans.len()).map(|k| (k + turn) % chans.len()).collect();
    for &i in &order {
        if let Some(v) = selected(vm, i, chans[i].take())? {
            return Ok(v);
        }
    }
    if timeout == Some(Duration::ZERO) {
        return Ok(Value::Nil);
    }
    let w = loop {
        let w = vm.begin_wait()?;
        match register(&chans, &order, &w) {
            Registered::Waiting => break w,
            // Another channel already delivered to this wait: it is being woken.
            Registered::Served => return Err(Fault::Suspend),
            Registered::Ready(i, taken) => match selected(vm, i, taken)? {
                Some(v) => return Ok(v),
                // The message went to someone else meanwhile: wait afresh.
                None => continue,
            },
        }
    };
    if let Some(d) = timeout {
        vm.current_task()?.sched.add_timer(d, w);
    }
    Err(Fault::Suspend)
}

pub(crate) enum Registered {
    Waiting,
    Served,
    Ready(usize, Taken),
}

/// Registers `w` as a receiver on every channel, unless one turns out ready: then it
/// claims `w` itself and takes from that channel.
pub(crate) fn register(chans: &[Arc<Channel>], order: &[usize], w: &Arc<Waiter>) -> Registered {
    for &i in order {
        let mut st = chans[i].state.lock();
        if st.has_ready() {
            if !w.claim() {
                return Registered::Served;
            }
            return Registered::Ready(i, st.take());
        }
        st.add_receiver(w.clone(), Some(i));
    }
    Registered::Waiting
}

impl State {
    fn has_ready(&self) -> bool {
        self.closed || !self.buf.is_empty() || self.senders.iter().any(|(w, _)| !w.is_claimed())
    }
}

fn selected(vm: &mut Vm, i: usize, taken: Taken) -> Result<Option<Value>, Fault> {
    let v = match taken {
        Taken::Msg(m) => import(vm, &m)?,
        Taken::Closed => Value::Nil,
        Taken::Empty => return Ok(None),
    };
    vm.with_roots(|vm| {
        vm.push_root(v);
        vm.new_array(vec![Value::Int(i as i64), v]).map(Some)
    })
}
