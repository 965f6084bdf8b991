//! The science of saelab, usable as a plain Rust library: tensors, I/O,
//! optimisers, progress reporting, language models. Nothing in here knows about Rhai.
pub mod activations;
pub mod analysis;
pub mod corpus;
#[cfg(test)]
mod corruption_tests;
pub mod cuda;
pub mod dashboard;
#[cfg(test)]
mod data_flow;
pub mod error;
pub mod executor;
pub mod fs;
pub mod interrupt;
pub mod jobs;
pub mod memory;
pub mod model;
pub mod optim;
pub mod options;
pub mod plot;
pub mod precision;
pub mod progress;
pub mod rng;
pub mod sae;
pub mod scalar_op;
pub mod scaling;
pub mod sweep;
pub mod tensor;
pub mod tensor_format;
pub mod tensor_io;

pub use error::{Error, ErrorKind, Result};

/// Every allocation of the test binary is watched, so the corrupted-file
/// suites can check that no reader trusts a size it read from a file.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: corruption_tests::LargestAllocation = corruption_tests::LargestAllocation;
pub use tensor::Tensor;
