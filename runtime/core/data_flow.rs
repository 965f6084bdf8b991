//! The data flows one way through core: corpus → model → activations → sae
//! → scaling and analysis → plot. A module may import from its own layer and the layers
//! before it, never from one after it; this test reads the `use` lines of
//! every file under runtime/core and keeps that true.
//!
//! Only `use` lines are read (`use crate::…`, and `use super::…` at
//! the top of a file). `error.rs` names each module's error type by its full
//! path in the one error enum; that is its job, not a dependency on them.
use std::path::{Path, PathBuf};

/// The layers in data-flow order, each the module paths (under
/// `crate`) it holds. A path covers its submodules, and the longest
/// path that matches decides, so `model::tokenizer` sits below the rest of
/// `model`. Names re-exported at the root (`Error`, `Result`, `Tensor`) are
/// the base layer's. A new module must be placed here before its test passes.
const LAYERS: &[&[&str]] = &[
    // Base: usable by every layer.
    &[
        "error",
        "tensor",
        "fs",
        "rng",
        "progress",
        "interrupt",
        "precision",
        "cuda",
        "memory",
        "scalar_op",
        "optim",
        "options",
        "tensor_io",
        "tensor_format",
        // Job folders and the executors that run them know nothing of what a task does.
        "executor",
    ],
    // A model file's format and its tokenizer: a corpus tokenises text
    // without needing the model that reads it.
    &["model::gguf", "model::tokenizer"],
    &["corpus"],
    &["model"],
    &["activations"],
    &["sae"],
    // What is made of trained SAEs: fits over many runs, sweeps that train
    // and measure many (counting their compute), what features mean
    // (records, search, neurons, maps) and interventions and attributions.
    &["scaling", "analysis", "sweep", "jobs"],
    // Pictures and pages of results.
    &["plot", "dashboard"],
];

/// This file: its text names modules only to describe the rule; and the
/// corrupted-file suite, a test module that opens every reader.
const SKIPPED: &[&str] = &["data_flow", "corruption_tests"];

fn layer_of(module: &str) -> Option<usize> {
    if module.starts_with(|c: char| c.is_ascii_uppercase()) {
        return Some(0);
    }
    let covers = |path: &str| module == path || module.starts_with(&format!("{path}::"));
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(layer, paths)| paths.iter().map(move |path| (layer, *path)))
        .filter(|(_, path)| covers(path))
        .max_by_key(|(_, path)| path.len())
        .map(|(layer, _)| layer)
}

/// `a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        let path = path.strip_suffix("::self").unwrap_or(path);
        return vec![path.trim_end_matches("::*").to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .flat_map(expand)
        .map(|path| match path.as_str() {
            "self" => prefix.to_string(),
            _ if prefix.is_empty() => path,
            _ => format!("{prefix}::{path}"),
        })
        .collect()
}

/// The module path of a file under runtime/core: `sae/mod.rs` → `sae`.
fn module_of(core: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(core).unwrap().with_extension("");
    let parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    match parts.split_last() {
        // The crate root (lib.rs) and a folder's mod.rs are their folder's module.
        Some((last, parent)) if last == "mod" || (last == "lib" && parent.is_empty()) => {
            parent.join("::")
        }
        _ => parts.join("::"),
    }
}

/// The `crate` module paths a file's `use` lines import.
fn imports(module: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let statement = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|keyword| trimmed.strip_prefix(keyword));
        let Some(statement) = statement else { continue };
        let mut statement = statement.to_string();
        while !statement.contains(';') {
            match lines.next() {
                Some(next) => statement.push_str(next.trim()),
                None => break,
            }
        }
        let statement = statement.split(';').next().unwrap_or_default();
        let path = if let Some(rest) = statement.strip_prefix("crate::") {
            rest.to_string()
        } else if statement.starts_with("super::") && line == trimmed {
            // `super` of `a::b` (`a/b.rs`) is `a`; of `a` (`a/mod.rs`), the root.
            let mut base: Vec<&str> = module.split("::").collect();
            base.pop();
            let mut rest = statement;
            while let Some(next) = rest.strip_prefix("super::") {
                rest = next;
                if rest.starts_with("super::") {
                    base.pop();
                }
            }
            base.push(rest);
            base.join("::")
        } else {
            continue;
        };
        found.extend(expand(&path));
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every import that reaches down the chain, as `module imports path`.
fn violations(core: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(core, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let module = module_of(core, &file);
        if module.is_empty() || SKIPPED.contains(&module.as_str()) {
            continue;
        }
        let Some(layer) = layer_of(&module) else {
            found.push(format!("{module} is in no layer: place it in LAYERS"));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for import in imports(&module, &text) {
            match layer_of(&import) {
                Some(theirs) if theirs <= layer => {}
                Some(_) => found.push(format!("{module} imports {import}, which is downstream")),
                None => found.push(format!("{module} imports {import}, which is in no layer")),
            }
        }
    }
    found
}

#[test]
fn no_module_imports_from_one_downstream_of_it() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = violations(core);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn use_lines_are_read_as_module_paths() {
    assert_eq!(
        expand("activations::{self, store::{Manifest, ShardInfo}, Dtype as D}"),
        [
            "activations",
            "activations::store::Manifest",
            "activations::store::ShardInfo",
            "activations::Dtype"
        ]
    );
    let text = "use super::gguf::{GgufError, GgufFile};\n\
                use crate::{\n    sae::Sae,\n    Error,\n};\n\
                mod tests {\n    use super::*;\n}\n";
    assert_eq!(
        imports("model::tokenizer", text),
        [
            "model::gguf::GgufError",
            "model::gguf::GgufFile",
            "sae::Sae",
            "Error"
        ]
    );
    assert_eq!(layer_of("model::tokenizer::Tokenizer"), Some(1));
    assert_eq!(layer_of("model::Tokenizer"), Some(3));
    assert_eq!(layer_of("Error"), Some(0));
    assert_eq!(layer_of("analysis::steering"), layer_of("scaling"));
    assert_eq!(layer_of("nowhere"), None);
}
