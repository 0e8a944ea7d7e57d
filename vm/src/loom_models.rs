//! Model checks of the task protocols with `loom`, which runs each model through every
//! interleaving of its threads' synchronisation (up to a preemption bound) and fails on
//! a broken assertion, a deadlock or a thread left waiting for ever. The code under test
//! is the real channel, waiter and idle-worker code, built on `loom`'s types
//! (`crate::sync`); a recorder stands in for the task a waiter wakes.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p kiln-vm --release --lib loom_models`
//! (with its own `CARGO_TARGET_DIR`, since the flag rebuilds everything).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use loom::thread;

use crate::channel::{register, Channel, Received, Registered, Sent, Taken};
use crate::copy::Portable;
use crate::idle::Idle;
use crate::sync::{AtomicBool, AtomicUsize, Mutex};
use crate::task::{Waiter, Wake, WakeTarget};

/// Explores interleavings with at most three preemptions (loom's advice: bugs need few).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// What a waiter delivered, in a form a model can compare.
#[derive(Debug, PartialEq, Clone)]
enum Woke {
    Value(Option<i64>),
    Selected(usize, Option<i64>),
    Failed,
    Other,
}

/// A stand-in for a waiting task: it records every wake it gets.
#[derive(Default)]
struct Recorder {
    wakes: std::sync::Mutex<Vec<Woke>>,
}

impl WakeTarget for Recorder {
    fn wake(self: Arc<Self>, wake: Wake) {
        let woke = match wake {
            Wake::Value(p) => Woke::Value(p.as_int()),
            Wake::Selected(i, p) => Woke::Selected(i, p.as_int()),
            Wake::Fail(_) => Woke::Failed,
            _ => Woke::Other,
        };
        self.wakes.lock().unwrap().push(woke);
    }
}

impl Recorder {
    fn wakes(&self) -> Vec<Woke> {
        self.wakes.lock().unwrap().clone()
    }
}

fn waiter() -> (Arc<Recorder>, Arc<Waiter>) {
    let r = Arc::new(Recorder::default());
    (r.clone(), Arc::new(Waiter::new(r)))
}

/// Every message still buffered in `ch`.
fn drain(ch: &Channel) -> Vec<i64> {
    let mut left = Vec::new();
    while let Taken::Msg(m) = ch.take() {
        left.extend(m.as_int());
    }
    left
}

#[test]
fn rendezvous_hands_the_message_over_exactly_once() {
    model(|| {
        let ch = Arc::new(Channel::new(Some(0)));
        let (sender, sw) = waiter();
        let (receiver, rw) = waiter();
        let c = ch.clone();
        let send = thread::spawn(
            move || match c.send(Portable::int(7), &mut || Ok(sw.clone())) {
                Ok(Sent::Waiting) => true,
                Ok(Sent::Done) => false,
                Err(_) => panic!("the channel is open"),
            },
        );
        let got = match ch.receive(&mut || Ok(rw.clone())) {
            Ok(Received::Msg(m)) => m.as_int(),
            Ok(Received::Waiting) => None,
            _ => panic!("the channel is open"),
        };
        let sender_waited = send.join().unwrap();
        if sender_waited {
            // The receiver came second and took the message from the waiting sender.
            assert_eq!(got, Some(7));
            assert_eq!(sender.wakes(), [Woke::Value(None)]);
            assert_eq!(receiver.wakes(), []);
        } else {
            // The receiver waited first and was handed the message.
            assert_eq!(got, None);
            assert_eq!(receiver.wakes(), [Woke::Value(Some(7))]);
            assert_eq!(sender.wakes(), []);
        }
    });
}

#[test]
fn a_select_racing_two_sends_and_a_cancel_is_woken_once_and_loses_nothing() {
    model(|| {
        let chans = [Arc::new(Channel::new(None)), Arc::new(Channel::new(None))];
        let (selector, w) = waiter();
        let sends: Vec<_> = chans
            .iter()
            .enumerate()
            .map(|(i, ch)| {
                let ch = ch.clone();
                thread::spawn(move || {
                    let sent = ch.send(Portable::int(i as i64 + 1), &mut || {
                        panic!("an unbounded send never waits")
                    });
                    assert!(matches!(sent, Ok(Sent::Done)));
                })
            })
            .collect();
        let cancel = {
            let w = w.clone();
            thread::spawn(move || {
                w.wake(Wake::Fail("task cancelled".into()));
            })
        };
        let mut received = Vec::new();
        match register(&chans, &[0, 1], &w) {
            Registered::Waiting | Registered::Served => {}
            Registered::Ready(_, Taken::Msg(m)) => received.extend(m.as_int()),
            Registered::Ready(..) => panic!("a ready channel has a message"),
        }
        for t in sends {
            t.join().unwrap();
        }
        cancel.join().unwrap();
        let wakes = selector.wakes();
        assert!(wakes.len() <= 1, "woken more than once: {wakes:?}");
        for woke in &wakes {
            match woke {
                Woke::Selected(i, Some(m)) => {
                    assert_eq!(*m, *i as i64 + 1);
                    received.push(*m);
                }
                Woke::Failed => {}
                other => panic!("unexpected wake {other:?}"),
            }
        }
        // At most one message went to the select; the rest wait in their channels.
        assert!(received.len() <= 1);
        received.extend(chans.iter().flat_map(|c| drain(c)));
        received.sort_unstable();
        assert_eq!(received, [1, 2]);
    });
}

#[test]
fn close_wakes_a_waiting_receiver_once_and_keeps_a_sent_message() {
    model(|| {
        let ch = Arc::new(Channel::new(None));
        let (receiver, rw) = waiter();
        let c = ch.clone();
        let send = thread::spawn(move || {
            c.send(Portable::int(5), &mut || panic!("unbounded"))
                .is_ok()
        });
        let c = ch.clone();
        let close = thread::spawn(move || c.close());
        let mut got = match ch.receive(&mut || Ok(rw.clone())) {
            Ok(Received::Msg(m)) => m.as_int().into_iter().collect(),
            Ok(Received::Closed) => Vec::new(),
            Ok(Received::Waiting) => {
                // Once both have run, the wait ended exactly once.
                Vec::new()
            }
            Err(_) => panic!("receive does not fail"),
        };
        let sent = send.join().unwrap();
        close.join().unwrap();
        let wakes = receiver.wakes();
        assert!(wakes.len() <= 1, "woken more than once: {wakes:?}");
        match wakes.first() {
            Some(Woke::Value(Some(m))) => got.push(*m),
            Some(Woke::Value(None)) | None => {}
            other => panic!("unexpected wake {other:?}"),
        }
        got.extend(drain(&ch));
        // A send that succeeded is received exactly once (before or after the close);
        // one refused by the close is nowhere.
        assert_eq!(got, if sent { vec![5] } else { vec![] });
    });
}

#[test]
fn a_waiting_receiver_is_always_woken() {
    model(|| {
        let ch = Arc::new(Channel::new(Some(1)));
        let (receiver, rw) = waiter();
        let c = ch.clone();
        let send = thread::spawn(move || {
            let sent = c.send(Portable::int(3), &mut || panic!("room for one"));
            assert!(matches!(sent, Ok(Sent::Done)));
        });
        let direct = match ch.receive(&mut || Ok(rw.clone())) {
            Ok(Received::Msg(m)) => m.as_int(),
            Ok(Received::Waiting) => None,
            _ => panic!("the channel is open"),
        };
        send.join().unwrap();
        match direct {
            Some(m) => {
                assert_eq!(m, 3);
                assert_eq!(receiver.wakes(), []);
            }
            None => assert_eq!(receiver.wakes(), [Woke::Value(Some(3))]),
        }
    });
}

/// A worker loop in the shape of `Shared::worker`: take work, else search once, else
/// park. The pusher queues two items, waits until both have run, then ends the run.
/// Were a push's wake-up lost, the worker would sleep while the pusher waits for ever,
/// which loom reports.
#[test]
fn a_parking_worker_never_misses_work_or_the_end() {
    model(|| {
        let idle = Arc::new(Idle::new());
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let ran = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (idle, queue, ran, stop) = (idle.clone(), queue.clone(), ran.clone(), stop.clone());
            thread::spawn(move || loop {
                if queue.lock().pop_front().is_some() {
                    ran.fetch_add(1, SeqCst);
                    continue;
                }
                if stop.load(SeqCst) {
                    return;
                }
                idle.begin_search();
                let found = queue.lock().pop_front();
                idle.end_search();
                if found.is_some() {
                    ran.fetch_add(1, SeqCst);
                    continue;
                }
                idle.park(|| !queue.lock().is_empty() || stop.load(SeqCst), None);
            })
        };
        for item in 1..=2 {
            queue.lock().push_back(item);
            idle.notify_one();
        }
        while ran.load(SeqCst) < 2 {
            thread::yield_now();
        }
        stop.store(true, SeqCst);
        idle.wake_all();
        worker.join().unwrap();
    });
}
