//! The Chinchilla-style joint law `L(F, S) = E + A/F^α + B/S^β` in the
//! number of features F and training steps S (Hoffmann et al. 2022, approach
//! 3, with features in place of parameters and steps in place of tokens).
use super::stats::{self, geometric_mean};
use super::FitError;
use super::{check_enough, check_finite, check_paired, check_positive, distinct_count, lm};
use nalgebra::{DMatrix, DVector};
use serde::Serialize;

/// Exponents tried for the first guess; SAE and LM exponents fall in this range.
const EXPONENT_GRID: [f64; 8] = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5];

/// A fitted `L(F, S) = E + A/F^α + B/S^β`.
#[derive(Debug, Clone, Serialize)]
pub struct JointFit {
    /// The irreducible loss, reached with infinitely many features and steps.
    pub e: f64,
    pub a: f64,
    pub alpha: f64,
    pub b: f64,
    pub beta: f64,
    /// R² of the loss.
    pub r2: f64,
    /// `L_i − L̂_i`, in the order of the input.
    pub residuals: Vec<f64>,
    /// Levenberg–Marquardt iterations.
    pub iterations: usize,
}

impl JointFit {
    /// L̂ at `n_features` features and `steps` steps.
    pub fn predict(&self, n_features: f64, steps: f64) -> f64 {
        self.e + self.a * n_features.powf(-self.alpha) + self.b * steps.powf(-self.beta)
    }
}

/// Fits `L(F, S) = E + A/F^α + B/S^β` to runs with `fs[i]` features,
/// `ss[i]` steps and loss `ls[i]`.
///
/// Model is linear in E, A and B once α and β are fixed, so the first guess
/// is the best of a small grid of exponents with E, A, B solved exactly by
/// linear least squares; Levenberg–Marquardt then refines all five, with F
/// and S divided by their geometric means to keep A and B of order one.
///
/// Needs at least five runs, with at least three distinct values each of F
/// and S (with two, an exponent cannot be told apart from its coefficient).
pub fn fit_joint(fs: &[f64], ss: &[f64], ls: &[f64]) -> Result<JointFit, FitError> {
    check_inputs(fs, ss, ls)?;
    let data = Scaled::new(fs, ss);
    let p0 = first_guess(&data, ls)?;
    let residuals = |p: &[f64], out: &mut [f64]| {
        for (i, (r, l)) in out.iter_mut().zip(ls).enumerate() {
            *r = data.predict(i, p) - l;
        }
        Ok(())
    };
    let solution = lm::minimize(residuals, ls.len(), &p0)?;
    if !solution.converged {
        return Err(FitError::NotConverged {
            iterations: solution.iterations,
            reason: solution.termination,
        });
    }
    let p = &solution.params;
    let fit_residuals: Vec<f64> = (0..ls.len()).map(|i| ls[i] - data.predict(i, p)).collect();
    let (a, b) = (p[1] * data.f_ref.powf(p[2]), p[3] * data.s_ref.powf(p[4]));
    if !(a.is_finite() && b.is_finite()) {
        return Err(FitError::NonFiniteParams { params: p.clone() });
    }
    Ok(JointFit {
        e: p[0],
        a,
        alpha: p[2],
        b,
        beta: p[4],
        r2: stats::r_squared(ls, &fit_residuals),
        residuals: fit_residuals,
        iterations: solution.iterations,
    })
}

fn check_inputs(fs: &[f64], ss: &[f64], ls: &[f64]) -> Result<(), FitError> {
    check_finite("fs", fs)?;
    check_paired("ss", ss, "fs", fs.len())?;
    check_paired("ls", ls, "fs", fs.len())?;
    check_positive("fs", fs)?;
    check_positive("ss", ss)?;
    check_enough(ls.len(), 5, "runs")?;
    for (name, values) in [("features (fs)", fs), ("steps (ss)", ss)] {
        if distinct_count(values) < 3 {
            return Err(FitError::Degenerate(format!(
                "{name} take fewer than 3 distinct values, so the exponent is not identifiable"
            )));
        }
    }
    Ok(())
}

/// F and S over their geometric means; parameters are `[E, A', α, B', β]`
/// with `A = A'·F_ref^α` and `B = B'·S_ref^β`.
struct Scaled {
    f: Vec<f64>,
    s: Vec<f64>,
    f_ref: f64,
    s_ref: f64,
}

impl Scaled {
    fn new(fs: &[f64], ss: &[f64]) -> Self {
        let (f_ref, s_ref) = (geometric_mean(fs), geometric_mean(ss));
        Scaled {
            f: fs.iter().map(|f| f / f_ref).collect(),
            s: ss.iter().map(|s| s / s_ref).collect(),
            f_ref,
            s_ref,
        }
    }

    fn predict(&self, i: usize, p: &[f64]) -> f64 {
        p[0] + p[1] * self.f[i].powf(-p[2]) + p[3] * self.s[i].powf(-p[4])
    }
}

/// Best `[E, A', α, B', β]` over the exponent grid, E/A'/B' by linear least squares.
fn first_guess(data: &Scaled, ls: &[f64]) -> Result<Vec<f64>, FitError> {
    let targets = DVector::from_column_slice(ls);
    let mut best: Option<(f64, Vec<f64>)> = None;
    for alpha in EXPONENT_GRID {
        for beta in EXPONENT_GRID {
            let design = DMatrix::from_fn(ls.len(), 3, |i, j| match j {
                0 => 1.0,
                1 => data.f[i].powf(-alpha),
                _ => data.s[i].powf(-beta),
            });
            let Ok(coefficients) = design.clone().svd(true, true).solve(&targets, 1e-12) else {
                continue;
            };
            let error = (&design * &coefficients - &targets).norm_squared();
            if error.is_finite() && best.as_ref().is_none_or(|(e, _)| error < *e) {
                let c = coefficients.as_slice();
                best = Some((error, vec![c[0], c[1], alpha, c[2], beta]));
            }
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| FitError::Degenerate("no starting point for the joint fit".into()))
}

#[cfg(test)]
mod tests {
    use super::super::test_data::{log_spaced, with_noise};
    use super::*;

    const E: f64 = 1.5;
    const ALPHA: f64 = 0.35;
    const BETA: f64 = 0.5;

    fn law(f: f64, s: f64) -> f64 {
        E + 50.0 * f.powf(-ALPHA) + 200.0 * s.powf(-BETA)
    }

    #[test]
    fn joint_fit_recovers_e_alpha_and_beta() {
        let mut fs = Vec::new();
        let mut ss = Vec::new();
        for f in log_spaced(1024.0, 131072.0, 6) {
            for s in log_spaced(1e3, 1e5, 6) {
                fs.push(f);
                ss.push(s);
            }
        }
        let clean: Vec<f64> = fs.iter().zip(&ss).map(|(&f, &s)| law(f, s)).collect();
        let ls = with_noise(&clean, 0.005, 21);
        let fit = fit_joint(&fs, &ss, &ls).unwrap();
        assert!((fit.e - E).abs() / E < 0.05, "{fit:?}");
        assert!((fit.alpha - ALPHA).abs() / ALPHA < 0.1, "{fit:?}");
        assert!((fit.beta - BETA).abs() / BETA < 0.1, "{fit:?}");
        assert!(fit.r2 > 0.99 && fit.iterations > 0);
        assert!((fit.predict(4096.0, 1e4) - law(4096.0, 1e4)).abs() < 0.05);
    }

    #[test]
    fn joint_fit_needs_three_distinct_feature_counts() {
        let fs = [1.0, 1.0, 2.0, 2.0, 2.0];
        let ss = [1.0, 2.0, 3.0, 4.0, 5.0];
        let err = fit_joint(&fs, &ss, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap_err();
        assert!(matches!(err, FitError::Degenerate(message) if message.contains("features")));
    }

    #[test]
    fn joint_fit_needs_five_runs_and_matching_lengths() {
        let err = fit_joint(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap_err();
        assert!(matches!(
            err,
            FitError::TooFewPoints {
                got: 3,
                needed: 5,
                ..
            }
        ));
        let err = fit_joint(&[1.0, 2.0], &[1.0, 2.0], &[1.0]).unwrap_err();
        assert!(matches!(err, FitError::LengthMismatch { name: "ls", .. }));
    }
}
