//! Small statistics shared by the fits: R², straight-line least squares,
//! geometric means and percentile bootstrap intervals.
use super::FitError;
use rand::rngs::StdRng;
use rand::RngExt;
use serde::Serialize;

/// A two-sided confidence interval `[lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

impl Interval {
    /// Whether `value` lies inside the interval (ends included).
    pub fn contains(&self, value: f64) -> bool {
        self.lower <= value && value <= self.upper
    }
}

/// R² = 1 − SS_res / SS_tot, in the space the residuals are given in.
///
/// When every y is the same SS_tot is zero and R² is undefined; we report 1
/// for an exact fit and 0 otherwise rather than pass on a NaN.
pub(super) fn r_squared(ys: &[f64], residuals: &[f64]) -> f64 {
    let mean = ys.iter().sum::<f64>() / ys.len() as f64;
    let total: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    let unexplained: f64 = residuals.iter().map(|r| r * r).sum();
    if total > 0.0 {
        1.0 - unexplained / total
    } else if unexplained == 0.0 {
        1.0
    } else {
        0.0
    }
}

/// `y = intercept + slope·x`, by ordinary least squares.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line {
    pub intercept: f64,
    pub slope: f64,
}

/// Closed-form least-squares line; fails when x has no spread.
pub(super) fn fit_line(xs: &[f64], ys: &[f64]) -> Result<Line, FitError> {
    let n = xs.len() as f64;
    let x_mean = xs.iter().sum::<f64>() / n;
    let y_mean = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - x_mean).powi(2)).sum();
    let sxy: f64 = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (x - x_mean) * (y - y_mean))
        .sum();
    // Relative test: log-x values near 40 (C ~ 1e17) still have a tiny spread.
    if sxx <= f64::EPSILON * n * x_mean.abs().max(1.0).powi(2) {
        return Err(FitError::Degenerate(
            "every x value is the same, so no slope can be fitted".into(),
        ));
    }
    let slope = sxy / sxx;
    Ok(Line {
        intercept: y_mean - slope * x_mean,
        slope,
    })
}

/// exp(mean(ln x)): the natural reference scale for data spread over decades.
pub(super) fn geometric_mean(values: &[f64]) -> f64 {
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

/// `n` indices drawn uniformly with replacement.
pub(super) fn resample(n: usize, rng: &mut StdRng) -> Vec<usize> {
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

/// The central `confidence` interval of `samples` (percentile bootstrap).
/// `samples` must not be empty; it is sorted in place.
pub(super) fn percentile_interval(samples: &mut [f64], confidence: f64) -> Interval {
    samples.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Interval {
        lower: quantile(samples, tail),
        upper: quantile(samples, 1.0 - tail),
    }
}

/// Linear interpolation between order statistics (NumPy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interval_interpolates_like_numpy() {
        let mut samples: Vec<f64> = (0..=100).rev().map(f64::from).collect();
        let interval = percentile_interval(&mut samples, 0.9);
        assert!((interval.lower - 5.0).abs() < 1e-12);
        assert!((interval.upper - 95.0).abs() < 1e-12);
    }

    #[test]
    fn r_squared_of_constant_data_is_never_nan() {
        assert_eq!(r_squared(&[2.0, 2.0], &[0.0, 0.0]), 1.0);
        assert_eq!(r_squared(&[2.0, 2.0], &[0.1, -0.1]), 0.0);
    }

    #[test]
    fn fit_line_recovers_an_exact_line() {
        let xs = [1.0, 2.0, 3.0];
        let ys = [5.0, 3.0, 1.0];
        let line = fit_line(&xs, &ys).unwrap();
        assert!((line.slope + 2.0).abs() < 1e-12 && (line.intercept - 7.0).abs() < 1e-12);
    }

    #[test]
    fn fit_line_rejects_x_without_spread() {
        let xs = [40.0, 40.0, 40.0];
        assert!(matches!(
            fit_line(&xs, &[1.0, 2.0, 3.0]),
            Err(FitError::Degenerate(_))
        ));
    }
}
