//! Bad input is a clear error with a script position, never a crash.
use crate::support::{eval_err, run_script};

#[test]
fn shape_mismatch_is_an_error_with_position() {
    let err = eval_err("let a = ones([2, 3]);\nlet b = ones([4, 5]);\na @ b");
    assert!(
        err.contains("cannot be multiplied") || err.contains("shape"),
        "{err}"
    );
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn out_of_range_index_is_an_error() {
    let err = eval_err("let x = ones([3]); x[5]");
    assert!(err.contains("index 5 is out of range"), "{err}");
    assert!(eval_err("ones([3]).index_select(0, [7])").contains("out of range"));
    assert!(eval_err("ones([3]).sum(4)").contains("out of range"));
}

#[test]
fn wrong_dtype_is_an_error() {
    assert!(eval_err("ones([2]).to_dtype(\"complex\")").contains("unknown dtype"));
    assert!(eval_err("arange(4).mean()")
        .to_lowercase()
        .contains("dtype"));
    assert!(eval_err("let x = ones([3]); x[x]").contains("bool tensor"));
}

#[test]
fn bad_arguments_are_errors() {
    assert!(eval_err("zeros([2, -1])").contains(">= 0"));
    assert!(eval_err("tensor([[1, 2], [3]])").contains("rectangular"));
    assert!(eval_err("ones([3]).topk(9)").contains("topk"));
    assert!(eval_err("ones([2]).reshape([3])").contains("invalid"));
    assert!(eval_err("ones([2, 2]).backward()").contains("scalar"));
    assert!(eval_err("adam([ones([2])])").contains("requires_grad"));
    assert!(
        eval_err("adam([ones([2]).requires_grad()], #{lrr: 1})").contains("unknown option 'lrr'")
    );
    assert!(eval_err("ones([2]).to(\"tpu\")").contains("unknown device"));
    let cuda_9 = eval_err("ones([2]).to(\"cuda:9\")");
    assert!(
        cuda_9.contains("not available") && cuda_9.contains("line 1"),
        "{cuda_9}"
    );
    let fp8 = eval_err(
        "let s = sae(#{d_in: 4, n_features: 8});\ns.train(randn([64, 4]), #{steps: 1, precision: \"fp8\"})",
    );
    assert!(
        fp8.contains("unknown precision 'fp8'") && fp8.contains("line 2"),
        "{fp8}"
    );
}

#[test]
fn missing_and_corrupt_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"garbage").unwrap();
    assert!(eval_err(&format!("load_tensors(\"{}\")", bad.display()))
        .contains("not a readable safetensors"));
    assert!(eval_err("load_tensors(\"/nonexistent/x.safetensors\")").contains("no such file"));
}

#[test]
fn script_errors_exit_non_zero_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_script(
        dir.path(),
        "bad.rhai",
        "let x = ones([2]);\nlet y = x.reshape([5]);\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:2:11: ", dir.path().join("bad.rhai").display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("invalid for input of size 2"), "{stderr}");
}

#[test]
fn errors_inside_an_imported_module_name_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // A shipped module: `sig` takes a number; given text, it fails in its own body.
    let stdlib = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/scaling.rhai"),
    )
    .unwrap();
    let line = 1 + stdlib
        .lines()
        .position(|l| l.contains("let e = x.abs()"))
        .unwrap();
    let out = run_script(
        dir.path(),
        "uses_stdlib.rhai",
        "import \"scaling\" as scaling;\nscaling::sig(\"text\", 2)\n",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("stdlib/scaling.rhai:{line}:")),
        "{stderr}"
    );
    // A module of the user's own, beside the script.
    std::fs::write(
        dir.path().join("helper.rhai"),
        "fn check(x) {\n    let y = x + 1;\n    throw `bad ${y}`;\n}\n",
    )
    .unwrap();
    let out = run_script(
        dir.path(),
        "uses_helper.rhai",
        "import \"helper\" as h;\n\nh::check(1)\n",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("helper.rhai:3:5: bad 2"), "{stderr}");
}

#[test]
fn syntax_errors_report_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_script(dir.path(), "syntax.rhai", "let x = 1;\nlet = 2;\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("syntax.rhai:2:"), "{stderr}");
}

#[test]
fn missing_script_is_an_error() {
    let out = crate::support::saelab()
        .args(["run", "/nonexistent/script.rhai"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/script.rhai"));
}

#[test]
fn bad_options_name_the_key_and_keep_the_script_position() {
    let err = eval_err("sae(#{d_in: 4, n_features: 8, bogus: 1})");
    assert!(
        err.contains("sae: unknown option 'bogus'") && err.contains("(line 1, position 1)"),
        "{err}"
    );
    let train = |options: &str| {
        eval_err(&format!(
            "let s = sae(#{{d_in: 4, n_features: 8}});\ns.train(randn([64, 4]), #{{{options}}})"
        ))
    };
    let err = train("lr: \"fast\"");
    assert!(
        err.contains("train: option 'lr' must be a number, got string \"fast\"")
            && err.contains("(line 2, position 3)"),
        "{err}"
    );
    let err = train("steps: 1000.0");
    assert!(
        err.contains("option 'steps' must be an integer >= 0"),
        "{err}"
    );
    let err = train("lr: 0.0 / 0.0");
    assert!(err.contains("option 'lr' must be a finite number"), "{err}");
}

#[test]
fn an_integer_option_fills_a_float_setting() {
    let steps = crate::support::eval(
        "let s = sae(#{d_in: 4, n_features: 8, l1: 1, decoder_init_norm: 1});
         s.train(randn([64, 4]), #{lr: 1, steps: 2, batch_size: 8, progress: false}).steps",
    );
    assert_eq!(steps.as_int().unwrap(), 2);
}
