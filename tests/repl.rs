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
}

#[test]
fn load_runs_a_file_into_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.rhai");
    std::fs::write(&file, "let loaded = 5;\nfn triple(x) { x * 3 }\n").unwrap();
    let (out, _) = repl(&format!(":load {}\ntriple(loaded)\n", file.display()));
    assert!(out.contains("15"), "{out}");
}
