//! Completeness as *Scaling Monosemanticity* studies it: how likely a
//! concept is to have a feature grows with how often it appears in the
//! training data. Each concept is named by strings (a country's names, an
//! element's symbol and name); its frequency is counted in a corpus, and it
//! "has a feature" when the contrastive search finds a feature that fires on
//! most corpus snippets mentioning it and far less on snippets that do not,
//! whether those mention no concept or another one (so a feature of
//! countries in general does not count as France's).
use super::search::{rank, SearchHit, TextMaxima};
use crate::corpus::Corpus;
use crate::model::{Model, Site};
use crate::sae::Sae;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Concept {
    pub name: String,
    pub strings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CompletenessOptions {
    /// Characters of corpus text scanned for mentions.
    pub max_chars: usize,
    /// Snippets per concept given to the search, and as many counter-examples.
    pub snippets: usize,
    /// Characters each side of a mention in a snippet.
    pub snippet_radius: usize,
    /// A feature must fire on at least this fraction of the concept's snippets...
    pub min_fired: f64,
    /// ...and its mean maximum on counter-examples be at most this fraction of that on the snippets.
    pub max_negative_ratio: f64,
}

impl Default for CompletenessOptions {
    fn default() -> Self {
        CompletenessOptions {
            max_chars: 2_000_000,
            snippets: 8,
            snippet_radius: 80,
            min_fired: 0.75,
            max_negative_ratio: 0.2,
        }
    }
}

/// What the corpus says about the concepts: mentions and snippets.
#[derive(Debug, Clone)]
pub struct ConceptCounts {
    pub occurrences: Vec<usize>,
    pub snippets: Vec<Vec<String>>,
    /// Snippets that mention no concept, the counter-examples.
    pub background: Vec<String>,
    /// Tokens of the scanned text (the frequencies' denominator).
    pub tokens: usize,
}

impl ConceptCounts {
    pub fn frequency(&self, concept: usize) -> f64 {
        self.occurrences[concept] as f64 / self.tokens.max(1) as f64
    }
}

/// Whether an SAE has a feature for one concept, and which.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConceptFeature {
    pub best: Option<SearchHit>,
    pub has_feature: bool,
}

/// Byte offsets of whole-word mentions of `needle` in `text`.
fn mentions(text: &str, needle: &str) -> Vec<usize> {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    text.match_indices(needle)
        .map(|(at, _)| at)
        .filter(|&at| {
            !word(text[..at].chars().next_back()) && !word(text[at + needle.len()..].chars().next())
        })
        .collect()
}

/// The text around byte offset `at`, cut at character boundaries.
fn snippet(text: &str, at: usize, radius: usize) -> String {
    let mut start = at.saturating_sub(radius);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + radius).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text[start..end].trim().to_string()
}

/// Counts every concept's mentions in the corpus's first `max_chars`
/// characters and keeps snippets around the first mentions.
pub fn count_concepts(
    model: &Model,
    corpus: &Corpus,
    concepts: &[Concept],
    opts: &CompletenessOptions,
) -> Result<ConceptCounts> {
    if concepts
        .iter()
        .any(|c| c.strings.iter().all(|s| s.trim().is_empty()))
    {
        return Err(Error::invalid(
            "every concept needs at least one non-empty string",
        ));
    }
    let mut counts = ConceptCounts {
        occurrences: vec![0; concepts.len()],
        snippets: vec![Vec::new(); concepts.len()],
        background: Vec::new(),
        tokens: 0,
    };
    let mut scanned = 0;
    for document in corpus.documents() {
        crate::interrupt::check()?;
        let document = document?;
        if scanned >= opts.max_chars {
            break;
        }
        scanned += document.text.len();
        counts.tokens += model.encode(&document.text)?.len();
        let mut mentioned = false;
        for (i, concept) in concepts.iter().enumerate() {
            for string in concept.strings.iter().filter(|s| !s.trim().is_empty()) {
                let found = mentions(&document.text, string);
                mentioned |= !found.is_empty();
                counts.occurrences[i] += found.len();
                for at in found {
                    if counts.snippets[i].len() < opts.snippets {
                        counts.snippets[i].push(snippet(&document.text, at, opts.snippet_radius));
                    }
                }
            }
        }
        if !mentioned
            && counts.background.len() < opts.snippets
            && document.text.len() > opts.snippet_radius
        {
            let middle = document.text.len() / 2;
            counts
                .background
                .push(snippet(&document.text, middle, opts.snippet_radius));
        }
    }
    if counts.tokens == 0 {
        return Err(Error::invalid(
            "the corpus gave no text to count concepts in",
        ));
    }
    Ok(counts)
}

/// For each concept, the SAE's most specific feature and whether it passes.
/// A concept the corpus never mentions is searched with its own strings.
pub fn concept_features(
    model: &Model,
    sae: &Sae,
    site: Site,
    concepts: &[Concept],
    counts: &ConceptCounts,
    opts: &CompletenessOptions,
) -> Result<Vec<ConceptFeature>> {
    // Every set of texts is measured once. A concept's counter-examples are
    // the background and the other concepts' snippets: a feature of
    // countries in general is not a feature of France.
    let background = if counts.background.is_empty() {
        None
    } else {
        Some(TextMaxima::of(model, sae, site, &counts.background)?)
    };
    let sets = concepts
        .iter()
        .zip(&counts.snippets)
        .map(|(concept, snippets)| {
            let texts = if snippets.is_empty() {
                &concept.strings
            } else {
                snippets
            };
            TextMaxima::of(model, sae, site, texts)
        })
        .collect::<Result<Vec<_>>>()?;
    (0..concepts.len())
        .map(|i| {
            let others: Vec<&TextMaxima> = background
                .iter()
                .chain(
                    sets.iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, s)| s),
                )
                .collect();
            let negative = if others.is_empty() {
                None
            } else {
                Some(TextMaxima::union(&others)?)
            };
            let best = rank(&sets[i], negative.as_ref(), 1)?.first().copied();
            let has_feature = best.is_some_and(|h| {
                h.fired >= opts.min_fired
                    && h.positive > 0.0
                    && h.negative <= opts.max_negative_ratio * h.positive
            });
            Ok(ConceptFeature { best, has_feature })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_whole_words_and_snippets_cut_at_characters() {
        let text = "France, not Frances; la France é";
        assert_eq!(mentions(text, "France"), vec![0, 24]);
        let s = snippet("ééééé France ééééé", 11, 4);
        assert!(s.contains("France") || s.contains("Fr"), "{s}");
    }
}
