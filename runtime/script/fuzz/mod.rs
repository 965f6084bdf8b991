//! A grammar-based fuzzer over the whole script surface (issue 14): random
//! but well-formed programs calling every registered function with hostile
//! arguments, each run in a fresh scope of one long-lived engine, as the
//! REPL runs its inputs. The outcome of each program is one of
//! [`OutcomeClass`]; the `saelab fuzz` command (runtime/cli/fuzz.rs) runs
//! batches in a child process, so an abort or a hang is seen from outside.
mod grammar;
mod minimise;
mod program;
mod rng;
mod sandbox;
mod values;

pub use grammar::{Grammar, Kind, Signature, SLOW};
pub use minimise::minimise;
pub use program::{generate, Program};
pub use sandbox::Sandbox;

use crate::script::error::is_panic;
use crate::script::{console, describe_error, new_engine, EngineOptions};
use rhai::{Engine, EvalAltResult, Scope};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// What became of one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutcomeClass {
    /// It ran to the end.
    Ok,
    /// A script error naming its line and column.
    Error,
    /// A script error without a position: a defect, since every error a
    /// user sees should say where.
    ErrorWithoutPosition,
    /// A panic caught at the boundary: a bug.
    Panic,
    /// The process died (abort, segfault, OOM killer): a bug.
    Abort,
    /// No answer within the time cap: a bug (or a function to list as slow).
    Hang,
}

impl OutcomeClass {
    pub const ALL: [OutcomeClass; 6] = [
        OutcomeClass::Ok,
        OutcomeClass::Error,
        OutcomeClass::ErrorWithoutPosition,
        OutcomeClass::Panic,
        OutcomeClass::Abort,
        OutcomeClass::Hang,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OutcomeClass::Ok => "ok",
            OutcomeClass::Error => "error",
            OutcomeClass::ErrorWithoutPosition => "error-without-position",
            OutcomeClass::Panic => "panic",
            OutcomeClass::Abort => "abort",
            OutcomeClass::Hang => "hang",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether a program with this outcome is a bug to keep in the corpus.
    pub fn is_failure(self) -> bool {
        !matches!(self, OutcomeClass::Ok | OutcomeClass::Error)
    }
}

/// A program's class and, for errors, the message.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub class: OutcomeClass,
    pub message: String,
}

/// Rhai-level caps for fuzzed programs: a runaway loop ends with "too many
/// operations" at its position, and arrays, strings and maps stay small.
/// Native calls are capped from outside: the memory limit of the child
/// process (RLIMIT_AS) and the parent's wall clock.
pub const MAX_OPERATIONS: u64 = 200_000;
const MAX_ARRAY: usize = 1 << 20;
const MAX_STRING: usize = 1 << 20;
const MAX_MAP: usize = 10_000;

/// The engine every program of a batch runs in.
pub fn fuzz_engine(sandbox: &Path) -> Engine {
    let mut engine = new_engine(EngineOptions {
        script_dir: Some(sandbox.to_path_buf()),
    });
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_array_size(MAX_ARRAY);
    engine.set_max_string_size(MAX_STRING);
    engine.set_max_map_size(MAX_MAP);
    engine.set_max_call_levels(64);
    engine
}

/// Runs `text` in a fresh scope (holding `NAN`, `INF`, `NEG_INF`), output
/// captured and dropped. libtorch is seeded the same way before every
/// program, so a program does the same in a batch, alone, or minimised.
pub fn run_program(engine: &Engine, text: &str) -> Outcome {
    crate::core::rng::seed(0);
    crate::core::interrupt::clear();
    let mut scope = Scope::new();
    scope.push_constant("NAN", f64::NAN);
    scope.push_constant("INF", f64::INFINITY);
    scope.push_constant("NEG_INF", f64::NEG_INFINITY);
    console::start_capture();
    let result = catch_unwind(AssertUnwindSafe(|| engine.run_with_scope(&mut scope, text)));
    console::take_capture();
    match result {
        Ok(Ok(())) => Outcome {
            class: OutcomeClass::Ok,
            message: String::new(),
        },
        Ok(Err(err)) => classify_error(&err),
        Err(payload) => classify_error(&crate::script::error::panic_error(payload.as_ref())),
    }
}

fn classify_error(err: &EvalAltResult) -> Outcome {
    let (message, position) = describe_error(err);
    let class = if is_panic(err) {
        OutcomeClass::Panic
    } else if position.is_none() && !matches!(err, EvalAltResult::ErrorParsing(..)) {
        OutcomeClass::ErrorWithoutPosition
    } else {
        OutcomeClass::Error
    };
    Outcome { class, message }
}
