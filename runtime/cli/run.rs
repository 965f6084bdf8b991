//! `saelab run FILE [--set name=value ...]`.
use rhai::{Engine, EvalAltResult, Scope};
use saelab::script::convert::parse_scalar;
use saelab::script::{describe_error, error_location, new_engine, EngineOptions};
use std::path::Path;
use std::process::ExitCode;

/// Exit status for a script stopped by Ctrl-C, as shells report SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

pub fn run_script(file: &Path, settings: &[String]) -> ExitCode {
    let mut scope = Scope::new();
    if let Err(message) = apply_settings(&mut scope, settings) {
        eprintln!("saelab: {message}");
        return ExitCode::from(2);
    }
    let engine = engine_for(file);
    match eval_file(&engine, &mut scope, file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(file, &err);
            if matches!(*err, EvalAltResult::ErrorTerminated(..)) {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An engine whose imports resolve beside `file`.
pub fn engine_for(file: &Path) -> Engine {
    new_engine(EngineOptions {
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

/// Compiles and runs a whole file in `scope`.
pub fn eval_file(
    engine: &Engine,
    scope: &mut Scope,
    file: &Path,
) -> Result<(), Box<EvalAltResult>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Box::new(EvalAltResult::ErrorSystem(
            format!("cannot read {}", file.display()),
            Box::new(e),
        ))
    })?;
    let mut ast = engine.compile_with_scope(scope, text)?;
    ast.set_source(file.display().to_string());
    engine.run_ast_with_scope(scope, &ast)
}

/// Prints `FILE:LINE:COL: message` (or `FILE: message` without a position).
pub fn report_error(file: &Path, err: &EvalAltResult) {
    let (message, position) = describe_error(err);
    eprintln!("{}{message}", error_location(Some(file), position, 1));
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
