//! The command line: `run` with `--set`, imports beside the script, `--help`.
use crate::support::{run_script, saelab};

#[test]
fn run_passes_set_values_as_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_script(
        dir.path(),
        "vars.rhai",
        "print(`${steps + 1} ${lr * 2.0} ${name} ${flag}`);",
        &[
            "--set",
            "steps=41",
            "--set",
            "lr=0.25",
            "--set",
            "name=relu",
            "--set",
            "flag=true",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42 0.5 relu true"
    );
}

#[test]
fn bad_set_syntax_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_script(dir.path(), "x.rhai", "1", &["--set", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=VALUE"));
}

#[test]
fn imports_resolve_beside_the_script() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("helpers.rhai"), "fn double(x) { x * 2 }").unwrap();
    let out = run_script(
        dir.path(),
        "main.rhai",
        "import \"helpers\" as h; print(h::double(21));",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}

#[test]
fn help_describes_the_commands() {
    let out = saelab().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("run") && text.contains("notebook"), "{text}");
}

#[test]
fn tables_print_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_script(
        dir.path(),
        "t.rhai",
        "table([#{name: \"a\", loss: 0.5}, #{name: \"bb\", loss: 12.25}]);",
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Rhai maps keep their keys sorted, so columns come in alphabetical order.
    assert!(text.contains(" loss  name"), "{text}");
    assert!(text.contains("12.25  bb"), "{text}");
}

/// The environment of a running REPL, read from /proc once its banner is out.
fn repl_environment(wait_policy: Option<&str>) -> String {
    use std::io::BufRead;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let mut command = saelab();
    command
        .env("SAELAB_HISTORY", dir.path().join("history"))
        .env_remove("OMP_WAIT_POLICY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(value) = wait_policy {
        command.env("OMP_WAIT_POLICY", value);
    }
    let mut child = command.spawn().unwrap();
    let mut banner = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    drop(child.stdin.take());
    child.wait().unwrap();
    String::from_utf8_lossy(&environ).replace('\0', "\n")
}

/// libgomp's default spin-waiting made harvesting 4× slower on shared cores;
/// saelab re-executes itself with the passive policy before libtorch starts work.
#[test]
fn openmp_waits_passively_unless_told_otherwise() {
    let environ = repl_environment(None);
    assert!(
        environ.lines().any(|l| l == "OMP_WAIT_POLICY=PASSIVE"),
        "{environ}"
    );
    let environ = repl_environment(Some("ACTIVE"));
    assert!(
        environ.lines().any(|l| l == "OMP_WAIT_POLICY=ACTIVE"),
        "{environ}"
    );
}
