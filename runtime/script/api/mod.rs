//! Native functions exposed to scripts, one plugin module per domain. Each
//! module becomes a `:help` topic.
use rhai::plugin::*;
use rhai::{Module, Shared};

pub mod activations;
pub mod analysis;
pub mod autograd;
pub mod console;
pub mod feature_search;
pub mod feature_studies;
pub mod features;
pub mod io;
pub mod jobs;
pub mod math;
pub mod model;
pub mod plot;
pub mod sae;
mod sae_model;
mod sae_options;
mod sae_reports;
pub mod sae_sweep;
pub mod scaling;
pub mod shape;
pub mod tensor;
pub mod xcoder;

/// A group of functions as `:help` lists them.
pub struct Topic {
    pub name: &'static str,
    pub summary: &'static str,
    pub module: Shared<Module>,
}

/// Every native module, in the order `:help` shows them.
pub fn topics() -> Vec<Topic> {
    vec![
        topic(
            "tensor",
            "create tensors, inspect them, move them between devices and dtypes",
            exported_module!(tensor::tensor_api),
        ),
        topic(
            "math",
            "operators, elementwise functions and reductions",
            math::module(),
        ),
        topic(
            "shape",
            "reshape, transpose, concatenate, slice and index",
            exported_module!(shape::shape_api),
        ),
        topic(
            "autograd",
            "gradients, no_grad, optimisers, seeds",
            exported_module!(autograd::autograd_api),
        ),
        topic(
            "model",
            "load a language model, tokenize, run it, read activations, generate",
            exported_module!(model::model_api),
        ),
        topic(
            "activations",
            "corpora, harvesting activations to disk, stores and shuffled batches, perplexity",
            exported_module!(activations::activations_api),
        ),
        topic(
            "plot",
            "figures saved as PNG or SVG",
            exported_module!(plot::plot_api),
        ),
        topic(
            "scaling",
            "power-law fits, the compute-optimal frontier, CSV files of runs",
            exported_module!(scaling::scaling_api),
        ),
        topic(
            "sae",
            "sparse autoencoders: build, train, evaluate, save and load",
            exported_module!(sae::sae_api),
        ),
        topic(
            "xcoders",
            "transcoders (an MLP's input to its output) and crosscoders (several sites at once)",
            exported_module!(xcoder::xcoder_api),
        ),
        topic(
            "analysis",
            "interventions with SAE features: steering, logit effects, attribution and ablation, model weights",
            exported_module!(analysis::analysis_api),
        ),
        topic(
            "features",
            "reading features: activation records, highlighted examples, dashboards, search, neighbours, neurons",
            features::module(),
        ),
        topic(
            "jobs",
            "sweeps and harvests as jobs on a local process pool or a Slurm cluster: status, collect, wait",
            exported_module!(jobs::jobs_api),
        ),
        topic(
            "io",
            "tensors in safetensors files, text files",
            exported_module!(io::io_api),
        ),
        topic(
            "console",
            "tables and other console output",
            exported_module!(console::console_api),
        ),
    ]
}

fn topic(name: &'static str, summary: &'static str, module: Module) -> Topic {
    Topic {
        name,
        summary,
        module: module.into(),
    }
}
