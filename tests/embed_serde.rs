//! The `serde` feature: Rust records in and out of scripts.

use kiln::{Engine, Serde, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Config {
    name: String,
    speed: f64,
    tags: Vec<String>,
    limit: Option<i64>,
}

#[test]
fn records_round_trip_through_scripts() {
    let mut store = Store::new(&Engine::new());
    let m = store
        .load(
            "cfg.kn",
            "fn tune(c) { c.speed = c.speed * 2\n c.tags.push(\"fast\")\n c }",
        )
        .unwrap();
    let tune = store
        .func::<(Serde<Config>,), Serde<Config>>(m, "tune")
        .unwrap();
    let input = Config {
        name: "kart".into(),
        speed: 1.5,
        tags: vec![],
        limit: None,
    };
    let Serde(out) = tune.call(&mut store, (Serde(input),)).unwrap();
    assert_eq!(
        out,
        Config {
            name: "kart".into(),
            speed: 3.0,
            tags: vec!["fast".into()],
            limit: None,
        }
    );
    let err = store
        .eval::<Serde<Config>>("let c = {name: 1}\nc")
        .unwrap_err();
    assert!(err.message().contains("Config"), "{err}");
}
