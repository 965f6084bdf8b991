//! `saelab run FILE [--set name=value ...]`.
use rhai::{EvalAltResult, Scope};
use saelab::script::convert::parse_scalar;
use saelab::script::{located_message, EngineOptions, Session};
use std::path::Path;
use std::process::ExitCode;

/// Exit status for a script stopped by Ctrl-C, as shells report SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

pub fn run_script(file: &Path, settings: &[String]) -> ExitCode {
    let mut session = session_for(file);
    if let Err(message) = apply_settings(session.scope_mut(), settings) {
        eprintln!("saelab: {message}");
        return ExitCode::from(2);
    }
    match eval_file(&mut session, file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(file, &err);
            let interrupted = matches!(*err, EvalAltResult::ErrorTerminated(..))
                || saelab::core::interrupt::requested();
            if interrupted {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A session whose imports resolve beside `file`.
pub fn session_for(file: &Path) -> Session {
    Session::new(EngineOptions {
        script_dir: file.parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
            .to_path_buf()
        }),
    })
}

/// Compiles and runs a whole file in the session.
pub fn eval_file(session: &mut Session, file: &Path) -> Result<(), Box<EvalAltResult>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Box::new(EvalAltResult::ErrorSystem(
            format!("cannot read {}", file.display()),
            Box::new(e),
        ))
    })?;
    session
        .eval(&text, Some(&file.display().to_string()))
        .map(|_| ())
}

/// Prints `FILE:LINE:COL: message` (or `FILE: message` without a position),
/// FILE being the imported module's where the error is in one.
pub fn report_error(file: &Path, err: &EvalAltResult) {
    eprintln!("{}", located_message(err, Some(file), 1));
}

/// `--set name=value`: numbers and booleans keep their type, anything else is text.
pub fn apply_settings(scope: &mut Scope, settings: &[String]) -> Result<(), String> {
    for setting in settings {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("--set expects NAME=VALUE, got '{setting}'"))?;
        let name = name.trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("--set: '{name}' is not a valid variable name"));
        }
        scope.push_dynamic(name.to_string(), parse_scalar(value));
    }
    Ok(())
}
