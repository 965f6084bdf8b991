//! An SAE's and a training run's settings as option maps give them —
//! `sae(#{d_in: 64, n_features: 512, kind: "topk", k: 8})`,
//! `s.train(x, #{steps: 2000, lr: 1e-3})`, or the same as JSON. The keys are
//! the scripts' (`l1`, `normalize`, `progress`), not the field names; options
//! left out take the defaults, some of which depend on other options (TopK's
//! k on n_features, steps on tokens and batch_size, the seed on `seed(...)`).
use super::config::{DeadFeatureRemedy, TrainConfig};
use super::init::DecoderBiasInit;
use super::{ArchitectureConfig, SaeConfig};
use crate::options::{by_name, field_names, from_options, OptionMap};
use crate::precision::Precision;
use crate::tensor::parse_device;
use crate::{Error, Result};
use serde::Deserialize;
use std::path::PathBuf;

/// The options every architecture shares; each architecture's config
/// struct holds its own (`k`, `l1`, ...).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaeOptions {
    d_in: i64,
    n_features: i64,
    /// The architecture's name; "relu" when absent.
    kind: Option<String>,
    apply_b_dec_to_input: Option<bool>,
    decoder_init_norm: Option<f64>,
    /// "cpu", "cuda", "cuda:1", ...
    device: Option<String>,
    model_name: Option<String>,
    hook_name: Option<String>,
    context_size: Option<i64>,
    prepend_bos: Option<bool>,
    dataset_path: Option<String>,
}

impl SaeConfig {
    /// Every option an SAE takes: the shared ones and those of any
    /// architecture (one map may serve several, as a sweep over `kind` does).
    pub fn option_keys() -> Vec<&'static str> {
        let mut keys = field_names::<SaeOptions>().to_vec();
        keys.extend(ArchitectureConfig::all_option_keys());
        keys
    }

    /// The SAE that `options` describe, every other setting at its default.
    /// Options of an architecture other than the chosen one are accepted and
    /// left unused, so that `#{kind: kind, k: 4}` works for every kind.
    pub fn from_options(options: &OptionMap) -> Result<SaeConfig> {
        let shared_keys = field_names::<SaeOptions>();
        let arch_keys = ArchitectureConfig::all_option_keys();
        let (mut shared, mut own) = (OptionMap::new(), OptionMap::new());
        for (key, value) in options {
            if shared_keys.contains(&key.as_str()) {
                shared.insert(key.clone(), value.clone());
            } else if arch_keys.contains(&key.as_str()) {
                own.insert(key.clone(), value.clone());
            } else {
                return Err(Error::invalid(format!(
                    "sae: unknown option '{key}' (known: {})",
                    Self::option_keys().join(", ")
                )));
            }
        }
        let o: SaeOptions = from_options("sae", &shared)?;
        let mut cfg = SaeConfig::new(o.kind.as_deref().unwrap_or("relu"), o.d_in, o.n_features)?;
        cfg.architecture.apply_options(&own)?;
        if let Some(apply) = o.apply_b_dec_to_input {
            cfg.apply_b_dec_to_input = apply;
        }
        if let Some(norm) = o.decoder_init_norm {
            cfg.decoder_init_norm = norm;
        }
        if let Some(device) = &o.device {
            cfg.device = parse_device(device)?;
        }
        let meta = &mut cfg.metadata;
        meta.model_name = o.model_name;
        meta.hook_name = o.hook_name;
        meta.dataset_path = o.dataset_path;
        meta.context_size = o.context_size;
        meta.prepend_bos = Some(o.prepend_bos.unwrap_or(true));
        Ok(cfg)
    }
}

impl TryFrom<OptionMap> for SaeConfig {
    type Error = Error;

    fn try_from(options: OptionMap) -> Result<Self> {
        SaeConfig::from_options(&options)
    }
}

impl<'de> Deserialize<'de> for SaeConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let options = OptionMap::deserialize(d)?;
        SaeConfig::from_options(&options).map_err(serde::de::Error::custom)
    }
}

/// A training run's options by their script names; [`TrainConfig`] is
/// deserialised through it, filling in what is absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    steps: Option<u64>,
    /// The run's length in activations: steps = ⌈tokens / batch_size⌉ (when
    /// `steps` is not given).
    tokens: Option<u64>,
    batch_size: Option<i64>,
    lr: Option<f64>,
    /// Adam's (β₁, β₂) as two numbers.
    betas: Option<Vec<f64>>,
    eps: Option<f64>,
    l1_warmup: Option<f64>,
    lr_decay: Option<f64>,
    max_grad_norm: Option<f64>,
    normalize: Option<bool>,
    #[serde(default, deserialize_with = "by_name")]
    b_dec_init: Option<DecoderBiasInit>,
    b_dec_init_tokens: Option<i64>,
    #[serde(default, deserialize_with = "by_name")]
    dead_features: Option<DeadFeatureRemedy>,
    dead_window: Option<u64>,
    resample_every: Option<u64>,
    resample_tokens: Option<i64>,
    log_every: Option<u64>,
    csv: Option<PathBuf>,
    checkpoint_dir: Option<PathBuf>,
    checkpoint_every: Option<u64>,
    keep_checkpoints: Option<usize>,
    resume: Option<bool>,
    /// Default: the seed last given to `rng::seed`, so `seed(3)` before a
    /// run repeats it.
    seed: Option<u64>,
    progress: Option<bool>,
    #[serde(default, deserialize_with = "by_name")]
    precision: Option<Precision>,
}

impl TryFrom<TrainOptions> for TrainConfig {
    type Error = Error;

    fn try_from(o: TrainOptions) -> Result<Self> {
        let d = TrainConfig {
            seed: crate::rng::current_seed(),
            ..Default::default()
        };
        let batch_size = o.batch_size.unwrap_or(d.batch_size);
        let steps = match (o.steps, o.tokens) {
            (None, Some(tokens)) => tokens.div_ceil(batch_size.max(1) as u64),
            (steps, _) => steps.unwrap_or(d.steps),
        };
        let betas = match o.betas.as_deref() {
            None => d.betas,
            Some(&[beta1, beta2]) => (beta1, beta2),
            Some(other) => {
                return Err(Error::invalid(format!(
                    "betas must have two values, got {}",
                    other.len()
                )))
            }
        };
        Ok(TrainConfig {
            steps,
            batch_size,
            lr: o.lr.unwrap_or(d.lr),
            betas,
            eps: o.eps.unwrap_or(d.eps),
            l1_warmup_fraction: o.l1_warmup.unwrap_or(d.l1_warmup_fraction),
            lr_decay_fraction: o.lr_decay.unwrap_or(d.lr_decay_fraction),
            max_grad_norm: o.max_grad_norm.unwrap_or(d.max_grad_norm),
            normalize_inputs: o.normalize.unwrap_or(d.normalize_inputs),
            b_dec_init: o.b_dec_init.unwrap_or(d.b_dec_init),
            b_dec_init_tokens: o.b_dec_init_tokens.unwrap_or(d.b_dec_init_tokens),
            dead_feature_remedy: o.dead_features,
            dead_window_tokens: o.dead_window.unwrap_or(d.dead_window_tokens),
            resample_every: o.resample_every.unwrap_or(d.resample_every),
            resample_tokens: o.resample_tokens.unwrap_or(d.resample_tokens),
            log_every: o.log_every.unwrap_or(d.log_every),
            csv_path: o.csv,
            checkpoint_dir: o.checkpoint_dir,
            checkpoint_every: o.checkpoint_every.unwrap_or(d.checkpoint_every),
            keep_checkpoints: o.keep_checkpoints.unwrap_or(d.keep_checkpoints),
            resume: o.resume.unwrap_or(d.resume),
            seed: o.seed.unwrap_or(d.seed),
            show_progress: o.progress.unwrap_or(d.show_progress),
            precision: o.precision.unwrap_or(d.precision),
        })
    }
}

impl TrainConfig {
    /// Every option a training run takes.
    pub fn option_keys() -> &'static [&'static str] {
        field_names::<TrainOptions>()
    }

    /// The run that `options` describe (`context`, e.g. "train", starts
    /// error messages), every other setting at its default.
    pub fn from_options(context: &str, options: &OptionMap) -> Result<TrainConfig> {
        from_options::<TrainOptions>(context, options)?
            .try_into()
            .map_err(|e: Error| Error::invalid(format!("{context}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: serde_json::Value) -> OptionMap {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn script_keys_fill_the_config_and_the_rest_keep_their_defaults() {
        let cfg = SaeConfig::from_options(&map(json!(
            {"d_in": 8, "n_features": 16, "kind": "topk", "k": 4, "l1": 2, "prepend_bos": false}
        )))
        .unwrap();
        assert_eq!(cfg.architecture.options()["k"], 4);
        assert!(cfg.apply_b_dec_to_input, "TopK's default");
        assert_eq!(cfg.metadata.prepend_bos, Some(false));
        let relu =
            SaeConfig::from_options(&map(json!({"d_in": 8, "n_features": 16, "k": 4}))).unwrap();
        assert_eq!(relu.architecture.name(), "relu");
        let err = SaeConfig::from_options(&map(json!({"d_in": 8, "n_features": 16, "bogus": 1})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sae: unknown option 'bogus'"), "{err}");
        assert!(err.contains("jumprelu_bandwidth"), "{err}");
    }

    #[test]
    fn tokens_become_steps_and_the_seed_follows_rng_seed() {
        crate::rng::seed(7);
        let cfg = TrainConfig::from_options(
            "train",
            &map(json!({"tokens": 1000, "batch_size": 64, "lr": 1, "precision": "bf16"})),
        )
        .unwrap();
        assert_eq!((cfg.steps, cfg.seed, cfg.lr), (16, 7, 1.0));
        assert_eq!(cfg.precision, Precision::Bf16);
        let err = TrainConfig::from_options("train", &map(json!({"precision": "fp8"})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown precision 'fp8'"), "{err}");
        let err = TrainConfig::from_options("train", &map(json!({"betas": [0.9]})))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train: betas must have two values, got 1"),
            "{err}"
        );
    }
}
