//! Training compute of an SAE, the C on the x axis of the scaling fits.
use super::FitError;
use crate::sae::ArchitectureConfig;

/// Training FLOPs of an SAE of `architecture` on `d_in`-dimensional
/// activations with `n_features` latents, over `tokens` tokens: the
/// architecture's FLOPs per token (see
/// [`crate::sae::Architecture::training_flops_per_token`]) times the tokens.
///
/// Every (d × F) matmul costs 3 · 2·d·F per token forward and backward
/// (the 6·N·D rule of Kaplan et al., 2020), so:
///
/// - ReLU and JumpReLU: encoder and decoder both dense, `C = 12·d·F·T`.
/// - TopK: the encoder is dense (every pre-activation is needed to choose
///   the top k) but the decoder touches only k rows: `C = 6·d·(F + k)·T`.
///
/// Ignored as lower order: biases, the activation and top-k selection (O(F)
/// per token), and the fact that no gradient is needed for the encoder's
/// input (the activations are data), which would make the dense count
/// 10·d·F·T. A constant factor moves every run alike, so fitted exponents
/// do not depend on it; what matters is counting all runs the same way.
pub fn training_flops(
    d_in: usize,
    n_features: usize,
    tokens: f64,
    architecture: &ArchitectureConfig,
) -> Result<f64, FitError> {
    check_sizes(d_in, n_features, tokens)?;
    let arch = architecture.get();
    arch.check(d_in as i64, n_features as i64)
        .map_err(|e| FitError::InvalidOption {
            name: "architecture",
            reason: e.to_string(),
        })?;
    Ok(arch.training_flops_per_token(d_in as f64, n_features as f64) * tokens)
}

fn check_sizes(d_in: usize, n_features: usize, tokens: f64) -> Result<(), FitError> {
    let invalid = |name, reason: &str| FitError::InvalidOption {
        name,
        reason: reason.to_string(),
    };
    if d_in == 0 {
        return Err(invalid("d_in", "must be at least 1"));
    }
    if n_features == 0 {
        return Err(invalid("n_features", "must be at least 1"));
    }
    if !tokens.is_finite() || tokens < 0.0 {
        return Err(invalid("tokens", "must be a finite, non-negative count"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::{ReluConfig, TopKConfig};

    fn relu() -> ArchitectureConfig {
        ArchitectureConfig::Relu(ReluConfig {
            l1_coefficient: 5.0,
        })
    }

    fn topk(k: i64) -> ArchitectureConfig {
        ArchitectureConfig::TopK(TopKConfig {
            k,
            k_aux: 1,
            aux_coefficient: 1.0 / 32.0,
        })
    }

    #[test]
    fn dense_sae_costs_twelve_d_f_per_token() {
        let flops = training_flops(768, 24576, 1e9, &relu()).unwrap();
        assert_eq!(flops, 12.0 * 768.0 * 24576.0 * 1e9);
    }

    #[test]
    fn topk_sae_pays_dense_encoder_and_sparse_decoder() {
        let flops = training_flops(768, 24576, 1e9, &topk(32)).unwrap();
        assert_eq!(flops, 6.0 * 768.0 * (24576.0 + 32.0) * 1e9);
        // With every latent active TopK costs what the dense SAE does.
        let full = training_flops(8, 16, 10.0, &topk(16)).unwrap();
        assert_eq!(full, training_flops(8, 16, 10.0, &relu()).unwrap());
    }

    #[test]
    fn impossible_sizes_are_rejected() {
        let err = training_flops(8, 16, 1.0, &topk(17)).unwrap_err();
        assert!(
            matches!(&err, FitError::InvalidOption { reason, .. } if reason.contains("k = 17")),
            "{err}"
        );
        assert!(training_flops(0, 16, 1.0, &relu()).is_err());
        assert!(training_flops(8, 16, f64::NAN, &relu()).is_err());
    }
}
