//! A feature's examples as text: each record's row with the tokens around
//! it, the feature's activation on every one of those tokens (the store's
//! neighbouring rows of the same window, encoded again), and a terminal
//! rendering that highlights tokens white → dark orange by activation.
use super::records::{Example, FeatureRecords};
use crate::activations::Store;
use crate::model::Tokenizer;
use crate::sae::Sae;
use crate::{Error, Result};
use tch::Kind;

/// One example in its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub row: usize,
    pub activation: f32,
    /// The tokens of the window around the row, decoded one by one (empty
    /// for a store that has no token ids).
    pub tokens: Vec<String>,
    /// The feature's activation on each token; `None` where the store holds
    /// no row for it (a dropped or skipped position).
    pub activations: Vec<Option<f32>>,
    /// Index of the example's own token in `tokens`.
    pub focus: usize,
}

/// One activation quantile's examples.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileContexts {
    pub low: f64,
    pub high: f64,
    pub count: u64,
    pub contexts: Vec<Context>,
}

/// What the paper's feature browser shows for one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureExamples {
    pub feature: i64,
    pub max_activation: f64,
    pub density: f64,
    pub top: Vec<Context>,
    pub quantiles: Vec<QuantileContexts>,
    /// Counts per log₁₀ bin (see `records::bin_edge`).
    pub histogram: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct ExampleOptions {
    /// Top examples shown.
    pub k: usize,
    /// Activation quantiles sampled (0: none).
    pub quantiles: usize,
    /// Examples drawn per quantile.
    pub per_quantile: usize,
    /// Tokens of context before and after the example's token.
    pub before: usize,
    pub after: usize,
    pub seed: u64,
}

impl Default for ExampleOptions {
    fn default() -> Self {
        ExampleOptions {
            k: 10,
            quantiles: 5,
            per_quantile: 3,
            before: 12,
            after: 4,
            seed: 0,
        }
    }
}

/// The examples of `feature`, with their text, from records of this SAE and store.
pub fn feature_examples(
    sae: &Sae,
    store: &Store,
    records: &FeatureRecords,
    tokenizer: &Tokenizer,
    feature: i64,
    opts: &ExampleOptions,
) -> Result<FeatureExamples> {
    records.check_feature(feature)?;
    records.check_sae(sae)?;
    if records.meta.store_rows != store.len() {
        return Err(Error::invalid(format!(
            "these records were made from a store of {} rows, this one has {}",
            records.meta.store_rows,
            store.len()
        )));
    }
    let contexts = |examples: &[Example]| -> Result<Vec<Context>> {
        examples
            .iter()
            .map(|e| context(sae, store, tokenizer, feature, *e, opts))
            .collect()
    };
    let quantiles = records
        .quantile_samples(feature, opts.quantiles, opts.per_quantile, opts.seed)?
        .into_iter()
        .map(|q| {
            Ok(QuantileContexts {
                low: q.low,
                high: q.high,
                count: q.count,
                contexts: contexts(&q.examples)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(FeatureExamples {
        feature,
        max_activation: records.maxima()?[feature as usize],
        density: records.density(feature)?,
        top: contexts(&records.top(feature, opts.k)?)?,
        quantiles,
        histogram: records.histogram_of(feature)?,
    })
}

/// The rows of the store that belong to `row`'s window within the span
/// shown, with their positions in the window.
fn window_rows(
    store: &Store,
    row: usize,
    window: usize,
    from: usize,
    to: usize,
) -> Result<Vec<(usize, usize)>> {
    let mut rows = Vec::new();
    let mut scan = |range: &mut dyn Iterator<Item = usize>| -> Result<()> {
        for j in range {
            match store.row_info(j)? {
                Some(info) if info.window_index == window => {
                    if info.window_position < from || info.window_position >= to {
                        break;
                    }
                    rows.push((j, info.window_position));
                }
                _ => break,
            }
        }
        Ok(())
    };
    scan(&mut (0..row).rev())?;
    scan(&mut (row..store.len()))?;
    Ok(rows)
}

fn context(
    sae: &Sae,
    store: &Store,
    tokenizer: &Tokenizer,
    feature: i64,
    example: Example,
    opts: &ExampleOptions,
) -> Result<Context> {
    let Some(info) = store.row_info(example.row)? else {
        return Ok(Context {
            row: example.row,
            activation: example.activation,
            tokens: Vec::new(),
            activations: Vec::new(),
            focus: 0,
        });
    };
    let from = info.window_position.saturating_sub(opts.before);
    let to = (info.window_position + opts.after + 1).min(info.window.len());
    let rows = window_rows(store, example.row, info.window_index, from, to)?;
    let indices: Vec<usize> = rows.iter().map(|(j, _)| *j).collect();
    let _guard = tch::no_grad_guard();
    let codes = sae.encode(&store.rows(&indices)?)?;
    let column: Vec<f32> = Vec::try_from(&codes.f_select(1, feature)?.f_totype(Kind::Float)?)?;
    let mut activations = vec![None; to - from];
    for ((_, position), value) in rows.iter().zip(column) {
        activations[position - from] = Some(value);
    }
    let tokens = info.window[from..to]
        .iter()
        .map(|&id| tokenizer.decode(&[id]).map_err(Error::from))
        .collect::<Result<_>>()?;
    Ok(Context {
        row: example.row,
        activation: example.activation,
        tokens,
        activations,
        focus: info.window_position - from,
    })
}

/// A token as it should appear on one line: newlines and tabs made visible.
pub fn visible_token(token: &str) -> String {
    token
        .replace('\n', "↵")
        .replace('\t', "⇥")
        .replace('\r', "")
}

/// The highlight colour for an activation, white (0) to dark orange (the max).
pub fn highlight_rgb(activation: f32, max: f64) -> (u8, u8, u8) {
    let t = if max > 0.0 {
        (activation as f64 / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    (mix(255.0, 204.0), mix(255.0, 85.0), mix(255.0, 0.0))
}

impl Context {
    /// The context with each token's background coloured by its activation
    /// (24-bit ANSI), the example's own token underlined.
    pub fn ansi(&self, max: f64) -> String {
        if self.tokens.is_empty() {
            return format!("row {} (no text in this store)", self.row);
        }
        let mut out = String::new();
        for (i, (token, activation)) in self.tokens.iter().zip(&self.activations).enumerate() {
            let (r, g, b) = highlight_rgb(activation.unwrap_or(0.0), max);
            let underline = if i == self.focus { ";4" } else { "" };
            out.push_str(&format!(
                "\x1b[38;2;0;0;0;48;2;{r};{g};{b}{underline}m{}\x1b[0m",
                visible_token(token)
            ));
        }
        out
    }

    /// The context as plain text, the example's token in [[ ]].
    pub fn plain(&self) -> String {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = visible_token(t);
                if i == self.focus {
                    format!("[[{t}]]")
                } else {
                    t
                }
            })
            .collect()
    }
}

impl FeatureExamples {
    /// A terminal rendering: the header, the top examples and each quantile's.
    pub fn render(&self, ansi: bool) -> String {
        let line = |c: &Context| {
            let text = if ansi {
                c.ansi(self.max_activation)
            } else {
                c.plain()
            };
            format!("  {:>8.3}  {text}\n", c.activation)
        };
        let mut out = format!(
            "feature {}: max activation {:.3}, density {:.3e}\n",
            self.feature, self.max_activation, self.density
        );
        out.push_str("top activations\n");
        self.top.iter().for_each(|c| out.push_str(&line(c)));
        for q in self.quantiles.iter().rev() {
            out.push_str(&format!(
                "activations {:.3} to {:.3} ({} tokens)\n",
                q.low, q.high, q.count
            ));
            q.contexts.iter().for_each(|c| out.push_str(&line(c)));
        }
        out
    }
}
