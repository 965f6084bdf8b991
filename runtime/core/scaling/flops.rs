//! Training compute of an SAE, the C on the x axis of the scaling fits.
use super::FitError;
use serde::Serialize;

/// The SAE architecture whose training compute is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaeKind {
    /// Dense ReLU (or any activation that leaves all F latents in play).
    Relu,
    /// TopK: only `k` latents are non-zero per token (Gao et al. 2024).
    TopK { k: usize },
}

/// Training FLOPs of an SAE on `d_in`-dimensional activations with
/// `n_features` latents, over `tokens` tokens.
///
/// A (d × F) matmul costs 2·d·F FLOPs per token (a multiply and an add per
/// weight) forward, and twice that backward (the gradient with respect to
/// its input and to its weight), so 3 × 2·d·F in all — the 6·N·D rule of
/// Kaplan et al. (2020), with N = 2·d·F parameters for encoder plus decoder:
///
/// - ReLU: encoder and decoder both dense, `C = 2 · 3 · 2·d·F · T = 12·d·F·T`.
/// - TopK: the encoder is dense (every pre-activation is needed to choose
///   the top k) but the decoder touches only k columns:
///   `C = (3 · 2·d·F + 3 · 2·d·k) · T = 6·d·(F + k)·T`.
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
    kind: SaeKind,
) -> Result<f64, FitError> {
    check_sizes(d_in, n_features, tokens)?;
    let per_matmul = |width: usize| 3.0 * 2.0 * d_in as f64 * width as f64;
    let per_token = match kind {
        SaeKind::Relu => 2.0 * per_matmul(n_features),
        SaeKind::TopK { k } if k == 0 || k > n_features => {
            return Err(FitError::InvalidOption {
                name: "k",
                reason: format!("must lie between 1 and n_features = {n_features}, got {k}"),
            })
        }
        SaeKind::TopK { k } => per_matmul(n_features) + per_matmul(k),
    };
    Ok(per_token * tokens)
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

    #[test]
    fn relu_sae_costs_twelve_d_f_per_token() {
        let flops = training_flops(768, 24576, 1e9, SaeKind::Relu).unwrap();
        assert_eq!(flops, 12.0 * 768.0 * 24576.0 * 1e9);
    }

    #[test]
    fn topk_sae_pays_dense_encoder_and_sparse_decoder() {
        let flops = training_flops(768, 24576, 1e9, SaeKind::TopK { k: 32 }).unwrap();
        assert_eq!(flops, 6.0 * 768.0 * (24576.0 + 32.0) * 1e9);
        // With every latent active TopK costs what the dense SAE does.
        let full = training_flops(8, 16, 10.0, SaeKind::TopK { k: 16 }).unwrap();
        assert_eq!(full, training_flops(8, 16, 10.0, SaeKind::Relu).unwrap());
    }

    #[test]
    fn impossible_sizes_are_rejected() {
        let err = training_flops(8, 16, 1.0, SaeKind::TopK { k: 17 }).unwrap_err();
        assert!(matches!(err, FitError::InvalidOption { name: "k", .. }));
        assert!(training_flops(0, 16, 1.0, SaeKind::Relu).is_err());
        assert!(training_flops(8, 16, f64::NAN, SaeKind::Relu).is_err());
    }
}
