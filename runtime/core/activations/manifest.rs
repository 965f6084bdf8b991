//! A store's manifest: what a harvest wrote (model, site, corpus, shards,
//! the activations' scale), written atomically after each shard so a
//! harvest resumes from it.
use super::sites::{self, SiteInfo};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT: u32 = 1;

/// What a harvest wrote: enough to check a resumed harvest continues the
/// same one, and to know what the activations are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of the store.
    pub format: u32,
    /// `general.name` of the model and the size of its file.
    pub model: String,
    pub layer: usize,
    /// "resid_pre", "resid_post" or "mlp".
    pub hook: String,
    /// Width of one activation row.
    pub dim: usize,
    /// "f16" or "f32".
    pub dtype: String,
    /// The precision the model computed in ("f32" or "bf16"); a store holds
    /// one, so extending it in another is refused. Stores from before the
    /// option are f32.
    #[serde(default = "f32_name")]
    pub precision: String,
    /// Tokens per window the model saw.
    pub context: usize,
    /// The corpus fingerprint (files and sizes).
    pub corpus: String,
    /// Which positions have no row: they are not activations of text.
    pub excluded: String,
    /// Rows asked for.
    pub tokens_target: usize,
    /// Windows of the corpus whose rows are all in shards (resume point).
    pub windows_done: usize,
    /// Positions of window `windows_done` already taken (kept, or dropped
    /// for their norm) when the target was reached inside it; a larger
    /// target resumes after them.
    #[serde(default)]
    pub partial_rows: usize,
    /// Rows in all shards.
    pub rows: usize,
    /// Sum of squared L2 norms of all rows (f64), from which `scale` comes.
    pub sum_squared_norm: f64,
    /// Multiplier making the mean squared L2 norm of scaled rows equal `dim`
    /// (*Scaling Monosemanticity*, "we normalize activations ...").
    pub scale: f64,
    /// The harvest's `max_norm_ratio`: rows over this multiple of their
    /// window's median norm were left out.
    #[serde(default)]
    pub max_norm_ratio: Option<f64>,
    /// Rows left out for their norm.
    #[serde(default)]
    pub dropped_rows: usize,
    /// The harvest finished (the target was reached or the corpus ran out).
    pub complete: bool,
    pub shards: Vec<ShardInfo>,
    /// A multi-site store's sites, in row order (`layer`, `hook` are then
    /// the first's, `dim` and `scale` the whole row's); empty for a store
    /// of one site, which its top-level fields describe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteInfo>,
}

/// One shard: `{name}.npy` (activations `[rows, dim]`), `{name}.rows.npy`
/// (`[rows, 5]`: token, document, position in document, window, position in
/// window) and `{name}.windows.npy` (`[windows, context]` token ids, -1 padded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub name: String,
    pub rows: usize,
    pub first_window: usize,
    pub windows: usize,
    pub sum_squared_norm: f64,
    /// A multi-site store's sum of squared norms per site, in row order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub site_sum_squared_norms: Vec<f64>,
}

/// s = √(dim / E‖x‖²), the factor making the mean squared L2 norm of scaled
/// rows equal `dim`: what a store records as its `scale`. 1 where there is
/// nothing to scale (no rows, or all zero); rows with NaN or Inf give NaN or
/// 0, which training from the store rejects. The one formula for the factor:
/// [`checked_scale_for`] is this with errors instead of the fallbacks.
pub fn scale_for(dim: usize, rows: usize, sum_squared_norm: f64) -> f64 {
    if rows == 0 || sum_squared_norm <= 0.0 {
        return 1.0;
    }
    (dim as f64 / (sum_squared_norm / rows as f64)).sqrt()
}

/// [`scale_for`] for training, with a clear error for data that cannot be
/// scaled rather than a factor that would train on nonsense.
pub fn checked_scale_for(dim: usize, rows: usize, sum_squared_norm: f64) -> Result<f64> {
    let mean_squared_norm = sum_squared_norm / rows as f64;
    if !mean_squared_norm.is_finite() {
        return Err(Error::invalid(
            "the activations contain NaN or Inf, so they cannot be normalised (E‖x‖² is not finite)",
        ));
    }
    if mean_squared_norm <= 0.0 {
        return Err(Error::invalid(
            "the activations are all zero, so they cannot be normalised",
        ));
    }
    Ok(scale_for(dim, rows, sum_squared_norm))
}

fn f32_name() -> String {
    crate::precision::Precision::F32.name().to_string()
}

impl Manifest {
    /// The model activation the store holds; an error naming the sites for
    /// a multi-site store, which code that reads one site cannot use.
    pub fn site(&self) -> Result<crate::model::Site> {
        if self.sites.len() > 1 {
            return Err(Error::invalid(format!(
                "this store holds {} sites side by side ({}): use it with a transcoder or a crosscoder, or harvest one site",
                self.sites.len(),
                sites::names(&self.sites)
            )));
        }
        Ok(crate::model::Site {
            layer: self.layer,
            point: self.hook.parse()?,
        })
    }

    /// The sites of each row in order: one for an ordinary store.
    pub fn sites(&self) -> Vec<SiteInfo> {
        if !self.sites.is_empty() {
            return self.sites.clone();
        }
        vec![SiteInfo {
            layer: self.layer,
            hook: self.hook.clone(),
            dim: self.dim,
            sum_squared_norm: self.sum_squared_norm,
            scale: self.scale,
        }]
    }

    /// The model's name, without the file size the manifest adds to it.
    pub fn model_name(&self) -> &str {
        match self.model.rfind(" (") {
            Some(end) if self.model.ends_with(" bytes)") => &self.model[..end],
            _ => &self.model,
        }
    }

    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "{} is not a saelab store manifest: {e}",
                path.display()
            ))
        })?;
        if manifest.format != FORMAT {
            return Err(Error::invalid(format!(
                "{} has store format {}, this saelab reads format {FORMAT}",
                path.display(),
                manifest.format
            )));
        }
        // The hooks are read only when the store is used; checked here, a
        // damaged one is an error that names the file.
        for site in manifest.sites() {
            if let Err(e) = site.hook.parse::<crate::model::HookPoint>() {
                return Err(Error::invalid(format!("{}: {e}", path.display())));
            }
        }
        Ok(Some(manifest))
    }

    /// Replaces the manifest atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid(format!("cannot serialise the manifest: {e}")))?;
        crate::fs::write_atomic(&dir.join(MANIFEST), &(text + "\n"))
    }
}
