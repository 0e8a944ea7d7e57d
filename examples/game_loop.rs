//! A game loop: host-owned entities that scripts move like structs, a script task per
//! entity sleeping on the game's frame clock, and an entity destroyed mid-run whose
//! task is cancelled (its `defer` runs) while the others go on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::{Clock, Engine, Handle, Store, TypeBuilder};

/// The game's clock: milliseconds of game time, moved by the loop, so a replay with
/// the same inputs runs the scripts exactly the same way.
#[derive(Debug, Default)]
struct FrameClock(AtomicU64);

impl Clock for FrameClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

struct Entity {
    x: f64,
    y: f64,
}

const SCRIPT: &str = r#"
// Called once per entity, under its owner tag: the patrol task belongs to it.
fn on_spawn(e, id) { spawn patrol(e, id) }

fn patrol(e, id) {
  defer { log("patrol ${id} ended at x=${e.x}") }
  while true {
    e.move(1, 0)
    sleep(100)
  }
}

// Called every frame.
fn update(e, dt) { e.y = e.y + dt }
"#;

const FRAME_MS: u64 = 50;

fn main() -> Result<(), kiln::Error> {
    let clock = Arc::new(FrameClock::default());
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut engine = Engine::new().with_host_clock(clock.clone());
    engine.register_type(
        TypeBuilder::<Entity>::new("Entity")
            .field("x", |e| e.x, |e, v| e.x = v)
            .field("y", |e| e.y, |e, v| e.y = v)
            .method("move", |e: &mut Entity, dx: f64, dy: f64| {
                e.x += dx;
                e.y += dy;
            }),
    );
    let sink = log.clone();
    engine.register_fn("log", move |line: String| {
        sink.lock().map(|mut l| l.push(line)).ok()
    });

    let mut store = Store::new(&engine);
    let game = store.load("game.kn", SCRIPT)?;
    // Handles are cheap to clone (one shared object), so arguments take them by value.
    let on_spawn = store.func::<(Handle<Entity>, u64), ()>(game, "on_spawn")?;
    let update = store.func::<(Handle<Entity>, f64), ()>(game, "update")?;

    let mut entities = Vec::new();
    for id in 1..=3u64 {
        let e = engine.handle(Entity { x: 0.0, y: 0.0 })?;
        store.set_owner(id);
        on_spawn.call(&mut store, (e.clone(), id))?;
        entities.push((id, e));
    }
    store.set_owner(0);

    for frame in 0..10 {
        clock.0.fetch_add(FRAME_MS, Ordering::SeqCst);
        store.run_tasks()?;
        for (_, e) in &entities {
            update.call(&mut store, (e.clone(), FRAME_MS as f64 / 1000.0))?;
        }
        if frame == 4 {
            // Entity 2 dies: its tasks end (their defers run), then the host drops it.
            let (id, e) = entities.remove(1);
            assert_eq!(store.cancel_owner(id)?, 1);
            e.destroy();
        }
    }

    // Patrols moved at t = 50, 150, 250, 350, 450 ms; entity 2 stopped after t = 250.
    for (id, e) in &entities {
        let (x, y) = e.with(|e| (e.x, e.y)).unwrap_or_default();
        println!("entity {id}: x={x} y={y:.2}");
        assert_eq!(x, 5.0);
        assert!((y - 0.5).abs() < 1e-9);
    }
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    println!("{log:?}");
    assert_eq!(log, ["patrol 2 ended at x=3.0"]);
    assert_eq!(store.live_tasks(), 2);
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().unwrap();
}
