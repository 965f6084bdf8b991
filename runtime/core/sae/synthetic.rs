//! Data with known ground truth for checking that an SAE finds features:
//! sparse non-negative combinations of more unit directions than dimensions
//! (the toy setting of *Toy Models of Superposition*, Elhage et al. 2022).
use crate::scalar_op::scalar_op;
use crate::{Error, Result};
use tch::{Device, Kind};

/// Activations and the directions they were built from.
pub struct Superposition {
    /// [tokens, d].
    pub activations: tch::Tensor,
    /// The true features, unit rows [n_true, d].
    pub directions: tch::Tensor,
}

/// `tokens` samples in `d` dimensions, each a sum of true features that are
/// active independently with probability `mean_active / n_true` and have
/// magnitudes uniform in [0, 1). Repeatable after `rng::seed`.
pub fn superposition(n_true: i64, d: i64, mean_active: f64, tokens: i64) -> Result<Superposition> {
    if n_true < 1 || d < 1 || tokens < 1 || !(mean_active > 0.0 && mean_active <= n_true as f64) {
        return Err(Error::invalid(format!(
            "superposition needs n_true, d, tokens >= 1 and 0 < mean_active <= n_true; got {n_true}, {d}, {tokens}, {mean_active}"
        )));
    }
    let options = (Kind::Float, Device::Cpu);
    let directions = tch::Tensor::f_randn([n_true, d], options)?;
    let directions = directions.f_div(&directions.f_norm_scalaropt_dim(2, [1], true)?)?;
    let probability = mean_active / n_true as f64;
    // In chunks, so the dense [tokens, n_true] coefficients never get large.
    let chunk = (1 << 22) / n_true.max(1);
    let mut parts = Vec::new();
    let mut done = 0;
    while done < tokens {
        let n = chunk.max(1).min(tokens - done);
        let active = tch::Tensor::f_rand([n, n_true], options)?.f_lt(probability)?;
        let magnitudes = tch::Tensor::f_rand([n, n_true], options)?;
        parts.push(magnitudes.f_mul(&active)?.f_matmul(&directions)?);
        done += n;
    }
    Ok(Superposition {
        activations: tch::Tensor::f_cat(&parts, 0)?,
        directions,
    })
}

/// For each true direction, the best cosine similarity with any decoder
/// row; [n_true]. Their mean is the recovery score (1 = all found).
pub fn max_cosine_similarity(
    directions: &tch::Tensor,
    decoder: &tch::Tensor,
) -> Result<tch::Tensor> {
    let _guard = tch::no_grad_guard();
    let (a, b) = (directions.size(), decoder.size());
    if a.len() != 2 || b.len() != 2 || a[1] != b[1] {
        return Err(Error::invalid(format!(
            "max_cosine_similarity needs two matrices [n, d] of the same width d, got {a:?} and {b:?}"
        )));
    }
    let unit = |t: &tch::Tensor| -> Result<tch::Tensor> {
        let t = t.f_to(Device::Cpu)?.f_totype(Kind::Float)?;
        let norms = scalar_op(|| t.f_norm_scalaropt_dim(2, [1], true)?.f_clamp_min(1e-12))?;
        Ok(t.f_div(&norms)?)
    };
    let similarity = unit(directions)?.f_matmul(&unit(decoder)?.f_transpose(0, 1)?)?;
    Ok(similarity.f_amax([1], false)?)
}

/// The mean of [`max_cosine_similarity`].
pub fn mean_max_cosine_similarity(directions: &tch::Tensor, decoder: &tch::Tensor) -> Result<f64> {
    Ok(max_cosine_similarity(directions, decoder)?
        .f_mean(Kind::Double)?
        .f_double_value(&[])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_true_directions_recover_themselves() {
        crate::rng::seed(0);
        let data = superposition(32, 8, 3.0, 1000).unwrap();
        assert_eq!(data.activations.size(), vec![1000, 8]);
        let score = mean_max_cosine_similarity(&data.directions, &data.directions).unwrap();
        assert!((score - 1.0).abs() < 1e-5);
    }
}
