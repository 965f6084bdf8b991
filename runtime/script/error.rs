//! Turning core and libtorch failures into Rhai runtime errors. Rhai fills
//! in the script position of the failing call, so every message reaches the
//! user as `FILE:LINE:COL: message`.
use rhai::{EvalAltResult, NativePanic, Position};
use std::path::Path;

pub type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

// A core error reaches scripts through rhai's own `From<T: AsRef<str>>`:
// it carries its message (see `core::error`), so `?` on a core result in a
// native function gives a runtime error at the call's position. A Ctrl-C
// inside a native loop leaves the interrupt requested, so the engine's
// `on_progress` ends the script as it ends an interrupted script.

/// A plain runtime error; Rhai attaches the call's position.
pub fn runtime_error(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        message.into().into(),
        Position::NONE,
    ))
}

/// `?`-friendly conversion of tch results.
pub trait OrScriptError<T> {
    fn or_script_error(self) -> ScriptResult<T>;
}

impl<T> OrScriptError<T> for Result<T, tch::TchError> {
    fn or_script_error(self) -> ScriptResult<T> {
        self.map_err(|e| crate::core::Error::from(e).into())
    }
}

/// Splits an evaluation error into its message and position, so front ends
/// can print `FILE:LINE:COL: message` (or just the message at the REPL).
pub fn describe_error(err: &EvalAltResult) -> (String, Position) {
    // Errors inside functions and modules nest; the innermost one says what
    // failed, and its position is where the failing call was written.
    let mut current = err;
    let mut position = err.position();
    while let EvalAltResult::ErrorInFunctionCall(_, _, nested, _)
    | EvalAltResult::ErrorInModule(_, nested, _) = current
    {
        current = nested;
        if !current.position().is_none() {
            position = current.position();
        }
    }
    let message = match current {
        EvalAltResult::ErrorRuntime(value, _) => match value.read_lock::<NativePanic>() {
            Some(panic) => bug_message(&panic),
            None => value.to_string(),
        },
        EvalAltResult::ErrorTerminated(_, _) => "interrupted".to_string(),
        // Display appends " (line L, position P)"; the caller prints the position itself.
        other => {
            let text = other.to_string();
            let suffix = format!(" ({})", other.position());
            text.strip_suffix(&suffix).unwrap_or(&text).to_string()
        }
    };
    (message, position)
}

/// The file an error's position is in when that is not the evaluated text
/// but a module it imported: a function of `stdlib/scaling.rhai` that
/// failed is reported at its own line in that file, not at the same line
/// number of the calling script. None when the position is in the evaluated
/// text itself, whose source name (if it was given one) is `evaluated`.
pub fn error_module(err: &EvalAltResult, evaluated: Option<&str>) -> Option<String> {
    let mut current = err;
    let mut module = None;
    loop {
        let (nested, here) = match current {
            // A function's body lives in its source (empty: the evaluated text).
            EvalAltResult::ErrorInFunctionCall(_, source, nested, _) => {
                (nested, (!source.is_empty()).then(|| module_file(source)))
            }
            EvalAltResult::ErrorInModule(path, nested, _) => (nested, Some(module_file(path))),
            _ => return module.filter(|m: &String| Some(m.as_str()) != evaluated),
        };
        current = nested;
        if !current.position().is_none() {
            module = here;
        }
    }
}

/// `FILE:LINE:COL: message` for an error of the text evaluated as `file`
/// (its first line being line `first_line` of that file), or, when the error
/// is in an imported module's code, at that module's file and line.
pub fn located_message(err: &EvalAltResult, file: Option<&Path>, first_line: usize) -> String {
    let (message, position) = describe_error(err);
    let evaluated = file.map(|f| f.display().to_string());
    let location = match error_module(err, evaluated.as_deref()) {
        Some(module) => error_location(Some(Path::new(&module)), position, 1),
        None => error_location(file, position, first_line),
    };
    format!("{location}{message}")
}

/// The file behind an import path (or a source name): a shipped module's
/// `stdlib/NAME.rhai`, else the path with rhai's `.rhai` extension.
fn module_file(path: &str) -> String {
    if crate::script::stdlib::source(path).is_some() {
        format!("stdlib/{path}.rhai")
    } else if Path::new(path).extension().is_some() {
        path.to_string()
    } else {
        format!("{path}.rhai")
    }
}

/// The last line of defence (issue 14): a panic that escaped a native
/// function (caught by the guard in vendor/rhai, or by `Session::eval`) reads
/// as a bug report, and the session that raised it lives on.
pub fn bug_message(panic: &NativePanic) -> String {
    format!(
        "{}: {} (this is a bug in saelab, please report it with the script that \
         triggered it; your session and its variables are kept)",
        panic.function, panic.message
    )
}

/// Whether an evaluation error is a caught panic rather than a script mistake.
pub fn is_panic(err: &EvalAltResult) -> bool {
    let mut current = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, nested, _)
    | EvalAltResult::ErrorInModule(_, nested, _) = current
    {
        current = nested;
    }
    matches!(current, EvalAltResult::ErrorRuntime(value, _) if value.is::<NativePanic>())
}

/// A panic caught around a whole evaluation (outside any native function),
/// as the same runtime error the guard gives; it has no script position.
pub fn panic_error(payload: &(dyn std::any::Any + Send)) -> Box<EvalAltResult> {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    let panic = NativePanic {
        function: "the script engine".into(),
        message,
    };
    Box::new(EvalAltResult::ErrorRuntime(
        rhai::Dynamic::from(panic),
        Position::NONE,
    ))
}

/// Where an error happened, to print before its message: `FILE:LINE:COL: `
/// (or `FILE:LINE: `, `FILE: `), and without a file `line L, column C: `
/// (or `line L: `, nothing). `first_line` is the line of the file on which
/// the evaluated text starts: 1 for a whole script, later for a notebook cell.
pub fn error_location(file: Option<&Path>, position: Position, first_line: usize) -> String {
    let line = position.line().map(|line| line + first_line - 1);
    match (file, line, position.position()) {
        (Some(f), Some(line), Some(column)) => format!("{}:{line}:{column}: ", f.display()),
        (Some(f), Some(line), None) => format!("{}:{line}: ", f.display()),
        (Some(f), None, _) => format!("{}: ", f.display()),
        (None, Some(line), Some(column)) => format!("line {line}, column {column}: "),
        (None, Some(line), None) => format!("line {line}: "),
        (None, None, _) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_the_file_line_and_column_that_are_known() {
        let file = Path::new("scripts/run.rhai");
        let at = Position::new(3, 7);
        assert_eq!(error_location(Some(file), at, 1), "scripts/run.rhai:3:7: ");
        assert_eq!(
            error_location(Some(file), at, 10),
            "scripts/run.rhai:12:7: "
        );
        assert_eq!(
            error_location(Some(file), Position::new(3, 0), 1),
            "scripts/run.rhai:3: "
        );
        assert_eq!(
            error_location(Some(file), Position::NONE, 1),
            "scripts/run.rhai: "
        );
        assert_eq!(error_location(None, at, 1), "line 3, column 7: ");
        assert_eq!(error_location(None, Position::NONE, 1), "");
    }
}
