//! Transcoders and crosscoders from scripts: building them (from options or
//! from a multi-site store), and what differs from an SAE when reading them.
//! Training, evaluating, saving and loading are the `sae` functions, which
//! take any of the three.
use crate::core::model::{Model, SitesProbe};
use crate::core::sae::{self, metrics::CeLossRecovered, xcoder, Layout};
use crate::script::api::activations::ScriptStore;
use crate::script::api::sae::Sae;
use crate::script::api::sae_model::{ce_windows, CeOptions};
use crate::script::convert::{option_map, Options};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use std::cell::RefCell;
use std::rc::Rc;

/// A new dictionary from `config` with the sites of `store` recorded.
fn build(config: sae::SaeConfig, store: Option<&ScriptStore>) -> ScriptResult<Sae> {
    let mut config = config;
    if let Some(store) = store {
        xcoder::record_sites(&mut config, &store.sites())?;
        if let Some(manifest) = store.manifest() {
            let meta = &mut config.metadata;
            meta.model_name
                .get_or_insert_with(|| manifest.model_name().to_string());
            meta.context_size.get_or_insert(manifest.context as i64);
        }
    }
    Ok(Rc::new(RefCell::new(sae::Sae::new(config)?)))
}

/// CE loss recovered and KL with a transcoder or crosscoder spliced in at
/// the sites it writes, over `text` (a corpus, a text or texts); the keys
/// named say how many predictions and windows per batch (1024 and 8), and
/// `context` defaults to the store's.
pub(crate) fn measure(
    s: &sae::Sae,
    model: &Model,
    text: &Dynamic,
    o: &Options,
    [tokens_key, batch_key]: [&str; 2],
    store: Option<&ScriptStore>,
) -> ScriptResult<(CeLossRecovered, usize)> {
    if o.has("hooks") || o.has("steer") || o.has("precision") {
        return Err(runtime_error(
            "hooks, steer and precision are not supported with a transcoder or crosscoder (it splices in f32)",
        ));
    }
    let (reads, writes) = xcoder::splice_sites(s)?;
    let manifest = store.and_then(|s| s.manifest());
    let opts = CeOptions {
        site: reads[0],
        tokens: o.positive(tokens_key, 1024)?,
        context: o.positive("context", manifest.map_or(128, |m| m.context as i64))?,
        batch_size: o.positive(batch_key, 8)?,
        input_scale: 1.0,
        precision: crate::core::precision::Precision::F32,
    };
    let windows = ce_windows(model, text, &opts)?;
    let mut probe = SitesProbe::new(model, &reads, &writes, &windows, opts.batch_size)?;
    let result = xcoder::ce_loss_recovered(s, |replace| probe.measure(replace))?;
    Ok((result, probe.tokens()))
}

#[export_module]
pub mod xcoder_api {
    use super::*;
    use rhai::{Array, Dynamic, Map, INT};

    pub type Sae = super::Sae;
    pub type Store = ScriptStore;

    /// A transcoder (Dunefsky et al. 2024): its encoder reads one site (`d_in` wide), its decoder predicts another
    /// (`d_out`, default d_in); `skip: true` adds a learned linear map W_skip [d_out, d_in] from input to output
    /// (SAELens's SkipTranscoder). Every `sae(...)` option works (`kind`, `k`, `l1`, ...). Train it on rows of
    /// input and output side by side (a two-site store); `s.evaluate(store, #{model, corpus})` splices it in place
    /// of the MLP. Give `hook_name` / `hook_name_out` when it was not built from a store.
    /// `let t = transcoder(#{d_in: 576, d_out: 576, n_features: 4096, kind: "topk", k: 32, skip: true});`
    #[rhai_fn(return_raw)]
    pub fn transcoder(opts: Map) -> ScriptResult<Sae> {
        let mut options = option_map(&opts, "transcoder")?;
        let out = options.remove("hook_name_out");
        let mut config = xcoder::transcoder_config(&options)?;
        config.metadata.hook_name_out = out.and_then(|v| v.as_str().map(str::to_string));
        build(config, None)
    }

    /// A transcoder over a store of two sites (input, then output, e.g. harvested with
    /// `#{layer: 5, hooks: ["mlp_in", "mlp_out"]}`): widths and hook names come from the store.
    /// `let t = transcoder(store, #{n_features: 4096, kind: "topk", k: 32, skip: true});`
    #[rhai_fn(name = "transcoder", return_raw)]
    pub fn transcoder_for(store: Store, opts: Map) -> ScriptResult<Sae> {
        let options = option_map(&opts, "transcoder")?;
        let options = xcoder::options_for_sites("transcoder", &store.sites(), &options)?;
        build(xcoder::transcoder_config(&options)?, Some(&store))
    }

    /// A crosscoder (Lindsey et al. 2024): one encoder reading several sites side by side (`site_widths`, e.g. the
    /// residual stream of several layers), one decoder block per site. Its L1 penalty weights each feature by the
    /// sum of its per-site decoder norms; each site is normalised by its own scale in training. Every `sae(...)`
    /// option works; give `hook_names` (one per site) when it was not built from a store.
    /// `let c = crosscoder(#{site_widths: [576, 576], n_features: 4096, l1: 2.0});`
    #[rhai_fn(return_raw)]
    pub fn crosscoder(opts: Map) -> ScriptResult<Sae> {
        let mut options = option_map(&opts, "crosscoder")?;
        let names = options.remove("hook_names");
        let mut config = xcoder::crosscoder_config(&options)?;
        config.metadata.hook_names = names
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        build(config, None)
    }

    /// A crosscoder over every site of a multi-site store (e.g. harvested with
    /// `#{layers: [3, 5, 7], hook: "resid_post"}`): widths and hook names come from the store.
    /// `let c = crosscoder(store, #{n_features: 4096, l1: 2.0});`
    #[rhai_fn(name = "crosscoder", return_raw)]
    pub fn crosscoder_for(store: Store, opts: Map) -> ScriptResult<Sae> {
        let options = option_map(&opts, "crosscoder")?;
        let options = xcoder::options_for_sites("crosscoder", &store.sites(), &options)?;
        build(xcoder::crosscoder_config(&options)?, Some(&store))
    }

    /// What the dictionary reads and writes: "sae", "transcoder" or "crosscoder". `s.layout`
    #[rhai_fn(get = "layout", pure)]
    pub fn layout(s: &mut Sae) -> String {
        match s.borrow().cfg.layout {
            Layout::Autoencoder => "sae",
            Layout::Transcoder { .. } => "transcoder",
            Layout::Crosscoder { .. } => "crosscoder",
        }
        .to_string()
    }

    /// Width of what the decoder writes (a transcoder's output; d_in otherwise). `t.d_out`
    #[rhai_fn(get = "d_out", pure)]
    pub fn d_out(s: &mut Sae) -> INT {
        s.borrow().cfg.d_out()
    }

    /// A skip transcoder's W_skip [d_out, d_in] (the parameter itself), or () without one. `t.w_skip`
    #[rhai_fn(get = "w_skip", pure)]
    pub fn w_skip(s: &mut Sae) -> Dynamic {
        s.borrow()
            .weights
            .w_skip
            .clone()
            .map_or(Dynamic::UNIT, Dynamic::from)
    }

    /// The hook names of the sites it reads and writes, in row order (one for an SAE). `c.hook_names`
    #[rhai_fn(get = "hook_names", pure)]
    pub fn hook_names(s: &mut Sae) -> Array {
        let sae = s.borrow();
        let meta = &sae.cfg.metadata;
        let names: Vec<String> = match sae.cfg.layout {
            Layout::Crosscoder { .. } => meta.hook_names.clone(),
            _ => meta
                .hook_name
                .iter()
                .chain(meta.hook_name_out.iter())
                .cloned()
                .collect(),
        };
        names.into_iter().map(Dynamic::from).collect()
    }

    /// Widths of each site of a training row: [d_in] for an SAE, [d_in, d_out] for a transcoder, a crosscoder's
    /// site widths. `c.site_widths`
    #[rhai_fn(get = "site_widths", pure)]
    pub fn site_widths(s: &mut Sae) -> Array {
        let sae = s.borrow();
        sae.cfg
            .layout
            .site_widths(sae.cfg.d_in)
            .into_iter()
            .map(Dynamic::from)
            .collect()
    }
}
