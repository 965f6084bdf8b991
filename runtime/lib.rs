//! saelab: a Rhai research environment for mechanistic interpretability.
//!
//! `core` holds the science and knows nothing of Rhai; `script` is the Rhai
//! face of `core`; the binary in `cli/` puts a REPL, a script runner and a
//! notebook renderer in front of the engine.
/// The science: the `saelab-core` crate (runtime/core), which does not
/// depend on Rhai, so nothing in it can use the scripting layer.
pub use saelab_core as core;
pub mod script;
