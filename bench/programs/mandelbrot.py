"""mandelbrot: escape-time count over an n*n grid, 50 iterations at most. Size: n (default 1000)."""
import sys


def mandelbrot(n):
    count = 0
    for y in range(n):
        ci = 2.0 * y / n - 1.0
        for x in range(n):
            cr = 2.0 * x / n - 1.5
            zr = 0.0
            zi = 0.0
            i = 0
            while i < 50:
                tr = zr * zr - zi * zi + cr
                zi = 2.0 * zr * zi + ci
                zr = tr
                if zr * zr + zi * zi > 4.0:
                    break
                i += 1
            if i == 50:
                count += 1
    return count


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(mandelbrot(n))


main()
