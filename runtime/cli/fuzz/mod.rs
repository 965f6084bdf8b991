//! `saelab fuzz` (hidden): the grammar-based fuzzer's driver. The parent
//! runs batches of programs in a child process (`--worker`) under a memory
//! limit, so an abort is seen as the child's death and a hang as silence
//! past the time cap; it counts the outcomes, and with `--corpus` writes
//! every failing program, minimised, where the test suite replays it.
mod corpus;
mod supervise;
mod worker;

use saelab::script::fuzz::OutcomeClass;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use supervise::run_batch;
use supervise::Limits;
use worker::Job;

/// The command line of `saelab fuzz`.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// The run's seed: program I of seed S is the same on every machine.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The first program's index.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// How many programs to run.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Seconds a program may run before it counts as a hang.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Address-space limit of the child in GiB (RLIMIT_AS).
    #[arg(long, default_value_t = 8)]
    memory_gib: u64,
    /// Write each failing program, minimised, into this folder.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Run saved programs (files, or folders of .rhai files) instead.
    #[arg(long, num_args = 1..)]
    replay: Vec<PathBuf>,
    /// Internal: be the child that runs the programs.
    #[arg(long, hide = true)]
    worker: bool,
    /// Internal: the child's sandbox folder.
    #[arg(long, hide = true)]
    sandbox: Option<PathBuf>,
}

pub fn run_fuzz(args: &FuzzArgs) -> ExitCode {
    let job = match job_of(args) {
        Ok(job) => job,
        Err(message) => {
            eprintln!("saelab fuzz: {message}");
            return ExitCode::from(2);
        }
    };
    if args.worker {
        let sandbox = args.sandbox.clone().unwrap_or_else(std::env::temp_dir);
        return worker::run_worker(&job, &sandbox);
    }
    let limits = Limits {
        program_timeout: Duration::from_secs(args.timeout_secs),
        memory_gib: args.memory_gib,
    };
    let started = Instant::now();
    let report = match run_batch(&job, &limits) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("saelab fuzz: {err}");
            return ExitCode::FAILURE;
        }
    };
    print_summary(args, &job, &report.counts, started.elapsed());
    for failure in &report.failures {
        println!(
            "{} in program {}: {}",
            failure.class.name(),
            failure.index,
            failure.message
        );
        if let Some(dir) = &args.corpus {
            match corpus::keep(dir, args, failure, &job, &limits) {
                Ok(path) => println!("  minimised into {}", path.display()),
                Err(err) => eprintln!("saelab fuzz: writing the corpus: {err}"),
            }
        }
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn job_of(args: &FuzzArgs) -> Result<Job, String> {
    if args.replay.is_empty() {
        return Ok(Job::Generated {
            seed: args.seed,
            start: args.start,
            count: args.count,
        });
    }
    let mut files = Vec::new();
    for path in &args.replay {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    // The child runs in its sandbox folder, so it needs absolute paths.
    let files = files
        .iter()
        .map(|f| {
            f.canonicalize()
                .map_err(|e| format!("{}: {e}", f.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Job::Files(files))
}

fn print_summary(
    args: &FuzzArgs,
    job: &Job,
    counts: &BTreeMap<OutcomeClass, u64>,
    elapsed: Duration,
) {
    let total: u64 = counts.values().sum();
    match job {
        Job::Generated { .. } => println!(
            "fuzzed {total} programs (seed {}, programs {}..{}) in {:.1} s",
            args.seed,
            args.start,
            args.start + args.count,
            elapsed.as_secs_f64()
        ),
        Job::Files(files) => println!(
            "replayed {total} of {} saved programs in {:.1} s",
            files.len(),
            elapsed.as_secs_f64()
        ),
    }
    let line: Vec<String> = OutcomeClass::ALL
        .iter()
        .map(|c| format!("{} {}", c.name(), counts.get(c).copied().unwrap_or(0)))
        .collect();
    println!("{}", line.join(", "));
}
