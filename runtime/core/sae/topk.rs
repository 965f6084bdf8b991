//! TopK SAEs (Gao et al., *Scaling and evaluating sparse autoencoders*,
//! OpenAI 2024): keep the k largest pre-activations of each token, ReLU them,
//! no sparsity penalty; dead latents are revived by the AuxK loss.
//!
//! Speed: only the encoder's dense product x·W_encᵀ is computed for every
//! feature, and without gradients. The k winners are then recomputed from the
//! gathered encoder rows (so the encoder's gradient touches only those rows)
//! and decoded by summing the k gathered decoder rows (an embedding bag), so
//! the decoder and both backward passes cost O(batch·k·d_in) instead of
//! O(batch·n_features·d_in) — the idea behind OpenAI's sparse kernels.
//! Gathering costs a [batch, k, d_in] copy, which loses to the dense encoder
//! backward when there are few features per active one, so small SAEs keep
//! the dense encoder (with gradients) and only decode sparsely.
use super::architecture::{matmul_training_flops, Architecture, Registered};
use super::config::DeadFeatureRemedy;
use super::{Codes, Encoded, Weights};
use crate::options::OptionMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use tch::Kind;

/// From this many features per active feature up, the winners are
/// recomputed from gathered encoder rows; below, the dense encoder keeps its
/// gradients. The crossover measured on a CPU (benches/sae_throughput.rhai,
/// d_in 576, k 32) lies near 32 (n_features ≈ 1000).
const SPARSE_ENCODER_MIN_RATIO: i64 = 32;

/// The TopK SAE's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopKConfig {
    /// Features kept active per token.
    pub k: i64,
    /// Dead features that AuxK may use per token; Gao et al. (appendix B.1)
    /// use d_in / 2, which is the default.
    pub k_aux: i64,
    /// Weight α of the AuxK loss; Gao et al. use 1/32.
    pub aux_coefficient: f64,
}

impl Registered for TopKConfig {
    const NAMES: &'static [&'static str] = &["topk"];

    /// k = 32 (at most n_features), k_aux = d_in / 2, α = 1/32 (Gao et al.).
    fn defaults(d_in: i64, n_features: i64) -> Self {
        TopKConfig {
            k: 32.min(n_features.max(1)),
            k_aux: (d_in / 2).max(1),
            aux_coefficient: 1.0 / 32.0,
        }
    }
}

/// Pre-activations of the chosen features only, with gradients:
/// W_enc[indices]·input + b_enc[indices], [batch, k].
fn selected_pre_activations(
    w: &Weights,
    input: &tch::Tensor,
    indices: &tch::Tensor,
) -> Result<tch::Tensor> {
    let rows = tch::Tensor::f_embedding(w.w_enc.inner(), indices, -1, false, false)?; // [batch, k, d_in]
    let dots = rows.f_bmm(&input.f_unsqueeze(2)?)?.f_squeeze_dim(2)?;
    let bias =
        tch::Tensor::f_embedding(&w.b_enc.inner().f_unsqueeze(1)?, indices, -1, false, false)?
            .f_squeeze_dim(2)?;
    Ok(dots.f_add(&bias)?)
}

/// Σ‖x − x̄‖² over a batch (a number; no gradient).
fn centred_sum_of_squares(x: &tch::Tensor) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let centred = x.f_sub(&x.f_mean_dim([0i64].as_slice(), true, None::<Kind>)?)?;
    Ok(centred
        .f_square()?
        .f_sum(Kind::Double)?
        .f_double_value(&[])?)
}

/// The chosen pre-activations with gradients: read from `pre` when it has
/// them (the dense path), recomputed from gathered rows otherwise.
fn selected(
    w: &Weights,
    input: &tch::Tensor,
    pre: &tch::Tensor,
    indices: &tch::Tensor,
) -> Result<tch::Tensor> {
    if pre.requires_grad() {
        Ok(pre.f_gather(1, indices, false)?)
    } else {
        selected_pre_activations(w, input, indices)
    }
}

/// AuxK (Gao et al. §A.2, as in OpenAI's released code): the `k_aux` dead
/// latents with the largest pre-activations, ReLU'd, reconstruct the main
/// reconstruction's error e without b_dec. Their loss is the normalised
/// MSE Σ‖e − ê‖² / Σ‖e − ē‖², weighted by α (`coefficient`) — and
/// multiplied by the input's variance Σ‖x − x̄‖² / batch, because OpenAI
/// normalises its main MSE by that variance while ours is the paper's
/// unnormalised ‖x − x̂‖²; this keeps the ratio of the two terms theirs.
/// Shared by every architecture that revives dead latents this way (TopK,
/// BatchTopK, Matryoshka).
pub(super) fn auxk_loss(
    k_aux: i64,
    coefficient: f64,
    w: &Weights,
    enc: &Encoded,
    residual: &tch::Tensor,
    dead: &tch::Tensor,
) -> Result<Option<tch::Tensor>> {
    let Some(pre) = &enc.pre_activations else {
        return Ok(None);
    };
    let n_dead = dead.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    let residual_variance = centred_sum_of_squares(residual)?;
    if n_dead == 0 || residual_variance <= 0.0 {
        return Ok(None);
    }
    let (_, indices) = {
        let _guard = tch::no_grad_guard();
        let masked = pre.f_where_scalarother(&dead.f_unsqueeze(0)?, f64::NEG_INFINITY)?;
        masked.f_topk(k_aux.min(n_dead), -1, true, false)?
    };
    let values = selected(w, &enc.input, pre, &indices)?.f_relu()?;
    let codes = Codes::Sparse {
        values,
        indices,
        n_features: w.n_features(),
    };
    let reconstruction = codes.decode(w)?.f_sub(w.b_dec.inner())?;
    let error = reconstruction
        .f_sub(residual)?
        .f_square()?
        .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?
        .f_mean(None::<Kind>)?;
    let weight = coefficient * centred_sum_of_squares(&enc.input)? / residual_variance;
    Ok(Some(error.f_mul_scalar(weight)?))
}

impl Architecture for TopKConfig {
    fn saelens_name(&self) -> &'static str {
        "topk"
    }

    fn check(&self, _d_in: i64, n_features: i64) -> Result<()> {
        if self.k < 1 || self.k > n_features {
            return Err(Error::invalid(format!(
                "TopK needs 1 <= k <= n_features, got k = {} with n_features = {n_features}",
                self.k
            )));
        }
        if self.k_aux < 1 {
            return Err(Error::invalid(format!(
                "k_aux must be >= 1, got {}",
                self.k_aux
            )));
        }
        Ok(())
    }

    fn encode(&self, w: &Weights, input: &tch::Tensor) -> Result<Encoded> {
        let n_features = w.n_features();
        let sparse = n_features >= SPARSE_ENCODER_MIN_RATIO * self.k;
        let pre = if sparse {
            let _guard = tch::no_grad_guard();
            input
                .f_detach()?
                .f_linear(w.w_enc.inner(), Some(w.b_enc.inner()))?
        } else {
            input.f_linear(w.w_enc.inner(), Some(w.b_enc.inner()))?
        };
        let (_, indices) = pre.f_detach()?.f_topk(self.k, -1, true, false)?;
        let values = selected(w, input, &pre, &indices)?.f_relu()?;
        let codes = Codes::Sparse {
            values,
            indices,
            n_features,
        };
        Ok(Encoded {
            codes,
            pre_activations: Some(pre),
            input: input.shallow_clone(),
        })
    }

    /// TopK has no sparsity term: k fixes L0.
    fn penalty(&self, w: &Weights, _enc: &Encoded) -> Result<tch::Tensor> {
        Ok(tch::Tensor::f_zeros([], (Kind::Float, w.w_dec.device()))?)
    }

    /// AuxK: see [`auxk_loss`].
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

    /// Gao et al.'s b_pre.
    fn default_apply_b_dec_to_input(&self) -> bool {
        true
    }

    /// The encoder is dense (every pre-activation is needed to choose the
    /// top k) but the decoder touches only k rows: 6·d·(F + k) per token.
    fn training_flops_per_token(&self, d_in: f64, n_features: f64) -> f64 {
        matmul_training_flops(d_in, n_features) + matmul_training_flops(d_in, self.k as f64)
    }

    fn write_saelens_fields(&self, cfg: &mut OptionMap) {
        cfg.insert("k".into(), json!(self.k));
        cfg.insert("rescale_acts_by_decoder_norm".into(), json!(false));
    }

    fn read_saelens_fields(&mut self, cfg: &OptionMap, path: &Path) -> Result<()> {
        self.k = cfg
            .get("k")
            .and_then(Value::as_i64)
            .ok_or_else(|| Error::invalid(format!("{}: 'k' must be an integer", path.display())))?;
        if cfg
            .get("rescale_acts_by_decoder_norm")
            .and_then(Value::as_bool)
            == Some(true)
        {
            return Err(Error::invalid(format!(
                "{}: TopK SAEs with rescale_acts_by_decoder_norm = true are not supported; fold the decoder norms in SAELens first",
                path.display()
            )));
        }
        Ok(())
    }

    fn saelab_settings(&self) -> OptionMap {
        let mut settings = OptionMap::new();
        settings.insert("k_aux".into(), json!(self.k_aux));
        settings.insert("aux_coefficient".into(), json!(self.aux_coefficient));
        settings
    }

    fn read_saelab_settings(&mut self, settings: &OptionMap) {
        if let Some(v) = settings.get("k_aux").and_then(Value::as_i64) {
            self.k_aux = v;
        }
        if let Some(v) = settings.get("aux_coefficient").and_then(Value::as_f64) {
            self.aux_coefficient = v;
        }
    }

    fn summary(&self) -> String {
        format!("k={}", self.k)
    }
}

#[cfg(test)]
mod tests {
    use super::TopKConfig;
    use crate::sae::{ArchitectureConfig, LossOptions, Sae, SaeConfig};
    use tch::Kind;

    fn with_k(d_in: i64, n_features: i64, k: i64) -> SaeConfig {
        let mut cfg = SaeConfig::new("topk", d_in, n_features).unwrap();
        cfg.architecture = ArchitectureConfig::TopK(TopKConfig {
            k,
            k_aux: 2,
            aux_coefficient: 1.0 / 32.0,
        });
        cfg
    }

    fn tiny(k: i64) -> Sae {
        let mut cfg = with_k(3, 4, k);
        cfg.apply_b_dec_to_input = false;
        let t = |v: &[f64], s: &[i64]| tch::Tensor::from_slice(v).reshape(s).to_kind(Kind::Float);
        Sae::from_parts(
            cfg,
            t(&[1., 0., 0., 0., 1., 0., 0., 0., 1., 1., 1., 1.], &[4, 3]),
            t(&[0., 0., 0., -10.], &[4]),
            t(
                &[1., 0., 0., 0., 1., 0., 0., 0., 1., 0.5, 0.5, 0.5],
                &[4, 3],
            ),
            t(&[0., 0., 0.], &[3]),
            None,
        )
        .unwrap()
    }

    #[test]
    fn keeps_the_k_largest_and_decodes_sparsely() {
        let sae = tiny(2);
        let x = tch::Tensor::from_slice(&[3.0f32, 1.0, 2.0]).reshape([1, 3]);
        let out = sae.forward(&x, &LossOptions::default()).unwrap();
        let f = Vec::<f64>::try_from(
            out.codes
                .to_dense()
                .unwrap()
                .reshape([-1])
                .to_kind(Kind::Double),
        )
        .unwrap();
        // pre = [3, 1, 2, 6 - 10 = -4]: the top two are features 0 and 2.
        assert_eq!(f, vec![3.0, 0.0, 2.0, 0.0]);
        let x_hat = Vec::<f64>::try_from(out.x_hat.reshape([-1]).to_kind(Kind::Double)).unwrap();
        assert_eq!(x_hat, vec![3.0, 0.0, 2.0]);
        // The sparse decoder agrees with the dense one.
        let dense = sae.decode(&out.codes.to_dense().unwrap()).unwrap();
        assert_eq!(
            f64::try_from((dense - &out.x_hat).abs().max()).unwrap(),
            0.0
        );
        assert!((out.mse.double_value(&[]) - 1.0).abs() < 1e-6);
        assert_eq!(out.penalty.double_value(&[]), 0.0);
    }

    #[test]
    fn gradients_match_the_dense_formulation() {
        // Both encoder paths: 4 features for k = 2 stays dense, 64 recomputes
        // the winners from gathered rows.
        for (n, x) in [
            (
                4,
                tch::Tensor::from_slice(&[3.0f32, 1.0, 2.0, 0.5, 2.0, 1.0]).reshape([2, 3]),
            ),
            (
                64,
                tch::Tensor::randn([5, 3], (Kind::Float, tch::Device::Cpu)),
            ),
        ] {
            let sae = if n == 4 {
                tiny(2)
            } else {
                Sae::new(with_k(3, n, 2)).unwrap()
            };
            let out = sae.forward(&x, &LossOptions::default()).unwrap();
            out.loss.backward();
            let grads: Vec<tch::Tensor> = sae
                .parameters()
                .iter()
                .map(|p| crate::sae::deep_copy(&p.inner().grad()).unwrap())
                .collect();
            sae.zero_grad().unwrap();
            // Dense reference: pre with gradients, mask all but the top k.
            let w = &sae.weights;
            let input = &x - w.b_dec.inner();
            let pre = input.linear(w.w_enc.inner(), Some(w.b_enc.inner()));
            let (_, idx) = pre.topk(2, -1, true, false);
            let mask = pre.zeros_like().scatter_value(1, &idx, 1.0);
            let f = pre.relu() * mask;
            let x_hat = f.matmul(w.w_dec.inner()) + w.b_dec.inner();
            let loss = (&x - x_hat)
                .square()
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                .mean(Kind::Float);
            assert!(
                (loss.double_value(&[]) - out.loss.double_value(&[])).abs() < 1e-5,
                "n = {n}"
            );
            loss.backward();
            for (mine, p) in grads.iter().zip(sae.parameters()) {
                let diff = f64::try_from((mine - p.inner().grad()).abs().max()).unwrap();
                assert!(diff < 1e-5, "n = {n}: gradient differs by {diff}");
            }
        }
    }

    #[test]
    fn auxk_trains_only_dead_latents() {
        let sae = tiny(1);
        let x = tch::Tensor::from_slice(&[3.0f32, 1.0, 2.0, 0.0, 2.0, 1.0]).reshape([2, 3]);
        let dead = tch::Tensor::from_slice(&[false, true, false, false]);
        let out = sae
            .forward(
                &x,
                &LossOptions {
                    dead_mask: Some(dead),
                    ..Default::default()
                },
            )
            .unwrap();
        // Main: token 1 keeps feature 0 (pre 3), token 2 feature 1 (pre 2);
        // e = [[0, 1, 2], [0, 0, 1]]. AuxK (k_aux = 1 dead latent, feature 1):
        // ê = [[0, 1, 0], [0, 2, 0]]; ‖e − ê‖² = 4 and 5; Σ‖e − ē‖² = 1;
        // Σ‖x − x̄‖² = 2.75 + 2.75 = 5.5 over a batch of 2; α = 1/32.
        let expected = (9.0 / 1.0) * (5.5 / 2.0) / 32.0;
        assert!(
            (out.aux.double_value(&[]) - expected).abs() < 1e-5,
            "{}",
            out.aux.double_value(&[])
        );
        out.aux.backward();
        let grad = sae.weights.w_dec.inner().grad().abs().sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Float,
        );
        let grad = Vec::<f64>::try_from(grad.to_kind(Kind::Double)).unwrap();
        assert!(
            grad[1] > 0.0 && grad[0] == 0.0 && grad[2] == 0.0 && grad[3] == 0.0,
            "{grad:?}"
        );
        let none = sae.forward(&x, &LossOptions::default()).unwrap();
        assert_eq!(none.aux.double_value(&[]), 0.0);
    }

    #[test]
    fn k_larger_than_n_features_is_an_error() {
        let err = Sae::new(with_k(3, 4, 5)).err().unwrap().to_string();
        assert!(
            err.contains("k = 5") && err.contains("n_features = 4"),
            "{err}"
        );
    }
}
