//! Sweeps and CSV tables from scripts: Rhai grids, rows and closures
//! converted for core's sweep engine (`core::sweep`), which does the work.
use crate::core::sweep::{self, Cell, Row, Scalar};
use crate::script::convert::{number, parse_scalar, scalar_value};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext};
use std::collections::BTreeMap;
use std::path::Path;

/// A script value in a row: compared and written to CSV as the script prints it.
#[derive(Clone)]
pub struct ScriptCell(pub Dynamic);

impl Cell for ScriptCell {
    fn number(&self) -> Option<f64> {
        number(&self.0)
    }

    fn text(&self) -> String {
        self.0.to_string()
    }

    fn parse(text: &str) -> Self {
        ScriptCell(parse_scalar(text))
    }
}

fn to_row(map: &Map) -> Row<ScriptCell> {
    map.iter()
        .map(|(k, v)| (k.to_string(), ScriptCell(v.clone())))
        .collect()
}

fn to_map(row: Row<ScriptCell>) -> Dynamic {
    let map: Map = row.into_iter().map(|(k, v)| (k.into(), v.0)).collect();
    Dynamic::from_map(map)
}

/// The runs of a grid: a map of arrays `#{n_features: [256, 512], steps: [100, 1000]}`
/// gives every combination (in key order, the last key varying fastest); an
/// array of maps gives exactly those points (an isoFLOP design, say).
pub fn points_of(grid: &Dynamic) -> ScriptResult<Vec<Row<ScriptCell>>> {
    if let Some(map) = grid.read_lock::<Map>() {
        let mut entries = BTreeMap::new();
        for (key, values) in map.iter() {
            let Some(values) = values.read_lock::<Array>() else {
                return Err(runtime_error(format!(
                    "sweep: grid entry '{key}' must be an array of values"
                )));
            };
            let cells = values.iter().cloned().map(ScriptCell).collect();
            entries.insert(key.to_string(), cells);
        }
        return Ok(sweep::grid_points(&entries)?);
    }
    let Some(array) = grid.read_lock::<Array>() else {
        return Err(runtime_error(format!(
            "sweep: the grid must be a map of arrays or an array of maps, got {}",
            grid.type_name()
        )));
    };
    if array.is_empty() {
        return Err(runtime_error("sweep: the grid has no points"));
    }
    array
        .iter()
        .enumerate()
        .map(|(i, point)| {
            point.read_lock::<Map>().map(|m| to_row(&m)).ok_or_else(|| {
                runtime_error(format!(
                    "sweep: grid point {i} is a {}, not a map",
                    point.type_name()
                ))
            })
        })
        .collect()
}

/// `sweep(grid, |run| ..., csv)`: the closure runs each point not yet in the CSV.
pub fn sweep_with_closure(
    ctx: &NativeCallContext,
    grid: &Dynamic,
    run: &FnPtr,
    csv: &str,
) -> ScriptResult<Array> {
    let points = points_of(grid)?;
    let rows = sweep::run_sweep(points, Some(Path::new(csv)), |point| {
        let result: Dynamic = run.call_within_context(ctx, (to_map(point.clone()),))?;
        result
            .read_lock::<Map>()
            .map(|m| to_row(&m))
            .ok_or_else(|| runtime_error("sweep: the run closure must return a map of results"))
    })?;
    Ok(rows.into_iter().map(to_map).collect())
}

/// A point of script values as core's scalars (a native sweep's settings).
pub fn scalar_row(row: &Row<ScriptCell>) -> ScriptResult<Row<Scalar>> {
    row.iter()
        .map(|(key, ScriptCell(value))| {
            let scalar = if let Ok(i) = value.as_int() {
                Scalar::Int(i)
            } else if let Some(f) = value.as_float().ok().filter(|f| f.is_finite()) {
                Scalar::Float(f)
            } else if let Ok(b) = value.as_bool() {
                Scalar::Bool(b)
            } else if let Ok(text) = value.clone().into_string() {
                Scalar::Text(text)
            } else {
                return Err(runtime_error(format!(
                    "sweep: grid values must be finite numbers, booleans or strings; '{key}' has {value}"
                )));
            };
            Ok((key.clone(), scalar))
        })
        .collect()
}

/// A row of core's scalars as a script map.
pub fn scalar_map(row: Row<Scalar>) -> Dynamic {
    let map: Map = row
        .into_iter()
        .map(|(key, value)| (key.into(), scalar_value(value)))
        .collect();
    Dynamic::from_map(map)
}

/// Reads a CSV with a header; cells that parse as integers or floats become numbers.
pub fn read_csv(path: &str) -> ScriptResult<Array> {
    let rows = sweep::csv::read_rows::<ScriptCell>(Path::new(path))?;
    Ok(rows.into_iter().map(to_map).collect())
}

/// Writes rows (maps) with the union of their keys as the header, atomically.
pub fn write_csv(path: &str, rows: &Array) -> ScriptResult<()> {
    let maps = crate::script::convert::rows_of_maps(rows, "write_csv")?;
    let rows: Vec<Row<ScriptCell>> = maps.iter().map(to_row).collect();
    Ok(sweep::csv::write_rows(Path::new(path), &rows)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A native sweep's CSV (core's `Scalar`) must read as a script's does.
    #[test]
    fn core_writes_floats_as_scripts_print_them() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -3.0,
            0.5,
            1e-3,
            5e-5,
            1.0 / 3.0,
            12345.678,
            1e12,
            9.99e12,
            1e13,
            2e15,
            1e-13,
            1e-14,
            6.02e23,
            f64::NAN,
            f64::INFINITY,
        ];
        for x in values {
            assert_eq!(
                Scalar::Float(x).to_string(),
                Dynamic::from(x).to_string(),
                "{x}"
            );
        }
    }
}
