//! Rendering a [`Report`] for people: the terminal table (one row per benchmark and runtime,
//! every statistic) and `--markdown` (one matrix per measure, benchmarks down and runtimes
//! across, the shape of the results table in `bench/README.md`).

use crate::results::{Cell, GeoMean, Report};
use crate::runtimes::{LUA, NATIVE};

/// Column alignment.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table of text cells, rendered with aligned columns or as Markdown.
struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: impl IntoIterator<Item = (String, Align)>) -> Table {
        let (header, align) = columns.into_iter().unzip();
        Table {
            header,
            align,
            rows: Vec::new(),
        }
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    fn text(&self) -> String {
        let widths = self.widths();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .zip(&self.align)
                .map(|((cell, &w), align)| match align {
                    Align::Left => format!("{cell:<w$}"),
                    Align::Right => format!("{cell:>w$}"),
                })
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.header);
        self.rows.iter().for_each(|row| out += &line(row));
        out
    }

    fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let rule: Vec<String> = self
            .align
            .iter()
            .map(|a| match a {
                Align::Left => "---".to_owned(),
                Align::Right => "--:".to_owned(),
            })
            .collect();
        let mut out = line(&self.header) + &line(&rule);
        self.rows.iter().for_each(|row| out += &line(row));
        out
    }
}

/// Seconds with about three significant digits.
fn seconds(s: f64) -> String {
    match s {
        s if s >= 100.0 => format!("{s:.0}"),
        s if s >= 10.0 => format!("{s:.1}"),
        s if s >= 1.0 => format!("{s:.2}"),
        s if s >= 0.1 => format!("{s:.3}"),
        s => format!("{s:.4}"),
    }
}

/// A ratio with about three significant digits.
fn ratio(r: Option<f64>) -> String {
    match r {
        None => "—".to_owned(),
        Some(r) if r >= 100.0 => format!("{r:.0}"),
        Some(r) if r >= 10.0 => format!("{r:.1}"),
        Some(r) => format!("{r:.2}"),
    }
}

fn megabytes(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// The first line of a cell's error, which is its short summary.
fn failure(cell: &Cell) -> Option<String> {
    let error = cell.error.as_deref()?;
    Some(format!("FAIL: {}", error.lines().next().unwrap_or("")))
}

/// `1 timed run`, `5 timed runs`.
fn count(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

/// What the figures are and where they come from, one line each.
fn preamble(report: &Report) -> Vec<String> {
    let sizes = if report.quick {
        "quick sizes"
    } else {
        "full sizes"
    };
    let m = &report.machine;
    let runtimes: Vec<String> = report
        .runtimes
        .iter()
        .map(|r| format!("{} = {}", r.name, r.version))
        .collect();
    let mut lines = vec![
        format!(
            "{sizes}; median wall time of {} after {}, interleaved; every run's output checked",
            count(report.runs, "timed run"),
            count(report.warmup, "warm-up run")
        ),
        format!("machine: {}, {} CPUs, {}", m.cpu, m.nproc, m.kernel),
        format!("runtimes: {}", runtimes.join(" · ")),
    ];
    lines.extend(report.notes.iter().map(|note| format!("note: {note}")));
    lines
}

/// The terminal table's columns.
const TERMINAL_COLUMNS: [(&str, Align); 8] = [
    ("benchmark", Align::Left),
    ("size", Align::Right),
    ("runtime", Align::Left),
    ("median s", Align::Right),
    ("min–max s", Align::Right),
    ("RSS MB", Align::Right),
    ("×lua5.4", Align::Right),
    ("×rust", Align::Right),
];

/// The terminal table: every statistic of every cell, then the geometric means.
pub fn terminal(report: &Report) -> String {
    let mut table = Table::new(TERMINAL_COLUMNS.map(|(title, align)| (title.to_owned(), align)));
    for bench in &report.benchmarks {
        for (i, cell) in bench.cells.iter().enumerate() {
            let first = i == 0;
            let name = if first {
                bench.name.clone()
            } else {
                String::new()
            };
            let size = if first {
                bench.size.to_string()
            } else {
                String::new()
            };
            let mut row = vec![name, size, cell.runtime.clone()];
            row.extend(terminal_stats(cell));
            table.rows.push(row);
        }
    }
    let total = report.benchmarks.len();
    for mean in &report.geomean {
        let mut row = vec![
            "geometric mean".to_owned(),
            String::new(),
            mean.runtime.clone(),
        ];
        row.extend([String::new(), String::new(), String::new()]);
        row.push(mean_over(mean.ratio_to_lua, mean.over_lua, total));
        row.push(mean_over(mean.ratio_to_native, mean.over_native, total));
        table.rows.push(row);
    }
    let mut out: String = preamble(report).iter().map(|l| format!("{l}\n")).collect();
    out += "\n";
    out += &table.text();
    out +=
        "\n×lua5.4 and ×rust: median time divided by theirs in this same run (lower is faster);\n";
    out += "a geometric mean marked (n) covers only the n benchmarks where both succeeded.\n";
    out
}

/// A geometric mean, marked with how many benchmarks it covers when that is not all.
fn mean_over(mean: Option<f64>, over: usize, total: usize) -> String {
    match mean {
        Some(_) if over < total => format!("{} ({over})", ratio(mean)),
        _ => ratio(mean),
    }
}

fn terminal_stats(cell: &Cell) -> Vec<String> {
    match (&cell.stats, failure(cell)) {
        (_, Some(fail)) => vec![
            fail,
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ],
        (Some(s), None) => vec![
            seconds(s.median_s),
            format!("{}–{}", seconds(s.min_s), seconds(s.max_s)),
            megabytes(cell.peak_rss_kb),
            ratio(s.ratio_to_lua),
            ratio(s.ratio_to_native),
        ],
        (None, None) => vec![String::new(); 5],
    }
}

/// `--markdown`: median seconds, ratios to lua5.4 and peak memory, one matrix each.
pub fn markdown(report: &Report) -> String {
    let mut out: String = preamble(report)
        .iter()
        .map(|l| format!("{l}  \n"))
        .collect();
    out += "\nMedian wall time in seconds (min–max in the `--json` output):\n\n";
    let mut times = matrix(report, |cell| cell.stats.map(|s| seconds(s.median_s)));
    times
        .rows
        .push(geomean_row(report, "×lua5.4", |g| g.ratio_to_lua));
    times
        .rows
        .push(geomean_row(report, "×rust", |g| g.ratio_to_native));
    out += &times.markdown();
    out += &format!("\nTime relative to {LUA} (lower is faster; {NATIVE} is the native twin):\n\n");
    out += &matrix(report, |cell| cell.stats.map(|s| ratio(s.ratio_to_lua))).markdown();
    out += "\nPeak resident memory in MB:\n\n";
    out += &matrix(report, |cell| Some(megabytes(cell.peak_rss_kb))).markdown();
    out
}

/// Benchmarks down, runtimes across; `value` gives a successful cell's text.
fn matrix(report: &Report, value: impl Fn(&Cell) -> Option<String>) -> Table {
    let fixed = [
        ("benchmark".to_owned(), Align::Left),
        ("size".to_owned(), Align::Right),
    ];
    let runtimes = report
        .runtimes
        .iter()
        .map(|r| (r.name.clone(), Align::Right));
    let mut table = Table::new(fixed.into_iter().chain(runtimes));
    for bench in &report.benchmarks {
        let mut row = vec![bench.name.clone(), bench.size.to_string()];
        row.extend(report.runtimes.iter().map(|rt| match bench.cell(&rt.name) {
            Some(cell) if cell.error.is_some() => "FAIL".to_owned(),
            Some(cell) => value(cell).unwrap_or_default(),
            None => "—".to_owned(),
        }));
        table.rows.push(row);
    }
    table
}

/// A bold row of one geometric mean per runtime column.
fn geomean_row(
    report: &Report,
    label: &str,
    pick: impl Fn(&GeoMean) -> Option<f64>,
) -> Vec<String> {
    let mut row = vec![format!("**geomean {label}**"), String::new()];
    row.extend(report.runtimes.iter().map(|rt| {
        let mean = report.geomean.iter().find(|g| g.runtime == rt.name);
        ratio(mean.and_then(&pick))
    }));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(seconds(123.4), "123");
        assert_eq!(seconds(1.2345), "1.23");
        assert_eq!(seconds(0.01234), "0.0123");
        assert_eq!(ratio(Some(0.5)), "0.50");
        assert_eq!(ratio(Some(39.42)), "39.4");
        assert_eq!(ratio(None), "—");
        assert_eq!(megabytes(2048), "2.0");
    }

    #[test]
    fn tables_align_and_render_markdown() {
        let mut table = Table::new([("a".into(), Align::Left), ("n".into(), Align::Right)]);
        table.rows.push(vec!["long".into(), "1".into()]);
        assert_eq!(table.text(), "a     n\nlong  1\n");
        assert_eq!(table.markdown(), "| a | n |\n| --- | --: |\n| long | 1 |\n");
    }
}
