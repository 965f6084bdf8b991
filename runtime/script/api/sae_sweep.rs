//! `sweep(grid, cfg)`: the scaling-law sweep done natively. Each grid point
//! trains a fresh SAE on an activation store or tensor, evaluates it (on
//! held-out activations when given), counts its training compute, and
//! appends one CSV row as soon as it finishes, so a killed sweep resumes.
use super::sae::{sae_config, source_from, train_config};
use crate::core::rng;
use crate::core::sae::metrics::{self, Evaluation};
use crate::core::sae::trainer::TrainConfig;
use crate::core::sae::trainer::{self, TrainReport};
use crate::core::sae::Sae;
use crate::core::sae::SaeConfig;
use crate::core::scaling;
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::{Array, Dynamic, Map};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `sweep(grid, cfg)`: every grid point's run, resuming from `cfg.csv`.
pub fn sweep(grid: &Dynamic, cfg: &Map) -> ScriptResult<Array> {
    let spec = SweepSpec::parse(cfg)?;
    let points = crate::script::sweep::points_of(grid)?
        .iter()
        .map(|p| spec.identify(p))
        .collect();
    crate::script::sweep::run_sweep(points, spec.csv.as_deref(), |point| spec.run(point))
}

/// Options of the sweep itself; every other key is an SAE or training option
/// shared by all runs, which a grid key of the same name overrides.
const SWEEP_KEYS: &[&str] = &["source", "held_out", "eval_tokens", "csv", "save_dir"];

/// Training options that do not change a run's result, so they are left out
/// of the settings a finished run is recognised by.
const BOOKKEEPING_KEYS: &[&str] = &[
    "progress",
    "log_every",
    "checkpoint_dir",
    "checkpoint_every",
    "keep_checkpoints",
    "resume",
];

/// What every run of a sweep shares.
struct SweepSpec {
    source: Dynamic,
    held_out: Option<Dynamic>,
    eval_tokens: u64,
    csv: Option<String>,
    save_dir: Option<PathBuf>,
    /// SAE and training options common to every run.
    shared: Map,
    d_in: i64,
}

impl SweepSpec {
    fn parse(cfg: &Map) -> ScriptResult<SweepSpec> {
        let source = cfg.get("source").cloned().ok_or_else(|| {
            runtime_error("sweep: give the activations, e.g. #{source: store, csv: \"runs.csv\"}")
        })?;
        let d_in = source_from(&source, 0, false)?.dim();
        let sweep_only: Map = cfg
            .iter()
            .filter(|(k, _)| SWEEP_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let o = Options::new(&sweep_only, "sweep", SWEEP_KEYS)?;
        let eval_tokens = o.non_negative("eval_tokens", 0)?;
        let shared = cfg
            .iter()
            .filter(|(k, _)| !SWEEP_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(SweepSpec {
            held_out: cfg.get("held_out").cloned(),
            eval_tokens,
            csv: o.string("csv")?,
            save_dir: o.string("save_dir")?.map(PathBuf::from),
            shared,
            d_in,
            source,
        })
    }

    /// The point with the shared settings that shape its result (kind, k, lr,
    /// seed, ...) added, so they land in the CSV and a re-run with other
    /// settings is not mistaken for a finished one.
    fn identify(&self, point: &Map) -> Map {
        let mut full: Map = self
            .shared
            .iter()
            .filter(|(k, v)| !BOOKKEEPING_KEYS.contains(&k.as_str()) && is_scalar(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        full.extend(point.clone());
        full
    }

    /// Trains, evaluates and measures the run at `point`.
    fn run(&self, point: &Map) -> ScriptResult<Map> {
        let name = run_name(point);
        let (sae_opts, train_opts) = self.options_for(point, &name)?;
        let train_cfg = train_config(&train_opts, "sweep", &[])?;
        rng::seed(train_cfg.seed);
        let mut sae = Sae::new(sae_config(&sae_opts)?)?;
        let mut source = source_from(&self.source, train_cfg.seed, true)?;
        let started = Instant::now();
        let report = trainer::train(&mut sae, source.as_mut(), train_cfg)?;
        let seconds = started.elapsed().as_secs_f64();

        let held_out = self.held_out.as_ref().unwrap_or(&self.source);
        let mut eval_source = source_from(held_out, 0, false)?;
        let evaluation = metrics::evaluate(&sae, eval_source.as_mut(), self.eval_tokens, 4096)?;
        let compute = scaling::training_flops(
            self.d_in as usize,
            sae.cfg.n_features as usize,
            report.tokens as f64,
            &sae.cfg.architecture,
        )
        .map_err(|e| runtime_error(format!("sweep: {e}")))?;
        if let Some(dir) = &self.save_dir {
            crate::core::sae::checkpoint::save(&sae, &dir.join(&name), 1.0, None)?;
        }
        crate::script::console::print_line(&format!(
            "sweep: {name}: loss {:.4}, L0 {:.1}, explained variance {:.3} ({seconds:.0} s)",
            evaluation.loss, evaluation.l0, evaluation.explained_variance
        ));

        Ok(result_row(&sae, &report, &evaluation, compute, seconds))
    }

    /// The shared options with the point's on top, split into the SAE's and
    /// the trainer's. A checkpoint folder gets one subfolder per run.
    fn options_for(&self, point: &Map, name: &str) -> ScriptResult<(Map, Map)> {
        let mut merged = self.shared.clone();
        merged.extend(point.clone());
        merged
            .entry("d_in".into())
            .or_insert_with(|| Dynamic::from(self.d_in));
        let (mut sae_opts, mut train_opts) = (Map::new(), Map::new());
        let sae_keys = SaeConfig::option_keys();
        let train_keys = TrainConfig::option_keys();
        for (key, value) in merged {
            if sae_keys.contains(&key.as_str()) {
                sae_opts.insert(key, value);
            } else if train_keys.contains(&key.as_str()) {
                train_opts.insert(key, value);
            } else {
                return Err(runtime_error(format!(
                    "sweep: unknown option or grid key '{key}' (sweep options: {}; SAE options: {}; training options: {})",
                    SWEEP_KEYS.join(", "),
                    sae_keys.join(", "),
                    train_keys.join(", ")
                )));
            }
        }
        if let Some(dir) = train_opts.get("checkpoint_dir").map(|d| d.to_string()) {
            let per_run = Path::new(&dir).join(name).display().to_string();
            train_opts.insert("checkpoint_dir".into(), per_run.into());
        }
        Ok((sae_opts, train_opts))
    }
}

fn is_scalar(value: &Dynamic) -> bool {
    value.is_int() || value.is_float() || value.is_bool() || value.is_string()
}

/// What a sweep records of one finished run.
fn result_row(
    sae: &Sae,
    report: &TrainReport,
    evaluation: &Evaluation,
    compute: f64,
    seconds: f64,
) -> Map {
    let mut row = Map::new();
    row.insert("kind".into(), sae.cfg.architecture.name().into());
    row.insert("n_features".into(), Dynamic::from(sae.cfg.n_features));
    row.insert("steps".into(), Dynamic::from(report.steps as i64));
    row.insert("tokens".into(), Dynamic::from(report.tokens as i64));
    for (key, value) in [
        ("compute", compute),
        ("loss", evaluation.loss),
        ("mse", evaluation.mse),
        ("l0", evaluation.l0),
        ("explained_variance", evaluation.explained_variance),
        ("dead_fraction", evaluation.dead_fraction),
        ("train_loss", report.last.loss),
        ("seconds", seconds),
    ] {
        row.insert(key.into(), Dynamic::from(value));
    }
    row
}

/// A folder-safe name for a run from its settings: `lr=0.001_n_features=512_steps=100`.
fn run_name(point: &Map) -> String {
    point
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("_")
        .replace(['/', ' ', '\\'], "-")
}
