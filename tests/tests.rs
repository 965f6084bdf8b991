//! One integration-test binary (ripgrep's layout); modules are named by
//! what they pin down.
mod support;

mod activations;
mod analysis;
mod architectures;
mod cli;
mod cuda_build;
mod errors;
mod features;
mod fuzz;
mod html_security;
mod jobs;
mod kernel;
mod model;
mod notebook;
mod panics;
mod plots;
mod precision;
mod repl;
mod sae;
mod sae_model;
mod sae_resume;
mod saelens;
mod scaling;
mod slurm;
mod tensors;
mod xcoders;
