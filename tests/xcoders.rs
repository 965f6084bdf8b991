//! Transcoders and crosscoders on SmolLM2: the MLP's input and output
//! sites, stores of several sites per row, and a transcoder and a
//! crosscoder trained, spliced into the model (CE and KL), saved and
//! loaded. Skipped with a note when the model is not in the cache.
use crate::model::{model_present, with_model, MODEL};
use crate::support::{eval, eval_err};
use saelab::core::model::{Edit, Hooks, Logits, Site};

const TEXT: &str = "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the strait connecting San Francisco Bay and the Pacific Ocean.";

fn max_difference(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn mlp_out_is_what_the_mlp_adds_and_mlp_in_what_it_reads() {
    with_model(|model| {
        let layer = 5;
        let ids = vec![model.tokens_to_run(TEXT).unwrap()];
        let sites = [
            Site::mlp_in(layer),
            Site::mlp_out(layer),
            Site::resid_post(layer),
        ];
        let out = model
            .run(&ids, &Hooks::reading(&sites), Logits::All)
            .unwrap();
        let [mlp_in, mlp_out, resid_post] = &out.activations[..] else {
            panic!("three reads")
        };
        // With the MLP's output zeroed, resid_post is the residual between attention and MLP.
        let zeroed = Hooks::reading(&[Site::resid_post(layer)])
            .edit(Site::mlp_out(layer), Edit::Replace(mlp_out.zeros_like()));
        let resid_mid =
            model.run(&ids, &zeroed, Logits::Skip).unwrap().activations[0].shallow_clone();
        assert!(max_difference(&(resid_post - mlp_out), &resid_mid) < 1e-4);
        // mlp_in is that residual after the block's second RMSNorm, gain included.
        let gain = model.weight(&format!("blk.{layer}.ffn_norm")).unwrap();
        let eps = model.llama.config.rms_eps;
        let normalised = resid_mid.rms_norm([gain.size()[0]], Some(&gain), eps);
        assert!(max_difference(&normalised, mlp_in) < 1e-4);
        // Replacing mlp_out by itself changes nothing.
        let same = Hooks::default().edit(Site::mlp_out(layer), Edit::Replace(mlp_out.copy()));
        let logits = model.run(&ids, &same, Logits::All).unwrap().logits.unwrap();
        assert_eq!(max_difference(&logits, out.logits.as_ref().unwrap()), 0.0);
    });
}

/// The numbers an evaluated script returns as an array.
fn numbers(script: &str) -> Vec<f64> {
    eval(script)
        .into_array()
        .unwrap()
        .iter()
        .map(|v| v.as_float().unwrap_or_else(|_| v.as_int().unwrap() as f64))
        .collect()
}

#[test]
fn a_transcoder_trains_on_a_two_site_store_and_replaces_the_mlp() {
    if !model_present() {
        return;
    }
    let _guard = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    // Small steps on oversubscribed cores run far slower with two threads (README, Performance).
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        r#"
        seed(0);
        let m = load_model();
        let heldout = demo_corpus(#{{split: "heldout"}});
        let pair = m.harvest(demo_corpus(), #{{layer: 5, hooks: ["mlp_in", "mlp_out"], tokens: 3000, context: 64,
                                               shard_rows: 1000, out: "{dir}/pair"}});
        let sites = pair.manifest.sites;
        let t = transcoder(pair, #{{n_features: 512, kind: "topk", k: 16, skip: true}});
        let r = t.train(pair, #{{steps: 120, batch_size: 128, lr: 2e-3, progress: false}});
        let ce = #{{model: m, corpus: heldout, ce_tokens: 192, context: 64}};
        let e = t.evaluate(pair, ce);
        t.save("{dir}/t");
        let again = load_sae("{dir}/t").evaluate(pair, ce);
        let more = m.harvest(demo_corpus(), #{{layer: 5, hooks: ["mlp_in", "mlp_out"], tokens: 3500, context: 64,
                                               shard_rows: 1000, out: "{dir}/pair"}});
        [more.len, more.manifest.sites[1].sum_squared_norm / sites[1].sum_squared_norm, pair.len, pair.dim, sites.len(), sites[0].dim, sites[1].scale / sites[0].scale, pair.batch(8).shape[1],
         r.history[0].loss, r.loss, e.explained_variance, e.l0, e.ce_clean, e.ce_spliced, e.ce_zero,
         e.ce_loss_recovered, e.kl_spliced, e.kl_zero, e.kl_score,
         again.ce_spliced, again.kl_spliced, again.explained_variance]
        "#,
        dir = dir.path().display()
    );
    let v = numbers(&script);
    let [extended, extended_norms, rows, dim, sites, width, scale_ratio, batch_width, first_loss, loss, ev, l0, clean, spliced, zero, recovered, kl, kl_zero, kl_score, spliced_again, kl_again, ev_again] =
        v[..]
    else {
        panic!("{v:?}")
    };
    assert_eq!(
        (rows, dim, sites, width, batch_width),
        (3000.0, 1152.0, 2.0, 576.0, 1152.0)
    );
    assert_eq!(extended, 3500.0);
    assert!(extended_norms > 1.05 && extended_norms < 1.3, "{v:?}");
    assert!(scale_ratio != 1.0, "each site has its own scale: {v:?}");
    assert!(
        loss < 0.75 * first_loss,
        "the loss falls: {first_loss} → {loss}"
    );
    assert!(ev > 0.3 && l0 > 1.0 && l0 <= 16.0, "{v:?}");
    assert!(clean < spliced && spliced < zero, "{v:?}");
    assert!(recovered > 0.3 && recovered < 1.0, "{v:?}");
    assert!(kl > 0.0 && kl < kl_zero && kl_score > 0.3, "{v:?}");
    assert!(
        (spliced - spliced_again).abs() < 1e-6,
        "{spliced} vs {spliced_again}"
    );
    assert!(
        (kl - kl_again).abs() < 1e-6 && (ev - ev_again).abs() < 1e-6,
        "{v:?}"
    );
    // Code that reads one site refuses the store by name.
    let err = eval_err(&format!(
        r#"sae(#{{d_in: 1152, n_features: 64}}).train(open_store("{dir}/pair"), #{{steps: 1, progress: false}})"#,
        dir = dir.path().display()
    ));
    assert!(err.contains("2 sites"), "{err}");
    let err = eval_err(&format!(
        r#"load_model().harvest(demo_corpus(), #{{layer: 5, hook: "mlp_in", tokens: 3500, context: 64, out: "{dir}/pair"}})"#,
        dir = dir.path().display()
    ));
    assert!(
        err.contains("sites mlp_in.5, mlp_out.5, not mlp_in.5"),
        "{err}"
    );
}

#[test]
fn a_crosscoder_trains_on_three_layers_and_is_spliced_into_all_of_them() {
    if !model_present() {
        return;
    }
    let _guard = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    // Small steps on oversubscribed cores run far slower with two threads (README, Performance).
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        r#"
        seed(0);
        let m = load_model();
        let layers = m.harvest(demo_corpus(), #{{layers: [2, 4, 6], hook: "resid_post", tokens: 3000, context: 64,
                                                 max_norm_ratio: 10.0, out: "{dir}/layers"}});
        let c = crosscoder(layers, #{{n_features: 512, kind: "topk", k: 24}});
        let r = c.train(layers, #{{steps: 120, batch_size: 128, lr: 2e-3, progress: false}});
        let ce = #{{model: m, corpus: demo_corpus(#{{split: "heldout"}}), ce_tokens: 192, context: 64}};
        let e = c.evaluate(layers, ce);
        c.save("{dir}/c");
        let loaded = load_sae("{dir}/c");
        let again = loaded.evaluate(layers, ce);
        let per_site = e.site_explained_variance;
        [layers.dim, loaded.hook_names.len(), r.history[0].loss, r.loss, per_site.len(), per_site[0], per_site[2],
         e.ce_clean, e.ce_spliced, e.ce_zero, e.kl_spliced, e.kl_zero, again.ce_spliced, again.kl_spliced]
        "#,
        dir = dir.path().display()
    );
    let v = numbers(&script);
    let [dim, names, first_loss, loss, n_sites, ev_first, ev_last, clean, spliced, zero, kl, kl_zero, spliced_again, kl_again] =
        v[..]
    else {
        panic!("{v:?}")
    };
    assert_eq!((dim, names, n_sites), (1728.0, 3.0, 3.0));
    assert!(
        loss < 0.75 * first_loss,
        "the loss falls: {first_loss} → {loss}"
    );
    assert!(ev_first > 0.2 && ev_last > 0.2, "{v:?}");
    assert!(clean < spliced && spliced < zero && kl < kl_zero, "{v:?}");
    assert!(
        (spliced - spliced_again).abs() < 1e-6 && (kl - kl_again).abs() < 1e-6,
        "{v:?}"
    );
}

#[test]
fn transcoder_and_crosscoder_functions_are_documented_for_help() {
    let engine = saelab::script::new_engine(Default::default());
    let index = saelab::script::help::HelpIndex::build(&engine);
    for name in [
        "transcoder",
        "crosscoder",
        "layout",
        "d_out",
        "w_skip",
        "hook_names",
        "site_widths",
    ] {
        let entry = index
            .entries
            .get(name)
            .unwrap_or_else(|| panic!("no help for {name}"));
        assert!(
            entry.topics.iter().any(|t| t == "xcoders"),
            "{name}: {:?}",
            entry.topics
        );
        assert!(!entry.summary.is_empty(), "{name} has no doc");
    }
}

#[test]
fn transcoders_and_crosscoders_train_on_tensors_and_name_bad_options() {
    let value = eval(
        r#"
        seed(1);
        let toy = superposition(#{n_true: 64, d: 24, active: 3, tokens: 4096});
        let t = transcoder(#{d_in: 16, d_out: 8, n_features: 128, kind: "topk", k: 3, skip: true});
        let r = t.train(toy.x, #{steps: 100, batch_size: 256, lr: 5e-3, log_every: 10, progress: false});
        let c = crosscoder(#{site_widths: [12, 12], n_features: 128, l1: 1.0});
        c.train(toy.x, #{steps: 20, batch_size: 256, lr: 5e-3, progress: false});
        [t.layout, t.d_out, t.w_skip.shape, t.site_widths, c.layout, c.d_in, r.history[0].loss > r.loss,
         t.encode(toy.x).shape]
        "#,
    );
    assert_eq!(
        value.to_string(),
        r#"["transcoder", 8, [8, 16], [16, 8], "crosscoder", 24, true, [4096, 128]]"#
    );
    let err = eval_err(r#"transcoder(#{d_in: 4, n_features: 8, skip: "yes"})"#);
    assert!(err.contains("'skip'"), "{err}");
    let err = eval_err(r#"crosscoder(#{n_features: 8})"#);
    assert!(err.contains("site_widths"), "{err}");
}
