//! How values look when the REPL or a notebook shows them: tensors in
//! torch's style, strings quoted, arrays and maps spread over lines when
//! they hold tensors.
use crate::core::Tensor;
use rhai::{Array, Dynamic, Map};

/// A readable rendering of any script value.
pub fn format_value(value: &Dynamic) -> String {
    format_nested(value, 0)
}

fn format_nested(value: &Dynamic, indent: usize) -> String {
    if let Some(t) = value.read_lock::<Tensor>() {
        return indent_continuation(&t.to_string(), indent);
    }
    if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
        return format!("{:?}", s.as_str());
    }
    if let Some(array) = value.read_lock::<Array>() {
        return format_array(&array, indent);
    }
    if let Some(map) = value.read_lock::<Map>() {
        return format_map(&map, indent);
    }
    value.to_string()
}

fn holds_tensor(value: &Dynamic) -> bool {
    value.is::<Tensor>()
        || value
            .read_lock::<Array>()
            .is_some_and(|a| a.iter().any(holds_tensor))
        || value
            .read_lock::<Map>()
            .is_some_and(|m| m.values().any(holds_tensor))
}

fn format_array(array: &Array, indent: usize) -> String {
    if !array.iter().any(holds_tensor) {
        let items: Vec<String> = array.iter().map(|v| format_nested(v, indent)).collect();
        return format!("[{}]", items.join(", "));
    }
    let pad = " ".repeat(indent + 2);
    let items: Vec<String> = array
        .iter()
        .map(|v| format!("{pad}{}", format_nested(v, indent + 2)))
        .collect();
    format!("[\n{}\n{}]", items.join(",\n"), " ".repeat(indent))
}

fn format_map(map: &Map, indent: usize) -> String {
    let entries = map.iter().map(|(k, v)| (k.to_string(), v));
    if !map.values().any(holds_tensor) {
        let items: Vec<String> = entries
            .map(|(k, v)| format!("{k}: {}", format_nested(v, indent)))
            .collect();
        return format!("#{{{}}}", items.join(", "));
    }
    let pad = " ".repeat(indent + 2);
    let items: Vec<String> = entries
        .map(|(k, v)| format!("{pad}{k}: {}", format_nested(v, indent + 2 + k.len() + 2)))
        .collect();
    format!("#{{\n{}\n{}}}", items.join(",\n"), " ".repeat(indent))
}

fn indent_continuation(text: &str, indent: usize) -> String {
    text.replace('\n', &format!("\n{}", " ".repeat(indent)))
}
