//! Sparse autoencoders from scripts: build, train natively or piece by piece
//! in Rhai, evaluate, save and load in SAELens's layout.
use crate::core::precision::Precision;
use crate::core::sae::trainer::TrainConfig;
use crate::core::sae::{self, ActivationSource, StoreSource, TensorSource};
use crate::core::Tensor;
use crate::script::api::activations::ScriptStore;
use crate::script::api::model::ScriptModel;
use crate::script::api::sae_model::{ce_options, insert_ce, measure as measure_ce};
use crate::script::api::sae_options::{loss_options, precision_option};
pub(crate) use crate::script::api::sae_options::{sae_config, train_config};
use crate::script::api::sae_reports::{evaluation_map, history_map, report_map};
use crate::script::api::xcoder::measure as xcoder_ce;
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::Dynamic;
use std::cell::RefCell;
use std::rc::Rc;

/// A script-visible SAE, shared so `let t = s;` and `s.train(...)` act on the same weights.
pub type Sae = Rc<RefCell<sae::Sae>>;

/// Activations from a script value: a [tokens, d_in] tensor or an
/// activation store (`open_store`, `m.harvest`).
pub(crate) fn source_from(
    value: &Dynamic,
    seed: u64,
    shuffle: bool,
) -> ScriptResult<Box<dyn ActivationSource>> {
    if let Some(t) = value.read_lock::<Tensor>() {
        return Ok(Box::new(TensorSource::new(t.inner(), seed, shuffle)?));
    }
    if let Some(store) = value.read_lock::<ScriptStore>() {
        return Ok(Box::new(StoreSource::new(store.clone(), seed, shuffle)?));
    }
    Err(runtime_error(format!(
        "expected activations as a [tokens, d_in] tensor or an activation store, got {}",
        value.type_name()
    )))
}

/// The training source for `sae`: a tensor's rows hold a transcoder's or
/// crosscoder's sites side by side (each normalised on its own), a store
/// says which sites it holds.
fn training_source(
    sae: &sae::Sae,
    value: &Dynamic,
    seed: u64,
) -> ScriptResult<Box<dyn ActivationSource>> {
    let widths = sae.cfg.layout.site_widths(sae.cfg.d_in);
    if let Some(t) = value.read_lock::<Tensor>() {
        let source = TensorSource::new(t.inner(), seed, true)?;
        if widths.len() > 1 && widths.iter().sum::<i64>() == source.dim() {
            return Ok(Box::new(source.with_sites(&widths)?));
        }
        return Ok(Box::new(source));
    }
    source_from(value, seed, true)
}

/// An SAE trained on a harvested store records where its activations came
/// from (unless the script said otherwise), so that steering and attribution
/// find its layer and model, and cfg.json carries them as SAELens does.
fn record_provenance(sae: &mut sae::Sae, source: &Dynamic) -> ScriptResult<()> {
    let Some(store) = source.read_lock::<ScriptStore>() else {
        return Ok(());
    };
    let Some(manifest) = store.manifest() else {
        return Ok(());
    };
    if sae.cfg.layout != sae::Layout::Autoencoder {
        sae::xcoder::record_sites(&mut sae.cfg, &store.sites())?;
    }
    let meta = &mut sae.cfg.metadata;
    if meta.hook_name.is_none() {
        meta.hook_name = Some(manifest.site()?.hook_name());
    }
    if meta.model_name.is_none() {
        meta.model_name = Some(manifest.model_name().to_string());
    }
    if meta.context_size.is_none() {
        meta.context_size = Some(manifest.context as i64);
    }
    Ok(())
}

#[export_module]
pub mod sae_api {
    use super::*;
    use crate::core::sae::{checkpoint, metrics, synthetic, trainer};
    use crate::script::error::{runtime_error, ScriptResult};
    use rhai::{Array, Dynamic, Map, FLOAT, INT};
    use std::path::Path;

    pub type Sae = super::Sae;
    pub type Tensor = crate::core::Tensor;

    /// A new SAE: `#{d_in, n_features, kind: "relu" | "topk" | "jumprelu" | "batchtopk" | "matryoshka", k, l1,
    /// matryoshka_widths, device, hook_name, ...}`. Defaults follow the paper (λ = 5, decoder rows of norm 0.1,
    /// W_enc = W_decᵀ), Gao et al. for TopK (k = 32), Bussmann et al. for BatchTopK (k = 32 per token on average
    /// over a batch; inference threshold estimated in training) and Matryoshka (BatchTopK with nested dictionaries
    /// of widths F/16, F/8, F/4, F/2, F each reconstructing the input).
    /// `let s = sae(#{d_in: 64, n_features: 512, kind: "topk", k: 8});`
    #[rhai_fn(return_raw)]
    pub fn sae(opts: Map) -> ScriptResult<Sae> {
        Ok(Rc::new(RefCell::new(sae::Sae::new(sae_config(&opts)?)?)))
    }

    /// Trains natively with the paper's recipe; returns the final metrics and `history`.
    /// Options: steps (or tokens), batch_size, lr, l1_warmup, lr_decay, dead_features, dead_window, log_every, csv,
    /// checkpoint_dir, checkpoint_every, resume, seed, progress, precision ("f32", "tf32", "bf16"), ...
    /// `let report = s.train(acts, #{steps: 2000, batch_size: 4096, lr: 1e-3});`
    #[rhai_fn(return_raw)]
    pub fn train(s: &mut Sae, source: Dynamic, cfg: Map) -> ScriptResult<Map> {
        let cfg = train_config(&cfg, "train", &[])?;
        let mut sae = s
            .try_borrow_mut()
            .map_err(|_| runtime_error("train: this SAE is already in use"))?;
        record_provenance(&mut sae, &source)?;
        let mut source = training_source(&sae, &source, cfg.seed)?;
        let report = trainer::train(&mut sae, source.as_mut(), cfg)?;
        Ok(report_map(&report))
    }

    /// Trains with every default (1000 steps of 4096). `s.train(acts)`
    #[rhai_fn(name = "train", return_raw)]
    pub fn train_default(s: &mut Sae, source: Dynamic) -> ScriptResult<Map> {
        train(s, source, Map::new())
    }

    /// Measures the SAE over `tokens` activations (a tensor or a store; default: all of them):
    /// `#{loss, mse, penalty, l0, explained_variance, dead_fraction, density, log10_density, density_histogram,
    /// l2_ratio, relative_reconstruction_bias, ...}`; `l2_ratio` (mean ‖x̂‖/‖x‖) measures shrinkage.
    /// Loss, mse and penalty are in the paper's normalised units (E‖x‖² = d_in); `mse_raw` is not.
    /// With `model` and `corpus` (a corpus, a text or texts) it adds `ce_clean`, `ce_spliced`, `ce_zero`,
    /// `ce_loss_recovered`, and the KL divergences of the next-token distributions from the clean model's
    /// `kl_spliced`, `kl_zero` and `kl_score` = (kl_zero − kl_spliced) / kl_zero, over `ce_tokens` (1024)
    /// predictions; options `layer`, `hook` (default: the store's), `context`,
    /// `hooks` / `steer` (edits made in every CE pass, see `forward`).
    /// A transcoder or crosscoder evaluates on rows of its store's sites and is spliced at the sites it writes,
    /// from the clean activations at the sites it reads (a transcoder in place of the MLP, against the MLP's
    /// output zero-ablated; a crosscoder at all its sites at once); `site_explained_variance` has one value per
    /// site it writes.
    /// `let m = s.evaluate(store, #{tokens: 100000, model: m, corpus: demo_corpus(#{split: "heldout"})});`
    #[rhai_fn(pure, return_raw)]
    pub fn evaluate(
        ctx: NativeCallContext,
        s: &mut Sae,
        source: Dynamic,
        opts: Map,
    ) -> ScriptResult<Map> {
        #[rustfmt::skip]
        let known = ["tokens", "batch_size", "model", "corpus", "layer", "hook", "ce_tokens", "ce_batch_size",
                     "context", "input_scale", "hooks", "steer", "precision"];
        let o = Options::new(&opts, "evaluate", &known)?;
        let tokens = o.non_negative("tokens", 0)?;
        let mut activations = source_from(&source, 0, false)?;
        let evaluation = metrics::evaluate(
            &s.borrow(),
            activations.as_mut(),
            tokens,
            o.int("batch_size", 4096)?,
            precision_option(&o, Precision::F32)?,
        )?;
        let mut out = evaluation_map(&evaluation)?;
        let model = opts.get("model").map(|m| {
            m.read_lock::<ScriptModel>()
                .map(|m| m.clone())
                .ok_or_else(|| {
                    runtime_error(format!(
                        "evaluate: model must be a model, got {}",
                        m.type_name()
                    ))
                })
        });
        match (model.transpose()?, opts.get("corpus")) {
            (None, None) => {}
            (Some(model), Some(text)) if s.borrow().cfg.layout != sae::Layout::Autoencoder => {
                let store = source.read_lock::<ScriptStore>().map(|s| s.clone());
                let keys = ["ce_tokens", "ce_batch_size"];
                let (result, _) = xcoder_ce(&s.borrow(), &model, text, &o, keys, store.as_ref())?;
                insert_ce(&mut out, &result, "ce_loss_recovered");
            }
            (Some(model), Some(text)) => {
                let store = source.read_lock::<ScriptStore>().map(|s| s.clone());
                let ce = ce_options(&o, ["ce_tokens", "ce_batch_size"], store.as_ref())?;
                let hooks = crate::script::hooks::script_hooks(&ctx, &model, &opts, false)?;
                let (result, _) = measure_ce(&s.borrow(), &model, text, &ce, &hooks)?;
                insert_ce(&mut out, &result, "ce_loss_recovered");
            }
            _ => {
                return Err(runtime_error(
                    "evaluate: CE loss recovered needs both `model` and `corpus`",
                ))
            }
        }
        Ok(out)
    }

    /// How much of the model's next-token loss survives when the SAE's reconstruction replaces the activation at
    /// `layer` (`hook`: "resid_pre" by default): `#{ce_clean, ce_spliced, ce_zero, recovered, kl_spliced, kl_zero, kl_score, tokens}`, recovered =
    /// (ce_zero − ce_spliced) / (ce_zero − ce_clean). Text: a corpus, a text or an array of texts. Options: `tokens`
    /// (1024 predictions), `context` (128), `batch_size` (8), `input_scale` (1; for an SAE trained in a script on
    /// scaled inputs, the scale it saw), `hooks` / `steer` (edits made in every pass, see `forward`: the CE loss
    /// of an intervened model). Position 0 of each window and document separators are left clean.
    /// `s.ce_loss_recovered(m, demo_corpus(#{split: "heldout"}), #{layer: 15, tokens: 512})`
    #[rhai_fn(pure, return_raw)]
    pub fn ce_loss_recovered(
        ctx: NativeCallContext,
        s: &mut Sae,
        m: ScriptModel,
        text: Dynamic,
        opts: Map,
    ) -> ScriptResult<Map> {
        #[rustfmt::skip]
        let known = ["layer", "hook", "tokens", "context", "batch_size", "input_scale", "hooks", "steer", "precision"];
        let o = Options::new(&opts, "ce_loss_recovered", &known)?;
        if s.borrow().cfg.layout != sae::Layout::Autoencoder {
            let (result, tokens) =
                xcoder_ce(&s.borrow(), &m, &text, &o, ["tokens", "batch_size"], None)?;
            let mut out = Map::new();
            insert_ce(&mut out, &result, "recovered");
            out.insert("tokens".into(), Dynamic::from(tokens as INT));
            return Ok(out);
        }
        let ce = ce_options(&o, ["tokens", "batch_size"], None)?;
        let hooks = crate::script::hooks::script_hooks(&ctx, &m, &opts, false)?;
        let (result, tokens) = measure_ce(&s.borrow(), &m, &text, &ce, &hooks)?;
        let mut out = Map::new();
        insert_ce(&mut out, &result, "recovered");
        out.insert("tokens".into(), Dynamic::from(tokens as INT));
        Ok(out)
    }

    /// `evaluate` over every activation given. `s.evaluate(acts)`
    #[rhai_fn(name = "evaluate", pure, return_raw)]
    pub fn evaluate_all(ctx: NativeCallContext, s: &mut Sae, source: Dynamic) -> ScriptResult<Map> {
        evaluate(ctx, s, source, Map::new())
    }

    /// Feature activations f [batch, n_features] (dense). `let f = s.encode(x);`
    #[rhai_fn(pure, return_raw)]
    pub fn encode(s: &mut Sae, x: Tensor) -> ScriptResult<Tensor> {
        Ok(Tensor::new(s.borrow().encode(x.inner())?))
    }

    /// `encode` computed in a `precision` ("f32", "tf32" or "bf16"; f comes back in f32).
    /// `let f = s.encode(x, #{precision: "bf16"});`
    #[rhai_fn(name = "encode", pure, return_raw)]
    pub fn encode_with(s: &mut Sae, x: Tensor, opts: Map) -> ScriptResult<Tensor> {
        let precision = precision_option(
            &Options::new(&opts, "encode", &["precision"])?,
            Precision::F32,
        )?;
        Ok(Tensor::new(s.borrow().encode_in(x.inner(), precision)?))
    }

    /// The reconstruction x̂ = f·W_dec + b_dec from codes [batch, n_features]. `let x_hat = s.decode(f);`
    #[rhai_fn(pure, return_raw)]
    pub fn decode(s: &mut Sae, f: Tensor) -> ScriptResult<Tensor> {
        Ok(Tensor::new(s.borrow().decode(f.inner())?))
    }

    /// `decode` computed in a `precision` (x̂ comes back in f32). `s.decode(f, #{precision: "bf16"})`
    #[rhai_fn(name = "decode", pure, return_raw)]
    pub fn decode_with(s: &mut Sae, f: Tensor, opts: Map) -> ScriptResult<Tensor> {
        let precision = precision_option(
            &Options::new(&opts, "decode", &["precision"])?,
            Precision::F32,
        )?;
        Ok(Tensor::new(s.borrow().decode_in(f.inner(), precision)?))
    }

    /// One differentiable pass: `#{x_hat, f, mse, penalty, aux, loss}` (scalars are tensors).
    /// `let out = s.forward(x); out.loss.backward();`
    #[rhai_fn(pure, return_raw)]
    pub fn forward(s: &mut Sae, x: Tensor) -> ScriptResult<Map> {
        forward_with(s, x, Map::new())
    }

    /// `forward` with loss options `#{l1, l1_scale, dead_mask, precision, training}`; `training: true` encodes as
    /// the trainer does (BatchTopK's batch-level choice). `s.forward(x, #{l1_scale: 0.5})`
    #[rhai_fn(name = "forward", pure, return_raw)]
    pub fn forward_with(s: &mut Sae, x: Tensor, opts: Map) -> ScriptResult<Map> {
        let sae = s.borrow();
        let out = sae.forward(x.inner(), &loss_options(&sae, &opts)?)?;
        let mut m = Map::new();
        m.insert(
            "f".into(),
            Dynamic::from(Tensor::new(out.codes.to_dense()?)),
        );
        for (key, t) in [
            ("x_hat", out.x_hat),
            ("mse", out.mse),
            ("penalty", out.penalty),
            ("aux", out.aux),
            ("loss", out.loss),
        ] {
            m.insert(key.into(), Dynamic::from(Tensor::new(t)));
        }
        Ok(m)
    }

    /// The training loss as a scalar tensor with gradients; options `#{l1, l1_scale, dead_mask, precision}`.
    /// `let loss = s.loss(x, #{l1_scale: min(1.0, step / 100.0)}); loss.backward();`
    #[rhai_fn(pure, return_raw)]
    pub fn loss(s: &mut Sae, x: Tensor, opts: Map) -> ScriptResult<Tensor> {
        let sae = s.borrow();
        Ok(Tensor::new(
            sae.forward(x.inner(), &loss_options(&sae, &opts)?)?.loss,
        ))
    }

    /// The loss with the configured λ. `s.loss(x).backward()`
    #[rhai_fn(name = "loss", pure, return_raw)]
    pub fn loss_default(s: &mut Sae, x: Tensor) -> ScriptResult<Tensor> {
        loss(s, x, Map::new())
    }

    /// The trainable tensors [W_enc, b_enc, W_dec, b_dec], shared with the SAE (for `adam`).
    /// `let opt = adam(s.parameters(), #{lr: 1e-3});`
    #[rhai_fn(pure)]
    pub fn parameters(s: &mut Sae) -> Array {
        s.borrow()
            .parameters()
            .into_iter()
            .map(Dynamic::from)
            .collect()
    }

    /// Rescales decoder rows to unit norm, compensating in the encoder so the SAE computes the same function.
    /// `s.normalize_decoder();`
    #[rhai_fn(pure, return_raw)]
    pub fn normalize_decoder(s: &mut Sae) -> ScriptResult<()> {
        Ok(s.borrow().normalize_decoder()?)
    }

    /// Saves in SAELens's layout (cfg.json + sae_weights.safetensors) plus saelab.json. `s.save("runs/sae")`
    #[rhai_fn(pure, return_raw)]
    pub fn save(s: &mut Sae, dir: &str) -> ScriptResult<String> {
        checkpoint::save(&s.borrow(), Path::new(dir), 1.0, None)?;
        Ok(dir.to_string())
    }

    /// Loads an SAE saved by saelab or SAELens (onto the CPU). `let s = load_sae("runs/sae");`
    #[rhai_fn(return_raw)]
    pub fn load_sae(dir: &str) -> ScriptResult<Sae> {
        load_sae_with(dir, Map::new())
    }

    /// Loads an SAE with `#{device}`. `load_sae("runs/sae", #{device: device()})`
    #[rhai_fn(name = "load_sae", return_raw)]
    pub fn load_sae_with(dir: &str, opts: Map) -> ScriptResult<Sae> {
        let o = Options::new(&opts, "load_sae", &["device"])?;
        let device = match o.string("device")? {
            Some(name) => crate::core::tensor::parse_device(&name)?,
            None => tch::Device::Cpu,
        };
        Ok(Rc::new(RefCell::new(checkpoint::load(
            Path::new(dir),
            device,
        )?)))
    }

    /// Short runs at each learning rate of `lrs`, each from a fresh SAE built from `opts` after `seed(seed)`;
    /// returns `[#{lr, loss, mse, l0, explained_variance, dead_fraction, error}]` (the paper chose its rate this way).
    /// `let runs = lr_sweep(#{d_in: 64, n_features: 512}, acts, #{lrs: [1e-4, 1e-3, 1e-2], steps: 200});`
    #[rhai_fn(return_raw)]
    pub fn lr_sweep(opts: Map, source: Dynamic, cfg: Map) -> ScriptResult<Array> {
        let sae_cfg = sae_config(&opts)?;
        let lrs = match cfg.get("lrs") {
            Some(v) => crate::script::convert::floats(v, "lr_sweep: lrs")?,
            None => {
                return Err(runtime_error(
                    "lr_sweep: give the learning rates, e.g. #{lrs: [1e-4, 1e-3, 1e-2]}",
                ))
            }
        };
        let train_cfg = TrainConfig {
            show_progress: false,
            ..train_config(&cfg, "lr_sweep", &["lrs"])?
        };
        let seed = train_cfg.seed;
        let points = trainer::lr_sweep(&lrs, &train_cfg, || {
            crate::core::rng::seed(seed);
            let fresh = crate::core::sae::Sae::new(sae_cfg.clone())?;
            let source = source_from(&source, seed, true)
                .map_err(|e| crate::core::Error::invalid(e.to_string()))?;
            Ok((fresh, source))
        })?;
        Ok(points
            .iter()
            .map(|p| {
                let mut m = match &p.report {
                    Some(r) => history_map(&r.last),
                    None => Map::new(),
                };
                m.insert("lr".into(), Dynamic::from(p.lr));
                if p.report.is_none() {
                    m.insert("loss".into(), Dynamic::from(FLOAT::NAN));
                }
                m.insert(
                    "error".into(),
                    p.error.clone().map_or(Dynamic::UNIT, Dynamic::from),
                );
                Dynamic::from_map(m)
            })
            .collect())
    }

    /// Trains one SAE per grid point on `cfg.source` (a store or a [tokens, d_in] tensor) and returns a
    /// row per run: `#{n_features, steps, tokens, compute, loss, mse, l0, explained_variance, dead_fraction, ...}`.
    /// Grid keys and other cfg keys are any `sae(...)` or `s.train(...)` option; `held_out` (activations to evaluate on),
    /// `eval_tokens`, `csv` (one row appended per finished run; a re-run skips them), `save_dir` and `on_divergence`
    /// ("stop", or "record": a run whose loss stops being finite becomes a row with an infinite loss and `diverged: true`)
    /// configure the sweep.
    /// With `executor: #{local: #{workers: 2}}` the runs are processes of a pool (the rows come back), with
    /// `executor: #{slurm: #{partition, gpus_per_task, max_parallel, ...}}` a Slurm job array (a `Job` comes back).
    /// `sweep(#{n_features: [512, 2048], steps: [100, 300]}, #{source: store, held_out: test_store, csv: "runs/sweep.csv"})`
    #[rhai_fn(return_raw)]
    pub fn sweep(grid: Dynamic, cfg: Map) -> ScriptResult<Dynamic> {
        crate::script::api::sae_sweep::sweep(&grid, &cfg)
    }

    /// Toy data with known features (Elhage et al. 2022): `#{x, directions}` where each row of x is a sparse
    /// non-negative sum of `active` (on average) of `n_true` unit directions in `d` dimensions.
    /// `let toy = superposition(#{n_true: 512, d: 64, active: 4, tokens: 32768});`
    #[rhai_fn(return_raw)]
    pub fn superposition(opts: Map) -> ScriptResult<Map> {
        let o = Options::new(&opts, "superposition", &["n_true", "d", "active", "tokens"])?;
        let data = synthetic::superposition(
            o.int("n_true", 512)?,
            o.int("d", 64)?,
            o.f64("active", 4.0)?,
            o.int("tokens", 32768)?,
        )?;
        let mut m = Map::new();
        m.insert("x".into(), Dynamic::from(Tensor::new(data.activations)));
        m.insert(
            "directions".into(),
            Dynamic::from(Tensor::new(data.directions)),
        );
        Ok(m)
    }

    /// For each true direction, the best cosine similarity with a row of `decoder`.
    /// `max_cosine_similarity(toy.directions, s.decoder).mean().item()`
    #[rhai_fn(return_raw)]
    pub fn max_cosine_similarity(directions: Tensor, decoder: Tensor) -> ScriptResult<Tensor> {
        Ok(Tensor::new(synthetic::max_cosine_similarity(
            directions.inner(),
            decoder.inner(),
        )?))
    }

    /// Number of dictionary features. `s.n_features`
    #[rhai_fn(get = "n_features", pure)]
    pub fn n_features(s: &mut Sae) -> INT {
        s.borrow().cfg.n_features
    }

    /// Width of the activations. `s.d_in`
    #[rhai_fn(get = "d_in", pure)]
    pub fn d_in(s: &mut Sae) -> INT {
        s.borrow().cfg.d_in
    }

    /// The architecture: "relu", "topk", "jumprelu", "batchtopk" or "matryoshka". `s.kind`
    #[rhai_fn(get = "kind", pure)]
    pub fn kind(s: &mut Sae) -> String {
        s.borrow().cfg.architecture.name().to_string()
    }

    /// Active features per token of a TopK SAE (an integer), or on average of a BatchTopK or Matryoshka SAE. `s.k`
    #[rhai_fn(get = "k", pure, return_raw)]
    pub fn k(s: &mut Sae) -> ScriptResult<Dynamic> {
        let arch = &s.borrow().cfg.architecture;
        let options = arch.options();
        let k = options.get("k");
        if let Some(k) = k.and_then(serde_json::Value::as_i64) {
            return Ok(Dynamic::from(k));
        }
        k.and_then(serde_json::Value::as_f64)
            .map(Dynamic::from)
            .ok_or_else(|| runtime_error(format!("a {} SAE has no k", arch.name())))
    }

    /// The inference threshold θ a BatchTopK or Matryoshka SAE estimated in training. `s.threshold`
    #[rhai_fn(get = "threshold", pure, return_raw)]
    pub fn threshold(s: &mut Sae) -> ScriptResult<FLOAT> {
        let sae = s.borrow();
        sae.architecture().inference_threshold().ok_or_else(|| {
            runtime_error(format!(
                "a {} SAE has no single inference threshold",
                sae.cfg.architecture.name()
            ))
        })
    }

    /// The sparsity coefficient λ. `s.l1`
    #[rhai_fn(get = "l1", pure)]
    pub fn l1(s: &mut Sae) -> FLOAT {
        s.borrow().architecture().sparsity_coefficient()
    }

    /// Changes λ (for schedules or sweeps). `s.l1 = 3.0;`
    #[rhai_fn(set = "l1", return_raw)]
    pub fn set_l1(s: &mut Sae, l1: FLOAT) -> ScriptResult<()> {
        let mut s = s.borrow_mut();
        Ok(s.cfg.architecture.get_mut().set_sparsity_coefficient(l1)?)
    }

    /// W_dec [n_features, d_in]: row i is feature i's direction (the parameter itself; `.detach()` to analyse).
    #[rhai_fn(get = "decoder", pure)]
    pub fn decoder(s: &mut Sae) -> Tensor {
        s.borrow().weights.w_dec.clone()
    }

    /// W_enc as [n_features, d_in]: row i detects feature i (SAELens stores its transpose).
    #[rhai_fn(get = "encoder", pure)]
    pub fn encoder(s: &mut Sae) -> Tensor {
        s.borrow().weights.w_enc.clone()
    }

    /// The encoder bias [n_features]. `s.b_enc`
    #[rhai_fn(get = "b_enc", pure)]
    pub fn b_enc(s: &mut Sae) -> Tensor {
        s.borrow().weights.b_enc.clone()
    }

    /// The decoder bias [d_in]. `s.b_dec`
    #[rhai_fn(get = "b_dec", pure)]
    pub fn b_dec(s: &mut Sae) -> Tensor {
        s.borrow().weights.b_dec.clone()
    }

    /// Printable summary. `print(s)`
    #[rhai_fn(name = "to_string", pure)]
    pub fn sae_to_string(s: &mut Sae) -> String {
        let s = s.borrow();
        let c = &s.cfg;
        format!(
            "sae({}, d_in={}, n_features={}, {})",
            c.architecture.name(),
            c.d_in,
            c.n_features,
            c.arch().summary()
        )
    }

    /// Same as `to_string`; used by `debug` and the REPL.
    #[rhai_fn(name = "to_debug", pure)]
    pub fn sae_to_debug(s: &mut Sae) -> String {
        sae_to_string(s)
    }
}
