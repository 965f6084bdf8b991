//! The `r` entries with the smallest keys in each of many groups, kept over
//! a stream of batches without holding the stream: the bookkeeping behind a
//! feature's top activations (key = −activation) and behind uniform random
//! samples per activation bin (key = a uniform random number: the entries
//! with the `r` smallest random keys are a uniform sample without
//! replacement, whatever order the stream comes in).
//!
//! Each batch is sorted once by (group, key) on the device; only the groups
//! it touches are merged into the state, so the cost follows the batch's
//! non-zero entries, not the number of groups.
use crate::Result;
use tch::{Device, Kind, Tensor};

/// Per group, the `r` smallest keys seen so far with their row and value.
pub struct GroupedSmallest {
    r: i64,
    /// [groups, r], +∞ where a slot is empty; each row sorted ascending.
    pub keys: Tensor,
    /// [groups, r], −1 where a slot is empty.
    pub rows: Tensor,
    /// [groups, r]
    pub values: Tensor,
}

/// One batch's entries: parallel 1-D tensors of the same length.
pub struct Entries<'a> {
    pub groups: &'a Tensor,
    pub keys: &'a Tensor,
    pub rows: &'a Tensor,
    pub values: &'a Tensor,
}

impl GroupedSmallest {
    pub fn new(groups: i64, r: i64, device: Device) -> Result<Self> {
        Ok(GroupedSmallest {
            r,
            keys: Tensor::f_full([groups, r], f64::INFINITY, (Kind::Float, device))?,
            rows: Tensor::f_full([groups, r], -1, (Kind::Int64, device))?,
            values: Tensor::f_zeros([groups, r], (Kind::Float, device))?,
        })
    }

    /// Rebuilds the state from saved tensors (checked by the caller).
    pub fn from_parts(keys: Tensor, rows: Tensor, values: Tensor) -> Result<Self> {
        let r = keys.size().get(1).copied().unwrap_or(0);
        Ok(GroupedSmallest {
            r,
            keys,
            rows,
            values,
        })
    }

    /// Offers a batch of entries; each group keeps its `r` smallest keys.
    pub fn offer(&mut self, e: Entries<'_>) -> Result<()> {
        if e.groups.numel() == 0 {
            return Ok(());
        }
        // Sort by key, then stably by group: (group, key) order.
        let by_key = e.keys.f_argsort_stable(true, 0, false)?;
        let groups = e.groups.f_index_select(0, &by_key)?;
        let by_group = groups.f_argsort_stable(true, 0, false)?;
        let order = by_key.f_index_select(0, &by_group)?;
        let groups = e.groups.f_index_select(0, &order)?;
        let (touched, inverse, counts) = groups.f_unique_consecutive(true, true, 0)?;
        // Rank of each entry within its group: its position minus the group's start.
        let starts = counts.f_cumsum(0, Kind::Int64)?.f_sub(&counts)?;
        let n = groups.size()[0];
        let positions = Tensor::f_arange(n, (Kind::Int64, groups.device()))?;
        let rank = positions.f_sub(&starts.f_index_select(0, &inverse)?)?;
        let keep = rank.f_lt(self.r)?;
        let slot = inverse
            .f_mul_scalar(self.r)?
            .f_add(&rank)?
            .f_masked_select(&keep)?;
        let pick = |t: &Tensor| -> Result<Tensor> {
            Ok(t.f_index_select(0, &order)?.f_masked_select(&keep)?)
        };
        let t = touched.size()[0];
        let device = groups.device();
        let scatter = |fill: Tensor, from: &Tensor| -> Result<Tensor> {
            let flat = fill.f_view([-1])?;
            let flat = flat.f_index_put(&[Some(slot.shallow_clone())], &pick(from)?, false)?;
            Ok(flat.f_view([t, self.r])?)
        };
        let batch_keys = scatter(
            Tensor::f_full([t, self.r], f64::INFINITY, (Kind::Float, device))?,
            &e.keys.f_totype(Kind::Float)?,
        )?;
        let batch_rows = scatter(
            Tensor::f_full([t, self.r], -1, (Kind::Int64, device))?,
            e.rows,
        )?;
        let batch_values = scatter(
            Tensor::f_zeros([t, self.r], (Kind::Float, device))?,
            &e.values.f_totype(Kind::Float)?,
        )?;
        self.merge(&touched, batch_keys, batch_rows, batch_values)
    }

    /// Merges per-group candidates [t, r] into the state rows `touched`.
    fn merge(
        &mut self,
        touched: &Tensor,
        keys: Tensor,
        rows: Tensor,
        values: Tensor,
    ) -> Result<()> {
        let both = |state: &Tensor, batch: Tensor| -> Result<Tensor> {
            Ok(Tensor::f_cat(
                &[state.f_index_select(0, touched)?, batch],
                1,
            )?)
        };
        let keys = both(&self.keys, keys)?;
        let (sorted, order) = keys.f_sort(1, false)?;
        let best = order.f_narrow(1, 0, self.r)?;
        let keys = sorted.f_narrow(1, 0, self.r)?;
        let rows = both(&self.rows, rows)?.f_gather(1, &best, false)?;
        let values = both(&self.values, values)?.f_gather(1, &best, false)?;
        self.keys = self.keys.f_index_copy(0, touched, &keys)?;
        self.rows = self.rows.f_index_copy(0, touched, &rows)?;
        self.values = self.values.f_index_copy(0, touched, &values)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor_i64(v: &[i64]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn tensor_f32(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn keeps_the_smallest_keys_of_each_group_across_batches() {
        let mut state = GroupedSmallest::new(3, 2, Device::Cpu).unwrap();
        // Group 0 sees keys 5, 1, 3 (over two batches); group 2 sees 4; group 1 nothing.
        let first = (
            tensor_i64(&[0, 2, 0]),
            tensor_f32(&[5.0, 4.0, 1.0]),
            tensor_i64(&[10, 11, 12]),
        );
        state
            .offer(Entries {
                groups: &first.0,
                keys: &first.1,
                rows: &first.2,
                values: &first.1,
            })
            .unwrap();
        let second = (tensor_i64(&[0]), tensor_f32(&[3.0]), tensor_i64(&[13]));
        state
            .offer(Entries {
                groups: &second.0,
                keys: &second.1,
                rows: &second.2,
                values: &second.1,
            })
            .unwrap();
        let rows: Vec<i64> = Vec::try_from(state.rows.view([-1])).unwrap();
        assert_eq!(rows, vec![12, 13, -1, -1, 11, -1]);
        let values: Vec<f32> = Vec::try_from(state.values.view([-1])).unwrap();
        assert_eq!(values[..2], [1.0, 3.0]);
    }

    #[test]
    fn random_keys_draw_each_member_of_a_group_equally_often() {
        // 5 rows in one group, keep 2 by random key: each row is kept 2/5 of the time.
        let mut kept = [0u32; 5];
        let trials = 2000;
        crate::rng::seed(1);
        for _ in 0..trials {
            let mut state = GroupedSmallest::new(1, 2, Device::Cpu).unwrap();
            let groups = tensor_i64(&[0; 5]);
            let keys = Tensor::rand([5], (Kind::Float, Device::Cpu));
            let rows = tensor_i64(&[0, 1, 2, 3, 4]);
            state
                .offer(Entries {
                    groups: &groups,
                    keys: &keys,
                    rows: &rows,
                    values: &keys,
                })
                .unwrap();
            for row in Vec::<i64>::try_from(state.rows.view([-1])).unwrap() {
                kept[row as usize] += 1;
            }
        }
        for count in kept {
            let share = count as f64 / trials as f64;
            assert!((share - 0.4).abs() < 0.05, "kept {kept:?}");
        }
    }
}
