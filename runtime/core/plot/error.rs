//! The one error type of the plot module.

use std::path::PathBuf;

use super::{MAX_SIDE, MIN_SIDE, PALETTE_NAMES};

/// What went wrong while building or saving a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Two inputs that pair up element by element differ in length.
    #[error("{kind}: {left} has {left_len} values but {right} has {right_len}")]
    LengthMismatch {
        kind: &'static str,
        left: &'static str,
        left_len: usize,
        right: &'static str,
        right_len: usize,
    },
    /// A series with no values.
    #[error("{kind}: no data to plot")]
    Empty { kind: &'static str },
    /// A NaN or infinite value.
    #[error("{kind}: {name}[{index}] is {value}; only finite values can be plotted")]
    NonFinite {
        kind: &'static str,
        name: &'static str,
        index: usize,
        value: f64,
    },
    /// A NaN or infinite heatmap cell.
    #[error("heatmap: rows[{row}][{column}] is {value}; only finite values can be plotted")]
    NonFiniteCell {
        row: usize,
        column: usize,
        value: f64,
    },
    /// A zero or negative value on a logarithmic axis.
    #[error(
        "{kind}: the {axis} axis is logarithmic but {name}[{index}] = {value} is not positive"
    )]
    NonPositiveOnLog {
        kind: &'static str,
        axis: &'static str,
        name: &'static str,
        index: usize,
        value: f64,
    },
    /// A histogram asked for zero bins.
    #[error("hist: bins must be at least 1")]
    ZeroBins,
    /// A heatmap whose rows differ in length.
    #[error("heatmap: row {row} has {len} values but row 0 has {expected}")]
    RaggedRows {
        row: usize,
        len: usize,
        expected: usize,
    },
    /// Two kinds of chart that cannot share axes.
    #[error("cannot add a {adding} to a figure that holds a {existing}; use a separate figure")]
    Incompatible {
        adding: &'static str,
        existing: &'static str,
    },
    /// Bars over other labels than the bars already in the figure.
    #[error(
        "{kind}: labels differ from those of the bars already in the figure; \
         bars in one figure share their labels"
    )]
    BarLabelsDiffer { kind: &'static str },
    /// A heatmap on a figure with a logarithmic axis.
    #[error("heatmap: log axes do not apply to a heatmap; take the log of the values instead")]
    LogHeatmap,
    /// A colour that is neither `#rrggbb` nor a palette name.
    #[error("unknown colour {0:?}; use \"#rrggbb\" or one of {PALETTE_NAMES:?}")]
    UnknownColor(String),
    /// Width or height outside the supported range.
    #[error(
        "figure size {width}x{height} is out of range; \
         each side must be {MIN_SIDE} to {MAX_SIDE} pixels"
    )]
    BadSize { width: u32, height: u32 },
    /// `save` on a figure with no series.
    #[error("cannot save {}: the figure has nothing to plot", path.display())]
    NothingToPlot { path: PathBuf },
    /// The path does not end in `.png` or `.svg`.
    #[error("cannot save {}: unknown file extension {ext:?}; use .png or .svg", path.display())]
    UnknownExtension { path: PathBuf, ext: String },
    /// The file cannot be created.
    #[error("cannot write {}: {source}", path.display())]
    Unwritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The embedded font could not be registered with plotters.
    #[error("the embedded DejaVu Sans font could not be loaded")]
    Font,
    /// plotters failed while drawing or writing the image.
    #[error("drawing {} failed: {message}", path.display())]
    Draw { path: PathBuf, message: String },
}
