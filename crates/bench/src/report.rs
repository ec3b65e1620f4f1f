//! The report: a plain-text table for people and the same rows as JSON for tools.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::stats::Row;

/// Formats a value with a precision suited to its size.
fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The table: benchmark, metric, p50, p99, floor (p50/p99), ratio (p50/p99), goal, verdict.
pub(crate) fn table(rows: &[Row]) -> String {
    let header = [
        "benchmark",
        "metric",
        "n",
        "p50",
        "p99",
        "floor p50/p99",
        "ratio p50/p99",
        "goal",
        "verdict",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let floor = r.floor.as_ref().map_or_else(
                || "-".to_owned(),
                |f| format!("{}/{} {}", num(f.value.p50), num(f.value.p99), r.unit),
            );
            let ratio = r
                .ratios()
                .map_or_else(|| "-".to_owned(), |(a, b)| format!("{a:.1}x/{b:.1}x"));
            [
                r.bench.clone(),
                r.metric.clone(),
                r.value.samples.to_string(),
                format!("{} {}", num(r.value.p50), r.unit),
                format!("{} {}", num(r.value.p99), r.unit),
                floor,
                ratio,
                r.goal_text(),
                r.verdict().as_str().to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[String]| {
        let mut text = String::new();
        for (c, w) in cols.iter().zip(widths) {
            let pad = w.saturating_sub(c.chars().count());
            let _ = write!(text, "{c}{}  ", " ".repeat(pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    for row in &cells {
        line(row);
    }
    out
}

/// The rows' notes, prefixed with their benchmark, and what each floor was.
pub(crate) fn notes(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .flat_map(|r| {
            let floor = r
                .floor
                .as_ref()
                .map(|f| format!("{} {}: floor = {}", r.bench, r.metric, f.name));
            let note = r.note.as_ref().map(|n| format!("{} {}: {n}", r.bench, r.metric));
            floor.into_iter().chain(note)
        })
        .collect()
}

/// The whole report as JSON.
pub(crate) fn json(rows: &[Row], quick: bool, peer_notes: &[String]) -> Value {
    json!({
        "quick": quick,
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "root": crate::pods::is_root(),
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "peers": peer_notes,
    })
}
