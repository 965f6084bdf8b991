//! Figures from scripts: files appear, bad input is an error with a position.
use crate::support::{eval, eval_err};

#[test]
fn figures_save_png_and_svg_from_arrays_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("a/b.png").display().to_string();
    let svg = dir.path().join("c.svg").display().to_string();
    let heat = dir.path().join("h.png").display().to_string();
    let quick = dir.path().join("p.png").display().to_string();
    let _ = eval(&format!(
        "let fig = figure(#{{title: \"t\", log_x: true, log_y: true}});
         fig.line([1, 10, 100], [1.0, 0.1, 0.01], #{{label: \"fit\"}}).scatter(tensor([2.0, 20.0]), [0.5, 0.05]);
         fig.save(\"{png}\");
         figure().bars([\"1M\", \"4M\"], #{{alive: [98, 65], dead: [2, 35]}}).save(\"{svg}\");
         figure().heatmap(randn([8, 8])).save(\"{heat}\");
         plot([1, 2, 3], [3, 1, 2], \"{quick}\");"
    ));
    for name in ["a/b.png", "c.svg", "h.png", "p.png"] {
        assert!(
            dir.path().join(name).metadata().unwrap().len() > 1000,
            "{name} missing or empty"
        );
    }
}

#[test]
fn bad_plot_input_is_a_clear_error_with_position() {
    let err = eval_err("let fig = figure();\nfig.line([1, 2, 3], [1, 2]);");
    assert!(err.contains("line 2"), "{err}");
    assert!(
        err.to_lowercase().contains("length") || err.contains("3"),
        "{err}"
    );
    let log = eval_err("figure(#{log_y: true}).line([1, 2], [1.0, -1.0]).save(\"x.png\")");
    assert!(log.contains("-1"), "{log}");
    assert!(eval_err("figure().line([1, 2], [1, 2]).save(\"/tmp/x.jpgx\")").contains("jpgx"));
    assert!(eval_err("figure().hist([])").contains("no data"));
    assert!(eval_err("figure(#{titel: \"x\"})").contains("unknown option 'titel'"));
}
