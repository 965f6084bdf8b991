//! The last line of defence (issue 14): a panic in a native function is a
//! script error with the call's position and a bug-report message, and the
//! session and its variables survive it, in every front end.
use crate::support::saelab;
use saelab::script::debug_functions::{self, DEBUG_FUNCTIONS_ENV};
use saelab::script::error::is_panic;
use saelab::script::{describe_error, new_engine, EngineOptions, Session};

fn session_with_debug_functions() -> Session {
    let mut engine = new_engine(EngineOptions::default());
    debug_functions::register(&mut engine);
    Session::with_engine(engine)
}

#[test]
fn a_panicking_binding_is_an_error_at_its_call_and_the_session_survives() {
    let mut session = session_with_debug_functions();
    let _ = session.eval("let kept = ones([2]);", None).unwrap();
    let err = session
        .eval("let a = 1;\nlet b = [1, debug_panic(\"boom\")];", None)
        .unwrap_err();
    assert!(is_panic(&err));
    let (message, position) = describe_error(&err);
    assert_eq!((position.line(), position.position()), (Some(2), Some(13)));
    assert!(message.starts_with("debug_panic: boom"), "{message}");
    assert!(message.contains("this is a bug in saelab"), "{message}");
    let sum = session.eval("kept.sum().item() + a", None).unwrap();
    assert_eq!(sum.as_float().unwrap(), 3.0);
}

#[test]
fn a_panic_inside_a_script_function_points_at_the_native_call() {
    let mut session = session_with_debug_functions();
    let err = session
        .eval(
            "fn inner(x) {\n    x + debug_panic(\"deep\")\n}\ninner(1)",
            None,
        )
        .unwrap_err();
    let (message, position) = describe_error(&err);
    assert_eq!((position.line(), position.position()), (Some(2), Some(9)));
    assert!(message.starts_with("debug_panic: deep"), "{message}");
}

#[test]
fn the_repl_reports_a_panic_with_its_position_and_keeps_the_variables() {
    let input = "let kept = 41;\nlet y = debug_panic(\"boom\");\nkept + 1\n";
    let (stdout, _) = crate::support::repl_with(input, &[(DEBUG_FUNCTIONS_ENV, "1")]);
    assert!(
        stdout.contains("error: line 1, column 9: debug_panic: boom (this is a bug in saelab"),
        "{stdout}"
    );
    assert!(stdout.contains("42"), "{stdout}");
}

#[test]
fn saelab_run_names_the_file_line_and_column_of_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bug.rhai");
    std::fs::write(&script, "let x = 1;\nlet y = debug_panic(\"boom\");\n").unwrap();
    let out = saelab()
        .env(DEBUG_FUNCTIONS_ENV, "1")
        .arg("run")
        .arg(&script)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:2:9: debug_panic: boom", script.display());
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn without_the_switch_a_release_build_has_no_debug_functions() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("probe.rhai");
    std::fs::write(&script, "debug_panic(\"boom\")\n").unwrap();
    let out = saelab()
        .env_remove(DEBUG_FUNCTIONS_ENV)
        .arg("run")
        .arg(&script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if cfg!(debug_assertions) {
        assert!(stderr.contains("debug_panic: boom"), "{stderr}");
    } else {
        assert!(stderr.contains("Function not found"), "{stderr}");
    }
}
