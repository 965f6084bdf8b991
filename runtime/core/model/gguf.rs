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

use half::{bf16, f16};
use memmap2::Mmap;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// GGUF allows arrays of arrays; real files never nest deeply, and a cap keeps
/// a hostile file from overflowing the stack.
const MAX_ARRAY_NESTING: usize = 4;

/// What went wrong reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
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

fn corrupt(context: impl Into<String>, problem: impl Into<String>) -> GgufError {
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
        Self::parse(Storage::Mapped(map))
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

/// A read position over the file's bytes; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, context: &str) -> Result<&'a [u8], GgufError> {
        let remaining = self.bytes.len() - self.pos;
        if n > remaining as u64 {
            return Err(GgufError::Truncated {
                context: context.to_string(),
                offset: self.pos as u64,
                needed: n,
                file_len: self.bytes.len() as u64,
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, context: &str) -> Result<[u8; N], GgufError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64, context)?);
        Ok(out)
    }

    fn u32(&mut self, context: &str) -> Result<u32, GgufError> {
        self.array(context).map(u32::from_le_bytes)
    }

    fn u64(&mut self, context: &str) -> Result<u64, GgufError> {
        self.array(context).map(u64::from_le_bytes)
    }

    fn string(&mut self, context: &str) -> Result<String, GgufError> {
        let len = self.u64(context)?;
        let bytes = self.take(len, context)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| corrupt(context, format!("string is not UTF-8 ({e})")))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

fn read_header(cursor: &mut Cursor) -> Result<u32, GgufError> {
    let head = &cursor.bytes[..cursor.bytes.len().min(4)];
    if head != GGUF_MAGIC {
        return Err(GgufError::BadMagic {
            found: String::from_utf8_lossy(head).into_owned(),
        });
    }
    cursor.pos = 4;
    match cursor.u32("version")? {
        version @ (2 | 3) => Ok(version),
        // A big-endian writer stores 3 as 0x03000000.
        version if matches!(version.swap_bytes(), 2 | 3) => Err(GgufError::BigEndian),
        version => Err(GgufError::UnsupportedVersion(version)),
    }
}

type Metadata = (Vec<(String, MetadataValue)>, HashMap<String, usize>);

fn read_metadata(cursor: &mut Cursor, n_kv: u64) -> Result<Metadata, GgufError> {
    let mut entries = Vec::new();
    let mut index = HashMap::new();
    for i in 0..n_kv {
        let key = cursor.string(&format!("metadata key #{i}"))?;
        let context = format!("metadata key {key:?}");
        let value_type = cursor.u32(&context)?;
        let value = read_value(cursor, value_type, &context, 0)?;
        if index.insert(key.clone(), entries.len()).is_some() {
            return Err(corrupt(context, "the key appears twice"));
        }
        entries.push((key, value));
    }
    Ok((entries, index))
}

fn read_value(
    cursor: &mut Cursor,
    value_type: u32,
    context: &str,
    depth: usize,
) -> Result<MetadataValue, GgufError> {
    use MetadataValue as V;
    Ok(match value_type {
        0 => V::U8(u8::from_le_bytes(cursor.array(context)?)),
        1 => V::I8(i8::from_le_bytes(cursor.array(context)?)),
        2 => V::U16(u16::from_le_bytes(cursor.array(context)?)),
        3 => V::I16(i16::from_le_bytes(cursor.array(context)?)),
        4 => V::U32(u32::from_le_bytes(cursor.array(context)?)),
        5 => V::I32(i32::from_le_bytes(cursor.array(context)?)),
        6 => V::F32(f32::from_le_bytes(cursor.array(context)?)),
        7 => match cursor.array::<1>(context)? {
            [0] => V::Bool(false),
            [1] => V::Bool(true),
            [b] => return Err(corrupt(context, format!("bool byte is {b}, not 0 or 1"))),
        },
        8 => V::String(cursor.string(context)?),
        9 => V::Array(read_array(cursor, context, depth)?),
        10 => V::U64(u64::from_le_bytes(cursor.array(context)?)),
        11 => V::I64(i64::from_le_bytes(cursor.array(context)?)),
        12 => V::F64(f64::from_le_bytes(cursor.array(context)?)),
        other => return Err(corrupt(context, format!("unknown value type {other}"))),
    })
}

fn read_array(
    cursor: &mut Cursor,
    context: &str,
    depth: usize,
) -> Result<Vec<MetadataValue>, GgufError> {
    if depth >= MAX_ARRAY_NESTING {
        return Err(corrupt(context, "arrays nested too deeply"));
    }
    let element_type = cursor.u32(context)?;
    let len = cursor.u64(context)?;
    // Every element takes at least one byte, so a length beyond the bytes
    // left is corrupt; checking first keeps a bogus length from allocating.
    if len > cursor.remaining() as u64 {
        return Err(corrupt(
            context,
            format!("array of {len} elements is longer than the rest of the file"),
        ));
    }
    (0..len)
        .map(|_| read_value(cursor, element_type, context, depth + 1))
        .collect()
}

type TensorInfos = (Vec<TensorInfo>, HashMap<String, usize>);

fn read_tensor_infos(cursor: &mut Cursor, n_tensors: u64) -> Result<TensorInfos, GgufError> {
    let mut infos = Vec::new();
    let mut index = HashMap::new();
    for i in 0..n_tensors {
        let info = read_tensor_info(cursor, i)?;
        if index.insert(info.name.clone(), infos.len()).is_some() {
            return Err(corrupt(
                format!("tensor {:?}", info.name),
                "the name appears twice",
            ));
        }
        infos.push(info);
    }
    Ok((infos, index))
}

fn read_tensor_info(cursor: &mut Cursor, i: u64) -> Result<TensorInfo, GgufError> {
    let name = cursor.string(&format!("tensor info #{i}"))?;
    let context = format!("tensor {name:?}");
    let n_dims = cursor.u32(&context)?;
    if n_dims > MAX_DIMS {
        return Err(corrupt(
            context,
            format!("{n_dims} dimensions (ggml allows at most {MAX_DIMS})"),
        ));
    }
    let dims = (0..n_dims)
        .map(|_| cursor.u64(&context))
        .collect::<Result<Vec<_>, _>>()?;
    let ggml_type = GgmlType::from_id(cursor.u32(&context)?);
    let offset = cursor.u64(&context)?;
    let info = TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
    };
    check_shape(&info, &context)?;
    Ok(info)
}

/// Checks that the element count does not overflow and that rows split into
/// whole blocks (ggml requires `ne[0]` to be a multiple of the block size).
fn check_shape(info: &TensorInfo, context: &str) -> Result<(), GgufError> {
    let n_elements = info
        .dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or_else(|| {
            corrupt(
                context,
                format!("dims {:?} overflow the element count", info.dims),
            )
        })?;
    let Some((block, bytes)) = info.ggml_type.block_layout() else {
        return Ok(());
    };
    let row = info.dims.first().copied().unwrap_or(1);
    if row % block != 0 {
        return Err(corrupt(
            context,
            format!(
                "row length {row} is not a multiple of the {} block size {block}",
                info.ggml_type
            ),
        ));
    }
    (n_elements / block)
        .checked_mul(bytes)
        .map(|_| ())
        .ok_or_else(|| corrupt(context, "byte size overflows"))
}

fn check_bounds(info: &TensorInfo, available: u64) -> Result<(), GgufError> {
    // An unknown type has no known size; its start must still be in the file.
    let size = info.n_bytes().unwrap_or(0);
    match info.offset.checked_add(size) {
        Some(end) if end <= available => Ok(()),
        _ => Err(GgufError::TensorOutOfBounds {
            name: info.name.clone(),
            offset: info.offset,
            size,
            available,
        }),
    }
}

fn alignment(
    metadata: &[(String, MetadataValue)],
    index: &HashMap<String, usize>,
) -> Result<u64, GgufError> {
    let Some(&i) = index.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let value = &metadata[i].1;
    match value.as_i128() {
        Some(a) if a > 0 && (a as u64).is_power_of_two() && a <= u32::MAX as i128 => Ok(a as u64),
        _ => Err(corrupt(
            "metadata key \"general.alignment\"",
            format!("{value:?} is not a power of two that fits in u32"),
        )),
    }
}

/// Dequantises `bytes` of `ggml_type` into `n` f32 values; `None` if the type
/// is not supported. `bytes` must hold exactly `n` elements' worth of blocks.
fn dequantize(ggml_type: GgmlType, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    use GgmlType as T;
    let mut out = vec![0f32; n];
    let y = &mut out;
    match ggml_type {
        T::F32 => blocks(bytes, y, 4, 1, |b, y| {
            y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }),
        T::F16 => blocks(bytes, y, 2, 1, |b, y| y[0] = f16_at(b, 0)),
        T::BF16 => blocks(bytes, y, 2, 1, |b, y| {
            y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()
        }),
        T::Q4_0 => blocks(bytes, y, 18, 32, block_q4_0),
        T::Q4_1 => blocks(bytes, y, 20, 32, block_q4_1),
        T::Q5_0 => blocks(bytes, y, 22, 32, block_q5_0),
        T::Q5_1 => blocks(bytes, y, 24, 32, block_q5_1),
        T::Q8_0 => blocks(bytes, y, 34, 32, block_q8_0),
        T::Q2_K => blocks(bytes, y, 84, 256, block_q2_k),
        T::Q3_K => blocks(bytes, y, 110, 256, block_q3_k),
        T::Q4_K => blocks(bytes, y, 144, 256, block_q4_k),
        T::Q5_K => blocks(bytes, y, 176, 256, block_q5_k),
        T::Q6_K => blocks(bytes, y, 210, 256, block_q6_k),
        T::Q8_K => blocks(bytes, y, 292, 256, block_q8_k),
        _ => return None,
    }
    Some(out)
}

/// Runs `block` over matching chunks; `chunks_exact` fixes each slice's length,
/// so the constant indices inside the block functions are always in range.
fn blocks(
    bytes: &[u8],
    out: &mut [f32],
    block_bytes: usize,
    block_len: usize,
    block: impl Fn(&[u8], &mut [f32]),
) {
    for (b, y) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block_len))
    {
        block(b, y);
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Low nibbles are elements 0..16, high nibbles 16..32 (ggml's layout).
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The fifth bits of Q5 elements j and j+16, from the 32-bit `qh` mask.
fn q5_high_bits(qh: u32, j: usize) -> (u8, u8) {
    (
        (((qh >> j) << 4) & 0x10) as u8,
        ((qh >> (j + 12)) & 0x10) as u8,
    )
}

fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..22].iter().enumerate() {
        let (h0, h1) = q5_high_bits(qh, j);
        y[j] = (((q & 0x0F) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..24].iter().enumerate() {
        let (h0, h1) = q5_high_bits(qh, j);
        y[j] = ((q & 0x0F) | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) | h1) as f32 * d + m;
    }
}

fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = q as i8 as f32 * d;
    }
}

/// Layout: scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin.
fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    // Each 128-element half uses 32 bytes of qs, four 2-bit planes of them.
    for half in 0..2 {
        for plane in 0..4 {
            for sub in 0..2 {
                let sc = scales[half * 8 + plane * 2 + sub];
                let (dl, ml) = (d * (sc & 0x0F) as f32, dmin * (sc >> 4) as f32);
                let q = &qs[half * 32 + sub * 16..][..16];
                let out = &mut y[half * 128 + plane * 32 + sub * 16..][..16];
                for (y, &q) in out.iter_mut().zip(q) {
                    *y = dl * ((q >> (2 * plane)) & 3) as f32 - ml;
                }
            }
        }
    }
}

/// The 16 six-bit Q3_K scales packed into 12 bytes (ggml's kmask unpacking).
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a0, a1, tmp) = (word(0), word(4), word(8));
    let (kmask1, kmask2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let aux = [
        (a0 & kmask2) | ((tmp & kmask1) << 4),
        (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
        ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
        ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4),
    ];
    let mut scales = [0i8; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        *s = (aux[i / 4].to_le_bytes()[i % 4] as i8) - 32;
    }
    scales
}

/// Layout: hmask[32], qs[64], scales[12], d. A clear hmask bit subtracts 4.
fn block_q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs) = (&b[0..32], &b[32..96]);
    let scales = q3_k_scales(&b[96..108]);
    let d = f16_at(b, 108);
    for half in 0..2 {
        for plane in 0..4 {
            let mask = 1u8 << (half * 4 + plane);
            for sub in 0..2 {
                let dl = d * scales[half * 8 + plane * 2 + sub] as f32;
                let q = &qs[half * 32 + sub * 16..][..16];
                let h = &hmask[sub * 16..][..16];
                let out = &mut y[half * 128 + plane * 32 + sub * 16..][..16];
                for ((y, &q), &h) in out.iter_mut().zip(q).zip(h) {
                    let low = ((q >> (2 * plane)) & 3) as i32;
                    *y = dl * (low - if h & mask != 0 { 0 } else { 4 }) as f32;
                }
            }
        }
    }
}

/// Scale and min `j` (0..8) of a Q4_K/Q5_K block: six bits each, packed into
/// 12 bytes (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (sc as f32, m as f32)
}

/// Layout: d, dmin, scales[12], qs[128]; 64 elements per 32 bytes of qs.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (chunk, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        for (l, &q) in q.iter().enumerate() {
            out[l] = d * sc1 * (q & 0x0F) as f32 - dmin * m1;
            out[l + 32] = d * sc2 * (q >> 4) as f32 - dmin * m2;
        }
    }
}

/// Layout: d, dmin, scales[12], qh[32], qs[128]; qh bit 2c / 2c+1 is the
/// fifth bit of chunk c's low / high nibbles.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (chunk, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        for (l, (&q, &h)) in q.iter().zip(qh).enumerate() {
            let high1 = if h & u1 != 0 { 16 } else { 0 };
            let high2 = if h & u2 != 0 { 16 } else { 0 };
            out[l] = d * sc1 * ((q & 0x0F) + high1) as f32 - dmin * m1;
            out[l + 32] = d * sc2 * ((q >> 4) + high2) as f32 - dmin * m2;
        }
    }
}

/// Layout: ql[128], qh[64], scales[16] (i8), d. Six-bit codes centred on 32.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &b[half * 64..][..64];
        let qh = &b[128 + half * 32..][..32];
        let sc = &b[192 + half * 8..][..8];
        let out = &mut y[half * 128..][..128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Layout: d (f32), qs[256] (i8), bsums[16] (i16, unused here).
fn block_q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (y, &q) in y.iter_mut().zip(&b[4..260]) {
        *y = q as i8 as f32 * d;
    }
}

/// Builds GGUF files in memory, as candle's tests do, so the reader can be
/// tested without shipping models. Shared with the tokenizer's tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{GgmlType, MetadataValue};
    use std::path::PathBuf;

    /// A GGUF file under construction: metadata then tensors, written by `build`.
    pub struct GgufWriter {
        pub version: u32,
        pub alignment: u64,
        metadata: Vec<(String, MetadataValue)>,
        tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
    }

    impl GgufWriter {
        pub fn new() -> Self {
            Self {
                version: 3,
                alignment: 32,
                metadata: Vec::new(),
                tensors: Vec::new(),
            }
        }

        pub fn kv(mut self, key: &str, value: MetadataValue) -> Self {
            if key == "general.alignment" {
                self.alignment = value.as_i128().unwrap() as u64;
            }
            self.metadata.push((key.to_string(), value));
            self
        }

        /// A tensor with GGUF dims (fastest first) and already-encoded bytes.
        pub fn tensor(
            mut self,
            name: &str,
            dims: &[u64],
            ggml_type: GgmlType,
            data: Vec<u8>,
        ) -> Self {
            self.tensors
                .push((name.to_string(), dims.to_vec(), ggml_type, data));
            self
        }

        pub fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend((self.tensors.len() as u64).to_le_bytes());
            out.extend((self.metadata.len() as u64).to_le_bytes());
            for (key, value) in &self.metadata {
                write_string(&mut out, key);
                out.extend(type_id(value).to_le_bytes());
                write_value(&mut out, value);
            }
            let mut offset = 0u64;
            for (name, dims, ggml_type, data) in &self.tensors {
                write_string(&mut out, name);
                out.extend((dims.len() as u32).to_le_bytes());
                dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
                out.extend(ggml_type.id().to_le_bytes());
                out.extend(offset.to_le_bytes());
                offset = (offset + data.len() as u64).next_multiple_of(self.alignment);
            }
            for (_, _, _, data) in &self.tensors {
                out.resize(
                    (out.len() as u64).next_multiple_of(self.alignment) as usize,
                    0,
                );
                out.extend(data);
            }
            out
        }
    }

    fn write_string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn type_id(value: &MetadataValue) -> u32 {
        use MetadataValue as V;
        match value {
            V::U8(_) => 0,
            V::I8(_) => 1,
            V::U16(_) => 2,
            V::I16(_) => 3,
            V::U32(_) => 4,
            V::I32(_) => 5,
            V::F32(_) => 6,
            V::Bool(_) => 7,
            V::String(_) => 8,
            V::Array(_) => 9,
            V::U64(_) => 10,
            V::I64(_) => 11,
            V::F64(_) => 12,
        }
    }

    fn write_value(out: &mut Vec<u8>, value: &MetadataValue) {
        use MetadataValue as V;
        match value {
            V::U8(v) => out.extend(v.to_le_bytes()),
            V::I8(v) => out.extend(v.to_le_bytes()),
            V::U16(v) => out.extend(v.to_le_bytes()),
            V::I16(v) => out.extend(v.to_le_bytes()),
            V::U32(v) => out.extend(v.to_le_bytes()),
            V::I32(v) => out.extend(v.to_le_bytes()),
            V::U64(v) => out.extend(v.to_le_bytes()),
            V::I64(v) => out.extend(v.to_le_bytes()),
            V::F32(v) => out.extend(v.to_le_bytes()),
            V::F64(v) => out.extend(v.to_le_bytes()),
            V::Bool(v) => out.push(*v as u8),
            V::String(s) => write_string(out, s),
            V::Array(items) => {
                out.extend(items.first().map_or(0, type_id).to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|item| write_value(out, item));
            }
        }
    }

    /// Strings as a metadata array.
    pub fn str_array(items: &[&str]) -> MetadataValue {
        MetadataValue::Array(
            items
                .iter()
                .map(|s| MetadataValue::String(s.to_string()))
                .collect(),
        )
    }

    /// The SmolLM2 GGUF that `setup/fetch-model.sh` puts in the cache, if it is there.
    pub fn cached_smollm2() -> Option<PathBuf> {
        let cache = std::env::var_os("SAELAB_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))
                    })?;
                Some(base.join("saelab"))
            })?;
        let path = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        if path.is_file() {
            Some(path)
        } else {
            eprintln!(
                "skipped: {} is absent (run setup/fetch-model.sh)",
                path.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{cached_smollm2, str_array, GgufWriter};
    use super::*;
    use MetadataValue as V;

    /// A deterministic stream of pseudo-random numbers (no `rand` dependency).
    struct Lcg(u64);

    impl Lcg {
        fn next_u32(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn below(&mut self, n: u32) -> u32 {
            self.next_u32() % n
        }
        fn unit(&mut self) -> f32 {
            self.next_u32() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
        }
        fn floats(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.unit() * 3.0).collect()
        }
    }

    fn open(writer: &GgufWriter) -> GgufFile {
        GgufFile::from_bytes(writer.build()).unwrap()
    }

    fn f16_round(x: f32) -> f32 {
        f16::from_f32(x).to_f32()
    }

    fn assert_dequantises(ty: GgmlType, dims: &[u64], data: Vec<u8>, expected: &[f32]) {
        let file = open(&GgufWriter::new().tensor("t", dims, ty, data));
        let (shape, values) = file.tensor_f32("t").unwrap();
        assert_eq!(
            shape,
            dims.iter().rev().map(|&d| d as usize).collect::<Vec<_>>()
        );
        assert_eq!(values.len(), expected.len());
        for (i, (got, want)) in values.iter().zip(expected).enumerate() {
            assert!(got == want, "{ty} element {i}: got {got}, expected {want}");
        }
    }

    #[test]
    fn metadata_round_trips_every_value_type() {
        let values = [
            ("u8", V::U8(200)),
            ("i8", V::I8(-5)),
            ("u16", V::U16(60000)),
            ("i16", V::I16(-300)),
            ("u32", V::U32(4_000_000_000)),
            ("i32", V::I32(-70000)),
            ("u64", V::U64(1 << 40)),
            ("i64", V::I64(-(1 << 40))),
            ("f32", V::F32(1.5)),
            ("f64", V::F64(-2.25)),
            ("bool", V::Bool(true)),
            ("string", V::String("héllo".into())),
            ("array", V::Array(vec![V::I32(1), V::I32(-2)])),
            (
                "nested",
                V::Array(vec![str_array(&["a"]), str_array(&["b", "c"])]),
            ),
            ("empty", V::Array(vec![])),
        ];
        let writer = values
            .iter()
            .fold(GgufWriter::new(), |w, (k, v)| w.kv(k, v.clone()));
        let file = open(&writer);
        for (key, value) in &values {
            assert_eq!(file.metadata(key), Some(value), "{key}");
        }
        let keys: Vec<_> = file.metadata_entries().map(|(k, _)| k).collect();
        assert_eq!(keys, values.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        assert_eq!(file.metadata("absent"), None);
    }

    #[test]
    fn typed_getters_accept_any_integer_width_and_name_the_key_on_mismatch() {
        let file = open(
            &GgufWriter::new()
                .kv("u8", V::U8(7))
                .kv("i64", V::I64(30))
                .kv("neg", V::I32(-1))
                .kv("big", V::U64(1 << 40))
                .kv("f32", V::F32(1e-5))
                .kv("f64", V::F64(100000.0))
                .kv("name", V::String("llama".into()))
                .kv("tokens", str_array(&["a", "b"]))
                .kv("types", V::Array(vec![V::I32(1), V::I32(3)])),
        );
        assert_eq!(file.get_u32("u8").unwrap(), 7);
        assert_eq!(file.get_u32("i64").unwrap(), 30);
        assert_eq!(file.get_u64("big").unwrap(), 1 << 40);
        assert_eq!(file.get_i64("neg").unwrap(), -1);
        assert_eq!(file.get_f32("f32").unwrap(), 1e-5);
        assert_eq!(file.get_f32("f64").unwrap(), 100000.0);
        assert_eq!(file.get_str("name").unwrap(), "llama");
        assert_eq!(file.get_str_array("tokens").unwrap(), ["a", "b"]);
        assert_eq!(file.get_i64_array("types").unwrap(), [1, 3]);
        for (key, message) in [
            (
                "neg",
                "\"neg\" holds i32 -1, expected an integer that fits in u32",
            ),
            (
                "big",
                "\"big\" holds u64 1099511627776, expected an integer that fits in u32",
            ),
            (
                "name",
                "\"name\" holds a string, expected an integer that fits in u32",
            ),
        ] {
            assert!(
                file.get_u32(key).unwrap_err().to_string().contains(message),
                "{key}"
            );
        }
        let err = file.get_str_array("types").unwrap_err().to_string();
        assert!(err.contains("\"types\" holds an array of i32"), "{err}");
        let err = file.get_bool("missing").unwrap_err().to_string();
        assert_eq!(err, "GGUF metadata key \"missing\" is missing");
    }

    #[test]
    fn float_tensors_read_back_with_row_major_shape() {
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let f32_bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16_bytes = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        let bf16_bytes = values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect();
        let f64_bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| (v as f64).to_le_bytes())
            .collect();
        assert_dequantises(GgmlType::F32, &[3, 2], f32_bytes, &values);
        assert_dequantises(GgmlType::F16, &[3, 2], f16_bytes, &values);
        assert_dequantises(GgmlType::BF16, &[6], bf16_bytes, &values);
        let file = open(&GgufWriter::new().tensor("t", &[6], GgmlType::F64, f64_bytes));
        assert!(matches!(
            file.tensor_f32("t"),
            Err(GgufError::UnsupportedType { .. })
        ));
    }

    #[test]
    fn tensors_are_found_at_their_aligned_offsets() {
        for alignment in [32u32, 64, 256] {
            let a: Vec<u8> = [1.0f32, 2.0, 3.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let b: Vec<u8> = [4.0f32, 5.0].iter().flat_map(|v| v.to_le_bytes()).collect();
            let file = open(
                &GgufWriter::new()
                    .kv("general.alignment", V::U32(alignment))
                    .tensor("a", &[3], GgmlType::F32, a)
                    .tensor("b", &[2], GgmlType::F32, b),
            );
            assert_eq!(file.alignment(), alignment as u64);
            assert_eq!(file.tensor_f32("a").unwrap().1, [1.0, 2.0, 3.0]);
            assert_eq!(file.tensor_f32("b").unwrap().1, [4.0, 5.0]);
            assert_eq!(file.tensor_info("b").unwrap().offset, alignment as u64);
        }
    }

    /// ggml's `quantize_row_q8_0_ref`: d = amax / 127, codes rounded.
    fn quantize_q8_0(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let (mut bytes, mut expected) = (Vec::new(), Vec::new());
        for block in x.chunks(32) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            bytes.extend(f16::from_f32(d).to_le_bytes());
            for &v in block {
                let q = (v * id).round() as i8;
                bytes.push(q as u8);
                expected.push(q as f32 * f16_round(d));
            }
        }
        (bytes, expected)
    }

    /// ggml's `quantize_row_q4_0_ref` (and q5_0 with `bits` = 5): d = -max/2^(bits-1).
    fn quantize_symmetric(x: &[f32], bits: u32) -> (Vec<u8>, Vec<f32>) {
        let half = (1 << (bits - 1)) as f32;
        let (mut bytes, mut expected) = (Vec::new(), vec![0f32; x.len()]);
        for (b, block) in x.chunks(32).enumerate() {
            let max = block
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -half;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let codes: Vec<u8> = block
                .iter()
                .map(|&v| ((v * id + half + 0.5) as i8).min((2 * half as i8) - 1) as u8)
                .collect();
            for (j, &q) in codes.iter().enumerate() {
                expected[b * 32 + j] = (q as f32 - half) * f16_round(d);
            }
            bytes.extend(f16::from_f32(d).to_le_bytes());
            pack_nibbles(&mut bytes, &codes, bits);
        }
        (bytes, expected)
    }

    /// ggml's `quantize_row_q4_1_ref` (and q5_1 with `bits` = 5): d = (max-min)/(2^bits-1), m = min.
    fn quantize_affine(x: &[f32], bits: u32) -> (Vec<u8>, Vec<f32>) {
        let top = ((1 << bits) - 1) as f32;
        let (mut bytes, mut expected) = (Vec::new(), vec![0f32; x.len()]);
        for (b, block) in x.chunks(32).enumerate() {
            let min = block.iter().copied().fold(f32::MAX, f32::min);
            let max = block.iter().copied().fold(f32::MIN, f32::max);
            let d = (max - min) / top;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let codes: Vec<u8> = block
                .iter()
                .map(|&v| (((v - min) * id + 0.5) as u8).min(top as u8))
                .collect();
            for (j, &q) in codes.iter().enumerate() {
                expected[b * 32 + j] = q as f32 * f16_round(d) + f16_round(min);
            }
            bytes.extend(f16::from_f32(d).to_le_bytes());
            bytes.extend(f16::from_f32(min).to_le_bytes());
            pack_nibbles(&mut bytes, &codes, bits);
        }
        (bytes, expected)
    }

    /// Low nibble = element j, high nibble = element j+16; for 5-bit codes the
    /// fifth bits go first, in a u32 (bit j for element j).
    fn pack_nibbles(bytes: &mut Vec<u8>, codes: &[u8], bits: u32) {
        if bits == 5 {
            let qh = codes
                .iter()
                .enumerate()
                .fold(0u32, |qh, (j, &q)| qh | (((q >> 4) as u32) << j));
            bytes.extend(qh.to_le_bytes());
        }
        bytes.extend((0..16).map(|j| (codes[j] & 0x0F) | ((codes[j + 16] & 0x0F) << 4)));
    }

    #[test]
    fn legacy_quants_dequantise_to_the_ggml_reference_values() {
        let x = Lcg(7).floats(96);
        let cases = [
            (GgmlType::Q8_0, quantize_q8_0(&x)),
            (GgmlType::Q4_0, quantize_symmetric(&x, 4)),
            (GgmlType::Q5_0, quantize_symmetric(&x, 5)),
            (GgmlType::Q4_1, quantize_affine(&x, 4)),
            (GgmlType::Q5_1, quantize_affine(&x, 5)),
        ];
        for (ty, (bytes, expected)) in cases {
            assert_eq!(bytes.len() as u64, 3 * ty.block_layout().unwrap().1);
            assert_dequantises(ty, &[32, 3], bytes, &expected);
            // and the quantisation really approximates the input.
            let tolerance = if ty == GgmlType::Q8_0 { 0.03 } else { 0.5 };
            for (e, v) in expected.iter().zip(&x) {
                assert!((e - v).abs() < tolerance, "{ty}: {e} vs {v}");
            }
        }
    }

    /// Packs 8 six-bit (scale, min) pairs as ggml's `quantize_row_q4_K_ref` does.
    fn pack_scale_min_k4(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
        let mut out = [0u8; 12];
        for j in 0..8 {
            let (ls, lm) = (scales[j], mins[j]);
            if j < 4 {
                out[j] = ls;
                out[j + 4] = lm;
            } else {
                out[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
                out[j - 4] |= (ls >> 4) << 6;
                out[j] |= (lm >> 4) << 6;
            }
        }
        out
    }

    fn codes(rng: &mut Lcg, n: usize, below: u32) -> Vec<u8> {
        (0..n).map(|_| rng.below(below) as u8).collect()
    }

    /// Q4_K and Q5_K: y = d·scale·q − dmin·min per 32 elements.
    fn k4_block(rng: &mut Lcg, bits: u32) -> (Vec<u8>, Vec<f32>) {
        let (d, dmin) = (f16_round(0.0123), f16_round(0.0071));
        let scales: [u8; 8] = std::array::from_fn(|_| rng.below(64) as u8);
        let mins: [u8; 8] = std::array::from_fn(|_| rng.below(64) as u8);
        let q = codes(rng, 256, 1 << bits);
        let expected = (0..256)
            .map(|i| d * scales[i / 32] as f32 * q[i] as f32 - dmin * mins[i / 32] as f32)
            .collect();
        let mut bytes = [d, dmin]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect::<Vec<_>>();
        bytes.extend(pack_scale_min_k4(&scales, &mins));
        if bits == 5 {
            let mut qh = [0u8; 32];
            for (i, &c) in q.iter().enumerate() {
                qh[i % 32] |= (c >> 4) << (i / 32);
            }
            bytes.extend(qh);
        }
        for chunk in 0..4 {
            bytes.extend(
                (0..32)
                    .map(|l| (q[chunk * 64 + l] & 0x0F) | ((q[chunk * 64 + 32 + l] & 0x0F) << 4)),
            );
        }
        (bytes, expected)
    }

    /// Element i of a Q2_K/Q3_K block: (half, plane, sub, l) as ggml walks them.
    fn k23_position(i: usize) -> (usize, usize, usize, usize) {
        (i / 128, i % 128 / 32, i % 32 / 16, i % 16)
    }

    fn q2_k_block(rng: &mut Lcg) -> (Vec<u8>, Vec<f32>) {
        let (d, dmin) = (f16_round(0.02), f16_round(0.01));
        let scales = codes(rng, 16, 256);
        let q = codes(rng, 256, 4);
        let mut qs = [0u8; 64];
        let mut expected = Vec::new();
        for (i, &c) in q.iter().enumerate() {
            let (half, plane, sub, l) = k23_position(i);
            qs[half * 32 + sub * 16 + l] |= c << (2 * plane);
            let sc = scales[half * 8 + plane * 2 + sub];
            expected.push(d * (sc & 0x0F) as f32 * c as f32 - dmin * (sc >> 4) as f32);
        }
        let mut bytes = scales;
        bytes.extend(qs);
        bytes.extend(
            [d, dmin]
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes()),
        );
        (bytes, expected)
    }

    fn q3_k_block(rng: &mut Lcg) -> (Vec<u8>, Vec<f32>) {
        let d = f16_round(0.03);
        let scales = codes(rng, 16, 64);
        let q = codes(rng, 256, 8);
        let (mut hmask, mut qs, mut packed) = ([0u8; 32], [0u8; 64], [0u8; 12]);
        // ggml's quantize_row_q3_K_ref scale packing.
        for (j, &s) in scales.iter().enumerate() {
            if j < 8 {
                packed[j] = s & 0x0F;
            } else {
                packed[j - 8] |= (s & 0x0F) << 4;
            }
            packed[j % 4 + 8] |= (s >> 4) << (2 * (j / 4));
        }
        let mut expected = Vec::new();
        for (i, &c) in q.iter().enumerate() {
            let (half, plane, sub, l) = k23_position(i);
            qs[half * 32 + sub * 16 + l] |= (c & 3) << (2 * plane);
            hmask[sub * 16 + l] |= (c >> 2) << (half * 4 + plane);
            let scale = scales[half * 8 + plane * 2 + sub] as f32 - 32.0;
            expected.push(d * scale * (c as f32 - 4.0));
        }
        let mut bytes = hmask.to_vec();
        bytes.extend(qs);
        bytes.extend(packed);
        bytes.extend(f16::from_f32(d).to_le_bytes());
        (bytes, expected)
    }

    fn q6_k_block(rng: &mut Lcg) -> (Vec<u8>, Vec<f32>) {
        let d = f16_round(0.004);
        let scales: Vec<i8> = (0..16).map(|_| rng.below(256) as u8 as i8).collect();
        let q = codes(rng, 256, 64);
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        let mut expected = Vec::new();
        for (i, &c) in q.iter().enumerate() {
            let (half, quarter, l) = (i / 128, i % 128 / 32, i % 32);
            ql[half * 64 + (quarter % 2) * 32 + l] |= (c & 0x0F) << (4 * (quarter / 2));
            qh[half * 32 + l] |= (c >> 4) << (2 * quarter);
            let scale = scales[half * 8 + l / 16 + 2 * quarter] as f32;
            expected.push(d * scale * (c as f32 - 32.0));
        }
        let mut bytes = ql.to_vec();
        bytes.extend(qh);
        bytes.extend(scales.iter().map(|&s| s as u8));
        bytes.extend(f16::from_f32(d).to_le_bytes());
        (bytes, expected)
    }

    fn q8_k_block(rng: &mut Lcg) -> (Vec<u8>, Vec<f32>) {
        let d = 0.0125f32;
        let q = codes(rng, 256, 256);
        let mut bytes = d.to_le_bytes().to_vec();
        bytes.extend(&q);
        bytes.extend([0u8; 32]); // bsums: only used by dot products
        (bytes, q.iter().map(|&c| d * c as i8 as f32).collect())
    }

    /// Makes one block: its bytes and the values it must dequantise to.
    type BlockMaker = fn(&mut Lcg) -> (Vec<u8>, Vec<f32>);

    #[test]
    fn k_quants_dequantise_to_the_ggml_reference_values() {
        let mut rng = Lcg(11);
        let makers: [(GgmlType, BlockMaker); 6] = [
            (GgmlType::Q2_K, q2_k_block),
            (GgmlType::Q3_K, q3_k_block),
            (GgmlType::Q4_K, |r| k4_block(r, 4)),
            (GgmlType::Q5_K, |r| k4_block(r, 5)),
            (GgmlType::Q6_K, q6_k_block),
            (GgmlType::Q8_K, q8_k_block),
        ];
        for (ty, make) in makers {
            let (mut bytes, mut expected) = make(&mut rng);
            let (second, more) = make(&mut rng);
            bytes.extend(second);
            expected.extend(more);
            assert_eq!(bytes.len() as u64, 2 * ty.block_layout().unwrap().1, "{ty}");
            assert_dequantises(ty, &[256, 2], bytes, &expected);
        }
    }

    fn small_file() -> Vec<u8> {
        let data: Vec<u8> = (0..8u8).collect();
        GgufWriter::new()
            .kv("general.architecture", V::String("llama".into()))
            .kv("list", V::Array(vec![V::U32(1), V::U32(2)]))
            .tensor("w", &[2], GgmlType::F32, data)
            .build()
    }

    fn error_of(bytes: Vec<u8>) -> String {
        GgufFile::from_bytes(bytes).unwrap_err().to_string()
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = small_file();
        for len in 0..bytes.len() {
            assert!(
                GgufFile::from_bytes(bytes[..len].to_vec()).is_err(),
                "prefix of {len} bytes"
            );
        }
        let err = error_of(bytes[..30].to_vec());
        assert!(
            err.contains("truncated GGUF file: metadata key #0"),
            "{err}"
        );
    }

    #[test]
    fn random_corruption_never_panics() {
        let clean = small_file();
        let mut rng = Lcg(3);
        for _ in 0..5000 {
            let mut bytes = clean.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() as u32) as usize;
                bytes[at] = rng.below(256) as u8;
            }
            if let Ok(file) = GgufFile::from_bytes(bytes) {
                for info in file.tensor_infos() {
                    let _ = file.tensor_f32(&info.name);
                }
            }
        }
    }

    #[test]
    fn header_errors_say_what_is_wrong() {
        assert!(error_of(b"GGML\x03\0\0\0".to_vec())
            .contains("not a GGUF file: it starts with \"GGML\""));
        assert!(error_of(Vec::new()).contains("not a GGUF file"));
        let mut bytes = small_file();
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert!(error_of(bytes.clone()).contains("GGUF version 1 is not supported"));
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(error_of(bytes), "big-endian GGUF files are not supported");
        let mut v2 = GgufWriter::new();
        v2.version = 2;
        assert_eq!(GgufFile::from_bytes(v2.build()).unwrap().version(), 2);
    }

    #[test]
    fn oversized_lengths_are_corrupt_not_allocations() {
        // The first key's length is the u64 right after the 24-byte header.
        let mut bytes = small_file();
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(error_of(bytes).contains("metadata key #0 needs 18446744073709551615 bytes"));

        let array = GgufWriter::new()
            .kv("list", V::Array(vec![V::U8(1)]))
            .build();
        let len_at = array.len() - 9; // element count precedes the one element
        let mut bytes = array.clone();
        bytes[len_at..len_at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        let err = error_of(bytes);
        assert!(
            err.contains("metadata key \"list\": array of 9223372036854775807 elements"),
            "{err}"
        );
    }

    #[test]
    fn bad_tensor_infos_name_the_tensor() {
        let f32s = |n: usize| vec![0u8; 4 * n];
        let cases = [
            (
                GgufWriter::new().tensor("huge", &[u64::MAX, 2], GgmlType::F32, f32s(1)),
                "tensor \"huge\": dims",
            ),
            (
                GgufWriter::new().tensor("5d", &[1, 1, 1, 1, 1], GgmlType::F32, f32s(1)),
                "tensor \"5d\": 5 dimensions",
            ),
            (
                GgufWriter::new().tensor("odd", &[31], GgmlType::Q8_0, vec![0; 34]),
                "row length 31 is not a multiple",
            ),
            (
                GgufWriter::new().tensor("long", &[64], GgmlType::F32, f32s(8)),
                "tensor \"long\": its 256 bytes",
            ),
            (
                GgufWriter::new()
                    .tensor("d", &[1], GgmlType::F32, f32s(1))
                    .tensor("d", &[1], GgmlType::F32, f32s(1)),
                "tensor \"d\": the name appears twice",
            ),
            (
                GgufWriter::new().kv("general.alignment", V::U32(48)),
                "\"general.alignment\": U32(48) is not a power of two",
            ),
            (
                GgufWriter::new().kv("k", V::U8(1)).kv("k", V::U8(2)),
                "metadata key \"k\": the key appears twice",
            ),
        ];
        for (writer, message) in cases {
            let err = error_of(writer.build());
            assert!(err.contains(message), "{err:?} lacks {message:?}");
        }
    }

    #[test]
    fn an_empty_tensor_in_a_file_cut_before_its_data_section_is_an_error() {
        // 24-byte header + 33-byte info for a one-letter name ends at 57; the
        // data section would start at 64.
        let mut bytes = GgufWriter::new()
            .tensor("e", &[0], GgmlType::F32, vec![])
            .build();
        bytes.truncate(57);
        let file = GgufFile::from_bytes(bytes).unwrap();
        let err = file.tensor_f32("e").unwrap_err().to_string();
        assert!(
            err.contains("tensor \"e\": its 0 bytes at data offset 0 run past"),
            "{err}"
        );
    }

    #[test]
    fn tensor_lookups_fail_clearly() {
        let file = open(
            &GgufWriter::new()
                .tensor("iq", &[256], GgmlType::IQ2_XXS, vec![0; 66])
                .tensor("new", &[4], GgmlType::Unknown(99), vec![]),
        );
        let err = file.tensor_f32("iq").unwrap_err().to_string();
        assert_eq!(
            err,
            "tensor \"iq\" has type IQ2_XXS, which saelab cannot dequantise"
        );
        let err = file.tensor_f32("new").unwrap_err().to_string();
        assert!(err.contains("unknown ggml type 99"), "{err}");
        assert_eq!(
            file.tensor_f32("nope").unwrap_err().to_string(),
            "no tensor named \"nope\" in the GGUF file"
        );
    }

    /// First elements of two tensors of the SmolLM2 file, dequantised by
    /// gguf-py 0.19's numpy code (an independent implementation).
    const REF_EMBED_0: f32 = -0.106_544_495; // token_embd.weight, Q8_0
    const REF_ATTN_Q_0: f32 = -0.096_313_48; // blk.0.attn_q.weight, Q4_1

    #[test]
    fn smollm2_metadata_and_tensors_match_the_model_card() {
        let Some(path) = cached_smollm2() else { return };
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(file.version(), 3);
        assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
        let config = [
            ("llama.block_count", 30),
            ("llama.embedding_length", 576),
            ("llama.feed_forward_length", 1536),
            ("llama.attention.head_count", 9),
            ("llama.attention.head_count_kv", 3),
            ("llama.vocab_size", 49152),
        ];
        for (key, value) in config {
            assert_eq!(file.get_u32(key).unwrap(), value, "{key}");
        }
        assert_eq!(file.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
        assert_eq!(
            file.get_f32("llama.attention.layer_norm_rms_epsilon")
                .unwrap(),
            1e-5
        );
        assert_eq!(
            file.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
            49152
        );

        let infos = file.tensor_infos();
        assert_eq!(infos.len(), 272);
        let count = |ty| infos.iter().filter(|i| i.ggml_type == ty).count();
        assert_eq!(
            (
                count(GgmlType::Q4_1),
                count(GgmlType::F32),
                count(GgmlType::Q8_0)
            ),
            (210, 61, 1)
        );

        let (shape, embedding) = file.tensor_f32("token_embd.weight").unwrap();
        assert_eq!(shape, [49152, 576]);
        assert!(embedding.iter().all(|v| v.is_finite()));
        // Reference values from gguf-py's numpy dequantisation of the same file.
        let (_, q) = file.tensor_f32("blk.0.attn_q.weight").unwrap();
        for (got, want) in [(embedding[0], REF_EMBED_0), (q[0], REF_ATTN_Q_0)] {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert_eq!(file.tensor_f32("output_norm.weight").unwrap().0, [576]);
    }
}
