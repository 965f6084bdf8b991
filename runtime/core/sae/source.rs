//! Where training activations come from. The trainer only needs batches, the
//! width, the paper's scaling factor and a position it can return to after a
//! restart; a tensor in memory provides them now, the on-disk activation
//! store will implement the same trait.
use crate::core::{Error, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
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
        scale_for(total / self.rows() as f64, self.dim())
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

/// s = √(dim / E‖x‖²), with a clear error for data that cannot be scaled.
pub fn scale_for(mean_squared_norm: f64, dim: i64) -> Result<f64> {
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
    Ok((dim as f64 / mean_squared_norm).sqrt())
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
