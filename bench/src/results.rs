//! The results of one harness run: per benchmark and runtime the verified times and memory,
//! the statistics and ratios derived from them, and the machine they came from. This is the
//! `--json` schema and what the table, Markdown and plot renderers read.

use crate::runtimes::{LUA, NATIVE};
use serde::Serialize;

/// Everything one harness run measured.
#[derive(Serialize)]
pub struct Report {
    /// Whether the quick sizes were used.
    pub quick: bool,
    /// Timed runs per benchmark and runtime.
    pub runs: usize,
    /// Untimed (but output-checked) runs before them.
    pub warmup: usize,
    /// The machine.
    pub machine: Machine,
    /// The runtimes that ran, in column order.
    pub runtimes: Vec<RuntimeInfo>,
    /// Runtimes skipped and why.
    pub notes: Vec<String>,
    /// Per benchmark results.
    pub benchmarks: Vec<BenchResult>,
    /// Per runtime geometric means of the ratios.
    pub geomean: Vec<GeoMean>,
}

/// A runtime's column.
#[derive(Serialize)]
pub struct RuntimeInfo {
    /// Column name.
    pub name: String,
    /// What its `--version` said.
    pub version: String,
}

/// The machine the figures come from.
#[derive(Serialize)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo`.
    pub cpu: String,
    /// Logical CPUs available to the harness (`nproc`).
    pub nproc: usize,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Describes this machine; fields it cannot read say `unknown`.
    pub fn detect() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or("unknown");
        let kernel = read("/proc/sys/kernel/osrelease");
        let kernel = if kernel.trim().is_empty() {
            "unknown"
        } else {
            kernel.trim()
        };
        Machine {
            cpu: cpu.to_owned(),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: format!("Linux {kernel}"),
        }
    }
}

/// One benchmark's results, one cell per runtime.
#[derive(Serialize)]
pub struct BenchResult {
    /// Benchmark name.
    pub name: String,
    /// The size it ran at.
    pub size: u64,
    /// One cell per runtime, in column order.
    pub cells: Vec<Cell>,
}

/// One runtime on one benchmark.
#[derive(Serialize)]
pub struct Cell {
    /// Runtime name.
    pub runtime: String,
    /// Why the cell failed (wrong output, crash, timeout, build failure); `None` when every
    /// run printed the expected output.
    pub error: Option<String>,
    /// Wall time of each timed run, in seconds, in run order.
    pub times_s: Vec<f64>,
    /// Highest peak RSS over all its runs, in KiB.
    pub peak_rss_kb: u64,
    /// Statistics of the times, when the cell succeeded.
    pub stats: Option<Stats>,
}

/// Statistics of a successful cell.
#[derive(Serialize, Clone, Copy)]
pub struct Stats {
    /// Median wall time in seconds.
    pub median_s: f64,
    /// Fastest run.
    pub min_s: f64,
    /// Slowest run.
    pub max_s: f64,
    /// Median divided by lua5.4's median on the same benchmark in the same harness run.
    pub ratio_to_lua: Option<f64>,
    /// Median divided by the native twin's median on the same benchmark in the same harness run.
    pub ratio_to_native: Option<f64>,
}

impl Cell {
    /// An empty cell for `runtime`, to be filled run by run.
    pub fn new(runtime: &str) -> Cell {
        Cell {
            runtime: runtime.to_owned(),
            error: None,
            times_s: Vec::new(),
            peak_rss_kb: 0,
            stats: None,
        }
    }
}

impl BenchResult {
    /// Fills every successful cell's statistics, with ratios to this benchmark's baselines.
    pub fn compute_stats(&mut self) {
        for cell in &mut self.cells {
            cell.stats = basic_stats(cell);
        }
        let lua = self.median_of(LUA);
        let native = self.median_of(NATIVE);
        for stats in self.cells.iter_mut().filter_map(|c| c.stats.as_mut()) {
            stats.ratio_to_lua = lua.map(|base| stats.median_s / base);
            stats.ratio_to_native = native.map(|base| stats.median_s / base);
        }
    }

    /// The median of `runtime`'s cell, when it succeeded.
    pub fn median_of(&self, runtime: &str) -> Option<f64> {
        self.cell(runtime)?.stats.map(|s| s.median_s)
    }

    /// `runtime`'s cell, if it ran on this benchmark.
    pub fn cell(&self, runtime: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.runtime == runtime)
    }
}

fn basic_stats(cell: &Cell) -> Option<Stats> {
    if cell.error.is_some() || cell.times_s.is_empty() {
        return None;
    }
    let mut sorted = cell.times_s.clone();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median_s = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    Some(Stats {
        median_s,
        min_s: sorted[0],
        max_s: sorted[sorted.len() - 1],
        ratio_to_lua: None,
        ratio_to_native: None,
    })
}

/// A runtime's geometric mean of ratios over the benchmarks where both it and the baseline
/// succeeded (`over_*` says how many that was).
#[derive(Serialize)]
pub struct GeoMean {
    /// Runtime name.
    pub runtime: String,
    /// Geometric mean of [`Stats::ratio_to_lua`].
    pub ratio_to_lua: Option<f64>,
    /// Benchmarks in that mean.
    pub over_lua: usize,
    /// Geometric mean of [`Stats::ratio_to_native`].
    pub ratio_to_native: Option<f64>,
    /// Benchmarks in that mean.
    pub over_native: usize,
}

/// The geometric means for each runtime of `runtimes`.
pub fn geomeans(benchmarks: &[BenchResult], runtimes: &[RuntimeInfo]) -> Vec<GeoMean> {
    runtimes
        .iter()
        .map(|rt| {
            let stats: Vec<Stats> = benchmarks
                .iter()
                .filter_map(|b| b.cell(&rt.name)?.stats)
                .collect();
            let (ratio_to_lua, over_lua) = geomean(stats.iter().filter_map(|s| s.ratio_to_lua));
            let (ratio_to_native, over_native) =
                geomean(stats.iter().filter_map(|s| s.ratio_to_native));
            GeoMean {
                runtime: rt.name.clone(),
                ratio_to_lua,
                over_lua,
                ratio_to_native,
                over_native,
            }
        })
        .collect()
}

fn geomean(values: impl Iterator<Item = f64>) -> (Option<f64>, usize) {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, n), v| (sum + v.ln(), n + 1));
    ((count > 0).then(|| (sum / count as f64).exp()), count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(runtime: &str, times: &[f64]) -> Cell {
        Cell {
            times_s: times.to_vec(),
            ..Cell::new(runtime)
        }
    }

    #[test]
    fn medians_ratios_and_failures() {
        let mut failed = cell("kiln", &[1.0]);
        failed.error = Some("output mismatch".to_owned());
        let mut bench = BenchResult {
            name: "fib".to_owned(),
            size: 1,
            cells: vec![
                cell(LUA, &[3.0, 1.0, 2.0]),
                cell(NATIVE, &[0.5, 0.4, 0.6, 0.5]),
                failed,
            ],
        };
        bench.compute_stats();
        let lua = bench.cell(LUA).unwrap().stats.unwrap();
        assert_eq!((lua.median_s, lua.min_s, lua.max_s), (2.0, 1.0, 3.0));
        assert_eq!(lua.ratio_to_lua, Some(1.0));
        assert_eq!(lua.ratio_to_native, Some(4.0));
        assert_eq!(bench.median_of(NATIVE), Some(0.5));
        assert!(bench.cell("kiln").unwrap().stats.is_none());
    }

    #[test]
    fn geometric_mean_skips_missing_ratios() {
        assert_eq!(geomean([2.0, 8.0].into_iter()), (Some(4.0), 2));
        assert_eq!(geomean(std::iter::empty()), (None, 0));
    }
}
