//! `saelab notebook`: cells run in one engine, the report holds every
//! output and inlined figure, a failing cell is named and stops the rest.
use crate::support::saelab;
use std::path::Path;

fn render(notebook: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    saelab()
        .arg("notebook")
        .arg(notebook)
        .arg("-o")
        .arg(out)
        .args(args)
        .current_dir(out.parent().unwrap())
        .output()
        .unwrap()
}

fn quickstart() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/quickstart.rhai")
}

#[test]
fn quickstart_report_holds_every_output_and_inlined_figure() {
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("report.html");
    let out = render(&quickstart(), &html_path, &["--set", "steps=40"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    for expected in [
        "shape=[2, 2], dtype=f32, device=cpu",  // printed tensor
        "<table",                               // table() output
        "gradient of sum(w*w) equals 2w: true", // print inside a cell
        "mean max cosine similarity",           // state carried across cells
        "data:image/png;base64,",               // the saved figure, inlined
    ] {
        assert!(html.contains(expected), "report lacks {expected:?}");
    }
    assert!(
        !html.contains("src=\"http"),
        "report must not load from the network"
    );
    let markdown = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(markdown.contains("```rhai"));
    assert!(dir.path().join("report_files").read_dir().unwrap().count() >= 1);
}

#[test]
fn imports_and_functions_carry_over_from_cell_to_cell() {
    let dir = tempfile::tempdir().unwrap();
    let notebook = dir.path().join("imports.rhai");
    std::fs::write(
        &notebook,
        "// %% Import\nimport \"stats\" as st;\nfn twice(v) { v * 2.0 }\n// %% Use\nprint(`mean ${twice(st::mean([1.0, 3.0]))}`);\n",
    )
    .unwrap();
    let html_path = dir.path().join("imports.html");
    let out = render(&notebook, &html_path, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("mean 4"),
        "the second cell did not see the import"
    );
}

#[test]
fn a_failing_cell_is_named_and_later_cells_do_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let notebook = dir.path().join("broken.rhai");
    std::fs::write(
        &notebook,
        "// %% Good\nlet x = ones([2]);\nprint(\"first ok\");\n// %% Bad\nlet y = x.reshape([3]);\n// %% Never\nprint(\"never printed\");\n",
    )
    .unwrap();
    let html_path = dir.path().join("broken.html");
    let out = render(&notebook, &html_path, &[]);
    assert_eq!(out.status.code(), Some(1));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("first ok"));
    assert!(
        html.contains("Cell 2 failed"),
        "report must name the failed cell"
    );
    assert!(
        html.contains("broken.rhai:5:11"),
        "error must point at the notebook's line"
    );
    assert!(html.contains("not run"));
    assert!(!html.contains("never printed</pre>"));
}

#[test]
fn notebooks_also_run_as_plain_scripts() {
    let out = saelab()
        .arg("run")
        .arg(quickstart())
        .args(["--set", "steps=10"])
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens the report in a real headless Chromium (installed by the helper
/// script when missing) and checks it renders without console errors.
#[test]
fn report_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("report.html");
    let out = render(&quickstart(), &html_path, &["--set", "steps=20"]);
    assert!(out.status.success());
    let shot = dir.path().join("shot.png");
    crate::support::assert_renders_in_chromium(&html_path, &shot);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let bytes = &pixels[..frame.buffer_size()];
    let distinct: std::collections::HashSet<&[u8]> =
        bytes.chunks(frame.color_type.samples()).collect();
    assert!(
        distinct.len() > 50,
        "screenshot looks blank ({} colours)",
        distinct.len()
    );
}

/// The reproduction notebook of *Scaling Monosemanticity*'s feature
/// reading, at its small setting: every cell runs, the report holds each
/// study's output and figure and opens in Chromium, and so does its dashboard.
#[test]
fn monosemanticity_notebook_runs_at_its_small_setting() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("report.html");
    let notebook = Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/monosemanticity.rhai");
    let run = dir.path().join("run");
    let out = render(
        &notebook,
        &html_path,
        &[
            "--set",
            "small=true",
            "--set",
            &format!("out={}", run.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    for expected in [
        "11 ran OK",
        "records(512 features over",
        "French: [&quot;feature",
        "top activations",
        "dashboard: ",
        "fraction with max |r| &lt;= 0.3",
        "10-nearest neighbours kept",
        "has_feature",
        "data:image/png;base64,",
    ] {
        assert!(html.contains(expected), "report lacks {expected:?}");
    }
    for figure in [
        "specificity.png",
        "neurons.png",
        "map.png",
        "completeness.png",
    ] {
        assert!(run.join(figure).is_file(), "{figure} was not written");
    }
    for page in [html_path.clone(), run.join("dashboard/index.html")] {
        crate::support::assert_renders_in_chromium(&page, &dir.path().join("shot.png"));
    }
}

/// The fenced blocks of a Markdown report: every cell's source and text
/// output, without the timings and paths that differ between runs.
fn fenced_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```")
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn percent_to_ipynb_and_back_round_trips_and_both_render_the_same_cells() {
    let dir = tempfile::tempdir().unwrap();
    let percent = "// %% [markdown]\n// # A study\n//\n// Prose with *emphasis*.\n\n// %% Setup\nlet xs = [1.0, 2.0, 3.0];\nprint(`sum ${xs.reduce(|a, b| a + b, 0.0)}`);\n\n// %% Table and figure\ntable([#{x: 1, y: 2.5}]);\nfigure().line(xs, [3.0, 1.0, 2.0]).save(\"fig.png\");\nxs.len()\n";
    let rhai_path = dir.path().join("study.rhai");
    std::fs::write(&rhai_path, percent).unwrap();
    let convert = |input: &Path, to: &str, output: &Path| {
        let out = saelab()
            .args(["notebook", "--to", to])
            .arg(input)
            .arg("-o")
            .arg(output)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ipynb_path = dir.path().join("study.ipynb");
    convert(&rhai_path, "ipynb", &ipynb_path);
    let notebook: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ipynb_path).unwrap()).unwrap();
    assert_eq!(notebook["metadata"]["kernelspec"]["name"], "saelab");
    assert_eq!(notebook["cells"].as_array().unwrap().len(), 3);
    let back = dir.path().join("back.rhai");
    convert(&ipynb_path, "rhai", &back);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), percent);

    let mut reports = Vec::new();
    for (name, input) in [("from-rhai", &rhai_path), ("from-ipynb", &ipynb_path)] {
        let out_dir = dir.path().join(name);
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = render(input, &out_dir.join("report.html"), &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
        assert!(
            html.contains("data:image/png;base64,"),
            "{name} lacks the figure"
        );
        reports.push(std::fs::read_to_string(out_dir.join("report.md")).unwrap());
    }
    let blocks = fenced_blocks(&reports[0]);
    assert!(blocks.iter().any(|b| b.contains("sum 6")), "{blocks:?}");
    assert_eq!(fenced_blocks(&reports[1]), blocks);
}

#[test]
fn an_ipynb_error_names_the_cell_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.ipynb");
    std::fs::write(
        &path,
        r#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
            {"cell_type": "code", "id": "a", "metadata": {}, "outputs": [], "execution_count": null, "source": ["let x = 1;"]},
            {"cell_type": "code", "id": "b", "metadata": {}, "outputs": [], "execution_count": null, "source": ["let y = 2;\n", "let z = nope;"]}]}"#,
    )
    .unwrap();
    let out = render(&path, &dir.path().join("broken.html"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let html = std::fs::read_to_string(dir.path().join("broken.html")).unwrap();
    assert!(
        html.contains("broken.ipynb cell 2:2:9"),
        "error must name the cell"
    );
}

#[test]
fn the_shipped_quickstart_ipynb_is_the_percent_file_converted() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("quickstart.ipynb");
    let out = saelab()
        .args(["notebook", "--to", "ipynb"])
        .arg(quickstart())
        .arg("-o")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(out.status.success());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/quickstart.ipynb");
    assert_eq!(
        std::fs::read_to_string(&fresh).unwrap(),
        std::fs::read_to_string(&shipped).unwrap(),
        "regenerate with: saelab notebook --to ipynb notebooks/quickstart.rhai -o notebooks/quickstart.ipynb"
    );
}

#[test]
fn clear_output_drops_what_the_cell_showed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let notebook = dir.path().join("status.rhai");
    std::fs::write(
        &notebook,
        "// %% Status\nprint(\"step one of many\");\nclear_output();\nprint(\"final status\");\neprint(\"a warning\");\n",
    )
    .unwrap();
    let html_path = dir.path().join("status.html");
    let out = render(&notebook, &html_path, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("final status"));
    assert!(html.contains("a warning\n</pre>"), "eprint text is shown");
    assert!(!html.contains("step one of many</pre>"));
}
