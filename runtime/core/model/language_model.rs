//! A language model ready for text: llama weights and the tokenizer, both
//! read from one GGUF file. This is what scripts hold as `Model`.
use crate::corpus::Window;
use crate::model::generate::{chat_prompt, generate_ids, GenerateOptions};
use crate::model::gguf::GgufFile;
use crate::model::hooks::{HookPoint, Hooks, Site};
use crate::model::llama::{Batch, Forward, Llama, Logits, Padding};
use crate::model::tokenizer::Tokenizer;
use crate::precision::Precision;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The model `setup/fetch-model.sh` puts in the cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The per-user cache that the set-up scripts fill: `$SAELAB_CACHE`, else
/// `$XDG_CACHE_HOME/saelab`, else `~/.cache/saelab` (as in `setup/*.sh`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SAELAB_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("saelab")
}

/// Where `load_model()` looks when given no path.
pub fn default_model_path() -> PathBuf {
    cache_dir().join("models").join(DEFAULT_MODEL_FILE)
}

/// Llama weights plus the tokenizer they were trained with.
pub struct Model {
    pub llama: Llama,
    pub tokenizer: Tokenizer,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// `general.name` from the metadata, or the file name.
    pub name: String,
    /// Ids that end a generation (EOS and the end-of-turn tokens in the vocabulary).
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("config", &self.llama.config)
            .finish()
    }
}

impl Model {
    /// Loads a llama-architecture GGUF onto `device`, its matrices in
    /// `precision`'s compute dtype (f32, or bf16 with an f32 residual stream).
    pub fn load(path: impl AsRef<Path>, device: Device, precision: Precision) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            let hint = if path == default_model_path() {
                " (run setup/fetch-model.sh or `make setup` to fetch it)"
            } else {
                ""
            };
            return Err(Error::invalid(format!(
                "no model file at {}{hint}",
                path.display()
            )));
        }
        precision.warn_if_emulated(device);
        let gguf = GgufFile::open(path)?;
        let llama = Llama::load(&gguf, device, precision)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        if tokenizer.vocab_size() > llama.config.vocab_size {
            return Err(Error::invalid(format!(
                "the tokenizer has {} tokens but the model only {} embeddings",
                tokenizer.vocab_size(),
                llama.config.vocab_size
            )));
        }
        let name = gguf
            .get_str("general.name")
            .map(str::to_string)
            .unwrap_or_else(|_| {
                path.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            });
        let stop_ids = stop_ids(&tokenizer);
        Ok(Model {
            llama,
            tokenizer,
            path: path.to_path_buf(),
            name,
            stop_ids,
        })
    }

    /// The default model from the cache, in f32.
    pub fn load_default(device: Device) -> Result<Self> {
        Self::load(default_model_path(), device, Precision::F32)
    }

    /// The precision its matrices compute in.
    pub fn precision(&self) -> Precision {
        self.llama.precision()
    }

    pub fn n_layers(&self) -> usize {
        self.llama.config.n_layers
    }

    pub fn d_model(&self) -> usize {
        self.llama.config.d_model
    }

    /// Width of the activation at `site`: d_mlp for the MLP's neurons, d_model elsewhere.
    pub fn site_width(&self, site: Site) -> usize {
        match site.point {
            HookPoint::Mlp => self.llama.config.d_mlp,
            _ => self.d_model(),
        }
    }

    /// Rows of the output head: the length of a next-token distribution.
    pub fn vocab_size(&self) -> usize {
        self.llama.config.vocab_size
    }

    /// Token ids of `text`, with BOS first only when the file's
    /// `tokenizer.ggml.add_bos_token` says so (as llama.cpp and transformers do).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, self.tokenizer.add_bos_token())?)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(self.tokenizer.decode(ids)?)
    }

    /// Token ids of a text the model will run on: as `encode`, but never empty.
    pub fn tokens_to_run(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.encode(text)?;
        if ids.is_empty() {
            return Err(Error::invalid(
                "the text is empty: there are no tokens to run the model on",
            ));
        }
        Ok(ids)
    }

    /// Runs token sequences of any lengths as one right-padded batch.
    pub fn run(&self, sequences: &[Vec<u32>], hooks: &Hooks, logits: Logits) -> Result<Forward> {
        let pad = self
            .tokenizer
            .pad_id()
            .or(self.tokenizer.eos_id())
            .unwrap_or(0);
        let batch = Batch::pad(sequences, pad, Padding::Right)?;
        self.llama.forward(&batch, hooks, logits, None)
    }

    /// Logits `[T, vocab]` for every position of `text`.
    pub fn logits(&self, text: &str) -> Result<Tensor> {
        self.logits_with(text, &Hooks::default())
    }

    /// Logits `[T, vocab]` for every position of `text`, with `hooks` editing the run.
    pub fn logits_with(&self, text: &str, hooks: &Hooks) -> Result<Tensor> {
        let out = self.run(&[self.tokens_to_run(text)?], hooks, Logits::All)?;
        let logits = out
            .logits
            .ok_or_else(|| Error::invalid("the model returned no logits"))?;
        Ok(logits.f_squeeze_dim(0)?)
    }

    /// The activation at `site` for every position of `text`: `[T, width]`.
    /// The forward stops at the deepest layer needed.
    pub fn activations(&self, text: &str, site: Site) -> Result<Tensor> {
        self.activations_with(text, site, Hooks::default())
    }

    /// `activations` with `hooks` editing the run (their reads are replaced
    /// by the one of `site`).
    pub fn activations_with(&self, text: &str, site: Site, hooks: Hooks) -> Result<Tensor> {
        let hooks = Hooks {
            read: vec![site],
            ..hooks
        };
        let mut out = self.run(&[self.tokens_to_run(text)?], &hooks, Logits::Skip)?;
        let activation = out
            .activations
            .pop()
            .ok_or_else(|| Error::invalid(format!("{site} was not read")))?;
        Ok(activation.f_squeeze_dim(0)?)
    }

    /// Names of the tensors in the model file, without the ".weight" suffix
    /// (`blk.3.ffn_up`, `output_norm`, ...).
    pub fn weight_names(&self) -> Result<Vec<String>> {
        let gguf = GgufFile::open(&self.path)?;
        Ok(gguf
            .tensor_infos()
            .iter()
            .map(|info| info.name.trim_end_matches(".weight").to_string())
            .collect())
    }

    /// A tensor of the model file as stored, dequantised to f32 on the
    /// model's device; "output" is the unembedding even when it is tied to
    /// the token embedding. (Q and K rows keep llama.cpp's order.)
    pub fn weight(&self, name: &str) -> Result<Tensor> {
        let gguf = GgufFile::open(&self.path)?;
        let mut full = if name.ends_with(".weight") || name.ends_with(".bias") {
            name.to_string()
        } else {
            format!("{name}.weight")
        };
        if full == "output.weight" && gguf.tensor_info(&full).is_none() {
            full = "token_embd.weight".to_string();
        }
        if gguf.tensor_info(&full).is_none() {
            return Err(Error::invalid(format!(
                "the model has no tensor '{name}' (m.weight_names() lists them)"
            )));
        }
        let (shape, values) = gguf.tensor_f32(&full)?;
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        Ok(Tensor::f_from_slice(&values)?
            .f_reshape(dims)?
            .f_to(self.llama.device())?)
    }

    /// The prompt as the model will see it: wrapped in its chat template when `chat`.
    pub fn prompt_text(&self, prompt: &str, chat: bool) -> Result<String> {
        if !chat {
            return Ok(prompt.to_string());
        }
        let spelled =
            |id: Option<u32>| id.and_then(|id| self.tokenizer.token_str(id)).unwrap_or("");
        chat_prompt(
            self.tokenizer.chat_template(),
            prompt,
            spelled(self.tokenizer.bos_id()),
            spelled(self.tokenizer.eos_id()),
        )
    }

    /// Continues `prompt` and returns only the new text.
    pub fn generate(
        &self,
        prompt: &str,
        options: &GenerateOptions,
        hooks: &Hooks,
    ) -> Result<String> {
        let text = self.prompt_text(prompt, options.chat)?;
        let ids = self.tokens_to_run(&text)?;
        let generated = generate_ids(&self.llama, &ids, options, &self.stop_ids, hooks)?;
        self.decode(&generated)
    }
}

/// Perplexity: exp of the mean next-token cross-entropy over windows
/// (every real token after the first of its window is predicted), stopping
/// after `max_tokens` predictions; `hooks` may edit the model (their reads
/// are ignored).
pub fn perplexity(
    model: &Model,
    windows: impl Iterator<Item = Result<Window>>,
    max_tokens: usize,
    batch_size: usize,
    hooks: &Hooks,
) -> Result<Perplexity> {
    let mut windows = windows;
    let (mut nll, mut predicted) = (0.0f64, 0usize);
    while predicted < max_tokens {
        crate::interrupt::check()?;
        let batch = windows
            .by_ref()
            .take(batch_size.max(1))
            .collect::<Result<Vec<Window>>>()?;
        if batch.is_empty() {
            break;
        }
        let sequences: Vec<Vec<u32>> = batch.iter().map(|w| w.tokens.clone()).collect();
        let out = model.run(&sequences, hooks, Logits::All)?;
        let logits = out
            .logits
            .ok_or_else(|| Error::invalid("the model returned no logits"))?;
        let log_probs = logits.f_log_softmax(-1, tch::Kind::Float)?;
        for (b, window) in batch.iter().enumerate() {
            let n = (window.tokens.len() - 1).min(max_tokens - predicted);
            let targets: Vec<i64> = window.tokens[1..=n].iter().map(|&id| id as i64).collect();
            let rows = log_probs.f_get(b as i64)?.f_narrow(0, 0, n as i64)?;
            let picked =
                rows.f_gather(1, &Tensor::f_from_slice(&targets)?.f_unsqueeze(1)?, false)?;
            nll -= picked.f_sum(tch::Kind::Double)?.f_double_value(&[])?;
            predicted += n;
        }
    }
    if predicted == 0 {
        return Err(Error::invalid(
            "perplexity: the corpus gave no tokens to predict",
        ));
    }
    Ok(Perplexity {
        perplexity: (nll / predicted as f64).exp(),
        tokens: predicted,
    })
}

/// The result of [`perplexity`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    pub perplexity: f64,
    /// Tokens predicted.
    pub tokens: usize,
}

/// EOS, plus the end-of-turn / end-of-text tokens an instruct model may emit
/// instead (llama.cpp's "end of generation" set does the same).
fn stop_ids(tokenizer: &Tokenizer) -> Vec<u32> {
    let mut ids: Vec<u32> = tokenizer.eos_id().into_iter().collect();
    for token in [
        "<|endoftext|>",
        "<|im_end|>",
        "<|eot_id|>",
        "<|end_of_text|>",
        "<end_of_turn>",
    ] {
        if let Some(id) = tokenizer.token_id(token) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}
