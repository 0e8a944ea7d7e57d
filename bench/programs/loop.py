"""loop: an integer loop whose bound is read at run time. Size: n (default 100,000,000)."""
import sys


def run(n):
    s = 0
    for i in range(n):
        x = i % 1000003
        s += x * x % 7
    return s


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000000
    print(run(n))


main()
