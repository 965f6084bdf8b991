//! Jobs of every kind behind one door, for the `saelab job` commands and
//! the script handles: run a task, start the unfinished ones, and collect
//! (a sweep's rows into its CSV, a split harvest's shards into its store).
use crate::activations::{split, Store};
use crate::executor::{self, JobDir};
use crate::sweep::{job as sweep_job, Row, Scalar};
use crate::{Error, Result};

/// What a finished job gives.
pub enum Collected {
    /// A sweep's rows so far, in grid order, and the tasks without one.
    Rows(sweep_job::Collected),
    /// A split harvest's merged store (boxed: a store is large).
    Store(Box<Store>),
}

impl Collected {
    /// A sweep's rows (an error for a harvest).
    pub fn into_rows(self) -> Result<Vec<Row<Scalar>>> {
        match self {
            Collected::Rows(collected) => Ok(collected.rows),
            Collected::Store(_) => Err(Error::invalid(
                "a harvest's job collects into a store, not rows",
            )),
        }
    }
}

fn unknown(job: &JobDir) -> Error {
    Error::invalid(format!(
        "{}: unknown job kind '{}' (this saelab runs sweep and harvest jobs)",
        job.path.display(),
        job.spec.kind
    ))
}

/// Runs task `index` of the job in `job`.
pub fn run_task(job: &JobDir, index: usize, report: &mut dyn FnMut(&str)) -> Result<()> {
    match job.spec.kind.as_str() {
        sweep_job::KIND => sweep_job::run_task(job, index, report),
        split::KIND => split::run_task(job, index),
        _ => Err(unknown(job)),
    }
}

/// Starts the job's unfinished tasks on its executor (a harvest's merge
/// after them under Slurm; a local pool merges when collected).
pub fn start(job: &JobDir) -> Result<()> {
    executor::start(job, job.spec.kind == split::KIND)
}

/// A sweep's finished rows merged into its CSV; a harvest's tasks merged
/// into its store (every task must be done).
pub fn collect(job: &JobDir) -> Result<Collected> {
    match job.spec.kind.as_str() {
        sweep_job::KIND => Ok(Collected::Rows(sweep_job::collect(job)?)),
        split::KIND => Ok(Collected::Store(Box::new(split::merge(job)?))),
        _ => Err(unknown(job)),
    }
}

/// Collects, failing unless every task finished: the states say which did not.
pub fn collect_all(job: &JobDir) -> Result<Collected> {
    let states = executor::states(job)?;
    let unfinished = states.iter().filter(|s| s.name() != "done").count();
    if unfinished > 0 {
        if job.spec.kind == sweep_job::KIND {
            // Keep what finished: the CSV gains every row there is.
            collect(job)?;
        }
        return Err(Error::invalid(format!(
            "{}: {unfinished} of {} tasks did not finish: {} — resubmit with `saelab job submit {}`",
            job.path.display(),
            states.len(),
            executor::summary(&states),
            job.path.display()
        )));
    }
    collect(job)
}
