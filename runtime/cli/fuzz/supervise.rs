//! Running a job in child processes and watching them: a program that never
//! reports its end within the time cap is a hang (the child is killed), a
//! child that dies mid-program is an abort; either way a new child goes on
//! with the next program.
use super::worker::Job;
use saelab::script::fuzz::OutcomeClass;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// Caps on each child.
pub struct Limits {
    /// How long one program may run.
    pub program_timeout: Duration,
    /// RLIMIT_AS of the child: a huge allocation fails instead of waking the OOM killer.
    pub memory_gib: u64,
}

/// Starting libtorch and making the fixtures, before the first program.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);

/// A program that did not end well.
#[derive(Debug, Clone)]
pub struct Failure {
    pub index: u64,
    pub class: OutcomeClass,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub counts: BTreeMap<OutcomeClass, u64>,
    pub failures: Vec<Failure>,
}

impl Report {
    fn record(&mut self, index: u64, class: OutcomeClass, message: String) {
        *self.counts.entry(class).or_default() += 1;
        if class.is_failure() {
            self.failures.push(Failure {
                index,
                class,
                message,
            });
        }
    }
}

/// Runs every program of `job`, restarting the child after an abort or a hang.
pub fn run_batch(job: &Job, limits: &Limits) -> io::Result<Report> {
    let mut report = Report::default();
    let (first, end) = match job {
        Job::Generated { start, count, .. } => (*start, start + count),
        Job::Files(files) => (0, files.len() as u64),
    };
    let mut next = first;
    while next < end {
        let sandbox = sandbox_dir(next);
        let mut child = Worker::spawn(job, next, end, &sandbox, limits)?;
        next = child.watch(limits, &mut report, next);
        child.finish();
        let _ = std::fs::remove_dir_all(&sandbox);
    }
    Ok(report)
}

fn sandbox_dir(next: u64) -> PathBuf {
    std::env::temp_dir().join(format!("saelab-fuzz-{}-{next}", std::process::id()))
}

struct Worker {
    child: Child,
    lines: Receiver<String>,
    stderr: PathBuf,
    /// Added to the child's indices: a replay child numbers its files from 0.
    index_offset: u64,
}

impl Worker {
    /// `saelab fuzz --worker ...` under `ulimit -v`, for programs `from..end`.
    fn spawn(job: &Job, from: u64, end: u64, sandbox: &Path, limits: &Limits) -> io::Result<Self> {
        std::fs::create_dir_all(sandbox)?;
        let exe = std::env::current_exe()?;
        let stderr = sandbox.join("stderr.log");
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(r#"ulimit -v "$1" && shift && exec "$@""#)
            .arg("bash")
            .arg((limits.memory_gib * 1024 * 1024).to_string())
            .arg(exe)
            .args(["fuzz", "--worker", "--sandbox"])
            .arg(sandbox);
        match job {
            Job::Generated { seed, .. } => {
                command.args([
                    "--seed".to_string(),
                    seed.to_string(),
                    "--start".into(),
                    from.to_string(),
                    "--count".into(),
                    (end - from).to_string(),
                ]);
            }
            Job::Files(files) => {
                command.arg("--replay").args(&files[from as usize..]);
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(line) = line.strip_prefix("@@fuzz ") {
                    if sender.send(line.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let index_offset = match job {
            Job::Generated { .. } => 0,
            Job::Files(_) => from,
        };
        Ok(Worker {
            child,
            lines,
            stderr,
            index_offset,
        })
    }

    /// Records outcomes until the child ends, dies or hangs; returns the
    /// index of the next program to run (`from` is the child's first).
    fn watch(&mut self, limits: &Limits, report: &mut Report, from: u64) -> u64 {
        let mut current: Option<u64> = None;
        let mut next = from;
        loop {
            let timeout = if current.is_some() {
                limits.program_timeout
            } else {
                STARTUP_TIMEOUT
            };
            match self.lines.recv_timeout(timeout) {
                Ok(line) => {
                    if let Some((index, outcome)) = parse_line(&line) {
                        let index = index + self.index_offset;
                        match outcome {
                            None => current = Some(index),
                            Some((class, message)) => {
                                report.record(index, class, message);
                                current = None;
                                next = index + 1;
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let index = current.unwrap_or(next);
                    let message = format!("no answer within {} s", timeout.as_secs());
                    report.record(index, OutcomeClass::Hang, message);
                    return index + 1;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    if let Some(index) = current {
                        let message = format!("{}; {}", describe(status), self.stderr_tail());
                        report.record(index, OutcomeClass::Abort, message);
                        return index + 1;
                    }
                    return next;
                }
            }
        }
    }

    fn stderr_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.stderr) {
            let _ = file.read_to_string(&mut text);
        }
        // The line that says why: Rust's allocation failure or panic,
        // libtorch's uncaught exception, or else the last line.
        const WHY: [&str; 5] = [
            "memory allocation of",
            "panicked at",
            "terminate called",
            "what():",
            "Error",
        ];
        let why = WHY
            .iter()
            .find_map(|key| text.lines().rev().find(|line| line.contains(key)));
        why.or_else(|| text.lines().last())
            .unwrap_or("")
            .trim()
            .to_string()
    }

    fn finish(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn describe(status: Option<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(status) => match status.signal() {
            Some(signal) => format!("the process died of signal {signal}"),
            None => format!("the process exited with {status}"),
        },
        None => "the process vanished".into(),
    }
}

/// `begin I` → (I, None); `end I CLASS MESSAGE` → (I, Some((class, message))).
fn parse_line(line: &str) -> Option<(u64, Option<(OutcomeClass, String)>)> {
    let mut parts = line.splitn(4, ' ');
    let kind = parts.next()?;
    let index = parts.next()?.parse().ok()?;
    match kind {
        "begin" => Some((index, None)),
        "end" => {
            let class = OutcomeClass::from_name(parts.next()?)?;
            let message = parts.next().unwrap_or("").replace("\\n", "\n");
            Some((index, Some((class, message))))
        }
        _ => None,
    }
}
