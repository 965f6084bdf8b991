//! BatchTopK SAEs (Bussmann, Leask & Nanda 2024, *BatchTopK Sparse
//! Autoencoders*): while training, keep the k·batch largest ReLU'd
//! pre-activations of the whole batch rather than k per token, so a token
//! may use more features than another; the number active is k per token on
//! average. A batch-level choice cannot be made for one token at inference,
//! so training also estimates one threshold θ — the running mean of the
//! smallest kept activation — and inference keeps the activations above it:
//! a JumpReLU with one θ for every feature, which is how SAELens saves these
//! SAEs ("jumprelu" with a `threshold` tensor). Dead latents are revived by
//! TopK's AuxK loss; decoder rows are kept at unit norm.
use super::architecture::{Architecture, Registered};
use super::config::DeadFeatureRemedy;
use super::topk::auxk_loss;
use super::{Codes, Encoded, Weights};
use crate::options::OptionMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::Kind;

/// The BatchTopK SAE's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchTopKConfig {
    /// Features active per token on average over a training batch.
    pub k: f64,
    /// Dead features that AuxK may use per token (Gao et al.: d_in / 2).
    pub k_aux: i64,
    /// Weight α of the AuxK loss (Gao et al.: 1/32).
    pub aux_coefficient: f64,
    /// Inference threshold θ on the ReLU'd pre-activations, estimated in
    /// training; 0 until then (inference is then a plain ReLU).
    pub threshold: f64,
    /// Weight of each training batch in θ's running mean (SAELens: 0.01).
    pub threshold_lr: f64,
}

impl Registered for BatchTopKConfig {
    const NAMES: &'static [&'static str] = &["batchtopk"];

    /// k = 32 (at most n_features), k_aux = d_in / 2, α = 1/32 as for TopK.
    fn defaults(d_in: i64, n_features: i64) -> Self {
        BatchTopKConfig {
            k: 32.0_f64.min(n_features.max(1) as f64),
            k_aux: (d_in / 2).max(1),
            aux_coefficient: 1.0 / 32.0,
            threshold: 0.0,
            threshold_lr: 0.01,
        }
    }
}

/// `Err` unless 0 < k ≤ n_features, k_aux ≥ 1, θ ≥ 0 and 0 < threshold_lr ≤ 1.
pub(super) fn check_settings(c: &BatchTopKConfig, n_features: i64) -> Result<()> {
    if !(c.k > 0.0 && c.k <= n_features as f64) {
        return Err(Error::invalid(format!(
            "BatchTopK needs 0 < k <= n_features, got k = {} with n_features = {n_features}",
            c.k
        )));
    }
    if c.k_aux < 1 {
        return Err(Error::invalid(format!(
            "k_aux must be >= 1, got {}",
            c.k_aux
        )));
    }
    if !(c.threshold.is_finite() && c.threshold >= 0.0) {
        return Err(Error::invalid(format!(
            "threshold must be >= 0, got {}",
            c.threshold
        )));
    }
    if !(c.threshold_lr > 0.0 && c.threshold_lr <= 1.0) {
        return Err(Error::invalid(format!(
            "threshold_lr must be in (0, 1], got {}",
            c.threshold_lr
        )));
    }
    Ok(())
}

/// Training codes: of the whole batch's ReLU'd pre-activations, the
/// round(k·batch) largest are kept (differentiably), the rest zeroed.
pub(super) fn encode_batch_topk(w: &Weights, input: &tch::Tensor, k: f64) -> Result<Encoded> {
    let pre = input.f_linear(w.w_enc.inner(), Some(w.b_enc.inner()))?;
    let acts = pre.f_relu()?;
    let total = acts.numel() as i64;
    let keep = ((k * acts.size()[0] as f64).round() as i64).clamp(1, total.max(1));
    let flat = acts.f_reshape([-1])?;
    let mask = {
        let _guard = tch::no_grad_guard();
        let (_, winners) = flat.f_detach()?.f_topk(keep, -1, true, false)?;
        flat.f_zeros_like()?.f_index_fill(0, &winners, 1.0)?
    };
    let codes = flat.f_mul(&mask)?.f_reshape(acts.size())?;
    Ok(Encoded {
        codes: Codes::Dense(codes),
        pre_activations: Some(pre),
        input: input.shallow_clone(),
    })
}

/// Inference codes: the ReLU'd pre-activations above θ.
pub(super) fn encode_with_threshold(
    w: &Weights,
    input: &tch::Tensor,
    threshold: f64,
) -> Result<Encoded> {
    let pre = input.f_linear(w.w_enc.inner(), Some(w.b_enc.inner()))?;
    let acts = pre.f_relu()?;
    let gate = acts.f_gt(threshold)?.f_totype(acts.f_kind()?)?;
    Ok(Encoded {
        codes: Codes::Dense(acts.f_mul(&gate)?),
        pre_activations: Some(pre),
        input: input.shallow_clone(),
    })
}

/// θ after one more training batch: the running mean of the smallest
/// activation each batch kept. SAELens starts the mean at 0, which biases
/// short runs low (by (1 − lr)^steps: 5% after 300 steps); the first batch's
/// minimum starts it here instead.
pub(super) fn updated_threshold(threshold: f64, lr: f64, codes: &Codes) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let f = codes.to_dense()?;
    let positive = f.f_gt(0.0)?;
    if positive.f_any()?.f_int64_value(&[])? == 0 {
        return Ok(threshold);
    }
    let smallest = f
        .f_where_scalarother(&positive, f64::INFINITY)?
        .f_min()?
        .f_totype(Kind::Double)?
        .f_double_value(&[])?;
    Ok(if threshold > 0.0 {
        (1.0 - lr) * threshold + lr * smallest
    } else {
        smallest
    })
}

impl BatchTopKConfig {
    /// The settings saelab.json keeps (cfg.json is SAELens's JumpReLU).
    pub(super) fn settings(&self) -> OptionMap {
        let mut settings = OptionMap::new();
        settings.insert("k".into(), json!(self.k));
        settings.insert("k_aux".into(), json!(self.k_aux));
        settings.insert("aux_coefficient".into(), json!(self.aux_coefficient));
        settings.insert("threshold".into(), json!(self.threshold));
        settings.insert("threshold_lr".into(), json!(self.threshold_lr));
        settings
    }

    pub(super) fn read_settings(&mut self, settings: &OptionMap) {
        let number = |key: &str| settings.get(key).and_then(Value::as_f64);
        if let Some(v) = number("k") {
            self.k = v;
        }
        if let Some(v) = settings.get("k_aux").and_then(Value::as_i64) {
            self.k_aux = v;
        }
        if let Some(v) = number("aux_coefficient") {
            self.aux_coefficient = v;
        }
        if let Some(v) = number("threshold") {
            self.threshold = v;
        }
        if let Some(v) = number("threshold_lr") {
            self.threshold_lr = v;
        }
    }
}

impl Architecture for BatchTopKConfig {
    fn saelens_name(&self) -> &'static str {
        "jumprelu"
    }

    fn check(&self, _d_in: i64, n_features: i64) -> Result<()> {
        check_settings(self, n_features)
    }

    fn encode(&self, w: &Weights, input: &tch::Tensor) -> Result<Encoded> {
        encode_with_threshold(w, input, self.threshold)
    }

    fn encode_for_training(&self, w: &Weights, input: &tch::Tensor) -> Result<Encoded> {
        encode_batch_topk(w, input, self.k)
    }

    fn observe_training_codes(&mut self, codes: &Codes) -> Result<()> {
        self.threshold = updated_threshold(self.threshold, self.threshold_lr, codes)?;
        Ok(())
    }

    /// No sparsity term: k fixes the mean L0.
    fn penalty(&self, w: &Weights, _enc: &Encoded) -> Result<tch::Tensor> {
        Ok(tch::Tensor::f_zeros([], (Kind::Float, w.w_dec.device()))?)
    }

    fn aux_loss(
        &self,
        w: &Weights,
        enc: &Encoded,
        residual: &tch::Tensor,
        dead: &tch::Tensor,
    ) -> Result<Option<tch::Tensor>> {
        auxk_loss(self.k_aux, self.aux_coefficient, w, enc, residual, dead)
    }

    fn supports_auxk(&self) -> bool {
        true
    }

    fn default_dead_feature_remedy(&self) -> DeadFeatureRemedy {
        DeadFeatureRemedy::AuxK
    }

    fn unit_norm_decoder(&self) -> bool {
        true
    }

    fn default_apply_b_dec_to_input(&self) -> bool {
        true
    }

    fn inference_threshold(&self) -> Option<f64> {
        Some(self.threshold)
    }

    fn saelab_settings(&self) -> OptionMap {
        self.settings()
    }

    fn read_saelab_settings(&mut self, settings: &OptionMap) {
        self.read_settings(settings)
    }

    fn summary(&self) -> String {
        format!("k={} threshold={:.4}", self.k, self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::{ArchitectureConfig, LossOptions, Sae, SaeConfig};

    fn batchtopk(d_in: i64, n: i64, k: f64) -> Sae {
        let mut cfg = SaeConfig::new("batchtopk", d_in, n).unwrap();
        if let ArchitectureConfig::BatchTopK(c) = &mut cfg.architecture {
            c.k = k;
        }
        Sae::new(cfg).unwrap()
    }

    #[test]
    fn training_keeps_k_per_token_on_average_across_the_batch() {
        crate::rng::seed(4);
        let sae = batchtopk(8, 64, 3.0);
        let x = tch::Tensor::randn([10, 8], (Kind::Float, tch::Device::Cpu));
        let training = LossOptions {
            training: true,
            ..Default::default()
        };
        let out = sae.forward(&x, &training).unwrap();
        let f = out.codes.to_dense().unwrap();
        let active = f.gt(0.0).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(active, 30, "k·batch = 30 activations kept");
        // They are the 30 largest ReLU'd pre-activations of the batch.
        let input = &x - sae.weights.b_dec.inner();
        let acts = input
            .linear(sae.weights.w_enc.inner(), Some(sae.weights.b_enc.inner()))
            .relu();
        let (top, _) = acts.reshape([-1]).topk(30, -1, true, true);
        let kept_min = f
            .where_scalarother(&f.gt(0.0), f64::INFINITY)
            .min()
            .double_value(&[]);
        assert!((kept_min - top.double_value(&[29])).abs() < 1e-6);
        // Tokens differ in how many features they use.
        let per_token = f
            .gt(0.0)
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
        assert!(per_token.max().int64_value(&[]) > per_token.min().int64_value(&[]));
    }

    #[test]
    fn the_threshold_tracks_the_smallest_kept_activation_and_inference_uses_it() {
        crate::rng::seed(5);
        let mut sae = batchtopk(8, 64, 4.0);
        let x = tch::Tensor::randn([200, 8], (Kind::Float, tch::Device::Cpu));
        let training = LossOptions {
            training: true,
            ..Default::default()
        };
        let out = sae.forward(&x, &training).unwrap();
        let smallest = updated_threshold(0.0, 0.01, &out.codes).unwrap();
        sae.cfg
            .architecture
            .get_mut()
            .observe_training_codes(&out.codes)
            .unwrap();
        assert_eq!(sae.architecture().inference_threshold(), Some(smallest));
        // At inference, on the same batch, about k features per token fire.
        let f = sae.encode(&x).unwrap();
        let l0 = f.gt(0.0).sum(Kind::Float).double_value(&[]) / 200.0;
        assert!((l0 - 4.0).abs() < 0.1, "inference L0 {l0}");
        // The running mean moves by threshold_lr towards a new minimum.
        let next = updated_threshold(1.0, 0.01, &out.codes).unwrap();
        assert!((next - (0.99 + 0.01 * smallest)).abs() < 1e-12);
    }

    #[test]
    fn bad_settings_are_refused() {
        let cfg = SaeConfig::new("batchtopk", 4, 8).unwrap();
        let mut bad = cfg.clone();
        if let ArchitectureConfig::BatchTopK(c) = &mut bad.architecture {
            c.k = 9.0;
        }
        let err = Sae::new(bad).err().unwrap().to_string();
        assert!(err.contains("k = 9"), "{err}");
    }
}
