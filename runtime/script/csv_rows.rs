//! Arrays of maps as CSV files: the format sweeps and reports exchange.
use crate::core::fs::write_atomic_with;
use crate::core::Error;
use crate::script::convert::{columns_of, parse_scalar, rows_of_maps};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::{Array, Map};
use std::path::Path;

/// Reads a CSV with a header; cells that parse as integers or floats become numbers.
pub fn read(path: &str) -> ScriptResult<Array> {
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| runtime_error(format!("cannot read {path}: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| runtime_error(format!("{path}: {e}")))?
        .clone();
    let mut rows = Array::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| runtime_error(format!("{path}: row {}: {e}", i + 2)))?;
        let map: Map = headers
            .iter()
            .zip(record.iter())
            .map(|(k, v)| (k.into(), parse_scalar(v)))
            .collect();
        rows.push(map.into());
    }
    Ok(rows)
}

/// Writes rows (maps) with the union of their keys as the header; written
/// to a temporary file and renamed, so a crash never leaves half a CSV.
pub fn write(path: &str, rows: &Array) -> ScriptResult<()> {
    let maps = rows_of_maps(rows, "write_csv")?;
    let columns = columns_of(&maps);
    let fail = |e: &dyn std::fmt::Display| Error::invalid(format!("cannot write {path}: {e}"));
    write_atomic_with(Path::new(path), |staging| {
        let mut writer = csv::Writer::from_path(staging).map_err(|e| fail(&e))?;
        writer.write_record(&columns).map_err(|e| fail(&e))?;
        for map in &maps {
            let record: Vec<String> = columns
                .iter()
                .map(|c| {
                    map.get(c.as_str())
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                })
                .collect();
            writer.write_record(&record).map_err(|e| fail(&e))?;
        }
        writer.flush().map_err(|e| fail(&e))
    })?;
    Ok(())
}
