//! A workaround for tch 0.24: its fallible functions that take a `Scalar`
//! (`f_clamp`, `f_full`, `f_arange`, `f_linspace`, the `*_scalar` ops, the
//! comparisons with a number, `f_norm_scalaropt_dim`, `f_fill_`) panic
//! instead of returning libtorch's error. The call's `Scalar` temporary is
//! dropped before the call reads libtorch's error slot, and `Scalar`'s `Drop`
//! reads that slot with `unwrap` (`unsafe_torch!` in tch's
//! src/wrappers/utils.rs). Found by the fuzzer (issue 14): `arange(5, 2)` or
//! `x.norm(7)` ended a REPL session. [`scalar_op`] gives the error back as
//! the value it should have been.
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::TchError;

thread_local! {
    /// Set while a [`scalar_op`] runs, so the panic hook stays quiet.
    static IN_SCALAR_OP: Cell<bool> = const { Cell::new(false) };
}

/// Runs a tch call that takes a `Scalar`; libtorch's error comes back as `Err`.
pub fn scalar_op<T>(call: impl FnOnce() -> Result<T, TchError>) -> Result<T, TchError> {
    let outer = IN_SCALAR_OP.replace(true);
    let result = catch_unwind(AssertUnwindSafe(call));
    IN_SCALAR_OP.set(outer);
    result.unwrap_or_else(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(TchError::Torch(torch_message_of(&text)))
    })
}

/// `called `Result::unwrap()` on an `Err` value: Torch("message\n...")`
/// → `message` with its line breaks back.
fn torch_message_of(panic: &str) -> String {
    let quoted = panic
        .split_once("Torch(\"")
        .map(|(_, rest)| rest.rsplit_once("\")").map_or(rest, |(inner, _)| inner));
    match quoted {
        Some(inner) => inner
            .replace("\\n", "\n")
            .replace("\\\"", "\"")
            .replace("\\'", "'"),
        None => panic.to_string(),
    }
}

/// A panic hook that stays quiet for the panics [`scalar_op`] turns into
/// errors, and reports every other panic as Rust's default hook does (with
/// the Rust location, which a bug report needs).
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_SCALAR_OP.get() {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_scalar_call_is_an_error_with_libtorch_s_message() {
        let err = scalar_op(|| tch::Tensor::f_arange_start(5, 2, tch::kind::INT64_CPU))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("upper bound and lower bound inconsistent"),
            "{err}"
        );
        let ok = scalar_op(|| tch::Tensor::f_arange(3, tch::kind::INT64_CPU)).unwrap();
        assert_eq!(ok.size(), [3]);
    }

    #[test]
    fn messages_lose_the_debug_quoting() {
        let panic = r#"called `Result::unwrap()` on an `Err` value: Torch("bad \"x\"\nframe #0")"#;
        assert_eq!(torch_message_of(panic), "bad \"x\"\nframe #0");
    }
}
