//! NumPy's `.npy` format (NEP 1): a short text header, then raw
//! little-endian data. Shards are written in it so NumPy can open them too,
//! and read back memory-mapped, straight from the page cache.
use crate::{Error, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// The element types saelab stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F16,
    F32,
    I64,
}

impl Dtype {
    fn descr(self) -> &'static str {
        match self {
            Dtype::F16 => "<f2",
            Dtype::F32 => "<f4",
            Dtype::I64 => "<i8",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::I64 => 8,
        }
    }

    /// "f16" or "f32", as manifests and options spell it.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "f16",
            Dtype::F32 => "f32",
            Dtype::I64 => "i64",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "f16" | "float16" => Ok(Dtype::F16),
            "f32" | "float32" => Ok(Dtype::F32),
            other => Err(Error::invalid(format!(
                "activations can be stored as \"f16\" or \"f32\", not '{other}'"
            ))),
        }
    }
}

impl std::str::FromStr for Dtype {
    type Err = crate::Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}

/// The header of an `.npy` file: dtype, shape and where the data starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data_offset: usize,
}

/// The header bytes for a C-ordered array, padded so the data is 64-byte aligned.
fn header_bytes(dtype: Dtype, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        dtype.descr()
    );
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([1u8, 0]);
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

/// Parses a version 1 or 2 header; anything we cannot map is a clear error.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "{} is not a usable .npy file: {why}",
            path.display()
        ))
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("it does not start with the .npy magic"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("format version {v} is not supported"))),
    };
    let text = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("its header is truncated"))?;
    let field = |key: &str| -> Option<&str> {
        let at = text.find(&format!("'{key}':"))? + key.len() + 3;
        Some(text[at..].trim_start())
    };
    let descr = field("descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next());
    let dtype = match descr {
        Some("<f2") => Dtype::F16,
        Some("<f4") => Dtype::F32,
        Some("<i8") => Dtype::I64,
        other => return Err(bad(&format!("dtype {other:?} is not f16, f32 or i64"))),
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("it is in Fortran order"));
    }
    let shape = field("shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| bad("it has no shape"))?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| bad(&format!("bad dimension '{d}'")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Header {
        dtype,
        shape,
        data_offset: start + len,
    })
}

/// Writes an array atomically ([`crate::fs::write_atomic_with`]), so a
/// crash leaves either the whole file or none of it.
pub fn write(path: &Path, dtype: Dtype, shape: &[usize], data: &[u8]) -> Result<()> {
    let expected: usize = shape.iter().product::<usize>() * dtype.size();
    if data.len() != expected {
        return Err(Error::invalid(format!(
            "{}: {} bytes do not fill shape {shape:?}",
            path.display(),
            data.len()
        )));
    }
    crate::fs::write_atomic_with(path, |staging| {
        let io = |e| Error::io(staging, e);
        let mut file = File::create(staging).map_err(io)?;
        file.write_all(&header_bytes(dtype, shape)).map_err(io)?;
        file.write_all(data).map_err(io)
    })
}

/// A memory-mapped `.npy` file.
pub struct MappedArray {
    map: Mmap,
    pub header: Header,
}

impl MappedArray {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: read-only map of a file saelab wrote atomically (or that
        // the user handed over); like safetensors, we accept that another
        // process truncating it underneath us would be undefined behaviour.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header = parse_header(&map, path)?;
        // Checked: a corrupt header's shape must not wrap around to a small
        // size that passes the length check (found by the corrupted-file suite).
        let needed = header
            .shape
            .iter()
            .try_fold(header.dtype.size(), |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_add(header.data_offset));
        let Some(needed) = needed else {
            return Err(Error::invalid(format!(
                "{} is not a usable .npy file: shape {:?} is larger than any file",
                path.display(),
                header.shape
            )));
        };
        let needed = needed - header.data_offset;
        if map.len() < header.data_offset + needed {
            return Err(Error::invalid(format!(
                "{} is truncated: shape {:?} needs {needed} bytes of data, the file holds {}",
                path.display(),
                header.shape,
                map.len().saturating_sub(header.data_offset)
            )));
        }
        Ok(MappedArray { map, header })
    }

    /// The raw bytes of row `i` of a 2-D array.
    pub fn row(&self, i: usize) -> &[u8] {
        let width = self.header.shape.get(1).copied().unwrap_or(1) * self.header.dtype.size();
        let start = self.header.data_offset + i * width;
        &self.map[start..start + width]
    }

    pub fn rows(&self) -> usize {
        self.header.shape.first().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_arrays_read_back_and_numpy_headers_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let values: Vec<u8> = [1.5f32, -2.0, 3.25, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        write(&path, Dtype::F32, &[3, 2], &values).unwrap();
        let array = MappedArray::open(&path).unwrap();
        assert_eq!(array.header.shape, [3, 2]);
        assert_eq!(array.header.data_offset % 64, 0);
        assert_eq!(array.row(1), &values[8..16]);
        assert!(!crate::fs::staging_path(&path).exists());
        // A header as numpy writes it for a 1-D int64 array.
        let mut numpy = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (7,), }          \n";
        numpy.extend((dict.len() as u16).to_le_bytes());
        numpy.extend(dict.as_bytes());
        let header = parse_header(&numpy, Path::new("x.npy")).unwrap();
        assert_eq!((header.dtype, header.shape), (Dtype::I64, vec![7]));
    }

    #[test]
    fn truncated_or_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        write(&path, Dtype::F16, &[4, 8], &[0u8; 64]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let err = MappedArray::open(&path).err().unwrap().to_string();
        assert!(err.contains("is truncated"), "{err}");
        std::fs::write(&path, b"PK\x03\x04 not numpy").unwrap();
        let err = MappedArray::open(&path).err().unwrap().to_string();
        assert!(err.contains("magic"), "{err}");
        assert!(write(&path, Dtype::F32, &[2], &[0u8; 4]).is_err());
    }
}
