"""methods: a method call on an object with fields, n times. Size: n (default 10,000,000)."""
import sys


class Counter:
    __slots__ = ("total", "step")

    def __init__(self):
        self.total = 0
        self.step = 3

    def add(self, x):
        self.total += x % self.step


def run(n):
    c = Counter()
    for i in range(n):
        c.add(i)
    return c.total


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000000
    print(run(n))


main()
