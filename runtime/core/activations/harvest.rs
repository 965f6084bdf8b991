//! Harvesting: run the model over corpus windows, stop at the hooked layer,
//! and write the activations to shards.
//!
//! Shards hold whole windows and are written atomically (temporary file,
//! then rename); the manifest moves forward only after a shard is in place.
//! A harvest that stops — Ctrl-C, a crash, a full disk — therefore resumes
//! from the manifest's `windows_done` with nothing lost and nothing twice;
//! Ctrl-C also writes out the rows already computed before stopping.
use super::npy::{self, Dtype};
use super::store::{scale_for, Manifest, ShardInfo, Store, FORMAT};
use crate::core::corpus::{Corpus, Window};
use crate::core::model::{HookPoint, Hooks, Logits, Model, Site};
use crate::core::{interrupt, progress, Error, Result};
use half::f16;
use std::path::{Path, PathBuf};

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
}

/// Position 0 of a window sees no context and carries a huge "attention
/// sink" activation (norm ~100× the rest in SmolLM2's middle layers), and
/// separators are not text: neither gets a row, as SAELens excludes BOS.
pub const EXCLUDED: &str = "position 0 of every window, and document separators";

/// Harvests `options.tokens` rows into `options.out`, resuming a harvest
/// already there, and opens the result.
pub fn harvest(model: &Model, corpus: &Corpus, options: &HarvestOptions) -> Result<Store> {
    let site = options.site;
    site.check(model.n_layers())?;
    if options.tokens == 0 || options.batch_size == 0 || options.shard_rows == 0 {
        return Err(Error::invalid(
            "tokens, batch_size and shard_rows must be at least 1",
        ));
    }
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let fresh = fresh_manifest(model, corpus, options);
    let mut manifest = match Manifest::read(out)? {
        Some(existing) => resume(existing, &fresh, out)?,
        None => fresh,
    };
    remove_staging_files(out)?;
    if manifest.rows < options.tokens {
        manifest.complete = false;
        run(model, corpus, options, &mut manifest)?;
    }
    manifest.complete = true;
    manifest.write(out)?;
    Store::open(out)
}

fn fresh_manifest(model: &Model, corpus: &Corpus, options: &HarvestOptions) -> Manifest {
    let cfg = &model.llama.config;
    let model_size = std::fs::metadata(&model.path).map(|m| m.len()).unwrap_or(0);
    Manifest {
        format: FORMAT,
        model: format!("{} ({model_size} bytes)", model.name),
        layer: options.site.layer,
        hook: options.site.point.name().to_string(),
        dim: match options.site.point {
            HookPoint::Mlp => cfg.d_mlp,
            HookPoint::ResidPre | HookPoint::ResidPost => cfg.d_model,
        },
        dtype: options.dtype.name().to_string(),
        context: options.context,
        corpus: corpus.fingerprint(),
        excluded: match options.max_norm_ratio {
            Some(ratio) => format!(
                "{EXCLUDED}, and rows over {ratio}× their window's median norm (attention sinks)"
            ),
            None => EXCLUDED.to_string(),
        },
        max_norm_ratio: options.max_norm_ratio,
        dropped_rows: 0,
        tokens_target: options.tokens,
        windows_done: 0,
        partial_rows: 0,
        rows: 0,
        sum_squared_norm: 0.0,
        scale: 1.0,
        complete: false,
        shards: Vec::new(),
    }
}

/// Continues a harvest only if it is the same one; asking for more tokens is fine.
fn resume(existing: Manifest, fresh: &Manifest, out: &Path) -> Result<Manifest> {
    let fields = [
        ("model", existing.model.clone(), fresh.model.clone()),
        ("layer", existing.layer.to_string(), fresh.layer.to_string()),
        ("hook", existing.hook.clone(), fresh.hook.clone()),
        ("dtype", existing.dtype.clone(), fresh.dtype.clone()),
        (
            "context",
            existing.context.to_string(),
            fresh.context.to_string(),
        ),
        ("corpus", existing.corpus.clone(), fresh.corpus.clone()),
        (
            "max_norm_ratio",
            format!("{:?}", existing.max_norm_ratio),
            format!("{:?}", fresh.max_norm_ratio),
        ),
    ];
    if let Some((what, was, now)) = fields.iter().find(|(_, was, now)| was != now) {
        return Err(Error::invalid(format!(
            "{} already holds a harvest with {what} {was}, not {now}: resume it with the same settings or choose another folder",
            out.display()
        )));
    }
    Ok(Manifest {
        tokens_target: fresh.tokens_target,
        ..existing
    })
}

/// Half-written files of an interrupted harvest: never listed in the manifest.
fn remove_staging_files(out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(out)
        .map_err(|e| Error::io(out, e))?
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Rows waiting to become a shard.
struct ShardBuffer {
    first_window: usize,
    /// Rows taken from the last window when the target stopped it part way.
    partial: Option<usize>,
    windows: Vec<Vec<u32>>,
    data: Vec<u8>,
    meta: Vec<i64>,
    rows: usize,
    sum_squared_norm: f64,
    /// Rows left out for their norm (`max_norm_ratio`).
    dropped: usize,
}

impl ShardBuffer {
    fn new(first_window: usize) -> Self {
        ShardBuffer {
            first_window,
            partial: None,
            windows: Vec::new(),
            data: Vec::new(),
            meta: Vec::new(),
            rows: 0,
            sum_squared_norm: 0.0,
            dropped: 0,
        }
    }

    fn push(&mut self, row: &[f32], dtype: Dtype, meta: [i64; 5]) {
        self.sum_squared_norm += row.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
        match dtype {
            Dtype::F16 => self
                .data
                .extend(row.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes())),
            _ => self.data.extend(row.iter().flat_map(|&v| v.to_le_bytes())),
        }
        self.meta.extend(meta);
        self.rows += 1;
    }
}

fn run(
    model: &Model,
    corpus: &Corpus,
    options: &HarvestOptions,
    manifest: &mut Manifest,
) -> Result<()> {
    let mut windows = corpus
        .windows(&model.tokenizer, options.context)?
        .skip(manifest.windows_done);
    let hooks = Hooks::reading(&[options.site]);
    let bar = progress::bar(options.tokens as u64, "tokens");
    bar.set_message(format!("harvesting {}", options.site));
    bar.set_position(manifest.rows as u64);
    let mut shard = ShardBuffer::new(manifest.windows_done);
    loop {
        if let Err(stop) = interrupt::check() {
            flush(&mut shard, manifest, options)?;
            bar.abandon();
            return Err(stop);
        }
        let remaining = options.tokens - (manifest.rows + shard.rows);
        let batch = windows
            .by_ref()
            .take(windows_for(remaining, options))
            .collect::<Result<Vec<Window>>>()?;
        if batch.is_empty() {
            break; // the corpus ran out before the target
        }
        let sequences: Vec<Vec<u32>> = batch.iter().map(|w| w.tokens.clone()).collect();
        let out = model.run(&sequences, &hooks, Logits::Skip)?;
        let activations = out
            .activations
            .first()
            .ok_or_else(|| Error::invalid("the model returned no activations"))?;
        let t = activations.size()[1] as usize;
        let values = Vec::<f32>::try_from(
            activations
                .f_to(tch::Device::Cpu)?
                .f_to_kind(tch::Kind::Float)?
                .f_contiguous()?
                .f_reshape([-1])?,
        )?;
        let width = manifest.dim;
        for (b, window) in batch.iter().enumerate() {
            let window_values = &values[b * t * width..(b + 1) * t * width];
            let norm_limit = options
                .max_norm_ratio
                .and_then(|ratio| norm_limit(window_values, window, width, ratio));
            let window_index = shard.first_window + shard.windows.len();
            shard.windows.push(window.tokens.clone());
            // A window the previous run stopped inside: its first rows are in shards already.
            let mut skip = if window_index == manifest.windows_done {
                manifest.partial_rows
            } else {
                0
            };
            let mut taken = 0;
            for (j, origin) in window.origins.iter().enumerate() {
                if j == 0 || origin.separator {
                    continue;
                }
                if skip > 0 {
                    skip -= 1;
                    taken += 1;
                    continue;
                }
                if manifest.rows + shard.rows >= options.tokens {
                    shard.partial = Some(taken);
                    break;
                }
                let row = &window_values[j * width..][..width];
                if norm_limit.is_some_and(|limit| l2_norm(row) > limit) {
                    shard.dropped += 1;
                    taken += 1;
                    continue;
                }
                let meta = [
                    window.tokens[j] as i64,
                    origin.document as i64,
                    origin.position as i64,
                    window_index as i64,
                    j as i64,
                ];
                shard.push(row, options.dtype, meta);
                taken += 1;
            }
            if shard.partial.is_some() {
                break;
            }
        }
        bar.set_position((manifest.rows + shard.rows) as u64);
        let done = manifest.rows + shard.rows >= options.tokens;
        if done || shard.rows >= options.shard_rows {
            flush(&mut shard, manifest, options)?;
        }
        if done {
            break;
        }
    }
    flush(&mut shard, manifest, options)?;
    bar.finish();
    Ok(())
}

fn l2_norm(row: &[f32]) -> f32 {
    row.iter().map(|v| v * v).sum::<f32>().sqrt()
}

/// `ratio` × the median norm of the rows a window could keep (not position
/// 0, not separators); `None` when it has none. Per window, so a resumed or
/// extended harvest, batched differently, leaves out the same rows.
fn norm_limit(window_values: &[f32], window: &Window, width: usize, ratio: f64) -> Option<f32> {
    let mut norms: Vec<f32> = window
        .origins
        .iter()
        .enumerate()
        .filter(|(j, origin)| *j > 0 && !origin.separator)
        .map(|(j, _)| l2_norm(&window_values[j * width..][..width]))
        .collect();
    if norms.is_empty() {
        return None;
    }
    let middle = norms.len() / 2;
    let (_, median, _) = norms.select_nth_unstable_by(middle, f32::total_cmp);
    Some(*median * ratio as f32)
}

/// Windows for the next forward pass: a full batch, or fewer near the
/// target, so the last pass does not run windows whose rows would be thrown
/// away. A window gives at most `context - 1` rows, so this never stops short:
/// too few rows only means one more pass.
fn windows_for(remaining_rows: usize, options: &HarvestOptions) -> usize {
    remaining_rows
        .div_ceil(options.context.saturating_sub(1).max(1))
        .clamp(1, options.batch_size)
}

/// Writes the buffer as a shard (three files, each atomic), then the manifest.
fn flush(shard: &mut ShardBuffer, manifest: &mut Manifest, options: &HarvestOptions) -> Result<()> {
    if shard.windows.is_empty() {
        return Ok(());
    }
    let out = &options.out;
    if shard.rows > 0 {
        let name = format!("shard-{:05}", manifest.shards.len());
        npy::write(
            &out.join(format!("{name}.npy")),
            options.dtype,
            &[shard.rows, manifest.dim],
            &shard.data,
        )?;
        let meta: Vec<u8> = shard.meta.iter().flat_map(|v| v.to_le_bytes()).collect();
        npy::write(
            &out.join(format!("{name}.rows.npy")),
            Dtype::I64,
            &[shard.rows, 5],
            &meta,
        )?;
        let mut window_ids = Vec::with_capacity(shard.windows.len() * options.context * 8);
        for window in &shard.windows {
            let padded = window
                .iter()
                .map(|&id| id as i64)
                .chain(std::iter::repeat(-1))
                .take(options.context);
            window_ids.extend(padded.flat_map(|v| v.to_le_bytes()));
        }
        npy::write(
            &out.join(format!("{name}.windows.npy")),
            Dtype::I64,
            &[shard.windows.len(), options.context],
            &window_ids,
        )?;
        manifest.shards.push(ShardInfo {
            name,
            rows: shard.rows,
            first_window: shard.first_window,
            windows: shard.windows.len(),
            sum_squared_norm: shard.sum_squared_norm,
        });
        manifest.rows += shard.rows;
        manifest.sum_squared_norm += shard.sum_squared_norm;
        manifest.scale = scale_for(manifest.dim, manifest.rows, manifest.sum_squared_norm);
    }
    manifest.windows_done =
        shard.first_window + shard.windows.len() - shard.partial.is_some() as usize;
    manifest.partial_rows = shard.partial.unwrap_or(0);
    manifest.dropped_rows += shard.dropped;
    manifest.write(out)?;
    *shard = ShardBuffer::new(manifest.windows_done);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_pass_runs_only_the_windows_it_needs() {
        let options = HarvestOptions::new(Site::resid_pre(15), 2048, "unused");
        assert_eq!(windows_for(2048, &options), 8);
        assert_eq!(windows_for(127 * 2, &options), 2);
        assert_eq!(windows_for(127 * 2 + 1, &options), 3);
        assert_eq!(windows_for(1, &options), 1);
    }
}
