//! The interactive REPL: rustyline with history, multi-line input (an
//! unfinished block keeps reading; a blank line forces submission), tab
//! completion, `:help`, `:load`, and Ctrl-C that interrupts the running
//! evaluation without losing the session.
use rhai::{Dynamic, Engine, Scope, AST};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Context, Editor, Helper, Highlighter, Hinter, Validator};
use saelab::core::interrupt;
use saelab::script::display::format_value;
use saelab::script::help::HelpIndex;
use saelab::script::{describe_error, error_location, new_engine, EngineOptions};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

const PROMPT: &str = "saelab> ";
const CONTINUE: &str = "   ...> ";

/// Everything that survives from one input to the next.
struct Session {
    engine: Engine,
    scope: Scope<'static>,
    /// Functions defined so far, merged into every later evaluation.
    functions: AST,
    /// `import` statements so far, replayed before every later evaluation
    /// (Rhai's imports otherwise end with the evaluation that made them).
    imports: AST,
    help: HelpIndex,
}

pub fn run_repl() -> ExitCode {
    let engine = new_engine(EngineOptions::default());
    let help = HelpIndex::build(&engine);
    let names: Vec<String> = help.names().map(String::from).collect();
    let mut session = Session {
        engine,
        scope: Scope::new(),
        functions: AST::empty(),
        imports: AST::empty(),
        help,
    };
    let variables = Rc::new(RefCell::new(Vec::new()));
    let mut editor = match Editor::<ReplHelper, DefaultHistory>::new() {
        Ok(editor) => editor,
        Err(err) => {
            eprintln!("saelab: cannot start the line editor: {err}");
            return ExitCode::FAILURE;
        }
    };
    editor.set_helper(Some(ReplHelper {
        names,
        variables: variables.clone(),
    }));
    let history = history_path();
    let _ = editor.load_history(&history);
    println!(
        "saelab {} — `:help` lists functions, `:quit` leaves. Ctrl-C interrupts a running command.",
        env!("CARGO_PKG_VERSION")
    );
    while let Some(input) = read_input(&mut editor) {
        let _ = editor.add_history_entry(input.trim_end());
        if !handle(&mut session, input.trim()) {
            break;
        }
        *variables.borrow_mut() = session
            .scope
            .iter_raw()
            .map(|(name, _, _)| name.to_string())
            .collect();
    }
    if let Some(parent) = history.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = editor.save_history(&history);
    ExitCode::SUCCESS
}

/// Reads one complete input, continuing while it is unfinished.
fn read_input(editor: &mut Editor<ReplHelper, DefaultHistory>) -> Option<String> {
    let mut input = String::new();
    loop {
        let prompt = if input.is_empty() { PROMPT } else { CONTINUE };
        match editor.readline(prompt) {
            Ok(line) => {
                let blank = line.trim().is_empty();
                input.push_str(&line);
                input.push('\n');
                if input.trim().is_empty() {
                    input.clear();
                    continue;
                }
                if blank || input.trim_start().starts_with(':') || is_complete(&input) {
                    return Some(input);
                }
            }
            // Ctrl-C at the prompt abandons the current input, like a shell.
            Err(ReadlineError::Interrupted) => {
                input.clear();
                println!("^C");
            }
            Err(_) => return None,
        }
    }
}

/// Whether an input can be evaluated now: brackets are balanced and the
/// text does not end in the middle of an expression.
pub fn is_complete(input: &str) -> bool {
    let mut depth: i64 = 0;
    let mut chars = input.chars().peekable();
    let mut in_string: Option<char> = None;
    while let Some(c) = chars.next() {
        match (in_string, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => in_string = None,
            (Some(_), _) => {}
            (None, '"' | '`' | '\'') => in_string = Some(c),
            (None, '/') if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            _ => {}
        }
    }
    let trimmed = input.trim_end();
    let dangling = ["+", "-", "*", "/", "@", "=", ",", "&&", "||", "."]
        .iter()
        .any(|op| trimmed.ends_with(op));
    depth <= 0 && in_string.is_none() && !dangling
}

/// Handles one input; returns false when the user asked to leave.
fn handle(session: &mut Session, input: &str) -> bool {
    if let Some(command) = input.strip_prefix(':') {
        return command_line(session, command.trim());
    }
    evaluate(session, input, None);
    true
}

fn command_line(session: &mut Session, command: &str) -> bool {
    let (name, argument) = command.split_once(' ').unwrap_or((command, ""));
    match name {
        "q" | "quit" | "exit" => return false,
        "help" | "h" if argument.trim().is_empty() => print!("{}", session.help.overview()),
        "help" | "h" => print!("{}", session.help.describe(argument)),
        "load" if !argument.trim().is_empty() => load_file(session, Path::new(argument.trim())),
        "vars" => {
            for (name, _, value) in session.scope.iter_raw() {
                println!("{name}: {}", value.type_name());
            }
        }
        _ => println!("unknown command ':{name}' (try :help, :load FILE, :vars, :quit)"),
    }
    true
}

fn load_file(session: &mut Session, path: &Path) {
    match std::fs::read_to_string(path) {
        Ok(text) => evaluate(session, &text, Some(path)),
        Err(err) => println!("error: cannot read {}: {err}", path.display()),
    }
}

/// Compiles and runs one input against the session, printing its value or
/// its error; the session stays usable either way.
fn evaluate(session: &mut Session, text: &str, file: Option<&Path>) {
    interrupt::clear();
    let mut ast = match session.engine.compile_with_scope(&session.scope, text) {
        Ok(ast) => ast,
        Err(err) => return print_error(&err.into(), file),
    };
    if let Some(path) = file {
        ast.set_source(path.display().to_string());
    }
    let imports = import_statements(&session.engine, text);
    let program = session.imports.merge(&session.functions).merge(&ast);
    let result = session
        .engine
        .eval_ast_with_scope::<Dynamic>(&mut session.scope, &program);
    session.functions = session.functions.merge(&ast.clone_functions_only());
    match result {
        Ok(value) => {
            if let Some(imports) = imports {
                session.imports = session.imports.merge(&imports);
            }
            if !value.is_unit() {
                println!("{}", format_value(&value));
            }
        }
        Err(err) => print_error(&err, file),
    }
}

/// The `import ... as ...;` lines of an input, compiled on their own.
fn import_statements(engine: &Engine, text: &str) -> Option<AST> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("import ") && l.contains(" as "))
        .collect();
    if lines.is_empty() {
        return None;
    }
    engine.compile(lines.join("\n")).ok()
}

fn print_error(err: &rhai::EvalAltResult, file: Option<&Path>) {
    let (message, position) = describe_error(err);
    println!("error: {}{message}", error_location(file, position, 1));
}

fn history_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SAELAB_HISTORY") {
        return PathBuf::from(path);
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("saelab").join("history")
}

/// Tab completion over registered functions, properties and variables.
#[derive(Helper, Highlighter, Hinter, Validator)]
struct ReplHelper {
    names: Vec<String>,
    variables: Rc<RefCell<Vec<String>>>,
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((start, Vec::new()));
        }
        let variables = self.variables.borrow();
        let mut candidates: Vec<Pair> = variables
            .iter()
            .chain(self.names.iter())
            .filter(|n| n.starts_with(word))
            .map(|n| Pair {
                display: n.clone(),
                replacement: n.clone(),
            })
            .collect();
        candidates.dedup_by(|a, b| a.display == b.display);
        Ok((start, candidates))
    }
}

#[cfg(test)]
mod tests {
    use super::is_complete;

    #[test]
    fn open_blocks_and_dangling_operators_continue() {
        assert!(!is_complete("fn f(x) {\n"));
        assert!(!is_complete("let y = x +\n"));
        assert!(!is_complete("let s = \"unterminated\n"));
        assert!(is_complete("let x = [1, 2, 3];\n"));
        assert!(is_complete("// a comment with { brace\n"));
    }
}
