//! Features are not neurons (*Scaling Monosemanticity*, "Features as
//! computational intermediates"): the exact Pearson correlation of each
//! chosen feature's activation with every MLP neuron of chosen layers, over
//! a corpus, in one streaming pass of running sums. One forward pass per
//! window reads the SAE's site and every MLP at once; only the sums are
//! kept ([features × neurons] cross products), never the activations.
//!
//! The sums are taken of shifted values (each column minus its mean in the
//! first window), in f64, so the textbook formula does not cancel
//! catastrophically for neurons with a large mean.
use crate::corpus::Corpus;
use crate::model::{HookPoint, Hooks, Logits, Model, Site, SpliceWindow};
use crate::precision::Precision;
use crate::sae::Sae;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct NeuronOptions {
    /// Features to correlate (indices into the SAE).
    pub features: Vec<i64>,
    /// MLP layers whose neurons are compared.
    pub layers: Vec<usize>,
    /// Text tokens to read (position 0 of each window left out, as a harvest does).
    pub tokens: usize,
    /// Tokens per window.
    pub context: usize,
    pub show_progress: bool,
    /// What the SAE encodes in; the neurons come from the model in its own precision.
    pub precision: Precision,
}

/// For each feature: its best-correlated neuron.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuronCorrelations {
    pub features: Vec<i64>,
    /// max over neurons of |r|; NaN for a feature that never fired in the sample.
    pub max_abs_r: Vec<f64>,
    /// The signed r of that neuron.
    pub r: Vec<f64>,
    pub best_layer: Vec<usize>,
    pub best_neuron: Vec<i64>,
    pub tokens: usize,
    pub neurons_per_layer: i64,
    /// Where the time went: the model's forward passes, the SAE's encoding,
    /// and the running sums (the correlation matmuls), in seconds.
    pub seconds_forward: f64,
    pub seconds_encode: f64,
    pub seconds_sums: f64,
}

impl NeuronCorrelations {
    /// Of the features that fired, the fraction whose best neuron has |r| ≤ `threshold`
    /// (the paper: 82% at 0.3).
    pub fn fraction_at_most(&self, threshold: f64) -> f64 {
        let live: Vec<f64> = self
            .max_abs_r
            .iter()
            .copied()
            .filter(|r| r.is_finite())
            .collect();
        if live.is_empty() {
            return f64::NAN;
        }
        live.iter().filter(|&&r| r <= threshold).count() as f64 / live.len() as f64
    }
}

/// Running sums of shifted x (features) and y (neurons).
struct Sums {
    n: f64,
    shift_x: Tensor,
    shift_y: Tensor,
    sx: Tensor,
    sy: Tensor,
    sxx: Tensor,
    syy: Tensor,
    sxy: Tensor,
}

impl Sums {
    fn new(x: &Tensor, y: &Tensor) -> Result<Self> {
        let f = x.size()[1];
        let n = y.size()[1];
        let zeros = |shape: &[i64]| Tensor::f_zeros(shape, (Kind::Double, x.device()));
        Ok(Sums {
            n: 0.0,
            shift_x: x.f_mean_dim(0, false, Kind::Float)?,
            shift_y: y.f_mean_dim(0, false, Kind::Float)?,
            sx: zeros(&[f])?,
            sy: zeros(&[n])?,
            sxx: zeros(&[f])?,
            syy: zeros(&[n])?,
            sxy: zeros(&[f, n])?,
        })
    }

    fn add(&mut self, x: &Tensor, y: &Tensor) -> Result<()> {
        let x = x.f_sub(&self.shift_x)?;
        let y = y.f_sub(&self.shift_y)?;
        let sum = |t: &Tensor| t.f_sum_dim_intlist(0, false, Kind::Double);
        self.n += x.size()[0] as f64;
        self.sx = self.sx.f_add(&sum(&x)?)?;
        self.sy = self.sy.f_add(&sum(&y)?)?;
        self.sxx = self.sxx.f_add(&sum(&x.f_square()?)?)?;
        self.syy = self.syy.f_add(&sum(&y.f_square()?)?)?;
        self.sxy = self
            .sxy
            .f_add(&x.f_transpose(0, 1)?.f_matmul(&y)?.f_totype(Kind::Double)?)?;
        Ok(())
    }

    /// Pearson r [features, neurons]; NaN where a column has no variance.
    fn pearson(&self) -> Result<Tensor> {
        let n = self.n;
        let cov = self
            .sxy
            .f_mul_scalar(n)?
            .f_sub(&self.sx.f_outer(&self.sy)?)?;
        let var_x = self.sxx.f_mul_scalar(n)?.f_sub(&self.sx.f_square()?)?;
        let var_y = self.syy.f_mul_scalar(n)?.f_sub(&self.sy.f_square()?)?;
        let scale = var_x.f_outer(&var_y)?.f_sqrt()?;
        Ok(cov.f_div(&scale)?)
    }
}

/// Correlates features of `sae` (reading `site`) with the MLP neurons of `opts.layers`.
pub fn neuron_correlations(
    model: &Model,
    sae: &Sae,
    site: Site,
    corpus: &Corpus,
    opts: &NeuronOptions,
) -> Result<NeuronCorrelations> {
    check(model, sae, opts)?;
    let _guard = tch::no_grad_guard();
    let mut reads = vec![site];
    reads.extend(opts.layers.iter().map(|&layer| Site {
        layer,
        point: HookPoint::Mlp,
    }));
    let hooks = Hooks::reading(&reads);
    let index = Tensor::f_from_slice(&opts.features)?.f_to(sae.cfg.device)?;
    let mut sums: Option<Sums> = None;
    let mut pending: Vec<(Tensor, Tensor)> = Vec::new();
    let mut timing = Timing::default();
    let bar = opts
        .show_progress
        .then(|| crate::progress::bar(opts.tokens as u64, "tokens"));
    let mut seen = 0;
    for window in corpus.windows(&model.tokenizer, opts.context)? {
        if seen >= opts.tokens {
            break;
        }
        crate::interrupt::check()?;
        let window = window?;
        let mut keep = SpliceWindow::from_corpus(&window).kept_positions();
        keep.truncate(opts.tokens - seen);
        if keep.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let out = model.run(std::slice::from_ref(&window.tokens), &hooks, Logits::Skip)?;
        timing.forward += started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        let rows = |t: &Tensor| -> Result<Tensor> {
            let t = t.f_squeeze_dim(0)?;
            let keep = Tensor::f_from_slice(&keep)?.f_to(t.device())?;
            Ok(t.f_index_select(0, &keep)?.f_totype(Kind::Float)?)
        };
        let x = sae
            .encode_in(&rows(&out.activations[0])?, opts.precision)?
            .f_index_select(1, &index)?;
        let neurons: Vec<Tensor> = out.activations[1..]
            .iter()
            .map(rows)
            .collect::<Result<_>>()?;
        let y = Tensor::f_cat(&neurons, 1)?.f_to(x.device())?;
        timing.encode += started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        if sums.is_none() {
            sums = Some(Sums::new(&x, &y)?);
        }
        pending.push((x, y));
        if pending.iter().map(|(x, _)| x.size()[0]).sum::<i64>() >= FLUSH_ROWS {
            flush(sums.as_mut(), &mut pending)?;
        }
        timing.sums += started.elapsed().as_secs_f64();
        seen += keep.len();
        if let Some(bar) = &bar {
            bar.inc(keep.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let started = std::time::Instant::now();
    flush(sums.as_mut(), &mut pending)?;
    timing.sums += started.elapsed().as_secs_f64();
    let sums = sums.ok_or_else(|| Error::invalid("the corpus gave no text to correlate on"))?;
    let started = std::time::Instant::now();
    let r = sums.pearson()?;
    let mut result = summarise(&r, opts, seen, model.llama.config.d_mlp as i64)?;
    timing.sums += started.elapsed().as_secs_f64();
    result.seconds_forward = timing.forward;
    result.seconds_encode = timing.encode;
    result.seconds_sums = timing.sums;
    Ok(result)
}

/// Rows gathered before one cross-product matmul: adding a [features ×
/// neurons] product to the f64 sums costs as much as a matmul of a few
/// hundred rows, so windows are taken together.
const FLUSH_ROWS: i64 = 2048;

/// Adds the pending windows' rows to the sums in one matmul.
fn flush(sums: Option<&mut Sums>, pending: &mut Vec<(Tensor, Tensor)>) -> Result<()> {
    let Some(sums) = sums else {
        return Ok(());
    };
    if pending.is_empty() {
        return Ok(());
    }
    let xs: Vec<&Tensor> = pending.iter().map(|(x, _)| x).collect();
    let ys: Vec<&Tensor> = pending.iter().map(|(_, y)| y).collect();
    sums.add(&Tensor::f_cat(&xs, 0)?, &Tensor::f_cat(&ys, 0)?)?;
    pending.clear();
    Ok(())
}

/// Seconds spent in each part of the pass.
#[derive(Default)]
struct Timing {
    forward: f64,
    encode: f64,
    sums: f64,
}

fn check(model: &Model, sae: &Sae, opts: &NeuronOptions) -> Result<()> {
    super::check_width(model, sae)?;
    if opts.features.is_empty() || opts.layers.is_empty() || opts.tokens < 2 {
        return Err(Error::invalid(
            "neuron correlations need features, layers and at least 2 tokens",
        ));
    }
    if let Some(&bad) = opts
        .features
        .iter()
        .find(|&&f| f < 0 || f >= sae.cfg.n_features)
    {
        return Err(Error::invalid(format!(
            "feature {bad} is out of range: the SAE has {} features",
            sae.cfg.n_features
        )));
    }
    if let Some(&bad) = opts.layers.iter().find(|&&l| l >= model.n_layers()) {
        return Err(Error::invalid(format!(
            "layer {bad} is out of range: the model has {} layers",
            model.n_layers()
        )));
    }
    Ok(())
}

/// Each feature's best neuron from r [features, layers × neurons].
fn summarise(
    r: &Tensor,
    opts: &NeuronOptions,
    tokens: usize,
    neurons_per_layer: i64,
) -> Result<NeuronCorrelations> {
    let abs = r.f_abs()?.f_nan_to_num(-1.0, None, None)?;
    let (best, at) = abs.f_max_dim(1, false)?;
    let signed = r
        .f_gather(1, &at.f_unsqueeze(1)?, false)?
        .f_squeeze_dim(1)?;
    let best: Vec<f64> = Vec::try_from(&best.f_to(Device::Cpu)?)?;
    let at: Vec<i64> = Vec::try_from(&at.f_to(Device::Cpu)?)?;
    let signed: Vec<f64> = Vec::try_from(&signed.f_to(Device::Cpu)?)?;
    Ok(NeuronCorrelations {
        features: opts.features.clone(),
        max_abs_r: best
            .iter()
            .map(|&b| if b < 0.0 { f64::NAN } else { b })
            .collect(),
        r: signed,
        best_layer: at
            .iter()
            .map(|&i| opts.layers[(i / neurons_per_layer) as usize])
            .collect(),
        best_neuron: at.iter().map(|&i| i % neurons_per_layer).collect(),
        tokens,
        neurons_per_layer,
        seconds_forward: 0.0,
        seconds_encode: 0.0,
        seconds_sums: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_shifted_sums_give_pearson_r_of_the_whole_sample() {
        crate::rng::seed(5);
        let opts = (Kind::Float, Device::Cpu);
        // Columns with large means and small spread: the case that cancels.
        let x = Tensor::randn([300, 3], opts) + 1000.0;
        let noise = Tensor::randn([300, 4], opts);
        let y = Tensor::cat(&[x.narrow(1, 0, 1) * 2.0 + 5000.0, noise], 1);
        let mut sums = Sums::new(&x.narrow(0, 0, 50), &y.narrow(0, 0, 50)).unwrap();
        for start in (0..300).step_by(50) {
            sums.add(&x.narrow(0, start, 50), &y.narrow(0, start, 50))
                .unwrap();
        }
        let r = sums.pearson().unwrap();
        // Direct: centred columns, normalised, multiplied.
        let unit = |t: &Tensor| {
            let t = t.to_kind(Kind::Double);
            let c = &t - t.mean_dim(0, true, Kind::Double);
            let norm = c.square().sum_dim_intlist(0, true, Kind::Double).sqrt();
            c / norm
        };
        let expected = unit(&x).transpose(0, 1).matmul(&unit(&y));
        let error = (&r - &expected).abs().max().double_value(&[]);
        assert!(
            error < 1e-6,
            "r differs from the direct computation by {error}"
        );
        assert!((r.double_value(&[0, 0]) - 1.0).abs() < 1e-6);
    }
}
