//! The native training loop, with the recipe of the April 2024 update to
//! *Scaling Monosemanticity*: inputs scaled so E‖x‖² = d_in; Adam with
//! β = (0.9, 0.999) and no weight decay; λ warmed up linearly over the first
//! 5% of steps; the learning rate decayed linearly to 0 over the last 20%;
//! gradient norm clipped at 1; batches of 4096. Dead features are handled by
//! resampling (ReLU) or AuxK (TopK); metrics are logged every `log_every`
//! steps to the history and a CSV; checkpoints are written periodically
//! and a killed run resumes from the newest one exactly.
use super::adam::Adam;
use super::checkpoint::latest_checkpoint;
use super::init::{decoder_bias, DecoderBiasInit};
use super::metrics::StepMetrics;
use super::resample::resample_dead_features;
use super::{ActivationSource, LossOptions, Sae};
use crate::optim::clip_grads;
use crate::options::OptionMap;
use crate::{interrupt, progress, Error, ErrorKind, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;
use tch::Kind;

use super::config::write_csv;
pub use super::config::{DeadFeatureRemedy, HistoryRecord, TrainConfig, TrainReport};

/// Everything a checkpoint needs beyond tensors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LoopState {
    step: u64,
    tokens: u64,
    input_scale: f64,
    source_position: u64,
    tokens_at_last_resample: u64,
    resampled: u64,
    history: Vec<HistoryRecord>,
    /// Sums since the last history entry (loss, mse, penalty, aux) and their count.
    pending: [f64; 4],
    pending_steps: u64,
    architecture: String,
    d_in: i64,
    n_features: i64,
    total_steps: u64,
    batch_size: i64,
    /// The data order and resampling draws depend on it, so a resumed run must use it too.
    seed: u64,
    /// What the architecture learned that is not a weight (BatchTopK's
    /// threshold), as saelab.json writes it.
    #[serde(default)]
    architecture_settings: OptionMap,
    /// A transcoder's or crosscoder's scale of each site of a row; empty
    /// for an SAE, whose one scale is `input_scale`.
    #[serde(default)]
    site_scales: Vec<f64>,
}

impl LoopState {
    /// The factor of each site of a row.
    fn scales(&self) -> Vec<f64> {
        if self.site_scales.is_empty() {
            vec![self.input_scale]
        } else {
            self.site_scales.clone()
        }
    }
}

/// Trains `sae` on `source`; the SAE is left in raw units (the scale folded
/// back in) whether the run finishes, fails or is interrupted.
pub fn train(
    sae: &mut Sae,
    source: &mut dyn ActivationSource,
    cfg: TrainConfig,
) -> Result<TrainReport> {
    let steps = cfg.steps;
    let mut trainer = Trainer::start(sae, source, cfg)?;
    let result = trainer.run_until(steps);
    let finished = trainer.finish();
    result?;
    finished
}

/// One learning rate of a sweep: its report, or why the run failed (a
/// diverging rate is a result, not an error).
pub struct SweepPoint {
    pub lr: f64,
    pub report: Option<TrainReport>,
    pub error: Option<String>,
}

/// Short runs at each learning rate — the paper picked its rate this way.
/// `make` returns a fresh SAE and source for each run (seed inside it for a
/// fair comparison); checkpoints are never written.
pub fn lr_sweep(
    lrs: &[f64],
    cfg: &TrainConfig,
    mut make: impl FnMut() -> Result<(Sae, Box<dyn ActivationSource>)>,
) -> Result<Vec<SweepPoint>> {
    let mut points = Vec::new();
    for &lr in lrs {
        let (mut sae, mut source) = make()?;
        let run = TrainConfig {
            lr,
            checkpoint_dir: None,
            ..cfg.clone()
        };
        match train(&mut sae, source.as_mut(), run) {
            Ok(report) => points.push(SweepPoint {
                lr,
                report: Some(report),
                error: None,
            }),
            Err(err) if err.is_interrupted() => return Err(err),
            Err(err) => points.push(SweepPoint {
                lr,
                report: None,
                error: Some(err.to_string()),
            }),
        }
    }
    Ok(points)
}

/// A training run that can be advanced in pieces (tests stop one halfway
/// to check that resuming repeats it exactly).
pub struct Trainer<'a> {
    sae: &'a mut Sae,
    source: &'a mut dyn ActivationSource,
    cfg: TrainConfig,
    remedy: DeadFeatureRemedy,
    adam: Adam,
    /// Tokens since each feature last fired, [n_features] f64 on the SAE's device.
    since_fired: tch::Tensor,
    state: LoopState,
    resumed_from: Option<u64>,
    last_checkpoint: Option<PathBuf>,
    /// Whether the weights are currently in normalised units.
    scaled: bool,
    /// Each column's factor for rows of several sites, [row width].
    row_scale: Option<tch::Tensor>,
    started: Instant,
    window_started: (Instant, u64),
    bar: indicatif::ProgressBar,
}

impl<'a> Trainer<'a> {
    pub fn start(
        sae: &'a mut Sae,
        source: &'a mut dyn ActivationSource,
        cfg: TrainConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        sae.architecture().check_trainable()?;
        sae.check_rows(source)?;
        let arch = sae.architecture();
        let remedy = match cfg.dead_feature_remedy {
            Some(DeadFeatureRemedy::AuxK) if !arch.supports_auxk() => {
                return Err(Error::invalid(format!(
                    "AuxK needs a TopK SAE; use \"resample\" for a {} SAE",
                    sae.cfg.architecture.name()
                )))
            }
            Some(remedy) => remedy,
            None => arch.default_dead_feature_remedy(),
        };
        let named = sae
            .weights
            .named()
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        let adam = Adam::new(named, cfg.betas, cfg.eps)?;
        let since_fired =
            tch::Tensor::f_zeros([sae.cfg.n_features], (Kind::Double, sae.cfg.device))?;
        let bar = progress::bar(cfg.steps, "steps");
        if !cfg.show_progress {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let state = LoopState {
            architecture: sae.cfg.architecture.name().to_string(),
            d_in: sae.cfg.d_in,
            n_features: sae.cfg.n_features,
            total_steps: cfg.steps,
            batch_size: cfg.batch_size,
            seed: cfg.seed,
            input_scale: 1.0,
            ..Default::default()
        };
        let mut trainer = Trainer {
            sae,
            source,
            cfg,
            remedy,
            adam,
            since_fired,
            state,
            resumed_from: None,
            last_checkpoint: None,
            scaled: false,
            row_scale: None,
            started: Instant::now(),
            window_started: (Instant::now(), 0),
            bar,
        };
        let resumed = match (&trainer.cfg.checkpoint_dir, trainer.cfg.resume) {
            (Some(root), true) => latest_checkpoint(root)?,
            _ => None,
        };
        match resumed {
            Some(dir) => trainer.resume_from(&dir)?,
            None => trainer.initialise()?,
        }
        trainer.window_started = (Instant::now(), trainer.state.tokens);
        Ok(trainer)
    }

    /// Fresh start: measure the scale, move the weights to normalised units
    /// (a fresh SAE is initialised there already), initialise b_dec.
    fn initialise(&mut self) -> Result<()> {
        let sites = self.sae.cfg.layout.site_widths(self.sae.cfg.d_in).len();
        let scales = if self.cfg.normalize_inputs {
            self.source.site_scales()?
        } else {
            vec![1.0; sites]
        };
        self.state.input_scale = scales[0];
        if self.sae.cfg.layout != super::Layout::Autoencoder {
            self.state.site_scales = scales.clone();
        }
        self.set_row_scale()?;
        if !self.sae.fresh {
            let inverse: Vec<f64> = scales.iter().map(|s| 1.0 / s).collect();
            self.sae.fold_site_scales(&inverse)?;
        }
        self.scaled = true;
        if self.sae.fresh && self.cfg.b_dec_init != DecoderBiasInit::Zeros {
            let sample = self.next_scaled_batch(self.cfg.b_dec_init_tokens.max(1))?;
            if let Some(bias) = decoder_bias(self.cfg.b_dec_init, &sample)? {
                let _guard = tch::no_grad_guard();
                self.sae
                    .weights
                    .b_dec
                    .inner()
                    .shallow_clone()
                    .f_copy_(&bias)?;
            }
        }
        self.sae.fresh = false;
        Ok(())
    }

    /// The per-column factors of a row of several sites (each site by its own scale).
    fn set_row_scale(&mut self) -> Result<()> {
        self.row_scale = if self.state.site_scales.is_empty() {
            None
        } else {
            let widths = self.sae.cfg.layout.site_widths(self.sae.cfg.d_in);
            let factors = super::Layout::column_factors(&widths, &self.state.site_scales)?;
            Some(factors.f_to(self.sae.cfg.device)?)
        };
        Ok(())
    }

    fn next_scaled_batch(&mut self, n: i64) -> Result<tch::Tensor> {
        let x = self.source.next_batch(n)?.f_to(self.sae.cfg.device)?;
        match &self.row_scale {
            Some(factors) => Ok(x.f_mul(factors)?),
            None => Ok(x.f_mul_scalar(self.state.input_scale)?),
        }
    }

    /// Runs until `step` steps have been taken in total (or the schedule ends).
    pub fn run_until(&mut self, step: u64) -> Result<()> {
        let last = step.min(self.cfg.steps);
        let _tf32 = self.cfg.precision.matmul_guard();
        self.bar.set_position(self.state.step);
        while self.state.step < last {
            if let Err(stop) = interrupt::check() {
                // A run told to stop (Ctrl-C, a scheduler's warning signal)
                // keeps its progress: a resumed run continues from here.
                if self.state.step > 0 {
                    self.checkpoint()?;
                }
                return Err(stop);
            }
            self.step()?;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        let step = self.state.step;
        let x = self.next_scaled_batch(self.cfg.batch_size)?;
        let dead_mask = match self.remedy {
            DeadFeatureRemedy::AuxK => {
                Some(self.since_fired.f_ge(self.cfg.dead_window_tokens as f64)?)
            }
            _ => None,
        };
        let l1_scale = self.cfg.l1_scale(step);
        let opts = LossOptions {
            l1_scale: Some(l1_scale),
            dead_mask,
            precision: self.cfg.precision,
            training: true,
            ..Default::default()
        };
        let out = self.sae.forward(&x, &opts)?;
        let metrics = StepMetrics::of(&out, self.logs_after(step))?;
        if !metrics.loss.is_finite() {
            return Err(self.non_finite(step, metrics.loss));
        }
        // Gradients as fresh tensors rather than accumulated into .grad: no
        // zeroing pass and no read-modify-write of every gradient.
        let grads = tch::Tensor::f_run_backward(&[&out.loss], &self.adam.params(), false, false)?;
        clip_grads(&grads, self.cfg.max_grad_norm)?;
        self.adam.update(&grads, self.cfg.lr_at(step))?;
        if self.sae.architecture().unit_norm_decoder() {
            self.sae.project_decoder_to_unit_norm()?;
        }
        self.sae
            .cfg
            .architecture
            .get_mut()
            .observe_training_codes(&out.codes)?;
        self.track_firing(&out.codes.fired()?, x.size()[0])?;
        self.state.step += 1;
        self.state.tokens += x.size()[0] as u64;
        self.accumulate(&metrics);
        self.bar.set_position(self.state.step);
        if self.logs_after(step) {
            self.log(&metrics)?;
        }
        if self.resample_due() {
            self.resample()?;
        }
        let every = self.cfg.checkpoint_every;
        if self.cfg.checkpoint_dir.is_some()
            && ((every > 0 && self.state.step.is_multiple_of(every))
                || self.state.step == self.cfg.steps)
        {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn non_finite(&self, step: u64, loss: f64) -> Error {
        let kept = match &self.last_checkpoint {
            Some(dir) => format!("the last good checkpoint is {}", dir.display()),
            None => "no checkpoint was written yet".to_string(),
        };
        let message = format!(
            "the loss became {loss} at step {step}; training stopped before that step's update ({kept}). \
             Check the activations for NaN/Inf, or lower the learning rate"
        );
        ErrorKind::Diverged {
            step,
            loss,
            message,
        }
        .into()
    }

    fn track_firing(&mut self, fired: &tch::Tensor, batch: i64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let older = self.since_fired.f_add_scalar(batch as f64)?;
        self.since_fired = older.f_where_scalarother(&fired.f_logical_not()?, 0.0)?;
        Ok(())
    }

    fn dead_fraction(&self, window: u64) -> Result<f64> {
        let window = window.min(self.state.tokens).max(1) as f64;
        Ok(self
            .since_fired
            .f_ge(window)?
            .f_totype(Kind::Double)?
            .f_mean(None::<Kind>)?
            .f_double_value(&[])?)
    }

    fn accumulate(&mut self, m: &StepMetrics) {
        let values = [m.loss, m.mse, m.penalty, m.aux];
        for (sum, v) in self.state.pending.iter_mut().zip(values) {
            *sum += v;
        }
        self.state.pending_steps += 1;
    }

    /// Whether the step about to run ends with a history entry.
    fn logs_after(&self, step: u64) -> bool {
        (step + 1).is_multiple_of(self.cfg.log_every) || step + 1 == self.cfg.steps
    }

    fn log(&mut self, last: &StepMetrics) -> Result<()> {
        let n = self.state.pending_steps.max(1) as f64;
        let [loss, mse, penalty, aux] = self.state.pending.map(|s| s / n);
        let (l0, explained_variance) = (last.l0, last.explained_variance);
        let (since, tokens_then) = self.window_started;
        let tokens_per_sec =
            (self.state.tokens - tokens_then) as f64 / since.elapsed().as_secs_f64().max(1e-9);
        let step = self.state.step;
        let record = HistoryRecord {
            step,
            tokens: self.state.tokens,
            loss,
            mse,
            penalty,
            aux,
            l0,
            explained_variance,
            dead_fraction: self.dead_fraction(self.cfg.dead_window_tokens)?,
            lr: self.cfg.lr_at(step.saturating_sub(1)),
            l1_scale: self.cfg.l1_scale(step.saturating_sub(1)),
            tokens_per_sec,
        };
        self.state.history.push(record);
        self.state.pending = [0.0; 4];
        self.state.pending_steps = 0;
        self.window_started = (Instant::now(), self.state.tokens);
        self.bar.set_message(format!(
            "loss {loss:.4} L0 {l0:.1} {tokens_per_sec:.0} tok/s"
        ));
        for path in self.csv_paths() {
            write_csv(&path, &self.state.history)?;
        }
        Ok(())
    }

    fn csv_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.cfg.csv_path.iter().cloned().collect();
        if let Some(root) = &self.cfg.checkpoint_dir {
            paths.push(root.join("history.csv"));
        }
        paths
    }

    fn resample_period(&self) -> u64 {
        if self.cfg.resample_every > 0 {
            self.cfg.resample_every
        } else {
            (self.cfg.steps / 10).max(1)
        }
    }

    fn resample_due(&self) -> bool {
        let decay_starts = self.cfg.steps as f64 * (1.0 - self.cfg.lr_decay_fraction);
        self.remedy == DeadFeatureRemedy::Resample
            && self.state.step.is_multiple_of(self.resample_period())
            && (self.state.step as f64) < decay_starts
    }

    /// Features silent since the last resampling (or the dead window, if
    /// shorter) are re-pointed; the draw depends only on (seed, step).
    fn resample(&mut self) -> Result<()> {
        let since_last = self.state.tokens - self.state.tokens_at_last_resample;
        let window = self.cfg.dead_window_tokens.min(since_last).max(1) as f64;
        let dead = self.since_fired.f_ge(window)?;
        let candidates = self.next_scaled_batch(self.cfg.resample_tokens.max(1))?;
        let mut rng = StdRng::seed_from_u64(
            self.cfg.seed ^ self.state.step.wrapping_mul(0x2545_F491_4F6C_DD1D),
        );
        let count = resample_dead_features(self.sae, &mut self.adam, &dead, &candidates, &mut rng)?;
        // A resampled feature gets a fresh window to prove itself.
        let _guard = tch::no_grad_guard();
        self.since_fired = self
            .since_fired
            .f_where_scalarother(&dead.f_logical_not()?, 0.0)?;
        self.state.tokens_at_last_resample = self.state.tokens;
        self.state.resampled += count as u64;
        Ok(())
    }

    fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "steps": self.state.step,
            "tokens": self.state.tokens,
            "input_scale": self.state.input_scale,
            "site_scales": self.state.site_scales,
            "lr": self.cfg.lr,
            "batch_size": self.cfg.batch_size,
            "seed": self.cfg.seed,
            "last": self.state.history.last(),
        })
    }

    /// Folds the scale back into the weights and reports.
    pub fn finish(mut self) -> Result<TrainReport> {
        self.bar.finish_and_clear();
        if self.scaled {
            self.sae.fold_site_scales(&self.state.scales())?;
            self.scaled = false;
        }
        self.sae.training_summary = Some(self.summary());
        let seconds = self.started.elapsed().as_secs_f64();
        let run_tokens = self.state.tokens
            - self
                .resumed_from
                .map_or(0, |s| s * self.cfg.batch_size as u64);
        Ok(TrainReport {
            last: self.state.history.last().copied().unwrap_or_default(),
            history: self.state.history.clone(),
            steps: self.state.step,
            tokens: self.state.tokens,
            seconds,
            tokens_per_sec: run_tokens as f64 / seconds.max(1e-9),
            input_scale: self.state.input_scale,
            site_scales: self.state.site_scales.clone(),
            resampled: self.state.resampled,
            resumed_from: self.resumed_from,
            last_checkpoint: self.last_checkpoint.clone(),
            csv_path: self.csv_paths().into_iter().next(),
        })
    }
}

impl Drop for Trainer<'_> {
    /// A trainer dropped without `finish` (an early `?`) still returns the
    /// SAE to raw units.
    fn drop(&mut self) {
        if self.scaled {
            let _ = self.sae.fold_site_scales(&self.state.scales());
        }
    }
}

#[path = "trainer_checkpoint.rs"]
mod trainer_checkpoint;

#[cfg(test)]
#[path = "trainer_tests.rs"]
mod tests;
