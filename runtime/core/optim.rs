//! Optimisers over free-standing tensors, backed by libtorch's own Adam and
//! SGD (tch's `COptimizer`), plus global gradient-norm clipping.
use crate::{Error, Result, Tensor};
use tch::COptimizer;

/// Settings for Adam; the defaults are PyTorch's (and the paper's: no weight decay).
#[derive(Debug, Clone, Copy)]
pub struct AdamConfig {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// An optimiser bound to a fixed list of parameter tensors.
pub struct Optimizer {
    inner: COptimizer,
    params: Vec<Tensor>,
    lr: f64,
}

impl Optimizer {
    pub fn adam(params: Vec<Tensor>, cfg: AdamConfig) -> Result<Self> {
        check_lr(cfg.lr)?;
        let inner = COptimizer::adam(
            cfg.lr,
            cfg.betas.0,
            cfg.betas.1,
            cfg.weight_decay,
            cfg.eps,
            false,
        )?;
        Self::with_params(inner, params, cfg.lr)
    }

    pub fn sgd(params: Vec<Tensor>, lr: f64, momentum: f64) -> Result<Self> {
        check_lr(lr)?;
        let inner = COptimizer::sgd(lr, momentum, 0.0, 0.0, false)?;
        Self::with_params(inner, params, lr)
    }

    fn with_params(mut inner: COptimizer, params: Vec<Tensor>, lr: f64) -> Result<Self> {
        if params.is_empty() {
            return Err(Error::invalid("an optimiser needs at least one parameter"));
        }
        for (i, p) in params.iter().enumerate() {
            if !p.inner().requires_grad() {
                return Err(Error::invalid(format!(
                    "parameter {i} does not require grad; call .requires_grad() on it first"
                )));
            }
            inner.add_parameters(p.inner(), 0)?;
        }
        Ok(Optimizer { inner, params, lr })
    }

    pub fn zero_grad(&self) -> Result<()> {
        Ok(self.inner.zero_grad()?)
    }

    pub fn step(&self) -> Result<()> {
        Ok(self.inner.step()?)
    }

    pub fn lr(&self) -> f64 {
        self.lr
    }

    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.inner.set_learning_rate(lr)?;
        self.lr = lr;
        Ok(())
    }

    pub fn params(&self) -> &[Tensor] {
        &self.params
    }
}

fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "learning rate must be a finite number >= 0, got {lr}"
        )))
    }
}

/// Scales the gradients of `params` (their `.grad`) so their joint L2 norm
/// is at most `max_norm`; returns the norm before clipping. See [`clip_grads`].
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    let grads = params
        .iter()
        .map(|p| p.inner().f_grad())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    clip_grads(&grads, max_norm)
}

/// Scales `grads` in place so their joint L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does; returns the norm before clipping.
/// Undefined gradients (parameters the loss did not reach) are skipped.
pub fn clip_grads(grads: &[tch::Tensor], max_norm: f64) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let mut squared = 0.0;
    for g in grads.iter().filter(|g| g.defined()) {
        squared += g.f_norm()?.f_double_value(&[])?.powi(2);
    }
    let total = squared.sqrt();
    let coefficient = max_norm / (total + 1e-6);
    if coefficient < 1.0 {
        for g in grads.iter().filter(|g| g.defined()) {
            let _ = g.shallow_clone().f_mul_scalar_(coefficient)?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn param(values: &[f64]) -> Tensor {
        let t = Tensor::from_f64(values, &[values.len() as i64], Kind::Float).unwrap();
        Tensor::new(t.inner().f_set_requires_grad(true).unwrap())
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let x = param(&[3.0, -2.0]);
        let opt = Optimizer::adam(
            vec![x.clone()],
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..300 {
            opt.zero_grad().unwrap();
            let loss = x
                .inner()
                .f_mul(x.inner())
                .unwrap()
                .f_sum(None::<Kind>)
                .unwrap();
            loss.f_backward().unwrap();
            opt.step().unwrap();
        }
        assert!(x.to_f64_vec().unwrap().iter().all(|v| v.abs() < 1e-2));
    }

    #[test]
    fn clipping_limits_the_joint_norm() {
        let x = param(&[3.0, 4.0]);
        let loss = x
            .inner()
            .f_mul(x.inner())
            .unwrap()
            .f_sum(None::<Kind>)
            .unwrap();
        loss.f_backward().unwrap();
        let before = clip_grad_norm(std::slice::from_ref(&x), 1.0).unwrap();
        assert!((before - 10.0).abs() < 1e-4);
        let after = x
            .inner()
            .f_grad()
            .unwrap()
            .f_norm()
            .unwrap()
            .f_double_value(&[])
            .unwrap();
        assert!((after - 1.0).abs() < 1e-4);
    }

    #[test]
    fn clipping_scales_to_the_joint_norm() {
        let grads = [
            tch::Tensor::from_slice(&[3.0f32]),
            tch::Tensor::from_slice(&[4.0f32]),
        ];
        assert!((clip_grads(&grads, 1.0).unwrap() - 5.0).abs() < 1e-6);
        let after: f64 = grads.iter().map(|g| g.double_value(&[0]).powi(2)).sum();
        assert!((after.sqrt() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn parameters_must_require_grad() {
        let t = Tensor::from_f64(&[1.0], &[1], Kind::Float).unwrap();
        assert!(Optimizer::sgd(vec![t], 0.1, 0.0).is_err());
    }
}
