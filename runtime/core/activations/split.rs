//! A harvest split across tasks ([`crate::executor`]): each task harvests a
//! disjoint slice of the corpus windows into its own store, and a merge
//! moves their shards (renamed, not copied) into one store equal to the
//! one-machine harvest of the same windows: the same rows, row by row, the
//! same manifest apart from where shards begin, the same scale.
//!
//! Slices start at multiples of the batch size, so every task runs the model
//! on the same batches of windows as one machine would. The scale's sum of
//! squared norms runs over rows in order (see `harvest.rs`), so the merge
//! continues task 0's total through the later tasks' row norms
//! (`{shard}.norms.npy`) and reaches the very same number.
use super::harvest::windows_for;
use super::harvest_options::HarvestOptions;
use super::manifest::{scale_for, Manifest, ShardInfo};
use super::npy::MappedArray;
use super::pipeline::NORMS_SUFFIX;
use super::store::Store;
use crate::corpus::{Corpus, CorpusOptions};
use crate::executor::{Executor, JobDir, JobSpec};
use crate::model::Model;
use crate::options::OptionMap;
use crate::precision::Precision;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The job kind in `job.json`.
pub const KIND: &str = "harvest";

/// A split harvest, as `job.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarvestJob {
    /// The GGUF file and the device ("cpu", "cuda") each task loads it on.
    pub model: PathBuf,
    pub device: String,
    /// The precision each task computes in ("f32", "bf16"): the merged
    /// store holds one precision, as every store does.
    #[serde(default = "f32_name")]
    pub precision: String,
    /// The corpus files, in order, and how their documents are read.
    pub corpus: Vec<String>,
    pub field: String,
    pub column: String,
    /// The harvest's options (`layer`, `tokens`, `out`, ...).
    pub options: OptionMap,
    /// The merged store's folder.
    pub out: PathBuf,
    /// Rows asked for in all.
    pub tokens: usize,
    /// Each task's windows and rows.
    pub slices: Vec<Slice>,
}

fn f32_name() -> String {
    Precision::F32.name().to_string()
}

/// One task's part of the corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    pub first_window: usize,
    pub end_window: usize,
    /// The task's target: the rows the whole harvest still wants at its
    /// first window (the slice's end stops it sooner, but for the last).
    pub tokens: usize,
}

/// Plans a harvest of `options` split into `tasks` slices and writes its
/// job folder (`dir`, or the store's folder with `.job`).
pub fn create(
    model: &Model,
    corpus: &Corpus,
    options: &OptionMap,
    tasks: usize,
    executor: Executor,
    dir: Option<&Path>,
) -> Result<JobDir> {
    let device = model.llama.device();
    let harvest = HarvestOptions::from_options(options, model.n_layers(), device)?;
    if harvest.max_norm_ratio.is_some() {
        return Err(Error::invalid(
            "harvest: a split harvest (tasks) cannot use max_norm_ratio yet: which rows it drops is known only once the model has run",
        ));
    }
    let out = std::path::absolute(&harvest.out).map_err(|e| Error::io(&harvest.out, e))?;
    let rows = rows_per_window(model, corpus, &harvest)?;
    let slices = plan(&rows, &harvest, tasks)?;
    let job = HarvestJob {
        model: std::path::absolute(&model.path).map_err(|e| Error::io(&model.path, e))?,
        device: crate::tensor::device_name(device),
        precision: model.precision().name().to_string(),
        corpus: corpus
            .files()
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        field: corpus.options().field.clone(),
        column: corpus.options().column.clone(),
        options: options.clone(),
        tokens: harvest.tokens,
        out: out.clone(),
        slices,
    };
    let settings = serde_json::to_value(&job)
        .map_err(|e| Error::invalid(format!("harvest: cannot serialise the job: {e}")))?;
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out.with_extension("job"));
    JobDir::create(
        &dir,
        JobSpec {
            format: crate::executor::job::FORMAT,
            kind: KIND.into(),
            tasks: job.slices.len(),
            settings,
            executor,
        },
    )
}

/// The rows each window gives (every position but 0 and separators), for
/// the windows a harvest of `options.tokens` rows reads.
fn rows_per_window(model: &Model, corpus: &Corpus, options: &HarvestOptions) -> Result<Vec<usize>> {
    let mut rows = Vec::new();
    let mut total = 0;
    for window in corpus.windows(&model.tokenizer, options.context)? {
        let window = window?;
        let kept = (window.origins.iter().enumerate())
            .filter(|(j, origin)| *j > 0 && !origin.separator)
            .count();
        rows.push(kept);
        total += kept;
        if total >= options.tokens {
            break;
        }
    }
    Ok(rows)
}

/// `tasks` slices, as even as the batches allow, each starting where the
/// one-machine harvest starts a batch and asks for as many windows as the
/// task's first batch will: every task then runs the model on exactly the
/// batches one machine runs (a model's output can depend on what else is
/// in its batch). Each task's target is the rows the one-machine harvest
/// still wants at its first window, so it sizes its batches alike; its
/// slice's end stops it.
fn plan(rows: &[usize], options: &HarvestOptions, tasks: usize) -> Result<Vec<Slice>> {
    let batches = one_machine_batches(rows, options);
    let rows_before = |window: usize| rows[..window].iter().sum::<usize>();
    let wanted_at = |window: usize| options.tokens.saturating_sub(rows_before(window));
    // Batches a task may start with: its first request matches the batch.
    let starts: Vec<usize> = (0..batches.len())
        .filter(|&i| {
            let (first, n) = batches[i];
            i == 0 || windows_for(wanted_at(first), options) == n
        })
        .collect();
    if tasks == 0 || tasks > starts.len() {
        return Err(Error::invalid(format!(
            "harvest: tasks must be between 1 and {} for this harvest ({} batches of up to {} windows), got {tasks}",
            starts.len(),
            batches.len(),
            options.batch_size
        )));
    }
    let mut chosen: Vec<usize> = Vec::new();
    for task in 0..tasks {
        let ideal = task * batches.len() / tasks;
        let left = tasks - task - 1;
        let candidates = &starts[..starts.len() - left];
        let pick = candidates
            .iter()
            .copied()
            .filter(|&i| chosen.last().is_none_or(|&last| i > last))
            .min_by_key(|&i| i.abs_diff(ideal))
            .ok_or_else(|| {
                Error::invalid("harvest: cannot split the batches into that many tasks")
            })?;
        chosen.push(pick);
    }
    let end = batches.last().map_or(0, |(first, n)| first + n);
    Ok(chosen
        .iter()
        .enumerate()
        .map(|(t, &i)| {
            let first_window = batches[i].0;
            Slice {
                first_window,
                end_window: chosen.get(t + 1).map_or(end, |&j| batches[j].0),
                tokens: wanted_at(first_window),
            }
        })
        .collect())
}

/// The batches `(first window, windows)` a one-machine harvest runs, as its
/// loop asks for them: one batch in flight while the previous one lands.
fn one_machine_batches(rows: &[usize], options: &HarvestOptions) -> Vec<(usize, usize)> {
    let max_rows = options.context.saturating_sub(1);
    let (mut landed, mut next) = (0usize, 0usize);
    let mut in_flight: Option<(usize, usize)> = None;
    let mut batches = Vec::new();
    loop {
        let remaining = options.tokens.saturating_sub(landed);
        let in_flight_rows = in_flight.map_or(0, |(_, n)| n * max_rows);
        let queued = (remaining > in_flight_rows && next < rows.len()).then(|| {
            let n = windows_for(remaining - in_flight_rows, options).min(rows.len() - next);
            next += n;
            (next - n, n)
        });
        batches.extend(queued);
        let Some((first, n)) = std::mem::replace(&mut in_flight, queued) else {
            if in_flight.is_none() {
                break;
            }
            continue;
        };
        landed += rows[first..first + n].iter().sum::<usize>();
        if landed >= options.tokens {
            break;
        }
    }
    batches
}

/// Harvests task `index`'s slice into its own store in its task folder.
pub fn run_task(job: &JobDir, index: usize) -> Result<()> {
    let harvest: HarvestJob = job.settings()?;
    job.check_index(index)?;
    let device = crate::tensor::parse_device(&harvest.device)?;
    let precision = Precision::parse(&harvest.precision)?;
    let model = Model::load(&harvest.model, device, precision)?;
    let corpus = Corpus::from_paths(
        &harvest.corpus,
        CorpusOptions {
            field: harvest.field.clone(),
            column: harvest.column.clone(),
        },
    )?;
    job.run_task(index, |dir| {
        let slice = &harvest.slices[index];
        let mut options = HarvestOptions::from_options(&harvest.options, model.n_layers(), device)?;
        options.out = dir.join("store");
        options.tokens = slice.tokens;
        options.first_window = slice.first_window;
        options.end_window = Some(slice.end_window);
        options.row_norms = true;
        let store = super::harvest(&model, &corpus, &options)?;
        Ok(serde_json::json!({"rows": store.len()}))
    })
}

/// Moves every task's shards into the job's store and writes its manifest;
/// a store already merged is opened. Every task must be done.
pub fn merge(job: &JobDir) -> Result<Store> {
    let harvest: HarvestJob = job.settings()?;
    let _lock = job.lock("merge")?;
    if let Some(done) = merged(job, &harvest)? {
        return Ok(done);
    }
    let unfinished = job.unfinished();
    if !unfinished.is_empty() {
        return Err(Error::invalid(format!(
            "harvest: tasks {unfinished:?} of {} have not finished: resubmit them, then merge",
            job.path.display()
        )));
    }
    let parts = (0..job.spec.tasks)
        .map(|task| task_manifest(job, task))
        .collect::<Result<Vec<_>>>()?;
    let manifest = merged_manifest(job, &harvest, &parts)?;
    std::fs::create_dir_all(&harvest.out).map_err(|e| Error::io(&harvest.out, e))?;
    move_shards(job, &harvest.out, &parts)?;
    manifest.write(&harvest.out)?;
    Store::open(&harvest.out)
}

/// The merged store, when a merge already wrote it.
fn merged(job: &JobDir, harvest: &HarvestJob) -> Result<Option<Store>> {
    match Manifest::read(&harvest.out)? {
        Some(m) if m.complete && m.tokens_target == harvest.tokens => {
            Ok(Some(Store::open(&harvest.out)?))
        }
        Some(_) => Err(Error::invalid(format!(
            "{} already holds another harvest: the merge of {} needs an empty folder",
            harvest.out.display(),
            job.path.display()
        ))),
        None => Ok(None),
    }
}

fn task_manifest(job: &JobDir, task: usize) -> Result<Manifest> {
    let dir = job.task_dir(task).join("store");
    Manifest::read(&dir)?.ok_or_else(|| {
        Error::invalid(format!(
            "task {task} finished but {} has no manifest",
            dir.display()
        ))
    })
}

/// Task 0's manifest extended by the others: their shards renumbered, their
/// rows counted, and the sums continued row by row from their norms.
fn merged_manifest(job: &JobDir, harvest: &HarvestJob, parts: &[Manifest]) -> Result<Manifest> {
    let mut manifest = parts[0].clone();
    let mut site_sums: Vec<f64> = manifest.sites.iter().map(|s| s.sum_squared_norm).collect();
    for (task, part) in parts.iter().enumerate().skip(1) {
        for shard in &part.shards {
            let path = job
                .task_dir(task)
                .join("store")
                .join(format!("{}{NORMS_SUFFIX}", shard.name));
            continue_sums(&path, &mut manifest.sum_squared_norm, &mut site_sums)?;
        }
        manifest.rows += part.rows;
        manifest.dropped_rows += part.dropped_rows;
        manifest.windows_done = part.windows_done;
        manifest.partial_rows = part.partial_rows;
    }
    manifest.shards = renumbered(parts);
    manifest.tokens_target = harvest.tokens;
    manifest.complete = true;
    manifest.scale = scale_for(manifest.dim, manifest.rows, manifest.sum_squared_norm);
    let rows = manifest.rows;
    for (site, sum) in manifest.sites.iter_mut().zip(site_sums) {
        site.set(rows, sum);
    }
    Ok(manifest)
}

/// Adds a shard's row norms to the totals in the order a harvest adds them:
/// row after row, each row's sites in order.
fn continue_sums(path: &Path, total: &mut f64, site_sums: &mut [f64]) -> Result<()> {
    let norms = MappedArray::open(path)?;
    for i in 0..norms.rows() {
        for (site, bytes) in norms.row(i).chunks_exact(4).enumerate() {
            let squared = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f64;
            *total += squared;
            if let Some(sum) = site_sums.get_mut(site) {
                *sum += squared;
            }
        }
    }
    Ok(())
}

fn renumbered(parts: &[Manifest]) -> Vec<ShardInfo> {
    parts
        .iter()
        .flat_map(|part| part.shards.iter().cloned())
        .enumerate()
        .map(|(k, shard)| ShardInfo {
            name: format!("shard-{k:05}"),
            ..shard
        })
        .collect()
}

/// Renames each task's shard files into `out` under their merged names; a
/// file already moved by an interrupted merge is left where it is.
fn move_shards(job: &JobDir, out: &Path, parts: &[Manifest]) -> Result<()> {
    let mut k = 0;
    for (task, part) in parts.iter().enumerate() {
        let from_dir = job.task_dir(task).join("store");
        for shard in &part.shards {
            for suffix in [".npy", ".rows.npy", ".windows.npy"] {
                let from = from_dir.join(format!("{}{suffix}", shard.name));
                let to = out.join(format!("shard-{k:05}{suffix}"));
                if from.exists() || !to.exists() {
                    std::fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
                }
            }
            k += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(tokens: usize, batch_size: usize) -> HarvestOptions {
        let mut options = HarvestOptions::new(crate::model::Site::resid_pre(0), tokens, "unused");
        options.context = 11; // up to ten rows a window
        options.batch_size = batch_size;
        options
    }

    #[test]
    fn slices_start_where_one_machine_starts_a_batch_and_ask_for_what_it_still_wants() {
        let rows = vec![10; 10]; // ten windows of ten rows
        let batches = one_machine_batches(&rows, &options(95, 2));
        assert_eq!(batches, [(0, 2), (2, 2), (4, 2), (6, 2), (8, 2)]);
        let slices = plan(&rows, &options(95, 2), 2).unwrap();
        assert_eq!(
            slices,
            [
                Slice {
                    first_window: 0,
                    end_window: 4,
                    tokens: 95
                },
                Slice {
                    first_window: 4,
                    end_window: 10,
                    tokens: 55
                },
            ]
        );
        // Near the target one machine asks for fewer windows: no task starts there.
        let short = vec![4; 10];
        let batches = one_machine_batches(&short, &options(38, 3));
        // Rows come in under the in-flight bound, so requests shrink early.
        let expected = [(0, 3), (3, 1), (4, 2), (6, 1), (7, 1), (8, 1), (9, 1)];
        assert_eq!(batches, expected);
        let starts: Vec<usize> = plan(&short, &options(38, 3), 2)
            .unwrap()
            .iter()
            .map(|s| s.first_window)
            .collect();
        assert_eq!(starts, [0, 7], "the first batch a task would ask for alike");
        assert!(
            plan(&rows, &options(100, 4), 4).is_err(),
            "more tasks than batches"
        );
    }
}
