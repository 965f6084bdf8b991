//! Drawing a [`Figure`] with plotters; the same code serves PNG and SVG.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

use super::heatmap::draw_heatmap;
use super::legend::{draw_legend, place_legend};
use super::series::{draw_group, draw_reference, draw_xy, stacks, GroupSlot};
use super::ticks::Axis;
use super::{Body, Figure, Format, PlotError, Reference, XySeries};

type Coord = Cartesian2d<Axis, Axis>;
pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Coord>;
pub(super) type Area<DB> = DrawingArea<DB, Shift>;
pub(super) type Drawn<T, DB> = Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// The family plotters looks fonts up by; also what SVG viewers are told.
const FONT_FAMILY: &str = "sans-serif";

/// Registers DejaVu Sans with plotters once per process. Without a
/// registered font, ab_glyph text drawing fails on every label.
fn register_fonts() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = REGISTERED.get_or_init(|| {
        register_font(FONT_FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    ok.then_some(()).ok_or(PlotError::Font)
}

/// Renders `figure` to `path` and flushes it with an explicit `present()`,
/// so a failed write is reported rather than lost in a `Drop`.
pub(super) fn save(figure: &Figure, path: &Path, format: Format) -> Result<(), PlotError> {
    register_fonts()?;
    let failed = |message: String| PlotError::Draw {
        path: path.into(),
        message,
    };
    let size = (figure.opts.width, figure.opts.height);
    match format {
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(figure, &root, format).map_err(|e| failed(e.to_string()))?;
            root.present().map_err(|e| failed(e.to_string()))
        }
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(figure, &root, format).map_err(|e| failed(e.to_string()))?;
            root.present().map_err(|e| failed(e.to_string()))
        }
    }
}

/// Renders `figure` as SVG text, to inline it in an HTML page.
pub(super) fn svg_string(figure: &Figure) -> Result<String, PlotError> {
    register_fonts()?;
    let failed = |message: String| PlotError::Draw {
        path: "<inline svg>".into(),
        message,
    };
    let mut svg = String::new();
    {
        let size = (figure.opts.width, figure.opts.height);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(figure, &root, Format::Svg).map_err(|e| failed(e.to_string()))?;
        root.present().map_err(|e| failed(e.to_string()))?;
    }
    Ok(svg)
}

/// Font sizes and strokes, scaled with the figure so a 1600×1000 figure
/// looks like an 800×500 one printed at twice the size.
pub(super) struct Theme {
    scale: f64,
    /// ab_glyph's bitmap text sits about a quarter em above its anchor when
    /// centred vertically; SVG viewers place text themselves.
    bitmap: bool,
}

impl Theme {
    pub(super) fn new(width: u32, height: u32, format: Format) -> Theme {
        let scale = (f64::from(width) / 800.0).min(f64::from(height) / 500.0);
        Theme {
            scale: scale.clamp(0.5, 4.0),
            bitmap: format == Format::Png,
        }
    }

    /// Moves centred tick labels down onto their ticks in bitmaps.
    pub(super) fn centre_offset(&self) -> i32 {
        if self.bitmap {
            (TICK_SIZE * self.scale / 4.0).round() as i32
        } else {
            0
        }
    }

    pub(super) fn px(&self, base: f64) -> u32 {
        (base * self.scale).round().max(1.0) as u32
    }

    fn font(&self, base: f64) -> TextStyle<'static> {
        (FONT_FAMILY, base * self.scale).into_font().color(&TEXT)
    }

    fn title(&self) -> TextStyle<'static> {
        self.font(22.0)
    }

    fn axis_desc(&self) -> TextStyle<'static> {
        self.font(18.0)
    }

    pub(super) fn tick(&self) -> TextStyle<'static> {
        self.font(TICK_SIZE)
    }

    pub(super) fn legend(&self) -> TextStyle<'static> {
        self.font(15.0)
    }
}

const TICK_SIZE: f64 = 15.0;
const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub(super) const AXIS: RGBColor = RGBColor(0x44, 0x44, 0x44);
pub(super) const GRID_MAJOR: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
const GRID_MINOR: RGBColor = RGBColor(0xF0, 0xF0, 0xF0);

fn draw<DB: DrawingBackend>(figure: &Figure, root: &Area<DB>, format: Format) -> Drawn<(), DB> {
    root.fill(&WHITE)?;
    let theme = Theme::new(figure.opts.width, figure.opts.height, format);
    let area = match &figure.opts.title {
        // titled() pads by at most 5 px, which a large title's ascent overruns.
        Some(title) => root
            .margin(theme.px(6.0), 0, 0, 0)
            .titled(title, theme.title())?,
        None => root.clone(),
    };
    match &figure.body {
        Body::Heatmap(rows) => draw_heatmap(figure, &area, rows, &theme),
        _ => draw_axes(figure, &area, &theme),
    }
}

/// Lines, scatters, histograms and bars: one chart, then the legend.
fn draw_axes<DB: DrawingBackend>(figure: &Figure, area: &Area<DB>, theme: &Theme) -> Drawn<(), DB> {
    let (x, y) = fit_axes(figure);
    let (corner, y) = place_legend(figure, area, &x, y, theme)?;
    let layout = Layout::new(figure, area, (&x, &y), theme)?;
    let mut chart = layout.chart(area, (&x, &y))?;
    let grid = match figure.body {
        // Vertical lines between categories would only be noise.
        Body::Bars { .. } => Grid::Horizontal,
        _ => Grid::Both,
    };
    draw_mesh(&mut chart, figure, (&x, &y), grid, theme)?;
    match &figure.body {
        Body::Xy(series) => {
            for one in series {
                draw_xy(&mut chart, one, (&x, &y), theme)?;
            }
        }
        Body::Bars { groups, .. } => {
            for (index, group) in groups.iter().enumerate() {
                let slot = GroupSlot::new(index, groups.len());
                draw_group(&mut chart, group, slot, &y, theme)?;
            }
        }
        Body::Empty | Body::Heatmap(_) => {}
    }
    for reference in &figure.references {
        draw_reference(&mut chart, reference, (&x, &y), theme)?;
    }
    draw_legend(figure, &mut chart, corner, theme)
}

/// Margins and label areas, sized to the tick labels actually drawn so
/// long labels are not clipped and short ones waste no space.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
    pub left: u32,
    pub x_area: u32,
    pub y_area: u32,
}

impl Layout {
    pub(super) fn new<DB: DrawingBackend>(
        figure: &Figure,
        area: &Area<DB>,
        (x, y): (&Axis, &Axis),
        theme: &Theme,
    ) -> Drawn<Layout, DB> {
        let (x_tick_w, x_tick_h) = widest(area, &x.major_labels(), &theme.tick())?;
        let (y_tick_w, _) = widest(area, &y.major_labels(), &theme.tick())?;
        let (_, desc_h) = area.estimate_text_size("Ag", &theme.axis_desc())?;
        let gap = theme.px(8.0);
        let x_desc = if figure.opts.x_label.is_some() {
            desc_h + gap
        } else {
            0
        };
        let y_desc = if figure.opts.y_label.is_some() {
            desc_h + gap
        } else {
            0
        };
        Ok(Layout {
            top: theme.px(14.0),
            // Half the last x tick label hangs past the plot's right edge.
            right: theme.px(16.0).max(x_tick_w / 2 + gap),
            bottom: theme.px(6.0),
            left: theme.px(8.0),
            x_area: x_tick_h + 2 * gap + x_desc,
            y_area: y_tick_w + 2 * gap + y_desc,
        })
    }

    /// Width and height of the plotting area inside `area`.
    pub(super) fn plot_size<DB: DrawingBackend>(&self, area: &Area<DB>) -> (u32, u32) {
        let (width, height) = area.dim_in_pixel();
        let used_w = self.left + self.y_area + self.right;
        let used_h = self.top + self.x_area + self.bottom;
        (width.saturating_sub(used_w), height.saturating_sub(used_h))
    }

    pub(super) fn chart<'a, DB: DrawingBackend>(
        &self,
        area: &'a Area<DB>,
        (x, y): (&Axis, &Axis),
    ) -> Drawn<Chart<'a, DB>, DB> {
        ChartBuilder::on(area)
            .margin_top(self.top)
            .margin_right(self.right)
            .margin_bottom(self.bottom)
            .margin_left(self.left)
            .x_label_area_size(self.x_area)
            .y_label_area_size(self.y_area)
            .build_cartesian_2d(x.clone(), y.clone())
    }
}

/// Which grid lines a chart draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Grid {
    Both,
    /// Horizontal lines only: bar charts.
    Horizontal,
    None,
}

/// Grid, axes, tick labels and axis descriptions.
pub(super) fn draw_mesh<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    figure: &Figure,
    (x, y): (&Axis, &Axis),
    grid: Grid,
    theme: &Theme,
) -> Drawn<(), DB> {
    let x_label = |v: &f64| x.label(*v);
    let y_label = |v: &f64| y.label(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .bold_line_style(GRID_MAJOR.stroke_width(theme.px(1.0)))
        .light_line_style(GRID_MINOR.stroke_width(theme.px(1.0)))
        .axis_style(AXIS.stroke_width(theme.px(1.0)))
        .label_style(theme.tick())
        .axis_desc_style(theme.axis_desc())
        .y_label_offset(theme.centre_offset())
        .set_all_tick_mark_size(theme.px(4.0));
    if let Some(label) = &figure.opts.x_label {
        mesh.x_desc(label);
    }
    if let Some(label) = &figure.opts.y_label {
        mesh.y_desc(label);
    }
    match grid {
        Grid::Both => {}
        Grid::Horizontal => {
            mesh.disable_x_mesh();
        }
        Grid::None => {
            mesh.disable_mesh();
        }
    }
    mesh.draw()
}

/// plotters sees every axis as linear in plot space, with exactly the ticks
/// `Axis` chose: majors as bold grid lines with labels, minors as light ones.
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, (start, end): (i32, i32)) -> i32 {
        let fraction = (value - self.lo) / (self.hi - self.lo);
        start + (f64::from(end - start) * fraction).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The largest width and height among `texts`.
pub(super) fn widest<DB: DrawingBackend>(
    area: &Area<DB>,
    texts: &[String],
    style: &TextStyle,
) -> Drawn<(u32, u32), DB> {
    let mut size = (0, 0);
    for text in texts {
        let (w, h) = area.estimate_text_size(text, style)?;
        size = (size.0.max(w), size.1.max(h));
    }
    Ok(size)
}

/// Axes that fit every series and reference line.
pub(super) fn fit_axes(figure: &Figure) -> (Axis, Axis) {
    let opts = &figure.opts;
    let (mut xs, mut ys) = (Extent::default(), Extent::default());
    let mut bars = false;
    match &figure.body {
        Body::Xy(series) => {
            for one in series {
                bars |= one.extent(&mut xs, &mut ys, opts.log_y);
            }
        }
        Body::Bars { groups, .. } => {
            bars = true;
            for group in groups {
                for (bottom, top) in stacks(group)
                    .into_iter()
                    .flatten()
                    .map(|s| (s.bottom, s.top))
                {
                    ys.include(top);
                    if !opts.log_y || bottom > 0.0 {
                        ys.include(bottom);
                    }
                }
            }
        }
        Body::Empty | Body::Heatmap(_) => {}
    }
    for reference in &figure.references {
        match reference {
            Reference::Horizontal(v, _) => ys.include(*v),
            Reference::Vertical(v, _) => xs.include(*v),
        }
    }
    if bars && !opts.log_y {
        ys.include(0.0);
    }
    let x = match &figure.body {
        Body::Bars { labels, .. } => Axis::categories(labels),
        _ => xs.axis(opts.log_x, false, 8),
    };
    (x, ys.axis(opts.log_y, bars, 6))
}

/// The range of data values seen on one axis.
#[derive(Debug, Clone, Copy)]
struct Extent {
    lo: f64,
    hi: f64,
}

impl Default for Extent {
    fn default() -> Self {
        Extent {
            lo: f64::INFINITY,
            hi: f64::NEG_INFINITY,
        }
    }
}

impl Extent {
    fn include(&mut self, value: f64) {
        self.lo = self.lo.min(value);
        self.hi = self.hi.max(value);
    }

    /// An axis over the extent; an empty extent (only reference lines on
    /// the other axis) gets a unit range.
    fn axis(self, log: bool, from_zero: bool, target_ticks: usize) -> Axis {
        let (lo, hi) = match (self.lo <= self.hi, log) {
            (true, _) => (self.lo, self.hi),
            (false, true) => (1.0, 10.0),
            (false, false) => (0.0, 1.0),
        };
        Axis::fit(lo, hi, log, from_zero, target_ticks)
    }
}

impl XySeries {
    /// Widens the extents to this series; true when it is drawn as bars.
    fn extent(&self, xs: &mut Extent, ys: &mut Extent, log_y: bool) -> bool {
        match self {
            XySeries::Line(p) | XySeries::Scatter(p) => {
                p.xs.iter().for_each(|&v| xs.include(v));
                p.ys.iter().for_each(|&v| ys.include(v));
                false
            }
            XySeries::Hist { edges, counts, .. } => {
                edges.iter().for_each(|&v| xs.include(v));
                // A log axis has no zero; empty bins are simply not drawn.
                counts
                    .iter()
                    .filter(|&&c| !log_y || c > 0.0)
                    .for_each(|&c| ys.include(c));
                true
            }
        }
    }
}
