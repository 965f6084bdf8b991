//! Rows as CSV files: the format sweeps and reports exchange.
use super::{Cell, Row};
use crate::fs::write_atomic_with;
use crate::{Error, Result};
use std::path::Path;

/// Reads a CSV with a header; each cell becomes the value its text spells
/// (see [`Cell::parse`]).
pub fn read_rows<C: Cell>(path: &Path) -> Result<Vec<Row<C>>> {
    let shown = path.display();
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| Error::invalid(format!("cannot read {shown}: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| Error::invalid(format!("{shown}: {e}")))?
        .clone();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| Error::invalid(format!("{shown}: row {}: {e}", i + 2)))?;
        rows.push(
            headers
                .iter()
                .zip(record.iter())
                .map(|(k, v)| (k.to_string(), C::parse(v)))
                .collect(),
        );
    }
    Ok(rows)
}

/// The columns of a table: the union of its rows' keys (given row after
/// row), in the order first seen.
pub fn columns_of<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for key in keys {
        if !columns.iter().any(|c| c == key) {
            columns.push(key.to_string());
        }
    }
    columns
}

/// Writes rows with the union of their keys as the header (a missing cell
/// is empty); written to a temporary file and renamed, so a crash never
/// leaves half a CSV.
pub fn write_rows<C: Cell>(path: &Path, rows: &[Row<C>]) -> Result<()> {
    let columns = columns_of(rows.iter().flat_map(|row| row.keys().map(String::as_str)));
    let shown = path.display();
    let fail = |e: &dyn std::fmt::Display| Error::invalid(format!("cannot write {shown}: {e}"));
    write_atomic_with(path, |staging| {
        let mut writer = csv::Writer::from_path(staging).map_err(|e| fail(&e))?;
        writer.write_record(&columns).map_err(|e| fail(&e))?;
        for row in rows {
            let record: Vec<String> = columns
                .iter()
                .map(|c| row.get(c).map(Cell::text).unwrap_or_default())
                .collect();
            writer.write_record(&record).map_err(|e| fail(&e))?;
        }
        writer.flush().map_err(|e| fail(&e))
    })
}
