//! Drawing the series of a line/scatter/hist figure or a bar chart, and the
//! plot-space geometry of each, which the legend placement reuses.

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::render::{Chart, Drawn, Theme};
use super::ticks::Axis;
use super::{BarGroup, Look, Reference, XySeries};

/// A point in plot space.
pub(super) type Sample = (f64, f64);

/// Lower-left and upper-right corners of a bar, in plot space.
pub(super) type Corners = [Sample; 2];

fn line_style(look: &Look, theme: &Theme) -> ShapeStyle {
    rgb(look).stroke_width(theme.px(2.0))
}

fn rgb(look: &Look) -> RGBColor {
    RGBColor(look.rgb.0, look.rgb.1, look.rgb.2)
}

pub(super) fn draw_xy<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    series: &XySeries,
    (x, y): (&Axis, &Axis),
    theme: &Theme,
) -> Drawn<(), DB> {
    match series {
        XySeries::Line(p) => {
            let points = plot_points(&p.xs, &p.ys, x, y);
            let style = line_style(&p.look, theme);
            let anno = chart.draw_series(std::iter::once(PathElement::new(points, style)))?;
            if let Some(label) = &p.look.label {
                let reach = theme.px(20.0) as i32;
                anno.label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + reach, y)], style));
            }
            Ok(())
        }
        XySeries::Scatter(p) => {
            let points = plot_points(&p.xs, &p.ys, x, y);
            let radius = theme.px(3.5);
            let fill = rgb(&p.look).mix(0.8).filled();
            let dots = points.iter().map(|&point| Circle::new(point, radius, fill));
            let anno = chart.draw_series(dots)?;
            if let Some(label) = &p.look.label {
                let centre = theme.px(10.0) as i32;
                anno.label(label)
                    .legend(move |(x, y)| Circle::new((x + centre, y), radius, fill));
            }
            Ok(())
        }
        XySeries::Hist {
            edges,
            counts,
            look,
        } => {
            // See-through so overlaid histograms stay readable.
            draw_boxes(chart, &hist_boxes(edges, counts, (x, y)), look, 0.75, theme)
        }
    }
}

/// One box per non-empty bin; a log axis cannot show an empty one.
pub(super) fn hist_boxes(edges: &[f64], counts: &[f64], (x, y): (&Axis, &Axis)) -> Vec<Corners> {
    edges
        .windows(2)
        .zip(counts)
        .filter(|(_, &count)| count > 0.0)
        .map(|(e, &count)| {
            [
                (x.to_plot(e[0]), y.baseline()),
                (x.to_plot(e[1]), y.to_plot(count)),
            ]
        })
        .collect()
}

pub(super) fn plot_points(xs: &[f64], ys: &[f64], x: &Axis, y: &Axis) -> Vec<Sample> {
    xs.iter()
        .zip(ys)
        .map(|(&a, &b)| (x.to_plot(a), y.to_plot(b)))
        .collect()
}

/// Filled boxes (plot-space corners) with a white edge where they are wide
/// enough for one to show; one legend entry for all of them.
fn draw_boxes<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    boxes: &[Corners],
    look: &Look,
    opacity: f64,
    theme: &Theme,
) -> Drawn<(), DB> {
    let fill = rgb(look).mix(opacity).filled();
    let anno = chart.draw_series(boxes.iter().map(|&corners| Rectangle::new(corners, fill)))?;
    if let Some(label) = &look.label {
        let half = theme.px(6.0) as i32;
        anno.label(label).legend(move |(x, y)| {
            Rectangle::new([(x + 4, y - half), (x + 4 + 2 * half, y + half)], fill)
        });
    }
    let narrowest = boxes
        .iter()
        .map(|[a, b]| (chart.backend_coord(a).0 - chart.backend_coord(b).0).abs())
        .min()
        .unwrap_or(0);
    if narrowest >= 6 {
        let edge = WHITE.stroke_width(theme.px(1.0));
        chart.draw_series(boxes.iter().map(|&corners| Rectangle::new(corners, edge)))?;
    }
    Ok(())
}

/// Where a group of bars sits inside each category's unit-wide slot.
#[derive(Debug, Clone, Copy)]
pub(super) struct GroupSlot {
    offset: f64,
    width: f64,
}

impl GroupSlot {
    /// Groups share 80% of the slot, leaving a gap between categories.
    pub(super) fn new(index: usize, count: usize) -> GroupSlot {
        let width = 0.8 / count as f64;
        GroupSlot {
            offset: -0.4 + width * index as f64,
            width,
        }
    }
}

/// One drawn piece of a bar, in data space.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    category: usize,
    pub bottom: f64,
    pub top: f64,
}

/// Per layer, its segments: positive values stack up from zero and
/// negative ones down, so signs never cancel visually.
pub(super) fn stacks(group: &BarGroup) -> Vec<Vec<Segment>> {
    let categories = group.layers.first().map_or(0, |(values, _)| values.len());
    let (mut up, mut down) = (vec![0.0; categories], vec![0.0; categories]);
    let mut layers = Vec::with_capacity(group.layers.len());
    for (values, _) in &group.layers {
        let mut segments = Vec::with_capacity(values.len());
        for (category, &value) in values.iter().enumerate() {
            let level = if value >= 0.0 { &mut up } else { &mut down };
            let bottom = level[category];
            level[category] += value;
            segments.push(Segment {
                category,
                bottom,
                top: level[category],
            });
        }
        layers.push(segments);
    }
    layers
}

/// Per layer of the group, the boxes of its segments.
pub(super) fn group_boxes(group: &BarGroup, slot: GroupSlot, y: &Axis) -> Vec<Vec<Corners>> {
    // A log axis has no zero: bars start at its bottom edge.
    let level = |v: f64| {
        if y.log && v <= 0.0 {
            y.baseline()
        } else {
            y.to_plot(v)
        }
    };
    stacks(group)
        .into_iter()
        .map(|segments| {
            segments
                .iter()
                .map(|s| {
                    let left = s.category as f64 + slot.offset;
                    [(left, level(s.bottom)), (left + slot.width, level(s.top))]
                })
                .collect()
        })
        .collect()
}

pub(super) fn draw_group<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    group: &BarGroup,
    slot: GroupSlot,
    y: &Axis,
    theme: &Theme,
) -> Drawn<(), DB> {
    for (boxes, (_, look)) in group_boxes(group, slot, y).iter().zip(&group.layers) {
        draw_boxes(chart, boxes, look, 1.0, theme)?;
    }
    Ok(())
}

/// The ends of a reference line, spanning the plot.
pub(super) fn reference_ends<'a>(
    reference: &'a Reference,
    (x, y): (&Axis, &Axis),
) -> (Corners, &'a Look) {
    match reference {
        Reference::Horizontal(v, look) => ([(x.lo, y.to_plot(*v)), (x.hi, y.to_plot(*v))], look),
        Reference::Vertical(v, look) => ([(x.to_plot(*v), y.lo), (x.to_plot(*v), y.hi)], look),
    }
}

/// A dashed line across the whole plot.
pub(super) fn draw_reference<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    reference: &Reference,
    axes: (&Axis, &Axis),
    theme: &Theme,
) -> Drawn<(), DB> {
    let (ends, look) = reference_ends(reference, axes);
    let style = rgb(look).stroke_width(theme.px(1.5));
    let (dash, gap) = (theme.px(6.0), theme.px(4.0));
    let line = DashedPathElement::new(ends, dash, gap, style);
    let anno = chart.draw_series(std::iter::once(line))?;
    if let Some(label) = &look.label {
        let reach = theme.px(20.0) as i32;
        anno.label(label).legend(move |(x, y)| {
            DashedPathElement::new(vec![(x, y), (x + reach, y)], dash, gap, style)
        });
    }
    Ok(())
}
