//! Harvesting: run the model over corpus windows, stop at the hooked layer,
//! and write the activations to shards.
//!
//! Shards hold whole windows and are written atomically (temporary file,
//! then rename); the manifest moves forward only after a shard is in place.
//! A harvest that stops — Ctrl-C, a crash, a full disk — therefore resumes
//! from the manifest's `windows_done` with nothing lost and nothing twice;
//! Ctrl-C also writes out the rows already computed before stopping.
use super::harvest_options::HarvestOptions;
use super::pipeline::{self, InFlight, Landed, ShardFiles, ShardWriter};
use super::sites::SiteInfo;
use super::store::{scale_for, Manifest, ShardInfo, Store, FORMAT};
use crate::corpus::{Corpus, Window};
use crate::model::{Hooks, Model};
use crate::{interrupt, progress, Error, Result};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Position 0 of a window sees no context and carries a huge "attention
/// sink" activation (norm ~100× the rest in SmolLM2's middle layers), and
/// separators are not text: neither gets a row, as SAELens excludes BOS.
pub const EXCLUDED: &str = "position 0 of every window, and document separators";

/// Harvests `options.tokens` rows into `options.out`, resuming a harvest
/// already there, and opens the result.
pub fn harvest(model: &Model, corpus: &Corpus, options: &HarvestOptions) -> Result<Store> {
    if options.sites.is_empty() {
        return Err(Error::invalid("harvest: no site to record"));
    }
    for site in &options.sites {
        site.check(model.n_layers())?;
    }
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
    crate::fs::remove_staging_files(out)?;
    if manifest.rows < options.tokens {
        manifest.complete = false;
        run(model, corpus, options, &mut manifest)?;
    }
    manifest.complete = true;
    manifest.write(out)?;
    Store::open(out)
}

fn fresh_manifest(model: &Model, corpus: &Corpus, options: &HarvestOptions) -> Manifest {
    let model_size = std::fs::metadata(&model.path).map(|m| m.len()).unwrap_or(0);
    let sites: Vec<SiteInfo> = options
        .sites
        .iter()
        .map(|&site| SiteInfo::empty(site, model.site_width(site)))
        .collect();
    let first = options.sites[0];
    Manifest {
        format: FORMAT,
        model: format!("{} ({model_size} bytes)", model.name),
        layer: first.layer,
        hook: first.point.name().to_string(),
        dim: sites.iter().map(|s| s.dim).sum(),
        // One site is described by the top-level fields, as stores always were.
        sites: if sites.len() > 1 { sites } else { Vec::new() },
        dtype: options.dtype.name().to_string(),
        precision: model.precision().name().to_string(),
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
        windows_done: options.first_window,
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
        (
            "sites",
            super::sites::names(&existing.sites()),
            super::sites::names(&fresh.sites()),
        ),
        ("dtype", existing.dtype.clone(), fresh.dtype.clone()),
        (
            "precision",
            existing.precision.clone(),
            fresh.precision.clone(),
        ),
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
    /// Sum of squared norms of each site's part of the rows.
    site_sums: Vec<f64>,
    /// Rows left out for their norm (`max_norm_ratio`).
    dropped: usize,
    /// The harvest's sums from its first row through this buffer's last, one
    /// row and site after another: the store's totals do not depend on
    /// where shards (or a split harvest's tasks) begin.
    running_sum: f64,
    running_site_sums: Vec<f64>,
    /// Each row's squared norm per site, in row order.
    norms: Vec<f32>,
}

impl ShardBuffer {
    /// An empty buffer continuing the totals of `manifest`.
    fn new(first_window: usize, n_sites: usize, manifest: &Manifest) -> Self {
        let running_site_sums = if manifest.sites.len() == n_sites {
            manifest.sites.iter().map(|s| s.sum_squared_norm).collect()
        } else {
            vec![0.0; n_sites]
        };
        ShardBuffer {
            running_sum: manifest.sum_squared_norm,
            running_site_sums,
            norms: Vec::new(),
            site_sums: vec![0.0; n_sites],
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

    /// One row: its bytes in the stored dtype and each site's squared norm.
    fn push(&mut self, row: &[u8], site_squared_norms: &[f32], meta: [i64; 5]) {
        let sums = self.site_sums.iter_mut().zip(&mut self.running_site_sums);
        for ((sum, running), squared) in sums.zip(site_squared_norms) {
            *sum += *squared as f64;
            *running += *squared as f64;
            self.sum_squared_norm += *squared as f64;
            self.running_sum += *squared as f64;
        }
        self.norms.extend_from_slice(site_squared_norms);
        self.data.extend_from_slice(row);
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
    let hooks = Hooks::reading(&options.sites);
    let bar = progress::bar(options.tokens as u64, "tokens");
    let names: Vec<String> = options.sites.iter().map(|s| s.to_string()).collect();
    bar.set_message(format!("harvesting {}", names.join(", ")));
    bar.set_position(manifest.rows as u64);
    std::thread::scope(|scope| {
        let windows = pipeline::tokenize_ahead(
            scope,
            corpus,
            &model.tokenizer,
            options.context,
            (manifest.windows_done, options.end_window),
            4 * options.batch_size,
        );
        let writer = ShardWriter::spawn(scope, &options.out);
        let mut timings = Timings::default();
        let result = run_batches(
            model,
            &hooks,
            &windows,
            options,
            manifest,
            &writer,
            &bar,
            &mut timings,
        );
        // Stops the tokeniser thread, then waits for the last writes.
        drop(windows);
        let finishing = Instant::now();
        let written = writer.finish();
        timings.last_write += finishing.elapsed();
        timings.report();
        match result {
            Ok(()) => written,
            // An error of the writer explains a failed send better than the send.
            Err(err) => Err(written.err().unwrap_or(err)),
        }
    })
}

/// Where a harvest's time went, printed to stderr when the environment
/// variable SAELAB_PROFILE contains "harvest" (for benchmarks).
#[derive(Default)]
struct Timings {
    /// Waiting for the tokeniser thread's windows.
    windows: Duration,
    /// Queueing the model (on a CPU: running it).
    launch: Duration,
    /// Waiting for the device to finish a batch and its copies.
    device: Duration,
    /// Sorting rows into the shard buffer on the host.
    rows: Duration,
    /// Handing shards to the writer (waiting when it is behind).
    flush: Duration,
    /// Waiting for the writer at the end.
    last_write: Duration,
    batches: usize,
}

impl Timings {
    fn report(&self) {
        if !std::env::var("SAELAB_PROFILE").is_ok_and(|v| v.contains("harvest")) {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "harvest timings over {} batches (ms): windows {:.1}, launch {:.1}, device wait {:.1}, rows {:.1}, flush {:.1}, last write {:.1}",
            self.batches,
            ms(self.windows),
            ms(self.launch),
            ms(self.device),
            ms(self.rows),
            ms(self.flush),
            ms(self.last_write)
        );
    }
}

/// Adds the time `f` takes to `total`.
fn timed<T>(total: &mut Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    *total += start.elapsed();
    value
}

/// Runs batch after batch, keeping one in flight on the device while the
/// previous one's rows are sorted into shards.
#[allow(clippy::too_many_arguments)]
fn run_batches(
    model: &Model,
    hooks: &Hooks,
    windows: &Receiver<Result<Window>>,
    options: &HarvestOptions,
    manifest: &mut Manifest,
    writer: &ShardWriter,
    bar: &indicatif::ProgressBar,
    timings: &mut Timings,
) -> Result<()> {
    let mut shard = ShardBuffer::new(manifest.windows_done, options.sites.len(), manifest);
    let mut in_flight: Option<InFlight> = None;
    loop {
        if let Err(stop) = interrupt::check() {
            // The batch in flight is dropped: none of its windows was counted.
            flush(&mut shard, manifest, options, writer)?;
            bar.abandon();
            return Err(stop);
        }
        if let Some(current) = &in_flight {
            timed(&mut timings.device, || current.wait());
        }
        // Rows still wanted beyond what the batch in flight can give at most.
        let remaining = options.tokens - (manifest.rows + shard.rows);
        let in_flight_rows = in_flight
            .as_ref()
            .map_or(0, |f| f.windows.len() * options.context.saturating_sub(1));
        let next = if remaining > in_flight_rows {
            let wanted = windows_for(remaining - in_flight_rows, options);
            let batch = timed(&mut timings.windows, || {
                pipeline::take_windows(windows, wanted)
            })?;
            if batch.is_empty() {
                None // the corpus ran out
            } else {
                timings.batches += 1;
                Some(timed(&mut timings.launch, || {
                    pipeline::launch(model, hooks, batch, options.dtype)
                })?)
            }
        } else {
            None
        };
        let Some(current) = std::mem::replace(&mut in_flight, next) else {
            if in_flight.is_none() {
                break; // nothing queued and nothing to queue
            }
            continue;
        };
        timed(&mut timings.rows, || -> Result<()> {
            keep_rows(&current.land()?, &mut shard, manifest, options);
            Ok(())
        })?;
        bar.set_position((manifest.rows + shard.rows) as u64);
        let done = manifest.rows + shard.rows >= options.tokens;
        if done || shard.rows >= options.shard_rows {
            timed(&mut timings.flush, || {
                flush(&mut shard, manifest, options, writer)
            })?;
        }
        if done {
            break;
        }
    }
    flush(&mut shard, manifest, options, writer)?;
    bar.finish();
    Ok(())
}

/// Sorts a batch's rows into the shard buffer, in window order, until the
/// target: position 0, separators and (with `max_norm_ratio`) attention
/// sinks are left out.
fn keep_rows(
    batch: &Landed,
    shard: &mut ShardBuffer,
    manifest: &Manifest,
    options: &HarvestOptions,
) {
    let (t, n_sites) = (batch.positions, batch.n_sites);
    // Each position's squared norms, one per site.
    let site_norms = |b: usize, j: usize| &batch.squared_norms[(b * t + j) * n_sites..][..n_sites];
    for (b, window) in batch.windows.iter().enumerate() {
        let norms: Vec<f32> = (0..t)
            .map(|j| site_norms(b, j).iter().sum::<f32>().sqrt())
            .collect();
        let norm_limit = options
            .max_norm_ratio
            .and_then(|ratio| norm_limit(&norms, window, ratio));
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
            if norm_limit.is_some_and(|limit| norms[j] > limit) {
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
            let row = &batch.bytes[(b * t + j) * batch.row_bytes..][..batch.row_bytes];
            shard.push(row, site_norms(b, j), meta);
            taken += 1;
        }
        if shard.partial.is_some() {
            break;
        }
    }
}

/// `ratio` × the median norm of the rows a window could keep (not position
/// 0, not separators); `None` when it has none. Per window, so a resumed or
/// extended harvest, batched differently, leaves out the same rows.
fn norm_limit(norms: &[f32], window: &Window, ratio: f64) -> Option<f32> {
    let mut kept: Vec<f32> = window
        .origins
        .iter()
        .enumerate()
        .filter(|(j, origin)| *j > 0 && !origin.separator)
        .map(|(j, _)| norms[j])
        .collect();
    if kept.is_empty() {
        return None;
    }
    let middle = kept.len() / 2;
    let (_, median, _) = kept.select_nth_unstable_by(middle, f32::total_cmp);
    Some(*median * ratio as f32)
}

/// Windows for the next forward pass: a full batch, or fewer near the
/// target, so the last pass does not run windows whose rows would be thrown
/// away. A window gives at most `context - 1` rows, so this never stops short:
/// too few rows only means one more pass.
pub(super) fn windows_for(remaining_rows: usize, options: &HarvestOptions) -> usize {
    remaining_rows
        .div_ceil(options.context.saturating_sub(1).max(1))
        .clamp(1, options.batch_size)
}

/// Turns the buffer into a shard, moves the manifest forward, and queues
/// both for the writer (the shard's three files, each atomic, then the manifest).
fn flush(
    shard: &mut ShardBuffer,
    manifest: &mut Manifest,
    options: &HarvestOptions,
    writer: &ShardWriter,
) -> Result<()> {
    if shard.windows.is_empty() {
        return Ok(());
    }
    let n_sites = options.sites.len();
    let buffer = std::mem::replace(shard, ShardBuffer::new(0, n_sites, manifest));
    let files = (buffer.rows > 0).then(|| {
        let name = format!("shard-{:05}", manifest.shards.len());
        manifest.shards.push(ShardInfo {
            name: name.clone(),
            rows: buffer.rows,
            first_window: buffer.first_window,
            windows: buffer.windows.len(),
            sum_squared_norm: buffer.sum_squared_norm,
            site_sum_squared_norms: if n_sites > 1 {
                buffer.site_sums.clone()
            } else {
                Vec::new()
            },
        });
        manifest.rows += buffer.rows;
        manifest.sum_squared_norm = buffer.running_sum;
        manifest.scale = scale_for(manifest.dim, manifest.rows, manifest.sum_squared_norm);
        let rows = manifest.rows;
        for (site, sum) in manifest.sites.iter_mut().zip(&buffer.running_site_sums) {
            site.set(rows, *sum);
        }
        let mut window_ids = Vec::with_capacity(buffer.windows.len() * options.context * 8);
        for window in &buffer.windows {
            let padded = window
                .iter()
                .map(|&id| id as i64)
                .chain(std::iter::repeat(-1))
                .take(options.context);
            window_ids.extend(padded.flat_map(|v| v.to_le_bytes()));
        }
        ShardFiles {
            name,
            dtype: options.dtype,
            rows: buffer.rows,
            dim: manifest.dim,
            data: buffer.data,
            meta: buffer.meta.iter().flat_map(|v| v.to_le_bytes()).collect(),
            windows: window_ids,
            n_windows: buffer.windows.len(),
            context: options.context,
            norms: options.row_norms.then(|| {
                let bytes = buffer.norms.iter().flat_map(|v| v.to_le_bytes()).collect();
                (n_sites, bytes)
            }),
        }
    });
    manifest.windows_done =
        buffer.first_window + buffer.windows.len() - buffer.partial.is_some() as usize;
    manifest.partial_rows = buffer.partial.unwrap_or(0);
    manifest.dropped_rows += buffer.dropped;
    *shard = ShardBuffer::new(manifest.windows_done, n_sites, manifest);
    writer.send(files, manifest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activations::Dtype;
    use crate::model::Site;

    #[test]
    fn the_last_pass_runs_only_the_windows_it_needs() {
        let options = HarvestOptions::new(Site::resid_pre(15), 2048, "unused");
        assert_eq!(windows_for(2048, &options), 8);
        assert_eq!(windows_for(127 * 2, &options), 2);
        assert_eq!(windows_for(127 * 2 + 1, &options), 3);
        assert_eq!(windows_for(1, &options), 1);
    }

    #[test]
    fn resuming_removes_every_staging_file_the_writers_can_leave() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format": FORMAT, "model": "m", "layer": 0, "hook": "resid_pre", "dim": 2,
            "dtype": "f32", "context": 4, "corpus": "c", "excluded": EXCLUDED,
            "tokens_target": 1, "windows_done": 0, "rows": 0, "sum_squared_norm": 0.0,
            "scale": 1.0, "complete": false, "shards": []
        }))
        .unwrap();
        // A folder in the way of each finished name makes the rename fail
        // after the staging file is written, as a kill between the two would.
        let names = [
            "shard-00000.npy",
            "shard-00000.rows.npy",
            "shard-00000.windows.npy",
            super::super::store::MANIFEST,
        ];
        for name in names {
            std::fs::create_dir_all(out.join(name).join("blocker")).unwrap();
        }
        for name in &names[..3] {
            assert!(super::super::npy::write(&out.join(name), Dtype::F32, &[1], &[0; 4]).is_err());
        }
        assert!(manifest.write(out).is_err());
        // The staging name stores used before, left by an older saelab.
        std::fs::write(out.join("shard-00001.npy.tmp"), b"half a shard").unwrap();
        for name in names {
            std::fs::remove_dir_all(out.join(name)).unwrap();
        }
        std::fs::write(out.join("shard-00000.npy"), b"finished").unwrap();
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 6);
        crate::fs::remove_staging_files(out).unwrap();
        let left: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["shard-00000.npy"]);
    }
}
