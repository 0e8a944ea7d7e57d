//! loop: an integer loop whose bound is read at run time so nothing folds. Size: n (default 100,000,000).

fn main() {
    let n: i64 = std::env::args().nth(1).map_or(100_000_000, |s| {
        s.parse().expect("the size must be an integer")
    });
    let mut s: i64 = 0;
    for i in 0..n {
        let x = i % 1_000_003;
        s += x * x % 7;
    }
    println!("{s}");
}
