//! The 20-line tour: an engine, a native, a module, a typed call, a variable, an error.

use kiln::{Engine, ErrorKind, Store};

fn main() -> Result<(), kiln::Error> {
    let mut engine = Engine::new(); // sandboxed: no files, environment or clock
    engine.register_fn("greet", |name: String| format!("hello, {name}"));
    let mut store = Store::new(&engine);

    assert_eq!(store.eval::<String>("greet(\"kiln\")")?, "hello, kiln");

    let m = store.load(
        "shapes.kn",
        "let scale = 2\nfn area(w, h) { w * h * scale }",
    )?;
    let area = store.func::<(f64, f64), f64>(m, "area")?; // looked up once
    assert_eq!(area.call(&mut store, (3.0, 4.0))?, 24.0);
    store.set(m, "scale", 1)?;
    assert_eq!(area.call(&mut store, (3.0, 4.0))?, 12.0);

    let err = store
        .eval::<()>("greet(42)")
        .expect_err("greet takes a string");
    assert_eq!(err.kind(), ErrorKind::Runtime);
    println!("{err}"); // greet expects str for argument 1, got int (<eval>:1:1)
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().unwrap();
}
