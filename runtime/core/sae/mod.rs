//! Sparse autoencoders as in *Scaling Monosemanticity* (Anthropic, 2024) and
//! *Scaling and evaluating sparse autoencoders* (Gao et al., OpenAI 2024).
//!
//! One architecture per file (`relu.rs`, `topk.rs`, `jumprelu.rs`), each
//! a config struct implementing [`Architecture`], listed once in
//! [`ArchitectureConfig`] (`architecture.rs`); the training loop lives in
//! `trainer.rs`, measurements in `metrics.rs`, the on-disk layout
//! (SAELens's) in `checkpoint.rs`. What a dictionary reads and writes —
//! an SAE its one site, a transcoder one site to another, a crosscoder
//! several sites at once — is its [`Layout`] (`layout.rs`, `xcoder.rs`),
//! orthogonal to the architecture.
//!
//! Layout of the weights, named as in the maths and in SAELens:
//! `W_enc` is kept as [n_features, d_in] — one row per feature detector, like
//! `nn.Linear`'s weight — because TopK gathers whole rows of it; the
//! checkpoint transposes it to SAELens's [d_in, d_sae]. `W_dec` is
//! [n_features, d_out]: its rows are the feature directions (d_out = d_in
//! except for a transcoder).
use crate::precision::Precision;
use crate::{Error, Result, Tensor};
use tch::{Device, Kind};

pub mod adam;
pub mod architecture;
pub mod batchtopk;
pub mod checkpoint;
pub mod codes;
pub mod config;
pub mod init;
pub mod jumprelu;
pub mod layout;
pub mod matryoshka;
pub mod metrics;
pub mod options;
pub mod relu;
pub mod resample;
pub mod source;
pub mod synthetic;
pub mod topk;
pub mod trainer;
pub mod weights;
pub mod xcoder;

pub use architecture::{Architecture, ArchitectureConfig};
pub use batchtopk::BatchTopKConfig;
pub use codes::{Codes, Encoded};
pub use jumprelu::JumpReluConfig;
pub use layout::Layout;
pub use matryoshka::MatryoshkaConfig;
pub use relu::ReluConfig;
pub use source::{ActivationSource, StoreSource, TensorSource};
pub use topk::TopKConfig;
pub use weights::Weights;

/// Where the activations came from; written to cfg.json's `metadata` as SAELens 6.x reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeMetadata {
    /// The model the activations were read from ("SmolLM2-135M-Instruct").
    pub model_name: Option<String>,
    /// The hook point ("blocks.15.hook_resid_post").
    pub hook_name: Option<String>,
    /// Tokens per context window when the activations were harvested.
    pub context_size: Option<i64>,
    /// Whether each window started with a BOS token.
    pub prepend_bos: Option<bool>,
    /// Where the text came from.
    pub dataset_path: Option<String>,
    /// A transcoder's output site ("blocks.5.hook_mlp_out"; SAELens's `hook_name_out`).
    pub hook_name_out: Option<String>,
    /// A crosscoder's sites, in row order (`hook_name` is the first).
    pub hook_names: Vec<String>,
}

impl Default for SaeMetadata {
    fn default() -> Self {
        SaeMetadata {
            model_name: None,
            hook_name: None,
            context_size: None,
            prepend_bos: Some(true),
            dataset_path: None,
            hook_name_out: None,
            hook_names: Vec::new(),
        }
    }
}

/// Everything that defines an SAE (as opposed to how it is trained, see
/// [`trainer::TrainConfig`]): the settings every architecture shares, and
/// the architecture with its own.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeConfig {
    /// The architecture and its settings (λ, k, θ, ...).
    pub architecture: ArchitectureConfig,
    /// Width of the activations (D in the paper).
    pub d_in: i64,
    /// Number of dictionary features (SAELens's `d_sae`).
    pub n_features: i64,
    /// Subtract b_dec from the input before encoding. Gao et al. do (their
    /// b_pre); the paper's ReLU SAE encodes x directly, so it is off for ReLU.
    pub apply_b_dec_to_input: bool,
    /// Norm of each initial decoder row. The April 2024 update uses random
    /// directions with norm 0.1 for the ReLU SAE; TopK and JumpReLU start at
    /// unit norm because their decoder rows are kept there (Gao et al.).
    pub decoder_init_norm: f64,
    /// Where the weights live.
    pub device: Device,
    /// Provenance written to cfg.json.
    pub metadata: SaeMetadata,
    /// What it reads and writes: an SAE, a transcoder or a crosscoder.
    pub layout: Layout,
}

impl SaeConfig {
    /// The defaults for an architecture (any accepted name): each
    /// architecture's own (λ = 5 as in the paper; k = 32, k_aux = d_in / 2,
    /// α = 1/32 as in Gao et al.) and the shared settings it prefers.
    pub fn new(architecture: &str, d_in: i64, n_features: i64) -> Result<Self> {
        let architecture = ArchitectureConfig::new(architecture, d_in, n_features)?;
        let arch = architecture.get();
        Ok(SaeConfig {
            apply_b_dec_to_input: arch.default_apply_b_dec_to_input(),
            decoder_init_norm: arch.default_decoder_init_norm(),
            architecture,
            d_in,
            n_features,
            device: Device::Cpu,
            metadata: SaeMetadata::default(),
            layout: Layout::Autoencoder,
        })
    }

    /// Width of what the decoder writes: d_in except for a transcoder.
    pub fn d_out(&self) -> i64 {
        self.layout.d_out(self.d_in)
    }

    /// The architecture's settings and behaviour.
    pub fn arch(&self) -> &dyn Architecture {
        self.architecture.get()
    }

    /// Rejects configurations that cannot work, with the reason.
    pub fn validate(&self) -> Result<()> {
        if self.d_in < 1 || self.n_features < 1 {
            return Err(Error::invalid(format!(
                "an SAE needs d_in >= 1 and n_features >= 1, got d_in = {} and n_features = {}",
                self.d_in, self.n_features
            )));
        }
        if !(self.decoder_init_norm.is_finite() && self.decoder_init_norm > 0.0) {
            return Err(Error::invalid(format!(
                "decoder_init_norm must be > 0, got {}",
                self.decoder_init_norm
            )));
        }
        self.layout.check(self.d_in, self.apply_b_dec_to_input)?;
        self.arch().check(self.d_in, self.n_features)
    }
}

/// Options for one loss evaluation.
#[derive(Default)]
pub struct LossOptions {
    /// Overrides the configured sparsity coefficient λ.
    pub l1_coefficient: Option<f64>,
    /// Multiplies λ: the trainer's warm-up factor (1 when absent).
    pub l1_scale: Option<f64>,
    /// Features counted as dead [n_features] (bool), for AuxK.
    pub dead_mask: Option<tch::Tensor>,
    /// The forward pass's precision; the loss parts come back in f32.
    pub precision: Precision,
    /// Encode as in training ([`Architecture::encode_for_training`]).
    pub training: bool,
}

/// One forward pass with every loss part (all scalars are differentiable).
pub struct Forward {
    /// The reconstruction of the target (a transcoder's prediction of its output).
    pub x_hat: tch::Tensor,
    /// What x_hat approximates: the input, or a transcoder's output site.
    pub target: tch::Tensor,
    pub codes: Codes,
    /// ‖x − x̂‖² summed over d_in, averaged over the batch (the paper's reconstruction term).
    pub mse: tch::Tensor,
    /// The sparsity term before its coefficient.
    pub penalty: tch::Tensor,
    /// The auxiliary losses, weighted and summed — AuxK, Matryoshka's nested
    /// reconstructions — zero when there are none.
    pub aux: tch::Tensor,
    /// mse + λ·penalty + aux.
    pub loss: tch::Tensor,
}

/// A sparse autoencoder: its configuration, architecture and weights.
pub struct Sae {
    pub cfg: SaeConfig,
    pub weights: Weights,
    /// True until the first training run: the trainer then initialises b_dec
    /// from data and treats the weights as living in the normalised space.
    pub fresh: bool,
    /// What the last training run reported (steps, tokens, scale, final
    /// metrics); saved to saelab.json beside the SAELens files.
    pub training_summary: Option<serde_json::Value>,
}

impl Sae {
    /// A fresh SAE initialised as in the April 2024 update: decoder rows in
    /// random directions with norm `decoder_init_norm`, W_enc = W_decᵀ,
    /// biases zero. Repeatable after `rng::seed`.
    pub fn new(cfg: SaeConfig) -> Result<Self> {
        cfg.validate()?;
        let options = (Kind::Float, cfg.device);
        let d_out = cfg.d_out();
        let random_rows = |width: i64| -> Result<tch::Tensor> {
            let directions = tch::Tensor::f_randn([cfg.n_features, width], options)?;
            let norms = directions
                .f_norm_scalaropt_dim(2, [1], true)?
                .f_clamp_min(1e-12)?;
            Ok(directions
                .f_div(&norms)?
                .f_mul_scalar(cfg.decoder_init_norm)?)
        };
        let w_dec = random_rows(d_out)?;
        // A transcoder's encoder reads another space than its decoder
        // writes, so it gets directions of its own.
        let w_enc = if cfg.layout.reconstructs_input() {
            deep_copy(&w_dec)?
        } else {
            random_rows(cfg.d_in)?
        };
        let b_enc = tch::Tensor::f_zeros([cfg.n_features], options)?;
        let b_dec = tch::Tensor::f_zeros([d_out], options)?;
        // SAELens's SkipTranscoder starts W_skip at zero.
        let w_skip = match cfg.layout {
            Layout::Transcoder { skip: true, .. } => {
                Some(tch::Tensor::f_zeros([d_out, cfg.d_in], options)?)
            }
            _ => None,
        };
        let log_threshold = match cfg.arch().threshold_init() {
            Some(theta) => Some(tch::Tensor::f_full(
                [cfg.n_features],
                theta.max(1e-12).ln(),
                options,
            )?),
            None => None,
        };
        let mut sae = Self::from_parts(cfg, w_enc, b_enc, w_dec, b_dec, log_threshold)?;
        if let Some(w_skip) = w_skip {
            sae.set_skip(w_skip)?;
        }
        sae.fresh = true;
        Ok(sae)
    }

    /// An SAE from existing weights (W_enc as [n_features, d_in]); shapes are checked.
    pub fn from_parts(
        cfg: SaeConfig,
        w_enc: tch::Tensor,
        b_enc: tch::Tensor,
        w_dec: tch::Tensor,
        b_dec: tch::Tensor,
        log_threshold: Option<tch::Tensor>,
    ) -> Result<Self> {
        cfg.validate()?;
        let (n, d, d_out) = (cfg.n_features, cfg.d_in, cfg.d_out());
        let param = |name: &str, t: tch::Tensor, shape: &[i64]| parameter(&cfg, name, t, shape);
        let learns_threshold = cfg.arch().threshold_init().is_some();
        let log_threshold = match (learns_threshold, log_threshold) {
            (true, Some(t)) => Some(param("threshold", t, &[n])?),
            (true, None) => {
                return Err(Error::invalid(format!(
                    "a {} SAE needs a threshold",
                    cfg.architecture.name()
                )))
            }
            (false, _) => None,
        };
        let weights = Weights {
            w_enc: param("W_enc (as [n_features, d_in])", w_enc, &[n, d])?,
            b_enc: param("b_enc", b_enc, &[n])?,
            w_dec: param("W_dec", w_dec, &[n, d_out])?,
            b_dec: param("b_dec", b_dec, &[d_out])?,
            log_threshold,
            w_skip: None,
            decoder_blocks: match &cfg.layout {
                Layout::Crosscoder { .. } => cfg.layout.output_widths(d),
                _ => Vec::new(),
            },
        };
        Ok(Sae {
            cfg,
            weights,
            fresh: false,
            training_summary: None,
        })
    }

    /// The architecture's settings and behaviour.
    pub fn architecture(&self) -> &dyn Architecture {
        self.cfg.arch()
    }

    /// The encoder's input: x, minus b_dec when the config asks for it.
    fn encoder_input(&self, weights: &Weights, x: &tch::Tensor) -> Result<tch::Tensor> {
        weights.encoder_input(x, self.cfg.apply_b_dec_to_input)
    }

    /// The trainable parameters, shared with this SAE.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.weights.named().into_iter().map(|(_, t)| t).collect()
    }

    /// `Err` unless `x` is [batch, d_in] floating point (or, for a
    /// transcoder, a training row [batch, d_in + d_out]).
    pub fn check_input(&self, x: &tch::Tensor) -> Result<()> {
        let shape = x.size();
        let (d_in, row) = (self.cfg.d_in, self.cfg.layout.row_width(self.cfg.d_in));
        if shape.len() != 2 || (shape[1] != d_in && shape[1] != row) {
            let rows = if row == d_in {
                String::new()
            } else {
                format!(" or rows [batch, {row}] (input and output side by side)")
            };
            return Err(Error::invalid(format!(
                "this SAE expects activations of shape [batch, {d_in}] (d_in = {d_in}){rows}, got {shape:?}"
            )));
        }
        if !x.f_is_floating_point()? {
            return Err(Error::invalid("SAE input must be floating point"));
        }
        Ok(())
    }

    fn prepare(&self, x: &tch::Tensor) -> Result<tch::Tensor> {
        self.check_input(x)?;
        Ok(x.f_to(self.cfg.device)?.f_totype(Kind::Float)?)
    }

    /// Dense feature activations f [batch, n_features].
    pub fn encode(&self, x: &tch::Tensor) -> Result<tch::Tensor> {
        self.encode_in(x, Precision::F32)
    }

    /// [`Sae::encode`] computed in `precision`; f comes back in f32.
    pub fn encode_in(&self, x: &tch::Tensor, precision: Precision) -> Result<tch::Tensor> {
        self.encode_codes_in(x, precision)?.to_dense()
    }

    /// Feature activations as the architecture produces them: dense, or the
    /// k active features per token for TopK (cheaper to scan for analyses).
    pub fn encode_codes(&self, x: &tch::Tensor) -> Result<Codes> {
        self.encode_codes_in(x, Precision::F32)
    }

    /// [`Sae::encode_codes`] computed in `precision` (in bf16, from bf16
    /// copies of the weights); the codes come back in f32.
    pub fn encode_codes_in(&self, x: &tch::Tensor, precision: Precision) -> Result<Codes> {
        let _tf32 = precision.matmul_guard();
        let x = self.input_part(&self.prepare(x)?)?;
        let weights = self.weights_in(precision)?;
        let input = self.encoder_input(&weights, &x.f_totype(precision.compute_kind())?)?;
        self.architecture()
            .encode(&weights, &input)?
            .codes
            .to_kind(Kind::Float)
    }

    /// x̂ from dense codes f [batch, n_features].
    pub fn decode(&self, f: &tch::Tensor) -> Result<tch::Tensor> {
        self.decode_in(f, Precision::F32)
    }

    /// [`Sae::decode`] computed in `precision`; x̂ comes back in f32.
    pub fn decode_in(&self, f: &tch::Tensor, precision: Precision) -> Result<tch::Tensor> {
        let shape = f.size();
        if shape.len() != 2 || shape[1] != self.cfg.n_features {
            return Err(Error::invalid(format!(
                "decode expects codes of shape [batch, {}] (n_features), got {shape:?}",
                self.cfg.n_features
            )));
        }
        let _tf32 = precision.matmul_guard();
        let kind = precision.compute_kind();
        let f = f.f_to(self.cfg.device)?.f_totype(kind)?;
        Codes::Dense(f)
            .decode(&self.weights_in(precision)?)?
            .f_totype(Kind::Float)
            .map_err(Into::into)
    }

    /// The weights in `precision`'s compute dtype: these for f32, else
    /// differentiable copies (gradients reach the f32 masters).
    fn weights_in(&self, precision: Precision) -> Result<Weights> {
        precision.warn_if_emulated(self.cfg.device);
        match precision.compute_kind() {
            Kind::Float => Ok(self.weights.clone()),
            kind => self.weights.cast(kind),
        }
    }

    /// Reconstruction, codes and every loss part for inputs x [batch, d_in]
    /// (a transcoder's rows: [batch, d_in + d_out], input then target).
    pub fn forward(&self, x: &tch::Tensor, opts: &LossOptions) -> Result<Forward> {
        let row = self.prepare(x)?;
        let (x, target) = (self.input_part(&row)?, self.target_part(&row)?);
        let compute = opts.precision.compute_kind();
        let weights = self.weights_in(opts.precision)?;
        let input = self.encoder_input(&weights, &x.f_totype(compute)?)?;
        let arch = self.architecture();
        let encoded = if opts.training {
            arch.encode_for_training(&weights, &input)?
        } else {
            arch.encode(&weights, &input)?
        };
        let mut x_hat = encoded.codes.decode(&weights)?;
        if let Some(skip) = weights.skip(&x.f_totype(compute)?)? {
            x_hat = x_hat.f_add(&skip)?;
        }
        let x_hat = x_hat.f_totype(Kind::Float)?;
        let error = target.f_sub(&x_hat)?;
        let mse = error
            .f_square()?
            .f_sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)?
            .f_mean(None::<Kind>)?;
        let penalty = self
            .architecture()
            .penalty(&weights, &encoded)?
            .f_totype(Kind::Float)?;
        let lambda = opts
            .l1_coefficient
            .unwrap_or(self.architecture().sparsity_coefficient())
            * opts.l1_scale.unwrap_or(1.0);
        let mut loss = mse.f_add(&penalty.f_mul_scalar(lambda)?)?;
        let dead_latents = match &opts.dead_mask {
            Some(dead) => arch.aux_loss(&weights, &encoded, &error.f_detach()?, dead)?,
            None => None,
        };
        // The nested prefixes approximate what the decoder writes (a transcoder's output).
        let nested = arch.nested_reconstruction_loss(&weights, &encoded.codes, &target)?;
        let mut aux = tch::Tensor::f_zeros([], (Kind::Float, self.cfg.device))?;
        for term in [dead_latents, nested].into_iter().flatten() {
            aux = aux.f_add(&term.f_totype(Kind::Float)?)?;
        }
        loss = loss.f_add(&aux)?;
        Ok(Forward {
            x_hat,
            target,
            codes: encoded.codes,
            mse,
            penalty,
            aux,
            loss,
        })
    }

    /// Rescales decoder rows to unit norm, moving the norm into the encoder
    /// row and bias so the SAE computes the same function (for ReLU-style
    /// codes, f·W_dec is unchanged).
    pub fn normalize_decoder(&self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let norms = self.divide_decoder_rows_by_their_norms()?;
        let mut w_enc = self.weights.w_enc.inner().shallow_clone();
        let _ = w_enc.f_mul_(&norms)?;
        let mut b_enc = self.weights.b_enc.inner().shallow_clone();
        let _ = b_enc.f_mul_(&norms.f_squeeze_dim(1)?)?;
        if let Some(t) = &self.weights.log_threshold {
            let mut t = t.inner().shallow_clone();
            let _ = t.f_add_(&norms.f_squeeze_dim(1)?.f_log()?)?;
        }
        Ok(())
    }

    /// Decoder rows to unit norm without compensating the encoder (Gao et al.'s
    /// TopK constraint, applied after each optimiser step).
    pub fn project_decoder_to_unit_norm(&self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let _norms = self.divide_decoder_rows_by_their_norms()?;
        Ok(())
    }

    /// Decoder rows to unit norm in place; returns the old norms, [F, 1].
    fn divide_decoder_rows_by_their_norms(&self) -> Result<tch::Tensor> {
        let norms = self
            .weights
            .decoder_norms()?
            .f_unsqueeze(1)?
            .f_clamp_min(1e-12)?;
        let mut w_dec = self.weights.w_dec.inner().shallow_clone();
        let _ = w_dec.f_div_(&norms)?;
        Ok(norms)
    }

    /// Multiplies the input space by `factor`: an SAE trained on x·s becomes
    /// one for x (SAELens's `fold_activation_norm_scaling_factor`): W_enc·s,
    /// W_dec/s, b_dec/s. `fold_input_scale(1/s)` undoes it.
    pub fn fold_input_scale(&self, factor: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let mut w_enc = self.weights.w_enc.inner().shallow_clone();
        let _ = w_enc.f_mul_scalar_(factor)?;
        let mut w_dec = self.weights.w_dec.inner().shallow_clone();
        let _ = w_dec.f_div_scalar_(factor)?;
        let mut b_dec = self.weights.b_dec.inner().shallow_clone();
        let _ = b_dec.f_div_scalar_(factor)?;
        Ok(())
    }

    /// Overwrites every parameter with another SAE's values, in place, so
    /// handles held elsewhere (a script's optimiser) stay valid.
    pub fn copy_weights_from(&self, other: &Weights) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for ((name, mine), (_, theirs)) in self.weights.named().into_iter().zip(other.named()) {
            if mine.shape() != theirs.shape() {
                return Err(Error::invalid(format!(
                    "cannot copy {name}: shape {:?} does not match {:?}",
                    theirs.shape(),
                    mine.shape()
                )));
            }
            let mut target = mine.inner().shallow_clone();
            target.f_copy_(theirs.inner())?;
        }
        Ok(())
    }

    /// A deep copy with its own storage.
    pub fn duplicate(&self) -> Result<Sae> {
        let w = &self.weights;
        let copy = |t: &Tensor| deep_copy(t.inner());
        let log_threshold = w.log_threshold.as_ref().map(copy).transpose()?;
        let w_skip = w.w_skip.as_ref().map(copy).transpose()?;
        let mut sae = Sae::from_parts(
            self.cfg.clone(),
            copy(&w.w_enc)?,
            copy(&w.b_enc)?,
            copy(&w.w_dec)?,
            copy(&w.b_dec)?,
            log_threshold,
        )?;
        if let Some(w_skip) = w_skip {
            sae.set_skip(w_skip)?;
        }
        sae.fresh = self.fresh;
        sae.training_summary = self.training_summary.clone();
        Ok(sae)
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) -> Result<()> {
        for p in self.parameters() {
            let mut grad = p.inner().f_grad()?;
            if grad.defined() {
                let _ = grad.f_zero_()?;
            }
        }
        Ok(())
    }
}

/// A parameter of `cfg`'s SAE: `t` checked to have `shape`, as f32 on its
/// device, requiring gradients.
pub(super) fn parameter(
    cfg: &SaeConfig,
    name: &str,
    t: tch::Tensor,
    shape: &[i64],
) -> Result<Tensor> {
    if t.size() != shape {
        return Err(Error::invalid(format!(
            "SAE weight {name} has shape {:?}, expected {shape:?}",
            t.size()
        )));
    }
    let t = t
        .f_to(cfg.device)?
        .f_totype(Kind::Float)?
        .f_detach()?
        .f_contiguous()?;
    Ok(Tensor::new(t.f_set_requires_grad(true)?))
}

/// A copy with its own storage, cut from the autograd graph.
pub fn deep_copy(t: &tch::Tensor) -> Result<tch::Tensor> {
    Ok(t.f_detach()?
        .f_internal_to_copy((t.f_kind()?, t.device()), false)?)
}

#[cfg(test)]
mod tests;
