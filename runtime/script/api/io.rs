//! Files from scripts: tensors in safetensors files, and text (reports).
use rhai::plugin::*;

#[export_module]
pub mod io_api {
    use crate::core::tensor_io;
    use crate::script::error::{runtime_error, ScriptResult};
    use rhai::{Dynamic, Map};
    use std::path::Path;

    pub type Tensor = crate::core::Tensor;

    /// Saves a map of named tensors to a safetensors file (written atomically).
    /// `save_tensors("w.safetensors", #{w: w, b: b})`
    #[rhai_fn(return_raw)]
    pub fn save_tensors(path: &str, tensors: Map) -> ScriptResult<()> {
        let named = tensors
            .iter()
            .map(|(name, v)| match v.read_lock::<Tensor>() {
                Some(t) => Ok((name.to_string(), t.clone())),
                None => Err(runtime_error(format!(
                    "save_tensors: '{name}' is a {}, not a tensor",
                    v.type_name()
                ))),
            })
            .collect::<ScriptResult<Vec<_>>>()?;
        Ok(tensor_io::save_tensors(Path::new(path), &named)?)
    }

    /// Writes text to a file atomically (creating its folder), e.g. a Markdown report.
    /// `write_text("runs/scaling/SUMMARY.md", summary)`
    #[rhai_fn(return_raw)]
    pub fn write_text(path: &str, text: &str) -> ScriptResult<()> {
        Ok(crate::core::fs::write_atomic(Path::new(path), text)?)
    }

    /// Reads a whole text file. `let notes = read_text("runs/scaling/SUMMARY.md");`
    #[rhai_fn(return_raw)]
    pub fn read_text(path: &str) -> ScriptResult<String> {
        std::fs::read_to_string(path).map_err(|e| crate::core::Error::io(Path::new(path), e).into())
    }

    /// Whether a file or folder exists, e.g. to reuse a saved SAE.
    /// `if file_exists("runs/demo/sae/cfg.json") { ... }`
    pub fn file_exists(path: &str) -> bool {
        Path::new(path).exists()
    }

    /// Loads every tensor of a safetensors file into a map. `let t = load_tensors("w.safetensors");`
    #[rhai_fn(return_raw)]
    pub fn load_tensors(path: &str) -> ScriptResult<Map> {
        let loaded = tensor_io::load_tensors(Path::new(path))?;
        Ok(loaded
            .into_iter()
            .map(|(name, t)| (name.into(), Dynamic::from(t)))
            .collect())
    }
}
