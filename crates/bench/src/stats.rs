//! Percentiles of samples (sorted vectors, nearest rank) and what one benchmark row reports.

use std::time::Duration;

use serde_json::{Value, json};

/// The 50th and 99th percentiles of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// How many samples there were.
    pub(crate) samples: usize,
}

impl Percentiles {
    /// Percentiles of `values` by nearest rank; `None` when there are no samples.
    pub(crate) fn of(values: &[f64]) -> Option<Percentiles> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            // Nearest rank: the smallest value with at least q of the samples at or below it.
            let n = sorted.len();
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            sorted.get(idx).copied().unwrap_or(f64::NAN)
        };
        Some(Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            samples: sorted.len(),
        })
    }

    /// Percentiles of durations, in milliseconds.
    pub(crate) fn of_durations_ms(values: &[Duration]) -> Option<Percentiles> {
        let ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Percentiles::of(&ms)
    }

    /// A single measured value (both percentiles are that value).
    pub(crate) fn single(value: f64) -> Percentiles {
        Percentiles {
            p50: value,
            p99: value,
            samples: 1,
        }
    }
}

/// What a row is judged against.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Goal {
    /// Ratios to the floor: p50 and p99 each at most this many times the floor's (`None`: no
    /// bound on that percentile).
    Ratio {
        /// Bound on p50 / floor p50.
        p50: Option<f64>,
        /// Bound on p99 / floor p99.
        p99: Option<f64>,
    },
    /// An absolute bound on p99 (a single value's bound, for one-sample rows), in the row's unit.
    AtMost(f64),
    /// An absolute lower bound on p50 (the value of a one-sample row), in the row's unit: for
    /// rates, where more is better.
    AtLeast(f64),
    /// Reported only (no goal in issue #6 for this metric, or the floor does not apply).
    None,
}

/// A floor measured in the same run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Floor {
    /// What the floor program did.
    pub(crate) name: String,
    /// Its percentiles, in the row's unit.
    pub(crate) value: Percentiles,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    /// Benchmark name (`pod-start`).
    pub(crate) bench: String,
    /// What was measured (`created→Running`).
    pub(crate) metric: String,
    /// The unit of the values (`ms`, `MB`, `%`).
    pub(crate) unit: &'static str,
    /// The measured percentiles.
    pub(crate) value: Percentiles,
    /// The floor, when there is one.
    pub(crate) floor: Option<Floor>,
    /// The goal.
    pub(crate) goal: Goal,
    /// Anything the reader needs to know (fallbacks, what the floor leaves out).
    pub(crate) note: Option<String>,
}

/// Whether a row met its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the goal.
    Pass,
    /// Outside the goal.
    Miss,
    /// No goal to judge by.
    Info,
}

impl Verdict {
    /// The word printed in the table.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Miss => "miss",
            Verdict::Info => "-",
        }
    }
}

impl Row {
    /// p50 and p99 divided by the floor's, when there is a floor.
    pub(crate) fn ratios(&self) -> Option<(f64, f64)> {
        let floor = self.floor.as_ref()?;
        Some((self.value.p50 / floor.value.p50, self.value.p99 / floor.value.p99))
    }

    /// The verdict against the goal.
    pub(crate) fn verdict(&self) -> Verdict {
        match self.goal {
            Goal::Ratio { p50, p99 } => match self.ratios() {
                Some((r50, r99)) if p50.is_none_or(|b| r50 <= b) && p99.is_none_or(|b| r99 <= b) => {
                    Verdict::Pass
                }
                Some(_) => Verdict::Miss,
                None => Verdict::Info,
            },
            Goal::AtMost(bound) => {
                if self.value.p99 <= bound {
                    Verdict::Pass
                } else {
                    Verdict::Miss
                }
            }
            Goal::AtLeast(bound) => {
                if self.value.p50 >= bound {
                    Verdict::Pass
                } else {
                    Verdict::Miss
                }
            }
            Goal::None => Verdict::Info,
        }
    }

    /// The goal as printed (`p50≤10x p99≤30x`).
    pub(crate) fn goal_text(&self) -> String {
        match self.goal {
            Goal::Ratio { p50, p99 } => {
                let p50 = p50.map(|b| format!("p50≤{b}x"));
                let p99 = p99.map(|b| format!("p99≤{b}x"));
                let parts: Vec<String> = p50.into_iter().chain(p99).collect();
                if parts.is_empty() {
                    "-".to_owned()
                } else {
                    parts.join(" ")
                }
            }
            Goal::AtMost(bound) => format!("≤{bound} {}", self.unit),
            Goal::AtLeast(bound) => format!("≥{bound} {}", self.unit),
            Goal::None => "-".to_owned(),
        }
    }

    /// The row as JSON (numbers in the row's unit).
    pub(crate) fn to_json(&self) -> Value {
        let ratios = self.ratios();
        json!({
            "benchmark": self.bench,
            "metric": self.metric,
            "unit": self.unit,
            "samples": self.value.samples,
            "p50": self.value.p50,
            "p99": self.value.p99,
            "floor": self.floor.as_ref().map(|f| json!({
                "name": f.name,
                "samples": f.value.samples,
                "p50": f.value.p50,
                "p99": f.value.p99,
            })),
            "ratio": ratios.map(|(r50, r99)| json!({"p50": r50, "p99": r99})),
            "goal": self.goal_text(),
            "verdict": self.verdict().as_str(),
            "note": self.note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&values).unwrap();
        assert!((p.p50 - 50.0).abs() < f64::EPSILON);
        assert!((p.p99 - 99.0).abs() < f64::EPSILON);
        assert_eq!(Percentiles::of(&[]), None);
        let one = Percentiles::of(&[3.0]).unwrap();
        assert!((one.p99 - 3.0).abs() < f64::EPSILON);
    }

    #[test]
    fn at_least_judges_the_median_from_below() {
        let row = |value: f64| Row {
            bench: "sched-throughput".into(),
            metric: "rate".into(),
            unit: "pods/s",
            value: Percentiles::single(value),
            floor: None,
            goal: Goal::AtLeast(100.0),
            note: None,
        };
        assert_eq!(row(150.0).verdict(), Verdict::Pass);
        assert_eq!(row(100.0).verdict(), Verdict::Pass);
        assert_eq!(row(99.0).verdict(), Verdict::Miss);
        assert_eq!(row(99.0).goal_text(), "≥100 pods/s");
    }
}
