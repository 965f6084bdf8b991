//! Builds GGUF files in memory, as candle's tests do, so the reader can be
//! tested without shipping models. Shared with the tokenizer's and the
//! model's tests.
use super::{GgmlType, GgufFile, MetadataValue};
use half::f16;
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
    pub fn tensor(mut self, name: &str, dims: &[u64], ggml_type: GgmlType, data: Vec<u8>) -> Self {
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
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
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

/// A deterministic stream of pseudo-random numbers (no `rand` dependency).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    pub fn below(&mut self, n: u32) -> u32 {
        self.next_u32() % n
    }
    pub fn unit(&mut self) -> f32 {
        self.next_u32() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
    }
    pub fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.unit() * 3.0).collect()
    }
}

pub fn open(writer: &GgufWriter) -> GgufFile {
    GgufFile::from_bytes(writer.build()).unwrap()
}

pub fn f16_round(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

pub fn assert_dequantises(ty: GgmlType, dims: &[u64], data: Vec<u8>, expected: &[f32]) {
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
