//! SmolLM2 against an independent implementation: logits, residual stream
//! and MLP activations from Hugging Face transformers reading the same GGUF
//! (`tests/fixtures/model/`), greedy generation, and the Rhai surface.
//! Tests skip with a note when the model is not in the cache; `make test`
//! fetches it first.
use crate::support::{eval, eval_err};
use saelab::core::model::{
    default_model_path, Edit, GenerateOptions, HookPoint, Hooks, Model, Site,
};
use serde_json::Value;
use std::sync::Mutex;
use tch::{Kind, Tensor};

/// One model for the whole test binary: loading costs seconds and ~600 MB.
pub static MODEL: Mutex<Option<Model>> = Mutex::new(None);

/// Runs `f` with the cached SmolLM2, or skips (with a note) when it is absent.
pub fn with_model(f: impl FnOnce(&Model)) {
    let mut guard = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        if !model_present() {
            return;
        }
        *guard = Some(Model::load_default(tch::Device::Cpu).unwrap());
    }
    f(guard.as_ref().unwrap());
}

pub fn model_present() -> bool {
    let present = default_model_path().is_file();
    if !present {
        eprintln!(
            "skipped: {} is absent (run setup/fetch-model.sh)",
            default_model_path().display()
        );
    }
    present
}

fn reference() -> Value {
    let text = std::fs::read_to_string("tests/fixtures/model/reference.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

/// `|a - b| <= tol * max(1, |b|)` elementwise, naming the first offender.
fn assert_near(what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * e.abs().max(1.0),
            "{what}[{i}]: {a} vs reference {e}"
        );
    }
}

// The fixture rounds to 6 decimals and both sides compute in f32, so
// agreement is ~1e-6 in practice; the tolerances leave room for other BLAS
// builds without letting a real bug (wrong RoPE layout, norm, GQA) through.
const LOGIT_TOL: f64 = 2e-3;
const ACTIVATION_TOL: f64 = 1e-3;

#[test]
fn logits_match_transformers_on_the_same_gguf() {
    with_model(|model| {
        for case in reference()["texts"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(model.encode(text).unwrap(), ids(&case["ids"]), "{text}");
            let logits = model.logits(text).unwrap().to_kind(Kind::Double);
            assert_eq!(
                logits.size(),
                [case["ids"].as_array().unwrap().len() as i64, 49152]
            );
            let stats = &case["row_stats"];
            let (max, _) = logits.max_dim(-1, false);
            assert_near("max", &values(&max), &floats(&stats["max"]), LOGIT_TOL);
            assert_near(
                "mean",
                &values(&logits.mean_dim(-1, false, None)),
                &floats(&stats["mean"]),
                LOGIT_TOL,
            );
            assert_near(
                "std",
                &values(&logits.std_dim(-1, true, false)),
                &floats(&stats["std"]),
                LOGIT_TOL,
            );
            let lse = logits.logsumexp([-1], false);
            assert_near(
                "logsumexp",
                &values(&lse),
                &floats(&stats["logsumexp"]),
                LOGIT_TOL,
            );
            let last = &case["last_positions"];
            for (row, position) in last["positions"].as_array().unwrap().iter().enumerate() {
                let row_logits = logits.get(position.as_i64().unwrap());
                let top = ids(&last["top_ids"][row]);
                assert_eq!(
                    values(&row_logits.argmax(0, false))[0] as u32,
                    top[0],
                    "top-1 at {position}"
                );
                let index = Tensor::from_slice(&top.iter().map(|&i| i as i64).collect::<Vec<_>>());
                let at_top = values(&row_logits.index_select(0, &index));
                assert_near(
                    "top-10 logits",
                    &at_top,
                    &floats(&last["top_logits"][row]),
                    LOGIT_TOL,
                );
            }
        }
    });
}

/// Compares an activation `[T, width]` with the fixture's norms and slices.
fn assert_activation_matches(what: &str, act: &Tensor, want: &Value) {
    let norms = act.norm_scalaropt_dim(2, [-1], false);
    assert_near(
        &format!("{what} norms"),
        &values(&norms),
        &floats(&want["norms"]),
        ACTIVATION_TOL,
    );
    for (i, position) in want["positions"].as_array().unwrap().iter().enumerate() {
        let row = act.get(position.as_i64().unwrap()).narrow(0, 0, 16);
        // Relative to the row's norm: a few dims of a large residual carry its rounding.
        let scale = values(&norms)[position.as_u64().unwrap() as usize].max(1.0);
        let diffs: Vec<f64> = values(&row)
            .iter()
            .zip(floats(&want["first_dims"][i]))
            .map(|(a, e)| (a - e).abs())
            .collect();
        assert!(
            diffs.iter().all(|d| *d <= ACTIVATION_TOL * scale),
            "{what} at position {position}: differences {diffs:?}"
        );
    }
}

#[test]
fn residual_stream_and_neurons_match_transformers() {
    with_model(|model| {
        for case in reference()["texts"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            for (layer, want) in case["resid_pre"].as_object().unwrap() {
                let site = Site::resid_pre(layer.parse().unwrap());
                let act = model.activations(text, site).unwrap();
                assert_eq!(act.size()[1], 576);
                assert_activation_matches(&format!("{site}"), &act, want);
            }
            let mlp = &case["mlp"];
            let site = Site::mlp(mlp["layer"].as_u64().unwrap() as usize);
            let act = model.activations(text, site).unwrap();
            assert_eq!(act.size()[1], 1536);
            assert_activation_matches(&format!("{site}"), &act, mlp);
        }
    });
}

#[test]
fn greedy_completion_of_the_capital_of_france_is_paris_as_in_transformers() {
    with_model(|model| {
        let greedy = &reference()["greedy"];
        let prompt = greedy["prompt"].as_str().unwrap();
        let expected = ids(&greedy["completion_ids"]);
        let options = GenerateOptions {
            max_tokens: expected.len(),
            ..Default::default()
        };
        let text = model.generate(prompt, &options, &Hooks::default()).unwrap();
        assert!(text.contains("Paris"), "{text:?}");
        assert_eq!(text, model.decode(&expected).unwrap());
    });
}

#[test]
fn steering_the_residual_changes_the_completion_and_sampling_repeats() {
    with_model(|model| {
        let options = GenerateOptions {
            max_tokens: 6,
            ..Default::default()
        };
        let plain = model
            .generate("The capital of France is", &options, &Hooks::default())
            .unwrap();
        // Add the embedding direction of " London" strongly at a middle layer.
        let london = model.encode(" London").unwrap()[0];
        let embed = model
            .activations(" London", Site::resid_pre(0))
            .unwrap()
            .get(0);
        let push = &embed / embed.norm() * 80.0;
        let hooks = Hooks::default().edit(Site::resid_pre(12), Edit::Add(push));
        let steered = model
            .generate("The capital of France is", &options, &hooks)
            .unwrap();
        assert_ne!(
            steered, plain,
            "steering toward token {london} changed nothing"
        );

        let sampled = GenerateOptions {
            max_tokens: 8,
            temperature: 0.8,
            top_p: 0.9,
            seed: 3,
            chat: true,
        };
        let a = model
            .generate("Name a colour.", &sampled, &Hooks::default())
            .unwrap();
        let b = model
            .generate("Name a colour.", &sampled, &Hooks::default())
            .unwrap();
        assert_eq!(a, b);
        assert!(!a.contains("<|im_end|>"), "{a:?}");
    });
}

#[test]
fn chat_prompts_use_the_models_template() {
    with_model(|model| {
        let prompt = model.prompt_text("What is 2+2?", true).unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(!model.tokenizer.add_bos_token());
        assert_eq!(model.encode("Hi").unwrap().len(), 1);
    });
}

#[test]
fn hook_names_and_layer_ranges_are_checked() {
    with_model(|model| {
        let err = model.activations("Hi", Site::resid_pre(31)).unwrap_err();
        assert!(
            err.to_string().contains("layer 31 is out of range"),
            "{err}"
        );
        let err = model.activations("", Site::resid_pre(1)).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert!("resid_mid".parse::<HookPoint>().is_err());
        let final_resid = model.activations("Hi there", Site::resid_pre(30)).unwrap();
        assert_eq!(final_resid.size(), [2, 576]);
    });
}

#[test]
fn scripts_load_the_model_and_read_its_activations() {
    if !model_present() {
        return;
    }
    let _guard = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    let value = eval(
        r#"
        let m = load_model();
        let ids = m.tokenize("The capital of France is");
        let logits = m.forward("The capital of France is");
        let resid = m.activations("The capital of France is", 15);
        let neurons = m.activations("The capital of France is", 3, #{hook: "mlp"});
        let text = m.generate("The capital of France is", #{max_tokens: 3});
        [ids.len(), m.n_layers, m.d_model, logits.shape, resid.shape, neurons.shape,
         m.decode(ids), text.contains("Paris")]
        "#,
    );
    let items = value.into_array().unwrap();
    let show: Vec<String> = items.iter().map(|v| v.to_string()).collect();
    assert_eq!(
        show,
        [
            "5",
            "30",
            "576",
            "[5, 49152]",
            "[5, 576]",
            "[5, 1536]",
            "The capital of France is",
            "true"
        ]
    );
    let err = eval_err(r#"load_model().activations("Hi", 31)"#);
    assert!(err.contains("layer 31 is out of range"), "{err}");
    let err = eval_err(r#"load_model().activations("Hi", 2, #{hook: "attn"})"#);
    assert!(err.contains("unknown hook 'attn'"), "{err}");
    let err = eval_err(r#"load_model("/nonexistent/model.gguf")"#);
    assert!(
        err.contains("no model file at /nonexistent/model.gguf"),
        "{err}"
    );
}

/// `benches/model_throughput.py` reads these `key=value` lines.
#[test]
fn the_model_bench_script_prints_what_its_driver_reads() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stdout = crate::support::run_shipped(
        "benches/model_throughput.rhai",
        &[
            format!("out={}", dir.path().join("acts").display()),
            "tokens=20".into(),
            "new_tokens=2".into(),
        ],
    );
    for key in [
        "harvest_rows=20",
        "harvest_seconds=",
        "generate_tokens=",
        "generate_seconds=",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(key)),
            "no {key} in {stdout}"
        );
    }
}
