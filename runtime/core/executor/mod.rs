//! Where the pieces of a sweep or a split harvest run: in this process (the
//! default, no executor), in a pool of `saelab` processes on this machine
//! ([`local`]), or as a Slurm job array ([`slurm`]).
//!
//! Both executors run the same job folder ([`job::JobDir`]): the settings as
//! JSON, one folder per task for its checkpoints and its result, and the
//! scripts that run the tasks. A task is `saelab job task <dir> <index>`; it
//! writes its result atomically, so a result file is either whole or absent,
//! and a task killed part way resumes from the checkpoints in its folder.
//! The scheduler does the distribution: saelab runs no daemon of its own.
pub mod job;
pub mod local;
pub mod slurm;

use crate::options::{from_options, OptionMap};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

pub use job::{JobDir, JobSpec, TaskState};
pub use slurm::SlurmOptions;

/// How the tasks of a job run: `#{local: #{workers: 4}}` or
/// `#{slurm: #{partition: "gpu", gpus_per_task: 1, max_parallel: 8}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Executor {
    /// A pool of `saelab` processes on this machine.
    Local(LocalOptions),
    /// A Slurm job array, submitted with `sbatch`.
    Slurm(SlurmOptions),
}

/// The local process pool's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalOptions {
    /// Tasks at once: one per GPU when GPUs are visible, else 1, unless given.
    #[serde(default)]
    pub workers: Option<usize>,
}

impl Executor {
    /// The executor an option map describes (`{"slurm": {...}}`).
    pub fn from_options(options: &OptionMap) -> Result<Executor> {
        from_options("executor", options)
    }

    /// The executor a JSON value describes, with the same errors.
    pub fn from_value(value: &serde_json::Value) -> Result<Executor> {
        match value.as_object() {
            Some(map) => Self::from_options(map),
            None => Err(Error::invalid(format!(
                "executor: expected a map such as #{{local: #{{workers: 2}}}} or #{{slurm: #{{partition: \"gpu\"}}}}, got {value}"
            ))),
        }
    }
}

/// Starts the tasks of `job` that have no result: a local pool runs them
/// and returns when they are done; Slurm queues them (and, with `merge`, a
/// merge job after them) and returns at once.
pub fn start(job: &JobDir, merge: bool) -> Result<()> {
    match &job.spec.executor {
        Executor::Local(options) => local::run(job, &job.unfinished(), options),
        Executor::Slurm(options) => {
            slurm::submit(job, options, &local::program()?, merge).map(|_| ())
        }
    }
}

/// Each task's state: from the folder, and the queue under Slurm.
pub fn states(job: &JobDir) -> Result<Vec<TaskState>> {
    match &job.spec.executor {
        Executor::Local(_) => Ok(job.file_states()),
        Executor::Slurm(_) => slurm::states(job),
    }
}

/// Waits until no task is pending or running (`timeout` bounds the wait,
/// failing with the states so far), polling every two seconds.
pub fn wait(job: &JobDir, timeout: Option<Duration>) -> Result<Vec<TaskState>> {
    let started = Instant::now();
    loop {
        let states = states(job)?;
        let busy = states
            .iter()
            .filter(|s| matches!(s, TaskState::Pending | TaskState::Running))
            .count();
        if busy == 0 {
            return Ok(states);
        }
        if timeout.is_some_and(|limit| started.elapsed() > limit) {
            return Err(Error::invalid(format!(
                "{}: {busy} of {} tasks still pending or running after {:.0} s",
                job.path.display(),
                states.len(),
                started.elapsed().as_secs_f64()
            )));
        }
        crate::interrupt::check()?;
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A line per state that has tasks: `done 3, running 1, failed 1 (task 4: ...)`.
pub fn summary(states: &[TaskState]) -> String {
    let mut parts = Vec::new();
    for name in ["done", "running", "pending", "failed"] {
        let count = states.iter().filter(|s| s.name() == name).count();
        if count > 0 {
            parts.push(format!("{name} {count}"));
        }
    }
    let failures: Vec<String> = states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            TaskState::Failed(why) => Some(format!("task {i}: {why}")),
            _ => None,
        })
        .collect();
    let mut line = parts.join(", ");
    if !failures.is_empty() {
        line.push_str(&format!(" ({})", failures.join("; ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_executor_is_read_from_its_option_map_and_unknown_keys_are_named() {
        let local = Executor::from_value(&serde_json::json!({"local": {"workers": 2}})).unwrap();
        assert_eq!(local, Executor::Local(LocalOptions { workers: Some(2) }));
        let slurm = Executor::from_value(&serde_json::json!({
            "slurm": {"partition": "gpu", "gpus_per_task": 1, "max_parallel": 4, "extra": ["--qos=low"]}
        }))
        .unwrap();
        let Executor::Slurm(options) = slurm else {
            panic!("not slurm")
        };
        assert_eq!(options.partition.as_deref(), Some("gpu"));
        assert_eq!(options.extra, ["--qos=low"]);
        let err = Executor::from_value(&serde_json::json!({"slurm": {"partitions": "gpu"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("partitions"), "{err}");
        let err = Executor::from_value(&serde_json::json!({"cloud": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cloud"), "{err}");
    }
}
