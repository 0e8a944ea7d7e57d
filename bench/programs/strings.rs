//! strings: append `str(i) + ";"` n times, join, count the `7`s character by character.
//! Size: n (default 1,000,000).

fn main() {
    let n: i64 = std::env::args().nth(1).map_or(1_000_000, |s| {
        s.parse().expect("the size must be an integer")
    });
    let mut parts = Vec::new();
    for i in 0..n {
        parts.push(i.to_string() + ";");
    }
    let s = parts.join("");
    let mut sevens = 0;
    for c in s.chars() {
        if c == '7' {
            sevens += 1;
        }
    }
    println!("{} {sevens}", s.len());
}
