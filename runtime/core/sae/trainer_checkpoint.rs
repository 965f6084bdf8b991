//! A training run's own checkpoints: everything beyond the SAE that a
//! resumed run needs to repeat the unbroken one exactly (Adam's state, the
//! firing counters, the data position, what the architecture learned), and
//! reading them back.
use super::{LoopState, Trainer};
use crate::sae::checkpoint::{self, write_step_checkpoint};
use crate::sae::Sae;
use crate::tensor_io::{load_tensors, save_tensors};
use crate::{Error, Result, Tensor};
use std::path::Path;

const TRAINING_STATE: &str = "training_state.json";
const TRAINING_TENSORS: &str = "training_state.safetensors";

impl Trainer<'_> {
    pub(super) fn checkpoint(&mut self) -> Result<()> {
        let Some(root) = self.cfg.checkpoint_dir.clone() else {
            return Ok(());
        };
        self.state.source_position = self.source.position();
        self.state.architecture_settings = self.sae.architecture().saelab_settings();
        let state =
            serde_json::to_string_pretty(&self.state).map_err(|e| Error::invalid(e.to_string()))?;
        let mut tensors: Vec<(String, Tensor)> = self
            .sae
            .weights
            .named()
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        for (name, t) in self.adam.state() {
            tensors.push((name, Tensor::new(t)));
        }
        tensors.push((
            "since_fired".into(),
            Tensor::new(self.since_fired.shallow_clone()),
        ));
        let summary = self.summary();
        let scale = self.state.input_scale;
        // Several sites' scales are folded into a copy: save takes one factor.
        let folded = if self.state.site_scales.is_empty() {
            None
        } else {
            let copy = self.sae.duplicate()?;
            copy.fold_site_scales(&self.state.site_scales)?;
            Some(copy)
        };
        let (sae, scale): (&Sae, f64) = match &folded {
            Some(copy) => (copy, 1.0),
            None => (&*self.sae, scale),
        };
        let dir =
            write_step_checkpoint(&root, self.state.step, self.cfg.keep_checkpoints, |dir| {
                checkpoint::save(sae, dir, scale, Some(summary))?;
                save_tensors(&dir.join(TRAINING_TENSORS), &tensors)?;
                crate::fs::write_atomic(&dir.join(TRAINING_STATE), &state)
            })?;
        self.last_checkpoint = Some(dir);
        Ok(())
    }

    pub(super) fn resume_from(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(TRAINING_STATE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let state: LoopState = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let theirs = (
            state.architecture.as_str(),
            state.d_in,
            state.n_features,
            state.total_steps,
            state.batch_size,
            state.seed,
        );
        let ours = (
            self.sae.cfg.architecture.name(),
            self.sae.cfg.d_in,
            self.sae.cfg.n_features,
            self.cfg.steps,
            self.cfg.batch_size,
            self.cfg.seed,
        );
        if theirs != ours {
            return Err(Error::invalid(format!(
                "the checkpoint in {} is for (architecture, d_in, n_features, steps, batch_size, seed) = {theirs:?}, but this run is {ours:?}; \
                 use another checkpoint_dir or resume: false",
                dir.display()
            )));
        }
        let tensors = load_tensors(&dir.join(TRAINING_TENSORS))?;
        let tensor = |name: &str| -> Result<tch::Tensor> {
            match tensors.iter().find(|(n, _)| n == name) {
                Some((_, t)) => Ok(t.inner().f_to(self.sae.cfg.device)?),
                None => Err(Error::invalid(format!(
                    "the checkpoint in {} has no {name}",
                    dir.display()
                ))),
            }
        };
        let mut weights = self.sae.weights.clone();
        weights.w_enc = Tensor::new(tensor("W_enc")?);
        weights.b_enc = Tensor::new(tensor("b_enc")?);
        weights.w_dec = Tensor::new(tensor("W_dec")?);
        weights.b_dec = Tensor::new(tensor("b_dec")?);
        if weights.log_threshold.is_some() {
            weights.log_threshold = Some(Tensor::new(tensor("log_threshold")?));
        }
        if weights.w_skip.is_some() {
            weights.w_skip = Some(Tensor::new(tensor("W_skip")?));
        }
        self.sae.copy_weights_from(&weights)?;
        self.sae
            .cfg
            .architecture
            .get_mut()
            .read_saelab_settings(&state.architecture_settings);
        self.adam.load_state(&tensors, state.step)?;
        self.since_fired = tensor("since_fired")?;
        self.source.seek(state.source_position)?;
        self.resumed_from = Some(state.step);
        self.last_checkpoint = Some(dir.to_path_buf());
        self.state = state;
        self.set_row_scale()?;
        self.scaled = true;
        self.sae.fresh = false;
        Ok(())
    }
}
