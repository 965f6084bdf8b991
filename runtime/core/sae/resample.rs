//! Resampling dead features (*Towards Monosemanticity*, Anthropic 2023,
//! "Neuron resampling"): a feature that has not fired for a while is pointed
//! at an input the SAE reconstructs badly, picked with probability
//! proportional to the square of its loss. Its decoder row becomes that
//! input's direction, its encoder row the same direction at 0.2 × the mean
//! norm of the live encoder rows, its bias zero, and its Adam moments reset.
//!
//! One departure, because the April 2024 update leaves decoder norms free:
//! the new decoder row gets the mean norm of the live rows instead of norm 1,
//! so a resampled feature pays the same penalty per unit of activation as
//! its neighbours.
use super::adam::Adam;
use super::{LossOptions, Sae};
use crate::Result;
use rand::rngs::StdRng;
use rand::RngExt;
use tch::Kind;

/// The encoder scale for a resampled feature, from the paper.
const ENCODER_SCALE: f64 = 0.2;

/// Resamples the features marked in `dead` ([n_features] bool) using
/// candidate inputs `inputs` [tokens, d_in] (already normalised as in
/// training). Returns how many were resampled.
pub fn resample_dead_features(
    sae: &Sae,
    adam: &mut Adam,
    dead: &tch::Tensor,
    inputs: &tch::Tensor,
    rng: &mut StdRng,
) -> Result<usize> {
    let _guard = tch::no_grad_guard();
    let dead_rows = dead.f_nonzero()?.f_reshape([-1])?;
    let n_dead = dead_rows.size()[0] as usize;
    if n_dead == 0 {
        return Ok(0);
    }
    let out = sae.forward(inputs, &LossOptions::default())?;
    let per_input = out
        .target
        .f_sub(&out.x_hat)?
        .f_square()?
        .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Double)?;
    let weights = Vec::<f64>::try_from(&per_input.f_square()?.f_to(tch::Device::Cpu)?)?;
    let picked: Vec<i64> = (0..n_dead)
        .map(|_| weighted_pick(&weights, rng) as i64)
        .collect();
    let picked = tch::Tensor::f_from_slice(&picked)?.f_to(inputs.device())?;

    let w = &sae.weights;
    // The decoder adds b_dec, so the part left to explain is x − b_dec.
    let unit = |t: tch::Tensor| -> Result<tch::Tensor> {
        let norms = t.f_norm_scalaropt_dim(2, [1], true)?.f_clamp_min(1e-12)?;
        Ok(t.f_div(&norms)?)
    };
    let directions = unit(
        out.target
            .f_index_select(0, &picked)?
            .f_sub(w.b_dec.inner())?,
    )?;
    // A transcoder's encoder reads another space: its rows point at the
    // picked inputs themselves.
    let encoder_directions = if sae.cfg.layout.reconstructs_input() {
        directions.shallow_clone()
    } else {
        unit(sae.input_part(&inputs.f_index_select(0, &picked)?)?)?
    };

    let alive = dead.f_logical_not()?;
    let mean_live_norm = |t: &tch::Tensor| -> Result<f64> {
        let live = t.f_index_select(0, &alive.f_nonzero()?.f_reshape([-1])?)?;
        if live.size()[0] == 0 {
            return Ok(1.0);
        }
        Ok(live
            .f_norm_scalaropt_dim(2, [1], false)?
            .f_mean(Kind::Double)?
            .f_double_value(&[])?)
    };
    let decoder_norm = mean_live_norm(w.w_dec.inner())?;
    let encoder_norm = mean_live_norm(w.w_enc.inner())?;

    let mut w_dec = w.w_dec.inner().shallow_clone();
    let _ = w_dec.f_index_copy_(0, &dead_rows, &directions.f_mul_scalar(decoder_norm)?)?;
    let mut w_enc = w.w_enc.inner().shallow_clone();
    let _ = w_enc.f_index_copy_(
        0,
        &dead_rows,
        &encoder_directions.f_mul_scalar(ENCODER_SCALE * encoder_norm)?,
    )?;
    let mut b_enc = w.b_enc.inner().shallow_clone();
    let _ = b_enc.f_index_fill_(0, &dead_rows, 0.0)?;
    for name in ["W_enc", "b_enc", "W_dec"] {
        adam.reset_rows(name, &dead_rows)?;
    }
    if w.log_threshold.is_some() {
        adam.reset_rows("log_threshold", &dead_rows)?;
    }
    Ok(n_dead)
}

/// An index drawn with probability proportional to `weights` (uniform when
/// they are all zero or not finite).
fn weighted_pick(weights: &[f64], rng: &mut StdRng) -> usize {
    let total: f64 = weights.iter().filter(|w| w.is_finite()).sum();
    if !(total > 0.0 && total.is_finite()) {
        return rng.random_range(0..weights.len().max(1));
    }
    let mut target = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if !w.is_finite() {
            continue;
        }
        if target < *w {
            return i;
        }
        target -= w;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::SaeConfig;
    use rand::SeedableRng;

    #[test]
    fn picks_follow_the_weights() {
        let mut rng = StdRng::seed_from_u64(0);
        let picks: Vec<usize> = (0..200)
            .map(|_| weighted_pick(&[0.0, 1.0, 0.0, 3.0], &mut rng))
            .collect();
        assert!(picks.iter().all(|p| *p == 1 || *p == 3));
        let threes = picks.iter().filter(|p| **p == 3).count();
        assert!((120..=180).contains(&threes), "{threes}");
    }

    #[test]
    fn dead_rows_point_at_inputs_and_live_rows_stay() {
        crate::rng::seed(3);
        let sae = Sae::new(SaeConfig::new("relu", 4, 6).unwrap()).unwrap();
        let before = crate::sae::deep_copy(sae.weights.w_dec.inner()).unwrap();
        let mut adam = Adam::new(
            sae.weights
                .named()
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
            (0.9, 0.999),
            1e-8,
        )
        .unwrap();
        let dead = tch::Tensor::from_slice(&[false, true, false, false, false, true]);
        let inputs = tch::Tensor::from_slice(&[3.0f32, 0.0, 0.0, 0.0]).reshape([1, 4]);
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            resample_dead_features(&sae, &mut adam, &dead, &inputs, &mut rng).unwrap(),
            2
        );
        let w_dec = sae.weights.w_dec.inner();
        let row = Vec::<f64>::try_from(w_dec.get(1).to_kind(Kind::Double)).unwrap();
        assert!(
            (row[0] - 0.1).abs() < 1e-6 && row[1..].iter().all(|v| v.abs() < 1e-7),
            "{row:?}"
        );
        assert_eq!(
            f64::try_from((w_dec.get(0) - before.get(0)).abs().max()).unwrap(),
            0.0
        );
        assert_eq!(sae.weights.b_enc.inner().get(5).double_value(&[]), 0.0);
    }
}
