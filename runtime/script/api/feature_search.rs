//! Finding features from scripts: by text (contrastive search, the features
//! of each token), by decoder direction (neighbours in one SAE or across
//! sizes), and against the model's own neurons (correlations).
use crate::core::analysis::{NeuronCorrelations, NeuronOptions};
use crate::core::precision::Precision;
use crate::script::api::activations::ScriptCorpus;
use crate::script::api::model::ScriptModel;
use crate::script::api::sae::Sae;
use crate::script::api::sae_options::precision_option;
use crate::script::convert::{string_list, Options};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Map, INT};

fn neighbor_list(
    sae: &crate::core::sae::Sae,
    feature: INT,
    other: &crate::core::sae::Sae,
    k: INT,
) -> ScriptResult<Array> {
    let k = usize::try_from(k).map_err(|_| runtime_error(format!("k must be >= 0, got {k}")))?;
    Ok(crate::core::analysis::neighbors(sae, feature, other, k)?
        .into_iter()
        .map(|n| {
            let mut m = Map::new();
            m.insert("feature".into(), Dynamic::from(n.feature));
            m.insert("cosine".into(), Dynamic::from(n.cosine));
            Dynamic::from(m)
        })
        .collect())
}

fn correlations_map(c: &NeuronCorrelations) -> Map {
    let ints = |v: Vec<i64>| -> Array { v.into_iter().map(Dynamic::from).collect() };
    let floats = |v: &[f64]| -> Array { v.iter().map(|&x| Dynamic::from(x)).collect() };
    let mut m = Map::new();
    m.insert("features".into(), Dynamic::from(ints(c.features.clone())));
    m.insert("max_abs_r".into(), Dynamic::from(floats(&c.max_abs_r)));
    m.insert("r".into(), Dynamic::from(floats(&c.r)));
    m.insert(
        "best_layer".into(),
        Dynamic::from(ints(c.best_layer.iter().map(|&l| l as i64).collect())),
    );
    m.insert(
        "best_neuron".into(),
        Dynamic::from(ints(c.best_neuron.clone())),
    );
    m.insert(
        "fraction_at_most_0_3".into(),
        Dynamic::from(c.fraction_at_most(0.3)),
    );
    let fired = c.max_abs_r.iter().filter(|r| r.is_finite()).count();
    m.insert("fired".into(), Dynamic::from(fired as INT));
    m.insert("tokens".into(), Dynamic::from(c.tokens as INT));
    m.insert("seconds_forward".into(), Dynamic::from(c.seconds_forward));
    m.insert("seconds_encode".into(), Dynamic::from(c.seconds_encode));
    m.insert("seconds_sums".into(), Dynamic::from(c.seconds_sums));
    m
}

#[export_module]
pub mod feature_search_api {
    use super::*;

    pub type Sae = super::Sae;
    pub type Model = ScriptModel;
    pub type Corpus = ScriptCorpus;

    /// The features most active on `texts` (each text scored by a feature's maximum over its tokens, averaged over
    /// texts); with `negatives`, minus the same over those, so what the texts share rather than text in general.
    /// Options: negatives, k (10), layer/hook (default: the SAE's hook_name).
    /// Returns `[#{feature, score, positive, negative, fired}]`, best first.
    /// `s.search(m, ["Bonjour, je suis", "Il fait beau"], #{negatives: ["Hello, I am", "The weather is nice"]})`
    #[rhai_fn(return_raw)]
    pub fn search(s: &mut Sae, model: ScriptModel, texts: Array, opts: Map) -> ScriptResult<Array> {
        let o = Options::new(&opts, "search", &["negatives", "k", "layer", "hook"])?;
        let sae = s.borrow();
        let site = crate::script::api::analysis::sae_site(&model, &sae, &o)?;
        let texts = string_list(&Dynamic::from(texts), "search: texts")?;
        let negatives = match opts.get("negatives") {
            Some(n) => string_list(n, "search: negatives")?,
            None => Vec::new(),
        };
        let k = o.positive("k", 10)?;
        let hits = crate::core::analysis::search(&model, &sae, site, &texts, &negatives, k)?;
        Ok(hits
            .into_iter()
            .map(|h| {
                let mut m = Map::new();
                m.insert("feature".into(), Dynamic::from(h.feature));
                m.insert("score".into(), Dynamic::from(h.score));
                m.insert("positive".into(), Dynamic::from(h.positive));
                m.insert("negative".into(), Dynamic::from(h.negative));
                m.insert("fired".into(), Dynamic::from(h.fired));
                Dynamic::from(m)
            })
            .collect())
    }

    /// `search` with every default. `s.search(m, ["def f(x):", "import numpy as np"])`
    #[rhai_fn(name = "search", return_raw)]
    pub fn search_default(s: &mut Sae, model: ScriptModel, texts: Array) -> ScriptResult<Array> {
        search(s, model, texts, Map::new())
    }

    /// Per token of `text`, its strongest features: `[#{token, features: [#{feature, activation}]}]`.
    /// Options: k (5), layer/hook. `s.features_for(m, "The Golden Gate Bridge")`
    #[rhai_fn(return_raw)]
    pub fn features_for(
        s: &mut Sae,
        model: ScriptModel,
        text: &str,
        opts: Map,
    ) -> ScriptResult<Array> {
        let o = Options::new(&opts, "features_for", &["k", "layer", "hook"])?;
        let sae = s.borrow();
        let site = crate::script::api::analysis::sae_site(&model, &sae, &o)?;
        let tokens =
            crate::core::analysis::features_for(&model, &sae, site, text, o.positive("k", 5)?)?;
        Ok(tokens
            .into_iter()
            .map(|t| {
                let mut m = Map::new();
                m.insert("token".into(), Dynamic::from(t.token));
                let features: Array = t
                    .features
                    .into_iter()
                    .map(|(f, a)| {
                        let mut e = Map::new();
                        e.insert("feature".into(), Dynamic::from(f));
                        e.insert("activation".into(), Dynamic::from(a as f64));
                        Dynamic::from(e)
                    })
                    .collect();
                m.insert("features".into(), Dynamic::from(features));
                Dynamic::from(m)
            })
            .collect())
    }

    /// `features_for` with every default.
    #[rhai_fn(name = "features_for", return_raw)]
    pub fn features_for_default(
        s: &mut Sae,
        model: ScriptModel,
        text: &str,
    ) -> ScriptResult<Array> {
        features_for(s, model, text, Map::new())
    }

    /// The `k` features nearest to `feature` by decoder cosine similarity: `[#{feature, cosine}]`, closest first.
    /// `s.neighbors(12, 5)`
    #[rhai_fn(name = "neighbors", return_raw)]
    pub fn own_neighbors(s: &mut Sae, feature: INT, k: INT) -> ScriptResult<Array> {
        let sae = s.borrow();
        neighbor_list(&sae, feature, &sae, k)
    }

    /// The `k` features of `other` (e.g. a larger SAE trained on the same store) nearest to `feature` of `s`:
    /// how a feature splits. `neighbors(s_1k, s_4k, 12, 5)`
    #[rhai_fn(name = "neighbors", return_raw)]
    pub fn cross_neighbors(s: Sae, other: Sae, feature: INT, k: INT) -> ScriptResult<Array> {
        let (a, b) = (s.borrow(), other.borrow());
        neighbor_list(&a, feature, &b, k)
    }

    /// Pearson correlation of each chosen feature with every MLP neuron of `layers` over `tokens` tokens of the
    /// corpus, in one streaming pass: `#{features, max_abs_r, r, best_layer, best_neuron, fraction_at_most_0_3,
    /// fired, tokens, seconds_forward, seconds_encode, seconds_sums}` (features that never fired have max_abs_r NaN and are left out of the fraction).
    /// Options: features (default the first 1024), layers (default every layer before the SAE's), tokens (100000),
    /// context (128), layer/hook (the SAE's site), progress, precision (what the SAE encodes in: "f32" or "bf16").
    /// `let c = neuron_correlations(m, s, demo_corpus(), #{tokens: 20000});`
    #[rhai_fn(return_raw)]
    pub fn neuron_correlations(
        model: Model,
        s: Sae,
        corpus: Corpus,
        opts: Map,
    ) -> ScriptResult<Map> {
        #[rustfmt::skip]
        let known = ["features", "layers", "tokens", "context", "layer", "hook", "progress", "precision"];
        let o = Options::new(&opts, "neuron_correlations", &known)?;
        let sae = s.borrow();
        let site = crate::script::api::analysis::sae_site(&model, &sae, &o)?;
        let int_option = |key: &str| -> ScriptResult<Option<Vec<i64>>> {
            match opts.get(key) {
                None => Ok(None),
                Some(v) => {
                    let array = v.clone().into_array().map_err(|t| {
                        runtime_error(format!(
                            "neuron_correlations: {key} must be an array, got {t}"
                        ))
                    })?;
                    Ok(Some(crate::script::convert::int_list(&array, key)?))
                }
            }
        };
        let features =
            int_option("features")?.unwrap_or_else(|| (0..sae.cfg.n_features.min(1024)).collect());
        let layers = match int_option("layers")? {
            Some(layers) => layers
                .into_iter()
                .map(|l| {
                    usize::try_from(l)
                        .map_err(|_| runtime_error(format!("layer {l} is out of range")))
                })
                .collect::<ScriptResult<Vec<_>>>()?,
            None => (0..site.layer.max(1)).collect(),
        };
        let options = NeuronOptions {
            features,
            layers,
            tokens: o.positive("tokens", 100_000)?,
            context: o.positive("context", 128)?,
            show_progress: o.bool("progress", true)?,
            precision: precision_option(&o, Precision::F32)?,
        };
        let c = crate::core::analysis::neuron_correlations(&model, &sae, site, &corpus, &options)?;
        Ok(correlations_map(&c))
    }

    /// `neuron_correlations` with every default.
    #[rhai_fn(name = "neuron_correlations", return_raw)]
    pub fn neuron_correlations_default(model: Model, s: Sae, corpus: Corpus) -> ScriptResult<Map> {
        neuron_correlations(model, s, corpus, Map::new())
    }
}
