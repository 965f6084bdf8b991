//! `saelab job …` (also `saelab sweep …`): the commands over a job folder
//! that a sweep or a split harvest with an executor writes.
use clap::Subcommand;
use saelab::core::executor::{self, JobDir, TaskState};
use saelab::core::jobs::{self, Collected};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum JobAction {
    /// Run one task of the job (what each Slurm array element and local worker runs).
    #[command(hide = true)]
    Task { dir: PathBuf, index: usize },
    /// Merge a split harvest's finished tasks into its store (its merge job runs this).
    Merge { dir: PathBuf },
    /// Submit (or run, with the local executor) every task without a result that is not queued.
    Submit { dir: PathBuf },
    /// Each task's state: pending, running, done or failed (from squeue and the job folder).
    Status { dir: PathBuf },
    /// Merge the finished rows into the sweep's CSV (a harvest: its tasks into the store).
    Collect { dir: PathBuf },
    /// Wait until no task is pending or running, then collect.
    Wait {
        dir: PathBuf,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
}

pub fn run_job_command(action: JobAction) -> ExitCode {
    let result = match action {
        JobAction::Task { dir, index } => {
            open(&dir).and_then(|job| jobs::run_task(&job, index, &mut |line| println!("{line}")))
        }
        JobAction::Merge { dir } => open(&dir).and_then(|job| report(jobs::collect(&job)?)),
        JobAction::Submit { dir } => open(&dir).and_then(|job| {
            jobs::start(&job)?;
            print_states(&job)
        }),
        JobAction::Status { dir } => open(&dir).and_then(|job| print_states(&job)),
        JobAction::Collect { dir } => open(&dir).and_then(|job| report(jobs::collect(&job)?)),
        JobAction::Wait { dir, timeout } => open(&dir).and_then(|job| {
            executor::wait(&job, timeout.map(Duration::from_secs))?;
            report(jobs::collect_all(&job)?)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("saelab job: {err}");
            ExitCode::FAILURE
        }
    }
}

fn open(dir: &Path) -> saelab::core::Result<JobDir> {
    JobDir::open(dir)
}

fn print_states(job: &JobDir) -> saelab::core::Result<()> {
    let states = executor::states(job)?;
    for (index, state) in states.iter().enumerate() {
        match state {
            TaskState::Failed(why) => println!("task {index}: failed: {why}"),
            other => println!("task {index}: {}", other.name()),
        }
    }
    println!("{}: {}", job.path.display(), executor::summary(&states));
    Ok(())
}

fn report(collected: Collected) -> saelab::core::Result<()> {
    match collected {
        Collected::Rows(rows) if rows.missing.is_empty() => {
            println!("collected all {} rows", rows.rows.len());
        }
        Collected::Rows(rows) => println!(
            "collected {} rows; tasks {:?} have none yet",
            rows.rows.len(),
            rows.missing
        ),
        Collected::Store(store) => println!(
            "merged store: {} rows of width {}",
            store.len(),
            store.dim()
        ),
    }
    Ok(())
}
