//! The harvest's pipeline, so that the device never waits for the host:
//!
//! * windows are tokenised ahead of the model on a thread of their own;
//! * each batch's activations are converted to the stored dtype and their
//!   squared norms taken on the device, then copied to the host without
//!   blocking (into pinned memory on CUDA);
//! * the host waits for a batch's copies only when the next batch is about to
//!   be queued, and sorts its rows while the device runs that next batch;
//! * shards are written by a writer thread, each shard's files before the
//!   manifest that lists them, so a resumed harvest still sees either the
//!   whole shard or none of it.
use super::npy::Dtype;
use super::store::Manifest;
use crate::corpus::{Corpus, Window};
use crate::model::{Hooks, Logits, Model, Tokenizer};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};
use tch::{Device, Kind};

/// Corpus windows from `skip` on (and before `end`), tokenised on another
/// thread and handed over through a channel of `ahead` windows. Dropping
/// the receiver stops the thread at its next window.
pub fn tokenize_ahead<'scope>(
    scope: &'scope Scope<'scope, '_>,
    corpus: &'scope Corpus,
    tokenizer: &'scope Tokenizer,
    context: usize,
    (skip, end): (usize, Option<usize>),
    ahead: usize,
) -> Receiver<Result<Window>> {
    let (sender, receiver) = sync_channel(ahead.max(1));
    scope.spawn(move || {
        let windows = match corpus.windows(tokenizer, context) {
            Ok(windows) => windows,
            Err(err) => {
                let _ = sender.send(Err(err));
                return;
            }
        };
        let count = end.map_or(usize::MAX, |end| end.saturating_sub(skip));
        for window in windows.skip(skip).take(count) {
            let failed = window.is_err();
            if sender.send(window).is_err() || failed {
                return;
            }
        }
    });
    receiver
}

/// Up to `n` windows from the tokeniser thread; fewer when the corpus ends.
pub fn take_windows(windows: &Receiver<Result<Window>>, n: usize) -> Result<Vec<Window>> {
    windows.iter().take(n).collect()
}

/// One batch's activations on their way to the host.
pub struct InFlight {
    pub windows: Vec<Window>,
    values: tch::Tensor,
    squared_norms: tch::Tensor,
    device: Device,
}

/// A batch on the host: each row's stored bytes, and its squared L2 norm.
pub struct Landed {
    pub windows: Vec<Window>,
    /// [batch, t, width] in the stored dtype, as little-endian bytes.
    pub bytes: Vec<u8>,
    /// [batch, t, sites], in f32 from the f32 activations: each site's
    /// squared norm at each position.
    pub squared_norms: Vec<f32>,
    /// Sites side by side in each row.
    pub n_sites: usize,
    /// Positions per window in this batch (the longest window).
    pub positions: usize,
    pub row_bytes: usize,
}

/// Queues the model on `windows` and the copies of what a harvest keeps;
/// on CUDA this returns before the device has finished.
pub fn launch(
    model: &Model,
    hooks: &Hooks,
    windows: Vec<Window>,
    dtype: Dtype,
) -> Result<InFlight> {
    let sequences: Vec<Vec<u32>> = windows.iter().map(|w| w.tokens.clone()).collect();
    let sites = model.run(&sequences, hooks, Logits::Skip)?.activations;
    if sites.is_empty() {
        return Err(Error::invalid("the model returned no activations"));
    }
    let device = sites[0].device();
    let stored_kind = match dtype {
        Dtype::F16 => Kind::Half,
        _ => Kind::Float,
    };
    let squared_norms = sites
        .iter()
        .map(|site| {
            Ok(site.f_to_kind(Kind::Float)?.f_square()?.f_sum_dim_intlist(
                [-1i64].as_slice(),
                true,
                Kind::Float,
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    let squared_norms = tch::Tensor::f_cat(&squared_norms, -1)?;
    // Several sites sit side by side in one row, in the order they were asked for.
    let activations = if sites.len() == 1 {
        sites[0].shallow_clone()
    } else {
        tch::Tensor::f_cat(&sites, -1)?
    };
    let values = activations.f_to_kind(stored_kind)?.f_contiguous()?;
    // Device-to-host copies that do not block go to pinned memory.
    let non_blocking = device.is_cuda();
    Ok(InFlight {
        windows,
        values: values.f_to_device_(Device::Cpu, stored_kind, non_blocking, false)?,
        squared_norms: squared_norms.f_to_device_(Device::Cpu, Kind::Float, non_blocking, false)?,
        device,
    })
}

impl InFlight {
    /// Waits until the copies have arrived. Call it before queueing the next
    /// batch: a device-wide wait would otherwise wait for that one too.
    pub fn wait(&self) {
        if let Device::Cuda(index) = self.device {
            tch::Cuda::synchronize(index as i64);
        }
    }

    /// The copied values as host memory (after `wait`).
    pub fn land(self) -> Result<Landed> {
        let shape = self.values.size();
        let [_, positions, width] = shape[..] else {
            return Err(Error::invalid(format!(
                "activations of shape {shape:?}, expected [batch, positions, width]"
            )));
        };
        let numel = self.values.numel();
        let element_bytes = self.values.f_kind()?.elt_size_in_bytes();
        let mut bytes = vec![0u8; numel * element_bytes];
        self.values.f_copy_data_u8(&mut bytes, numel)?;
        let n_sites = self.squared_norms.size().last().copied().unwrap_or(1) as usize;
        Ok(Landed {
            n_sites,
            windows: self.windows,
            bytes,
            squared_norms: Vec::<f32>::try_from(self.squared_norms.f_reshape([-1])?)?,
            positions: positions as usize,
            row_bytes: width as usize * element_bytes,
        })
    }
}

/// A shard's three files, ready to be written.
pub struct ShardFiles {
    pub name: String,
    pub dtype: Dtype,
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<u8>,
    pub meta: Vec<u8>,
    pub windows: Vec<u8>,
    pub n_windows: usize,
    pub context: usize,
    /// Each row's squared norm per site (f32 bytes), when the harvest keeps them.
    pub norms: Option<(usize, Vec<u8>)>,
}

/// What the writer does for one flush: the shard's files (when it has
/// rows), then the manifest that lists them.
struct WriteJob {
    files: Option<ShardFiles>,
    manifest: Manifest,
}

/// The thread that writes shards and manifests, in the order they were sent.
pub struct ShardWriter<'scope> {
    jobs: SyncSender<WriteJob>,
    thread: ScopedJoinHandle<'scope, Result<()>>,
}

impl<'scope> ShardWriter<'scope> {
    /// At most one shard waits while another is written, which bounds the
    /// memory held to about two shards.
    pub fn spawn(scope: &'scope Scope<'scope, '_>, out: &'scope Path) -> Self {
        let (jobs, queue) = sync_channel::<WriteJob>(1);
        let thread = scope.spawn(move || {
            for job in queue {
                if let Some(files) = &job.files {
                    write_shard(out, files)?;
                }
                job.manifest.write(out)?;
            }
            Ok(())
        });
        ShardWriter { jobs, thread }
    }

    /// Queues a shard (or none) and the manifest to write after it.
    pub fn send(&self, files: Option<ShardFiles>, manifest: Manifest) -> Result<()> {
        if self.jobs.send(WriteJob { files, manifest }).is_err() {
            // The writer stopped on an error; `finish` returns it.
            return Err(Error::invalid("the shard writer stopped"));
        }
        Ok(())
    }

    /// Waits for every queued write; the first error, if any.
    pub fn finish(self) -> Result<()> {
        drop(self.jobs);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(Error::invalid("the shard writer panicked")))
    }
}

fn write_shard(out: &Path, files: &ShardFiles) -> Result<()> {
    let path = |suffix: &str| -> PathBuf { out.join(format!("{}{suffix}", files.name)) };
    super::npy::write(
        &path(".npy"),
        files.dtype,
        &[files.rows, files.dim],
        &files.data,
    )?;
    super::npy::write(
        &path(".rows.npy"),
        Dtype::I64,
        &[files.rows, 5],
        &files.meta,
    )?;
    if let Some((sites, norms)) = &files.norms {
        super::npy::write(
            &path(NORMS_SUFFIX),
            Dtype::F32,
            &[files.rows, *sites],
            norms,
        )?;
    }
    super::npy::write(
        &path(".windows.npy"),
        Dtype::I64,
        &[files.n_windows, files.context],
        &files.windows,
    )
}

/// The suffix of a shard's row norms (a split harvest's tasks write them).
pub const NORMS_SUFFIX: &str = ".norms.npy";
