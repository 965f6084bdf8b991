//! Random, well-formed programs over the grammar: each statement calls one
//! registered function with generated arguments and binds its result, which
//! later statements may take as an argument; now and then a hand-written
//! idiom of misuse (autograd, optimisers, plots and fits of degenerate data)
//! joins in.
use super::grammar::{Form, Grammar, Kind, Signature};
use super::rng::Rng;
use super::values;

/// One program, a statement per line (minimising drops whole lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub statements: Vec<String>,
}

impl Program {
    pub fn text(&self) -> String {
        self.statements.join("\n")
    }

    /// A program saved in the corpus: its lines, without `//` comments.
    pub fn parse(text: &str) -> Program {
        let statements = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("//"))
            .map(str::to_string)
            .collect();
        Program { statements }
    }
}

/// Most statements a program has.
const MAX_STATEMENTS: usize = 6;

/// Misuse that random calls rarely put together.
const IDIOMS: &[&str] = &[
    "let g = randn([3]).requires_grad(); let y = (g * 2.0).sum(); y.backward(); y.backward();",
    "let g = randn([3]).requires_grad(); let h = g * 2.0; let d = h.grad();",
    "let g = randn([3]); g.backward();",
    "let o = adam([randn([3]) * 2.0]); o.step();",
    "let o = sgd([randn([2]).requires_grad()], #{lr: NAN}); o.zero_grad(); o.step();",
    "let o = adam([]); o.step();",
    "let p = randn([2]).requires_grad(); let o = adam([p]); (p * p).sum().backward(); o.step(); o.step();",
    "plot([], [], \"empty.png\");",
    "plot([NAN, 1.0], [INF, 2.0], \"nan.png\");",
    "let f = figure(); f.hist([]); f.save(\"hist.svg\");",
    "let f = figure(#{log_x: true}); f.line([0.0, -1.0], [1.0, 2.0]); f.save(\"log.png\");",
    "let fit = fit_power_law([1.0, 1.0], [2.0, 2.0]);",
    "let fit = fit_power_law([], []);",
    "let fit = fit_power_law([0.0, -1.0], [NAN, 1.0]);",
    "let front = compute_frontier([]);",
    "let s = sae(#{d_in: 4, n_features: 8}); let y = s.encode(randn([2, 5]));",
    "let s = sae(#{d_in: 4, n_features: 8}); let y = s.loss(randn([0, 4]));",
    "let s = sae(#{d_in: 4, n_features: 8}); s.save(\"sae_out\"); let t = load_sae(\"sae_out\");",
    "let st = store_from_tensor(randn([4, 4])); let b = st.batch(0);",
    "let st = store_from_tensor(randn([4, 4])); let r = st.rows([7, -9]);",
];

/// Program `index` of run `seed`.
pub fn generate(grammar: &Grammar, seed: u64, index: u64) -> Program {
    let mut rng = Rng::for_program(seed, index);
    let mut statements = Vec::new();
    let mut pool: Vec<(String, Kind)> = Vec::new();
    if rng.chance(0.1) {
        statements.push(rng.pick(IDIOMS).to_string());
    }
    let n = 1 + rng.below(MAX_STATEMENTS);
    for _ in 0..n {
        let Some(signature) = pick_signature(&mut rng, grammar, &pool) else {
            break;
        };
        let variable = format!("v{}", statements.len());
        let args: Vec<String> = signature
            .params
            .iter()
            .map(|kind| values::argument(&mut rng, kind, &variables_of(&pool, kind), 0))
            .collect();
        statements.push(statement(signature, &variable, &args));
        pool.push((variable, signature.returns.clone()));
    }
    Program { statements }
}

/// A signature whose custom-typed parameters can be made or are in the pool.
fn pick_signature<'a>(
    rng: &mut Rng,
    grammar: &'a Grammar,
    pool: &[(String, Kind)],
) -> Option<&'a Signature> {
    for _ in 0..20 {
        let signature = rng.pick(&grammar.signatures);
        let possible = signature
            .params
            .iter()
            .all(|kind| values::can_make(kind) || pool.iter().any(|(_, k)| k == kind));
        if possible {
            return Some(signature);
        }
    }
    None
}

fn variables_of(pool: &[(String, Kind)], kind: &Kind) -> Vec<String> {
    pool.iter()
        .filter(|(_, k)| k == kind)
        .map(|(name, _)| name.clone())
        .collect()
}

/// The call written in the signature's form, its result bound to `variable`.
fn statement(signature: &Signature, variable: &str, args: &[String]) -> String {
    let name = &signature.name;
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| "()".into());
    match signature.form {
        Form::Call => format!("let {variable} = {name}({});", args.join(", ")),
        Form::Getter => format!("let {variable} = {}.{name};", arg(0)),
        Form::Setter => format!(
            "let {variable} = {}; {variable}.{name} = {};",
            arg(0),
            arg(1)
        ),
        Form::IndexGet => format!("let {variable} = {}[{}];", arg(0), arg(1)),
        Form::IndexSet => format!(
            "let {variable} = {}; {variable}[{}] = {};",
            arg(0),
            arg(1),
            arg(2)
        ),
        Form::Operator if is_assignment(name) => {
            format!("let {variable} = {}; {variable} {name} {};", arg(0), arg(1))
        }
        Form::Operator if args.len() == 1 => format!("let {variable} = {name}({});", arg(0)),
        Form::Operator => format!("let {variable} = ({}) {name} ({});", arg(0), arg(1)),
    }
}

fn is_assignment(op: &str) -> bool {
    op.ends_with('=') && !matches!(op, "==" | "!=" | "<=" | ">=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_deterministic_and_parse() {
        let engine = crate::script::new_engine(Default::default());
        let grammar = Grammar::from_engine(&engine, false);
        for index in 0..200 {
            let program = generate(&grammar, 42, index);
            assert_eq!(program, generate(&grammar, 42, index));
            let text = program.text();
            assert!(engine.compile(&text).is_ok(), "does not parse:\n{text}");
            assert_eq!(Program::parse(&text), program);
        }
    }
}
