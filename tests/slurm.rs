//! Sweeps and split harvests through a real one-node Slurm cluster
//! (tests/support/slurm.rs): the array sweep's collected CSV equals the
//! in-process sweep's, with one grid point stopped by Slurm's warning
//! signal, requeued and resumed from its checkpoint; the 2-task harvest's
//! merged store equals the one-machine harvest. Skips, saying why, on a
//! machine without root or without slurm-wlm and munge.
use crate::jobs::{assert_same_csv, assert_same_store, write_corpus, HARVEST};
use crate::model::model_present;
use crate::support::slurm::Cluster;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// Bounds every wait on the cluster: generous, so only a stuck cluster fails.
const PATIENCE: Duration = Duration::from_secs(600);
/// The grid point stopped part way (the widest, longest run).
const KILLED: usize = 3;

fn succeeded(what: &str, out: &Output, cluster: &Cluster) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    stdout
}

fn saelab(cluster: &Cluster, args: &[&str]) -> Output {
    cluster
        .command(env!("CARGO_BIN_EXE_saelab"))
        .args(args)
        .output()
        .unwrap()
}

/// Waits for `ready` (checked every 200 ms), failing with `what` after PATIENCE.
fn wait_for<T>(what: &str, cluster: &Cluster, mut ready: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not within {} s; queue {:?}\n{}",
            PATIENCE.as_secs(),
            cluster.queue(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A checkpoint under a task's folder, once one is written.
fn has_checkpoint(task_dir: &Path) -> bool {
    let Ok(runs) = std::fs::read_dir(task_dir.join("checkpoints")) else {
        return false;
    };
    runs.flatten().any(|run| {
        std::fs::read_dir(run.path()).is_ok_and(|mut steps| {
            steps.any(|s| s.is_ok_and(|s| s.file_name().to_string_lossy().starts_with("step-")))
        })
    })
}

/// The pid of the batch script running task `index`, from its log.
fn batch_pid(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.contains("(batch pid "))?;
    let rest = line.split("(batch pid ").nth(1)?;
    Some(rest.split(')').next()?.to_string())
}

#[test]
fn a_sweep_and_a_split_harvest_through_slurm_equal_the_local_runs() {
    if !model_present() {
        return;
    }
    let Some(cluster) = Cluster::start_or_skip() else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let d = dir.path().display();
    let slurm = r#"#{slurm: #{time: "00:30:00", max_parallel: 2, signal_seconds: 60}}"#;
    // The grid's last point (64 features, 1500 steps) is the one stopped part way.
    let script = format!(
        r#"
        let m = load_model();
        let c = corpus("{d}/corpus.jsonl");
        let whole = m.harvest(c, {HARVEST} + #{{out: "{d}/whole"}});
        let job = m.harvest(c, {HARVEST} + #{{out: "{d}/split", tasks: 2, executor: {slurm}}});
        let merged = job.wait();
        print(`merged ${{merged.len}}`);
        let grid = #{{n_features: [32, 64], steps: [40, 1500]}};
        let cfg = #{{source: whole, kind: "relu", batch_size: 32, seed: 7, eval_tokens: 200, lr: 0.001}};
        sweep(grid, cfg + #{{csv: "{d}/local.csv"}});
        let array = sweep(grid, cfg + #{{csv: "{d}/slurm.csv", checkpoint_every: 20, executor: {slurm}}});
        print(`job ${{array.dir}}`);
        "#
    );
    let path = dir.path().join("submit.rhai");
    std::fs::write(&path, script).unwrap();
    let out = saelab(&cluster, &["run", &path.display().to_string()]);
    let stdout = succeeded("the submitting script", &out, &cluster);
    assert!(stdout.contains("merged 700"), "{stdout}");
    assert_same_store(&dir.path().join("split"), &dir.path().join("whole"));
    let harvest_seconds = started.elapsed().as_secs_f64();

    // Slurm's warning signal (what `--signal=B:USR1@60` sends before the time
    // limit) reaches the killed point's batch script once it has a checkpoint.
    let job = PathBuf::from(format!("{d}/slurm.job"));
    let task = job.join(format!("tasks/{KILLED:05}"));
    let log = job.join(format!("logs/{KILLED:05}.log"));
    let pid = wait_for("a checkpoint of the point to stop", &cluster, || {
        has_checkpoint(&task).then(|| batch_pid(&log)).flatten()
    });
    assert!(
        !task.join("result.json").exists(),
        "the point finished before it could be stopped"
    );
    let kill = std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap();
    assert!(kill.success());

    let timeout = PATIENCE.as_secs().to_string();
    let out = saelab(
        &cluster,
        &[
            "job",
            "wait",
            &job.display().to_string(),
            "--timeout",
            &timeout,
        ],
    );
    succeeded("saelab job wait", &out, &cluster);
    assert_same_csv(&dir.path().join("slurm.csv"), &dir.path().join("local.csv"));
    let log_text = std::fs::read_to_string(&log).unwrap();
    for sign in ["USR1", "restart 1", "resuming from"] {
        assert!(
            log_text.contains(sign),
            "no '{sign}' in the log:\n{log_text}"
        );
    }
    // The scheduler's refusal is an error that quotes it.
    let refused = dir.path().join("refused.rhai");
    let script = format!(
        r#"sweep(#{{n_features: [8]}}, #{{source: open_store("{d}/whole"), csv: "{d}/refused.csv", steps: 1,
                  executor: #{{slurm: #{{partition: "nosuch"}}}}}})"#
    );
    std::fs::write(&refused, script).unwrap();
    let out = saelab(&cluster, &["run", &refused.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sbatch refused"),
        "{stderr}"
    );

    let status = succeeded(
        "saelab job status",
        &saelab(&cluster, &["job", "status", &job.display().to_string()]),
        &cluster,
    );
    assert!(status.contains("done 4"), "{status}");
    eprintln!(
        "slurm test: harvests {harvest_seconds:.0} s, everything {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
