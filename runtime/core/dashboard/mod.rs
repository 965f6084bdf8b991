//! Feature dashboards as *Scaling Monosemanticity*'s feature browser shows
//! them: one self-contained HTML page per feature (highlighted examples,
//! activation histogram, density, the tokens its decoder direction promotes
//! and suppresses, its nearest features) and an index page sortable by
//! density and maximum activation. Pages open offline: no scripts or styles
//! from elsewhere, figures inlined as SVG.
pub mod figures;
pub mod html;

use crate::activations::Store;
use crate::analysis::records::{bin_edge, FeatureRecords};
use crate::analysis::{
    feature_examples, logit_effects, neighbors, ExampleOptions, FeatureExamples,
};
use crate::model::Model;
use crate::plot::{Figure, FigureOptions, SeriesStyle};
use crate::sae::Sae;
use crate::{Error, Result};
use html::{context_html, escape, page};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DashboardOptions {
    pub examples: ExampleOptions,
    /// Promoted and suppressed tokens shown.
    pub logit_k: usize,
    /// Nearest features shown.
    pub neighbors_k: usize,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            examples: ExampleOptions::default(),
            logit_k: 10,
            neighbors_k: 8,
        }
    }
}

/// What a dashboard is made from.
pub struct DashboardInputs<'a> {
    pub sae: &'a Sae,
    pub store: &'a Store,
    pub records: &'a FeatureRecords,
    pub model: &'a Model,
}

/// The file name of a feature's page.
pub fn page_name(feature: i64) -> String {
    format!("feature-{feature}.html")
}

/// Writes a page per feature and `index.html` into `dir`; returns the index's path.
pub fn write_dashboard(
    inputs: &DashboardInputs<'_>,
    features: &[i64],
    dir: &Path,
    opts: &DashboardOptions,
) -> Result<PathBuf> {
    if features.is_empty() {
        return Err(Error::invalid("a dashboard needs at least one feature"));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let shown: BTreeSet<i64> = features.iter().copied().collect();
    let mut rows = Vec::new();
    for &feature in &shown {
        crate::interrupt::check()?;
        let examples = feature_examples(
            inputs.sae,
            inputs.store,
            inputs.records,
            &inputs.model.tokenizer,
            feature,
            &opts.examples,
        )?;
        let body = feature_body(inputs, &examples, &shown, opts)?;
        let title = format!("feature {feature}");
        crate::fs::write_atomic(&dir.join(page_name(feature)), &page(&title, &body))?;
        rows.push(index_row(&examples));
    }
    let index = dir.join("index.html");
    crate::fs::write_atomic(&index, &page("features", &index_body(&rows)))?;
    Ok(index)
}

/// One feature's examples as a page of its own (no model needed).
pub fn examples_page(examples: &FeatureExamples) -> Result<String> {
    let mut body = format!("<h1>Feature {}</h1>{}", examples.feature, summary(examples));
    body.push_str(&histogram_svg(examples)?);
    body.push_str(&examples_html(examples));
    Ok(page(&format!("feature {}", examples.feature), &body))
}

fn summary(ex: &FeatureExamples) -> String {
    let one_in = if ex.density > 0.0 {
        format!(" (1 in {:.0} tokens)", 1.0 / ex.density)
    } else {
        String::new()
    };
    format!(
        "<p>max activation <b>{:.3}</b> · density <b>{:.3e}</b>{one_in}</p>",
        ex.max_activation, ex.density
    )
}

fn examples_html(ex: &FeatureExamples) -> String {
    let mut out = String::from("<h2>Top activations</h2>");
    for c in &ex.top {
        out.push_str(&context_html(c, ex.max_activation));
    }
    for q in ex.quantiles.iter().rev() {
        out.push_str(&format!(
            "<h2>Activations {:.3} – {:.3} <span class=\"muted\">({} tokens)</span></h2>",
            q.low, q.high, q.count
        ));
        for c in &q.contexts {
            out.push_str(&context_html(c, ex.max_activation));
        }
    }
    out
}

/// The activation histogram as inline SVG: counts per log₁₀ bin.
fn histogram_svg(ex: &FeatureExamples) -> Result<String> {
    let used: Vec<usize> = (0..ex.histogram.len())
        .filter(|&b| ex.histogram[b] > 0)
        .collect();
    let (Some(&first), Some(&last)) = (used.first(), used.last()) else {
        return Ok("<p class=\"muted\">This feature never fired on the store.</p>".into());
    };
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for b in first..=last {
        let count = ex.histogram[b] as f64;
        xs.extend([bin_edge(b as i64), bin_edge(b as i64 + 1)]);
        ys.extend([count, count]);
    }
    let mut figure = Figure::new(FigureOptions {
        title: Some("activation histogram".into()),
        x_label: Some("activation".into()),
        y_label: Some("tokens".into()),
        log_x: true,
        width: 520,
        height: 280,
        ..Default::default()
    });
    figure.line(&xs, &ys, SeriesStyle::default().with_color("orange"))?;
    Ok(format!("<div class=\"hist\">{}</div>", figure.to_svg()?))
}

fn feature_body(
    inputs: &DashboardInputs<'_>,
    ex: &FeatureExamples,
    shown: &BTreeSet<i64>,
    opts: &DashboardOptions,
) -> Result<String> {
    let effects = logit_effects(inputs.model, inputs.sae, ex.feature, opts.logit_k)?;
    let token_list = |pairs: &[(u32, f64)]| -> Result<String> {
        let mut out = String::from("<table>");
        for &(id, value) in pairs {
            let text = inputs.model.tokenizer.decode(&[id])?;
            out.push_str(&format!(
                "<tr><td><code>{}</code></td><td class=\"num\">{value:+.3}</td></tr>",
                escape(&crate::analysis::examples::visible_token(&text))
            ));
        }
        out.push_str("</table>");
        Ok(out)
    };
    let mut near = String::from("<table>");
    for n in neighbors(inputs.sae, ex.feature, inputs.sae, opts.neighbors_k)? {
        let name = if shown.contains(&n.feature) {
            format!(
                "<a href=\"{}\">feature {}</a>",
                page_name(n.feature),
                n.feature
            )
        } else {
            format!("feature {}", n.feature)
        };
        near.push_str(&format!(
            "<tr><td>{name}</td><td class=\"num\">{:.3}</td></tr>",
            n.cosine
        ));
    }
    near.push_str("</table>");
    Ok(format!(
        "<p><a href=\"index.html\">all features</a></p><h1>Feature {}</h1>{}\
         <div class=\"cols\"><div>{}</div><div><h2>Promoted tokens</h2>{}</div>\
         <div><h2>Suppressed tokens</h2>{}</div><div><h2>Nearest features (decoder cosine)</h2>{near}</div></div>{}{}",
        ex.feature,
        summary(ex),
        histogram_svg(ex)?,
        token_list(&effects.promoted)?,
        token_list(&effects.suppressed)?,
        steering_html(ex.feature),
        examples_html(ex)
    ))
}

/// How to test what the page suggests: the feature clamped while the model
/// generates (`m.generate`'s `steer`, with the SAE's error term kept).
fn steering_html(feature: i64) -> String {
    format!(
        "<h2>Steer with it</h2><p class=\"muted\">Clamp the feature while the model writes; \
         <code>\"10x\"</code> is ten times its largest activation on the store.</p>\
         <pre><code>let max = s.max_activations(store);\n\
         m.generate(\"Tell me about your day.\", #{{steer: #{{sae: s, clamp: #{{\"{feature}\": \"10x\"}}, max: max}}}});</code></pre>"
    )
}

struct IndexRow {
    feature: i64,
    density: f64,
    max: f64,
    top_text: String,
}

fn index_row(ex: &FeatureExamples) -> IndexRow {
    IndexRow {
        feature: ex.feature,
        density: ex.density,
        max: ex.max_activation,
        top_text: ex.top.first().map(|c| c.plain()).unwrap_or_default(),
    }
}

fn index_body(rows: &[IndexRow]) -> String {
    let mut body = String::from(
        "<h1>Features</h1><p class=\"muted\">Click a column to sort.</p><table><thead><tr>\
         <th data-sort>feature</th><th data-sort>density</th><th data-sort>max activation</th>\
         <th>strongest example</th></tr></thead><tbody>",
    );
    for r in rows {
        body.push_str(&format!(
            "<tr><td data-value=\"{f}\"><a href=\"{page}\">{f}</a></td>\
             <td class=\"num\" data-value=\"{d}\">{d:.3e}</td><td class=\"num\" data-value=\"{m}\">{m:.3}</td>\
             <td><code>{text}</code></td></tr>",
            f = r.feature,
            page = page_name(r.feature),
            d = r.density,
            m = r.max,
            text = escape(&r.top_text)
        ));
    }
    body.push_str("</tbody></table>");
    body
}
