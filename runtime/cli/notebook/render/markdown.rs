//! The Markdown report, with figures copied into a folder beside it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::super::cells::CellKind;
use super::{
    cell_label, display_title, format_seconds, is_numeric_column, later_cells_note,
    numbered_code_cells, padded_columns, read_image, CellReport, CellStatus, Output, RenderError,
    Report, Summary,
};

/// Writes the report as Markdown to `md_path`, copying figures into a folder
/// beside it named after the file (`report.md` → `report_files/`) and
/// linking them relatively, so the pair can be moved together.
pub fn write_markdown(report: &Report, md_path: &Path) -> Result<(), RenderError> {
    let mut figures = FigureFolder::beside(md_path)?;
    let mut markdown = markdown_header(report, &Summary::of(report));
    for (number, cell) in (1..).zip(&report.cells) {
        markdown.push_str(&cell_markdown(number, cell, &mut figures)?);
    }
    fs::write(md_path, markdown).map_err(|source| RenderError::Write {
        path: md_path.to_path_buf(),
        source,
    })
}

/// The folder figures are copied into, created on first use so a report
/// without figures leaves no empty folder behind.
struct FigureFolder {
    dir: PathBuf,
    /// Folder name as written in links (relative to the Markdown file).
    link_prefix: String,
    used_names: HashSet<String>,
}

impl FigureFolder {
    fn beside(md_path: &Path) -> Result<Self, RenderError> {
        let stem = md_path
            .file_stem()
            .filter(|stem| !stem.is_empty())
            .ok_or_else(|| RenderError::BadMarkdownPath {
                path: md_path.to_path_buf(),
            })?;
        let link_prefix = format!("{}_files", stem.to_string_lossy());
        Ok(FigureFolder {
            dir: md_path.with_file_name(&link_prefix),
            link_prefix,
            used_names: HashSet::new(),
        })
    }

    /// Copies one figure and returns its relative link.
    fn copy(&mut self, cell: usize, path: &Path) -> Result<String, RenderError> {
        let (_, bytes) = read_image(cell, path)?;
        let name = self.unique_name(path);
        let write_error = |path: PathBuf| move |source| RenderError::Write { path, source };
        fs::create_dir_all(&self.dir).map_err(write_error(self.dir.clone()))?;
        let target = self.dir.join(&name);
        fs::write(&target, bytes).map_err(write_error(target.clone()))?;
        Ok(format!("{}/{name}", self.link_prefix))
    }

    /// The figure's own file name, suffixed `-2`, `-3`, … when two cells
    /// saved figures with the same name in different folders.
    fn unique_name(&mut self, path: &Path) -> String {
        let stem = path
            .file_stem()
            .map_or("figure".into(), |s| s.to_string_lossy());
        let extension = path.extension().map_or("".into(), |e| e.to_string_lossy());
        let mut name = format!("{stem}.{extension}");
        let mut counter = 2;
        while !self.used_names.insert(name.clone()) {
            name = format!("{stem}-{counter}.{extension}");
            counter += 1;
        }
        name
    }
}

fn markdown_header(report: &Report, summary: &Summary) -> String {
    let mut header = format!(
        "# {}\n\nSource: {} · {} cells ({} code) · {} ran OK",
        display_title(report),
        inline_code(&report.source_path),
        summary.total,
        summary.code,
        summary.ok
    );
    if summary.failed > 0 {
        header.push_str(&format!(" · **{} failed**", summary.failed));
    }
    if summary.not_run > 0 {
        header.push_str(&format!(" · {} not run", summary.not_run));
    }
    header.push_str(&format!(" · {} total\n\n", format_seconds(summary.seconds)));
    if let Some(number) = summary.first_failure {
        let label = cell_label(&report.cells[number - 1].cell);
        header.push_str(&format!(
            "> **Cell {number} failed** ({}){}\n\n",
            escape_table_entry(&label),
            later_cells_note(summary)
        ));
    }
    header.push_str(&timings_markdown(report));
    header.push_str("---\n\n");
    header
}

fn timings_markdown(report: &Report) -> String {
    let rows: String = numbered_code_cells(report)
        .map(|(number, cell)| {
            let (status, time) = match cell.status {
                CellStatus::Ok => ("ok", format_seconds(cell.seconds)),
                CellStatus::Failed { .. } => ("**failed**", format_seconds(cell.seconds)),
                CellStatus::NotRun => ("not run", "—".to_string()),
            };
            let label = escape_table_entry(&cell_label(&cell.cell));
            format!("| {number} | {label} | {status} | {time} |\n")
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!("| Cell | Title | Status | Time |\n|---:|---|---|---:|\n{rows}\n")
}

fn cell_markdown(
    number: usize,
    report: &CellReport,
    figures: &mut FigureFolder,
) -> Result<String, RenderError> {
    if report.cell.kind == CellKind::Markdown {
        return Ok(format!("{}\n\n", report.cell.source));
    }
    let title = report
        .cell
        .title
        .as_deref()
        .map(|title| format!(" · {title}"))
        .unwrap_or_default();
    let status = match report.status {
        CellStatus::Ok => format_seconds(report.seconds),
        CellStatus::Failed { .. } => format!("failed after {}", format_seconds(report.seconds)),
        CellStatus::NotRun => "*not run*".to_string(),
    };
    let mut markdown = format!(
        "**[{number}]{title}** — {status}\n\n{}",
        fenced(&report.cell.source, "rhai")
    );
    for output in &report.outputs {
        markdown.push_str(&output_markdown(number, output, figures)?);
    }
    if let CellStatus::Failed { error } = &report.status {
        markdown.push_str(&format!(
            "**⚠ Cell {number} failed{title}**\n\n{}",
            fenced(error, "text")
        ));
    }
    Ok(markdown)
}

fn output_markdown(
    number: usize,
    output: &Output,
    figures: &mut FigureFolder,
) -> Result<String, RenderError> {
    Ok(match output {
        Output::Text(text) => fenced(text, "text"),
        Output::Value(value) => fenced(value, "text"),
        Output::Table { columns, rows } => table_markdown(columns, rows),
        Output::Image(path) => format!(
            "![]({})\n\n",
            link_destination(&figures.copy(number, path)?)
        ),
    })
}

/// A fenced block whose fence is longer than any backtick run inside, so
/// output containing ``` cannot close it early.
fn fenced(text: &str, info: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(text).max(2) + 1);
    let text = text.trim_end_matches('\n');
    format!("{fence}{info}\n{text}\n{fence}\n\n")
}

fn inline_code(text: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

fn table_markdown(columns: &[String], rows: &[Vec<String>]) -> String {
    let columns = padded_columns(columns, rows);
    let line = |entries: Vec<String>| format!("| {} |\n", entries.join(" | "));
    let mut table = line(columns.iter().map(|c| escape_table_entry(c)).collect());
    let rule = (0..columns.len()).map(|column| {
        if is_numeric_column(rows, column) {
            "---:"
        } else {
            "---"
        }
    });
    table.push_str(&format!("|{}|\n", rule.collect::<Vec<_>>().join("|")));
    for row in rows {
        let entries = (0..columns.len())
            .map(|column| escape_table_entry(row.get(column).map_or("", String::as_str)));
        table.push_str(&line(entries.collect()));
    }
    table.push('\n');
    table
}

/// Table entries are data, not Markdown: they stay on one line, cannot end
/// their cell early, and show `<chosen>` or `a*b*c` literally.
fn escape_table_entry(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => escaped.push(' '),
            '\\' | '|' | '<' | '*' | '_' | '`' | '[' | ']' => {
                escaped.push('\\');
                escaped.push(c);
            }
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Wraps a link in `<…>` when it holds spaces or parentheses, which
/// would otherwise end a CommonMark link destination.
fn link_destination(link: &str) -> String {
    if link.contains([' ', '(', ')']) {
        format!("<{link}>")
    } else {
        link.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{report, write_png};
    use super::*;
    #[test]
    fn markdown_copies_images_beside_it_and_links_them_relatively() {
        let dir = tempfile::tempdir().unwrap();
        let md_path = dir.path().join("out").join("report.md");
        fs::create_dir_all(md_path.parent().unwrap()).unwrap();
        let report = report(dir.path(), true);
        write_markdown(&report, &md_path).unwrap();
        let markdown = fs::read_to_string(&md_path).unwrap();
        let figures = dir.path().join("out/report_files");
        assert_eq!(
            fs::read(figures.join("loss.png")).unwrap(),
            fs::read(dir.path().join("loss.png")).unwrap()
        );
        assert!(figures.join("curve.svg").is_file());
        assert!(markdown.contains("![](report_files/loss.png)"));
        assert!(markdown.contains("![](report_files/curve.svg)"));
        assert!(markdown.contains("```rhai\nlet loss = train();\nprint(loss);\n```"));
        assert!(markdown.contains("```text\nloss = 0.125 <ok>\n```"));
        assert!(markdown.contains("| k | loss\\|mse |\n|---:|---:|\n| 8 | 0.5 |"));
        assert!(markdown.contains("# Loss curves"));
        assert!(markdown.contains("**⚠ Cell 3 failed · Plot**"));
        assert!(markdown.contains("*not run*"));
    }

    #[test]
    fn markdown_without_images_leaves_no_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = report(dir.path(), false);
        report.cells[2].outputs.clear();
        write_markdown(&report, &dir.path().join("plain.md")).unwrap();
        assert!(!dir.path().join("plain_files").exists());
    }

    #[test]
    fn figures_with_the_same_name_do_not_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = report(dir.path(), false);
        fs::create_dir(dir.path().join("other")).unwrap();
        write_png(&dir.path().join("other/loss.png"));
        report.cells[2].outputs = vec![
            Output::Image(dir.path().join("loss.png")),
            Output::Image(dir.path().join("other/loss.png")),
        ];
        write_markdown(&report, &dir.path().join("r.md")).unwrap();
        let markdown = fs::read_to_string(dir.path().join("r.md")).unwrap();
        assert!(markdown.contains("r_files/loss.png)") && markdown.contains("r_files/loss-2.png)"));
    }

    #[test]
    fn table_entries_are_shown_literally() {
        assert_eq!(escape_table_entry("<a>|*b*\nc_d"), "\\<a>\\|\\*b\\* c\\_d");
    }

    #[test]
    fn fences_outgrow_backticks_in_the_content() {
        assert_eq!(fenced("a ``` b", "text"), "````text\na ``` b\n````\n\n");
        assert_eq!(inline_code("a`b"), "``a`b``");
    }
}
