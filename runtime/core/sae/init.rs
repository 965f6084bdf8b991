//! Data-dependent initialisation of the decoder bias. The April 2024 update
//! starts every bias at zero; Gao et al. (TopK) and SAELens start b_dec at the
//! geometric median of a sample, which centres the data robustly.
use crate::{Error, Result};
use tch::Kind;

/// How b_dec starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderBiasInit {
    /// All zeros (the paper).
    Zeros,
    /// The mean of a sample of activations.
    Mean,
    /// The geometric median of a sample (Weiszfeld's algorithm).
    GeometricMedian,
}

impl DecoderBiasInit {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "zeros" | "zero" => Ok(Self::Zeros),
            "mean" => Ok(Self::Mean),
            "geometric_median" | "median" => Ok(Self::GeometricMedian),
            other => Err(Error::invalid(format!(
                "unknown b_dec_init '{other}' (use \"zeros\", \"mean\" or \"geometric_median\")"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Zeros => "zeros",
            Self::Mean => "mean",
            Self::GeometricMedian => "geometric_median",
        }
    }
}

impl std::str::FromStr for DecoderBiasInit {
    type Err = crate::Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}

/// The point minimising the sum of Euclidean distances to the rows of
/// `points` [n, d]: Weiszfeld's iteratively re-weighted mean, started at the
/// mean, stopped when a step moves less than 1e-6 of the data's scale.
pub fn geometric_median(points: &tch::Tensor, max_iterations: usize) -> Result<tch::Tensor> {
    let _guard = tch::no_grad_guard();
    let points = points.f_totype(Kind::Double)?;
    let mut median = points.f_mean_dim([0i64].as_slice(), false, None::<Kind>)?;
    let spread = points.f_std(false)?.f_double_value(&[])?.max(1e-12);
    for _ in 0..max_iterations {
        let distances = points
            .f_sub(&median)?
            .f_norm_scalaropt_dim(2, [1], false)?
            .f_clamp_min(1e-12)?;
        let weights = distances.f_reciprocal()?;
        let next = weights
            .f_unsqueeze(0)?
            .f_matmul(&points)?
            .f_squeeze_dim(0)?
            .f_div(&weights.f_sum(None::<Kind>)?)?;
        let moved = next.f_sub(&median)?.f_norm()?.f_double_value(&[])?;
        median = next;
        if moved < 1e-6 * spread {
            break;
        }
    }
    Ok(median.f_totype(Kind::Float)?)
}

/// b_dec's starting value from a sample [n, d], or `None` for zeros.
pub fn decoder_bias(init: DecoderBiasInit, sample: &tch::Tensor) -> Result<Option<tch::Tensor>> {
    match init {
        DecoderBiasInit::Zeros => Ok(None),
        DecoderBiasInit::Mean => Ok(Some(sample.f_mean_dim(
            [0i64].as_slice(),
            false,
            Kind::Float,
        )?)),
        DecoderBiasInit::GeometricMedian => Ok(Some(geometric_median(sample, 100)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_geometric_median_ignores_an_outlier() {
        let points =
            tch::Tensor::from_slice(&[0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 100.0, 100.0])
                .reshape([5, 2]);
        let median = Vec::<f64>::try_from(
            geometric_median(&points, 200)
                .unwrap()
                .to_kind(Kind::Double),
        )
        .unwrap();
        // The mean is pulled to (20.4, 20.4); the median stays near the unit square.
        assert!(median.iter().all(|v| *v > 0.3 && *v < 1.2), "{median:?}");
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            DecoderBiasInit::parse("median").unwrap(),
            DecoderBiasInit::GeometricMedian
        );
        assert!(DecoderBiasInit::parse("random").is_err());
    }
}
