//! The local executor: a pool of `saelab job task` processes on this
//! machine, over the same job folder Slurm's tasks use. With GPUs, each
//! worker slot owns one (`CUDA_VISIBLE_DEVICES`), so a 4-GPU machine trains
//! four grid points at once.
use super::{JobDir, LocalOptions};
use crate::{interrupt, Error, Result};
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `saelab` binary tasks run: `SAELAB_BIN` when set, else this
/// process's own executable.
pub fn program() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SAELAB_BIN") {
        return Ok(PathBuf::from(path));
    }
    std::env::current_exe()
        .map_err(|e| Error::invalid(format!("cannot find the saelab binary to run tasks: {e}")))
}

/// The GPUs a worker slot can be given, as `CUDA_VISIBLE_DEVICES` names
/// them: the parent's own list when it has one, else every device.
fn gpu_names() -> Vec<String> {
    if let Ok(list) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }
    (0..tch::Cuda::device_count())
        .map(|i| i.to_string())
        .collect()
}

/// Runs tasks `indices` of `job`, at most `workers` at a time, and waits for
/// them all. A task that dies without recording why (killed, crashed) gets
/// its exit status recorded as its failure; results are read by the caller.
pub fn run(job: &JobDir, indices: &[usize], options: &LocalOptions) -> Result<()> {
    let program = program()?;
    let gpus = gpu_names();
    let workers = options.workers.unwrap_or(gpus.len().max(1)).max(1);
    let mut queue = indices.iter().copied();
    let mut free: Vec<usize> = (0..workers).rev().collect();
    let mut running: Vec<(usize, usize, Child)> = Vec::new();
    loop {
        while !free.is_empty() && !interrupt::requested() {
            let Some(task) = queue.next() else { break };
            let slot = free.pop().unwrap_or_default();
            let gpu = (!gpus.is_empty()).then(|| gpus[slot % gpus.len()].as_str());
            running.push((slot, task, spawn(&program, job, task, gpu)?));
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut still = Vec::new();
        for (slot, task, mut child) in running {
            match child.try_wait() {
                Ok(Some(status)) => {
                    free.push(slot);
                    if !status.success() && job.result(task).ok().flatten().is_none() {
                        note_exit(job, task, &status.to_string())?;
                    }
                }
                Ok(None) => still.push((slot, task, child)),
                Err(e) => return Err(Error::invalid(format!("task {task}: {e}"))),
            }
        }
        running = still;
    }
    interrupt::check()
}

fn spawn(program: &PathBuf, job: &JobDir, task: usize, gpu: Option<&str>) -> Result<Child> {
    let log_path = job.log_path(task);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let err_log = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
    let mut command = Command::new(program);
    command
        .args(["job", "task"])
        .arg(&job.path)
        .arg(task.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log);
    if let Some(gpu) = gpu {
        command.env("CUDA_VISIBLE_DEVICES", gpu);
    }
    command
        .spawn()
        .map_err(|e| Error::invalid(format!("cannot start {}: {e}", program.display())))
}

/// Records an exit the task could not record itself, keeping its own reason.
fn note_exit(job: &JobDir, task: usize, status: &str) -> Result<()> {
    if let Some(super::TaskState::Failed(_)) = job.file_states().get(task) {
        return Ok(());
    }
    job.record_failure(
        task,
        &format!(
            "the task process {status} (see {})",
            job.log_path(task).display()
        ),
    )
}
