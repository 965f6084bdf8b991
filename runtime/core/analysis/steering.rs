//! Steering by SAE features, as *Scaling Monosemanticity* does: clamp
//! features to chosen values at every position while keeping the SAE's
//! error term,
//!
//!   x′ = x + Σᵢ (vᵢ − fᵢ(x)) · W_dec[i],
//!
//! so that only the clamped features change: with nothing clamped, or a
//! feature clamped to its own value, the model computes exactly what it did.
use crate::corpus::Corpus;
use crate::model::{Hooks, Logits, Model, Site, SpliceWindow};
use crate::sae::{ActivationSource, Sae};
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// Features and the values to hold them at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Clamp {
    pub features: Vec<i64>,
    pub values: Vec<f64>,
}

impl Clamp {
    /// An error unless every feature exists and every value is finite.
    pub fn check(&self, n_features: i64) -> Result<()> {
        if self.features.len() != self.values.len() {
            return Err(Error::invalid("a clamp needs one value per feature"));
        }
        if let Some(bad) = self.features.iter().find(|&&i| i < 0 || i >= n_features) {
            return Err(Error::invalid(format!(
                "feature {bad} is out of range: the SAE has {n_features} features (0..{n_features})"
            )));
        }
        if let Some(bad) = self.values.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("clamp value {bad} is not finite")));
        }
        Ok(())
    }
}

/// `x` [..., d_in] with the clamped features set to their values, the rest
/// of the SAE's reconstruction and its error untouched.
pub fn clamp_features(sae: &Sae, x: &Tensor, clamp: &Clamp) -> Result<Tensor> {
    if clamp.features.is_empty() {
        return Ok(x.shallow_clone());
    }
    clamp.check(sae.cfg.n_features)?;
    let _guard = tch::no_grad_guard();
    let shape = x.size();
    let flat = x.f_reshape([-1, sae.cfg.d_in])?;
    let device = sae.cfg.device;
    let features = Tensor::f_from_slice(&clamp.features)?.f_to(device)?;
    let values = Tensor::f_from_slice(&clamp.values)?
        .f_to_kind(Kind::Float)?
        .f_to(device)?;
    let current = sae.encode(&flat)?.f_index_select(1, &features)?; // [n, k]
    let change = values.f_unsqueeze(0)?.f_sub(&current)?; // [n, k]
    let directions = sae.weights.w_dec.inner().f_index_select(0, &features)?; // [k, d_in]
    let shift = change
        .f_matmul(&directions)?
        .f_reshape(shape.as_slice())?
        .f_to_kind(x.f_kind()?)?
        .f_to(x.device())?;
    Ok(x.f_add(&shift)?)
}

/// The activations at `site` over the first `tokens` text tokens of a
/// corpus (position 0 of each window and separators left out, as a harvest
/// does), [n, width].
pub fn site_activations(
    model: &Model,
    corpus: &Corpus,
    site: Site,
    tokens: usize,
) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let hooks = Hooks::reading(&[site]);
    let mut rows = Vec::new();
    let mut kept = 0;
    for window in corpus.windows(&model.tokenizer, 128)? {
        if kept >= tokens {
            break;
        }
        let window = window?;
        let mut out = model.run(std::slice::from_ref(&window.tokens), &hooks, Logits::Skip)?;
        let x = out
            .activations
            .pop()
            .ok_or_else(|| Error::invalid(format!("{site} was not read")))?
            .f_squeeze_dim(0)?;
        // The positions a harvest keeps (and CE loss recovered replaces).
        let keep = SpliceWindow::from_corpus(&window).kept_positions();
        kept += keep.len();
        rows.push(x.f_index_select(0, &Tensor::f_from_slice(&keep)?.f_to(x.device())?)?);
    }
    if rows.is_empty() {
        return Err(Error::invalid(
            "the corpus gave no text to measure features on",
        ));
    }
    Ok(Tensor::f_cat(&rows, 0)?)
}

/// Each feature's largest activation over up to `tokens` activations of
/// `source` (a store or a tensor), [n_features]: the scale of "10×" clamps.
pub fn max_activations(
    sae: &Sae,
    source: &mut dyn ActivationSource,
    tokens: usize,
) -> Result<Tensor> {
    if source.dim() != sae.cfg.d_in {
        return Err(Error::invalid(format!(
            "the activations have width {}, the SAE takes {}",
            source.dim(),
            sae.cfg.d_in
        )));
    }
    let _guard = tch::no_grad_guard();
    let limit = source
        .tokens_per_pass()
        .map_or(tokens, |n| tokens.min(n as usize));
    let mut maxima = Tensor::f_zeros([sae.cfg.n_features], (Kind::Float, sae.cfg.device))?;
    let mut seen = 0;
    while seen < limit {
        crate::interrupt::check()?;
        let n = (limit - seen).min(4096);
        let f = sae.encode(&source.next_batch(n as i64)?)?;
        maxima = maxima.f_maximum(&f.f_amax([0i64].as_slice(), false)?)?;
        seen += n;
    }
    Ok(maxima)
}

/// A feature's direct effect on the logits through the unembedding:
/// W_U · (γ ⊙ W_dec[i]) with γ the final norm's gain (the paper's "logit
/// effects", ignoring the norm's scaling by the residual's size).
#[derive(Debug, Clone, PartialEq)]
pub struct LogitEffects {
    /// The tokens whose logits rise most, with the effect.
    pub promoted: Vec<(u32, f64)>,
    /// The tokens whose logits fall most.
    pub suppressed: Vec<(u32, f64)>,
}

pub fn logit_effects(model: &Model, sae: &Sae, feature: i64, k: usize) -> Result<LogitEffects> {
    Clamp {
        features: vec![feature],
        values: vec![0.0],
    }
    .check(sae.cfg.n_features)?;
    super::check_width(model, sae)?;
    let _guard = tch::no_grad_guard();
    let device = model.llama.device();
    let direction = sae.weights.w_dec.inner().f_get(feature)?.f_to(device)?;
    let effects = model.llama.direct_logits(&direction)?; // [vocab]
    let top = |largest: bool| -> Result<Vec<(u32, f64)>> {
        let k = (k as i64).min(effects.size()[0]);
        let (values, ids) = effects.f_topk(k, 0, largest, true)?;
        let values = Vec::<f64>::try_from(values.f_to_kind(Kind::Double)?.f_to(tch::Device::Cpu)?)?;
        let ids = Vec::<i64>::try_from(ids.f_to(tch::Device::Cpu)?)?;
        Ok(ids.into_iter().map(|i| i as u32).zip(values).collect())
    };
    Ok(LogitEffects {
        promoted: top(true)?,
        suppressed: top(false)?,
    })
}
