//! A small Rhai highlighter (comments, strings, numbers, keywords, calls):
//! enough colour to read code at a glance without shipping a JS highlighter.

use super::html::escape_html;

/// Highlights Rhai source as escaped HTML with `<span class>` tokens.
pub(super) fn highlight_rhai(source: &str) -> String {
    let mut html = String::with_capacity(source.len() * 2);
    let mut rest = source;
    while !rest.is_empty() {
        let (length, class) = next_token(rest);
        let token = escape_html(&rest[..length]);
        match class {
            Some(class) => html.push_str(&format!("<span class=\"{class}\">{token}</span>")),
            None => html.push_str(&token),
        }
        rest = &rest[length..];
    }
    html
}

const RHAI_KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "switch", "while", "loop", "do", "until", "for", "in",
    "return", "throw", "try", "catch", "break", "continue", "import", "export", "as", "private",
    "this", "true", "false", "global",
];

/// The byte length of the token at the start of `text` and its CSS class.
fn next_token(text: &str) -> (usize, Option<&'static str>) {
    let first = text.chars().next().unwrap_or(' ');
    if text.starts_with("//") {
        (text.find('\n').unwrap_or(text.len()), Some("cm"))
    } else if let Some(body) = text.strip_prefix("/*") {
        (
            body.find("*/").map_or(text.len(), |end| end + 4),
            Some("cm"),
        )
    } else if matches!(first, '"' | '`' | '\'') {
        (quoted_length(text, first), Some("st"))
    } else if first.is_ascii_digit() {
        (number_length(text), Some("nu"))
    } else if first.is_alphabetic() || first == '_' {
        let length = text
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        (length, word_class(&text[..length], &text[length..]))
    } else {
        (first.len_utf8(), None)
    }
}

fn word_class(word: &str, after: &str) -> Option<&'static str> {
    if RHAI_KEYWORDS.contains(&word) {
        Some("kw")
    } else if after.starts_with('(') {
        Some("fn")
    } else {
        None
    }
}

/// Length of a quoted literal including both quotes; backslash escapes are
/// skipped so `"a \" b"` is one token. An unclosed literal runs to the end.
fn quoted_length(text: &str, quote: char) -> usize {
    let mut chars = text.char_indices().skip(1);
    while let Some((index, c)) = chars.next() {
        if c == '\\' && quote != '`' {
            chars.next();
        } else if c == quote {
            return index + c.len_utf8();
        }
    }
    text.len()
}

/// Digits, `_`, hex and exponent letters, and a `.` only when a digit
/// follows, so the range `0..10` stays three tokens.
fn number_length(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        let byte = bytes[end];
        let decimal_point = byte == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        if !(byte.is_ascii_alphanumeric() || byte == b'_' || decimal_point) {
            break;
        }
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn highlighting_escapes_and_classifies_tokens() {
        let html = highlight_rhai("let s = \"<b>\\\"\"; // x < y\nf(0..10)");
        assert_eq!(
            html,
            "<span class=\"kw\">let</span> s = <span class=\"st\">&quot;&lt;b&gt;\\&quot;&quot;</span>; \
             <span class=\"cm\">// x &lt; y</span>\n<span class=\"fn\">f</span>(<span class=\"nu\">0</span>..\
             <span class=\"nu\">10</span>)"
        );
    }
}
