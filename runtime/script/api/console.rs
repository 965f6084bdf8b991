//! Console output: aligned tables.
use rhai::plugin::*;
use rhai::Dynamic;

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

#[export_module]
pub mod console_api {
    use super::cell;
    use crate::script::console;
    use crate::script::convert;
    use crate::script::error::ScriptResult;
    use rhai::Array;

    /// Prints an array of maps as an aligned table (columns in key order, as Rhai maps keep them).
    /// `table([#{f: 1, l0: 12.5}, #{f: 2, l0: 9.0}])`
    #[rhai_fn(return_raw)]
    pub fn table(rows: Array) -> ScriptResult<()> {
        let maps = convert::rows_of_maps(&rows, "table")?;
        let columns = crate::core::sweep::csv::columns_of(
            maps.iter().flat_map(|m| m.keys().map(|k| k.as_str())),
        );
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
}
