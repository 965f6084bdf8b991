//! Reading features on SmolLM2: records from one streaming pass agree with
//! the codes of the rows they name, examples carry their text and per-token
//! activations, dashboards render in Chromium with working links, and bad
//! requests are clear errors.
use crate::support::{eval, eval_err};
use std::path::Path;

/// A TopK SAE trained briefly on 4,096 harvested rows of layer 15, its
/// records, and `f`, a feature that fires on 0.5–5% of the rows.
fn setup(dir: &Path) -> String {
    crate::analysis::trained_sae_script(dir)
        + r#"
        let r = s.records(store, #{progress: false});
        let d = r.density;
        let f = -1;
        for i in 0..512 { if f < 0 && d[i] > 0.005 && d[i] < 0.05 { f = i; } }
        "#
}

#[test]
fn records_name_real_rows_and_examples_carry_their_text() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = eval(&format!(
        r#"{}
        let top = r.top(f, 3);
        let codes = s.encode(store.rows(top.map(|e| e.row)));
        let recomputed = top.map(|e| 0.0);
        for i in 0..3 {{ recomputed[i] = codes[i][f].item(); }}
        s.records(store, #{{path: "{}", progress: false}});
        let again = load_records("{}");
        let ex = s.examples(store, f, #{{model: m, k: 3, quantiles: 2, per_quantile: 2}});
        let first = ex.top[0];
        [top.map(|e| e.activation), recomputed, again.top(f, 3).map(|e| e.activation),
         first.activations[first.focus], first.activation, first.text, ex.quantiles.len(),
         ex.max, r.max[f], d[f] * r.rows]
        "#,
        setup(dir.path()),
        dir.path().join("records").display(),
        dir.path().join("records").display()
    ));
    let v = result.into_array().unwrap();
    let floats = |i: usize| v[i].clone().into_typed_array::<f64>().unwrap();
    let (top, recomputed, reloaded) = (floats(0), floats(1), floats(2));
    for (a, b) in top.iter().zip(&recomputed) {
        assert!(
            (a - b).abs() < 1e-3 * a.abs().max(1.0),
            "{top:?} vs {recomputed:?}"
        );
    }
    assert_eq!(top, reloaded, "records reopened from disk differ");
    assert!(top[0] >= top[1] && top[1] >= top[2]);
    let (at_focus, activation) = (v[3].as_float().unwrap(), v[4].as_float().unwrap());
    assert!((at_focus - activation).abs() < 1e-3 * activation.max(1.0));
    let text = v[5].clone().into_string().unwrap();
    assert!(text.contains("[[") && text.len() > 10, "{text}");
    assert!(v[6].as_int().unwrap() >= 1);
    assert_eq!(v[7].as_float().unwrap(), v[8].as_float().unwrap());
    let count = v[9].as_float().unwrap();
    assert!((count - count.round()).abs() < 1e-6 && count > 0.0);
}

#[test]
fn a_dashboard_renders_in_chromium_and_its_links_resolve() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dash = dir.path().join("dashboard");
    let returned = eval(&format!(
        r#"{}
        let near = s.neighbors(f, 2).map(|n| n.feature);
        dashboard(s, store, m, [f, near[0], 3], "{}", #{{k: 4, quantiles: 2}})
        "#,
        setup(dir.path()),
        dash.display()
    ));
    assert_eq!(
        returned.into_string().unwrap(),
        dash.join("index.html").display().to_string()
    );
    let index = std::fs::read_to_string(dash.join("index.html")).unwrap();
    let mut pages = 0;
    for entry in std::fs::read_dir(&dash).unwrap() {
        let path = entry.unwrap().path();
        let html = std::fs::read_to_string(&path).unwrap();
        for link in html.split("href=\"").skip(1) {
            let target = &link[..link.find('"').unwrap()];
            assert!(
                dash.join(target).is_file(),
                "{} links to missing {target}",
                path.display()
            );
        }
        pages += 1;
    }
    assert_eq!(pages, 4, "three feature pages and the index");
    assert!(index.contains("data-sort"));
    let page = std::fs::read_to_string(dash.join("feature-3.html")).unwrap();
    assert!(page.contains("Steer with it") && page.contains("clamp: #{\"3\": \"10x\"}"));
    for page in ["index.html", "feature-3.html"] {
        crate::support::assert_renders_in_chromium(
            &dash.join(page),
            &dir.path().join(format!("{page}.png")),
        );
    }
}

#[test]
fn bad_feature_requests_are_clear_errors() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(dir.path());
    let err = eval_err(&format!("{setup}\ns.examples(store, 512, #{{model: m}})"));
    assert!(
        err.contains("feature 512 is out of range") && err.contains("line"),
        "{err}"
    );
    let err = eval_err(&format!("{setup}\nr.top(-1, 3)"));
    assert!(err.contains("out of range"), "{err}");
    let err = eval_err(&format!(
        "{setup}\nlet other = sae(#{{d_in: 576, n_features: 512, kind: \"topk\", k: 16}});\n\
         other.examples(store, 1, #{{model: m, records: r}})"
    ));
    assert!(err.contains("another SAE"), "{err}");
    let err = eval_err(&format!(
        "{setup}\ns.records(store, #{{path: \"{0}\", progress: false}});\n\
         let other = sae(#{{d_in: 576, n_features: 512}});\n\
         other.records(store, #{{path: \"{0}\"}})",
        dir.path().join("records").display()
    ));
    assert!(
        err.contains("another SAE") && err.contains("delete"),
        "{err}"
    );
    let err = eval_err(&format!(
        "{setup}\nlet narrow = store_from_tensor(randn([10, 8]));\ns.records(narrow)"
    ));
    assert!(err.contains("width 8"), "{err}");
    let err = eval_err(&format!("{setup}\ns.examples(store, 1, #{{}})"));
    assert!(err.contains("#{model: m}"), "{err}");
}

#[test]
fn search_finds_features_of_french_text_and_features_for_lists_each_token() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = eval(&format!(
        r#"{}
        let fr = ["Il était une fois une petite fille qui habitait dans un village.",
                  "La ville de Paris est la capitale de la France depuis des siècles."];
        let en = ["Once upon a time there was a little girl who lived in a village.",
                  "The city of Paris has been the capital of France for centuries."];
        let hits = s.search(m, fr, #{{negatives: en, k: 3}});
        let ex = s.examples(store, hits[0].feature, #{{model: m, k: 5, quantiles: 0}});
        let per_token = s.features_for(m, "Le pont", #{{k: 2}});
        [hits[0].score, hits[0].positive - hits[0].negative, hits[0].score >= hits[1].score,
         ex.top.map(|c| c.text), per_token.len(), per_token[1].features.len()]
        "#,
        setup(dir.path())
    ));
    let v = result.into_array().unwrap();
    let score = v[0].as_float().unwrap();
    assert!(score > 0.0 && (score - v[1].as_float().unwrap()).abs() < 1e-9);
    assert!(v[2].as_bool().unwrap());
    // The contrastive search's best feature fires on French text in the corpus.
    let texts: Vec<String> = v[3].clone().into_typed_array().unwrap();
    let french = ["du", "de", "la", "le", "les", "des", "est", "et", "en"];
    let in_french = texts
        .iter()
        .filter(|t| {
            t.split_whitespace()
                .filter(|w| french.contains(&w.trim_matches(|c: char| !c.is_alphabetic())))
                .count()
                >= 1
        })
        .count();
    assert!(in_french >= 3, "the French feature's examples: {texts:?}");
    assert_eq!(v[4].as_int().unwrap(), 2);
    assert!(v[5].as_int().unwrap() >= 1);
}

#[test]
fn neuron_correlations_are_correlations_and_bad_layers_are_refused() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(dir.path());
    let result = eval(&format!(
        "{setup}\nlet c = neuron_correlations(m, s, demo_corpus(), #{{tokens: 600, features: [0, 1, 2, 3, 4, 5], layers: [0, 7], progress: false}});\n\
         [c.max_abs_r, c.r, c.best_layer, c.fraction_at_most_0_3, c.fired, c.tokens]"
    ));
    let v = result.into_array().unwrap();
    let max_abs: Vec<f64> = v[0].clone().into_typed_array().unwrap();
    let r: Vec<f64> = v[1].clone().into_typed_array().unwrap();
    let layers: Vec<i64> = v[2].clone().into_typed_array().unwrap();
    for ((m, r), l) in max_abs.iter().zip(&r).zip(&layers) {
        if m.is_finite() {
            assert!(
                *m <= 1.0 + 1e-9 && (m - r.abs()).abs() < 1e-12,
                "{max_abs:?} {r:?}"
            );
        }
        assert!(*l == 0 || *l == 7);
    }
    let fraction = v[3].as_float().unwrap();
    assert!((0.0..=1.0).contains(&fraction) || v[4].as_int().unwrap() == 0);
    assert_eq!(v[5].as_int().unwrap(), 600);
    let err = eval_err(&format!(
        "{setup}\nneuron_correlations(m, s, demo_corpus(), #{{layers: [30], tokens: 10}})"
    ));
    assert!(err.contains("layer 30 is out of range"), "{err}");
}

#[test]
fn specificity_rates_every_level_and_draws_the_stacked_bars() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(dir.path());
    let plot = dir.path().join("specificity.png");
    let result = eval(&format!(
        "{setup}\nlet top_token = s.examples(store, f, #{{model: m, k: 1, quantiles: 0}}).top[0];\n\
         let word = top_token.tokens[top_token.focus];\n\
         let by_strings = specificity(s, store, f, [word], #{{model: m, bins: 3, per_bin: 4, plot: \"{}\"}});\n\
         let by_closure = specificity(s, store, f, |context, token, activation| if activation > 0.0 {{ 3 }} else {{ 0 }}, #{{model: m, bins: 3, per_bin: 4}});\n\
         [by_strings.bins.map(|b| b.scores), by_closure.bins.map(|b| b.mean), by_strings.bins[-1].scores[3]]",
        plot.display()
    ));
    let v = result.into_array().unwrap();
    let counts: Vec<Vec<i64>> = v[0]
        .clone()
        .into_array()
        .unwrap()
        .into_iter()
        .map(|b| b.into_typed_array().unwrap())
        .collect();
    assert!(!counts.is_empty());
    assert!(counts
        .iter()
        .all(|c| c.len() == 4 && c.iter().sum::<i64>() >= 1));
    let means: Vec<f64> = v[1].clone().into_typed_array().unwrap();
    assert!(
        means.iter().all(|&m| m == 3.0),
        "every sampled context is active: {means:?}"
    );
    let total: i64 = counts.iter().flatten().sum();
    assert!(total <= 3 * 4 && v[2].as_int().unwrap() <= 4);
    assert!(std::fs::metadata(&plot).unwrap().len() > 1000);
    let err = eval_err(&format!(
        "{setup}\nspecificity(s, store, f, |c, t, a| 7, #{{model: m, bins: 2, per_bin: 2}})"
    ));
    assert!(
        err.contains("0, 1, 2 or 3") && err.contains("returned 7"),
        "{err}"
    );
}

#[test]
fn the_split_view_lists_a_feature_and_its_nearest_neighbours_with_examples() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = eval(&format!(
        "{}\nlet rows = split_view(s, [s], f, store, #{{model: m, k: 2, examples: 1}});\n\
         [rows.map(|r| r.feature), rows.map(|r| r.cosine), rows.map(|r| r.sae), rows[0].examples.len(), f]",
        setup(dir.path())
    ));
    let v = result.into_array().unwrap();
    let features: Vec<i64> = v[0].clone().into_typed_array().unwrap();
    let cosines: Vec<f64> = v[1].clone().into_typed_array().unwrap();
    let saes: Vec<i64> = v[2].clone().into_typed_array().unwrap();
    let f = v[4].as_int().unwrap();
    assert_eq!(features.len(), 3);
    assert_eq!(features[0], f);
    assert!(
        features[1..].iter().all(|&n| n != f),
        "the feature is not its own neighbour"
    );
    assert!(cosines[1] >= cosines[2] && cosines[1] <= 1.0);
    assert_eq!(saes, vec![0, 1, 1]);
    assert_eq!(v[3].as_int().unwrap(), 1);
}

#[test]
fn a_rater_can_ask_the_language_model() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = eval(&format!(
        "{}\nlet asked = [];\n\
         let judge = |context, token, activation| {{\n\
             let answer = m.generate(`Is this text French? ${{context}}`, #{{max_tokens: 2, chat: true}});\n\
             asked.push(answer);\n\
             if answer.to_lower().contains(\"yes\") || answer.to_lower().contains(\"oui\") {{ 3 }} else {{ 0 }}\n\
         }};\n\
         let spec = specificity(s, store, f, judge, #{{model: m, bins: 2, per_bin: 2}});\n\
         [asked.len(), spec.bins.map(|b| b.scores[0] + b.scores[3])]",
        setup(dir.path())
    ));
    let v = result.into_array().unwrap();
    let asked = v[0].as_int().unwrap();
    let scored: Vec<i64> = v[1].clone().into_typed_array().unwrap();
    assert!(asked >= 1, "the model was never asked");
    assert_eq!(
        scored.iter().sum::<i64>(),
        asked,
        "every answer became a 0 or a 3"
    );
}
