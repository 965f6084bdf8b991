//! How to train an SAE: every setting with its default and where the default
//! comes from, the λ warm-up and learning-rate schedules, and what a run
//! reports (one history entry every `log_every` steps).
use super::init::DecoderBiasInit;
use crate::precision::Precision;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What to do about features that stop firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadFeatureRemedy {
    /// Nothing (to measure how many die).
    None,
    /// Re-point dead features at badly reconstructed inputs (Towards Monosemanticity).
    Resample,
    /// Gao et al.'s auxiliary loss (TopK only).
    AuxK,
}

impl DeadFeatureRemedy {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(Self::None),
            "resample" => Ok(Self::Resample),
            "auxk" => Ok(Self::AuxK),
            other => Err(Error::invalid(format!(
                "unknown dead_features remedy '{other}' (use \"resample\", \"auxk\" or \"none\")"
            ))),
        }
    }
}

impl std::str::FromStr for DeadFeatureRemedy {
    type Err = crate::Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}

/// How to train. Every field has the paper's (or the named peer's) default.
/// Deserialised from the options a script gives `train` (`steps` or
/// `tokens`, `lr`, `l1_warmup`, `normalize`, `progress`, ...; see
/// [`super::options::TrainOptions`]), unknown keys refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "super::options::TrainOptions")]
pub struct TrainConfig {
    /// Optimiser steps in the whole run; the schedules are laid out over it.
    pub steps: u64,
    /// Activations per step (the paper: 4096).
    pub batch_size: i64,
    /// Peak learning rate. The April 2024 update used about 5e-5 at its
    /// scale and chose it by sweeping; small SAEs want more (see `lr_sweep`).
    pub lr: f64,
    /// Adam's β₁, β₂ (the paper: 0.9, 0.999; no weight decay).
    pub betas: (f64, f64),
    /// Adam's ε.
    pub eps: f64,
    /// Fraction of the steps over which λ rises linearly from 0 (the paper: 5%).
    pub l1_warmup_fraction: f64,
    /// Fraction of the steps, at the end, over which the learning rate falls
    /// linearly to 0 (the paper: 20%).
    pub lr_decay_fraction: f64,
    /// Largest global gradient norm (the paper: 1).
    pub max_grad_norm: f64,
    /// Scale inputs so that E‖x‖² = d_in (the paper). The factor is folded
    /// into the weights when the run ends.
    pub normalize_inputs: bool,
    /// How b_dec starts for a fresh SAE (the paper: zeros).
    pub b_dec_init: DecoderBiasInit,
    /// Activations sampled for the mean / geometric-median initialisation.
    pub b_dec_init_tokens: i64,
    /// Dead-feature remedy; `None` picks resampling for ReLU, AuxK for TopK,
    /// nothing for JumpReLU.
    pub dead_feature_remedy: Option<DeadFeatureRemedy>,
    /// A feature that has not fired for this many tokens is dead (the paper:
    /// 10⁷). Used by AuxK and by the logged dead fraction.
    pub dead_window_tokens: u64,
    /// Resampling period in steps (0: every tenth of the run). No resampling
    /// happens during the final learning-rate decay.
    pub resample_every: u64,
    /// Candidate inputs drawn for each resampling.
    pub resample_tokens: i64,
    /// Steps between history entries (and CSV rows).
    pub log_every: u64,
    /// Where to write the history as CSV (also `checkpoint_dir/history.csv`).
    pub csv_path: Option<PathBuf>,
    /// Folder for periodic checkpoints; `None` writes none.
    pub checkpoint_dir: Option<PathBuf>,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// Continue from the newest checkpoint in `checkpoint_dir`, if there is one.
    pub resume: bool,
    /// Seed of the data order and of resampling draws.
    pub seed: u64,
    /// Draw a progress bar (only shown on a terminal).
    pub show_progress: bool,
    /// Precision of the training steps (f32 master weights and Adam state
    /// in every case); see [`Precision`].
    pub precision: Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1000,
            batch_size: 4096,
            lr: 5e-5,
            betas: (0.9, 0.999),
            eps: 1e-8,
            l1_warmup_fraction: 0.05,
            lr_decay_fraction: 0.2,
            max_grad_norm: 1.0,
            normalize_inputs: true,
            b_dec_init: DecoderBiasInit::Zeros,
            b_dec_init_tokens: 4096,
            dead_feature_remedy: None,
            dead_window_tokens: 10_000_000,
            resample_every: 0,
            resample_tokens: 16384,
            log_every: 100,
            csv_path: None,
            checkpoint_dir: None,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            resume: true,
            seed: 0,
            show_progress: true,
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let fraction = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "{name} must be between 0 and 1, got {v}"
                )))
            }
        };
        fraction("l1_warmup", self.l1_warmup_fraction)?;
        fraction("lr_decay", self.lr_decay_fraction)?;
        if self.steps == 0 || self.batch_size < 1 || self.log_every == 0 {
            return Err(Error::invalid(
                "steps, batch_size and log_every must be >= 1",
            ));
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.lr) || !positive(self.max_grad_norm) {
            return Err(Error::invalid(format!(
                "lr and max_grad_norm must be > 0, got {} and {}",
                self.lr, self.max_grad_norm
            )));
        }
        Ok(())
    }

    /// λ's warm-up factor at `step` (0 → 1 over the first l1_warmup_fraction).
    pub fn l1_scale(&self, step: u64) -> f64 {
        let warmup = self.l1_warmup_fraction * self.steps as f64;
        if warmup < 1.0 {
            1.0
        } else {
            (step as f64 / warmup).min(1.0)
        }
    }

    /// The learning rate at `step`: constant, then linear decay to 0.
    pub fn lr_at(&self, step: u64) -> f64 {
        let decay = self.lr_decay_fraction * self.steps as f64;
        if decay < 1.0 {
            return self.lr;
        }
        self.lr * ((self.steps - step.min(self.steps)) as f64 / decay).min(1.0)
    }
}

/// One history entry: loss and its parts averaged over the steps since the
/// previous entry; L0 and explained variance measured on the entry's own
/// batch (counting active features every step would cost ~5% of a step).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct HistoryRecord {
    pub step: u64,
    pub tokens: u64,
    pub loss: f64,
    pub mse: f64,
    pub penalty: f64,
    pub aux: f64,
    pub l0: f64,
    pub explained_variance: f64,
    /// Features that did not fire in the last min(dead_window_tokens, tokens) tokens.
    pub dead_fraction: f64,
    pub lr: f64,
    pub l1_scale: f64,
    pub tokens_per_sec: f64,
}

pub const CSV_HEADER: &str = "step,tokens,loss,mse,penalty,aux,l0,explained_variance,dead_fraction,lr,l1_scale,tokens_per_sec";

impl HistoryRecord {
    pub fn csv_row(&self) -> String {
        let r = self;
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            r.step,
            r.tokens,
            r.loss,
            r.mse,
            r.penalty,
            r.aux,
            r.l0,
            r.explained_variance,
            r.dead_fraction,
            r.lr,
            r.l1_scale,
            r.tokens_per_sec
        )
    }
}

/// What `train` returns.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The last history entry: the final metrics.
    pub last: HistoryRecord,
    pub history: Vec<HistoryRecord>,
    pub steps: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub tokens_per_sec: f64,
    pub input_scale: f64,
    /// A transcoder's or crosscoder's scale of each site (empty for an SAE).
    pub site_scales: Vec<f64>,
    /// Features resampled over the run.
    pub resampled: u64,
    /// The step a resumed run started from.
    pub resumed_from: Option<u64>,
    pub last_checkpoint: Option<PathBuf>,
    pub csv_path: Option<PathBuf>,
}

/// Writes the history as CSV (atomically), one row per entry.
pub fn write_csv(path: &std::path::Path, history: &[HistoryRecord]) -> Result<()> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for record in history {
        text.push_str(&record.csv_row());
        text.push('\n');
    }
    crate::fs::write_atomic(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_warm_up_lambda_and_decay_the_learning_rate() {
        let cfg = TrainConfig {
            steps: 100,
            lr: 1.0,
            ..Default::default()
        };
        assert_eq!(cfg.l1_scale(0), 0.0);
        assert_eq!(cfg.l1_scale(2), 0.4);
        assert_eq!(cfg.l1_scale(5), 1.0);
        assert_eq!(cfg.lr_at(0), 1.0);
        assert_eq!(cfg.lr_at(80), 1.0);
        assert_eq!(cfg.lr_at(90), 0.5);
        assert_eq!(cfg.lr_at(100), 0.0);
    }
}
