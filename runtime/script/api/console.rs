//! Console output: aligned tables, and `display` for a value's richest form.
use crate::script::api::plot::Figure;
use crate::script::console;
use crate::script::display::format_value;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn cell(value: &Dynamic) -> String {
    match value.as_float() {
        Ok(f) if f != 0.0 && (f.abs() >= 1e6 || f.abs() < 1e-3) => format!("{f:.4e}"),
        Ok(f) => format!("{:.4}", f)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
        Err(_) => value.to_string(),
    }
}

/// Numbers the figures `display` writes, so each keeps its own file.
static DISPLAYED: AtomicUsize = AtomicUsize::new(0);

/// Draws a figure into the display folder and shows it as an image.
pub(crate) fn display_figure(fig: &Figure) -> ScriptResult<()> {
    let n = DISPLAYED.fetch_add(1, Ordering::SeqCst) + 1;
    let path = console::display_dir().join(format!("figure-{n}.png"));
    fig.borrow().save(&path).map_err(crate::core::Error::from)?;
    show_image(path);
    Ok(())
}

/// A front end that shows images gets the file; a terminal gets its path.
fn show_image(path: PathBuf) {
    if console::is_captured() {
        console::record_image(path);
    } else {
        console::print_line(&format!("image: {}", path.display()));
    }
}

fn is_image_file(text: &str) -> bool {
    let path = Path::new(text);
    let image = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "svg"));
    image && path.is_file()
}

fn table_of(rows: &Array) -> ScriptResult<()> {
    let maps = crate::script::convert::rows_of_maps(rows, "table")?;
    let columns =
        crate::core::sweep::csv::columns_of(maps.iter().flat_map(|m| m.keys().map(|k| k.as_str())));
    let cells = maps
        .iter()
        .map(|m| {
            columns
                .iter()
                .map(|c| m.get(c.as_str()).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    console::print_table(columns, cells);
    Ok(())
}

fn display_value(value: &Dynamic) -> ScriptResult<()> {
    if let Some(fig) = value.read_lock::<Figure>() {
        return display_figure(&fig);
    }
    if let Some(rows) = value.read_lock::<Array>() {
        if !rows.is_empty() && rows.iter().all(|r| r.is_map()) {
            return table_of(&rows);
        }
    }
    if let Some(text) = value.read_lock::<rhai::ImmutableString>() {
        if is_image_file(text.as_str()) {
            show_image(PathBuf::from(text.as_str()));
            return Ok(());
        }
    }
    if value.is_unit() {
        return Err(runtime_error("display: nothing to show (the value is ())"));
    }
    console::print_line(&format_value(value));
    Ok(())
}

#[export_module]
pub mod console_api {
    use super::{display_value, table_of};
    use crate::script::error::ScriptResult;
    use rhai::{Array, Dynamic};

    /// Prints an array of maps as an aligned table (columns in key order, as Rhai maps keep them).
    /// `table([#{f: 1, l0: 12.5}, #{f: 2, l0: 9.0}])`
    #[rhai_fn(return_raw)]
    pub fn table(rows: Array) -> ScriptResult<()> {
        table_of(&rows)
    }

    /// Shows a value in its richest form: a figure as an image (inline in
    /// Jupyter and in notebook reports; its file's path at a terminal), an
    /// array of maps as a table, the path of a saved .png/.svg as that image,
    /// anything else (tensors too) as text. `display(figure().line([1, 2], [3, 1]))`
    #[rhai_fn(return_raw)]
    pub fn display(value: Dynamic) -> ScriptResult<()> {
        display_value(&value)
    }

    /// Prints a line on stderr, out of the way of a script's output (a
    /// warning; stderr text in Jupyter). `eprint("no GPU found, using the CPU")`
    pub fn eprint(value: Dynamic) {
        let text = value.into_string().unwrap_or_else(|v| v.to_string());
        crate::script::console::eprint_line(&text);
    }

    /// Clears what the current cell has shown so far (in Jupyter and in
    /// notebook reports), for a status that updates in place.
    /// `clear_output(); print(`step ${i}: loss ${loss}`);`
    pub fn clear_output() {
        crate::script::console::clear_output();
    }
}
