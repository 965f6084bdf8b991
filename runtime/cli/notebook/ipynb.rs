//! Notebooks as Jupyter's `.ipynb` (nbformat 4): percent-format cells to
//! JSON for the saelab kernel, and back, so a study written in a Jupyter UI
//! still renders to the report and still runs with `saelab run`.
//!
//! A percent cell's title (`// %% Train the SAE`) travels in the Jupyter
//! cell's metadata as `title`, jupytext's place for it. Outputs in an
//! `.ipynb` are not read: the report comes from running the cells.
use super::cells::{Cell, CellKind};
use serde_json::{json, Map, Value};

/// nbformat 4.5: the first minor version with cell ids.
const NBFORMAT_MINOR: u64 = 5;

/// The notebook JSON for `cells`, bound to the saelab kernel.
pub fn to_ipynb(cells: &[Cell]) -> Value {
    let cells: Vec<Value> = cells
        .iter()
        .enumerate()
        .map(|(i, cell)| cell_json(i + 1, cell))
        .collect();
    json!({
        "cells": cells,
        "metadata": {
            "kernelspec": {
                "name": "saelab",
                "display_name": "saelab (Rhai)",
                "language": "rhai",
            },
            "language_info": {
                "name": "rhai",
                "file_extension": ".rhai",
                "mimetype": "text/x-rhai",
                "codemirror_mode": "rust",
                "pygments_lexer": "rust",
            },
        },
        "nbformat": 4,
        "nbformat_minor": NBFORMAT_MINOR,
    })
}

fn cell_json(number: usize, cell: &Cell) -> Value {
    let mut metadata = Map::new();
    if let Some(title) = &cell.title {
        metadata.insert("title".into(), Value::String(title.clone()));
    }
    let mut json = json!({
        "id": format!("cell-{number}"),
        "metadata": metadata,
        "source": source_lines(&cell.source),
    });
    if let Value::Object(fields) = &mut json {
        match cell.kind {
            CellKind::Markdown => {
                fields.insert("cell_type".into(), "markdown".into());
            }
            CellKind::Code => {
                fields.insert("cell_type".into(), "code".into());
                fields.insert("execution_count".into(), Value::Null);
                fields.insert("outputs".into(), json!([]));
            }
        }
    }
    json
}

/// nbformat's multi-line string: lines that keep their `\n`, the last without.
fn source_lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n').map(str::to_string).collect()
}

/// The cells of an `.ipynb`; each cell's lines count from 1. Raw cells and
/// empty cells are left out.
pub fn from_ipynb(text: &str) -> Result<Vec<Cell>, String> {
    let notebook: Value =
        serde_json::from_str(text).map_err(|e| format!("not a Jupyter notebook (JSON): {e}"))?;
    let major = notebook.get("nbformat").and_then(Value::as_u64);
    if major != Some(4) {
        return Err(format!(
            "only nbformat 4 notebooks can be read, this one says {}",
            major.map_or("nothing".to_string(), |m| m.to_string())
        ));
    }
    let cells = notebook
        .get("cells")
        .and_then(Value::as_array)
        .ok_or("the notebook has no `cells` list")?;
    let mut out = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        if let Some(cell) = read_cell(cell).map_err(|e| format!("cell {}: {e}", index + 1))? {
            out.push(cell);
        }
    }
    Ok(out)
}

fn read_cell(cell: &Value) -> Result<Option<Cell>, String> {
    let kind = match cell.get("cell_type").and_then(Value::as_str) {
        Some("code") => CellKind::Code,
        Some("markdown") => CellKind::Markdown,
        Some(_) => return Ok(None),
        None => return Err("no cell_type".into()),
    };
    let source = match cell.get("source") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(lines)) => lines.iter().filter_map(Value::as_str).collect(),
        _ => return Err("no source".into()),
    };
    let title = cell
        .pointer("/metadata/title")
        .and_then(Value::as_str)
        .map(str::to_string);
    let source = trim_blank_lines(&source);
    if source.is_empty() {
        return Ok(None);
    }
    Ok(Some(Cell {
        kind,
        title,
        source,
        first_line: 1,
    }))
}

/// Leading and trailing blank lines go, as the percent-format reader drops them.
fn trim_blank_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| !l.trim().is_empty());
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    match (first, last) {
        (Some(first), Some(last)) => lines[first..=last].join("\n"),
        _ => String::new(),
    }
}

/// The percent-format text of `cells` (what `split_cells` reads back).
pub fn to_percent(cells: &[Cell]) -> String {
    let mut out = String::new();
    for cell in cells {
        if !out.is_empty() {
            out.push('\n');
        }
        let title = cell
            .title
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        match cell.kind {
            CellKind::Code => {
                out.push_str(&format!("// %%{title}\n{}\n", cell.source));
            }
            CellKind::Markdown => {
                out.push_str(&format!("// %% [markdown]{title}\n"));
                for line in cell.source.lines() {
                    if line.is_empty() {
                        out.push_str("//\n");
                    } else {
                        out.push_str(&format!("// {line}\n"));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::cells::split_cells;
    use super::*;

    const PERCENT: &str = "// %% [markdown]\n// # Title\n//\n// Some *prose*.\n//     indented\n\n// %% Setup\nlet x = 1;\n\nlet y = x + 1;\n\n// %%\nprint(y);\n";

    fn without_lines(cells: Vec<Cell>) -> Vec<(CellKind, Option<String>, String)> {
        cells
            .into_iter()
            .map(|c| (c.kind, c.title, c.source))
            .collect()
    }

    #[test]
    fn percent_to_ipynb_and_back_keeps_every_cell() {
        let cells = split_cells(PERCENT);
        let notebook = to_ipynb(&cells).to_string();
        let read = from_ipynb(&notebook).unwrap();
        assert_eq!(without_lines(read.clone()), without_lines(cells.clone()));
        let again = split_cells(&to_percent(&read));
        assert_eq!(without_lines(again), without_lines(cells));
    }

    #[test]
    fn the_notebook_is_nbformat_4_for_the_saelab_kernel() {
        let notebook = to_ipynb(&split_cells(PERCENT));
        assert_eq!(notebook["nbformat"], 4);
        assert_eq!(notebook["metadata"]["kernelspec"]["name"], "saelab");
        assert_eq!(notebook["cells"][0]["cell_type"], "markdown");
        assert_eq!(notebook["cells"][1]["metadata"]["title"], "Setup");
        assert_eq!(
            notebook["cells"][1]["source"],
            json!(["let x = 1;\n", "\n", "let y = x + 1;"])
        );
        assert_eq!(notebook["cells"][2]["outputs"], json!([]));
    }

    #[test]
    fn sources_as_one_string_raw_cells_and_blank_cells_are_read() {
        let text = r#"{"nbformat": 4, "nbformat_minor": 2, "metadata": {}, "cells": [
            {"cell_type": "code", "metadata": {}, "source": "\n1 + 1\n", "outputs": []},
            {"cell_type": "raw", "metadata": {}, "source": "skip"},
            {"cell_type": "markdown", "metadata": {}, "source": ["  \n"]}]}"#;
        let cells = from_ipynb(text).unwrap();
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].source, "1 + 1");
    }

    #[test]
    fn other_formats_are_refused_with_a_reason() {
        assert!(from_ipynb("not json").unwrap_err().contains("JSON"));
        assert!(from_ipynb(r#"{"nbformat": 3, "worksheets": []}"#)
            .unwrap_err()
            .contains("nbformat 4"));
    }
}
