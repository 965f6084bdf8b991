//! The model's next-token loss with one activation replaced — by an SAE's
//! reconstruction, by zeros, by anything — to measure how much of what the
//! model needs survives the replacement: CE loss recovered, and the KL
//! divergence of the replaced model's next-token distribution from the
//! clean one (which CE alone can hide: a replacement may shift probability
//! between wrong tokens without moving the loss).
//!
//! Only the positions a harvest stores are replaced: position 0 of a window
//! and document separators keep their clean values, since an SAE trained on
//! a store never saw them (SAELens likewise leaves BOS out).
use super::hooks::{Edit, Hooks, Site};
use super::language_model::Model;
use super::llama::Logits;
use crate::corpus::{Corpus, Window};
use crate::{interrupt, Error, Result};
use tch::{Kind, Tensor};

/// Token ids and which positions to replace.
#[derive(Debug, Clone, PartialEq)]
pub struct SpliceWindow {
    pub tokens: Vec<u32>,
    pub replace: Vec<bool>,
}

impl SpliceWindow {
    /// The positions marked for replacement: those a harvest keeps.
    pub fn kept_positions(&self) -> Vec<i64> {
        self.replace
            .iter()
            .enumerate()
            .filter(|(_, kept)| **kept)
            .map(|(j, _)| j as i64)
            .collect()
    }

    /// A corpus window: every text position but the first.
    pub fn from_corpus(window: &Window) -> Self {
        let replace = window
            .origins
            .iter()
            .enumerate()
            .map(|(j, origin)| j > 0 && !origin.separator)
            .collect();
        SpliceWindow {
            tokens: window.tokens.clone(),
            replace,
        }
    }

    /// Plain token ids: every position but the first.
    pub fn from_tokens(tokens: Vec<u32>) -> Self {
        let replace = (0..tokens.len()).map(|j| j > 0).collect();
        SpliceWindow { tokens, replace }
    }
}

/// Windows of `context` tokens from texts, each text starting a new window.
pub fn text_windows(model: &Model, texts: &[String], context: usize) -> Result<Vec<SpliceWindow>> {
    let mut windows = Vec::new();
    for text in texts {
        let ids = model.encode(text)?;
        for chunk in ids.chunks(context.max(2)).filter(|c| c.len() > 1) {
            windows.push(SpliceWindow::from_tokens(chunk.to_vec()));
        }
    }
    Ok(windows)
}

/// Corpus windows, in order, until they make at least `predictions`
/// next-token predictions (cut to exactly that by [`truncate_to_predictions`]).
pub fn corpus_windows(
    model: &Model,
    corpus: &Corpus,
    context: usize,
    predictions: usize,
) -> Result<Vec<SpliceWindow>> {
    let mut windows = Vec::new();
    let mut predicted = 0;
    for window in corpus.windows(&model.tokenizer, context)? {
        if predicted >= predictions {
            break;
        }
        let window = SpliceWindow::from_corpus(&window?);
        predicted += window.tokens.len().saturating_sub(1);
        windows.push(window);
    }
    Ok(windows)
}

/// The windows cut so that together they make `predictions` next-token
/// predictions (fewer if they run out).
pub fn truncate_to_predictions(
    windows: Vec<SpliceWindow>,
    predictions: usize,
) -> Vec<SpliceWindow> {
    let mut left = predictions;
    let mut kept = Vec::new();
    for mut window in windows {
        if left == 0 {
            break;
        }
        let n = (window.tokens.len().saturating_sub(1)).min(left);
        window.tokens.truncate(n + 1);
        window.replace.truncate(n + 1);
        left -= n;
        kept.push(window);
    }
    kept
}

/// A replacement for the activations `[batch, T, width]` at the site.
pub type Replacement<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;

/// Clean log-probabilities are kept between passes up to this many bytes
/// (4 · vocabulary bytes per prediction: 1024 predictions of SmolLM2 take
/// 200 MB); beyond it each replaced pass recomputes them.
const CLEAN_LOG_PROBS_BUDGET: usize = 1 << 30;

/// Whether a probe making `predictions` per pass keeps the clean pass's
/// log-probabilities for the replaced passes' KL.
pub(super) fn keeps_clean_log_probs(model: &Model, predictions: usize) -> bool {
    predictions * model.vocab_size() * 4 <= CLEAN_LOG_PROBS_BUDGET
}

/// The sums of one pass over a probe's batches: the next-token loss, the KL
/// from the clean model, and the predictions they cover.
#[derive(Default)]
pub(super) struct PassTotals {
    nll: f64,
    kl: f64,
    predicted: usize,
}

impl PassTotals {
    /// Adds one batch's log-probabilities `[predictions, vocab]`, and their
    /// KL from the clean model's when given (a replaced pass).
    pub(super) fn add(
        &mut self,
        log_probs: &Tensor,
        clean: Option<&Tensor>,
        sequences: &[Vec<u32>],
    ) -> Result<()> {
        if let Some(clean) = clean {
            self.kl += kl_divergence_sum(clean, log_probs)?;
        }
        self.nll += negative_log_likelihood_sum(log_probs, sequences)?;
        self.predicted += log_probs.size()[0] as usize;
        Ok(())
    }

    /// Both per prediction.
    pub(super) fn loss(&self) -> SpliceLoss {
        let per_prediction = self.predicted.max(1) as f64;
        SpliceLoss {
            cross_entropy: self.nll / per_prediction,
            kl_divergence: self.kl / per_prediction,
        }
    }
}

struct ProbeBatch {
    sequences: Vec<Vec<u32>>,
    /// `[batch, T, 1]`, true where the activation is replaced.
    mask: Tensor,
    /// The clean activation at the site, recorded by the clean pass.
    clean: Option<Tensor>,
    /// log p(· | prefix) of the clean model at each prediction, `[predictions, vocab]`.
    clean_log_probs: Option<Tensor>,
}

/// What one pass over the probe's windows measures, both per prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpliceLoss {
    /// Mean next-token cross-entropy, in nats.
    pub cross_entropy: f64,
    /// Mean KL(clean ‖ this pass) of the next-token distributions, in nats
    /// (0 for the clean pass); SAELens's `kl_div_with_sae`.
    pub kl_divergence: f64,
}

/// Mean next-token cross-entropy of a model over fixed windows, clean or
/// with the activation at `site` replaced. The clean pass records the
/// activations so replaced passes need not compute them again.
pub struct SpliceProbe<'a> {
    model: &'a Model,
    site: Site,
    batches: Vec<ProbeBatch>,
    /// Edits made in every pass, clean and replaced (an intervention whose
    /// CE loss is measured).
    hooks: Option<&'a Hooks<'a>>,
}

impl<'a> SpliceProbe<'a> {
    pub fn new(
        model: &'a Model,
        site: Site,
        windows: &[SpliceWindow],
        batch_size: usize,
    ) -> Result<Self> {
        site.check(model.n_layers())?;
        if windows.iter().all(|w| w.tokens.len() < 2) {
            return Err(Error::invalid(
                "CE loss needs at least one window of two or more tokens",
            ));
        }
        let batches = windows
            .chunks(batch_size.max(1))
            .map(probe_batch)
            .collect::<Result<Vec<_>>>()?;
        Ok(SpliceProbe {
            model,
            site,
            batches,
            hooks: None,
        })
    }

    /// Makes `hooks`' edits in every pass (their reads are ignored).
    pub fn with_hooks(mut self, hooks: &'a Hooks<'a>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Next-token predictions made per pass.
    pub fn tokens(&self) -> usize {
        self.batches
            .iter()
            .flat_map(|b| &b.sequences)
            .map(|s| s.len().saturating_sub(1))
            .sum()
    }

    /// Mean cross-entropy in nats, with the marked positions of the site's
    /// activation replaced by `replace(activation)` when given.
    pub fn cross_entropy(&mut self, replace: Option<Replacement>) -> Result<f64> {
        Ok(self.measure(replace)?.cross_entropy)
    }

    /// Mean cross-entropy and KL divergence from the clean model, with the
    /// marked positions of the site's activation replaced by
    /// `replace(activation)` when given (the clean pass when not).
    pub fn measure(&mut self, replace: Option<Replacement>) -> Result<SpliceLoss> {
        let (model, site, base) = (self.model, self.site, self.hooks);
        let keep_clean = keeps_clean_log_probs(model, self.tokens());
        let mut totals = PassTotals::default();
        for batch in &mut self.batches {
            interrupt::check()?;
            match replace {
                None => {
                    let hooks = pass_hooks(base, &[site], None);
                    let out = model.run(&batch.sequences, &hooks, Logits::All)?;
                    batch.clean = out.activations.into_iter().next();
                    let log_probs = predicted_log_probs(out.logits, &batch.sequences)?;
                    totals.add(&log_probs, None, &batch.sequences)?;
                    if keep_clean {
                        batch.clean_log_probs = Some(log_probs);
                    }
                }
                Some(replace) => {
                    let clean = clean_activation(model, site, batch, base)?;
                    let edited = replace(&clean)?.f_where_self(&batch.mask, &clean)?;
                    let hooks = pass_hooks(base, &[], Some((site, Edit::Replace(edited))));
                    let logits = model.run(&batch.sequences, &hooks, Logits::All)?.logits;
                    let log_probs = predicted_log_probs(logits, &batch.sequences)?;
                    let clean = clean_log_probs(model, batch, base)?;
                    totals.add(&log_probs, Some(&clean), &batch.sequences)?;
                }
            }
        }
        Ok(totals.loss())
    }
}

fn probe_batch(windows: &[SpliceWindow]) -> Result<ProbeBatch> {
    Ok(ProbeBatch {
        sequences: windows.iter().map(|w| w.tokens.clone()).collect(),
        mask: probe_mask(windows)?,
        clean: None,
        clean_log_probs: None,
    })
}

/// `[batch, T, 1]`, true at the positions of `windows` to replace.
pub(super) fn probe_mask(windows: &[SpliceWindow]) -> Result<Tensor> {
    let t = windows.iter().map(|w| w.tokens.len()).max().unwrap_or(0);
    let mut mask = vec![false; windows.len() * t];
    for (b, w) in windows.iter().enumerate() {
        for (j, &replace) in w.replace.iter().enumerate().take(w.tokens.len()) {
            mask[b * t + j] = replace;
        }
    }
    Ok(Tensor::f_from_slice(&mask)?.f_reshape([windows.len() as i64, t as i64, 1])?)
}

/// One pass's hooks: the probe's edits (borrowed), then `read` and `last`.
fn pass_hooks<'h>(
    base: Option<&'h Hooks<'h>>,
    read: &[Site],
    last: Option<(Site, Edit<'h>)>,
) -> Hooks<'h> {
    let mut hooks = Hooks::reading(read);
    for (site, edit) in base.map_or(&[][..], |h| h.edits.as_slice()) {
        let site = *site;
        hooks = hooks.edit(site, Edit::Map(Box::new(move |x| edit.apply(x, site))));
    }
    if let Some((site, edit)) = last {
        hooks = hooks.edit(site, edit);
    }
    hooks
}

fn clean_activation(
    model: &Model,
    site: Site,
    batch: &mut ProbeBatch,
    base: Option<&Hooks>,
) -> Result<Tensor> {
    if batch.clean.is_none() {
        let out = model.run(
            &batch.sequences,
            &pass_hooks(base, &[site], None),
            Logits::Skip,
        )?;
        batch.clean = out.activations.into_iter().next();
    }
    let clean = batch
        .clean
        .as_ref()
        .ok_or_else(|| Error::invalid(format!("{site} was not read")))?;
    let mask = batch.mask.f_to(clean.device())?;
    batch.mask = mask;
    Ok(clean.shallow_clone())
}

/// The clean model's log-probabilities for a batch: kept from the clean
/// pass, or recomputed when they were too large to keep.
fn clean_log_probs(model: &Model, batch: &ProbeBatch, base: Option<&Hooks>) -> Result<Tensor> {
    if let Some(kept) = &batch.clean_log_probs {
        return Ok(kept.shallow_clone());
    }
    let out = model.run(&batch.sequences, &pass_hooks(base, &[], None), Logits::All)?;
    predicted_log_probs(out.logits, &batch.sequences)
}

/// log p(· | prefix) at every position that predicts a real next token,
/// the sequences' rows one after another: `[predictions, vocab]`, f32.
pub(super) fn predicted_log_probs(
    logits: Option<Tensor>,
    sequences: &[Vec<u32>],
) -> Result<Tensor> {
    let logits = logits.ok_or_else(|| Error::invalid("the model returned no logits"))?;
    let mut rows = Vec::with_capacity(sequences.len());
    for (b, tokens) in sequences.iter().enumerate() {
        let n = tokens.len().saturating_sub(1) as i64;
        if n > 0 {
            rows.push(logits.f_get(b as i64)?.f_narrow(0, 0, n)?);
        }
    }
    Ok(Tensor::f_cat(&rows, 0)?.f_log_softmax(-1, Kind::Float)?)
}

/// Σ −log p(next token) over the predictions of [`predicted_log_probs`].
fn negative_log_likelihood_sum(log_probs: &Tensor, sequences: &[Vec<u32>]) -> Result<f64> {
    let targets: Vec<i64> = sequences
        .iter()
        .flat_map(|tokens| tokens.iter().skip(1).map(|&id| id as i64))
        .collect();
    let targets = Tensor::f_from_slice(&targets)?
        .f_to(log_probs.device())?
        .f_unsqueeze(1)?;
    Ok(-log_probs
        .f_gather(1, &targets, false)?
        .f_sum(Kind::Double)?
        .f_double_value(&[])?)
}

/// Σ over predictions of KL(P ‖ Q) = Σ_v p(v)·(log p(v) − log q(v)), from
/// log-probabilities `[predictions, vocab]`.
fn kl_divergence_sum(log_p: &Tensor, log_q: &Tensor) -> Result<f64> {
    let log_p = log_p.f_to(log_q.device())?;
    Ok(log_p
        .f_exp()?
        .f_mul(&log_p.f_sub(log_q)?)?
        .f_sum(Kind::Double)?
        .f_double_value(&[])?)
}
