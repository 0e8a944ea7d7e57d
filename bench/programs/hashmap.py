"""hashmap: insert keys i*7919 mod 10000019 -> i for i in 1..n, then look each up and sum.

Size: n (default 1,000,000).
"""
import sys


def run(n):
    m = {}
    for i in range(1, n + 1):
        m[i * 7919 % 10000019] = i
    total = 0
    for i in range(1, n + 1):
        total += m[i * 7919 % 10000019]
    return len(m), total


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    count, total = run(n)
    print(count, total)


main()
