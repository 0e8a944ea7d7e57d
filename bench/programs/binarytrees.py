"""binarytrees: the Benchmarks Game binary trees, minimum depth 4. Size: maximum depth (default 16).

A node is the tuple (left, right); a leaf is (None, None).
"""
import sys

MIN_DEPTH = 4


def bottom_up(depth):
    if depth > 0:
        return (bottom_up(depth - 1), bottom_up(depth - 1))
    return (None, None)


def check(node):
    left, right = node
    if left is None:
        return 1
    return 1 + check(left) + check(right)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    max_depth = max(n, MIN_DEPTH + 2)
    stretch = max_depth + 1
    print(f"stretch tree of depth {stretch}\t check: {check(bottom_up(stretch))}")
    long_lived = bottom_up(max_depth)
    for depth in range(MIN_DEPTH, max_depth + 1, 2):
        iterations = 1 << (max_depth - depth + MIN_DEPTH)
        total = 0
        for _ in range(iterations):
            total += check(bottom_up(depth))
        print(f"{iterations}\t trees of depth {depth}\t check: {total}")
    print(f"long lived tree of depth {max_depth}\t check: {check(long_lived)}")


main()
