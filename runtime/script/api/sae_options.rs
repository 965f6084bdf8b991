//! Rhai option maps turned into an SAE's configuration, a training run's
//! configuration and the options of one loss evaluation.
use crate::core::precision::Precision;
use crate::core::sae::trainer::TrainConfig;
use crate::core::sae::{self, SaeConfig};
use crate::core::Tensor;
use crate::script::convert::{option_map, Options};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::Map;

/// `precision`: "f32", "tf32" or "bf16"; one option, the same name
/// everywhere it is accepted (model, training, encoding, evaluation, analyses).
pub(crate) fn precision_option(o: &Options, default: Precision) -> ScriptResult<Precision> {
    Ok(match o.string("precision")? {
        Some(name) => Precision::parse(&name)?,
        None => default,
    })
}

/// `sae(#{d_in, n_features, kind, ...})`: core reads the options (see
/// `SaeConfig::from_options`).
pub(crate) fn sae_config(opts: &Map) -> ScriptResult<SaeConfig> {
    Ok(SaeConfig::from_options(&option_map(opts, "sae")?)?)
}

/// A training run's options (see `TrainConfig::from_options`); `extra`
/// keys belong to the caller (`lr_sweep`'s `lrs`) and are left to it.
pub(crate) fn train_config(opts: &Map, context: &str, extra: &[&str]) -> ScriptResult<TrainConfig> {
    let mut options = option_map(opts, context)?;
    options.retain(|key, _| !extra.contains(&key.as_str()));
    Ok(TrainConfig::from_options(context, &options)?)
}

pub(crate) fn loss_options(s: &sae::Sae, opts: &Map) -> ScriptResult<sae::LossOptions> {
    let o = Options::new(
        opts,
        "loss",
        &["l1", "l1_scale", "dead_mask", "precision", "training"],
    )?;
    let dead_mask = match opts.get("dead_mask") {
        None => None,
        Some(v) => match v.read_lock::<Tensor>() {
            Some(t) if t.shape() == [s.cfg.n_features] => {
                Some(t.inner().f_ne(0.0).map_err(crate::core::Error::from)?)
            }
            _ => {
                return Err(runtime_error(format!(
                    "loss: dead_mask must be a tensor of shape [{}]",
                    s.cfg.n_features
                )))
            }
        },
    };
    Ok(sae::LossOptions {
        l1_coefficient: o.has("l1").then(|| o.f64("l1", 0.0)).transpose()?,
        l1_scale: o
            .has("l1_scale")
            .then(|| o.f64("l1_scale", 1.0))
            .transpose()?,
        dead_mask,
        precision: precision_option(&o, Precision::F32)?,
        training: o.bool("training", false)?,
    })
}
