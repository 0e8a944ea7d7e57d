//! The program generator: valid, terminating Kiln programs whose output the language
//! contract fixes completely, so any difference between two runs is a bug.
//!
//! What keeps a program valid: every expression is generated for a *kind* (int, float,
//! number, str, ...) and uses only operations that are defined for it; a variable keeps its
//! kind (a `Num` one flips between int and float on purpose, to trip the JIT's guards, and
//! an `Any` one takes every type but is only used by operations that accept everything).
//! Risky operations (an index that may be out of range, a division by a variable, a wrong
//! argument count, `throw`) appear inside `try` and, rarely, outside it, so some programs
//! end with an uncaught error: its report must agree too.
//!
//! What keeps a program terminating and small: loops have constant bounds and their
//! counters are never assigned; `while` loops count up first thing; functions call only
//! functions generated before them, the recursive ones with a bounded argument;
//! collections grow only below a cap; strings and arrays built from variables are cut to a
//! fixed length. A work budget (statements times enclosing iterations times callee costs)
//! bounds the whole run.
//!
//! What keeps the result defined: no clocks, unseeded random numbers, tasks, weak
//! references or `gc_stats`; map iteration is insertion-ordered by contract; comparators
//! given to `sort_by` are consistent.

use crate::rng::Source;
use crate::tree::Node;

/// Statement executions (counted as the generator sees them: a statement in a loop counts
/// once per iteration, a call counts its callee's cost) a whole program may take.
const WORK_BUDGET: u64 = 20_000;
/// A function's own budget, so that calling it from a hot loop stays affordable.
const FN_BUDGET: u64 = 120;
/// Above this many enclosing iterations, statements stop printing (the output would be
/// huge) and fold their values into the checksum instead.
const PRINT_LIMIT: u64 = 4;
/// Collections grow only while smaller than this.
const CAP: u32 = 24;
/// Strings built from variables are cut to this many bytes (all generated text is ASCII,
/// so any byte offset is a character boundary).
const STR_CUT: u32 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    /// An int or a float, changing between them.
    Num,
    Str,
    Bool,
    /// An array of numbers.
    Arr,
    /// A map from `KEYS` to numbers.
    Map,
    /// An instance of struct `n`.
    Obj(usize),
    /// A closure from a number to a number.
    Fun,
    /// Anything; used only where every type is accepted.
    Any,
}

impl Kind {
    /// Whether a value of kind `self` may be used where `want` is expected.
    fn fits(self, want: Kind) -> bool {
        self == want
            || want == Kind::Any
            || (want == Kind::Num && matches!(self, Kind::Int | Kind::Float))
    }
}

struct Var {
    name: String,
    kind: Kind,
    assignable: bool,
}

impl Var {
    /// A variable the program reads but never assigns (a loop variable).
    fn fixed(name: &str, kind: Kind) -> Var {
        Var {
            name: name.to_owned(),
            kind,
            assignable: false,
        }
    }
}

struct Func {
    name: String,
    params: Vec<Kind>,
    /// Parameters from this index on have defaults.
    required: usize,
    ret: Kind,
    cost: u64,
}

struct Struct {
    name: String,
    /// Field `f0` is a number, `f1` a string, `f2` an array.
    methods: Vec<Method>,
}

struct Method {
    name: String,
    /// Takes one number besides `self`.
    takes_arg: bool,
    cost: u64,
}

/// Map keys: strings, ints and an integral float (the same key as the int 1).
const KEYS: &[&str] = &["\"a\"", "\"b\"", "\"k\"", "0", "1", "2", "1.0", "true"];
const WORDS: &[&str] = &["", "a", "kiln", "b a", "xyz", "A-b", "0", "aa,b"];
const FLOATS: &[&str] = &[
    "0.5", "1.5", "-2.25", "0.1", "1e300", "2.5e-3", "-0.0", "3.0", "1e-7",
];

/// The generator's state while it writes one program.
pub struct Gen<'s> {
    src: &'s mut dyn Source,
    /// Visible variables, innermost scope last; `scopes[0]` holds the module variables
    /// that functions may use.
    scopes: Vec<Vec<Var>>,
    /// Where the scopes of the function being generated start (1 at the top level).
    floor: usize,
    funcs: Vec<Func>,
    structs: Vec<Struct>,
    next_name: u32,
    /// Product of the iteration counts of the enclosing loops.
    mult: u64,
    /// Work spent so far in the current budget, and that budget.
    spent: u64,
    budget: u64,
    /// Nesting of loops (for `break`/`continue`), of `try` (risky code), of blocks.
    loops: u32,
    tries: u32,
    depth: u32,
    in_fn: bool,
}

/// Generates one program from `src`.
pub fn generate(src: &mut dyn Source) -> Vec<Node> {
    let mut g = Gen {
        src,
        scopes: vec![Vec::new()],
        floor: 1,
        funcs: Vec::new(),
        structs: Vec::new(),
        next_name: 0,
        mult: 1,
        spent: 0,
        budget: WORK_BUDGET,
        loops: 0,
        tries: 0,
        depth: 0,
        in_fn: false,
    };
    g.program()
}

impl Gen<'_> {
    // ----- choices ------------------------------------------------------------------

    fn below(&mut self, n: u32) -> u32 {
        self.src.below(n)
    }

    fn chance(&mut self, percent: u32) -> bool {
        // Choice 0 is "no", so a dry source takes the simple path.
        self.below(100) >= 100 - percent
    }

    fn one_of<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u32) as usize]
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        format!("{prefix}{}", self.next_name)
    }

    /// Picks by weight; returns the index. Index 0 must be the simplest choice.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        0
    }

    // ----- scopes -------------------------------------------------------------------

    fn visible(&self) -> impl Iterator<Item = &Var> {
        self.scopes[0]
            .iter()
            .chain(self.scopes[self.floor..].iter().flatten())
    }

    fn var_where(&mut self, ok: impl Fn(&Var) -> bool) -> Option<String> {
        let names: Vec<String> = self
            .visible()
            .filter(|v| ok(v))
            .map(|v| v.name.clone())
            .collect();
        if names.is_empty() {
            return None;
        }
        let i = self.below(names.len() as u32) as usize;
        Some(names[i].clone())
    }

    fn var_of(&mut self, want: Kind) -> Option<String> {
        self.var_where(|v| v.kind.fits(want))
    }

    fn declare(&mut self, name: &str, kind: Kind, assignable: bool) {
        self.scopes.last_mut().expect("a scope").push(Var {
            name: name.to_owned(),
            kind,
            assignable,
        });
    }

    /// Generates a block body in a new scope.
    fn body(&mut self, max: u32) -> Vec<Node> {
        self.scopes.push(Vec::new());
        self.depth += 1;
        let n = 1 + self.below(max);
        let mut out = Vec::new();
        for _ in 0..n {
            if let Some(s) = self.stmt() {
                out.push(s);
            }
        }
        self.depth -= 1;
        self.scopes.pop();
        out
    }

    /// Whether `cost` more work fits; if so, it is counted.
    fn afford(&mut self, cost: u64) -> bool {
        let total = self.spent + self.mult.saturating_mul(cost);
        if total > self.budget {
            return false;
        }
        self.spent = total;
        true
    }

    // ----- the program ----------------------------------------------------------------

    fn program(&mut self) -> Vec<Node> {
        let mut out = vec![
            Node::Line("import math".into()),
            Node::Line("let chk = 0".into()),
        ];
        self.declare("chk", Kind::Num, true);
        for _ in 0..1 + self.below(3) {
            let kind = self.any_kind();
            let name = self.fresh("g");
            let e = self.expr(kind, 2);
            out.push(Node::Line(format!("let {name} = {e}")));
            self.declare(&name, kind, true);
        }
        for _ in 0..self.below(3) {
            out.extend(self.struct_def());
        }
        for _ in 0..1 + self.below(5) {
            out.push(self.func_def());
        }
        self.scopes.push(Vec::new());
        let globals: Vec<String> = self.scopes[0].iter().map(|v| v.name.clone()).collect();
        for _ in 0..4 + self.below(10) {
            if let Some(s) = self.stmt() {
                out.push(s);
            }
        }
        out.push(self.driver());
        out.push(Node::Line(format!("print({})", globals.join(", "))));
        out
    }

    fn any_kind(&mut self) -> Kind {
        let objs = self.structs.len() as u32;
        match self.below(10 + objs.min(1)) {
            0 => Kind::Int,
            1 => Kind::Float,
            2 | 3 => Kind::Num,
            4 => Kind::Str,
            5 => Kind::Bool,
            6 => Kind::Arr,
            7 => Kind::Map,
            8 => Kind::Any,
            9 => Kind::Fun,
            _ => Kind::Obj(self.below(objs) as usize),
        }
    }

    /// A struct with a number, a string and an array field, and methods on the number.
    fn struct_def(&mut self) -> Vec<Node> {
        let index = self.structs.len();
        let name = format!("S{index}");
        let mut methods = vec![Method {
            name: "get".into(),
            takes_arg: false,
            cost: 1,
        }];
        let mut lines = vec![Node::Line("fn get(self) { return self.f0 }".into())];
        if self.chance(70) {
            lines.push(Node::Line(
                "fn add(self, n) { self.f0 = self.f0 + n; return self.f0 }".into(),
            ));
            methods.push(Method {
                name: "add".into(),
                takes_arg: true,
                cost: 2,
            });
        }
        self.structs.push(Struct {
            name: name.clone(),
            methods,
        });
        if self.chance(50) {
            // A method with a generated body, which sees `self` (and may call the methods
            // above, not itself).
            let (node, cost) = self.function_returning("fn mix(self, n) {", Kind::Num, |g| {
                g.declare("self", Kind::Obj(index), false);
                g.declare("n", Kind::Num, true);
            });
            lines.push(node);
            self.structs[index].methods.push(Method {
                name: "mix".into(),
                takes_arg: true,
                cost,
            });
        }
        let f2 = if self.below(2) == 0 { "[]" } else { "[1, 2.5]" };
        vec![
            Node::Line(format!("struct {name} {{ f0 = 0, f1 = \"s\", f2 = {f2} }}")),
            Node::block(format!("impl {name} {{"), lines),
        ]
    }

    /// A top-level function over numbers, strings, arrays and anything, or a bounded
    /// recursive one.
    fn func_def(&mut self) -> Node {
        let name = format!("f{}", self.funcs.len());
        if self.chance(15) {
            let text = format!(
                "fn {name}(n) {{ if n < 2 {{ return n }} return {name}(n - 1) + {name}(n - 2) }}"
            );
            self.funcs.push(Func {
                name,
                params: vec![Kind::Int],
                required: 1,
                ret: Kind::Num,
                // fib(10) makes 177 calls; callers pass `% 11`.
                cost: 180,
            });
            return Node::Line(text);
        }
        let nparams = self.below(4) as usize;
        let mut params = Vec::new();
        let mut text = Vec::new();
        let mut required = nparams;
        for i in 0..nparams {
            let kind = match self.below(6) {
                0..=2 => Kind::Num,
                3 => Kind::Any,
                4 => Kind::Str,
                _ => Kind::Arr,
            };
            let mut p = format!("p{i}");
            if kind == Kind::Num && self.chance(25) {
                // An int argument is converted to float: a guard the JIT may rely on.
                p.push_str(": float");
            }
            // Once one parameter has a default, the ones after it need one too.
            if required < nparams || self.chance(20) {
                required = required.min(i);
                p.push_str(match kind {
                    Kind::Num => " = 2",
                    Kind::Str => " = \"d\"",
                    Kind::Arr => " = []",
                    _ => " = nil",
                });
            }
            params.push(kind);
            text.push(p);
        }
        let ret = match self.below(5) {
            0..=2 => Kind::Num,
            3 => Kind::Str,
            _ => Kind::Any,
        };
        let open = format!("fn {name}({}) {{", text.join(", "));
        let kinds = params.clone();
        let (node, cost) = self.function_returning(&open, ret, |g| {
            for (i, k) in kinds.iter().enumerate() {
                // `Any` parameters may receive nil from their default.
                g.declare(&format!("p{i}"), *k, true);
            }
        });
        self.funcs.push(Func {
            name,
            params,
            required,
            ret,
            cost,
        });
        node
    }

    /// A function body in its own scope (seeing only module variables and `params`),
    /// returning a value of kind `ret`; also returns the body's cost.
    fn function_returning(
        &mut self,
        open: &str,
        ret: Kind,
        params: impl FnOnce(&mut Self),
    ) -> (Node, u64) {
        let saved = (
            self.floor,
            self.mult,
            self.spent,
            self.budget,
            self.loops,
            self.tries,
        );
        let saved_in_fn = self.in_fn;
        self.floor = self.scopes.len();
        self.scopes.push(Vec::new());
        params(self);
        (self.mult, self.spent, self.budget, self.loops, self.tries) = (1, 0, FN_BUDGET, 0, 0);
        self.in_fn = true;
        let mut body = self.body(4);
        let value = self.expr(ret, 2);
        body.push(Node::Line(if self.below(2) == 0 {
            format!("return {value}")
        } else {
            // The body's value is its last expression.
            bare(value)
        }));
        let cost = self.spent.max(1);
        self.scopes.pop();
        self.in_fn = saved_in_fn;
        (
            self.floor,
            self.mult,
            self.spent,
            self.budget,
            self.loops,
            self.tries,
        ) = saved;
        (Node::block(open, body), cost)
    }

    /// The hot loop at the end: calls every function with arguments that change type
    /// halfway, so compiled code meets values its guards did not expect.
    fn driver(&mut self) -> Node {
        let n = 50 + self.below(400) as u64;
        let it = self.fresh("it");
        self.scopes.push(vec![Var {
            name: it.clone(),
            kind: Kind::Int,
            assignable: false,
        }]);
        let saved = (self.mult, self.spent, self.budget);
        (self.mult, self.spent, self.budget) = (n, 0, WORK_BUDGET);
        let mut body = Vec::new();
        for i in 0..self.funcs.len() {
            if let Some(call) = self.call_func(i, Some(&it)) {
                body.push(Node::Line(format!("chk = chk + len(str({call}))")));
            }
        }
        for _ in 0..self.below(3) {
            body.extend(self.stmt());
        }
        (self.mult, self.spent, self.budget) = saved;
        self.scopes.pop();
        Node::Block {
            open: format!("for {it} in 0..{n} {{"),
            bodies: vec![(body, "}".into())],
        }
    }

    // ----- statements -----------------------------------------------------------------

    fn stmt(&mut self) -> Option<Node> {
        if !self.afford(1) {
            return None;
        }
        let nest = self.depth < 4;
        let weights = [
            18,                                      // 0 let
            15,                                      // 1 assign
            8,                                       // 2 print or checksum
            if nest { 8 } else { 0 },                // 3 if
            if nest { 7 } else { 0 },                // 4 for range
            if nest { 4 } else { 0 },                // 5 for in
            if nest { 3 } else { 0 },                // 6 while / loop
            if nest { 5 } else { 0 },                // 7 try
            6,                                       // 8 array
            4,                                       // 9 map / field
            4,                                       // 10 call
            if self.loops > 0 { 3 } else { 0 },      // 11 break / continue
            3,                                       // 12 defer
            if self.tries > 0 { 3 } else { 1 },      // 13 throw / risky
            if nest && !self.in_fn { 2 } else { 0 }, // 14 templates
        ];
        Some(match self.weighted(&weights) {
            0 => self.let_stmt(),
            1 => self.assign()?,
            2 => self.output(),
            3 => self.if_stmt(),
            4 => self.for_range(),
            5 => self.for_in()?,
            6 => self.while_loop(),
            7 => self.try_stmt(),
            8 => self.array_stmt()?,
            9 => self.map_or_field()?,
            10 => {
                let e = self.expr(Kind::Any, 3);
                Node::Line(bare(e))
            }
            11 => self.break_continue(),
            12 => self.defer(),
            13 => self.risky_stmt(),
            _ => self.template(),
        })
    }

    fn let_stmt(&mut self) -> Node {
        let kind = self.any_kind();
        let name = self.fresh("v");
        let e = self.expr(kind, 3);
        let e = self.cut(kind, e);
        self.declare(&name, kind, true);
        Node::Line(format!("let {name} = {e}"))
    }

    /// Strings and arrays computed from variables are cut to a fixed length, so no loop
    /// can grow them exponentially.
    fn cut(&mut self, kind: Kind, e: String) -> String {
        match kind {
            Kind::Str | Kind::Arr => format!("({e}).slice(0, {})", STR_CUT),
            _ => e,
        }
    }

    fn assign(&mut self) -> Option<Node> {
        let (name, kind) = {
            let vars: Vec<(String, Kind)> = self
                .visible()
                .filter(|v| v.assignable)
                .map(|v| (v.name.clone(), v.kind))
                .collect();
            if vars.is_empty() {
                return None;
            }
            vars[self.below(vars.len() as u32) as usize].clone()
        };
        let op = match kind {
            Kind::Int | Kind::Num | Kind::Float if self.below(3) == 0 => {
                let op = self.one_of(&["+=", "-=", "*="]);
                let want = if kind == Kind::Num { Kind::Num } else { kind };
                let e = self.expr(want, 2);
                return Some(Node::Line(format!("{name} {op} {e}")));
            }
            Kind::Any => {
                // Change the type: the point of `Any` variables.
                let k = self.any_kind();
                self.expr(k, 2)
            }
            _ => self.expr(kind, 3),
        };
        let op = self.cut(kind, op);
        Some(Node::Line(format!("{name} = {op}")))
    }

    fn output(&mut self) -> Node {
        if self.mult <= PRINT_LIMIT {
            let n = 1 + self.below(3);
            let parts: Vec<String> = (0..n).map(|_| self.expr(Kind::Any, 2)).collect();
            Node::Line(format!("print({})", parts.join(", ")))
        } else {
            let e = self.expr(Kind::Num, 3);
            Node::Line(format!("chk = chk + {e}"))
        }
    }

    fn cond(&mut self) -> String {
        self.expr(Kind::Bool, 3)
    }

    fn if_stmt(&mut self) -> Node {
        let c = self.cond();
        let then = self.body(3);
        if self.below(2) == 0 {
            return Node::block(format!("if {c} {{"), then);
        }
        let other = self.body(3);
        Node::Block {
            open: format!("if {c} {{"),
            bodies: vec![(then, "} else {".into()), (other, "}".into())],
        }
    }

    /// Runs `f` as a loop body of `n` iterations.
    fn in_loop<T>(&mut self, n: u64, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = self.mult;
        self.mult = self.mult.saturating_mul(n);
        self.loops += 1;
        let out = f(self);
        self.loops -= 1;
        self.mult = saved;
        out
    }

    /// An iteration count the budget can pay for: small often, hot sometimes.
    fn trips(&mut self) -> u64 {
        let room = (self.budget.saturating_sub(self.spent) / self.mult.max(1) / 4).max(1);
        let n = match self.below(4) {
            0 => 1 + self.below(4) as u64,
            1 | 2 => 5 + self.below(40) as u64,
            _ => 100 + self.below(1500) as u64,
        };
        n.min(room)
    }

    /// A body of about `size` statements that also sees `vars` (loop variables).
    fn body_with(&mut self, vars: Vec<Var>, size: u32) -> Vec<Node> {
        self.scopes.push(vars);
        let b = self.body(size);
        self.scopes.pop();
        b
    }

    fn for_range(&mut self) -> Node {
        let n = self.trips();
        let i = self.fresh("i");
        let (lo, hi) = match self.below(3) {
            0 => ("0".to_owned(), format!("{n}")),
            1 => ("-3".to_owned(), format!("{}", n as i64 - 3)),
            _ => ("1".to_owned(), format!("={n}")),
        };
        let body = self.in_loop(n, |g| g.body_with(vec![Var::fixed(&i, Kind::Int)], 5));
        Node::block(format!("for {i} in {lo}..{hi} {{"), body)
    }

    fn for_in(&mut self) -> Option<Node> {
        // (collection, what `for k, v` binds to k and v, what `for x` binds to x)
        let (what, key, value, single) = match self.below(3) {
            0 => (self.var_of(Kind::Arr)?, Kind::Int, Kind::Num, Kind::Num),
            1 => (self.var_of(Kind::Map)?, Kind::Any, Kind::Num, Kind::Any),
            _ => (self.var_of(Kind::Str)?, Kind::Int, Kind::Str, Kind::Str),
        };
        let (k, v) = (self.fresh("k"), self.fresh("x"));
        let both = self.below(2) == 0;
        // Collections stay below `CAP`, strings below `STR_CUT` bytes (plus what one
        // statement adds).
        let body = self.in_loop(u64::from(CAP) * 2, |g| {
            let scope = if both {
                vec![Var::fixed(&v, value), Var::fixed(&k, key)]
            } else {
                vec![Var::fixed(&k, single)]
            };
            g.body_with(scope, 4)
        });
        let bind = if both { format!("{k}, {v}") } else { k };
        Some(Node::block(format!("for {bind} in {what} {{"), body))
    }

    fn while_loop(&mut self) -> Node {
        let n = self.trips();
        let w = self.fresh("w");
        let body = self.in_loop(n, |g| g.body_with(vec![Var::fixed(&w, Kind::Int)], 4));
        // The count goes on the loop's first line, so the minimiser cannot remove it
        // without removing the loop (and make a program that never ends).
        let open = if self.below(2) == 0 {
            format!("while {w} < {n} {{ {w} += 1")
        } else {
            format!("loop {{ if {w} >= {n} {{ break }}; {w} += 1")
        };
        Node::block(
            "{",
            vec![Node::Line(format!("let {w} = 0")), Node::block(open, body)],
        )
    }

    fn try_stmt(&mut self) -> Node {
        self.tries += 1;
        let body = self.body(4);
        self.tries -= 1;
        let e = self.fresh("e");
        self.scopes.push(vec![Var {
            name: e.clone(),
            kind: Kind::Any,
            assignable: false,
        }]);
        let mut handler = vec![if self.mult <= PRINT_LIMIT {
            Node::Line(format!("print(\"caught\", {e})"))
        } else {
            Node::Line(format!("chk = chk + len(str({e}))"))
        }];
        handler.extend(self.body(2));
        self.scopes.pop();
        Node::Block {
            open: "try {".into(),
            bodies: vec![(body, format!("}} catch {e} {{")), (handler, "}".into())],
        }
    }

    fn array_stmt(&mut self) -> Option<Node> {
        let a = self.var_of(Kind::Arr)?;
        let x = self.expr(Kind::Num, 2);
        Some(Node::Line(match self.below(8) {
            0 => format!("if len({a}) < {CAP} {{ {a}.push({x}) }}"),
            1 => {
                let i = self.expr(Kind::Int, 2);
                format!("if len({a}) > 0 {{ {a}[{i} % len({a})] = {x} }}")
            }
            2 => format!("{a}.pop()"),
            3 => format!("{a}.sort()"),
            4 => format!("{a}.reverse()"),
            5 => format!("if len({a}) < {CAP} {{ {a}.insert(0, {x}) }}"),
            6 => format!("{a}.sort_by(|l, r| r - l)"),
            _ => format!("if len({a}) > 1 {{ {a}.remove(1) }}"),
        }))
    }

    fn map_or_field(&mut self) -> Option<Node> {
        if self.below(3) == 0 {
            let o = self.var_where(|v| matches!(v.kind, Kind::Obj(_)))?;
            let x = self.expr(Kind::Num, 2);
            return Some(Node::Line(format!("{o}.f0 = {x}")));
        }
        let m = self.var_of(Kind::Map)?;
        let k = self.one_of(KEYS);
        let x = self.expr(Kind::Num, 2);
        Some(Node::Line(match self.below(3) {
            0 => format!("{m}[{k}] = {x}"),
            1 => format!("{m}.remove({k})"),
            _ => format!("{m}.{} = {x}", self.one_of(&["a", "b", "z"])),
        }))
    }

    fn break_continue(&mut self) -> Node {
        let c = self.cond();
        let word = if self.below(2) == 0 {
            "break"
        } else {
            "continue"
        };
        Node::Line(format!("if {c} {{ {word} }}"))
    }

    fn defer(&mut self) -> Node {
        let word = if self.below(3) == 0 {
            "errdefer"
        } else {
            "defer"
        };
        if self.mult <= PRINT_LIMIT {
            let e = self.expr(Kind::Any, 2);
            Node::Line(format!("{word} print(\"deferred\", {e})"))
        } else {
            Node::Line(format!("{word} chk = chk + 1"))
        }
    }

    /// A statement that may fail: inside `try` often, elsewhere rarely (the program then
    /// ends with an uncaught error, whose report must agree in every mode too).
    fn risky_stmt(&mut self) -> Node {
        let c = self.cond();
        match self.below(3) {
            0 => {
                let e = self.expr(Kind::Any, 2);
                Node::Line(format!("if {c} {{ throw error(\"boom \" + str({e})) }}"))
            }
            1 => {
                let e = self.expr(Kind::Any, 2);
                Node::Line(format!("if {c} {{ throw {e} }}"))
            }
            _ => {
                let e = self.risky();
                Node::Line(format!("chk = chk + len(str({e}))"))
            }
        }
    }

    /// An expression that may raise a runtime error.
    fn risky(&mut self) -> String {
        let x = self.expr(Kind::Num, 2);
        let y = self.expr(Kind::Any, 2);
        match self.below(7) {
            0 => format!("({x} ~/ {})", self.expr(Kind::Int, 1)),
            1 => format!("({x} % {})", self.expr(Kind::Int, 1)),
            2 => format!("int({x})"),
            3 => format!("({y} + {x})"),
            4 => format!("({y} < {x})"),
            5 => match self.var_of(Kind::Arr) {
                Some(a) => format!("{a}[{}]", self.expr(Kind::Int, 1)),
                None => format!("[1, 2][{}]", self.expr(Kind::Int, 1)),
            },
            _ => {
                if self.funcs.is_empty() {
                    return format!("{y}.nope");
                }
                let f = self.below(self.funcs.len() as u32) as usize;
                let n = self.funcs[f].params.len() + 1;
                let args = vec!["1"; n].join(", ");
                format!("{}({args})", self.funcs[f].name)
            }
        }
    }

    /// Fixed shapes the grammar would rarely hit: per-iteration captures, a counter
    /// closure over a mutable cell, defers and errdefers unwinding a failed call.
    fn template(&mut self) -> Node {
        let a = self.fresh("t");
        let n = 1 + self.below(6);
        let x = self.expr(Kind::Num, 1);
        match self.below(3) {
            0 => Node::block(
                "{",
                vec![
                    Node::Line(format!("let {a} = []")),
                    Node::Line(format!("for i in 0..{n} {{ {a}.push(|| i * 2 + {x}) }}")),
                    Node::Line(format!("print({a}.map(|f| f()))")),
                ],
            ),
            1 => Node::block(
                "{",
                vec![
                    Node::Line(format!(
                        "fn mk{a}() {{ let c = 0; return || {{ c += 1; c }} }}"
                    )),
                    Node::Line(format!("let {a} = mk{a}()")),
                    Node::Line(format!("for i in 0..{n} {{ {a}() }}")),
                    Node::Line(format!("print({a}(), mk{a}()())")),
                ],
            ),
            _ => Node::block(
                "{",
                vec![
                    Node::block(
                        format!("fn d{a}(x) {{"),
                        vec![
                            Node::Line("defer print(\"d1\", x)".into()),
                            Node::Line("errdefer print(\"e1\")".into()),
                            Node::Line("if x > 2 { throw error(\"big \" + str(x)) }".into()),
                            Node::Line("return x".into()),
                        ],
                    ),
                    Node::Line(format!(
                        "for i in 0..{n} {{ try {{ print(d{a}(i)) }} catch e {{ print(e.message) }} }}"
                    )),
                ],
            ),
        }
    }

    // ----- expressions ----------------------------------------------------------------

    fn expr(&mut self, kind: Kind, d: u32) -> String {
        if d == 0 {
            return self.leaf(kind);
        }
        match kind {
            Kind::Int => self.int_expr(d),
            Kind::Float => self.float_expr(d),
            Kind::Num => self.num_expr(d),
            Kind::Str => self.str_expr(d),
            Kind::Bool => self.bool_expr(d),
            Kind::Arr => self.arr_expr(d),
            Kind::Map => self.map_expr(d),
            Kind::Obj(s) => self.obj_expr(s, d),
            Kind::Fun => self.fun_expr(d),
            Kind::Any => {
                if self.below(3) == 0 {
                    if let Some(v) = self.var_of(Kind::Any) {
                        return v;
                    }
                }
                let k = self.any_kind();
                self.expr(k, d - 1)
            }
        }
    }

    /// A literal or a variable of `kind`.
    fn leaf(&mut self, kind: Kind) -> String {
        if self.below(2) == 1 {
            if let Some(v) = self.var_of(kind) {
                return v;
            }
        }
        match kind {
            Kind::Int => self.int_lit(),
            Kind::Float => self.one_of(FLOATS).to_owned(),
            Kind::Num | Kind::Any => {
                if self.below(2) == 0 {
                    self.int_lit()
                } else {
                    self.one_of(FLOATS).to_owned()
                }
            }
            Kind::Str => format!("\"{}\"", self.one_of(WORDS)),
            Kind::Bool => self.one_of(&["true", "false"]).to_owned(),
            Kind::Arr => "[]".into(),
            Kind::Map => "{}".into(),
            // Parenthesised: `Name {` in an `if` header is not a struct literal.
            Kind::Obj(s) => format!("({} {{}})", self.structs[s].name),
            Kind::Fun => "|x| x".into(),
        }
    }

    fn int_lit(&mut self) -> String {
        match self.below(10) {
            0..=6 => self.below(10).to_string(),
            7 => (self.below(1000) as i64 - 500).to_string(),
            8 => "9223372036854775807".into(),
            _ => "(-9223372036854775807 - 1)".into(),
        }
    }

    fn int_expr(&mut self, d: u32) -> String {
        let d1 = d - 1;
        match self.below(9) {
            0 | 1 => self.leaf(Kind::Int),
            2 | 3 => {
                let op = self.one_of(&["+", "-", "*", "&", "|", "^", "<<", ">>"]);
                let (a, b) = (self.expr(Kind::Int, d1), self.expr(Kind::Int, d1));
                format!("({a} {op} {b})")
            }
            4 => {
                let op = self.one_of(&["~/", "%"]);
                let a = self.expr(Kind::Int, d1);
                format!("({a} {op} {})", 1 + self.below(9))
            }
            5 => format!("len({})", self.expr(Kind::Str, d1)),
            6 => match self.var_of(Kind::Arr) {
                Some(a) => format!("len({a})"),
                None => format!("({}).len()", self.expr(Kind::Str, d1)),
            },
            7 => {
                let (c, a, b) = (
                    self.expr(Kind::Bool, d1),
                    self.expr(Kind::Int, d1),
                    self.expr(Kind::Int, d1),
                );
                format!("(if {c} {{ {a} }} else {{ {b} }})")
            }
            _ => {
                let a = self.expr(Kind::Int, d1);
                format!("({a} ** {})", self.below(4))
            }
        }
    }

    fn float_expr(&mut self, d: u32) -> String {
        let d1 = d - 1;
        match self.below(6) {
            0 | 1 => self.leaf(Kind::Float),
            2 => {
                let (a, b) = (self.expr(Kind::Num, d1), self.expr(Kind::Num, d1));
                format!("({a} / {b})")
            }
            3 => {
                let op = self.one_of(&["+", "-", "*"]);
                let (a, b) = (self.expr(Kind::Float, d1), self.expr(Kind::Num, d1));
                format!("({a} {op} {b})")
            }
            4 => {
                let f = self.one_of(&["sqrt", "sin", "cos", "exp", "log"]);
                let a = self.expr(Kind::Num, d1);
                format!("math.{f}(math.abs({a}) + 0.5)")
            }
            _ => format!("float({})", self.expr(Kind::Int, d1)),
        }
    }

    fn num_expr(&mut self, d: u32) -> String {
        let d1 = d - 1;
        match self.below(12) {
            0 => self.leaf(Kind::Num),
            1 => self.expr(Kind::Int, d1),
            2 => self.expr(Kind::Float, d1),
            3 | 4 => {
                let op = self.one_of(&["+", "-", "*"]);
                let (a, b) = (self.expr(Kind::Num, d1), self.expr(Kind::Num, d1));
                format!("({a} {op} {b})")
            }
            5 => {
                let op = self.one_of(&["~/", "%"]);
                let a = self.expr(Kind::Num, d1);
                let b = self.one_of(&["3", "7", "2.5", "-4"]);
                format!("({a} {op} {b})")
            }
            6 => match self.var_of(Kind::Arr) {
                Some(a) => {
                    let i = self.expr(Kind::Int, d1);
                    format!("(if len({a}) > 0 {{ {a}[{i} % len({a})] }} else {{ 0 }})")
                }
                None => self.leaf(Kind::Num),
            },
            7 => match self.var_of(Kind::Map) {
                Some(m) => format!("{m}.get({}, 1)", self.one_of(KEYS)),
                None => self.leaf(Kind::Num),
            },
            8 => self
                .call(Kind::Num, d1)
                .unwrap_or_else(|| self.leaf(Kind::Num)),
            9 => {
                let f = self.one_of(&["math.max", "math.min", "math.abs"]);
                let a = self.expr(Kind::Num, d1);
                if f == "math.abs" {
                    format!("{f}({a})")
                } else {
                    format!("{f}({a}, {})", self.expr(Kind::Num, d1))
                }
            }
            10 => match self.var_of(Kind::Arr) {
                Some(a) => format!("{a}.reduce(|s, x| s + x, 0)"),
                None => self.leaf(Kind::Num),
            },
            _ => {
                let (c, a, b) = (
                    self.expr(Kind::Bool, d1),
                    self.expr(Kind::Num, d1),
                    self.expr(Kind::Num, d1),
                );
                format!("(if {c} {{ {a} }} else {{ {b} }})")
            }
        }
    }

    fn str_expr(&mut self, d: u32) -> String {
        let d1 = d - 1;
        match self.below(10) {
            0 | 1 => self.leaf(Kind::Str),
            2 => {
                let (a, b) = (self.expr(Kind::Str, d1), self.expr(Kind::Any, d1));
                format!("({a} + {b})")
            }
            3 => format!("\"<${{{}}}>\"", self.expr(Kind::Any, d1)),
            4 => format!("str({})", self.expr(Kind::Any, d1)),
            5 => {
                let m = self.one_of(&[
                    "upper()",
                    "lower()",
                    "trim()",
                    "replace(\"a\", \"xy\")",
                    "repeat(2)",
                    "slice(1, 3)",
                ]);
                format!("({}).{m}", self.expr(Kind::Str, d1))
            }
            6 => format!("type({})", self.expr(Kind::Any, d1)),
            7 => match self.var_of(Kind::Arr) {
                Some(a) => format!("{a}.join(\",\")"),
                None => format!("({}).split(\" \").join(\"+\")", self.expr(Kind::Str, d1)),
            },
            8 => format!("({}).to_fixed({})", self.expr(Kind::Num, d1), self.below(4)),
            _ => self
                .call(Kind::Str, d1)
                .unwrap_or_else(|| self.leaf(Kind::Str)),
        }
    }

    fn bool_expr(&mut self, d: u32) -> String {
        let d1 = d - 1;
        match self.below(9) {
            0 => self.leaf(Kind::Bool),
            1 | 2 => {
                let op = self.one_of(&["<", "<=", ">", ">=", "==", "!="]);
                let (a, b) = (self.expr(Kind::Num, d1), self.expr(Kind::Num, d1));
                format!("({a} {op} {b})")
            }
            3 => {
                let (a, b) = (self.expr(Kind::Any, d1), self.expr(Kind::Any, d1));
                format!("({a} == {b})")
            }
            4 => format!("!{}", self.expr(Kind::Bool, d1)),
            5 => {
                let op = self.one_of(&["&&", "||"]);
                let (a, b) = (self.expr(Kind::Bool, d1), self.expr(Kind::Bool, d1));
                format!("({a} {op} {b})")
            }
            6 => {
                let m = self.one_of(&["contains", "starts_with", "ends_with"]);
                let (s, t) = (self.expr(Kind::Str, d1), self.one_of(WORDS));
                format!("({s}).{m}(\"{t}\")")
            }
            7 => match self.var_of(Kind::Map) {
                Some(m) => format!("{m}.has({})", self.one_of(KEYS)),
                None => self.leaf(Kind::Bool),
            },
            _ => {
                let x = self.expr(Kind::Num, d1);
                let t = self.one_of(&["int", "float", "str", "nil"]);
                format!("(type({x}) == \"{t}\")")
            }
        }
    }

    fn arr_expr(&mut self, d: u32) -> String {
        let d1 = d - 1;
        match self.below(6) {
            0 => self.leaf(Kind::Arr),
            1 | 2 => {
                let n = self.below(5);
                let xs: Vec<String> = (0..n).map(|_| self.expr(Kind::Num, d1)).collect();
                format!("[{}]", xs.join(", "))
            }
            3 => {
                let a = self.expr(Kind::Arr, d1);
                let f = self.fun_expr(d1);
                format!("({a}).map({f})")
            }
            4 => {
                let a = self.expr(Kind::Arr, d1);
                let x = self.expr(Kind::Num, d1);
                format!("({a}).filter(|x| x < {x})")
            }
            _ => {
                let (a, b) = (self.expr(Kind::Arr, d1), self.expr(Kind::Arr, d1));
                format!("({a} + {b}).slice(0, {CAP})")
            }
        }
    }

    fn map_expr(&mut self, d: u32) -> String {
        if self.below(3) == 0 {
            return self.leaf(Kind::Map);
        }
        let n = self.below(4);
        let entries: Vec<String> = (0..n)
            .map(|_| {
                let k = self.one_of(KEYS);
                let v = self.expr(Kind::Num, d - 1);
                format!("{k}: {v}")
            })
            .collect();
        format!("{{{}}}", entries.join(", "))
    }

    fn obj_expr(&mut self, s: usize, d: u32) -> String {
        if self.below(3) == 0 {
            return self.leaf(Kind::Obj(s));
        }
        let f0 = self.expr(Kind::Num, d - 1);
        let name = self.structs[s].name.clone();
        if self.below(2) == 0 {
            format!("({name} {{ f0: {f0} }})")
        } else {
            // Cut, or a loop nesting the struct's display in its own field grows it
            // exponentially (each level escapes the quotes of the one inside).
            let f1 = self.expr(Kind::Str, d - 1);
            let f1 = self.cut(Kind::Str, f1);
            format!("({name} {{ f1: {f1}, f0: {f0} }})")
        }
    }

    /// A closure from a number to a number, capturing what is in scope.
    fn fun_expr(&mut self, d: u32) -> String {
        if let Some(v) = self.var_of(Kind::Fun).filter(|_| self.below(2) == 0) {
            return v;
        }
        let x = self.fresh("x");
        self.scopes.push(vec![Var {
            name: x.clone(),
            kind: Kind::Num,
            assignable: false,
        }]);
        let body = self.expr(Kind::Num, d.min(2));
        self.scopes.pop();
        format!("|{x}| {body}")
    }

    /// A call of a function, method or closure giving `want`, if one is affordable.
    fn call(&mut self, want: Kind, d: u32) -> Option<String> {
        match self.below(3) {
            0 => {
                let candidates: Vec<usize> = (0..self.funcs.len())
                    .filter(|&i| self.funcs[i].ret.fits(want))
                    .collect();
                if candidates.is_empty() {
                    return None;
                }
                let i = candidates[self.below(candidates.len() as u32) as usize];
                self.call_func(i, None)
            }
            1 if Kind::Num.fits(want) => {
                let o = self.var_where(|v| matches!(v.kind, Kind::Obj(_)))?;
                let s = self
                    .visible()
                    .find(|v| v.name == o)
                    .and_then(|v| match v.kind {
                        Kind::Obj(s) => Some(s),
                        _ => None,
                    })?;
                let m = self.below(self.structs[s].methods.len() as u32) as usize;
                let (name, takes_arg, cost) = {
                    let m = &self.structs[s].methods[m];
                    (m.name.clone(), m.takes_arg, m.cost)
                };
                if !self.afford(cost) {
                    return None;
                }
                let arg = if takes_arg {
                    self.expr(Kind::Num, d)
                } else {
                    String::new()
                };
                Some(format!("{o}.{name}({arg})"))
            }
            _ if want == Kind::Num => {
                let f = self.fun_expr(d);
                let a = self.expr(Kind::Num, d);
                Some(format!("({f})({a})"))
            }
            _ => None,
        }
    }

    /// A call of function `i`; in the driver loop (`phase` names its counter) number
    /// arguments are ints in the first half and floats after, `Any` ones change type.
    fn call_func(&mut self, i: usize, phase: Option<&str>) -> Option<String> {
        if !self.afford(self.funcs[i].cost) {
            return None;
        }
        let params = self.funcs[i].params.clone();
        let required = self.funcs[i].required;
        let n = required + self.below((params.len() - required) as u32 + 1) as usize;
        let args: Vec<String> = params[..n]
            .iter()
            .map(|&k| match (k, phase) {
                (Kind::Int, _) => format!("({} % 11)", self.expr(Kind::Int, 1)),
                (Kind::Num, Some(it)) => {
                    format!(
                        "(if {it} < {} {{ {it} }} else {{ {it} * 0.5 }})",
                        10 + self.below(200)
                    )
                }
                (Kind::Any, Some(it)) => {
                    format!("(if {it} % 3 == 0 {{ \"s\" + str({it}) }} else {{ {it} }})")
                }
                (k, _) => self.expr(k, 2),
            })
            .collect();
        Some(format!("{}({})", self.funcs[i].name, args.join(", ")))
    }
}

/// `e` as an expression statement: a `{` that starts a statement opens a block, so a map
/// literal there goes in parentheses.
fn bare(e: String) -> String {
    if e.starts_with('{') {
        format!("({e})")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;
    use crate::tree::render;

    #[test]
    fn a_seed_always_gives_the_same_program() {
        let a = render(&generate(&mut SplitMix::new(42)));
        let b = render(&generate(&mut SplitMix::new(42)));
        let c = render(&generate(&mut SplitMix::new(43)));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// A source that always says 0 (a fuzzer out of bytes) still gives a finished program.
    #[test]
    fn a_dry_source_still_ends() {
        struct Zero;
        impl Source for Zero {
            fn below(&mut self, _: u32) -> u32 {
                0
            }
        }
        let text = render(&generate(&mut Zero));
        assert!(text.starts_with("import math\n"));
        assert!(text.contains("for it"));
    }
}
