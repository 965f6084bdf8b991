//! Feature neighbourhoods: the features whose decoder directions are
//! closest by cosine similarity, in the same SAE or in another SAE trained
//! on the same activations (how a feature of a small SAE splits into
//! several in a larger one).
use crate::sae::Sae;
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// A feature and its decoder cosine similarity to the queried one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub feature: i64,
    pub cosine: f64,
}

/// Unit-norm decoder rows [n_features, d_in], f32 on the SAE's device.
pub fn unit_directions(sae: &Sae) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let w = sae
        .weights
        .w_dec
        .inner()
        .f_detach()?
        .f_totype(Kind::Float)?;
    let norms = w
        .f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?
        .f_clamp_min(1e-12)?;
    Ok(w.f_div(&norms)?)
}

/// The `k` features of `other` closest to `feature` of `sae` by decoder
/// cosine, closest first; the feature itself is left out when `other` is `sae`.
pub fn neighbors(sae: &Sae, feature: i64, other: &Sae, k: usize) -> Result<Vec<Neighbor>> {
    if feature < 0 || feature >= sae.cfg.n_features {
        return Err(Error::invalid(format!(
            "feature {feature} is out of range: the SAE has {} features",
            sae.cfg.n_features
        )));
    }
    if sae.cfg.d_in != other.cfg.d_in {
        return Err(Error::invalid(format!(
            "the SAEs read different widths ({} and {}): their features cannot be compared",
            sae.cfg.d_in, other.cfg.d_in
        )));
    }
    let _guard = tch::no_grad_guard();
    let query = unit_directions(sae)?.f_get(feature)?;
    let query = query.f_to(other.cfg.device)?;
    let mut cosines = unit_directions(other)?.f_mv(&query)?;
    let same = std::ptr::eq(sae, other);
    if same {
        cosines = cosines.f_index_fill(0, &Tensor::f_from_slice(&[feature])?, f64::NEG_INFINITY)?;
    }
    let available = other.cfg.n_features - i64::from(same);
    let k = (k as i64).min(available.max(0));
    let (values, indices) = cosines.f_topk(k, 0, true, true)?;
    let values: Vec<f32> = Vec::try_from(&values.f_to(tch::Device::Cpu)?)?;
    let indices: Vec<i64> = Vec::try_from(&indices.f_to(tch::Device::Cpu)?)?;
    Ok(indices
        .into_iter()
        .zip(values)
        .map(|(feature, cosine)| Neighbor {
            feature,
            cosine: cosine as f64,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::SaeConfig;

    #[test]
    fn the_nearest_feature_is_the_most_aligned_decoder_row() {
        crate::rng::seed(2);
        let sae = Sae::new(SaeConfig::new("relu", 4, 6).unwrap()).unwrap();
        {
            let _guard = tch::no_grad_guard();
            let w = sae.weights.w_dec.inner();
            // Feature 5 is feature 2 scaled (cosine 1); feature 0 is its opposite.
            let row2 = w.get(2);
            w.get(5).copy_(&(&row2 * 3.0));
            w.get(0).copy_(&(-&row2));
        }
        let found = neighbors(&sae, 2, &sae, 6).unwrap();
        assert_eq!(found.len(), 5, "the feature itself is left out");
        assert_eq!(found[0].feature, 5);
        assert!((found[0].cosine - 1.0).abs() < 1e-5);
        assert_eq!(found[4].feature, 0);
        assert!(neighbors(&sae, 6, &sae, 1).is_err());
        let wide = Sae::new(SaeConfig::new("relu", 5, 6).unwrap()).unwrap();
        assert!(neighbors(&sae, 0, &wide, 1)
            .unwrap_err()
            .to_string()
            .contains("widths"));
    }
}
