//! Shared helpers: evaluating scripts in-process and running the binary.
#![allow(dead_code)]
pub mod slurm;
use rhai::Dynamic;
use saelab::script::{new_engine, EngineOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Evaluates a script in a fresh engine and returns its value.
pub fn eval(script: &str) -> Dynamic {
    let engine = new_engine(EngineOptions::default());
    match engine.eval::<Dynamic>(script) {
        Ok(value) => value,
        Err(err) => panic!("script failed: {err}\n{script}"),
    }
}

/// Evaluates a script that must fail; returns the error message with its position.
pub fn eval_err(script: &str) -> String {
    let engine = new_engine(EngineOptions::default());
    match engine.eval::<Dynamic>(script) {
        Ok(value) => panic!("script succeeded with {value:?} but should fail:\n{script}"),
        Err(err) => err.to_string(),
    }
}

pub fn float(script: &str) -> f64 {
    let value = eval(script);
    value
        .as_float()
        .or_else(|_| value.as_int().map(|i| i as f64))
        .unwrap_or_else(|_| panic!("expected a number, got {}", value.type_name()))
}

pub fn floats(script: &str) -> Vec<f64> {
    eval(script)
        .into_typed_array::<f64>()
        .expect("expected an array of floats")
}

pub fn saelab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_saelab"))
}

/// Runs `saelab run` on a script written to a temporary file.
pub fn run_script(dir: &Path, name: &str, script: &str, args: &[&str]) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    saelab().arg("run").arg(&path).args(args).output().unwrap()
}

/// Runs a script shipped in the repository (`scripts/…`, `benches/…`) with
/// `--set` assignments, checks it succeeded, and returns its stdout.
pub fn run_shipped(script: &str, sets: &[String]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let mut cmd = saelab();
    cmd.arg("run").arg(&path);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A REPL process with piped stdio and its history kept in `dir`.
pub fn spawn_repl(dir: &Path) -> Child {
    spawn_repl_with(dir, &[])
}

/// [`spawn_repl`] with extra environment variables.
pub fn spawn_repl_with(dir: &Path, env: &[(&str, &str)]) -> Child {
    saelab()
        .env("SAELAB_HISTORY", dir.join("history"))
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Feeds lines to the REPL on stdin and returns (stdout, stderr).
pub fn repl(input: &str) -> (String, String) {
    repl_with(input, &[])
}

/// [`repl`] with extra environment variables.
pub fn repl_with(input: &str, env: &[(&str, &str)]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_repl_with(dir.path(), env);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn assert_close(actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= tol, "{actual:?} vs {expected:?}");
    }
}

/// Renders `page` in headless Chromium (`tests/support/chromium_check.sh`,
/// which installs it when missing) and fails the test if the page logs
/// console errors or no screenshot comes out; the screenshot goes to `shot`.
pub fn assert_renders_in_chromium(page: &Path, shot: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chromium_check.sh");
    let check = Command::new("bash")
        .arg(script)
        .arg(page)
        .arg(shot)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "chromium check of {} failed: {}{}",
        page.display(),
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Loads `page` in headless Chromium, lets its scripts and image error
/// handlers run, and returns the resulting DOM (also written to `out`).
pub fn dom_after_chromium_load(page: &Path, out: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chromium_check.sh");
    let check = Command::new("bash")
        .arg(script)
        .arg("--dump-dom")
        .arg(page)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "chromium could not load {}: {}{}",
        page.display(),
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    std::fs::read_to_string(out).unwrap()
}
