//! Sweeps: a grid of settings, one run per point, one CSV row per finished
//! run appended as it finishes, and finished runs skipped on a re-run — so a
//! killed sweep resumes where it stopped.
//!
//! The engine is generic over the value held in a cell ([`Cell`]): core's
//! own [`Scalar`] for the native SAE sweep ([`sae::SweepSpec`]), a script's
//! values for a sweep whose runs are script closures.
pub mod csv;
pub mod job;
pub mod sae;

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// One grid point, or one result row: values by name, in key order.
pub type Row<C> = BTreeMap<String, C>;

/// What the engine needs of a value: a number to compare as a number, and
/// text for a CSV cell (and back).
pub trait Cell: Clone {
    /// The value as a number, if it is one.
    fn number(&self) -> Option<f64>;
    /// The value as a CSV cell holds it.
    fn text(&self) -> String;
    /// A CSV cell's text as the value it spells: an integer, a float, a
    /// boolean, or else the text itself.
    fn parse(text: &str) -> Self;
}

/// A scalar setting or result, as core's sweeps record them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Cell for Scalar {
    fn number(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn text(&self) -> String {
        self.to_string()
    }

    fn parse(text: &str) -> Self {
        if let Ok(i) = text.parse::<i64>() {
            Scalar::Int(i)
        } else if let Ok(f) = text.parse::<f64>() {
            Scalar::Float(f)
        } else if let Ok(b) = text.parse::<bool>() {
            Scalar::Bool(b)
        } else {
            Scalar::Text(text.to_string())
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write_float(f, *x),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Text(t) => f.write_str(t),
        }
    }
}

/// A float as the scripts print it (Rhai's format), so a CSV written by a
/// native sweep reads the same as one a script wrote: `1.0` rather than `1`
/// (read back as a float, not an integer), exponents outside 1e-13..1e13.
fn write_float(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    let abs = x.abs();
    if abs == 0.0 {
        f.write_str("0.0")
    } else if abs > f64::from(10_000_000_000_000.0f32) || abs < f64::from(0.000_000_000_000_1f32) {
        write!(f, "{x:e}")
    } else if abs.fract() == 0.0 {
        write!(f, "{x}.0")
    } else {
        write!(f, "{x}")
    }
}

impl From<Scalar> for serde_json::Value {
    fn from(value: Scalar) -> Self {
        match value {
            Scalar::Int(i) => i.into(),
            Scalar::Float(x) => x.into(),
            Scalar::Bool(b) => b.into(),
            Scalar::Text(t) => t.into(),
        }
    }
}

impl Scalar {
    /// A JSON scalar as a `Scalar`; `None` for null, arrays and maps.
    pub fn from_json(value: &serde_json::Value) -> Option<Scalar> {
        match value {
            serde_json::Value::Bool(b) => Some(Scalar::Bool(*b)),
            serde_json::Value::String(t) => Some(Scalar::Text(t.clone())),
            serde_json::Value::Number(n) => Some(match n.as_i64() {
                Some(i) => Scalar::Int(i),
                None => Scalar::Float(n.as_f64()?),
            }),
            _ => None,
        }
    }
}

/// Every combination of a grid `{n_features: [256, 512], steps: [100, 1000]}`,
/// in key order with the last key varying fastest.
pub fn grid_points<C: Cell>(grid: &BTreeMap<String, Vec<C>>) -> Result<Vec<Row<C>>> {
    let mut points = vec![Row::new()];
    for (key, values) in grid {
        if values.is_empty() {
            return Err(Error::invalid(format!(
                "sweep: grid entry '{key}' is empty"
            )));
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
pub fn finished_row<'a, C: Cell>(rows: &'a [Row<C>], point: &Row<C>) -> Option<&'a Row<C>> {
    rows.iter().find(|row| {
        point
            .iter()
            .all(|(k, v)| row.get(k).is_some_and(|r| same_value(r, v)))
    })
}

fn same_value<C: Cell>(a: &C, b: &C) -> bool {
    match (a.number(), b.number()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => a.text() == b.text(),
    }
}

/// Runs `run(point)` for every point not yet in `csv`, appending each
/// result (merged with its point) as soon as it finishes. Without a CSV every
/// point runs and nothing is written. Returns one row per point, in order.
/// `E` is the caller's error type (a script's, so that an error inside a
/// script closure reaches the script unchanged).
pub fn run_sweep<C: Cell, E: From<Error>>(
    points: Vec<Row<C>>,
    csv: Option<&Path>,
    mut run: impl FnMut(&Row<C>) -> std::result::Result<Row<C>, E>,
) -> std::result::Result<Vec<Row<C>>, E> {
    let mut rows = match csv {
        Some(path) if path.exists() => csv::read_rows(path)?,
        _ => Vec::new(),
    };
    let mut results = Vec::new();
    for point in points {
        if let Some(done) = finished_row(&rows, &point) {
            results.push(done.clone());
            continue;
        }
        let mut row = point.clone();
        row.extend(run(&point)?);
        rows.push(row.clone());
        if let Some(path) = csv {
            csv::write_rows(path, &rows)?;
        }
        results.push(row);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_gives_every_combination_with_the_last_key_fastest() {
        let grid = BTreeMap::from([
            ("a".to_string(), vec![Scalar::Int(1), Scalar::Int(2)]),
            (
                "b".to_string(),
                vec![Scalar::Text("x".into()), Scalar::Text("y".into())],
            ),
        ]);
        let points = grid_points(&grid).unwrap();
        let text: Vec<String> = points
            .iter()
            .map(|p| format!("{}{}", p["a"], p["b"]))
            .collect();
        assert_eq!(text, ["1x", "1y", "2x", "2y"]);
    }

    #[test]
    fn a_rerun_skips_finished_points_and_compares_numbers_as_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("runs.csv");
        let points = || {
            vec![
                Row::from([("lr".to_string(), Scalar::Float(0.001))]),
                Row::from([("lr".to_string(), Scalar::Int(1))]),
            ]
        };
        let mut runs = 0;
        let mut run = |_: &Row<Scalar>| -> Result<Row<Scalar>> {
            runs += 1;
            Ok(Row::from([("loss".to_string(), Scalar::Float(2.0))]))
        };
        run_sweep(points(), Some(&csv), &mut run).unwrap();
        let again = run_sweep(points(), Some(&csv), &mut run).unwrap();
        assert_eq!(runs, 2);
        assert_eq!(again[1]["loss"], Scalar::Float(2.0));
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(text, "loss,lr\n2.0,0.001\n2.0,1\n");
    }

    #[test]
    fn floats_print_as_scripts_print_them() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.0, "0.0"),
            (1e-20, "1e-20"),
            (2e15, "2e15"),
        ];
        for (value, text) in cases {
            assert_eq!(Scalar::Float(value).to_string(), text);
        }
    }
}
