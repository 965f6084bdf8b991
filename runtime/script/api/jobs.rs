//! Jobs from scripts: a sweep or a harvest given an `executor` becomes a job
//! folder run by a local process pool or a Slurm job array. A local pool
//! returns what the in-process run returns; Slurm returns a `Job` handle
//! with `status()`, `collect()`, `wait()` and `submit()`.
use crate::core::activations::split;
use crate::core::executor::{self, Executor, JobDir, TaskState};
use crate::core::jobs::{self, Collected};
use crate::core::sweep::job::{self as sweep_job, SweepJob};
use crate::core::sweep::{Row, Scalar};
use crate::script::convert::option_map;
use crate::script::error::{runtime_error, ScriptResult};
use crate::script::sweep::scalar_map;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A job handle; copies share it.
pub type ScriptJob = Rc<JobDir>;

/// The options a job takes from a sweep's or harvest's map, kept out of theirs.
pub const JOB_KEYS: &[&str] = &["executor", "job_dir", "tasks"];

/// The executor `value` describes (`#{local: #{workers: 2}}`, `#{slurm: #{...}}`).
pub fn executor_of(value: &Dynamic) -> ScriptResult<Executor> {
    let json = rhai::serde::from_dynamic::<serde_json::Value>(value)
        .map_err(|e| runtime_error(format!("executor: {e}")))?;
    Ok(Executor::from_value(&json)?)
}

/// `cfg.job_dir`, if given.
pub fn job_dir_of(cfg: &Map) -> ScriptResult<Option<PathBuf>> {
    match cfg.get("job_dir") {
        None => Ok(None),
        Some(dir) => dir
            .clone()
            .into_string()
            .map(|d| Some(PathBuf::from(d)))
            .map_err(|t| runtime_error(format!("job_dir must be a path, got {t}"))),
    }
}

/// The store folder behind a sweep's `source`/`held_out`: tasks reopen it.
fn store_path(value: &Dynamic, key: &str) -> ScriptResult<PathBuf> {
    let store = value.read_lock::<super::activations::ScriptStore>().ok_or_else(|| {
        runtime_error(format!(
            "sweep: with an executor, `{key}` must be a store on disk (open_store or m.harvest), got {}",
            value.type_name()
        ))
    })?;
    let path = store.path().ok_or_else(|| {
        runtime_error(format!(
            "sweep: `{key}` is a store in memory: tasks need one on disk"
        ))
    })?;
    std::path::absolute(path).map_err(|e| runtime_error(format!("{}: {e}", path.display())))
}

/// `sweep(grid, #{..., executor})`: the rows (local pool) or a `Job` (Slurm).
pub fn sweep(points: Vec<Row<Scalar>>, cfg: &Map) -> ScriptResult<Dynamic> {
    let executor = executor_of(&cfg["executor"])?;
    let source = store_path(cfg.get("source").unwrap_or(&Dynamic::UNIT), "source")?;
    let held_out = cfg
        .get("held_out")
        .map(|v| store_path(v, "held_out"))
        .transpose()?;
    let own: Map = cfg
        .iter()
        .filter(|(k, _)| {
            !["source", "held_out"].contains(&k.as_str()) && !JOB_KEYS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut options = option_map(&own, "sweep")?;
    if let Some(csv) = options.get("csv").and_then(|c| c.as_str()) {
        let absolute =
            std::path::absolute(csv).map_err(|e| runtime_error(format!("{csv}: {e}")))?;
        options.insert("csv".into(), absolute.display().to_string().into());
    }
    let sweep = SweepJob {
        points,
        options,
        source,
        held_out,
    };
    let job = sweep_job::create(job_dir_of(cfg)?.as_deref(), sweep, executor)?;
    finish_or_handle(job)
}

/// `m.harvest(corpus, #{..., executor, tasks})`: the store (local pool) or a `Job` (Slurm).
pub fn harvest(
    model: &crate::core::model::Model,
    corpus: &crate::core::corpus::Corpus,
    opts: &Map,
) -> ScriptResult<Dynamic> {
    let executor = match opts.get("executor") {
        Some(value) => executor_of(value)?,
        None => Executor::Local(Default::default()),
    };
    let tasks = match opts.get("tasks") {
        Some(n) => n
            .as_int()
            .map_err(|t| runtime_error(format!("harvest: tasks must be an integer, got {t}")))?,
        None => 1,
    };
    let own: Map = opts
        .iter()
        .filter(|(k, _)| !JOB_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let options = option_map(&own, "harvest")?;
    let tasks =
        usize::try_from(tasks).map_err(|_| runtime_error("harvest: tasks must be at least 1"))?;
    let job = split::create(
        model,
        corpus,
        &options,
        tasks,
        executor,
        job_dir_of(opts)?.as_deref(),
    )?;
    finish_or_handle(job)
}

/// A local pool runs to the end and gives the result; Slurm gives a handle.
fn finish_or_handle(job: JobDir) -> ScriptResult<Dynamic> {
    jobs::start(&job)?;
    match job.spec.executor {
        Executor::Local(_) => collected_value(jobs::collect_all(&job)?),
        Executor::Slurm(_) => Ok(Dynamic::from(Rc::new(job))),
    }
}

fn collected_value(collected: Collected) -> ScriptResult<Dynamic> {
    Ok(match collected {
        Collected::Rows(rows) => {
            let rows: Array = rows.rows.into_iter().map(scalar_map).collect();
            Dynamic::from_array(rows)
        }
        Collected::Store(store) => Dynamic::from(Rc::new(*store)),
    })
}

fn state_map(index: usize, state: &TaskState) -> Dynamic {
    let mut map = Map::new();
    map.insert("task".into(), Dynamic::from(index as rhai::INT));
    map.insert("state".into(), Dynamic::from(state.name()));
    if let TaskState::Failed(why) = state {
        map.insert("reason".into(), Dynamic::from(why.clone()));
    }
    Dynamic::from_map(map)
}

#[export_module]
pub mod jobs_api {
    use super::*;

    pub type Job = ScriptJob;

    /// Opens a job folder that a sweep or harvest with an executor wrote.
    /// `let job = open_job("runs/sweep.job"); job.status()`
    #[rhai_fn(return_raw)]
    pub fn open_job(dir: &str) -> ScriptResult<Job> {
        Ok(Rc::new(JobDir::open(Path::new(dir))?))
    }

    /// Each task's state: `#{done: 3, running: 1, pending: 0, failed: 0, tasks: [#{task, state, reason}]}`
    /// (from squeue and the job folder). `job.status().done`
    #[rhai_fn(pure, return_raw)]
    pub fn status(job: &mut Job) -> ScriptResult<Map> {
        let states = executor::states(job)?;
        let mut map = Map::new();
        for name in ["done", "running", "pending", "failed"] {
            let count = states.iter().filter(|s| s.name() == name).count();
            map.insert(name.into(), Dynamic::from(count as rhai::INT));
        }
        let tasks: Array = states
            .iter()
            .enumerate()
            .map(|(i, s)| state_map(i, s))
            .collect();
        map.insert("tasks".into(), Dynamic::from_array(tasks));
        Ok(map)
    }

    /// Merges what finished: a sweep's rows into its CSV (returning every row so far), a harvest's tasks
    /// into its store (returning the store; every task must be done). `let rows = job.collect()`
    #[rhai_fn(pure, return_raw)]
    pub fn collect(job: &mut Job) -> ScriptResult<Dynamic> {
        collected_value(jobs::collect(job)?)
    }

    /// Waits until no task is pending or running, then collects; an error names the tasks that failed.
    /// `let rows = job.wait()`
    #[rhai_fn(pure, return_raw)]
    pub fn wait(job: &mut Job) -> ScriptResult<Dynamic> {
        executor::wait(job, None)?;
        collected_value(jobs::collect_all(job)?)
    }

    /// Submits again every task without a result that is not queued (a failed task is rerun alone).
    /// `job.submit()`
    #[rhai_fn(pure, return_raw)]
    pub fn submit(job: &mut Job) -> ScriptResult<()> {
        Ok(jobs::start(job)?)
    }

    /// The job folder. `job.dir`
    #[rhai_fn(get = "dir", pure)]
    pub fn dir(job: &mut Job) -> String {
        job.path.display().to_string()
    }

    #[rhai_fn(name = "to_string", pure)]
    pub fn job_to_string(job: &mut Job) -> String {
        format!(
            "Job({} of {} tasks, {})",
            job.spec.kind,
            job.spec.tasks,
            job.path.display()
        )
    }
}
