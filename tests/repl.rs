//! The REPL driven through stdin: multi-line input, state across lines,
//! errors that do not end the session, `:help`, `:load`.
use crate::support::repl;

#[test]
fn state_is_kept_across_lines() {
    let (out, _) = repl("let x = ones([2, 2]);\nx.sum().item()\n:quit\n");
    assert!(out.contains("4.0"), "{out}");
}

#[test]
fn unfinished_blocks_continue_on_the_next_line() {
    let (out, _) = repl("fn double(t) {\n  t * 2\n}\ndouble(21)\n");
    assert!(out.contains("42"), "{out}");
}

#[test]
fn an_error_does_not_end_the_session() {
    let (out, _) = repl("let x = ones([3]);\nx.reshape([7])\nx.sum().item()\n");
    assert!(out.contains("error: line 1"), "{out}");
    assert!(out.contains("3.0"), "{out}");
}

#[test]
fn imports_persist_for_later_lines() {
    let (out, _) = repl("import \"stats\" as stats;\nstats::mean([2, 4])\n");
    assert!(out.contains("3.0"), "{out}");
}

#[test]
fn help_lists_topics_and_describes_functions() {
    let (out, _) = repl(":help\n:help topk\n:help nope_nothing\n");
    assert!(out.contains("tensor —"), "{out}");
    assert!(
        out.contains("topk(t: Tensor, k: i64)") || out.contains("topk("),
        "{out}"
    );
    assert!(out.contains("The k largest values"), "{out}");
    assert!(out.contains("no function named 'nope_nothing'"), "{out}");
    // The stdlib modules' closures are not listed as functions.
    assert!(!out.contains("anon$"), "{out}");
    assert!(out.contains("scaling::"), "{out}");
}

#[test]
fn load_runs_a_file_into_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.rhai");
    std::fs::write(&file, "let loaded = 5;\nfn triple(x) { x * 3 }\n").unwrap();
    let (out, _) = repl(&format!(":load {}\ntriple(loaded)\n", file.display()));
    assert!(out.contains("15"), "{out}");
}

/// Ctrl-C (SIGINT) during a long evaluation stops it and the session goes on
/// with its variables. The signal is re-sent until the loop is seen to stop,
/// so a slow start cannot make the test hang or flake.
#[test]
fn ctrl_c_interrupts_a_running_evaluation_and_keeps_the_session() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::support::spawn_repl(dir.path());
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"let kept = 7;\nlet i = 0; while true { i += 1; }\nkept * 6\n:quit\n")
        .unwrap();
    drop(stdin);
    // The banner is printed after the SIGINT handler is installed; before
    // that, a signal would simply kill the process.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut banner).unwrap();
    let pid = child.id().to_string();
    for _ in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let stdout = format!("{banner}{rest}");
    assert!(status.success(), "REPL died: {stdout}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(
        stdout.contains("42"),
        "variables must survive the interrupt: {stdout}"
    );
}
