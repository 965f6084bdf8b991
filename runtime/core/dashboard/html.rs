//! The pieces of a dashboard page: escaping, highlighted token spans, the
//! style sheet and the script that sorts the index table. Corpus text only
//! ever reaches a page through [`escape`], so a document holding markup or
//! scripts shows as text and never runs.
use crate::analysis::examples::{highlight_rgb, visible_token};
use crate::analysis::Context;

/// Text made safe for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A context as spans coloured by activation; hovering shows the value.
pub fn context_html(context: &Context, max: f64) -> String {
    if context.tokens.is_empty() {
        return format!("<span class=\"t\">row {}</span>", context.row);
    }
    let spans: String = context
        .tokens
        .iter()
        .zip(&context.activations)
        .enumerate()
        .map(|(i, (token, activation))| {
            let (r, g, b) = highlight_rgb(activation.unwrap_or(0.0), max);
            let title = activation.map_or("no activation stored".to_string(), |a| format!("{a:.4}"));
            let class = if i == context.focus { "t focus" } else { "t" };
            format!(
                "<span class=\"{class}\" style=\"background:rgb({r},{g},{b})\" title=\"{}\">{}</span>",
                escape(&title),
                escape(&visible_token(token))
            )
        })
        .collect();
    format!(
        "<div class=\"ex\"><span class=\"act\">{:.3}</span><span class=\"text\">{spans}</span></div>",
        context.activation
    )
}

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}<script>{SORT_SCRIPT}</script></body></html>\n",
        escape(title)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}\
h1{font-size:1.5em}h2{font-size:1.1em;margin-top:1.4em;border-bottom:1px solid #ddd}\
.ex{display:flex;gap:.8em;font-family:ui-monospace,monospace;font-size:.9em;line-height:1.7;border-bottom:1px solid #f3f3f3}\
.act{color:#888;min-width:4.5em;text-align:right}.t{white-space:pre;border-radius:2px}\
.focus{outline:1.5px solid #333}.cols{display:flex;flex-wrap:wrap;gap:2em}.cols>div{flex:1;min-width:260px}.hist svg{max-width:100%;height:auto}\
table{border-collapse:collapse}td,th{padding:.2em .6em;text-align:left;border-bottom:1px solid #eee}\
th[data-sort]{cursor:pointer;text-decoration:underline dotted}.num{text-align:right;font-variant-numeric:tabular-nums}\
.muted{color:#888}";

/// Clicking a column header with `data-sort` sorts the table by it
/// (numbers by the cells' `data-value`), again to reverse.
const SORT_SCRIPT: &str = "document.querySelectorAll('th[data-sort]').forEach(function(th){\
th.addEventListener('click',function(){var table=th.closest('table');var body=table.tBodies[0];\
var i=Array.prototype.indexOf.call(th.parentNode.children,th);var down=th.dataset.dir!=='desc';th.dataset.dir=down?'desc':'asc';\
var rows=Array.prototype.slice.call(body.rows);rows.sort(function(a,b){\
var x=parseFloat(a.cells[i].dataset.value),y=parseFloat(b.cells[i].dataset.value);return down?y-x:x-y;});\
rows.forEach(function(r){body.appendChild(r);});});});";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_markup_is_shown_as_text() {
        let context = Context {
            row: 0,
            activation: 1.0,
            tokens: vec!["<script>alert(1)</script>".into(), " & \"x\"".into()],
            activations: vec![Some(1.0), None],
            focus: 0,
        };
        let html = context_html(&context, 1.0);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&amp; &quot;x&quot;"));
        assert!(html.contains("title=\"no activation stored\""));
    }
}
