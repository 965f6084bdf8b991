//! Reading features from scripts: every feature's activation records in one
//! pass over a store, and one feature's examples highlighted in the
//! terminal or written as HTML.
use crate::core::analysis::records::{self, FeatureRecords, RecordOptions};
use crate::core::analysis::{ExampleOptions, FeatureExamples};
use crate::core::dashboard::{write_dashboard, DashboardInputs, DashboardOptions};
use crate::script::api::activations::ScriptStore;
use crate::script::api::model::ScriptModel;
use crate::script::api::sae::Sae;
use crate::script::api::sae_options::precision_option;
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Map, INT};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

pub type Records = Rc<FeatureRecords>;
pub type Examples = Rc<FeatureExamples>;

/// Records kept for reuse: enough for a few SAEs compared side by side.
const CACHED_RECORDS: usize = 4;

thread_local! {
    /// The records computed or loaded most recently, newest last, so that
    /// asking for several features' examples (or comparing a few SAEs over
    /// one store) runs each records pass once.
    static RECENT_RECORDS: RefCell<Vec<Records>> = const { RefCell::new(Vec::new()) };
}

fn remember(records: &Records) {
    RECENT_RECORDS.with(|c| {
        let mut recent = c.borrow_mut();
        recent.retain(|r| !Rc::ptr_eq(r, records));
        if recent.len() == CACHED_RECORDS {
            recent.remove(0);
        }
        recent.push(records.clone());
    });
}

/// Records of this SAE over this store: the cached ones when they still
/// match (same weights, same store), else a new pass.
pub(crate) fn records_for(
    sae: &crate::core::sae::Sae,
    store: &ScriptStore,
    opts: &RecordOptions,
) -> ScriptResult<Records> {
    let store_path = store.path().map(|p| p.display().to_string());
    let recent = RECENT_RECORDS.with(|c| c.borrow().clone());
    // Checking the store and sizes first keeps the weight checksum to the
    // candidates that could match.
    let usable = recent.into_iter().rev().find(|r| {
        r.meta.store_rows == store.len()
            && r.meta.store_path == store_path
            && r.meta.n_features == sae.cfg.n_features
            && r.meta.top_k >= opts.top_k
            && opts
                .max_rows
                .is_none_or(|rows| r.meta.rows == rows.min(store.len()))
            && r.check_sae(sae).is_ok()
    });
    if let Some(records) = usable {
        remember(&records);
        return Ok(records);
    }
    let records = Rc::new(records::compute_records(sae, store, opts)?);
    remember(&records);
    Ok(records)
}

/// The `records` option, or records of this SAE and store computed (once)
/// with at least `k` top activations per feature.
pub(crate) fn records_option(
    opts: &Map,
    what: &str,
    sae: &crate::core::sae::Sae,
    store: &ScriptStore,
    k: usize,
) -> ScriptResult<Records> {
    match opts.get("records") {
        Some(r) => r.read_lock::<Records>().map(|r| r.clone()).ok_or_else(|| {
            runtime_error(format!(
                "{what}: records must be records, got {}",
                r.type_name()
            ))
        }),
        None => {
            let top_k = (k as i64).max(RecordOptions::default().top_k);
            records_for(
                sae,
                store,
                &RecordOptions {
                    top_k,
                    ..Default::default()
                },
            )
        }
    }
}

/// One feature's examples with their text, from the `records` option or
/// the cached records of this SAE and store.
pub(crate) fn examples_of(
    opts: &Map,
    what: &str,
    sae: &crate::core::sae::Sae,
    store: &ScriptStore,
    model: &ScriptModel,
    feature: INT,
    options: &ExampleOptions,
) -> ScriptResult<FeatureExamples> {
    let records = records_option(opts, what, sae, store, options.k)?;
    Ok(crate::core::analysis::feature_examples(
        sae,
        store,
        &records,
        &model.tokenizer,
        feature,
        options,
    )?)
}

const RECORD_KEYS: &[&str] = &[
    "top_k",
    "samples_per_bin",
    "batch_size",
    "rows",
    "path",
    "progress",
    "precision",
];

fn record_options(o: &Options) -> ScriptResult<RecordOptions> {
    let d = RecordOptions::default();
    Ok(RecordOptions {
        top_k: o.positive("top_k", d.top_k)? as i64,
        samples_per_bin: o.positive("samples_per_bin", d.samples_per_bin)? as i64,
        batch_size: o.positive("batch_size", d.batch_size as i64)?,
        max_rows: o.has("rows").then(|| o.positive("rows", 1)).transpose()?,
        show_progress: o.bool("progress", d.show_progress)?,
        precision: precision_option(o, d.precision)?,
    })
}

/// Records from `path` when they were made from this SAE, else computed
/// and saved there.
fn records_at(
    sae: &crate::core::sae::Sae,
    store: &ScriptStore,
    opts: &RecordOptions,
    path: &Path,
) -> ScriptResult<Records> {
    if path.join("records.json").exists() {
        let records = FeatureRecords::load(path)?;
        records.check_sae(sae).map_err(|e| {
            runtime_error(format!(
                "{}: {e}; choose another path or delete that folder",
                path.display()
            ))
        })?;
        let records = Rc::new(records);
        remember(&records);
        return Ok(records);
    }
    // A folder that cannot be written is an error now, not after the pass.
    std::fs::create_dir_all(path).map_err(|e| runtime_error(format!("{}: {e}", path.display())))?;
    let records = records_for(sae, store, opts)?;
    records.save(path)?;
    Ok(records)
}

pub(crate) fn example_options(o: &Options) -> ScriptResult<ExampleOptions> {
    let d = ExampleOptions::default();
    Ok(ExampleOptions {
        k: o.non_negative("k", d.k as u64)? as usize,
        quantiles: o.non_negative("quantiles", d.quantiles as u64)? as usize,
        per_quantile: o.non_negative("per_quantile", d.per_quantile as u64)? as usize,
        before: o.non_negative("before", d.before as u64)? as usize,
        after: o.non_negative("after", d.after as u64)? as usize,
        seed: o.non_negative("seed", crate::core::rng::current_seed())?,
    })
}

pub(crate) fn model_option(opts: &Map, what: &str) -> ScriptResult<ScriptModel> {
    match opts
        .get("model")
        .map(|m| m.read_lock::<ScriptModel>().map(|m| m.clone()))
    {
        Some(Some(model)) => Ok(model),
        Some(None) => Err(runtime_error(format!("{what}: model must be a model"))),
        None => Err(runtime_error(format!(
            "{what}: give the model whose tokens the store holds, e.g. #{{model: m}}"
        ))),
    }
}

fn context_map(c: &crate::core::analysis::Context) -> Map {
    let mut m = Map::new();
    m.insert("row".into(), Dynamic::from(c.row as INT));
    m.insert("activation".into(), Dynamic::from(c.activation as f64));
    m.insert("text".into(), Dynamic::from(c.plain()));
    let tokens: Array = c.tokens.iter().map(|t| Dynamic::from(t.clone())).collect();
    m.insert("tokens".into(), Dynamic::from(tokens));
    let values: Array = c
        .activations
        .iter()
        .map(|a| a.map_or(Dynamic::UNIT, |v| Dynamic::from(v as f64)))
        .collect();
    m.insert("activations".into(), Dynamic::from(values));
    m.insert("focus".into(), Dynamic::from(c.focus as INT));
    m
}

pub(crate) fn float_array(values: Vec<f64>) -> Array {
    values.into_iter().map(Dynamic::from).collect()
}

#[export_module]
pub mod features_api {
    use super::*;

    pub type Sae = super::Sae;
    pub type Store = ScriptStore;
    pub type Records = super::Records;
    pub type Examples = super::Examples;

    /// Every feature's activation records in one streaming pass over the store: top activations, random samples
    /// per activation level, max, density, histogram. Options: top_k (20), samples_per_bin (8), batch_size (4096),
    /// rows (default all), progress, precision (what the SAE encodes in: "f32" or "bf16"), path (save there; reopened
    /// without recomputing when it holds this SAE's records).
    /// `let r = s.records(store, #{path: "runs/demo/records"});`
    #[rhai_fn(return_raw)]
    pub fn records(s: &mut Sae, store: Store, opts: Map) -> ScriptResult<Records> {
        let o = Options::new(&opts, "records", RECORD_KEYS)?;
        let options = record_options(&o)?;
        let sae = s.borrow();
        match o.string("path")? {
            Some(path) => records_at(&sae, &store, &options, Path::new(&path)),
            None => records_for(&sae, &store, &options),
        }
    }

    /// Records with every default. `s.records(store)`
    #[rhai_fn(name = "records", return_raw)]
    pub fn records_default(s: &mut Sae, store: Store) -> ScriptResult<Records> {
        records(s, store, Map::new())
    }

    /// Reopens records saved by `s.records(store, #{path})`. `let r = load_records("runs/demo/records");`
    #[rhai_fn(return_raw)]
    pub fn load_records(path: &str) -> ScriptResult<Records> {
        Ok(Rc::new(FeatureRecords::load(Path::new(path))?))
    }

    /// Each feature's firing density over the records' rows. `r.density`
    #[rhai_fn(get = "density", pure, return_raw)]
    pub fn density(r: &mut Records) -> ScriptResult<Array> {
        Ok(float_array(r.densities()?))
    }

    /// Each feature's largest activation. `r.max`
    #[rhai_fn(get = "max", pure, return_raw)]
    pub fn max(r: &mut Records) -> ScriptResult<Array> {
        Ok(float_array(r.maxima()?))
    }

    /// Rows the records were made from. `r.rows`
    #[rhai_fn(get = "rows", pure)]
    pub fn rows(r: &mut Records) -> INT {
        r.meta.rows as INT
    }

    /// A feature's top activations: `[#{row, activation}]`, largest first. `r.top(12, 5)`
    #[rhai_fn(pure, return_raw)]
    pub fn top(r: &mut Records, feature: INT, k: INT) -> ScriptResult<Array> {
        let k =
            usize::try_from(k).map_err(|_| runtime_error(format!("k must be >= 0, got {k}")))?;
        Ok(r.top(feature, k)?
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("row".into(), Dynamic::from(e.row as INT));
                m.insert("activation".into(), Dynamic::from(e.activation as f64));
                Dynamic::from(m)
            })
            .collect())
    }

    /// Saves the records in a folder. `r.save("runs/demo/records")`
    #[rhai_fn(pure, return_raw)]
    pub fn save(r: &mut Records, path: &str) -> ScriptResult<()> {
        Ok(r.save(Path::new(path))?)
    }

    #[rhai_fn(name = "to_string", pure)]
    pub fn records_to_string(r: &mut Records) -> String {
        format!(
            "records({} features over {} rows, top {} each)",
            r.meta.n_features, r.meta.rows, r.meta.top_k
        )
    }

    #[rhai_fn(name = "to_debug", pure)]
    pub fn records_to_debug(r: &mut Records) -> String {
        records_to_string(r)
    }

    /// A feature's examples with their text: the top activations and random samples from `quantiles` activation
    /// levels, each with the tokens around it and the feature's activation on every token. Options: model (required:
    /// the tokenizer), k (10), quantiles (5), per_quantile (3), before (12), after (4), seed, records (default: computed
    /// once and reused). `s.examples(store, 12, #{model: m}).show()`
    #[rhai_fn(return_raw)]
    pub fn examples(s: &mut Sae, store: Store, feature: INT, opts: Map) -> ScriptResult<Examples> {
        #[rustfmt::skip]
        let known = ["model", "k", "quantiles", "per_quantile", "before", "after", "seed", "records"];
        let o = Options::new(&opts, "examples", &known)?;
        let model = model_option(&opts, "examples")?;
        let options = example_options(&o)?;
        let sae = s.borrow();
        let examples = examples_of(&opts, "examples", &sae, &store, &model, feature, &options)?;
        Ok(Rc::new(examples))
    }

    /// Writes a feature dashboard into `dir`: a page per feature (highlighted examples, activation histogram,
    /// density, promoted and suppressed tokens, nearest features by decoder cosine) and an index sortable by
    /// density and max activation; returns the index's path. Options as `examples` plus logit_k (10), neighbors (8).
    /// `dashboard(s, store, m, [3, 17, 42], "runs/demo/dashboard")`
    #[rhai_fn(return_raw)]
    pub fn dashboard(
        s: Sae,
        store: Store,
        model: ScriptModel,
        features: Array,
        dir: &str,
        opts: Map,
    ) -> ScriptResult<String> {
        #[rustfmt::skip]
        let known = ["k", "quantiles", "per_quantile", "before", "after", "seed", "records", "logit_k", "neighbors"];
        let o = Options::new(&opts, "dashboard", &known)?;
        let features = crate::script::convert::int_list(&features, "features")?;
        let options = DashboardOptions {
            examples: example_options(&o)?,
            logit_k: o.non_negative("logit_k", 10)? as usize,
            neighbors_k: o.non_negative("neighbors", 8)? as usize,
        };
        let sae = s.borrow();
        let records = records_option(&opts, "dashboard", &sae, &store, options.examples.k)?;
        let inputs = DashboardInputs {
            sae: &sae,
            store: &store,
            records: &records,
            model: &model,
        };
        let index = write_dashboard(&inputs, &features, Path::new(dir), &options)?;
        Ok(index.display().to_string())
    }

    /// `dashboard` with every default.
    #[rhai_fn(name = "dashboard", return_raw)]
    pub fn dashboard_default(
        s: Sae,
        store: Store,
        model: ScriptModel,
        features: Array,
        dir: &str,
    ) -> ScriptResult<String> {
        dashboard(s, store, model, features, dir, Map::new())
    }

    /// Prints the examples, highlighted white → dark orange by activation on a terminal. `ex.show()`
    #[rhai_fn(pure)]
    pub fn show(ex: &mut Examples) {
        crate::script::console::print_highlighted(&ex.render(true), &ex.render(false));
    }

    /// Writes the examples as a self-contained HTML page (hover a token for its activation). `ex.html("f12.html")`
    #[rhai_fn(pure, return_raw)]
    pub fn html(ex: &mut Examples, path: &str) -> ScriptResult<()> {
        let page = crate::core::dashboard::examples_page(ex)?;
        Ok(crate::core::fs::write_atomic(Path::new(path), &page)?)
    }

    /// The top examples: `[#{row, activation, text, tokens, activations, focus}]`. `ex.top[0].text`
    #[rhai_fn(get = "top", pure)]
    pub fn examples_top(ex: &mut Examples) -> Array {
        ex.top
            .iter()
            .map(|c| Dynamic::from(context_map(c)))
            .collect()
    }

    /// The quantile samples, lowest first: `[#{low, high, count, examples}]`. `ex.quantiles`
    #[rhai_fn(get = "quantiles", pure)]
    pub fn examples_quantiles(ex: &mut Examples) -> Array {
        ex.quantiles
            .iter()
            .map(|q| {
                let mut m = Map::new();
                m.insert("low".into(), Dynamic::from(q.low));
                m.insert("high".into(), Dynamic::from(q.high));
                m.insert("count".into(), Dynamic::from(q.count as INT));
                let contexts: Array = q
                    .contexts
                    .iter()
                    .map(|c| Dynamic::from(context_map(c)))
                    .collect();
                m.insert("examples".into(), Dynamic::from(contexts));
                Dynamic::from(m)
            })
            .collect()
    }

    /// The feature's index. `ex.feature`
    #[rhai_fn(get = "feature", pure)]
    pub fn examples_feature(ex: &mut Examples) -> INT {
        ex.feature
    }

    /// The feature's largest activation. `ex.max`
    #[rhai_fn(get = "max", pure)]
    pub fn examples_max(ex: &mut Examples) -> f64 {
        ex.max_activation
    }

    /// The feature's firing density. `ex.density`
    #[rhai_fn(get = "density", pure)]
    pub fn examples_density(ex: &mut Examples) -> f64 {
        ex.density
    }

    #[rhai_fn(name = "to_string", pure)]
    pub fn examples_to_string(ex: &mut Examples) -> String {
        ex.render(false)
    }

    #[rhai_fn(name = "to_debug", pure)]
    pub fn examples_to_debug(ex: &mut Examples) -> String {
        ex.render(false)
    }
}

/// The `features` help topic: records and examples, search, neighbours,
/// neurons, and the paper's studies (specificity, map, completeness).
pub fn module() -> rhai::Module {
    let mut module = exported_module!(features_api);
    module.combine_flatten(exported_module!(super::feature_search::feature_search_api));
    module.combine_flatten(exported_module!(
        super::feature_studies::feature_studies_api
    ));
    module
}
