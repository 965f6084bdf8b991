//! Completion and inspection: which word the cursor is in, and what could
//! complete it. Jupyter counts cursor positions in Unicode code points
//! (protocol 5.2), so positions here are character indices, not bytes.

/// Rhai's keywords, offered alongside functions and variables.
pub const KEYWORDS: &[&str] = &[
    "let",
    "const",
    "fn",
    "if",
    "else",
    "for",
    "in",
    "while",
    "loop",
    "do",
    "until",
    "break",
    "continue",
    "return",
    "throw",
    "try",
    "catch",
    "switch",
    "import",
    "export",
    "as",
    "true",
    "false",
    "private",
    "global",
    "is_def_var",
    "is_def_fn",
    "type_of",
    "print",
    "debug",
];

/// A word of the code, as character positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// `tensor`, `x_2` and `stats::mean` are one word each.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == ':'
}

/// The part of a word that ends at the cursor: what completion replaces.
pub fn word_before(code: &str, cursor: usize) -> Word {
    let chars: Vec<char> = code.chars().collect();
    let end = cursor.min(chars.len());
    let start = (0..end)
        .rev()
        .find(|&i| !is_word_char(chars[i]))
        .map_or(0, |i| i + 1);
    Word {
        start,
        end,
        text: chars[start..end].iter().collect(),
    }
}

/// The whole word the cursor is in or just after (for inspection); when it
/// is in the arguments of a call, the called function's name.
pub fn word_at(code: &str, cursor: usize) -> Option<String> {
    let chars: Vec<char> = code.chars().collect();
    let cursor = cursor.min(chars.len());
    let start = (0..cursor)
        .rev()
        .find(|&i| !is_word_char(chars[i]))
        .map_or(0, |i| i + 1);
    let end = (cursor..chars.len())
        .find(|&i| !is_word_char(chars[i]))
        .unwrap_or(chars.len());
    let word: String = chars[start..end].iter().collect();
    let word = word.trim_matches(':');
    if !word.is_empty() {
        return Some(word.to_string());
    }
    called_function(&chars[..cursor])
}

/// The name before the innermost open parenthesis before the cursor.
fn called_function(before: &[char]) -> Option<String> {
    let mut depth = 0usize;
    for i in (0..before.len()).rev() {
        match before[i] {
            ')' => depth += 1,
            '(' if depth > 0 => depth -= 1,
            '(' => {
                let name = word_before(&before[..i].iter().collect::<String>(), i).text;
                return (!name.is_empty()).then_some(name);
            }
            _ => {}
        }
    }
    None
}

/// Names the code itself declares (`let x`, `const N`, `fn f`, `for i in`),
/// so a cell's own variables complete before it has run.
pub fn declared_names(code: &str) -> Vec<String> {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|pair| matches!(pair[0], "let" | "const" | "fn" | "for"))
        .map(|pair| pair[1].to_string())
        .collect()
}

/// The names that start with `prefix`, sorted and without repeats.
pub fn matches<'a>(prefix: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    if prefix.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<String> = names
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_before_the_cursor_is_what_completion_replaces() {
        let word = word_before("let y = ten", 11);
        assert_eq!((word.start, word.end, word.text.as_str()), (8, 11, "ten"));
        assert_eq!(word_before("x.su", 4).text, "su");
        assert_eq!(word_before("stats::me", 9).text, "stats::me");
        // Positions count characters, not bytes.
        assert_eq!(word_before("let é = ze", 10).start, 8);
    }

    #[test]
    fn inspection_finds_the_word_under_the_cursor_or_the_call_around_it() {
        assert_eq!(word_at("randn([2, 3])", 2).as_deref(), Some("randn"));
        assert_eq!(word_at("randn([2, 3])", 5).as_deref(), Some("randn"));
        assert_eq!(word_at("randn([2, 3])", 9).as_deref(), Some("randn"));
        assert_eq!(word_at("x.sum()", 4).as_deref(), Some("sum"));
        assert_eq!(word_at("", 0), None);
    }

    #[test]
    fn a_cell_declares_names_before_it_runs() {
        let names =
            declared_names("let kept = 1; const N = 2;\nfn twice(v) { v }\nfor i in 0..3 {}");
        assert_eq!(names, vec!["kept", "N", "twice", "i"]);
    }

    #[test]
    fn matches_are_sorted_and_unique() {
        let names = ["tensor", "tanh", "tensor", "zeros"];
        assert_eq!(matches("t", names.into_iter()), vec!["tanh", "tensor"]);
        assert!(matches("", names.into_iter()).is_empty());
    }
}
