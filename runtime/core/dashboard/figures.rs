//! Figures of feature studies, in the paper's forms.
use crate::analysis::SpecificityBin;
use crate::plot::{Figure, FigureOptions};
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
