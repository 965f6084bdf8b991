//! What to harvest and where: [`HarvestOptions`], and the option map a
//! script gives for it (`m.harvest(corpus, #{layer: 15, tokens: 100000,
//! out: "runs/acts"})`), whose defaults depend on the model it runs.
//! Several sites go side by side in one row with `hooks: [...]` and/or
//! `layers: [...]` (`#{layer: 5, hooks: ["mlp_in", "mlp_out"]}` for a
//! transcoder, `#{layers: [2, 5, 8], hook: "resid_post"}` for a crosscoder).
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
    /// The activations to record, side by side in each row (usually one).
    pub sites: Vec<Site>,
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
    /// The first corpus window to harvest: a task of a split harvest
    /// ([`super::split`]) starts at its slice; 0 otherwise.
    pub first_window: usize,
    /// The window to stop before (`None`: the end of the corpus).
    pub end_window: Option<usize>,
    /// Also write each row's squared norms (`{shard}.norms.npy`, f32, one
    /// column per site), from which a split harvest's merge sums the scale
    /// in the one-machine order.
    pub row_norms: bool,
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
        Self::with_sites(vec![site], tokens, out)
    }

    /// Several sites per row, in this order; the defaults of [`Self::new`].
    pub fn with_sites(sites: Vec<Site>, tokens: usize, out: impl Into<PathBuf>) -> Self {
        HarvestOptions {
            sites,
            tokens,
            context: 128,
            batch_size: 8,
            dtype: Dtype::F16,
            out: out.into(),
            shard_rows: 1 << 16,
            max_norm_ratio: None,
            first_window: 0,
            end_window: None,
            row_norms: false,
        }
    }

    /// The harvest that `options` ask of a model with `n_layers` layers on
    /// `device`: the middle layer's residual stream, 100 000 rows and the
    /// device's batch size unless they say otherwise. `out` is required.
    pub fn from_options(options: &OptionMap, n_layers: usize, device: tch::Device) -> Result<Self> {
        let o: HarvestRequest = from_options("harvest", options)?;
        let sites = requested_sites(&o, n_layers)?;
        let out = o.out.ok_or_else(|| {
            Error::invalid("harvest: option 'out' (the store's folder) is required")
        })?;
        let tokens = o.tokens.map_or(100_000, NonZeroUsize::get);
        let mut harvest = HarvestOptions::with_sites(sites, tokens, out);
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

/// `layer`/`layers` × `hook`/`hooks` (each pair exclusive): the middle
/// layer's `resid_pre` when none is given.
fn requested_sites(o: &HarvestRequest, n_layers: usize) -> Result<Vec<Site>> {
    let layers = match (o.layer, &o.layers) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "harvest: give `layer` or `layers`, not both",
            ))
        }
        (Some(layer), None) => vec![layer],
        (None, Some(layers)) => layers.clone(),
        (None, None) => vec![n_layers / 2],
    };
    let hooks = match (o.hook, &o.hooks) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("harvest: give `hook` or `hooks`, not both"))
        }
        (Some(hook), None) => vec![hook],
        (None, Some(names)) => names
            .iter()
            .map(|name| {
                name.parse::<HookPoint>()
                    .map_err(|e| Error::invalid(format!("harvest: option 'hooks': {e}")))
            })
            .collect::<Result<_>>()?,
        (None, None) => vec![HookPoint::ResidPre],
    };
    super::sites::cross(&layers, &hooks)
}

/// A harvest's options by their script names, before the model's defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HarvestRequest {
    layer: Option<usize>,
    /// Several layers per row (a crosscoder's store).
    layers: Option<Vec<usize>>,
    /// Several hook points per row, at each layer (a transcoder's `["mlp_in", "mlp_out"]`).
    hooks: Option<Vec<String>>,
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
