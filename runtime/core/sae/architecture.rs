//! What differs between SAE architectures, and the one list of them.
//!
//! Each architecture is one file (`relu.rs`, `topk.rs`, `jumprelu.rs`)
//! holding its config struct — the settings only it has, with their
//! defaults, named as scripts spell them — and that struct's
//! [`Architecture`] impl: how it encodes, its loss terms, and everything
//! else the rest of saelab asks of an architecture (its dead-feature
//! remedy, its training FLOPs, its cfg.json fields, ...). The
//! [`architectures!`] call at the bottom of this file is the one list: an
//! architecture is added with its file, its `mod` line and one line there.
use super::codes::{Codes, Encoded};
use super::config::DeadFeatureRemedy;
use super::Weights;
use crate::options::{field_names, overlay, OptionMap};
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Training FLOPs of one (d_in × width) matmul per token: 2·d·w forward (a
/// multiply and an add per weight) and twice that backward (gradients with
/// respect to input and weight) — the 6·N·D rule of Kaplan et al. (2020).
/// Biases, activations and top-k selection are O(width) and left out; a
/// constant factor moves every run alike, so fitted exponents do not depend
/// on it.
pub fn matmul_training_flops(d_in: f64, width: f64) -> f64 {
    3.0 * 2.0 * d_in * width
}

/// One SAE architecture: its settings (the implementing struct) and all
/// behaviour that depends on them. The decoder, the MSE and the bookkeeping
/// are shared (see [`super::Sae::forward`]).
pub trait Architecture: std::fmt::Debug {
    /// The name SAELens writes in cfg.json ("standard", "topk", "jumprelu";
    /// BatchTopK and Matryoshka SAEs are saved as "jumprelu", as SAELens
    /// saves them for inference).
    fn saelens_name(&self) -> &'static str;

    /// `Err` with the reason when these settings cannot work for an SAE of this size.
    fn check(&self, _d_in: i64, _n_features: i64) -> Result<()> {
        Ok(())
    }

    /// Codes for the encoder's input [batch, d_in] (x, or x − b_dec when the
    /// SAE subtracts it), differentiable through the weights.
    fn encode(&self, w: &Weights, input: &tch::Tensor) -> Result<Encoded>;

    /// Codes while training, when they differ from [`Architecture::encode`]'s
    /// (BatchTopK chooses its active features across the whole batch, and
    /// estimates the threshold that `encode` uses at inference).
    fn encode_for_training(&self, w: &Weights, input: &tch::Tensor) -> Result<Encoded> {
        self.encode(w, input)
    }

    /// Learns from a training step's codes what is not a weight (BatchTopK's
    /// inference threshold); called after each optimiser step.
    fn observe_training_codes(&mut self, _codes: &Codes) -> Result<()> {
        Ok(())
    }

    /// Reconstruction losses beyond the full one, already summed: Matryoshka's
    /// nested prefixes of the dictionary, each reconstructing `x` on its own.
    /// `None` for a single dictionary.
    fn nested_reconstruction_loss(
        &self,
        _w: &Weights,
        _codes: &Codes,
        _x: &tch::Tensor,
    ) -> Result<Option<tch::Tensor>> {
        Ok(None)
    }

    /// The sparsity term of the loss, before its coefficient (a scalar).
    fn penalty(&self, w: &Weights, enc: &Encoded) -> Result<tch::Tensor>;

    /// λ, the coefficient of [`Architecture::penalty`]; 0 for an
    /// architecture whose sparsity is fixed by construction (TopK).
    fn sparsity_coefficient(&self) -> f64 {
        0.0
    }

    /// Changes λ; `Err` when the architecture has no penalty to weight.
    fn set_sparsity_coefficient(&mut self, _lambda: f64) -> Result<()> {
        Err(Error::invalid(
            "this architecture has no sparsity penalty to weight (its sparsity is fixed by k)",
        ))
    }

    /// The penalty in normalised units, given its value measured on raw
    /// inputs and the scale s (E‖s·x‖² = d_in). Folding s into the weights
    /// leaves f unchanged and divides W_dec by s, so a penalty that only
    /// counts or sums f needs nothing (the default).
    fn penalty_at_scale(&self, penalty: f64, _scale: f64) -> f64 {
        penalty
    }

    /// The auxiliary loss for dead features (AuxK for TopK), already weighted;
    /// `None` when the architecture has none or nothing is dead.
    fn aux_loss(
        &self,
        _w: &Weights,
        _enc: &Encoded,
        _residual: &tch::Tensor,
        _dead: &tch::Tensor,
    ) -> Result<Option<tch::Tensor>> {
        Ok(None)
    }

    /// Whether [`Architecture::aux_loss`] can revive dead features, so
    /// that the AuxK remedy may be asked for.
    fn supports_auxk(&self) -> bool {
        false
    }

    /// The dead-feature remedy when the training options name none.
    fn default_dead_feature_remedy(&self) -> DeadFeatureRemedy {
        DeadFeatureRemedy::None
    }

    /// Whether the trainer keeps decoder rows at unit norm after each step
    /// (Gao et al. do for TopK; the paper's ReLU SAE leaves norms free because
    /// its penalty is weighted by them).
    fn unit_norm_decoder(&self) -> bool {
        false
    }

    /// Whether a fresh SAE subtracts b_dec from its input before encoding.
    fn default_apply_b_dec_to_input(&self) -> bool {
        false
    }

    /// The norm of each decoder row of a fresh SAE: unit norm, since most
    /// architectures keep their rows there while training (Gao et al.).
    fn default_decoder_init_norm(&self) -> f64 {
        1.0
    }

    /// The initial per-feature threshold θ of an architecture that learns
    /// one (JumpReLU), kept as log θ in [`Weights::log_threshold`] and saved
    /// as SAELens's `threshold`; `None` for architectures without one.
    fn threshold_init(&self) -> Option<f64> {
        None
    }

    /// One threshold for every feature that inference applies after the
    /// ReLU (BatchTopK's estimate), written as SAELens's JumpReLU `threshold`
    /// tensor; `None` where there is none or it is a learned weight.
    fn inference_threshold(&self) -> Option<f64> {
        None
    }

    /// Training FLOPs per token (forward and backward) of an SAE of this
    /// size: the C of the scaling fits is this times the tokens trained on.
    /// The default counts a dense encoder and a dense decoder.
    fn training_flops_per_token(&self, d_in: f64, n_features: f64) -> f64 {
        2.0 * matmul_training_flops(d_in, n_features)
    }

    /// `Err` with the reason when this architecture cannot be trained here.
    fn check_trainable(&self) -> Result<()> {
        Ok(())
    }

    /// Adds this architecture's own keys to SAELens's cfg.json (TopK's `k`).
    fn write_saelens_fields(&self, _cfg: &mut OptionMap) {}

    /// Reads this architecture's own keys from a cfg.json written by
    /// saelab or SAELens (at `path`, for messages).
    fn read_saelens_fields(&mut self, _cfg: &OptionMap, _path: &Path) -> Result<()> {
        Ok(())
    }

    /// The settings saelab.json keeps beside cfg.json, under the names
    /// saelab has always written there.
    fn saelab_settings(&self) -> OptionMap;

    /// Reads the settings back; keys it does not know are left alone (the
    /// file may have been written for another architecture's settings).
    fn read_saelab_settings(&mut self, settings: &OptionMap);

    /// The setting a printed SAE shows ("k=32", "l1=5").
    fn summary(&self) -> String;
}

/// What the list of architectures needs of each config struct beyond
/// [`Architecture`]: its names and its defaults.
pub trait Registered: Architecture + Serialize + DeserializeOwned + Sized {
    /// The registry name first, then other accepted spellings (SAELens calls
    /// the ReLU SAE "standard").
    const NAMES: &'static [&'static str];

    /// The settings of a fresh SAE of this size.
    fn defaults(d_in: i64, n_features: i64) -> Self;
}

/// Declares [`ArchitectureConfig`] with one variant per architecture, and
/// everything that has to visit each variant: building by name, the trait
/// object, the name, the option keys. Written once here so that a new
/// architecture is one line in the call below.
macro_rules! architectures {
    ($($(#[$doc:meta])* $variant:ident($config:ty),)+) => {
        /// An SAE's architecture with its own settings.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ArchitectureConfig {
            $($(#[$doc])* $variant($config),)+
        }

        impl ArchitectureConfig {
            /// The architecture called `name` (any accepted spelling),
            /// with its defaults for an SAE of this size.
            pub fn new(name: &str, d_in: i64, n_features: i64) -> Result<Self> {
                $(if <$config as Registered>::NAMES.contains(&name) {
                    return Ok(Self::$variant(<$config as Registered>::defaults(d_in, n_features)));
                })+
                Err(Error::invalid(format!(
                    "unknown SAE architecture '{name}' (known: {})",
                    Self::names().join(", ")
                )))
            }

            /// Every architecture's registry name, in declaration order.
            pub fn names() -> Vec<&'static str> {
                vec![$(<$config as Registered>::NAMES[0]),+]
            }

            /// The registry name ("relu", "topk", "jumprelu").
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$config as Registered>::NAMES[0],)+
                }
            }

            /// The settings and behaviour of this architecture.
            pub fn get(&self) -> &dyn Architecture {
                match self {
                    $(Self::$variant(config) => config,)+
                }
            }

            /// The settings, to change them.
            pub fn get_mut(&mut self) -> &mut dyn Architecture {
                match self {
                    $(Self::$variant(config) => config,)+
                }
            }

            /// The option keys of any architecture: one option map may
            /// describe runs of several (a sweep over `kind` shares its `k`).
            pub fn all_option_keys() -> Vec<&'static str> {
                let mut keys: Vec<&'static str> = Vec::new();
                $(for key in field_names::<$config>() {
                    if !keys.contains(key) {
                        keys.push(key);
                    }
                })+
                keys
            }

            /// The settings as options, by the names scripts give them.
            pub fn options(&self) -> OptionMap {
                let value = match self {
                    $(Self::$variant(config) => serde_json::to_value(config),)+
                };
                match value {
                    Ok(serde_json::Value::Object(options)) => options,
                    _ => OptionMap::new(),
                }
            }

            /// This architecture's settings with the options it knows put
            /// over them; the other architectures' options are left alone.
            pub fn apply_options(&mut self, options: &OptionMap) -> Result<()> {
                match self {
                    $(Self::$variant(config) => {
                        let own = own_options(field_names::<$config>(), options);
                        *config = overlay("sae", config, &own)?;
                    })+
                }
                Ok(())
            }
        }
    };
}

/// The entries of `options` whose key is in `keys`.
fn own_options(keys: &[&str], options: &OptionMap) -> OptionMap {
    options
        .iter()
        .filter(|(key, _)| keys.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

architectures! {
    /// The ReLU SAE of *Scaling Monosemanticity* (SAELens's "standard").
    Relu(super::relu::ReluConfig),
    /// TopK (Gao et al. 2024).
    TopK(super::topk::TopKConfig),
    /// JumpReLU (Rajamanoharan et al. 2024).
    JumpRelu(super::jumprelu::JumpReluConfig),
    /// BatchTopK (Bussmann et al. 2024).
    BatchTopK(super::batchtopk::BatchTopKConfig),
    /// Matryoshka BatchTopK (Bussmann et al. 2025; Nabeshima 2024).
    Matryoshka(super::matryoshka::MatryoshkaConfig),
}
