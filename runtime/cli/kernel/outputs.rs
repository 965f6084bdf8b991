//! What a cell shows, as iopub messages: prints as `stream`, tables as
//! HTML, figures as inline PNG, the last value as `execute_result`, errors
//! with their position in the cell.
use base64::prelude::*;
use jupyter_protocol::{
    ClearOutput, DisplayData, ErrorOutput, ExecutionState, JupyterMessage, JupyterMessageContent,
    Media, MediaType, Status, Stdio, StreamContent,
};
use rhai::{Dynamic, EvalAltResult};
use saelab::core::dashboard::html::escape;
use saelab::core::interrupt;
use saelab::script::api::plot::Figure;
use saelab::script::console::{display_dir, format_table, Captured};
use saelab::script::display::format_value;
use saelab::script::error::is_panic;
use saelab::script::{describe_error, error_module};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// Sends iopub messages on behalf of the request being handled.
#[derive(Clone)]
pub struct Publisher {
    iopub: UnboundedSender<JupyterMessage>,
    /// The request whose outputs are being published; progress bars are
    /// drawn from deep inside native code, which cannot be handed it.
    current: Arc<Mutex<Option<JupyterMessage>>>,
    /// A progress line was sent without its newline.
    progress_open: Arc<AtomicBool>,
}

impl Publisher {
    pub fn new(iopub: UnboundedSender<JupyterMessage>) -> Self {
        Publisher {
            iopub,
            current: Arc::new(Mutex::new(None)),
            progress_open: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Publishes `content` as a child of `parent`.
    pub fn send(&self, content: impl Into<JupyterMessageContent>, parent: &JupyterMessage) {
        let content = content.into();
        // On iopub the identity frames are the PUB topic; clients subscribe
        // to every topic, and ipykernel names them `kernel.<msg_type>`-style.
        let topic = format!("kernel.saelab.{}", content.message_type());
        let message = JupyterMessage::new(content, Some(parent))
            .with_zmq_identities(vec![topic.into_bytes().into()]);
        // The receiver goes away only when the kernel is shutting down.
        let _ = self.iopub.send(message);
    }

    pub fn status(&self, state: ExecutionState, parent: &JupyterMessage) {
        self.send(
            Status {
                execution_state: state,
            },
            parent,
        );
    }

    pub fn stream(&self, name: Stdio, text: &str, parent: &JupyterMessage) {
        self.send(
            StreamContent {
                name,
                text: text.to_string(),
            },
            parent,
        );
    }

    /// Outputs from now on belong to `parent`.
    pub fn begin(&self, parent: &JupyterMessage) {
        if let Ok(mut current) = self.current.lock() {
            *current = Some(parent.clone());
        }
    }

    /// Ends a request's outputs, finishing a progress line left open.
    pub fn end(&self, parent: &JupyterMessage) {
        if self.progress_open.swap(false, Ordering::SeqCst) {
            self.stream(Stdio::Stderr, "\n", parent);
        }
        if let Ok(mut current) = self.current.lock() {
            *current = None;
        }
    }

    /// A redraw of a progress bar: `\r` makes Jupyter front ends overwrite
    /// the previous one, as a terminal would.
    pub fn progress_line(&self, line: &str) {
        let current = self.current.lock().ok().and_then(|c| c.clone());
        if let Some(parent) = current {
            self.stream(Stdio::Stderr, &format!("\r{line}"), &parent);
            self.progress_open.store(true, Ordering::SeqCst);
        }
    }
}

/// How one piece of captured output is shown.
pub fn captured_content(item: Captured) -> JupyterMessageContent {
    match item {
        Captured::Text(text) => StreamContent {
            name: Stdio::Stdout,
            text,
        }
        .into(),
        Captured::Stderr(text) => StreamContent {
            name: Stdio::Stderr,
            text,
        }
        .into(),
        Captured::Clear => ClearOutput { wait: false }.into(),
        Captured::Table { columns, rows } => display(vec![
            MediaType::Html(table_html(&columns, &rows)),
            MediaType::Plain(format_table(&columns, &rows)),
        ]),
        Captured::Image(path) => match image_media(&path) {
            Ok(media) => display(vec![
                media,
                MediaType::Plain(format!("<image {}>", path.display())),
            ]),
            Err(message) => StreamContent {
                name: Stdio::Stderr,
                text: format!("{message}\n"),
            }
            .into(),
        },
    }
}

fn display(data: Vec<MediaType>) -> JupyterMessageContent {
    DisplayData {
        data: Media::new(data),
        metadata: Default::default(),
        transient: None,
    }
    .into()
}

/// A saved figure's file as inline image data, by its extension.
fn image_media(path: &Path) -> Result<MediaType, String> {
    let cannot = |e: std::io::Error| format!("cannot show the image {}: {e}", path.display());
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("svg") => Ok(MediaType::Svg(
            std::fs::read_to_string(path).map_err(cannot)?,
        )),
        Some("png") => Ok(MediaType::Png(
            BASE64_STANDARD.encode(std::fs::read(path).map_err(cannot)?),
        )),
        Some("jpg" | "jpeg") => Ok(MediaType::Jpeg(
            BASE64_STANDARD.encode(std::fs::read(path).map_err(cannot)?),
        )),
        _ => Err(format!(
            "cannot show the image {}: not a PNG, SVG or JPEG file",
            path.display()
        )),
    }
}

fn table_html(columns: &[String], rows: &[Vec<String>]) -> String {
    let cells = |tag: &str, row: &[String]| -> String {
        row.iter()
            .map(|cell| format!("<{tag}>{}</{tag}>", escape(cell)))
            .collect()
    };
    let body: String = rows
        .iter()
        .map(|row| format!("<tr>{}</tr>\n", cells("td", row)))
        .collect();
    format!(
        "<table>\n<thead><tr>{}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n",
        cells("th", columns)
    )
}

/// The cell's value as `execute_result` data: a figure as its picture
/// (written to `png_path` first), anything else in its readable text form.
pub fn value_media(value: &Dynamic, png_path: PathBuf) -> Media {
    let text = MediaType::Plain(format_value(value));
    match value.read_lock::<Figure>() {
        Some(fig) => match figure_png(&fig, &png_path) {
            Ok(png) => Media::new(vec![MediaType::Png(png), text]),
            Err(_) => Media::new(vec![text]),
        },
        None => Media::new(vec![text]),
    }
}

fn figure_png(fig: &Figure, path: &Path) -> Result<String, String> {
    fig.borrow().save(path).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    Ok(BASE64_STANDARD.encode(bytes))
}

/// Where the kernel writes the figures that are a cell's value.
pub fn value_figure_path(execution_count: usize) -> PathBuf {
    display_dir().join(format!("out-{execution_count}.png"))
}

/// A script error as Jupyter shows it: a name, the message, and a
/// traceback naming the line and column in the cell, with that line and a
/// caret under the column.
pub fn error_output(err: &EvalAltResult, code: &str) -> ErrorOutput {
    let (message, position) = describe_error(err);
    let ename = if matches!(err, EvalAltResult::ErrorParsing(..)) {
        "ParseError"
    } else if is_panic(err) {
        "Panic"
    } else if message == "interrupted" || interrupt::requested() {
        "Interrupted"
    } else {
        "ScriptError"
    };
    let mut traceback = Vec::new();
    match (
        position.line(),
        position.position(),
        error_module(err, None),
    ) {
        // In an imported module's code: its file and line, not the cell's.
        (Some(line), column, Some(file)) => {
            let column = column.map(|c| format!(", column {c}")).unwrap_or_default();
            traceback.push(format!("{ename} in {file}, line {line}{column}: {message}"));
        }
        (Some(line), column, None) => {
            let at = match column {
                Some(column) => format!("line {line}, column {column}"),
                None => format!("line {line}"),
            };
            traceback.push(format!("{ename} at {at}: {message}"));
            if let Some(source) = code.lines().nth(line - 1) {
                traceback.push(format!("{line:>4} | {source}"));
                if let Some(column) = column {
                    traceback.push(format!("     | {}^", " ".repeat(column.saturating_sub(1))));
                }
            }
        }
        (None, _, _) => traceback.push(format!("{ename}: {message}")),
    }
    ErrorOutput {
        ename: ename.into(),
        evalue: message,
        traceback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::{Engine, Position};

    #[test]
    fn errors_name_the_cell_line_and_column_with_a_caret() {
        let err = EvalAltResult::ErrorRuntime("boom".into(), Position::new(2, 5));
        let out = error_output(&err, "let a = 1;\nlet b = oops;");
        assert_eq!(out.ename, "ScriptError");
        assert_eq!(out.evalue, "boom");
        assert_eq!(
            out.traceback,
            vec![
                "ScriptError at line 2, column 5: boom",
                "   2 | let b = oops;",
                "     |     ^"
            ]
        );
    }

    #[test]
    fn parse_errors_are_named_as_such() {
        let err: Box<EvalAltResult> = Engine::new().compile("let = 3;").unwrap_err().into();
        let out = error_output(&err, "let = 3;");
        assert_eq!(out.ename, "ParseError");
        assert!(out.traceback[0].starts_with("ParseError at line 1"));
    }

    #[test]
    fn tables_become_escaped_html() {
        let html = table_html(&["a<b".into()], &[vec!["1".into()]]);
        assert!(html.contains("<th>a&lt;b</th>"));
        assert!(html.contains("<td>1</td>"));
    }
}
