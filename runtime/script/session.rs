//! One scripting session, shared by every front end (the REPL, `saelab run`,
//! notebooks; a Jupyter kernel later): the engine, the variables, the
//! functions defined so far, the modules imported so far, and capturing
//! what an input prints (evcxr keeps
//! one `EvalContext` behind its REPL and its kernel the same way).
use crate::script::console::{self, Captured};
use crate::script::error::panic_error;
use crate::script::{new_engine, EngineOptions};
use rhai::{Dynamic, Engine, EvalAltResult, ParseErrorType, Position, Scope, AST};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub struct Session {
    engine: Engine,
    scope: Scope<'static>,
    /// Functions defined so far, merged into every later evaluation.
    functions: AST,
    /// `import` statements so far, replayed before every later evaluation
    /// (Rhai's imports otherwise end with the evaluation that made them).
    imports: AST,
}

impl Session {
    pub fn new(options: EngineOptions) -> Self {
        Self::with_engine(new_engine(options))
    }

    pub fn with_engine(engine: Engine) -> Self {
        Session {
            engine,
            scope: Scope::new(),
            functions: AST::empty(),
            imports: AST::empty(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The variables defined so far.
    pub fn scope(&self) -> &Scope<'static> {
        &self.scope
    }

    /// To define variables before a script runs (`--set`).
    pub fn scope_mut(&mut self) -> &mut Scope<'static> {
        &mut self.scope
    }

    /// Names of the functions the inputs so far defined (for completion).
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.functions.iter_functions().map(|f| f.name)
    }

    /// Compiles and runs `text` against the session: it sees every variable,
    /// function and import defined before, and what it defines stays for
    /// later inputs (functions even when it fails, imports when it succeeds).
    /// `source` names the text in error positions.
    pub fn eval(
        &mut self,
        text: &str,
        source: Option<&str>,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let mut ast = self.engine.compile_with_scope(&self.scope, text)?;
        if let Some(source) = source {
            ast.set_source(source);
        }
        let imports = self.import_statements(text);
        let program = self.imports.merge(&self.functions).merge(&ast);
        // Native calls are guarded where they are made (vendor/rhai), with
        // the call's position; this catches what panics elsewhere (a print
        // hook, the engine itself), so no front end loses its session.
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.engine
                .eval_ast_with_scope::<Dynamic>(&mut self.scope, &program)
        }))
        .unwrap_or_else(|payload| Err(panic_error(payload.as_ref())));
        self.functions = self.functions.merge(&ast.clone_functions_only());
        if result.is_ok() {
            if let Some(imports) = imports {
                self.imports = self.imports.merge(&imports);
            }
        }
        result
    }

    /// `eval` with everything the input prints, tables and figures it
    /// saves collected instead of shown (a notebook cell, a kernel's reply).
    pub fn eval_captured(
        &mut self,
        text: &str,
        source: Option<&str>,
    ) -> (Result<Dynamic, Box<EvalAltResult>>, Vec<Captured>) {
        console::start_capture();
        let result = self.eval(text, source);
        (result, console::take_capture())
    }

    /// The `import ... as ...;` lines of an input, compiled on their own.
    fn import_statements(&self, text: &str) -> Option<AST> {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("import ") && l.contains(" as "))
            .collect();
        if lines.is_empty() {
            return None;
        }
        self.engine.compile(lines.join("\n")).ok()
    }
}

/// What the parser makes of an input as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// It parses.
    Complete,
    /// The parser ran out of text: more lines should follow.
    Incomplete,
    /// A mistake more text cannot fix; evaluating it reports the error.
    Invalid,
}

/// Asks Rhai's parser (evcxr's way): an input is incomplete when the parser
/// ran out of text — an open block, string or bracket, or an expression
/// cut after an operator.
pub fn completeness(engine: &Engine, input: &str) -> Completeness {
    let end = end_position(input);
    match engine.compile(input) {
        Ok(_) => Completeness::Complete,
        Err(err) => {
            let at_end = err.position().is_none() || err.position() >= end;
            let ran_out = matches!(err.err_type(), ParseErrorType::UnexpectedEOF)
                || (at_end && matches!(err.err_type(), ParseErrorType::MissingToken(..)))
                || unterminated_string(err.err_type());
            if ran_out {
                Completeness::Incomplete
            } else {
                Completeness::Invalid
            }
        }
    }
}

/// Whether `input` can be submitted as it stands: anything but incomplete
/// (an invalid input is submitted, and evaluating it shows the error).
pub fn is_complete(engine: &Engine, input: &str) -> bool {
    completeness(engine, input) != Completeness::Incomplete
}

fn unterminated_string(err: &ParseErrorType) -> bool {
    matches!(err, ParseErrorType::BadInput(token) if token.to_string().contains("Open string"))
}

/// The position just past the last character of `input`.
fn end_position(input: &str) -> Position {
    let lines = input.split('\n').count().max(1);
    let last = input.rsplit('\n').next().unwrap_or("");
    Position::new(lines as u16, last.chars().count().max(1) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_blocks_strings_and_dangling_operators_continue() {
        let engine = new_engine(EngineOptions::default());
        assert!(!is_complete(&engine, "fn f(x) {\n"));
        assert!(!is_complete(&engine, "let y = 1 +\n"));
        assert!(!is_complete(&engine, "let s = \"unterminated\n"));
        assert!(!is_complete(&engine, "let a = [1, 2,\n"));
        assert!(is_complete(&engine, "let x = [1, 2, 3];\n"));
        assert!(is_complete(&engine, "// a comment with { brace\n"));
        assert!(is_complete(&engine, "let s = \"a } in a string\";"));
        // A mistake in the middle is complete: evaluating it shows the error.
        assert!(is_complete(&engine, "let = 3;\nlet y = 2;"));
    }

    #[test]
    fn a_mistake_more_text_cannot_fix_is_invalid() {
        let engine = new_engine(EngineOptions::default());
        assert_eq!(
            completeness(&engine, "let = 3;\nlet y = 2;"),
            Completeness::Invalid
        );
        assert_eq!(completeness(&engine, "fn f(x) {"), Completeness::Incomplete);
        assert_eq!(completeness(&engine, "1 + 2"), Completeness::Complete);
    }

    #[test]
    fn variables_functions_and_imports_outlive_the_input_that_made_them() {
        let mut session = Session::new(EngineOptions::default());
        let defined = session.eval(
            "import \"stats\" as st;\nlet x = 2;\nfn double(v) { v * 2 }",
            None,
        );
        assert!(defined.is_ok(), "{defined:?}");
        let value = session.eval("double(x)", None).unwrap();
        assert_eq!(value.as_int().unwrap(), 4);
        // The module imported earlier is still there.
        assert!(session.eval("st::mean([1.0, 3.0])", None).is_ok());
        // A failed input keeps the session usable.
        assert!(session.eval("undefined_function()", None).is_err());
        assert_eq!(session.eval("x + 1", None).unwrap().as_int().unwrap(), 3);
    }
}
