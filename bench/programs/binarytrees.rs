//! binarytrees: the Benchmarks Game binary trees, minimum depth 4. Size: maximum depth (default 16).

struct Node {
    children: Option<(Box<Node>, Box<Node>)>,
}

fn bottom_up(depth: i64) -> Box<Node> {
    if depth > 0 {
        Box::new(Node {
            children: Some((bottom_up(depth - 1), bottom_up(depth - 1))),
        })
    } else {
        Box::new(Node { children: None })
    }
}

fn check(node: &Node) -> i64 {
    match &node.children {
        Some((left, right)) => 1 + check(left) + check(right),
        None => 1,
    }
}

const MIN_DEPTH: i64 = 4;

fn main() {
    let n: i64 = std::env::args()
        .nth(1)
        .map_or(16, |s| s.parse().expect("the size must be an integer"));
    let max_depth = n.max(MIN_DEPTH + 2);
    let stretch = max_depth + 1;
    println!(
        "stretch tree of depth {stretch}\t check: {}",
        check(&bottom_up(stretch))
    );
    let long_lived = bottom_up(max_depth);
    let mut depth = MIN_DEPTH;
    while depth <= max_depth {
        let iterations = 1i64 << (max_depth - depth + MIN_DEPTH);
        let mut total = 0;
        for _ in 0..iterations {
            total += check(&bottom_up(depth));
        }
        println!("{iterations}\t trees of depth {depth}\t check: {total}");
        depth += 2;
    }
    println!(
        "long lived tree of depth {max_depth}\t check: {}",
        check(&long_lived)
    );
}
