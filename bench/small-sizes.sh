# The small sizes the instruction-count and compile-latency scripts run each benchmark
# at (sourced by bench/ab-instructions.sh and bench/compile-latency.sh).
# shellcheck disable=SC2034
declare -A SIZE=([fib]=22 [loop]=1000000 [mandelbrot]=120 [nbody]=10000 [spectralnorm]=80
                 [binarytrees]=10 [fannkuch]=7 [strings]=50000 [hashmap]=50000 [methods]=200000)
