//! Tasks in a store: they outlive the call that spawned them, sleep on the host's
//! clock, and end together when their owner is cancelled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::{Clock, Engine, Store};

/// A clock the test moves by hand, like a game's frame counter.
#[derive(Debug, Default)]
struct FrameClock {
    ms: AtomicU64,
}

impl FrameClock {
    fn advance(&self, ms: u64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FrameClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.ms.load(Ordering::SeqCst))
    }
}

const SCRIPT: &str = r#"
fn start(id) { spawn run(id) }
fn run(id) {
  defer { note("end " + str(id)) }
  let n = 0
  while true {
    sleep(100)
    n += 1
    note(str(id) + ":" + str(n))
  }
}
"#;

#[test]
fn tasks_sleep_on_the_host_clock_and_die_with_their_owner() {
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let clock = Arc::new(FrameClock::default());
    let mut engine = Engine::new().with_host_clock(clock.clone());
    let sink = log.clone();
    engine.register_fn("note", move |s: String| sink.lock().unwrap().push(s));
    let mut store = Store::new(&engine);
    let m = store.load("tasks.kn", SCRIPT).unwrap();
    let start = store.func::<(i64,), ()>(m, "start").unwrap();
    for id in [1, 2] {
        store.set_owner(id as u64);
        start.call(&mut store, (id,)).unwrap();
    }
    store.set_owner(0);
    store.run_tasks().unwrap();
    assert_eq!(store.live_tasks(), 2);
    assert!(log.lock().unwrap().is_empty(), "no time has passed");

    clock.advance(100);
    store.run_tasks().unwrap();
    assert_eq!(*log.lock().unwrap(), ["1:1", "2:1"]);

    assert_eq!(store.cancel_owner(1).unwrap(), 1);
    assert_eq!(log.lock().unwrap().last().unwrap(), "end 1");
    assert_eq!(store.live_tasks(), 1);

    clock.advance(50);
    store.run_tasks().unwrap();
    clock.advance(50);
    store.run_tasks().unwrap();
    assert_eq!(*log.lock().unwrap(), ["1:1", "2:1", "end 1", "2:2"]);
    assert_eq!(store.take_output(), "");

    // Modules are added while no task holds the program.
    let err = store.load("more.kn", "let x = 1").unwrap_err();
    assert!(
        err.message().contains("tasks of this store are alive"),
        "{err}"
    );
    store.cancel_owner(2).unwrap();
    assert_eq!(store.live_tasks(), 0);
    store.load("more.kn", "let x = 1").unwrap();
}

/// Loads `source` as module `name` and calls a function of it that spawns `f()` and
/// drops the handle, as a host's event handler would.
fn spawn_from_host(store: &mut Store, name: &str, source: &str, f: &str) {
    let source = format!("{source}\nfn go() {{ spawn {f}()\n nil }}");
    let m = store.load(name, &source).expect("the module loads");
    let go = store
        .func::<(), ()>(m, "go")
        .expect("the module defines go");
    go.call(store, ()).expect("go spawns the task");
}

#[test]
fn a_call_from_the_host_cannot_wait() {
    let mut store = Store::new(&Engine::new().with_clock());
    let err = store.eval::<()>("sleep(10)").unwrap_err();
    assert!(err.message().contains("spawn a task"), "{err}");
    // A failing task nobody can join any more is reported on the store's error output.
    spawn_from_host(
        &mut store,
        "bad.kn",
        "fn bad() { throw error(\"boom\") }",
        "bad",
    );
    // The dropped handle is garbage, but still counts until it is collected.
    store.collect_garbage();
    store.run_tasks().unwrap();
    let out = store.take_output();
    assert!(out.contains("error in task 2: error: boom"), "{out:?}");
    assert_eq!(store.live_tasks(), 0);
}

#[test]
fn a_runaway_task_is_stopped_by_the_interrupt() {
    let mut store = Store::new(&Engine::new());
    spawn_from_host(&mut store, "spin.kn", "fn spin() { while true {} }", "spin");
    store.collect_garbage();
    let handle = store.interrupt_handle();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        handle.interrupt();
    });
    let result = store.run_tasks();
    watchdog.join().unwrap();
    assert_eq!(store.live_tasks(), 0);
    // The limit fails the task (reported on the error output), or, where limits end the
    // whole run, comes back from `run_tasks`.
    let out = store.take_output();
    match result {
        Err(e) => assert_eq!(e.kind(), kiln::ErrorKind::Limit(kiln::Limit::Interrupted)),
        Ok(()) => assert!(out.contains("interrupted by the host"), "{out:?}"),
    }
    assert_eq!(store.eval::<i64>("6 * 7").unwrap(), 42);
}

#[test]
fn os_exit_in_a_task_comes_back_from_run_tasks() {
    let mut store = Store::new(&Engine::new().with_os());
    spawn_from_host(
        &mut store,
        "exit.kn",
        "import os\nfn bye() { os.exit(3) }",
        "bye",
    );
    let err = store.run_tasks().unwrap_err();
    assert_eq!(err.kind(), kiln::ErrorKind::Exit(3));
    // The store goes on.
    assert_eq!(store.eval::<i64>("1").unwrap(), 1);
}

#[test]
fn a_panic_in_a_task_ends_the_run_with_an_internal_error() {
    let mut engine = Engine::new();
    engine.register_fn("buggy", |n: i64| -> i64 {
        if n > 2 {
            panic!("the host function's own bug");
        }
        n
    });
    let mut store = Store::new(&engine);
    spawn_from_host(
        &mut store,
        "panic.kn",
        "fn work() { for i in 0..5 { buggy(i) } }",
        "work",
    );
    let err = store.run_tasks().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("internal error: the host function's own bug"),
        "{text}"
    );
    assert!(text.contains("please report it"), "{text}");
    assert_eq!(store.live_tasks(), 0);
    // The store goes on.
    assert_eq!(store.eval::<i64>("buggy(2)").unwrap(), 2);
}
