//! Interventions with SAE features from scripts: steering a model by
//! clamping features, a feature's logit effects, attribution and ablation,
//! and the model's weights.
use crate::core::analysis::{self, Clamp};
use crate::core::model::{Edit, HookPoint, Hooks, Model, Site};
use crate::core::sae::TensorSource;
use crate::core::Tensor;
use crate::script::api::model::ScriptModel;
use crate::script::api::sae::{source_from, Sae};
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Map, INT};

/// Activations measured on the fly for "10x" clamps when neither `max` nor
/// `source` is given: the first windows of the demo corpus.
const ON_THE_FLY_TOKENS: usize = 4096;

/// Where an SAE acts on a model: `layer`/`hook` options, else the SAE's
/// `hook_name` (set when it was trained on a harvested store, or read from
/// its cfg.json). Checks that widths and model names agree.
pub(crate) fn sae_site(
    model: &Model,
    sae: &crate::core::sae::Sae,
    opts: &Options,
) -> ScriptResult<Site> {
    let site = if opts.has("layer") {
        let layer = opts.int("layer", 0)?;
        let layer = usize::try_from(layer)
            .map_err(|_| runtime_error(format!("layer must be >= 0, got {layer}")))?;
        let point = match opts.string("hook")? {
            Some(name) => name.parse::<HookPoint>()?,
            None => HookPoint::ResidPre,
        };
        Site { layer, point }
    } else {
        match &sae.cfg.metadata.hook_name {
            Some(name) => Site::from_hook_name(name)?,
            None => {
                return Err(runtime_error(
                    "this SAE does not say where it reads the model (no hook_name): give `layer` (and `hook`)",
                ))
            }
        }
    };
    site.check(model.n_layers())?;
    let width = model.site_width(site) as i64;
    if sae.cfg.d_in != width {
        return Err(runtime_error(format!(
            "the SAE reads width {} but {site} of this model has width {width}",
            sae.cfg.d_in
        )));
    }
    if let Some(name) = &sae.cfg.metadata.model_name {
        if name != &model.name {
            return Err(runtime_error(format!(
                "the SAE was trained on {name}, not on {}",
                model.name
            )));
        }
    }
    Ok(site)
}

/// A clamp value: a number, or "<k>x" for k times the feature's maximum.
enum ClampValue {
    Absolute(f64),
    TimesMax(f64),
}

fn clamp_value(feature: &str, value: &Dynamic) -> ScriptResult<ClampValue> {
    if let Ok(v) = value.as_float() {
        return Ok(ClampValue::Absolute(v));
    }
    if let Ok(v) = value.as_int() {
        return Ok(ClampValue::Absolute(v as f64));
    }
    let text = value.clone().into_string().unwrap_or_default();
    match text.strip_suffix('x').map(|k| k.trim().parse::<f64>()) {
        Some(Ok(k)) if k.is_finite() => Ok(ClampValue::TimesMax(k)),
        _ => Err(runtime_error(format!(
            "clamp of feature {feature}: {value} is neither a number nor a multiple of its maximum such as \"10x\""
        ))),
    }
}

/// Each feature's maximum over `source` (a store or tensor), or on the fly
/// over the start of the demo corpus at the SAE's site.
fn feature_maxima(
    model: &Model,
    sae: &crate::core::sae::Sae,
    site: Site,
    steer: &Map,
) -> ScriptResult<tch::Tensor> {
    if let Some(max) = steer.get("max") {
        let max = max.read_lock::<Tensor>().ok_or_else(|| {
            runtime_error("steer: max must be a tensor of each feature's maximum")
        })?;
        if max.shape() != [sae.cfg.n_features] {
            return Err(runtime_error(format!(
                "steer: max must have shape [{}], got {:?}",
                sae.cfg.n_features,
                max.shape()
            )));
        }
        return Ok(max.inner().shallow_clone());
    }
    let activations = match steer.get("source") {
        Some(source) => {
            let mut source = source_from(source, 0, false)?;
            return Ok(analysis::max_activations(sae, source.as_mut(), 1 << 16)?);
        }
        None => {
            let corpus = crate::script::api::activations::demo_corpus_path("train")?;
            let corpus = crate::core::corpus::Corpus::from_paths(
                &[corpus.display().to_string()],
                Default::default(),
            )?;
            analysis::site_activations(model, &corpus, site, ON_THE_FLY_TOKENS)?
        }
    };
    let mut source = TensorSource::new(&activations, 0, false)?;
    Ok(analysis::max_activations(
        sae,
        &mut source,
        ON_THE_FLY_TOKENS,
    )?)
}

/// The features and values of `steer.clamp`, "x" values resolved.
fn parse_clamp(
    model: &Model,
    sae: &crate::core::sae::Sae,
    site: Site,
    steer: &Map,
) -> ScriptResult<Clamp> {
    let clamps = match steer.get("clamp") {
        None => return Ok(Clamp::default()),
        Some(c) => c
            .read_lock::<Map>()
            .ok_or_else(|| {
                runtime_error(
                    "steer: clamp must be a map of feature → value, e.g. #{\"608\": \"10x\"}",
                )
            })?
            .clone(),
    };
    let mut parsed = Vec::new();
    for (key, value) in &clamps {
        let feature = feature_index(key.trim()).ok_or_else(|| {
            runtime_error(format!("steer: clamp key '{key}' is not a feature index"))
        })?;
        parsed.push((feature, clamp_value(key, value)?));
    }
    let mut clamp = Clamp {
        features: parsed.iter().map(|(f, _)| *f).collect(),
        values: vec![0.0; parsed.len()],
    };
    clamp.check(sae.cfg.n_features)?;
    let needs_max = parsed
        .iter()
        .any(|(_, v)| matches!(v, ClampValue::TimesMax(_)));
    let maxima = if needs_max {
        let max = feature_maxima(model, sae, site, steer)?;
        Some(
            Vec::<f64>::try_from(
                max.f_to_kind(tch::Kind::Double)
                    .and_then(|m| m.f_to(tch::Device::Cpu))
                    .map_err(crate::core::Error::from)?,
            )
            .map_err(crate::core::Error::from)?,
        )
    } else {
        None
    };
    for (i, (feature, value)) in parsed.iter().enumerate() {
        clamp.values[i] = match value {
            ClampValue::Absolute(v) => *v,
            ClampValue::TimesMax(k) => k * maxima.as_ref().map_or(0.0, |m| m[*feature as usize]),
        };
    }
    Ok(clamp)
}

/// Hooks that steer with `steer` = #{sae, clamp, max?, source?, layer?, hook?}.
pub(crate) fn steering_hooks(model: &Model, steer: &Dynamic) -> ScriptResult<Hooks<'static>> {
    let steer = steer
        .read_lock::<Map>()
        .ok_or_else(|| runtime_error("steer must be a map #{sae, clamp}"))?
        .clone();
    let o = Options::new(
        &steer,
        "steer",
        &["sae", "clamp", "max", "source", "layer", "hook"],
    )?;
    let sae: Sae = steer
        .get("sae")
        .and_then(|s| s.clone().try_cast::<Sae>())
        .ok_or_else(|| runtime_error("steer: option 'sae' (an SAE) is required"))?;
    let (site, clamp) = {
        let borrowed = sae
            .try_borrow()
            .map_err(|_| runtime_error("steer: this SAE is in use"))?;
        let site = sae_site(model, &borrowed, &o)?;
        (site, parse_clamp(model, &borrowed, site, &steer)?)
    };
    if clamp.features.is_empty() {
        return Ok(Hooks::default());
    }
    let edit = Edit::Map(Box::new(move |x| {
        let sae = sae
            .try_borrow()
            .map_err(|_| crate::core::Error::invalid("the steering SAE is in use"))?;
        analysis::clamp_features(&sae, x, &clamp)
    }));
    Ok(Hooks::default().edit(site, edit))
}

/// A feature index written as an integer, or as a whole number such as
/// `t.argmax().item()` gives ("241.0").
fn feature_index(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| {
        let value = text.parse::<f64>().ok()?;
        (value.fract() == 0.0 && value.abs() < 1e15).then_some(value as i64)
    })
}

/// The id of a text that must be exactly one token.
fn one_token(model: &Model, text: &str, what: &str) -> ScriptResult<u32> {
    let ids = model.encode(text)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        _ => Err(runtime_error(format!(
            "attribute: {what} '{text}' is {} tokens, it must be one (e.g. \" Paris\" with its space)",
            ids.len()
        ))),
    }
}

fn token_rows(model: &Model, pairs: &[(u32, f64)]) -> ScriptResult<Array> {
    pairs
        .iter()
        .map(|&(id, effect)| {
            let mut row = Map::new();
            row.insert("token".into(), model.decode(&[id])?.into());
            row.insert("id".into(), (id as INT).into());
            row.insert("effect".into(), effect.into());
            Ok(Dynamic::from_map(row))
        })
        .collect()
}

#[export_module]
pub mod analysis_api {
    use super::*;
    use crate::core::analysis::AttributionOptions;
    use crate::core::model::GenerateOptions;

    pub type Model = ScriptModel;

    /// Logits `[T, vocab]` with hooks. `steer: #{sae: s, clamp: #{"608": "10x", "12": 0.0}}`
    /// clamps SAE features at every position (the SAE's error term kept; "10x" is ten times the
    /// feature's maximum, from `max` (a tensor), `source` (a store or tensor) or, when neither is
    /// given, the start of the demo corpus). `hooks: [...]` edits activations: each hook is
    /// `#{layer, hook: "resid_pre" | "resid_post" | "mlp", positions: [..] (optional, -1 the last),
    /// and one of add: v (times `scale`), replace: t, ablate: true, map: |x| ...}`.
    /// `m.forward("The cat", #{hooks: [#{layer: 6, ablate: true, positions: [1]}]})`
    #[rhai_fn(name = "forward", pure, return_raw)]
    pub fn forward_with(
        ctx: NativeCallContext,
        m: &mut Model,
        text: &str,
        opts: Map,
    ) -> ScriptResult<Tensor> {
        Options::new(&opts, "forward", &["steer", "hooks"])?;
        let hooks = crate::script::hooks::script_hooks(&ctx, m, &opts, false)?;
        Ok(Tensor::new(m.logits_with(text, &hooks)?))
    }

    /// A named tensor of the model file as stored (`m.weight_names()` lists them):
    /// `m.weight("blk.3.ffn_up")`, `m.weight("output_norm")`; "output" is the
    /// unembedding (the token embedding when they are tied, as in SmolLM2).
    #[rhai_fn(pure, return_raw)]
    pub fn weight(m: &mut Model, name: &str) -> ScriptResult<Tensor> {
        Ok(Tensor::new(m.weight(name)?))
    }

    /// The names `m.weight` takes. `m.weight_names().len()`
    #[rhai_fn(pure, return_raw)]
    pub fn weight_names(m: &mut Model) -> ScriptResult<Array> {
        Ok(m.weight_names()?.into_iter().map(Dynamic::from).collect())
    }

    /// Each feature's largest activation over a store or a `[tokens, d_in]` tensor
    /// (65,536 activations at most), `[n_features]`: the scale of "10x" clamps.
    /// `let max = s.max_activations(store);`
    #[rhai_fn(pure, return_raw)]
    pub fn max_activations(s: &mut Sae, source: Dynamic) -> ScriptResult<Tensor> {
        let mut source = source_from(&source, 0, false)?;
        let sae = s
            .try_borrow()
            .map_err(|_| runtime_error("this SAE is in use"))?;
        Ok(Tensor::new(analysis::max_activations(
            &sae,
            source.as_mut(),
            1 << 16,
        )?))
    }

    /// The tokens a feature promotes and suppresses directly through the
    /// unembedding, W_U·(γ ⊙ W_dec[i]): `#{promoted, suppressed}`, each k maps
    /// `#{token, id, effect}`. `s.logit_effects(m, 608, 10).promoted`
    #[rhai_fn(pure, return_raw)]
    pub fn logit_effects(s: &mut Sae, m: Model, feature: INT, k: INT) -> ScriptResult<Map> {
        let sae = s
            .try_borrow()
            .map_err(|_| runtime_error("this SAE is in use"))?;
        let k =
            usize::try_from(k).map_err(|_| runtime_error(format!("k must be >= 0, got {k}")))?;
        let effects = analysis::logit_effects(&m, &sae, feature, k)?;
        let mut out = Map::new();
        out.insert("promoted".into(), token_rows(&m, &effects.promoted)?.into());
        out.insert(
            "suppressed".into(),
            token_rows(&m, &effects.suppressed)?.into(),
        );
        Ok(out)
    }

    /// `logit_effects` with the feature as a whole number, as `item()` returns it.
    #[rhai_fn(name = "logit_effects", pure, return_raw)]
    pub fn logit_effects_float(
        s: &mut Sae,
        m: Model,
        feature: rhai::FLOAT,
        k: INT,
    ) -> ScriptResult<Map> {
        let index = feature_index(&feature.to_string()).ok_or_else(|| {
            runtime_error(format!("logit_effects: {feature} is not a feature index"))
        })?;
        logit_effects(s, m, index, k)
    }

    /// Which SAE features make the model predict `target` after `prompt`:
    /// per position and active feature its activation, its attribution
    /// (activation × ∂logit/∂activation, the SAE error held fixed) and, for
    /// the `top` (10) strongest, the exact `ablation` effect (logit with the
    /// feature zeroed − logit). Options: `target` (one token, required),
    /// `baseline` (explain target − baseline logits), `top`, `layer`/`hook`
    /// (default: the SAE's hook_name). Returns `#{value, error_attribution,
    /// bias_attribution, features}`, features strongest first.
    /// `m.attribute("The capital of France is", s, #{target: " Paris"})`
    #[rhai_fn(pure, return_raw)]
    pub fn attribute(m: &mut Model, prompt: &str, s: Sae, opts: Map) -> ScriptResult<Map> {
        let o = Options::new(
            &opts,
            "attribute",
            &["target", "baseline", "top", "layer", "hook"],
        )?;
        let sae = s
            .try_borrow()
            .map_err(|_| runtime_error("this SAE is in use"))?;
        let site = sae_site(m, &sae, &o)?;
        let target = o.string("target")?.ok_or_else(|| {
            runtime_error("attribute: option 'target' (one token, e.g. \" Paris\") is required")
        })?;
        let options = AttributionOptions {
            site,
            target: one_token(m, &target, "target")?,
            baseline: o
                .string("baseline")?
                .map(|b| one_token(m, &b, "baseline"))
                .transpose()?,
            ablate_top: usize::try_from(o.int("top", 10)?)
                .map_err(|_| runtime_error("attribute: top must be >= 0"))?,
        };
        let tokens = m.encode(prompt)?;
        let result = analysis::attribute(m, &sae, &tokens, &options)?;
        let mut features = Array::new();
        for row in &result.features {
            let mut r = Map::new();
            r.insert("position".into(), (row.position as INT).into());
            r.insert("token".into(), m.decode(&[tokens[row.position]])?.into());
            r.insert("feature".into(), (row.feature as INT).into());
            r.insert("activation".into(), row.activation.into());
            r.insert("attribution".into(), row.attribution.into());
            r.insert(
                "ablation".into(),
                row.ablation.map_or(Dynamic::UNIT, Dynamic::from),
            );
            features.push(r.into());
        }
        let mut out = Map::new();
        out.insert("value".into(), result.value.into());
        out.insert("error_attribution".into(), result.error_attribution.into());
        out.insert("bias_attribution".into(), result.bias_attribution.into());
        out.insert("features".into(), features.into());
        Ok(out)
    }

    /// The paper's side-by-side view: the completion of `prompt` in the
    /// Human/Assistant format with `feature` clamped to each of `values`
    /// (numbers or "10x"), the unclamped one first; printed and returned as
    /// maps `#{clamp, text}`. Options: `max_tokens` (40), `temperature` (0),
    /// `seed`, and the steering options `max`, `source`, `layer`, `hook`.
    /// `m.steer_compare("What is your favourite place?", s, 608, [0, "5x", "10x"], #{})`
    #[rhai_fn(pure, return_raw)]
    pub fn steer_compare(
        m: &mut Model,
        prompt: &str,
        s: Sae,
        feature: INT,
        values: Array,
        opts: Map,
    ) -> ScriptResult<Array> {
        let generation_keys = ["max_tokens", "temperature", "seed"];
        let steer_keys = ["max", "source", "layer", "hook"];
        let mut known = generation_keys.to_vec();
        known.extend(steer_keys);
        Options::new(&opts, "steer_compare", &known)?;
        let mut generation = Map::new();
        let mut steer = Map::new();
        for (key, value) in &opts {
            if generation_keys.contains(&key.as_str()) {
                generation.insert(key.clone(), value.clone());
            } else {
                steer.insert(key.clone(), value.clone());
            }
        }
        generation
            .entry("max_tokens".into())
            .or_insert(Dynamic::from(40 as INT));
        let options: GenerateOptions = crate::script::api::model::generate_options(&generation)?;
        let text = format!("\n\nHuman: {prompt}\n\nAssistant:");
        // Feature maxima for "x" values, measured once for all of them.
        let relative = values.iter().any(|v| v.is_string());
        if relative && !steer.contains_key("max") {
            let sae = s
                .try_borrow()
                .map_err(|_| runtime_error("this SAE is in use"))?;
            let site = sae_site(
                m,
                &sae,
                &Options::new(&steer, "steer_compare", &steer_keys)?,
            )?;
            let max = feature_maxima(m, &sae, site, &steer)?;
            steer.insert("max".into(), Dynamic::from(Tensor::new(max)));
        }
        steer.insert("sae".into(), Dynamic::from(s));
        let mut rows = Array::new();
        let mut shown = String::new();
        let clamps = std::iter::once(Dynamic::UNIT).chain(values);
        for value in clamps {
            let hooks = if value.is_unit() {
                Hooks::default()
            } else {
                let mut clamp = Map::new();
                clamp.insert(feature.to_string().into(), value.clone());
                let mut with_clamp = steer.clone();
                with_clamp.insert("clamp".into(), clamp.into());
                steering_hooks(m, &Dynamic::from_map(with_clamp))?
            };
            let completion = m.generate(&text, &options, &hooks)?;
            let label = if value.is_unit() {
                "none".to_string()
            } else {
                format!("feature {feature} = {value}")
            };
            shown.push_str(&format!("── {label} ──\n{}\n", completion.trim()));
            let mut row = Map::new();
            row.insert("clamp".into(), label.into());
            row.insert("text".into(), completion.into());
            rows.push(row.into());
        }
        crate::script::console::print_line(shown.trim_end());
        Ok(rows)
    }
}
