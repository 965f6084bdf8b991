//! Figures → PNG/SVG, on top of `plotters`.
//!
//! A [`Figure`] collects series (lines, scatters, histograms, bars, a
//! heatmap, reference lines) and draws them only in [`Figure::save`], so all
//! series share one pair of axes whose limits fit every one of them. Input is
//! checked when a series is added, so a script learns about a NaN at the call
//! that passed it rather than at save time.
//!
//! The defaults aim at a paper figure: DejaVu Sans compiled into the binary
//! (a fresh headless machine has no system fonts, and plotters panics
//! without one), the Okabe–Ito colour-blind-safe palette, a light grid, a
//! legend whenever a series is labelled, and log axes ticked at powers of ten.

use std::path::Path;

mod error;
mod heatmap;
mod input;
mod legend;
mod palette;
mod render;
mod series;
mod ticks;

#[cfg(test)]
mod tests;

pub use error::PlotError;
pub use palette::PALETTE_NAMES;
pub use ticks::log_ticks;

use input::{bin, check_lengths, check_values};
use palette::{parse_color, Rgb, PALETTE_RGB, REFERENCE_GREY};

/// Layout and axes of a figure. `FigureOptions::default()` is an 800×500
/// figure with linear axes and no text.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureOptions {
    /// Caption drawn centred above the plot.
    pub title: Option<String>,
    /// Description under the x axis.
    pub x_label: Option<String>,
    /// Description left of the y axis (rotated).
    pub y_label: Option<String>,
    /// Logarithmic x axis; every x value must then be positive.
    pub log_x: bool,
    /// Logarithmic y axis; every y value must then be positive.
    pub log_y: bool,
    /// Width of the image in pixels (SVG user units).
    pub width: u32,
    /// Height of the image in pixels (SVG user units).
    pub height: u32,
}

impl Default for FigureOptions {
    fn default() -> Self {
        FigureOptions {
            title: None,
            x_label: None,
            y_label: None,
            log_x: false,
            log_y: false,
            width: 800,
            height: 500,
        }
    }
}

/// How one series looks. Both fields are optional: an unlabelled series is
/// left out of the legend, an uncoloured one takes the next palette colour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesStyle {
    /// Legend entry; with no labelled series the legend is not drawn.
    pub label: Option<String>,
    /// `"#rrggbb"` or a palette name (see [`PALETTE_NAMES`]).
    pub color: Option<String>,
}

impl SeriesStyle {
    /// A style with a legend label and the next palette colour.
    pub fn labelled(label: impl Into<String>) -> SeriesStyle {
        SeriesStyle {
            label: Some(label.into()),
            color: None,
        }
    }

    /// The same style with a colour, `"#rrggbb"` or a palette name.
    pub fn with_color(mut self, color: impl Into<String>) -> SeriesStyle {
        self.color = Some(color.into());
        self
    }
}

/// Smallest and largest figure side; below the minimum the tick labels and
/// margins leave no plot area, above the maximum a PNG needs gigabytes.
const MIN_SIDE: u32 = 200;
const MAX_SIDE: u32 = 10_000;

/// A figure under construction: add series, then [`save`](Figure::save).
///
/// ```ignore
/// let mut fig = Figure::new(FigureOptions { log_x: true, log_y: true, ..Default::default() });
/// fig.line(&tokens, &loss, SeriesStyle::labelled("topk"))?;
/// fig.save(Path::new("runs/scaling/loss.png"))?;
/// ```
#[derive(Debug, Clone)]
pub struct Figure {
    opts: FigureOptions,
    body: Body,
    references: Vec<Reference>,
    /// Series added so far, which picks the next palette colour.
    colors_used: usize,
}

/// The main content; each variant needs its own kind of axes.
#[derive(Debug, Clone)]
enum Body {
    Empty,
    /// Numeric x and y: lines, scatters, histograms.
    Xy(Vec<XySeries>),
    /// Categories along x, one slot per label; groups stand side by side.
    Bars {
        labels: Vec<String>,
        groups: Vec<BarGroup>,
    },
    /// A matrix, row 0 at the top.
    Heatmap(Vec<Vec<f64>>),
}

#[derive(Debug, Clone)]
enum XySeries {
    Line(Points),
    Scatter(Points),
    /// Binned when added; `edges` has one more entry than `counts`.
    Hist {
        edges: Vec<f64>,
        counts: Vec<f64>,
        look: Look,
    },
}

#[derive(Debug, Clone)]
struct Points {
    xs: Vec<f64>,
    ys: Vec<f64>,
    look: Look,
}

/// One bar per category; several layers stack on top of each other.
#[derive(Debug, Clone)]
struct BarGroup {
    layers: Vec<(Vec<f64>, Look)>,
}

/// A horizontal (`Y`) or vertical (`X`) line across the whole plot.
#[derive(Debug, Clone)]
enum Reference {
    Horizontal(f64, Look),
    Vertical(f64, Look),
}

/// A resolved [`SeriesStyle`].
#[derive(Debug, Clone)]
struct Look {
    label: Option<String>,
    rgb: Rgb,
}

impl Figure {
    /// An empty figure with the given layout.
    pub fn new(opts: FigureOptions) -> Figure {
        Figure {
            opts,
            body: Body::Empty,
            references: Vec::new(),
            colors_used: 0,
        }
    }

    /// Switches the y axis between linear and logarithmic (`hist(.., #{log_y})`).
    pub fn set_log_y(&mut self, log_y: bool) {
        self.opts.log_y = log_y;
    }

    /// The options the figure was created with.
    pub fn options(&self) -> &FigureOptions {
        &self.opts
    }

    /// A line through the points `(xs[i], ys[i])`, in order.
    pub fn line(&mut self, xs: &[f64], ys: &[f64], style: SeriesStyle) -> Result<(), PlotError> {
        let points = self.points("line", xs, ys, style)?;
        self.push_xy(XySeries::Line(points));
        Ok(())
    }

    /// A dot at each point `(xs[i], ys[i])`.
    pub fn scatter(&mut self, xs: &[f64], ys: &[f64], style: SeriesStyle) -> Result<(), PlotError> {
        let points = self.points("scatter", xs, ys, style)?;
        self.push_xy(XySeries::Scatter(points));
        Ok(())
    }

    /// A histogram of `values` in `bins` equal bins between their minimum
    /// and maximum. On a log x axis the bins are equal in log space; on a
    /// log y axis empty bins are left out.
    pub fn hist(
        &mut self,
        values: &[f64],
        bins: usize,
        style: SeriesStyle,
    ) -> Result<(), PlotError> {
        const KIND: &str = "hist";
        self.check_kind(KIND, matches!(self.body, Body::Empty | Body::Xy(_)))?;
        if bins == 0 {
            return Err(PlotError::ZeroBins);
        }
        check_values(KIND, "values", values, self.opts.log_x.then_some("x"))?;
        let look = self.look(style)?;
        let (edges, counts) = bin(values, bins, self.opts.log_x);
        self.push_xy(XySeries::Hist {
            edges,
            counts,
            look,
        });
        Ok(())
    }

    /// One bar per label. Further `bar` calls with the same labels stand
    /// beside the first, grouped per label.
    pub fn bar(
        &mut self,
        labels: &[String],
        values: &[f64],
        style: SeriesStyle,
    ) -> Result<(), PlotError> {
        const KIND: &str = "bar";
        check_lengths(KIND, ("labels", labels.len()), ("values", values.len()))?;
        self.check_bar_values(KIND, "values", values)?;
        self.check_bars(KIND, labels)?;
        let look = self.look(style)?;
        self.push_bars(
            labels,
            BarGroup {
                layers: vec![(values.to_vec(), look)],
            },
        );
        Ok(())
    }

    /// Stacked bars: one bar per label, each series `(name, values)` a layer
    /// stacked on the previous ones, named in the legend. Negative values
    /// stack downwards from zero.
    pub fn bars(
        &mut self,
        labels: &[String],
        series: &[(String, Vec<f64>)],
    ) -> Result<(), PlotError> {
        const KIND: &str = "stacked bars";
        if series.is_empty() {
            return Err(PlotError::Empty { kind: KIND });
        }
        for (_, values) in series {
            check_lengths(
                KIND,
                ("labels", labels.len()),
                ("series values", values.len()),
            )?;
            self.check_bar_values(KIND, "series values", values)?;
        }
        self.check_bars(KIND, labels)?;
        let mut layers = Vec::with_capacity(series.len());
        for (name, values) in series {
            let look = self.look(SeriesStyle::labelled(name.clone()))?;
            layers.push((values.clone(), look));
        }
        self.push_bars(labels, BarGroup { layers });
        Ok(())
    }

    /// A heatmap of a matrix, row 0 at the top, coloured by viridis with a
    /// colour bar. A heatmap fills the figure alone.
    pub fn heatmap(&mut self, rows: &[Vec<f64>]) -> Result<(), PlotError> {
        const KIND: &str = "heatmap";
        self.check_kind(
            KIND,
            matches!(self.body, Body::Empty) && self.references.is_empty(),
        )?;
        if self.opts.log_x || self.opts.log_y {
            return Err(PlotError::LogHeatmap);
        }
        let expected = rows.first().map_or(0, Vec::len);
        if expected == 0 {
            return Err(PlotError::Empty { kind: KIND });
        }
        for (row, values) in rows.iter().enumerate() {
            if values.len() != expected {
                return Err(PlotError::RaggedRows {
                    row,
                    len: values.len(),
                    expected,
                });
            }
            if let Some(column) = values.iter().position(|v| !v.is_finite()) {
                return Err(PlotError::NonFiniteCell {
                    row,
                    column,
                    value: values[column],
                });
            }
        }
        self.body = Body::Heatmap(rows.to_vec());
        Ok(())
    }

    /// A horizontal line across the plot at height `y` (dashed, grey unless
    /// coloured), e.g. a baseline loss.
    pub fn hline(&mut self, y: f64, style: SeriesStyle) -> Result<(), PlotError> {
        const KIND: &str = "hline";
        self.check_kind(KIND, !matches!(self.body, Body::Heatmap(_)))?;
        check_values(KIND, "y", &[y], self.opts.log_y.then_some("y"))?;
        let look = reference_look(style)?;
        self.references.push(Reference::Horizontal(y, look));
        Ok(())
    }

    /// A vertical line across the plot at `x` (dashed, grey unless coloured).
    pub fn vline(&mut self, x: f64, style: SeriesStyle) -> Result<(), PlotError> {
        const KIND: &str = "vline";
        let numeric_x = matches!(self.body, Body::Empty | Body::Xy(_));
        self.check_kind(KIND, numeric_x)?;
        check_values(KIND, "x", &[x], self.opts.log_x.then_some("x"))?;
        let look = reference_look(style)?;
        self.references.push(Reference::Vertical(x, look));
        Ok(())
    }

    /// The figure as SVG text (for a self-contained HTML page).
    pub fn to_svg(&self) -> Result<String, PlotError> {
        if matches!(self.body, Body::Empty) && self.references.is_empty() {
            return Err(PlotError::NothingToPlot {
                path: "<inline svg>".into(),
            });
        }
        render::svg_string(self)
    }

    /// Draws the figure to `path`: PNG or SVG, chosen by the extension.
    pub fn save(&self, path: &Path) -> Result<(), PlotError> {
        let (width, height) = (self.opts.width, self.opts.height);
        if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
            return Err(PlotError::BadSize { width, height });
        }
        let format = Format::of(path)?;
        if matches!(self.body, Body::Empty) && self.references.is_empty() {
            return Err(PlotError::NothingToPlot { path: path.into() });
        }
        // Experiment scripts write into runs/<name>/, which may not exist yet.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| PlotError::Unwritable {
                path: path.into(),
                source,
            })?;
        }
        // Creating the file first turns a missing directory or a read-only
        // location into an io::Error naming the path, instead of an opaque
        // encoder error from present().
        std::fs::File::create(path).map_err(|source| PlotError::Unwritable {
            path: path.into(),
            source,
        })?;
        render::save(self, path, format)
    }

    fn points(
        &mut self,
        kind: &'static str,
        xs: &[f64],
        ys: &[f64],
        style: SeriesStyle,
    ) -> Result<Points, PlotError> {
        self.check_kind(kind, matches!(self.body, Body::Empty | Body::Xy(_)))?;
        check_lengths(kind, ("xs", xs.len()), ("ys", ys.len()))?;
        check_values(kind, "xs", xs, self.opts.log_x.then_some("x"))?;
        check_values(kind, "ys", ys, self.opts.log_y.then_some("y"))?;
        Ok(Points {
            xs: xs.to_vec(),
            ys: ys.to_vec(),
            look: self.look(style)?,
        })
    }

    fn check_bar_values(
        &self,
        kind: &'static str,
        name: &'static str,
        values: &[f64],
    ) -> Result<(), PlotError> {
        check_values(kind, name, values, self.opts.log_y.then_some("y"))
    }

    /// Bars may join an empty figure (horizontal lines are fine) or bars
    /// over the same labels.
    fn check_bars(&self, kind: &'static str, labels: &[String]) -> Result<(), PlotError> {
        match &self.body {
            Body::Bars {
                labels: existing, ..
            } if existing != labels => Err(PlotError::BarLabelsDiffer { kind }),
            Body::Bars { .. } => Ok(()),
            body => {
                let vertical = self
                    .references
                    .iter()
                    .any(|r| matches!(r, Reference::Vertical(..)));
                self.check_kind(kind, matches!(body, Body::Empty) && !vertical)
            }
        }
    }

    /// Fails with `Incompatible` unless `ok`, naming what the figure holds.
    fn check_kind(&self, adding: &'static str, ok: bool) -> Result<(), PlotError> {
        if ok {
            return Ok(());
        }
        let existing = match &self.body {
            // Only reference lines so far: name the one that is in the way.
            Body::Empty => match self
                .references
                .iter()
                .any(|r| matches!(r, Reference::Vertical(..)))
            {
                true => "vertical line",
                false => "horizontal line",
            },
            Body::Xy(_) => "line/scatter/hist plot",
            Body::Bars { .. } => "bar chart",
            Body::Heatmap(_) => "heatmap",
        };
        Err(PlotError::Incompatible { adding, existing })
    }

    fn push_xy(&mut self, series: XySeries) {
        match &mut self.body {
            Body::Xy(all) => all.push(series),
            body => *body = Body::Xy(vec![series]),
        }
    }

    fn push_bars(&mut self, labels: &[String], group: BarGroup) {
        match &mut self.body {
            Body::Bars { groups, .. } => groups.push(group),
            body => {
                *body = Body::Bars {
                    labels: labels.to_vec(),
                    groups: vec![group],
                }
            }
        }
    }

    /// Resolves a style, taking the next palette colour when none is given.
    /// Every series advances the palette, coloured or not, so colouring one
    /// series by hand does not change the colours of the others.
    fn look(&mut self, style: SeriesStyle) -> Result<Look, PlotError> {
        let rgb = match &style.color {
            Some(name) => parse_color(name)?,
            None => PALETTE_RGB[self.colors_used % PALETTE_RGB.len()],
        };
        self.colors_used += 1;
        Ok(Look {
            label: style.label,
            rgb,
        })
    }
}

fn reference_look(style: SeriesStyle) -> Result<Look, PlotError> {
    let rgb = match &style.color {
        Some(name) => parse_color(name)?,
        None => REFERENCE_GREY,
    };
    Ok(Look {
        label: style.label,
        rgb,
    })
}

/// Plots `ys` against `xs` as one line and saves it to `path`.
pub fn plot(xs: &[f64], ys: &[f64], path: &Path) -> Result<(), PlotError> {
    let mut figure = Figure::new(FigureOptions::default());
    figure.line(xs, ys, SeriesStyle::default())?;
    figure.save(path)
}

/// The output format, from the file extension.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Png,
    Svg,
}

impl Format {
    fn of(path: &Path) -> Result<Format, PlotError> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            other => Err(PlotError::UnknownExtension {
                path: path.into(),
                ext: other.unwrap_or("").to_string(),
            }),
        }
    }
}

impl Figure {
    /// Legend entries in drawing order.
    fn legend_labels(&self) -> Vec<String> {
        let mut looks: Vec<&Look> = match &self.body {
            Body::Xy(series) => series.iter().map(XySeries::look).collect(),
            Body::Bars { groups, .. } => groups
                .iter()
                .flat_map(|g| g.layers.iter().map(|(_, look)| look))
                .collect(),
            Body::Empty | Body::Heatmap(_) => Vec::new(),
        };
        looks.extend(self.references.iter().map(|r| match r {
            Reference::Horizontal(_, look) | Reference::Vertical(_, look) => look,
        }));
        looks
            .into_iter()
            .filter_map(|look| look.label.clone())
            .collect()
    }
}

impl XySeries {
    fn look(&self) -> &Look {
        match self {
            XySeries::Line(p) | XySeries::Scatter(p) => &p.look,
            XySeries::Hist { look, .. } => look,
        }
    }
}
