//! JumpReLU SAEs (Rajamanoharan et al. 2024, *Jumping Ahead*; the Gemma
//! Scope architecture): f = z·H(z − θ) with z = W_enc·x + b_enc and a learned
//! per-feature threshold θ; the sparsity term is L0 itself.
//!
//! H has no useful gradient, so training uses the paper's straight-through
//! estimators with a rectangle kernel of bandwidth ε: ∂f/∂θ ≈ −(θ/ε)·K((z−θ)/ε)
//! and ∂H/∂θ ≈ −(1/ε)·K((z−θ)/ε). Each is built as `value + (θ − θ̄)·g̅`
//! (bars: detached), whose value is unchanged and whose θ-gradient is g.
//! θ is stored as log θ so it stays positive.
use super::{Architecture, Codes, Encoded, SaeConfig, Weights};
use crate::{Error, Result};
use tch::Kind;

pub struct JumpRelu {
    apply_b_dec_to_input: bool,
    bandwidth: f64,
}

pub fn build(cfg: &SaeConfig) -> Result<Box<dyn Architecture>> {
    if !(cfg.jumprelu_bandwidth.is_finite() && cfg.jumprelu_bandwidth > 0.0) {
        return Err(Error::invalid(format!(
            "jumprelu_bandwidth must be > 0, got {}",
            cfg.jumprelu_bandwidth
        )));
    }
    Ok(Box::new(JumpRelu {
        apply_b_dec_to_input: cfg.apply_b_dec_to_input,
        bandwidth: cfg.jumprelu_bandwidth,
    }))
}

impl JumpRelu {
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

impl Architecture for JumpRelu {
    fn name(&self) -> &'static str {
        "jumprelu"
    }

    fn saelens_name(&self) -> &'static str {
        "jumprelu"
    }

    fn encode(&self, w: &Weights, x: &tch::Tensor) -> Result<Encoded> {
        let input = w.encoder_input(x, self.apply_b_dec_to_input)?;
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
            input,
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

    fn unit_norm_decoder(&self) -> bool {
        true
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
