//! Scaling-law fits from scripts: power laws, general curves, the joint
//! Chinchilla-style form, the compute-optimal frontier, and CSV files of runs.
use crate::core::scaling::{Bucketing, FrontierOptions, PowerLawOptions, Run};
use crate::script::convert::{number, Options};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};

/// Any result struct as a Rhai map (all of them derive Serialize).
fn to_map<T: serde::Serialize>(value: &T) -> ScriptResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

fn power_law_options(map: &Map) -> ScriptResult<PowerLawOptions> {
    let o = Options::new(
        map,
        "fit_power_law",
        &["offset", "log_space", "bootstrap", "confidence", "seed"],
    )?;
    let defaults = PowerLawOptions::default();
    Ok(PowerLawOptions {
        offset: o.bool("offset", defaults.offset)?,
        log_space: o.bool("log_space", defaults.log_space)?,
        bootstrap: o.int("bootstrap", defaults.bootstrap as i64)?.max(0) as usize,
        confidence: o.f64("confidence", defaults.confidence)?,
        seed: o.int("seed", defaults.seed as i64)? as u64,
    })
}

fn frontier_options(map: &Map) -> ScriptResult<FrontierOptions> {
    let o = Options::new(
        map,
        "compute_frontier",
        &[
            "bins_per_decade",
            "tolerance",
            "parabola",
            "bootstrap",
            "confidence",
            "seed",
        ],
    )?;
    let defaults = FrontierOptions::default();
    let bucketing = if o.has("tolerance") {
        Bucketing::Tolerance(o.f64("tolerance", 0.1)?)
    } else if o.has("bins_per_decade") {
        Bucketing::PerDecade(o.f64("bins_per_decade", 4.0)?)
    } else {
        defaults.bucketing
    };
    Ok(FrontierOptions {
        bucketing,
        parabola: o.bool("parabola", defaults.parabola)?,
        bootstrap: o.int("bootstrap", defaults.bootstrap as i64)?.max(0) as usize,
        confidence: o.f64("confidence", defaults.confidence)?,
        seed: o.int("seed", defaults.seed as i64)? as u64,
    })
}

/// Runs as maps with `n_features`, `steps`, `compute` and `loss`.
fn runs_from(rows: &Array) -> ScriptResult<Vec<Run>> {
    rows.iter()
        .enumerate()
        .map(|(id, row)| {
            let map = row.read_lock::<Map>().ok_or_else(|| {
                runtime_error(format!(
                    "compute_frontier: run {id} is a {}, not a map",
                    row.type_name()
                ))
            })?;
            let field = |key: &str| -> ScriptResult<f64> {
                map.get(key).and_then(number).ok_or_else(|| {
                    runtime_error(format!("compute_frontier: run {id} has no numeric '{key}'"))
                })
            };
            Ok(Run {
                id,
                n_features: field("n_features")?,
                steps: field("steps")?,
                compute: field("compute")?,
                loss: field("loss")?,
            })
        })
        .collect()
}

#[export_module]
pub mod scaling_api {
    use super::{frontier_options, power_law_options, runs_from, to_map};
    use crate::core::options::OptionMap;
    use crate::core::sae::ArchitectureConfig;
    use crate::core::scaling;
    use crate::core::Error;
    use crate::script::convert;
    use crate::script::error::{runtime_error, ScriptResult};
    use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext, FLOAT, INT};

    /// Fits y = a·x^(−b) (log-space least squares): `#{a, b, r2, residuals, ...}`.
    /// `let f = fit_power_law(compute, loss); f.b`
    #[rhai_fn(return_raw)]
    pub fn fit_power_law(xs: Dynamic, ys: Dynamic) -> ScriptResult<Dynamic> {
        fit_power_law_with(xs, ys, Map::new())
    }

    /// Power law with options `#{offset, log_space, bootstrap, confidence, seed}`;
    /// `offset: true` fits y = a·x^(−b) + c by Levenberg–Marquardt, with bootstrap intervals.
    #[rhai_fn(name = "fit_power_law", return_raw)]
    pub fn fit_power_law_with(xs: Dynamic, ys: Dynamic, opts: Map) -> ScriptResult<Dynamic> {
        let (xs, ys) = (convert::floats(&xs, "xs")?, convert::floats(&ys, "ys")?);
        let fit =
            scaling::fit_power_law(&xs, &ys, &power_law_options(&opts)?).map_err(Error::from)?;
        let mut map = to_map(&fit)?.cast::<Map>();
        if fit.c.is_none() {
            map.remove("c");
        }
        Ok(map.into())
    }

    /// Least-squares fit of a model: a name ("power_law", "power_law_offset",
    /// "exponential", "linear") or a closure `|x, p| ...`, from initial params p0.
    /// `fit(|x, p| p[0] * exp(-p[1] * x), xs, ys, [1.0, 0.1])`
    #[rhai_fn(return_raw)]
    pub fn fit(
        ctx: NativeCallContext,
        model: Dynamic,
        xs: Dynamic,
        ys: Dynamic,
        p0: Array,
    ) -> ScriptResult<Dynamic> {
        let (xs, ys) = (convert::floats(&xs, "xs")?, convert::floats(&ys, "ys")?);
        let p0 = convert::floats(&Dynamic::from_array(p0), "p0")?;
        let result = if let Some(name) = model.clone().try_cast::<rhai::ImmutableString>() {
            scaling::builtin_model(&name)
                .map_err(Error::from)?
                .fit(&xs, &ys, Some(&p0))
        } else if let Some(f) = model.clone().try_cast::<FnPtr>() {
            let closure = |x: f64, p: &[f64]| -> Result<f64, String> {
                let params: Array = p.iter().map(|v| Dynamic::from(*v)).collect();
                let value: Dynamic = f
                    .call_within_context(&ctx, (x, params))
                    .map_err(|e| e.to_string())?;
                convert::number(&value).ok_or_else(|| {
                    format!("the model returned a {}, not a number", value.type_name())
                })
            };
            scaling::fit_curve(closure, &xs, &ys, &p0)
        } else {
            return Err(runtime_error(format!(
                "fit: the model must be a name or a closure, got {}",
                model.type_name()
            )));
        };
        to_map(&result.map_err(Error::from)?)
    }

    /// Chinchilla-style joint fit L(F, S) = E + A/F^α + B/S^β: `#{e, a, alpha, b, beta, r2}`.
    #[rhai_fn(return_raw)]
    pub fn fit_joint(fs: Dynamic, ss: Dynamic, ls: Dynamic) -> ScriptResult<Dynamic> {
        let fs = convert::floats(&fs, "n_features")?;
        let ss = convert::floats(&ss, "steps")?;
        let ls = convert::floats(&ls, "losses")?;
        to_map(&scaling::fit_joint(&fs, &ss, &ls).map_err(Error::from)?)
    }

    /// The compute-optimal frontier of runs (maps with n_features, steps, compute, loss):
    /// per isoFLOP bucket the best run, then F_opt ∝ C^α_F and S_opt ∝ C^α_S. Returns
    /// `#{points, features, steps, grows_faster, runs (the best run of each bucket), buckets (each bucket's runs)}`.
    #[rhai_fn(return_raw)]
    pub fn compute_frontier(runs: Array) -> ScriptResult<Dynamic> {
        compute_frontier_with(runs, Map::new())
    }

    /// Frontier with options `#{bins_per_decade, tolerance, parabola, bootstrap, confidence, seed}`.
    #[rhai_fn(name = "compute_frontier", return_raw)]
    pub fn compute_frontier_with(runs: Array, opts: Map) -> ScriptResult<Dynamic> {
        let parsed = runs_from(&runs)?;
        let frontier =
            scaling::compute_frontier(&parsed, &frontier_options(&opts)?).map_err(Error::from)?;
        let mut map = to_map(&frontier)?.cast::<Map>();
        // Give back the caller's own run maps, so scripts keep every column.
        let chosen: Array = frontier
            .points
            .iter()
            .map(|p| runs[p.run_id].clone())
            .collect();
        map.insert("runs".into(), chosen.into());
        let buckets: Array = frontier
            .points
            .iter()
            .map(|p| {
                let members: Array = p.run_ids.iter().map(|&id| runs[id].clone()).collect();
                Dynamic::from_array(members)
            })
            .collect();
        map.insert("buckets".into(), buckets.into());
        Ok(map.into())
    }

    /// Training FLOPs of an SAE: kind "relu", "jumprelu" or "batchtopk" (dense), "matryoshka" (dense, plus its
    /// nested decoders), or "topk" with k.
    /// `training_flops(576, 4096, 1e6, "topk", 32)`
    #[rhai_fn(return_raw)]
    pub fn training_flops(
        d_in: INT,
        n_features: INT,
        tokens: FLOAT,
        kind: &str,
        k: INT,
    ) -> ScriptResult<FLOAT> {
        let mut architecture = ArchitectureConfig::new(kind, d_in, n_features)?;
        // `k` is TopK's; an architecture without one leaves it alone.
        let mut options = OptionMap::new();
        options.insert("k".into(), k.into());
        architecture.apply_options(&options)?;
        Ok(scaling::training_flops(
            d_in.max(0) as usize,
            n_features.max(0) as usize,
            tokens,
            &architecture,
        )
        .map_err(Error::from)?)
    }

    /// Training FLOPs of a dense ReLU SAE. `training_flops(576, 4096, 1e6)`
    #[rhai_fn(name = "training_flops", return_raw)]
    pub fn training_flops_relu(d_in: INT, n_features: INT, tokens: FLOAT) -> ScriptResult<FLOAT> {
        training_flops(d_in, n_features, tokens, "relu", 0)
    }

    /// Runs a closure for every point of a grid (a map of arrays, every combination;
    /// or an array of point maps), appending one CSV row per finished run; a re-run
    /// skips runs already in the CSV (resume after a kill).
    /// `sweep(#{n_features: [256, 1024], steps: [100, 1000]}, |run| train_one(run), "runs/sweep.csv")`
    #[rhai_fn(name = "sweep", return_raw)]
    pub fn sweep_with_closure(
        ctx: NativeCallContext,
        grid: Dynamic,
        run: FnPtr,
        csv: &str,
    ) -> ScriptResult<Array> {
        crate::script::sweep::sweep_with_closure(&ctx, &grid, &run, csv)
    }

    /// Reads a CSV file with a header row into an array of maps (numbers parsed).
    #[rhai_fn(return_raw)]
    pub fn read_csv(path: &str) -> ScriptResult<Array> {
        crate::script::sweep::read_csv(path)
    }

    /// Writes an array of maps as CSV (header from the keys), atomically.
    #[rhai_fn(return_raw)]
    pub fn write_csv(path: &str, rows: Array) -> ScriptResult<()> {
        crate::script::sweep::write_csv(path, &rows)
    }
}
