//! What a dictionary reads and what it writes: an SAE reconstructs the
//! activation it reads; a transcoder reads one site and predicts another
//! (the MLP's input → its output, Dunefsky et al. 2024); a crosscoder reads
//! several sites side by side and reconstructs each (Lindsey et al. 2024,
//! "Sparse Crosscoders"). The sparsity architecture (ReLU, TopK, JumpReLU)
//! is orthogonal to this: any of them encodes.
//!
//! The trainer and the evaluation see one row per token. For a transcoder
//! the row is the input and the target side by side, `[x | y]`, as a
//! two-site store holds them; for a crosscoder it is every site side by
//! side, which is both input and target. Each site is normalised by its own
//! scale (E‖s·x‖² = its width), folded into the weights when training ends.
use super::parameter;
use crate::options::OptionMap;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

/// What a dictionary reads and writes.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Layout {
    /// An SAE: reads one activation (d_in wide) and reconstructs it.
    #[default]
    Autoencoder,
    /// Reads one site (d_in wide) and predicts another (`d_out` wide):
    /// ŷ = W_dec·f + b_dec, plus W_skip·x with `skip` (SAELens's SkipTranscoder).
    Transcoder { d_out: i64, skip: bool },
    /// Reads several sites side by side (their widths sum to d_in) and
    /// reconstructs each; a feature's decoder norm is the sum of its
    /// per-site norms (Anthropic's crosscoder note), so the L1 penalty
    /// Σᵢ fᵢ·Σₗ‖W_dec,i,l‖ favours features that write few sites.
    Crosscoder { widths: Vec<i64> },
}

impl Layout {
    /// What to call it in messages.
    pub fn noun(&self) -> &'static str {
        match self {
            Layout::Autoencoder => "SAE",
            Layout::Transcoder { .. } => "transcoder",
            Layout::Crosscoder { .. } => "crosscoder",
        }
    }

    /// Width of what the decoder writes.
    pub fn d_out(&self, d_in: i64) -> i64 {
        match self {
            Layout::Transcoder { d_out, .. } => *d_out,
            _ => d_in,
        }
    }

    /// Width of one training row: input and target side by side for a
    /// transcoder, the input (which is also the target) otherwise.
    pub fn row_width(&self, d_in: i64) -> i64 {
        match self {
            Layout::Transcoder { d_out, .. } => d_in + d_out,
            _ => d_in,
        }
    }

    /// Widths of the sites of a row, in order.
    pub fn site_widths(&self, d_in: i64) -> Vec<i64> {
        match self {
            Layout::Autoencoder => vec![d_in],
            Layout::Transcoder { d_out, .. } => vec![d_in, *d_out],
            Layout::Crosscoder { widths } => widths.clone(),
        }
    }

    /// Widths of the sites the decoder writes, in order: a crosscoder's
    /// sites, one otherwise. They are also the blocks of a decoder row whose
    /// norms add up in a feature's decoder norm.
    pub fn output_widths(&self, d_in: i64) -> Vec<i64> {
        match self {
            Layout::Crosscoder { widths } => widths.clone(),
            _ => vec![self.d_out(d_in)],
        }
    }

    /// Whether the decoder writes what the encoder reads (so b_dec may be
    /// subtracted from the input).
    pub fn reconstructs_input(&self) -> bool {
        !matches!(self, Layout::Transcoder { .. })
    }

    /// Which of a row's per-site values (scales, widths) belong to the
    /// encoder's input and which to the decoder's output: a transcoder's
    /// first site and second; every site for both otherwise.
    pub fn split_sites<'a, T>(&self, per_site: &'a [T]) -> (&'a [T], &'a [T]) {
        match self {
            Layout::Transcoder { .. } => per_site.split_at(1.min(per_site.len())),
            _ => (per_site, per_site),
        }
    }

    /// `Err` with the reason when the layout cannot work for this d_in.
    pub fn check(&self, d_in: i64, apply_b_dec_to_input: bool) -> Result<()> {
        match self {
            Layout::Autoencoder => Ok(()),
            Layout::Transcoder { d_out, .. } => {
                if *d_out < 1 {
                    return Err(Error::invalid(format!(
                        "a transcoder needs d_out >= 1, got {d_out}"
                    )));
                }
                if apply_b_dec_to_input {
                    // As SAELens: b_dec lives in the output space.
                    return Err(Error::invalid(
                        "apply_b_dec_to_input cannot be used with a transcoder: its b_dec is in the output space",
                    ));
                }
                Ok(())
            }
            Layout::Crosscoder { widths } => {
                let total: i64 = widths.iter().sum();
                if widths.is_empty() || widths.iter().any(|w| *w < 1) || total != d_in {
                    return Err(Error::invalid(format!(
                        "a crosscoder's site widths {widths:?} must be >= 1 each and sum to d_in = {d_in}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// A row's per-site factors as one tensor per column, [width].
    pub fn column_factors(widths: &[i64], factors: &[f64]) -> Result<tch::Tensor> {
        if widths.len() != factors.len() {
            return Err(Error::invalid(format!(
                "{} scales for {} sites",
                factors.len(),
                widths.len()
            )));
        }
        let columns: Vec<f32> = widths
            .iter()
            .zip(factors)
            .flat_map(|(w, f)| std::iter::repeat_n(*f as f32, *w as usize))
            .collect();
        Ok(tch::Tensor::f_from_slice(&columns)?)
    }
}

/// How cfg.json names a dictionary: SAELens's names where SAELens has
/// one — "standard", "topk", "jumprelu" for SAEs; "transcoder",
/// "skip_transcoder", "jumprelu_transcoder" — and saelab's in the same
/// pattern otherwise ("topk_transcoder", "topk_skip_transcoder",
/// "crosscoder", "topk_crosscoder": SAELens has no crosscoders).
impl Layout {
    /// cfg.json's `architecture` for this layout over the sparsity
    /// architecture SAELens calls `sparsity` ("standard", "topk", ...).
    pub fn cfg_name(&self, sparsity: &str) -> String {
        let prefix = if sparsity == "standard" {
            String::new()
        } else {
            format!("{sparsity}_")
        };
        match self {
            Layout::Autoencoder => sparsity.to_string(),
            Layout::Transcoder { skip: false, .. } => format!("{prefix}transcoder"),
            Layout::Transcoder { skip: true, .. } => format!("{prefix}skip_transcoder"),
            Layout::Crosscoder { .. } => format!("{prefix}crosscoder"),
        }
    }

    /// The fields a layout adds to cfg.json: a transcoder's `d_out` (as
    /// SAELens), a crosscoder's `site_widths` (and `hook_names`, written
    /// with the metadata).
    pub fn write_cfg_fields(&self, cfg: &mut OptionMap) {
        match self {
            Layout::Autoencoder => {}
            Layout::Transcoder { d_out, .. } => {
                cfg.insert("d_out".into(), json!(d_out));
            }
            Layout::Crosscoder { widths } => {
                cfg.insert("site_widths".into(), json!(widths));
            }
        }
    }

    /// The sparsity architecture's name and the layout a cfg.json
    /// `architecture` and its fields describe (at `path`, for messages).
    pub fn read_cfg(name: &str, cfg: &OptionMap, path: &Path) -> Result<(String, Layout)> {
        let sparsity = |rest: &str| -> String {
            match rest.strip_suffix('_') {
                Some(prefix) if !prefix.is_empty() => prefix.to_string(),
                _ => "standard".to_string(),
            }
        };
        if let Some(rest) = name.strip_suffix("crosscoder") {
            let widths = cfg
                .get("site_widths")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect::<Vec<_>>())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: a crosscoder's cfg.json needs 'site_widths' (the width of each site, in row order)",
                        path.display()
                    ))
                })?;
            return Ok((sparsity(rest), Layout::Crosscoder { widths }));
        }
        if let Some(rest) = name.strip_suffix("transcoder") {
            let (rest, skip) = match rest.strip_suffix("skip_") {
                Some(rest) => (rest, true),
                None => (rest, false),
            };
            let d_out = cfg.get("d_out").and_then(Value::as_i64).ok_or_else(|| {
                Error::invalid(format!(
                    "{}: a transcoder's cfg.json needs 'd_out' as an integer",
                    path.display()
                ))
            })?;
            return Ok((sparsity(rest), Layout::Transcoder { d_out, skip }));
        }
        Ok((name.to_string(), Layout::Autoencoder))
    }
}

/// What a transcoder's or crosscoder's weights and rows need beyond an SAE's.
impl super::Sae {
    /// `Err` unless the source's rows are what the SAE reads: its width, and
    /// for a transcoder or crosscoder its sites' widths; an SAE refuses rows of
    /// several sites, whose scales it would mix.
    pub fn check_rows(&self, source: &dyn super::ActivationSource) -> Result<()> {
        let layout = &self.cfg.layout;
        let row = layout.row_width(self.cfg.d_in);
        if source.dim() != row {
            let reads = match layout {
                Layout::Transcoder { .. } => format!("transcoder reads rows of width {row}"),
                _ => format!("{}'s d_in is {row}", layout.noun()),
            };
            return Err(Error::invalid(format!(
                "the activations have width {} but the {reads} ({})",
                source.dim(),
                source.describe()
            )));
        }
        let (expected, found) = (layout.site_widths(self.cfg.d_in), source.site_widths());
        if *layout == Layout::Autoencoder && found.len() > 1 {
            return Err(Error::invalid(format!(
                "{} holds {} sites side by side (widths {found:?}): train a transcoder or a crosscoder on it, or harvest one site",
                source.describe(),
                found.len()
            )));
        }
        if *layout != Layout::Autoencoder && found != expected {
            return Err(Error::invalid(format!(
                "the {} reads sites of widths {expected:?}, but {} holds sites of widths {found:?}",
                layout.noun(),
                source.describe()
            )));
        }
        Ok(())
    }

    /// Gives a skip transcoder its W_skip [d_out, d_in]; an error for any
    /// other layout.
    pub fn set_skip(&mut self, w_skip: tch::Tensor) -> Result<()> {
        if !matches!(self.cfg.layout, Layout::Transcoder { skip: true, .. }) {
            return Err(Error::invalid(
                "only a transcoder with skip: true has a W_skip",
            ));
        }
        let shape = [self.cfg.d_out(), self.cfg.d_in];
        self.weights.w_skip = Some(parameter(&self.cfg, "W_skip", w_skip, &shape)?);
        Ok(())
    }

    /// The encoder's part of `x` [batch, d_in or row width]: the first d_in columns.
    pub fn input_part(&self, x: &tch::Tensor) -> Result<tch::Tensor> {
        Ok(x.f_narrow(1, 0, self.cfg.d_in)?)
    }

    /// What the decoder should produce for training rows `x`: a
    /// transcoder's output columns, otherwise `x` itself.
    pub fn target_part(&self, x: &tch::Tensor) -> Result<tch::Tensor> {
        if self.cfg.layout.reconstructs_input() {
            return Ok(x.shallow_clone());
        }
        let width = x.size().get(1).copied().unwrap_or(0);
        if width != self.cfg.layout.row_width(self.cfg.d_in) {
            return Err(Error::invalid(format!(
                "a transcoder trains on rows [batch, {}] (input then output side by side), got width {width}",
                self.cfg.layout.row_width(self.cfg.d_in)
            )));
        }
        Ok(x.f_narrow(1, self.cfg.d_in, self.cfg.d_out())?)
    }

    /// Multiplies each site of the input space by its own factor, as
    /// [`Self::fold_input_scale`] does for one: `factors` are a row's
    /// per-site scales (input then output for a transcoder; every site for
    /// a crosscoder; one for an SAE). W_enc's columns × s_in, W_dec's
    /// columns and b_dec ÷ s_out, W_skip[o, i] × s_in[i] / s_out[o].
    pub fn fold_site_scales(&self, factors: &[f64]) -> Result<()> {
        if let [factor] = factors {
            if self.cfg.layout == Layout::Autoencoder {
                return self.fold_input_scale(*factor);
            }
        }
        let widths = self.cfg.layout.site_widths(self.cfg.d_in);
        let (s_in, s_out) = self.cfg.layout.split_sites(factors);
        let (in_widths, out_widths) = self.cfg.layout.split_sites(&widths);
        let device = self.cfg.device;
        let s_in = Layout::column_factors(in_widths, s_in)?.f_to(device)?;
        let s_out = Layout::column_factors(out_widths, s_out)?.f_to(device)?;
        let _guard = tch::no_grad_guard();
        let mut w_enc = self.weights.w_enc.inner().shallow_clone();
        let _ = w_enc.f_mul_(&s_in)?;
        let mut w_dec = self.weights.w_dec.inner().shallow_clone();
        let _ = w_dec.f_div_(&s_out)?;
        let mut b_dec = self.weights.b_dec.inner().shallow_clone();
        let _ = b_dec.f_div_(&s_out)?;
        if let Some(w_skip) = &self.weights.w_skip {
            let ratio = s_out
                .f_unsqueeze(1)?
                .f_reciprocal()?
                .f_mul(&s_in.f_unsqueeze(0)?)?;
            let _ = w_skip.inner().shallow_clone().f_mul_(&ratio)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_layout() {
        let t = Layout::Transcoder {
            d_out: 3,
            skip: true,
        };
        assert_eq!((t.d_out(4), t.row_width(4)), (3, 7));
        assert_eq!(t.site_widths(4), [4, 3]);
        assert_eq!(t.split_sites(&[2.0, 5.0]), (&[2.0][..], &[5.0][..]));
        assert!(t.check(4, true).is_err());
        let c = Layout::Crosscoder { widths: vec![2, 2] };
        assert_eq!((c.d_out(4), c.row_width(4)), (4, 4));
        assert_eq!(c.output_widths(4), [2, 2]);
        assert!(c.check(5, false).is_err());
        assert!(c.check(4, false).is_ok());
        let factors = Layout::column_factors(&[2, 1], &[3.0, 0.5]).unwrap();
        let path = Path::new("cfg.json");
        for (layout, sparsity, name) in [
            (t.clone(), "standard", "skip_transcoder"),
            (t.clone(), "topk", "topk_skip_transcoder"),
            (c.clone(), "standard", "crosscoder"),
            (c.clone(), "jumprelu", "jumprelu_crosscoder"),
            (Layout::Autoencoder, "topk", "topk"),
        ] {
            assert_eq!(layout.cfg_name(sparsity), name);
            let mut cfg = OptionMap::new();
            layout.write_cfg_fields(&mut cfg);
            let read = Layout::read_cfg(name, &cfg, path).unwrap();
            assert_eq!(read, (sparsity.to_string(), layout));
        }
        assert!(Layout::read_cfg("transcoder", &OptionMap::new(), path).is_err());
        assert_eq!(Vec::<f32>::try_from(factors).unwrap(), [3.0, 3.0, 0.5]);
    }
}
