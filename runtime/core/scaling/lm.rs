//! The one nonlinear least-squares driver every fit goes through: the
//! MINPACK-style Levenberg–Marquardt of the `levenberg-marquardt` crate, fed
//! a central-difference Jacobian so that any model — including a closure
//! handed over from a script — can be fitted without hand-written derivatives.
use super::FitError;
use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt, TerminationReason};
use nalgebra::storage::Owned;
use nalgebra::{DMatrix, DVector, Dyn};
use std::cell::{Cell, RefCell};

/// Relative tolerance on the objective and on the parameters. Loss
/// measurements carry percent-level noise, so this is far past what matters,
/// yet loose enough that MINPACK's "no improvement possible" is rare.
const TOLERANCE: f64 = 1e-12;

/// What the solver found.
#[derive(Debug, Clone)]
pub(super) struct Solution {
    pub params: Vec<f64>,
    /// Outer iterations, i.e. Jacobian evaluations.
    pub iterations: usize,
    /// Whether a convergence criterion (not the evaluation budget) stopped it.
    pub converged: bool,
    /// The solver's own reason for stopping, for error messages.
    pub termination: String,
}

/// Minimises ½‖r(p)‖² from `p0`, where `residuals(p, out)` writes the
/// `n_residuals` values of r(p) into `out`.
///
/// Errors from `residuals` abort the fit and come back unchanged. Non-finite
/// residuals at a trial point are allowed (the trust region shrinks away from
/// them); callers check the starting point themselves, where they can name
/// the offending x.
pub(super) fn minimize<R>(
    residuals: R,
    n_residuals: usize,
    p0: &[f64],
) -> Result<Solution, FitError>
where
    R: FnMut(&[f64], &mut [f64]) -> Result<(), FitError>,
{
    let problem = Problem {
        residuals: RefCell::new(residuals),
        params: DVector::from_column_slice(p0),
        n_residuals,
        failure: RefCell::new(None),
        jacobians: Cell::new(0),
    };
    let solver = LevenbergMarquardt::new()
        .with_ftol(TOLERANCE)
        .with_xtol(TOLERANCE);
    let (problem, report) = solver.minimize(problem);
    let iterations = problem.jacobians.get();
    if let Some(failure) = problem.failure.into_inner() {
        return Err(failure);
    }
    let converged = match report.termination {
        // Machine precision reached before the tolerance: as good as it gets.
        TerminationReason::NoImprovementPossible(_) => true,
        TerminationReason::LostPatience => false,
        ref reason if reason.was_successful() => true,
        TerminationReason::Numerical(what) => {
            return Err(FitError::NotConverged {
                iterations,
                reason: format!("NaN or infinity appeared in the {what}"),
            })
        }
        ref reason => {
            return Err(FitError::NotConverged {
                iterations,
                reason: format!("{reason:?}"),
            })
        }
    };
    let params: Vec<f64> = problem.params.iter().copied().collect();
    if params.iter().any(|p| !p.is_finite()) {
        return Err(FitError::NonFiniteParams { params });
    }
    Ok(Solution {
        params,
        iterations,
        converged,
        termination: describe(&report.termination),
    })
}

fn describe(reason: &TerminationReason) -> String {
    match reason {
        TerminationReason::LostPatience => "the evaluation budget ran out before the parameters \
             settled; a parameter may be running off to infinity"
            .into(),
        other => format!("{other:?}"),
    }
}

/// Adapts a residual closure to the solver's `&self` interface: the closure
/// is `FnMut` (a script engine is stateful), hence the `RefCell`.
struct Problem<R> {
    residuals: RefCell<R>,
    params: DVector<f64>,
    n_residuals: usize,
    /// The first error the closure raised; the solver only sees `None`.
    failure: RefCell<Option<FitError>>,
    jacobians: Cell<usize>,
}

impl<R> Problem<R>
where
    R: FnMut(&[f64], &mut [f64]) -> Result<(), FitError>,
{
    fn evaluate(&self, params: &[f64]) -> Option<DVector<f64>> {
        let mut out = DVector::zeros(self.n_residuals);
        match (self.residuals.borrow_mut())(params, out.as_mut_slice()) {
            Ok(()) => Some(out),
            Err(error) => {
                self.failure.borrow_mut().get_or_insert(error);
                None
            }
        }
    }

    /// ∂r/∂p_j by central differences, O(h²) accurate; one-sided where the
    /// model is undefined on one side (e.g. a parameter at a boundary).
    fn difference_column(&self, j: usize) -> Option<DVector<f64>> {
        let params = self.params.as_slice();
        // h ∝ ε^(1/3) balances truncation and rounding error for central differences.
        let nominal = f64::EPSILON.cbrt() * params[j].abs().max(1e-3);
        let mut shifted = params.to_vec();
        shifted[j] = params[j] + nominal;
        // The step actually taken, after rounding p + h to a float.
        let step = shifted[j] - params[j];
        let forward = self.evaluate(&shifted)?;
        shifted[j] = params[j] - step;
        let backward = self.evaluate(&shifted)?;
        let central = (&forward - &backward) / (2.0 * step);
        if central.iter().all(|v| v.is_finite()) {
            return Some(central);
        }
        let base = self.evaluate(params)?;
        if forward.iter().all(|v| v.is_finite()) {
            Some((forward - base) / step)
        } else {
            Some((base - backward) / step)
        }
    }
}

impl<R> LeastSquaresProblem<f64, Dyn, Dyn> for Problem<R>
where
    R: FnMut(&[f64], &mut [f64]) -> Result<(), FitError>,
{
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, params: &DVector<f64>) {
        self.params.copy_from(params);
    }

    fn params(&self) -> DVector<f64> {
        self.params.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        self.evaluate(self.params.as_slice())
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        self.jacobians.set(self.jacobians.get() + 1);
        let columns = (0..self.params.len())
            .map(|j| self.difference_column(j))
            .collect::<Option<Vec<_>>>()?;
        Some(DMatrix::from_columns(&columns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimize_solves_a_nonlinear_system() {
        // Rosenbrock as least squares: r = (10(y − x²), 1 − x), minimum at (1, 1).
        let solution = minimize(
            |p, out| {
                out[0] = 10.0 * (p[1] - p[0] * p[0]);
                out[1] = 1.0 - p[0];
                Ok(())
            },
            2,
            &[-1.2, 1.0],
        )
        .unwrap();
        assert!(solution.converged);
        assert!((solution.params[0] - 1.0).abs() < 1e-8);
        assert!((solution.params[1] - 1.0).abs() < 1e-8);
    }

    #[test]
    fn minimize_passes_closure_errors_through() {
        let result = minimize(
            |_, _| {
                Err(FitError::Model {
                    x: 1.0,
                    message: "boom".into(),
                })
            },
            1,
            &[0.0],
        );
        assert!(matches!(result, Err(FitError::Model { message, .. }) if message == "boom"));
    }
}
