//! Figures of feature studies, in the paper's forms.
use crate::analysis::SpecificityBin;
use crate::plot::{Figure, FigureOptions, SeriesStyle};
use crate::Result;

/// The specificity plot: per activation level, the share of contexts given
/// each score, stacked (the paper's figure).
pub fn specificity_figure(bins: &[SpecificityBin], title: &str) -> Result<Figure> {
    let labels: Vec<String> = bins
        .iter()
        .map(|b| format!("{:.2}–{:.2}", b.low, b.high))
        .collect();
    let names = [
        "0 unrelated",
        "1 context",
        "2 loosely related",
        "3 identifies it",
    ];
    let series: Vec<(String, Vec<f64>)> = names
        .iter()
        .enumerate()
        .map(|(score, name)| {
            let shares = bins
                .iter()
                .map(|b| {
                    let n: u64 = b.scores.iter().sum();
                    b.scores[score] as f64 / n.max(1) as f64
                })
                .collect();
            (name.to_string(), shares)
        })
        .collect();
    let mut figure = Figure::new(FigureOptions {
        title: Some(title.to_string()),
        x_label: Some("feature activation".into()),
        y_label: Some("fraction of contexts".into()),
        ..Default::default()
    });
    figure.bars(&labels, &series)?;
    Ok(figure)
}

/// The completeness plot: per SAE, the fraction of concepts that have a
/// feature against how often they occur, concepts grouped into `bins`
/// frequency ranges of equal count (concepts never seen are left out: a log
/// axis has no zero).
pub fn completeness_figure(
    frequencies: &[f64],
    per_sae: &[(String, Vec<bool>)],
    bins: usize,
) -> Result<Figure> {
    let mut seen: Vec<usize> = (0..frequencies.len())
        .filter(|&i| frequencies[i] > 0.0)
        .collect();
    seen.sort_by(|&a, &b| frequencies[a].total_cmp(&frequencies[b]));
    let bins = bins.clamp(1, seen.len().max(1));
    let groups: Vec<&[usize]> = seen.chunks(seen.len().div_ceil(bins).max(1)).collect();
    let mut figure = Figure::new(FigureOptions {
        title: Some("completeness: concepts with a feature".into()),
        x_label: Some("concept frequency (per token)".into()),
        y_label: Some("fraction with a specific feature".into()),
        log_x: true,
        ..Default::default()
    });
    let xs: Vec<f64> = groups
        .iter()
        .map(|g| {
            let logs: f64 = g.iter().map(|&i| frequencies[i].log10()).sum();
            10f64.powf(logs / g.len() as f64)
        })
        .collect();
    for (name, has) in per_sae {
        let ys: Vec<f64> = groups
            .iter()
            .map(|g| g.iter().filter(|&&i| has[i]).count() as f64 / g.len() as f64)
            .collect();
        figure.line(&xs, &ys, SeriesStyle::labelled(name.clone()))?;
    }
    Ok(figure)
}
