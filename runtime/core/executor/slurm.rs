//! The Slurm executor: a job folder's tasks as one `sbatch --array` job.
//!
//! Each array element runs `saelab job task <dir> $SLURM_ARRAY_TASK_ID`.
//! The script asks for `--requeue` and `--signal=B:USR1@<secs>`: before the
//! time limit (or on `scancel --signal=USR1 --batch`, as preemption tools
//! do) the script tells the task to checkpoint and stop, then requeues its
//! own element, which resumes from that checkpoint. Resubmitting submits
//! only the tasks without a result that are not queued already.
use super::{JobDir, TaskState};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `#{slurm: #{...}}`: what each array element asks of the cluster. Every
/// field is optional; the cluster's defaults apply to what is left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--gpus-per-task`: Slurm sets each task's `CUDA_VISIBLE_DEVICES`.
    pub gpus_per_task: Option<u32>,
    /// `--cpus-per-task`; also each task's `OMP_NUM_THREADS`.
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. "16G".
    pub mem: Option<String>,
    /// `--time`, e.g. "02:00:00".
    pub time: Option<String>,
    /// Tasks running at once (`--array=...%max_parallel`).
    pub max_parallel: Option<u32>,
    /// `--account`.
    pub account: Option<String>,
    /// Further `sbatch` options, one per entry (`"--qos=low"`).
    #[serde(default)]
    pub extra: Vec<String>,
    /// Seconds before the time limit at which a task is told to checkpoint
    /// (`--signal=B:USR1@secs`); Slurm delivers it within a minute of that.
    #[serde(default = "default_signal_seconds")]
    pub signal_seconds: u32,
}

fn default_signal_seconds() -> u32 {
    120
}

/// One `sbatch` call: its job id and the tasks (array indices) it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub job_id: String,
    pub tasks: Vec<usize>,
    /// A harvest's merge job rather than tasks.
    #[serde(default)]
    pub merge: bool,
}

const SUBMISSIONS: &str = "submissions.json";
/// The array script's name in the job folder.
pub const SCRIPT: &str = "job.sbatch";

/// The `#SBATCH` lines every script of the job shares.
fn resource_lines(options: &SlurmOptions) -> Vec<String> {
    let mut lines = Vec::new();
    let mut add = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            lines.push(format!("#SBATCH --{flag}={value}"));
        }
    };
    add("partition", options.partition.clone());
    add("account", options.account.clone());
    add("ntasks", Some("1".into()));
    add(
        "gpus-per-task",
        options.gpus_per_task.map(|n| n.to_string()),
    );
    add(
        "cpus-per-task",
        options.cpus_per_task.map(|n| n.to_string()),
    );
    add("mem", options.mem.clone());
    add("time", options.time.clone());
    lines.extend(options.extra.iter().map(|e| format!("#SBATCH {e}")));
    lines
}

/// The array script: every task of `job`, at most `max_parallel` at once.
pub fn array_script(job: &JobDir, options: &SlurmOptions, program: &Path) -> String {
    let dir = job.path.display();
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("# Written by saelab: element i runs `saelab job task {dir} i`."),
        format!("# `saelab job status|submit|collect {dir}` watches, resubmits unfinished tasks, collects."),
        format!("#SBATCH --job-name={}", job_name(job)),
        format!("#SBATCH --array={}", array_spec(&(0..job.spec.tasks).collect::<Vec<_>>(), options)),
        "#SBATCH --requeue".into(),
        format!("#SBATCH --signal=B:USR1@{}", options.signal_seconds),
        "#SBATCH --open-mode=append".into(),
        format!("#SBATCH --output={dir}/logs/%5a.log"),
    ];
    lines.extend(resource_lines(options));
    lines.push(String::new());
    lines.push(
        TASK_BODY
            .replace("{program}", &quoted(program))
            .replace("{dir}", &quoted(&job.path)),
    );
    lines.join("\n")
}

/// Runs the task in the background so the script can catch USR1: the task
/// stops at its next step with a checkpoint (SIGINT, as Ctrl-C), and the
/// element goes back to the queue to resume from it.
const TASK_BODY: &str = r#"if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK; fi
requeue() {
  trap '' USR1
  echo "saelab: USR1 at $(date -u +%FT%TZ): checkpointing, then requeueing ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  kill -INT "$task" 2>/dev/null
  wait "$task"
  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  exit 0
}
trap requeue USR1
echo "saelab: task $SLURM_ARRAY_TASK_ID (batch pid $$) on $(hostname) at $(date -u +%FT%TZ), restart ${SLURM_RESTART_COUNT:-0}"
{program} job task {dir} "$SLURM_ARRAY_TASK_ID" &
task=$!
wait "$task"
"#;

/// A harvest's merge: one job after every task succeeded (`afterok`).
pub fn merge_script(job: &JobDir, options: &SlurmOptions, program: &Path) -> String {
    let dir = job.path.display();
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("# Written by saelab: merges the tasks of {dir} into one store."),
        format!("#SBATCH --job-name={}-merge", job_name(job)),
        format!("#SBATCH --output={dir}/logs/merge.log"),
        "#SBATCH --open-mode=append".into(),
        // A task that failed makes the dependency unsatisfiable: drop the
        // merge then; resubmitting the task submits a new one.
        "#SBATCH --kill-on-invalid-dep=yes".into(),
    ];
    lines.extend(resource_lines(&SlurmOptions {
        gpus_per_task: None,
        ..options.clone()
    }));
    lines.push(String::new());
    lines.push(format!(
        "{} job merge {}",
        quoted(program),
        quoted(&job.path)
    ));
    lines.join("\n") + "\n"
}

fn job_name(job: &JobDir) -> String {
    let folder = job
        .path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    format!("saelab-{}-{folder}", job.spec.kind).replace([' ', '\''], "_")
}

/// A path in single quotes for bash.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// `0-3,7,9-10%2`: the tasks as Slurm's array ranges, with the limit.
pub fn array_spec(tasks: &[usize], options: &SlurmOptions) -> String {
    let mut ranges: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tasks.len() {
        let start = tasks[i];
        while i + 1 < tasks.len() && tasks[i + 1] == tasks[i] + 1 {
            i += 1;
        }
        ranges.push(if tasks[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", tasks[i])
        });
        i += 1;
    }
    let mut spec = ranges.join(",");
    if let Some(limit) = options.max_parallel {
        spec.push_str(&format!("%{limit}"));
    }
    spec
}

/// Runs `sbatch --parsable ARGS`, returning the job id.
fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .arg(script)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::invalid(
                "sbatch is not on PATH: submit from a Slurm login node, or use #{local: #{workers: N}}",
            ),
            _ => Error::invalid(format!("cannot run sbatch: {e}")),
        })?;
    if !output.status.success() {
        return Err(Error::invalid(format!(
            "sbatch refused {}: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // `--parsable` prints "id" or "id;cluster".
    let id = text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::invalid(format!(
            "sbatch printed '{}', not a job id",
            text.trim()
        )));
    }
    Ok(id)
}

/// Submits the tasks of `job` that have no result and are not queued; with
/// `merge`, also a merge job that starts when they all succeed. Returns the
/// new submissions (none when every task is done or queued).
pub fn submit(
    job: &JobDir,
    options: &SlurmOptions,
    program: &Path,
    merge: bool,
) -> Result<Vec<Submission>> {
    let script = job.path.join(SCRIPT);
    crate::fs::write_atomic(&script, &array_script(job, options, program))?;
    let queued = queue_states(job)?;
    let tasks: Vec<usize> = job
        .unfinished()
        .into_iter()
        .filter(|task| !queued.contains_key(task))
        .collect();
    let mut submitted = Vec::new();
    if !tasks.is_empty() {
        let array = format!("--array={}", array_spec(&tasks, options));
        let job_id = sbatch(&[array], &script)?;
        submitted.push(record(
            job,
            Submission {
                job_id,
                tasks,
                merge: false,
            },
        )?);
    }
    let merge_queued = queued.contains_key(&usize::MAX);
    if merge && !merge_queued && (!submitted.is_empty() || !queued.is_empty()) {
        let fresh = submitted.first().map(|s: &Submission| &s.job_id);
        let merge_job = submit_merge(job, options, program, &queued, fresh)?;
        submitted.push(merge_job);
    }
    Ok(submitted)
}

/// The merge job, after every task submission that still has tasks queued.
fn submit_merge(
    job: &JobDir,
    options: &SlurmOptions,
    program: &Path,
    queued: &BTreeMap<usize, TaskState>,
    fresh: Option<&String>,
) -> Result<Submission> {
    let merge_path = job.path.join("merge.sbatch");
    crate::fs::write_atomic(&merge_path, &merge_script(job, options, program))?;
    let all = submissions(job)?;
    let ids: Vec<String> = all
        .iter()
        .filter(|s| {
            !s.merge && (fresh == Some(&s.job_id) || s.tasks.iter().any(|t| queued.contains_key(t)))
        })
        .map(|s| s.job_id.clone())
        .collect();
    let dependency = format!("--dependency=afterok:{}", ids.join(":"));
    let job_id = sbatch(&[dependency], &merge_path)?;
    record(
        job,
        Submission {
            job_id,
            tasks: Vec::new(),
            merge: true,
        },
    )
}

fn record(job: &JobDir, submission: Submission) -> Result<Submission> {
    let mut all = submissions(job)?;
    all.push(submission.clone());
    let text = serde_json::to_string_pretty(&all)
        .map_err(|e| Error::invalid(format!("cannot serialise the submissions: {e}")))?;
    crate::fs::write_atomic(&job.path.join(SUBMISSIONS), &(text + "\n"))?;
    Ok(submission)
}

/// Every submission of `job` so far, oldest first.
pub fn submissions(job: &JobDir) -> Result<Vec<Submission>> {
    let path = job.path.join(SUBMISSIONS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// The job's tasks Slurm still holds (queued or running), from `squeue`;
/// empty where `squeue` is missing. A merge job is task `usize::MAX`.
pub fn queue_states(job: &JobDir) -> Result<BTreeMap<usize, TaskState>> {
    let ours = submissions(job)?;
    if ours.is_empty() {
        return Ok(BTreeMap::new());
    }
    let Ok(output) = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%T"])
        .output()
    else {
        return Ok(BTreeMap::new());
    };
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(parse_queue(&text, &ours))
}

/// The last state Slurm's accounting recorded for each of the job's tasks,
/// from `sacct`; empty where `sacct` is missing or accounting is off (as in
/// a cluster without slurmdbd).
fn accounting_states(job: &JobDir) -> Result<BTreeMap<usize, String>> {
    let ours = submissions(job)?;
    let ids: Vec<&str> = ours
        .iter()
        .filter(|s| !s.merge)
        .map(|s| s.job_id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let output = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "JobID,State", "-j", &ids.join(",")])
        .output();
    match output {
        Ok(output) if output.status.success() => Ok(parse_accounting(
            &String::from_utf8_lossy(&output.stdout),
            &ours,
        )),
        _ => Ok(BTreeMap::new()),
    }
}

/// `sacct -n -P -X -o JobID,State` lines (`123_4|TIMEOUT`, `123_5|CANCELLED by 0`)
/// as the states of our tasks; a later submission's line wins.
fn parse_accounting(text: &str, ours: &[Submission]) -> BTreeMap<usize, String> {
    let mut states = BTreeMap::new();
    for submission in ours.iter().filter(|s| !s.merge) {
        for line in text.lines() {
            let Some((id, state)) = line.trim().split_once('|') else {
                continue;
            };
            let Some((job_id, index)) = id.split_once('_') else {
                continue;
            };
            if let (true, Ok(task)) = (job_id == submission.job_id, index.parse::<usize>()) {
                let word = state.split_whitespace().next().unwrap_or(state);
                states.insert(task, word.to_string());
            }
        }
    }
    states
}

/// `squeue -h -r -o %i|%T` lines (`123_4|RUNNING`) as states of our tasks.
fn parse_queue(text: &str, ours: &[Submission]) -> BTreeMap<usize, TaskState> {
    let mut states = BTreeMap::new();
    for line in text.lines() {
        let Some((id, state)) = line.trim().split_once('|') else {
            continue;
        };
        let state = match state {
            "RUNNING" | "COMPLETING" | "CONFIGURING" | "STAGE_OUT" => TaskState::Running,
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED" | "RESIZING" => {
                TaskState::Pending
            }
            _ => continue,
        };
        let (job_id, task) = match id.split_once('_') {
            Some((job_id, index)) => (job_id, index.parse::<usize>().ok()),
            None => (id, None),
        };
        for submission in ours.iter().filter(|s| s.job_id == job_id) {
            let key = if submission.merge {
                Some(usize::MAX)
            } else {
                task
            };
            if let Some(key) = key {
                states.insert(key, state.clone());
            }
        }
    }
    states
}

/// Each task's state: the queue's word for tasks Slurm holds, the folder's
/// for the rest; a submitted task that left the queue without a result
/// failed, with Slurm's accounting word (TIMEOUT, OUT_OF_MEMORY, ...) when
/// `sacct` can say.
pub fn states(job: &JobDir) -> Result<Vec<TaskState>> {
    let queued = queue_states(job)?;
    let accounted = accounting_states(job)?;
    let submitted: Vec<usize> = submissions(job)?
        .into_iter()
        .flat_map(|s| s.tasks)
        .collect();
    let files = job.file_states();
    Ok(files
        .into_iter()
        .enumerate()
        .map(|(task, state)| match (state, queued.get(&task)) {
            (TaskState::Done, _) => TaskState::Done,
            (_, Some(queued)) => queued.clone(),
            (TaskState::Pending, None) if submitted.contains(&task) => TaskState::Failed(format!(
                "left the queue without a result{} (see {})",
                accounted
                    .get(&task)
                    .map(|state| format!(", Slurm says {state}"))
                    .unwrap_or_default(),
                job.log_path(task).display()
            )),
            (state, None) => state,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_lines_name_the_state_of_each_task_of_our_submissions() {
        let ours = vec![
            Submission {
                job_id: "7".into(),
                tasks: vec![0, 1, 2],
                merge: false,
            },
            Submission {
                job_id: "9".into(),
                tasks: vec![1],
                merge: false,
            },
        ];
        let text = "7_0|COMPLETED\n7_1|TIMEOUT\n7_2|CANCELLED by 0\n8_0|FAILED\n9_1|OUT_OF_MEMORY\n7_[3-4]|PENDING\n";
        let states = parse_accounting(text, &ours);
        assert_eq!(states.get(&0).map(String::as_str), Some("COMPLETED"));
        assert_eq!(states.get(&1).map(String::as_str), Some("OUT_OF_MEMORY"));
        assert_eq!(states.get(&2).map(String::as_str), Some("CANCELLED"));
        assert_eq!(states.len(), 3);
    }

    #[test]
    fn tasks_become_array_ranges_with_the_parallel_limit() {
        let options = SlurmOptions {
            max_parallel: Some(2),
            ..Default::default()
        };
        assert_eq!(array_spec(&[0, 1, 2, 3], &options), "0-3%2");
        assert_eq!(array_spec(&[1, 3, 4, 5, 9], &options), "1,3-5,9%2");
        assert_eq!(array_spec(&[7], &SlurmOptions::default()), "7");
    }

    #[test]
    fn the_array_script_asks_for_requeue_a_warning_signal_and_the_resources() {
        let dir = tempfile::tempdir().unwrap();
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            max_parallel: Some(8),
            time: Some("04:00:00".into()),
            extra: vec!["--qos=low".into()],
            signal_seconds: 120,
            ..Default::default()
        };
        let job = JobDir::create(
            dir.path(),
            crate::executor::JobSpec {
                format: crate::executor::job::FORMAT,
                kind: "sweep".into(),
                tasks: 6,
                settings: serde_json::json!({}),
                executor: crate::executor::Executor::Slurm(options.clone()),
            },
        )
        .unwrap();
        let script = array_script(&job, &options, Path::new("/opt/saelab"));
        for line in [
            "#SBATCH --array=0-5%8",
            "#SBATCH --requeue",
            "#SBATCH --signal=B:USR1@120",
            "#SBATCH --partition=gpu",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --time=04:00:00",
            "#SBATCH --qos=low",
            "trap requeue USR1",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "no '{line}' in\n{script}"
            );
        }
        let task = format!(
            "'/opt/saelab' job task '{}' \"$SLURM_ARRAY_TASK_ID\" &",
            job.path.display()
        );
        assert!(script.contains(&task), "{script}");
        let merge = merge_script(&job, &options, Path::new("/opt/saelab"));
        assert!(
            !merge.contains("gpus-per-task") && merge.contains("job merge"),
            "{merge}"
        );
    }

    #[test]
    fn the_queue_says_which_of_our_tasks_wait_or_run() {
        let ours = [
            Submission {
                job_id: "12".into(),
                tasks: vec![0, 1, 2],
                merge: false,
            },
            Submission {
                job_id: "13".into(),
                tasks: vec![],
                merge: true,
            },
        ];
        let text = "12_0|RUNNING\n12_2|PENDING\n99_1|RUNNING\n13|PENDING\n12_1|COMPLETED\n";
        let states = parse_queue(text, &ours);
        assert_eq!(states.get(&0), Some(&TaskState::Running));
        assert_eq!(states.get(&1), None);
        assert_eq!(states.get(&2), Some(&TaskState::Pending));
        assert_eq!(states.get(&usize::MAX), Some(&TaskState::Pending));
    }
}
