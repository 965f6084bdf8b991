//! Language models read from GGUF files: the file format and the tokenizer
//! stored in its metadata.
pub mod gguf;
pub mod tokenizer;

pub use gguf::{GgufError, GgufFile};
pub use tokenizer::{Tokenizer, TokenizerError};
