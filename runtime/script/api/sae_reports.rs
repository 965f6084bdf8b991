//! What training and evaluation report, as the maps scripts receive:
//! `s.train(...)` → final metrics with `history`, `s.evaluate(...)` →
//! metrics with densities and their histogram.
use crate::core::sae::trainer::{HistoryRecord, TrainReport};
use crate::core::sae::{self, metrics::Evaluation};
use crate::core::Tensor;
use crate::script::error::ScriptResult;
use rhai::{Array, Dynamic, Map};
use std::path::PathBuf;

pub(crate) fn history_map(h: &HistoryRecord) -> Map {
    let mut m = Map::new();
    m.insert("step".into(), Dynamic::from(h.step as i64));
    m.insert("tokens".into(), Dynamic::from(h.tokens as i64));
    for (key, value) in [
        ("loss", h.loss),
        ("mse", h.mse),
        ("penalty", h.penalty),
        ("aux", h.aux),
        ("l0", h.l0),
        ("explained_variance", h.explained_variance),
        ("dead_fraction", h.dead_fraction),
        ("lr", h.lr),
        ("l1_scale", h.l1_scale),
        ("tokens_per_sec", h.tokens_per_sec),
    ] {
        m.insert(key.into(), Dynamic::from(value));
    }
    m
}

pub(crate) fn report_map(r: &TrainReport) -> Map {
    let mut m = history_map(&r.last);
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or(Dynamic::UNIT, |p| Dynamic::from(p.display().to_string()))
    };
    m.insert("steps".into(), Dynamic::from(r.steps as i64));
    m.insert("tokens".into(), Dynamic::from(r.tokens as i64));
    m.insert("seconds".into(), Dynamic::from(r.seconds));
    m.insert("tokens_per_sec".into(), Dynamic::from(r.tokens_per_sec));
    m.insert("input_scale".into(), Dynamic::from(r.input_scale));
    m.insert("resampled".into(), Dynamic::from(r.resampled as i64));
    m.insert(
        "resumed_from".into(),
        r.resumed_from
            .map_or(Dynamic::UNIT, |s| Dynamic::from(s as i64)),
    );
    m.insert("checkpoint".into(), path(&r.last_checkpoint));
    m.insert("csv".into(), path(&r.csv_path));
    let history: Array = r
        .history
        .iter()
        .map(|h| Dynamic::from_map(history_map(h)))
        .collect();
    m.insert("history".into(), Dynamic::from_array(history));
    m
}

pub(crate) fn evaluation_map(e: &Evaluation) -> ScriptResult<Map> {
    let mut m = Map::new();
    m.insert("tokens".into(), Dynamic::from(e.tokens as i64));
    for (key, value) in [
        ("loss", e.loss),
        ("mse", e.mse),
        ("mse_raw", e.mse_raw),
        ("penalty", e.penalty),
        ("l0", e.l0),
        ("explained_variance", e.explained_variance),
        ("dead_fraction", e.dead_fraction),
        ("input_scale", e.input_scale),
        ("l2_ratio", e.l2_ratio),
        (
            "relative_reconstruction_bias",
            e.relative_reconstruction_bias,
        ),
    ] {
        m.insert(key.into(), Dynamic::from(value));
    }
    let sites: Array = e
        .site_explained_variance
        .iter()
        .map(|v| Dynamic::from(*v))
        .collect();
    m.insert("site_explained_variance".into(), Dynamic::from_array(sites));
    let n = e.density.len() as i64;
    m.insert(
        "density".into(),
        Dynamic::from(Tensor::from_f64(&e.density, &[n], tch::Kind::Float)?),
    );
    let live = e.log10_live_density();
    let count = live.len() as i64;
    m.insert(
        "log10_density".into(),
        Dynamic::from(Tensor::from_f64(&live, &[count], tch::Kind::Float)?),
    );
    let mut histogram = Map::new();
    let edges: Array = sae::metrics::density_bin_edges()
        .into_iter()
        .map(Dynamic::from)
        .collect();
    let counts: Array = e
        .density_histogram
        .iter()
        .map(|c| Dynamic::from(*c as i64))
        .collect();
    histogram.insert("log10_edges".into(), Dynamic::from_array(edges));
    histogram.insert("counts".into(), Dynamic::from_array(counts));
    m.insert("density_histogram".into(), Dynamic::from_map(histogram));
    Ok(m)
}
