//! The activation store on disk: a manifest and shards of `.npy` files,
//! read memory-mapped, with shuffled batches drawn through a shuffle buffer.
use super::npy::{Dtype, MappedArray};
use crate::{Error, Result};
use half::f16;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::cell::RefCell;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use super::manifest::{checked_scale_for, scale_for, Manifest, ShardInfo, FORMAT, MANIFEST};

/// Where a row came from, to show the text around an activation.
#[derive(Debug, Clone, PartialEq)]
pub struct RowInfo {
    pub token: u32,
    pub document: usize,
    pub position: usize,
    /// The token ids of the window the model saw.
    pub window: Vec<u32>,
    /// Where the row's token is in `window`.
    pub window_position: usize,
    /// Which window of the harvest: rows of one window share it.
    pub window_index: usize,
}

struct Shard {
    activations: MappedArray,
    rows: Option<MappedArray>,
    windows: Option<MappedArray>,
    /// Index of the shard's first row in the store.
    start: usize,
    first_window: usize,
}

enum Source {
    Shards(Vec<Shard>),
    /// Rows held in memory, f32 on the CPU (`store_from_tensor`, safetensors).
    Memory(tch::Tensor),
}

/// Activations to train on: rows of `dim` values with a scale factor.
pub struct Store {
    source: Source,
    dim: usize,
    len: usize,
    scale: f64,
    manifest: Option<Manifest>,
    path: Option<PathBuf>,
    shuffle: RefCell<Shuffle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.len)
            .field("dim", &self.dim)
            .field("scale", &self.scale)
            .field("path", &self.path)
            .finish()
    }
}

impl Store {
    /// A harvested store (a folder with a manifest), one `.npy` file of
    /// `[rows, dim]`, or a safetensors file holding such a tensor.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Self::open_dir(path);
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "npy" => {
                let activations = MappedArray::open(path)?;
                let shard = Self::checked_shard(path, activations, None, None, 0, 0)?;
                let dim = shard.activations.header.shape[1];
                let len = shard.activations.rows();
                let mut store = Self::assemble(Source::Shards(vec![shard]), dim, len, 1.0, None)?;
                store.scale = store.measure_scale()?;
                store.path = Some(path.to_path_buf());
                Ok(store)
            }
            "safetensors" => Self::open_safetensors(path),
            _ if !path.exists() => Err(Error::io(
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
            _ => Err(Error::invalid(format!(
                "{}: a store is a harvest folder, an .npy file or a .safetensors file",
                path.display()
            ))),
        }
    }

    fn open_dir(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?.ok_or_else(|| {
            Error::invalid(format!(
                "{} has no {MANIFEST}: it is not an activation store",
                dir.display()
            ))
        })?;
        let manifest_path = dir.join(MANIFEST);
        let mut shards = Vec::new();
        let mut start = 0;
        let mut names = std::collections::HashSet::new();
        for info in &manifest.shards {
            // A shard is a file of this folder, named once: a manifest
            // cannot point the store at files elsewhere or repeat rows.
            let plain = Path::new(&info.name).file_name() == Some(std::ffi::OsStr::new(&info.name));
            if !plain || !names.insert(info.name.as_str()) {
                return Err(Error::invalid(format!(
                    "{} lists the shard {:?} {}: the store is damaged",
                    manifest_path.display(),
                    info.name,
                    if plain { "twice" } else { "outside its folder" }
                )));
            }
            let open =
                |suffix: &str| MappedArray::open(&dir.join(format!("{}{suffix}", info.name)));
            let activations = open(".npy")?;
            let shard = Self::checked_shard(
                dir,
                activations,
                Some(open(".rows.npy")?),
                Some(open(".windows.npy")?),
                start,
                info.first_window,
            )?;
            if shard.activations.rows() != info.rows
                || shard.activations.header.shape[1] != manifest.dim
            {
                return Err(Error::invalid(format!(
                    "shard {} of {} holds {:?} but the manifest says [{}, {}]: the store is damaged",
                    info.name,
                    dir.display(),
                    shard.activations.header.shape,
                    info.rows,
                    manifest.dim
                )));
            }
            start += info.rows;
            shards.push(shard);
        }
        if start != manifest.rows {
            return Err(Error::invalid(format!(
                "{} says the store holds {} rows but its shards hold {start}: the store is damaged",
                manifest_path.display(),
                manifest.rows
            )));
        }
        let (dim, scale) = (manifest.dim, manifest.scale);
        let mut store = Self::assemble(Source::Shards(shards), dim, start, scale, Some(manifest))?;
        store.path = Some(dir.to_path_buf());
        Ok(store)
    }

    fn checked_shard(
        path: &Path,
        activations: MappedArray,
        rows: Option<MappedArray>,
        windows: Option<MappedArray>,
        start: usize,
        first_window: usize,
    ) -> Result<Shard> {
        let header = &activations.header;
        if header.shape.len() != 2 || header.dtype == Dtype::I64 {
            return Err(Error::invalid(format!(
                "{}: activations must be a 2-D f16 or f32 array, found {:?} {:?}",
                path.display(),
                header.dtype,
                header.shape
            )));
        }
        if let Some(windows) = &windows {
            if windows.header.shape.len() != 2 || windows.header.dtype != Dtype::I64 {
                return Err(Error::invalid(format!(
                    "{}: a window index must be a 2-D i64 array, found {:?} {:?}",
                    path.display(),
                    windows.header.dtype,
                    windows.header.shape
                )));
            }
        }
        if let Some(rows) = &rows {
            if rows.header.shape != [activations.rows(), 5] || rows.header.dtype != Dtype::I64 {
                return Err(Error::invalid(format!(
                    "{}: a row index does not match its shard",
                    path.display()
                )));
            }
        }
        Ok(Shard {
            activations,
            rows,
            windows,
            start,
            first_window,
        })
    }

    fn open_safetensors(path: &Path) -> Result<Self> {
        let tensors = crate::tensor_io::load_tensors(path)?;
        let pick = tensors
            .iter()
            .find(|(name, _)| name == "activations")
            .or_else(|| {
                if tensors.len() == 1 {
                    tensors.first()
                } else {
                    None
                }
            })
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{}: expected a tensor named 'activations' (or a single tensor)",
                    path.display()
                ))
            })?;
        let mut store = Self::from_tensor(pick.1.inner())?;
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// Wraps activations computed elsewhere, `[rows, dim]`.
    pub fn from_tensor(t: &tch::Tensor) -> Result<Self> {
        let size = t.size();
        if size.len() != 2 || size[0] == 0 {
            return Err(Error::invalid(format!(
                "a store needs a non-empty 2-D tensor [rows, dim], got shape {size:?}"
            )));
        }
        let rows = t
            .f_detach()?
            .f_to(tch::Device::Cpu)?
            .f_to_kind(tch::Kind::Float)?
            .f_contiguous()?;
        let sum_sq = rows
            .f_square()?
            .f_sum(tch::Kind::Double)?
            .f_double_value(&[])?;
        let (len, dim) = (size[0] as usize, size[1] as usize);
        Self::assemble(
            Source::Memory(rows),
            dim,
            len,
            scale_for(dim, len, sum_sq),
            None,
        )
    }

    fn assemble(
        source: Source,
        dim: usize,
        len: usize,
        scale: f64,
        manifest: Option<Manifest>,
    ) -> Result<Self> {
        let chunks = chunks_of(&source, len);
        let seed = crate::rng::current_seed();
        Ok(Store {
            source,
            dim,
            len,
            scale,
            manifest,
            path: None,
            shuffle: RefCell::new(Shuffle::new(chunks, seed)),
        })
    }

    /// A shuffle buffer of its own over the rows, seeded with `seed`: a
    /// training run draws from one so that its order repeats (and a resumed
    /// run can replay it) whatever else reads the store.
    pub fn shuffle_buffer(&self, seed: u64) -> Shuffle {
        Shuffle::new(chunks_of(&self.source, self.len), seed)
    }

    /// One pass over every row: the scale of a store that has no manifest.
    fn measure_scale(&self) -> Result<f64> {
        let mut sum_sq = 0.0;
        for start in (0..self.len).step_by(CHUNK_ROWS) {
            let indices: Vec<usize> = (start..(start + CHUNK_ROWS).min(self.len)).collect();
            let rows = self.rows(&indices)?;
            sum_sq += rows
                .f_square()?
                .f_sum(tch::Kind::Double)?
                .f_double_value(&[])?;
        }
        Ok(scale_for(self.dim, self.len, sum_sq))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The sites side by side in each row, with their widths and scales;
    /// one site (unnamed for stores without a manifest) otherwise.
    pub fn sites(&self) -> Vec<super::SiteInfo> {
        match &self.manifest {
            Some(manifest) => manifest.sites(),
            None => vec![super::SiteInfo {
                layer: 0,
                hook: String::new(),
                dim: self.dim,
                sum_squared_norm: 0.0,
                scale: self.scale,
            }],
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Rows `indices` as an f32 tensor `[n, dim]` (unscaled).
    pub fn rows(&self, indices: &[usize]) -> Result<tch::Tensor> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len) {
            return Err(Error::invalid(format!(
                "row {bad} is out of range: the store has {} rows",
                self.len
            )));
        }
        match &self.source {
            Source::Memory(t) => {
                let index: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
                Ok(t.f_index_select(0, &tch::Tensor::f_from_slice(&index)?)?)
            }
            Source::Shards(shards) => {
                let mut values = Vec::with_capacity(indices.len() * self.dim);
                for &i in indices {
                    let (shard, local) = locate(shards, i);
                    decode_row(
                        shard.activations.row(local),
                        shard.activations.header.dtype,
                        &mut values,
                    );
                }
                Ok(tch::Tensor::f_from_slice(&values)?
                    .f_reshape([indices.len() as i64, self.dim as i64])?)
            }
        }
    }

    /// `n` rows drawn at random through the shuffle buffer, f32 `[n, dim]`.
    pub fn batch(&self, n: usize) -> Result<tch::Tensor> {
        if self.len == 0 {
            return Err(Error::invalid("the store is empty"));
        }
        // f32 rows and their indices; found by the fuzzer: `batch(2^40)` aborted.
        let bytes = (n as u64).checked_mul(self.dim as u64 * 4 + 8);
        crate::memory::ensure_fits(bytes, || format!("a batch of {n} rows of {}", self.dim))?;
        let indices = self.shuffle.borrow_mut().next(n);
        self.rows(&indices)
    }

    /// Where row `i` came from; `None` for stores made from a bare tensor or file.
    pub fn row_info(&self, i: usize) -> Result<Option<RowInfo>> {
        if i >= self.len {
            return Err(Error::invalid(format!(
                "row {i} is out of range: the store has {} rows",
                self.len
            )));
        }
        let Source::Shards(shards) = &self.source else {
            return Ok(None);
        };
        let (shard, local) = locate(shards, i);
        let (Some(rows), Some(windows)) = (&shard.rows, &shard.windows) else {
            return Ok(None);
        };
        let meta: Vec<i64> = rows
            .row(local)
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect();
        let window_row = (meta[3] as usize)
            .checked_sub(shard.first_window)
            .filter(|w| *w < windows.rows());
        let window = match window_row {
            Some(w) => windows
                .row(w)
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .take_while(|&id| id >= 0)
                .map(|id| id as u32)
                .collect(),
            None => {
                return Err(Error::invalid(format!(
                "row {i} of {} points at a window its shard does not hold: the store is damaged",
                self.path
                    .as_deref()
                    .unwrap_or(Path::new("the store"))
                    .display()
            )))
            }
        };
        Ok(Some(RowInfo {
            token: meta[0] as u32,
            document: meta[1] as usize,
            position: meta[2] as usize,
            window,
            window_position: meta[4] as usize,
            window_index: meta[3] as usize,
        }))
    }
}

fn locate(shards: &[Shard], row: usize) -> (&Shard, usize) {
    let at = shards.partition_point(|s| s.start <= row).saturating_sub(1);
    (&shards[at], row - shards[at].start)
}

fn decode_row(bytes: &[u8], dtype: Dtype, out: &mut Vec<f32>) {
    match dtype {
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Dtype::I64 => {}
    }
}

/// Rows are read in contiguous chunks, so a batch touches few pages.
const CHUNK_ROWS: usize = 4096;
/// Chunks in the shuffle buffer: 64 × 4096 rows ≈ 262k rows to draw from.
const POOL_CHUNKS: usize = 64;

fn chunks_of(source: &Source, len: usize) -> Vec<Range<usize>> {
    match source {
        Source::Shards(shards) => shards
            .iter()
            .flat_map(|s| chunk_ranges(s.start, s.activations.rows()))
            .collect(),
        Source::Memory(_) => chunk_ranges(0, len),
    }
}

fn chunk_ranges(start: usize, rows: usize) -> Vec<Range<usize>> {
    (0..rows)
        .step_by(CHUNK_ROWS)
        .map(|c| start + c..start + (c + CHUNK_ROWS).min(rows))
        .collect()
}

/// A shuffle buffer over row indices: chunks of rows, taken from all shards
/// in a random order each epoch, fill a pool; batches draw uniformly from it
/// without replacement. Reads stay local while batches mix all shards.
pub struct Shuffle {
    rng: StdRng,
    chunks: Vec<Range<usize>>,
    next_chunk: usize,
    pool: Vec<usize>,
}

impl Shuffle {
    fn new(chunks: Vec<Range<usize>>, seed: u64) -> Self {
        Shuffle {
            rng: StdRng::seed_from_u64(seed),
            next_chunk: chunks.len(),
            chunks,
            pool: Vec::new(),
        }
    }

    /// The indices of the next `n` rows.
    pub fn next(&mut self, n: usize) -> Vec<usize> {
        let target = n.max(POOL_CHUNKS * CHUNK_ROWS);
        while self.pool.len() < target && !self.chunks.is_empty() {
            if self.next_chunk == self.chunks.len() {
                // Finish drawing this epoch's rows before starting the next.
                if self.pool.len() >= n {
                    break;
                }
                // A new epoch: Fisher-Yates over the chunk order.
                for i in (1..self.chunks.len()).rev() {
                    let j = self.rng.random_range(0..=i);
                    self.chunks.swap(i, j);
                }
                self.next_chunk = 0;
            }
            self.pool.extend(self.chunks[self.next_chunk].clone());
            self.next_chunk += 1;
        }
        (0..n)
            .map(|_| {
                let i = self.rng.random_range(0..self.pool.len());
                self.pool.swap_remove(i)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn a_tensor_store_scales_to_d_and_batches_cover_every_row() {
        crate::rng::seed(1);
        let rows = Tensor::arange(40, (Kind::Float, tch::Device::Cpu)).reshape([10, 4]);
        let store = Store::from_tensor(&rows).unwrap();
        assert_eq!((store.len(), store.dim()), (10, 4));
        let mean_sq = rows.square().sum(Kind::Double).double_value(&[]) / 10.0;
        assert!((store.scale() * store.scale() * mean_sq - 4.0).abs() < 1e-9);
        // Two batches of 5 are one epoch: every row exactly once.
        let mut seen: Vec<i64> = Vec::new();
        for _ in 0..2 {
            let batch = store.batch(5).unwrap();
            let firsts = Vec::<f32>::try_from(batch.select(1, 0)).unwrap();
            seen.extend(firsts.iter().map(|v| (*v / 4.0) as i64));
        }
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert!(store.row_info(0).unwrap().is_none());
        assert!(store.row_info(10).is_err());
        assert!(Store::from_tensor(&Tensor::zeros([3], (Kind::Float, tch::Device::Cpu))).is_err());
    }

    #[test]
    fn an_npy_file_opens_as_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acts.npy");
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        super::super::npy::write(&path, Dtype::F16, &[4, 3], &bytes).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!((store.len(), store.dim()), (4, 3));
        let row = Vec::<f32>::try_from(store.rows(&[2]).unwrap().reshape([-1])).unwrap();
        assert_eq!(row, [6.0, 7.0, 8.0]);
        assert!(store.rows(&[4]).is_err());
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no manifest.json"), "{err}");
    }
}
