//! SAEs on disk in SAELens's layout, so `SAE.load_from_disk(dir)` in SAELens
//! 6.x opens what saelab writes and saelab opens what SAELens writes:
//!
//! * `cfg.json` — `architecture` ("standard" | "topk" | "jumprelu"), `d_in`,
//!   `d_sae`, `dtype`, `device`, `apply_b_dec_to_input`,
//!   `normalize_activations`, `k` (TopK), `metadata` {model_name, hook_name,
//!   context_size, prepend_bos, ...};
//! * `sae_weights.safetensors` — `W_enc` [d_in, d_sae], `b_enc` [d_sae],
//!   `W_dec` [d_sae, d_in], `b_dec` [d_in] (and `threshold` [d_sae] for JumpReLU);
//! * `saelab.json` — our own settings and training summary, which SAELens ignores.
//!
//! BatchTopK and Matryoshka SAEs are written as SAELens writes them for
//! inference: a JumpReLU whose threshold is the estimated θ for every
//! feature. saelab.json names the real architecture, so saelab reopens them
//! as what they are (and can train them further); SAELens sees a JumpReLU.
//!
//! Transcoders use SAELens's transcoder layout: `architecture`
//! "transcoder" | "skip_transcoder" | "jumprelu_transcoder" (saelab's
//! "topk_transcoder", "topk_skip_transcoder" for TopK, which SAELens lacks),
//! `d_out`, `metadata.hook_name_out`, `W_dec` [d_sae, d_out], `b_dec`
//! [d_out] and `W_skip` [d_out, d_in]. Crosscoders, which SAELens lacks, use
//! the same files with `architecture` "crosscoder" (or "topk_crosscoder",
//! ...), `site_widths` and `metadata.hook_names` (one per site, in row
//! order), `W_enc` [Σ widths, d_sae] and `W_dec` [d_sae, Σ widths] over the
//! sites side by side.
//!
//! Input scaling: as SAELens does at the end of training, the scale factor s
//! (E‖s·x‖² = d_in) is folded into the weights (W_enc·s, W_dec/s, b_dec/s) and
//! `normalize_activations` is written as "none", so the saved SAE takes raw
//! activations. The trainer folds s back in when a run ends, so a saved SAE
//! is always in raw units and save → load is exact.
//!
//! Every file is written to a temporary name and renamed into place.
use super::{Sae, SaeConfig, SaeMetadata};
use crate::fs::{staging_path, write_atomic};
use crate::tensor_io::{load_tensors, save_tensors};
use crate::{Error, Result, Tensor};
use serde_json::{json, Map, Value};
use std::path::Path;
use tch::Kind;

pub const CFG_FILE: &str = "cfg.json";
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
pub const SAELAB_FILE: &str = "saelab.json";

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{} is not valid JSON: {e}", path.display())))
}

/// The tensors SAELens expects, in raw units for an SAE trained on x·`scale`.
pub fn saelens_tensors(sae: &Sae, scale: f64) -> Result<Vec<(String, Tensor)>> {
    let _guard = tch::no_grad_guard();
    let w = &sae.weights;
    let cpu = |t: tch::Tensor| -> Result<Tensor> {
        Ok(Tensor::new(t.f_to(tch::Device::Cpu)?.f_contiguous()?))
    };
    let mut out = vec![
        (
            "W_enc".to_string(),
            cpu(w.w_enc.inner().f_mul_scalar(scale)?.f_transpose(0, 1)?)?,
        ),
        ("b_enc".to_string(), cpu(w.b_enc.inner().f_detach()?)?),
        (
            "W_dec".to_string(),
            cpu(w.w_dec.inner().f_div_scalar(scale)?)?,
        ),
        (
            "b_dec".to_string(),
            cpu(w.b_dec.inner().f_div_scalar(scale)?)?,
        ),
    ];
    // (W_enc·s)·x = W_enc·(s·x): folding leaves pre-activations, and so
    // the thresholds they are compared with, unchanged.
    if let Some(t) = &w.log_threshold {
        out.push(("threshold".to_string(), cpu(t.inner().f_exp()?)?));
    } else if let Some(theta) = sae.architecture().inference_threshold() {
        let all =
            tch::Tensor::f_full([sae.cfg.n_features], theta, (Kind::Float, tch::Device::Cpu))?;
        out.push(("threshold".to_string(), Tensor::new(all)));
    }
    if let Some(t) = &w.w_skip {
        // One factor on input and output leaves W_skip unchanged.
        out.push(("W_skip".to_string(), cpu(t.inner().f_detach()?)?));
    }
    Ok(out)
}

/// cfg.json as SAELens 6.x reads it.
pub fn saelens_cfg(sae: &Sae) -> Value {
    let cfg = &sae.cfg;
    let meta = &cfg.metadata;
    let mut value = json!({
        "architecture": cfg.layout.cfg_name(sae.architecture().saelens_name()),
        "d_in": cfg.d_in,
        "d_sae": cfg.n_features,
        "dtype": "float32",
        "device": crate::tensor::device_name(cfg.device),
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": meta.model_name,
            "hook_name": meta.hook_name,
            "hook_head_index": null,
            "context_size": meta.context_size,
            "prepend_bos": meta.prepend_bos,
            "dataset_path": meta.dataset_path,
        },
    });
    if let Value::Object(fields) = &mut value {
        sae.architecture().write_saelens_fields(fields);
        cfg.layout.write_cfg_fields(fields);
    }
    if let Some(out) = &meta.hook_name_out {
        value["metadata"]["hook_name_out"] = json!(out);
    }
    if !meta.hook_names.is_empty() {
        value["metadata"]["hook_names"] = json!(meta.hook_names);
    }
    value
}

/// Our settings that SAELens has no key for.
fn saelab_settings(cfg: &SaeConfig) -> Value {
    let mut settings = cfg.arch().saelab_settings();
    settings.insert("architecture".into(), json!(cfg.architecture.name()));
    settings.insert("decoder_init_norm".into(), json!(cfg.decoder_init_norm));
    Value::Object(settings)
}

/// Saves an SAE (in raw units, `scale` = 1, unless it is mid-training) with
/// an optional training summary stored in saelab.json.
pub fn save(sae: &Sae, dir: &Path, scale: f64, training: Option<Value>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_tensors(&dir.join(WEIGHTS_FILE), &saelens_tensors(sae, scale)?)?;
    let cfg = serde_json::to_string_pretty(&saelens_cfg(sae))
        .map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&dir.join(CFG_FILE), &cfg)?;
    let mut ours = json!({ "format": 1, "settings": saelab_settings(&sae.cfg) });
    if let Some(training) = training.or_else(|| sae.training_summary.clone()) {
        ours["training"] = training;
    }
    let ours = serde_json::to_string_pretty(&ours).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&dir.join(SAELAB_FILE), &ours)
}

/// The training summary saved with an SAE, if any.
pub fn training_summary(dir: &Path) -> Result<Option<Value>> {
    let path = dir.join(SAELAB_FILE);
    if !path.exists() {
        return Ok(None);
    }
    Ok(read_json(&path)?.get("training").cloned())
}

/// Loads an SAE from a folder in SAELens's layout, written by saelab or by SAELens.
/// Weights are loaded as f32 whatever dtype the file uses.
pub fn load(dir: &Path, device: tch::Device) -> Result<Sae> {
    // An error that names no file comes from the settings of cfg.json and
    // saelab.json together (a corrupted-file suite found them unnamed).
    let shown = dir.display().to_string();
    load_folder(dir, device).map_err(|e| match e.to_string() {
        message if message.contains(&shown) => e,
        message => Error::invalid(format!(
            "{shown}: {message} (from {CFG_FILE} and {SAELAB_FILE})"
        )),
    })
}

fn load_folder(dir: &Path, device: tch::Device) -> Result<Sae> {
    let cfg_path = dir.join(CFG_FILE);
    if !cfg_path.exists() {
        return Err(Error::invalid(format!(
            "{} is not an SAE folder: it has no {CFG_FILE} (expected SAELens's layout: {CFG_FILE} + {WEIGHTS_FILE})",
            dir.display()
        )));
    }
    let raw = read_json(&cfg_path)?;
    let Some(fields) = raw.as_object() else {
        return Err(Error::invalid(format!(
            "{} must hold a JSON object",
            cfg_path.display()
        )));
    };
    let ours_path = dir.join(SAELAB_FILE);
    let ours = match ours_path.exists() {
        true => Some(read_json(&ours_path)?),
        false => None,
    };
    if let Some(architecture) = saelab_architecture(ours.as_ref()) {
        // Checked here so the error names saelab.json, not cfg.json.
        SaeConfig::new(architecture, 1, 1)
            .map_err(|e| Error::invalid(format!("{}: {e}", ours_path.display())))?;
    }
    let mut cfg = config_from_saelens(fields, &cfg_path, saelab_architecture(ours.as_ref()))?;
    cfg.device = device;
    if let Some(ours) = &ours {
        apply_saelab_settings(&mut cfg, ours);
    }
    let weights_path = dir.join(WEIGHTS_FILE);
    let tensors = load_tensors(&weights_path)?;
    let (n, d, d_out) = (cfg.n_features, cfg.d_in, cfg.d_out());
    let find = |name: &str, shape: &[i64]| -> Result<tch::Tensor> {
        let Some((_, t)) = tensors.iter().find(|(key, _)| key == name) else {
            let found: Vec<&str> = tensors.iter().map(|(k, _)| k.as_str()).collect();
            return Err(Error::invalid(format!(
                "{} has no tensor '{name}' (found: {})",
                weights_path.display(),
                found.join(", ")
            )));
        };
        if t.shape() != shape {
            return Err(Error::invalid(format!(
                "{}: '{name}' has shape {:?}, but cfg.json (d_in = {d}, d_sae = {n}, d_out = {d_out}) needs {shape:?}",
                weights_path.display(),
                t.shape()
            )));
        }
        Ok(t.inner().f_totype(Kind::Float)?)
    };
    let w_enc = find("W_enc", &[d, n])?.f_transpose(0, 1)?.f_contiguous()?;
    let b_enc = find("b_enc", &[n])?;
    let w_dec = find("W_dec", &[n, d_out])?;
    let b_dec = find("b_dec", &[d_out])?;
    let log_threshold = if cfg.arch().threshold_init().is_some() {
        Some(find("threshold", &[n])?.f_clamp_min(1e-30)?.f_log()?)
    } else {
        None
    };
    let skip = matches!(cfg.layout, super::Layout::Transcoder { skip: true, .. });
    let w_skip = skip.then(|| find("W_skip", &[d_out, d])).transpose()?;
    let mut sae = Sae::from_parts(cfg, w_enc, b_enc, w_dec, b_dec, log_threshold)?;
    if let Some(w_skip) = w_skip {
        sae.set_skip(w_skip)?;
    }
    sae.training_summary = training_summary(dir)?;
    Ok(sae)
}

/// The architecture saelab.json names, when it names one that SAELens
/// saves under another name (BatchTopK as "jumprelu").
fn saelab_architecture(ours: Option<&Value>) -> Option<&str> {
    ours?.get("settings")?.get("architecture")?.as_str()
}

/// The config cfg.json describes; `architecture` (saelab's name, from
/// saelab.json) overrides cfg.json's when given.
fn config_from_saelens(
    fields: &Map<String, Value>,
    path: &Path,
    architecture: Option<&str>,
) -> Result<SaeConfig> {
    let int = |key: &str| -> Result<i64> {
        fields.get(key).and_then(Value::as_i64).ok_or_else(|| {
            Error::invalid(format!("{}: '{key}' must be an integer", path.display()))
        })
    };
    // SAELens before 6 wrote no architecture for its ReLU SAEs.
    let written = fields
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("standard");
    // cfg.json's name says the layout (a transcoder's, a crosscoder's); saelab.json's the sparsity.
    let (sparsity, layout) = super::Layout::read_cfg(written, fields, path)?;
    let architecture = architecture.unwrap_or(&sparsity);
    let mut cfg = SaeConfig::new(architecture, int("d_in")?, int("d_sae")?)?;
    if !layout.reconstructs_input() {
        cfg.apply_b_dec_to_input = false;
    }
    cfg.layout = layout;
    cfg.architecture
        .get_mut()
        .read_saelens_fields(fields, path)?;
    if let Some(apply) = fields.get("apply_b_dec_to_input").and_then(Value::as_bool) {
        cfg.apply_b_dec_to_input = apply;
    }
    match fields.get("normalize_activations").and_then(Value::as_str) {
        None | Some("none") => {}
        Some(other) => {
            return Err(Error::invalid(format!(
                "{}: normalize_activations = \"{other}\" is not supported; saelab loads SAEs that take raw activations (\"none\", with any scaling folded into the weights)",
                path.display()
            )))
        }
    }
    // SAELens 6 nests provenance under `metadata`; older versions kept it at the top level.
    let meta = fields
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(fields);
    let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_string);
    cfg.metadata = SaeMetadata {
        model_name: text("model_name"),
        hook_name: text("hook_name"),
        context_size: meta.get("context_size").and_then(Value::as_i64),
        prepend_bos: meta.get("prepend_bos").and_then(Value::as_bool),
        dataset_path: text("dataset_path"),
        hook_name_out: text("hook_name_out"),
        hook_names: meta
            .get("hook_names")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(cfg)
}

fn apply_saelab_settings(cfg: &mut SaeConfig, ours: &Value) {
    let Some(settings) = ours.get("settings").and_then(Value::as_object) else {
        return;
    };
    if let Some(v) = settings.get("decoder_init_norm").and_then(Value::as_f64) {
        cfg.decoder_init_norm = v;
    }
    cfg.architecture.get_mut().read_saelab_settings(settings);
}

/// Name of the file in a training folder that names the newest checkpoint.
pub const LATEST_FILE: &str = "latest";

/// Writes a periodic training checkpoint `root/step-NNNNNNNN/` atomically:
/// `fill` writes into a staging folder that is renamed into place, then
/// `root/latest` is switched to it (itself written then renamed), then all
/// but the newest `keep` checkpoints are removed. A run killed at any moment
/// leaves `latest` naming a complete checkpoint.
pub fn write_step_checkpoint(
    root: &Path,
    step: u64,
    keep: usize,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<std::path::PathBuf> {
    let name = format!("step-{step:08}");
    let target = root.join(&name);
    let staging = staging_path(&target);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    fill(&staging)?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
    }
    std::fs::rename(&staging, &target).map_err(|e| Error::io(&target, e))?;
    write_atomic(&root.join(LATEST_FILE), &name)?;
    prune(root, &name, keep.max(1))?;
    Ok(target)
}

fn prune(root: &Path, newest: &str, keep: usize) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    let mut steps: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-") && n.as_str() <= newest)
        .collect();
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for old in &steps[..excess] {
        let path = root.join(old);
        std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// The newest complete checkpoint under `root`, if there is one.
pub fn latest_checkpoint(root: &Path) -> Result<Option<std::path::PathBuf>> {
    let pointer = root.join(LATEST_FILE);
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| Error::io(&pointer, e))?;
    let dir = root.join(name.trim());
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{} names {}, which does not exist",
            pointer.display(),
            dir.display()
        )));
    }
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::{LossOptions, Sae, SaeConfig};

    fn same(a: &Tensor, b: &Tensor) -> bool {
        a.shape() == b.shape() && a.inner().equal(b.inner())
    }

    #[test]
    fn save_then_load_round_trips_exactly() {
        crate::rng::seed(5);
        let dir = tempfile::tempdir().unwrap();
        for arch in ["relu", "topk", "jumprelu"] {
            let mut cfg = SaeConfig::new(arch, 6, 10).unwrap();
            let options = json!({"k": 3, "l1": 2.5, "k_aux": 2});
            let options = options.as_object().cloned().unwrap_or_default();
            cfg.architecture.apply_options(&options).unwrap();
            cfg.metadata.hook_name = Some("blocks.3.hook_resid_post".into());
            let sae = Sae::new(cfg).unwrap();
            let path = dir.path().join(arch);
            save(&sae, &path, 1.0, None).unwrap();
            let loaded = load(&path, tch::Device::Cpu).unwrap();
            assert_eq!(loaded.cfg.architecture, sae.cfg.architecture);
            assert_eq!(loaded.cfg.architecture.name(), arch);
            assert_eq!(
                loaded.cfg.metadata.hook_name.as_deref(),
                Some("blocks.3.hook_resid_post")
            );
            for ((name, a), (_, b)) in sae
                .weights
                .named()
                .iter()
                .zip(loaded.weights.named().iter())
            {
                if *name != "log_threshold" {
                    assert!(same(a, b), "{arch}: {name} differs");
                }
            }
            let x = tch::Tensor::randn([5, 6], (Kind::Float, tch::Device::Cpu));
            let before = sae.forward(&x, &LossOptions::default()).unwrap().x_hat;
            let after = loaded.forward(&x, &LossOptions::default()).unwrap().x_hat;
            assert!(
                f64::try_from((before - after).abs().max()).unwrap() < 1e-6,
                "{arch}"
            );
        }
    }

    #[test]
    fn folding_the_scale_gives_an_sae_for_raw_inputs() {
        crate::rng::seed(6);
        let sae = Sae::new(SaeConfig::new("relu", 4, 8).unwrap()).unwrap();
        let s = 3.0;
        let x = tch::Tensor::randn([5, 4], (Kind::Float, tch::Device::Cpu));
        let scaled = sae
            .forward(&(&x * s), &LossOptions::default())
            .unwrap()
            .x_hat;
        let dir = tempfile::tempdir().unwrap();
        save(&sae, dir.path(), s, None).unwrap();
        let raw = load(dir.path(), tch::Device::Cpu)
            .unwrap()
            .forward(&x, &LossOptions::default())
            .unwrap()
            .x_hat;
        assert!(f64::try_from((scaled / s - raw).abs().max()).unwrap() < 1e-5);
    }

    #[test]
    fn step_checkpoints_keep_the_newest_and_point_at_them() {
        let root = tempfile::tempdir().unwrap();
        for step in [10, 20, 30] {
            write_step_checkpoint(root.path(), step, 2, |dir| {
                write_atomic(&dir.join("x"), &step.to_string())
            })
            .unwrap();
        }
        let latest = latest_checkpoint(root.path()).unwrap().unwrap();
        assert!(latest.ends_with("step-00000030"));
        assert!(!root.path().join("step-00000010").exists());
        assert!(root.path().join("step-00000020").exists());
        // A failed write leaves the previous checkpoint in charge.
        let failed =
            write_step_checkpoint(root.path(), 40, 2, |_| Err(Error::invalid("disk full")));
        assert!(failed.is_err());
        assert!(latest_checkpoint(root.path())
            .unwrap()
            .unwrap()
            .ends_with("step-00000030"));
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        crate::rng::seed(7);
        let dir = tempfile::tempdir().unwrap();
        let sae = Sae::new(SaeConfig::new("relu", 4, 8).unwrap()).unwrap();
        save(&sae, dir.path(), 1.0, None).unwrap();
        let mut tensors = saelens_tensors(&sae, 1.0).unwrap();
        tensors.retain(|(name, _)| name != "b_enc");
        save_tensors(&dir.path().join(WEIGHTS_FILE), &tensors).unwrap();
        let err = load(dir.path(), tch::Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no tensor 'b_enc'"), "{err}");
        tensors.push((
            "b_enc".into(),
            Tensor::new(tch::Tensor::zeros([7], (Kind::Float, tch::Device::Cpu))),
        ));
        save_tensors(&dir.path().join(WEIGHTS_FILE), &tensors).unwrap();
        let err = load(dir.path(), tch::Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("'b_enc' has shape [7]") && err.contains("[8]"),
            "{err}"
        );
    }
}
