//! What a forward pass runs on: token batches (padded left or right, with a
//! mask of real tokens) and the KV cache that lets generation feed one token
//! per step.
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// Token ids `[batch, T]` and which of them are real (`None`: all are).
#[derive(Debug)]
pub struct Batch {
    pub ids: Tensor,
    pub mask: Option<Tensor>,
}

/// Where a batch of unequal sequences is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Pads after the text: activations of real tokens are unaffected.
    Right,
    /// Pads before the text: every row's last token is in the last column (generation).
    Left,
}

impl Batch {
    /// One unpadded sequence.
    pub fn single(ids: &[u32]) -> Result<Self> {
        Self::pad(&[ids.to_vec()], 0, Padding::Right)
    }

    /// Sequences padded with `pad_id` to the longest one.
    pub fn pad(sequences: &[Vec<u32>], pad_id: u32, side: Padding) -> Result<Self> {
        let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if sequences.is_empty() || sequences.iter().any(Vec::is_empty) {
            return Err(Error::invalid(
                "cannot run the model on an empty sequence of tokens",
            ));
        }
        let mut ids = Vec::with_capacity(sequences.len() * longest);
        let mut real = Vec::with_capacity(sequences.len() * longest);
        for seq in sequences {
            let padding = longest - seq.len();
            let (before, after) = match side {
                Padding::Right => (0, padding),
                Padding::Left => (padding, 0),
            };
            ids.extend(std::iter::repeat_n(pad_id as i64, before));
            ids.extend(seq.iter().map(|&id| id as i64));
            ids.extend(std::iter::repeat_n(pad_id as i64, after));
            real.extend((0..longest).map(|i| i >= before && i < before + seq.len()));
        }
        let shape = [sequences.len() as i64, longest as i64];
        let padded = real.iter().any(|r| !r);
        let mask = padded
            .then(|| Tensor::f_from_slice(&real).and_then(|m| m.f_reshape(shape)))
            .transpose()?;
        Ok(Batch {
            ids: Tensor::f_from_slice(&ids)?.f_reshape(shape)?,
            mask,
        })
    }

    /// `x` `[batch, T, d]` at each row's last real token: `[batch, d]`.
    pub(super) fn last_positions(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, t, _) = x.size3()?;
        let last = match &self.mask {
            None => Tensor::f_full([batch], t - 1, (Kind::Int64, x.device()))?,
            Some(mask) => {
                let index = Tensor::f_arange(t, (Kind::Int64, x.device()))?;
                mask.f_to(x.device())?
                    .f_to_kind(Kind::Int64)?
                    .f_mul(&index)?
                    .f_argmax(1, false)?
            }
        };
        let rows = Tensor::f_arange(batch, (Kind::Int64, x.device()))?;
        Ok(x.f_index(&[Some(rows), Some(last)])?)
    }
}

/// Keys and values of the positions already run, per layer, so generation
/// feeds one new token per step instead of the whole sequence.
#[derive(Debug)]
pub struct KvCache {
    pub(super) layers: Vec<LayerCache>,
    /// Cached positions (padding included).
    pub(super) len: i64,
    /// Real tokens per sequence so far, `[batch]`: the next token's position.
    pub(super) seen: Tensor,
    /// Which cached positions are real, `[batch, len]`; `None` while all are.
    pub(super) key_mask: Option<Tensor>,
    /// `seen` and `key_mask` after the pass under way, kept only if it succeeds.
    pub(super) pending: Option<Pending>,
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) seen: Tensor,
    pub(super) key_mask: Option<Tensor>,
}

#[derive(Debug, Default)]
pub(super) struct LayerCache {
    kv: Option<(Tensor, Tensor)>,
}

impl LayerCache {
    pub(super) fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.kv.take() {
            None => (k, v),
            Some((past_k, past_v)) => (
                Tensor::f_cat(&[past_k, k], 2)?,
                Tensor::f_cat(&[past_v, v], 2)?,
            ),
        };
        self.kv = Some((k.shallow_clone(), v.shallow_clone()));
        Ok((k, v))
    }
}

impl KvCache {
    /// An empty cache for a model of `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: (0..n_layers).map(|_| LayerCache::default()).collect(),
            len: 0,
            seen: Tensor::new(),
            key_mask: None,
            pending: None,
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn commit(&mut self, t: i64) {
        if let Some(pending) = self.pending.take() {
            self.seen = pending.seen;
            self.key_mask = pending.key_mask;
        }
        self.len += t;
    }
}

/// `[batch, 1, T, S]`: query q (at cache index `past + q`) sees key k when k is
/// real and not in its future. Each query also sees itself, so a padding row
/// never has every key masked (which would make SDPA return NaN).
pub(super) fn causal_mask(key_mask: &Tensor, past: i64) -> Result<Tensor> {
    let (_, s) = key_mask.size2()?;
    let device = key_mask.device();
    let t = s - past;
    let queries = Tensor::f_arange_start(past, s, (Kind::Int64, device))?.f_unsqueeze(1)?;
    let keys = Tensor::f_arange(s, (Kind::Int64, device))?.f_unsqueeze(0)?;
    let causal = keys.f_le_tensor(&queries)?.f_unsqueeze(0)?;
    let real = key_mask.f_unsqueeze(1)?;
    let itself = keys.f_eq_tensor(&queries)?.f_unsqueeze(0)?;
    let allowed = causal.f_logical_and(&real)?.f_logical_or(&itself)?;
    debug_assert_eq!(allowed.size()[1], t);
    Ok(allowed.f_unsqueeze(1)?)
}
