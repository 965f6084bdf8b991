//! What this process's libtorch can do with CUDA, and the TF32 switch.
//!
//! A binary linked against a CUDA libtorch only uses CUDA if
//! `libtorch_cuda.so` is loaded: CUDA registers itself with libtorch from
//! that library's static initialisers, and nothing in saelab calls into it
//! directly (build.rs keeps it linked). [`status`] therefore reports what was
//! really loaded, and, when no GPU is usable, CUDA's own reason — which tells
//! "this build has no CUDA" apart from "this machine has no GPU".
use std::ffi::c_void;
use std::path::PathBuf;

/// CUDA as this process sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CudaStatus {
    /// The `libtorch_cuda.so` mapped into this process, if any.
    pub libtorch_cuda: Option<PathBuf>,
    /// Usable CUDA devices.
    pub device_count: usize,
    /// Why no device is usable (libtorch's first sentence), when none is.
    pub unavailable_reason: Option<String>,
}

impl CudaStatus {
    /// True when libtorch's CUDA backend is loaded, GPU or not.
    pub fn runtime_loaded(&self) -> bool {
        self.libtorch_cuda.is_some()
    }
}

/// Looks at the loaded libraries and asks libtorch for a device.
pub fn status() -> CudaStatus {
    let device_count = tch::Cuda::device_count().max(0) as usize;
    let unavailable_reason = if device_count > 0 {
        None
    } else {
        // Allocating on the device makes libtorch say why it cannot: a CPU
        // libtorch has no CUDA backend to run the op; a CUDA one reports the
        // driver's answer.
        match tch::Tensor::f_zeros([1], (tch::Kind::Float, tch::Device::Cuda(0))) {
            Ok(_) => None,
            Err(err) => Some(first_sentence(&crate::error::torch_message(&err))),
        }
    };
    CudaStatus {
        libtorch_cuda: loaded_library("libtorch_cuda.so"),
        device_count,
        unavailable_reason,
    }
}

/// libtorch's errors run to many lines (and a backend list); the first
/// sentence says what happened.
fn first_sentence(message: &str) -> String {
    let line = message
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    let line = line.strip_prefix("Internal torch error: ").unwrap_or(line);
    match line.find(". ") {
        Some(end) => line[..=end].to_string(),
        None => line.to_string(),
    }
}

/// The path of a shared library mapped into this process, from /proc/self/maps.
fn loaded_library(name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            std::path::Path::new(path)
                .file_name()
                .is_some_and(|f| f == name)
        })
        .map(PathBuf::from)
}

// libtorch's global context, called by its C++ (Itanium ABI) names: tch has
// no binding for the TF32 switch, and a member function taking `this` first
// is an ordinary C call on the platforms libtorch ships for. Both symbols are
// exported by libtorch_cpu.so since torch 1.7.
extern "C" {
    #[link_name = "_ZN2at13globalContextEv"]
    fn at_global_context() -> *mut c_void;
    #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
    fn at_context_set_allow_tf32_cublas(context: *mut c_void, allow: bool);
    #[link_name = "_ZNK2at7Context15allowTF32CuBLASEv"]
    fn at_context_allow_tf32_cublas(context: *const c_void) -> bool;
}

/// Lets cuBLAS run f32 matmuls on TF32 tensor cores (10-bit mantissa
/// inputs, f32 accumulation), as `torch.backends.cuda.matmul.allow_tf32`.
/// Process-wide; no effect on the CPU.
pub fn set_tf32(allow: bool) {
    // SAFETY: globalContext() returns a reference to a static that lives
    // for the whole process; the setter only stores a flag.
    unsafe { at_context_set_allow_tf32_cublas(at_global_context(), allow) }
}

/// Whether f32 matmuls on CUDA may use TF32.
pub fn tf32_enabled() -> bool {
    // SAFETY: as in `set_tf32`; the getter only reads the flag.
    unsafe { at_context_allow_tf32_cublas(at_global_context()) }
}

/// Sets TF32 for as long as it lives, then puts the previous setting back.
pub struct Tf32Guard {
    previous: bool,
}

impl Tf32Guard {
    pub fn new(allow: bool) -> Self {
        let previous = tf32_enabled();
        set_tf32(allow);
        Tf32Guard { previous }
    }
}

impl Drop for Tf32Guard {
    fn drop(&mut self) {
        set_tf32(self.previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_switch_round_trips_and_the_guard_restores_it() {
        let before = tf32_enabled();
        {
            let _guard = Tf32Guard::new(!before);
            assert_eq!(tf32_enabled(), !before);
        }
        assert_eq!(tf32_enabled(), before);
    }

    #[test]
    fn without_a_gpu_the_status_says_why() {
        let status = status();
        if status.device_count == 0 {
            let reason = status.unavailable_reason.expect("a reason");
            assert!(!reason.is_empty());
        }
    }
}
