//! What features mean: interventions on a running model with an SAE's
//! features (steering, ablation) and the attribution of an output to them.
pub mod attribution;
pub mod steering;

pub use attribution::{attribute, Attribution, AttributionOptions, FeatureAttribution};
pub use steering::{
    clamp_features, logit_effects, max_activations, site_activations, Clamp, LogitEffects,
};
