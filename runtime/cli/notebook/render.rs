//! Rendering an executed notebook as a report.
//!
//! Two forms: one self-contained HTML file (styles inline, figures inlined
//! as `data:` URIs, no scripts, nothing fetched from the network), so a
//! report can be mailed or archived as a single file; and Markdown with the
//! figures copied into a folder beside it, for reading on a code host.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::prelude::*;

use super::cells::{Cell, CellKind};

mod highlight;
mod html;
mod markdown;

pub use html::render_html;
pub use markdown::write_markdown;

/// One thing a cell produced, in the order it produced them.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Captured `print`/`debug` output.
    Text(String),
    /// The cell's final value, already rendered as text.
    Value(String),
    /// A table of already-formatted cells.
    Table {
        /// Column headers.
        columns: Vec<String>,
        /// Rows, each with one entry per column.
        rows: Vec<Vec<String>>,
    },
    /// A PNG or SVG (or JPEG, GIF, WebP) file the cell saved.
    Image(PathBuf),
}

/// How running a cell went.
#[derive(Debug, Clone, PartialEq)]
pub enum CellStatus {
    /// Ran to the end.
    Ok,
    /// Stopped with an error; the notebook stops here.
    Failed {
        /// The error as the user should read it.
        error: String,
    },
    /// Not run because an earlier cell failed.
    NotRun,
}

/// A cell together with what running it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CellReport {
    /// The cell as split from the notebook.
    pub cell: Cell,
    /// What it produced, in order.
    pub outputs: Vec<Output>,
    /// How it went.
    pub status: CellStatus,
    /// Wall-clock run time.
    pub seconds: f64,
}

/// An executed notebook, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Shown as the page title and top heading.
    pub title: String,
    /// The notebook file, as the user named it; Markdown cells' relative
    /// image links are resolved against its folder.
    pub source_path: String,
    /// Every cell in notebook order; cell `N` in the report is `cells[N - 1]`.
    pub cells: Vec<CellReport>,
}

/// Why a report could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A cell named an image file that is not there.
    #[error("cell {cell} saved the image `{}`, but that file does not exist", path.display())]
    MissingImage {
        /// 1-based cell number.
        cell: usize,
        /// The image path as the cell reported it.
        path: PathBuf,
    },
    /// An image file exists but could not be read.
    #[error("cell {cell}: cannot read the image `{}`", path.display())]
    ReadImage {
        /// 1-based cell number.
        cell: usize,
        /// The image path as the cell reported it.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// An image whose extension names no format a browser shows inline.
    #[error(
        "cell {cell}: `{}` is not a PNG, SVG, JPEG, GIF or WebP image (judged by its extension)",
        path.display()
    )]
    UnsupportedImage {
        /// 1-based cell number.
        cell: usize,
        /// The image path as the cell reported it.
        path: PathBuf,
    },
    /// The report or one of its figures could not be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The file or folder being written.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The Markdown path has no file name to derive the figures folder from.
    #[error("`{}` is not a file path a Markdown report can be written to", path.display())]
    BadMarkdownPath {
        /// The path given.
        path: PathBuf,
    },
}

// What the HTML and Markdown forms share.

/// Counts for the report header. Only code cells count: Markdown cells are
/// never run, so "ran OK" would flatter the notebook.
struct Summary {
    total: usize,
    code: usize,
    ok: usize,
    failed: usize,
    not_run: usize,
    seconds: f64,
    /// 1-based number of the first failed cell.
    first_failure: Option<usize>,
}

impl Summary {
    fn of(report: &Report) -> Self {
        let mut summary = Summary {
            total: report.cells.len(),
            code: 0,
            ok: 0,
            failed: 0,
            not_run: 0,
            seconds: 0.0,
            first_failure: None,
        };
        for (number, cell) in numbered_code_cells(report) {
            summary.code += 1;
            summary.seconds += cell.seconds;
            match cell.status {
                CellStatus::Ok => summary.ok += 1,
                CellStatus::NotRun => summary.not_run += 1,
                CellStatus::Failed { .. } => {
                    summary.failed += 1;
                    summary.first_failure.get_or_insert(number);
                }
            }
        }
        summary
    }
}

/// Code cells with their 1-based cell numbers (counting all cells).
fn numbered_code_cells(report: &Report) -> impl Iterator<Item = (usize, &CellReport)> {
    (1..)
        .zip(&report.cells)
        .filter(|(_, cell)| cell.cell.kind == CellKind::Code)
}

/// The title for a cell in lists: its own title, else its first line of
/// code, so untitled cells are still recognisable.
fn cell_label(cell: &Cell) -> String {
    if let Some(title) = &cell.title {
        return title.clone();
    }
    let line = cell
        .source
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("//"))
        .or_else(|| cell.source.lines().next())
        .unwrap_or("");
    truncate(line, 60)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Human-scale durations: milliseconds for quick cells, minutes for long ones.
fn format_seconds(seconds: f64) -> String {
    if seconds < 0.0005 {
        "<1 ms".to_string()
    } else if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else if seconds < 60.0 {
        format!("{seconds:.2} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// The MIME type for an image file, judged by its extension.
fn image_mime(path: &Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "png" => Some("image/png"),
        "svg" => Some("image/svg+xml"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// Checks an image a cell reported and reads it, with errors naming the cell.
fn read_image(cell: usize, path: &Path) -> Result<(&'static str, Vec<u8>), RenderError> {
    let path_buf = || path.to_path_buf();
    let mime = image_mime(path).ok_or_else(|| RenderError::UnsupportedImage {
        cell,
        path: path_buf(),
    })?;
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => RenderError::MissingImage {
            cell,
            path: path_buf(),
        },
        _ => RenderError::ReadImage {
            cell,
            path: path_buf(),
            source,
        },
    })?;
    Ok((mime, bytes))
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", BASE64_STANDARD.encode(bytes))
}

/// Whether every non-blank entry in a column reads as a number, so it can
/// be right-aligned like numbers in a printed table.
fn is_numeric_column(rows: &[Vec<String>], column: usize) -> bool {
    let mut entries = rows
        .iter()
        .filter_map(|row| row.get(column))
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .peekable();
    entries.peek().is_some() && entries.all(|entry| entry.parse::<f64>().is_ok())
}

/// What the failure banner adds after naming the failed cell.
fn later_cells_note(summary: &Summary) -> &'static str {
    if summary.not_run > 0 {
        "; later cells were not run."
    } else {
        "."
    }
}

/// Headers padded so that every row's entries have one (the executor may
/// hand over a table with no or too few column names).
fn padded_columns(columns: &[String], rows: &[Vec<String>]) -> Vec<String> {
    let width = rows.iter().map(Vec::len).fold(columns.len(), usize::max);
    let mut padded = columns.to_vec();
    padded.resize(width, String::new());
    padded
}

/// The report title, falling back to the notebook path when none is set.
fn display_title(report: &Report) -> String {
    if report.title.trim().is_empty() {
        report.source_path.clone()
    } else {
        report.title.clone()
    }
}

/// A small executed notebook with real figures, shared by the HTML and
/// Markdown tests.
#[cfg(test)]
mod fixtures {
    use std::fs;
    use std::io;
    use std::path::Path;

    use base64::prelude::*;

    use super::super::cells::split_cells;
    use super::{CellReport, CellStatus, Output, Report};

    /// A real 2×2 RGB PNG, so decoding the inlined copy proves it survived.
    pub(super) fn write_png(path: &Path) {
        let file = fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(io::BufWriter::new(file), 2, 2);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&[255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
            .unwrap();
    }

    pub(super) const SVG: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>"#;

    const NOTEBOOK: &str = "\
// %% [markdown]
// # Loss curves
// A table of **results**:
//
// | k | loss |
// |---|------|
// | 8 | 0.5  |
// %% Train the SAE
let loss = train();
print(loss);
// %% Plot
plot(loss)
// %% Summary
summary()
";

    pub(super) fn report(dir: &Path, failed: bool) -> Report {
        let png_path = dir.join("loss.png");
        let svg_path = dir.join("curve.svg");
        write_png(&png_path);
        fs::write(&svg_path, SVG).unwrap();
        let cells = split_cells(NOTEBOOK);
        let outputs = vec![
            vec![],
            vec![
                Output::Text("loss = 0.125 <ok>".into()),
                Output::Value("0.125".into()),
            ],
            vec![Output::Image(png_path), Output::Image(svg_path)],
            vec![Output::Table {
                columns: vec!["k".into(), "loss|mse".into()],
                rows: vec![
                    vec!["8".into(), "0.5".into()],
                    vec!["16".into(), "0.25".into()],
                ],
            }],
        ];
        let statuses = if failed {
            vec![
                CellStatus::Ok,
                CellStatus::Ok,
                CellStatus::Failed {
                    error: "plot: no such series `loss` <x>".into(),
                },
                CellStatus::NotRun,
            ]
        } else {
            vec![CellStatus::Ok; 4]
        };
        Report {
            title: "SAE sweep".into(),
            source_path: "notebooks/sweep.rhai".into(),
            cells: cells
                .into_iter()
                .zip(outputs)
                .zip(statuses)
                .map(|((cell, outputs), status)| CellReport {
                    cell,
                    outputs,
                    status,
                    seconds: 0.25,
                })
                .collect(),
        }
    }

    /// Every `src="data:..."` payload in the page, decoded.
    pub(super) fn inlined_images(html: &str) -> Vec<(String, Vec<u8>)> {
        html.split("src=\"data:")
            .skip(1)
            .map(|rest| {
                let uri = &rest[..rest.find('"').unwrap()];
                let (mime, payload) = uri.split_once(";base64,").unwrap();
                (mime.to_string(), BASE64_STANDARD.decode(payload).unwrap())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::report;
    use super::*;
    #[test]
    fn a_missing_image_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = report(dir.path(), false);
        fs::remove_file(dir.path().join("curve.svg")).unwrap();
        let error = render_html(&report).unwrap_err();
        assert!(matches!(error, RenderError::MissingImage { cell: 3, .. }));
        assert!(error.to_string().contains("curve.svg"), "{error}");
        let md_error = write_markdown(&report, &dir.path().join("r.md")).unwrap_err();
        assert!(md_error.to_string().contains("curve.svg"), "{md_error}");
        report.cells[2].outputs = vec![Output::Image(dir.path().join("data.csv"))];
        let error = render_html(&report).unwrap_err();
        assert!(
            matches!(error, RenderError::UnsupportedImage { .. }),
            "{error}"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_seconds(0.0), "<1 ms");
        assert_eq!(format_seconds(0.0423), "42 ms");
        assert_eq!(format_seconds(2.5), "2.50 s");
        assert_eq!(format_seconds(125.4), "2 min 05 s");
    }
}
