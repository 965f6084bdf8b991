//! Language models in scripts: load a GGUF model, tokenize, run it, read its
//! activations, generate text.
use crate::core::model::{GenerateOptions, HookPoint, Model, Site};
use crate::core::precision::Precision;
use crate::core::tensor::parse_device;
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, Map, INT};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tch::Device;

/// A loaded model; copies of the handle share the weights.
pub type ScriptModel = Rc<Model>;

/// Where and how a model is loaded: `load_model`'s options.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Placement {
    device: Device,
    precision: Precision,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            device: Device::Cpu,
            precision: Precision::F32,
        }
    }
}

thread_local! {
    /// The last model loaded, so `load_model()` again in a REPL session (or a
    /// script run twice with `:load`) takes no time and no second copy of the weights.
    static LAST_LOADED: RefCell<Option<(PathBuf, Placement, ScriptModel)>> = const { RefCell::new(None) };
}

fn load(path: &Path, placement: Placement) -> ScriptResult<ScriptModel> {
    let cached = LAST_LOADED.with(|last| {
        last.borrow()
            .as_ref()
            .filter(|(p, how, _)| p == path && *how == placement)
            .map(|(_, _, model)| model.clone())
    });
    if let Some(model) = cached {
        return Ok(model);
    }
    // Drop the previous model before loading the next, so two never share memory.
    LAST_LOADED.with(|last| last.borrow_mut().take());
    let model = Rc::new(Model::load(path, placement.device, placement.precision)?);
    LAST_LOADED
        .with(|last| *last.borrow_mut() = Some((path.to_path_buf(), placement, model.clone())));
    Ok(model)
}

/// `#{device, precision}`: "cpu"/"cuda"/..., and "f32", "tf32" or "bf16".
fn placement_option(opts: &Map) -> ScriptResult<Placement> {
    let opts = Options::new(opts, "load_model", &["device", "precision"])?;
    let mut placement = Placement::default();
    if let Some(name) = opts.string("device")? {
        placement.device = parse_device(&name)?;
    }
    if let Some(name) = opts.string("precision")? {
        placement.precision = Precision::parse(&name)?;
    }
    Ok(placement)
}

fn layer_index(layer: INT) -> ScriptResult<usize> {
    usize::try_from(layer).map_err(|_| runtime_error(format!("layer must be >= 0, got {layer}")))
}

fn token_ids(ids: &Dynamic) -> ScriptResult<Vec<u32>> {
    let values: Vec<f64> = if let Some(t) = ids.read_lock::<crate::core::Tensor>() {
        t.to_f64_vec()?
    } else if let Some(array) = ids.read_lock::<Array>() {
        crate::script::convert::int_list(&array, "token ids")?
            .into_iter()
            .map(|i| i as f64)
            .collect()
    } else {
        return Err(runtime_error(format!(
            "decode: expected an array or a tensor of token ids, got {}",
            ids.type_name()
        )));
    };
    values
        .into_iter()
        .map(|v| {
            if v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0 {
                Ok(v as u32)
            } else {
                Err(runtime_error(format!("decode: {v} is not a token id")))
            }
        })
        .collect()
}

pub(crate) fn generate_options(opts: &Map) -> ScriptResult<GenerateOptions> {
    let known = [
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "chat",
        "steer",
        "hooks",
    ];
    let opts = Options::new(opts, "generate", &known)?;
    let defaults = GenerateOptions::default();
    let max_tokens = opts.int("max_tokens", defaults.max_tokens as i64)?;
    let seed = opts.int("seed", crate::core::rng::current_seed() as i64)?;
    Ok(GenerateOptions {
        max_tokens: usize::try_from(max_tokens).map_err(|_| {
            runtime_error(format!(
                "generate: max_tokens must be >= 0, got {max_tokens}"
            ))
        })?,
        temperature: opts.f64("temperature", defaults.temperature)?,
        top_p: opts.f64("top_p", defaults.top_p)?,
        seed: seed as u64,
        chat: opts.bool("chat", defaults.chat)?,
    })
}

#[export_module]
pub mod model_api {
    use super::{generate_options, layer_index, load, placement_option, token_ids, Placement};
    use crate::core::model::{default_model_path, Hooks, Site};
    use crate::script::convert::Options;
    use crate::script::error::ScriptResult;
    use rhai::{Array, Dynamic, Map, INT};
    use std::path::Path;

    pub type Model = super::ScriptModel;
    pub type Tensor = crate::core::Tensor;

    /// The default model, SmolLM2-135M-Instruct, from the cache that
    /// `make setup` fills. `let m = load_model();`
    #[rhai_fn(return_raw)]
    pub fn load_model() -> ScriptResult<Model> {
        load(&default_model_path(), Placement::default())
    }

    /// Any llama-architecture GGUF file. `let m = load_model("models/tiny.gguf");`
    #[rhai_fn(name = "load_model", return_raw)]
    pub fn load_model_from(path: &str) -> ScriptResult<Model> {
        load(Path::new(path), Placement::default())
    }

    /// The default model on a device, in a precision: `precision` "f32" (the
    /// default) or "bf16" (bf16 matmuls, f32 residual stream, norms and
    /// logits; about 3× faster on CPUs with AVX512-BF16 or AMX).
    /// `let m = load_model(#{device: device(), precision: "bf16"});`
    #[rhai_fn(name = "load_model", return_raw)]
    pub fn load_model_with(opts: Map) -> ScriptResult<Model> {
        load(&default_model_path(), placement_option(&opts)?)
    }

    /// A GGUF file on a device, in a precision. `load_model("m.gguf", #{device: "cuda", precision: "bf16"})`
    #[rhai_fn(name = "load_model", return_raw)]
    pub fn load_model_from_with(path: &str, opts: Map) -> ScriptResult<Model> {
        load(Path::new(path), placement_option(&opts)?)
    }

    /// Token ids of a text (BOS first only if the model asks for it). `m.tokenize("Hello")`
    #[rhai_fn(pure, return_raw)]
    pub fn tokenize(m: &mut Model, text: &str) -> ScriptResult<Array> {
        Ok(m.encode(text)?
            .into_iter()
            .map(|id| Dynamic::from(id as INT))
            .collect())
    }

    /// The text of token ids (an array or a tensor). `m.decode([504, 3575])`
    #[rhai_fn(pure, return_raw)]
    pub fn decode(m: &mut Model, ids: Dynamic) -> ScriptResult<String> {
        Ok(m.decode(&token_ids(&ids)?)?)
    }

    /// Each token's text, to label plots and tables. `m.tokens("Hello world")`
    #[rhai_fn(pure, return_raw)]
    pub fn tokens(m: &mut Model, text: &str) -> ScriptResult<Array> {
        m.encode(text)?
            .into_iter()
            .map(|id| Ok(Dynamic::from(m.decode(&[id])?)))
            .collect()
    }

    /// The precision its matrices compute in: "f32" or "bf16". `m.precision`
    #[rhai_fn(get = "precision", pure)]
    pub fn precision(m: &mut Model) -> String {
        m.precision().name().to_string()
    }

    /// Number of transformer blocks. `m.n_layers`
    #[rhai_fn(get = "n_layers", pure)]
    pub fn n_layers(m: &mut Model) -> INT {
        m.n_layers() as INT
    }

    /// Width of the residual stream. `m.d_model`
    #[rhai_fn(get = "d_model", pure)]
    pub fn d_model(m: &mut Model) -> INT {
        m.d_model() as INT
    }

    /// Number of MLP neurons per layer. `m.d_mlp`
    #[rhai_fn(get = "d_mlp", pure)]
    pub fn d_mlp(m: &mut Model) -> INT {
        m.llama.config.d_mlp as INT
    }

    /// Number of tokens in the vocabulary. `m.vocab_size`
    #[rhai_fn(get = "vocab_size", pure)]
    pub fn vocab_size(m: &mut Model) -> INT {
        m.llama.config.vocab_size as INT
    }

    /// The model's name from its metadata. `m.name`
    #[rhai_fn(get = "name", pure)]
    pub fn name(m: &mut Model) -> String {
        m.name.clone()
    }

    /// Logits for every position of a text, `[T, vocab]`. `m.forward("The cat").softmax(1)`
    #[rhai_fn(pure, return_raw)]
    pub fn forward(m: &mut Model, text: &str) -> ScriptResult<Tensor> {
        Ok(Tensor::new(m.logits(text)?))
    }

    /// The residual stream entering block `layer` (0-based; `m.n_layers`
    /// gives the final residual before the last norm), `[T, d_model]`; the
    /// forward stops at that layer. `m.activations("The cat sat", 15)`
    #[rhai_fn(pure, return_raw)]
    pub fn activations(m: &mut Model, text: &str, layer: INT) -> ScriptResult<Tensor> {
        let site = Site::resid_pre(layer_index(layer)?);
        Ok(Tensor::new(m.activations(text, site)?))
    }

    /// Activations at another hook: "resid_pre", "resid_post" or "mlp"
    /// (the MLP neurons, `[T, d_mlp]`), and with `hooks` / `steer` editing
    /// the run (see `forward`). `m.activations("The cat", 3, #{hook: "mlp"})`
    #[rhai_fn(name = "activations", pure, return_raw)]
    pub fn activations_with(
        ctx: NativeCallContext,
        m: &mut Model,
        text: &str,
        layer: INT,
        opts: Map,
    ) -> ScriptResult<Tensor> {
        let o = Options::new(&opts, "activations", &["hook", "hooks", "steer"])?;
        let point = match o.string("hook")? {
            Some(name) => name.parse::<super::HookPoint>()?,
            None => super::HookPoint::ResidPre,
        };
        let site = super::Site {
            layer: layer_index(layer)?,
            point,
        };
        let hooks = crate::script::hooks::script_hooks(&ctx, m, &opts, false)?;
        Ok(Tensor::new(m.activations_with(text, site, hooks)?))
    }

    /// Greedy continuation of a prompt (64 tokens at most); returns the new text.
    /// `m.generate("The capital of France is")`
    #[rhai_fn(pure, return_raw)]
    pub fn generate(m: &mut Model, prompt: &str) -> ScriptResult<String> {
        Ok(m.generate(prompt, &generate_options(&Map::new())?, &Hooks::default())?)
    }

    /// Continuation with options: `max_tokens`, `temperature` (0 is greedy),
    /// `top_p`, `seed`, `chat` (wrap the prompt in the model's chat template),
    /// `steer` (clamp SAE features: `#{sae: s, clamp: #{"608": "10x"}}`) and `hooks`
    /// (edits, see `forward`; positions count back from the newest token, -1 each new one).
    /// `m.generate("Tell me a joke.", #{chat: true, temperature: 0.7, seed: 1})`
    #[rhai_fn(name = "generate", pure, return_raw)]
    pub fn generate_with(
        ctx: NativeCallContext,
        m: &mut Model,
        prompt: &str,
        opts: Map,
    ) -> ScriptResult<String> {
        let hooks = crate::script::hooks::script_hooks(&ctx, m, &opts, true)?;
        Ok(m.generate(prompt, &generate_options(&opts)?, &hooks)?)
    }

    /// A one-line summary. `print(m)`
    #[rhai_fn(name = "to_string", pure)]
    pub fn to_string(m: &mut Model) -> String {
        let c = &m.llama.config;
        format!(
            "Model({}, {} layers, d_model {}, d_mlp {}, vocab {}, device {}, {})",
            m.name,
            c.n_layers,
            c.d_model,
            c.d_mlp,
            c.vocab_size,
            crate::core::tensor::device_name(m.llama.device()),
            m.precision().name()
        )
    }

    /// Same as `to_string`; used by `debug` and the REPL.
    #[rhai_fn(name = "to_debug", pure)]
    pub fn to_debug(m: &mut Model) -> String {
        to_string(m)
    }
}
