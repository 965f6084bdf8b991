//! The paper's studies of features from scripts: specificity with any
//! rater (a closure, a concept's strings, a language model called from a
//! closure), a map of decoder directions, and completeness.
use crate::core::analysis::{self, ConceptRater, Context, Rater, SpecificityBin};
use crate::script::api::activations::ScriptStore;
use crate::script::api::features::{example_options, model_option, records_option};
use crate::script::api::sae::Sae;
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext, INT};

/// A rater written in Rhai: `|context, token, activation| -> 0..3`.
struct ClosureRater<'a> {
    ctx: &'a NativeCallContext<'a>,
    f: FnPtr,
}

impl Rater for ClosureRater<'_> {
    fn rate(&mut self, c: &Context) -> crate::core::Result<i64> {
        let token = c.tokens.get(c.focus).cloned().unwrap_or_default();
        let value: Dynamic = self
            .f
            .call_within_context(self.ctx, (c.plain(), token, c.activation as f64))
            .map_err(|e| crate::core::Error::invalid(format!("the rater failed: {e}")))?;
        value.as_int().map_err(|t| {
            crate::core::Error::invalid(format!("a rater must return an integer 0..3, got {t}"))
        })
    }
}

fn bins_map(bins: &[SpecificityBin]) -> Array {
    bins.iter()
        .map(|b| {
            let mut m = Map::new();
            m.insert("low".into(), Dynamic::from(b.low));
            m.insert("high".into(), Dynamic::from(b.high));
            let scores: Array = b.scores.iter().map(|&c| Dynamic::from(c as INT)).collect();
            m.insert("scores".into(), Dynamic::from(scores));
            m.insert("mean".into(), Dynamic::from(b.mean()));
            Dynamic::from(m)
        })
        .collect()
}

#[export_module]
pub mod feature_studies_api {
    use super::*;

    pub type Sae = super::Sae;
    pub type Store = ScriptStore;

    /// Specificity as in the paper: contexts drawn from `bins` activation levels (equal-count quantiles), each
    /// scored 0–3 by `rater` — a closure `|context, token, activation| -> 0..3` (it may call a language model), or
    /// an array of strings naming the concept (3: the highlighted token is one, 2: one within two tokens, 1: one in
    /// the context, 0: none). Options: model (required), bins (5), per_bin (10), plot (a .png/.svg path for the
    /// stacked bars), records, seed. Returns `#{bins: [#{low, high, scores: [n0, n1, n2, n3], mean}], plot}`.
    /// `specificity(s, store, 12, ["Paris", " Paris"], #{model: m, plot: "runs/spec.png"})`
    #[rhai_fn(return_raw)]
    pub fn specificity(
        ctx: NativeCallContext,
        s: Sae,
        store: Store,
        feature: INT,
        rater: Dynamic,
        opts: Map,
    ) -> ScriptResult<Map> {
        #[rustfmt::skip]
        let known = ["model", "bins", "per_bin", "plot", "records", "seed", "before", "after"];
        let o = Options::new(&opts, "specificity", &known)?;
        let model = model_option(&opts, "specificity")?;
        let mut options = example_options(&o)?;
        options.k = 0;
        options.quantiles = o.positive("bins", 5)?;
        options.per_quantile = o.positive("per_bin", 10)?;
        let sae = s.borrow();
        let records = records_option(&opts, "specificity", &sae, &store, 0)?;
        let examples = analysis::feature_examples(
            &sae,
            &store,
            &records,
            &model.tokenizer,
            feature,
            &options,
        )?;
        let mut rater: Box<dyn Rater + '_> = if let Some(f) = rater.clone().try_cast::<FnPtr>() {
            Box::new(ClosureRater { ctx: &ctx, f })
        } else if let Ok(strings) = rater.clone().into_array() {
            let strings = strings
                .into_iter()
                .map(|v| {
                    v.into_string().map_err(|t| {
                        runtime_error(format!("concept strings must be strings, got {t}"))
                    })
                })
                .collect::<ScriptResult<Vec<_>>>()?;
            Box::new(ConceptRater::new(&strings)?)
        } else {
            return Err(runtime_error(format!(
                "specificity: the rater must be a closure |context, token, activation| or an array of strings, got {}",
                rater.type_name()
            )));
        };
        let bins = analysis::specificity(&examples, rater.as_mut())?;
        let mut out = Map::new();
        out.insert("bins".into(), Dynamic::from(bins_map(&bins)));
        if let Some(path) = o.string("plot")? {
            let title = format!("specificity of feature {feature}");
            let figure = crate::core::dashboard::figures::specificity_figure(&bins, &title)?;
            figure
                .save(std::path::Path::new(&path))
                .map_err(crate::core::Error::from)?;
            crate::script::console::record_image(path.clone().into());
            out.insert("plot".into(), Dynamic::from(path));
        }
        Ok(out)
    }
}
