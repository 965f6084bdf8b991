//! What to harvest and where: [`HarvestOptions`], and the option map a
//! script gives for it (`m.harvest(corpus, #{layer: 15, tokens: 100000,
//! out: "runs/acts"})`), whose defaults depend on the model it runs.
use super::npy::Dtype;
use crate::model::{HookPoint, Site};
use crate::options::{by_name, from_options, OptionMap};
use crate::{Error, Result};
use serde::Deserialize;
use std::num::NonZeroUsize;
use std::path::PathBuf;

/// What to harvest and where.
#[derive(Debug, Clone, PartialEq)]
pub struct HarvestOptions {
    /// The activation to record.
    pub site: Site,
    /// Rows to collect (one per text token).
    pub tokens: usize,
    /// Tokens per window the model sees.
    pub context: usize,
    /// Windows per forward pass.
    pub batch_size: usize,
    /// How rows are stored.
    pub dtype: Dtype,
    /// The store's folder.
    pub out: PathBuf,
    /// Rows per shard (whole windows are kept together, so shards run slightly over).
    pub shard_rows: usize,
    /// Leave out rows whose L2 norm exceeds this multiple of the median row
    /// norm of their window: attention sinks past position 0, whose
    /// massive activations would otherwise set the scale and dominate an
    /// SAE's MSE. `None` keeps every row.
    pub max_norm_ratio: Option<f64>,
}

impl HarvestOptions {
    /// Windows per forward pass when none is asked for: 8 on a CPU, where
    /// larger batches gain nothing; 64 on a GPU, which needs ~8k tokens per
    /// pass to be busy with a model of SmolLM2-135M's size.
    pub fn default_batch_size(device: tch::Device) -> usize {
        if device.is_cuda() {
            64
        } else {
            8
        }
    }

    /// Defaults: 128-token windows, batches of 8, f16, ~64 MB shards.
    pub fn new(site: Site, tokens: usize, out: impl Into<PathBuf>) -> Self {
        HarvestOptions {
            site,
            tokens,
            context: 128,
            batch_size: 8,
            dtype: Dtype::F16,
            out: out.into(),
            shard_rows: 1 << 16,
            max_norm_ratio: None,
        }
    }

    /// The harvest that `options` ask of a model with `n_layers` layers on
    /// `device`: the middle layer's residual stream, 100 000 rows and the
    /// device's batch size unless they say otherwise. `out` is required.
    pub fn from_options(options: &OptionMap, n_layers: usize, device: tch::Device) -> Result<Self> {
        let o: HarvestRequest = from_options("harvest", options)?;
        let out = o.out.ok_or_else(|| {
            Error::invalid("harvest: option 'out' (the store's folder) is required")
        })?;
        let site = Site {
            layer: o.layer.unwrap_or(n_layers / 2),
            point: o.hook.unwrap_or(HookPoint::ResidPre),
        };
        let tokens = o.tokens.map_or(100_000, NonZeroUsize::get);
        let mut harvest = HarvestOptions::new(site, tokens, out);
        let positive =
            |value: Option<NonZeroUsize>, default: usize| value.map_or(default, NonZeroUsize::get);
        harvest.context = positive(o.context, harvest.context);
        harvest.batch_size = positive(o.batch_size, Self::default_batch_size(device));
        harvest.shard_rows = positive(o.shard_rows, harvest.shard_rows);
        if let Some(dtype) = o.dtype {
            harvest.dtype = dtype;
        }
        if let Some(ratio) = o.max_norm_ratio {
            if !(ratio.is_finite() && ratio > 1.0) {
                return Err(Error::invalid(format!(
                    "harvest: max_norm_ratio must be a number above 1 (e.g. 10), got {ratio}"
                )));
            }
            harvest.max_norm_ratio = Some(ratio);
        }
        Ok(harvest)
    }
}

/// A harvest's options by their script names, before the model's defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HarvestRequest {
    layer: Option<usize>,
    tokens: Option<NonZeroUsize>,
    context: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "by_name")]
    hook: Option<HookPoint>,
    out: Option<PathBuf>,
    batch_size: Option<NonZeroUsize>,
    #[serde(default, deserialize_with = "by_name")]
    dtype: Option<Dtype>,
    shard_rows: Option<NonZeroUsize>,
    max_norm_ratio: Option<f64>,
}
