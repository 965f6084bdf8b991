//! The legend and where it goes.
//!
//! Like matplotlib's `loc="best"`, the legend takes the corner of the plot
//! that hides the fewest drawn points. When every corner would hide data, the
//! y axis is raised so the legend sits above it, which is what one otherwise
//! does by hand with `ylim`.

use plotters::prelude::*;

use super::render::{widest, Area, Chart, Drawn, Layout, Theme, GRID_MAJOR};
use super::series::{
    group_boxes, hist_boxes, plot_points, reference_ends, Corners, GroupSlot, Sample,
};
use super::ticks::Axis;
use super::{Body, Figure, XySeries};

/// Gap kept between the data and the legend, as a fraction of the plot.
const CLEARANCE: f64 = 0.03;

/// The corner for the legend, and the y axis to draw with (raised when
/// needed). Figures without labelled series keep their axis.
pub(super) fn place_legend<DB: DrawingBackend>(
    figure: &Figure,
    area: &Area<DB>,
    x: &Axis,
    y: Axis,
    theme: &Theme,
) -> Drawn<(SeriesLabelPosition, Axis), DB> {
    let labels = figure.legend_labels();
    if labels.is_empty() {
        return Ok((SeriesLabelPosition::UpperRight, y));
    }
    let (width, height) = legend_fraction(figure, area, (x, &y), &labels, theme)?;
    let normalised: Vec<Sample> = ink(figure, (x, &y))
        .into_iter()
        .map(|(a, b)| ((a - x.lo) / (x.hi - x.lo), (b - y.lo) / (y.hi - y.lo)))
        .collect();
    let (corner, covered) = best_corner(&normalised, width, height);
    let room = 1.0 - height - CLEARANCE;
    if covered == 0 || room < 0.5 {
        return Ok((corner, y));
    }
    // Raise the top until the data under the cheaper upper corner clear it.
    let peak = |right: bool| {
        normalised
            .iter()
            .filter(|&&(a, _)| if right { a >= 1.0 - width } else { a <= width })
            .fold(0.0f64, |top, &(_, b)| top.max(b))
    };
    let (right_peak, left_peak) = (peak(true), peak(false));
    let (corner, top) = if right_peak <= left_peak {
        (SeriesLabelPosition::UpperRight, right_peak)
    } else {
        (SeriesLabelPosition::UpperLeft, left_peak)
    };
    let raised = y.lo + (y.hi - y.lo) * top / room;
    Ok((corner, y.with_top(raised.max(y.hi))))
}

/// Width and height of the legend box as fractions of the plot area,
/// estimated the way plotters lays it out (a little generously).
fn legend_fraction<DB: DrawingBackend>(
    figure: &Figure,
    area: &Area<DB>,
    axes: (&Axis, &Axis),
    labels: &[String],
    theme: &Theme,
) -> Drawn<(f64, f64), DB> {
    let (plot_w, plot_h) = Layout::new(figure, area, axes, theme)?.plot_size(area);
    let (label_w, label_h) = widest(area, labels, &theme.legend())?;
    let (marker_w, margin) = (theme.px(MARKER_AREA), theme.px(MARGIN));
    let legend_w = label_w + marker_w + 3 * margin;
    let legend_h = (label_h + theme.px(4.0)) * labels.len() as u32 + 3 * margin;
    Ok((
        f64::from(legend_w) / f64::from(plot_w.max(1)),
        f64::from(legend_h) / f64::from(plot_h.max(1)),
    ))
}

const MARKER_AREA: f64 = 30.0;
const MARGIN: f64 = 8.0;

/// Draws the legend of the labelled series in `corner`.
pub(super) fn draw_legend<'a, DB: DrawingBackend + 'a>(
    figure: &Figure,
    chart: &mut Chart<'a, DB>,
    corner: SeriesLabelPosition,
    theme: &Theme,
) -> Drawn<(), DB> {
    if figure.legend_labels().is_empty() {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(corner)
        .margin(theme.px(MARGIN))
        .legend_area_size(theme.px(MARKER_AREA))
        .label_font(theme.legend())
        .background_style(WHITE.mix(0.9).filled())
        .border_style(GRID_MAJOR.stroke_width(theme.px(1.0)))
        .draw()
}

/// Points (plot space) where the figure puts ink: line vertices and points
/// between them, markers, and a grid over every bar.
fn ink(figure: &Figure, (x, y): (&Axis, &Axis)) -> Vec<Sample> {
    let mut samples = Vec::new();
    match &figure.body {
        Body::Xy(series) => {
            for one in series {
                match one {
                    XySeries::Line(p) => {
                        samples.extend(along_path(&plot_points(&p.xs, &p.ys, x, y)))
                    }
                    XySeries::Scatter(p) => samples.extend(plot_points(&p.xs, &p.ys, x, y)),
                    XySeries::Hist { edges, counts, .. } => {
                        samples.extend(
                            hist_boxes(edges, counts, (x, y))
                                .into_iter()
                                .flat_map(inside_box),
                        );
                    }
                }
            }
        }
        Body::Bars { groups, .. } => {
            for (index, group) in groups.iter().enumerate() {
                let slot = GroupSlot::new(index, groups.len());
                let boxes = group_boxes(group, slot, y).into_iter().flatten();
                samples.extend(boxes.flat_map(inside_box));
            }
        }
        Body::Empty | Body::Heatmap(_) => {}
    }
    for reference in &figure.references {
        let ([start, end], _) = reference_ends(reference, (x, y));
        samples.extend(along_segment(start, end, 20));
    }
    samples
}

/// Vertices and points between them, so a line crossing a corner counts
/// there even when none of its vertices does.
fn along_path(points: &[Sample]) -> Vec<Sample> {
    let mut samples = points.to_vec();
    for pair in points.windows(2) {
        samples.extend(along_segment(pair[0], pair[1], 8));
    }
    samples
}

fn along_segment((x0, y0): Sample, (x1, y1): Sample, steps: u32) -> impl Iterator<Item = Sample> {
    (0..=steps).map(move |i| {
        let t = f64::from(i) / f64::from(steps);
        (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
    })
}

fn inside_box([(x0, y0), (x1, y1)]: Corners) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(24);
    for i in 0..3 {
        for j in 0..8 {
            let (s, t) = (f64::from(i) / 2.0, f64::from(j) / 7.0);
            samples.push((x0 + s * (x1 - x0), y0 + t * (y1 - y0)));
        }
    }
    samples
}

/// The corner whose `width`×`height` box (fractions of the plot) holds the
/// fewest samples (fractions of the plot, y up), and how many it holds; ties
/// go to the upper right, where readers look first.
pub(super) fn best_corner(
    samples: &[Sample],
    width: f64,
    height: f64,
) -> (SeriesLabelPosition, usize) {
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let covered = |right: bool, top: bool| {
        samples
            .iter()
            .filter(|&&(x, y)| {
                let in_x = if right { x >= 1.0 - width } else { x <= width };
                let in_y = if top { y >= 1.0 - height } else { y <= height };
                in_x && in_y
            })
            .count()
    };
    corners
        .into_iter()
        .map(|(corner, right, top)| (corner, covered(right, top)))
        .min_by_key(|&(_, count)| count)
        .unwrap_or((SeriesLabelPosition::UpperRight, 0))
}
