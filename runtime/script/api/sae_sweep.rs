//! `sweep(grid, cfg)`: the scaling-law sweep, run by core
//! (`core::sweep::sae::SweepSpec`). Here the script's activations become
//! sources core can open, its grid and options core's types, and the rows
//! script maps.
use super::sae::source_from;
use crate::core::sae::ActivationSource;
use crate::core::sweep::sae::SweepSpec;
use crate::core::Error;
use crate::script::convert::option_map;
use crate::script::error::{describe_error, runtime_error, ScriptResult};
use crate::script::sweep::{points_of, scalar_map, scalar_row};
use rhai::{Dynamic, Map};

/// The options naming activations (script values), kept out of the spec.
const SOURCE_KEYS: &[&str] = &["source", "held_out"];

/// `sweep(grid, cfg)`: every grid point's run, resuming from `cfg.csv`.
pub fn sweep(grid: &Dynamic, cfg: &Map) -> ScriptResult<Dynamic> {
    if cfg.contains_key("executor") {
        let points = points_of(grid)?
            .iter()
            .map(scalar_row)
            .collect::<ScriptResult<Vec<_>>>()?;
        return super::jobs::sweep(points, cfg);
    }
    let source = cfg.get("source").ok_or_else(|| {
        runtime_error("sweep: give the activations, e.g. #{source: store, csv: \"runs.csv\"}")
    })?;
    let options: Map = cfg
        .iter()
        .filter(|(k, _)| !SOURCE_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let spec = SweepSpec::from_options(&option_map(&options, "sweep")?)?;
    let points = points_of(grid)?
        .iter()
        .map(scalar_row)
        .collect::<ScriptResult<Vec<_>>>()?;
    let train = opener(source);
    let held_out = cfg.get("held_out").map(opener);
    let rows = spec.run(
        points,
        &train,
        held_out.as_ref().map(|open| open as _),
        &mut |line| crate::script::console::print_line(line),
    )?;
    Ok(Dynamic::from_array(
        rows.into_iter().map(scalar_map).collect(),
    ))
}

/// Opens a script's activations (a tensor or a store) as core asks.
fn opener(
    value: &Dynamic,
) -> impl Fn(u64, bool) -> crate::core::Result<Box<dyn ActivationSource>> + '_ {
    move |seed, shuffle| {
        source_from(value, seed, shuffle).map_err(|e| Error::invalid(describe_error(&e).0))
    }
}
