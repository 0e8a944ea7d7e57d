//! `--plot FILE.svg`: a grouped bar chart of each runtime's time relative to lua5.4 (or to
//! the native twin when lua5.4 did not run), one group per benchmark, on a log scale so that
//! LuaJIT's 0.05× and Python's 5× are both readable. A failed cell gets a `FAIL` mark
//! instead of a bar.

use crate::results::{Report, Stats};
use crate::runtimes::{LUA, NATIVE};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// One colour per runtime column, in column order (enough for every runtime of the harness).
const COLOURS: [RGBColor; 7] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

/// Which runtime's median the bars are divided by.
#[derive(Clone, Copy)]
enum Baseline {
    Lua,
    Native,
}

impl Baseline {
    /// lua5.4 when it succeeded on some benchmark, else the native twin, else none.
    fn choose(report: &Report) -> Option<Baseline> {
        let ran = |name: &str| {
            report
                .benchmarks
                .iter()
                .any(|b| b.median_of(name).is_some())
        };
        [Baseline::Lua, Baseline::Native]
            .into_iter()
            .find(|b| ran(b.name()))
    }

    fn name(self) -> &'static str {
        match self {
            Baseline::Lua => LUA,
            Baseline::Native => NATIVE,
        }
    }

    fn ratio(self, stats: &Stats) -> Option<f64> {
        match self {
            Baseline::Lua => stats.ratio_to_lua,
            Baseline::Native => stats.ratio_to_native,
        }
    }
}

/// Writes the chart to `path`.
pub fn svg(report: &Report, path: &Path) -> Result<(), String> {
    let baseline = Baseline::choose(report).ok_or("no lua5.4 or rust results to compare with")?;
    draw(report, baseline, path).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

/// The chart's coordinate system: benchmark groups across, log ratio up.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, LogCoord<f64>>>;

fn draw(
    report: &Report,
    baseline: Baseline,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let ratios: Vec<f64> = report
        .benchmarks
        .iter()
        .flat_map(|b| {
            b.cells
                .iter()
                .filter_map(|c| baseline.ratio(c.stats.as_ref()?))
        })
        .collect();
    // The range always shows the baseline's 1×; the headroom above the tallest bar keeps
    // the legend clear of the bars.
    let low = ratios.iter().copied().fold(0.8, f64::min) / 1.6;
    let high = ratios.iter().copied().fold(1.25, f64::max) * 8.0;
    let groups = report.benchmarks.len();
    let width = (140 * groups as u32 + 260).max(900);
    let root = SVGBackend::new(path, (width, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "Kiln and peers: median time relative to {} ({} sizes, lower is faster)",
        baseline.name(),
        if report.quick { "quick" } else { "full" }
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..groups as f64 - 0.5, (low..high).log_scale())?;
    draw_axes(&mut chart, report, baseline)?;
    for column in 0..report.runtimes.len() {
        draw_column(&mut chart, report, baseline, column, low)?;
    }
    let one = PathElement::new(vec![(-0.5, 1.0), (groups as f64 - 0.5, 1.0)], BLACK);
    chart.draw_series(std::iter::once(one))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Benchmark names under their groups, ratio ticks, axis titles.
fn draw_axes(
    chart: &mut Chart,
    report: &Report,
    baseline: Baseline,
) -> Result<(), Box<dyn std::error::Error>> {
    let benches = &report.benchmarks;
    // Only whole positions are group centres; other tick positions stay unlabelled.
    let name_at = |x: &f64| {
        let i = x.round();
        let centre = (x - i).abs() < 1e-6 && i >= 0.0;
        let bench = centre.then(|| benches.get(i as usize)).flatten();
        bench.map(|b| b.name.clone()).unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(benches.len())
        .x_label_formatter(&name_at)
        .y_label_formatter(&|y| tick(*y))
        .x_desc("benchmark")
        .y_desc(format!(
            "median time ÷ {} median (log scale)",
            baseline.name()
        ))
        .draw()?;
    Ok(())
}

/// The bars of one runtime (column `column` of the report), one per benchmark, or a FAIL
/// mark where it failed; the series is labelled for the legend.
fn draw_column(
    chart: &mut Chart,
    report: &Report,
    baseline: Baseline,
    column: usize,
    low: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = &report.runtimes[column];
    let colour = COLOURS[column % COLOURS.len()];
    let slot = 0.84 / report.runtimes.len() as f64;
    let left = |group: usize| group as f64 - 0.42 + column as f64 * slot;
    let mut bars = Vec::new();
    let mut fails = Vec::new();
    for (group, bench) in report.benchmarks.iter().enumerate() {
        let Some(cell) = bench.cell(&runtime.name) else {
            continue;
        };
        match cell.stats.as_ref().and_then(|s| baseline.ratio(s)) {
            Some(ratio) => {
                let corners = [(left(group), low), (left(group) + slot * 0.9, ratio)];
                bars.push(Rectangle::new(corners, colour.filled()));
            }
            None if cell.error.is_some() => {
                let font = ("sans-serif", 11).into_font().color(&colour);
                fails.push(Text::new("FAIL", (left(group), low * 1.15), font));
            }
            None => {}
        }
    }
    chart
        .draw_series(bars)?
        .label(runtime.name.as_str())
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
    chart.draw_series(fails)?;
    Ok(())
}

/// An axis tick: `0.05`, `1`, `20`, without trailing zeros.
fn tick(y: f64) -> String {
    let text = format!("{y:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}×")
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn ticks_drop_trailing_zeros() {
        assert_eq!(tick(1.0), "1×");
        assert_eq!(tick(0.05), "0.05×");
        assert_eq!(tick(20.0), "20×");
    }
}
