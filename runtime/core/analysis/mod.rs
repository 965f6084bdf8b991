//! What features mean: the records of where each feature fires, their
//! examples and neighbourhoods, interventions
//! on a running model with an SAE's features (steering, ablation) and the
//! attribution of an output to them.
pub mod attribution;
pub mod completeness;
pub mod examples;
pub mod feature_map;
pub mod grouped;
pub mod neighbors;
pub mod neurons;
pub mod records;
#[cfg(test)]
mod records_tests;
pub mod search;
pub mod specificity;
pub mod steering;

pub use attribution::{attribute, Attribution, AttributionOptions, FeatureAttribution};
pub use examples::{feature_examples, Context, ExampleOptions, FeatureExamples};
pub use neighbors::{neighbors, Neighbor};
pub use neurons::{neuron_correlations, NeuronCorrelations, NeuronOptions};
pub use records::{compute_records, Example, FeatureRecords, QuantileSample, RecordOptions};
pub use search::{features_for, search, SearchHit, TokenFeatures};
pub use specificity::{specificity, ConceptRater, Rater, SpecificityBin};
pub use steering::{
    clamp_features, logit_effects, max_activations, site_activations, Clamp, LogitEffects,
};

/// Refuses an SAE whose width is not the model's residual stream's.
pub(crate) fn check_width(model: &crate::model::Model, sae: &crate::sae::Sae) -> crate::Result<()> {
    if sae.cfg.d_in != model.d_model() as i64 {
        return Err(crate::Error::invalid(format!(
            "the SAE reads width {}, the model's residual stream is {}",
            sae.cfg.d_in,
            model.d_model()
        )));
    }
    Ok(())
}
