//! Sweeps and harvests as jobs on the local executor (a pool of `saelab`
//! processes over a job folder): a split harvest's merged store is the
//! one-machine harvest, row for row and bit for bit, and a pooled sweep's
//! CSV is the in-process sweep's. tests/slurm.rs runs the same through Slurm.
use crate::model::model_present;
use crate::support::{run_script, saelab};
use saelab::core::activations::Store;
use std::path::Path;

const TEXTS: [&str; 3] = [
    "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the strait connecting San Francisco Bay and the Pacific Ocean.",
    "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.",
];

/// A small corpus of repeated texts in `dir/corpus.jsonl`.
pub fn write_corpus(dir: &Path) {
    let lines: Vec<String> = TEXTS
        .iter()
        .cycle()
        .take(60)
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(dir.join("corpus.jsonl"), lines.join("\n")).unwrap();
}

/// The harvest both runs share: 3-window batches, 100-row shards, so the
/// one-machine store's shards begin elsewhere than the tasks' do.
pub const HARVEST: &str = "#{layer: 3, tokens: 700, context: 32, batch_size: 3, shard_rows: 100}";

/// A CSV's text without one column (a run's `seconds` differ between runs).
pub fn without_column(text: &str, column: &str) -> String {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let skip = header.iter().position(|c| *c == column);
    std::iter::once(header.join(","))
        .chain(lines.map(|line| line.to_string()))
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            cells
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != skip)
                .map(|(_, c)| *c)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The two CSVs hold the same rows, `seconds` aside.
pub fn assert_same_csv(pooled: &Path, local: &Path) {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let (pooled, local) = (read(pooled), read(local));
    assert_eq!(local.lines().count(), 5, "{local}");
    assert_eq!(
        without_column(&pooled, "seconds"),
        without_column(&local, "seconds")
    );
}

fn manifest_without_shards(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest.as_object_mut().unwrap().remove("shards");
    manifest
}

/// The merged store equals the one-machine store: manifest (apart from
/// where shards begin), scale, every row's bytes and origin.
pub fn assert_same_store(merged: &Path, whole: &Path) {
    assert_eq!(
        manifest_without_shards(merged),
        manifest_without_shards(whole)
    );
    let (a, b) = (Store::open(merged).unwrap(), Store::open(whole).unwrap());
    assert_eq!(a.len(), b.len());
    assert_eq!(
        a.scale().to_bits(),
        b.scale().to_bits(),
        "the scale, bit for bit"
    );
    let all: Vec<usize> = (0..a.len()).collect();
    let (rows_a, rows_b) = (a.rows(&all).unwrap(), b.rows(&all).unwrap());
    assert!(rows_a.equal(&rows_b), "the rows differ");
    for i in all {
        assert_eq!(a.row_info(i).unwrap(), b.row_info(i).unwrap(), "row {i}");
    }
}

#[test]
fn a_split_harvest_and_a_pooled_sweep_equal_their_one_machine_runs() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let d = dir.path().display();
    let script = format!(
        r#"
        let m = load_model();
        let c = corpus("{d}/corpus.jsonl");
        let whole = m.harvest(c, {HARVEST} + #{{out: "{d}/whole"}});
        let split = m.harvest(c, {HARVEST} + #{{out: "{d}/split", tasks: 3, executor: #{{local: #{{workers: 2}}}}}});
        print(`split ${{split.len}}`);
        // Longer windows, more separators per window, more tasks: batches shrink sooner near the end.
        let wide = #{{layer: 3, tokens: 650, context: 64, batch_size: 2, shard_rows: 150}};
        m.harvest(c, wide + #{{out: "{d}/whole64"}});
        m.harvest(c, wide + #{{out: "{d}/split64", tasks: 4, executor: #{{local: #{{workers: 2}}}}}});
        // A bf16 model's tasks harvest in bf16 too.
        let mb = load_model(#{{precision: "bf16"}});
        mb.harvest(c, {HARVEST} + #{{out: "{d}/whole_bf16"}});
        mb.harvest(c, {HARVEST} + #{{out: "{d}/split_bf16", tasks: 2, executor: #{{local: #{{workers: 2}}}}}});
        let grid = #{{n_features: [32, 64], lr: [0.001, 0.003]}};
        let cfg = #{{source: whole, kind: "relu", steps: 30, batch_size: 32, seed: 7, eval_tokens: 200}};
        sweep(grid, cfg + #{{csv: "{d}/local.csv"}});
        let rows = sweep(grid, cfg + #{{csv: "{d}/pool.csv", executor: #{{local: #{{workers: 2}}}}}});
        print(`pooled ${{rows.len()}}`);
        "#
    );
    let out = run_script(dir.path(), "jobs.rhai", &script, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("split 700") && stdout.contains("pooled 4"),
        "{stdout}"
    );
    assert_same_store(&dir.path().join("split"), &dir.path().join("whole"));
    assert_same_store(&dir.path().join("split64"), &dir.path().join("whole64"));
    assert_same_store(
        &dir.path().join("split_bf16"),
        &dir.path().join("whole_bf16"),
    );
    let manifest = std::fs::read_to_string(dir.path().join("split_bf16/manifest.json")).unwrap();
    assert!(manifest.contains(r#""precision": "bf16""#), "{manifest}");
    assert_same_csv(&dir.path().join("pool.csv"), &dir.path().join("local.csv"));
    // The merge moved the tasks' shards rather than copying them.
    let task_store = dir.path().join("split.job/tasks/00000/store");
    assert!(!task_store.join("shard-00000.npy").exists());

    // A resubmission runs only the task without a result, and the CSV
    // keeps one row per point.
    let job = dir.path().join("pool.job");
    std::fs::remove_file(job.join("tasks/00002/result.json")).unwrap();
    let log_lines = |task: &str| {
        let log = std::fs::read_to_string(job.join(format!("logs/{task}.log"))).unwrap();
        log.lines().count()
    };
    let before = (log_lines("00000"), log_lines("00002"));
    let out = saelab().args(["job", "submit"]).arg(&job).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("done 4"));
    assert_eq!(log_lines("00000"), before.0, "a finished task is not rerun");
    assert!(log_lines("00002") > before.1, "the unfinished task reran");
    let out = saelab()
        .args(["job", "collect"])
        .arg(&job)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_same_csv(&dir.path().join("pool.csv"), &dir.path().join("local.csv"));

    // Without sbatch, a Slurm sweep says so.
    let script = format!(
        r#"sweep(#{{n_features: [8]}}, #{{source: open_store("{d}/whole"), csv: "{d}/x.csv", steps: 1,
                  executor: #{{slurm: #{{partition: "gpu"}}}}}})"#
    );
    let path = dir.path().join("nosbatch.rhai");
    std::fs::write(&path, script).unwrap();
    let out = saelab()
        .arg("run")
        .arg(&path)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sbatch is not on PATH"),
        "{stderr}"
    );
}
