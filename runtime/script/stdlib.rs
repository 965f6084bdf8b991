//! Rhai modules shipped inside the binary (`stdlib/*.rhai`), so
//! `import "stats" as stats;` works from any directory and after
//! `cargo install`. Other imports are files beside the script.
use rhai::module_resolvers::FileModuleResolver;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

type SharedModule = Shared<Module>;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

/// (name, source) of every shipped module.
pub const MODULES: &[(&str, &str)] = &[
    ("stats", include_str!("../../stdlib/stats.rhai")),
    ("nn", include_str!("../../stdlib/nn.rhai")),
    ("scaling", include_str!("../../stdlib/scaling.rhai")),
];

/// The source of a shipped module, if `name` is one.
pub fn source(name: &str) -> Option<&'static str> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Shipped modules first, then `.rhai` files relative to the script's folder.
pub struct Resolver {
    files: FileModuleResolver,
    compiled: RefCell<HashMap<String, SharedModule>>,
}

impl Resolver {
    pub fn new(script_dir: Option<PathBuf>) -> Self {
        let base = script_dir.unwrap_or_else(|| PathBuf::from("."));
        Resolver {
            files: FileModuleResolver::new_with_path(base),
            compiled: RefCell::new(HashMap::new()),
        }
    }

    fn shipped(
        &self,
        engine: &Engine,
        name: &str,
        text: &str,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        if let Some(module) = self.compiled.borrow().get(name) {
            return Ok(module.clone());
        }
        let mut ast = engine.compile(text)?;
        ast.set_source(format!("stdlib/{name}.rhai"));
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine)?;
        module.build_index();
        let module: SharedModule = module.into();
        self.compiled
            .borrow_mut()
            .insert(name.to_string(), module.clone());
        Ok(module)
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        match self::source(path) {
            Some(text) => self
                .shipped(engine, path, text)
                .map_err(|err| Box::new(EvalAltResult::ErrorInModule(path.to_string(), err, pos))),
            None => self.files.resolve(engine, source, path, pos),
        }
    }
}
