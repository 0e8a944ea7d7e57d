#!/usr/bin/env bash
# Compile latency of the JIT (issue 4's target: median under 2 ms for functions under
# 200 bytecode instructions): runs every benchmark at its small size with
# --jit=eager --jit-verbose, so every function is compiled, and reports the median,
# 90th percentile and maximum compile time from the verbose lines.
#
#   bench/compile-latency.sh [path/to/kiln]     # default target/release/kiln
set -euo pipefail
KILN=$(realpath "${1:-target/release/kiln}")
cd "$(dirname "$0")/programs"
# shellcheck source=bench/small-sizes.sh
source ../small-sizes.sh
for b in "${!SIZE[@]}"; do
  "$KILN" --jit=eager --jit-verbose "$b.kn" "${SIZE[$b]}" 2>&1 >/dev/null | grep '^jit: compiled' || true
done | python3 -c '
import re, statistics, sys
times = sorted(int(m.group(2)) for m in (re.search(r"(\d+) ops in (\d+) µs", l) for l in sys.stdin)
               if m and int(m.group(1)) < 200)
if not times:
    sys.exit("no compiles seen: is this kiln built with the JIT?")
print(f"{len(times)} compiles under 200 ops: median {statistics.median(times):.0f} µs, "
      f"p90 {times[int(len(times) * 0.9)]} µs, max {times[-1]} µs")
'
