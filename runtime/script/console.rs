//! Where script output goes: the terminal, a capture buffer while a
//! notebook cell runs (so the report can show text, tables and figures), or
//! a front end that shows it as it happens (the Jupyter kernel).
use std::cell::RefCell;
use std::path::PathBuf;

/// One piece of output a cell produced, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Captured {
    Text(String),
    /// Text for stderr (`eprint`).
    Stderr(String),
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Image(PathBuf),
    /// `clear_output()`: what the cell showed so far goes.
    Clear,
}

/// Receives each piece of output as it is produced.
type Sink = Box<dyn FnMut(Captured)>;

thread_local! {
    static CAPTURE: RefCell<Option<Vec<Captured>>> = const { RefCell::new(None) };
    static STREAM: RefCell<Option<Sink>> = RefCell::new(None);
}

/// Sends output to `sink` as it is produced, until `stop_streaming`
/// (a kernel shows prints while a long cell still runs).
pub fn stream_to(sink: impl FnMut(Captured) + 'static) {
    STREAM.with(|s| *s.borrow_mut() = Some(Box::new(sink)));
}

/// Back to the terminal (or the capture buffer).
pub fn stop_streaming() {
    STREAM.with(|s| *s.borrow_mut() = None);
}

/// Whether output is collected or streamed rather than printed, i.e. a
/// front end will show tables and figures itself.
pub fn is_captured() -> bool {
    STREAM.with(|s| s.borrow().is_some()) || CAPTURE.with(|c| c.borrow().is_some())
}

/// Where `display` writes the figures it shows: one folder per process in
/// the system's temporary folder.
pub fn display_dir() -> PathBuf {
    std::env::temp_dir().join(format!("saelab-display-{}", std::process::id()))
}

/// Starts collecting output instead of printing it.
pub fn start_capture() {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

/// Stops collecting and returns what was collected.
pub fn take_capture() -> Vec<Captured> {
    CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default()
}

fn capture(item: Captured) -> Option<Captured> {
    let item = STREAM.with(|s| match s.borrow_mut().as_mut() {
        Some(sink) => {
            sink(item);
            None
        }
        None => Some(item),
    })?;
    CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(items) => {
            match (items.last_mut(), item) {
                (Some(Captured::Text(text)), Captured::Text(more)) => text.push_str(&more),
                (Some(Captured::Stderr(text)), Captured::Stderr(more)) => text.push_str(&more),
                (_, item) => items.push(item),
            }
            None
        }
        None => Some(item),
    })
}

/// Prints a line (Rhai's `print` and `debug` come here).
pub fn print_line(line: &str) {
    if capture(Captured::Text(format!("{line}\n"))).is_some() {
        println!("{line}");
    }
}

/// Prints a line on stderr (Rhai's `eprint`), or records it as stderr text.
pub fn eprint_line(line: &str) {
    if capture(Captured::Stderr(format!("{line}\n"))).is_some() {
        eprintln!("{line}");
    }
}

/// Clears what the current cell has shown so far, where output is captured
/// or streamed; a terminal keeps its scrollback.
pub fn clear_output() {
    let _ = capture(Captured::Clear);
}

/// Prints text that has a coloured form: the colours on a terminal, the
/// plain form in a notebook report or when the output is piped.
pub fn print_highlighted(coloured: &str, plain: &str) {
    use std::io::IsTerminal;
    if capture(Captured::Text(plain.to_string())).is_some() {
        if std::io::stdout().is_terminal() {
            print!("{coloured}");
        } else {
            print!("{plain}");
        }
    }
}

/// Prints an aligned table, or records it for the report.
pub fn print_table(columns: Vec<String>, rows: Vec<Vec<String>>) {
    if let Some(Captured::Table { columns, rows }) = capture(Captured::Table { columns, rows }) {
        print!("{}", format_table(&columns, &rows));
    }
}

/// Notes a figure the script saved, so a notebook report can show it.
pub fn record_image(path: PathBuf) {
    let _ = capture(Captured::Image(path));
}

/// Columns padded to their widest cell; numbers right-aligned.
pub fn format_table(columns: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&columns[i]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    // A column whose every cell is a number is right-aligned, header included.
    let numeric: Vec<bool> = (0..columns.len())
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|r| r.get(i).is_some_and(|c| c.parse::<f64>().is_ok()))
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths.iter().zip(&numeric))
            .map(|(cell, (&w, &right))| {
                if right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("{}\n", rule.join("  ")));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let text = format_table(
            &["name".into(), "loss".into()],
            &[
                vec!["a".into(), "0.5".into()],
                vec!["long name".into(), "12.25".into()],
            ],
        );
        assert_eq!(
            text,
            "name        loss\n---------  -----\na            0.5\nlong name  12.25\n"
        );
    }

    #[test]
    fn capture_collects_text_and_tables_in_order() {
        start_capture();
        print_line("one");
        print_line("two");
        print_table(vec!["x".into()], vec![vec!["1".into()]]);
        let items = take_capture();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], Captured::Text("one\ntwo\n".into()));
    }

    #[test]
    fn stderr_text_and_clears_are_captured_in_order() {
        start_capture();
        eprint_line("careful");
        eprint_line("again");
        clear_output();
        print_line("after");
        assert_eq!(
            take_capture(),
            vec![
                Captured::Stderr("careful\nagain\n".into()),
                Captured::Clear,
                Captured::Text("after\n".into())
            ]
        );
    }

    #[test]
    fn streaming_hands_over_each_piece_as_it_comes() {
        let seen = std::rc::Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        stream_to(move |item| sink.borrow_mut().push(item));
        assert!(is_captured());
        print_line("one");
        record_image(PathBuf::from("fig.png"));
        stop_streaming();
        assert!(!is_captured());
        assert_eq!(
            *seen.borrow(),
            vec![
                Captured::Text("one\n".into()),
                Captured::Image(PathBuf::from("fig.png"))
            ]
        );
    }
}
