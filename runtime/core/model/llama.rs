//! The llama architecture (SmolLM2, Llama 2/3, ...) in tch, read top to
//! bottom: Rope → Attention → Mlp → Block → Llama. The hyper-parameters are
//! in `llama_config.rs`; the batches and the KV cache that feed it are in
//! `batch.rs`.
//!
//! Weights come from a GGUF file, dequantised to f32, and the matrices are
//! kept in the precision's compute dtype: in bf16 the matmuls run on bf16
//! inputs (libtorch accumulates in f32), while the residual stream, the
//! norms, RoPE and the logits stay f32. Parameter names follow
//! the checkpoint (`blk.{i}.attn_q.weight`); each part has `load` and
//! `forward`, as in candle's `models/llama.rs`. The maths matches Hugging
//! Face's `modeling_llama.py`, which the reference fixture in
//! `tests/fixtures/model/` was produced with.
use crate::model::batch::LayerCache;
use crate::model::batch::{causal_mask, Pending};
pub use crate::model::batch::{Batch, KvCache, Padding};
use crate::model::gguf::GgufFile;
use crate::model::hooks::{Hooks, Site};
pub use crate::model::llama_config::Config;
use crate::precision::Precision;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Tensor `name` as f32 on `device`, checked against the shape the config implies.
fn weight(gguf: &GgufFile, name: &str, shape: &[usize], device: Device) -> Result<Tensor> {
    let (found, values) = gguf.tensor_f32(name)?;
    if found != shape {
        return Err(Error::invalid(format!(
            "tensor {name} has shape {found:?}, but the config implies {shape:?}"
        )));
    }
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_slice(&values)?
        .f_reshape(dims)?
        .f_to(device)?)
}

/// A matrix in the precision's compute dtype (bf16 or f32).
fn matrix(w: Tensor, precision: Precision) -> Result<Tensor> {
    Ok(w.f_to_kind(precision.compute_kind())?)
}

/// `x` in `kind`, without a copy when it already is.
fn as_kind(x: &Tensor, kind: Kind) -> Result<Tensor> {
    if x.kind() == kind {
        Ok(x.shallow_clone())
    } else {
        Ok(x.f_to_kind(kind)?)
    }
}

/// `x @ wᵀ` in `w`'s dtype: the input is cast to the weight's dtype, so an
/// f32 residual meets bf16 weights as bf16 (and the result is bf16).
fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(as_kind(x, w.kind())?.f_linear::<Tensor>(w, None)?)
}

/// `x` as f32, without a copy when it already is.
fn to_f32(x: Tensor) -> Result<Tensor> {
    as_kind(&x, Kind::Float)
}

/// llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`)
/// reorders each head's Q and K rows so that the rotated pairs (i, i + d/2)
/// of Hugging Face's `rotate_half` become adjacent rows (2i, 2i + 1), the
/// layout ggml's RoPE rotates. We undo it at load, so the model, its
/// activations and the reference implementation all use Hugging Face's layout.
pub fn unpermute_rope_rows(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.size2()?;
    let n_heads = n_heads as i64;
    let half = rows / n_heads / 2;
    Ok(w.f_reshape([n_heads, half, 2, cols])?
        .f_transpose(1, 2)?
        .f_reshape([rows, cols])?)
}

/// RMSNorm: `x / sqrt(mean(x²) + eps) * weight`.
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(gguf: &GgufFile, name: &str, cfg: &Config, device: Device) -> Result<Self> {
        Ok(RmsNorm {
            weight: weight(gguf, name, &[cfg.d_model], device)?,
            eps: cfg.rms_eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_rms_norm([self.weight.size()[0]], Some(&self.weight), self.eps)?)
    }
}

/// Rotary position embeddings in Hugging Face's `rotate_half` layout, with
/// cos/sin tables for every position up to the context length.
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(cfg: &Config, device: Device) -> Result<Self> {
        // As in transformers: inv_freq and the angles in f32, so the tables match bit for bit.
        let f32_on = (Kind::Float, device);
        let exponents = Tensor::f_arange_start_step(0, cfg.head_dim as i64, 2, f32_on)?
            .f_div_scalar(cfg.head_dim as f64)?;
        let inv_freq = Tensor::f_full([1], cfg.rope_base, f32_on)?
            .f_pow(&exponents)?
            .f_reciprocal()?;
        let positions = Tensor::f_arange(cfg.context_length as i64, f32_on)?;
        let angles = positions.f_outer(&inv_freq)?;
        let angles = Tensor::f_cat(&[&angles, &angles], -1)?;
        Ok(Rope {
            cos: angles.f_cos()?,
            sin: angles.f_sin()?,
        })
    }

    /// Rotates `x` `[batch, heads, T, head_dim]` by the angles of `positions` `[batch, T]`.
    fn apply(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (batch, _, t, head_dim) = x.size4()?;
        let flat = positions.f_reshape([-1])?;
        let cos = self
            .cos
            .f_index_select(0, &flat)?
            .f_reshape([batch, 1, t, head_dim])?;
        let sin = self
            .sin
            .f_index_select(0, &flat)?
            .f_reshape([batch, 1, t, head_dim])?;
        let halves = x.f_split(head_dim / 2, -1)?;
        let rotated = Tensor::f_cat(&[&halves[1].f_neg()?, &halves[0]], -1)?;
        Ok(x.f_mul(&cos)?.f_add(&rotated.f_mul(&sin)?)?)
    }
}

/// Grouped-query self-attention. Q, K and V are one fused matrix so a
/// token's three projections are one matmul (a CPU-throughput choice).
struct Attention {
    qkv: Tensor,
    output: Tensor,
    n_heads: i64,
    n_kv_heads: i64,
    head_dim: i64,
}

/// What every attention layer of one forward pass shares.
struct AttentionContext<'a> {
    rope: &'a Rope,
    positions: Tensor,
    /// `None` for a plain causal pass; otherwise which keys each query may see.
    mask: Option<Tensor>,
}

impl Attention {
    fn load(gguf: &GgufFile, i: usize, cfg: &Config, device: Device, p: Precision) -> Result<Self> {
        let kv_rows = cfg.n_kv_heads * cfg.head_dim;
        let d = cfg.d_model;
        let q = weight(gguf, &format!("blk.{i}.attn_q.weight"), &[d, d], device)?;
        let k = weight(
            gguf,
            &format!("blk.{i}.attn_k.weight"),
            &[kv_rows, d],
            device,
        )?;
        let v = weight(
            gguf,
            &format!("blk.{i}.attn_v.weight"),
            &[kv_rows, d],
            device,
        )?;
        let q = unpermute_rope_rows(&q, cfg.n_heads)?;
        let k = unpermute_rope_rows(&k, cfg.n_kv_heads)?;
        let output = weight(
            gguf,
            &format!("blk.{i}.attn_output.weight"),
            &[d, d],
            device,
        )?;
        Ok(Attention {
            qkv: matrix(Tensor::f_cat(&[&q, &k, &v], 0)?, p)?,
            output: matrix(output, p)?,
            n_heads: cfg.n_heads as i64,
            n_kv_heads: cfg.n_kv_heads as i64,
            head_dim: cfg.head_dim as i64,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        ctx: &AttentionContext,
        cache: Option<&mut LayerCache>,
    ) -> Result<Tensor> {
        let (batch, t, _) = x.size3()?;
        let q_width = self.n_heads * self.head_dim;
        let kv_width = self.n_kv_heads * self.head_dim;
        let qkv = linear(x, &self.qkv)?;
        let parts = qkv.f_split_with_sizes([q_width, kv_width, kv_width], -1)?;
        let heads = |t_: &Tensor, n: i64| -> Result<Tensor> {
            Ok(t_
                .f_reshape([batch, t, n, self.head_dim])?
                .f_transpose(1, 2)?)
        };
        // RoPE's tables are f32, so the rotation is too; attention then
        // runs in the weights' dtype.
        let kind = self.qkv.kind();
        let q = ctx
            .rope
            .apply(&heads(&parts[0], self.n_heads)?, &ctx.positions)?;
        let q = as_kind(&q, kind)?;
        let mut k = ctx
            .rope
            .apply(&heads(&parts[1], self.n_kv_heads)?, &ctx.positions)?;
        k = as_kind(&k, kind)?;
        let mut v = heads(&parts[2], self.n_kv_heads)?;
        if let Some(cache) = cache {
            (k, v) = cache.append(k, v)?;
        }
        let (k, v) = (self.repeat_kv(&k)?, self.repeat_kv(&v)?);
        let causal = ctx.mask.is_none() && cache_free(&q, &k)?;
        let y = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            ctx.mask.as_ref(),
            0.0,
            causal,
            None,
            false,
        )?;
        let y = y.f_transpose(1, 2)?.f_reshape([batch, t, q_width])?;
        linear(&y, &self.output)
    }

    /// Each key/value head serves `n_heads / n_kv_heads` consecutive query
    /// heads (transformers' `repeat_kv`).
    fn repeat_kv(&self, x: &Tensor) -> Result<Tensor> {
        let group = self.n_heads / self.n_kv_heads;
        if group == 1 {
            return Ok(x.shallow_clone());
        }
        let (batch, n_kv, s, d) = x.size4()?;
        Ok(x.f_unsqueeze(2)?
            .f_expand([batch, n_kv, group, s, d], false)?
            .f_reshape([batch, n_kv * group, s, d])?)
    }
}

/// With no cached keys, queries and keys line up and SDPA's own causal mask applies.
fn cache_free(q: &Tensor, k: &Tensor) -> Result<bool> {
    Ok(q.size4()?.2 == k.size4()?.2)
}

/// The SwiGLU MLP: `down(silu(gate(x)) * up(x))`, gate and up fused into one matmul.
struct Mlp {
    gate_up: Tensor,
    down: Tensor,
    d_mlp: i64,
}

impl Mlp {
    fn load(gguf: &GgufFile, i: usize, cfg: &Config, device: Device, p: Precision) -> Result<Self> {
        let (d, h) = (cfg.d_model, cfg.d_mlp);
        let gate = weight(gguf, &format!("blk.{i}.ffn_gate.weight"), &[h, d], device)?;
        let up = weight(gguf, &format!("blk.{i}.ffn_up.weight"), &[h, d], device)?;
        let down = weight(gguf, &format!("blk.{i}.ffn_down.weight"), &[d, h], device)?;
        Ok(Mlp {
            gate_up: matrix(Tensor::f_cat(&[&gate, &up], 0)?, p)?,
            down: matrix(down, p)?,
            d_mlp: h as i64,
        })
    }

    /// The hidden activations: one value per neuron and position.
    fn neurons(&self, x: &Tensor) -> Result<Tensor> {
        let gate_up = linear(x, &self.gate_up)?;
        let parts = gate_up.f_split(self.d_mlp, -1)?;
        Ok(parts[0].f_silu()?.f_mul(&parts[1])?)
    }

    fn project(&self, neurons: &Tensor) -> Result<Tensor> {
        linear(neurons, &self.down)
    }
}

/// One transformer block: pre-norm attention, then pre-norm MLP, each added to the residual.
struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    mlp: Mlp,
    layer: usize,
}

impl Block {
    fn load(gguf: &GgufFile, i: usize, cfg: &Config, device: Device, p: Precision) -> Result<Self> {
        Ok(Block {
            attn_norm: RmsNorm::load(gguf, &format!("blk.{i}.attn_norm.weight"), cfg, device)?,
            attn: Attention::load(gguf, i, cfg, device, p)?,
            ffn_norm: RmsNorm::load(gguf, &format!("blk.{i}.ffn_norm.weight"), cfg, device)?,
            mlp: Mlp::load(gguf, i, cfg, device, p)?,
            layer: i,
        })
    }

    fn forward(
        &self,
        x: Tensor,
        ctx: &AttentionContext,
        cache: Option<&mut LayerCache>,
        hooks: &Hooks,
        reads: &mut [Option<Tensor>],
    ) -> Result<Tensor> {
        let hooked = hooks.touches(self.layer);
        let visit = |site: Site, x: Tensor, reads: &mut [Option<Tensor>]| {
            if hooked {
                hooks.visit(site, x, reads)
            } else {
                Ok(x)
            }
        };
        let residual = visit(Site::resid_pre(self.layer), x, reads)?;
        let x = self
            .attn
            .forward(&self.attn_norm.forward(&residual)?, ctx, cache)?
            .f_add(&residual)?;
        let mlp_in = visit(Site::mlp_in(self.layer), self.ffn_norm.forward(&x)?, reads)?;
        let neurons = self.mlp.neurons(&mlp_in)?;
        let neurons = visit(Site::mlp(self.layer), neurons, reads)?;
        let mlp_out = visit(
            Site::mlp_out(self.layer),
            self.mlp.project(&neurons)?,
            reads,
        )?;
        let x = mlp_out.f_add(&x)?;
        visit(Site::resid_post(self.layer), x, reads)
    }
}

/// Which logits a forward pass computes; the unembedding is the largest
/// matmul in a small model, so generation asks only for the last position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// None: stop after the deepest hooked layer.
    Skip,
    /// `[batch, vocab]` at each sequence's last real token.
    Last,
    /// `[batch, T, vocab]`.
    All,
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct Forward {
    /// Present unless `Logits::Skip` was asked for.
    pub logits: Option<Tensor>,
    /// One `[batch, T, width]` tensor per `Hooks::read` site, in that order.
    pub activations: Vec<Tensor>,
}

/// A llama model with its weights on one device.
pub struct Llama {
    pub config: Config,
    embedding: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// The unembedding: `output.weight`, or the token embedding when tied (SmolLM2).
    head: Option<Tensor>,
    rope: Rope,
    device: Device,
    precision: Precision,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("config", &self.config)
            .field("device", &self.device)
            .field("precision", &self.precision)
            .finish()
    }
}

impl Llama {
    /// Loads every weight of `gguf`, dequantised, onto `device`, with the
    /// matrices (embedding and head included) in `precision`'s compute dtype.
    pub fn load(gguf: &GgufFile, device: Device, precision: Precision) -> Result<Self> {
        let cfg = Config::from_gguf(gguf)?;
        let vocab_by_width = [cfg.vocab_size, cfg.d_model];
        let embedding = weight(gguf, "token_embd.weight", &vocab_by_width, device)?;
        let head = match gguf.tensor_info("output.weight") {
            Some(_) => Some(weight(gguf, "output.weight", &vocab_by_width, device)?),
            None => None,
        };
        let blocks = (0..cfg.n_layers)
            .map(|i| Block::load(gguf, i, &cfg, device, precision))
            .collect::<Result<Vec<_>>>()?;
        Ok(Llama {
            norm: RmsNorm::load(gguf, "output_norm.weight", &cfg, device)?,
            rope: Rope::new(&cfg, device)?,
            embedding: matrix(embedding, precision)?,
            blocks,
            head: head.map(|h| matrix(h, precision)).transpose()?,
            config: cfg,
            device,
            precision,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The precision the matrices compute in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs `batch` through the model. Reads stop the pass at the deepest
    /// hooked layer when `logits` is `Skip`; with a `cache`, the batch
    /// continues the sequences already in it.
    pub fn forward(
        &self,
        batch: &Batch,
        hooks: &Hooks,
        logits: Logits,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Forward> {
        hooks.check(self.config.n_layers)?;
        let t = batch.ids.size2()?.1;
        self.check_ids(&batch.ids)?;
        let past = cache.as_ref().map_or(0, |c| c.len);
        if past + t > self.config.context_length as i64 {
            return Err(Error::invalid(format!(
                "{} tokens exceed the model's context of {}",
                past + t,
                self.config.context_length
            )));
        }
        let (positions, mask) = self.positions_and_mask(batch, cache.as_deref_mut())?;
        let ctx = AttentionContext {
            rope: &self.rope,
            positions,
            mask,
        };
        // A cache must see every layer, so only a cache-free pass stops early.
        let depth = match logits {
            Logits::Skip if cache.is_none() => hooks.blocks_needed(),
            _ => self.blocks.len(),
        };
        let _tf32 = self.precision.matmul_guard();
        let mut reads: Vec<Option<Tensor>> = hooks.read.iter().map(|_| None).collect();
        // The residual stream is f32 whatever the matrices compute in.
        let mut x = to_f32(Tensor::f_embedding(
            &self.embedding,
            &batch.ids.f_to(self.device)?,
            -1,
            false,
            false,
        )?)?;
        for block in &self.blocks[..depth] {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[block.layer]);
            x = block.forward(x, &ctx, layer_cache, hooks, &mut reads)?;
        }
        // The residual after the last block run: `resid_pre` of the block not run.
        x = hooks.visit(Site::resid_pre(depth), x, &mut reads)?;
        if let Some(cache) = cache {
            cache.commit(t);
        }
        let logits = match logits {
            Logits::Skip => None,
            Logits::Last => Some(self.unembed(&batch.last_positions(&x)?)?),
            Logits::All => Some(self.unembed(&x)?),
        };
        let activations = reads
            .into_iter()
            .zip(&hooks.read)
            .map(|(read, site)| {
                read.ok_or_else(|| Error::invalid(format!("{site} was not reached")))
            })
            .collect::<Result<_>>()?;
        Ok(Forward {
            logits,
            activations,
        })
    }

    /// Ids outside the embedding would be a libtorch index error; say which id instead.
    fn check_ids(&self, ids: &Tensor) -> Result<()> {
        let (min, max) = (
            ids.f_min()?.f_int64_value(&[])?,
            ids.f_max()?.f_int64_value(&[])?,
        );
        let vocab = self.config.vocab_size as i64;
        match [min, max].into_iter().find(|id| *id < 0 || *id >= vocab) {
            Some(id) => Err(Error::invalid(format!(
                "token id {id} is outside the model's vocabulary of {vocab}"
            ))),
            None => Ok(()),
        }
    }

    /// The logits a residual-stream direction adds directly, [vocab]: the
    /// unembedding of the direction scaled by the final norm's gain (the
    /// norm's division by the residual's size is left out, as in the
    /// paper's logit effects).
    pub fn direct_logits(&self, direction: &Tensor) -> Result<Tensor> {
        let head = self.head.as_ref().unwrap_or(&self.embedding);
        let scaled = direction.f_mul(&self.norm.weight)?.f_to_kind(head.kind())?;
        to_f32(head.f_mv(&scaled)?)
    }

    /// Logits in f32, whatever the head computes in.
    fn unembed(&self, x: &Tensor) -> Result<Tensor> {
        let head = self.head.as_ref().unwrap_or(&self.embedding);
        to_f32(linear(&self.norm.forward(x)?, head)?)
    }

    /// Positions count real tokens only, so left-padded rows start at 0. A
    /// mask is built only when padding or cached keys make SDPA's own causal
    /// mask wrong; with a cache, the new state waits in `pending` until the
    /// pass succeeds.
    fn positions_and_mask(
        &self,
        batch: &Batch,
        cache: Option<&mut KvCache>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let device = self.device;
        let (batch_size, t) = batch.ids.size2()?;
        let new_mask = match &batch.mask {
            Some(mask) => mask.f_to(device)?,
            None => Tensor::f_ones([batch_size, t], (Kind::Bool, device))?,
        };
        let (past, seen) = match &cache {
            Some(c) if c.len > 0 => (c.len, c.seen.f_unsqueeze(1)?),
            _ => (0, Tensor::f_zeros([batch_size, 1], (Kind::Int64, device))?),
        };
        let past_keys = cache.as_ref().and_then(|c| c.key_mask.as_ref());
        let positions = new_mask
            .f_cumsum(1, Kind::Int64)?
            .f_add(&seen)?
            .f_sub_scalar(1)?
            .f_clamp_min(0)?;
        let padded = batch.mask.is_some() || past_keys.is_some();
        let keys = if padded || (past > 0 && t > 1) {
            let past_keys = match past_keys {
                Some(keys) => keys.shallow_clone(),
                None => Tensor::f_ones([batch_size, past], (Kind::Bool, device))?,
            };
            Some(Tensor::f_cat(&[&past_keys, &new_mask], 1)?)
        } else {
            None
        };
        let mask = keys.as_ref().map(|k| causal_mask(k, past)).transpose()?;
        if let Some(cache) = cache {
            cache.pending = Some(Pending {
                seen: positions.f_select(1, t - 1)?.f_add_scalar(1)?,
                key_mask: keys.filter(|_| padded),
            });
        }
        Ok((positions, mask))
    }
}

#[cfg(test)]
#[path = "llama_tests.rs"]
mod tests;
