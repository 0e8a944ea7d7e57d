//! methods: a method call on an object with fields, n times. Size: n (default 10,000,000).

struct Counter {
    total: i64,
    step: i64,
}

impl Counter {
    fn add(&mut self, x: i64) {
        self.total += x % self.step;
    }
}

fn main() {
    let n: i64 = std::env::args().nth(1).map_or(10_000_000, |s| {
        s.parse().expect("the size must be an integer")
    });
    let mut c = Counter { total: 0, step: 3 };
    for i in 0..n {
        c.add(i);
    }
    println!("{}", c.total);
}
