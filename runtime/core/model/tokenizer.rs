//! Tokenizer built from a GGUF file's `tokenizer.*` metadata.
//!
//! A GGUF has no `tokenizer.json`: it stores the vocabulary, the BPE merges,
//! each token's type and the special ids under llama.cpp's key names. We
//! rebuild the Hugging Face tokenizer from those with the `tokenizers` crate,
//! so text tokenises exactly as in transformers:
//!
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE over tokens + merges.
//! - `tokenizer.ggml.pre` picks the pre-tokenizer the merges were learned
//!   with. SmolLM2's `"smollm"` splits every digit on its own before the GPT-2
//!   regex (HF's tokenizer.json: `Digits(individual_digits)` then `ByteLevel`;
//!   llama.cpp's `LLAMA_VOCAB_PRE_TYPE_SMOLLM` does the same).
//! - Tokens of type 3 (control: `<|im_start|>`, `<|im_end|>`, …) are special
//!   tokens, matched whole in the text; type 4 (user-defined) are plain added
//!   tokens, also matched whole.

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::gguf::{GgufError, GgufFile};

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's split: letters with one leading non-letter, digits in threes.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: as Llama 3's but every digit on its own.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What went wrong building or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer model {0:?} is not supported (saelab reads \"gpt2\", byte-level BPE)")]
    UnsupportedModel(String),
    #[error("pre-tokenizer {0:?} (tokenizer.ggml.pre) is not supported; known: smollm, starcoder, refact, codeshell, gpt2, llama-bpe, llama3, qwen2")]
    UnsupportedPreTokenizer(String),
    #[error("merge #{index} {merge:?} is not two tokens separated by a space")]
    BadMerge { index: usize, merge: String },
    #[error("tokenizer.ggml.token_type has {found} entries for {expected} tokens")]
    TokenTypeCount { found: usize, expected: usize },
    #[error("{key} = {id} is outside the vocabulary of {vocab_size} tokens")]
    SpecialIdOutOfRange {
        key: &'static str,
        id: i64,
        vocab_size: usize,
    },
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    UnknownId { id: u32, vocab_size: usize },
    #[error("cannot add BOS: the file has no tokenizer.ggml.bos_token_id")]
    NoBos,
    #[error("tokenizers library, {doing}: {message}")]
    Backend {
        doing: &'static str,
        message: String,
    },
}

fn backend(doing: &'static str) -> impl FnOnce(tokenizers::Error) -> TokenizerError {
    move |e| TokenizerError::Backend {
        doing,
        message: e.to_string(),
    }
}

/// A byte-level BPE tokenizer plus the special ids and chat template of its model.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    tokens: Vec<String>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
    add_bos_token: bool,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, TokenizerError> {
        let model = gguf.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
        let bpe = byte_level_bpe(&tokens, &gguf.get_str_array("tokenizer.ggml.merges")?)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let add_prefix_space = optional(gguf.get_bool("tokenizer.ggml.add_space_prefix"))?;
        let pre = optional(gguf.get_str("tokenizer.ggml.pre"))?;
        inner.with_pre_tokenizer(Some(pre_tokenizer(
            pre.unwrap_or("gpt2"),
            add_prefix_space.unwrap_or(false),
        )?));
        inner.with_decoder(Some(ByteLevel::default()));
        add_typed_tokens(&mut inner, gguf, &tokens)?;
        let n = tokens.len();
        Ok(Self {
            bos_id: special_id(gguf, "tokenizer.ggml.bos_token_id", n)?,
            eos_id: special_id(gguf, "tokenizer.ggml.eos_token_id", n)?,
            pad_id: special_id(gguf, "tokenizer.ggml.padding_token_id", n)?,
            add_bos_token: optional(gguf.get_bool("tokenizer.ggml.add_bos_token"))?
                .unwrap_or(false),
            chat_template: optional(gguf.get_str("tokenizer.chat_template"))?.map(str::to_string),
            tokens: tokens.into_iter().map(str::to_string).collect(),
            inner,
        })
    }

    /// Token ids of `text`, with the BOS id first when `add_bos` is set.
    /// Special tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(backend("encoding"))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if add_bos {
            ids.push(self.bos_id.ok_or(TokenizerError::NoBos)?);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// The text of `ids`, special tokens included. A sequence that ends inside
    /// a multi-byte character decodes that character as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.tokens.len()) {
            return Err(TokenizerError::UnknownId {
                id,
                vocab_size: self.tokens.len(),
            });
        }
        self.inner.decode(ids, false).map_err(backend("decoding"))
    }

    /// Beginning-of-sequence id (`<|im_start|>` for SmolLM2-Instruct).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// End-of-sequence id (`<|im_end|>` for SmolLM2-Instruct).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Padding id, if the file names one.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Whether the model expects BOS before plain text (false for SmolLM2).
    pub fn add_bos_token(&self) -> bool {
        self.add_bos_token
    }

    /// Number of tokens, special ones included.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The Jinja chat template stored with the model, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// A token as the vocabulary spells it (byte-level, e.g. `"Ġthe"`).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token spelled as in the vocabulary (e.g. `"<|im_end|>"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// `Ok(None)` for a missing key, so optional metadata can still be mistyped.
fn optional<T>(result: Result<T, GgufError>) -> Result<Option<T>, GgufError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(GgufError::MissingKey(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn byte_level_bpe(tokens: &[&str], merges: &[&str]) -> Result<BPE, TokenizerError> {
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.to_string(), id as u32))
        .collect();
    let merges = merges
        .iter()
        .enumerate()
        .map(|(index, merge)| {
            let bad = || TokenizerError::BadMerge {
                index,
                merge: merge.to_string(),
            };
            let (left, right) = merge.split_once(' ').ok_or_else(bad)?;
            Ok((left.to_string(), right.to_string()))
        })
        .collect::<Result<Vec<_>, TokenizerError>>()?;
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(backend("building the BPE model"))
}

/// The pre-tokenizer for llama.cpp's `tokenizer.ggml.pre` name.
fn pre_tokenizer(pre: &str, add_prefix_space: bool) -> Result<PreTokenizerWrapper, TokenizerError> {
    let byte_level = |use_regex| ByteLevel::new(add_prefix_space, true, use_regex).into();
    let split = |regex: &str| -> Result<PreTokenizerWrapper, TokenizerError> {
        let split = Split::new(
            SplitPattern::Regex(regex.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(backend("compiling the split regex"))?;
        Ok(Sequence::new(vec![split.into(), byte_level(false)]).into())
    };
    match pre {
        "gpt2" | "gpt-2" => Ok(byte_level(true)),
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Ok(Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into())
        }
        "llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "dbrx" | "smaug-bpe" => {
            split(LLAMA3_SPLIT)
        }
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_SPLIT),
        other => Err(TokenizerError::UnsupportedPreTokenizer(other.to_string())),
    }
}

/// Adds control tokens as special tokens and user-defined ones as plain added
/// tokens, so both are matched whole instead of being cut by BPE.
fn add_typed_tokens(
    inner: &mut tokenizers::Tokenizer,
    gguf: &GgufFile,
    tokens: &[&str],
) -> Result<(), TokenizerError> {
    let Some(types) = optional(gguf.get_i64_array("tokenizer.ggml.token_type"))? else {
        return Ok(());
    };
    if types.len() != tokens.len() {
        return Err(TokenizerError::TokenTypeCount {
            found: types.len(),
            expected: tokens.len(),
        });
    }
    let of_type = |wanted: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == wanted)
            .map(|(token, _)| AddedToken::from(token.to_string(), special).normalized(false))
            .collect()
    };
    inner.add_special_tokens(&of_type(TOKEN_TYPE_CONTROL, true));
    inner.add_tokens(&of_type(TOKEN_TYPE_USER_DEFINED, false));
    Ok(())
}

/// A special token id; absent or negative (some writers use -1) means none.
fn special_id(
    gguf: &GgufFile,
    key: &'static str,
    vocab_size: usize,
) -> Result<Option<u32>, TokenizerError> {
    match optional(gguf.get_i64(key))? {
        None => Ok(None),
        Some(id) if id < 0 => Ok(None),
        Some(id) if (id as u64) < vocab_size as u64 => Ok(Some(id as u32)),
        Some(id) => Err(TokenizerError::SpecialIdOutOfRange {
            key,
            id,
            vocab_size,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::gguf::testing::{cached_smollm2, str_array, GgufWriter};
    use super::super::gguf::MetadataValue as V;
    use super::*;

    /// GPT-2's byte → printable-char table that byte-level vocabularies are spelled in.
    fn byte_alphabet() -> Vec<String> {
        let printable = |b: u32| {
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b)
        };
        let mut shifted = 0;
        (0..256u32)
            .map(|b| {
                let c = if printable(b) {
                    b
                } else {
                    shifted += 1;
                    255 + shifted
                };
                char::from_u32(c).unwrap().to_string()
            })
            .collect()
    }

    const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    const MERGED: [&str; 6] = ["hi", "Ġhi", "12", "123", "45", "<think>"];

    /// A tiny byte-level vocabulary: 3 control tokens, the 256 bytes, a few merges.
    fn tiny_gguf(pre: &str, extra: &[(&str, V)]) -> GgufFile {
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        tokens.extend(byte_alphabet());
        tokens.extend(MERGED.iter().map(|s| s.to_string()));
        let types = (0..tokens.len())
            .map(|i| match i {
                0..=2 => V::I32(3),
                _ if tokens[i] == "<think>" => V::I32(4),
                _ => V::I32(1),
            })
            .collect();
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let mut writer = GgufWriter::new()
            .kv("tokenizer.ggml.model", V::String("gpt2".into()))
            .kv("tokenizer.ggml.pre", V::String(pre.into()))
            .kv("tokenizer.ggml.tokens", str_array(&tokens))
            .kv("tokenizer.ggml.token_type", V::Array(types))
            .kv(
                "tokenizer.ggml.merges",
                str_array(&["h i", "Ġ hi", "1 2", "12 3", "4 5"]),
            )
            .kv("tokenizer.ggml.bos_token_id", V::U32(1))
            .kv("tokenizer.ggml.eos_token_id", V::U32(2))
            .kv(
                "tokenizer.chat_template",
                V::String("{{ messages }}".into()),
            );
        for (key, value) in extra {
            writer = writer.kv(key, value.clone());
        }
        GgufFile::from_bytes(writer.build()).unwrap()
    }

    fn tiny(pre: &str) -> Tokenizer {
        Tokenizer::from_gguf(&tiny_gguf(pre, &[])).unwrap()
    }

    fn ids_of(tokenizer: &Tokenizer, tokens: &[&str]) -> Vec<u32> {
        tokens
            .iter()
            .map(|t| tokenizer.token_id(t).unwrap())
            .collect()
    }

    #[test]
    fn merges_apply_and_control_tokens_stay_whole() {
        let tok = tiny("smollm");
        let ids = tok.encode("<|im_start|>hi hi<|im_end|>", false).unwrap();
        assert_eq!(
            ids,
            ids_of(&tok, &["<|im_start|>", "hi", "Ġhi", "<|im_end|>"])
        );
        assert_eq!(ids[0], 1);
        assert_eq!(tok.decode(&ids).unwrap(), "<|im_start|>hi hi<|im_end|>");
        let ids = tok.encode("x<think>y", false).unwrap();
        assert_eq!(ids, ids_of(&tok, &["x", "<think>", "y"]));
    }

    #[test]
    fn smollm_splits_every_digit_where_gpt2_and_llama3_merge() {
        let smollm = tiny("smollm");
        let digits = ids_of(&smollm, &["1", "2", "3", "4", "5"]);
        assert_eq!(smollm.encode("12345", false).unwrap(), digits);
        let gpt2 = tiny("gpt2");
        assert_eq!(
            gpt2.encode("12345", false).unwrap(),
            ids_of(&gpt2, &["123", "45"])
        );
        let llama3 = tiny("llama-bpe");
        assert_eq!(
            llama3.encode("12345", false).unwrap(),
            ids_of(&llama3, &["123", "45"])
        );
        let qwen2 = tiny("qwen2");
        assert_eq!(qwen2.encode("12345", false).unwrap(), digits);
    }

    #[test]
    fn bos_is_added_only_when_asked() {
        let tok = tiny("smollm");
        assert!(!tok.add_bos_token());
        assert_eq!(
            tok.encode("hi", true).unwrap(),
            vec![1, tok.token_id("hi").unwrap()]
        );
        assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());
        let with_flag = tiny_gguf("smollm", &[("tokenizer.ggml.add_bos_token", V::Bool(true))]);
        assert!(Tokenizer::from_gguf(&with_flag).unwrap().add_bos_token());
    }

    #[test]
    fn accessors_report_the_metadata() {
        let tok = tiny("smollm");
        assert_eq!(
            (tok.bos_id(), tok.eos_id(), tok.pad_id()),
            (Some(1), Some(2), None)
        );
        assert_eq!(tok.vocab_size(), 3 + 256 + MERGED.len());
        assert_eq!(tok.chat_template(), Some("{{ messages }}"));
        assert_eq!(tok.token_str(tok.token_id("Ġhi").unwrap()), Some("Ġhi"));
        assert_eq!(tok.token_str(100_000), None);
    }

    #[test]
    fn decode_rejects_ids_outside_the_vocabulary() {
        let tok = tiny("smollm");
        let err = tok.decode(&[5, 9999]).unwrap_err().to_string();
        assert_eq!(err, "token id 9999 is outside the vocabulary of 265 tokens");
    }

    #[test]
    fn bad_tokenizer_metadata_gives_clear_errors() {
        let cases: [(&[(&str, V)], &str); 5] = [
            (
                &[("tokenizer.ggml.model", V::String("llama".into()))],
                "tokenizer model \"llama\" is not supported",
            ),
            (
                &[("tokenizer.ggml.pre", V::String("mystery".into()))],
                "pre-tokenizer \"mystery\"",
            ),
            (
                &[("tokenizer.ggml.merges", str_array(&["hi"]))],
                "merge #0 \"hi\" is not two tokens",
            ),
            (
                &[("tokenizer.ggml.eos_token_id", V::U32(70000))],
                "tokenizer.ggml.eos_token_id = 70000 is outside",
            ),
            (
                &[("tokenizer.ggml.token_type", V::Array(vec![V::I32(1)]))],
                "token_type has 1 entries for 265 tokens",
            ),
        ];
        for (overrides, message) in cases {
            let err = Tokenizer::from_gguf(&gguf_with(overrides))
                .unwrap_err()
                .to_string();
            assert!(err.contains(message), "{err:?} lacks {message:?}");
        }
        let empty = GgufFile::from_bytes(GgufWriter::new().build()).unwrap();
        let err = Tokenizer::from_gguf(&empty).unwrap_err().to_string();
        assert_eq!(err, "GGUF metadata key \"tokenizer.ggml.model\" is missing");
    }

    /// The tiny GGUF with some keys replaced (a key given twice is corrupt).
    fn gguf_with(overrides: &[(&str, V)]) -> GgufFile {
        let base = tiny_gguf("smollm", &[]);
        let writer = base
            .metadata_entries()
            .fold(GgufWriter::new(), |w, (key, value)| {
                let value = overrides
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(value, |(_, v)| v);
                w.kv(key, value.clone())
            });
        GgufFile::from_bytes(writer.build()).unwrap()
    }

    fn smollm2() -> Option<Tokenizer> {
        let path = cached_smollm2()?;
        Some(Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap())
    }

    /// Ids recorded by tests/fixtures/tokenizer/make_fixture.py (see its README).
    const REFERENCE_IDS: &str =
        include_str!("../../../tests/fixtures/tokenizer/reference_ids.json");

    #[test]
    fn smollm2_matches_the_reference_ids_exactly() {
        let Some(tok) = smollm2() else { return };
        let fixture: serde_json::Value = serde_json::from_str(REFERENCE_IDS).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 12);
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(tok.encode(text, false).unwrap(), want, "{text:?}");
            assert_eq!(tok.decode(&want).unwrap(), text);
        }
    }

    #[test]
    fn smollm2_round_trips_many_scripts_and_code() {
        let Some(tok) = smollm2() else { return };
        let texts = [
            "Interpretability researchers train sparse autoencoders on residual streams.",
            "Les modèles de langue prédisent le mot suivant. ¿Qué tal? Привет, мир! 你好，世界！こんにちは、世界。",
            "Emoji 🧪🔬 and symbols ∑∫√∞ ≠ ≤ and a tab\there.",
            "class Sae:\n    def __init__(self, d):\n        self.d = d\n\n\treturn None\n",
            "impl Sae {\n    pub fn encode(&self, x: &Tensor) -> Tensor {\n        (x.matmul(&self.w_enc) + &self.b_enc).relu()\n    }\n}\n",
            "  multiple   spaces   and\r\nwindows newlines\n\n\n",
        ];
        for text in texts {
            let ids = tok.encode(text, false).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
        let digits = tok.encode("12345", false).unwrap();
        assert_eq!(digits.len(), 5);
        let spelled: Vec<_> = digits
            .iter()
            .map(|&id| tok.token_str(id).unwrap())
            .collect();
        assert_eq!(spelled, ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn smollm2_special_tokens_and_template() {
        let Some(tok) = smollm2() else { return };
        assert_eq!(tok.vocab_size(), 49152);
        assert_eq!(
            (tok.bos_id(), tok.eos_id(), tok.pad_id()),
            (Some(1), Some(2), Some(2))
        );
        assert!(!tok.add_bos_token());
        assert_eq!(tok.token_str(1), Some("<|im_start|>"));
        assert_eq!(tok.token_id("<|im_end|>"), Some(2));
        assert!(tok.chat_template().unwrap().contains("<|im_start|>"));
        let chat = "<|im_start|>user\nHi<|im_end|>\n";
        assert_eq!(tok.encode(chat, false).unwrap()[0], 1);
        assert_eq!(tok.encode("Hi", true).unwrap()[0], 1);
    }
}
