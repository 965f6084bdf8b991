//! Figures from scripts: `figure(#{...}).line(xs, ys).save("loss.png")`.
use crate::core::plot::{Figure as CoreFigure, FigureOptions, SeriesStyle};
use crate::script::convert::{self, Options};
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};
use std::cell::RefCell;
use std::rc::Rc;

/// A figure shared between handles, so chained calls and later calls add to the same plot.
pub type Figure = Rc<RefCell<CoreFigure>>;

fn figure_options(map: &Map) -> ScriptResult<FigureOptions> {
    let o = Options::new(
        map,
        "figure",
        &[
            "title", "x_label", "y_label", "log_x", "log_y", "width", "height",
        ],
    )?;
    let defaults = FigureOptions::default();
    let side = |key: &str, default: u32| -> ScriptResult<u32> {
        let value = o.int(key, default as i64)?;
        u32::try_from(value).map_err(|_| {
            runtime_error(format!(
                "figure: {key} must be a positive number of pixels, got {value}"
            ))
        })
    };
    Ok(FigureOptions {
        title: o.string("title")?,
        x_label: o.string("x_label")?,
        y_label: o.string("y_label")?,
        log_x: o.bool("log_x", false)?,
        log_y: o.bool("log_y", false)?,
        width: side("width", defaults.width)?,
        height: side("height", defaults.height)?,
    })
}

fn style(map: &Map, what: &str, extra: &[&str]) -> ScriptResult<SeriesStyle> {
    let mut known = vec!["label", "color"];
    known.extend_from_slice(extra);
    let o = Options::new(map, what, &known)?;
    Ok(SeriesStyle {
        label: o.string("label")?,
        color: o.string("color")?,
    })
}

fn labels(array: &Array) -> Vec<String> {
    array
        .iter()
        .map(|v| v.clone().into_string().unwrap_or_else(|_| v.to_string()))
        .collect()
}

/// A tensor [rows, cols] or an array of arrays of numbers, as rows.
fn matrix(value: &Dynamic) -> ScriptResult<Vec<Vec<f64>>> {
    if let Some(t) = value.read_lock::<crate::core::Tensor>() {
        let shape = t.shape();
        if shape.len() != 2 {
            return Err(runtime_error(format!(
                "heatmap: expected a 2-d tensor, got shape {shape:?}"
            )));
        }
        let values = t.to_f64_vec()?;
        let cols = shape[1].max(1) as usize;
        return Ok(values.chunks(cols).map(<[f64]>::to_vec).collect());
    }
    let Some(rows) = value.read_lock::<Array>() else {
        return Err(runtime_error(format!(
            "heatmap: expected a tensor or an array of rows, got {}",
            value.type_name()
        )));
    };
    rows.iter()
        .map(|row| convert::floats(row, "heatmap row"))
        .collect()
}

fn added(fig: &Figure, result: Result<(), crate::core::plot::PlotError>) -> ScriptResult<Figure> {
    result.map_err(crate::core::Error::from)?;
    Ok(fig.clone())
}

#[export_module]
pub mod plot_api {
    use super::{added, figure_options, labels, matrix, style};
    use crate::core::plot::{self, SeriesStyle};
    use crate::script::console;
    use crate::script::convert::{self, Options};
    use crate::script::error::{runtime_error, ScriptResult};
    use rhai::{Array, Dynamic, Map, FLOAT, INT};
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;

    pub type Figure = super::Figure;

    /// A new figure: `figure(#{title, x_label, y_label, log_x, log_y, width, height})`.
    #[rhai_fn(return_raw)]
    pub fn figure(opts: Map) -> ScriptResult<Figure> {
        Ok(Rc::new(RefCell::new(plot::Figure::new(figure_options(
            &opts,
        )?))))
    }

    /// A new figure with default layout. `let fig = figure();`
    #[rhai_fn(name = "figure", return_raw)]
    pub fn figure_default() -> ScriptResult<Figure> {
        figure(Map::new())
    }

    /// Adds a line through (xs, ys); arrays or tensors. `fig.line(steps, losses)`
    #[rhai_fn(pure, return_raw)]
    pub fn line(fig: &mut Figure, xs: Dynamic, ys: Dynamic) -> ScriptResult<Figure> {
        line_with(fig, xs, ys, Map::new())
    }

    /// Adds a labelled/coloured line. `fig.line(xs, ys, #{label: "relu", color: "orange"})`
    #[rhai_fn(name = "line", pure, return_raw)]
    pub fn line_with(
        fig: &mut Figure,
        xs: Dynamic,
        ys: Dynamic,
        opts: Map,
    ) -> ScriptResult<Figure> {
        let (xs, ys) = (
            convert::floats(&xs, "line xs")?,
            convert::floats(&ys, "line ys")?,
        );
        let result = fig.borrow_mut().line(&xs, &ys, style(&opts, "line", &[])?);
        added(fig, result)
    }

    /// Adds points at (xs, ys). `fig.scatter(xs, ys)`
    #[rhai_fn(pure, return_raw)]
    pub fn scatter(fig: &mut Figure, xs: Dynamic, ys: Dynamic) -> ScriptResult<Figure> {
        scatter_with(fig, xs, ys, Map::new())
    }

    /// Adds labelled/coloured points. `fig.scatter(xs, ys, #{label: "runs"})`
    #[rhai_fn(name = "scatter", pure, return_raw)]
    pub fn scatter_with(
        fig: &mut Figure,
        xs: Dynamic,
        ys: Dynamic,
        opts: Map,
    ) -> ScriptResult<Figure> {
        let (xs, ys) = (
            convert::floats(&xs, "scatter xs")?,
            convert::floats(&ys, "scatter ys")?,
        );
        let result = fig
            .borrow_mut()
            .scatter(&xs, &ys, style(&opts, "scatter", &[])?);
        added(fig, result)
    }

    /// A histogram of values (30 bins). `fig.hist(x.flatten())`
    #[rhai_fn(pure, return_raw)]
    pub fn hist(fig: &mut Figure, values: Dynamic) -> ScriptResult<Figure> {
        hist_with(fig, values, Map::new())
    }

    /// A histogram with options `#{bins, log_y, label, color}`. `fig.hist(d, #{bins: 50, log_y: true})`
    #[rhai_fn(name = "hist", pure, return_raw)]
    pub fn hist_with(fig: &mut Figure, values: Dynamic, opts: Map) -> ScriptResult<Figure> {
        let values = convert::floats(&values, "hist values")?;
        let o = Options::new(&opts, "hist", &["bins", "log_y", "label", "color"])?;
        let bins = o.int("bins", 30)?;
        if bins <= 0 {
            return Err(runtime_error(format!("hist: bins must be > 0, got {bins}")));
        }
        if o.has("log_y") {
            fig.borrow_mut().set_log_y(o.bool("log_y", false)?);
        }
        let s = SeriesStyle {
            label: o.string("label")?,
            color: o.string("color")?,
        };
        let result = fig.borrow_mut().hist(&values, bins as usize, s);
        added(fig, result)
    }

    /// One bar per label. `fig.bar(["a", "b"], [3, 5])`
    #[rhai_fn(pure, return_raw)]
    pub fn bar(fig: &mut Figure, names: Array, values: Dynamic) -> ScriptResult<Figure> {
        bar_with(fig, names, values, Map::new())
    }

    /// Labelled/coloured bars; repeated calls group side by side. `fig.bar(l, v, #{label: "1M"})`
    #[rhai_fn(name = "bar", pure, return_raw)]
    pub fn bar_with(
        fig: &mut Figure,
        names: Array,
        values: Dynamic,
        opts: Map,
    ) -> ScriptResult<Figure> {
        let values = convert::floats(&values, "bar values")?;
        let result = fig
            .borrow_mut()
            .bar(&labels(&names), &values, style(&opts, "bar", &[])?);
        added(fig, result)
    }

    /// Stacked bars: one series per map entry. `fig.bars(["1M", "4M"], #{alive: [98, 65], dead: [2, 35]})`
    #[rhai_fn(pure, return_raw)]
    pub fn bars(fig: &mut Figure, names: Array, series: Map) -> ScriptResult<Figure> {
        let series = series
            .iter()
            .map(|(name, v)| Ok((name.to_string(), convert::floats(v, "bars values")?)))
            .collect::<ScriptResult<Vec<_>>>()?;
        let result = fig.borrow_mut().bars(&labels(&names), &series);
        added(fig, result)
    }

    /// A heatmap of a 2-d tensor or array of rows (row 0 at the top). `fig.heatmap(cos_sim)`
    #[rhai_fn(pure, return_raw)]
    pub fn heatmap(fig: &mut Figure, values: Dynamic) -> ScriptResult<Figure> {
        let rows = matrix(&values)?;
        let result = fig.borrow_mut().heatmap(&rows);
        added(fig, result)
    }

    /// A horizontal reference line. `fig.hline(0.0)`
    #[rhai_fn(pure, return_raw)]
    pub fn hline(fig: &mut Figure, y: FLOAT) -> ScriptResult<Figure> {
        let result = fig.borrow_mut().hline(y, SeriesStyle::default());
        added(fig, result)
    }

    /// A horizontal reference line at an integer. `fig.hline(1)`
    #[rhai_fn(name = "hline", pure, return_raw)]
    pub fn hline_int(fig: &mut Figure, y: INT) -> ScriptResult<Figure> {
        hline(fig, y as FLOAT)
    }

    /// A labelled/coloured horizontal line. `fig.hline(0.9, #{label: "target"})`
    #[rhai_fn(name = "hline", pure, return_raw)]
    pub fn hline_with(fig: &mut Figure, y: FLOAT, opts: Map) -> ScriptResult<Figure> {
        let result = fig.borrow_mut().hline(y, style(&opts, "hline", &[])?);
        added(fig, result)
    }

    /// A vertical reference line. `fig.vline(1000.0)`
    #[rhai_fn(pure, return_raw)]
    pub fn vline(fig: &mut Figure, x: FLOAT) -> ScriptResult<Figure> {
        let result = fig.borrow_mut().vline(x, SeriesStyle::default());
        added(fig, result)
    }

    /// A vertical reference line at an integer. `fig.vline(100)`
    #[rhai_fn(name = "vline", pure, return_raw)]
    pub fn vline_int(fig: &mut Figure, x: INT) -> ScriptResult<Figure> {
        vline(fig, x as FLOAT)
    }

    /// A labelled/coloured vertical line. `fig.vline(5.0, #{label: "warm-up end"})`
    #[rhai_fn(name = "vline", pure, return_raw)]
    pub fn vline_with(fig: &mut Figure, x: FLOAT, opts: Map) -> ScriptResult<Figure> {
        let result = fig.borrow_mut().vline(x, style(&opts, "vline", &[])?);
        added(fig, result)
    }

    /// Writes the figure to `.png` or `.svg` (by extension); returns the path.
    /// `fig.save("runs/demo/loss.png")`
    #[rhai_fn(pure, return_raw)]
    pub fn save(fig: &mut Figure, path: &str) -> ScriptResult<String> {
        let path_buf = PathBuf::from(path);
        fig.borrow()
            .save(&path_buf)
            .map_err(crate::core::Error::from)?;
        console::record_image(path_buf);
        Ok(path.to_string())
    }

    /// Shows the figure without choosing a file: inline in Jupyter and in
    /// notebook reports, as `display(fig)` does. `fig.show()`
    #[rhai_fn(pure, return_raw)]
    pub fn show(fig: &mut Figure) -> ScriptResult<()> {
        crate::script::api::console::display_figure(fig)
    }

    /// One-line plot of ys against xs saved to a file. `plot(steps, losses, "loss.png")`
    #[rhai_fn(return_raw)]
    pub fn plot(xs: Dynamic, ys: Dynamic, path: &str) -> ScriptResult<String> {
        let (xs, ys) = (
            convert::floats(&xs, "plot xs")?,
            convert::floats(&ys, "plot ys")?,
        );
        plot::plot(&xs, &ys, Path::new(path)).map_err(crate::core::Error::from)?;
        console::record_image(PathBuf::from(path));
        Ok(path.to_string())
    }

    /// Printable form of a figure.
    #[rhai_fn(name = "to_string", pure)]
    pub fn figure_to_string(fig: &mut Figure) -> String {
        let f = fig.borrow();
        let o = f.options();
        format!(
            "figure({}, {}x{})",
            o.title.clone().unwrap_or_default(),
            o.width,
            o.height
        )
    }
}
