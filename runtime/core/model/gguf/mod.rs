//! GGUF reader: header, metadata, tensor infos, and dequantisation to f32.
//!
//! GGUF is llama.cpp's one-file model format (ggml's `docs/gguf.md`): a
//! header, `n_kv` metadata key/values, `n_tensors` tensor infos, padding up to
//! `general.alignment`, then the tensor data. The file is memory-mapped and
//! nothing is copied until a tensor is asked for.
//!
//! Every count, length and offset read from the file is checked before it is
//! used, so a truncated or corrupt file gives a [`GgufError`] naming the key or
//! tensor at fault — never a panic, never an out-of-bounds slice.
//!
//! We keep our own small reader rather than a crate: candle's `gguf_file`
//! lives inside the heavy candle-core, and the small crates on crates.io
//! (`gguf`, `gguf-rs`) stop at metadata, while `ggus` + `ggml-quants` are young
//! 0.x crates whose API churns. Dequantisation follows ggml's
//! `dequantize_row_*` reference functions (`ggml-quants.c`) line for line.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

mod dequant;
mod reader;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use dequant::dequantize;
use reader::{alignment, check_bounds, read_header, read_metadata, read_tensor_infos, Cursor};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// What went wrong reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Any other error, with the file it is about.
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        source: Box<GgufError>,
    },
    #[error("not a GGUF file: it starts with {found:?}, expected \"GGUF\"")]
    BadMagic { found: String },
    #[error("GGUF version {0} is not supported (this reader handles versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("truncated GGUF file: {context} needs {needed} bytes at offset {offset}, but the file is {file_len} bytes")]
    Truncated {
        context: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },
    #[error("corrupt GGUF file: {context}: {problem}")]
    Corrupt { context: String, problem: String },
    #[error("GGUF metadata key {0:?} is missing")]
    MissingKey(String),
    #[error("GGUF metadata key {key:?} holds {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("no tensor named {0:?} in the GGUF file")]
    MissingTensor(String),
    #[error("tensor {name:?} has type {ggml_type}, which saelab cannot dequantise")]
    UnsupportedType { name: String, ggml_type: GgmlType },
    #[error("tensor {name:?}: its {size} bytes at data offset {offset} run past the end of the file (data section is {available} bytes)")]
    TensorOutOfBounds {
        name: String,
        offset: u64,
        size: u64,
        available: u64,
    },
}

pub(super) fn corrupt(context: impl Into<String>, problem: impl Into<String>) -> GgufError {
    GgufError::Corrupt {
        context: context.into(),
        problem: problem.into(),
    }
}

/// Declares [`GgmlType`] from one table of (variant, id, elements per block,
/// bytes per block), so ids, names and sizes cannot drift apart. Sizes are
/// ggml's `type_traits` (`ggml.c`); gguf-py's `GGML_QUANT_SIZES` agrees.
macro_rules! ggml_types {
    ($($variant:ident = $id:literal, $block:literal, $bytes:literal;)*) => {
        /// A ggml tensor element type, as stored in a tensor info.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum GgmlType {
            $($variant,)*
            /// An id this reader does not know (a newer ggml type).
            Unknown(u32),
        }

        impl GgmlType {
            /// The type with ggml id `id`.
            pub fn from_id(id: u32) -> Self {
                match id {
                    $($id => Self::$variant,)*
                    other => Self::Unknown(other),
                }
            }

            /// The ggml id of this type.
            pub fn id(self) -> u32 {
                match self {
                    $(Self::$variant => $id,)*
                    Self::Unknown(id) => id,
                }
            }

            /// (elements per block, bytes per block), or `None` for an unknown type.
            pub fn block_layout(self) -> Option<(u64, u64)> {
                match self {
                    $(Self::$variant => Some(($block, $bytes)),)*
                    Self::Unknown(_) => None,
                }
            }
        }

        impl fmt::Display for GgmlType {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$variant => f.write_str(stringify!($variant)),)*
                    Self::Unknown(id) => write!(f, "unknown ggml type {id}"),
                }
            }
        }
    };
}

ggml_types! {
    F32 = 0, 1, 4;
    F16 = 1, 1, 2;
    Q4_0 = 2, 32, 18;
    Q4_1 = 3, 32, 20;
    Q5_0 = 6, 32, 22;
    Q5_1 = 7, 32, 24;
    Q8_0 = 8, 32, 34;
    Q8_1 = 9, 32, 36;
    Q2_K = 10, 256, 84;
    Q3_K = 11, 256, 110;
    Q4_K = 12, 256, 144;
    Q5_K = 13, 256, 176;
    Q6_K = 14, 256, 210;
    Q8_K = 15, 256, 292;
    IQ2_XXS = 16, 256, 66;
    IQ2_XS = 17, 256, 74;
    IQ3_XXS = 18, 256, 98;
    IQ1_S = 19, 256, 50;
    IQ4_NL = 20, 32, 18;
    IQ3_S = 21, 256, 110;
    IQ2_S = 22, 256, 82;
    IQ4_XS = 23, 256, 136;
    I8 = 24, 1, 1;
    I16 = 25, 1, 2;
    I32 = 26, 1, 4;
    I64 = 27, 1, 8;
    F64 = 28, 1, 8;
    IQ1_M = 29, 256, 56;
    BF16 = 30, 1, 2;
    TQ1_0 = 34, 256, 54;
    TQ2_0 = 35, 256, 66;
    MXFP4 = 39, 32, 17;
    NVFP4 = 40, 64, 36;
    Q1_0 = 41, 128, 18;
}

/// One metadata value. GGUF arrays hold a single element type.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetadataValue>),
}

impl MetadataValue {
    /// The GGUF name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F32(_) => "f32",
            Self::F64(_) => "f64",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
        }
    }

    /// Any integer, whatever its stored width (writers disagree on widths).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => v.into(),
            Self::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// A float of either width.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value if it is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(v) => Some(v),
            _ => None,
        }
    }

    /// The elements if it is an array.
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            Self::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// Where one tensor's data lies and how it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name as in the checkpoint, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// GGUF order: `dims[0]` varies fastest (ggml's `ne`).
    pub dims: Vec<u64>,
    /// Element encoding (F32, Q4_1, …).
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major shape, i.e. `dims` reversed: a GGUF `[576, 49152]` matrix is
    /// 49152 rows of 576.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements (checked against overflow when the file was opened).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Size of the data in bytes, or `None` for an unknown type.
    pub fn n_bytes(&self) -> Option<u64> {
        let (block, bytes) = self.ggml_type.block_layout()?;
        Some(self.n_elements() / block * bytes)
    }
}

/// The bytes behind a [`GgufFile`]: a read-only map, or a buffer in tests.
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Owned(bytes) => bytes,
        }
    }
}

/// An open GGUF file: parsed metadata and tensor infos over mapped bytes.
pub struct GgufFile {
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
    storage: Storage,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io_error = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        // SAFETY: the map is read-only. Another process truncating or
        // rewriting the model file while it is open would be undefined
        // behaviour; like safetensors and candle we accept that for model files.
        let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
        Self::parse(Storage::Mapped(map)).map_err(|source| GgufError::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Parses a GGUF file held in memory (tests build these by hand).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<Self, GgufError> {
        let bytes = storage.bytes();
        let mut cursor = Cursor { bytes, pos: 0 };
        let version = read_header(&mut cursor)?;
        let n_tensors = cursor.u64("tensor count")?;
        let n_kv = cursor.u64("metadata count")?;
        let (metadata, metadata_index) = read_metadata(&mut cursor, n_kv)?;
        let (tensors, tensor_index) = read_tensor_infos(&mut cursor, n_tensors)?;
        let alignment = alignment(&metadata, &metadata_index)?;
        let data_offset = (cursor.pos as u64).next_multiple_of(alignment);
        let available = (bytes.len() as u64).saturating_sub(data_offset);
        tensors
            .iter()
            .try_for_each(|info| check_bounds(info, available))?;
        Ok(Self {
            version,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
            storage,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The metadata value under `key`, if present.
    pub fn metadata(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// All metadata entries in file order.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn require(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.metadata(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    /// An integer of any stored width that fits in `T`.
    fn get_int<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let value = self.require(key)?;
        let wrong = || wrong_type(key, expected, value);
        value
            .as_i128()
            .ok_or_else(wrong)
            .and_then(|v| T::try_from(v).map_err(|_| wrong()))
    }

    /// An integer of any width that fits in a u32 (e.g. `llama.block_count`).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_int(key, "an integer that fits in u32")
    }

    /// An integer of any width that fits in a u64.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_int(key, "an integer that fits in u64")
    }

    /// An integer of any width that fits in an i64.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.get_int(key, "an integer that fits in i64")
    }

    /// A float of either width (e.g. `llama.rope.freq_base`).
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let value = self.require(key)?;
        value
            .as_f64()
            .ok_or_else(|| wrong_type(key, "a float", value))
    }

    /// A float of either width, as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.get_f64(key).map(|v| v as f32)
    }

    /// A bool.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let value = self.require(key)?;
        value
            .as_bool()
            .ok_or_else(|| wrong_type(key, "a bool", value))
    }

    /// A string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let value = self.require(key)?;
        value
            .as_str()
            .ok_or_else(|| wrong_type(key, "a string", value))
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.get_array(key, "an array of strings", MetadataValue::as_str)
    }

    /// An array of integers of any width that fit in i64 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        self.get_array(key, "an array of integers", |v| {
            v.as_i128().and_then(|i| i64::try_from(i).ok())
        })
    }

    fn get_array<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        element: impl Fn(&'a MetadataValue) -> Option<T>,
    ) -> Result<Vec<T>, GgufError> {
        let value = self.require(key)?;
        let wrong = || wrong_type(key, expected, value);
        let items = value.as_array().ok_or_else(wrong)?;
        items.iter().map(|v| element(v).ok_or_else(wrong)).collect()
    }

    /// All tensor infos in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of the tensor called `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw (still quantised) bytes of tensor `name`.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        self.tensor(name).map(|(_, bytes)| bytes)
    }

    /// Tensor `name` dequantised to f32, with its row-major shape (GGUF dims
    /// reversed).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let (info, bytes) = self.tensor(name)?;
        let values = dequantize(info.ggml_type, bytes, info.n_elements() as usize)
            .ok_or_else(|| unsupported(info))?;
        Ok((info.shape(), values))
    }

    fn tensor(&self, name: &str) -> Result<(&TensorInfo, &[u8]), GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let size = info.n_bytes().ok_or_else(|| unsupported(info))?;
        // `parse` checked offset + size against the data section; `get` also
        // covers an empty tensor in a file that ends before its data section.
        let start = self.data_offset + info.offset;
        let range = start as usize..(start + size) as usize;
        let bytes =
            self.storage
                .bytes()
                .get(range)
                .ok_or_else(|| GgufError::TensorOutOfBounds {
                    name: name.to_string(),
                    offset: info.offset,
                    size,
                    available: (self.storage.bytes().len() as u64).saturating_sub(self.data_offset),
                })?;
        Ok((info, bytes))
    }
}

fn unsupported(info: &TensorInfo) -> GgufError {
    GgufError::UnsupportedType {
        name: info.name.clone(),
        ggml_type: info.ggml_type,
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &MetadataValue) -> GgufError {
    let found = match found {
        MetadataValue::Array(items) => match items.first() {
            Some(first) => format!("an array of {}", first.type_name()),
            None => "an empty array".to_string(),
        },
        MetadataValue::String(_) | MetadataValue::Bool(_) => format!("a {}", found.type_name()),
        number => match (number.as_i128(), number.as_f64()) {
            (Some(i), _) => format!("{} {i}", number.type_name()),
            (_, Some(f)) => format!("{} {f}", number.type_name()),
            _ => number.type_name().to_string(),
        },
    };
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found,
    }
}
