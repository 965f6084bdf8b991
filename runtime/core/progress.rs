//! Progress bars for long primitives: visible on a terminal, silent when
//! stderr is redirected (scripts in CI, notebooks rendered to files), and
//! sent as text lines where a front end asked for them (the Jupyter kernel,
//! whose stderr nobody reads).
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

/// Receives each redraw of a bar as one line of text.
type LineSink = Box<dyn Fn(&str) + Send + Sync>;

static LINE_SINK: OnceLock<LineSink> = OnceLock::new();

/// Redraws per second when bars go to a line sink: each redraw becomes a
/// message to the front end, so far fewer than a terminal's 20.
const SINK_REDRAWS_PER_SEC: u8 = 1;

/// A bar over `total` units (`unit` names them: "tokens", "steps").
pub fn bar(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), draw_target());
    let template = format!(
        "{{spinner}} {{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, ETA {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Sends every later bar's redraws to `sink` as lines of text instead of
/// drawing them on stderr. Set once per process; later calls are ignored.
pub fn send_lines_to(sink: impl Fn(&str) + Send + Sync + 'static) {
    let _ = LINE_SINK.set(Box::new(sink));
}

fn draw_target() -> ProgressDrawTarget {
    if LINE_SINK.get().is_some() {
        ProgressDrawTarget::term_like_with_hz(Box::<LineTerm>::default(), SINK_REDRAWS_PER_SEC)
    } else if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A pretend terminal that collects what indicatif draws between flushes and
/// hands it to the line sink as one line; cursor movements mean nothing here.
#[derive(Debug, Default)]
struct LineTerm {
    line: Mutex<String>,
}

impl LineTerm {
    fn push(&self, text: &str) {
        if let Ok(mut line) = self.line.lock() {
            line.push_str(text);
        }
    }
}

impl TermLike for LineTerm {
    fn width(&self) -> u16 {
        100
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, text: &str) -> std::io::Result<()> {
        self.push(text);
        Ok(())
    }

    fn write_str(&self, text: &str) -> std::io::Result<()> {
        self.push(text);
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        if let Ok(mut line) = self.line.lock() {
            line.clear();
        }
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let text = match self.line.lock() {
            Ok(mut line) => std::mem::take(&mut *line),
            Err(_) => return Ok(()),
        };
        let text = text.trim_matches(|c: char| c == '\r' || c.is_whitespace());
        if let (false, Some(sink)) = (text.is_empty(), LINE_SINK.get()) {
            sink(text);
        }
        Ok(())
    }
}
