//! The regression corpus (tests/fuzz_corpus/): each failing program,
//! minimised by rerunning candidates in child processes, saved with a
//! header saying what it did and how it was found. The test suite replays
//! the folder and expects none of them to fail any more.
use super::supervise::{run_batch, Failure, Limits};
use super::worker::Job;
use super::FuzzArgs;
use saelab::script::fuzz::{generate, minimise, Grammar, OutcomeClass, Program};
use saelab::script::{new_engine, EngineOptions};
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

/// Minimises the failing program and writes it into `dir`.
pub fn keep(
    dir: &Path,
    args: &FuzzArgs,
    failure: &Failure,
    job: &Job,
    limits: &Limits,
) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let program = original(job, args.seed, failure.index)?;
    let scratch = std::env::temp_dir().join(format!("saelab-fuzz-min-{}.rhai", std::process::id()));
    let minimal = minimise(&program, failure.class, |candidate| {
        class_of(candidate, &scratch, limits).unwrap_or(OutcomeClass::Ok)
    });
    let _ = std::fs::remove_file(&scratch);
    let text = minimal.text();
    let path = dir.join(format!(
        "{}-{:016x}.rhai",
        failure.class.name(),
        digest(&text)
    ));
    let found = match job {
        Job::Generated { .. } => format!(
            "saelab fuzz --seed {} --start {} --count 1",
            args.seed, failure.index
        ),
        Job::Files(files) => format!(
            "saelab fuzz --replay {}",
            files[failure.index as usize].display()
        ),
    };
    let message = failure.message.lines().next().unwrap_or("");
    let header = format!(
        "// {} found by `{found}`, then minimised.\n// {message}\n",
        failure.class.name()
    );
    std::fs::write(&path, format!("{header}{text}\n"))?;
    Ok(path)
}

fn original(job: &Job, seed: u64, index: u64) -> io::Result<Program> {
    match job {
        Job::Generated { .. } => {
            let engine = new_engine(EngineOptions::default());
            Ok(generate(&Grammar::from_engine(&engine, false), seed, index))
        }
        Job::Files(files) => Ok(Program::parse(&std::fs::read_to_string(
            &files[index as usize],
        )?)),
    }
}

/// Runs one candidate alone in a child and returns its class.
fn class_of(program: &Program, scratch: &Path, limits: &Limits) -> io::Result<OutcomeClass> {
    std::fs::write(scratch, program.text())?;
    let report = run_batch(&Job::Files(vec![scratch.to_path_buf()]), limits)?;
    Ok(report
        .counts
        .keys()
        .next()
        .copied()
        .unwrap_or(OutcomeClass::Ok))
}

fn digest(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}
