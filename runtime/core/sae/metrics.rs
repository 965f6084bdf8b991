//! How an SAE is measured: loss and its parts, L0, fraction of variance
//! explained, dead features over a window of tokens, the feature-density
//! histogram (log10 firing frequency), and — given a model — the CE loss
//! recovered when the SAE's reconstruction replaces the activations.
use super::{ActivationSource, Forward, LossOptions, Sae};
use crate::model::SpliceLoss;
use crate::precision::Precision;
use crate::{interrupt, Error, Result};
use tch::Kind;

/// 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over a batch (x̄: the batch mean).
pub fn explained_variance(x: &tch::Tensor, x_hat: &tch::Tensor) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let residual = x
        .f_sub(x_hat)?
        .f_square()?
        .f_sum(Kind::Double)?
        .f_double_value(&[])?;
    let centred = x.f_sub(&x.f_mean_dim([0i64].as_slice(), true, None::<Kind>)?)?;
    let total = centred
        .f_square()?
        .f_sum(Kind::Double)?
        .f_double_value(&[])?;
    Ok(if total > 0.0 {
        1.0 - residual / total
    } else {
        f64::NAN
    })
}

/// Measurements of one training step, read back from the device once.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepMetrics {
    pub loss: f64,
    pub mse: f64,
    pub penalty: f64,
    pub aux: f64,
    pub l0: f64,
    pub explained_variance: f64,
}

impl StepMetrics {
    /// The loss parts always; L0 and explained variance only when `detailed`
    /// (NaN otherwise): counting the active entries of a [batch, n_features]
    /// f costs about 5% of a ReLU step, so the trainer measures them on
    /// logged steps only.
    pub fn of(out: &Forward, detailed: bool) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        let (l0, explained_variance) = if detailed {
            (
                out.codes.l0()?.f_double_value(&[])?,
                explained_variance(&out.target, &out.x_hat)?,
            )
        } else {
            (f64::NAN, f64::NAN)
        };
        Ok(StepMetrics {
            loss: out.loss.f_double_value(&[])?,
            mse: out.mse.f_double_value(&[])?,
            penalty: out.penalty.f_double_value(&[])?,
            aux: out.aux.f_double_value(&[])?,
            l0,
            explained_variance,
        })
    }
}

/// Bins of the density histogram: log10 firing frequency from −8 to 0.
pub const DENSITY_BINS: usize = 40;
pub const DENSITY_LOG10_MIN: f64 = -8.0;

/// The result of [`evaluate`]. Loss, MSE and penalty are in the paper's
/// normalised units — as if the evaluated activations had been scaled so
/// that E‖x‖² = d_in — so they compare with the training history whatever
/// the scale of the raw activations; `mse_raw` is in the units given.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub tokens: u64,
    pub loss: f64,
    pub mse: f64,
    pub mse_raw: f64,
    pub penalty: f64,
    pub l0: f64,
    pub explained_variance: f64,
    /// Features that never fired over the evaluated tokens.
    pub dead_fraction: f64,
    /// Firing frequency of each feature over the evaluated tokens.
    pub density: Vec<f64>,
    /// Counts per bin of log10(density) over live features; bin i covers
    /// [−8 + i·0.2, −8 + (i+1)·0.2). Dead features are not counted.
    pub density_histogram: Vec<u64>,
    /// The scale s = √(d_in / E‖x‖²) of the evaluated activations.
    pub input_scale: f64,
    /// Explained variance of each site the decoder writes: a crosscoder's
    /// sites in order; one value (the overall one) otherwise.
    pub site_explained_variance: Vec<f64>,
    /// Shrinkage: the mean over tokens of ‖x̂‖ / ‖x‖ (SAELens's `l2_ratio`);
    /// below 1 when the sparsity penalty shrinks the reconstruction.
    pub l2_ratio: f64,
    /// γ = E‖x̂‖² / E[x̂·x], the factor by which x̂ is too long (Gated SAE
    /// paper's relative reconstruction bias; SAELens's
    /// `relative_reconstruction_bias`): 1 is unbiased, below 1 shrunk.
    pub relative_reconstruction_bias: f64,
}

impl Evaluation {
    /// log10 of each live feature's density (dead features have none), the
    /// paper's feature-density histogram's x values.
    pub fn log10_live_density(&self) -> Vec<f64> {
        self.density
            .iter()
            .filter(|d| **d > 0.0)
            .map(|d| d.log10())
            .collect()
    }
}

/// Running sums over batches, in f64 on the host.
#[derive(Default)]
struct Sums {
    tokens: u64,
    squared_error: f64,
    penalty: f64,
    active: f64,
    squared_norm: f64,
    sum: Vec<f64>,
    fired: Option<tch::Tensor>,
    /// Per output site: squared error and squared norm.
    site_squared_error: Vec<f64>,
    site_squared_norm: Vec<f64>,
    /// Σ ‖x̂‖/‖x‖ over tokens with ‖x‖ > 0, and how many there were.
    norm_ratio: f64,
    norm_ratio_tokens: u64,
    /// Σ‖x̂‖² and Σ x̂·x.
    reconstruction_squared_norm: f64,
    reconstruction_dot_input: f64,
}

/// A plain loss evaluation computed in `precision`.
fn in_precision(precision: Precision) -> LossOptions {
    LossOptions {
        precision,
        ..Default::default()
    }
}

/// Reads `tokens` activations (or the whole source, when it says how many it
/// holds and `tokens` is 0) in batches and measures the SAE on them.
/// The SAE computes in `precision`; the measures are accumulated in f64.
pub fn evaluate(
    sae: &Sae,
    source: &mut dyn ActivationSource,
    tokens: u64,
    batch_size: i64,
    precision: Precision,
) -> Result<Evaluation> {
    let row = sae.cfg.layout.row_width(sae.cfg.d_in);
    if source.dim() != row {
        return Err(Error::invalid(format!(
            "the activations have width {} but the {}'s d_in is {}{}",
            source.dim(),
            sae.cfg.layout.noun(),
            sae.cfg.d_in,
            if row == sae.cfg.d_in {
                String::new()
            } else {
                format!(" (rows of input and output side by side: {row})")
            }
        )));
    }
    let tokens = match (tokens, source.tokens_per_pass()) {
        (0, Some(len)) => len,
        (0, None) => return Err(Error::invalid("evaluate: say how many tokens to read")),
        (n, _) => n,
    };
    let _guard = tch::no_grad_guard();
    let blocks = sae.cfg.layout.output_widths(sae.cfg.d_in);
    let mut sums = Sums {
        sum: vec![0.0; sae.cfg.d_out() as usize],
        site_squared_error: vec![0.0; blocks.len()],
        site_squared_norm: vec![0.0; blocks.len()],
        ..Default::default()
    };
    while sums.tokens < tokens {
        interrupt::check()?;
        let n = (tokens - sums.tokens).min(batch_size.max(1) as u64) as i64;
        let x = source.next_batch(n)?.f_to(sae.cfg.device)?;
        let out = sae.forward(&x, &in_precision(precision))?;
        accumulate(&mut sums, &out, &blocks)?;
    }
    finish(sae, sums, &blocks)
}

fn accumulate(sums: &mut Sums, out: &Forward, blocks: &[i64]) -> Result<()> {
    // What the decoder approximates: the input, or a transcoder's output.
    let x = &out.target;
    let n = x.size()[0] as f64;
    let parts = |t: &tch::Tensor| t.f_split_with_sizes(blocks, 1);
    for ((target, error), i) in parts(x)?.iter().zip(parts(&x.f_sub(&out.x_hat)?)?).zip(0..) {
        let squared = |t: &tch::Tensor| -> Result<f64> {
            Ok(t.f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?)
        };
        sums.site_squared_error[i] += squared(&error)?;
        sums.site_squared_norm[i] += squared(target)?;
    }
    sums.tokens += x.size()[0] as u64;
    sums.squared_error += out.mse.f_double_value(&[])? * n;
    sums.penalty += out.penalty.f_double_value(&[])? * n;
    sums.active += out.codes.l0()?.f_double_value(&[])? * n;
    sums.squared_norm += x.f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?;
    let column_sums = Vec::<f64>::try_from(
        &x.f_sum_dim_intlist([0i64].as_slice(), false, Kind::Double)?
            .f_to(tch::Device::Cpu)?,
    )?;
    for (total, v) in sums.sum.iter_mut().zip(column_sums) {
        *total += v;
    }
    accumulate_shrinkage(sums, x, &out.x_hat)?;
    let counts = out.codes.firing_counts()?;
    sums.fired = Some(match sums.fired.take() {
        Some(total) => total.f_add(&counts)?,
        None => counts,
    });
    Ok(())
}

fn accumulate_shrinkage(sums: &mut Sums, x: &tch::Tensor, x_hat: &tch::Tensor) -> Result<()> {
    let sum = |t: tch::Tensor| -> Result<f64> { Ok(t.f_sum(Kind::Double)?.f_double_value(&[])?) };
    let norms = x.f_norm_scalaropt_dim(2, [1], false)?;
    let ratios = x_hat.f_norm_scalaropt_dim(2, [1], false)?.f_div(&norms)?;
    let counted = norms.f_gt(0.0)?;
    sums.norm_ratio += sum(ratios.f_where_scalarother(&counted, 0.0)?)?;
    sums.norm_ratio_tokens += counted.f_sum(Kind::Int64)?.f_int64_value(&[])? as u64;
    sums.reconstruction_squared_norm += sum(x_hat.f_square()?)?;
    sums.reconstruction_dot_input += sum(x_hat.f_mul(x)?)?;
    Ok(())
}

fn finish(sae: &Sae, sums: Sums, blocks: &[i64]) -> Result<Evaluation> {
    let tokens = sums.tokens.max(1) as f64;
    let site_explained_variance = site_explained_variance(&sums, blocks, tokens);
    let mean_squared_norm = sums.squared_norm / tokens;
    // Σ‖x − x̄‖² = Σ‖x‖² − N‖x̄‖², from the running sums.
    let mean_norm_squared: f64 = sums.sum.iter().map(|s| (s / tokens).powi(2)).sum();
    let total_variance = sums.squared_norm - tokens * mean_norm_squared;
    let scale = if mean_squared_norm > 0.0 {
        (sae.cfg.d_out() as f64 / mean_squared_norm).sqrt()
    } else {
        1.0
    };
    let mse_raw = sums.squared_error / tokens;
    // Folding s into the weights leaves f unchanged and divides W_dec by s:
    // in normalised units the error grows by s², the penalty as the architecture says.
    let mse = mse_raw * scale * scale;
    let penalty = sae
        .architecture()
        .penalty_at_scale(sums.penalty / tokens, scale);
    let density = match &sums.fired {
        Some(fired) => Vec::<f64>::try_from(
            &fired
                .f_to(tch::Device::Cpu)?
                .f_totype(Kind::Double)?
                .f_div_scalar(tokens)?,
        )?,
        None => vec![0.0; sae.cfg.n_features as usize],
    };
    let dead = density.iter().filter(|d| **d == 0.0).count();
    Ok(Evaluation {
        tokens: sums.tokens,
        loss: mse + sae.architecture().sparsity_coefficient() * penalty,
        mse,
        mse_raw,
        penalty,
        l0: sums.active / tokens,
        explained_variance: if total_variance > 0.0 {
            1.0 - sums.squared_error / total_variance
        } else {
            f64::NAN
        },
        dead_fraction: dead as f64 / density.len().max(1) as f64,
        density_histogram: density_histogram(&density),
        density,
        input_scale: scale,
        site_explained_variance,
        l2_ratio: sums.norm_ratio / sums.norm_ratio_tokens.max(1) as f64,
        relative_reconstruction_bias: sums.reconstruction_squared_norm
            / sums.reconstruction_dot_input,
    })
}

/// 1 − Σ‖x_l − x̂_l‖² / Σ‖x_l − x̄_l‖² for each output site l, from the running sums.
fn site_explained_variance(sums: &Sums, blocks: &[i64], tokens: f64) -> Vec<f64> {
    let mut start = 0;
    blocks
        .iter()
        .enumerate()
        .map(|(i, width)| {
            let columns = &sums.sum[start..start + *width as usize];
            start += *width as usize;
            let mean_norm_squared: f64 = columns.iter().map(|s| (s / tokens).powi(2)).sum();
            let variance = sums.site_squared_norm[i] - tokens * mean_norm_squared;
            if variance > 0.0 {
                1.0 - sums.site_squared_error[i] / variance
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Counts of log10(density) per bin (see [`Evaluation::density_histogram`]).
pub fn density_histogram(density: &[f64]) -> Vec<u64> {
    let width = -DENSITY_LOG10_MIN / DENSITY_BINS as f64;
    let mut counts = vec![0u64; DENSITY_BINS];
    for d in density.iter().filter(|d| **d > 0.0) {
        let bin = ((d.log10() - DENSITY_LOG10_MIN) / width).floor().max(0.0) as usize;
        counts[bin.min(DENSITY_BINS - 1)] += 1;
    }
    counts
}

/// The left edges of the density histogram's bins (log10 frequency).
pub fn density_bin_edges() -> Vec<f64> {
    let width = -DENSITY_LOG10_MIN / DENSITY_BINS as f64;
    (0..=DENSITY_BINS)
        .map(|i| DENSITY_LOG10_MIN + i as f64 * width)
        .collect()
}

/// How much of the model's next-token loss the SAE keeps when its
/// reconstruction replaces the activations, and how far the next-token
/// distributions move (KL from the clean model, in nats per prediction).
#[derive(Debug, Clone, Copy)]
pub struct CeLossRecovered {
    /// CE with the model untouched.
    pub clean: f64,
    /// CE with the activations replaced by the SAE's reconstruction.
    pub spliced: f64,
    /// CE with the activations replaced by zeros.
    pub zero_ablated: f64,
    /// (zero_ablated − spliced) / (zero_ablated − clean): 1 is perfect.
    pub fraction_recovered: f64,
    /// KL(clean ‖ spliced), SAELens's `kl_div_with_sae`.
    pub kl_spliced: f64,
    /// KL(clean ‖ zero-ablated), SAELens's `kl_div_with_ablation`.
    pub kl_zero_ablated: f64,
    /// (kl_zero_ablated − kl_spliced) / kl_zero_ablated, SAELens's
    /// `kl_div_score`: 1 is perfect.
    pub kl_score: f64,
}

/// A replacement for the activations at the SAE's hook, [tokens, d_in] → same shape.
pub type Splice<'a> = &'a dyn Fn(&tch::Tensor) -> Result<tch::Tensor>;

/// CE loss recovered and the KL divergences. `model_loss(None)` runs the
/// model over the evaluation tokens and returns its mean next-token
/// cross-entropy (and a KL of 0); `model_loss(Some(splice))` the same with
/// the activations at the SAE's hook replaced by `splice(activations)`, and
/// the KL from the clean pass ([`crate::model::SpliceProbe::measure`]). It is
/// called three times: clean (first), with the SAE's reconstruction, and
/// with zeros.
///
/// `input_scale` is the factor the SAE's inputs were multiplied by in
/// training when it was not folded into the weights (a loop written in a
/// script on `store.batch(n) * store.scale`); the splice is then
/// sae(s·x)/s. SAEs from `train` or `load_sae` take raw activations: 1.
pub fn ce_loss_recovered(
    sae: &Sae,
    input_scale: f64,
    precision: Precision,
    mut model_loss: impl FnMut(Option<Splice>) -> Result<SpliceLoss>,
) -> Result<CeLossRecovered> {
    if !(input_scale.is_finite() && input_scale > 0.0) {
        return Err(Error::invalid(format!(
            "input_scale must be a positive number, got {input_scale}"
        )));
    }
    let clean = model_loss(None)?.cross_entropy;
    let reconstruct = |x: &tch::Tensor| -> Result<tch::Tensor> {
        let _guard = tch::no_grad_guard();
        let shape = x.size();
        let flat = x.f_reshape([-1, sae.cfg.d_in])?.f_mul_scalar(input_scale)?;
        let out = sae.forward(&flat, &in_precision(precision))?;
        let x_hat = out.x_hat.f_div_scalar(input_scale)?;
        Ok(x_hat.f_reshape(&shape)?.f_totype(x.f_kind()?)?)
    };
    let spliced = model_loss(Some(&reconstruct))?;
    let zeros = |x: &tch::Tensor| -> Result<tch::Tensor> { Ok(x.f_zeros_like()?) };
    let zero_ablated = model_loss(Some(&zeros))?;
    Ok(CeLossRecovered::from_passes(clean, spliced, zero_ablated))
}

impl CeLossRecovered {
    /// The measures from the clean pass's CE and the spliced and
    /// zero-ablated passes (also for transcoders and crosscoders, which
    /// splice at several sites: `xcoder::ce_loss_recovered`).
    pub fn from_passes(clean: f64, spliced: SpliceLoss, zero_ablated: SpliceLoss) -> Self {
        let fraction_of_gap = |gap: f64, closed: f64| {
            if gap.abs() > 0.0 {
                closed / gap
            } else {
                f64::NAN
            }
        };
        CeLossRecovered {
            clean,
            spliced: spliced.cross_entropy,
            zero_ablated: zero_ablated.cross_entropy,
            fraction_recovered: fraction_of_gap(
                zero_ablated.cross_entropy - clean,
                zero_ablated.cross_entropy - spliced.cross_entropy,
            ),
            kl_spliced: spliced.kl_divergence,
            kl_zero_ablated: zero_ablated.kl_divergence,
            kl_score: fraction_of_gap(
                zero_ablated.kl_divergence,
                zero_ablated.kl_divergence - spliced.kl_divergence,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::{SaeConfig, TensorSource};

    #[test]
    fn histogram_bins_log10_frequencies_and_skips_dead_features() {
        let counts = density_histogram(&[0.0, 1.0, 0.1, 1e-9, 0.5]);
        assert_eq!(counts.iter().sum::<u64>(), 4);
        assert_eq!(counts[DENSITY_BINS - 1], 1); // 1.0 (log10 = 0) is clamped into the last bin
        assert_eq!(counts[38], 1); // log10(0.5) ≈ −0.30 → (−0.30 + 8) / 0.2 ≈ 38.5
        assert_eq!(counts[0], 1); // below 1e-8 is clamped into the first bin
        assert_eq!(counts[35], 1); // log10(0.1) = −1 → bin (−1 + 8) / 0.2 = 35
    }

    #[test]
    fn explained_variance_is_one_for_a_perfect_reconstruction() {
        let x = tch::Tensor::randn([16, 4], (Kind::Float, tch::Device::Cpu));
        assert!((explained_variance(&x, &x).unwrap() - 1.0).abs() < 1e-12);
        let mean = x
            .mean_dim([0i64].as_slice(), true, Kind::Float)
            .expand_as(&x);
        assert!(explained_variance(&x, &mean).unwrap().abs() < 1e-6);
    }

    #[test]
    fn evaluation_counts_dead_features_and_agrees_with_one_batch() {
        crate::rng::seed(1);
        let sae = Sae::new(SaeConfig::new("relu", 4, 8).unwrap()).unwrap();
        let x = tch::Tensor::randn([32, 4], (Kind::Float, tch::Device::Cpu));
        let mut source = TensorSource::new(&x, 0, false).unwrap();
        let eval = evaluate(&sae, &mut source, 0, 10, Precision::F32).unwrap();
        assert_eq!(eval.tokens, 32);
        let out = sae.forward(&x, &LossOptions::default()).unwrap();
        let l0 = out.codes.l0().unwrap().double_value(&[]);
        assert!((eval.l0 - l0).abs() < 1e-5);
        assert!(
            (eval.explained_variance - explained_variance(&x, &out.x_hat).unwrap()).abs() < 1e-5
        );
        let never = out
            .codes
            .firing_counts()
            .unwrap()
            .eq(0.0)
            .to_kind(Kind::Float)
            .mean(Kind::Float);
        assert!((eval.dead_fraction - never.double_value(&[])).abs() < 1e-12);
        // Normalised MSE: the raw MSE times s².
        assert!((eval.mse - eval.mse_raw * eval.input_scale.powi(2)).abs() < 1e-9);
        // Shrinkage against the per-token definition.
        let ratio = (out.x_hat.norm_scalaropt_dim(2, [1], false)
            / x.norm_scalaropt_dim(2, [1], false))
        .mean(Kind::Float)
        .double_value(&[]);
        assert!(
            (eval.l2_ratio - ratio).abs() < 1e-5,
            "{} vs {ratio}",
            eval.l2_ratio
        );
        let gamma = out.x_hat.square().sum(Kind::Float).double_value(&[])
            / (&out.x_hat * &x).sum(Kind::Float).double_value(&[]);
        assert!((eval.relative_reconstruction_bias - gamma).abs() < 1e-4);
    }

    #[test]
    fn ce_loss_recovered_is_the_fraction_of_the_gap_closed() {
        crate::rng::seed(2);
        let sae = Sae::new(SaeConfig::new("relu", 4, 8).unwrap()).unwrap();
        let x = tch::Tensor::randn([3, 4], (Kind::Float, tch::Device::Cpu));
        // A stand-in "model" whose loss is the distance from the clean
        // activations, and whose KL is half that.
        let result = ce_loss_recovered(&sae, 1.0, Precision::F32, |splice| {
            let distance = match splice {
                None => 0.0,
                Some(f) => f(&x)?
                    .f_sub(&x)?
                    .f_square()?
                    .f_mean(Kind::Float)?
                    .f_double_value(&[])?,
            };
            Ok(SpliceLoss {
                cross_entropy: 1.0 + distance,
                kl_divergence: distance / 2.0,
            })
        })
        .unwrap();
        assert_eq!(result.clean, 1.0);
        let expected = (result.zero_ablated - result.spliced) / (result.zero_ablated - 1.0);
        assert_eq!(result.fraction_recovered, expected);
        assert!((result.kl_score - expected).abs() < 1e-12);
        assert_eq!(result.kl_spliced, (result.spliced - 1.0) / 2.0);
    }
}
