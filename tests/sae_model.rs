//! SAEs with SmolLM2: training straight from a harvested store, and CE loss
//! recovered when the SAE's reconstruction replaces the residual stream.
//! Skipped with a note when the model is not in the cache.
use crate::model::{model_present, with_model, MODEL};
use crate::support::eval;
use saelab::core::model::splice::text_windows;
use saelab::core::model::{Site, SpliceProbe};
use saelab::core::precision::Precision;
use saelab::core::sae::{metrics, Sae, SaeConfig};
use tch::{Kind, Tensor};

const TEXTS: [&str; 3] = [
    "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the strait connecting San Francisco Bay and the Pacific Ocean.",
    "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.",
];

/// A ReLU SAE with features ±e_i: f = (relu(x), relu(−x)), x̂ = relu(x) − relu(−x) = x exactly.
/// `decoder_gain` scales W_dec (0 makes x̂ = 0).
fn identity_sae(d: i64, decoder_gain: f64) -> Sae {
    let eye = Tensor::eye(d, (Kind::Float, tch::Device::Cpu));
    let signed = Tensor::cat(&[&eye, &(-&eye)], 0);
    let zeros = |n: i64| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu));
    Sae::from_parts(
        SaeConfig::new("relu", d, 2 * d).unwrap(),
        signed.copy(),
        zeros(2 * d),
        signed * decoder_gain,
        zeros(d),
        None,
    )
    .unwrap()
}

#[test]
fn an_exact_reconstruction_recovers_all_of_the_loss_and_a_zero_decoder_none() {
    with_model(|model| {
        let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
        let windows = text_windows(model, &texts, 32).unwrap();
        let mut probe = SpliceProbe::new(model, Site::resid_pre(6), &windows, 2).unwrap();
        let d = model.d_model() as i64;
        let exact =
            metrics::ce_loss_recovered(&identity_sae(d, 1.0), 1.0, Precision::F32, |splice| {
                probe.measure(splice)
            })
            .unwrap();
        assert!(
            exact.zero_ablated > exact.clean + 1.0,
            "zero-ablating layer 6 should hurt: {exact:?}"
        );
        assert!((exact.spliced - exact.clean).abs() < 1e-3, "{exact:?}");
        assert!((exact.fraction_recovered - 1.0).abs() < 1e-3, "{exact:?}");
        // KL from the clean model: ~0 for the exact splice, large for zeros.
        assert!(
            exact.kl_spliced.abs() < 1e-4 && exact.kl_zero_ablated > 1.0,
            "{exact:?}"
        );
        assert!((exact.kl_score - 1.0).abs() < 1e-4, "{exact:?}");
        let zero =
            metrics::ce_loss_recovered(&identity_sae(d, 0.0), 1.0, Precision::F32, |splice| {
                probe.measure(splice)
            })
            .unwrap();
        assert!(zero.fraction_recovered.abs() < 1e-3, "{zero:?}");
        assert!(zero.kl_score.abs() < 1e-4, "{zero:?}");
        assert!((zero.clean - exact.clean).abs() < 1e-9);
        // An SAE trained on inputs scaled by s splices sae(s·x)/s: with W_dec halved,
        // x̂ = x/2 for any s, so the scale must not change the result.
        let half = identity_sae(d, 0.5);
        let at = |s: f64, probe: &mut SpliceProbe| {
            metrics::ce_loss_recovered(&half, s, Precision::F32, |splice| probe.measure(splice))
                .unwrap()
                .spliced
        };
        let (one, three) = (at(1.0, &mut probe), at(3.0, &mut probe));
        assert!((one - three).abs() < 1e-4, "{one} vs {three}");
        assert!(
            one > exact.spliced + 1e-3,
            "halving the residual should cost something"
        );
    });
}

#[test]
fn an_sae_trained_on_a_harvested_store_reports_ce_loss_recovered() {
    if !model_present() {
        return;
    }
    let _guard = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = TEXTS
        .iter()
        .cycle()
        .take(80)
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(dir.path().join("corpus.jsonl"), lines.join("\n")).unwrap();
    let script = format!(
        r#"
        seed(0);
        let m = load_model();
        let c = corpus("{dir}/corpus.jsonl");
        let store = m.harvest(c, #{{layer: 4, tokens: 800, context: 32, shard_rows: 300, out: "{dir}/acts"}});
        let s = sae(#{{d_in: m.d_model, n_features: 256, kind: "topk", k: 16}});
        let r = s.train(open_store("{dir}/acts"), #{{steps: 60, batch_size: 128, lr: 1e-3, progress: false}});
        let e = s.evaluate(store, #{{model: m, corpus: c, ce_tokens: 200}});
        let direct = s.ce_loss_recovered(m, c, #{{layer: 4, tokens: 200, context: 32}});
        let texts = s.ce_loss_recovered(m, ["{text}"], #{{layer: 4}});
        [r.steps, e.tokens, e.explained_variance, e.ce_clean, e.ce_spliced, e.ce_zero, e.ce_loss_recovered,
         direct.recovered, direct.tokens, texts.tokens, e.kl_spliced, e.kl_zero, e.kl_score, e.l2_ratio]
        "#,
        dir = dir.path().display(),
        text = TEXTS[2]
    );
    let v: Vec<f64> = eval(&script)
        .into_array()
        .unwrap()
        .iter()
        .map(|v| v.as_float().unwrap_or_else(|_| v.as_int().unwrap() as f64))
        .collect();
    let [steps, tokens, ev, clean, spliced, zero, recovered, direct, direct_tokens, text_tokens, kl, kl_zero, kl_score, l2_ratio] =
        v[..]
    else {
        panic!("{v:?}")
    };
    assert_eq!((steps, tokens, direct_tokens), (60.0, 800.0, 200.0));
    assert!(ev > 0.3, "explained variance {ev}");
    assert!(clean < spliced && spliced < zero, "{v:?}");
    assert!(recovered > 0.0 && recovered < 1.0, "{v:?}");
    // The store was harvested with the same layer and context: the same measurement.
    assert!((recovered - direct).abs() < 1e-9, "{recovered} vs {direct}");
    assert!(text_tokens > 10.0 && text_tokens < 32.0, "{text_tokens}");
    assert!(0.0 < kl && kl < kl_zero, "{v:?}");
    assert!((kl_score - (kl_zero - kl) / kl_zero).abs() < 1e-12, "{v:?}");
    assert!(l2_ratio > 0.3 && l2_ratio < 1.5, "shrinkage {l2_ratio}");
}
