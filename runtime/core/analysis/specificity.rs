//! Specificity as *Scaling Monosemanticity* measures it: when a feature is
//! active, is its concept present? Contexts are drawn from every activation
//! level, each is scored 0–3 by a rater, and the score distribution is
//! reported per level (the paper's stacked bars):
//!
//! 0 — unrelated; 1 — related to the context but not near the highlighted
//! text; 2 — loosely related; 3 — cleanly identifies the concept.
use super::examples::{Context, FeatureExamples};
use crate::{Error, Result};

/// Scores a context 0–3. A closure from a script, a language model asked
/// to judge, or [`ConceptRater`].
pub trait Rater {
    fn rate(&mut self, context: &Context) -> Result<i64>;
}

/// The automatic proxy for a concept named by strings (words, tokens):
/// 3 if the highlighted token is one of them, 2 if one is within two
/// tokens of it, 1 if one is elsewhere in the context, else 0. Like the
/// paper's token-set proxy it only suits concepts carried by specific tokens.
pub struct ConceptRater {
    strings: Vec<String>,
}

impl ConceptRater {
    pub fn new(strings: &[String]) -> Result<Self> {
        let strings: Vec<String> = strings
            .iter()
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if strings.is_empty() {
            return Err(Error::invalid(
                "a concept rater needs at least one non-empty string",
            ));
        }
        Ok(ConceptRater { strings })
    }

    fn matches(&self, token: &str) -> bool {
        let token = token.trim().to_lowercase();
        !token.is_empty() && self.strings.contains(&token)
    }
}

impl Rater for ConceptRater {
    fn rate(&mut self, c: &Context) -> Result<i64> {
        let hit = |i: usize| c.tokens.get(i).is_some_and(|t| self.matches(t));
        if hit(c.focus) {
            return Ok(3);
        }
        let near = c.focus.saturating_sub(2)..=(c.focus + 2);
        if near.clone().any(hit) {
            return Ok(2);
        }
        Ok(i64::from((0..c.tokens.len()).any(hit)))
    }
}

/// Score counts for one activation level.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecificityBin {
    pub low: f64,
    pub high: f64,
    /// Contexts scored 0, 1, 2 and 3.
    pub scores: [u64; 4],
}

impl SpecificityBin {
    pub fn mean(&self) -> f64 {
        let n: u64 = self.scores.iter().sum();
        let total: u64 = self
            .scores
            .iter()
            .enumerate()
            .map(|(s, c)| s as u64 * c)
            .sum();
        total as f64 / n.max(1) as f64
    }
}

/// Rates every quantile's contexts of `examples`.
pub fn specificity(
    examples: &FeatureExamples,
    rater: &mut dyn Rater,
) -> Result<Vec<SpecificityBin>> {
    let mut bins = Vec::new();
    for q in &examples.quantiles {
        let mut scores = [0u64; 4];
        for context in &q.contexts {
            crate::interrupt::check()?;
            let score = rater.rate(context)?;
            let slot = usize::try_from(score)
                .ok()
                .filter(|s| *s < 4)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "a rater must return 0, 1, 2 or 3; it returned {score} for \"{}\"",
                        context.plain()
                    ))
                })?;
            scores[slot] += 1;
        }
        bins.push(SpecificityBin {
            low: q.low,
            high: q.high,
            scores,
        });
    }
    Ok(bins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(tokens: &[&str], focus: usize) -> Context {
        Context {
            row: 0,
            activation: 1.0,
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            activations: vec![None; tokens.len()],
            focus,
        }
    }

    #[test]
    fn the_concept_rater_scores_by_distance_from_the_highlighted_token() {
        let mut rater = ConceptRater::new(&[" Paris".into(), "France".into()]).unwrap();
        let tokens = ["I", " saw", " Paris", " in", " the", " spring", " rain"];
        assert_eq!(rater.rate(&context(&tokens, 2)).unwrap(), 3);
        assert_eq!(rater.rate(&context(&tokens, 4)).unwrap(), 2);
        assert_eq!(rater.rate(&context(&tokens, 6)).unwrap(), 1);
        assert_eq!(rater.rate(&context(&["no", " match"], 0)).unwrap(), 0);
        assert!(ConceptRater::new(&[" ".into()]).is_err());
    }
}
