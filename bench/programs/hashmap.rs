//! hashmap: insert keys `i*7919 mod 10000019` -> i for i in 1..=n, then look each up and sum.
//! Size: n (default 1,000,000).

use std::collections::HashMap;

fn main() {
    let n: i64 = std::env::args().nth(1).map_or(1_000_000, |s| {
        s.parse().expect("the size must be an integer")
    });
    let mut m = HashMap::new();
    for i in 1..=n {
        m.insert(i * 7919 % 10_000_019, i);
    }
    let mut sum = 0;
    for i in 1..=n {
        sum += m[&(i * 7919 % 10_000_019)];
    }
    println!("{} {sum}", m.len());
}
