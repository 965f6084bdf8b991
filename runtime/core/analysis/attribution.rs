//! Explaining one output by SAE features, as in *Scaling Monosemanticity*'s
//! "Features as computational intermediates": each feature's attribution
//! (its activation times the gradient of the target logit with respect to
//! it, the SAE's error held fixed) and, for the strongest, its ablation
//! effect (the change of that logit when the feature is set to zero at its
//! position, from a rerun).
//!
//! Cost: one forward pass (the SAE encodes its site on the way) and one
//! backward pass, and one more forward pass per ablation. Position 0 (the
//! attention sink, which harvests and so our SAEs never see) is left as it
//! is and explained by nothing; the error term holds the rest.
use crate::model::{Edit, Hooks, Logits, Model, Site};
use crate::sae::Sae;
use crate::{Error, Result};
use std::cell::RefCell;
use tch::{Kind, Tensor};

/// The first position explained by features (see `attribute`).
const FIRST_POSITION: i64 = 1;

/// What to explain, and how many ablation reruns to spend.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionOptions {
    /// Where the SAE reads and writes the model.
    pub site: Site,
    /// The token whose logit at the last position is explained.
    pub target: u32,
    /// When set, the logit difference target − baseline is explained instead.
    pub baseline: Option<u32>,
    /// Features (by |attribution|) whose ablation effect is measured by a rerun.
    pub ablate_top: usize,
}

/// One feature at one position.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureAttribution {
    pub position: usize,
    pub feature: i64,
    pub activation: f64,
    /// activation × ∂(logit)/∂(activation), the error term held fixed.
    pub attribution: f64,
    /// logit with the feature zeroed at this position − logit; measured for
    /// the `ablate_top` strongest attributions only.
    pub ablation: Option<f64>,
}

/// The explained value and its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// The target logit (or logit difference) at the last position.
    pub value: f64,
    /// The SAE error's share: error · ∂value/∂error, summed.
    pub error_attribution: f64,
    /// b_dec's share: b_dec · ∂value/∂x, summed over positions.
    pub bias_attribution: f64,
    /// Every active feature at every position, strongest |attribution| first.
    pub features: Vec<FeatureAttribution>,
}

pub fn attribute(
    model: &Model,
    sae: &Sae,
    tokens: &[u32],
    options: &AttributionOptions,
) -> Result<Attribution> {
    check(model, sae, tokens, options)?;
    let site = options.site;
    let sequence = [tokens.to_vec()];
    let device = model.llama.device();
    let w_dec = sae.weights.w_dec.inner().f_detach()?.f_to(device)?;
    let b_dec = sae.weights.b_dec.inner().f_detach()?.f_to(device)?;
    // Position 0 is left as it is: it carries the attention sink's huge
    // activation, which harvests leave out, so no SAE of ours has seen one.
    let first = FIRST_POSITION.min(tokens.len() as i64 - 1);
    // The SAE's codes and error, made leaves inside the one forward pass.
    let leaves: RefCell<Option<(Tensor, Tensor)>> = RefCell::new(None);
    let splice = |x: &Tensor| -> Result<Tensor> {
        let x = x.f_squeeze_dim(0)?; // [T, d]
        let positions = x.size()[0] - first;
        let (sink, rest) = (x.f_narrow(0, 0, first)?, x.f_narrow(0, first, positions)?);
        let f = {
            let _guard = tch::no_grad_guard();
            sae.encode(&rest)?.f_to(device)?
        };
        // x = f·W_dec + b_dec + error, with f and the error as leaves to differentiate.
        let features = f.f_set_requires_grad(true)?;
        let reconstruction = features.f_matmul(&w_dec)?.f_add(&b_dec)?;
        let error = rest
            .f_sub(&reconstruction.f_detach()?)?
            .f_detach()?
            .f_set_requires_grad(true)?;
        let spliced = Tensor::f_cat(&[&sink, &reconstruction.f_add(&error)?], 0)?;
        *leaves.borrow_mut() = Some((features, error));
        Ok(spliced.f_unsqueeze(0)?)
    };
    let hooks = Hooks::default().edit(site, Edit::Map(Box::new(splice)));
    let value = explained_value(model, &sequence, &hooks, options)?;
    let (features, error) = leaves
        .take()
        .ok_or_else(|| Error::invalid(format!("{site} was not reached")))?;
    let f = features.f_detach()?;
    let grads = Tensor::f_run_backward(&[&value], &[&features, &error], false, false)?;
    let value = value.f_double_value(&[])?;
    let attributions = features.f_detach()?.f_mul(&grads[0])?; // [T, F]
    let error_attribution = error.f_detach()?.f_mul(&grads[1])?.f_sum(Kind::Double)?;
    // ∂value/∂x equals ∂value/∂error: the same sum feeds both.
    let bias_attribution = grads[1].f_mul(&b_dec)?.f_sum(Kind::Double)?;
    let mut rows = active_rows(&f, &attributions, first as usize)?;
    rows.sort_by(|a, b| b.attribution.abs().total_cmp(&a.attribution.abs()));
    for row in rows.iter_mut().take(options.ablate_top) {
        row.ablation = Some(ablation(model, &sequence, &w_dec, row, options, value)?);
    }
    Ok(Attribution {
        value,
        error_attribution: error_attribution.f_double_value(&[])?,
        bias_attribution: bias_attribution.f_double_value(&[])?,
        features: rows,
    })
}

fn check(model: &Model, sae: &Sae, tokens: &[u32], options: &AttributionOptions) -> Result<()> {
    options.site.check(model.n_layers())?;
    if tokens.is_empty() {
        return Err(Error::invalid(
            "attribution needs a prompt of at least one token",
        ));
    }
    let width = model.site_width(options.site);
    if sae.cfg.d_in != width as i64 {
        return Err(Error::invalid(format!(
            "the SAE reads width {}, but {} has width {width}",
            sae.cfg.d_in, options.site
        )));
    }
    let vocab = model.llama.config.vocab_size as u32;
    if let Some(bad) = [Some(options.target), options.baseline]
        .into_iter()
        .flatten()
        .find(|&id| id >= vocab)
    {
        return Err(Error::invalid(format!(
            "token id {bad} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// The target logit (minus the baseline's) at the last position, as a
/// differentiable scalar.
fn explained_value(
    model: &Model,
    sequence: &[Vec<u32>],
    hooks: &Hooks,
    options: &AttributionOptions,
) -> Result<Tensor> {
    let out = model.run(sequence, hooks, Logits::Last)?;
    let logits = out
        .logits
        .ok_or_else(|| Error::invalid("the model returned no logits"))?
        .f_reshape([-1])?;
    let target = logits.f_get(options.target as i64)?;
    Ok(match options.baseline {
        Some(baseline) => target.f_sub(&logits.f_get(baseline as i64)?)?,
        None => target,
    })
}

/// Every (position, feature) with a non-zero activation; `f` starts at `first`.
fn active_rows(f: &Tensor, attributions: &Tensor, first: usize) -> Result<Vec<FeatureAttribution>> {
    let active = f.f_gt(0.0)?.f_nonzero()?.f_to(tch::Device::Cpu)?; // [n, 2]
    let n = active.size()[0];
    let pairs = Vec::<i64>::try_from(active.f_reshape([-1])?)?;
    let index = |t: &Tensor| -> Result<Vec<f64>> {
        let flat = t
            .f_detach()?
            .f_to_kind(Kind::Double)?
            .f_to(tch::Device::Cpu)?;
        let picked = flat.f_index(&[
            Some(Tensor::f_from_slice(
                &pairs.iter().step_by(2).copied().collect::<Vec<_>>(),
            )?),
            Some(Tensor::f_from_slice(
                &pairs.iter().skip(1).step_by(2).copied().collect::<Vec<_>>(),
            )?),
        ])?;
        Ok(Vec::<f64>::try_from(picked)?)
    };
    let (activations, attributions) = if n == 0 {
        (Vec::new(), Vec::new())
    } else {
        (index(f)?, index(attributions)?)
    };
    Ok(pairs
        .chunks(2)
        .zip(activations.into_iter().zip(attributions))
        .map(|(pair, (activation, attribution))| FeatureAttribution {
            position: first + pair[0] as usize,
            feature: pair[1],
            activation,
            attribution,
            ablation: None,
        })
        .collect())
}

/// The change of the explained value when one feature is zeroed at its
/// position: x − f·W_dec[i] there, everything else (the error too) as it was.
fn ablation(
    model: &Model,
    sequence: &[Vec<u32>],
    w_dec: &Tensor,
    row: &FeatureAttribution,
    options: &AttributionOptions,
    value: f64,
) -> Result<f64> {
    crate::interrupt::check()?;
    let _guard = tch::no_grad_guard();
    let positions = sequence[0].len() as i64;
    let direction = w_dec.f_get(row.feature)?.f_mul_scalar(-row.activation)?;
    let delta = Tensor::f_zeros(
        [1, positions, w_dec.size()[1]],
        (Kind::Float, w_dec.device()),
    )?;
    delta
        .f_get(0)?
        .f_get(row.position as i64)?
        .f_copy_(&direction)?;
    let hooks = Hooks::default().edit(options.site, Edit::Add(delta));
    Ok(explained_value(model, sequence, &hooks, options)?.f_double_value(&[])? - value)
}
