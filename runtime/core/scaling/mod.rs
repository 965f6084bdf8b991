//! Scaling-law fits: power laws in compute, general least-squares curves, the
//! Chinchilla-style joint law in features and steps, and the compute-optimal
//! frontier read off isoFLOP sweeps.
//!
//! Scaling Monosemanticity (Templeton et al., Anthropic 2024) found that SAE
//! loss falls as a power law in training compute and that the compute-optimal
//! number of features F and of training steps S both grow as power laws of
//! compute C. This module holds the maths to check that on one's own sweeps;
//! it is plain Rust on nalgebra, with the Levenberg–Marquardt solver of the
//! `levenberg-marquardt` crate.
//!
//! ```ignore
//! let fit = fit_power_law(&compute, &loss, &PowerLawOptions { offset: true, ..Default::default() })?;
//! println!("L = {:.3} C^-{:.3} + {:.3}", fit.a, fit.b, fit.c.unwrap());
//! ```
mod curve;
mod flops;
mod frontier;
mod joint;
mod lm;
mod power_law;
mod stats;

pub use curve::{builtin_model, fit_curve, BuiltinModel, CurveFit};
pub use flops::training_flops;
pub use frontier::{
    compute_frontier, Bucketing, Exponent, Frontier, FrontierOptions, FrontierPoint, Optimum,
    Quantity, Run,
};
pub use joint::{fit_joint, JointFit};
pub use power_law::{fit_power_law, PowerLawBootstrap, PowerLawFit, PowerLawOptions};
pub use stats::Interval;

/// Why a fit could not be made. Every message names the offending input, so
/// a script author can find the bad run without a debugger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Two inputs that must pair up point by point have different lengths.
    #[error("`{name}` has {len} values but `{other}` has {other_len}")]
    LengthMismatch {
        name: &'static str,
        len: usize,
        other: &'static str,
        other_len: usize,
    },
    /// A NaN or infinity among the inputs.
    #[error("`{name}[{index}]` is {value}; every input must be a finite number")]
    NonFinite {
        name: &'static str,
        index: usize,
        value: f64,
    },
    /// A zero or negative value where a logarithm has to be taken.
    #[error("`{name}[{index}]` is {value}; a log-space fit needs every value to be positive")]
    NonPositive {
        name: &'static str,
        index: usize,
        value: f64,
    },
    /// Fewer data points than the fit has parameters.
    #[error("need at least {needed} {what} to fit {params} parameter(s), got {got}")]
    TooFewPoints {
        what: &'static str,
        got: usize,
        needed: usize,
        params: usize,
    },
    /// The data cannot pin the parameters down (e.g. every x is the same).
    #[error("the data cannot determine the fit: {0}")]
    Degenerate(String),
    /// An option or argument outside its meaningful range.
    #[error("invalid `{name}`: {reason}")]
    InvalidOption { name: &'static str, reason: String },
    /// `builtin_model` was asked for a model it does not know.
    #[error("unknown model \"{name}\"; known models: {known}")]
    UnknownModel { name: String, known: String },
    /// A user-supplied model function failed.
    #[error("the model failed at x = {x}: {message}")]
    Model { x: f64, message: String },
    /// The model gives NaN or infinity at the starting parameters.
    #[error("the model is {value} at x = {x} for the initial parameters {params:?}")]
    NonFiniteModel {
        x: f64,
        value: f64,
        params: Vec<f64>,
    },
    /// The solver stopped without meeting its convergence criteria.
    #[error("the fit did not converge after {iterations} iterations ({reason})")]
    NotConverged { iterations: usize, reason: String },
    /// The solver finished but some parameter is NaN or infinite.
    #[error("the fit produced non-finite parameters {params:?}")]
    NonFiniteParams { params: Vec<f64> },
    /// `compute_frontier` was given no runs.
    #[error("the compute frontier is empty: no runs were given")]
    EmptyFrontier,
}

/// Checks that `values` pairs up with `other` (`other_len` values) and is all finite.
fn check_paired(
    name: &'static str,
    values: &[f64],
    other: &'static str,
    other_len: usize,
) -> Result<(), FitError> {
    if values.len() != other_len {
        return Err(FitError::LengthMismatch {
            name,
            len: values.len(),
            other,
            other_len,
        });
    }
    check_finite(name, values)
}

fn check_finite(name: &'static str, values: &[f64]) -> Result<(), FitError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(FitError::NonFinite {
            name,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

fn check_positive(name: &'static str, values: &[f64]) -> Result<(), FitError> {
    match values.iter().position(|&v| v <= 0.0) {
        Some(index) => Err(FitError::NonPositive {
            name,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

fn check_enough(got: usize, params: usize, what: &'static str) -> Result<(), FitError> {
    if got < params {
        return Err(FitError::TooFewPoints {
            what,
            got,
            needed: params,
            params,
        });
    }
    Ok(())
}

fn check_confidence(confidence: f64) -> Result<(), FitError> {
    if confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(FitError::InvalidOption {
            name: "confidence",
            reason: format!("must lie strictly between 0 and 1, got {confidence}"),
        })
    }
}

/// Number of distinct values; a model with p parameters in x needs p of them.
fn distinct_count(values: &[f64]) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    sorted.len()
}

/// Synthetic data for the unit tests of every fit.
#[cfg(test)]
mod test_data {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// `n` values from `low` to `high`, evenly spaced in log.
    pub fn log_spaced(low: f64, high: f64, n: usize) -> Vec<f64> {
        let step = (high / low).ln() / (n - 1) as f64;
        (0..n).map(|i| low * (step * i as f64).exp()).collect()
    }

    /// `v·(1 + ε)` with ε ~ N(0, relative²): multiplicative noise, as in run-to-run loss spread.
    pub fn with_noise(values: &[f64], relative: f64, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let noise = Normal::new(0.0, relative).expect("a positive standard deviation");
        values
            .iter()
            .map(|v| v * (1.0 + noise.sample(&mut rng)))
            .collect()
    }
}
