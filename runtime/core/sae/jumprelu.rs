//! JumpReLU SAEs (Rajamanoharan et al. 2024, *Jumping Ahead*; the Gemma
//! Scope architecture): f = z·H(z − θ) with z = W_enc·x + b_enc and a learned
//! per-feature threshold θ; the sparsity term is L0 itself.
//!
//! H has no useful gradient, so training uses the paper's straight-through
//! estimators with a rectangle kernel of bandwidth ε: ∂f/∂θ ≈ −(θ/ε)·K((z−θ)/ε)
//! and ∂H/∂θ ≈ −(1/ε)·K((z−θ)/ε). Each is built as `value + (θ − θ̄)·g̅`
//! (bars: detached), whose value is unchanged and whose θ-gradient is g.
//! θ is stored as log θ so it stays positive.
use super::architecture::{Architecture, Registered};
use super::relu::check_sparsity_coefficient;
use super::{Codes, Encoded, Weights};
use crate::options::OptionMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::Kind;

/// The JumpReLU SAE's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JumpReluConfig {
    /// λ, the coefficient of the L0 penalty (scripts call it `l1`, as for
    /// the ReLU SAE, so one option map serves both).
    #[serde(rename = "l1")]
    pub l1_coefficient: f64,
    /// Initial threshold θ (Rajamanoharan et al. 2024 use 0.001).
    #[serde(rename = "jumprelu_threshold")]
    pub init_threshold: f64,
    /// Bandwidth ε of the straight-through estimator's kernel
    /// (Rajamanoharan et al. use 0.001 on their normalisation; SAELens 0.05).
    #[serde(rename = "jumprelu_bandwidth")]
    pub bandwidth: f64,
}

impl Registered for JumpReluConfig {
    const NAMES: &'static [&'static str] = &["jumprelu"];

    fn defaults(_d_in: i64, _n_features: i64) -> Self {
        JumpReluConfig {
            l1_coefficient: 5.0,
            init_threshold: 0.001,
            bandwidth: 0.05,
        }
    }
}

impl JumpReluConfig {
    fn threshold(w: &Weights) -> Result<tch::Tensor> {
        match &w.log_threshold {
            Some(t) => Ok(t.inner().f_exp()?),
            None => Err(Error::invalid("a JumpReLU SAE needs a threshold")),
        }
    }

    /// The rectangle kernel K((z − θ)/ε)/ε, detached: [batch, n_features].
    fn kernel(&self, pre: &tch::Tensor, theta: &tch::Tensor) -> Result<tch::Tensor> {
        let _guard = tch::no_grad_guard();
        let u = pre.f_sub(theta)?.f_div_scalar(self.bandwidth)?;
        Ok(u.f_abs()?
            .f_lt(0.5)?
            .f_totype(Kind::Float)?
            .f_div_scalar(self.bandwidth)?)
    }
}

/// θ − θ̄: zero in value, the identity in gradient.
fn zero_with_grad(theta: &tch::Tensor) -> Result<tch::Tensor> {
    Ok(theta.f_sub(&theta.f_detach()?)?)
}

impl Architecture for JumpReluConfig {
    fn saelens_name(&self) -> &'static str {
        "jumprelu"
    }

    fn check(&self, _d_in: i64, _n_features: i64) -> Result<()> {
        check_sparsity_coefficient(self.l1_coefficient)?;
        if !(self.bandwidth.is_finite() && self.bandwidth > 0.0) {
            return Err(Error::invalid(format!(
                "jumprelu_bandwidth must be > 0, got {}",
                self.bandwidth
            )));
        }
        Ok(())
    }

    fn encode(&self, w: &Weights, input: &tch::Tensor) -> Result<Encoded> {
        let pre = input.f_linear(w.w_enc.inner(), Some(w.b_enc.inner()))?;
        let theta = Self::threshold(w)?;
        let gate = pre.f_gt_tensor(&theta)?.f_totype(Kind::Float)?.f_detach()?;
        let f = pre.f_mul(&gate)?;
        // ∂f/∂θ ≈ −(θ/ε)·K: the straight-through term.
        let slope = self
            .kernel(&pre, &theta)?
            .f_mul(&theta.f_detach()?)?
            .f_neg()?;
        let f = f.f_add(&zero_with_grad(&theta)?.f_mul(&slope)?)?;
        Ok(Encoded {
            codes: Codes::Dense(f),
            pre_activations: Some(pre.f_detach()?),
            input: input.shallow_clone(),
        })
    }

    /// L0 per token, averaged over the batch, with ∂/∂θ ≈ −(1/ε)·K.
    fn penalty(&self, w: &Weights, enc: &Encoded) -> Result<tch::Tensor> {
        let (Codes::Dense(f), Some(pre)) = (&enc.codes, &enc.pre_activations) else {
            return Err(Error::invalid(
                "JumpReLU codes are dense and keep their pre-activations",
            ));
        };
        let theta = Self::threshold(w)?;
        let active = f.f_ne(0.0)?.f_totype(Kind::Float)?.f_detach()?;
        let kernel = self.kernel(pre, &theta)?;
        let l0 = active.f_add(&zero_with_grad(&theta)?.f_mul(&kernel.f_neg()?)?)?;
        Ok(l0
            .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?
            .f_mean(None::<Kind>)?)
    }

    fn sparsity_coefficient(&self) -> f64 {
        self.l1_coefficient
    }

    fn set_sparsity_coefficient(&mut self, lambda: f64) -> Result<()> {
        check_sparsity_coefficient(lambda)?;
        self.l1_coefficient = lambda;
        Ok(())
    }

    fn unit_norm_decoder(&self) -> bool {
        true
    }

    fn threshold_init(&self) -> Option<f64> {
        Some(self.init_threshold)
    }

    fn saelab_settings(&self) -> OptionMap {
        let mut settings = OptionMap::new();
        settings.insert("l1_coefficient".into(), json!(self.l1_coefficient));
        settings.insert("jumprelu_init_threshold".into(), json!(self.init_threshold));
        settings.insert("jumprelu_bandwidth".into(), json!(self.bandwidth));
        settings
    }

    fn read_saelab_settings(&mut self, settings: &OptionMap) {
        let float = |key: &str| settings.get(key).and_then(Value::as_f64);
        if let Some(v) = float("l1_coefficient") {
            self.l1_coefficient = v;
        }
        if let Some(v) = float("jumprelu_init_threshold") {
            self.init_threshold = v;
        }
        if let Some(v) = float("jumprelu_bandwidth") {
            self.bandwidth = v;
        }
    }

    fn summary(&self) -> String {
        format!("l1={}", self.l1_coefficient)
    }
}

#[cfg(test)]
mod tests {
    use crate::sae::{LossOptions, Sae, SaeConfig};
    use tch::Kind;

    #[test]
    fn features_fire_only_above_their_threshold() {
        let cfg = SaeConfig::new("jumprelu", 2, 2).unwrap();
        let t = |v: &[f64], s: &[i64]| tch::Tensor::from_slice(v).reshape(s).to_kind(Kind::Float);
        let sae = Sae::from_parts(
            cfg,
            t(&[1., 0., 0., 1.], &[2, 2]),
            t(&[0., 0.], &[2]),
            t(&[1., 0., 0., 1.], &[2, 2]),
            t(&[0., 0.], &[2]),
            Some(t(&[0.5f64.ln(), 2.0f64.ln()], &[2])),
        )
        .unwrap();
        let x = t(&[1.0, 1.0], &[1, 2]);
        let out = sae.forward(&x, &LossOptions::default()).unwrap();
        let f = Vec::<f64>::try_from(
            out.codes
                .to_dense()
                .unwrap()
                .reshape([-1])
                .to_kind(Kind::Double),
        )
        .unwrap();
        assert_eq!(f, vec![1.0, 0.0]);
        assert!((out.penalty.double_value(&[]) - 1.0).abs() < 1e-6);
    }
}
