//! `saelab notebook FILE`: runs a percent-format notebook cell by cell in
//! one engine (state carries over), captures what each cell prints, tables
//! and saved figures, and writes an HTML report plus Markdown beside it.
pub mod cells;
pub mod render;

use crate::run::{apply_settings, session_for};
use cells::{split_cells, Cell, CellKind};
use render::{CellReport, CellStatus, Output, Report};
use saelab::core::interrupt;
use saelab::script::console::Captured;
use saelab::script::display::format_value;
use saelab::script::{describe_error, error_location, Session};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

pub fn run_notebook(file: &Path, output: Option<PathBuf>, settings: &[String]) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("saelab: cannot read {}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let mut session = session_for(file);
    if let Err(message) = apply_settings(session.scope_mut(), settings) {
        eprintln!("saelab: {message}");
        return ExitCode::from(2);
    }
    let report = execute(file, &text, &mut session);
    let html_path = output.unwrap_or_else(|| default_output(file));
    match write_report(&report, &html_path) {
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

/// NOTEBOOK.html in the current folder.
fn default_output(file: &Path) -> PathBuf {
    let stem = file.file_stem().unwrap_or_default();
    PathBuf::from(stem).with_extension("html")
}

/// Runs every cell in order in one session (variables, functions and
/// imports carry over); after a failure the rest are marked not run.
pub fn execute(file: &Path, text: &str, session: &mut Session) -> Report {
    let cells = split_cells(text);
    let code_total = cells.iter().filter(|c| c.kind == CellKind::Code).count();
    let mut failed = false;
    let mut code_index = 0;
    let mut reports = Vec::new();
    for cell in cells {
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
        let report = run_cell(session, file, cell);
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

fn run_cell(session: &mut Session, file: &Path, cell: Cell) -> CellReport {
    interrupt::clear();
    let started = Instant::now();
    let (result, captured) = session.eval_captured(&cell.source, None);
    let mut outputs: Vec<Output> = captured.into_iter().map(output_of).collect();
    let status = match result {
        Ok(value) => {
            if !value.is_unit() {
                outputs.push(Output::Value(format_value(&value)));
            }
            CellStatus::Ok
        }
        Err(err) => CellStatus::Failed {
            error: located_error(file, &cell, &err),
        },
    };
    CellReport {
        cell,
        outputs,
        status,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// `FILE:LINE:COL: message` with the line counted in the notebook file.
fn located_error(file: &Path, cell: &Cell, err: &rhai::EvalAltResult) -> String {
    let (message, position) = describe_error(err);
    format!(
        "{}{message}",
        error_location(Some(file), position, cell.first_line)
    )
}

fn output_of(captured: Captured) -> Output {
    match captured {
        Captured::Text(text) => Output::Text(text),
        Captured::Table { columns, rows } => Output::Table { columns, rows },
        Captured::Image(path) => Output::Image(path),
    }
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
