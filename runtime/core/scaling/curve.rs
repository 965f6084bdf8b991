//! General least squares: any model `y = f(x; p)`, whether a closure from a
//! script or one of the named built-in models.
use super::stats::{self, fit_line};
use super::{check_enough, check_finite, check_paired, check_positive, lm, power_law, FitError};
use serde::Serialize;

/// A fitted general curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurveFit {
    /// The fitted parameters, in the order of `p0`.
    pub params: Vec<f64>,
    /// R² of y.
    pub r2: f64,
    /// `y_i − ŷ_i`, in the order of the input.
    pub residuals: Vec<f64>,
    /// Levenberg–Marquardt iterations (Jacobian evaluations).
    pub iterations: usize,
    /// False when the solver ran out of evaluations before converging; the
    /// parameters are then the best found so far.
    pub converged: bool,
}

/// Fits `y ≈ model(x, p)` by Levenberg–Marquardt from `p0`, minimising
/// `Σ (model(x_i, p) − y_i)²` with a central-difference Jacobian.
///
/// `model` may fail (a script error, say): the first failure ends the fit
/// and comes back as [`FitError::Model`] with the x it failed at. A model
/// that is NaN or infinite at `p0` is [`FitError::NonFiniteModel`].
pub fn fit_curve<M>(mut model: M, xs: &[f64], ys: &[f64], p0: &[f64]) -> Result<CurveFit, FitError>
where
    M: FnMut(f64, &[f64]) -> Result<f64, String>,
{
    check_inputs(xs, ys, p0)?;
    let start = predict(&mut model, xs, p0)?;
    if let Some(i) = start.iter().position(|v| !v.is_finite()) {
        return Err(FitError::NonFiniteModel {
            x: xs[i],
            value: start[i],
            params: p0.to_vec(),
        });
    }
    let residuals = |p: &[f64], out: &mut [f64]| {
        for ((r, &x), y) in out.iter_mut().zip(xs).zip(ys) {
            *r = call(&mut model, x, p)? - y;
        }
        Ok(())
    };
    let solution = lm::minimize(residuals, xs.len(), p0)?;
    let fitted = predict(&mut model, xs, &solution.params)?;
    let residuals: Vec<f64> = ys.iter().zip(&fitted).map(|(y, f)| y - f).collect();
    Ok(CurveFit {
        r2: stats::r_squared(ys, &residuals),
        residuals,
        params: solution.params,
        iterations: solution.iterations,
        converged: solution.converged,
    })
}

fn check_inputs(xs: &[f64], ys: &[f64], p0: &[f64]) -> Result<(), FitError> {
    check_finite("xs", xs)?;
    check_paired("ys", ys, "xs", xs.len())?;
    check_finite("p0", p0)?;
    if p0.is_empty() {
        return Err(FitError::InvalidOption {
            name: "p0",
            reason: "the model needs at least one parameter".into(),
        });
    }
    check_enough(xs.len(), p0.len(), "points")
}

fn call<M>(model: &mut M, x: f64, params: &[f64]) -> Result<f64, FitError>
where
    M: FnMut(f64, &[f64]) -> Result<f64, String>,
{
    model(x, params).map_err(|message| FitError::Model { x, message })
}

fn predict<M>(model: &mut M, xs: &[f64], params: &[f64]) -> Result<Vec<f64>, FitError>
where
    M: FnMut(f64, &[f64]) -> Result<f64, String>,
{
    xs.iter().map(|&x| call(model, x, params)).collect()
}

/// The named models a script can fit without writing a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinModel {
    /// `a·x^(−b)`
    PowerLaw,
    /// `a·x^(−b) + c`
    PowerLawOffset,
    /// `a·exp(−b·x)`
    Exponential,
    /// `a·x + b` (slope first, as in `numpy.polyfit`)
    Linear,
}

/// The built-in model called `name`: "power_law", "power_law_offset",
/// "exponential" or "linear".
pub fn builtin_model(name: &str) -> Result<BuiltinModel, FitError> {
    BuiltinModel::ALL
        .into_iter()
        .find(|model| model.name() == name)
        .ok_or_else(|| FitError::UnknownModel {
            name: name.to_string(),
            known: BuiltinModel::ALL.map(BuiltinModel::name).join(", "),
        })
}

impl BuiltinModel {
    pub const ALL: [BuiltinModel; 4] = [
        BuiltinModel::PowerLaw,
        BuiltinModel::PowerLawOffset,
        BuiltinModel::Exponential,
        BuiltinModel::Linear,
    ];

    /// The name `builtin_model` knows it by.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinModel::PowerLaw => "power_law",
            BuiltinModel::PowerLawOffset => "power_law_offset",
            BuiltinModel::Exponential => "exponential",
            BuiltinModel::Linear => "linear",
        }
    }

    /// The formula, for help text and plot legends.
    pub fn formula(self) -> &'static str {
        match self {
            BuiltinModel::PowerLaw => "a·x^(−b)",
            BuiltinModel::PowerLawOffset => "a·x^(−b) + c",
            BuiltinModel::Exponential => "a·exp(−b·x)",
            BuiltinModel::Linear => "a·x + b",
        }
    }

    /// Parameter names, in the order of the parameter vector.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            BuiltinModel::PowerLawOffset => &["a", "b", "c"],
            _ => &["a", "b"],
        }
    }

    /// The model's value at `x`; fails when `params` has the wrong length.
    pub fn eval(self, x: f64, params: &[f64]) -> Result<f64, String> {
        let expected = self.param_names().len();
        if params.len() != expected {
            return Err(self.arity_message(params.len()));
        }
        let (a, b) = (params[0], params[1]);
        Ok(match self {
            BuiltinModel::PowerLaw => a * x.powf(-b),
            BuiltinModel::PowerLawOffset => a * x.powf(-b) + params[2],
            BuiltinModel::Exponential => a * (-b * x).exp(),
            BuiltinModel::Linear => a * x + b,
        })
    }

    /// Fits the model with [`fit_curve`], from `p0` or, when absent, from a
    /// closed-form guess (log-space least squares for the power laws and the
    /// exponential, which therefore need positive data).
    pub fn fit(self, xs: &[f64], ys: &[f64], p0: Option<&[f64]>) -> Result<CurveFit, FitError> {
        let p0 = match p0 {
            Some(p0) if p0.len() != self.param_names().len() => {
                return Err(FitError::InvalidOption {
                    name: "p0",
                    reason: self.arity_message(p0.len()),
                })
            }
            Some(p0) => p0.to_vec(),
            None => self.initial_guess(xs, ys)?,
        };
        fit_curve(|x, p| self.eval(x, p), xs, ys, &p0)
    }

    fn initial_guess(self, xs: &[f64], ys: &[f64]) -> Result<Vec<f64>, FitError> {
        check_finite("xs", xs)?;
        check_paired("ys", ys, "xs", xs.len())?;
        check_enough(xs.len(), self.param_names().len(), "points")?;
        match self {
            BuiltinModel::PowerLaw => power_law::first_guess(xs, ys, false),
            BuiltinModel::PowerLawOffset => power_law::first_guess(xs, ys, true),
            BuiltinModel::Exponential => {
                check_positive("ys", ys)?;
                let log_y: Vec<f64> = ys.iter().map(|y| y.ln()).collect();
                let line = fit_line(xs, &log_y)?;
                Ok(vec![line.intercept.exp(), -line.slope])
            }
            BuiltinModel::Linear => {
                let line = fit_line(xs, ys)?;
                Ok(vec![line.slope, line.intercept])
            }
        }
    }

    fn arity_message(self, got: usize) -> String {
        let names = self.param_names();
        format!(
            "model {} takes {} parameters ({}), got {got}",
            self.name(),
            names.len(),
            names.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_data::{log_spaced, with_noise};
    use super::*;

    /// What a Rhai closure looks like from here: stateful, fallible, returning strings.
    fn logistic(calls: &mut usize) -> impl FnMut(f64, &[f64]) -> Result<f64, String> + '_ {
        move |x, p| {
            *calls += 1;
            Ok(p[0] / (1.0 + (-p[1] * (x - p[2])).exp()))
        }
    }

    #[test]
    fn fit_curve_recovers_a_script_closures_parameters() {
        let xs: Vec<f64> = (0..40).map(|i| f64::from(i) * 0.25).collect();
        let clean: Vec<f64> = xs
            .iter()
            .map(|x| 3.0 / (1.0 + (-1.5 * (x - 4.0)).exp()))
            .collect();
        let ys = with_noise(&clean, 0.01, 11);
        let mut calls = 0;
        let fit = fit_curve(logistic(&mut calls), &xs, &ys, &[1.0, 1.0, 3.0]).unwrap();
        assert!(fit.converged && fit.r2 > 0.99);
        for (got, want) in fit.params.iter().zip([3.0, 1.5, 4.0]) {
            assert!((got - want).abs() / want < 0.03, "{:?}", fit.params);
        }
        assert!(calls > 0);
    }

    #[test]
    fn model_errors_propagate_with_the_failing_x() {
        let model = |x: f64, _: &[f64]| {
            if x > 2.0 {
                Err("variable not found: k".to_string())
            } else {
                Ok(x)
            }
        };
        let err = fit_curve(model, &[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], &[1.0]).unwrap_err();
        assert_eq!(
            err,
            FitError::Model {
                x: 3.0,
                message: "variable not found: k".into()
            }
        );
    }

    #[test]
    fn model_that_is_nan_at_the_start_is_reported() {
        let model = |x: f64, p: &[f64]| Ok((p[0] * x).sqrt());
        let err = fit_curve(model, &[1.0, 2.0], &[1.0, 2.0], &[-1.0]).unwrap_err();
        assert!(matches!(err, FitError::NonFiniteModel { x, .. } if x == 1.0));
    }

    #[test]
    fn fit_curve_flags_a_fit_that_does_not_converge() {
        // exp(p) → 0 only as p → −∞: the solver keeps going until its budget ends.
        let fit = fit_curve(|_, p| Ok(p[0].exp()), &[1.0, 2.0], &[0.0, 0.0], &[0.0]).unwrap();
        assert!(!fit.converged && fit.params[0] < -10.0);
    }

    #[test]
    fn fit_curve_rejects_more_parameters_than_points() {
        let err = fit_curve(|x, _| Ok(x), &[1.0], &[1.0], &[1.0, 2.0]).unwrap_err();
        assert!(matches!(
            err,
            FitError::TooFewPoints {
                got: 1,
                needed: 2,
                ..
            }
        ));
        let err = fit_curve(|x, _| Ok(x), &[1.0], &[1.0], &[]).unwrap_err();
        assert!(matches!(err, FitError::InvalidOption { name: "p0", .. }));
    }

    #[test]
    fn builtin_models_recover_their_parameters() {
        let xs = log_spaced(1.0, 100.0, 15);
        let cases = [
            ("power_law", vec![5.0, 0.4]),
            ("power_law_offset", vec![5.0, 0.4, 1.2]),
            ("exponential", vec![2.0, 0.03]),
            ("linear", vec![-0.5, 7.0]),
        ];
        for (name, truth) in cases {
            let model = builtin_model(name).unwrap();
            let ys: Vec<f64> = xs.iter().map(|&x| model.eval(x, &truth).unwrap()).collect();
            let fit = model.fit(&xs, &ys, None).unwrap();
            for (got, want) in fit.params.iter().zip(&truth) {
                assert!(
                    (got - want).abs() < 1e-6 * want.abs().max(1.0),
                    "{name}: {fit:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_model_lists_the_known_ones() {
        let err = builtin_model("sigmoid").unwrap_err();
        assert!(err.to_string().contains("power_law_offset"), "{err}");
    }

    #[test]
    fn builtin_fit_checks_the_number_of_parameters() {
        let err = BuiltinModel::Linear
            .fit(&[1.0, 2.0], &[1.0, 2.0], Some(&[1.0]))
            .unwrap_err();
        assert!(
            err.to_string().contains("takes 2 parameters (a, b), got 1"),
            "{err}"
        );
        assert!(BuiltinModel::PowerLaw.eval(1.0, &[1.0]).is_err());
    }
}
