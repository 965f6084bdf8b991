//! A training run killed for real (SIGKILL, from outside) resumes from its
//! last checkpoint and ends exactly where an uninterrupted run ends; a
//! diverging run stops with a clear error and leaves a loadable checkpoint.
use crate::support::{eval_err, float, saelab};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// 3000 small steps from an activation store, a checkpoint every 50: the
/// first checkpoint appears early, so there is time to kill the run.
const TRAIN: &str = r#"
seed(3);
let toy = superposition(#{n_true: 64, d: 16, active: 3, tokens: 4096});
let s = sae(#{d_in: 16, n_features: 64});
let r = s.train(store_from_tensor(toy.x), #{steps: 3000, batch_size: 64, lr: 1e-2, dead_window: 2048,
    checkpoint_dir: out + "/checkpoints", checkpoint_every: 50, log_every: 50, progress: false});
s.save(out + "/sae");
print(`resumed_from=${r.resumed_from} steps=${r.steps} tokens=${r.tokens} history=${r.history.len()}`);
"#;

fn train(script: &Path, out: &Path) -> std::process::Command {
    let mut command = saelab();
    command
        .env("OMP_NUM_THREADS", "1")
        .arg("run")
        .arg(script)
        .args(["--set", &format!("out={}", out.display())]);
    command
}

fn finish(script: &Path, out: &Path) -> String {
    let done = train(script, out).output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    String::from_utf8_lossy(&done.stdout).trim().to_string()
}

#[test]
fn a_killed_training_resumes_from_its_last_checkpoint_and_ends_as_an_unbroken_run() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("train.rhai");
    std::fs::write(&script, TRAIN).unwrap();
    let (straight, killed) = (dir.path().join("straight"), dir.path().join("killed"));

    let mut child = train(&script, &killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = killed.join("checkpoints/latest");
    while !latest.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed");
    assert!(!killed.join("sae").exists());

    let resumed = finish(&script, &killed);
    let from: u64 = resumed
        .strip_prefix("resumed_from=")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not resumed: {resumed}"));
    assert!(
        (50..3000).contains(&from) && from.is_multiple_of(50),
        "{resumed}"
    );
    assert!(
        resumed.ends_with("steps=3000 tokens=192000 history=60"),
        "{resumed}"
    );
    assert_eq!(
        finish(&script, &straight),
        "resumed_from= steps=3000 tokens=192000 history=60"
    );
    let weights = |out: &Path| std::fs::read(out.join("sae/sae_weights.safetensors")).unwrap();
    assert!(
        weights(&killed) == weights(&straight),
        "the resumed run's SAE differs from the unbroken run's"
    );
    let history =
        |out: &Path| std::fs::read_to_string(out.join("checkpoints/history.csv")).unwrap();
    let strip_speed = |csv: String| -> Vec<String> {
        // tokens_per_sec, the last column, is a timing.
        csv.lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(rest, _)| rest).to_string())
            .collect()
    };
    assert_eq!(
        strip_speed(history(&killed)),
        strip_speed(history(&straight))
    );
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_keeps_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints").display().to_string();
    let err = eval_err(&format!(
        "seed(1);
         let toy = superposition(#{{n_true: 64, d: 16, active: 3, tokens: 2048}});
         let s = sae(#{{d_in: 16, n_features: 64}});
         s.train(store_from_tensor(toy.x), #{{steps: 50, batch_size: 64, lr: 1e30, max_grad_norm: 1e30,
             checkpoint_dir: {checkpoints:?}, checkpoint_every: 1, progress: false}})"
    ));
    assert!(
        err.contains("the loss became") && err.contains("last good checkpoint is"),
        "{err}"
    );
    let latest = std::fs::read_to_string(dir.path().join("checkpoints/latest")).unwrap();
    assert!(err.contains(latest.trim()), "{err} does not name {latest}");
    let kept = dir.path().join("checkpoints").join(latest.trim());
    // NaN compares false, so a NaN or Inf weight makes this at least 1e38.
    let largest = float(&format!(
        "let s = load_sae({:?}); let big = max(s.decoder.abs().max().item(), s.encoder.abs().max().item());
         if big < 1e38 {{ big }} else {{ 1e38 }}",
        kept.display().to_string()
    ));
    assert!(largest < 1e38, "the kept checkpoint is not finite");
}
