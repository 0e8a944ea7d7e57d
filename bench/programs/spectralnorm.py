"""spectralnorm: the Benchmarks Game spectral norm, 10 power iterations. Size: n (default 1000)."""
import math
import sys


def a(i, j):
    return 1.0 / ((i + j) * (i + j + 1) // 2 + i + 1)


def mul_av(n, v, av):
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += a(i, j) * v[j]
        av[i] = s


def mul_atv(n, v, atv):
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += a(j, i) * v[j]
        atv[i] = s


def mul_atav(n, v, out, tmp):
    mul_av(n, v, tmp)
    mul_atv(n, tmp, out)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    u = [1.0] * n
    v = [0.0] * n
    tmp = [0.0] * n
    for _ in range(10):
        mul_atav(n, u, v, tmp)
        mul_atav(n, v, u, tmp)
    vbv = 0.0
    vv = 0.0
    for i in range(n):
        vbv += u[i] * v[i]
        vv += v[i] * v[i]
    print("%.9f" % math.sqrt(vbv / vv))


main()
