//! An SAE's parameters, shared handles into the tensors that training
//! updates, and what is computed from them alone (decoder norms, the skip
//! connection, mixed-precision copies).
use crate::{Error, Result, Tensor};
use tch::Kind;

/// The parameters. Each is a shared handle, so a script holding
/// `s.parameters()` sees (and its optimiser updates) the same storage.
#[derive(Clone)]
pub struct Weights {
    /// Encoder, [n_features, d_in] (transposed from SAELens's W_enc).
    pub w_enc: Tensor,
    /// Encoder bias, [n_features].
    pub b_enc: Tensor,
    /// Decoder, [n_features, d_in]: row i is feature i's direction.
    pub w_dec: Tensor,
    /// Decoder bias, [d_in].
    pub b_dec: Tensor,
    /// JumpReLU only: log of the per-feature threshold, [n_features].
    pub log_threshold: Option<Tensor>,
    /// A skip transcoder's linear map from input to output, [d_out, d_in].
    pub w_skip: Option<Tensor>,
    /// Widths of the blocks of a decoder row whose norms add up in a
    /// feature's decoder norm (a crosscoder's sites); empty for one block.
    pub decoder_blocks: Vec<i64>,
}

impl Weights {
    /// The trainable tensors in a fixed order (the optimiser and checkpoints rely on it).
    pub fn named(&self) -> Vec<(&'static str, Tensor)> {
        let mut all = vec![
            ("W_enc", self.w_enc.clone()),
            ("b_enc", self.b_enc.clone()),
            ("W_dec", self.w_dec.clone()),
            ("b_dec", self.b_dec.clone()),
        ];
        if let Some(t) = &self.log_threshold {
            all.push(("log_threshold", t.clone()));
        }
        if let Some(t) = &self.w_skip {
            all.push(("W_skip", t.clone()));
        }
        all
    }

    /// Number of features (rows of W_dec).
    pub fn n_features(&self) -> i64 {
        self.b_enc.inner().size().first().copied().unwrap_or(0)
    }

    /// The input as the encoder sees it: minus b_dec when the config asks for it.
    pub fn encoder_input(&self, x: &tch::Tensor, apply_b_dec: bool) -> Result<tch::Tensor> {
        Ok(if apply_b_dec {
            x.f_sub(self.b_dec.inner())?
        } else {
            x.shallow_clone()
        })
    }

    /// Differentiable copies in another dtype (bf16 for mixed precision):
    /// gradients through them reach these weights in their own dtype.
    pub fn cast(&self, kind: Kind) -> Result<Weights> {
        let cast = |t: &Tensor| -> Result<Tensor> { Ok(Tensor::new(t.inner().f_totype(kind)?)) };
        Ok(Weights {
            w_enc: cast(&self.w_enc)?,
            b_enc: cast(&self.b_enc)?,
            w_dec: cast(&self.w_dec)?,
            b_dec: cast(&self.b_dec)?,
            log_threshold: self.log_threshold.as_ref().map(cast).transpose()?,
            w_skip: self.w_skip.as_ref().map(cast).transpose()?,
            decoder_blocks: self.decoder_blocks.clone(),
        })
    }

    /// Row norms of the decoder, ‖W_dec,i‖ (differentiable); for a
    /// crosscoder the sum of each row's per-site norms, Σₗ‖W_dec,i,l‖
    /// (Anthropic's crosscoder note; dictionary_learning's CrossCoder).
    pub fn decoder_norms(&self) -> Result<tch::Tensor> {
        let w_dec = self.w_dec.inner();
        if self.decoder_blocks.len() <= 1 {
            return Ok(w_dec.f_norm_scalaropt_dim(2, [1], false)?);
        }
        let mut total: Option<tch::Tensor> = None;
        for block in w_dec.f_split_with_sizes(self.decoder_blocks.as_slice(), 1)? {
            let norms = block.f_norm_scalaropt_dim(2, [1], false)?;
            total = Some(match total {
                Some(t) => t.f_add(&norms)?,
                None => norms,
            });
        }
        total.ok_or_else(|| Error::invalid("a decoder without blocks"))
    }

    /// The skip connection's contribution W_skip·x, when there is one.
    pub fn skip(&self, x: &tch::Tensor) -> Result<Option<tch::Tensor>> {
        match &self.w_skip {
            Some(w) => Ok(Some(x.f_linear::<tch::Tensor>(w.inner(), None)?)),
            None => Ok(None),
        }
    }
}
