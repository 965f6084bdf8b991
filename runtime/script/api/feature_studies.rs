//! The paper's studies of features from scripts: specificity with any
//! rater (a closure, a concept's strings, a language model called from a
//! closure), a map of decoder directions, and completeness.
use crate::core::analysis::feature_map::{self, MapOptions};
use crate::core::analysis::{self, ConceptRater, Context, Rater, SpecificityBin};
use crate::core::plot::{Figure, FigureOptions, SeriesStyle};
use crate::script::api::activations::ScriptStore;
use crate::script::api::features::{example_options, examples_of, model_option};
use crate::script::api::sae::Sae;
use crate::script::convert::{string_list, Options};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext, INT};
use std::path::Path;

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

/// An array argument that must hold SAEs.
fn sae_list(values: Array, what: &str) -> ScriptResult<Vec<Sae>> {
    values
        .into_iter()
        .map(|s| {
            let name = s.type_name();
            s.try_cast::<Sae>().ok_or_else(|| {
                runtime_error(format!("{what}: expected an array of SAEs, found {name}"))
            })
        })
        .collect()
}

/// A map's labelled points: `[#{sae, feature, name}]`.
fn map_labels(opts: &Map, saes: usize) -> ScriptResult<Vec<(usize, i64, String)>> {
    let Some(labels) = opts.get("labels") else {
        return Ok(Vec::new());
    };
    let labels = labels.clone().into_array().map_err(|t| {
        runtime_error(format!(
            "feature_map: labels must be an array of maps, got {t}"
        ))
    })?;
    crate::script::convert::rows_of_maps(&labels, "feature_map labels")?
        .iter()
        .map(|m| {
            let o = Options::new(m, "feature_map label", &["sae", "feature", "name"])?;
            let sae = o.int("sae", 0)?;
            let sae = usize::try_from(sae)
                .ok()
                .filter(|&s| s < saes)
                .ok_or_else(|| {
                    runtime_error(format!(
                        "feature_map: label sae {sae} is not one of the {saes} SAEs"
                    ))
                })?;
            let feature = o.int("feature", -1)?;
            let name = o
                .string("name")?
                .unwrap_or_else(|| format!("feature {feature}"));
            Ok((sae, feature, name))
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
        let examples = examples_of(
            &opts,
            "specificity",
            &sae,
            &store,
            &model,
            feature,
            &options,
        )?;
        let mut rater: Box<dyn Rater + '_> = if let Some(f) = rater.clone().try_cast::<FnPtr>() {
            Box::new(ClosureRater { ctx: &ctx, f })
        } else if rater.is_array() {
            let strings = string_list(&rater, "specificity: the concept's strings")?;
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

    /// A map of features: a 2-D t-SNE layout of the decoder directions of one or several SAEs (started from their
    /// principal components, so it repeats exactly), saved as PNG/SVG, coloured by SAE. Options: labels
    /// (`[#{sae, feature, name}]`: points drawn and named in the legend), perplexity (30), epochs (750), title,
    /// threads (1: the map repeats exactly; more is faster but moves points between runs),
    /// check_k (10: neighbours for the preservation score). Returns `#{x, y, sae, feature, preservation,
    /// pca_preservation, seconds}`: preservation is the mean fraction of each feature's 10 nearest by cosine kept
    /// among its 10 nearest on the map (PCA's for comparison).
    /// `feature_map([s_1k, s_4k], "runs/map.png", #{labels: [#{sae: 0, feature: 12, name: "French"}]})`
    #[rhai_fn(return_raw)]
    pub fn feature_map(saes: Array, path: &str, opts: Map) -> ScriptResult<Map> {
        let o = Options::new(
            &opts,
            "feature_map",
            &[
                "labels",
                "perplexity",
                "epochs",
                "title",
                "check_k",
                "threads",
            ],
        )?;
        let saes = sae_list(saes, "feature_map")?;
        if saes.is_empty() {
            return Err(runtime_error("feature_map: give at least one SAE"));
        }
        let labels = map_labels(&opts, saes.len())?;
        let mut directions = Vec::new();
        let mut owner = Vec::new();
        for (i, s) in saes.iter().enumerate() {
            let sae = s.borrow();
            if sae.cfg.d_in != saes[0].borrow().cfg.d_in {
                return Err(runtime_error("feature_map: the SAEs read different widths"));
            }
            directions.push(
                analysis::neighbors::unit_directions(&sae)?
                    .f_to(tch::Device::Cpu)
                    .map_err(crate::core::Error::from)?,
            );
            owner.extend((0..sae.cfg.n_features).map(|f| (i, f)));
        }
        for (sae, feature, _) in &labels {
            let n = saes[*sae].borrow().cfg.n_features;
            if *feature < 0 || *feature >= n {
                return Err(runtime_error(format!(
                    "feature_map: feature {feature} is out of range for SAE {sae} ({n} features)"
                )));
            }
        }
        let directions = tch::Tensor::f_cat(&directions, 0).map_err(crate::core::Error::from)?;
        let options = MapOptions {
            perplexity: o.f64("perplexity", 30.0)? as f32,
            epochs: o.positive("epochs", 750)?,
            threads: o.positive("threads", 1)?,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let layout = feature_map::embed(&directions, &options)?;
        let seconds = started.elapsed().as_secs_f64();
        let k = o.positive("check_k", 10)? as i64;
        let preservation = feature_map::neighbour_preservation(&directions, &layout, k)?;
        let pca = feature_map::neighbour_preservation(
            &directions,
            &feature_map::pca_embed(&directions)?,
            k,
        )?;
        let mut figure = Figure::new(FigureOptions {
            title: Some(
                o.string("title")?
                    .unwrap_or_else(|| "feature map (t-SNE of decoder directions)".into()),
            ),
            width: 900,
            height: 800,
            ..Default::default()
        });
        // The largest SAE first, so that the smaller ones' points stay visible on top.
        let mut order: Vec<usize> = (0..saes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(saes[i].borrow().cfg.n_features));
        for (i, s) in order.into_iter().map(|i| (i, &saes[i])) {
            let (xs, ys): (Vec<f64>, Vec<f64>) = layout
                .iter()
                .zip(&owner)
                .filter(|(_, (sae, _))| *sae == i)
                .map(|(&(x, y), _)| (x as f64, y as f64))
                .unzip();
            let label = format!("SAE {} ({} features)", i + 1, s.borrow().cfg.n_features);
            figure
                .scatter(&xs, &ys, SeriesStyle::labelled(label))
                .map_err(crate::core::Error::from)?;
        }
        for (sae, feature, name) in &labels {
            let at = owner
                .iter()
                .position(|&(s, f)| s == *sae && f == *feature)
                .unwrap_or(0);
            let (x, y) = layout[at];
            figure
                .scatter(
                    &[x as f64],
                    &[y as f64],
                    SeriesStyle::labelled(format!("{name} (SAE {}, #{feature})", sae + 1)),
                )
                .map_err(crate::core::Error::from)?;
        }
        figure
            .save(Path::new(path))
            .map_err(crate::core::Error::from)?;
        crate::script::console::record_image(path.into());
        let column = |f: &dyn Fn(usize) -> Dynamic| -> Array { (0..layout.len()).map(f).collect() };
        let mut out = Map::new();
        out.insert(
            "x".into(),
            Dynamic::from(column(&|i| Dynamic::from(layout[i].0 as f64))),
        );
        out.insert(
            "y".into(),
            Dynamic::from(column(&|i| Dynamic::from(layout[i].1 as f64))),
        );
        out.insert(
            "sae".into(),
            Dynamic::from(column(&|i| Dynamic::from(owner[i].0 as INT))),
        );
        out.insert(
            "feature".into(),
            Dynamic::from(column(&|i| Dynamic::from(owner[i].1))),
        );
        out.insert("preservation".into(), Dynamic::from(preservation));
        out.insert("pca_preservation".into(), Dynamic::from(pca));
        out.insert("seconds".into(), Dynamic::from(seconds));
        Ok(out)
    }

    /// Feature splitting: `feature` of the SAE `small` and, for each SAE in `larger` (trained on the same store),
    /// its `k` nearest features by decoder cosine, each with its strongest examples side by side:
    /// `[#{sae, n_features, feature, cosine, examples: [text]}]`, the small SAE's feature first.
    /// Options: model (required), k (3), examples (2 per feature). `table(split_view(s_1k, [s_4k, s_16k], 281, store, #{model: m}))`
    #[rhai_fn(return_raw)]
    pub fn split_view(
        small: Sae,
        larger: Array,
        feature: INT,
        store: Store,
        opts: Map,
    ) -> ScriptResult<Array> {
        let o = Options::new(&opts, "split_view", &["model", "k", "examples"])?;
        let model = model_option(&opts, "split_view")?;
        let k = o.positive("k", 3)?;
        let mut options = example_options(&o)?;
        options.k = o.positive("examples", 2)?;
        options.quantiles = 0;
        let larger = sae_list(larger, "split_view")?;
        let row = |index: usize,
                   sae: &crate::core::sae::Sae,
                   feature: i64,
                   cosine: f64|
         -> ScriptResult<Dynamic> {
            let examples = examples_of(
                &Map::new(),
                "split_view",
                sae,
                &store,
                &model,
                feature,
                &options,
            )?;
            let texts: Array = examples
                .top
                .iter()
                .map(|c| Dynamic::from(c.plain()))
                .collect();
            let mut m = Map::new();
            m.insert("sae".into(), Dynamic::from(index as INT));
            m.insert("n_features".into(), Dynamic::from(sae.cfg.n_features));
            m.insert("feature".into(), Dynamic::from(feature));
            m.insert("cosine".into(), Dynamic::from(cosine));
            m.insert("examples".into(), Dynamic::from(texts));
            Ok(Dynamic::from(m))
        };
        let small = small.borrow();
        let mut rows = vec![row(0, &small, feature, 1.0)?];
        for (i, big) in larger.iter().enumerate() {
            let big = big.borrow();
            for n in analysis::neighbors(&small, feature, &big, k)? {
                rows.push(row(i + 1, &big, n.feature, n.cosine)?);
            }
        }
        Ok(rows)
    }

    /// `feature_map` with every default.
    #[rhai_fn(name = "feature_map", return_raw)]
    pub fn feature_map_default(saes: Array, path: &str) -> ScriptResult<Map> {
        feature_map(saes, path, Map::new())
    }

    /// Completeness as in the paper: for concepts named by strings (`#{France: ["France", "French"], ...}`), their
    /// frequency in the corpus and whether each SAE has a feature for them (the contrastive search over corpus
    /// snippets that mention them against snippets that do not; a feature passes when it fires on >= 75% of the
    /// snippets and its mean maximum on the others is <= 20% of that). Options: plot (path), bins (4), chars
    /// (2000000 scanned), snippets (8), layer/hook. Returns `#{concepts: [#{name, occurrences, frequency,
    /// has_feature: [..per SAE], feature: [..]}], tokens, plot}`.
    /// `completeness([s_1k, s_4k], m, demo_corpus(), #{France: ["France"], Japan: ["Japan"]}, #{plot: "c.png"})`
    #[rhai_fn(return_raw)]
    pub fn completeness(
        saes: Array,
        model: crate::script::api::model::ScriptModel,
        corpus: crate::script::api::activations::ScriptCorpus,
        concepts: Map,
        opts: Map,
    ) -> ScriptResult<Map> {
        #[rustfmt::skip]
        let o = Options::new(&opts, "completeness", &["plot", "bins", "chars", "snippets", "layer", "hook"])?;
        let saes = sae_list(saes, "completeness")?;
        let concepts = concepts
            .into_iter()
            .map(|(name, strings)| {
                let strings = string_list(&strings, &format!("completeness: concept {name}"))?;
                Ok(analysis::completeness::Concept {
                    name: name.to_string(),
                    strings,
                })
            })
            .collect::<ScriptResult<Vec<_>>>()?;
        if saes.is_empty() || concepts.is_empty() {
            return Err(runtime_error(
                "completeness: give at least one SAE and one concept",
            ));
        }
        let d = analysis::completeness::CompletenessOptions::default();
        let options = analysis::completeness::CompletenessOptions {
            max_chars: o.positive("chars", d.max_chars as i64)?,
            snippets: o.positive("snippets", d.snippets as i64)?,
            ..d
        };
        let counts = analysis::completeness::count_concepts(&model, &corpus, &concepts, &options)?;
        let mut found = Vec::new();
        for s in &saes {
            let sae = s.borrow();
            let site = crate::script::api::analysis::sae_site(&model, &sae, &o)?;
            found.push(analysis::completeness::concept_features(
                &model, &sae, site, &concepts, &counts, &options,
            )?);
        }
        let rows: Array = concepts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut m = Map::new();
                m.insert("name".into(), Dynamic::from(c.name.clone()));
                m.insert(
                    "occurrences".into(),
                    Dynamic::from(counts.occurrences[i] as INT),
                );
                m.insert("frequency".into(), Dynamic::from(counts.frequency(i)));
                let has: Array = found
                    .iter()
                    .map(|f| Dynamic::from(f[i].has_feature))
                    .collect();
                let feature: Array = found
                    .iter()
                    .map(|f| {
                        f[i].best
                            .map_or(Dynamic::UNIT, |h| Dynamic::from(h.feature))
                    })
                    .collect();
                m.insert("has_feature".into(), Dynamic::from(has));
                m.insert("feature".into(), Dynamic::from(feature));
                Dynamic::from(m)
            })
            .collect();
        let mut out = Map::new();
        out.insert("concepts".into(), Dynamic::from(rows));
        out.insert("tokens".into(), Dynamic::from(counts.tokens as INT));
        if let Some(path) = o.string("plot")? {
            let frequencies: Vec<f64> = (0..concepts.len()).map(|i| counts.frequency(i)).collect();
            let per_sae: Vec<(String, Vec<bool>)> = saes
                .iter()
                .zip(&found)
                .map(|(s, f)| {
                    (
                        format!("{} features", s.borrow().cfg.n_features),
                        f.iter().map(|c| c.has_feature).collect(),
                    )
                })
                .collect();
            let figure = crate::core::dashboard::figures::completeness_figure(
                &frequencies,
                &per_sae,
                o.positive("bins", 4)?,
            )?;
            figure
                .save(Path::new(&path))
                .map_err(crate::core::Error::from)?;
            crate::script::console::record_image(path.clone().into());
            out.insert("plot".into(), Dynamic::from(path));
        }
        Ok(out)
    }
}
