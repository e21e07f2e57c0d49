//! A figure measured once per run: its median and spread, its per-run values,
//! and whether a target holds in every run.
//!
//! Values come as one `Option<f64>` per run, in run order; `None` is a run in
//! which the figure was not measured (the cell failed, or a backend it needs
//! was skipped).

/// Median, min and max of the runs that measured a figure.
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[Option<f64>]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().flatten().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }

    /// `median (min-max)`, or `-` when nothing was measured.
    pub fn show(values: &[Option<f64>], prec: usize) -> String {
        match Spread::of(values) {
            Some(s) => format!("{:.prec$} ({:.prec$}-{:.prec$})", s.median, s.min, s.max),
            None => "-".to_string(),
        }
    }

    /// The median alone, or `-`.
    pub fn median_of(values: &[Option<f64>], prec: usize) -> String {
        match Spread::of(values) {
            Some(s) => format!("{:.prec$}", s.median),
            None => "-".to_string(),
        }
    }
}

/// The per-run values, space-separated, each `width` wide (`-` where absent).
pub fn per_run(values: &[Option<f64>], width: usize, prec: usize, signed: bool) -> String {
    values
        .iter()
        .map(|v| match v {
            Some(v) if signed => format!("{v:>+width$.prec$}"),
            Some(v) => format!("{v:>width$.prec$}"),
            None => format!("{:>width$}", "-"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A target: the figure must be at least, or at most, a limit.
#[derive(Clone, Copy)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Bound {
    fn holds(self, v: f64) -> bool {
        match self {
            Bound::AtLeast(limit) => v >= limit,
            Bound::AtMost(limit) => v <= limit,
        }
    }

    /// `>= 0.95`, `<= 5 µs`.
    pub fn show(self, unit: &str) -> String {
        let (op, limit) = match self {
            Bound::AtLeast(l) => (">=", l),
            Bound::AtMost(l) => ("<=", l),
        };
        format!("{op} {limit}{unit}")
    }
}

/// Runs are numbered from 1 in the report.
fn runs_list(runs: &[usize]) -> String {
    runs.iter().map(|r| (r + 1).to_string()).collect::<Vec<_>>().join(", ")
}

/// Whether `bound` holds in each run: "met in every run", "MISSED in run 2,
/// 3", "not measured"; runs without the figure are named too.
pub fn verdict(values: &[Option<f64>], bound: Bound) -> Verdict {
    let absent: Vec<usize> = (0..values.len()).filter(|&i| values[i].is_none()).collect();
    let missed: Vec<usize> = (0..values.len())
        .filter(|&i| values[i].is_some_and(|v| !bound.holds(v)))
        .collect();
    if absent.len() == values.len() {
        return Verdict::NotMeasured;
    }
    let mut text = if missed.is_empty() {
        if absent.is_empty() {
            "met in every run".to_string()
        } else {
            "met where measured".to_string()
        }
    } else {
        format!("MISSED in run {}", runs_list(&missed))
    };
    if !absent.is_empty() {
        text.push_str(&format!("; not measured in run {}", runs_list(&absent)));
    }
    if missed.is_empty() && absent.is_empty() {
        Verdict::Met(text)
    } else {
        Verdict::Missed(text)
    }
}

/// A target's outcome over the runs, with its wording.
pub enum Verdict {
    /// Met in every run.
    Met(String),
    /// Missed, or not measured, in at least one run.
    Missed(String),
    /// Measured in no run.
    NotMeasured,
}

impl Verdict {
    pub fn text(&self) -> &str {
        match self {
            Verdict::Met(t) | Verdict::Missed(t) => t,
            Verdict::NotMeasured => "not measured",
        }
    }
}
