//! One integration-test binary (ripgrep's layout); modules are named by
//! what they pin down.
mod support;

mod cli;
mod errors;
mod repl;
mod sae;
mod tensors;
