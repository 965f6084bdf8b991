//! A matrix as a viridis heatmap with a colour bar.

use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::render::{draw_mesh, widest, Area, Chart, Drawn, Grid, Layout, Theme, AXIS};
use super::ticks::Axis;
use super::Figure;

/// A heatmap with a colour bar on the right sharing its vertical extent.
pub(super) fn draw_heatmap<DB: DrawingBackend>(
    figure: &Figure,
    area: &Area<DB>,
    rows: &[Vec<f64>],
    theme: &Theme,
) -> Drawn<(), DB> {
    let (lo, hi) = value_range(rows);
    let scale = Axis::linear(lo, hi, 6);
    let (scale_w, _) = widest(area, &scale.major_labels(), &theme.tick())?;
    let (bar_w, gap) = (theme.px(18.0), theme.px(8.0));
    let side_w = bar_w + scale_w + 4 * gap;
    let (width, _) = area.dim_in_pixel();
    let (main, side) = area.split_horizontally(width.saturating_sub(side_w));
    let columns = rows[0].len();
    let x = Axis::cells(columns, false, 8);
    let y = Axis::cells(rows.len(), true, 6);
    let layout = Layout::new(figure, &main, (&x, &y), theme)?;
    let mut chart = layout.chart(&main, (&x, &y))?;
    draw_mesh(&mut chart, figure, (&x, &y), Grid::None, theme)?;
    let cells = rows.iter().enumerate().flat_map(|(r, row)| {
        let top = (rows.len() - r) as f64;
        row.iter().enumerate().map(move |(c, &value)| {
            let color = viridis(value, (scale.lo, scale.hi));
            Rectangle::new(
                [(c as f64, top - 1.0), (c as f64 + 1.0, top)],
                color.filled(),
            )
        })
    });
    chart.draw_series(cells)?;
    frame(&chart, (&x, &y), theme)?;
    draw_colorbar(&side, &layout, &scale, (bar_w, gap), theme)
}

/// The viridis colour of `value` on the scale `lo..hi`. The fraction is
/// taken here because plotters unwraps a NaN index (a span that overflows
/// to infinity) and panics.
fn viridis(value: f64, (lo, hi): (f64, f64)) -> RGBColor {
    let fraction = (value - lo) / (hi - lo);
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    ViridisRGB::get_color_normalized(fraction, 0.0, 1.0)
}

/// Smallest and largest value; a constant matrix gets a unit range so the
/// colour scale is defined.
fn value_range(rows: &[Vec<f64>]) -> (f64, f64) {
    let (lo, hi) = rows
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo < hi {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

/// A thin box around the plotting area, for charts without a grid.
fn frame<DB: DrawingBackend>(
    chart: &Chart<'_, DB>,
    (x, y): (&Axis, &Axis),
    theme: &Theme,
) -> Drawn<(), DB> {
    let style = AXIS.stroke_width(theme.px(1.0));
    chart
        .plotting_area()
        .draw(&Rectangle::new([(x.lo, y.lo), (x.hi, y.hi)], style))
}

/// The colour scale: a vertical viridis strip with ticks on its right,
/// aligned with the heatmap by using the same top margin and x label area.
fn draw_colorbar<DB: DrawingBackend>(
    side: &Area<DB>,
    layout: &Layout,
    scale: &Axis,
    (bar_w, gap): (u32, u32),
    theme: &Theme,
) -> Drawn<(), DB> {
    let (side_w, _) = side.dim_in_pixel();
    let strip = Axis::linear(0.0, 1.0, 1);
    let mut chart = ChartBuilder::on(side)
        .margin_top(layout.top)
        .margin_bottom(layout.bottom)
        .margin_left(gap)
        .x_label_area_size(layout.x_area)
        .right_y_label_area_size(side_w.saturating_sub(bar_w + gap))
        .build_cartesian_2d(strip.clone(), scale.clone())?;
    let label = |v: &f64| scale.label(*v);
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_label_formatter(&label)
        .y_label_offset(theme.centre_offset())
        .label_style(theme.tick())
        .axis_style(AXIS.stroke_width(theme.px(1.0)))
        .set_all_tick_mark_size(theme.px(4.0))
        .draw()?;
    const STEPS: usize = 256;
    let step = (scale.hi - scale.lo) / STEPS as f64;
    let bands = (0..STEPS).map(|i| {
        let bottom = scale.lo + step * i as f64;
        let color = viridis(bottom + step / 2.0, (scale.lo, scale.hi));
        Rectangle::new([(0.0, bottom), (1.0, bottom + step)], color.filled())
    });
    chart.draw_series(bands)?;
    frame(&chart, (&strip, scale), theme)
}
