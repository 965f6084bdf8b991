//! Harvesting SmolLM2 activations into a store: the rows are the model's
//! activations, the scale is right, and an interrupted or extended harvest
//! ends with exactly the rows of an uninterrupted one.
use crate::model::{model_present, with_model, MODEL};
use crate::support::eval;
use saelab::core::activations::{harvest, HarvestOptions, Manifest, Store};
use saelab::core::corpus::{Corpus, CorpusOptions};
use saelab::core::model::{perplexity, Hooks, Logits, Site};
use std::path::Path;
use tch::{Kind, Tensor};

const TEXTS: [&str; 4] = [
    "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the one-mile-wide strait connecting San Francisco Bay and the Pacific Ocean. It opened in 1937.",
    "Le pont du Golden Gate est un pont suspendu des États-Unis qui traverse le détroit du Golden Gate, à San Francisco.",
    "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate: rough winds do shake the darling buds of May, and summer's lease hath all too short a date.",
];

fn small_corpus(dir: &Path) -> Corpus {
    let lines: Vec<String> = TEXTS
        .iter()
        .cycle()
        .take(40)
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    Corpus::from_paths(&[path.display().to_string()], CorpusOptions::default()).unwrap()
}

fn options(out: &Path, tokens: usize) -> HarvestOptions {
    let mut options = HarvestOptions::new(Site::resid_pre(3), tokens, out);
    options.context = 32;
    options.batch_size = 3;
    options.shard_rows = 100;
    options
}

fn all_rows(store: &Store) -> Tensor {
    store.rows(&(0..store.len()).collect::<Vec<_>>()).unwrap()
}

/// The same rows up to the last bits of f32: on some CPUs (this project's
/// machines with AMX) libtorch picks its matmul kernel by batch size, so a
/// window batched with other windows differs from the same window batched
/// otherwise in the last bits, which f16 storage can turn into one f16 step.
fn assert_same_rows(rows: &Tensor, reference: &Tensor) {
    assert_eq!(rows.size(), reference.size());
    let diff = rows.f_sub(reference).unwrap().abs().max().double_value(&[]);
    let largest = reference.abs().max().double_value(&[]);
    assert!(
        diff <= 1e-3 * largest,
        "rows differ by {diff} (largest {largest})"
    );
}

#[test]
fn harvested_rows_are_the_models_activations_with_their_tokens() {
    with_model(|model| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = small_corpus(dir.path());
        let store = harvest(model, &corpus, &options(&dir.path().join("store"), 500)).unwrap();
        assert_eq!((store.len(), store.dim()), (500, 576));
        let manifest = store.manifest().unwrap();
        assert!(
            manifest.shards.len() >= 3,
            "{} shards",
            manifest.shards.len()
        );
        assert!(manifest.complete);
        // Scaled rows have mean squared norm d_model (f16 storage rounds a little).
        let scaled = all_rows(&store) * store.scale();
        let mean_sq = scaled
            .square()
            .sum_dim_intlist(1, false, Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
        assert!((mean_sq - 576.0).abs() < 0.5, "{mean_sq}");
        // Rows are the model's activations at the stored position of the stored window.
        for i in [0, 57, 250, 499] {
            let info = store.row_info(i).unwrap().unwrap();
            assert_eq!(info.window[info.window_position], info.token);
            assert!(info.window_position > 0);
            let acts = model
                .run(
                    std::slice::from_ref(&info.window),
                    &Hooks::reading(&[Site::resid_pre(3)]),
                    Logits::Skip,
                )
                .unwrap();
            let want = acts.activations[0].get(0).get(info.window_position as i64);
            let got = store.rows(&[i]).unwrap().get(0);
            let err =
                (&got - &want).abs().max().double_value(&[]) / want.abs().max().double_value(&[]);
            assert!(err < 2e-3, "row {i}: relative error {err}");
        }
        // Every row's origin points into the corpus.
        let info = store.row_info(0).unwrap().unwrap();
        assert_eq!((info.document, info.position), (0, 1));
    });
}

#[test]
fn an_interrupted_or_extended_harvest_ends_with_the_same_rows() {
    with_model(|model| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = small_corpus(dir.path());
        let whole = harvest(model, &corpus, &options(&dir.path().join("whole"), 450)).unwrap();

        // Extended: 200 rows first, then ask for 450.
        let extended_dir = dir.path().join("extended");
        assert_eq!(
            harvest(model, &corpus, &options(&extended_dir, 200))
                .unwrap()
                .len(),
            200
        );
        let extended = harvest(model, &corpus, &options(&extended_dir, 450)).unwrap();

        // Crashed: a finished harvest rolled back to its second shard, as if the
        // process died while writing the third: a half-written staging file and
        // a renamed shard the manifest never listed.
        let crashed_dir = dir.path().join("crashed");
        harvest(model, &corpus, &options(&crashed_dir, 450)).unwrap();
        let mut manifest = Manifest::read(&crashed_dir).unwrap().unwrap();
        let kept: Vec<_> = manifest.shards.drain(2..).collect();
        manifest.rows -= kept.iter().map(|s| s.rows).sum::<usize>();
        manifest.sum_squared_norm -= kept.iter().map(|s| s.sum_squared_norm).sum::<f64>();
        manifest.windows_done = kept[0].first_window;
        manifest.partial_rows = 0;
        manifest.complete = false;
        manifest.write(&crashed_dir).unwrap();
        std::fs::write(crashed_dir.join("shard-00003.npy.tmp"), b"half a shard").unwrap();
        std::fs::write(crashed_dir.join("shard-00002.npy"), b"garbage").unwrap();
        let resumed = harvest(model, &corpus, &options(&crashed_dir, 450)).unwrap();
        assert!(!crashed_dir.join("shard-00003.npy.tmp").exists());

        let reference = all_rows(&whole);
        for store in [&extended, &resumed] {
            assert_eq!(store.len(), 450);
            assert_same_rows(&all_rows(store), &reference);
            assert!((store.scale() / whole.scale() - 1.0).abs() < 1e-6);
            for i in [0, 199, 200, 449] {
                assert_eq!(store.row_info(i).unwrap(), whole.row_info(i).unwrap());
            }
        }
    });
}

#[test]
fn a_store_of_other_settings_or_a_damaged_shard_is_refused() {
    with_model(|model| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = small_corpus(dir.path());
        let out = dir.path().join("store");
        harvest(model, &corpus, &options(&out, 150)).unwrap();
        let mut other_layer = options(&out, 150);
        other_layer.sites = vec![Site::resid_pre(4)];
        let err = harvest(model, &corpus, &other_layer)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already holds a harvest with layer 3, not 4"),
            "{err}"
        );
        let err = harvest(
            model,
            &corpus,
            &HarvestOptions::new(Site::mlp(30), 10, dir.path().join("x")),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("layer 30 is out of range"),
            "{err}"
        );
        let shard = out.join("shard-00000.npy");
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
        let err = Store::open(&out).unwrap_err().to_string();
        assert!(err.contains("is truncated"), "{err}");
    });
}

#[test]
fn perplexity_is_low_on_english_prose() {
    with_model(|model| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = small_corpus(dir.path());
        let windows = corpus.windows(&model.tokenizer, 64).unwrap();
        let result = perplexity(model, windows, 400, 4, &Hooks::default()).unwrap();
        assert_eq!(result.tokens, 400);
        assert!(
            result.perplexity > 1.0 && result.perplexity < 40.0,
            "{result:?}"
        );
    });
}

#[test]
fn scripts_harvest_a_corpus_and_draw_batches() {
    if !model_present() {
        return;
    }
    let _guard = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    small_corpus(dir.path());
    let script = format!(
        r#"
        let m = load_model();
        let c = corpus("{dir}/corpus.jsonl");
        let s = m.harvest(c, #{{layer: 2, tokens: 120, context: 16, hook: "mlp", out: "{dir}/acts"}});
        let again = open_store("{dir}/acts");
        let b = again.batch(32);
        let row = again.tokens(5);
        [s.len, again.dim, b.shape, row.window[row.window_position] == row.token,
         again.manifest.hook, store_from_tensor(randn([10, 4])).len]
        "#,
        dir = dir.path().display()
    );
    let show: Vec<String> = eval(&script)
        .into_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(show, ["120", "1536", "[32, 1536]", "true", "mlp", "10"]);
}

#[test]
fn the_demo_corpus_mixes_languages_and_code_from_the_start() {
    let path = saelab::core::model::cache_dir().join("corpus/demo-v1/train.jsonl");
    if !path.is_file() {
        eprintln!(
            "skipped: {} is absent (run setup/fetch-corpus.sh)",
            path.display()
        );
        return;
    }
    let first = eval("demo_corpus().documents(400)").into_array().unwrap();
    let texts: Vec<String> = first
        .into_iter()
        .map(|d| d.into_string().unwrap())
        .collect();
    let has = |needle: &str| texts.iter().any(|t| t.contains(needle));
    assert!(
        has(" the ") && has(" est ") && has(" es "),
        "English, French and Spanish"
    );
    let held_out = eval("demo_corpus(#{split: \"heldout\"}).documents(1000)")
        .into_array()
        .unwrap();
    assert!(held_out.len() > 500);
}

#[test]
fn a_norm_limit_leaves_out_rows_and_resumes_to_the_same_rows() {
    with_model(|model| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = small_corpus(dir.path());
        // A ratio this low drops many ordinary rows, so the test need not find a sink.
        let limited = |out: &str, tokens| {
            let mut o = options(&dir.path().join(out), tokens);
            o.max_norm_ratio = Some(1.2);
            o
        };
        let all = harvest(model, &corpus, &options(&dir.path().join("all"), 450)).unwrap();
        let whole = harvest(model, &corpus, &limited("whole", 300)).unwrap();
        assert_eq!(whole.len(), 300, "the target is still reached");
        let manifest = whole.manifest().unwrap();
        assert!(manifest.dropped_rows > 0 && manifest.excluded.contains("median norm"));

        // Every kept row is a row of the unlimited harvest, and the windows skipped none
        // that were not dropped: kept + dropped = positions the unlimited harvest kept.
        let kept = all_rows(&whole);
        let first_rows: Vec<usize> = (0..whole.len()).collect();
        let positions = |s: &Store, rows: &[usize]| -> Vec<(usize, usize)> {
            rows.iter()
                .map(|&i| {
                    let r = s.row_info(i).unwrap().unwrap();
                    (r.document, r.position)
                })
                .collect()
        };
        let all_positions = positions(&all, &(0..all.len()).collect::<Vec<_>>());
        for (i, p) in positions(&whole, &first_rows).iter().enumerate() {
            let j = all_positions
                .iter()
                .position(|q| q == p)
                .expect("a row of the harvest");
            let same = kept
                .get(i as i64)
                .f_sub(&all.rows(&[j]).unwrap().get(0))
                .unwrap();
            assert_eq!(same.abs().max().double_value(&[]), 0.0);
        }

        // Extended from 120 rows, differently batched: the same rows.
        harvest(model, &corpus, &limited("extended", 120)).unwrap();
        let extended = harvest(model, &corpus, &limited("extended", 300)).unwrap();
        assert_same_rows(&all_rows(&extended), &kept);
        assert_eq!(
            extended.manifest().unwrap().dropped_rows,
            manifest.dropped_rows
        );

        // Resuming with another limit would mix two selections: refused.
        let err = harvest(model, &corpus, &options(&dir.path().join("whole"), 400)).unwrap_err();
        assert!(err.to_string().contains("max_norm_ratio"), "{err}");
    });
}
