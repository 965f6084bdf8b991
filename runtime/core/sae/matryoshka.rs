//! Matryoshka BatchTopK SAEs (Bussmann et al. 2025, *Learning Multi-Level
//! Features with Matryoshka Sparse Autoencoders*; Nabeshima 2024): a
//! BatchTopK SAE whose nested prefixes — the first m₁ < m₂ < … < F
//! features — must each reconstruct the input on their own. The loss adds,
//! for every level but the full one (whose error is the main MSE), the
//! squared error of f[:, :m]·W_dec[:m] + b_dec, summed as SAELens sums them.
//! Early features are pushed to carry general directions, which resists
//! feature absorption. Encoding, the inference threshold, AuxK and the saved
//! layout (SAELens's "jumprelu") are BatchTopK's.
use super::architecture::{matmul_training_flops, Architecture, Registered};
use super::batchtopk::{
    check_settings, encode_batch_topk, encode_with_threshold, updated_threshold, BatchTopKConfig,
};
use super::config::DeadFeatureRemedy;
use super::topk::auxk_loss;
use super::{Codes, Encoded, Weights};
use crate::options::OptionMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::Kind;

/// The Matryoshka SAE's own settings: BatchTopK's and the nested widths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatryoshkaConfig {
    /// Features active per token on average over a training batch.
    pub k: f64,
    /// Dead features that AuxK may use per token.
    pub k_aux: i64,
    /// Weight α of the AuxK loss.
    pub aux_coefficient: f64,
    /// Inference threshold θ, estimated in training (0 until then).
    pub threshold: f64,
    /// Weight of each training batch in θ's running mean.
    pub threshold_lr: f64,
    /// Widths of the nested dictionaries, increasing; the full dictionary is
    /// always the last level, whether or not it is listed.
    pub matryoshka_widths: Vec<i64>,
}

impl Registered for MatryoshkaConfig {
    const NAMES: &'static [&'static str] = &["matryoshka", "matryoshka_batchtopk"];

    /// BatchTopK's defaults, and levels at 1/16, 1/8, 1/4, 1/2 and all of
    /// the dictionary (each level doubling the one before, as in Bussmann
    /// et al.'s nested groups).
    fn defaults(d_in: i64, n_features: i64) -> Self {
        let base = BatchTopKConfig::defaults(d_in, n_features);
        let mut widths: Vec<i64> = [16, 8, 4, 2, 1]
            .iter()
            .map(|div| n_features / div)
            .filter(|w| *w >= 1)
            .collect();
        widths.dedup();
        MatryoshkaConfig {
            k: base.k,
            k_aux: base.k_aux,
            aux_coefficient: base.aux_coefficient,
            threshold: base.threshold,
            threshold_lr: base.threshold_lr,
            matryoshka_widths: widths,
        }
    }
}

impl MatryoshkaConfig {
    /// The BatchTopK settings within these.
    fn base(&self) -> BatchTopKConfig {
        BatchTopKConfig {
            k: self.k,
            k_aux: self.k_aux,
            aux_coefficient: self.aux_coefficient,
            threshold: self.threshold,
            threshold_lr: self.threshold_lr,
        }
    }

    fn set_base(&mut self, base: BatchTopKConfig) {
        self.k = base.k;
        self.k_aux = base.k_aux;
        self.aux_coefficient = base.aux_coefficient;
        self.threshold = base.threshold;
        self.threshold_lr = base.threshold_lr;
    }

    /// The widths of the inner levels: every listed width below the full
    /// dictionary (whose error is the main MSE).
    fn inner_widths(&self, n_features: i64) -> impl Iterator<Item = i64> + '_ {
        self.matryoshka_widths
            .iter()
            .copied()
            .filter(move |w| *w < n_features)
    }
}

impl Architecture for MatryoshkaConfig {
    fn saelens_name(&self) -> &'static str {
        "jumprelu"
    }

    fn check(&self, _d_in: i64, n_features: i64) -> Result<()> {
        check_settings(&self.base(), n_features)?;
        let widths = &self.matryoshka_widths;
        let increasing = widths.windows(2).all(|pair| pair[0] < pair[1]);
        let in_range = widths.iter().all(|w| *w >= 1 && *w <= n_features);
        if !increasing || !in_range {
            return Err(Error::invalid(format!(
                "matryoshka_widths must increase strictly and lie in 1..={n_features} (n_features), got {widths:?}"
            )));
        }
        Ok(())
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

    /// Σ over inner levels m of ‖x − (f[:, :m]·W_dec[:m] + b_dec)‖², each
    /// summed over d_in and averaged over the batch like the main MSE.
    fn nested_reconstruction_loss(
        &self,
        w: &Weights,
        codes: &Codes,
        x: &tch::Tensor,
    ) -> Result<Option<tch::Tensor>> {
        let mut widths = self.inner_widths(w.n_features()).peekable();
        if widths.peek().is_none() {
            return Ok(None);
        }
        let f = codes.to_dense()?;
        let x = x.f_totype(f.f_kind()?)?;
        let mut total: Option<tch::Tensor> = None;
        for m in widths {
            let prefix = f.f_narrow(1, 0, m)?;
            let decoder = w.w_dec.inner().f_narrow(0, 0, m)?;
            let x_hat = w.b_dec.inner().f_addmm(&prefix, &decoder)?;
            let error = x
                .f_sub(&x_hat)?
                .f_square()?
                .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
                .f_mean(None::<Kind>)?;
            total = Some(match total {
                Some(sum) => sum.f_add(&error)?,
                None => error,
            });
        }
        Ok(total)
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

    /// A dense encoder and decoder, plus one decoder per inner level.
    fn training_flops_per_token(&self, d_in: f64, n_features: f64) -> f64 {
        let inner: f64 = self.inner_widths(n_features as i64).map(|m| m as f64).sum();
        2.0 * matmul_training_flops(d_in, n_features) + matmul_training_flops(d_in, inner)
    }

    fn saelab_settings(&self) -> OptionMap {
        let mut settings = self.base().settings();
        settings.insert("matryoshka_widths".into(), json!(self.matryoshka_widths));
        settings
    }

    fn read_saelab_settings(&mut self, settings: &OptionMap) {
        let mut base = self.base();
        base.read_settings(settings);
        self.set_base(base);
        let widths = settings.get("matryoshka_widths").and_then(Value::as_array);
        if let Some(widths) = widths.and_then(|ws| ws.iter().map(Value::as_i64).collect()) {
            self.matryoshka_widths = widths;
        }
    }

    fn summary(&self) -> String {
        format!(
            "k={} widths={:?} threshold={:.4}",
            self.k, self.matryoshka_widths, self.threshold
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::sae::{ArchitectureConfig, LossOptions, Sae, SaeConfig};
    use tch::Kind;

    #[test]
    fn inner_levels_add_their_own_reconstruction_errors() {
        crate::rng::seed(6);
        let mut cfg = SaeConfig::new("matryoshka", 6, 32).unwrap();
        let ArchitectureConfig::Matryoshka(c) = &mut cfg.architecture else {
            panic!("{:?}", cfg.architecture)
        };
        assert_eq!(c.matryoshka_widths, vec![2, 4, 8, 16, 32]);
        c.matryoshka_widths = vec![4, 16];
        c.k = 5.0;
        let sae = Sae::new(cfg).unwrap();
        let x = tch::Tensor::randn([12, 6], (Kind::Float, tch::Device::Cpu));
        let out = sae
            .forward(
                &x,
                &LossOptions {
                    training: true,
                    ..Default::default()
                },
            )
            .unwrap();
        let f = out.codes.to_dense().unwrap();
        let w = &sae.weights;
        let level = |m: i64| {
            let x_hat =
                f.narrow(1, 0, m).matmul(&w.w_dec.inner().narrow(0, 0, m)) + w.b_dec.inner();
            (&x - x_hat)
                .square()
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                .mean(Kind::Float)
                .double_value(&[])
        };
        let expected = level(4) + level(16);
        assert!((out.aux.double_value(&[]) - expected).abs() < 1e-4);
        let total = out.mse.double_value(&[]) + expected;
        assert!((out.loss.double_value(&[]) - total).abs() < 1e-4);
        assert!((out.mse.double_value(&[]) - level(32)).abs() < 1e-4);
    }

    #[test]
    fn widths_must_increase_within_the_dictionary() {
        let mut cfg = SaeConfig::new("matryoshka", 6, 32).unwrap();
        if let ArchitectureConfig::Matryoshka(c) = &mut cfg.architecture {
            c.matryoshka_widths = vec![8, 4];
        }
        let err = Sae::new(cfg).err().unwrap().to_string();
        assert!(err.contains("matryoshka_widths"), "{err}");
    }
}
