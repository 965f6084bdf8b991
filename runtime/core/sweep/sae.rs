//! The scaling-law sweep: each grid point trains a fresh SAE, evaluates it
//! (on held-out activations when given), counts its training compute, saves
//! it if asked, and becomes one CSV row as soon as it finishes, so a killed
//! sweep resumes.
use super::{run_sweep, Row, Scalar};
use crate::options::{field_names, from_options, OptionMap};
use crate::sae::metrics::{self, Evaluation};
use crate::sae::trainer::{self, TrainConfig, TrainReport};
use crate::sae::{checkpoint, ActivationSource, Sae, SaeConfig};
use crate::{rng, scaling, Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Activations for a run: opened with a seed and whether to shuffle (each
/// run trains on a freshly shuffled stream, evaluation reads in order).
pub type OpenSource<'a> = dyn Fn(u64, bool) -> Result<Box<dyn ActivationSource>> + 'a;

/// The sweep's own options, by their script names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepOptions {
    /// Activations evaluated per run (0: all of them).
    #[serde(default)]
    eval_tokens: u64,
    /// One row appended per finished run; a re-run skips them.
    csv: Option<PathBuf>,
    /// Each run's SAE saved in a subfolder named after its settings.
    save_dir: Option<PathBuf>,
    /// What a run whose loss stops being finite does to the sweep.
    #[serde(default)]
    on_divergence: OnDivergence,
}

/// What a sweep does with a run whose loss stops being finite.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDivergence {
    /// Stop the sweep with the trainer's error.
    #[default]
    Stop,
    /// Record the run (loss and mse infinite, `diverged` true, `diverged_at`
    /// its step) and go on: a learning-rate sweep's highest rates may diverge.
    Record,
}

/// What every run of a sweep shares. Deserialised from one option map:
/// the sweep's own keys (`eval_tokens`, `csv`, `save_dir`) and any
/// SAE or training option, shared by every run and overridden by a grid key
/// of the same name.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "OptionMap")]
pub struct SweepSpec {
    pub eval_tokens: u64,
    pub csv: Option<PathBuf>,
    pub save_dir: Option<PathBuf>,
    pub on_divergence: OnDivergence,
    /// SAE and training options common to every run.
    pub shared: OptionMap,
}

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

impl TryFrom<OptionMap> for SweepSpec {
    type Error = Error;

    fn try_from(options: OptionMap) -> Result<Self> {
        SweepSpec::from_options(&options)
    }
}

impl SweepSpec {
    /// The sweep's own keys; every other key is an SAE or training option.
    pub fn option_keys() -> &'static [&'static str] {
        field_names::<SweepOptions>()
    }

    /// The spec that `options` describe.
    pub fn from_options(options: &OptionMap) -> Result<SweepSpec> {
        let own_keys = Self::option_keys();
        let (mut own, mut shared) = (OptionMap::new(), OptionMap::new());
        for (key, value) in options {
            let target = if own_keys.contains(&key.as_str()) {
                &mut own
            } else {
                &mut shared
            };
            target.insert(key.clone(), value.clone());
        }
        let o: SweepOptions = from_options("sweep", &own)?;
        Ok(SweepSpec {
            eval_tokens: o.eval_tokens,
            csv: o.csv,
            save_dir: o.save_dir,
            on_divergence: o.on_divergence,
            shared,
        })
    }

    /// Every point's run, resuming from `csv`: trained on `source`,
    /// evaluated on `held_out` (or `source`), `report` told one line per run.
    pub fn run(
        &self,
        points: Vec<Row<Scalar>>,
        source: &OpenSource,
        held_out: Option<&OpenSource>,
        report: &mut dyn FnMut(&str),
    ) -> Result<Vec<Row<Scalar>>> {
        let d_in = source(0, false)?.dim();
        let points = points.iter().map(|p| self.identify(p)).collect();
        run_sweep(points, self.csv.as_deref(), |point| {
            self.run_one(point, d_in, source, held_out.unwrap_or(source), report)
        })
    }

    /// One point's run as a job's task runs it: checkpoints in
    /// `checkpoint_dir` (every 500 steps unless the sweep says otherwise, and
    /// when the task is told to stop), resumed from there when the task is
    /// requeued. The row is what [`SweepSpec::run`] would write for it.
    pub fn run_point(
        &self,
        point: &Row<Scalar>,
        source: &OpenSource,
        held_out: Option<&OpenSource>,
        checkpoint_dir: &Path,
        report: &mut dyn FnMut(&str),
    ) -> Result<Row<Scalar>> {
        let d_in = source(0, false)?.dim();
        let identified = self.identify(point);
        let mut task = self.clone();
        let dir = checkpoint_dir.display().to_string();
        task.shared.insert("checkpoint_dir".into(), dir.into());
        task.shared.insert("resume".into(), true.into());
        task.shared
            .entry("checkpoint_every")
            .or_insert_with(|| 500.into());
        let run_dir = checkpoint_dir.join(run_name(&identified));
        if let Some(latest) = checkpoint::latest_checkpoint(&run_dir)? {
            report(&format!("sweep: resuming from {}", latest.display()));
        }
        let mut row = identified.clone();
        row.extend(task.run_one(
            &identified,
            d_in,
            source,
            held_out.unwrap_or(source),
            report,
        )?);
        Ok(row)
    }

    /// The point with the shared settings that shape its result (kind, k, lr,
    /// seed, ...) added, so they land in the CSV and a re-run with other
    /// settings is not mistaken for a finished one.
    pub fn identify(&self, point: &Row<Scalar>) -> Row<Scalar> {
        let mut full: Row<Scalar> = self
            .shared
            .iter()
            .filter(|(k, _)| !BOOKKEEPING_KEYS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.clone(), Scalar::from_json(v)?)))
            .collect();
        full.extend(point.clone());
        full
    }

    /// Trains, evaluates and measures the run at `point`.
    fn run_one(
        &self,
        point: &Row<Scalar>,
        d_in: i64,
        source: &OpenSource,
        held_out: &OpenSource,
        report: &mut dyn FnMut(&str),
    ) -> Result<Row<Scalar>> {
        let name = run_name(point);
        let (sae_opts, train_opts) = self.options_for(point, &name, d_in)?;
        let train_cfg = TrainConfig::from_options("sweep", &train_opts)?;
        rng::seed(train_cfg.seed);
        // Evaluated in the precision it was trained in.
        let precision = train_cfg.precision;
        let mut sae = Sae::new(SaeConfig::from_options(&sae_opts)?)?;
        let mut stream = source(train_cfg.seed, true)?;
        let started = Instant::now();
        let planned_steps = train_cfg.steps;
        let planned_tokens = planned_steps * train_cfg.batch_size.max(0) as u64;
        let trained = match trainer::train(&mut sae, stream.as_mut(), train_cfg) {
            Err(e) if self.on_divergence == OnDivergence::Record && e.diverged().is_some() => {
                report(&format!("sweep: {name}: diverged: {e}"));
                let seconds = started.elapsed().as_secs_f64();
                let epochs = epochs_of(stream.as_ref(), planned_tokens);
                let planned = (planned_steps, planned_tokens);
                return diverged_row(&sae, &e, planned, d_in, seconds, epochs);
            }
            other => other?,
        };
        let seconds = started.elapsed().as_secs_f64();
        let epochs = epochs_of(stream.as_ref(), trained.tokens);

        let mut eval_source = held_out(0, false)?;
        let evaluation = metrics::evaluate(
            &sae,
            eval_source.as_mut(),
            self.eval_tokens,
            4096,
            precision,
        )?;
        let compute = scaling::training_flops(
            d_in as usize,
            sae.cfg.n_features as usize,
            trained.tokens as f64,
            &sae.cfg.architecture,
        )
        .map_err(|e| Error::invalid(format!("sweep: {e}")))?;
        if let Some(dir) = &self.save_dir {
            checkpoint::save(&sae, &dir.join(&name), 1.0, None)?;
        }
        report(&format!(
            "sweep: {name}: loss {:.4}, L0 {:.1}, explained variance {:.3} ({seconds:.0} s)",
            evaluation.loss, evaluation.l0, evaluation.explained_variance
        ));
        Ok(result_row(
            &sae,
            &trained,
            &evaluation,
            compute,
            seconds,
            epochs,
        ))
    }

    /// The shared options with the point's on top, split into the SAE's and
    /// the trainer's. A checkpoint folder gets one subfolder per run.
    fn options_for(
        &self,
        point: &Row<Scalar>,
        name: &str,
        d_in: i64,
    ) -> Result<(OptionMap, OptionMap)> {
        let mut merged = self.shared.clone();
        merged.extend(point.iter().map(|(k, v)| (k.clone(), v.clone().into())));
        merged.entry("d_in").or_insert_with(|| d_in.into());
        let (sae_keys, train_keys) = (SaeConfig::option_keys(), TrainConfig::option_keys());
        let (mut sae_opts, mut train_opts) = (OptionMap::new(), OptionMap::new());
        for (key, value) in merged {
            if sae_keys.contains(&key.as_str()) {
                sae_opts.insert(key, value);
            } else if train_keys.contains(&key.as_str()) {
                train_opts.insert(key, value);
            } else {
                return Err(Error::invalid(format!(
                    "sweep: unknown option or grid key '{key}' (sweep options: source, held_out, {}; SAE options: {}; training options: {})",
                    Self::option_keys().join(", "),
                    sae_keys.join(", "),
                    train_keys.join(", ")
                )));
            }
        }
        if let Some(dir) = train_opts.get("checkpoint_dir").and_then(|d| d.as_str()) {
            let per_run = Path::new(dir).join(name).display().to_string();
            train_opts.insert("checkpoint_dir".into(), per_run.into());
        }
        Ok((sae_opts, train_opts))
    }
}

/// Passes over the training activations that `tokens` make: above 1, the
/// run saw rows again. None for a source of unknown length.
fn epochs_of(stream: &dyn ActivationSource, tokens: u64) -> Option<f64> {
    stream
        .tokens_per_pass()
        .filter(|&rows| rows > 0)
        .map(|rows| tokens as f64 / rows as f64)
}

/// What a sweep records of a run that diverged: its planned steps, tokens
/// and compute, an infinite loss and mse (so it never wins a comparison),
/// NaN for the metrics it never reached, the step it diverged at.
fn diverged_row(
    sae: &Sae,
    error: &Error,
    (planned_steps, planned_tokens): (u64, u64),
    d_in: i64,
    seconds: f64,
    epochs: Option<f64>,
) -> Result<Row<Scalar>> {
    let (step, loss) = error.diverged().unwrap_or((0, f64::NAN));
    let compute = scaling::training_flops(
        d_in as usize,
        sae.cfg.n_features as usize,
        planned_tokens as f64,
        &sae.cfg.architecture,
    )
    .map_err(|e| Error::invalid(format!("sweep: {e}")))?;
    let measured = [
        ("compute", compute),
        ("loss", f64::INFINITY),
        ("mse", f64::INFINITY),
        ("l0", f64::NAN),
        ("explained_variance", f64::NAN),
        ("dead_fraction", f64::NAN),
        ("train_loss", loss),
        ("seconds", seconds),
    ];
    let mut row = run_row(
        sae,
        (planned_steps, planned_tokens),
        &measured,
        epochs,
        true,
    );
    row.insert("diverged_at".into(), Scalar::Int(step as i64));
    Ok(row)
}

/// What a sweep records of one finished run.
fn result_row(
    sae: &Sae,
    report: &TrainReport,
    evaluation: &Evaluation,
    compute: f64,
    seconds: f64,
    epochs: Option<f64>,
) -> Row<Scalar> {
    let measured = [
        ("compute", compute),
        ("loss", evaluation.loss),
        ("mse", evaluation.mse),
        ("l0", evaluation.l0),
        ("explained_variance", evaluation.explained_variance),
        ("dead_fraction", evaluation.dead_fraction),
        ("train_loss", report.last.loss),
        ("seconds", seconds),
    ];
    run_row(sae, (report.steps, report.tokens), &measured, epochs, false)
}

/// One run's row: what was trained (kind, width, steps, tokens), what it
/// measured, the passes it made over its activations and whether it diverged.
fn run_row(
    sae: &Sae,
    (steps, tokens): (u64, u64),
    measured: &[(&str, f64)],
    epochs: Option<f64>,
    diverged: bool,
) -> Row<Scalar> {
    let mut row = Row::new();
    let kind = sae.cfg.architecture.name().to_string();
    row.insert("kind".into(), Scalar::Text(kind));
    row.insert("n_features".into(), Scalar::Int(sae.cfg.n_features));
    row.insert("steps".into(), Scalar::Int(steps as i64));
    row.insert("tokens".into(), Scalar::Int(tokens as i64));
    for &(key, value) in measured {
        row.insert(key.into(), Scalar::Float(value));
    }
    if let Some(epochs) = epochs {
        row.insert("epochs".into(), Scalar::Float(epochs));
    }
    row.insert("diverged".into(), Scalar::Bool(diverged));
    row
}

/// A folder-safe name for a run from its settings: `lr=0.001_n_features=512_steps=100`.
fn run_name(point: &Row<Scalar>) -> String {
    point
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("_")
        .replace(['/', ' ', '\\'], "-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::{synthetic, TensorSource};
    use crate::sweep::grid_points;
    use std::collections::BTreeMap;

    /// Opens `activations` as a sweep opens its source.
    fn toy_source(
        activations: &tch::Tensor,
    ) -> impl Fn(u64, bool) -> Result<Box<dyn ActivationSource>> + '_ {
        move |seed, shuffle| Ok(Box::new(TensorSource::new(activations, seed, shuffle)?))
    }

    #[test]
    fn a_rust_caller_runs_a_sweep_and_a_rerun_resumes_from_the_csv() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("runs.csv");
        let toy = synthetic::superposition(32, 8, 2.0, 512).unwrap();
        let spec: SweepSpec = serde_json::from_value(serde_json::json!({
            "csv": csv, "kind": "topk", "k": 2, "batch_size": 64, "lr": 1e-3, "progress": false
        }))
        .unwrap();
        let grid = BTreeMap::from([
            (
                "n_features".to_string(),
                vec![Scalar::Int(16), Scalar::Int(32)],
            ),
            ("steps".to_string(), vec![Scalar::Int(2)]),
        ]);
        let points = grid_points(&grid).unwrap();
        let open = toy_source(&toy.activations);
        let mut lines = 0;
        let rows = spec
            .run(points.clone(), &open, None, &mut |_| lines += 1)
            .unwrap();
        assert_eq!((rows.len(), lines), (2, 2));
        assert_eq!(rows[0]["kind"], Scalar::Text("topk".into()));
        assert_eq!(
            rows[0]["k"],
            Scalar::Int(2),
            "shared settings identify a run"
        );
        let again = spec.run(points, &open, None, &mut |_| lines += 1).unwrap();
        assert_eq!(lines, 2, "finished runs are read back, not retrained");
        assert_eq!(again[1]["loss"], rows[1]["loss"]);
        let err = SweepSpec::from_options(&OptionMap::from_iter([(
            "eval_tokens".to_string(),
            serde_json::json!(-1),
        )]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("sweep: option 'eval_tokens'"), "{err}");
    }

    #[test]
    fn a_diverged_run_is_recorded_when_asked_and_stops_the_sweep_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("runs.csv");
        let toy = synthetic::superposition(32, 8, 2.0, 512).unwrap();
        let open = toy_source(&toy.activations);
        // An Adam step of 1e30 overflows f32 at the first update.
        let points: Vec<Row<Scalar>> = [1e-3, 1e30]
            .into_iter()
            .map(|lr| Row::from([("lr".to_string(), Scalar::Float(lr))]))
            .collect();
        let spec = |on_divergence: &str| -> SweepSpec {
            serde_json::from_value(serde_json::json!({
                "csv": csv, "kind": "relu", "n_features": 16, "steps": 4, "batch_size": 64,
                "progress": false, "on_divergence": on_divergence
            }))
            .unwrap()
        };
        let err = spec("stop")
            .run(points.clone(), &open, None, &mut |_| {})
            .unwrap_err();
        assert!(err.diverged().is_some(), "{err}");
        assert!(err.to_string().contains("lower the learning rate"), "{err}");

        let rows = spec("record")
            .run(points, &open, None, &mut |_| {})
            .unwrap();
        assert_eq!(rows[0]["diverged"], Scalar::Bool(false));
        assert_eq!(rows[1]["diverged"], Scalar::Bool(true));
        assert_eq!(rows[1]["loss"], Scalar::Float(f64::INFINITY));
        assert_eq!(rows[1]["steps"], Scalar::Int(4));
        let Scalar::Int(at) = rows[1]["diverged_at"] else {
            panic!("{:?}", rows[1])
        };
        assert!(at < 4, "diverged at step {at}");
        let on_disk: Vec<Row<Scalar>> = crate::sweep::csv::read_rows(&csv).unwrap();
        assert_eq!(
            on_disk[1]["loss"],
            Scalar::Float(f64::INFINITY),
            "infinity survives the CSV"
        );
    }
}
