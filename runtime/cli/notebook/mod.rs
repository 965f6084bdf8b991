//! `saelab notebook FILE`: runs a percent-format notebook (or an `.ipynb`)
//! cell by cell in one engine (state carries over), captures what each cell
//! prints, tables and saved figures, and writes an HTML report plus
//! Markdown beside it; `--to ipynb` and `--to rhai` convert instead.
pub mod cells;
pub mod ipynb;
pub mod render;

use crate::run::{apply_settings, session_for};
use cells::{split_cells, Cell, CellKind};
use render::{CellReport, CellStatus, Output, Report};
use saelab::core::interrupt;
use saelab::script::console::Captured;
use saelab::script::display::format_value;
use saelab::script::{located_message, Session};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// What `saelab notebook` makes of a notebook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Run it and write the HTML report (and Markdown beside it).
    Html,
    /// Convert it to a Jupyter notebook for the saelab kernel.
    Ipynb,
    /// Convert it to a percent-format `.rhai` notebook.
    Rhai,
}

pub fn run_notebook(
    file: &Path,
    output: Option<PathBuf>,
    settings: &[String],
    to: Format,
) -> ExitCode {
    let cells = match read_cells(file) {
        Ok(cells) => cells,
        Err(message) => {
            eprintln!("saelab: {message}");
            return ExitCode::FAILURE;
        }
    };
    let converted = match to {
        Format::Html => return render_report(file, &cells, output, settings),
        Format::Ipynb => serde_json::to_string_pretty(&ipynb::to_ipynb(&cells))
            .map(|json| json + "\n")
            .map_err(|e| e.to_string()),
        Format::Rhai => Ok(ipynb::to_percent(&cells)),
    };
    let extension = if to == Format::Ipynb { "ipynb" } else { "rhai" };
    let path = output.unwrap_or_else(|| default_output(file, extension));
    match converted.and_then(|text| write_converted(file, &path, &text)) {
        Ok(()) => {
            eprintln!("notebook: {}", path.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("saelab: {message}");
            ExitCode::FAILURE
        }
    }
}

fn is_ipynb(file: &Path) -> bool {
    file.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ipynb"))
}

/// The cells of a percent-format `.rhai` notebook or of an `.ipynb`.
fn read_cells(file: &Path) -> Result<Vec<Cell>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    if is_ipynb(file) {
        ipynb::from_ipynb(&text).map_err(|e| format!("{}: {e}", file.display()))
    } else {
        Ok(split_cells(&text))
    }
}

fn write_converted(input: &Path, output: &Path, text: &str) -> Result<(), String> {
    let same = |a: &Path, b: &Path| {
        a.canonicalize()
            .ok()
            .is_some_and(|a| Some(a) == b.canonicalize().ok())
    };
    if same(input, output) {
        return Err(format!(
            "{} would overwrite the notebook it comes from; name another with -o",
            output.display()
        ));
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(output, text).map_err(|e| format!("cannot write {}: {e}", output.display()))
}

fn render_report(
    file: &Path,
    cells: &[Cell],
    output: Option<PathBuf>,
    settings: &[String],
) -> ExitCode {
    let mut session = session_for(file);
    if let Err(message) = apply_settings(session.scope_mut(), settings) {
        eprintln!("saelab: {message}");
        return ExitCode::from(2);
    }
    let report = execute(file, cells.to_vec(), &mut session);
    let html_path = output.unwrap_or_else(|| default_output(file, "html"));
    let written = write_report(&report, &html_path);
    // Figures `display` showed are inside the report now.
    let _ = std::fs::remove_dir_all(saelab::script::console::display_dir());
    match written {
        Ok(md_path) => eprintln!(
            "report: {} (and {})",
            html_path.display(),
            md_path.display()
        ),
        Err(message) => {
            eprintln!("saelab: {message}");
            return ExitCode::FAILURE;
        }
    }
    let failed = report
        .cells
        .iter()
        .any(|c| matches!(c.status, CellStatus::Failed { .. }));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// NOTEBOOK.EXTENSION in the current folder.
fn default_output(file: &Path, extension: &str) -> PathBuf {
    let stem = file.file_stem().unwrap_or_default();
    PathBuf::from(stem).with_extension(extension)
}

/// Runs every cell in order in one session (variables, functions and
/// imports carry over); after a failure the rest are marked not run.
pub fn execute(file: &Path, cells: Vec<Cell>, session: &mut Session) -> Report {
    let code_total = cells.iter().filter(|c| c.kind == CellKind::Code).count();
    let mut failed = false;
    let mut code_index = 0;
    let mut reports = Vec::new();
    for (index, cell) in cells.into_iter().enumerate() {
        if cell.kind == CellKind::Markdown || failed {
            let status = if cell.kind == CellKind::Code {
                CellStatus::NotRun
            } else {
                CellStatus::Ok
            };
            reports.push(CellReport {
                cell,
                outputs: Vec::new(),
                status,
                seconds: 0.0,
            });
            continue;
        }
        code_index += 1;
        let title = cell.title.clone().unwrap_or_default();
        eprintln!("[{code_index}/{code_total}] {title}");
        let report = run_cell(session, file, index + 1, cell);
        failed = matches!(report.status, CellStatus::Failed { .. });
        if let CellStatus::Failed { error } = &report.status {
            eprintln!("  failed: {error}");
        }
        reports.push(report);
    }
    Report {
        title: title_of(file),
        source_path: file.display().to_string(),
        cells: reports,
    }
}

fn run_cell(session: &mut Session, file: &Path, number: usize, cell: Cell) -> CellReport {
    interrupt::clear();
    let started = Instant::now();
    let (result, captured) = session.eval_captured(&cell.source, None);
    let mut outputs = outputs_of(captured);
    let status = match result {
        Ok(value) => {
            if !value.is_unit() {
                outputs.push(Output::Value(format_value(&value)));
            }
            CellStatus::Ok
        }
        Err(err) => CellStatus::Failed {
            error: located_error(file, number, &cell, &err),
        },
    };
    CellReport {
        cell,
        outputs,
        status,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// `FILE:LINE:COL: message` with the line counted in the notebook file; in
/// an `.ipynb`, whose cells count their own lines, `FILE cell N:LINE:COL`.
fn located_error(
    file: &Path,
    cell_number: usize,
    cell: &Cell,
    err: &rhai::EvalAltResult,
) -> String {
    let place = if is_ipynb(file) {
        PathBuf::from(format!("{} cell {cell_number}", file.display()))
    } else {
        file.to_path_buf()
    };
    located_message(err, Some(&place), cell.first_line)
}

/// What a cell showed, in order; `clear_output()` drops what came before it.
fn outputs_of(captured: Vec<Captured>) -> Vec<Output> {
    let mut outputs = Vec::new();
    for item in captured {
        match item {
            Captured::Text(text) | Captured::Stderr(text) => outputs.push(Output::Text(text)),
            Captured::Table { columns, rows } => outputs.push(Output::Table { columns, rows }),
            Captured::Image(path) => outputs.push(Output::Image(path)),
            Captured::Clear => outputs.clear(),
        }
    }
    outputs
}

fn title_of(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().replace(['_', '-'], " "))
        .unwrap_or_else(|| "notebook".into())
}

/// Writes the HTML report and the Markdown version beside it; returns the Markdown path.
fn write_report(report: &Report, html_path: &Path) -> Result<PathBuf, String> {
    let html = render::render_html(report).map_err(|e| e.to_string())?;
    if let Some(parent) = html_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(html_path, html)
        .map_err(|e| format!("cannot write {}: {e}", html_path.display()))?;
    let md_path = html_path.with_extension("md");
    render::write_markdown(report, &md_path).map_err(|e| e.to_string())?;
    Ok(md_path)
}
