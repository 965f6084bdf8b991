//! Builds the Rhai engine every front end shares (REPL, `saelab run`,
//! notebooks, tests): native packages, the `@` operator, the module
//! resolver, explicit limits, output routing and Ctrl-C handling.
use crate::core::interrupt;
use crate::script::{api, console, debug_functions, stdlib};
use rhai::Engine;
use std::path::PathBuf;

/// What differs between front ends.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Folder that `import "file"` resolves against (the script's folder).
    pub script_dir: Option<PathBuf>,
}

/// Precedence of `@`: the same as `*` and `/`, as in Python.
const MATMUL_PRECEDENCE: u8 = 180;

pub fn new_engine(options: EngineOptions) -> Engine {
    let mut engine = Engine::new();
    set_limits(&mut engine);
    engine.register_type_with_name::<crate::core::Tensor>("Tensor");
    engine.register_type_with_name::<api::autograd::Optimizer>("Optimizer");
    engine.register_type_with_name::<api::plot::Figure>("Figure");
    engine.register_type_with_name::<api::model::ScriptModel>("Model");
    engine.register_type_with_name::<api::activations::ScriptCorpus>("Corpus");
    engine.register_type_with_name::<api::activations::ScriptStore>("Store");
    engine.register_type_with_name::<api::sae::Sae>("Sae");
    for topic in api::topics() {
        engine.register_global_module(topic.module);
    }
    // `@` is a reserved symbol in Rhai, which is exactly what custom operators may use.
    if let Err(err) = engine.register_custom_operator("@", MATMUL_PRECEDENCE) {
        eprintln!("warning: the @ operator is unavailable: {err}");
    }
    debug_functions::register_if_enabled(&mut engine);
    engine.set_module_resolver(stdlib::Resolver::new(options.script_dir));
    engine.on_print(console::print_line);
    engine.on_debug(|text, source, pos| {
        let place = match (source, pos.line()) {
            (Some(src), Some(line)) => format!("{src}:{line}: "),
            (None, Some(line)) => format!("line {line}: "),
            _ => String::new(),
        };
        console::print_line(&format!("[debug] {place}{text}"));
    });
    engine.on_progress(|_| {
        interrupt::requested().then(|| {
            interrupt::clear();
            "interrupted".into()
        })
    });
    engine
}

/// Rhai's debug-build defaults (call depth 8) are too tight for real
/// scripts; set every limit on purpose instead.
fn set_limits(engine: &mut Engine) {
    engine.set_max_call_levels(256);
    engine.set_max_expr_depths(256, 128);
    engine.set_max_operations(0);
    engine.set_max_modules(256);
    engine.set_max_string_size(0);
    engine.set_max_array_size(0);
    engine.set_max_map_size(0);
}
