//! Checks on series input, and histogram binning.

use super::PlotError;

pub(super) fn check_lengths(
    kind: &'static str,
    (left, left_len): (&'static str, usize),
    (right, right_len): (&'static str, usize),
) -> Result<(), PlotError> {
    if left_len != right_len {
        return Err(PlotError::LengthMismatch {
            kind,
            left,
            left_len,
            right,
            right_len,
        });
    }
    Ok(())
}

/// Non-empty, finite, and positive when `log_axis` names a log axis.
pub(super) fn check_values(
    kind: &'static str,
    name: &'static str,
    values: &[f64],
    log_axis: Option<&'static str>,
) -> Result<(), PlotError> {
    if values.is_empty() {
        return Err(PlotError::Empty { kind });
    }
    for (index, &value) in values.iter().enumerate() {
        if !value.is_finite() {
            return Err(PlotError::NonFinite {
                kind,
                name,
                index,
                value,
            });
        }
        if let Some(axis) = log_axis.filter(|_| value <= 0.0) {
            return Err(PlotError::NonPositiveOnLog {
                kind,
                axis,
                name,
                index,
                value,
            });
        }
    }
    Ok(())
}

/// Bin edges and counts; equal widths in log space when `log` is set.
/// All values equal get one unit-wide range around them (a factor of ten
/// either way on a log axis) so the bars have a width.
pub(super) fn bin(values: &[f64], bins: usize, log: bool) -> (Vec<f64>, Vec<f64>) {
    let scale = |v: f64| if log { v.log10() } else { v };
    let (mut lo, mut hi) = values
        .iter()
        .map(|&v| scale(v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo == hi {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0.0; bins];
    for &v in values {
        let index = ((scale(v) - lo) / width) as usize;
        counts[index.min(bins - 1)] += 1.0;
    }
    let unscale = |v: f64| if log { 10f64.powf(v) } else { v };
    let edges = (0..=bins).map(|i| unscale(lo + width * i as f64)).collect();
    (edges, counts)
}
