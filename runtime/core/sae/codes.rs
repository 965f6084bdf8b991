//! Feature activations as architectures produce them — dense, or as the k
//! active features of each token — and the decoder that turns either back
//! into activations.
use super::Weights;
use crate::Result;
use tch::Kind;

/// Feature activations, dense or as the k active ones per token.
pub enum Codes {
    /// f, [batch, n_features].
    Dense(tch::Tensor),
    /// The active features of each token: `values` and `indices`, both [batch, k].
    Sparse {
        values: tch::Tensor,
        indices: tch::Tensor,
        n_features: i64,
    },
}

impl Codes {
    /// f as a dense [batch, n_features] tensor.
    pub fn to_dense(&self) -> Result<tch::Tensor> {
        match self {
            Codes::Dense(f) => Ok(f.shallow_clone()),
            Codes::Sparse {
                values,
                indices,
                n_features,
            } => {
                let batch = values.size()[0];
                let dense = tch::Tensor::f_zeros(
                    [batch, *n_features],
                    (values.f_kind()?, values.device()),
                )?;
                Ok(dense.f_scatter(1, indices, values)?)
            }
        }
    }

    /// The same codes with their values in `kind` (indices unchanged).
    pub fn to_kind(self, kind: Kind) -> Result<Codes> {
        Ok(match self {
            Codes::Dense(f) if f.f_kind()? == kind => Codes::Dense(f),
            Codes::Dense(f) => Codes::Dense(f.f_totype(kind)?),
            Codes::Sparse {
                values,
                indices,
                n_features,
            } => Codes::Sparse {
                values: values.f_totype(kind)?,
                indices,
                n_features,
            },
        })
    }

    /// Mean number of active features per token (L0). One comparison and
    /// one integer sum over f: libtorch's count_nonzero and float sums over
    /// booleans measured several times slower on the CPU.
    pub fn l0(&self) -> Result<tch::Tensor> {
        let _guard = tch::no_grad_guard();
        let (codes, batch) = match self {
            Codes::Dense(f) => (f, f.size()[0]),
            Codes::Sparse { values, .. } => (values, values.size()[0]),
        };
        let active = codes.f_gt(0.0)?.f_sum(Kind::Int64)?.f_totype(Kind::Float)?;
        Ok(active.f_div_scalar(batch.max(1) as f64)?)
    }

    /// Which features fired at least once in this batch, [n_features] bool.
    /// For dense codes a column maximum, cheaper than counting.
    pub fn fired(&self) -> Result<tch::Tensor> {
        let _guard = tch::no_grad_guard();
        match self {
            Codes::Dense(f) => Ok(f.f_amax([0i64].as_slice(), false)?.f_gt(0.0)?),
            Codes::Sparse { .. } => Ok(self.firing_counts()?.f_gt(0.0)?),
        }
    }

    /// How often each feature fired in this batch, [n_features] (f32 counts).
    pub fn firing_counts(&self) -> Result<tch::Tensor> {
        let _guard = tch::no_grad_guard();
        match self {
            Codes::Dense(f) => {
                Ok(f.f_gt(0.0)?
                    .f_sum_dim_intlist([0i64].as_slice(), false, Kind::Float)?)
            }
            Codes::Sparse {
                values,
                indices,
                n_features,
            } => {
                let fired = values.f_gt(0.0)?.f_totype(Kind::Float)?.f_reshape([-1])?;
                let counts = tch::Tensor::f_zeros([*n_features], (Kind::Float, values.device()))?;
                Ok(counts.f_index_add(0, &indices.f_reshape([-1])?, &fired)?)
            }
        }
    }

    /// x̂ = f·W_dec + b_dec. Sparse codes decode by summing only the k active
    /// decoder rows (an embedding bag), never building the dense f — the
    /// decoder's forward and backward cost O(batch·k·d_in) instead of
    /// O(batch·n_features·d_in).
    pub fn decode(&self, w: &Weights) -> Result<tch::Tensor> {
        match self {
            Codes::Dense(f) => Ok(w.b_dec.inner().f_addmm(f, w.w_dec.inner())?),
            Codes::Sparse {
                values, indices, ..
            } if values.f_kind()? == Kind::BFloat16 => {
                // libtorch has no CUDA backward of embedding_bag's per-sample
                // weights in bf16: gather the k rows and weight them with a
                // batched product instead (O(batch·k·d_in) either way).
                let rows = tch::Tensor::f_embedding(w.w_dec.inner(), indices, -1, false, false)?; // [batch, k, d_in]
                let sum = values.f_unsqueeze(1)?.f_bmm(&rows)?.f_squeeze_dim(1)?;
                Ok(sum.f_add(w.b_dec.inner())?)
            }
            Codes::Sparse {
                values, indices, ..
            } => {
                let (batch, k) = (values.size()[0], values.size()[1]);
                let offsets = tch::Tensor::f_arange_start_step(
                    0,
                    batch * k,
                    k.max(1),
                    (Kind::Int64, values.device()),
                )?;
                let (sum, _, _, _) = tch::Tensor::f_embedding_bag(
                    w.w_dec.inner(),
                    &indices.f_reshape([-1])?,
                    &offsets,
                    false,
                    0, // mode "sum": per-sample weights are the activations
                    false,
                    Some(values.f_reshape([-1])?),
                    false,
                )?;
                Ok(sum.f_add(w.b_dec.inner())?)
            }
        }
    }
}

/// What an encoder returns: the codes plus what auxiliary losses need.
pub struct Encoded {
    pub codes: Codes,
    /// Pre-activations [batch, n_features] when the architecture computed
    /// them densely (AuxK picks dead features from them); they carry
    /// gradients only where the architecture kept them (TopK's dense path).
    pub pre_activations: Option<tch::Tensor>,
    /// The encoder's input (x, or x − b_dec), kept for recomputing selected
    /// pre-activations with gradients.
    pub input: tch::Tensor,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::{Sae, SaeConfig};

    #[test]
    fn bf16_sparse_codes_decode_like_f32_and_pass_gradients() {
        crate::rng::seed(3);
        let sae = Sae::new(SaeConfig::new("topk", 8, 32).unwrap()).unwrap();
        let values = tch::Tensor::f_rand([5, 4], (Kind::Float, tch::Device::Cpu)).unwrap();
        let indices = tch::Tensor::f_randint(32, [5, 4], (Kind::Int64, tch::Device::Cpu)).unwrap();
        let f32_codes = Codes::Sparse {
            values: values.shallow_clone(),
            indices: indices.shallow_clone(),
            n_features: 32,
        };
        let expected = f32_codes.decode(&sae.weights).unwrap();
        let bf16 = sae.weights.cast(Kind::BFloat16).unwrap();
        let bf16_codes = Codes::Sparse {
            values: values
                .f_totype(Kind::BFloat16)
                .unwrap()
                .set_requires_grad(true),
            indices,
            n_features: 32,
        };
        let decoded = bf16_codes
            .decode(&bf16)
            .unwrap()
            .f_totype(Kind::Float)
            .unwrap();
        let error = (&decoded - &expected).abs().max().double_value(&[]);
        assert!(error < 0.05, "bf16 decode differs by {error}");
        decoded.sum(Kind::Float).backward();
        let Codes::Sparse { values, .. } = bf16_codes else {
            unreachable!()
        };
        assert!(values.grad().defined());
        assert!(sae.weights.w_dec.inner().grad().defined());
    }
}
