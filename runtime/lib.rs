//! saelab: a Rhai research environment for mechanistic interpretability.
//!
//! `core` holds the science and knows nothing of Rhai; `script` is the Rhai
//! face of `core`; the binary in `cli/` puts a REPL, a script runner and a
//! notebook renderer in front of the engine.
pub mod core;
pub mod script;
