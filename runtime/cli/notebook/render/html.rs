//! The self-contained HTML report.

use std::fs;
use std::path::{Path, PathBuf};

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

use super::super::cells::{Cell, CellKind};
use super::highlight::highlight_rhai;
use super::{
    cell_label, data_uri, display_title, format_seconds, image_mime, is_numeric_column,
    later_cells_note, numbered_code_cells, padded_columns, read_image, CellReport, CellStatus,
    Output, RenderError, Report, Summary,
};

/// Light theme, system font stacks, nothing loaded from anywhere; kept as
/// CSS so it can be edited as CSS.
const STYLE: &str = include_str!("report.css");

/// Renders the report as one self-contained HTML page.
///
/// Figures are read and inlined as base64 `data:` URIs; a missing or
/// unreadable figure is an error naming the cell. Raw HTML inside Markdown
/// cells is shown as text, so a report never runs scripts or fetches
/// anything; remote images in Markdown become plain links.
pub fn render_html(report: &Report) -> Result<String, RenderError> {
    let summary = Summary::of(report);
    let base_dir = notebook_dir(&report.source_path);
    let mut cells_html = String::new();
    for (number, cell) in (1..).zip(&report.cells) {
        cells_html.push_str(&cell_html(number, cell, &base_dir)?);
    }
    let title = escape_html(&display_title(report));
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         {header}{cells_html}<footer>Rendered by saelab from <code>{source}</code>.</footer>\n\
         </main>\n</body>\n</html>\n",
        header = header_html(report, &summary),
        source = escape_html(&report.source_path),
    ))
}

fn notebook_dir(source_path: &str) -> PathBuf {
    Path::new(source_path)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape_html(text: &str) -> String {
    saelab::core::dashboard::html::escape(text)
}

fn header_html(report: &Report, summary: &Summary) -> String {
    format!(
        "<header class=\"report-header\">\n<p class=\"eyebrow\">Notebook report</p>\n\
         <h1>{title}</h1>\n<p class=\"meta\">Source <code>{source}</code></p>\n\
         {chips}{banner}{timings}</header>\n",
        title = escape_html(&display_title(report)),
        source = escape_html(&report.source_path),
        chips = summary_chips_html(summary),
        banner = failure_banner_html(report, summary),
        timings = timings_html(report),
    )
}

fn summary_chips_html(summary: &Summary) -> String {
    let mut chips = vec![format!(
        "<li class=\"chip\">{} cells · {} code</li>",
        summary.total, summary.code
    )];
    chips.push(format!(
        "<li class=\"chip ok\">✓ {} ran OK</li>",
        summary.ok
    ));
    if summary.failed > 0 {
        chips.push(format!(
            "<li class=\"chip fail\">✗ {} failed</li>",
            summary.failed
        ));
    }
    if summary.not_run > 0 {
        chips.push(format!(
            "<li class=\"chip skip\">{} not run</li>",
            summary.not_run
        ));
    }
    chips.push(format!(
        "<li class=\"chip\">{} total</li>",
        format_seconds(summary.seconds)
    ));
    format!("<ul class=\"chips\">{}</ul>\n", chips.concat())
}

fn failure_banner_html(report: &Report, summary: &Summary) -> String {
    let Some(number) = summary.first_failure else {
        return String::new();
    };
    let cell = &report.cells[number - 1].cell;
    format!(
        "<a class=\"banner\" href=\"#cell-{number}\">Cell {number} failed: {label} \
         <span class=\"banner-line\">(line {line})</span>{note}</a>\n",
        label = escape_html(&cell_label(cell)),
        line = cell.first_line,
        note = later_cells_note(summary),
    )
}

/// A table of code-cell run times with bars scaled to the slowest cell, so
/// the expensive steps stand out at a glance.
fn timings_html(report: &Report) -> String {
    let slowest = numbered_code_cells(report)
        .map(|(_, cell)| cell.seconds)
        .fold(0.0_f64, f64::max);
    let rows: String = numbered_code_cells(report)
        .map(|(number, cell)| timing_row_html(number, cell, slowest))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<details class=\"timings\" open>\n<summary>Run times</summary>\n\
         <table class=\"timing\">\n<thead><tr><th class=\"num\">Cell</th><th>Title</th>\
         <th>Status</th><th class=\"num\">Time</th><th class=\"bar-col\"></th></tr></thead>\n\
         <tbody>\n{rows}</tbody>\n</table>\n</details>\n"
    )
}

fn timing_row_html(number: usize, cell: &CellReport, slowest: f64) -> String {
    let time = format_seconds(cell.seconds);
    let (status, time) = match cell.status {
        CellStatus::Ok => ("<span class=\"ok-text\">ok</span>", time),
        CellStatus::Failed { .. } => ("<span class=\"badge fail\">failed</span>", time),
        CellStatus::NotRun => ("<span class=\"badge skip\">not run</span>", "—".into()),
    };
    let bar = match cell.status {
        CellStatus::NotRun => String::new(),
        _ => {
            let percent = (cell.seconds / slowest.max(f64::MIN_POSITIVE) * 100.0).clamp(0.0, 100.0);
            format!("<span class=\"bar\" style=\"width:{percent:.1}%\"></span>")
        }
    };
    format!(
        "<tr><td class=\"num\"><a href=\"#cell-{number}\">{number}</a></td><td>{label}</td>\
         <td>{status}</td><td class=\"num\">{time}</td><td class=\"bar-col\">{bar}</td></tr>\n",
        label = escape_html(&cell_label(&cell.cell)),
    )
}

fn cell_html(number: usize, report: &CellReport, base_dir: &Path) -> Result<String, RenderError> {
    match report.cell.kind {
        CellKind::Markdown => Ok(format!(
            "<section class=\"cell markdown\" id=\"cell-{number}\">\n<div class=\"prose\">\n{}</div>\n</section>\n",
            markdown_html(&report.cell.source, base_dir)
        )),
        CellKind::Code => code_cell_html(number, report),
    }
}

fn code_cell_html(number: usize, report: &CellReport) -> Result<String, RenderError> {
    let mut outputs = String::new();
    for output in &report.outputs {
        outputs.push_str(&output_html(number, output)?);
    }
    let (class, badge, time) = match &report.status {
        CellStatus::Ok => ("ok", String::new(), format_seconds(report.seconds)),
        CellStatus::Failed { error } => {
            outputs.push_str(&error_html(number, &report.cell, error));
            (
                "failed",
                "<span class=\"badge fail\">failed</span>".to_string(),
                format_seconds(report.seconds),
            )
        }
        CellStatus::NotRun => (
            "not-run",
            "<span class=\"badge skip\">not run</span>".to_string(),
            String::new(),
        ),
    };
    let title = report
        .cell
        .title
        .as_deref()
        .map(|title| format!("<span class=\"cell-title\">{}</span>", escape_html(title)))
        .unwrap_or_default();
    Ok(format!(
        "<section class=\"cell code {class}\" id=\"cell-{number}\">\n\
         <div class=\"cell-head\"><span class=\"cell-no\">[{number}]</span>{title}{badge}\
         <span class=\"cell-line\">line {line}</span><span class=\"cell-time\">{time}</span></div>\n\
         <pre class=\"source\"><code>{source}</code></pre>\n{outputs}</section>\n",
        line = report.cell.first_line,
        source = highlight_rhai(&report.cell.source),
    ))
}

fn error_html(number: usize, cell: &Cell, error: &str) -> String {
    let title = cell
        .title
        .as_deref()
        .map(|title| format!(": {}", escape_html(title)))
        .unwrap_or_default();
    format!(
        "<div class=\"error\" role=\"alert\">\n<p class=\"error-title\">Cell {number} failed{title}</p>\n\
         <pre>{}</pre>\n</div>\n",
        escape_html(error)
    )
}

fn output_html(number: usize, output: &Output) -> Result<String, RenderError> {
    Ok(match output {
        Output::Text(text) => format!("<pre class=\"output stdout\">{}</pre>\n", escape_html(text)),
        Output::Value(value) => format!(
            "<div class=\"output value\"><span class=\"out-label\">Out</span><pre>{}</pre></div>\n",
            escape_html(value)
        ),
        Output::Table { columns, rows } => table_html(columns, rows),
        Output::Image(path) => image_html(number, path)?,
    })
}

fn table_html(columns: &[String], rows: &[Vec<String>]) -> String {
    let columns = padded_columns(columns, rows);
    let numeric: Vec<bool> = (0..columns.len())
        .map(|column| is_numeric_column(rows, column))
        .collect();
    let class = |column: usize| {
        if numeric[column] {
            " class=\"num\""
        } else {
            ""
        }
    };
    let head: String = (0..columns.len())
        .map(|column| {
            format!(
                "<th{}>{}</th>",
                class(column),
                escape_html(&columns[column])
            )
        })
        .collect();
    let body: String = rows
        .iter()
        .map(|row| {
            let entries: String = (0..columns.len())
                .map(|column| {
                    let entry = row.get(column).map_or("", String::as_str);
                    format!("<td{}>{}</td>", class(column), escape_html(entry))
                })
                .collect();
            format!("<tr>{entries}</tr>\n")
        })
        .collect();
    format!(
        "<div class=\"output table-wrap\">\n<table class=\"data\">\n<thead><tr>{head}</tr></thead>\n\
         <tbody>\n{body}</tbody>\n</table>\n<p class=\"table-note\">{} rows × {} columns</p>\n</div>\n",
        rows.len(),
        columns.len()
    )
}

fn image_html(number: usize, path: &Path) -> Result<String, RenderError> {
    let (mime, bytes) = read_image(number, path)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(format!(
        "<figure class=\"output\"><img src=\"{}\" alt=\"{name}\"><figcaption>{name}</figcaption></figure>\n",
        data_uri(mime, &bytes),
        name = escape_html(&name),
    ))
}

/// Renders a Markdown cell with GitHub-style extensions.
fn markdown_html(source: &str, base_dir: &Path) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let events = self_contained(Parser::new_ext(source, options).collect(), base_dir);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html
}

/// Rewrites Markdown events so the page stays self-contained and inert:
/// raw HTML is shown as code, local images are inlined, and images that
/// would be fetched (remote or unreadable) become links.
fn self_contained<'a>(events: Vec<Event<'a>>, base_dir: &Path) -> Vec<Event<'a>> {
    // Images can nest in alt text, so remember for each open image whether
    // its end must become a link end.
    let mut image_became_link = Vec::new();
    events
        .into_iter()
        .map(|event| match event {
            Event::Start(Tag::HtmlBlock) => {
                Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced("html".into())))
            }
            Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::CodeBlock),
            Event::Html(raw) => Event::Text(raw),
            Event::InlineHtml(raw) => Event::Code(raw),
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => match inline_local_image(&dest_url, base_dir) {
                Some(uri) => {
                    image_became_link.push(false);
                    Event::Start(Tag::Image {
                        link_type,
                        dest_url: uri.into(),
                        title,
                        id,
                    })
                }
                None => {
                    image_became_link.push(true);
                    Event::Start(Tag::Link {
                        link_type,
                        dest_url: inert_link(dest_url),
                        title,
                        id,
                    })
                }
            },
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Link {
                link_type,
                dest_url: inert_link(dest_url),
                title,
                id,
            }),
            Event::End(TagEnd::Image) if image_became_link.pop() == Some(true) => {
                Event::End(TagEnd::Link)
            }
            other => other,
        })
        .collect()
}

/// Links keep their destination only when following it cannot run code
/// in the page: relative paths, fragments and http(s)/mailto URLs.
/// `javascript:`, `vbscript:`, `data:` and any other scheme become an
/// empty link (the text stays, shown as a link to nowhere).
fn inert_link(dest_url: CowStr) -> CowStr {
    // Browsers ignore ASCII whitespace and control characters inside a
    // scheme (`java\tscript:`), so the check does too.
    let scheme: String = dest_url
        .chars()
        .take_while(|&c| !matches!(c, ':' | '/' | '?' | '#'))
        .filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control())
        .collect::<String>()
        .to_ascii_lowercase();
    let has_scheme = dest_url
        .chars()
        .find(|&c| matches!(c, ':' | '/' | '?' | '#'))
        == Some(':');
    if !has_scheme || matches!(scheme.as_str(), "http" | "https" | "mailto") {
        dest_url
    } else {
        CowStr::Borrowed("")
    }
}

/// A `data:` URI for a Markdown image that names a readable local file.
fn inline_local_image(dest_url: &CowStr, base_dir: &Path) -> Option<String> {
    if dest_url.starts_with("data:") {
        return Some(dest_url.to_string());
    }
    if dest_url.contains("://") || dest_url.starts_with("//") {
        return None;
    }
    let path = base_dir.join(dest_url.as_ref());
    let mime = image_mime(&path)?;
    let bytes = fs::read(&path).ok()?;
    Some(data_uri(mime, &bytes))
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::super::fixtures::{inlined_images, report, write_png, SVG};
    use super::*;
    #[test]
    fn html_contains_every_cell_and_output_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let html = render_html(&report(dir.path(), false)).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<h1>SAE sweep</h1>"));
        assert!(html.contains("notebooks/sweep.rhai"));
        assert!(html.contains("<h1>Loss curves</h1>"), "markdown heading");
        assert!(html.contains("<strong>results</strong>"));
        assert!(html.contains("<td>0.5</td>") || html.contains("<td>0.5  </td>"));
        assert!(
            html.contains("loss = 0.125 &lt;ok&gt;"),
            "print output, escaped"
        );
        assert!(html.contains("<pre>0.125</pre>"), "final value");
        assert!(html.contains("<th class=\"num\">loss|mse</th>"));
        assert!(html.contains("<td class=\"num\">16</td>"));
        assert!(html.contains("<span class=\"cell-title\">Train the SAE</span>"));
        assert!(html.contains("4 cells · 3 code"));
        assert!(html.contains("3 ran OK"));
        assert!(!html.contains("failed</"), "no failure shown when all ran");
    }

    #[test]
    fn links_that_could_run_code_lose_their_destination() {
        let html = markdown_html(
            "[a](javascript:alert(1)) [b](JaVa\tScRiPt:x) <vbscript:x> [c](data:text/html,x) \
             [d](https://example.org) [e](notes.md#part) [f](#top) [g](mailto:a@b.c)",
            Path::new("."),
        );
        for gone in ["javascript", "JaVa", "vbscript", "data:"] {
            assert!(!html.contains(&format!("href=\"{gone}")), "{html}");
        }
        for kept in [
            "https://example.org",
            "notes.md#part",
            "#top",
            "mailto:a@b.c",
        ] {
            assert!(html.contains(&format!("href=\"{kept}\"")), "{html}");
        }
    }

    #[test]
    fn html_inlines_images_as_data_uris() {
        let dir = tempfile::tempdir().unwrap();
        let html = render_html(&report(dir.path(), false)).unwrap();
        let images = inlined_images(&html);
        assert_eq!(images.len(), 2);
        let (mime, png_bytes) = &images[0];
        assert_eq!(mime, "image/png");
        assert_eq!(png_bytes, &fs::read(dir.path().join("loss.png")).unwrap());
        let decoder = png::Decoder::new(io::Cursor::new(png_bytes.clone()));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), (2, 2));
        assert_eq!(
            images[1],
            ("image/svg+xml".to_string(), SVG.as_bytes().to_vec())
        );
    }

    #[test]
    fn html_references_nothing_on_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = report(dir.path(), false);
        report.cells[0].cell.source.push_str(concat!(
            "\n\n![remote](https://example.com/x.png)\n\n",
            "<script src=\"http://evil.example/x.js\"></script>\n\n",
            "Inline <img src=\"https://example.com/y.png\">.",
        ));
        let html = render_html(&report).unwrap();
        assert_eq!(network_resources(&html), Vec::<String>::new());
        // The checker itself must see a real fetch and ignore a plain link.
        let fetches = network_resources("<img src=\"https://x/y.png\"> <a href=\"http://z\">z</a>");
        assert_eq!(fetches, vec!["img src=\"https://x/y.png\"".to_string()]);
        assert!(!html.contains("<script"), "raw HTML is shown, not run");
        assert!(html.contains("&lt;script"));
        assert!(html.contains("<a href=\"https://example.com/x.png\">remote</a>"));
    }

    /// Tags that would make a browser fetch something: any `src`, and any
    /// `href` except on `<a>` (a link is followed only when clicked), plus
    /// CSS `url(`/`@import`. Escaped text never starts a tag, so splitting
    /// at `<` sees only real tags.
    fn network_resources(html: &str) -> Vec<String> {
        let is_remote = |value: &str| {
            let value = value.trim_start_matches(['"', '\'']);
            value.starts_with("http:") || value.starts_with("https:") || value.starts_with("//")
        };
        let mut found: Vec<String> = html
            .split('<')
            .skip(1)
            .filter_map(|rest| rest.split('>').next())
            .filter(|tag| {
                let fetched = |attribute: &str| tag.split(attribute).skip(1).any(is_remote);
                fetched(" src=") || (!tag.starts_with("a ") && fetched(" href="))
            })
            .map(str::to_string)
            .collect();
        found.extend(
            ["url(", "@import"]
                .iter()
                .filter(|css| html.contains(*css))
                .map(|css| css.to_string()),
        );
        found
    }

    #[test]
    fn markdown_cells_inline_local_images_relative_to_the_notebook() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("diagram.png"));
        let mut report = report(dir.path(), false);
        report.source_path = dir.path().join("sweep.rhai").display().to_string();
        report.cells[0].cell.source = "![diagram](diagram.png)".into();
        let html = render_html(&report).unwrap();
        assert_eq!(inlined_images(&html).len(), 3);
        assert!(html.contains("alt=\"diagram\""));
    }

    #[test]
    fn a_failed_cell_is_named_and_later_cells_are_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let html = render_html(&report(dir.path(), true)).unwrap();
        assert!(html.contains("Cell 3 failed: Plot"));
        assert!(html.contains("plot: no such series `loss` &lt;x&gt;"));
        assert!(html.contains("class=\"error\""));
        assert!(html.contains("<section class=\"cell code failed\" id=\"cell-3\">"));
        assert!(html.contains("<section class=\"cell code not-run\" id=\"cell-4\">"));
        assert!(html.contains("1 not run"));
        assert!(html.contains("1 failed"));
        assert!(
            html.contains("href=\"#cell-3\""),
            "header links to the failure"
        );
    }
}
