//! `:help`: every registered function with its signature(s) and the first
//! line of its doc comment, grouped by topic. The text comes from the `///`
//! docs on the plugin functions (Rhai's `metadata` feature) and on the
//! functions of the shipped Rhai modules.
use crate::script::{api, stdlib};
use rhai::Engine;
use std::collections::BTreeMap;

/// One function name with all its overloads.
#[derive(Debug, Clone, Default)]
pub struct HelpEntry {
    pub name: String,
    /// Topics defining the name (`decode` is both a model and an SAE method).
    pub topics: Vec<String>,
    pub signatures: Vec<String>,
    pub summary: String,
}

/// Everything `:help` and tab completion know about.
pub struct HelpIndex {
    pub topics: Vec<(String, String)>,
    pub entries: BTreeMap<String, HelpEntry>,
}

impl HelpIndex {
    pub fn build(engine: &Engine) -> Self {
        let mut index = HelpIndex {
            topics: Vec::new(),
            entries: BTreeMap::new(),
        };
        for topic in api::topics() {
            index
                .topics
                .push((topic.name.to_string(), topic.summary.to_string()));
            let signatures: Vec<String> = topic
                .module
                .gen_fn_signatures_with_mapper(|t| engine.map_type_name(t).into())
                .collect();
            index.add_native(engine, topic.name, &signatures);
        }
        for (name, source) in stdlib::MODULES {
            index.add_script_module(engine, name, source);
        }
        index
    }

    fn add_native(&mut self, engine: &Engine, topic: &str, signatures: &[String]) {
        let docs: Vec<(String, String, String)> = engine.collect_fn_metadata(
            None,
            |info| {
                let meta = info.metadata;
                let signature = meta.gen_signature(|t| engine.map_type_name(t).into());
                let doc = summary(meta.comments.iter().map(|c| c.as_str()));
                Some((meta.name.to_string(), signature, doc))
            },
            false,
        );
        for (name, signature, doc) in docs {
            if !signatures.contains(&signature) || !is_identifier(&name) {
                continue;
            }
            let display = display_name(&name);
            let entry = self
                .entries
                .entry(display.clone())
                .or_insert_with(|| HelpEntry {
                    name: display,
                    ..Default::default()
                });
            entry.signatures.push(pretty_signature(&signature));
            if !entry.topics.iter().any(|t| t == topic) {
                entry.topics.push(topic.to_string());
                // One description per topic: the same name can mean different things.
                let line = if entry.summary.is_empty() {
                    doc
                } else {
                    format!("{topic}: {doc}")
                };
                entry.summary = [entry.summary.as_str(), line.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n");
            }
        }
    }

    fn add_script_module(&mut self, engine: &Engine, module: &str, source: &str) {
        let Ok(ast) = engine.compile(source) else {
            return;
        };
        let topic = format!("stdlib {module}");
        self.topics
            .push((topic.clone(), format!("import \"{module}\" as {module};")));
        // Closures in a module compile to functions named `anon$…`: not the user's to call.
        for f in ast.iter_functions().filter(|f| is_identifier(f.name)) {
            let name = format!("{module}::{}", f.name);
            let signature = format!("{module}::{}({})", f.name, f.params.join(", "));
            self.entries.insert(
                name.clone(),
                HelpEntry {
                    name,
                    topics: vec![topic.clone()],
                    signatures: vec![signature],
                    summary: summary(f.comments.iter().copied()),
                },
            );
        }
    }

    /// `:help` with no argument: topics and their functions.
    pub fn overview(&self) -> String {
        let mut out = String::from("saelab functions by topic (`:help NAME` for details):\n");
        for (topic, about) in &self.topics {
            let names: Vec<&str> = self
                .entries
                .values()
                .filter(|e| e.topics.contains(topic))
                .map(|e| e.name.as_str())
                .collect();
            out.push_str(&format!("\n{topic} — {about}\n  {}\n", names.join(", ")));
        }
        out.push_str("\noperators: + - * / ** on tensors and numbers, comparisons give bool tensors, a @ b is a matrix product\n");
        out.push_str("REPL commands: :help [NAME], :load FILE, :vars, :quit\n");
        out
    }

    /// `:help NAME`: signatures and description, or a suggestion.
    pub fn describe(&self, name: &str) -> String {
        let key = name.trim().trim_start_matches('.');
        match self.entries.get(key) {
            Some(entry) => {
                let mut out = String::new();
                for s in &entry.signatures {
                    out.push_str(&format!("  {s}\n"));
                }
                out.push_str(&format!(
                    "{}\n(topic: {})\n",
                    entry.summary,
                    entry.topics.join(", ")
                ));
                out
            }
            None => {
                let close: Vec<&str> = self
                    .entries
                    .keys()
                    .filter(|k| k.contains(key) || key.contains(k.as_str()))
                    .map(String::as_str)
                    .take(8)
                    .collect();
                if close.is_empty() {
                    format!("no function named '{key}'; `:help` lists them all\n")
                } else {
                    format!(
                        "no function named '{key}'; did you mean: {}\n",
                        close.join(", ")
                    )
                }
            }
        }
    }

    /// Every name completion should offer (functions and properties).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// The first sentence-line of a doc comment, without the `///` markers.
fn summary<'a>(comments: impl Iterator<Item = &'a str>) -> String {
    comments
        .flat_map(|c| c.lines())
        .map(|l| {
            l.trim()
                .trim_start_matches("///")
                .trim_start_matches("//")
                .trim()
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_identifier(name: &str) -> bool {
    let name = display_name(name);
    name.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Property getters/setters are registered as `get$name` / `set$name`.
fn display_name(name: &str) -> String {
    name.strip_prefix("get$")
        .or_else(|| name.strip_prefix("set$"))
        .unwrap_or(name)
        .to_string()
}

fn pretty_signature(signature: &str) -> String {
    signature
        .replace("get$", ".")
        .replace("set$", ".")
        .replace("index$get$", "[]")
        .replace("index$set$", "[]=")
}
