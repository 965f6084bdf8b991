//! The Rhai face of `core`: the engine, the native functions grouped by
//! domain, and conversions between Rhai values and core types. No maths
//! lives here; every function forwards to `core` or to tch's `f_*` calls.
pub mod api;
pub mod console;
pub mod convert;
pub mod debug_functions;
pub mod display;
pub mod engine;
pub mod error;
pub mod fuzz;
pub mod help;
pub mod hooks;
pub mod session;
pub mod stdlib;
pub mod sweep;

pub use engine::{new_engine, EngineOptions};
pub use error::{describe_error, error_location, error_module, located_message, ScriptResult};
pub use session::{completeness, is_complete, Completeness, Session};
