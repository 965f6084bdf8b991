//! The child side of `saelab fuzz`: runs programs one after another in one
//! engine and reports each on stdout as `@@fuzz begin I` before it runs and
//! `@@fuzz end I CLASS MESSAGE` after, so the parent knows which program an
//! abort or a hang belongs to. Everything else the process prints is noise
//! to the parent.
use saelab::script::fuzz::{self, generate, Grammar, Program, Sandbox};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What a worker runs.
pub enum Job {
    /// Programs `start..start + count` of `seed`.
    Generated { seed: u64, start: u64, count: u64 },
    /// Saved programs, numbered from 0 in this order.
    Files(Vec<PathBuf>),
}

pub fn run_worker(job: &Job, sandbox_root: &Path) -> ExitCode {
    let engine = fuzz::fuzz_engine(sandbox_root);
    let sandbox = match Sandbox::create(sandbox_root, &engine) {
        Ok(sandbox) => sandbox,
        Err(err) => {
            eprintln!("saelab fuzz: {err}");
            return ExitCode::FAILURE;
        }
    };
    let grammar = Grammar::from_engine(&engine, false);
    let programs: Box<dyn Iterator<Item = (u64, Program)>> = match job {
        Job::Generated { seed, start, count } => {
            Box::new((*start..start + count).map(|i| (i, generate(&grammar, *seed, i))))
        }
        Job::Files(files) => Box::new(files.iter().enumerate().map(|(i, path)| {
            // An unreadable file becomes a program that fails on its first line.
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| format!("throw \"cannot read {}: {e}\";", path.display()));
            (i as u64, Program::parse(&text))
        })),
    };
    for (index, program) in programs {
        protocol(&format!("begin {index}"));
        if let Err(err) = sandbox.fresh() {
            eprintln!("saelab fuzz: resetting the sandbox: {err}");
            return ExitCode::FAILURE;
        }
        let outcome = fuzz::run_program(&engine, &program.text());
        let message = outcome.message.replace('\n', "\\n");
        protocol(&format!("end {index} {} {message}", outcome.class.name()));
    }
    ExitCode::SUCCESS
}

fn protocol(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@fuzz {line}");
    let _ = out.flush();
}
