//! The model's next-token loss and KL with activations at several sites
//! replaced by a function of the clean activations at several (maybe other)
//! sites: a transcoder reads `mlp_in` and replaces `mlp_out` (the MLP
//! replaced by the transcoder); a crosscoder reads the residual at several
//! layers and replaces all of them at once. [`super::SpliceProbe`] is the
//! one-site case; this shares its windows, masks and measures.
//!
//! Every replacement is computed from the clean pass's activations, so a
//! crosscoder's later layers see its reconstruction of the earlier ones
//! only through the model, as in Lindsey et al.'s "replace all layers"
//! evaluation. As there, positions a harvest does not store keep their
//! clean values.
use super::hooks::{Edit, Hooks, Site};
use super::language_model::Model;
use super::llama::Logits;
use super::splice::{
    keeps_clean_log_probs, predicted_log_probs, probe_mask, PassTotals, SpliceLoss, SpliceWindow,
};
use crate::{interrupt, Error, Result};
use tch::Tensor;

/// New activations for the written sites `[batch, T, width]` each, from the
/// clean activations at the read sites, both in the probe's order.
pub type SitesReplacement<'a> = &'a dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>;

struct SitesBatch {
    sequences: Vec<Vec<u32>>,
    /// `[batch, T, 1]`, true where activations are replaced.
    mask: Tensor,
    /// Clean activations at every site read or written, in `recorded` order.
    clean: Vec<Tensor>,
    clean_log_probs: Option<Tensor>,
}

/// Which sites a splice reads and writes.
struct SpliceSites {
    reads: Vec<Site>,
    writes: Vec<Site>,
    /// `reads`, then the written sites not read: the clean pass records all.
    recorded: Vec<Site>,
}

/// Mean next-token CE and KL from the clean model over fixed windows, clean
/// or with the written sites replaced.
pub struct SitesProbe<'a> {
    model: &'a Model,
    sites: SpliceSites,
    batches: Vec<SitesBatch>,
}

impl<'a> SitesProbe<'a> {
    pub fn new(
        model: &'a Model,
        reads: &[Site],
        writes: &[Site],
        windows: &[SpliceWindow],
        batch_size: usize,
    ) -> Result<Self> {
        for site in reads.iter().chain(writes) {
            site.check(model.n_layers())?;
        }
        if reads.is_empty() || writes.is_empty() {
            return Err(Error::invalid("a splice needs sites to read and to write"));
        }
        if windows.iter().all(|w| w.tokens.len() < 2) {
            return Err(Error::invalid(
                "CE loss needs at least one window of two or more tokens",
            ));
        }
        let mut recorded = reads.to_vec();
        recorded.extend(writes.iter().filter(|s| !reads.contains(s)));
        let batches = windows
            .chunks(batch_size.max(1))
            .map(|chunk| {
                Ok(SitesBatch {
                    sequences: chunk.iter().map(|w| w.tokens.clone()).collect(),
                    mask: probe_mask(chunk)?,
                    clean: Vec::new(),
                    clean_log_probs: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SitesProbe {
            model,
            sites: SpliceSites {
                reads: reads.to_vec(),
                writes: writes.to_vec(),
                recorded,
            },
            batches,
        })
    }

    /// Next-token predictions made per pass.
    pub fn tokens(&self) -> usize {
        self.batches
            .iter()
            .flat_map(|b| &b.sequences)
            .map(|s| s.len().saturating_sub(1))
            .sum()
    }

    /// Mean CE and KL(clean ‖ this pass); the clean pass when `replace` is
    /// `None` (it records the clean activations the replacements read).
    pub fn measure(&mut self, replace: Option<SitesReplacement>) -> Result<SpliceLoss> {
        let (model, sites) = (self.model, &self.sites);
        let keep_clean = keeps_clean_log_probs(model, self.tokens());
        let mut totals = PassTotals::default();
        for batch in &mut self.batches {
            interrupt::check()?;
            match replace {
                None => {
                    let out = model.run(
                        &batch.sequences,
                        &Hooks::reading(&sites.recorded),
                        Logits::All,
                    )?;
                    batch.clean = out.activations;
                    let log_probs = predicted_log_probs(out.logits, &batch.sequences)?;
                    totals.add(&log_probs, None, &batch.sequences)?;
                    if keep_clean {
                        batch.clean_log_probs = Some(log_probs);
                    }
                }
                Some(replace) => {
                    if batch.clean.is_empty() {
                        return Err(Error::invalid(
                            "the clean pass must run before a replaced one",
                        ));
                    }
                    let hooks = sites.replaced_hooks(batch, replace)?;
                    let logits = model.run(&batch.sequences, &hooks, Logits::All)?.logits;
                    let log_probs = predicted_log_probs(logits, &batch.sequences)?;
                    let clean = match &batch.clean_log_probs {
                        Some(kept) => kept.shallow_clone(),
                        None => {
                            let out =
                                model.run(&batch.sequences, &Hooks::default(), Logits::All)?;
                            predicted_log_probs(out.logits, &batch.sequences)?
                        }
                    };
                    totals.add(&log_probs, Some(&clean), &batch.sequences)?;
                }
            }
        }
        Ok(totals.loss())
    }
}

impl SpliceSites {
    /// The replaced pass's edits: each written site takes the replacement
    /// where the mask says, its clean value elsewhere.
    fn replaced_hooks(
        &self,
        batch: &SitesBatch,
        replace: SitesReplacement,
    ) -> Result<Hooks<'static>> {
        let clean_of = |site: &Site| -> Result<&Tensor> {
            let at = self.recorded.iter().position(|s| s == site);
            at.and_then(|i| batch.clean.get(i))
                .ok_or_else(|| Error::invalid(format!("{site} was not recorded")))
        };
        let reads = self
            .reads
            .iter()
            .map(|s| Ok(clean_of(s)?.shallow_clone()))
            .collect::<Result<Vec<_>>>()?;
        let replaced = replace(&reads)?;
        if replaced.len() != self.writes.len() {
            return Err(Error::invalid(format!(
                "the replacement gave {} activations for {} sites",
                replaced.len(),
                self.writes.len()
            )));
        }
        let mut hooks = Hooks::default();
        for (site, new) in self.writes.iter().zip(replaced) {
            let clean = clean_of(site)?;
            let mask = batch.mask.f_to(clean.device())?;
            let edited = new.f_to(clean.device())?.f_where_self(&mask, clean)?;
            hooks = hooks.edit(*site, Edit::Replace(edited));
        }
        Ok(hooks)
    }
}
