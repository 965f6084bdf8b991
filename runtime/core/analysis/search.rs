//! Finding features from text: the features most active on some texts
//! (and, given counter-examples, most specific to them), and the strongest
//! features at each token of one text.
use crate::model::{Model, Site};
use crate::sae::Sae;
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// A feature found by [`search`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchHit {
    pub feature: i64,
    /// `positive − negative` (just `positive` without counter-examples).
    pub score: f64,
    /// The feature's maximum over each text's tokens, averaged over the texts.
    pub positive: f64,
    /// The same over the counter-examples (0 without any).
    pub negative: f64,
    /// Fraction of the texts on which the feature fired at all.
    pub fired: f64,
}

/// One token of a text and its strongest features.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenFeatures {
    pub token: String,
    /// (feature, activation), strongest first; active features only.
    pub features: Vec<(i64, f32)>,
}

/// A text's token ids and the SAE's codes at `site`, [tokens, n_features].
fn text_codes(model: &Model, sae: &Sae, site: Site, text: &str) -> Result<(Vec<u32>, Tensor)> {
    super::check_width(model, sae)?;
    let _guard = tch::no_grad_guard();
    let tokens = model.tokens_to_run(text)?;
    let x = model.activations(text, site)?;
    Ok((tokens, sae.encode(&x)?.f_totype(Kind::Float)?))
}

/// Each feature's maximum over a text's tokens, [n_features]. Position 0 is
/// left out when there are others: the first token of a sequence is an
/// attention sink whose activations are far from any other token's (the
/// harvest leaves it out too), and features there say nothing about the text.
fn text_maxima(model: &Model, sae: &Sae, site: Site, text: &str) -> Result<Tensor> {
    let (_, codes) = text_codes(model, sae, site, text)?;
    let n = codes.size()[0];
    let codes = if n > 1 {
        codes.f_narrow(0, 1, n - 1)?
    } else {
        codes
    };
    Ok(codes.f_amax([0i64].as_slice(), false)?)
}

/// Each feature's maximum over each of some texts, [texts, n_features]:
/// what [`search`] compares, kept per text so that sets can be combined.
pub struct TextMaxima {
    pub per_text: Tensor,
}

impl TextMaxima {
    pub fn of(model: &Model, sae: &Sae, site: Site, texts: &[String]) -> Result<Self> {
        if texts.is_empty() {
            return Err(Error::invalid("search needs at least one text"));
        }
        let maxima = texts
            .iter()
            .map(|t| {
                crate::interrupt::check()?;
                text_maxima(model, sae, site, t)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TextMaxima {
            per_text: Tensor::f_stack(&maxima, 0)?,
        })
    }

    /// The texts of several sets together.
    pub fn union(sets: &[&TextMaxima]) -> Result<Self> {
        let parts: Vec<&Tensor> = sets.iter().map(|s| &s.per_text).collect();
        Ok(TextMaxima {
            per_text: Tensor::f_cat(&parts, 0)?,
        })
    }

    /// Each feature's per-text maximum averaged over the texts.
    pub fn mean(&self) -> Result<Tensor> {
        Ok(self.per_text.f_mean_dim(0, false, Kind::Float)?)
    }

    /// The fraction of texts on which each feature fired.
    pub fn fired(&self) -> Result<Tensor> {
        Ok(self
            .per_text
            .f_gt(0.0)?
            .f_totype(Kind::Float)?
            .f_mean_dim(0, false, Kind::Float)?)
    }
}

/// The `k` features scoring highest on `texts`: by their mean per-text
/// maximum, minus the same over `negatives` when given (features of what the
/// texts share, not of text in general).
pub fn search(
    model: &Model,
    sae: &Sae,
    site: Site,
    texts: &[String],
    negatives: &[String],
    k: usize,
) -> Result<Vec<SearchHit>> {
    let positive = TextMaxima::of(model, sae, site, texts)?;
    let negative = if negatives.is_empty() {
        None
    } else {
        Some(TextMaxima::of(model, sae, site, negatives)?)
    };
    rank(&positive, negative.as_ref(), k)
}

/// The `k` best features of `positive` against `negative` (see [`search`]).
pub fn rank(
    positive: &TextMaxima,
    negative: Option<&TextMaxima>,
    k: usize,
) -> Result<Vec<SearchHit>> {
    let mean = positive.mean()?;
    let negative = match negative {
        Some(n) => n.mean()?,
        None => mean.f_zeros_like()?,
    };
    let score = mean.f_sub(&negative)?;
    let k = (k as i64).min(score.size()[0]);
    let (_, best) = score.f_topk(k, 0, true, true)?;
    let pick = |t: &Tensor| -> Result<Vec<f64>> {
        let v: Vec<f32> = Vec::try_from(&t.f_index_select(0, &best)?.f_to(tch::Device::Cpu)?)?;
        Ok(v.into_iter().map(f64::from).collect())
    };
    let (scores, pos, neg, fired) = (
        pick(&score)?,
        pick(&mean)?,
        pick(&negative)?,
        pick(&positive.fired()?)?,
    );
    let features: Vec<i64> = Vec::try_from(&best.f_to(tch::Device::Cpu)?)?;
    Ok((0..features.len())
        .map(|i| SearchHit {
            feature: features[i],
            score: scores[i],
            positive: pos[i],
            negative: neg[i],
            fired: fired[i],
        })
        .collect())
}

/// For each token of `text`, its `k` strongest active features.
pub fn features_for(
    model: &Model,
    sae: &Sae,
    site: Site,
    text: &str,
    k: usize,
) -> Result<Vec<TokenFeatures>> {
    let (tokens, codes) = text_codes(model, sae, site, text)?;
    let k = (k as i64).min(sae.cfg.n_features);
    let (values, indices) = codes.f_topk(k, 1, true, true)?;
    let values: Vec<Vec<f32>> = Vec::try_from(&values.f_to(tch::Device::Cpu)?)?;
    let indices: Vec<Vec<i64>> = Vec::try_from(&indices.f_to(tch::Device::Cpu)?)?;
    tokens
        .iter()
        .zip(values.iter().zip(&indices))
        .map(|(&id, (values, indices))| {
            Ok(TokenFeatures {
                token: model.tokenizer.decode(&[id])?,
                features: indices
                    .iter()
                    .zip(values)
                    .filter(|(_, v)| **v > 0.0)
                    .map(|(&f, &v)| (f, v))
                    .collect(),
            })
        })
        .collect()
}
