//! Text from scripts, corpora and model output never runs as markup in the
//! HTML saelab writes: payloads planted in every place a notebook report or
//! a dashboard shows text are loaded in headless Chromium, which must show
//! them as text and run none of them.
use crate::support::{dom_after_chromium_load, eval, saelab};
use std::path::Path;

/// What every payload runs if it ever executes: a mark on `<body>` that the
/// dumped DOM would show as `data-pwned="1"`.
const RUN: &str = "document.body.setAttribute('data-pwned','1')";

/// The payloads, each ending any element or attribute it might sit in.
fn payloads() -> Vec<String> {
    vec![
        format!("<script>{RUN}</script>"),
        format!("</textarea><script>{RUN}</script>"),
        format!("\"><img src=x onerror=\"{RUN}\">"),
        format!("'><svg onload=\"{RUN}\">"),
        format!("</pre></code><iframe srcdoc=\"<script>parent.{RUN}</script>\"></iframe>"),
    ]
}

/// Asserts that nothing ran and that `text` shows in the page as text.
fn assert_inert(dom: &str, page: &Path, shown: &[&str]) {
    assert!(
        !dom.contains("data-pwned=\"1\""),
        "a payload ran in {}",
        page.display()
    );
    assert!(
        !dom.contains("<iframe") && !dom.contains("<svg onload") && !dom.contains("<img src=\"x\""),
        "markup from a payload reached {}'s DOM",
        page.display()
    );
    for text in shown {
        let as_text = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            dom.contains(&as_text),
            "{} does not show {text:?} as text",
            page.display()
        );
    }
}

/// Rhai string literal for `text`.
fn rhai_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn notebook_reports_show_planted_markup_as_text_and_run_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = payloads();
    let joined = payloads.concat();
    let mut notebook = String::new();
    // A Markdown cell: raw HTML blocks and inline HTML, a javascript: link,
    // autolink and image, and a payload in the cell's title.
    notebook.push_str(&format!("// %% [markdown] {}\n", payloads[2]));
    for payload in &payloads {
        notebook.push_str(&format!("// {payload}\n//\n// text {payload} inline\n//\n"));
    }
    notebook.push_str(&format!(
        "// [click](javascript:{RUN}) <javascript:{RUN}> ![x](javascript:{RUN})\n\n"
    ));
    // A code cell whose title, printed output, value and table carry them.
    notebook.push_str(&format!("// %% {}\n", payloads[0]));
    notebook.push_str(&format!("print({});\n", rhai_string(&joined)));
    notebook.push_str(&format!(
        "table([#{{{}: {}, plain: {}}}]);\n",
        rhai_string(&payloads[1]),
        rhai_string(&payloads[2]),
        rhai_string(&payloads[3])
    ));
    notebook.push_str(&format!("{}\n\n", rhai_string(&payloads[4])));
    // A figure whose title, axis labels and legend carry them: the report
    // inlines it as an image, and the SVG file itself must escape them.
    notebook.push_str(&format!(
        "// %% Figure\nfigure(#{{title: {}, x_label: {}, y_label: {}}})\n    .line([1.0, 2.0], [1.0, 3.0], #{{label: {}}})\n    .save(\"hostile.svg\");\n\n",
        rhai_string(&payloads[0]),
        rhai_string(&payloads[2]),
        rhai_string(&payloads[3]),
        rhai_string(&payloads[1])
    ));
    // A failing cell, whose error message carries them.
    notebook.push_str(&format!(
        "// %% {}\nthrow {};\n",
        payloads[3],
        rhai_string(&joined)
    ));
    let source = dir.path().join("hostile.rhai");
    std::fs::write(&source, notebook).unwrap();
    let html_path = dir.path().join("report.html");
    let out = saelab()
        .arg("notebook")
        .arg(&source)
        .arg("-o")
        .arg(&html_path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        html_path.is_file(),
        "no report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        !html.contains("<script"),
        "the report holds a script element"
    );
    let dom = dom_after_chromium_load(&html_path, &dir.path().join("dom.html"));
    let shown: Vec<&str> = payloads.iter().map(String::as_str).collect();
    assert_inert(&dom, &html_path, &shown);
    assert!(
        !dom.contains("href=\"javascript:"),
        "a javascript: link survived"
    );
    // Opened on its own, an SVG runs scripts: the figure must hold only text.
    let svg = dir.path().join("hostile.svg");
    let svg_dom = dom_after_chromium_load(&svg, &dir.path().join("svg-dom.html"));
    assert_eq!(svg_dom.matches("<svg").count(), 1, "{svg_dom}");
    for markup in ["<script", "<iframe", "<img", "data-pwned=\"1\""] {
        assert!(
            !svg_dom.contains(markup),
            "the figure holds {markup}: {svg_dom}"
        );
    }
    assert!(svg_dom.contains("&lt;script&gt;"), "{svg_dom}");
}

#[test]
fn dashboards_show_planted_corpus_text_as_text_and_run_none_of_it() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A corpus made of the payloads: every example a dashboard shows, and
    // every promoted token, is text from it.
    let text: String = (0..40)
        .map(|i| {
            format!(
                "Document {i} says {} and then more words.\n",
                payloads().concat()
            )
        })
        .collect();
    std::fs::write(dir.path().join("hostile.txt"), text).unwrap();
    let dash = dir.path().join("dashboard");
    let _ = eval(&format!(
        r#"
        seed(0);
        let m = load_model();
        let store = m.harvest(corpus("{corpus}"), #{{layer: 3, tokens: 1024, context: 64, out: "{acts}"}});
        let s = sae(#{{d_in: m.d_model, n_features: 64, kind: "topk", k: 8}});
        s.train(store, #{{steps: 20, batch_size: 128, lr: 1e-3, progress: false}});
        dashboard(s, store, m, [0, 1, 2], "{dash}", #{{k: 4, quantiles: 2}})
        "#,
        corpus = dir.path().join("hostile.txt").display(),
        acts = dir.path().join("acts").display(),
        dash = dash.display()
    ));
    let mut seen_as_text = false;
    for page in [
        "index.html",
        "feature-0.html",
        "feature-1.html",
        "feature-2.html",
    ] {
        let path = dash.join(page);
        let dom = dom_after_chromium_load(&path, &dir.path().join(format!("{page}.dom")));
        assert_eq!(
            dom.matches("<script").count(),
            1,
            "{page} holds a script besides the table sorter"
        );
        // A feature that never fired has no examples: the text is checked
        // across the pages.
        assert_inert(&dom, &path, &[]);
        seen_as_text |= dom.contains("&lt;") && dom.contains("img");
    }
    assert!(seen_as_text, "no page shows the payloads' text");
}
