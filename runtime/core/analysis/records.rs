//! Activation records for every feature of an SAE in one streaming pass over
//! an activation store, as *Scaling Monosemanticity*'s feature browser shows
//! them: each feature's top activations, a uniform random sample from every
//! activation level, its maximum, firing density and activation histogram.
//!
//! The pass encodes the store in order, a batch at a time, on the SAE's
//! device, and keeps only per-feature state: never the [rows, features]
//! matrix. Memory is O(features × (top_k + bins × samples_per_bin)).
//!
//! Levels are bins of log₁₀(activation), 1/8 decade wide; each bin keeps a
//! uniform sample of its rows ([`GroupedSmallest`] with random keys). Asked
//! for N quantiles afterwards, the bins are grouped by cumulative count and
//! each group's examples are drawn from its bins in proportion to their
//! counts, so a quantile's sample is uniform over it up to the bin width.
use super::grouped::{Entries, GroupedSmallest};
use crate::activations::Store;
use crate::precision::Precision;
use crate::sae::{Codes, Sae};
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The activation histogram's bins: log₁₀(activation) from `LOG10_LOW`, in
/// `BINS_PER_DECADE` steps; values outside go to the end bins.
pub const LOG10_LOW: f64 = -4.0;
pub const BINS_PER_DECADE: f64 = 8.0;
pub const BINS: i64 = 64;

/// Lower edge of histogram bin `b` (the upper edge is bin b + 1's lower edge).
pub fn bin_edge(b: i64) -> f64 {
    10f64.powf(LOG10_LOW + b as f64 / BINS_PER_DECADE)
}

#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Top activations kept per feature.
    pub top_k: i64,
    /// Random examples kept per feature and activation bin.
    pub samples_per_bin: i64,
    /// Rows encoded at once.
    pub batch_size: usize,
    /// Rows read from the start of the store (`None`: all).
    pub max_rows: Option<usize>,
    pub show_progress: bool,
    /// What the SAE encodes in (the codes are kept in f32 either way).
    pub precision: Precision,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            top_k: 20,
            samples_per_bin: 8,
            batch_size: 4096,
            max_rows: None,
            show_progress: true,
            precision: Precision::F32,
        }
    }
}

/// What records were made from, to refuse records of another SAE or store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordsMeta {
    pub format: u32,
    pub n_features: i64,
    pub d_in: i64,
    pub top_k: i64,
    pub samples_per_bin: i64,
    pub bins: i64,
    pub log10_low: f64,
    pub bins_per_decade: f64,
    /// Rows encoded (the first `rows` of the store).
    pub rows: usize,
    pub store_rows: usize,
    pub store_path: Option<String>,
    pub hook: Option<String>,
    /// A checksum of the SAE's weights ([`sae_fingerprint`]).
    pub sae_fingerprint: f64,
    /// The precision the SAE encoded in ("f32" for records made before the option).
    #[serde(default = "f32_name")]
    pub precision: String,
}

fn f32_name() -> String {
    Precision::F32.name().to_string()
}

const FORMAT: u32 = 1;
const META_FILE: &str = "records.json";
const TENSOR_FILE: &str = "records.safetensors";

/// Every feature's records, on the CPU.
pub struct FeatureRecords {
    pub meta: RecordsMeta,
    /// [features, top_k], descending; rows −1 where fewer rows fired.
    pub top_values: Tensor,
    pub top_rows: Tensor,
    /// Rows where each feature fired, [features] i64.
    pub counts: Tensor,
    /// [features, BINS] i64.
    pub histogram: Tensor,
    /// [features, BINS, samples_per_bin]; rows −1 where a bin has fewer.
    pub sample_rows: Tensor,
    pub sample_values: Tensor,
}

/// One example: a store row and the feature's activation there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Example {
    pub row: usize,
    pub activation: f32,
}

/// The examples of one activation quantile: activations in [low, high).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileSample {
    pub low: f64,
    pub high: f64,
    /// Rows of the feature in this quantile.
    pub count: u64,
    pub examples: Vec<Example>,
}

/// A checksum of an SAE's weights: equal for the same weights (up to the
/// summation order of the device), different after any training step.
pub fn sae_fingerprint(sae: &Sae) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let w = &sae.weights;
    let sum = |t: &Tensor| -> Result<f64> { Ok(t.f_sum(Kind::Double)?.f_double_value(&[])?) };
    Ok(sum(w.w_dec.inner())?
        + 2.0 * sum(&w.w_enc.inner().f_abs()?)?
        + 3.0 * sum(w.b_enc.inner())?
        + 5.0 * sum(w.b_dec.inner())?)
}

/// Refuses a store the SAE was not made for: another width, or another site.
pub fn check_store(sae: &Sae, store: &Store) -> Result<()> {
    if store.dim() as i64 != sae.cfg.d_in {
        return Err(Error::invalid(format!(
            "the store holds activations of width {}, the SAE reads width {}",
            store.dim(),
            sae.cfg.d_in
        )));
    }
    if store.is_empty() {
        return Err(Error::invalid("the store is empty"));
    }
    let (Some(manifest), Some(hook)) = (store.manifest(), &sae.cfg.metadata.hook_name) else {
        return Ok(());
    };
    let site = manifest.site()?.hook_name();
    if &site != hook {
        return Err(Error::invalid(format!(
            "the store holds {site} but the SAE was trained on {hook}"
        )));
    }
    if let Some(model) = &sae.cfg.metadata.model_name {
        if model != manifest.model_name() {
            return Err(Error::invalid(format!(
                "the store comes from {} but the SAE from {model}",
                manifest.model_name()
            )));
        }
    }
    Ok(())
}

/// The non-zero activations of a batch as (row, feature, value) entries.
fn active_entries(codes: &Codes) -> Result<(Tensor, Tensor, Tensor)> {
    match codes {
        Codes::Dense(f) => {
            let mask = f.f_gt(0.0)?;
            let values = f.f_masked_select(&mask)?;
            let at = mask.f_nonzero()?;
            Ok((at.f_select(1, 0)?, at.f_select(1, 1)?, values))
        }
        Codes::Sparse {
            values, indices, ..
        } => {
            let mask = values.f_gt(0.0)?;
            let size = values.size();
            let rows = Tensor::f_arange(size[0], (Kind::Int64, values.device()))?
                .f_unsqueeze(1)?
                .f_expand(size.as_slice(), false)?;
            Ok((
                rows.f_masked_select(&mask)?,
                indices.f_masked_select(&mask)?,
                values.f_masked_select(&mask)?.f_totype(Kind::Float)?,
            ))
        }
    }
}

/// The histogram bin of each activation.
fn bins_of(values: &Tensor) -> Result<Tensor> {
    Ok(values
        .f_log10()?
        .f_sub_scalar(LOG10_LOW)?
        .f_mul_scalar(BINS_PER_DECADE)?
        .f_floor()?
        .f_clamp(0.0, (BINS - 1) as f64)?
        .f_totype(Kind::Int64)?)
}

/// The state of the pass, on the SAE's device.
struct Pass {
    n_features: i64,
    top: GroupedSmallest,
    samples: GroupedSmallest,
    counts: Tensor,
    histogram: Tensor,
}

impl Pass {
    fn new(n_features: i64, opts: &RecordOptions, device: Device) -> Result<Self> {
        Ok(Pass {
            n_features,
            top: GroupedSmallest::new(n_features, opts.top_k, device)?,
            samples: GroupedSmallest::new(n_features * BINS, opts.samples_per_bin, device)?,
            counts: Tensor::f_zeros([n_features], (Kind::Int64, device))?,
            histogram: Tensor::f_zeros([n_features * BINS], (Kind::Int64, device))?,
        })
    }

    fn add(&mut self, codes: &Codes, first_row: usize) -> Result<()> {
        let (rows, features, values) = active_entries(codes)?;
        let rows = rows.f_add_scalar(first_row as i64)?;
        self.counts = self
            .counts
            .f_add(&features.f_bincount::<Tensor>(None, self.n_features)?)?;
        let groups = features.f_mul_scalar(BINS)?.f_add(&bins_of(&values)?)?;
        self.histogram = self
            .histogram
            .f_add(&groups.f_bincount::<Tensor>(None, self.n_features * BINS)?)?;
        self.top.offer(Entries {
            groups: &features,
            keys: &values.f_neg()?,
            rows: &rows,
            values: &values,
        })?;
        let random = Tensor::f_rand(values.size().as_slice(), (Kind::Float, values.device()))?;
        self.samples.offer(Entries {
            groups: &groups,
            keys: &random,
            rows: &rows,
            values: &values,
        })
    }
}

/// Runs the pass: every feature's records over the store's first rows.
pub fn compute_records(sae: &Sae, store: &Store, opts: &RecordOptions) -> Result<FeatureRecords> {
    check_store(sae, store)?;
    if opts.top_k < 1 || opts.samples_per_bin < 1 || opts.batch_size < 1 {
        return Err(Error::invalid(
            "top_k, samples_per_bin and batch_size must be >= 1",
        ));
    }
    let _guard = tch::no_grad_guard();
    let n = opts.max_rows.map_or(store.len(), |m| m.min(store.len()));
    let device = sae.cfg.device;
    let mut pass = Pass::new(sae.cfg.n_features, opts, device)?;
    let bar = opts
        .show_progress
        .then(|| crate::progress::bar(n as u64, "rows"));
    let mut start = 0;
    while start < n {
        crate::interrupt::check()?;
        let end = (start + opts.batch_size).min(n);
        let indices: Vec<usize> = (start..end).collect();
        let x = store.rows(&indices)?.f_to(device)?;
        let codes = sae.encode_codes_in(&x, opts.precision)?;
        pass.add(&codes, start)?;
        if let Some(bar) = &bar {
            bar.inc((end - start) as u64);
        }
        start = end;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let cpu = |t: &Tensor| t.f_to(Device::Cpu);
    let f = sae.cfg.n_features;
    let r = opts.samples_per_bin;
    Ok(FeatureRecords {
        meta: RecordsMeta {
            format: FORMAT,
            n_features: f,
            d_in: sae.cfg.d_in,
            top_k: opts.top_k,
            samples_per_bin: r,
            bins: BINS,
            log10_low: LOG10_LOW,
            bins_per_decade: BINS_PER_DECADE,
            rows: n,
            store_rows: store.len(),
            store_path: store.path().map(|p| p.display().to_string()),
            hook: store
                .manifest()
                .and_then(|m| m.site().ok())
                .map(|s| s.hook_name()),
            sae_fingerprint: sae_fingerprint(sae)?,
            precision: opts.precision.name().to_string(),
        },
        top_values: cpu(&pass.top.values)?,
        top_rows: cpu(&pass.top.rows)?,
        counts: cpu(&pass.counts)?,
        histogram: cpu(&pass.histogram.f_view([f, BINS])?)?,
        sample_rows: cpu(&pass.samples.rows.f_view([f, BINS, r])?)?,
        sample_values: cpu(&pass.samples.values.f_view([f, BINS, r])?)?,
    })
}

impl FeatureRecords {
    /// Refuses records made from other weights or for another feature count.
    pub fn check_sae(&self, sae: &Sae) -> Result<()> {
        let fingerprint = sae_fingerprint(sae)?;
        let same =
            (fingerprint - self.meta.sae_fingerprint).abs() <= 1e-6 * fingerprint.abs().max(1.0);
        if self.meta.n_features != sae.cfg.n_features || self.meta.d_in != sae.cfg.d_in || !same {
            return Err(Error::invalid(
                "these records were made from another SAE (its weights differ): compute them again with s.records(store)",
            ));
        }
        Ok(())
    }

    /// Refuses a feature index the records do not cover.
    pub fn check_feature(&self, feature: i64) -> Result<()> {
        if feature < 0 || feature >= self.meta.n_features {
            return Err(Error::invalid(format!(
                "feature {feature} is out of range: the SAE has {} features",
                self.meta.n_features
            )));
        }
        Ok(())
    }

    /// Fraction of the encoded rows where the feature fired.
    pub fn density(&self, feature: i64) -> Result<f64> {
        self.check_feature(feature)?;
        let count = self.counts.f_int64_value(&[feature])?;
        Ok(count as f64 / self.meta.rows.max(1) as f64)
    }

    /// Every feature's density, [features].
    pub fn densities(&self) -> Result<Vec<f64>> {
        let counts: Vec<i64> = Vec::try_from(&self.counts)?;
        let rows = self.meta.rows.max(1) as f64;
        Ok(counts.into_iter().map(|c| c as f64 / rows).collect())
    }

    /// Every feature's largest activation (0 for features that never fired).
    pub fn maxima(&self) -> Result<Vec<f64>> {
        let top = self.top_values.f_select(1, 0)?;
        Ok(Vec::<f32>::try_from(&top)?
            .into_iter()
            .map(f64::from)
            .collect())
    }

    /// The feature's `k` largest activations, largest first.
    pub fn top(&self, feature: i64, k: usize) -> Result<Vec<Example>> {
        self.check_feature(feature)?;
        let rows: Vec<i64> = Vec::try_from(&self.top_rows.f_get(feature)?)?;
        let values: Vec<f32> = Vec::try_from(&self.top_values.f_get(feature)?)?;
        Ok(examples(&rows, &values).into_iter().take(k).collect())
    }

    /// The feature's histogram: counts per log₁₀ bin (edges from [`bin_edge`]).
    pub fn histogram_of(&self, feature: i64) -> Result<Vec<i64>> {
        self.check_feature(feature)?;
        Ok(Vec::try_from(&self.histogram.f_get(feature)?)?)
    }

    /// `per_quantile` random examples from each of `quantiles` equal-count
    /// groups of the feature's activations, lowest first; reproducible for a seed.
    pub fn quantile_samples(
        &self,
        feature: i64,
        quantiles: usize,
        per_quantile: usize,
        seed: u64,
    ) -> Result<Vec<QuantileSample>> {
        let histogram = self.histogram_of(feature)?;
        let total: i64 = histogram.iter().sum();
        if total == 0 || quantiles == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<i64> = Vec::try_from(&self.sample_rows.f_get(feature)?.f_view([-1])?)?;
        let values: Vec<f32> = Vec::try_from(&self.sample_values.f_get(feature)?.f_view([-1])?)?;
        let r = self.meta.samples_per_bin as usize;
        let mut rng = StdRng::seed_from_u64(seed ^ feature as u64);
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); quantiles];
        let mut below = 0;
        for (bin, &count) in histogram.iter().enumerate() {
            if count > 0 {
                let middle = below as f64 + count as f64 / 2.0;
                let q = ((middle / total as f64) * quantiles as f64) as usize;
                groups[q.min(quantiles - 1)].push(bin);
            }
            below += count;
        }
        Ok(groups
            .into_iter()
            .filter(|bins| !bins.is_empty())
            .map(|bins| {
                let pools: Vec<Vec<Example>> = bins
                    .iter()
                    .map(|&b| examples(&rows[b * r..(b + 1) * r], &values[b * r..(b + 1) * r]))
                    .collect();
                let weights: Vec<i64> = bins.iter().map(|&b| histogram[b]).collect();
                let (first, last) = (bins[0] as i64, bins[bins.len() - 1] as i64);
                QuantileSample {
                    low: bin_edge(first),
                    high: bin_edge(last + 1),
                    count: weights.iter().sum::<i64>() as u64,
                    examples: draw_weighted(pools, weights, per_quantile, &mut rng),
                }
            })
            .collect())
    }

    /// Saves the records in a folder (tensors, then the JSON that marks them
    /// complete), each file written atomically: a run killed or out of disk
    /// leaves no `records.json`, so the next run computes them again. What
    /// such a run left half-written (staging files) goes first.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::fs::remove_staging_files(dir)?;
        let named = [
            ("top_values", &self.top_values),
            ("top_rows", &self.top_rows),
            ("counts", &self.counts),
            ("histogram", &self.histogram),
            ("sample_rows", &self.sample_rows),
            ("sample_values", &self.sample_values),
        ]
        .map(|(name, t)| (name.to_string(), crate::Tensor::new(t.shallow_clone())));
        crate::tensor_io::save_tensors(&dir.join(TENSOR_FILE), &named)?;
        let json = serde_json::to_string_pretty(&self.meta)
            .map_err(|e| Error::invalid(format!("cannot write the records' metadata: {e}")))?;
        crate::fs::write_atomic(&dir.join(META_FILE), &json)
    }

    /// Reopens records saved by [`FeatureRecords::save`], checking every shape.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: RecordsMeta = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "{} is not a records file: {e}",
                meta_path.display()
            ))
        })?;
        if meta.format != FORMAT || meta.bins != BINS || meta.log10_low != LOG10_LOW {
            return Err(Error::invalid(format!(
                "{} was written by another version of saelab (format {})",
                meta_path.display(),
                meta.format
            )));
        }
        let mut tensors = crate::tensor_io::load_tensors(&dir.join(TENSOR_FILE))?;
        let (f, k, r) = (meta.n_features, meta.top_k, meta.samples_per_bin);
        let mut take = |name: &str, shape: &[i64], kind: Kind| -> Result<Tensor> {
            let at = tensors.iter().position(|(n, _)| n == name);
            let t = at.map(|i| tensors.swap_remove(i).1.inner().shallow_clone());
            match t {
                Some(t) if t.size() == shape && t.kind() == kind => Ok(t),
                _ => Err(Error::invalid(format!(
                    "{}: tensor '{name}' is missing or not {kind:?} {shape:?}: the records are damaged",
                    dir.display()
                ))),
            }
        };
        Ok(FeatureRecords {
            top_values: take("top_values", &[f, k], Kind::Float)?,
            top_rows: take("top_rows", &[f, k], Kind::Int64)?,
            counts: take("counts", &[f], Kind::Int64)?,
            histogram: take("histogram", &[f, BINS], Kind::Int64)?,
            sample_rows: take("sample_rows", &[f, BINS, r], Kind::Int64)?,
            sample_values: take("sample_values", &[f, BINS, r], Kind::Float)?,
            meta,
        })
    }
}

/// Pairs rows and values, dropping empty slots (row −1).
fn examples(rows: &[i64], values: &[f32]) -> Vec<Example> {
    rows.iter()
        .zip(values)
        .filter(|(&row, _)| row >= 0)
        .map(|(&row, &activation)| Example {
            row: row as usize,
            activation,
        })
        .collect()
}

/// Draws up to `n` examples from pools, each draw choosing a pool with
/// probability proportional to its weight among pools not yet empty.
fn draw_weighted(
    mut pools: Vec<Vec<Example>>,
    weights: Vec<i64>,
    n: usize,
    rng: &mut StdRng,
) -> Vec<Example> {
    let mut out = Vec::new();
    while out.len() < n {
        let total: i64 = pools
            .iter()
            .zip(&weights)
            .filter(|(p, _)| !p.is_empty())
            .map(|(_, w)| w)
            .sum();
        if total == 0 {
            break;
        }
        let mut pick = rng.random_range(0..total);
        for (pool, &w) in pools.iter_mut().zip(&weights) {
            if pool.is_empty() {
                continue;
            }
            if pick < w {
                out.push(pool.remove(0));
                break;
            }
            pick -= w;
        }
    }
    out.sort_by(|a, b| b.activation.total_cmp(&a.activation));
    out
}
