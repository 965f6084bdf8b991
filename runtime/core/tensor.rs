//! The tensor handle shared by every layer: an `Rc` around a `tch::Tensor`
//! (which is neither `Clone` nor `Sync`), plus dtype/device names and a
//! torch-like printer. Only fallible `f_*` calls are made here.
use crate::{Error, Result};
use std::fmt;
use std::rc::Rc;
use tch::{Device, Kind};

/// A reference-counted libtorch tensor; cloning shares the same storage.
#[derive(Clone)]
pub struct Tensor(Rc<tch::Tensor>);

impl Tensor {
    pub fn new(inner: tch::Tensor) -> Self {
        Tensor(Rc::new(inner))
    }

    /// The libtorch tensor, for calling `f_*` operations on it.
    pub fn inner(&self) -> &tch::Tensor {
        &self.0
    }

    pub fn shape(&self) -> Vec<i64> {
        self.0.size()
    }

    pub fn numel(&self) -> i64 {
        self.shape().iter().product()
    }

    pub fn kind(&self) -> Result<Kind> {
        Ok(self.0.f_kind()?)
    }

    pub fn device(&self) -> Device {
        self.0.device()
    }

    /// All values as f64 in row-major order (copies to the CPU).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        let flat = self
            .0
            .f_detach()?
            .f_to(Device::Cpu)?
            .f_totype(Kind::Double)?
            .f_contiguous()?
            .f_reshape([-1])?;
        Ok(Vec::<f64>::try_from(&flat)?)
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::invalid(format!(
                "item() needs a tensor with exactly one element, got shape {:?}",
                self.shape()
            )));
        }
        Ok(self.0.f_reshape([-1])?.f_double_value(&[0])?)
    }

    /// Builds a tensor from flat values and a shape.
    pub fn from_f64(values: &[f64], shape: &[i64], kind: Kind) -> Result<Self> {
        let expected: i64 = shape.iter().product();
        if expected != values.len() as i64 {
            return Err(Error::invalid(format!(
                "{} values do not fill shape {shape:?}",
                values.len()
            )));
        }
        let flat = tch::Tensor::f_from_slice(values)?;
        Ok(Tensor::new(flat.f_reshape(shape)?.f_totype(kind)?))
    }
}

impl From<tch::Tensor> for Tensor {
    fn from(inner: tch::Tensor) -> Self {
        Tensor::new(inner)
    }
}

/// Parses the dtype names scripts use ("f32", "float32", "i64", ...).
pub fn parse_kind(name: &str) -> Result<Kind> {
    Ok(match name {
        "f32" | "float32" | "float" => Kind::Float,
        "f64" | "float64" | "double" => Kind::Double,
        "f16" | "float16" | "half" => Kind::Half,
        "bf16" | "bfloat16" => Kind::BFloat16,
        "i64" | "int64" | "long" => Kind::Int64,
        "i32" | "int32" | "int" => Kind::Int,
        "u8" | "uint8" => Kind::Uint8,
        "bool" => Kind::Bool,
        other => {
            return Err(Error::invalid(format!(
                "unknown dtype '{other}' (use f32, f64, f16, bf16, i64, i32, u8 or bool)"
            )))
        }
    })
}

/// The short name of a dtype, as `parse_kind` accepts it.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "f32",
        Kind::Double => "f64",
        Kind::Half => "f16",
        Kind::BFloat16 => "bf16",
        Kind::Int64 => "i64",
        Kind::Int => "i32",
        Kind::Int16 => "i16",
        Kind::Int8 => "i8",
        Kind::Uint8 => "u8",
        Kind::Bool => "bool",
        _ => "other",
    }
}

/// Parses "cpu", "cuda" or "cuda:N"; asking for CUDA without a GPU is an error.
pub fn parse_device(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => Device::Cpu,
        "cuda" | "gpu" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => Device::Cuda(index),
            _ => {
                return Err(Error::invalid(format!(
                    "unknown device '{other}' (use \"cpu\" or \"cuda\")"
                )))
            }
        },
    };
    if let Device::Cuda(index) = device {
        let available = tch::Cuda::device_count() as usize;
        if index >= available {
            return Err(Error::invalid(format!(
                "device '{name}' is not available: this build sees {available} CUDA device(s)"
            )));
        }
    }
    Ok(device)
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(0) => "cuda".into(),
        Device::Cuda(index) => format!("cuda:{index}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// The best device for heavy work: the first GPU when there is one.
pub fn best_device() -> Device {
    Device::cuda_if_available()
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::tensor_format::render(self) {
            Ok(text) => f.write_str(&text),
            Err(err) => write!(f, "tensor(<unprintable: {err}>)"),
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip() {
        for name in ["f32", "f64", "f16", "bf16", "i64", "i32", "u8", "bool"] {
            assert_eq!(kind_name(parse_kind(name).unwrap()), name);
        }
        assert!(parse_kind("complex").is_err());
    }

    #[test]
    fn unknown_devices_are_errors() {
        assert!(parse_device("tpu").is_err());
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
    }

    #[test]
    fn item_needs_one_element() {
        let t = Tensor::from_f64(&[1.0, 2.0], &[2], Kind::Float).unwrap();
        assert!(t.item().is_err());
        let one = Tensor::from_f64(&[2.5], &[1], Kind::Float).unwrap();
        assert_eq!(one.item().unwrap(), 2.5);
    }
}
