"""strings: append str(i) + ";" n times, join, count the "7"s character by character.

Size: n (default 1,000,000).
"""
import sys


def run(n):
    parts = []
    for i in range(n):
        parts.append(str(i) + ";")
    s = "".join(parts)
    sevens = 0
    for c in s:
        if c == "7":
            sevens += 1
    return len(s), sevens


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    length, sevens = run(n)
    print(length, sevens)


main()
