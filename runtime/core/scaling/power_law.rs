//! `y = a·x^(−b)` and `y = a·x^(−b) + c`: the loss-versus-compute law of
//! Scaling Monosemanticity, with percentile-bootstrap confidence intervals.
use super::stats::{self, Interval};
use super::{check_confidence, check_enough, check_finite, check_paired, check_positive, lm};
use super::{distinct_count, FitError};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

/// Options for [`fit_power_law`].
#[derive(Debug, Clone, Serialize)]
pub struct PowerLawOptions {
    /// Fit `y = a·x^(−b) + c` (an irreducible loss `c`) instead of `y = a·x^(−b)`.
    pub offset: bool,
    /// Minimise squared errors of `ln y` instead of `y`: the right choice when
    /// the noise is multiplicative, and what makes the fit without offset a
    /// closed-form straight line in log-log space (no iterations).
    pub log_space: bool,
    /// Number of bootstrap resamples for the confidence intervals; 0 skips them.
    pub bootstrap: usize,
    /// Coverage of the bootstrap intervals, e.g. 0.95.
    pub confidence: f64,
    /// Seed of the resampling RNG, so that intervals are reproducible.
    pub seed: u64,
}

impl Default for PowerLawOptions {
    fn default() -> Self {
        PowerLawOptions {
            offset: false,
            log_space: false,
            bootstrap: 200,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// A fitted `y = a·x^(−b) (+ c)`.
#[derive(Debug, Clone, Serialize)]
pub struct PowerLawFit {
    pub a: f64,
    /// The decay exponent; positive when y falls with x.
    pub b: f64,
    /// The offset (irreducible value), present when `offset` was asked for.
    pub c: Option<f64>,
    /// R² of y itself (not of ln y), whatever space the fit minimised in.
    pub r2: f64,
    /// `y_i − ŷ_i`, in the order of the input.
    pub residuals: Vec<f64>,
    /// Levenberg–Marquardt iterations; 0 for the closed-form log-space fit.
    pub iterations: usize,
    /// Confidence intervals, absent when `bootstrap` was 0.
    pub bootstrap: Option<PowerLawBootstrap>,
}

impl PowerLawFit {
    /// ŷ at `x`.
    pub fn predict(&self, x: f64) -> f64 {
        self.a * x.powf(-self.b) + self.c.unwrap_or(0.0)
    }
}

/// Percentile-bootstrap intervals over resampled points.
#[derive(Debug, Clone, Serialize)]
pub struct PowerLawBootstrap {
    pub confidence: f64,
    /// Resamples that were fitted and enter the intervals.
    pub resamples: usize,
    /// Resamples that could not be fitted (too few distinct x, no convergence).
    pub failed: usize,
    pub a: Interval,
    pub b: Interval,
    pub c: Option<Interval>,
}

/// Fits `y = a·x^(−b)`, or `y = a·x^(−b) + c` with `opts.offset`.
///
/// The first guess is a least-squares line through `(ln x, ln y)`; for the
/// offset form, through `(ln x, ln(y − c0))` with `c0` the best of a few
/// fractions of `min(y)`. Unless the fit without offset is in log space (a
/// closed form), Levenberg–Marquardt then refines it, working internally
/// with `x / x_ref` (`x_ref` the geometric mean of x) so that compute values
/// around 1e18 do not make `a` astronomically large mid-fit.
///
/// Errors: mismatched lengths, non-finite values, `x ≤ 0` (or `y ≤ 0` where a
/// log of y is taken), fewer points or distinct x than parameters, and a fit
/// that does not converge.
pub fn fit_power_law(
    xs: &[f64],
    ys: &[f64],
    opts: &PowerLawOptions,
) -> Result<PowerLawFit, FitError> {
    check_inputs(xs, ys, opts)?;
    let estimate = estimate(xs, ys, opts)?;
    let residuals: Vec<f64> = xs
        .iter()
        .zip(ys)
        .map(|(&x, y)| y - estimate.predict(x))
        .collect();
    let bootstrap = match opts.bootstrap {
        0 => None,
        _ => Some(bootstrap(xs, ys, opts)?),
    };
    Ok(PowerLawFit {
        a: estimate.a,
        b: estimate.b,
        c: estimate.c,
        r2: stats::r_squared(ys, &residuals),
        residuals,
        iterations: estimate.iterations,
        bootstrap,
    })
}

fn parameter_count(opts: &PowerLawOptions) -> usize {
    if opts.offset {
        3
    } else {
        2
    }
}

fn check_inputs(xs: &[f64], ys: &[f64], opts: &PowerLawOptions) -> Result<(), FitError> {
    check_finite("xs", xs)?;
    check_paired("ys", ys, "xs", xs.len())?;
    check_positive("xs", xs)?;
    if !opts.offset || opts.log_space {
        check_positive("ys", ys)?;
    }
    let params = parameter_count(opts);
    check_enough(xs.len(), params, "points")?;
    if distinct_count(xs) < params {
        return Err(FitError::Degenerate(format!(
            "{params} parameters need at least {params} distinct x values"
        )));
    }
    check_confidence(opts.confidence)
}

/// Point estimate of the parameters (no intervals).
#[derive(Debug, Clone, Copy)]
struct Estimate {
    a: f64,
    b: f64,
    c: Option<f64>,
    iterations: usize,
}

impl Estimate {
    fn predict(&self, x: f64) -> f64 {
        self.a * x.powf(-self.b) + self.c.unwrap_or(0.0)
    }
}

fn estimate(xs: &[f64], ys: &[f64], opts: &PowerLawOptions) -> Result<Estimate, FitError> {
    let start = log_space_start(xs, ys, opts.offset)?;
    if opts.log_space && !opts.offset {
        return Ok(start);
    }
    refine(xs, ys, start, opts.log_space)
}

/// `[a, b]` or `[a, b, c]` from log-space least squares, as a starting point
/// for [`super::fit_curve`]; x (and y without offset) must be positive.
pub(super) fn first_guess(xs: &[f64], ys: &[f64], offset: bool) -> Result<Vec<f64>, FitError> {
    check_positive("xs", xs)?;
    if !offset {
        check_positive("ys", ys)?;
    }
    let start = log_space_start(xs, ys, offset)?;
    let mut params = vec![start.a, start.b];
    params.extend(start.c);
    Ok(params)
}

/// The log-log least-squares line, on `y − c0` for the offset form.
fn log_space_start(xs: &[f64], ys: &[f64], offset: bool) -> Result<Estimate, FitError> {
    let (line, c) = if offset {
        let (line, c0) = offset_start(xs, ys)?;
        (line, Some(c0))
    } else {
        (log_log_line(xs, ys, 0.0)?, None)
    };
    Ok(Estimate {
        a: line.intercept.exp(),
        b: -line.slope,
        c,
        iterations: 0,
    })
}

/// Least-squares line through `(ln x, ln(y − c0))`.
fn log_log_line(xs: &[f64], ys: &[f64], c0: f64) -> Result<stats::Line, FitError> {
    let log_x: Vec<f64> = xs.iter().map(|x| x.ln()).collect();
    let log_y: Vec<f64> = ys.iter().map(|y| (y - c0).ln()).collect();
    stats::fit_line(&log_x, &log_y)
}

/// Tries a few offsets below `min(y)` and keeps the one whose log-space line
/// fits y best: one fixed fraction is a poor start when the curve has not yet
/// flattened (c ≪ min y) or has flattened a lot (c ≈ min y).
fn offset_start(xs: &[f64], ys: &[f64]) -> Result<(stats::Line, f64), FitError> {
    let lowest = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let spread = (highest - lowest).max(f64::MIN_POSITIVE);
    let mut best: Option<(f64, stats::Line, f64)> = None;
    for fraction in [0.0, 0.5, 0.8, 0.9, 0.95, 0.99] {
        // Below-zero data has no "fraction of min(y)"; step down by the spread instead.
        let c0 = if lowest > 0.0 {
            fraction * lowest
        } else {
            lowest - (1.0 - fraction) * spread
        };
        let line = log_log_line(xs, ys, c0)?;
        let error: f64 = xs
            .iter()
            .zip(ys)
            .map(|(x, y)| (line.intercept + line.slope * x.ln()).exp() + c0 - y)
            .map(|r| r * r)
            .sum();
        if error.is_finite() && best.as_ref().is_none_or(|(e, _, _)| error < *e) {
            best = Some((error, line, c0));
        }
    }
    best.map(|(_, line, c0)| (line, c0))
        .ok_or_else(|| FitError::Degenerate("no starting point for the offset fit".into()))
}

/// Levenberg–Marquardt on `[a', b, (c)]` with `ŷ = a'·(x/x_ref)^(−b) + c`.
fn refine(xs: &[f64], ys: &[f64], start: Estimate, log_space: bool) -> Result<Estimate, FitError> {
    let x_ref = stats::geometric_mean(xs);
    let scaled_x: Vec<f64> = xs.iter().map(|x| x / x_ref).collect();
    let mut p0 = vec![start.a * x_ref.powf(-start.b), start.b];
    p0.extend(start.c);
    let residuals = |p: &[f64], out: &mut [f64]| {
        let c = p.get(2).copied().unwrap_or(0.0);
        for ((r, x), y) in out.iter_mut().zip(&scaled_x).zip(ys) {
            let predicted = p[0] * x.powf(-p[1]) + c;
            // ln of a negative trial prediction is NaN, which the solver rejects.
            *r = if log_space {
                predicted.ln() - y.ln()
            } else {
                predicted - y
            };
        }
        Ok(())
    };
    let solution = lm::minimize(residuals, xs.len(), &p0)?;
    if !solution.converged {
        return Err(FitError::NotConverged {
            iterations: solution.iterations,
            reason: solution.termination,
        });
    }
    let p = &solution.params;
    let a = p[0] * x_ref.powf(p[1]);
    if !a.is_finite() {
        return Err(FitError::NonFiniteParams { params: p.clone() });
    }
    Ok(Estimate {
        a,
        b: p[1],
        c: p.get(2).copied(),
        iterations: solution.iterations,
    })
}

/// Refits on `opts.bootstrap` resamples (points drawn with replacement) and
/// reads percentile intervals off the refitted parameters.
fn bootstrap(
    xs: &[f64],
    ys: &[f64],
    opts: &PowerLawOptions,
) -> Result<PowerLawBootstrap, FitError> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    for _ in 0..opts.bootstrap {
        let indices = stats::resample(xs.len(), &mut rng);
        let sample_x: Vec<f64> = indices.iter().map(|&i| xs[i]).collect();
        let sample_y: Vec<f64> = indices.iter().map(|&i| ys[i]).collect();
        if distinct_count(&sample_x) < parameter_count(opts) {
            failed += 1;
            continue;
        }
        match estimate(&sample_x, &sample_y, opts) {
            Ok(fit) => {
                a.push(fit.a);
                b.push(fit.b);
                c.extend(fit.c);
            }
            Err(_) => failed += 1,
        }
    }
    if a.is_empty() {
        return Err(FitError::Degenerate(format!(
            "none of the {} bootstrap resamples could be fitted; set bootstrap to 0 to skip intervals",
            opts.bootstrap
        )));
    }
    let confidence = opts.confidence;
    Ok(PowerLawBootstrap {
        confidence,
        resamples: a.len(),
        failed,
        a: stats::percentile_interval(&mut a, confidence),
        b: stats::percentile_interval(&mut b, confidence),
        c: (!c.is_empty()).then(|| stats::percentile_interval(&mut c, confidence)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_data::{log_spaced, with_noise};
    use super::*;

    const A: f64 = 10.0;
    const B: f64 = 0.5;
    const C: f64 = 1.8;

    /// A loss-versus-compute curve over four decades with 1% multiplicative
    /// noise, flattening from 5.6·c to 1.06·c so that the offset is pinned down.
    fn loss_curve(offset: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let compute = log_spaced(1e15, 1e19, 24);
        let clean: Vec<f64> = compute
            .iter()
            .map(|x| A * (x / 1e15).powf(-B) + offset)
            .collect();
        (compute, with_noise(&clean, 0.01, seed))
    }

    fn no_bootstrap() -> PowerLawOptions {
        PowerLawOptions {
            bootstrap: 0,
            ..Default::default()
        }
    }

    #[test]
    fn power_law_recovers_exponent_within_two_percent() {
        let (xs, ys) = loss_curve(0.0, 1);
        let fit = fit_power_law(&xs, &ys, &no_bootstrap()).unwrap();
        assert!((fit.b - B).abs() / B < 0.02, "b = {}", fit.b);
        assert!(fit.c.is_none() && fit.iterations > 0 && fit.r2 > 0.99);
        assert_eq!(fit.residuals.len(), xs.len());
    }

    #[test]
    fn log_space_power_law_is_closed_form_and_exact_on_clean_data() {
        let xs = log_spaced(1.0, 1e6, 10);
        let ys: Vec<f64> = xs.iter().map(|x| 3.0 * x.powf(-0.7)).collect();
        let opts = PowerLawOptions {
            log_space: true,
            ..no_bootstrap()
        };
        let fit = fit_power_law(&xs, &ys, &opts).unwrap();
        assert_eq!(fit.iterations, 0);
        assert!((fit.a - 3.0).abs() < 1e-9 && (fit.b - 0.7).abs() < 1e-12);
        assert!((fit.r2 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn offset_power_law_recovers_b_within_two_and_c_within_five_percent() {
        let (xs, ys) = loss_curve(C, 2);
        for log_space in [false, true] {
            let opts = PowerLawOptions {
                offset: true,
                log_space,
                ..no_bootstrap()
            };
            let fit = fit_power_law(&xs, &ys, &opts).unwrap();
            let c = fit.c.unwrap();
            assert!(
                (fit.b - B).abs() / B < 0.02,
                "log {log_space}: b = {}",
                fit.b
            );
            assert!((c - C).abs() / C < 0.05, "log {log_space}: c = {c}");
        }
    }

    #[test]
    fn offset_fit_accepts_negative_y() {
        let xs = log_spaced(1.0, 1e4, 12);
        let ys: Vec<f64> = xs.iter().map(|x| 2.0 * x.powf(-0.5) - 1.0).collect();
        let opts = PowerLawOptions {
            offset: true,
            ..no_bootstrap()
        };
        let fit = fit_power_law(&xs, &ys, &opts).unwrap();
        assert!((fit.b - 0.5).abs() < 1e-6 && (fit.c.unwrap() + 1.0).abs() < 1e-6);
    }

    #[test]
    fn bootstrap_intervals_contain_the_true_parameters() {
        // A single 95% interval misses one time in twenty, so check coverage
        // over twenty noisy data sets rather than luck on one.
        let (mut covers_b, mut covers_c) = (0, 0);
        for seed in 0..20 {
            let (xs, ys) = loss_curve(C, 100 + seed);
            let opts = PowerLawOptions {
                offset: true,
                bootstrap: 100,
                seed,
                ..Default::default()
            };
            let fit = fit_power_law(&xs, &ys, &opts).unwrap();
            let intervals = fit.bootstrap.unwrap();
            assert_eq!(intervals.resamples + intervals.failed, 100);
            assert!(intervals.b.contains(fit.b) && intervals.a.contains(fit.a));
            covers_b += usize::from(intervals.b.contains(B));
            covers_c += usize::from(intervals.c.unwrap().contains(C));
        }
        assert!(
            covers_b >= 17 && covers_c >= 17,
            "b: {covers_b}/20, c: {covers_c}/20"
        );
    }

    #[test]
    fn bootstrap_is_reproducible_for_a_seed() {
        let (xs, ys) = loss_curve(0.0, 4);
        let opts = PowerLawOptions {
            bootstrap: 30,
            ..Default::default()
        };
        let first = fit_power_law(&xs, &ys, &opts).unwrap().bootstrap.unwrap();
        let second = fit_power_law(&xs, &ys, &opts).unwrap().bootstrap.unwrap();
        assert_eq!(first.b, second.b);
    }

    #[test]
    fn fit_running_off_to_infinity_is_reported_as_not_converged() {
        // A step from 1 to a flat 0.5 is best fitted by b → ∞.
        let opts = PowerLawOptions {
            offset: true,
            ..no_bootstrap()
        };
        let err = fit_power_law(&[1.0, 2.0, 3.0, 4.0], &[1.0, 0.5, 0.5, 0.5], &opts).unwrap_err();
        assert!(matches!(err, FitError::NotConverged { .. }), "{err}");
        assert!(err.to_string().contains("infinity"), "{err}");
    }

    #[test]
    fn non_positive_x_is_reported_with_its_index() {
        let err = fit_power_law(&[1.0, 0.0, 3.0], &[1.0, 2.0, 3.0], &no_bootstrap()).unwrap_err();
        assert_eq!(
            err,
            FitError::NonPositive {
                name: "xs",
                index: 1,
                value: 0.0
            }
        );
        assert!(err.to_string().contains("xs[1]"));
    }

    #[test]
    fn non_positive_y_is_rejected_without_offset() {
        let err = fit_power_law(&[1.0, 2.0, 3.0], &[1.0, 2.0, -3.0], &no_bootstrap()).unwrap_err();
        assert!(matches!(
            err,
            FitError::NonPositive {
                name: "ys",
                index: 2,
                ..
            }
        ));
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let opts = no_bootstrap();
        assert!(matches!(
            fit_power_law(&[1.0, 2.0], &[1.0], &opts),
            Err(FitError::LengthMismatch {
                len: 1,
                other_len: 2,
                ..
            })
        ));
        assert!(matches!(
            fit_power_law(&[1.0, f64::NAN], &[1.0, 2.0], &opts),
            Err(FitError::NonFinite {
                name: "xs",
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            fit_power_law(&[1.0], &[1.0], &opts),
            Err(FitError::TooFewPoints {
                got: 1,
                needed: 2,
                ..
            })
        ));
        let offset = PowerLawOptions {
            offset: true,
            ..opts.clone()
        };
        assert!(matches!(
            fit_power_law(&[1.0, 2.0, 2.0], &[3.0, 2.0, 2.0], &offset),
            Err(FitError::Degenerate(_))
        ));
        let bad_confidence = PowerLawOptions {
            confidence: 1.5,
            ..opts
        };
        assert!(matches!(
            fit_power_law(&[1.0, 2.0], &[2.0, 1.0], &bad_confidence),
            Err(FitError::InvalidOption {
                name: "confidence",
                ..
            })
        ));
    }
}
