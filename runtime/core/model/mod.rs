//! Language models read from GGUF files: the file format, the tokenizer
//! stored in its metadata, the llama architecture in tch, the hooks that read
//! and edit its activations, and generation.
pub mod batch;
pub mod generate;
pub mod gguf;
pub mod hooks;
pub mod language_model;
pub mod llama;
pub mod llama_config;
pub mod splice;
pub mod splice_sites;
pub mod tokenizer;

pub use generate::GenerateOptions;
pub use gguf::{GgufError, GgufFile};
pub use hooks::{Edit, HookPoint, Hooks, Site};
pub use language_model::{cache_dir, default_model_path, perplexity, Model, Perplexity};
pub use llama::{Batch, Config, Forward, KvCache, Llama, Logits, Padding};
pub use splice::{SpliceLoss, SpliceProbe, SpliceWindow};
pub use splice_sites::{SitesProbe, SitesReplacement};
pub use tokenizer::{Tokenizer, TokenizerError};
