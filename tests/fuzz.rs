//! The grammar-based fuzzer (issue 14): a fixed-seed sample of generated
//! programs must give no panic, abort, hang or error without a position;
//! every program the fuzzer ever found failing (tests/fuzz_corpus/) must
//! stay fixed; and the driver must tell those outcomes apart.
use crate::support::saelab;
use saelab::script::debug_functions::DEBUG_FUNCTIONS_ENV;
use std::path::Path;

/// Programs in the `make test` sample (`make fuzz N=...` runs any number).
const SAMPLE: u64 = 5000;

/// The time cap per program is generous: a slow, loaded machine must not
/// turn a slow program into a "hang"; real hangs are found by `make fuzz`.
const TIMEOUT_SECS: &str = "600";

fn fuzz(args: &[&str]) -> (bool, String) {
    let out = saelab()
        .arg("fuzz")
        .args(["--timeout-secs", TIMEOUT_SECS])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    (out.status.success(), stdout)
}

#[test]
fn a_fixed_seed_sample_gives_no_panic_abort_hang_or_error_without_position() {
    let (ok, stdout) = fuzz(&["--seed", "1", "--count", &SAMPLE.to_string()]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains(&format!("fuzzed {SAMPLE} programs")),
        "{stdout}"
    );
    assert!(
        stdout.contains("error-without-position 0, panic 0, abort 0, hang 0"),
        "{stdout}"
    );
}

#[test]
fn every_program_the_fuzzer_found_stays_fixed() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let (ok, stdout) = fuzz(&["--replay", corpus.to_str().unwrap()]);
    assert!(ok, "{stdout}");
}

#[test]
fn the_driver_tells_panics_aborts_errors_and_successes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let programs = [
        ("a.rhai", "let x = 1 + 1;"),
        ("b.rhai", "let t = zeros([2]);\nt.reshape([3]);"),
        ("c.rhai", "debug_panic(\"boom\");"),
        ("d.rhai", "debug_abort();"),
        ("e.rhai", "let y = 2;"),
    ];
    for (name, text) in programs {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = saelab()
        .env(DEBUG_FUNCTIONS_ENV, "1")
        .args(["fuzz", "--timeout-secs", TIMEOUT_SECS, "--replay"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("ok 2, error 1, error-without-position 0, panic 1, abort 1, hang 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("panic in program 2: debug_panic: boom"),
        "{stdout}"
    );
    assert!(
        stdout.contains("abort in program 3: the process died of signal 6"),
        "{stdout}"
    );
}
