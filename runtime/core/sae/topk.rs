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
use super::{Architecture, Codes, Encoded, SaeConfig, Weights};
use crate::{Error, Result};
use tch::Kind;

/// From this many features per active feature up, the winners are
/// recomputed from gathered encoder rows; below, the dense encoder keeps its
/// gradients. The crossover measured on a CPU (benches/sae_throughput.rhai,
/// d_in 576, k 32) lies near 32 (n_features ≈ 1000).
const SPARSE_ENCODER_MIN_RATIO: i64 = 32;

pub struct TopK {
    k: i64,
    k_aux: i64,
    aux_coefficient: f64,
    apply_b_dec_to_input: bool,
    n_features: i64,
}

pub fn build(cfg: &SaeConfig) -> Result<Box<dyn Architecture>> {
    if cfg.k < 1 || cfg.k > cfg.n_features {
        return Err(Error::invalid(format!(
            "TopK needs 1 <= k <= n_features, got k = {} with n_features = {}",
            cfg.k, cfg.n_features
        )));
    }
    if cfg.k_aux < 1 {
        return Err(Error::invalid(format!(
            "k_aux must be >= 1, got {}",
            cfg.k_aux
        )));
    }
    Ok(Box::new(TopK {
        k: cfg.k,
        k_aux: cfg.k_aux,
        aux_coefficient: cfg.aux_coefficient,
        apply_b_dec_to_input: cfg.apply_b_dec_to_input,
        n_features: cfg.n_features,
    }))
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

impl Architecture for TopK {
    fn name(&self) -> &'static str {
        "topk"
    }

    fn saelens_name(&self) -> &'static str {
        "topk"
    }

    fn encode(&self, w: &Weights, x: &tch::Tensor) -> Result<Encoded> {
        let input = w.encoder_input(x, self.apply_b_dec_to_input)?;
        let sparse = self.n_features >= SPARSE_ENCODER_MIN_RATIO * self.k;
        let pre = if sparse {
            let _guard = tch::no_grad_guard();
            input
                .f_detach()?
                .f_linear(w.w_enc.inner(), Some(w.b_enc.inner()))?
        } else {
            input.f_linear(w.w_enc.inner(), Some(w.b_enc.inner()))?
        };
        let (_, indices) = pre.f_detach()?.f_topk(self.k, -1, true, false)?;
        let values = selected(w, &input, &pre, &indices)?.f_relu()?;
        let codes = Codes::Sparse {
            values,
            indices,
            n_features: self.n_features,
        };
        Ok(Encoded {
            codes,
            pre_activations: Some(pre),
            input,
        })
    }

    /// TopK has no sparsity term: k fixes L0.
    fn penalty(&self, w: &Weights, _enc: &Encoded) -> Result<tch::Tensor> {
        Ok(tch::Tensor::f_zeros([], (Kind::Float, w.w_dec.device()))?)
    }

    /// AuxK (Gao et al. §A.2, as in OpenAI's released code): the k_aux dead
    /// latents with the largest pre-activations, ReLU'd, reconstruct the main
    /// reconstruction's error e without b_dec. Their loss is the normalised
    /// MSE Σ‖e − ê‖² / Σ‖e − ē‖², weighted by α — and multiplied by the
    /// input's variance Σ‖x − x̄‖² / batch, because OpenAI normalises its main
    /// MSE by that variance while ours is the paper's unnormalised ‖x − x̂‖²;
    /// this keeps the ratio of the two terms theirs.
    fn aux_loss(
        &self,
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
            masked.f_topk(self.k_aux.min(n_dead), -1, true, false)?
        };
        let values = selected(w, &enc.input, pre, &indices)?.f_relu()?;
        let codes = Codes::Sparse {
            values,
            indices,
            n_features: self.n_features,
        };
        let reconstruction = codes.decode(w)?.f_sub(w.b_dec.inner())?;
        let error = reconstruction
            .f_sub(residual)?
            .f_square()?
            .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?
            .f_mean(None::<Kind>)?;
        let weight = self.aux_coefficient * centred_sum_of_squares(&enc.input)? / residual_variance;
        Ok(Some(error.f_mul_scalar(weight)?))
    }

    fn unit_norm_decoder(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::sae::{LossOptions, Sae, SaeConfig};
    use tch::Kind;

    fn tiny(k: i64) -> Sae {
        let mut cfg = SaeConfig::new("topk", 3, 4).unwrap();
        cfg.k = k;
        cfg.k_aux = 2;
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
                let mut cfg = SaeConfig::new("topk", 3, n).unwrap();
                cfg.k = 2;
                Sae::new(cfg).unwrap()
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
        let mut cfg = SaeConfig::new("topk", 3, 4).unwrap();
        cfg.k = 5;
        let err = Sae::new(cfg).err().unwrap().to_string();
        assert!(
            err.contains("k = 5") && err.contains("n_features = 4"),
            "{err}"
        );
    }
}
