//! Delta debugging over a program's statements: remove chunks of the top level, then single
//! statements anywhere, then replace blocks by one of their bodies, for as long as the
//! program still fails. Working on the tree keeps every candidate's braces balanced; a
//! candidate that no longer compiles simply does not fail the same way and is dropped.

use crate::tree::Node;

/// Shrinks `tree` while `fails` holds, and returns the smallest failing tree found.
/// `fails` should hold for `tree` itself.
pub fn minimise(mut tree: Vec<Node>, fails: &mut dyn FnMut(&[Node]) -> bool) -> Vec<Node> {
    loop {
        let before = crate::tree::count(&tree);
        tree = drop_chunks(tree, fails);
        tree = drop_and_unwrap(tree, fails);
        if crate::tree::count(&tree) == before {
            return tree;
        }
    }
}

/// ddmin's complement step on the top level: halves, quarters, ... down to pairs.
fn drop_chunks(mut tree: Vec<Node>, fails: &mut dyn FnMut(&[Node]) -> bool) -> Vec<Node> {
    let mut size = tree.len() / 2;
    while size >= 2 {
        let mut start = 0;
        while start < tree.len() {
            let end = (start + size).min(tree.len());
            let mut candidate = tree.clone();
            candidate.drain(start..end);
            if fails(&candidate) {
                tree = candidate;
            } else {
                start = end;
            }
        }
        size /= 2;
    }
    tree
}

/// Tries removing each statement (pre-order), and replacing each block by each of its
/// bodies.
fn drop_and_unwrap(mut tree: Vec<Node>, fails: &mut dyn FnMut(&[Node]) -> bool) -> Vec<Node> {
    let mut k = 0;
    while k < crate::tree::count(&tree) {
        let mut candidates = vec![edit(&tree, k, None)];
        candidates.extend((0..4).map(|body| edit(&tree, k, Some(body))));
        match candidates.into_iter().flatten().find(|c| fails(c)) {
            Some(smaller) => tree = smaller,
            None => k += 1,
        }
    }
    tree
}

/// A copy of `tree` with its `k`-th statement (pre-order) removed (`body` is `None`) or
/// replaced by the statements of its body number `body`; `None` if there is no such
/// statement or body.
fn edit(tree: &[Node], k: usize, body: Option<usize>) -> Option<Vec<Node>> {
    let mut copy = tree.to_vec();
    let mut k = k;
    edit_in(&mut copy, &mut k, body).then_some(copy)
}

fn edit_in(list: &mut Vec<Node>, k: &mut usize, body: Option<usize>) -> bool {
    let mut i = 0;
    while i < list.len() {
        if *k == 0 {
            let replacement = match (body, &list[i]) {
                (None, _) => Vec::new(),
                (Some(b), Node::Block { bodies, .. }) if b < bodies.len() => bodies[b].0.clone(),
                _ => return false,
            };
            list.splice(i..=i, replacement);
            return true;
        }
        *k -= 1;
        if let Node::Block { bodies, .. } = &mut list[i] {
            for (inner, _) in bodies {
                if edit_in(inner, k, body) {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::render;

    /// A program "fails" while it still prints 2 inside a loop: the minimiser must strip
    /// everything else, the `if` around the print included.
    #[test]
    fn keeps_only_what_the_failure_needs() {
        let line = |s: &str| Node::Line(s.into());
        let tree = vec![
            line("let a = 1"),
            line("print(1)"),
            Node::block(
                "for i in 0..3 {",
                vec![
                    line("let b = 2"),
                    Node::block("if true {", vec![line("print(2)"), line("print(3)")]),
                ],
            ),
            line("print(4)"),
        ];
        let mut fails = |t: &[Node]| {
            let text = render(t);
            text.contains("for i") && text.contains("  print(2)")
        };
        let small = minimise(tree, &mut fails);
        assert_eq!(render(&small), "for i in 0..3 {\n  print(2)\n}\n");
    }
}
