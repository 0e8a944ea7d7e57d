#!/usr/bin/env bash
# Before/after instruction counts of two kiln binaries on every benchmark at small
# sizes, under callgrind. Instruction counts repeat exactly on a noisy shared machine,
# so this is how hot-path changes report their effect:
#
#   cp target/release/kiln /tmp/kiln-before     # build the old version first
#   ... change, cargo build --release ...
#   bench/ab-instructions.sh /tmp/kiln-before target/release/kiln
#
# FILTER=nbody limits it to benchmarks whose name contains the word.
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2")
cd "$(dirname "$0")/programs"
# shellcheck source=bench/small-sizes.sh
source ../small-sizes.sh
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | awk '/Collected/ {print $4}'; }
printf "%-13s %14s %14s %7s\n" benchmark before after ratio
for b in fib loop mandelbrot nbody spectralnorm binarytrees fannkuch strings hashmap methods; do
  [[ -n "${FILTER:-}" && "$b" != *"$FILTER"* ]] && continue
  x=$(count "$A" run "$b.kn" "${SIZE[$b]}"); y=$(count "$B" run "$b.kn" "${SIZE[$b]}")
  printf "%-13s %14d %14d %7.3f\n" "$b" "$x" "$y" "$(echo "$y / $x" | bc -l)"
done
