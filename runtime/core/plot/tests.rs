//! Every chart kind is saved and decoded; every bad input names its problem.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::legend::best_corner;
use super::ticks::Axis;
use super::*;

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn titled(title: &str) -> FigureOptions {
    FigureOptions {
        title: Some(title.into()),
        x_label: Some("x".into()),
        y_label: Some("y".into()),
        ..Default::default()
    }
}

/// Width, height and RGB pixels of a PNG file.
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let mut decoder = png::Decoder::new(std::io::BufReader::new(File::open(path).unwrap()));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![
        0;
        reader
            .output_buffer_size()
            .expect("PNG too large to decode")
    ];
    let frame = reader.next_frame(&mut buffer).unwrap();
    let channels = frame.color_type.samples();
    let pixels = buffer[..frame.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (frame.width, frame.height, pixels)
}

/// Asserts the PNG has the asked size and real content: many colours
/// (antialiased text and lines) and ink in the middle of the plot.
fn assert_drawn_png(path: &Path, width: u32, height: u32) {
    let (w, h, pixels) = decode_png(path);
    assert_eq!((w, h), (width, height), "{}", path.display());
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        colours.len() > 20,
        "only {} colours in {}",
        colours.len(),
        path.display()
    );
    let (w, h) = (w as usize, h as usize);
    let inked = (h / 5..h * 4 / 5)
        .flat_map(|y| (w / 5..w * 4 / 5).map(move |x| (x, y)))
        .filter(|&(x, y)| pixels[y * w + x] != [255, 255, 255])
        .count();
    assert!(
        inked > w * h / 200,
        "plot area nearly blank in {}",
        path.display()
    );
}

/// Saves to `name` in a fresh temporary directory and checks the PNG.
fn save_and_check(figure: &Figure, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    figure.save(&path).unwrap();
    let opts = figure.options();
    assert_drawn_png(&path, opts.width, opts.height);
    (dir, path)
}

fn sine(n: usize) -> (Vec<f64>, Vec<f64>) {
    let xs: Vec<f64> = (0..n).map(|i| i as f64 / 10.0).collect();
    let ys = xs.iter().map(|x| x.sin()).collect();
    (xs, ys)
}

#[test]
fn log_ticks_are_exact_powers_of_ten() {
    assert_eq!(log_ticks(3.0, 250.0), vec![1.0, 10.0, 100.0, 1000.0]);
    assert_eq!(log_ticks(1e-3, 1.0), vec![1e-3, 1e-2, 1e-1, 1.0]);
    assert_eq!(log_ticks(0.05, 0.05), vec![1e-2, 1e-1]);
    assert_eq!(log_ticks(1e5, 1e5), vec![1e5]);
    assert_eq!(log_ticks(1e-300, 1e-298), vec![1e-300, 1e-299, 1e-298]);
    assert_eq!(log_ticks(1000.0, 10.0), vec![10.0, 100.0, 1000.0]);
}

#[test]
fn log_ticks_of_an_invalid_range_are_empty() {
    assert!(log_ticks(0.0, 10.0).is_empty());
    assert!(log_ticks(-1.0, 10.0).is_empty());
    assert!(log_ticks(f64::NAN, 10.0).is_empty());
    assert!(log_ticks(1.0, f64::INFINITY).is_empty());
}

#[test]
fn log_axis_labels_powers_and_keeps_at_least_two() {
    // Data inside one decade still gets two labelled powers of ten.
    let axis = Axis::fit(2.0, 8.0, true, false, 6);
    assert!(axis.major.len() >= 2);
    assert_eq!(axis.major_labels(), vec!["10⁰", "10¹"]);
    let wide = Axis::fit(1e-3, 1e6, true, false, 6);
    assert_eq!(wide.label(-3.0), "10⁻³");
    assert!(wide.major.iter().all(|k| k.fract() == 0.0));
    // Twenty decades are thinned to a readable number of labels.
    let huge = Axis::fit(1e-10, 1e10, true, false, 6);
    assert!(huge.major.len() <= 7, "{:?}", huge.major);
}

#[test]
fn linear_axis_labels_are_round_numbers() {
    let axis = Axis::fit(0.0, 1.0, false, false, 6);
    assert_eq!(
        axis.major_labels(),
        vec!["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    );
    let big = Axis::fit(0.0, 3e6, false, false, 6);
    assert!(
        big.major_labels().contains(&"1×10⁶".to_string()),
        "{:?}",
        big.major_labels()
    );
    let bars = Axis::fit(0.0, 100.0, false, true, 6);
    assert_eq!(bars.lo, 0.0, "bars start at zero");
    let signed = Axis::fit(-1.0, 1.0, false, false, 4);
    assert_eq!(
        signed.major_labels(),
        vec!["\u{2212}1", "0", "1"],
        "typographic minus"
    );
}

#[test]
fn legend_over_full_height_bars_raises_the_y_axis() {
    use plotters::prelude::{IntoDrawingArea, SVGBackend};
    let names = labels(&["a", "b", "c"]);
    let mut figure = Figure::new(FigureOptions::default());
    figure
        .bar(&names, &[1.0, 1.0, 1.0], SeriesStyle::labelled("level"))
        .unwrap();
    let mut svg = String::new();
    let area = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
    let theme = render::Theme::new(800, 500, Format::Svg);
    let (x, y) = render::fit_axes(&figure);
    let before = y.hi;
    let (_, raised) = legend::place_legend(&figure, &area, &x, y, &theme).unwrap();
    assert!(raised.hi > before * 1.05, "{} -> {}", before, raised.hi);
}

#[test]
fn legend_goes_to_the_emptiest_corner() {
    let upper_right: Vec<(f64, f64)> = (0..50).map(|i| (0.9, 0.5 + i as f64 / 100.0)).collect();
    let (corner, covered) = best_corner(&upper_right, 0.3, 0.3);
    assert!(matches!(
        corner,
        plotters::prelude::SeriesLabelPosition::UpperLeft
    ));
    assert_eq!(covered, 0);
    let (corner, _) = best_corner(&[], 0.3, 0.3);
    assert!(matches!(
        corner,
        plotters::prelude::SeriesLabelPosition::UpperRight
    ));
}

#[test]
fn line_plot_saves_png_of_the_asked_size() {
    let (xs, ys) = sine(100);
    let mut figure = Figure::new(FigureOptions {
        width: 640,
        height: 400,
        ..titled("sine")
    });
    figure.line(&xs, &ys, SeriesStyle::labelled("sin")).unwrap();
    save_and_check(&figure, "line.png");
    save_and_check(&figure, "UPPER.PNG");
}

#[test]
fn extreme_magnitudes_save_without_hanging() {
    let mut figure = Figure::new(FigureOptions::default());
    figure
        .line(&[-1e308, 1e308], &[1e-300, 2e-300], SeriesStyle::default())
        .unwrap();
    figure
        .scatter(&[0.0], &[0.0], SeriesStyle::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    figure.save(&dir.path().join("extreme.png")).unwrap();
    let mut heat = Figure::new(FigureOptions::default());
    heat.heatmap(&[vec![-1e308, 1e308]]).unwrap();
    heat.save(&dir.path().join("extreme_heatmap.png")).unwrap();
}

#[test]
fn log_log_line_plot_with_legend_saves() {
    let xs: Vec<f64> = (1..50).map(|i| 10f64.powf(i as f64 / 8.0)).collect();
    let ys: Vec<f64> = xs.iter().map(|x| 3.0 * x.powf(-0.3)).collect();
    let mut figure = Figure::new(FigureOptions {
        log_x: true,
        log_y: true,
        ..titled("power law")
    });
    figure.line(&xs, &ys, SeriesStyle::labelled("fit")).unwrap();
    figure
        .scatter(
            &xs,
            &ys,
            SeriesStyle::labelled("runs").with_color("#d55e00"),
        )
        .unwrap();
    save_and_check(&figure, "loglog.png");
}

#[test]
fn title_is_drawn_with_the_embedded_font() {
    let (xs, ys) = sine(10);
    let mut figure = Figure::new(titled("A title that must render"));
    figure.line(&xs, &ys, SeriesStyle::default()).unwrap();
    let (_dir, path) = save_and_check(&figure, "title.png");
    let (w, _, pixels) = decode_png(&path);
    // The title band sits above the plot; ink there can only be the title.
    let band = &pixels[..w as usize * 25];
    assert!(
        band.iter().any(|&p| p != [255, 255, 255]),
        "title not drawn"
    );
}

#[test]
fn svg_is_xml_with_the_title_as_text() {
    let (xs, ys) = sine(20);
    let mut figure = Figure::new(titled("SVG title"));
    figure.line(&xs, &ys, SeriesStyle::labelled("sin")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("figure.SVG");
    figure.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let document = roxmltree::Document::parse(&text).unwrap();
    let texts: Vec<&str> = document
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    assert!(texts.contains(&"SVG title"), "{texts:?}");
    assert!(texts.contains(&"sin"), "legend entry missing: {texts:?}");
}

#[test]
fn scatter_saves() {
    let (xs, ys) = sine(60);
    let mut figure = Figure::new(FigureOptions::default());
    figure.scatter(&xs, &ys, SeriesStyle::default()).unwrap();
    save_and_check(&figure, "scatter.png");
}

#[test]
fn histogram_with_log_y_saves() {
    // Many empty bins: log y must skip them, not take log(0).
    let values: Vec<f64> = (0..1000)
        .map(|i| ((i * i) % 97) as f64 + (i % 3) as f64 * 100.0)
        .collect();
    let mut figure = Figure::new(FigureOptions {
        log_y: true,
        ..titled("hist")
    });
    figure
        .hist(&values, 80, SeriesStyle::labelled("values"))
        .unwrap();
    save_and_check(&figure, "hist.png");
}

#[test]
fn histogram_of_equal_values_and_log_x_bins_save() {
    let mut figure = Figure::new(FigureOptions::default());
    figure.hist(&[2.0; 10], 5, SeriesStyle::default()).unwrap();
    save_and_check(&figure, "constant.png");
    let mut figure = Figure::new(FigureOptions {
        log_x: true,
        ..Default::default()
    });
    let values: Vec<f64> = (1..500).map(|i| 1.02f64.powi(i)).collect();
    figure.hist(&values, 20, SeriesStyle::default()).unwrap();
    save_and_check(&figure, "log_x_hist.png");
}

#[test]
fn bar_chart_saves_with_grouped_bars() {
    let names = labels(&["relu", "topk", "jumprelu"]);
    let mut figure = Figure::new(titled("bars"));
    figure
        .bar(&names, &[0.3, 0.2, 0.25], SeriesStyle::labelled("layer 4"))
        .unwrap();
    figure
        .bar(&names, &[0.35, 0.22, 0.2], SeriesStyle::labelled("layer 8"))
        .unwrap();
    figure
        .hline(0.1, SeriesStyle::labelled("baseline"))
        .unwrap();
    save_and_check(&figure, "bar.png");
}

#[test]
fn stacked_bars_save_with_negative_layers() {
    let names = labels(&["a", "b", "c", "d"]);
    let series = vec![
        ("up".to_string(), vec![1.0, 2.0, 3.0, 4.0]),
        ("more".to_string(), vec![2.0, 1.0, 0.5, 0.0]),
        ("down".to_string(), vec![-1.0, -0.5, 0.0, -2.0]),
    ];
    let mut figure = Figure::new(titled("stacked"));
    figure.bars(&names, &series).unwrap();
    save_and_check(&figure, "stacked.png");
}

#[test]
fn heatmap_saves_with_a_colour_bar() {
    let rows: Vec<Vec<f64>> = (0..12)
        .map(|r| (0..20).map(|c| (r * c) as f64).collect())
        .collect();
    let mut figure = Figure::new(titled("heatmap"));
    figure.heatmap(&rows).unwrap();
    let (_dir, path) = save_and_check(&figure, "heatmap.png");
    let (w, h, pixels) = decode_png(&path);
    // Viridis runs from dark purple (68, 1, 84) to yellow (254, 232, 37).
    let yellowish = pixels
        .iter()
        .filter(|p| p[0] > 200 && p[1] > 200 && p[2] < 100)
        .count();
    assert!(yellowish > (w * h) as usize / 500);
}

#[test]
fn constant_heatmap_saves() {
    let mut figure = Figure::new(FigureOptions::default());
    figure.heatmap(&[vec![1.0, 1.0], vec![1.0, 1.0]]).unwrap();
    save_and_check(&figure, "constant_heatmap.png");
}

#[test]
fn reference_lines_alone_and_with_lines_save() {
    let (xs, ys) = sine(50);
    let mut figure = Figure::new(FigureOptions::default());
    figure.line(&xs, &ys, SeriesStyle::default()).unwrap();
    figure
        .hline(0.5, SeriesStyle::default().with_color("green"))
        .unwrap();
    figure.vline(2.0, SeriesStyle::labelled("step 2")).unwrap();
    save_and_check(&figure, "references.png");
    let mut only = Figure::new(FigureOptions::default());
    only.hline(1.0, SeriesStyle::default()).unwrap();
    only.save(&tempfile::tempdir().unwrap().path().join("h.svg"))
        .unwrap();
}

#[test]
fn plot_shortcut_saves_and_scales_with_size() {
    let dir = tempfile::tempdir().unwrap();
    let (xs, ys) = sine(30);
    plot(&xs, &ys, &dir.path().join("quick.png")).unwrap();
    assert_drawn_png(&dir.path().join("quick.png"), 800, 500);
    let mut big = Figure::new(FigureOptions {
        width: 1600,
        height: 1000,
        ..titled("big")
    });
    big.line(&xs, &ys, SeriesStyle::labelled("sin")).unwrap();
    save_and_check(&big, "big.png");
}

/// The error's message, for checking that it names the problem.
fn message(result: Result<(), PlotError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn mismatched_lengths_are_rejected() {
    let mut figure = Figure::new(FigureOptions::default());
    let result = figure.line(&[1.0, 2.0], &[1.0], SeriesStyle::default());
    assert!(matches!(
        result,
        Err(PlotError::LengthMismatch {
            left_len: 2,
            right_len: 1,
            ..
        })
    ));
    let bar = figure_bar_mismatch();
    assert!(
        bar.contains("labels has 2 values but values has 3"),
        "{bar}"
    );
}

fn figure_bar_mismatch() -> String {
    let mut figure = Figure::new(FigureOptions::default());
    message(figure.bar(
        &labels(&["a", "b"]),
        &[1.0, 2.0, 3.0],
        SeriesStyle::default(),
    ))
}

#[test]
fn empty_data_is_rejected() {
    let mut figure = Figure::new(FigureOptions::default());
    assert!(matches!(
        figure.line(&[], &[], SeriesStyle::default()),
        Err(PlotError::Empty { .. })
    ));
    assert!(matches!(
        figure.hist(&[], 10, SeriesStyle::default()),
        Err(PlotError::Empty { .. })
    ));
    assert!(matches!(
        figure.bars(&[], &[]),
        Err(PlotError::Empty { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let nothing = figure.save(&dir.path().join("empty.png"));
    assert!(matches!(nothing, Err(PlotError::NothingToPlot { .. })));
}

#[test]
fn nan_and_infinity_are_rejected_with_their_index() {
    let mut figure = Figure::new(FigureOptions::default());
    let nan = message(figure.line(&[1.0, 2.0], &[1.0, f64::NAN], SeriesStyle::default()));
    assert!(nan.contains("ys[1] is NaN"), "{nan}");
    let inf = message(figure.scatter(&[f64::INFINITY], &[1.0], SeriesStyle::default()));
    assert!(inf.contains("xs[0] is inf"), "{inf}");
    assert!(figure
        .hline(f64::NEG_INFINITY, SeriesStyle::default())
        .is_err());
    assert!(figure
        .hist(&[1.0, f64::NAN], 3, SeriesStyle::default())
        .is_err());
}

#[test]
fn non_positive_values_on_a_log_axis_name_the_axis_and_value() {
    let mut figure = Figure::new(FigureOptions {
        log_y: true,
        ..Default::default()
    });
    let error = message(figure.line(&[1.0, 2.0, 3.0], &[1.0, 0.0, 2.0], SeriesStyle::default()));
    assert!(error.contains("y axis is logarithmic"), "{error}");
    assert!(error.contains("ys[1] = 0"), "{error}");
    let mut figure = Figure::new(FigureOptions {
        log_x: true,
        ..Default::default()
    });
    let error = message(figure.scatter(&[-2.5], &[1.0], SeriesStyle::default()));
    assert!(
        error.contains("x axis") && error.contains("-2.5"),
        "{error}"
    );
    assert!(figure.vline(0.0, SeriesStyle::default()).is_err());
    assert!(figure
        .hist(&[1.0, -1.0], 4, SeriesStyle::default())
        .is_err());
}

#[test]
fn unknown_extension_is_named() {
    let (xs, ys) = sine(5);
    let mut figure = Figure::new(FigureOptions::default());
    figure.line(&xs, &ys, SeriesStyle::default()).unwrap();
    let error = message(figure.save(Path::new("figure.jpeg")));
    assert!(
        error.contains("\"jpeg\"") && error.contains(".png or .svg"),
        "{error}"
    );
    let none = figure.save(Path::new("figure"));
    assert!(matches!(none, Err(PlotError::UnknownExtension { .. })));
}

#[test]
fn unwritable_path_is_named() {
    let (xs, ys) = sine(5);
    let mut figure = Figure::new(FigureOptions::default());
    figure.line(&xs, &ys, SeriesStyle::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A regular file where a folder should be: the folder cannot be made.
    std::fs::write(dir.path().join("missing"), b"a file").unwrap();
    let path = dir.path().join("missing").join("figure.png");
    let error = figure.save(&path);
    assert!(matches!(error, Err(PlotError::Unwritable { .. })));
    let text = message(error);
    assert!(
        text.starts_with("cannot write") && text.contains("missing"),
        "{text}"
    );
}

#[test]
fn zero_bins_are_rejected() {
    let mut figure = Figure::new(FigureOptions::default());
    let result = figure.hist(&[1.0, 2.0], 0, SeriesStyle::default());
    assert!(matches!(result, Err(PlotError::ZeroBins)));
}

#[test]
fn empty_and_ragged_heatmaps_are_rejected() {
    let mut figure = Figure::new(FigureOptions::default());
    assert!(matches!(figure.heatmap(&[]), Err(PlotError::Empty { .. })));
    assert!(matches!(
        figure.heatmap(&[vec![]]),
        Err(PlotError::Empty { .. })
    ));
    let nan = message(figure.heatmap(&[vec![1.0, 2.0], vec![3.0, f64::NAN]]));
    assert!(nan.contains("rows[1][1] is NaN"), "{nan}");
    let ragged = figure.heatmap(&[vec![1.0, 2.0], vec![3.0]]);
    assert!(matches!(
        ragged,
        Err(PlotError::RaggedRows {
            row: 1,
            len: 1,
            expected: 2
        })
    ));
    let mut log = Figure::new(FigureOptions {
        log_y: true,
        ..Default::default()
    });
    assert!(matches!(
        log.heatmap(&[vec![1.0]]),
        Err(PlotError::LogHeatmap)
    ));
}

#[test]
fn mixing_incompatible_charts_is_rejected() {
    let (xs, ys) = sine(5);
    let mut heat = Figure::new(FigureOptions::default());
    heat.heatmap(&[vec![1.0, 2.0]]).unwrap();
    let error = message(heat.line(&xs, &ys, SeriesStyle::default()));
    assert!(
        error.contains("cannot add a line to a figure that holds a heatmap"),
        "{error}"
    );
    let mut lines = Figure::new(FigureOptions::default());
    lines.line(&xs, &ys, SeriesStyle::default()).unwrap();
    assert!(matches!(
        lines.heatmap(&[vec![1.0]]),
        Err(PlotError::Incompatible { .. })
    ));
    let names = labels(&["a"]);
    assert!(lines.bar(&names, &[1.0], SeriesStyle::default()).is_err());
    let mut bars = Figure::new(FigureOptions::default());
    bars.bar(&names, &[1.0], SeriesStyle::default()).unwrap();
    assert!(bars.vline(0.0, SeriesStyle::default()).is_err());
    let other = bars.bar(&labels(&["b"]), &[1.0], SeriesStyle::default());
    assert!(matches!(other, Err(PlotError::BarLabelsDiffer { .. })));
}

#[test]
fn colours_are_hex_or_palette_names() {
    let mut figure = Figure::new(FigureOptions::default());
    let ok = ["#0072B2", "#ffffff", "vermillion", "Sky"];
    for colour in ok {
        let style = SeriesStyle::default().with_color(colour);
        figure.line(&[1.0], &[1.0], style).unwrap();
    }
    for colour in ["red-ish", "#12345", "#gggggg", ""] {
        let style = SeriesStyle::default().with_color(colour);
        let result = figure.line(&[1.0], &[1.0], style);
        assert!(
            matches!(result, Err(PlotError::UnknownColor(_))),
            "{colour:?}"
        );
    }
}

#[test]
fn out_of_range_sizes_are_rejected() {
    let mut figure = Figure::new(FigureOptions {
        width: 10,
        ..Default::default()
    });
    figure.line(&[1.0], &[1.0], SeriesStyle::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let result = figure.save(&dir.path().join("tiny.png"));
    assert!(matches!(result, Err(PlotError::BadSize { width: 10, .. })));
}
