//! The suite's single table: every benchmark with its full size (BENCHMARKS.md), its quick size
//! (`--quick`, CI, `tests/bench_scripts.rs`) and the exact output every twin must print at each.
//! The root package's `tests/bench_scripts.rs` includes this file by path, so the harness and that
//! test read the same sizes and outputs; keep it free of dependencies on the rest of the crate.
//!
//! Benchmark `<name>` has its programs at `bench/programs/<name>.{kn,lua,py,rs}`; each takes its
//! size as its first argument.

/// One size of a benchmark and the output every twin prints at that size.
pub struct Case {
    /// The size, passed to every twin as its first argument.
    pub size: u64,
    /// The expected standard output, line by line (each line ends with `\n` when printed).
    pub lines: &'static [&'static str],
}

impl Case {
    /// The exact standard output a correct twin prints.
    pub fn expected_stdout(&self) -> String {
        self.lines.iter().map(|line| format!("{line}\n")).collect()
    }
}

/// Keeps the table below one line per case (rustfmt would spread struct literals vertically).
const fn case(size: u64, lines: &'static [&'static str]) -> Case {
    Case { size, lines }
}

/// A benchmark of the suite.
pub struct Benchmark {
    /// File stem of its programs, and its name in every report.
    pub name: &'static str,
    /// The size used for published figures.
    pub full: Case,
    /// A small size for smoke checks: fast in every runtime, still exercising the whole program.
    pub quick: Case,
}

/// The ten benchmarks of BENCHMARKS.md, in the order reports list them.
pub const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        name: "fib",
        full: case(32, &["2178309"]),
        quick: case(20, &["6765"]),
    },
    Benchmark {
        name: "loop",
        full: case(100_000_000, &["199999900"]),
        quick: case(100_000, &["199999"]),
    },
    Benchmark {
        name: "mandelbrot",
        full: case(1000, &["396940"]),
        quick: case(100, &["3959"]),
    },
    Benchmark {
        name: "nbody",
        full: case(1_000_000, &["-0.169075164", "-0.169086185"]),
        quick: case(1000, &["-0.169075164", "-0.169087605"]),
    },
    Benchmark {
        name: "spectralnorm",
        full: case(1000, &["1.274224148"]),
        quick: case(100, &["1.274219991"]),
    },
    Benchmark {
        name: "binarytrees",
        full: case(
            16,
            &[
                "stretch tree of depth 17\t check: 262143",
                "65536\t trees of depth 4\t check: 2031616",
                "16384\t trees of depth 6\t check: 2080768",
                "4096\t trees of depth 8\t check: 2093056",
                "1024\t trees of depth 10\t check: 2096128",
                "256\t trees of depth 12\t check: 2096896",
                "64\t trees of depth 14\t check: 2097088",
                "16\t trees of depth 16\t check: 2097136",
                "long lived tree of depth 16\t check: 131071",
            ],
        ),
        quick: case(
            6,
            &[
                "stretch tree of depth 7\t check: 255",
                "64\t trees of depth 4\t check: 1984",
                "16\t trees of depth 6\t check: 2032",
                "long lived tree of depth 6\t check: 127",
            ],
        ),
    },
    Benchmark {
        name: "fannkuch",
        full: case(10, &["73196", "Pfannkuchen(10) = 38"]),
        quick: case(7, &["228", "Pfannkuchen(7) = 16"]),
    },
    Benchmark {
        name: "strings",
        full: case(1_000_000, &["6888890 600000"]),
        quick: case(10_000, &["48890 4000"]),
    },
    Benchmark {
        name: "hashmap",
        full: case(1_000_000, &["1000000 500000500000"]),
        quick: case(10_000, &["10000 50005000"]),
    },
    Benchmark {
        name: "methods",
        full: case(10_000_000, &["9999999"]),
        quick: case(100_000, &["99999"]),
    },
];
