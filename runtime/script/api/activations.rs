//! Corpora, harvesting activations into an on-disk store, reading the store
//! back as shuffled batches, and perplexity.
use crate::core::activations::HarvestOptions;
use crate::core::corpus::{Corpus, CorpusOptions};
use crate::core::model::cache_dir;
use crate::script::convert::{option_map, Options};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Map};
use std::rc::Rc;

/// A corpus handle; copies share it.
pub type ScriptCorpus = Rc<Corpus>;
/// An activation store handle; copies share it (and its shuffle state).
pub type ScriptStore = Rc<crate::core::activations::Store>;

fn paths(value: &Dynamic) -> ScriptResult<Vec<String>> {
    if let Ok(path) = value.clone().into_string() {
        return Ok(vec![path]);
    }
    let Some(array) = value.read_lock::<Array>() else {
        return Err(runtime_error(format!(
            "corpus: expected a path or an array of paths, got {}",
            value.type_name()
        )));
    };
    array
        .iter()
        .map(|v| {
            v.clone()
                .into_string()
                .map_err(|t| runtime_error(format!("corpus: paths must be strings, got {t}")))
        })
        .collect()
}

fn corpus_options(opts: &Map) -> ScriptResult<CorpusOptions> {
    let opts = Options::new(opts, "corpus", &["field", "column"])?;
    let defaults = CorpusOptions::default();
    Ok(CorpusOptions {
        field: opts.string("field")?.unwrap_or(defaults.field),
        column: opts.string("column")?.unwrap_or(defaults.column),
    })
}

/// The demo corpus's file for a split ("train" or "heldout"), once `make setup` fetched it.
pub(crate) fn demo_corpus_path(split: &str) -> ScriptResult<std::path::PathBuf> {
    if split != "train" && split != "heldout" {
        return Err(runtime_error(format!(
            "demo_corpus: split must be \"train\" or \"heldout\", got '{split}'"
        )));
    }
    let path = cache_dir()
        .join("corpus/demo-v1")
        .join(format!("{split}.jsonl"));
    if !path.is_file() {
        return Err(runtime_error(format!(
            "the demo corpus is not at {} (run setup/fetch-corpus.sh or `make setup`)",
            path.display()
        )));
    }
    Ok(path)
}

fn demo(split: &str) -> ScriptResult<ScriptCorpus> {
    let path = demo_corpus_path(split)?;
    Ok(Rc::new(crate::core::corpus::Corpus::from_paths(
        &[path.display().to_string()],
        CorpusOptions::default(),
    )?))
}

fn harvest_options(model: &crate::core::model::Model, opts: &Map) -> ScriptResult<HarvestOptions> {
    Ok(HarvestOptions::from_options(
        &option_map(opts, "harvest")?,
        model.n_layers(),
        model.llama.device(),
    )?)
}

#[export_module]
pub mod activations_api {
    use super::{corpus_options, demo, harvest_options, paths};
    use crate::core::activations::harvest;
    use crate::core::corpus::CorpusOptions;
    use crate::core::model::perplexity;
    use crate::script::convert::Options;
    use crate::script::error::{runtime_error, ScriptResult};
    use rhai::{Array, Dynamic, Map, FLOAT, INT};
    use std::path::Path;
    use std::rc::Rc;

    pub type Corpus = super::ScriptCorpus;
    pub type Store = super::ScriptStore;
    pub type Model = crate::script::api::model::ScriptModel;
    pub type Tensor = crate::core::Tensor;

    /// Text files, folders or globs (.txt, .md, .jsonl `text` field, .csv `text` column).
    /// `let c = corpus(["notes/", "data/*.jsonl"]);`
    #[rhai_fn(return_raw)]
    pub fn corpus(paths_: Dynamic) -> ScriptResult<Corpus> {
        Ok(Rc::new(crate::core::corpus::Corpus::from_paths(
            &paths(&paths_)?,
            CorpusOptions::default(),
        )?))
    }

    /// A corpus whose JSON field or CSV column has another name.
    /// `corpus("reviews.csv", #{column: "body"})`
    #[rhai_fn(name = "corpus", return_raw)]
    pub fn corpus_with(paths_: Dynamic, opts: Map) -> ScriptResult<Corpus> {
        Ok(Rc::new(crate::core::corpus::Corpus::from_paths(
            &paths(&paths_)?,
            corpus_options(&opts)?,
        )?))
    }

    /// The demo corpus (Wikipedia in three languages, Shakespeare, Python and
    /// Rust code) that `make setup` fetches. `let c = demo_corpus();`
    #[rhai_fn(return_raw)]
    pub fn demo_corpus() -> ScriptResult<Corpus> {
        demo("train")
    }

    /// The demo corpus's held-out split, or its training split.
    /// `demo_corpus(#{split: "heldout"})`
    #[rhai_fn(name = "demo_corpus", return_raw)]
    pub fn demo_corpus_with(opts: Map) -> ScriptResult<Corpus> {
        let opts = Options::new(&opts, "demo_corpus", &["split"])?;
        demo(&opts.string("split")?.unwrap_or_else(|| "train".into()))
    }

    /// The files of a corpus, in reading order. `c.files`
    #[rhai_fn(get = "files", pure)]
    pub fn files(c: &mut Corpus) -> Array {
        c.files()
            .iter()
            .map(|p| Dynamic::from(p.display().to_string()))
            .collect()
    }

    /// The first `n` documents' texts. `c.documents(3)`
    #[rhai_fn(pure, return_raw)]
    pub fn documents(c: &mut Corpus, n: INT) -> ScriptResult<Array> {
        c.documents()
            .take(n.max(0) as usize)
            .map(|doc| Ok(Dynamic::from(doc?.text)))
            .collect()
    }

    #[rhai_fn(name = "to_string", pure)]
    pub fn corpus_to_string(c: &mut Corpus) -> String {
        format!("Corpus({})", c.fingerprint())
    }

    /// Runs the model over corpus windows and writes activations to a store
    /// folder, resuming a harvest already there. Options: `out` (required),
    /// `layer`, `tokens`, `context` (128), `hook` ("resid_pre"), `batch_size`
    /// (8 on a CPU, 64 on a GPU), `dtype` ("f16"), `shard_rows`, `max_norm_ratio` (leave out attention-sink
    /// rows whose norm exceeds this multiple of their window's median, e.g. 10).
    /// Hooks: "resid_pre", "resid_post", "mlp" (neurons), "mlp_in" (what the MLP reads, after ln2), "mlp_out"
    /// (what it writes). Several sites side by side in each row, from one forward pass: `hooks: [...]` and/or
    /// `layers: [...]` (layer by layer, each layer's hooks in order); each site keeps its own scale
    /// (`s.manifest.sites`). A transcoder's store: `#{layer: 5, hooks: ["mlp_in", "mlp_out"]}`; a crosscoder's:
    /// `#{layers: [3, 5, 7], hook: "resid_post"}`.
    /// Split across tasks: `tasks: 4` with `executor: #{local: #{workers: 4}}` (the merged store comes back)
    /// or `executor: #{slurm: #{...}}` (a `Job` comes back; `job.wait()` gives the store).
    /// `m.harvest(demo_corpus(), #{layer: 15, tokens: 100000, out: "runs/acts"})`
    #[rhai_fn(name = "harvest", pure, return_raw)]
    pub fn harvest_into(m: &mut Model, c: Corpus, opts: Map) -> ScriptResult<Dynamic> {
        if opts.contains_key("executor") || opts.contains_key("tasks") {
            return crate::script::api::jobs::harvest(m, &c, &opts);
        }
        let options = harvest_options(m, &opts)?;
        Ok(Dynamic::from(Rc::new(harvest(m, &c, &options)?) as Store))
    }

    /// Perplexity of the model on a corpus: `#{perplexity, tokens}`. Options:
    /// `tokens` (100000), `context` (128), `batch_size` (8), and `hooks` /
    /// `steer` to measure an edited model (see `forward`).
    /// `m.perplexity(demo_corpus(#{split: "heldout"}), #{tokens: 50000})`
    #[rhai_fn(name = "perplexity", pure, return_raw)]
    pub fn perplexity_on(
        ctx: NativeCallContext,
        m: &mut Model,
        c: Corpus,
        opts: Map,
    ) -> ScriptResult<Map> {
        let hooks = crate::script::hooks::script_hooks(&ctx, m, &opts, false)?;
        let opts = Options::new(
            &opts,
            "perplexity",
            &["tokens", "context", "batch_size", "hooks", "steer"],
        )?;
        let context = opts.positive("context", 128)?;
        let windows = c.windows(&m.tokenizer, context)?;
        let result = perplexity(
            m,
            windows,
            opts.positive("tokens", 100_000)?,
            opts.positive("batch_size", 8)?,
            &hooks,
        )?;
        let mut out = Map::new();
        out.insert(
            "perplexity".into(),
            Dynamic::from(result.perplexity as FLOAT),
        );
        out.insert("tokens".into(), Dynamic::from(result.tokens as INT));
        Ok(out)
    }

    /// Opens a harvested store folder (memory-mapped), an `.npy` file of
    /// `[rows, dim]` or a `.safetensors` file. `let s = open_store("runs/acts");`
    #[rhai_fn(return_raw)]
    pub fn open_store(path: &str) -> ScriptResult<Store> {
        Ok(Rc::new(crate::core::activations::Store::open(Path::new(
            path,
        ))?))
    }

    /// A store over activations made elsewhere, `[rows, dim]`. `store_from_tensor(randn([1000, 64]))`
    #[rhai_fn(return_raw)]
    pub fn store_from_tensor(t: Tensor) -> ScriptResult<Store> {
        Ok(Rc::new(crate::core::activations::Store::from_tensor(
            t.inner(),
        )?))
    }

    /// `n` rows drawn at random across all shards, f32 `[n, dim]`, unscaled:
    /// multiply by `s.scale` to train as in the paper. `s.batch(4096) * s.scale`
    #[rhai_fn(pure, return_raw)]
    pub fn batch(s: &mut Store, n: INT) -> ScriptResult<Tensor> {
        let n = usize::try_from(n)
            .map_err(|_| runtime_error(format!("batch: n must be >= 0, got {n}")))?;
        Ok(Tensor::new(s.batch(n)?))
    }

    /// Number of rows. `s.len`
    #[rhai_fn(get = "len", pure)]
    pub fn len(s: &mut Store) -> INT {
        s.len() as INT
    }

    /// Width of a row. `s.dim`
    #[rhai_fn(get = "dim", pure)]
    pub fn dim(s: &mut Store) -> INT {
        s.dim() as INT
    }

    /// The factor making the mean squared L2 norm of scaled rows equal `dim`. `s.scale`
    #[rhai_fn(get = "scale", pure)]
    pub fn scale(s: &mut Store) -> FLOAT {
        s.scale()
    }

    /// Rows by index, f32 `[n, dim]`. `s.rows([0, 1, 2])`
    #[rhai_fn(pure, return_raw)]
    pub fn rows(s: &mut Store, indices: Array) -> ScriptResult<Tensor> {
        let indices = crate::script::convert::int_list(&indices, "row indices")?;
        let indices = indices
            .into_iter()
            .map(|i| {
                usize::try_from(i).map_err(|_| runtime_error(format!("row {i} is out of range")))
            })
            .collect::<ScriptResult<Vec<_>>>()?;
        Ok(Tensor::new(s.rows(&indices)?))
    }

    /// Where row `i` came from: `#{token, document, position, window,
    /// window_position}`, `window` being the token ids the model saw.
    /// `m.decode(s.tokens(0).window)`
    #[rhai_fn(pure, return_raw)]
    pub fn tokens(s: &mut Store, i: INT) -> ScriptResult<Map> {
        let i =
            usize::try_from(i).map_err(|_| runtime_error(format!("row {i} is out of range")))?;
        let info = s
            .row_info(i)?
            .ok_or_else(|| runtime_error("this store has no token ids (it was not harvested)"))?;
        let mut out = Map::new();
        out.insert("token".into(), Dynamic::from(info.token as INT));
        out.insert("document".into(), Dynamic::from(info.document as INT));
        out.insert("position".into(), Dynamic::from(info.position as INT));
        let window: Array = info
            .window
            .iter()
            .map(|&id| Dynamic::from(id as INT))
            .collect();
        out.insert("window".into(), Dynamic::from(window));
        out.insert(
            "window_position".into(),
            Dynamic::from(info.window_position as INT),
        );
        Ok(out)
    }

    /// The harvest's manifest as a map (model, layer, hook, dtype, rows, scale, ...). `s.manifest`
    #[rhai_fn(get = "manifest", pure, return_raw)]
    pub fn manifest(s: &mut Store) -> ScriptResult<Dynamic> {
        match s.manifest() {
            None => Ok(Dynamic::UNIT),
            Some(m) => {
                let json = serde_json::to_value(m).map_err(|e| runtime_error(e.to_string()))?;
                rhai::serde::to_dynamic(json)
            }
        }
    }

    #[rhai_fn(name = "to_string", pure)]
    pub fn store_to_string(s: &mut Store) -> String {
        let origin = s
            .path()
            .map(|p| format!(", {}", p.display()))
            .unwrap_or_default();
        format!(
            "Store({} rows × {}, scale {:.4}{origin})",
            s.len(),
            s.dim(),
            s.scale()
        )
    }
}
