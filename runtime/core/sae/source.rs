//! Where training activations come from. The trainer only needs batches, the
//! width, the paper's scaling factor and a position it can return to after a
//! restart; a tensor in memory and the on-disk activation store provide them.
use crate::activations::store::checked_scale_for;
use crate::activations::{Shuffle, Store};
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::rc::Rc;
use tch::Kind;

/// A stream of activation vectors.
pub trait ActivationSource {
    /// Width of each activation vector (the SAE's d_in).
    fn dim(&self) -> i64;

    /// The next `n` activations, [n, dim] f32, in training order. Sources
    /// that run out start over (a new epoch), so this never comes up short.
    fn next_batch(&mut self, n: i64) -> Result<tch::Tensor>;

    /// The scalar s that makes E‖s·x‖² = dim, the normalisation of the paper
    /// (so that one λ works across models and layers).
    fn scale(&mut self) -> Result<f64>;

    /// Widths of the sites side by side in each row (a multi-site store's
    /// `[d_in, d_out]` for a transcoder); one site of width `dim` by default.
    fn site_widths(&self) -> Vec<i64> {
        vec![self.dim()]
    }

    /// Each site's own scale, in row order: E‖s·x‖² = its width for each
    /// site alone. One site: [`ActivationSource::scale`].
    fn site_scales(&mut self) -> Result<Vec<f64>> {
        Ok(vec![self.scale()?])
    }

    /// Activations handed out so far; a checkpoint records it.
    fn position(&self) -> u64;

    /// Continues from `position` as if the activations before it had been
    /// drawn (resuming a killed run). The default draws and drops them.
    fn seek(&mut self, position: u64) -> Result<()> {
        let mut left = position.saturating_sub(self.position());
        while left > 0 {
            let n = left.min(1 << 16);
            let _ = self.next_batch(n as i64)?;
            left -= n;
        }
        Ok(())
    }

    /// Activations in one pass, when known (evaluation reads at most this many).
    fn tokens_per_pass(&self) -> Option<u64> {
        None
    }

    /// One line for reports and error messages.
    fn describe(&self) -> String;
}

/// Activations held in a [rows, dim] tensor, served in a fresh shuffled order
/// each epoch. Epoch e's order depends only on (seed, e), so a resumed run
/// can jump straight back to any position.
pub struct TensorSource {
    data: tch::Tensor,
    /// Widths of the sites side by side in each row.
    widths: Vec<i64>,
    seed: u64,
    shuffle: bool,
    position: u64,
    epoch_order: Option<(u64, tch::Tensor)>,
}

impl TensorSource {
    /// `shuffle: false` serves the rows in order (evaluation).
    pub fn new(data: &tch::Tensor, seed: u64, shuffle: bool) -> Result<Self> {
        let shape = data.size();
        if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
            return Err(Error::invalid(format!(
                "activations must be a non-empty [tokens, d_in] tensor, got shape {shape:?}"
            )));
        }
        if !data.f_is_floating_point()? {
            return Err(Error::invalid("activations must be floating point"));
        }
        let data = data.f_detach()?;
        Ok(TensorSource {
            widths: vec![shape[1]],
            data,
            seed,
            shuffle,
            position: 0,
            epoch_order: None,
        })
    }

    fn rows(&self) -> u64 {
        self.data.size()[0] as u64
    }

    /// The row order of one epoch, cached for the current one.
    fn order(&mut self, epoch: u64) -> Result<tch::Tensor> {
        if let Some((cached, order)) = &self.epoch_order {
            if *cached == epoch {
                return Ok(order.shallow_clone());
            }
        }
        let mut rows: Vec<i64> = (0..self.rows() as i64).collect();
        // Mix the epoch into the seed so epochs differ but repeat across runs.
        let mut rng = StdRng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rows.shuffle(&mut rng);
        let order = tch::Tensor::f_from_slice(&rows)?.f_to(self.data.device())?;
        self.epoch_order = Some((epoch, order.shallow_clone()));
        Ok(order)
    }

    /// Rows that hold several sites side by side (a transcoder's `[x | y]`),
    /// each scaled on its own; the widths must add up to the row's.
    pub fn with_sites(mut self, widths: &[i64]) -> Result<Self> {
        if widths.iter().sum::<i64>() != self.dim() || widths.iter().any(|w| *w < 1) {
            return Err(Error::invalid(format!(
                "site widths {widths:?} do not split rows of width {}",
                self.dim()
            )));
        }
        self.widths = widths.to_vec();
        Ok(self)
    }

    fn take(&mut self, n: u64) -> Result<tch::Tensor> {
        let rows = self.rows();
        let (epoch, start) = (self.position / rows, self.position % rows);
        let count = n.min(rows - start);
        self.position += count;
        if !self.shuffle {
            return Ok(self.data.f_narrow(0, start as i64, count as i64)?);
        }
        let index = self.order(epoch)?.f_narrow(0, start as i64, count as i64)?;
        Ok(self.data.f_index_select(0, &index)?)
    }
}

impl ActivationSource for TensorSource {
    fn dim(&self) -> i64 {
        self.data.size()[1]
    }

    fn next_batch(&mut self, n: i64) -> Result<tch::Tensor> {
        if n < 1 {
            return Err(Error::invalid(format!("batch size must be >= 1, got {n}")));
        }
        let mut parts = Vec::new();
        let mut left = n as u64;
        while left > 0 {
            let part = self.take(left)?;
            left -= part.size()[0] as u64;
            parts.push(part);
        }
        let batch = if parts.len() == 1 {
            parts.remove(0)
        } else {
            tch::Tensor::f_cat(&parts, 0)?
        };
        Ok(batch.f_totype(Kind::Float)?)
    }

    fn scale(&mut self) -> Result<f64> {
        let _guard = tch::no_grad_guard();
        // Squares in the data's dtype, sums in f64: no f64 copy of the data.
        let total = self
            .data
            .f_square()?
            .f_sum(Kind::Double)?
            .f_double_value(&[])?;
        checked_scale_for(self.dim() as usize, self.rows() as usize, total)
    }

    fn site_widths(&self) -> Vec<i64> {
        self.widths.clone()
    }

    fn site_scales(&mut self) -> Result<Vec<f64>> {
        let _guard = tch::no_grad_guard();
        let rows = self.rows() as usize;
        self.data
            .f_split_with_sizes(self.widths.as_slice(), 1)?
            .iter()
            .zip(&self.widths)
            .map(|(part, width)| {
                let total = part.f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?;
                checked_scale_for(*width as usize, rows, total)
            })
            .collect()
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn seek(&mut self, position: u64) -> Result<()> {
        self.position = position;
        Ok(())
    }

    fn tokens_per_pass(&self) -> Option<u64> {
        Some(self.rows())
    }

    fn describe(&self) -> String {
        format!(
            "a tensor of {} activations of width {}",
            self.rows(),
            self.dim()
        )
    }
}

/// Rows of an activation store: shuffled across shards through a shuffle
/// buffer of the source's own (training), or in order (evaluation). The
/// buffer is drawn from in blocks of [`DRAW_ROWS`], so the order depends only
/// on the seed, not on the batch sizes asked for, and a resumed run replays
/// it without reading a row.
pub struct StoreSource {
    store: Rc<Store>,
    seed: u64,
    /// Rows per draw: [`DRAW_ROWS`], or the whole store if smaller (a draw
    /// larger than an epoch would mix two epochs and repeat rows in one).
    block: usize,
    /// `None` serves the rows in order.
    shuffle: Option<Shuffle>,
    drawn: VecDeque<usize>,
    position: u64,
}

/// Rows taken from the shuffle buffer at a time.
const DRAW_ROWS: usize = 4096;

impl StoreSource {
    /// `shuffle: false` serves the rows in order (evaluation).
    pub fn new(store: Rc<Store>, seed: u64, shuffle: bool) -> Result<Self> {
        if store.is_empty() || store.dim() == 0 {
            return Err(Error::invalid(format!(
                "the activation store{} is empty",
                store_name(&store)
            )));
        }
        let shuffle = shuffle.then(|| store.shuffle_buffer(seed));
        Ok(StoreSource {
            block: DRAW_ROWS.min(store.len()),
            store,
            seed,
            shuffle,
            drawn: VecDeque::new(),
            position: 0,
        })
    }

    fn indices(&mut self, n: usize) -> Vec<usize> {
        let Some(shuffle) = &mut self.shuffle else {
            let (len, start) = (self.store.len(), self.position as usize);
            return (start..start + n).map(|i| i % len).collect();
        };
        while self.drawn.len() < n {
            self.drawn.extend(shuffle.next(self.block));
        }
        self.drawn.drain(..n).collect()
    }
}

fn store_name(store: &Store) -> String {
    store
        .path()
        .map_or_else(String::new, |p| format!(" {}", p.display()))
}

impl ActivationSource for StoreSource {
    fn dim(&self) -> i64 {
        self.store.dim() as i64
    }

    fn next_batch(&mut self, n: i64) -> Result<tch::Tensor> {
        if n < 1 {
            return Err(Error::invalid(format!("batch size must be >= 1, got {n}")));
        }
        let indices = self.indices(n as usize);
        self.position += n as u64;
        self.store.rows(&indices)
    }

    /// The store's own factor (from the harvest's running sum of squared
    /// norms), the same definition as [`TensorSource::scale`].
    fn scale(&mut self) -> Result<f64> {
        match self.store.manifest() {
            Some(m) if m.rows > 0 => {
                checked_scale_for(self.dim() as usize, m.rows, m.sum_squared_norm)
            }
            _ => {
                let s = self.store.scale();
                if !s.is_finite() || s <= 0.0 {
                    return Err(Error::invalid(format!(
                        "the activation store{} has scale {s}: its activations contain NaN or Inf, or are all zero",
                        store_name(&self.store)
                    )));
                }
                Ok(s)
            }
        }
    }

    fn site_widths(&self) -> Vec<i64> {
        self.store.sites().iter().map(|s| s.dim as i64).collect()
    }

    /// Each site's factor from the harvest's running sums, as [`Self::scale`].
    fn site_scales(&mut self) -> Result<Vec<f64>> {
        let sites = self.store.sites();
        match self.store.manifest() {
            Some(m) if m.rows > 0 && sites.len() > 1 => sites
                .iter()
                .map(|site| checked_scale_for(site.dim, m.rows, site.sum_squared_norm))
                .collect(),
            _ => Ok(vec![self.scale()?]),
        }
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn seek(&mut self, position: u64) -> Result<()> {
        self.position = position;
        let Some(shuffle) = &mut self.shuffle else {
            return Ok(());
        };
        *shuffle = self.store.shuffle_buffer(self.seed);
        let block = self.block as u64;
        for _ in 0..position / block {
            let _ = shuffle.next(self.block);
        }
        self.drawn = shuffle.next(self.block).into();
        self.drawn.drain(..(position % block) as usize);
        Ok(())
    }

    fn tokens_per_pass(&self) -> Option<u64> {
        Some(self.store.len() as u64)
    }

    fn describe(&self) -> String {
        format!(
            "the activation store{} of {} activations of width {}",
            store_name(&self.store),
            self.store.len(),
            self.store.dim()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: i64) -> tch::Tensor {
        tch::Tensor::arange(n, (Kind::Float, tch::Device::Cpu))
            .reshape([n, 1])
            .repeat([1, 2])
    }

    fn values(t: &tch::Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.select(1, 0).to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn each_epoch_is_a_permutation_and_epochs_differ() {
        let mut source = TensorSource::new(&rows(10), 7, true).unwrap();
        let first = values(&source.next_batch(10).unwrap());
        let second = values(&source.next_batch(10).unwrap());
        let mut sorted = first.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(sorted, (0..10).map(f64::from).collect::<Vec<_>>());
        assert_ne!(first, second);
    }

    #[test]
    fn seeking_reproduces_the_stream() {
        let mut straight = TensorSource::new(&rows(10), 3, true).unwrap();
        let _ = straight.next_batch(13).unwrap();
        let expected = values(&straight.next_batch(9).unwrap());
        let mut resumed = TensorSource::new(&rows(10), 3, true).unwrap();
        resumed.seek(13).unwrap();
        assert_eq!(values(&resumed.next_batch(9).unwrap()), expected);
    }

    #[test]
    fn scale_makes_the_mean_squared_norm_the_width() {
        let data = tch::Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0]).reshape([2, 2]);
        let mut source = TensorSource::new(&data, 0, false).unwrap();
        // E‖x‖² = 12.5, d = 2 → s = √(2 / 12.5) = 0.4
        assert!((source.scale().unwrap() - 0.4).abs() < 1e-12);
    }

    /// A harvest-layout store folder holding `x`, `shard_rows` rows per shard.
    fn write_store(dir: &std::path::Path, x: &tch::Tensor, shard_rows: usize) -> Store {
        use crate::activations::{npy, store::ShardInfo, Dtype, Manifest};
        let (rows, dim) = (x.size()[0] as usize, x.size()[1] as usize);
        let mut shards = Vec::new();
        for (i, start) in (0..rows).step_by(shard_rows).enumerate() {
            let n = shard_rows.min(rows - start);
            let part = x.narrow(0, start as i64, n as i64).contiguous();
            let values = Vec::<f32>::try_from(part.reshape([-1])).unwrap();
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let name = format!("shard-{i:05}");
            let path = |suffix: &str| dir.join(format!("{name}{suffix}"));
            npy::write(&path(".npy"), Dtype::F32, &[n, dim], &bytes).unwrap();
            let meta: Vec<u8> = (0..n * 5).flat_map(|_| 0i64.to_le_bytes()).collect();
            npy::write(&path(".rows.npy"), Dtype::I64, &[n, 5], &meta).unwrap();
            npy::write(&path(".windows.npy"), Dtype::I64, &[1, 2], &[0u8; 16]).unwrap();
            let sum_squared_norm = part.square().sum(Kind::Double).double_value(&[]);
            shards.push(ShardInfo {
                name,
                rows: n,
                first_window: i,
                windows: 1,
                sum_squared_norm,
                site_sum_squared_norms: Vec::new(),
            });
        }
        let sum_squared_norm: f64 = shards.iter().map(|s| s.sum_squared_norm).sum();
        Manifest {
            format: crate::activations::store::FORMAT,
            model: "synthetic".into(),
            layer: 0,
            hook: "resid_pre".into(),
            dim,
            dtype: "f32".into(),
            precision: "f32".into(),
            context: 2,
            corpus: "synthetic".into(),
            excluded: String::new(),
            tokens_target: rows,
            windows_done: shards.len(),
            partial_rows: 0,
            rows,
            sum_squared_norm,
            scale: crate::activations::store::scale_for(dim, rows, sum_squared_norm),
            max_norm_ratio: None,
            dropped_rows: 0,
            complete: true,
            shards,
            sites: Vec::new(),
        }
        .write(dir)
        .unwrap();
        Store::open(dir).unwrap()
    }

    #[test]
    fn a_store_stream_ignores_batch_sizes_and_seeking_replays_it() {
        let store = Rc::new(Store::from_tensor(&rows(10_000)).unwrap());
        let mut source = StoreSource::new(store.clone(), 5, true).unwrap();
        let first = values(&source.next_batch(6000).unwrap());
        let mut sorted = first.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        assert_eq!(sorted.len(), 6000, "rows repeat within an epoch");
        let expected = values(&source.next_batch(2500).unwrap());
        let mut pieces = StoreSource::new(store.clone(), 5, true).unwrap();
        let mut again = Vec::new();
        for n in [1, 4999, 1000, 500, 2000] {
            again.extend(values(&pieces.next_batch(n).unwrap()));
        }
        assert_eq!(again[..6000], first[..]);
        assert_eq!(again[6000..], expected[..]);
        let mut resumed = StoreSource::new(store.clone(), 5, true).unwrap();
        resumed.seek(6000).unwrap();
        assert_eq!(values(&resumed.next_batch(2500).unwrap()), expected);
        let mut other_seed = StoreSource::new(store, 6, true).unwrap();
        assert_ne!(values(&other_seed.next_batch(6000).unwrap()), first);
    }

    #[test]
    fn a_sharded_store_scales_like_the_tensor_and_reads_in_order_for_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let x = tch::Tensor::randn([1000, 8], (Kind::Float, tch::Device::Cpu));
        let store = Rc::new(write_store(dir.path(), &x, 300));
        let mut ordered = StoreSource::new(store.clone(), 0, false).unwrap();
        let mut tensor = TensorSource::new(&x, 0, false).unwrap();
        let (a, b) = (ordered.scale().unwrap(), tensor.scale().unwrap());
        assert!((a - b).abs() < 1e-6 * b, "{a} vs {b}");
        assert_eq!(ordered.tokens_per_pass(), Some(1000));
        let batch = ordered.next_batch(1000).unwrap();
        assert!(batch.equal(&x));
        // Batches of a shuffled pass mix shards and cover every row once.
        let mut shuffled = StoreSource::new(store, 1, true).unwrap();
        let firsts = values(&shuffled.next_batch(1000).unwrap());
        let mut expected = values(&x);
        let mut got = firsts.clone();
        expected.sort_by(f64::total_cmp);
        got.sort_by(f64::total_cmp);
        assert!(got == expected, "a shuffled pass repeats or misses rows");
        assert!(firsts != values(&x), "a shuffled pass is in order");
    }

    #[test]
    fn a_sharded_store_trains_as_well_as_the_tensor() {
        use crate::sae::{synthetic, trainer, ArchitectureConfig, Sae, SaeConfig};
        crate::rng::seed(21);
        let toy = synthetic::superposition(256, 32, 3.0, 16384).unwrap();
        let mut cfg = SaeConfig::new("topk", 32, 512).unwrap();
        if let ArchitectureConfig::TopK(topk) = &mut cfg.architecture {
            topk.k = 3;
        }
        let template = Sae::new(cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Rc::new(write_store(dir.path(), &toy.activations, 5000));
        let train_cfg = trainer::TrainConfig {
            steps: 300,
            batch_size: 256,
            lr: 5e-3,
            show_progress: false,
            ..Default::default()
        };
        let mut results = Vec::new();
        let sources: [Box<dyn ActivationSource>; 2] = [
            Box::new(TensorSource::new(&toy.activations, 3, true).unwrap()),
            Box::new(StoreSource::new(store.clone(), 3, true).unwrap()),
        ];
        for mut source in sources {
            let mut sae = template.duplicate().unwrap();
            let report = trainer::train(&mut sae, source.as_mut(), train_cfg.clone()).unwrap();
            let mut all = StoreSource::new(store.clone(), 0, false).unwrap();
            let eval = crate::sae::metrics::evaluate(
                &sae,
                &mut all,
                0,
                4096,
                crate::precision::Precision::F32,
            )
            .unwrap();
            let recovery =
                synthetic::mean_max_cosine_similarity(&toy.directions, sae.weights.w_dec.inner())
                    .unwrap();
            results.push((report.input_scale, eval.explained_variance, recovery));
        }
        let [(scale_t, ev_t, rec_t), (scale_s, ev_s, rec_s)] = results[..] else {
            unreachable!()
        };
        assert!(
            (scale_t - scale_s).abs() < 1e-6 * scale_t,
            "{scale_t} vs {scale_s}"
        );
        assert!(
            rec_t >= 0.9 && rec_s >= 0.9,
            "recovery {rec_t} (tensor) vs {rec_s} (store)"
        );
        assert!(
            (ev_t - ev_s).abs() < 0.03,
            "explained variance {ev_t} vs {ev_s}"
        );
    }

    #[test]
    fn nan_activations_cannot_be_scaled() {
        let data = tch::Tensor::from_slice(&[f32::NAN, 1.0]).reshape([1, 2]);
        let err = TensorSource::new(&data, 0, false)
            .unwrap()
            .scale()
            .unwrap_err()
            .to_string();
        assert!(err.contains("NaN"), "{err}");
    }
}
