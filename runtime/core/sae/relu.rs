//! The ReLU SAE of *Scaling Monosemanticity* with Anthropic's April 2024
//! training update: f = ReLU(W_enc·x + b_enc), x̂ = W_dec·f + b_dec, and an L1
//! penalty in which each feature is weighted by its decoder row's norm,
//! Σᵢ fᵢ·‖W_dec,i‖ — so shrinking the decoder cannot buy a smaller penalty.
//! SAELens calls this architecture "standard".
use super::architecture::{Architecture, Registered};
use super::config::DeadFeatureRemedy;
use super::{Codes, Encoded, Weights};
use crate::options::OptionMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::Kind;

/// The ReLU SAE's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReluConfig {
    /// λ, the coefficient of the penalty Σᵢ fᵢ·‖W_dec,i‖. The paper uses 5
    /// (with inputs scaled so that E‖x‖² = D).
    #[serde(rename = "l1")]
    pub l1_coefficient: f64,
}

impl Registered for ReluConfig {
    const NAMES: &'static [&'static str] = &["relu", "standard"];

    fn defaults(_d_in: i64, _n_features: i64) -> Self {
        ReluConfig {
            l1_coefficient: 5.0,
        }
    }
}

/// `Err` unless λ is a finite number >= 0 (shared with JumpReLU's L0 coefficient).
pub(super) fn check_sparsity_coefficient(lambda: f64) -> Result<()> {
    if lambda.is_finite() && lambda >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "l1 must be a finite number >= 0, got {lambda}"
        )))
    }
}

impl Architecture for ReluConfig {
    fn saelens_name(&self) -> &'static str {
        "standard"
    }

    fn check(&self, _d_in: i64, _n_features: i64) -> Result<()> {
        check_sparsity_coefficient(self.l1_coefficient)
    }

    fn encode(&self, w: &Weights, input: &tch::Tensor) -> Result<Encoded> {
        let f = input
            .f_linear(w.w_enc.inner(), Some(w.b_enc.inner()))?
            .f_relu()?;
        Ok(Encoded {
            codes: Codes::Dense(f),
            pre_activations: None,
            input: input.shallow_clone(),
        })
    }

    /// Σᵢ fᵢ·‖W_dec,i‖ per token, averaged over the batch (April 2024 update).
    fn penalty(&self, w: &Weights, enc: &Encoded) -> Result<tch::Tensor> {
        let f = enc.codes.to_dense()?;
        Ok(f.f_mv(&w.decoder_norms()?)?.f_mean(None::<Kind>)?)
    }

    fn sparsity_coefficient(&self) -> f64 {
        self.l1_coefficient
    }

    fn set_sparsity_coefficient(&mut self, lambda: f64) -> Result<()> {
        check_sparsity_coefficient(lambda)?;
        self.l1_coefficient = lambda;
        Ok(())
    }

    /// Σ fᵢ·‖W_dec,i‖ with W_dec divided by s: the normalised penalty is s times the raw one.
    fn penalty_at_scale(&self, penalty: f64, scale: f64) -> f64 {
        penalty * scale
    }

    /// Towards Monosemanticity's resampling.
    fn default_dead_feature_remedy(&self) -> DeadFeatureRemedy {
        DeadFeatureRemedy::Resample
    }

    /// The April 2024 update: random directions with norm 0.1.
    fn default_decoder_init_norm(&self) -> f64 {
        0.1
    }

    fn saelab_settings(&self) -> OptionMap {
        let mut settings = OptionMap::new();
        settings.insert("l1_coefficient".into(), json!(self.l1_coefficient));
        settings
    }

    fn read_saelab_settings(&mut self, settings: &OptionMap) {
        if let Some(v) = settings.get("l1_coefficient").and_then(|v| v.as_f64()) {
            self.l1_coefficient = v;
        }
    }

    fn summary(&self) -> String {
        format!("l1={}", self.l1_coefficient)
    }
}

#[cfg(test)]
mod tests {
    use super::ReluConfig;
    use crate::sae::{ArchitectureConfig, LossOptions, Sae, SaeConfig};
    use tch::Kind;

    fn tensor(values: &[f64], shape: &[i64]) -> tch::Tensor {
        tch::Tensor::from_slice(values)
            .reshape(shape)
            .to_kind(Kind::Float)
    }

    /// A 2-feature, 2-dim SAE whose every term can be worked out by hand.
    fn tiny() -> Sae {
        let mut cfg = SaeConfig::new("relu", 2, 2).unwrap();
        cfg.architecture = ArchitectureConfig::Relu(ReluConfig {
            l1_coefficient: 0.5,
        });
        Sae::from_parts(
            cfg,
            tensor(&[1.0, 0.0, 1.0, -1.0], &[2, 2]), // W_enc rows: detectors
            tensor(&[0.0, -0.5], &[2]),
            tensor(&[2.0, 0.0, 0.0, 1.0], &[2, 2]), // W_dec rows: directions (norms 2 and 1)
            tensor(&[0.1, 0.2], &[2]),
            None,
        )
        .unwrap()
    }

    #[test]
    fn loss_parts_match_a_hand_computation() {
        let sae = tiny();
        let x = tensor(&[1.0, 0.0, 2.0, 1.0], &[2, 2]);
        let out = sae.forward(&x, &LossOptions::default()).unwrap();
        // token 1: pre = [1, 1 - 0.5] = [1, 0.5]; x̂ = [2, 0.5] + [0.1, 0.2] = [2.1, 0.7]
        //   error² = 1.1² + 0.7² = 1.70; penalty = 1·2 + 0.5·1 = 2.5
        // token 2: pre = [2, 1 - 0.5] = [2, 0.5]; x̂ = [4.1, 0.7]
        //   error² = 2.1² + 0.3² = 4.50; penalty = 2·2 + 0.5·1 = 4.5
        let f = Vec::<f64>::try_from(
            out.codes
                .to_dense()
                .unwrap()
                .reshape([-1])
                .to_kind(Kind::Double),
        )
        .unwrap();
        assert_eq!(f, vec![1.0, 0.5, 2.0, 0.5]);
        let mse = out.mse.double_value(&[]);
        let penalty = out.penalty.double_value(&[]);
        let loss = out.loss.double_value(&[]);
        assert!((mse - (1.70 + 4.50) / 2.0).abs() < 1e-5, "mse {mse}");
        assert!(
            (penalty - (2.5 + 4.5) / 2.0).abs() < 1e-5,
            "penalty {penalty}"
        );
        assert!((loss - (3.10 + 0.5 * 3.5)).abs() < 1e-5, "loss {loss}");
        assert_eq!(out.aux.double_value(&[]), 0.0);
    }

    #[test]
    fn warm_up_scales_only_the_penalty() {
        let sae = tiny();
        let x = tensor(&[1.0, 0.0, 2.0, 1.0], &[2, 2]);
        let opts = LossOptions {
            l1_scale: Some(0.0),
            ..Default::default()
        };
        let out = sae.forward(&x, &opts).unwrap();
        assert!((out.loss.double_value(&[]) - out.mse.double_value(&[])).abs() < 1e-6);
    }

    #[test]
    fn normalize_decoder_keeps_the_reconstruction() {
        let sae = tiny();
        let x = tensor(&[1.0, 0.0, 2.0, 1.0], &[2, 2]);
        let before = sae.forward(&x, &LossOptions::default()).unwrap().x_hat;
        sae.normalize_decoder().unwrap();
        let after = sae.forward(&x, &LossOptions::default()).unwrap().x_hat;
        let norms = sae.weights.decoder_norms().unwrap();
        assert!(f64::try_from((norms - 1.0).abs().max()).unwrap() < 1e-6);
        assert!(f64::try_from((before - after).abs().max()).unwrap() < 1e-5);
    }
}
