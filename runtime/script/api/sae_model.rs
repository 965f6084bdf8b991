//! The glue between an SAE and a language model for scripts: which text,
//! which site, how many tokens; the measuring is `core::sae::metrics` and
//! `core::model::splice`.
use crate::core::model::splice::{corpus_windows, text_windows, truncate_to_predictions};
use crate::core::model::{HookPoint, Hooks, Model, Site, SpliceProbe, SpliceWindow};
use crate::core::precision::Precision;
use crate::core::sae::{metrics, Sae};
use crate::script::api::activations::{ScriptCorpus, ScriptStore};
use crate::script::api::sae_options::precision_option;
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::{Array, Dynamic, Map};

/// Where and on how much text CE loss recovered is measured.
pub struct CeOptions {
    pub site: Site,
    /// Next-token predictions to make (per pass).
    pub tokens: usize,
    pub context: usize,
    pub batch_size: usize,
    pub input_scale: f64,
    /// What the SAE computes in (the model computes in its own precision).
    pub precision: Precision,
}

/// Reads `layer`, `hook`, `context`, `input_scale` and the two keys named
/// (how many tokens, how many windows per model batch); the site defaults
/// to the one a harvested store came from.
pub fn ce_options(
    o: &Options,
    [tokens_key, batch_key]: [&str; 2],
    store: Option<&ScriptStore>,
) -> ScriptResult<CeOptions> {
    let manifest = store.and_then(|s| s.manifest());
    let layer = match (o.has("layer"), manifest) {
        (true, _) => o.int("layer", 0)?,
        (false, Some(m)) => m.layer as i64,
        (false, None) => {
            return Err(runtime_error(
                "CE loss recovered: say which layer the SAE reads, e.g. #{layer: 15}",
            ))
        }
    };
    let layer = usize::try_from(layer)
        .map_err(|_| runtime_error(format!("layer must be >= 0, got {layer}")))?;
    let point = match (o.string("hook")?, manifest) {
        (Some(name), _) => name.parse::<HookPoint>()?,
        (None, Some(m)) => m.hook.parse::<HookPoint>()?,
        (None, None) => HookPoint::ResidPre,
    };
    Ok(CeOptions {
        site: Site { layer, point },
        tokens: o.positive(tokens_key, 1024)?,
        context: o.positive("context", manifest.map_or(128, |m| m.context as i64))?,
        batch_size: o.positive(batch_key, 8)?,
        input_scale: o.f64("input_scale", 1.0)?,
        precision: precision_option(o, Precision::F32)?,
    })
}

/// Windows from a corpus, a text or an array of texts, cut so that they
/// make `tokens` next-token predictions (fewer if the text runs out).
pub fn ce_windows(
    model: &Model,
    text: &Dynamic,
    opts: &CeOptions,
) -> ScriptResult<Vec<SpliceWindow>> {
    let windows = if let Some(c) = text.read_lock::<ScriptCorpus>() {
        corpus_windows(model, &c, opts.context, opts.tokens)?
    } else {
        text_windows(model, &texts(text)?, opts.context)?
    };
    Ok(truncate_to_predictions(windows, opts.tokens))
}

fn texts(value: &Dynamic) -> ScriptResult<Vec<String>> {
    if let Ok(text) = value.clone().into_string() {
        return Ok(vec![text]);
    }
    let wrong = || {
        runtime_error(format!(
            "CE loss recovered: expected a corpus, a text or an array of texts, got {}",
            value.type_name()
        ))
    };
    let array = value.read_lock::<Array>().ok_or_else(wrong)?;
    array
        .iter()
        .map(|v| v.clone().into_string().map_err(|_| wrong()))
        .collect()
}

/// Clean, spliced and zero-ablated CE and the fraction recovered.
pub fn measure(
    sae: &Sae,
    model: &Model,
    text: &Dynamic,
    opts: &CeOptions,
    hooks: &Hooks,
) -> ScriptResult<(metrics::CeLossRecovered, usize)> {
    let windows = ce_windows(model, text, opts)?;
    let mut probe =
        SpliceProbe::new(model, opts.site, &windows, opts.batch_size)?.with_hooks(hooks);
    let result = metrics::ce_loss_recovered(sae, opts.input_scale, opts.precision, |splice| {
        probe.measure(splice)
    })?;
    Ok((result, probe.tokens()))
}

/// Inserts ce_clean, ce_spliced, ce_zero, the fraction recovered under
/// `recovered_key`, and kl_spliced, kl_zero, kl_score.
pub fn insert_ce(m: &mut Map, result: &metrics::CeLossRecovered, recovered_key: &str) {
    for (key, value) in [
        ("ce_clean", result.clean),
        ("ce_spliced", result.spliced),
        ("ce_zero", result.zero_ablated),
        (recovered_key, result.fraction_recovered),
        ("kl_spliced", result.kl_spliced),
        ("kl_zero", result.kl_zero_ablated),
        ("kl_score", result.kl_score),
    ] {
        m.insert(key.into(), Dynamic::from(value));
    }
}
