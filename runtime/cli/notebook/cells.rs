//! Splitting a notebook into cells.
//!
//! A notebook is a `.rhai` file in jupytext's percent format, so it stays a
//! plain Rhai script that `saelab run` can execute top to bottom:
//!
//! ```text
//! // %% [markdown]
//! // # Training a small SAE
//! // %% Load the activations
//! let acts = load("runs/acts");
//! ```
//!
//! A line `// %%` starts a code cell, optionally followed by a title; a line
//! `// %% [markdown]` (or `[md]`) starts a Markdown cell whose `//` comment
//! prefixes are stripped. Text before the first marker is a code cell.
//! Markers are recognised line by line, so a `// %%` line inside a block
//! comment or a multi-line string still starts a cell.

/// What a cell holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// Rhai source, to be executed.
    Code,
    /// Markdown prose, with the `//` comment prefixes already stripped.
    Markdown,
}

/// One cell of a notebook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Code or Markdown.
    pub kind: CellKind,
    /// The text after `// %%` (and after `[markdown]`), if any.
    pub title: Option<String>,
    /// The cell's text without its marker line and without leading or
    /// trailing blank lines. Lines inside are kept exactly, so line `k` of
    /// `source` (1-based) is line `first_line + k - 1` of the file.
    pub source: String,
    /// 1-based line in the file of the cell's first source line.
    pub first_line: usize,
}

/// Splits a percent-format notebook into its non-empty cells, in file order.
///
/// A file without any `// %%` marker is one code cell, so every plain Rhai
/// script is also a (one-cell) notebook.
pub fn split_cells(text: &str) -> Vec<Cell> {
    // A BOM would otherwise hide a marker on the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut cells = Vec::new();
    let mut current = PendingCell::leading();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        match parse_marker(line) {
            Some(marker) => {
                cells.extend(current.finish());
                current = PendingCell::after_marker(marker, line_number);
            }
            None => current.lines.push(line),
        }
    }
    cells.extend(current.finish());
    cells
}

/// What a marker line says about the cell it opens.
struct Marker {
    kind: CellKind,
    title: Option<String>,
}

/// A cell whose lines are still being collected.
struct PendingCell<'a> {
    kind: CellKind,
    title: Option<String>,
    /// 1-based file line of `lines[0]`.
    start_line: usize,
    lines: Vec<&'a str>,
}

impl<'a> PendingCell<'a> {
    /// The untitled code cell holding any text before the first marker.
    fn leading() -> Self {
        PendingCell {
            kind: CellKind::Code,
            title: None,
            start_line: 1,
            lines: Vec::new(),
        }
    }

    fn after_marker(marker: Marker, marker_line: usize) -> Self {
        PendingCell {
            kind: marker.kind,
            title: marker.title,
            start_line: marker_line + 1,
            lines: Vec::new(),
        }
    }

    /// The finished cell, or `None` if it holds nothing but blank lines.
    fn finish(self) -> Option<Cell> {
        let lines: Vec<&str> = match self.kind {
            CellKind::Code => self.lines,
            CellKind::Markdown => self.lines.into_iter().map(strip_comment).collect(),
        };
        let first = lines.iter().position(|line| !line.trim().is_empty())?;
        let last = lines.iter().rposition(|line| !line.trim().is_empty())?;
        Some(Cell {
            kind: self.kind,
            title: self.title,
            source: lines[first..=last].join("\n"),
            first_line: self.start_line + first,
        })
    }
}

/// Parses `// %%`, `// %% Title`, `// %% [markdown] Title`; `None` for any
/// other line. `// %%%` and `// %%x` are not markers, as in jupytext.
fn parse_marker(line: &str) -> Option<Marker> {
    let rest = line.trim_start().strip_prefix("//")?.trim_start();
    let rest = rest.strip_prefix("%%")?;
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    let rest = rest.trim();
    let (kind, title) = match rest.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((tag, title)) => (kind_from_tag(tag), title.trim()),
            None => (CellKind::Code, rest),
        },
        None => (CellKind::Code, rest),
    };
    let title = (!title.is_empty()).then(|| title.to_string());
    Some(Marker { kind, title })
}

/// Jupytext writes `[markdown]`; `[md]` is its short form. Other tags (such
/// as `[raw]`) hold commented-out text, which is harmless as code.
fn kind_from_tag(tag: &str) -> CellKind {
    match tag.trim() {
        "markdown" | "md" => CellKind::Markdown,
        _ => CellKind::Code,
    }
}

/// Strips the `// ` (or bare `//`) that keeps Markdown a Rhai comment.
/// Only one space goes, so indented Markdown (nested lists, code blocks)
/// keeps its meaning.
fn strip_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    match trimmed.strip_prefix("//") {
        Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(title: Option<&str>, source: &str, first_line: usize) -> Cell {
        Cell {
            kind: CellKind::Code,
            title: title.map(str::to_string),
            source: source.to_string(),
            first_line,
        }
    }

    #[test]
    fn titles_follow_the_marker() {
        let cells = split_cells("// %% Train the SAE\nlet x = 1;\n// %%\nlet y = 2;\n");
        assert_eq!(
            cells,
            vec![
                code(Some("Train the SAE"), "let x = 1;", 2),
                code(None, "let y = 2;", 4)
            ]
        );
    }

    #[test]
    fn markdown_cells_lose_their_comment_prefixes() {
        let text = "// %% [markdown] Intro\n// # Heading\n//\n// Some *prose*.\n//     indented code\n//no space\n";
        let cells = split_cells(text);
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].kind, CellKind::Markdown);
        assert_eq!(cells[0].title.as_deref(), Some("Intro"));
        assert_eq!(
            cells[0].source,
            "# Heading\n\nSome *prose*.\n    indented code\nno space"
        );
        assert_eq!(cells[0].first_line, 2);
    }

    #[test]
    fn md_tag_is_short_for_markdown() {
        let cells = split_cells("// %% [md]\n// hello\n");
        assert_eq!(cells[0].kind, CellKind::Markdown);
        assert_eq!(cells[0].title, None);
    }

    #[test]
    fn first_line_skips_leading_blank_lines() {
        let text = "// %%\n\n\n  let a = 1;\n\n  a\n\n// %% [markdown]\n//\n// text\n";
        let cells = split_cells(text);
        assert_eq!(cells[0].first_line, 4);
        assert_eq!(cells[0].source, "  let a = 1;\n\n  a");
        assert_eq!(cells[1].first_line, 10);
        assert_eq!(cells[1].source, "text");
    }

    #[test]
    fn source_lines_map_back_to_file_lines() {
        let text = "let setup = 0;\n// %% second\n\nlet a = 1;\nlet b = oops;\n";
        let cells = split_cells(text);
        let cell = &cells[1];
        let file_lines: Vec<&str> = text.lines().collect();
        for (k, line) in cell.source.lines().enumerate() {
            assert_eq!(file_lines[cell.first_line - 1 + k], line);
        }
    }

    #[test]
    fn text_before_the_first_marker_is_a_code_cell() {
        let cells = split_cells("\nlet setup = 0;\n// %% [markdown]\n// hi\n");
        assert_eq!(cells[0], code(None, "let setup = 0;", 2));
        assert_eq!(cells[1].kind, CellKind::Markdown);
    }

    #[test]
    fn empty_cells_are_skipped() {
        let text = "\n\n// %%\n\n// %% [markdown]\n//\n//\n// %% kept\n1\n// %%\n";
        assert_eq!(split_cells(text), vec![code(Some("kept"), "1", 9)]);
    }

    #[test]
    fn a_file_without_markers_is_one_code_cell() {
        let text = "let x = 1;\n// a comment\nx + 1\n";
        assert_eq!(
            split_cells(text),
            vec![code(None, "let x = 1;\n// a comment\nx + 1", 1)]
        );
    }

    #[test]
    fn near_misses_are_not_markers() {
        let text = "// %%% not a marker\n// %%x nor this\n// 50%% done\n";
        let cells = split_cells(text);
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].source.lines().count(), 3);
    }

    #[test]
    fn marker_spacing_and_line_endings_are_tolerant() {
        let text = "\u{feff}//%% one\r\n1\r\n  //   %%   [markdown]   two  \r\n// x\r\n";
        let cells = split_cells(text);
        assert_eq!(cells[0], code(Some("one"), "1", 2));
        assert_eq!(cells[1].kind, CellKind::Markdown);
        assert_eq!(cells[1].title.as_deref(), Some("two"));
        assert_eq!(cells[1].source, "x");
    }

    #[test]
    fn an_empty_file_has_no_cells() {
        assert!(split_cells("").is_empty());
        assert!(split_cells("\n  \n").is_empty());
    }
}
