//! Deliberately failing functions, to test the last line of defence (issue
//! 14) and the fuzzer's crash detection: `debug_panic(message)` panics inside
//! a native function, `debug_abort()` ends the process as a libtorch abort
//! would. They are never in `:help` or the fuzzer's grammar. A debug build
//! has them; a release build only when `SAELAB_DEBUG_FUNCTIONS` is set (the
//! tests run in release and start the binary with it), or when a test
//! registers them on its own engine.
use rhai::{Dynamic, Engine, ImmutableString};

/// The environment variable that turns them on in a release build.
pub const DEBUG_FUNCTIONS_ENV: &str = "SAELAB_DEBUG_FUNCTIONS";

/// Registers them when this is a debug build or the variable is set.
pub fn register_if_enabled(engine: &mut Engine) {
    if cfg!(debug_assertions) || std::env::var_os(DEBUG_FUNCTIONS_ENV).is_some() {
        register(engine);
    }
}

/// Registers them unconditionally.
pub fn register(engine: &mut Engine) {
    engine.register_fn("debug_panic", |message: ImmutableString| -> Dynamic {
        panic!("{message}")
    });
    engine.register_fn("debug_abort", || -> Dynamic { std::process::abort() });
}
