//! A job folder: everything the tasks of one sweep or harvest need, so it
//! runs the same under any executor and on any machine that sees the folder.
//!
//! ```text
//! job.json            what to run: kind, task count, settings, executor
//! job.sbatch          the Slurm array script (merge.sbatch for a harvest's merge)
//! submissions.json    Slurm job ids submitted so far, and their tasks
//! tasks/00003/        task 3's folder: checkpoints, a harvest's shards,
//!   result.json       its result, written atomically when it finishes
//!   error.txt         why it failed, when it did
//! logs/00003.log      its output (appended to across requeues)
//! ```
use super::Executor;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// Layout version of a job folder.
pub const FORMAT: u32 = 1;
const SPEC: &str = "job.json";

/// What a job runs, as written to `job.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub format: u32,
    /// "sweep" or "harvest": which code runs a task.
    pub kind: String,
    /// Tasks, numbered from 0 (Slurm array indices).
    pub tasks: usize,
    /// The kind's own settings (a sweep's points and options, a harvest's slices).
    pub settings: serde_json::Value,
    pub executor: Executor,
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Not started yet, or queued.
    Pending,
    Running,
    Done,
    /// Stopped without a result; the reason.
    Failed(String),
}

impl TaskState {
    /// "pending", "running", "done" or "failed".
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed(_) => "failed",
        }
    }
}

/// An open job folder.
#[derive(Debug, Clone)]
pub struct JobDir {
    /// Absolute, so scripts written into the folder work from anywhere.
    pub path: PathBuf,
    pub spec: JobSpec,
}

impl JobDir {
    /// Creates the folder for `spec`, or opens the one already there if it
    /// holds the same job (a resubmission); a folder of another job is an
    /// error, so results of other settings are never mixed in.
    pub fn create(path: &Path, spec: JobSpec) -> Result<JobDir> {
        std::fs::create_dir_all(path.join("logs")).map_err(|e| Error::io(path, e))?;
        let path = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        if let Some(existing) = Self::read_spec(&path)? {
            let same = (&existing.kind, existing.tasks, &existing.settings)
                == (&spec.kind, spec.tasks, &spec.settings);
            if !same {
                return Err(Error::invalid(format!(
                    "{} holds another {} job (other settings or grid): choose another folder, or delete it to start over",
                    path.display(),
                    existing.kind
                )));
            }
        }
        let text = serde_json::to_string_pretty(&spec)
            .map_err(|e| Error::invalid(format!("cannot serialise the job: {e}")))?;
        crate::fs::write_atomic(&path.join(SPEC), &(text + "\n"))?;
        Ok(JobDir { path, spec })
    }

    /// Opens a job folder written by [`JobDir::create`].
    pub fn open(path: &Path) -> Result<JobDir> {
        let path = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        match Self::read_spec(&path)? {
            Some(spec) => Ok(JobDir { path, spec }),
            None => Err(Error::invalid(format!(
                "{} is not a saelab job folder (no {SPEC})",
                path.display()
            ))),
        }
    }

    fn read_spec(path: &Path) -> Result<Option<JobSpec>> {
        let file = path.join(SPEC);
        if !file.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let spec: JobSpec = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: not a saelab job: {e}", file.display())))?;
        if spec.format != FORMAT {
            return Err(Error::invalid(format!(
                "{} is a job of format {}, this saelab runs format {FORMAT}",
                file.display(),
                spec.format
            )));
        }
        Ok(Some(spec))
    }

    /// The job's settings as the type its kind reads them into.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.spec.settings.clone()).map_err(|e| {
            Error::invalid(format!(
                "{}: the {} job's settings: {e}",
                self.path.display(),
                self.spec.kind
            ))
        })
    }

    pub fn check_index(&self, index: usize) -> Result<()> {
        if index >= self.spec.tasks {
            return Err(Error::invalid(format!(
                "task {index} does not exist: {} has tasks 0 to {}",
                self.path.display(),
                self.spec.tasks.saturating_sub(1)
            )));
        }
        Ok(())
    }

    /// Task `index`'s own folder (created on first use).
    pub fn task_dir(&self, index: usize) -> PathBuf {
        self.path.join("tasks").join(format!("{index:05}"))
    }

    pub fn log_path(&self, index: usize) -> PathBuf {
        self.path.join("logs").join(format!("{index:05}.log"))
    }

    fn result_path(&self, index: usize) -> PathBuf {
        self.task_dir(index).join("result.json")
    }

    fn error_path(&self, index: usize) -> PathBuf {
        self.task_dir(index).join("error.txt")
    }

    /// Runs task `index` with `work`, recording its result (atomically) or
    /// its error in its folder; the error is also returned.
    pub fn run_task(
        &self,
        index: usize,
        work: impl FnOnce(&Path) -> Result<serde_json::Value>,
    ) -> Result<()> {
        self.check_index(index)?;
        if self.result_path(index).exists() {
            // Done already (a requeue after the result was written): nothing to redo.
            return Ok(());
        }
        let dir = self.task_dir(index);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        remove_if_present(&self.error_path(index))?;
        match work(&dir) {
            Ok(result) => {
                let text = serde_json::to_string_pretty(&result)
                    .map_err(|e| Error::invalid(format!("task {index}: {e}")))?;
                crate::fs::write_atomic(&self.result_path(index), &(text + "\n"))
            }
            Err(err) => {
                self.record_failure(index, err.as_ref())?;
                Err(err)
            }
        }
    }

    /// Notes why task `index` stopped without a result.
    pub fn record_failure(&self, index: usize, message: &str) -> Result<()> {
        let dir = self.task_dir(index);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        crate::fs::write_atomic(&self.error_path(index), &format!("{message}\n"))
    }

    /// Task `index`'s result, `None` while it has none; a damaged result
    /// file (truncated, say) is an error naming the task to rerun.
    pub fn result(&self, index: usize) -> Result<Option<serde_json::Value>> {
        let path = self.result_path(index);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::invalid(format!(
                "task {index}'s result {} is damaged ({e}): delete it and resubmit to rerun the task",
                path.display()
            ))
        })
    }

    /// Each task's state as its folder shows it: done with a result, failed
    /// with an error, else pending (an executor knows better about running).
    pub fn file_states(&self) -> Vec<TaskState> {
        (0..self.spec.tasks)
            .map(|index| {
                if self.result_path(index).exists() {
                    TaskState::Done
                } else if let Ok(reason) = std::fs::read_to_string(self.error_path(index)) {
                    TaskState::Failed(reason.trim().to_string())
                } else {
                    TaskState::Pending
                }
            })
            .collect()
    }

    /// Tasks without a result.
    pub fn unfinished(&self) -> Vec<usize> {
        (0..self.spec.tasks)
            .filter(|&index| !self.result_path(index).exists())
            .collect()
    }

    /// Holds `name` in the folder until dropped; a second holder is refused,
    /// so two collects never write the same CSV at once.
    pub fn lock(&self, name: &str) -> Result<JobLock> {
        let path = self.path.join(format!("{name}.lock"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => Ok(JobLock { path }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::invalid(format!(
                    "another {name} of {} is running ({} exists; delete it if no other saelab is)",
                    self.path.display(),
                    path.display()
                )))
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

/// A lock file, removed when dropped.
#[derive(Debug)]
pub struct JobLock {
    path: PathBuf,
}

impl Drop for JobLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::LocalOptions;

    fn spec(settings: serde_json::Value) -> JobSpec {
        JobSpec {
            format: FORMAT,
            kind: "sweep".into(),
            tasks: 3,
            settings,
            executor: Executor::Local(LocalOptions::default()),
        }
    }

    #[test]
    fn tasks_record_results_and_errors_and_another_jobs_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let job = JobDir::create(dir.path(), spec(serde_json::json!({"a": 1}))).unwrap();
        job.run_task(0, |_| Ok(serde_json::json!({"loss": 1.5})))
            .unwrap();
        job.run_task(0, |_| panic!("a finished task is not run again"))
            .unwrap();
        assert!(job
            .run_task(1, |_| Err(Error::invalid("out of memory")))
            .is_err());
        let states = job.file_states();
        assert_eq!(states[0], TaskState::Done);
        assert_eq!(states[1], TaskState::Failed("out of memory".into()));
        assert_eq!(states[2], TaskState::Pending);
        assert_eq!(job.unfinished(), [1, 2]);
        assert!(job.run_task(3, |_| Ok(serde_json::json!(0))).is_err());

        // A truncated result names the task; the same job reopens, another is refused.
        std::fs::write(job.task_dir(0).join("result.json"), "{\"loss\": 1.").unwrap();
        let err = job.result(0).unwrap_err().to_string();
        assert!(err.contains("task 0's result"), "{err}");
        JobDir::create(dir.path(), spec(serde_json::json!({"a": 1}))).unwrap();
        let err = JobDir::create(dir.path(), spec(serde_json::json!({"a": 2})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds another sweep job"), "{err}");

        let lock = job.lock("collect").unwrap();
        assert!(job.lock("collect").is_err(), "a second collect is refused");
        drop(lock);
        job.lock("collect").unwrap();
    }
}
