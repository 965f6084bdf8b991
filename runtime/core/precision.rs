//! Numeric precision of the heavy work, one name everywhere: "f32", "tf32", "bf16".
use crate::{Error, Result};
use tch::Kind;

/// How matrix work is computed. Weights and optimiser state stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// f32 tensors, with CUDA matmuls on TF32 tensor cores (inputs rounded
    /// to a 10-bit mantissa, f32 accumulation). The same as f32 on a CPU.
    Tf32,
    /// Mixed precision: the forward pass in bf16 from bf16 copies of the f32
    /// master weights (matmuls accumulate in f32, as libtorch does), losses
    /// and their reductions in f32; gradients flow back to the f32 masters,
    /// so the optimiser is unchanged. bf16 has f32's exponent range, so no
    /// loss scaling is needed (unlike f16).
    Bf16,
}

impl Precision {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "f32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(Error::invalid(format!(
                "unknown precision '{other}' (use \"f32\", \"tf32\" or \"bf16\")"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The dtype the forward pass computes in.
    pub fn compute_kind(self) -> Kind {
        match self {
            Precision::F32 | Precision::Tf32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// Says once per process, on stderr, that bf16 was asked of a CPU that
    /// emulates it: it still runs, but libtorch's fallback can be far slower
    /// than f32 (the README's precision section has a measurement).
    pub fn warn_if_emulated(self, device: tch::Device) {
        static WARNED: std::sync::Once = std::sync::Once::new();
        if self == Precision::Bf16 && !bf16_is_native(device) {
            WARNED.call_once(|| {
                eprintln!(
                    "warning: this CPU has no bf16 matrix instructions (AVX512-BF16): precision \"bf16\" runs, but emulated, and can be much slower than \"f32\""
                )
            });
        }
    }

    /// Turns TF32 on for as long as the guard lives when this precision asks for it.
    pub fn matmul_guard(self) -> Option<crate::cuda::Tf32Guard> {
        (self == Precision::Tf32).then(|| crate::cuda::Tf32Guard::new(true))
    }
}

/// Whether `device` multiplies bf16 matrices in hardware, where bf16 pays:
/// x86 CPUs with AVX512-BF16 (AMX CPUs have it too), Arm CPUs with the BF16
/// extension, and CUDA GPUs. Elsewhere libtorch still computes bf16 (it
/// converts to f32 around its kernels) but gains no speed.
///
/// CUDA is taken as native because tch exposes no compute capability; GPUs
/// before Ampere (8.0) run bf16 without a gain, which the README says.
pub fn bf16_is_native(device: tch::Device) -> bool {
    match device {
        tch::Device::Cpu => cpu_has_bf16(),
        _ => true,
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_bf16() -> bool {
    std::arch::is_x86_feature_detected!("avx512bf16")
}

#[cfg(target_arch = "aarch64")]
fn cpu_has_bf16() -> bool {
    std::arch::is_aarch64_feature_detected!("bf16")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_has_bf16() -> bool {
    false
}

impl std::str::FromStr for Precision {
    type Err = crate::Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_errors() {
        for name in ["f32", "tf32", "bf16"] {
            assert_eq!(Precision::parse(name).unwrap().name(), name);
        }
        assert!(Precision::parse("fp8").is_err());
    }
}
