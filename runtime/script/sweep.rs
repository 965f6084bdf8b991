//! Sweeps: a grid of settings, one run per point, one CSV row per finished
//! run appended as it finishes, and finished runs skipped on a re-run — so a
//! killed sweep resumes where it stopped.
use crate::script::csv_rows;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::{Array, Dynamic, Map};
use std::path::Path;

/// The runs of a grid: a map of arrays `#{n_features: [256, 512], steps: [100, 1000]}`
/// gives every combination (in key order, the last key varying fastest); an
/// array of maps gives exactly those points (an isoFLOP design, say).
pub fn points_of(grid: &Dynamic) -> ScriptResult<Vec<Map>> {
    if let Some(map) = grid.read_lock::<Map>() {
        return grid_points(&map);
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
            point.read_lock::<Map>().map(|m| m.clone()).ok_or_else(|| {
                runtime_error(format!(
                    "sweep: grid point {i} is a {}, not a map",
                    point.type_name()
                ))
            })
        })
        .collect()
}

/// Every combination of a grid map `#{n_features: [256, 512], steps: [100, 1000]}`,
/// in key order with the last key varying fastest.
pub fn grid_points(grid: &Map) -> ScriptResult<Vec<Map>> {
    let mut points = vec![Map::new()];
    for (key, values) in grid {
        let values = values
            .read_lock::<Array>()
            .map(|a| a.clone())
            .ok_or_else(|| {
                runtime_error(format!(
                    "sweep: grid entry '{key}' must be an array of values"
                ))
            })?;
        if values.is_empty() {
            return Err(runtime_error(format!("sweep: grid entry '{key}' is empty")));
        }
        points = points
            .into_iter()
            .flat_map(|point| {
                values.iter().map(move |v| {
                    let mut next = point.clone();
                    next.insert(key.clone(), v.clone());
                    next
                })
            })
            .collect();
    }
    Ok(points)
}

/// The finished row for `point`, if the CSV already has one: every grid key
/// must match (numbers compared as numbers, since the CSV stores text).
pub fn finished_row<'a>(rows: &'a [Map], point: &Map) -> Option<&'a Map> {
    rows.iter().find(|row| {
        point
            .iter()
            .all(|(k, v)| row.get(k).is_some_and(|r| same_value(r, v)))
    })
}

fn same_value(a: &Dynamic, b: &Dynamic) -> bool {
    match (
        crate::script::convert::number(a),
        crate::script::convert::number(b),
    ) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => a.to_string() == b.to_string(),
    }
}

/// Rows already in the sweep's CSV (none if it does not exist yet).
pub fn load_rows(csv: &str) -> ScriptResult<Vec<Map>> {
    if !Path::new(csv).exists() {
        return Ok(Vec::new());
    }
    csv_rows::read(csv)?
        .into_iter()
        .map(|r| {
            r.try_cast::<Map>()
                .ok_or_else(|| runtime_error("sweep: unreadable CSV row"))
        })
        .collect()
}

/// Runs `run(point)` for every point not yet in `csv`, appending each
/// result (merged with its point) as soon as it finishes. Without a CSV every
/// point runs and nothing is written.
pub fn run_sweep(
    points: Vec<Map>,
    csv: Option<&str>,
    mut run: impl FnMut(&Map) -> ScriptResult<Map>,
) -> ScriptResult<Array> {
    let mut rows = match csv {
        Some(path) => load_rows(path)?,
        None => Vec::new(),
    };
    let mut results = Array::new();
    for point in points {
        if let Some(done) = finished_row(&rows, &point) {
            results.push(done.clone().into());
            continue;
        }
        let mut row = point.clone();
        row.extend(run(&point)?);
        rows.push(row.clone());
        if let Some(path) = csv {
            let all: Array = rows.iter().cloned().map(Dynamic::from).collect();
            csv_rows::write(path, &all)?;
        }
        results.push(row.into());
    }
    Ok(results)
}
