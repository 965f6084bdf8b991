//! The interactive REPL: rustyline with history, multi-line input (an
//! unfinished block keeps reading; a blank line forces submission), tab
//! completion, `:help`, `:load`, and Ctrl-C that interrupts the running
//! evaluation without losing the session.
use rhai::Engine;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Context, Editor, Helper, Highlighter, Hinter, Validator};
use saelab::core::interrupt;
use saelab::script::display::format_value;
use saelab::script::help::HelpIndex;
use saelab::script::{is_complete, located_message, new_engine, EngineOptions, Session};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

const PROMPT: &str = "saelab> ";
const CONTINUE: &str = "   ...> ";

/// The REPL's state: the shared scripting session and the help index.
struct Repl {
    session: Session,
    help: HelpIndex,
}

pub fn run_repl() -> ExitCode {
    let session = Session::new(EngineOptions::default());
    let help = HelpIndex::build(session.engine());
    let names: Vec<String> = help.names().map(String::from).collect();
    let mut repl = Repl { session, help };
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
    // Multi-line input asks the parser whether it is complete; the parser
    // needs saelab's operators, so it gets an engine of its own.
    let parser = new_engine(EngineOptions::default());
    let history = history_path();
    let _ = editor.load_history(&history);
    println!(
        "saelab {} — `:help` lists functions, `:quit` leaves. Ctrl-C interrupts a running command.",
        env!("CARGO_PKG_VERSION")
    );
    while let Some(input) = read_input(&mut editor, &parser) {
        let _ = editor.add_history_entry(input.trim_end());
        if !handle(&mut repl, input.trim()) {
            break;
        }
        *variables.borrow_mut() = repl
            .session
            .scope()
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
fn read_input(editor: &mut Editor<ReplHelper, DefaultHistory>, parser: &Engine) -> Option<String> {
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
                if blank || input.trim_start().starts_with(':') || is_complete(parser, &input) {
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

/// Handles one input; returns false when the user asked to leave.
fn handle(repl: &mut Repl, input: &str) -> bool {
    if let Some(command) = input.strip_prefix(':') {
        return command_line(repl, command.trim());
    }
    evaluate(&mut repl.session, input, None);
    true
}

fn command_line(repl: &mut Repl, command: &str) -> bool {
    let (name, argument) = command.split_once(' ').unwrap_or((command, ""));
    match name {
        "q" | "quit" | "exit" => return false,
        "help" | "h" if argument.trim().is_empty() => print!("{}", repl.help.overview()),
        "help" | "h" => print!("{}", repl.help.describe(argument)),
        "load" if !argument.trim().is_empty() => {
            load_file(&mut repl.session, Path::new(argument.trim()))
        }
        "vars" => {
            for (name, _, value) in repl.session.scope().iter_raw() {
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

/// Runs one input in the session, printing its value or its error; the
/// session stays usable either way.
fn evaluate(session: &mut Session, text: &str, file: Option<&Path>) {
    interrupt::clear();
    let source = file.map(|path| path.display().to_string());
    match session.eval(text, source.as_deref()) {
        Ok(value) if !value.is_unit() => println!("{}", format_value(&value)),
        Ok(_) => {}
        Err(err) => print_error(&err, file),
    }
}

fn print_error(err: &rhai::EvalAltResult, file: Option<&Path>) {
    println!("error: {}", located_message(err, file, 1));
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
