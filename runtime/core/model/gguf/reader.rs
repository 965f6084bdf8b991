//! Parsing the header, metadata and tensor infos, with every count, length
//! and offset checked before use.
use std::collections::HashMap;

use super::{
    corrupt, GgmlType, GgufError, MetadataValue, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC,
};

/// ggml tensors have at most four dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// GGUF allows arrays of arrays; real files never nest deeply, and a cap keeps
/// a hostile file from overflowing the stack.
const MAX_ARRAY_NESTING: usize = 4;

/// A read position over the file's bytes; every read is bounds-checked.
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
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

    pub(super) fn u64(&mut self, context: &str) -> Result<u64, GgufError> {
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

pub(super) fn read_header(cursor: &mut Cursor) -> Result<u32, GgufError> {
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

pub(super) type Metadata = (Vec<(String, MetadataValue)>, HashMap<String, usize>);

pub(super) fn read_metadata(cursor: &mut Cursor, n_kv: u64) -> Result<Metadata, GgufError> {
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

pub(super) type TensorInfos = (Vec<TensorInfo>, HashMap<String, usize>);

pub(super) fn read_tensor_infos(
    cursor: &mut Cursor,
    n_tensors: u64,
) -> Result<TensorInfos, GgufError> {
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

pub(super) fn check_bounds(info: &TensorInfo, available: u64) -> Result<(), GgufError> {
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

pub(super) fn alignment(
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
