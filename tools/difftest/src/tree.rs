//! Generated programs as a tree of lines and blocks, so the minimiser can drop whole
//! statements and unwrap blocks and every candidate it tries still has balanced braces.

/// One statement of a generated program.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A statement on one line.
    Line(String),
    /// A statement with nested bodies: `open` (`for i in 0..3 {`), then each body followed
    /// by its closing line (`} else {`, `} catch e {`, `}`).
    Block {
        open: String,
        bodies: Vec<(Vec<Node>, String)>,
    },
}

impl Node {
    /// A block with one body closed by `}`.
    pub fn block(open: impl Into<String>, body: Vec<Node>) -> Node {
        Node::Block {
            open: open.into(),
            bodies: vec![(body, "}".into())],
        }
    }
}

/// The program's source text, indented two spaces per level.
pub fn render(nodes: &[Node]) -> String {
    let mut out = String::new();
    render_into(nodes, 0, &mut out);
    out
}

fn render_into(nodes: &[Node], depth: usize, out: &mut String) {
    let indent = |out: &mut String, depth: usize| out.extend(std::iter::repeat_n("  ", depth));
    for node in nodes {
        match node {
            Node::Line(text) => {
                indent(out, depth);
                out.push_str(text);
                out.push('\n');
            }
            Node::Block { open, bodies } => {
                indent(out, depth);
                out.push_str(open);
                out.push('\n');
                for (body, close) in bodies {
                    render_into(body, depth + 1, out);
                    indent(out, depth);
                    out.push_str(close);
                    out.push('\n');
                }
            }
        }
    }
}

/// Statements in the tree, blocks included: the size the minimiser reports.
pub fn count(nodes: &[Node]) -> usize {
    nodes
        .iter()
        .map(|n| match n {
            Node::Line(_) => 1,
            Node::Block { bodies, .. } => 1 + bodies.iter().map(|(b, _)| count(b)).sum::<usize>(),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_blocks_with_their_closing_lines() {
        let tree = vec![
            Node::Line("let a = 1".into()),
            Node::Block {
                open: "if a > 0 {".into(),
                bodies: vec![
                    (vec![Node::Line("print(a)".into())], "} else {".into()),
                    (vec![], "}".into()),
                ],
            },
        ];
        assert_eq!(
            render(&tree),
            "let a = 1\nif a > 0 {\n  print(a)\n} else {\n}\n"
        );
        assert_eq!(count(&tree), 3);
    }
}
