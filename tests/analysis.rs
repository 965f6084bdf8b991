//! Interventions with SAE features on SmolLM2: steering keeps the model
//! unchanged when it clamps nothing (or a feature to its own value) and
//! moves it toward a feature's promoted tokens when it clamps hard; the
//! attributions add up to the linearised change of the logit and predict
//! small ablations.
use crate::model::with_model;
use crate::support::{eval, eval_err};
use saelab::core::analysis::{attribute, AttributionOptions};
use saelab::core::model::{Edit, Hooks, Logits, Model, Site};
use saelab::core::sae::{ArchitectureConfig, Sae, SaeConfig};
use tch::Tensor;

/// A TopK SAE trained briefly on 4,096 harvested rows of layer 15, in `dir`.
pub(crate) fn trained_sae_script(dir: &std::path::Path) -> String {
    format!(
        r#"
        seed(0);
        let m = load_model();
        let store = m.harvest(demo_corpus(), #{{layer: 15, tokens: 4096, max_norm_ratio: 10.0, out: "{}"}});
        let s = sae(#{{d_in: m.d_model, n_features: 512, kind: "topk", k: 16}});
        s.train(store, #{{steps: 100, batch_size: 512, lr: 1e-3, progress: false}});
        "#,
        dir.join("acts").display()
    )
}

#[test]
fn steering_with_no_clamp_or_a_features_own_value_changes_nothing() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = eval(&format!(
        r#"{}
        let prompt = "The capital of France is";
        let plain = m.generate(prompt, #{{max_tokens: 8}});
        let empty = m.generate(prompt, #{{max_tokens: 8, steer: #{{sae: s, clamp: #{{}}}}}});
        let logits_empty = (m.forward(prompt) - m.forward(prompt, #{{steer: #{{sae: s, clamp: #{{}}}}}})).abs().max().item();
        // One position, so a feature has one value: clamping it there is a no-op.
        let word = "Paris";
        let f = s.encode(m.activations(word, 15));
        let top = f[0].topk(1);
        let clamp = #{{}};
        clamp[`${{top.indices[0].item()}}`] = top.values[0].item();
        let logits_own = (m.forward(word) - m.forward(word, #{{steer: #{{sae: s, clamp: clamp}}}})).abs().max().item();
        [plain == empty, logits_empty, logits_own, top.values[0].item()]
        "#,
        trained_sae_script(dir.path())
    ));
    let values = result.into_array().unwrap();
    assert!(
        values[0].as_bool().unwrap(),
        "an empty clamp changed the completion"
    );
    assert_eq!(values[1].as_float().unwrap(), 0.0);
    let own = values[2].as_float().unwrap();
    assert!(values[3].as_float().unwrap() > 0.0, "no active feature");
    assert!(
        own < 1e-3,
        "clamping a feature to its own value moved a logit by {own}"
    );
}

#[test]
fn a_ten_times_clamp_moves_the_completion_toward_the_features_promoted_tokens() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = eval(&format!(
        r#"{}
        let prompt = "My favourite food is";
        let max = s.max_activations(store);
        // The feature most active on the last token, by its share of its maximum.
        let f = s.encode(m.activations(prompt, 15));
        let last = f.shape[0] - 1;
        let feature = (f[last] / (max + 1e-6)).argmax().item();
        let promoted = s.logit_effects(m, feature, 1).promoted[0].id;
        let clamp = #{{}};
        clamp[`${{feature}}`] = "10x";
        let steer = #{{sae: s, clamp: clamp, max: max}};
        let p_plain = m.forward(prompt).softmax(1)[last][promoted].item();
        let p_steered = m.forward(prompt, #{{steer: steer}}).softmax(1)[last][promoted].item();
        let plain = m.generate(prompt, #{{max_tokens: 8}});
        let steered = m.generate(prompt, #{{max_tokens: 8, steer: steer}});
        [p_plain, p_steered, plain != steered]
        "#,
        trained_sae_script(dir.path())
    ));
    let values = result.into_array().unwrap();
    let (plain, steered) = (values[0].as_float().unwrap(), values[1].as_float().unwrap());
    assert!(steered > plain, "P(promoted token) {plain} → {steered}");
    assert!(
        values[2].as_bool().unwrap(),
        "the completion did not change"
    );
}

#[test]
fn bad_steering_and_attribution_requests_are_clear_errors() {
    if !crate::model::model_present() {
        return;
    }
    let setup = r#"let m = load_model();
        let s = sae(#{d_in: 576, n_features: 64, kind: "topk", k: 4, hook_name: "blocks.15.hook_resid_pre"});
        "#;
    let out_of_range = eval_err(&format!(
        "{setup}m.forward(\"Hi\", #{{steer: #{{sae: s, clamp: #{{\"64\": 1.0}}}}}})"
    ));
    assert!(
        out_of_range.contains("feature 64 is out of range"),
        "{out_of_range}"
    );
    let bad_value = eval_err(&format!(
        "{setup}m.forward(\"Hi\", #{{steer: #{{sae: s, clamp: #{{\"3\": \"lots\"}}}}}})"
    ));
    assert!(bad_value.contains("neither a number"), "{bad_value}");
    let wide = eval_err(
        "let m = load_model(); let s = sae(#{d_in: 8, n_features: 16, hook_name: \"blocks.15.hook_resid_pre\"});\nm.forward(\"Hi\", #{steer: #{sae: s, clamp: #{\"1\": 1.0}}})",
    );
    assert!(wide.contains("width") && wide.contains("line 2"), "{wide}");
    let two_tokens = eval_err(&format!(
        "{setup}m.attribute(\"The capital of France is\", s, #{{target: \" Paris is\"}})"
    ));
    assert!(two_tokens.contains("must be one"), "{two_tokens}");
    // The model runs unhooked afterwards.
    let after = eval(&format!(
        "{setup}try {{ m.forward(\"Hi\", #{{steer: #{{sae: s, clamp: #{{\"99\": 1.0}}}}}}) }} catch {{}}\n(m.forward(\"Hi\") - m.forward(\"Hi\", #{{}})).abs().max().item()"
    ));
    assert_eq!(after.as_float().unwrap(), 0.0);
}

/// The explained value with the residual at `site` replaced by `x` [T, d].
fn value_with(model: &Model, tokens: &[u32], site: Site, x: &Tensor, target: u32) -> f64 {
    let hooks = Hooks::default().edit(site, Edit::Replace(x.unsqueeze(0)));
    let out = model.run(&[tokens.to_vec()], &hooks, Logits::Last).unwrap();
    out.logits
        .unwrap()
        .reshape([-1])
        .double_value(&[target as i64])
}

#[test]
fn attributions_add_up_to_the_linearised_change_and_predict_small_ablations() {
    with_model(|model| {
        saelab::core::rng::seed(0);
        let mut cfg = SaeConfig::new("topk", 576, 256).unwrap();
        if let ArchitectureConfig::TopK(topk) = &mut cfg.architecture {
            topk.k = 16;
        }
        let sae = Sae::new(cfg).unwrap();
        let site = Site::resid_pre(15);
        let tokens = model.encode("The capital of France is").unwrap();
        let target = model.encode(" Paris").unwrap()[0];
        let options = AttributionOptions {
            site,
            target,
            baseline: None,
            ablate_top: 3,
        };
        let a = attribute(model, &sae, &tokens, &options).unwrap();
        let x = model.activations("The capital of France is", site).unwrap();
        assert!((value_with(model, &tokens, site, &x, target) - a.value).abs() < 1e-3);

        // Euler: scaling everything but b_dec at positions >= 1 by λ changes
        // the value at λ = 1 by Σ attributions + the error's share.
        let b_dec = sae.weights.b_dec.inner().detach();
        let eps = 1e-3;
        let scaled = x.copy();
        let rest = scaled.narrow(0, 1, x.size()[0] - 1);
        let shrunk = (&rest - &b_dec) * (1.0 - eps) + &b_dec;
        scaled.narrow(0, 1, x.size()[0] - 1).copy_(&shrunk);
        let derivative = (a.value - value_with(model, &tokens, site, &scaled, target)) / eps;
        let total: f64 =
            a.features.iter().map(|f| f.attribution).sum::<f64>() + a.error_attribution;
        assert!(
            (derivative - total).abs() < 0.02 * derivative.abs().max(1.0),
            "finite difference {derivative} vs attributions {total}"
        );

        // Shrinking the strongest feature a little changes the value by its attribution.
        let top = &a.features[0];
        let direction = sae.weights.w_dec.inner().detach().get(top.feature);
        let nudged = x.copy();
        let small = 0.01;
        let row = nudged.get(top.position as i64) - &direction * (small * top.activation);
        nudged.get(top.position as i64).copy_(&row);
        let change = value_with(model, &tokens, site, &nudged, target) - a.value;
        assert!(
            (change + small * top.attribution).abs() < 0.1 * (small * top.attribution).abs(),
            "a 1% ablation changed the value by {change}, attribution predicts {}",
            -small * top.attribution
        );
        let ablations = a.features.iter().filter(|f| f.ablation.is_some()).count();
        assert_eq!(ablations, 3);
    });
}

#[test]
fn the_steering_script_and_its_bench_run_at_toy_size() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::run_shipped(
        "scripts/steering.rhai",
        &[
            format!("out={}", dir.path().display()),
            "tokens=4096".into(),
            "steps=40".into(),
            "n_features=512".into(),
        ],
    );
    for expected in [
        "logit effects (promoted)",
        "── none ──",
        "features by |attribution|",
        "agree in sign",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let bench = crate::support::run_shipped(
        "benches/steering.rhai",
        &[
            "reps=1".into(),
            "new_tokens=4".into(),
            "n_features=256".into(),
        ],
    );
    assert!(bench.contains("ratio"), "{bench}");
}

#[test]
fn script_hooks_read_add_replace_ablate_and_map_at_chosen_positions() {
    if !crate::model::model_present() {
        return;
    }
    let result = eval(
        r#"
        let m = load_model();
        let text = "The capital of France is";
        let base = m.forward(text);
        let identity = (base - m.forward(text, #{hooks: [#{layer: 6, map: |x| x}]})).abs().max().item();
        let seen = [];
        m.forward(text, #{hooks: [#{layer: 15, map: |x| { seen.push(x.shape); x }}]});
        // Ablating position 2 at layer 6 cannot change what positions 0 and 1 predict.
        let ablated = m.forward(text, #{hooks: [#{layer: 6, ablate: true, positions: [2]}]});
        let change = (base - ablated).abs().max(1);
        let x = m.activations(text, 6);
        let replaced = (base - m.forward(text, #{hooks: [#{layer: 6, replace: x}]})).abs().max().item();
        let v = m.activations(" London", 0)[0];
        let push = #{layer: 12, add: v / v.norm(), scale: 80.0, positions: [-1]};
        let plain = m.generate(text, #{max_tokens: 6});
        let pushed = m.generate(text, #{max_tokens: 6, hooks: [push]});
        let heldout = demo_corpus(#{split: "heldout"});
        let ppl = m.perplexity(heldout, #{tokens: 256}).perplexity;
        let ppl_ablated = m.perplexity(heldout, #{tokens: 256, hooks: [#{layer: 0, hook: "mlp", ablate: true}]}).perplexity;
        [identity, seen[0], change[0].item(), change[1].item(), change[2].item(), replaced, plain != pushed, ppl, ppl_ablated]
        "#,
    )
    .into_array()
    .unwrap();
    assert_eq!(
        result[0].as_float().unwrap(),
        0.0,
        "an identity map changed the logits"
    );
    assert_eq!(format!("{}", result[1]), "[1, 5, 576]");
    assert_eq!(result[2].as_float().unwrap(), 0.0);
    assert_eq!(result[3].as_float().unwrap(), 0.0);
    assert!(
        result[4].as_float().unwrap() > 0.1,
        "ablating position 2 changed nothing there"
    );
    assert!(
        result[5].as_float().unwrap() < 1e-4,
        "replacing with the same values changed the logits"
    );
    assert!(
        result[6].as_bool().unwrap(),
        "adding a direction at the newest token changed no completion"
    );
    let (ppl, ablated) = (result[7].as_float().unwrap(), result[8].as_float().unwrap());
    assert!(
        ablated > ppl,
        "ablating layer 0's MLP left perplexity at {ppl} → {ablated}"
    );
    let err = eval_err(
        "let m = load_model();\nm.generate(\"Hi\", #{hooks: [#{layer: 5, ablate: true, positions: [0]}]})",
    );
    assert!(
        err.contains("newest token") && err.contains("line 2"),
        "{err}"
    );
    let err =
        eval_err("let m = load_model(); m.forward(\"Hi\", #{hooks: [#{layer: 5, map: |x| 3}]})");
    assert!(err.contains("must return a tensor"), "{err}");
}

#[test]
fn weights_are_readable_and_logit_effects_are_the_unembedded_decoder_row() {
    if !crate::model::model_present() {
        return;
    }
    let result = eval(
        r#"
        seed(1);
        let m = load_model();
        let s = sae(#{d_in: 576, n_features: 32, kind: "topk", k: 4});
        let effects = s.logit_effects(m, 5, 3);
        let by_hand = m.weight("output") @ (m.weight("output_norm") * s.decoder[5]);
        let top = by_hand.topk(3);
        [m.weight("output").shape, m.weight("blk.3.ffn_up").shape, m.weight_names().len(),
         effects.promoted[0].id, top.indices[0].item(), effects.promoted[0].effect, top.values[0].item(),
         effects.suppressed[0].effect, by_hand.min().item()]
        "#,
    )
    .into_array()
    .unwrap();
    assert_eq!(format!("{}", result[0]), "[49152, 576]");
    assert_eq!(format!("{}", result[1]), "[1536, 576]");
    assert!(result[2].as_int().unwrap() > 200);
    assert_eq!(
        result[3].as_int().unwrap() as f64,
        result[4].as_float().unwrap()
    );
    let close = |a: &rhai::Dynamic, b: &rhai::Dynamic| {
        (a.as_float().unwrap() - b.as_float().unwrap()).abs() < 1e-4
    };
    assert!(
        close(&result[5], &result[6]),
        "{} vs {}",
        result[5],
        result[6]
    );
    assert!(
        close(&result[7], &result[8]),
        "{} vs {}",
        result[7],
        result[8]
    );
    assert!(
        crate::support::eval_err("load_model().weight(\"blk.99.ffn_up\")").contains("weight_names")
    );
}

#[test]
fn ce_loss_recovered_measures_the_hooked_model() {
    if !crate::model::model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = eval(&format!(
        r#"{}
        let heldout = demo_corpus(#{{split: "heldout"}});
        let base = s.ce_loss_recovered(m, heldout, #{{layer: 15, tokens: 128}});
        let same = s.ce_loss_recovered(m, heldout, #{{layer: 15, tokens: 128, hooks: [#{{layer: 3, map: |x| x}}]}});
        let hurt = s.ce_loss_recovered(m, heldout, #{{layer: 15, tokens: 128, hooks: [#{{layer: 0, hook: "mlp", ablate: true}}]}});
        [base.ce_clean, same.ce_clean, base.ce_spliced, same.ce_spliced, hurt.ce_clean]
        "#,
        trained_sae_script(dir.path())
    ))
    .into_typed_array::<f64>()
    .unwrap();
    assert_eq!(
        result[0], result[1],
        "an identity hook changed the clean CE"
    );
    assert_eq!(
        result[2], result[3],
        "an identity hook changed the spliced CE"
    );
    assert!(
        result[4] > result[0],
        "ablating layer 0's MLP: clean CE {} → {}",
        result[0],
        result[4]
    );
}
