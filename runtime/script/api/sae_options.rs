//! Rhai option maps turned into an SAE's configuration, a training run's
//! configuration and the options of one loss evaluation.
use crate::core::options::OptionMap;
use crate::core::precision::Precision;
use crate::core::sae::trainer::{DeadFeatureRemedy, TrainConfig};
use crate::core::sae::{self, init::DecoderBiasInit, ArchitectureConfig, SaeConfig};
use crate::core::tensor::parse_device;
use crate::core::Tensor;
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::Map;
use std::path::PathBuf;

/// `precision`: "f32", "tf32" or "bf16".
fn precision(o: &Options, default: Precision) -> ScriptResult<Precision> {
    Ok(match o.string("precision")? {
        Some(name) => Precision::parse(&name)?,
        None => default,
    })
}

/// The options every architecture shares; each architecture adds its own
/// (see [`sae_keys`]).
#[rustfmt::skip]
const SHARED_SAE_KEYS: &[&str] = &[
    "d_in", "n_features", "kind", "apply_b_dec_to_input", "decoder_init_norm", "device",
    "model_name", "hook_name", "context_size", "prepend_bos", "dataset_path",
];

/// Every option `sae(...)` takes: the shared ones and those of any architecture.
pub(crate) fn sae_keys() -> Vec<&'static str> {
    let mut keys = SHARED_SAE_KEYS.to_vec();
    keys.extend(ArchitectureConfig::all_option_keys());
    keys
}

pub(crate) fn sae_config(opts: &Map) -> ScriptResult<SaeConfig> {
    let known = sae_keys();
    let o = Options::new(opts, "sae", &known)?;
    let required = |key: &str| -> ScriptResult<i64> {
        if !o.has(key) {
            return Err(runtime_error(format!(
                "sae: option '{key}' is required, e.g. sae(#{{d_in: 64, n_features: 512}})"
            )));
        }
        o.int(key, 0)
    };
    let kind = o.string("kind")?.unwrap_or_else(|| "relu".to_string());
    let mut cfg = SaeConfig::new(&kind, required("d_in")?, required("n_features")?)?;
    let mut own = OptionMap::new();
    for (key, value) in opts {
        if !SHARED_SAE_KEYS.contains(&key.as_str()) {
            own.insert(key.to_string(), rhai::serde::from_dynamic(value)?);
        }
    }
    cfg.architecture.apply_options(&own)?;
    cfg.apply_b_dec_to_input = o.bool("apply_b_dec_to_input", cfg.apply_b_dec_to_input)?;
    cfg.decoder_init_norm = o.f64("decoder_init_norm", cfg.decoder_init_norm)?;
    if let Some(device) = o.string("device")? {
        cfg.device = parse_device(&device)?;
    }
    cfg.metadata.model_name = o.string("model_name")?;
    cfg.metadata.hook_name = o.string("hook_name")?;
    cfg.metadata.dataset_path = o.string("dataset_path")?;
    if o.has("context_size") {
        cfg.metadata.context_size = Some(o.int("context_size", 0)?);
    }
    cfg.metadata.prepend_bos = Some(o.bool("prepend_bos", true)?);
    Ok(cfg)
}

#[rustfmt::skip]
pub(crate) const TRAIN_KEYS: &[&str] = &[
    "steps", "tokens", "batch_size", "lr", "betas", "eps", "l1_warmup", "lr_decay", "max_grad_norm",
    "normalize", "b_dec_init", "b_dec_init_tokens", "dead_features", "dead_window",
    "resample_every", "resample_tokens", "log_every", "csv", "checkpoint_dir", "checkpoint_every",
    "keep_checkpoints", "resume", "seed", "progress", "precision",
];

pub(crate) fn train_config(opts: &Map, context: &str, extra: &[&str]) -> ScriptResult<TrainConfig> {
    let mut known = TRAIN_KEYS.to_vec();
    known.extend_from_slice(extra);
    let o = Options::new(opts, context, &known)?;
    let d = TrainConfig {
        seed: crate::core::rng::current_seed(),
        ..Default::default()
    };
    let batch_size = o.int("batch_size", d.batch_size)?;
    let steps = if o.has("tokens") && !o.has("steps") {
        o.non_negative("tokens", 0)?
            .div_ceil(batch_size.max(1) as u64)
    } else {
        o.non_negative("steps", d.steps)?
    };
    let betas = match o.floats("betas")? {
        None => d.betas,
        Some(b) if b.len() == 2 => (b[0], b[1]),
        Some(b) => {
            return Err(runtime_error(format!(
                "{context}: betas must have two values, got {}",
                b.len()
            )))
        }
    };
    let remedy = o
        .string("dead_features")?
        .map(|r| DeadFeatureRemedy::parse(&r))
        .transpose()?;
    let b_dec_init = match o.string("b_dec_init")? {
        Some(name) => DecoderBiasInit::parse(&name)?,
        None => d.b_dec_init,
    };
    Ok(TrainConfig {
        steps,
        batch_size,
        lr: o.f64("lr", d.lr)?,
        betas,
        eps: o.f64("eps", d.eps)?,
        l1_warmup_fraction: o.f64("l1_warmup", d.l1_warmup_fraction)?,
        lr_decay_fraction: o.f64("lr_decay", d.lr_decay_fraction)?,
        max_grad_norm: o.f64("max_grad_norm", d.max_grad_norm)?,
        normalize_inputs: o.bool("normalize", d.normalize_inputs)?,
        b_dec_init,
        b_dec_init_tokens: o.int("b_dec_init_tokens", d.b_dec_init_tokens)?,
        dead_feature_remedy: remedy,
        dead_window_tokens: o.non_negative("dead_window", d.dead_window_tokens)?,
        resample_every: o.non_negative("resample_every", d.resample_every)?,
        resample_tokens: o.int("resample_tokens", d.resample_tokens)?,
        log_every: o.non_negative("log_every", d.log_every)?,
        csv_path: o.string("csv")?.map(PathBuf::from),
        checkpoint_dir: o.string("checkpoint_dir")?.map(PathBuf::from),
        checkpoint_every: o.non_negative("checkpoint_every", d.checkpoint_every)?,
        keep_checkpoints: o.non_negative("keep_checkpoints", d.keep_checkpoints as u64)? as usize,
        resume: o.bool("resume", d.resume)?,
        seed: o.non_negative("seed", d.seed)?,
        show_progress: o.bool("progress", d.show_progress)?,
        precision: precision(&o, d.precision)?,
    })
}

pub(crate) fn loss_options(s: &sae::Sae, opts: &Map) -> ScriptResult<sae::LossOptions> {
    let o = Options::new(opts, "loss", &["l1", "l1_scale", "dead_mask", "precision"])?;
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
        precision: precision(&o, Precision::F32)?,
    })
}
