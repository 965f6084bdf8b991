//! saelab's patch to rhai 1.27 (the only change in this copy): a panic in a
//! native function becomes a runtime error at the script position of the
//! call, instead of unwinding through the engine and ending the host's
//! session. The engine already restores its own state on an unwind (see the
//! `defer!` in `exec_native_fn_call`), so the evaluation can go on.
use crate::{Dynamic, Position, RhaiResult, ERR};
#[cfg(feature = "no_std")]
use std::prelude::v1::*;
use std::fmt;

/// The value of the runtime error a panicking native function becomes.
#[derive(Debug, Clone)]
pub struct NativePanic {
    /// The script name of the function that panicked.
    pub function: String,
    /// The panic's message (`"a native function panicked"` when it had none).
    pub message: String,
}

impl fmt::Display for NativePanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "native function '{}' panicked: {}",
            self.function, self.message
        )
    }
}

/// Runs a native function, turning a panic into a [`NativePanic`] runtime error at `pos`.
#[cfg(not(feature = "no_std"))]
#[inline(always)]
pub(crate) fn guard_native_call(
    name: &str,
    pos: Position,
    call: impl FnOnce() -> RhaiResult,
) -> RhaiResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a native function panicked".into());
        let panic = NativePanic {
            function: name.to_string(),
            message,
        };
        Err(ERR::ErrorRuntime(Dynamic::from(panic), pos).into())
    })
}

/// Without `std` there is no unwinding to catch.
#[cfg(feature = "no_std")]
#[inline(always)]
pub(crate) fn guard_native_call(
    _name: &str,
    _pos: Position,
    call: impl FnOnce() -> RhaiResult,
) -> RhaiResult {
    call()
}
