//! Adam for the native SAE trainer. libtorch's optimiser (core::optim) hides
//! its moment estimates, but a resumed run must continue with exactly the
//! same ones, and resampling a dead feature must reset its rows — so the
//! trainer keeps its own, with the update of PyTorch's single-tensor Adam:
//!
//!   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
//!   p ← p − lr·(m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε).
use crate::{Error, Result, Tensor};

pub struct Adam {
    params: Vec<(String, Tensor)>,
    m: Vec<tch::Tensor>,
    v: Vec<tch::Tensor>,
    /// Steps taken so far (t in the bias corrections).
    pub step: u64,
    pub betas: (f64, f64),
    pub eps: f64,
}

impl Adam {
    pub fn new(params: Vec<(String, Tensor)>, betas: (f64, f64), eps: f64) -> Result<Self> {
        for (name, b) in [("beta1", betas.0), ("beta2", betas.1)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid(format!("{name} must be in [0, 1), got {b}")));
            }
        }
        let zeros = |p: &Tensor| p.inner().f_zeros_like().map_err(Error::from);
        let m = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<Result<_>>()?;
        let v = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<Result<_>>()?;
        Ok(Adam {
            params,
            m,
            v,
            step: 0,
            betas,
            eps,
        })
    }

    /// One update with learning rate `lr` from `grads` (one per parameter,
    /// in order; undefined ones are skipped). Seven passes over each
    /// parameter, as in PyTorch's single-tensor Adam: the step is folded
    /// into the denominator so that a single addcdiv applies it.
    pub fn update(&mut self, grads: &[tch::Tensor], lr: f64) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(Error::invalid(format!(
                "Adam got {} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::invalid(format!(
                "Adam needs a learning rate > 0, got {lr}"
            )));
        }
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let (beta1, beta2) = self.betas;
        let correction1 = 1.0 - beta1.powi(self.step as i32);
        let correction2_sqrt = (1.0 - beta2.powi(self.step as i32)).sqrt();
        // p += m / denom with denom = −(c₁/lr)·(√v / √c₂ + ε).
        let scale = -correction1 / lr;
        for (i, ((_, p), grad)) in self.params.iter().zip(grads).enumerate() {
            if !grad.defined() {
                continue;
            }
            let _ = self.m[i].f_lerp_(grad, 1.0 - beta1)?;
            let _ = self.v[i].f_lerp_(&grad.f_square()?, 1.0 - beta2)?;
            let mut denom = self.v[i].f_sqrt()?;
            let _ = denom.f_mul_scalar_(scale / correction2_sqrt)?;
            let _ = denom.f_add_scalar_(scale * self.eps)?;
            let mut param = p.inner().shallow_clone();
            let _ = param.f_addcdiv_(&self.m[i], &denom)?;
        }
        Ok(())
    }

    /// The parameters, in the order `update` expects gradients.
    pub fn params(&self) -> Vec<tch::Tensor> {
        self.params
            .iter()
            .map(|(_, p)| p.inner().shallow_clone())
            .collect()
    }

    /// Forgets the moments of some rows (dim 0) of one parameter, so a
    /// resampled feature starts afresh (Towards Monosemanticity, resampling).
    pub fn reset_rows(&mut self, name: &str, rows: &tch::Tensor) -> Result<()> {
        let Some(i) = self.params.iter().position(|(n, _)| n == name) else {
            return Err(Error::invalid(format!(
                "Adam has no parameter named {name}"
            )));
        };
        let _guard = tch::no_grad_guard();
        let _ = self.m[i].f_index_fill_(0, rows, 0.0)?;
        let _ = self.v[i].f_index_fill_(0, rows, 0.0)?;
        Ok(())
    }

    /// The moments as named tensors ("adam.m.W_enc", ...) for a checkpoint.
    pub fn state(&self) -> Vec<(String, tch::Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("adam.m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("adam.v.{name}"), self.v[i].shallow_clone()));
        }
        out
    }

    /// Restores moments written by [`Adam::state`] (and the step count).
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (kind, target) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("adam.{kind}.{name}");
                let Some((_, saved)) = tensors.iter().find(|(n, _)| *n == key) else {
                    return Err(Error::invalid(format!(
                        "the checkpoint has no optimiser state {key}"
                    )));
                };
                if saved.shape() != p.shape() {
                    return Err(Error::invalid(format!(
                        "optimiser state {key} has shape {:?}, expected {:?}",
                        saved.shape(),
                        p.shape()
                    )));
                }
                target.f_copy_(saved.inner())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn matches_libtorch_adam_step_for_step() {
        let start = [0.5f64, -1.5, 2.0];
        let make = || {
            Tensor::new(
                tch::Tensor::from_slice(&start)
                    .to_kind(Kind::Float)
                    .set_requires_grad(true),
            )
        };
        let (mine, theirs) = (make(), make());
        let mut adam = Adam::new(vec![("p".into(), mine.clone())], (0.9, 0.999), 1e-8).unwrap();
        let reference =
            crate::optim::Optimizer::adam(vec![theirs.clone()], Default::default()).unwrap();
        for _ in 0..20 {
            for p in [&mine, &theirs] {
                let mut g = p.inner().grad();
                if g.defined() {
                    let _ = g.zero_();
                }
                (p.inner() * p.inner() * p.inner())
                    .sum(Kind::Float)
                    .backward();
            }
            adam.update(&[mine.inner().grad()], 1e-3).unwrap();
            reference.step().unwrap();
        }
        let diff = (mine.inner() - theirs.inner())
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }
}
