//! The llama architecture's hyper-parameters, read from a GGUF file's
//! metadata, with the checks that refuse models saelab cannot run.
use crate::model::gguf::GgufFile;
use crate::{Error, Result};

/// Hyper-parameters, read from the GGUF metadata under `llama.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Number of transformer blocks (30 for SmolLM2-135M).
    pub n_layers: usize,
    /// Width of the residual stream (576).
    pub d_model: usize,
    /// Hidden width of the SwiGLU MLP: its number of neurons (1536).
    pub d_mlp: usize,
    /// Query heads (9).
    pub n_heads: usize,
    /// Key/value heads, each shared by `n_heads / n_kv_heads` query heads (3).
    pub n_kv_heads: usize,
    /// Width of one head (64).
    pub head_dim: usize,
    /// RoPE base frequency θ (100000).
    pub rope_base: f64,
    /// RMSNorm epsilon (1e-5).
    pub rms_eps: f64,
    /// Vocabulary size (49152).
    pub vocab_size: usize,
    /// Longest sequence the model was trained on; RoPE tables stop there (8192).
    pub context_length: usize,
}

impl Config {
    /// Reads the config, refusing files of another architecture.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let arch = gguf.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::invalid(format!(
                "GGUF architecture '{arch}' is not supported: saelab runs llama-architecture models (SmolLM2, Llama)"
            )));
        }
        if let Some(kind) = gguf
            .metadata("llama.rope.scaling.type")
            .and_then(|v| v.as_str())
        {
            if kind != "none" {
                return Err(Error::invalid(format!(
                    "RoPE scaling '{kind}' is not supported"
                )));
            }
        }
        let int =
            |key: &str| -> Result<usize> { Ok(gguf.get_u32(&format!("llama.{key}"))? as usize) };
        let d_model = int("embedding_length")?;
        let n_heads = int("attention.head_count")?;
        let n_kv_heads = int("attention.head_count_kv").or_else(|_| int("attention.head_count"))?;
        if n_heads == 0 || n_kv_heads == 0 || d_model % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(Error::invalid(format!(
                "inconsistent attention: d_model {d_model}, {n_heads} query heads, {n_kv_heads} key/value heads"
            )));
        }
        let head_dim = d_model / n_heads;
        if head_dim % 2 != 0 || int("rope.dimension_count").is_ok_and(|d| d != head_dim) {
            return Err(Error::invalid(
                "partial rotary embeddings are not supported",
            ));
        }
        let vocab_size = match int("vocab_size") {
            Ok(n) => n,
            Err(_) => gguf.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        Ok(Config {
            n_layers: int("block_count")?,
            d_model,
            d_mlp: int("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_base: gguf.get_f64("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: gguf.get_f64("llama.attention.layer_norm_rms_epsilon")?,
            vocab_size,
            context_length: int("context_length").unwrap_or(4096),
        })
    }
}
