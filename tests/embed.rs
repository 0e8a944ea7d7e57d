//! The embedding API: evaluation, modules, typed calls, variables, natives, native
//! modules, host types, conversions and errors.

use std::collections::HashMap;

use kiln::{Engine, ErrorKind, Handle, NativeModule, Script, Store, TypeBuilder, Value};

#[test]
fn engines_and_errors_cross_threads_and_stores_move() {
    fn shared<T: Send + Sync>() {}
    fn movable<T: Send>() {}
    shared::<Engine>();
    shared::<kiln::Error>();
    movable::<Store>();
}

fn store() -> Store {
    Store::new(&Engine::new())
}

#[test]
fn eval_returns_the_final_expression() {
    let mut s = store();
    assert_eq!(s.eval::<i64>("let x = 20\nx * 2 + 2").unwrap(), 42);
    assert_eq!(s.eval::<String>("\"a\" + \"b\"").unwrap(), "ab");
    assert_eq!(s.eval::<Vec<f64>>("[1, 2.5]").unwrap(), vec![1.0, 2.5]);
    assert_eq!(s.eval::<Option<i64>>("nil").unwrap(), None);
    s.eval::<()>("let y = 1").unwrap();
}

#[test]
fn a_result_of_the_wrong_type_is_an_error() {
    let err = store().eval::<i64>("\"nope\"").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Runtime);
    assert_eq!(err.message(), "expected int, got str");
}

#[test]
fn typed_functions_are_looked_up_once_and_called_many_times() {
    let mut s = store();
    let m = s
        .load(
            "math.kn",
            "fn mix(a, b) { a * 2 + b }\nfn greet(n) { \"hi \" + n }",
        )
        .unwrap();
    let mix = s.func::<(i64, f64), f64>(m, "mix").unwrap();
    for i in 0..100 {
        assert_eq!(mix.call(&mut s, (i, 0.5)).unwrap(), i as f64 * 2.0 + 0.5);
    }
    let greet = s.func::<(&str,), String>(m, "greet").unwrap();
    assert_eq!(greet.call(&mut s, ("kiln",)).unwrap(), "hi kiln");
}

#[test]
fn lookups_check_the_function_and_its_arity() {
    let mut s = store();
    let m = s.load("m.kn", "fn one(a) { a }\nlet n = 3").unwrap();
    let err = s.func::<(i64, i64), i64>(m, "one").unwrap_err();
    assert!(err.message().contains("expects 1 argument"), "{err}");
    let err = s.func::<(), i64>(m, "n").unwrap_err();
    assert!(err.message().contains("not a function"), "{err}");
    assert!(s.func::<(), i64>(m, "missing").is_err());
}

#[test]
fn handles_of_another_store_are_refused() {
    let engine = Engine::new();
    let (mut a, mut b) = (Store::new(&engine), Store::new(&engine));
    let m = a.load("m.kn", "fn f() { 1 }").unwrap();
    let f = a.func::<(), i64>(m, "f").unwrap();
    assert!(f.call(&mut b, ()).is_err());
    assert!(b.get::<i64>(m, "f").is_err());
}

#[test]
fn module_variables_are_read_and_written() {
    let mut s = store();
    let m = s
        .load(
            "state.kn",
            "let score = 10\nfn bump() { score += 1\n score }",
        )
        .unwrap();
    assert_eq!(s.get::<i64>(m, "score").unwrap(), 10);
    s.set(m, "score", 41).unwrap();
    let bump = s.func::<(), i64>(m, "bump").unwrap();
    assert_eq!(bump.call(&mut s, ()).unwrap(), 42);
    let names: Vec<String> = vec!["a".into(), "b".into()];
    s.set(m, "score", names).unwrap();
    assert_eq!(
        s.get::<Value>(m, "score").unwrap(),
        Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())])
    );
    assert!(s.set(m, "nope", 1).is_err());
}

#[test]
fn script_errors_carry_position_and_trace() {
    let mut s = store();
    let m = s
        .load(
            "bad.kn",
            "fn inner(x) {\n  x.nope()\n}\nfn outer() { inner(1) }",
        )
        .unwrap();
    let outer = s.func::<(), ()>(m, "outer").unwrap();
    let err = outer.call(&mut s, ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Runtime);
    let at = err.location().expect("position");
    assert_eq!((at.file.as_str(), at.line), ("bad.kn", 2));
    let trace: Vec<String> = err.trace().iter().map(|f| f.function.clone()).collect();
    assert_eq!(trace, ["inner", "outer"]);
    // The store is usable after an error.
    assert_eq!(s.eval::<i64>("1 + 1").unwrap(), 2);
}

#[test]
fn compile_errors_are_reported() {
    let err = store().load("syntax.kn", "fn (").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compile);
    assert!(err.location().is_some());
    assert!(err.render().contains("syntax.kn"));
}

#[test]
fn natives_convert_arguments_and_results() {
    let mut engine = Engine::new();
    engine
        .register_fn("add", |a: i64, b: i64| a + b)
        .register_fn("shout", |s: String| s.to_uppercase())
        .register_fn("total", |xs: Vec<f64>| xs.iter().sum::<f64>())
        .register_fn("lookup", |m: HashMap<String, i64>, k: String| {
            m.get(&k).copied()
        })
        .register_fn("pair", |a: i64, b: String| (a, b))
        .register_fn("checked", |x: i64| {
            if x < 0 {
                Err(format!("negative: {x}"))
            } else {
                Ok(x * 2)
            }
        });
    let mut s = Store::new(&engine);
    assert_eq!(s.eval::<i64>("add(2, 3)").unwrap(), 5);
    assert_eq!(s.eval::<String>("shout(\"hey\")").unwrap(), "HEY");
    assert_eq!(s.eval::<f64>("total([1, 2, 3.5])").unwrap(), 6.5);
    assert_eq!(
        s.eval::<Option<i64>>("lookup({a: 1}, \"a\")").unwrap(),
        Some(1)
    );
    assert_eq!(
        s.eval::<Option<i64>>("lookup({a: 1}, \"b\")").unwrap(),
        None
    );
    assert_eq!(
        s.eval::<(i64, String)>("pair(1, \"x\")").unwrap(),
        (1, "x".to_string())
    );
    assert_eq!(s.eval::<i64>("checked(4)").unwrap(), 8);
    let caught = "try { checked(-1) } catch e { e.message }";
    assert_eq!(s.eval::<String>(caught).unwrap(), "negative: -1");
}

#[test]
fn native_arity_and_type_errors_point_at_the_call() {
    let mut engine = Engine::new();
    engine.register_fn("add", |a: i64, b: i64| a + b);
    let mut s = Store::new(&engine);
    let err = s.load("call.kn", "let x = 1\nadd(1)").unwrap_err();
    assert_eq!(err.message(), "add expects 2 arguments, got 1");
    assert_eq!(err.location().unwrap().line, 2);
    let err = s.load("call2.kn", "\n\nadd(1, \"two\")").unwrap_err();
    assert_eq!(err.message(), "add expects int for argument 2, got str");
    assert_eq!(err.location().unwrap().line, 3);
    assert_eq!(err.trace()[0].function, "<main>");
}

#[test]
fn native_modules_are_imported() {
    let mut engine = Engine::new();
    engine.register_module(
        "game",
        NativeModule::new()
            .function("double", |x: f64| x * 2.0)
            .function("name", || "kiln".to_string()),
    );
    let mut s = Store::new(&engine);
    assert_eq!(s.eval::<f64>("import game\ngame.double(2)").unwrap(), 4.0);
    let v = s
        .eval::<String>("import { name } from game\nname()")
        .unwrap();
    assert_eq!(v, "kiln");
    let err = s.eval::<()>("import other").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Compile);
}

#[derive(Debug, PartialEq)]
struct Entity {
    x: f64,
    y: f64,
    name: String,
}

fn entity_engine() -> Engine {
    let mut engine = Engine::new();
    engine.register_type(
        TypeBuilder::<Entity>::new("Entity")
            .field("x", |e| e.x, |e, v| e.x = v)
            .field("y", |e| e.y, |e, v| e.y = v)
            .read_only("name", |e| e.name.clone())
            .method("move", |e: &mut Entity, dx: f64, dy: f64| {
                e.x += dx;
                e.y += dy;
            })
            .method("dist2", |e: &mut Entity| e.x * e.x + e.y * e.y),
    );
    engine.register_fn("spawn_entity", |name: String| {
        Script(Entity {
            x: 0.0,
            y: 0.0,
            name,
        })
    });
    engine
}

#[test]
fn host_types_work_like_structs() {
    let engine = entity_engine();
    let mut s = Store::new(&engine);
    let m = s
        .load(
            "ent.kn",
            "fn step(e) {\n e.x = e.x + 1\n e.move(1, 2)\n e.dist2() }\nfn label(e) { e.name + \" \" + type(e) }",
        )
        .unwrap();
    let hero: Handle<Entity> = engine
        .handle(Entity {
            x: 1.0,
            y: 0.0,
            name: "hero".into(),
        })
        .unwrap();
    let step = s.func::<(&Handle<Entity>,), f64>(m, "step").unwrap();
    assert_eq!(step.call(&mut s, (&hero,)).unwrap(), 9.0 + 4.0);
    assert_eq!(hero.with(|e| (e.x, e.y)), Some((3.0, 2.0)));
    let label = s.func::<(&Handle<Entity>,), String>(m, "label").unwrap();
    assert_eq!(label.call(&mut s, (&hero,)).unwrap(), "hero Entity");
    let err = s
        .eval::<()>("spawn_entity(\"a\").name = \"b\"")
        .unwrap_err();
    assert!(err.message().contains("cannot be assigned"), "{err}");
    let err = s.eval::<()>("spawn_entity(\"a\").x = \"b\"").unwrap_err();
    assert_eq!(err.message(), "Entity.x expects float, got str");
}

#[test]
fn a_destroyed_host_object_is_a_clean_script_error() {
    let engine = entity_engine();
    let mut s = Store::new(&engine);
    let m = s
        .load(
            "keep.kn",
            "let kept = nil\nfn keep(e) { kept = e }\nfn poke() { kept.x }",
        )
        .unwrap();
    let hero = engine
        .handle(Entity {
            x: 5.0,
            y: 0.0,
            name: "hero".into(),
        })
        .unwrap();
    s.func::<(Handle<Entity>,), ()>(m, "keep")
        .unwrap()
        .call(&mut s, (hero.clone(),))
        .unwrap();
    let poke = s.func::<(), f64>(m, "poke").unwrap();
    assert_eq!(poke.call(&mut s, ()).unwrap(), 5.0);
    let gone = hero.destroy().unwrap();
    assert_eq!(gone.name, "hero");
    let err = poke.call(&mut s, ()).unwrap_err();
    assert_eq!(err.message(), "Entity was destroyed by the host");
    assert_eq!(err.location().unwrap().line, 3);
}

#[test]
fn script_owned_host_objects_are_dropped_when_collected() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Token;
    impl Drop for Token {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let mut engine = Engine::new();
    engine.register_type(TypeBuilder::<Token>::new("Token"));
    engine.register_fn("token", || Script(Token));
    let mut s = Store::new(&engine);
    s.eval::<()>("for i in 0..10 { token() }").unwrap();
    s.collect_garbage();
    assert_eq!(DROPS.load(Ordering::SeqCst), 10);
}

#[test]
fn a_method_given_its_own_receiver_fails_cleanly() {
    let mut engine = Engine::new();
    engine.register_type(TypeBuilder::<Entity>::new("Entity").method(
        "near",
        |e: &mut Entity, other: Handle<Entity>| {
            other.with(|o| (o.x - e.x).abs()).unwrap_or(f64::NAN)
        },
    ));
    engine.register_fn("make", || {
        Script(Entity {
            x: 1.0,
            y: 0.0,
            name: String::new(),
        })
    });
    let mut s = Store::new(&engine);
    assert_eq!(s.eval::<f64>("make().near(make())").unwrap(), 0.0);
    // The receiver is locked while its method runs: no deadlock, the handle says so.
    assert!(s.eval::<f64>("let e = make()\ne.near(e)").unwrap().is_nan());
}

#[test]
fn values_detach_from_the_heap() {
    let mut s = store();
    let v = s
        .eval::<Value>("struct P { x, y }\n[1, 2.5, true, nil, \"s\", {k: P { x: 1, y: 2 }}]")
        .unwrap();
    let p = Value::Map(vec![
        (Value::Str("x".into()), Value::Int(1)),
        (Value::Str("y".into()), Value::Int(2)),
    ]);
    assert_eq!(
        v,
        Value::Array(vec![
            Value::Int(1),
            Value::Float(2.5),
            Value::Bool(true),
            Value::Nil,
            Value::Str("s".into()),
            Value::Map(vec![(Value::Str("k".into()), p)]),
        ])
    );
    let back = s.eval::<Value>("fn f() { 1 }\nf").unwrap();
    assert_eq!(back, Value::Opaque("fn".into()));
}

#[test]
fn host_objects_and_natives_work_in_compiled_code() {
    for mode in [kiln::JitMode::Off, kiln::JitMode::Eager] {
        let engine = entity_engine().with_jit(mode);
        let mut s = Store::new(&engine);
        let m = s
            .load(
                "hot.kn",
                "fn run(e) {\n for i in 0..1000 { e.x = e.x + 1\n e.move(0, 1) }\n e.x + e.y }",
            )
            .unwrap();
        let hero = engine
            .handle(Entity {
                x: 0.0,
                y: 0.0,
                name: "hero".into(),
            })
            .unwrap();
        let run = s.func::<(Handle<Entity>,), f64>(m, "run").unwrap();
        assert_eq!(
            run.call(&mut s, (hero.clone(),)).unwrap(),
            2000.0,
            "{mode:?}"
        );
        assert_eq!(run.call(&mut s, (hero,)).unwrap(), 4000.0, "{mode:?}");
    }
}

/// A host function with a bug: it panics when asked for more than 2.
fn buggy_engine() -> Engine {
    let mut engine = Engine::new();
    engine.register_fn("buggy", |n: i64| -> i64 {
        if n > 2 {
            panic!("the host function's own bug");
        }
        n
    });
    engine
}

#[test]
fn a_panic_in_a_call_is_an_internal_error_and_poisons_the_store() {
    let mut store = Store::new(&buggy_engine());
    let m = store.load("p.kn", "fn f(n) { buggy(n) + 1 }").unwrap();
    let f = store.func::<(i64,), i64>(m, "f").unwrap();
    assert_eq!(f.call(&mut store, (2,)).unwrap(), 3);
    let err = f.call(&mut store, (3,)).unwrap_err();
    assert_eq!(err.kind(), kiln::ErrorKind::Internal);
    assert!(
        err.message()
            .starts_with("internal error: the host function's own bug"),
        "{err}"
    );
    let again = store.eval::<i64>("1").unwrap_err();
    assert!(
        again.message().contains("this store is unusable"),
        "{again}"
    );
    // Other stores of the engine are untouched.
    assert_eq!(
        Store::new(&buggy_engine()).eval::<i64>("buggy(2)").unwrap(),
        2
    );
}

#[test]
fn a_repl_session_starts_over_after_an_internal_error() {
    let output = kiln::Output {
        out: Box::new(std::io::sink()),
        err: Box::new(std::io::sink()),
    };
    let mut repl = buggy_engine().repl(output);
    assert_eq!(repl.eval("let x = buggy(2)").unwrap(), None);
    assert_eq!(repl.eval("x").unwrap().as_deref(), Some("2"));
    let err = repl.eval("buggy(3)").unwrap_err();
    assert_eq!(err.kind, kiln::ErrorKind::Internal);
    // The session is new: `x` is gone, and it runs code again.
    let gone = repl.eval("x").unwrap_err();
    assert_eq!(gone.kind, kiln::ErrorKind::Compile, "{gone}");
    assert_eq!(
        repl.eval("x = 1").map_err(|e| e.kind),
        Err(kiln::ErrorKind::Compile)
    );
    assert_eq!(repl.eval("6 * 7").unwrap().as_deref(), Some("42"));
}
