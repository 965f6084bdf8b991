//! Axis limits, tick positions and tick labels.
//!
//! Everything is computed in *plot space*: the data value on a linear axis,
//! its log10 on a log axis. plotters then only ever sees linear f64 axes with
//! the ticks we chose, which is what lets log axes carry exactly the powers of
//! ten and label them 10ᵏ.

/// Powers of ten spanning `[lo, hi]`: from the largest power of ten at or
/// below `lo` to the smallest at or above `hi`, each exactly the `f64` that
/// the literal `1ek` gives. Empty unless both ends are finite and positive;
/// reversed ends are swapped.
///
/// ```ignore
/// assert_eq!(log_ticks(3.0, 250.0), vec![1.0, 10.0, 100.0, 1000.0]);
/// ```
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !(lo > 0.0 && hi.is_finite()) {
        return Vec::new();
    }
    (decade_floor(lo)..=decade_ceil(hi))
        .map(power_of_ten)
        .collect()
}

/// 10ᵏ, correctly rounded. `powi` accumulates rounding error for negative
/// exponents (10⁻³ would not equal the literal `1e-3`); parsing does not.
pub(super) fn power_of_ten(k: i32) -> f64 {
    format!("1e{k}").parse().unwrap_or(f64::NAN)
}

/// The largest k with 10ᵏ ≤ v, exact at powers of ten whatever `log10`
/// rounds to.
fn decade_floor(v: f64) -> i32 {
    let mut k = v.log10().floor() as i32;
    while power_of_ten(k) > v {
        k -= 1;
    }
    while power_of_ten(k + 1) <= v {
        k += 1;
    }
    k
}

/// The smallest k with 10ᵏ ≥ v.
fn decade_ceil(v: f64) -> i32 {
    let k = decade_floor(v);
    if power_of_ten(k) == v {
        k
    } else {
        k + 1
    }
}

/// Fraction of the data span added on each side, as matplotlib's default
/// axes margins, so markers at the extremes are not cut by the frame.
const PADDING: f64 = 0.05;

/// One axis: its limits and ticks in plot space, and how to label them.
#[derive(Debug, Clone)]
pub(super) struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    /// Labelled ticks with a grid line.
    pub major: Vec<f64>,
    /// Unlabelled fainter grid lines (2..9 × 10ᵏ on log axes).
    pub minor: Vec<f64>,
    labels: Labels,
    /// About how many labelled ticks fit along the axis.
    target_ticks: usize,
}

#[derive(Debug, Clone)]
enum Labels {
    Decimal {
        decimals: usize,
    },
    Scientific,
    Powers,
    Categories(Vec<String>),
    /// Matrix indices at cell centres; `reversed` counts from the top.
    Cells {
        count: usize,
        reversed: bool,
    },
}

impl Axis {
    /// An axis fitted to data in `[lo, hi]` (data space) with a margin.
    /// `from_zero` pins a limit at zero when the data sit on one side of it,
    /// because bars grow from zero and a gap below them reads as an offset.
    pub fn fit(lo: f64, hi: f64, log: bool, from_zero: bool, target_ticks: usize) -> Axis {
        if log {
            return Axis::fit_log(lo.log10(), hi.log10(), target_ticks);
        }
        let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
        let (mut lo, mut hi) = (lo - PADDING * span, hi + PADDING * span);
        if from_zero && lo < 0.0 && lo + PADDING * span >= 0.0 {
            lo = 0.0;
        }
        if from_zero && hi > 0.0 && hi - PADDING * span <= 0.0 {
            hi = 0.0;
        }
        Axis::linear(lo, hi, target_ticks)
    }

    /// Log axis over `[lo, hi]` given as exponents. Widened to whole decades
    /// when fewer than two powers of ten would be inside, so every log axis
    /// shows at least two labelled ticks.
    fn fit_log(lo: f64, hi: f64, target_ticks: usize) -> Axis {
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (mut lo, mut hi) = (lo - PADDING * span, hi + PADDING * span);
        let inside = hi.floor() - lo.ceil() + 1.0;
        if inside < 1.0 {
            (lo, hi) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
        } else if inside < 2.0 {
            // One power inside: reach for whichever neighbour is nearer.
            let power = lo.ceil();
            if lo - (power - 1.0) <= power + 1.0 - hi {
                lo = power - 1.0;
            } else {
                hi = power + 1.0;
            }
        }
        Axis::log(lo, hi, target_ticks)
    }

    /// A log axis over exactly `[lo, hi]` (exponents).
    fn log(lo: f64, hi: f64, target_ticks: usize) -> Axis {
        let first = lo.ceil() as i32;
        let last = hi.floor() as i32;
        let stride = ((last - first) as usize / target_ticks.max(1)).max(1) as i32;
        let major: Vec<f64> = (first..=last)
            .filter(|k| k.rem_euclid(stride) == 0)
            .map(f64::from)
            .collect();
        // Minor lines only where they are still lines, not a grey wash.
        let minor = if stride == 1 && last - first <= 8 {
            log_minor(lo, hi)
        } else {
            Vec::new()
        };
        Axis {
            lo,
            hi,
            log: true,
            major,
            minor,
            labels: Labels::Powers,
            target_ticks,
        }
    }

    /// The same kind of axis with its top raised to `hi` (plot space), to
    /// make room for the legend above the data.
    pub fn with_top(&self, hi: f64) -> Axis {
        if self.log {
            Axis::log(self.lo, hi, self.target_ticks)
        } else {
            Axis::linear(self.lo, hi, self.target_ticks)
        }
    }

    /// A linear axis over exactly `[lo, hi]` with about `target_ticks`
    /// ticks at 1, 2, 2.5 or 5 × 10ᵏ steps.
    pub fn linear(lo: f64, hi: f64, target_ticks: usize) -> Axis {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        };
        let step = nice_step((hi - lo) / target_ticks.max(1) as f64);
        let first = (lo / step - 1e-9).ceil() as i64;
        let last = (hi / step + 1e-9).floor() as i64;
        // A span too wide for f64 (near ±1e308) yields a useless step; draw
        // no ticks rather than billions of them.
        let major: Vec<f64> = if last.saturating_sub(first) <= 100 {
            (first..=last).map(|i| i as f64 * step).collect()
        } else {
            Vec::new()
        };
        let largest = major.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let labels = if largest >= 1e5 || (largest > 0.0 && largest < 1e-3) {
            Labels::Scientific
        } else {
            Labels::Decimal {
                decimals: decimals_for(step),
            }
        };
        Axis {
            lo,
            hi,
            log: false,
            major,
            minor: Vec::new(),
            labels,
            target_ticks,
        }
    }

    /// Categories at 0, 1, …, n-1, each in a slot one unit wide.
    pub fn categories(labels: &[String]) -> Axis {
        Axis {
            lo: -0.5,
            hi: labels.len() as f64 - 0.5,
            log: false,
            major: (0..labels.len()).map(|i| i as f64).collect(),
            minor: Vec::new(),
            labels: Labels::Categories(labels.to_vec()),
            target_ticks: labels.len(),
        }
    }

    /// Matrix cells: cell i spans `[i, i+1]`, counted from the top when
    /// `reversed`; ticks at the centres of every 1, 2, 5, 10, … cells.
    pub fn cells(count: usize, reversed: bool, target_ticks: usize) -> Axis {
        let step = (nice_step(count as f64 / target_ticks.max(1) as f64).round() as usize).max(1);
        let centre = |i: usize| {
            if reversed {
                count as f64 - i as f64 - 0.5
            } else {
                i as f64 + 0.5
            }
        };
        Axis {
            lo: 0.0,
            hi: count as f64,
            log: false,
            major: (0..count).step_by(step).map(centre).collect(),
            minor: Vec::new(),
            labels: Labels::Cells { count, reversed },
            target_ticks,
        }
    }

    /// Data value → plot space.
    pub fn to_plot(&self, value: f64) -> f64 {
        if self.log {
            value.log10()
        } else {
            value
        }
    }

    /// Where bars start: zero, or the bottom of a log axis (which has no zero).
    pub fn baseline(&self) -> f64 {
        if self.log {
            self.lo
        } else {
            0.0
        }
    }

    /// The label for a tick at `value` (plot space).
    pub fn label(&self, value: f64) -> String {
        match &self.labels {
            Labels::Decimal { decimals } => {
                // Rounding can leave -0.0, which would print as "-0".
                let value = if value.abs() < 1e-12 { 0.0 } else { value };
                typographic_minus(format!("{value:.decimals$}"))
            }
            Labels::Scientific => typographic_minus(scientific(value)),
            Labels::Powers => format!("10{}", superscript(value.round() as i32)),
            Labels::Categories(names) => {
                let index = value.round();
                names
                    .get(index.max(0.0) as usize)
                    .filter(|_| index >= 0.0)
                    .cloned()
                    .unwrap_or_default()
            }
            Labels::Cells { count, reversed } => {
                let from_left = (value - 0.5).round();
                let index = if *reversed {
                    *count as f64 - 1.0 - from_left
                } else {
                    from_left
                };
                format!("{index}")
            }
        }
    }

    /// The labels of all major ticks, to size the label areas.
    pub fn major_labels(&self) -> Vec<String> {
        self.major.iter().map(|&v| self.label(v)).collect()
    }
}

/// 2..9 × 10ᵏ inside `[lo, hi]` (exponents).
fn log_minor(lo: f64, hi: f64) -> Vec<f64> {
    let mut minor = Vec::new();
    for k in (lo.floor() as i32)..=(hi.ceil() as i32) {
        for m in 2..=9 {
            let v = f64::from(k) + f64::from(m).log10();
            if v > lo && v < hi {
                minor.push(v);
            }
        }
    }
    minor
}

/// The smallest of 1, 2, 2.5, 5 × 10ᵏ at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let magnitude = 10f64.powi(raw.log10().floor() as i32);
    let fraction = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|&n| fraction <= n * (1.0 + 1e-9))
        .unwrap_or(10.0);
    nice * magnitude
}

/// Decimals needed to tell ticks `step` apart (2.5 × 10ᵏ needs one more).
fn decimals_for(step: f64) -> usize {
    let mut decimals = 0;
    while decimals < 12 {
        let scaled = step * 10f64.powi(decimals as i32);
        if (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0) {
            return decimals;
        }
        decimals += 1;
    }
    decimals
}

/// A leading hyphen becomes U+2212, the minus sign typeset figures use
/// (as matplotlib does): a hyphen is shorter and sits too low.
fn typographic_minus(text: String) -> String {
    match text.strip_prefix('-') {
        Some(rest) => format!("\u{2212}{rest}"),
        None => text,
    }
}

/// `2.5×10⁵`; plain `0` for zero.
fn scientific(value: f64) -> String {
    if value.abs() < f64::MIN_POSITIVE {
        return "0".to_string();
    }
    let exponent = value.abs().log10().floor() as i32;
    let mantissa = value / 10f64.powi(exponent);
    let mantissa = format!("{mantissa:.2}");
    let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
    format!("{mantissa}×10{}", superscript(exponent))
}

/// Unicode superscript digits, which DejaVu Sans carries, so 10³ needs no
/// markup and looks the same in PNG and SVG.
fn superscript(n: i32) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let digits = n.unsigned_abs().to_string();
    let sign = if n < 0 { "⁻" } else { "" };
    let body: String = digits
        .bytes()
        .map(|b| DIGITS[usize::from(b - b'0')])
        .collect();
    format!("{sign}{body}")
}
