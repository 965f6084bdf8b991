//! The fuzzer's grammar: every native function the `:help` topics register,
//! with the kinds of its parameters and result, read from the engine's
//! metadata. A function added to a topic is fuzzed without anyone listing it.
use crate::script::api;
use rhai::Engine;

/// What a parameter or a result is, as far as generating arguments goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Bool,
    Str,
    Array,
    Map,
    FnPtr,
    /// `Dynamic`: anything.
    Any,
    /// A custom type, by its script name (`Tensor`, `Sae`, `Store`, ...).
    Object(String),
}

/// How a function is written in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// `name(a, b)`; a method is also callable this way.
    Call,
    /// `a.name` (a property getter).
    Getter,
    /// `a.name = b;` (a property setter).
    Setter,
    /// `a[b]`.
    IndexGet,
    /// `a[b] = c;`.
    IndexSet,
    /// `a op b`, or `op a` with one parameter.
    Operator,
}

/// One overload of a registered function.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The script name (`zeros`, `shape` for `get$shape`, `+`).
    pub name: String,
    pub form: Form,
    pub params: Vec<Kind>,
    pub returns: Kind,
}

/// Functions left out of the grammar because a call takes seconds to
/// minutes even with tiny arguments (loading the 135M model, training,
/// sweeps, harvesting, generating text) or reads the 19 MB demo corpus.
/// They are exercised with tiny inputs by their own tests; `Model` methods
/// join the grammar when the fuzzer is given the model (`--model`).
pub const SLOW: &[&str] = &[
    "load_model",
    "harvest",
    "harvest_into",
    "train",
    "lr_sweep",
    "sweep",
    "superposition",
    "demo_corpus",
    "generate",
    "search",
    "neuron_correlations",
    "feature_map",
    "attribute",
    "logit_effects",
    "evaluate",
    "records",
    "examples",
    "perplexity",
];

/// The registered functions, from the topics' metadata.
pub struct Grammar {
    pub signatures: Vec<Signature>,
}

impl Grammar {
    /// Every function of every topic but the slow ones; `with_model` keeps
    /// those taking a `Model` (the fuzzer then provides one).
    pub fn from_engine(engine: &Engine, with_model: bool) -> Self {
        let mut signatures = Vec::new();
        for topic in api::topics() {
            let module = topic.module;
            let texts: Vec<String> = module
                .gen_fn_signatures_with_mapper(|t| engine.map_type_name(t).into())
                .collect();
            signatures.extend(texts.iter().filter_map(|text| parse_signature(text)));
        }
        signatures.retain(|s| !is_slow(&s.name));
        if !with_model {
            signatures.retain(|s| !s.params.contains(&Kind::Object("Model".into())));
        }
        signatures.sort_by(|a, b| (&a.name, a.params.len()).cmp(&(&b.name, b.params.len())));
        Grammar { signatures }
    }
}

fn is_slow(name: &str) -> bool {
    SLOW.iter()
        .any(|slow| name == *slow || name.starts_with(&format!("{slow}_")))
}

/// Reads `name(a: INT, t: &mut Tensor) -> Tensor` as Rhai's metadata writes it.
pub fn parse_signature(text: &str) -> Option<Signature> {
    let (head, rest) = text.split_once('(')?;
    let (params, returns) = rest.rsplit_once(')')?;
    let returns = returns
        .trim()
        .strip_prefix("->")
        .map_or("Dynamic", str::trim);
    let (name, form) = name_and_form(head.trim());
    let params: Vec<Kind> = split_params(params)
        .iter()
        .filter(|p| !p.contains("NativeCallContext"))
        .map(|p| kind_of(p.rsplit_once(':').map_or(p.as_str(), |(_, ty)| ty)))
        .collect();
    Some(Signature {
        name,
        form,
        params,
        returns: kind_of(returns),
    })
}

fn name_and_form(name: &str) -> (String, Form) {
    let (name, form) = if let Some(property) = name.strip_prefix("get$") {
        (property, Form::Getter)
    } else if let Some(property) = name.strip_prefix("set$") {
        (property, Form::Setter)
    } else if name == "index$get$" {
        ("", Form::IndexGet)
    } else if name == "index$set$" {
        ("", Form::IndexSet)
    } else if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        (name, Form::Call)
    } else {
        (name, Form::Operator)
    };
    (name.to_string(), form)
}

/// Splits on top-level commas (types such as `Option<(INT, INT)>` hold some).
fn split_params(params: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut current) = (0i32, String::new());
    for c in params.chars() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn kind_of(ty: &str) -> Kind {
    let ty = ty
        .trim()
        .trim_start_matches('&')
        .trim_start_matches("mut ")
        .trim();
    let ty = unwrap_result(ty);
    match ty {
        "i64" | "INT" | "int" | "usize" | "u64" | "i32" => Kind::Int,
        "f64" | "FLOAT" | "float" | "f32" => Kind::Float,
        "bool" => Kind::Bool,
        "str" | "String" | "ImmutableString" | "string" => Kind::Str,
        "Array" | "array" => Kind::Array,
        "Map" | "map" => Kind::Map,
        "FnPtr" | "Fn" => Kind::FnPtr,
        "Dynamic" | "?" | "()" | "" => Kind::Any,
        other => Kind::Object(other.rsplit("::").next().unwrap_or(other).to_string()),
    }
}

/// `Result<Tensor, Box<EvalAltResult>>` and friends → `Tensor`.
fn unwrap_result(ty: &str) -> &str {
    for wrapper in ["RhaiResultOf<", "ScriptResult<", "Result<"] {
        if let Some(inner) = ty.strip_prefix(wrapper) {
            let inner = inner.strip_suffix('>').unwrap_or(inner);
            return split_first_param(inner);
        }
    }
    ty
}

fn split_first_param(text: &str) -> &str {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => return text[..i].trim(),
            _ => {}
        }
    }
    text.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_read_as_rhai_writes_them() {
        let s = parse_signature("slice(t: &mut Tensor, dim: i64, start: i64, end: i64) -> Tensor")
            .unwrap();
        assert_eq!(s.name, "slice");
        assert_eq!(s.form, Form::Call);
        assert_eq!(s.params[0], Kind::Object("Tensor".into()));
        assert_eq!(s.params[1..], [Kind::Int, Kind::Int, Kind::Int]);
        let getter = parse_signature("get$shape(t: &mut Tensor) -> Array").unwrap();
        assert_eq!((getter.name.as_str(), getter.form), ("shape", Form::Getter));
        assert_eq!(getter.returns, Kind::Array);
        let op =
            parse_signature("+(a: Tensor, b: f64) -> Result<Tensor, Box<EvalAltResult>>").unwrap();
        assert_eq!(op.form, Form::Operator);
        assert_eq!(op.returns, Kind::Object("Tensor".into()));
    }

    #[test]
    fn the_grammar_covers_the_topics_and_leaves_out_slow_functions() {
        let engine = crate::script::new_engine(Default::default());
        let grammar = Grammar::from_engine(&engine, false);
        let names: Vec<&str> = grammar.signatures.iter().map(|s| s.name.as_str()).collect();
        for expected in ["zeros", "reshape", "sae", "fit_power_law", "figure", "cat"] {
            assert!(names.contains(&expected), "{expected} missing");
        }
        for slow in ["load_model", "train", "harvest_into"] {
            assert!(!names.contains(&slow), "{slow} should be left out");
        }
    }
}
